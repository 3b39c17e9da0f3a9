//! Where the pool lives. Every command is one read-modify-write of the pool, so a store
//! offers one operation, [`Store::transact`], plus a cheap snapshot read; all policy runs
//! in Rust inside the closure and is the same for every store.

mod file;
mod redis;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::host::{HostName, Keyspace, PoolRead, PublishedGpus, Registration};
use crate::model::{HistoryRecord, Pool, Timestamp};

/// The pool as last committed, and the store's time when it was read.
pub struct Snapshot {
    /// `None` when the pool is not initialized.
    pub pool: Option<Pool>,
    pub now: Timestamp,
}

pub use file::FileStore;
pub use redis::RedisStore;

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
    Redis(Box<RedisStore>),
}

/// How to open a store beyond its URL.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// Where this host's pool lives among a Redis store's keys (config `host`); the
    /// embedded store holds one pool and ignores it.
    pub keyspace: Keyspace,
    /// The certificate authority of a `rediss://` server (config `tls_ca_file`).
    pub tls_ca_file: Option<PathBuf>,
    /// Opened only to look at other hosts' pools (the lab views): a message about the
    /// store says what to check there, not how to choose another store for this host.
    pub viewing: bool,
}

/// GPU entries a store holds above its pool's size (see [`Store::entries_beyond`]).
pub struct EntriesBeyond {
    pub ids: Vec<u32>,
    /// The key that holds the pool's size, for the message that tells how to fix it by
    /// hand.
    pub count_key: String,
}

/// The hosts registered in a store, by name.
pub type Registry = BTreeMap<HostName, Registration>;

impl Store {
    /// `file:///dir`, `redis://host:port/db`, `rediss://` (TLS), `redis+unix:///path/to/socket`
    /// (also `unix:///path`).
    pub fn open(url: &str, options: &StoreOptions) -> Result<Store> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("file") => {
                let path = &url["file://".len()..];
                if !path.starts_with('/') {
                    return Err(Error::usage(format!(
                        "store URL '{}' needs an absolute path, e.g. file:///var/lib/canhazgpu",
                        printable_url(url)
                    )));
                }
                Ok(Store::File(FileStore::new(PathBuf::from(path))))
            }
            Some("redis" | "rediss" | "redis+unix" | "unix") => {
                Ok(Store::Redis(Box::new(RedisStore::open(url, options)?)))
            }
            _ => Err(Error::usage(format!(
                "unknown store URL '{}'; use file:///path/to/dir (embedded store), \
                 redis://host:port/db, rediss://host:port/db (TLS) or \
                 redis+unix:///path/to/redis.sock",
                printable_url(url)
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
        let pool = pool.ok_or_else(|| self.missing_pool())?;
        Ok((pool, now))
    }

    /// Why there is no pool, as well as the store can tell: never initialized, or
    /// vanished (Redis restarted without its data, or evicted it).
    pub fn missing_pool(&self) -> Error {
        match self {
            Store::File(_) => Error::not_initialized(&self.describe()),
            Store::Redis(store) => store.missing_pool(),
        }
    }

    /// Whether every client of this store reads the same clock, so that a time in the
    /// future can only mean that the clock was stepped back and may be repaired (see
    /// [`crate::liveness::Rules::repair_clock_steps`]).
    pub fn clock_is_shared(&self) -> bool {
        matches!(self, Store::File(_))
    }

    /// What this host's GPU library said, for other hosts' views (see
    /// [`PublishedGpus`]): written by a named host on Redis when what it published last
    /// is [`crate::host::PUBLISH_INTERVAL_SECONDS`] old or more, as of the last read of
    /// its pool; best effort, and nothing at all elsewhere. `facts` gets the store's time.
    pub fn publish_gpus(&self, facts: impl FnOnce(Timestamp) -> Option<PublishedGpus>) {
        if let Store::Redis(store) = self {
            store.publish_gpus(facts);
        }
    }

    /// Hands this host's name (config `host`) to this machine in the registry,
    /// whichever machine registered it before (`admin --take-over-host`).
    pub fn take_over_host(&self, name: &HostName) -> Result<()> {
        match self {
            Store::Redis(store) => store.take_over_host(name),
            Store::File(_) => Err(Error::usage(
                "--take-over-host is for a host named (config `host`) in a Redis store \
                 shared by several hosts; the embedded store has no registry of names",
            )),
        }
    }

    /// What the lab views read, read-only and in a few round trips: the registry, when
    /// `with_registry`, for `choose` to pick keyspaces from, then the pools under them,
    /// with their history since `history_since` when given. The embedded store holds one
    /// pool and no registry. Each pool may fail on its own; the outer error is the store's.
    pub fn read_pools(
        &self,
        with_registry: bool,
        choose: &mut dyn FnMut(&Registry) -> Vec<Keyspace>,
        history_since: Option<Timestamp>,
    ) -> Result<Vec<Result<PoolRead>>> {
        match self {
            Store::Redis(store) => store.read_pools(with_registry, choose, history_since),
            Store::File(store) => store.read_pools(choose, history_since),
        }
    }

    /// GPU entries stored beyond the pool's size, which no command sees (Redis only:
    /// `canhazgpu:gpu_count` was lowered by hand, say); `None` when there are none. One
    /// cheap query; for `status`.
    pub fn entries_beyond(&self, count: usize) -> Result<Option<EntriesBeyond>> {
        match self {
            Store::File(_) => Ok(None),
            Store::Redis(store) => store.entries_beyond(count),
        }
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
        // The reason for a missing pool is asked after the transaction: the store is
        // busy with the transaction while its closure runs.
        let outcome = self.transact(|pool, now| match pool {
            Some(pool) => change(pool, now).map(Some),
            None => Ok(None),
        })?;
        outcome.ok_or_else(|| self.missing_pool())
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
    /// time, looked at a few times a second, which every commit changes (it renames a new
    /// file over the old one).
    pub fn watch_changes<T>(&self, body: impl FnOnce(&mut dyn FnMut(Duration) -> bool) -> T) -> T {
        match self {
            Store::Redis(store) => store.with_wakeups(|wait, _| body(wait)),
            Store::File(store) => store.watch_changes(body),
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

    /// Replaces whatever is stored, readable or not, with the pool `fresh` makes at the
    /// store's time: `admin --force` on a corrupt store. The work is bounded whatever
    /// the store holds (at most [`crate::model::MAX_GPUS`] GPU entries are cleared).
    pub fn overwrite(&self, fresh: impl FnOnce(Timestamp) -> Pool) -> Result<()> {
        match self {
            Store::File(store) => store.overwrite(fresh),
            Store::Redis(store) => store.overwrite(fresh),
        }
    }
}

/// A store URL as messages and logs may show it: without the user name and password
/// (`redis://user:secret@host/0` shows as `redis://host/0`; `?pass=` and `?user=` of
/// socket URLs are left out too). Every message that names a store goes through here.
pub fn printable_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    // Credentials end at the last '@' before the query: a password may itself hold '@'
    // or '/', so the first '/' cannot be trusted to end them. Socket URLs carry no host,
    // and their path may hold an '@' of its own.
    let location = if scheme.contains("unix") {
        match location.split_once('/') {
            Some((authority, path)) => match authority.rsplit_once('@') {
                Some(_) => format!("/{path}"),
                None => location.to_string(),
            },
            None => location.to_string(),
        }
    } else {
        match location.rsplit_once('@') {
            Some((_, host)) => host.to_string(),
            None => location.to_string(),
        }
    };
    let secret = |pair: &&str| {
        let name = pair.split('=').next().unwrap_or("");
        ["pass", "password", "user", "username"].contains(&name.to_ascii_lowercase().as_str())
    };
    let kept: Vec<&str> = query
        .map(|query| query.split('&').filter(|pair| !secret(pair)).collect())
        .unwrap_or_default();
    if kept.is_empty() {
        format!("{scheme}://{location}")
    } else {
        format!("{scheme}://{location}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::printable_url;

    #[test]
    fn printable_urls_hold_no_credentials() {
        let cases = [
            (
                "redis://alice:s3cret@db.lab:6379/2",
                "redis://db.lab:6379/2",
            ),
            ("redis://:s3cret@db.lab", "redis://db.lab"),
            ("redis://u:p@ss/w@rd@db.lab:6379/0", "redis://db.lab:6379/0"),
            ("rediss://default:s3cret@[::1]:6380", "rediss://[::1]:6380"),
            ("redis://db.lab:6379/0", "redis://db.lab:6379/0"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret&user=alice",
                "redis+unix:///run/redis.sock?db=1",
            ),
            (
                "unix:///run/redis.sock?password=s3cret",
                "unix:///run/redis.sock",
            ),
            (
                "redis+unix:///tmp/a@b/redis.sock",
                "redis+unix:///tmp/a@b/redis.sock",
            ),
            ("file:///var/lib/canhazgpu", "file:///var/lib/canhazgpu"),
            ("not a url", "not a url"),
        ];
        for (url, shown) in cases {
            assert_eq!(printable_url(url), shown, "{url}");
        }
    }

    proptest::proptest! {
        #[test]
        fn a_password_never_shows(
            user in "[a-z]{0,6}",
            password in "[A-Za-z0-9@/:%!]{6,12}",
            host in "[a-z]{1,8}(:[0-9]{1,5})?",
        ) {
            let url = format!("redis://{user}:{password}@{host}/0");
            proptest::prop_assert_eq!(printable_url(&url), format!("redis://{host}/0"));
        }
    }
}
