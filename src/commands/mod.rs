//! One module per subcommand, and what they share: who is asking, what time it is, and
//! the liveness rules in force.

pub mod admin;
pub mod completions;
pub mod init;
pub mod prompt;
pub mod release;
pub mod reserve;
pub mod run;
pub mod status;

use std::collections::BTreeSet;

use crate::alloc;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::liveness::{self, ProcView, Rules};
use crate::model::{Pool, Timestamp};
use crate::store::Store;

pub struct Context {
    pub store: Store,
    pub config: Config,
    pub view: ProcView,
}

impl Context {
    pub fn rules(&self) -> Rules {
        Rules {
            heartbeat_timeout: self.config.heartbeat_timeout(),
        }
    }

    /// Frees whatever has ended; every transaction starts with this.
    pub fn sweep(&self, pool: &mut Pool, now: Timestamp) -> bool {
        liveness::sweep(pool, now, &self.rules(), &self.view)
    }
}

pub fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The account of the real uid, from the password database: `$USER` can be set to anything.
pub fn current_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        // Containers often run uids without a passwd entry; the number still identifies.
        _ => uid.to_string(),
    }
}

/// Picks `count` GPUs or explains why not.
pub fn choose(pool: &Pool, count: u32) -> Result<Vec<u32>> {
    alloc::choose(pool, count as usize, &BTreeSet::new()).map_err(|shortage| {
        let total = pool.gpus.len();
        let hint = if shortage.requested > total {
            format!("this host's pool has only {total} GPU(s)")
        } else {
            "see `canhazgpu status` for who holds them, or try again later".to_string()
        };
        Error::failure(format!(
            "Not enough GPUs available: requested {}, {} available of {total}; {hint}",
            shortage.requested, shortage.available
        ))
    })
}

pub fn format_ids(ids: &[u32]) -> String {
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("[{}]", list.join(", "))
}

pub fn cuda_list(ids: &[u32]) -> String {
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    list.join(",")
}
