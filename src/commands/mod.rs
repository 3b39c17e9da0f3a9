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
use crate::gpu_env::Device;
use crate::liveness::{self, ProcView, ProcessView, Rules};
use crate::model::{Owner, Pool, Timestamp};
use crate::shell::session::{Clock, Pools, Session, Truth};
use crate::shell::vars::{Lost, Vars};
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

    /// Brings the variables `vars` of `session`'s shell in line with the stores its
    /// layers are in: `store_now` and `pool` are this context's store's time and pool,
    /// which the caller read; other stores are read here. Everything moves to this process's clock,
    /// which the shell's prompt hook compares `CANHAZGPU_EXPIRES` with. Tells on stderr
    /// what ended, but for the GPUs in `told` (the caller's own news), and deletes the
    /// markers of layers that went.
    pub fn settle_shell(
        &self,
        session: &Session,
        vars: &Vars,
        (store_now, pool): (Timestamp, Option<Pool>),
        name: &dyn Fn(u32) -> Device,
        told: &[u32],
    ) -> Settled {
        let offset = clock_offset(store_now);
        let clock = Clock::at(store_now + offset);
        let known = (
            self.store_key.clone(),
            pool.map(|pool| pool.shifted(offset)),
        );
        let (pools, unread) = Pools::read(vars, known, |store| self.snapshot_of(store));
        for problem in unread {
            say!("canhazgpu: warning: {problem}");
        }
        let rules = self.rules();
        let truth = Truth::Store {
            pools: &pools,
            now: clock.unix(),
            rules: &rules,
        };
        let (after, lost) = session.settle(vars, truth, &self.view, name);
        Session::report(&untold(&lost, told));
        Session::forget(&lost, &self.view);
        Settled {
            vars: after,
            pools,
            clock,
        }
    }

    /// A snapshot of the pool in another store a shell's layer records (`None`: the
    /// default store); shell layers may come from different stores.
    fn snapshot_of(&self, store_key: Option<&str>) -> Result<Option<Pool>> {
        let store = match store_key {
            Some(url) => Store::open(url, &self.config.store_options())?,
            None => {
                let env = std::env::var(crate::config::STORE_ENV).ok();
                self.config.open_store(env.as_deref())?
            }
        };
        // On this process's clock: shells compare their variables with their own.
        let snapshot = store.snapshot()?;
        let offset = clock_offset(snapshot.now);
        Ok(snapshot.pool.map(|pool| pool.shifted(offset)))
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

/// A shell's variables after [`Context::settle_shell`].
pub struct Settled {
    pub vars: Vars,
    /// The pools they were judged against, on this process's clock.
    pub pools: Pools,
    /// Now, on this process's clock.
    pub clock: Clock,
}

/// `lost` without the GPUs in `told`.
fn untold(lost: &[Lost], told: &[u32]) -> Vec<Lost> {
    lost.iter()
        .filter_map(|layer| {
            let ended: Vec<_> = layer
                .ended
                .iter()
                .filter_map(|(why, ids)| {
                    let ids: Vec<u32> = ids
                        .iter()
                        .copied()
                        .filter(|id| !told.contains(id))
                        .collect();
                    (!ids.is_empty()).then(|| (why.clone(), ids))
                })
                .collect();
            (!ended.is_empty()).then(|| Lost {
                ended,
                ..layer.clone()
            })
        })
        .collect()
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
    crate::account::name_of(nix::unistd::getuid().as_raw())
}

pub use crate::admission::format_ids;
