//! One module per subcommand, and what they share: who is asking, what time it is, and
//! the liveness rules in force.

pub mod acquire;
pub mod admin;
pub mod asked;
pub mod completions;
pub mod gpus;
pub mod init;
pub mod man;
pub mod progress;
pub mod prompt;
pub mod queue;
pub mod release;
pub mod report;
pub mod reserve;
pub mod run;
pub mod status;
pub mod web;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::liveness::{self, ProcView, ProcessView, Rules};
use crate::model::{Owner, Pool, Timestamp};
use crate::store::Store;

pub struct Context {
    pub store: Store,
    /// The URL `store` was opened from, for the lab views' threads, which open their own.
    pub store_url: String,
    pub config: Config,
    pub view: ProcView,
    /// What a shell's layer records as `store`'s place (`CANHAZGPU_SHELL_STORE`): the
    /// URL when `--store` or the shell's layer chose it, `None` for the default
    /// (`CANHAZGPU_STORE` or the configuration).
    pub store_key: Option<String>,
}

impl Context {
    pub fn rules(&self) -> Rules {
        Rules {
            heartbeat_timeout: self.config.heartbeat_timeout(),
            repair_clock_steps: self.store.clock_is_shared(),
        }
    }

    /// The pool as it is now, for commands that only look: the cheap unlocked read is
    /// the truth unless something has ended since the last commit; then the sweep is
    /// committed, so that what is shown is what the store holds.
    /// Returns the store's time of the read along with the pool.
    pub fn current_pool(&self) -> Result<(Pool, Timestamp)> {
        let (mut pool, now) = self.store.snapshot_pool()?;
        if self.sweep(&mut pool, now) {
            return self.store.update(|pool, now| {
                self.sweep(pool, now);
                Ok((pool.clone(), now))
            });
        }
        Ok((pool, now))
    }

    /// A snapshot of the pool in the store a shell's layer records (`None`: the
    /// default store); shell layers may come from different stores.
    pub fn snapshot_of(&self, store_key: Option<&str>) -> Result<Option<Pool>> {
        // On this process's clock: shells compare their variables with their own.
        let local = |snapshot: crate::store::Snapshot| {
            let offset = clock_offset(snapshot.now);
            snapshot.pool.map(|pool| pool.shifted(offset))
        };
        if store_key == self.store_key.as_deref() {
            return self.store.snapshot().map(local);
        }
        let store = match store_key {
            Some(url) => Store::open(url, &self.config.store_options())?,
            None => {
                let env = std::env::var(crate::config::STORE_ENV).ok();
                self.config.open_store(env.as_deref())?
            }
        };
        store.snapshot().map(local)
    }

    /// This process as a reservation or queue owner.
    pub fn own_identity(&self) -> Result<Owner> {
        self.view.owner(std::process::id()).ok_or_else(|| {
            Error::failure(
                "cannot read this process's own entry in /proc, which liveness checks need; \
                 is /proc mounted?",
            )
        })
    }

    /// Frees whatever has ended; every transaction starts with this.
    pub fn sweep(&self, pool: &mut Pool, now: Timestamp) -> bool {
        liveness::sweep(pool, now, &self.rules(), &self.view)
    }
}

pub use crate::model::local_now as now;

/// How far this process's clock runs ahead of the store's (negative: behind), counting
/// only what one second of reading apart cannot explain. What goes into a shell is moved
/// by it ([`Pool::shifted`]): the prompt hook compares `CANHAZGPU_EXPIRES` with the
/// shell's own clock, which is this process's.
pub fn clock_offset(store_now: Timestamp) -> i64 {
    let offset = now() - store_now;
    if offset.abs() <= 2 { 0 } else { offset }
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

pub use crate::admission::format_ids;
