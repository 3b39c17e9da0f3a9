//! Where the pool lives. Every command is one read-modify-write of the pool, so a store
//! offers one operation, [`Store::transact`], plus a cheap snapshot read; all policy runs
//! in Rust inside the closure and is the same for every store.

mod file;
mod redis;

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::model::{HistoryRecord, Pool, Timestamp};

/// The pool as last committed, and the store's time when it was read.
pub struct Snapshot {
    /// `None` when the pool is not initialized.
    pub pool: Option<Pool>,
    pub now: Timestamp,
}

pub use file::FileStore;
pub use redis::RedisStore;

/// How often [`Store::watch_changes`] looks at the embedded store's state file: a
/// `stat`, a few times a second.
pub const FILE_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The embedded store's default home: shared by every user of the host.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/canhazgpu";

/// The owner of a store's directory: the owner of a private embedded store is its admin.
pub enum DirectoryOwner {
    Uid(u32),
    /// An embedded store whose directory `admin` has yet to create.
    NotCreated,
    /// Redis: no directory.
    NoDirectory,
}

pub enum Store {
    File(FileStore),
    Redis(RedisStore),
}

impl Store {
    /// `file:///dir`, `redis://host:port/db`, `redis+unix:///path/to/socket` (also
    /// `unix:///path`).
    pub fn open(url: &str) -> Result<Store> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("file") => {
                let path = &url["file://".len()..];
                if !path.starts_with('/') {
                    return Err(Error::usage(format!(
                        "store URL '{url}' needs an absolute path, e.g. file:///var/lib/canhazgpu"
                    )));
                }
                Ok(Store::File(FileStore::new(PathBuf::from(path))))
            }
            Some("redis" | "redis+unix" | "unix") => Ok(Store::Redis(RedisStore::open(url)?)),
            _ => Err(Error::usage(format!(
                "unknown store URL '{url}'; use file:///path/to/dir (embedded store), \
                 redis://host:port/db or redis+unix:///path/to/redis.sock"
            ))),
        }
    }

    pub fn default_url() -> String {
        format!("file://{DEFAULT_STATE_DIR}")
    }

    /// For messages: which store was read.
    pub fn describe(&self) -> String {
        match self {
            Store::File(store) => store.describe(),
            Store::Redis(store) => store.describe(),
        }
    }

    /// [`Store::snapshot`] for commands that need an initialized pool.
    pub fn snapshot_pool(&self) -> Result<(Pool, Timestamp)> {
        let Snapshot { pool, now } = self.snapshot()?;
        let pool = pool.ok_or_else(|| Error::not_initialized(&self.describe()))?;
        Ok((pool, now))
    }

    /// The pool as last committed, without locking.
    pub fn snapshot(&self) -> Result<Snapshot> {
        match self {
            Store::File(store) => store.snapshot(),
            Store::Redis(store) => store.snapshot(),
        }
    }

    /// Finished reservations that ended at or after `since`.
    pub fn history(&self, since: Timestamp) -> Result<Vec<HistoryRecord>> {
        match self {
            Store::File(store) => store.history(since),
            Store::Redis(store) => store.history(since),
        }
    }

    /// Runs `change` on a consistent copy of the pool and commits what it changed
    /// atomically; the closure may run more than once when another client committed
    /// first, so it must only change the pool it is given. An error from the closure
    /// commits nothing.
    ///
    /// The closure gets the store's time: Redis's clock (read in the same round trip as
    /// the pool), so that every client of one store judges expiry and heartbeats alike
    /// whatever its own clock says; the embedded store's clients share this host's clock.
    ///
    /// The reservations a commit ends go to the store's usage history, derived from the
    /// pool before and after ([`crate::model::ended_between`]).
    pub fn transact<T>(
        &self,
        change: impl FnMut(&mut Option<Pool>, Timestamp) -> Result<T>,
    ) -> Result<T> {
        match self {
            Store::File(store) => store.transact(change),
            Store::Redis(store) => store.transact(change),
        }
    }

    /// [`Store::transact`] for commands that need an initialized pool.
    pub fn update<T>(
        &self,
        mut change: impl FnMut(&mut Pool, Timestamp) -> Result<T>,
    ) -> Result<T> {
        self.transact(|pool, now| match pool {
            Some(pool) => change(pool, now),
            None => Err(Error::not_initialized(&self.describe())),
        })
    }

    /// Runs `body` with a `wait(timeout)` that sleeps up to `timeout` and returns `true`
    /// when it was woken early because another client freed GPUs or left the queue (Redis
    /// publishes that); the file store has no such signal and just sleeps. The flag given
    /// to `body` says whether wake-ups work, so that it can poll less where they do.
    pub fn with_wakeups<T>(
        &self,
        body: impl FnOnce(&mut dyn FnMut(Duration) -> bool, bool) -> T,
    ) -> T {
        match self {
            Store::Redis(store) => store.with_wakeups(body),
            Store::File(_) => body(
                &mut |timeout| {
                    std::thread::sleep(timeout);
                    false
                },
                false,
            ),
        }
    }

    /// Runs `body` with a `wait(timeout)` for watchers of the whole pool (the dashboard):
    /// it returns `true` early when the pool may have changed. Redis: the wake channel,
    /// which announces frees and queue departures only, so watchers must still poll for
    /// the rest; the embedded store: the state file's identity, size and modification
    /// time, looked at every [`FILE_WATCH_INTERVAL`], which every commit changes (it
    /// renames a new file over the old one).
    pub fn watch_changes<T>(&self, body: impl FnOnce(&mut dyn FnMut(Duration) -> bool) -> T) -> T {
        match self {
            Store::Redis(store) => store.with_wakeups(|wait, _| body(wait)),
            Store::File(store) => {
                let mut seen = store.state_stamp();
                body(&mut |timeout| {
                    let deadline = std::time::Instant::now() + timeout;
                    loop {
                        let stamp = store.state_stamp();
                        if stamp != seen {
                            seen = stamp;
                            return true;
                        }
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            return false;
                        }
                        std::thread::sleep(left.min(FILE_WATCH_INTERVAL));
                    }
                })
            }
        }
    }

    /// Who owns the embedded store's directory, for the admin check.
    pub fn directory_owner(&self) -> DirectoryOwner {
        match self {
            Store::File(store) => store.directory_owner(),
            Store::Redis(_) => DirectoryOwner::NoDirectory,
        }
    }

    /// Prepares the store for `admin` (the file store creates its shared directory).
    pub fn prepare_for_admin(&self) -> Result<()> {
        match self {
            Store::File(store) => store.create_shared_dir(),
            Store::Redis(_) => Ok(()),
        }
    }

    /// Replaces whatever is stored, readable or not: `admin --force` on a corrupt store.
    pub fn overwrite(&self, pool: &Pool) -> Result<()> {
        match self {
            Store::File(store) => store.overwrite(pool),
            Store::Redis(store) => store.overwrite(pool),
        }
    }
}
