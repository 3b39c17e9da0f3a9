//! The embedded store: one JSON state file in a directory shared by all users of the host.
//!
//! Writers serialise on `flock` of a lock file; a commit writes a temporary file, syncs
//! it and renames it over `state.json`, so readers and crashes only ever see a whole
//! state. Readers take no lock. Finished reservations are appended to `history.jsonl`.
//!
//! The directory is not fsynced after the rename: that would only make the newest
//! commit survive a power loss (a process crash loses nothing either way), and it cost a
//! third of `run`'s throughput. After a power loss the state may be one commit old but is
//! always whole, and every `run` owner is gone with the old boot anyway.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::model::{self, HistoryRecord, Pool, Timestamp};
use crate::store::Snapshot;

/// Bumped when the state file changes incompatibly; a newer file is refused, not reset.
const SCHEMA: u64 = 1;
const STATE: &str = "state.json";
const LOCK: &str = "lock";
const HISTORY: &str = "history.jsonl";
/// The embedded store keeps 90 days of history.
const HISTORY_DAYS: i64 = 90;
/// Below this size the history file is not worth checking for old records.
const HISTORY_PRUNE_BYTES: u64 = 256 * 1024;
/// Every local user must be able to replace `state.json` by rename, which needs write
/// permission on the directory and no sticky bit (the sticky bit would forbid replacing
/// a file another user wrote). Local users are trusted; see README's trust model.
pub const SHARED_DIR_MODE: u32 = 0o777;

pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: PathBuf) -> Self {
        FileStore { dir }
    }

    pub fn describe(&self) -> String {
        format!("embedded store in {}", self.dir.display())
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join(STATE)
    }

    pub fn create_shared_dir(&self) -> Result<()> {
        let existed = self.dir.is_dir();
        if !existed {
            fs::create_dir_all(&self.dir).map_err(|e| {
                Error::failure(format!(
                    "cannot create the state directory {}: {e}; run `canhazgpu admin` as a user who may create it (usually root), or choose another with --store file:///path",
                    self.dir.display()
                ))
            })?;
        }
        // Set explicitly: create_dir honours the umask, which would lock other users out.
        if let Err(e) = fs::set_permissions(&self.dir, fs::Permissions::from_mode(SHARED_DIR_MODE))
            && !existed
        {
            return Err(Error::failure(format!(
                "cannot make {} writable for all users: {e}",
                self.dir.display()
            )));
        }
        Ok(())
    }

    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            pool: self.read_state()?,
            now: model::local_now(),
        })
    }

    pub fn transact<T>(
        &self,
        mut change: impl FnMut(&mut Option<Pool>, Timestamp) -> Result<T>,
    ) -> Result<T> {
        let _lock = self.lock()?;
        let before = self.read_state()?;
        let now = model::local_now();
        let mut after = before.clone();
        let result = change(&mut after, now)?;
        if after != before
            && let Some(pool) = &after
        {
            self.write_state(pool)?;
            self.append_history(&model::ended_between(before.as_ref(), Some(pool), now));
        }
        Ok(result)
    }

    pub fn overwrite(&self, pool: &Pool) -> Result<()> {
        let _lock = self.lock()?;
        self.write_state(pool)
    }

    pub fn history(&self, since: Timestamp) -> Result<Vec<HistoryRecord>> {
        let path = self.dir.join(HISTORY);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::failure(format!(
                    "cannot read the usage history {}: {e}",
                    path.display()
                )));
            }
        };
        // A line torn by a crash mid-append is skipped, not fatal.
        Ok(text
            .lines()
            .filter_map(HistoryRecord::decode)
            .filter(|record| record.end_time >= since)
            .collect())
    }

    /// Drops records older than 90 days once the file has grown; called under the lock.
    fn prune_history(&self, now: Timestamp) {
        let path = self.dir.join(HISTORY);
        let large = fs::metadata(&path).is_ok_and(|m| m.len() > HISTORY_PRUNE_BYTES);
        if !large {
            return;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            return;
        };
        let cutoff = now - HISTORY_DAYS * 86_400;
        let kept: String = text
            .lines()
            .filter(|line| HistoryRecord::decode(line).is_some_and(|r| r.end_time >= cutoff))
            .flat_map(|line| [line, "\n"])
            .collect();
        if kept.len() == text.len() {
            return;
        }
        let temp = self.dir.join(format!(".{HISTORY}.tmp"));
        if write_synced(&temp, kept.as_bytes())
            .and_then(|()| fs::rename(&temp, &path))
            .is_err()
        {
            let _ = fs::remove_file(&temp);
        }
    }

    fn lock(&self) -> Result<File> {
        let path = self.dir.join(LOCK);
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&path)
            // flock works on a read-only descriptor too: enough when another user
            // created the lock file without write permission for us.
            .or_else(|_| File::open(&path));
        let file = opened.map_err(|e| {
            if !self.dir.is_dir() {
                return Error::not_initialized_at(&self.dir);
            }
            Error::failure(format!(
                "cannot open the lock file {}: {e}; the state directory must be writable by every user (mode 0777, set by `canhazgpu admin`)",
                path.display()
            ))
        })?;
        file.lock()
            .map_err(|e| Error::failure(format!("cannot lock {}: {e}", path.display())))?;
        Ok(file)
    }

    fn read_state(&self) -> Result<Option<Pool>> {
        let path = self.state_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::failure(format!(
                    "cannot read the state file {}: {e}; check its permissions (every user needs read access)",
                    path.display()
                )));
            }
        };
        decode_state(&bytes).map(Some).map_err(|why| {
            Error::corrupt(format!(
                "the state file {} is unusable: {why}. It was left as it is; repair it, or reinitialize the pool with `canhazgpu admin --gpus N --force` (this forgets current reservations)",
                path.display()
            ))
        })
    }

    fn write_state(&self, pool: &Pool) -> Result<()> {
        let path = self.state_path();
        let temp = self.dir.join(format!(".{STATE}.tmp"));
        let written =
            write_synced(&temp, &encode_state(pool)).and_then(|()| fs::rename(&temp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(Error::failure(format!(
                "cannot write the state file {}: {e}; nothing was changed. The state directory {} must be writable by every user (mode 0777, set by `canhazgpu admin`)",
                path.display(),
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// History is best effort: losing a usage record must never fail a reservation.
    fn append_history(&self, ended: &[HistoryRecord]) {
        if ended.is_empty() {
            return;
        }
        let mut lines = String::new();
        let latest = ended.iter().map(|r| r.end_time).max().unwrap_or(0);
        for record in ended {
            if let Ok(line) = serde_json::to_string(record) {
                lines.push_str(&line);
                lines.push('\n');
            }
        }
        let appended = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o666)
            .open(self.dir.join(HISTORY))
            .and_then(|mut file| file.write_all(lines.as_bytes()));
        if let Err(e) = appended {
            eprintln!(
                "canhazgpu: warning: could not record usage history in {}: {e}",
                self.dir.join(HISTORY).display()
            );
        }
        self.prune_history(latest);
    }
}

impl Error {
    fn not_initialized_at(dir: &Path) -> Error {
        Error::not_initialized(&format!(
            "embedded store in {} (which does not exist)",
            dir.display()
        ))
    }
}

/// Writers hold the lock, so one fixed temporary name suffices, and a writer killed
/// before its rename leaves at most that one file, which the next writer replaces. It is
/// unlinked first because another user's leftover may not be writable for us.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

fn encode_state(pool: &Pool) -> Vec<u8> {
    let gpus: Vec<Value> = pool.gpus.iter().map(model::encode_slot_value).collect();
    let mut state = json!({ "schema": SCHEMA, "gpus": gpus });
    if let Some(t) = pool.initialized_at {
        state["initialized_at"] = t.into();
    }
    if !pool.queue.is_empty() {
        state["queue"] = serde_json::to_value(&pool.queue).unwrap_or_default();
    }
    let mut bytes = state.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

fn decode_state(bytes: &[u8]) -> std::result::Result<Pool, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON ({e})"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let schema = object
        .get("schema")
        .and_then(Value::as_u64)
        .ok_or("it has no schema version")?;
    if schema > SCHEMA {
        return Err(format!(
            "it was written by a newer canhazgpu (schema {schema}, this one reads {SCHEMA}); upgrade canhazgpu"
        ));
    }
    let gpus = object
        .get("gpus")
        .and_then(Value::as_array)
        .ok_or("it has no GPU list")?;
    let mut pool = Pool {
        initialized_at: object.get("initialized_at").and_then(model::decode_time),
        gpus: Vec::with_capacity(gpus.len()),
        queue: match object.get("queue") {
            Some(queue) => serde_json::from_value(queue.clone())
                .map_err(|e| format!("its waiting queue is malformed ({e})"))?,
            None => Vec::new(),
        },
    };
    for (id, entry) in gpus.iter().enumerate() {
        let id = u32::try_from(id).map_err(|_| "too many GPUs")?;
        let slot =
            model::decode_slot_value(id, entry.clone(), "the state file").map_err(|e| e.message)?;
        pool.gpus.push(slot);
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let pool = Pool::new(3, 1000);
        assert_eq!(decode_state(&encode_state(&pool)).unwrap(), pool);
    }

    #[test]
    fn refuses_future_and_garbage() {
        assert!(
            decode_state(br#"{"schema":99,"gpus":[]}"#)
                .unwrap_err()
                .contains("newer")
        );
        assert!(decode_state(b"").is_err());
        assert!(decode_state(b"[]").is_err());
        assert!(decode_state(br#"{"schema":1,"gpus":[1]}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_state(&bytes);
        }

        #[test]
        fn decoding_json_shaped_input_never_panics(text in r#"\{"schema":1,"gpus":\[(\{("user"|"start_time"|"type"|"expiry_time"|"owner_process"):("x"|1|-1|1e300|null|\{\}|\[\]|"2025-01-01T00:00:00Z")\},?){0,4}\]\}"#) {
            let _ = decode_state(text.as_bytes());
        }
    }
}
