//! The embedded store: one JSON state file in a directory shared by all users of the host.
//!
//! Writers serialise on `flock` of a lock file; a commit writes a temporary file, syncs
//! it and renames it over `state.json`, so readers and crashes only ever see a whole
//! state. Readers take no lock. Finished reservations are appended to one history file
//! per month (`history-2026-12.jsonl`); whole months older than 90 days are deleted when
//! a new month's file is started, so a commit never rereads old records.
//!
//! The store's clock is the host's kernel clock, read with a system call of its own (see
//! [`host_clock`]), so that every client of the store judges time alike.
//!
//! The directory is not fsynced after the rename: that would only make the newest
//! commit survive a power loss (a process crash loses nothing either way), and it cost a
//! third of `run`'s throughput. After a power loss the state may be one commit old but is
//! always whole, and every `run` owner is gone with the old boot anyway.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::account::name_of;
use crate::error::{Error, Result};
use crate::host::{Keyspace, PoolRead};
use crate::model::{self, HistoryRecord, Pool, Timestamp};
use crate::store::{Registry, Snapshot};

/// Bumped when the state file changes incompatibly; a newer file is refused, not reset.
const SCHEMA: u64 = 1;
const STATE: &str = "state.json";
/// How often [`FileStore::watch_changes`] looks at the state file: a `stat`, a few times
/// a second.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);
const LOCK: &str = "lock";
/// The single history file of earlier versions: still read, never written, deleted once
/// its newest record is 90 days old.
const LEGACY_HISTORY: &str = "history.jsonl";
/// `history-YYYY-MM.jsonl`: the records committed in that month (UTC).
const HISTORY_PREFIX: &str = "history-";
const HISTORY_SUFFIX: &str = ".jsonl";
/// The embedded store keeps 90 days of history.
const HISTORY_DAYS: i64 = 90;
/// Every local user must be able to replace `state.json` by rename, which needs write
/// permission on the directory and no sticky bit (the sticky bit would forbid replacing
/// a file another user wrote). Local users are trusted; see README's trust model.
pub const SHARED_DIR_MODE: u32 = 0o777;
/// Directories `admin` creates above the store's: everyone must be able to enter them.
const PARENT_DIR_MODE: u32 = 0o755;
/// `state.json` is only ever replaced (by rename), never written in place: every user
/// reads it.
const STATE_MODE: u32 = 0o644;
/// The lock and the history are opened for writing by every user.
const SHARED_FILE_MODE: u32 = 0o666;

/// The files of the store and the modes they need, for `admin`'s repair (the monthly
/// history files too, found by name).
const FILE_MODES: [(&str, u32); 3] = [
    (STATE, STATE_MODE),
    (LOCK, SHARED_FILE_MODE),
    (LEGACY_HISTORY, SHARED_FILE_MODE),
];

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

    pub fn directory_owner(&self) -> super::DirectoryOwner {
        match fs::metadata(&self.dir) {
            Ok(meta) => super::DirectoryOwner::Uid(meta.uid()),
            Err(e) if e.kind() == ErrorKind::NotFound => super::DirectoryOwner::NotCreated,
            // Unreadable: nobody's claim to it can be checked.
            Err(_) => super::DirectoryOwner::NoDirectory,
        }
    }

    /// For `admin`: creates the directory (and missing parents), or repairs the modes of
    /// an existing one and its files where this user may, and says what it could not.
    pub fn create_shared_dir(&self) -> Result<()> {
        if !self.dir.is_dir() {
            return self.create_dirs().map_err(|e| {
                Error::failure(format!(
                    "cannot create the state directory {}: {e}; \
                     run `canhazgpu admin` as a user who may create it (usually root), \
                     or choose another with --store file:///path",
                    self.dir.display()
                ))
            });
        }
        repair_mode(&self.dir, SHARED_DIR_MODE, "the state directory");
        for (name, mode) in FILE_MODES {
            let path = self.dir.join(name);
            if path.exists() {
                repair_mode(&path, mode, "the store file");
            }
        }
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name.to_str().and_then(parse_history_file_name).is_some() {
                repair_mode(&entry.path(), SHARED_FILE_MODE, "the store file");
            }
        }
        Ok(())
    }

    /// Creates the directory and every missing parent. Modes are set after creation:
    /// mkdir's mode is filtered by the umask, and a parent or store directory made under
    /// umask 077 would lock every other user out.
    fn create_dirs(&self) -> std::io::Result<()> {
        let missing: Vec<&Path> = self
            .dir
            .ancestors()
            .take_while(|dir| !dir.exists())
            .collect();
        for dir in missing.into_iter().rev() {
            match fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            let mode = if dir == self.dir {
                SHARED_DIR_MODE
            } else {
                PARENT_DIR_MODE
            };
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }

    /// What changes whenever a commit replaces `state.json`: its inode (a rename brings a
    /// new one), size and modification time. `None` while there is no such file.
    fn state_stamp(&self) -> Option<(u64, u64, i64, i64)> {
        let meta = fs::metadata(self.state_path()).ok()?;
        Some((meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()))
    }

    /// See [`crate::store::Store::watch_changes`]: `wait` returns `true` as soon as
    /// [`FileStore::state_stamp`] differs from what it was at the last look.
    pub fn watch_changes<T>(&self, body: impl FnOnce(&mut dyn FnMut(Duration) -> bool) -> T) -> T {
        let mut seen = self.state_stamp();
        body(&mut |timeout| {
            let deadline = Instant::now() + timeout;
            loop {
                let stamp = self.state_stamp();
                if stamp != seen {
                    seen = stamp;
                    return true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                std::thread::sleep(left.min(WATCH_INTERVAL));
            }
        })
    }

    /// See [`crate::store::Store::read_pools`]: there is no registry, and one pool, which
    /// is what every keyspace `choose` picks reads.
    pub fn read_pools(
        &self,
        choose: &mut dyn FnMut(&Registry) -> Vec<Keyspace>,
        history_since: Option<Timestamp>,
    ) -> Result<Vec<Result<PoolRead>>> {
        let wanted = choose(&Registry::new()).len();
        let read = PoolRead {
            pool: self.snapshot()?.pool,
            last_write: None,
            published: None,
            history: history_since.map(|since| self.history(since)).transpose()?,
        };
        Ok((0..wanted).map(|_| Ok(read.clone())).collect())
    }

    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            pool: self.read_state()?,
            now: host_clock(),
        })
    }

    pub fn transact<T>(
        &self,
        mut change: impl FnMut(&mut Option<Pool>, Timestamp) -> Result<T>,
    ) -> Result<T> {
        let _lock = self.lock()?;
        let before = self.read_state()?;
        let now = host_clock();
        let mut after = before.clone();
        let result = change(&mut after, now)?;
        if after != before
            && let Some(pool) = &after
        {
            self.write_state(pool)?;
            self.append_history(&model::ended_between(before.as_ref(), Some(pool), now), now);
        }
        Ok(result)
    }

    pub fn overwrite(&self, fresh: impl FnOnce(Timestamp) -> Pool) -> Result<()> {
        let _lock = self.lock()?;
        self.write_state(&fresh(host_clock()))
    }

    /// Reads only the months that can hold records ending at or after `since` (records
    /// go to the month they were committed in, never before they ended), plus the
    /// single file of earlier versions while it may still hold such records.
    pub fn history(&self, since: Timestamp) -> Result<Vec<HistoryRecord>> {
        let mut paths: Vec<PathBuf> = months_between(since, host_clock())
            .into_iter()
            .map(|month| self.dir.join(history_file_name(month)))
            .collect();
        let legacy = self.dir.join(LEGACY_HISTORY);
        if modified_at(&legacy).is_some_and(|t| t >= since) {
            paths.push(legacy);
        }
        let mut records = Vec::new();
        for path in paths {
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::failure(format!(
                        "cannot read the usage history {}: {e}; check its permissions \
                         (every user needs read access)",
                        path.display()
                    )));
                }
            };
            // A line torn by a crash mid-append is skipped, not fatal.
            records.extend(
                text.lines()
                    .filter_map(HistoryRecord::decode)
                    .filter(|record| record.end_time >= since),
            );
        }
        Ok(records)
    }

    /// Deletes history files whose every record is older than 90 days: whole months,
    /// and the single file of earlier versions. Runs when a month's file is started,
    /// so about once a month, and only lists the directory.
    fn prune_history(&self, now: Timestamp) {
        let cutoff = now - HISTORY_DAYS * 86_400;
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let old = match parse_history_file_name(name) {
                Some(month) => month_end(month) < cutoff,
                None if name == LEGACY_HISTORY => {
                    modified_at(&entry.path()).is_some_and(|t| t < cutoff)
                }
                None => false,
            };
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn lock(&self) -> Result<File> {
        let path = self.dir.join(LOCK);
        let opened = open_shared(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            &path,
            SHARED_FILE_MODE,
        )
        // flock works on a read-only descriptor too: enough when another user created
        // the lock file without write permission for us.
        .or_else(|_| File::open(&path));
        let file = opened.map_err(|e| {
            if !self.dir.is_dir() {
                return Error::not_initialized_at(&self.dir);
            }
            Error::failure(format!(
                "cannot open the lock file {}: {e}; {}",
                path.display(),
                self.why_unusable(&path, SHARED_FILE_MODE)
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
                    "cannot read the state file {}: {e}; {}",
                    path.display(),
                    self.why_unusable(&path, STATE_MODE)
                )));
            }
        };
        decode_state(&bytes)
            .map(Some)
            .map_err(|unreadable| match unreadable {
                // Not corrupt: a newer version's state is valid, and `admin --force` must not
                // be the way past it (it would throw away what the newer version holds).
                Unreadable::Newer(schema) => Error::failure(format!(
                    "the state file {} was written by a newer canhazgpu (schema {schema}; this \
                 one reads schema {SCHEMA}); it was left as it is. Use the newer canhazgpu \
                 that wrote it (`canhazgpu --version`, `which -a canhazgpu`), or upgrade \
                 canhazgpu here",
                    path.display()
                )),
                Unreadable::Corrupt(why) => Error::corrupt(format!(
                    "the state file {} is unusable: {why}. It was left as it is; repair it, or \
                 reinitialize the pool with `canhazgpu admin --gpus N --force` (this forgets \
                 current reservations)",
                    path.display()
                )),
            })
    }

    fn write_state(&self, pool: &Pool) -> Result<()> {
        let path = self.state_path();
        let temp = self.dir.join(format!(".{STATE}.tmp"));
        let written = write_synced(&temp, &encode_state(pool), STATE_MODE)
            .and_then(|()| fs::rename(&temp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(Error::failure(format!(
                "cannot write the state file {}: {e}; nothing was changed. {}",
                path.display(),
                self.why_unusable(&path, STATE_MODE)
            )));
        }
        Ok(())
    }

    /// History is best effort: losing a usage record must never fail a reservation.
    /// Appends to this month's file and returns; starting a new month's file is the
    /// moment to drop months that have aged out.
    fn append_history(&self, ended: &[HistoryRecord], now: Timestamp) {
        if ended.is_empty() {
            return;
        }
        let mut lines = String::new();
        for record in ended {
            if let Ok(line) = serde_json::to_string(record) {
                lines.push_str(&line);
                lines.push('\n');
            }
        }
        let path = self.dir.join(history_file_name(month_of(now)));
        let mut started = false;
        let opened = open_shared(
            OpenOptions::new().append(true).create_new(true),
            &path,
            SHARED_FILE_MODE,
        )
        .inspect(|_| started = true)
        .or_else(|e| match e.kind() {
            ErrorKind::AlreadyExists => OpenOptions::new().append(true).open(&path),
            _ => Err(e),
        });
        if let Err(e) = opened.and_then(|mut file| file.write_all(lines.as_bytes())) {
            say!(
                "canhazgpu: warning: could not record usage history in {}: {e}; {}",
                path.display(),
                self.why_unusable(&path, SHARED_FILE_MODE)
            );
        }
        if started {
            self.prune_history(now);
        }
    }
}

impl FileStore {
    /// What keeps other users from `path` (a file of the store that could not be used)
    /// and who can fix it: the directory when its mode is wrong, else the file's own mode
    /// and owner, so that the message blames what is really wrong.
    fn why_unusable(&self, path: &Path, wanted: u32) -> String {
        let dir = match fs::metadata(&self.dir) {
            Ok(meta) => meta,
            Err(e) => {
                return format!(
                    "the state directory {} cannot be read: {e}",
                    self.dir.display()
                );
            }
        };
        if dir.permissions().mode() & 0o7777 != SHARED_DIR_MODE {
            return format!(
                "the state directory {} has mode {:04o} (owner {}), \
                 but it must be writable by every user (mode 0777, set by `canhazgpu admin`); \
                 its owner or root can run `chmod 0777 {}`",
                self.dir.display(),
                dir.permissions().mode() & 0o7777,
                name_of(dir.uid()),
                self.dir.display()
            );
        }
        match fs::metadata(path) {
            Ok(file) if file.permissions().mode() & 0o7777 != wanted => format!(
                "the file has mode {:04o} (owner {}) but every user needs mode {wanted:04o}; \
                 its owner or root can run `chmod {wanted:04o} {}` (or `canhazgpu admin` as root, \
                 which repairs every file of the store)",
                file.permissions().mode() & 0o7777,
                name_of(file.uid()),
                path.display()
            ),
            _ => format!(
                "the state directory {} has the right mode (0777); \
                 check the file system (read-only, full?) and what else holds that path",
                self.dir.display()
            ),
        }
    }
}

/// Opens (or creates) a file that every user shares and gives it `mode` when this user
/// may: open's mode is filtered by the caller's umask, so it is set on the open file
/// (fchmod). Only the owner (or root) may change a mode; a file another user created with
/// a wrong mode is left for `why_unusable` to explain.
fn open_shared(options: &mut OpenOptions, path: &Path, mode: u32) -> std::io::Result<File> {
    let file = options.mode(mode).open(path)?;
    if let Ok(meta) = file.metadata()
        && meta.permissions().mode() & 0o7777 != mode
        && may_chmod(meta.uid())
    {
        let _ = file.set_permissions(fs::Permissions::from_mode(mode));
    }
    Ok(file)
}

fn may_chmod(owner: u32) -> bool {
    let me = nix::unistd::geteuid();
    me.is_root() || me.as_raw() == owner
}

/// Gives an existing `path` the `mode` every user needs, for `admin`, saying what it did
/// or why it could not.
fn repair_mode(path: &Path, mode: u32, what: &str) {
    let Ok(meta) = fs::metadata(path) else {
        return;
    };
    let current = meta.permissions().mode() & 0o7777;
    if current == mode {
        return;
    }
    match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        Ok(()) => say!(
            "canhazgpu: {what} {} had mode {current:04o}; \
             set it to {mode:04o} so that every user can reserve",
            path.display()
        ),
        Err(e) => say!(
            "canhazgpu: warning: {what} {} has mode {current:04o} (owner {}) \
             and cannot be changed to {mode:04o} ({e}); \
             other users cannot reserve until its owner or root runs `chmod {mode:04o} {}`",
            path.display(),
            name_of(meta.uid()),
            path.display()
        ),
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
fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // open's mode went through the umask; the file must be readable by every user.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_data()
}

/// The host's clock, read from the kernel with a system call of its own rather than
/// through the C library: a process whose library clock is interposed (faketime, another
/// `LD_PRELOAD`) must still judge other people's reservations by the clock every other
/// client of this host reads, or it would expire or age them by its own error. Falls
/// back to the library's clock if the call fails.
pub fn host_clock() -> Timestamp {
    use nix::libc;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one `timespec` through the pointer, and `now` is one.
    let status = unsafe {
        libc::syscall(
            libc::SYS_clock_gettime,
            libc::CLOCK_REALTIME,
            &mut now as *mut libc::timespec,
        )
    };
    if status == 0 {
        now.tv_sec
    } else {
        model::local_now()
    }
}

/// A month as (year, month 1-12), in UTC.
type Month = (i32, u8);

fn month_of(t: Timestamp) -> Month {
    let date =
        time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (date.year(), u8::from(date.month()))
}

fn next_month((year, month): Month) -> Month {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

/// The first second after `month`.
fn month_end(month: Month) -> Timestamp {
    let (year, month) = next_month(month);
    time::Month::try_from(month)
        .and_then(|month| time::Date::from_calendar_date(year, month, 1))
        .map_or(Timestamp::MAX, |date| {
            date.midnight().assume_utc().unix_timestamp()
        })
}

/// Every month from the one holding `from` to the one holding `to`.
fn months_between(from: Timestamp, to: Timestamp) -> Vec<Month> {
    let last = month_of(to);
    let mut month = month_of(from.min(to));
    let mut months = vec![month];
    while month < last {
        month = next_month(month);
        months.push(month);
    }
    months
}

fn history_file_name((year, month): Month) -> String {
    format!("{HISTORY_PREFIX}{year:04}-{month:02}{HISTORY_SUFFIX}")
}

fn parse_history_file_name(name: &str) -> Option<Month> {
    let middle = name
        .strip_prefix(HISTORY_PREFIX)?
        .strip_suffix(HISTORY_SUFFIX)?;
    let (year, month) = middle.split_once('-')?;
    let month: u8 = month.parse().ok()?;
    (1..=12)
        .contains(&month)
        .then_some((year.parse().ok()?, month))
}

fn modified_at(path: &Path) -> Option<Timestamp> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    let seconds = modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    i64::try_from(seconds).ok()
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
    if let Some(t) = pool.rebuilding_until {
        state["rebuilding_until"] = t.into();
    }
    let mut bytes = state.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// Why a state file could not be decoded.
#[derive(Debug)]
enum Unreadable {
    /// A newer version wrote it, in this schema.
    Newer(u64),
    Corrupt(String),
}

impl From<&str> for Unreadable {
    fn from(why: &str) -> Self {
        Unreadable::Corrupt(why.to_string())
    }
}

impl From<String> for Unreadable {
    fn from(why: String) -> Self {
        Unreadable::Corrupt(why)
    }
}

fn decode_state(bytes: &[u8]) -> std::result::Result<Pool, Unreadable> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON ({e})"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let schema = object
        .get("schema")
        .and_then(Value::as_u64)
        .ok_or("it has no schema version")?;
    if schema > SCHEMA {
        return Err(Unreadable::Newer(schema));
    }
    let gpus = object
        .get("gpus")
        .and_then(Value::as_array)
        .ok_or("it has no GPU list")?;
    if gpus.len() > model::MAX_GPUS as usize {
        return Err(Unreadable::Corrupt(format!(
            "it lists {} GPUs, more than the {} a pool may have",
            gpus.len(),
            model::MAX_GPUS
        )));
    }
    let mut pool = Pool {
        initialized_at: object.get("initialized_at").and_then(model::decode_time),
        rebuilding_until: object.get("rebuilding_until").and_then(model::decode_time),
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
    fn history_months() {
        // 2026-12-31T23:59:59Z and the second after it.
        let new_year = 1_798_761_600;
        assert_eq!(month_of(new_year - 1), (2026, 12));
        assert_eq!(month_of(new_year), (2027, 1));
        assert_eq!(month_end((2026, 12)), new_year);
        assert_eq!(history_file_name((2026, 12)), "history-2026-12.jsonl");
        assert_eq!(
            parse_history_file_name("history-2026-12.jsonl"),
            Some((2026, 12))
        );
        for name in [
            "history.jsonl",
            "history-2026-13.jsonl",
            "history-x-01.jsonl",
        ] {
            assert_eq!(parse_history_file_name(name), None, "{name}");
        }
        assert_eq!(
            months_between(new_year - 40 * 86_400, new_year + 1),
            [(2026, 11), (2026, 12), (2027, 1)]
        );
        assert_eq!(months_between(new_year, new_year), [(2027, 1)]);
    }

    #[test]
    fn a_month_of_history_is_kept_until_its_last_record_is_90_days_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_path_buf());
        let record = |end: Timestamp| HistoryRecord {
            user: "u".into(),
            gpu_id: 0,
            start_time: end - 10,
            end_time: end,
            duration_seconds: 10.0,
            reservation_type: "run".into(),
        };
        let november = 1_795_000_000; // 2026-11-18
        store.append_history(&[record(november)], november);
        let december_end = month_end((2026, 11)) + 86_400 * 20;
        store.append_history(&[record(december_end)], december_end);
        assert_eq!(store.history(0).unwrap().len(), 2);
        let names = || {
            let mut names: Vec<String> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(), ["history-2026-11.jsonl", "history-2026-12.jsonl"]);
        // Starting a month's file drops November once all of it is older than 90 days.
        let later = month_end((2026, 11)) + HISTORY_DAYS * 86_400 + 1;
        store.append_history(&[record(later)], later);
        assert_eq!(names(), ["history-2026-12.jsonl", "history-2027-03.jsonl"]);
    }

    #[test]
    fn state_round_trips() {
        let pool = Pool::new(3, 1000);
        assert_eq!(decode_state(&encode_state(&pool)).unwrap(), pool);
    }

    #[test]
    fn refuses_future_and_garbage() {
        assert!(matches!(
            decode_state(br#"{"schema":99,"gpus":[]}"#).unwrap_err(),
            Unreadable::Newer(99)
        ));
        assert!(decode_state(b"").is_err());
        assert!(decode_state(b"[]").is_err());
        assert!(decode_state(br#"{"schema":1,"gpus":[1]}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)
        ) {
            let _ = decode_state(&bytes);
        }

        #[test]
        fn decoding_json_shaped_input_never_panics(
            text in concat!(
                r#"\{"schema":1,"gpus":\[(\{"#,
                r#"("user"|"start_time"|"type"|"expiry_time"|"owner_process"):"#,
                r#"("x"|1|-1|1e300|null|\{\}|\[\]|"2025-01-01T00:00:00Z")"#,
                r#"\},?){0,4}\]\}"#
            )
        ) {
            let _ = decode_state(text.as_bytes());
        }
    }
}
