//! A host's pool as a viewer judges it: freed in memory of what has ended by the rules,
//! never written back, and summed up for the header and for `--free N`. Pure.

use crate::commands::gpus::Gpus;
use crate::host::PoolRead;
use crate::liveness::{self, ProcessView, Rules};
use crate::model::{HistoryRecord, Pool, Timestamp};
use crate::views::{self, HostSummary, HostView};

/// One host's pool, read and judged.
pub struct HostPool {
    /// As a sweep would leave it; the store still holds what the host last wrote.
    pub pool: Pool,
    /// The time it was judged at: the viewer's clock (views may not ask Redis for its
    /// time, which a read-only user cannot).
    pub now: Timestamp,
    pub gpus: Gpus,
    pub threshold_mib: u64,
    /// When the host last committed a change to its pool, where it records that.
    pub last_write: Option<Timestamp>,
    /// When the NVML facts in `gpus` were gathered; `None` when this command asked NVML.
    pub nvml_at: Option<Timestamp>,
    pub history: Vec<HistoryRecord>,
}

/// What the viewer brings to a host's pool.
pub struct Judge<'a> {
    pub now: Timestamp,
    pub rules: &'a Rules,
    /// This host's `/proc` for its own pool; nothing for another host's.
    pub view: &'a dyn ProcessView,
    /// NVML as this command probed it (this host), or `None` to take what the host
    /// published.
    pub local_gpus: Option<(Gpus, u64)>,
    /// The threshold for a host that published none.
    pub default_threshold_mib: u64,
}

impl Judge<'_> {
    /// The pool judged, or why there is none to show.
    pub fn judge(self, read: PoolRead) -> Result<HostPool, Problem> {
        let Some(mut pool) = read.pool else {
            return Err(Problem::answered(
                "its pool is not initialized; an administrator runs `canhazgpu admin` on that \
                 host",
            ));
        };
        liveness::sweep(&mut pool, self.now, self.rules, self.view);
        let (gpus, threshold_mib, nvml_at) = match (self.local_gpus, &read.published) {
            (Some((gpus, threshold)), _) => (gpus, threshold, None),
            (None, Some(facts)) => (
                Gpus::published(facts),
                facts.memory_threshold_mib,
                Some(facts.probed_at),
            ),
            (None, None) => (Gpus::none(), self.default_threshold_mib, None),
        };
        Ok(HostPool {
            pool,
            now: self.now,
            gpus,
            threshold_mib,
            last_write: read.last_write,
            nvml_at,
            history: read.history.unwrap_or_default(),
        })
    }
}

impl HostPool {
    /// The counts of the host's header and of `--free N`.
    pub fn summary(&self) -> HostSummary {
        HostSummary::of(&self.pool, &self.gpus, self.threshold_mib)
    }
}

/// One host in a lab view: read and judged, or why not.
pub struct HostState {
    pub name: String,
    /// Where its pool lives, without credentials.
    pub store: String,
    pub this_host: bool,
    pub outcome: Result<HostPool, Problem>,
}

/// Why a host has no pool to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Whether its store answered (the pool is missing or unreadable) or not at all.
    pub reachable: bool,
    /// What went wrong and what to check.
    pub message: String,
}

impl Problem {
    pub fn unreachable(message: impl Into<String>) -> Problem {
        Problem {
            reachable: false,
            message: message.into(),
        }
    }

    pub fn answered(message: impl Into<String>) -> Problem {
        Problem {
            reachable: true,
            message: message.into(),
        }
    }
}

impl HostState {
    pub fn view(&self) -> HostView {
        let (reachable, error) = match &self.outcome {
            Ok(_) => (true, None),
            Err(problem) => (problem.reachable, Some(problem.message.clone())),
        };
        let mut view = HostView {
            host: self.name.clone(),
            store: self.store.clone(),
            this_host: self.this_host,
            reachable,
            error,
            now: None,
            last_write: None,
            nvml_at: None,
            summary: None,
            gpus: Vec::new(),
            queue: Vec::new(),
        };
        if let Ok(host) = &self.outcome {
            view.gpus = views::gpu_views(&host.pool, &host.gpus, host.threshold_mib);
            view.queue = views::waiter_views(&host.pool.queue);
            view.summary = Some(host.summary());
            view.now = Some(host.now);
            view.last_write = host.last_write;
            view.nvml_at = host.nvml_at;
        }
        view
    }

    /// GPUs a request without `--wait` would get now (see [`HostSummary::free_now`]).
    pub fn free_now(&self) -> Option<usize> {
        Some(self.outcome.as_ref().ok()?.summary().free_now)
    }
}

/// `status --free N`: the hosts where a request for `wanted` GPUs would be served now,
/// the most free GPUs first (ties by name), as indices into `hosts`.
pub fn rank_free(hosts: &[HostState], wanted: usize) -> Vec<usize> {
    let mut fitting: Vec<(usize, usize)> = hosts
        .iter()
        .enumerate()
        .filter_map(|(index, host)| Some((index, host.free_now()?)))
        .filter(|&(_, free)| free >= wanted)
        .collect();
    fitting.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| hosts[a.0].name.cmp(&hosts[b.0].name))
    });
    fitting.into_iter().map(|(index, _)| index).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::InvisibleView;
    use crate::model::{Kind, Owner, Reservation, Waiter};
    use std::time::Duration;

    const RULES: Rules = Rules {
        heartbeat_timeout: Duration::from_secs(300),
        repair_clock_steps: false,
    };

    fn run_reservation(heartbeat: Timestamp) -> Reservation {
        Reservation {
            user: "bob".into(),
            actual_user: None,
            kind: Kind::Run,
            start_time: heartbeat,
            last_heartbeat: heartbeat,
            expiry_time: None,
            note: None,
            request_id: None,
            // An owner on this very machine and boot: still not this viewer's to judge.
            owner: Some(Owner {
                pid: std::process::id(),
                start_ticks: 1,
                boot_id: String::new(),
                pid_ns: 0,
            }),
        }
    }

    fn judge_other(read: PoolRead, now: Timestamp) -> Result<HostPool, Problem> {
        Judge {
            now,
            rules: &RULES,
            view: &InvisibleView,
            local_gpus: None,
            default_threshold_mib: 1024,
        }
        .judge(read)
    }

    #[test]
    fn another_hosts_pool_is_judged_by_heartbeats_in_memory() {
        let now = 100_000;
        let mut pool = Pool::new(3, 0);
        pool.gpus[0].reservation = Some(run_reservation(now - 10));
        pool.gpus[1].reservation = Some(run_reservation(now - 400));
        let read = PoolRead {
            pool: Some(pool.clone()),
            last_write: Some(now - 10),
            ..PoolRead::default()
        };
        let host = judge_other(read, now).unwrap();
        assert!(host.pool.gpus[0].reservation.is_some());
        assert!(host.pool.gpus[1].reservation.is_none(), "silent for 400 s");
        assert_eq!(host.last_write, Some(now - 10));
        assert!(host.gpus.devices().is_none());
        let Err(missing) = judge_other(PoolRead::default(), now) else {
            panic!("an uninitialized pool has nothing to show");
        };
        assert!(missing.reachable);
        assert!(missing.message.contains("not initialized"), "{missing:?}");
    }

    fn state(name: &str, free: u32, queue_wants: u32) -> HostState {
        let mut pool = Pool::new(8, 0);
        for slot in pool.gpus.iter_mut().skip(free as usize) {
            slot.reservation = Some(run_reservation(1_000));
        }
        if queue_wants > 0 {
            pool.queue.push(Waiter {
                id: "w".into(),
                user: "carol".into(),
                actual_user: None,
                count: queue_wants,
                gpu_ids: None,
                kind: "run".into(),
                enqueued_at: 1_000,
                last_heartbeat: 1_000,
                deadline: None,
                owner: None,
                ticket: 1,
            });
        }
        HostState {
            name: name.into(),
            store: "s".into(),
            this_host: false,
            outcome: Ok(HostPool {
                pool,
                now: 1_000,
                gpus: Gpus::none(),
                threshold_mib: 1024,
                last_write: None,
                nvml_at: None,
                history: Vec::new(),
            }),
        }
    }

    #[test]
    fn free_hosts_best_first_and_the_queue_comes_first() {
        let hosts = vec![
            state("a", 2, 0),
            state("b", 5, 0),
            state("c", 6, 5),
            state("d", 2, 0),
            HostState {
                name: "e".into(),
                store: "s".into(),
                this_host: false,
                outcome: Err(Problem::unreachable("gone")),
            },
        ];
        assert_eq!(rank_free(&hosts, 2), [1, 0, 3]);
        assert_eq!(rank_free(&hosts, 3), [1]);
        assert_eq!(hosts[2].free_now(), Some(1));
        assert!(rank_free(&hosts, 7).is_empty());
        let view = hosts[4].view();
        assert!(!view.reachable);
        assert_eq!(view.error.as_deref(), Some("gone"));
    }
}
