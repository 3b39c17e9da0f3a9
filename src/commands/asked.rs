//! The request flags of `run` and `reserve` (`--gpu-ids`, `--wait`, `--note`, `--user`,
//! `--policy`), checked before anything touches the store.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::admission::Request;
use crate::alloc::Policy;
use crate::cli::RequestArgs;
use crate::config::Config;
use crate::duration;
use crate::error::{Error, Result};
use crate::gpu_env;
use crate::model::{Kind, Owner, Reservation, Timestamp};

/// Longest `--note`; status lines should stay lines.
const MAX_NOTE_CHARS: usize = 200;
const MAX_USER_CHARS: usize = 64;

/// The request flags of `run` and `reserve`, checked.
pub struct Asked {
    pub gpu_ids: Option<Vec<u32>>,
    pub wait: Wait,
    pub note: Option<String>,
    /// Who the reservation is shown as held by.
    pub user: String,
    /// The real account, when `--user` names someone else.
    pub actual_user: Option<String>,
    pub policy: Policy,
}

impl Asked {
    pub fn from_args(args: &RequestArgs, config: &Config, account: String) -> Result<Asked> {
        let gpu_ids = args.gpu_ids.as_deref().map(distinct_gpu_ids).transpose()?;
        let note = match &args.note {
            Some(note) if note.chars().count() > MAX_NOTE_CHARS => {
                return Err(Error::usage(format!(
                    "--note is {} characters long; keep it to {MAX_NOTE_CHARS}",
                    note.chars().count()
                )));
            }
            // Control characters would let a note rewrite other people's terminals, and
            // bidirectional overrides would let it disguise the rest of a status line.
            Some(note) if note.chars().any(|c| c.is_control() || is_bidi_control(c)) => {
                return Err(Error::usage(
                    "--note must not contain control characters (newlines, tabs, escapes, \
                     bidirectional overrides); use plain text",
                ));
            }
            Some(note) if note.trim().is_empty() => None,
            Some(note) => Some(note.trim().to_string()),
            None => None,
        };
        let (user, actual_user) = match &args.user {
            Some(name) => {
                // A leading '-' would read as an option wherever the name is passed on.
                let valid = !name.is_empty()
                    && !name.starts_with('-')
                    && name.chars().count() <= MAX_USER_CHARS
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
                if !valid {
                    return Err(Error::usage(format!(
                        "--user {name:?} is not a valid name: use 1 to {MAX_USER_CHARS} letters, \
                         digits, '.', '_', '@' or '-' (not first)"
                    )));
                }
                let actual = (name != &account).then_some(account);
                (name.clone(), actual)
            }
            None => (account, None),
        };
        Ok(Asked {
            gpu_ids,
            wait: Wait::from_arg(args.wait.as_ref())?,
            note,
            user,
            actual_user,
            policy: args.policy.or(config.allocation_policy).unwrap_or_default(),
        })
    }

    /// The reservation this request (`request_id`) writes on each GPU it gets, held
    /// from `now`.
    pub fn reservation(
        &self,
        kind: Kind,
        now: Timestamp,
        length: Option<Duration>,
        owner: Option<Owner>,
        request_id: &str,
    ) -> Reservation {
        Reservation {
            user: self.user.clone(),
            actual_user: self.actual_user.clone(),
            kind,
            start_time: now,
            last_heartbeat: now,
            expiry_time: length.map(|length| now + length.as_secs() as i64),
            note: self.note.clone(),
            owner,
            request_id: Some(request_id.to_string()),
        }
    }

    /// The request as `acquire` takes it; `unusable` is what NVML said just now.
    pub fn request<'a>(
        &'a self,
        count: u32,
        kind: Kind,
        unusable: &'a BTreeSet<u32>,
    ) -> Request<'a> {
        Request {
            count,
            gpu_ids: self.gpu_ids.as_deref(),
            kind,
            user: &self.user,
            actual_user: self.actual_user.as_deref(),
            policy: self.policy,
            unusable,
        }
    }
}

/// `--gpu-ids` of any command: at least one id, none twice.
pub fn distinct_gpu_ids(ids: &[u32]) -> Result<Vec<u32>> {
    let unique: BTreeSet<u32> = ids.iter().copied().collect();
    if ids.is_empty() || unique.len() != ids.len() {
        return Err(Error::usage(format!(
            "--gpu-ids {} names a GPU twice or none; give distinct ids, e.g. --gpu-ids 1,3",
            gpu_env::id_list(ids)
        )));
    }
    Ok(ids.to_vec())
}

/// Unicode's bidirectional formatting characters (marks, embeddings, overrides, isolates).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    No,
    Forever,
    For(Duration),
}

impl Wait {
    /// `--wait` (no value: forever) and `--wait=2h`.
    pub fn from_arg(arg: Option<&Option<String>>) -> Result<Wait> {
        match arg {
            None => Ok(Wait::No),
            Some(None) => Ok(Wait::Forever),
            Some(Some(text)) => Ok(Wait::For(duration::parse(text)?)),
        }
    }
}
