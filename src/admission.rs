//! Queue admission: whether a request may be served now, and with which GPUs. A pure
//! decision on the pool, beside [`crate::alloc`], which picks among free GPUs.
//!
//! The queue is strict: a request is served only when everything the requests queued
//! before it want still fits in what stays free, and no GPU that a request ahead asked
//! for by id is given to it. So a large request at the head is never starved by small
//! ones arriving behind it, and a request that does not wait cannot jump the queue.
//! Requests behind may still be served first when that takes nothing the ones ahead of
//! them need.

use std::collections::BTreeSet;

use crate::alloc::{self, Policy, Refusal};
use crate::duration::format_hms;
use crate::model::{Kind, Pool, Timestamp};

pub struct Request<'a> {
    pub count: u32,
    pub gpu_ids: Option<&'a [u32]>,
    pub kind: Kind,
    pub user: &'a str,
    pub actual_user: Option<&'a str>,
    pub policy: Policy,
    /// GPUs NVML found in use (more memory than the threshold), reserved or not, just
    /// before the request's first transaction.
    pub unusable: &'a BTreeSet<u32>,
}

impl Request<'_> {
    /// How many GPUs it wants.
    pub fn wanted(&self) -> u32 {
        self.gpu_ids.map_or(self.count, |ids| ids.len() as u32)
    }

    pub fn describe(&self) -> String {
        match self.gpu_ids {
            Some(ids) => format!("GPU(s) {}", format_ids(ids)),
            None => format!("{} GPU(s)", self.count),
        }
    }
}

/// Why a request cannot be served right now.
#[derive(Debug, PartialEq, Eq)]
pub enum NotYet {
    /// Waiting may help.
    Busy(String),
    /// Waiting cannot help (a GPU id outside the pool, more GPUs than the pool has, or
    /// than it has without the GPUs in use outside the tool).
    Never(String),
}

/// When a request is judged: the store's time now, and of its first transaction, just
/// after NVML was asked which GPUs are in use.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub now: Timestamp,
    pub probed_at: Timestamp,
}

/// The GPUs of `request.unusable` that are free in the pool: in use outside the tool.
/// One released since the request's first transaction (`probed_at`, in the store's
/// clock, just after NVML was asked) is not among them: NVML saw its holder's job on it,
/// which has ended or is the holder's to answer for now; without this a waiter would
/// never get a GPU whose holder was using it when the waiter asked.
fn busy_outside(pool: &Pool, request: &Request, probed_at: Timestamp) -> BTreeSet<u32> {
    request
        .unusable
        .iter()
        .copied()
        .filter(|&id| {
            pool.gpus.get(id as usize).is_some_and(|slot| {
                slot.reservation.is_none() && slot.last_released.is_none_or(|t| t < probed_at)
            })
        })
        .collect()
}

/// Free GPUs that `request` may be handed: not reserved, not in use outside the tool.
pub fn usable_free(pool: &Pool, request: &Request, probed_at: Timestamp) -> usize {
    free_but(pool, &busy_outside(pool, request, probed_at))
}

/// Free GPUs of `pool` but those in `outside`.
fn free_but(pool: &Pool, outside: &BTreeSet<u32>) -> usize {
    pool.gpus
        .iter()
        .filter(|slot| slot.reservation.is_none() && !outside.contains(&slot.id))
        .count()
}

/// The GPUs `request` gets from `pool` now, as the waiter at `position` (`None`: not
/// queued, behind everyone), or why not. The caller writes the reservations.
pub fn admit(
    pool: &Pool,
    request: &Request,
    position: Option<usize>,
    at: At,
) -> Result<Vec<u32>, NotYet> {
    let At { now, probed_at } = at;
    let total = pool.gpus.len();
    let wanted = request.wanted() as usize;
    if wanted > total {
        return Err(NotYet::Never(format!(
            "Not enough GPUs available: requested {wanted}, this host's pool has only \
             {total} GPU(s)"
        )));
    }
    if let Some(until) = pool.rebuilding_until.filter(|&until| now < until) {
        return Err(NotYet::Busy(format!(
            "the pool is being rebuilt: the store lost it, and running jobs are putting \
             their reservations back at their heartbeats; no GPU is handed out for another \
             {}",
            format_hms(until - now)
        )));
    }
    let ahead = pool.wanted_ahead(position);
    let outside = busy_outside(pool, request, probed_at);
    let usable_free = free_but(pool, &outside);
    let waiting_ahead = || {
        let waiting = position.unwrap_or(pool.queue.len());
        NotYet::Busy(format!(
            "Not enough GPUs available: requested {wanted}, {usable_free} free of {total}, \
             but {waiting} request(s) waiting ahead want {ahead} of them first (see \
             `canhazgpu queue`)"
        ))
    };
    // GPUs that requests waiting ahead asked for by id are theirs next. The count check
    // below cannot protect them: without this, later requests could take them whenever
    // enough others were free, and such a waiter could wait for ever while the pool
    // stood mostly idle (found by tests/e2e/stress.rs; the property test below guards it).
    let claimed = pool.ids_wanted_ahead(position);
    let ids = match request.gpu_ids {
        Some(ids) => {
            alloc::check_ids(pool, ids, &outside)
                .map_err(|refusals| explain_refusals(&refusals, total))?;
            let taken: Vec<String> = ids
                .iter()
                .filter(|id| claimed.contains(id))
                .map(|id| format!("GPU {id} is wanted by a request waiting ahead"))
                .collect();
            if !taken.is_empty() {
                return Err(NotYet::Busy(format!(
                    "cannot have the GPUs asked for: {} (see `canhazgpu queue`)",
                    taken.join("; ")
                )));
            }
            ids.to_vec()
        }
        // The tool does not watch GPUs in use outside it while a request waits: only
        // GPUs that reservations hold can come back.
        None if wanted > total - outside.len() => {
            return Err(NotYet::Never(explain_shortage(
                pool,
                &outside,
                wanted,
                usable_free,
            )));
        }
        None => {
            let excluded: BTreeSet<u32> = outside.union(&claimed).copied().collect();
            match alloc::choose(pool, wanted, &excluded, request.policy, request.user) {
                Ok(ids) => ids,
                // Short only of GPUs others wait for: say so rather than "0 available"
                // while status shows them free.
                Err(_) if !claimed.is_empty() && usable_free < ahead + wanted => {
                    return Err(waiting_ahead());
                }
                Err(shortage) => {
                    return Err(NotYet::Busy(explain_shortage(
                        pool,
                        &outside,
                        wanted,
                        shortage.available,
                    )));
                }
            }
        }
    };
    if ahead > 0 && usable_free < ahead + wanted {
        return Err(waiting_ahead());
    }
    Ok(ids)
}

fn explain_refusals(refusals: &[Refusal], total: usize) -> NotYet {
    let mut never = false;
    let reasons: Vec<String> = refusals
        .iter()
        .map(|refusal| match refusal {
            Refusal::NoSuchGpu(id) => {
                never = true;
                // Say which ids exist: that is what the user has to choose from.
                format!(
                    "GPU {id} is not in the pool, which has GPUs 0 to {}",
                    total.saturating_sub(1)
                )
            }
            Refusal::HeldBy(id, user) => format!("GPU {id} is reserved by {user}"),
            // The tool does not watch such use end while a request waits.
            Refusal::InUseWithoutReservation(id) => {
                never = true;
                format!(
                    "GPU {id} is in use without a reservation (see `canhazgpu status`; \
                     --force takes it anyway)"
                )
            }
        })
        .collect();
    let message = format!("cannot have the GPUs asked for: {}", reasons.join("; "));
    if never {
        NotYet::Never(message)
    } else {
        NotYet::Busy(message)
    }
}

fn explain_shortage(
    pool: &Pool,
    outside: &BTreeSet<u32>,
    wanted: usize,
    available: usize,
) -> String {
    let total = pool.gpus.len();
    let hint = if outside.is_empty() {
        "see `canhazgpu status` for who holds them".to_string()
    } else {
        let force = if available + outside.len() >= wanted {
            "`--force` hands them out anyway"
        } else if wanted <= total - outside.len() {
            "the others are reserved"
        } else {
            "waiting cannot free enough while they are; `--force` hands them out anyway"
        };
        let ids: Vec<u32> = outside.iter().copied().collect();
        format!(
            "GPU(s) {} have no reservation but are in use (see `canhazgpu status` for \
             whose processes); {force}",
            format_ids(&ids)
        )
    };
    format!(
        "Not enough GPUs available: requested {wanted}, {available} available of {total}; {hint}"
    )
}

/// `[1, 5]`, as every message lists GPUs.
pub fn format_ids(ids: &[u32]) -> String {
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("[{}]", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Reservation, Waiter};

    /// Judged at `now`, NVML asked at the start of time.
    fn at(now: Timestamp) -> At {
        At { now, probed_at: 0 }
    }

    fn held() -> Option<Reservation> {
        Some(Reservation {
            user: "x".into(),
            actual_user: None,
            kind: Kind::Manual,
            start_time: 0,
            last_heartbeat: 0,
            expiry_time: Some(10_000),
            note: None,
            owner: None,
            request_id: None,
        })
    }

    fn waiter(count: u32, gpu_ids: Option<Vec<u32>>) -> Waiter {
        Waiter {
            id: format!("w{count}{gpu_ids:?}"),
            user: "w".into(),
            actual_user: None,
            count: gpu_ids.as_ref().map_or(count, |ids| ids.len() as u32),
            gpu_ids,
            kind: "run".into(),
            enqueued_at: 0,
            ticket: 0,
            last_heartbeat: 0,
            deadline: None,
            owner: None,
        }
    }

    fn request<'a>(
        count: u32,
        gpu_ids: Option<&'a [u32]>,
        unusable: &'a BTreeSet<u32>,
    ) -> Request<'a> {
        Request {
            count,
            gpu_ids,
            kind: Kind::Run,
            user: "me",
            actual_user: None,
            policy: Policy::Lru,
            unusable,
        }
    }

    fn pool(size: u32, busy: &[u32], queue: Vec<Waiter>) -> Pool {
        let mut pool = Pool::new(size, 0);
        for &id in busy {
            pool.gpus[id as usize].reservation = held();
        }
        pool.queue = queue;
        pool
    }

    #[test]
    fn a_newcomer_cannot_jump_the_queue() {
        let none = BTreeSet::new();
        // 2 of 4 free; the head waits for 3.
        let pool = pool(4, &[0, 1], vec![waiter(3, None)]);
        let refused = admit(&pool, &request(1, None, &none), None, at(0)).unwrap_err();
        assert!(
            matches!(&refused, NotYet::Busy(m) if m.contains("1 request(s) waiting ahead want 3")),
            "{refused:?}"
        );
        // The head itself is short too, and says so plainly.
        let head = admit(&pool, &request(3, None, &none), Some(0), at(0)).unwrap_err();
        assert!(
            matches!(&head, NotYet::Busy(m) if m.contains("2 available of 4")),
            "{head:?}"
        );
        // A small one behind a small head fits beside it.
        let pool = self::pool(4, &[0, 1], vec![waiter(1, None)]);
        assert_eq!(
            admit(&pool, &request(1, None, &none), None, at(0)),
            Ok(vec![2])
        );
    }

    #[test]
    fn gpus_claimed_by_id_ahead_stay_theirs() {
        let none = BTreeSet::new();
        let pool = pool(4, &[], vec![waiter(0, Some(vec![0, 1]))]);
        let ids: &[u32] = &[1];
        assert!(matches!(
            admit(&pool, &request(1, Some(ids), &none), None, at(0)),
            Err(NotYet::Busy(m)) if m.contains("GPU 1 is wanted by a request waiting ahead")
        ));
        assert_eq!(
            admit(&pool, &request(2, None, &none), None, at(0)),
            Ok(vec![2, 3])
        );
    }

    #[test]
    fn impossible_requests_are_never_and_a_rebuilding_pool_serves_nobody() {
        let none = BTreeSet::new();
        let mut pool = pool(2, &[], vec![]);
        assert!(matches!(
            admit(&pool, &request(3, None, &none), None, at(0)),
            Err(NotYet::Never(_))
        ));
        let ids: &[u32] = &[5];
        assert!(matches!(
            admit(&pool, &request(1, Some(ids), &none), None, at(0)),
            Err(NotYet::Never(m)) if m.contains("GPUs 0 to 1")
        ));
        pool.rebuilding_until = Some(100);
        assert!(matches!(
            admit(&pool, &request(1, None, &none), Some(0), at(40)),
            Err(NotYet::Busy(m)) if m.contains("rebuilt") && m.contains("0h 1m 0s")
        ));
        assert_eq!(
            admit(&pool, &request(1, None, &none), Some(0), at(100)),
            Ok(vec![0])
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A pool of up to 8 GPUs, some held, some unusable, and a queue of requests for
        /// a count or for ids.
        fn scenes() -> impl Strategy<Value = (Pool, BTreeSet<u32>)> {
            (1u32..=8).prop_flat_map(|size| {
                let wants = prop_oneof![
                    (1..=size).prop_map(|count| (count, None)),
                    proptest::collection::btree_set(0..size, 1..=size as usize)
                        .prop_map(|ids| (0, Some(ids.into_iter().collect::<Vec<u32>>()))),
                ];
                (
                    proptest::collection::vec(any::<bool>(), size as usize),
                    proptest::collection::vec(wants, 0..5),
                    proptest::collection::btree_set(0..size, 0..=2),
                )
                    .prop_map(move |(busy, queue, unusable)| {
                        let busy: Vec<u32> = (0..size).filter(|&id| busy[id as usize]).collect();
                        let queue = queue
                            .into_iter()
                            .map(|(count, ids)| waiter(count, ids))
                            .collect();
                        (pool(size, &busy, queue), unusable)
                    })
            })
        }

        /// The request of the waiter at `position`, as that waiter would make it.
        fn as_request<'a>(waiter: &'a Waiter, unusable: &'a BTreeSet<u32>) -> Request<'a> {
            request(waiter.count, waiter.gpu_ids.as_deref(), unusable)
        }

        fn take(pool: &Pool, ids: &[u32]) -> Pool {
            let mut after = pool.clone();
            for &id in ids {
                after.gpus[id as usize].reservation = held();
            }
            after
        }

        proptest! {
            /// Serving anyone never takes from a waiter ahead what it could have had:
            /// every waiter ahead that could be served before still can be after. This
            /// is the starvation bug the 64-client stress test once found (a later
            /// request took a GPU the head had asked for by id), as a property.
            #[test]
            fn serving_never_hurts_a_waiter_ahead(
                (pool, unusable) in scenes(),
                who in 0usize..6,
                count in 1u32..=8,
                ids in proptest::option::of(proptest::collection::btree_set(0u32..8, 1..3)),
            ) {
                let position = (who < pool.queue.len()).then_some(who);
                let ids: Option<Vec<u32>> = ids.map(|ids| ids.into_iter().collect());
                let request = match position {
                    Some(p) => as_request(&pool.queue[p], &unusable),
                    None => super::request(count, ids.as_deref(), &unusable),
                };
                let Ok(granted) = admit(&pool, &request, position, at(0)) else { return Ok(()) };
                prop_assert_eq!(granted.len(), request.wanted() as usize);
                for id in &granted {
                    prop_assert!(pool.gpus[*id as usize].reservation.is_none());
                    prop_assert!(!unusable.contains(id));
                }
                let after = take(&pool, &granted);
                let ahead = position.unwrap_or(pool.queue.len());
                for earlier in 0..ahead {
                    let theirs = as_request(&pool.queue[earlier], &unusable);
                    if admit(&pool, &theirs, Some(earlier), at(0)).is_ok() {
                        prop_assert!(
                            admit(&after, &theirs, Some(earlier), at(0)).is_ok(),
                            "serving {:?} at {:?} took what waiter {} needed",
                            granted, position, earlier
                        );
                    }
                }
            }

            /// The head of the queue is served whenever what it asks for is free.
            #[test]
            fn the_head_is_served_when_its_gpus_are_free((pool, unusable) in scenes()) {
                let Some(head) = pool.queue.first() else { return Ok(()) };
                let usable = |id: &u32| {
                    pool.gpus[*id as usize].reservation.is_none() && !unusable.contains(id)
                };
                let free = (0..pool.gpus.len() as u32).filter(usable).count();
                let fits = match &head.gpu_ids {
                    Some(ids) => ids.iter().all(usable),
                    None => free >= head.count as usize,
                };
                let served = admit(&pool, &as_request(head, &unusable), Some(0), at(0)).is_ok();
                prop_assert_eq!(served, fits);
            }
        }
    }
}
