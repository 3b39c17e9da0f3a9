//! Which GPUs a request gets: a pure function of the pool snapshot, so the policy is the
//! same for every store and can be tested without one.

use std::collections::BTreeSet;

use crate::model::Pool;

#[derive(Debug, PartialEq, Eq)]
pub struct Shortage {
    pub requested: usize,
    pub available: usize,
}

/// How free GPUs are ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// Least recently released first, so that wear and heat spread over all GPUs
    #[default]
    Lru,
    /// The GPUs the requesting user released most recently first, then LRU: the same card
    /// again for benchmarks and warm caches
    Sticky,
}

/// Picks `count` free GPUs, all or nothing.
///
/// LRU: GPUs never used come first, then those released longest ago; ties go to the
/// lowest id. Sticky puts `user`'s own most recently released GPUs in front of that.
/// `unusable` holds GPUs that are free in the pool but must not be handed out (for example
/// in use by a process without a reservation).
pub fn choose(
    pool: &Pool,
    count: usize,
    unusable: &BTreeSet<u32>,
    policy: Policy,
    user: &str,
) -> Result<Vec<u32>, Shortage> {
    let mut free: Vec<_> = pool
        .gpus
        .iter()
        .filter(|slot| slot.reservation.is_none() && !unusable.contains(&slot.id))
        .map(|slot| {
            let mine = policy == Policy::Sticky && slot.last_user.as_deref() == Some(user);
            // Mine first, most recent first among mine; then LRU, where `None` (never
            // used) sorts before any time.
            let rank = if mine {
                (0, std::cmp::Reverse(slot.last_released), None)
            } else {
                (1, std::cmp::Reverse(None), slot.last_released)
            };
            (rank, slot.id)
        })
        .collect();
    if free.len() < count {
        return Err(Shortage {
            requested: count,
            available: free.len(),
        });
    }
    free.sort_unstable();
    let mut chosen: Vec<u32> = free.into_iter().take(count).map(|(_, id)| id).collect();
    chosen.sort_unstable();
    Ok(chosen)
}

/// Why a GPU asked for by id cannot be had.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NoSuchGpu(u32),
    HeldBy(u32, String),
    InUseWithoutReservation(u32),
}

/// Checks that every GPU in `ids` can be handed out; all refusals, or none.
pub fn check_ids(pool: &Pool, ids: &[u32], unusable: &BTreeSet<u32>) -> Result<(), Vec<Refusal>> {
    let refusals: Vec<Refusal> = ids
        .iter()
        .filter_map(|&id| match pool.gpus.get(id as usize) {
            None => Some(Refusal::NoSuchGpu(id)),
            Some(slot) => match &slot.reservation {
                Some(r) => Some(Refusal::HeldBy(id, r.user.clone())),
                None if unusable.contains(&id) => Some(Refusal::InUseWithoutReservation(id)),
                None => None,
            },
        })
        .collect();
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(refusals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Reservation};

    fn pool_with(released: &[(u32, Option<i64>)], busy: &[u32]) -> Pool {
        let mut pool = Pool::new(8, 0);
        for &(id, at) in released {
            pool.gpus[id as usize].last_released = at;
        }
        for &id in busy {
            pool.gpus[id as usize].reservation = Some(Reservation {
                user: "x".into(),
                actual_user: None,
                kind: Kind::Manual,
                start_time: 0,
                last_heartbeat: 0,
                expiry_time: Some(1),
                note: None,
                owner: None,
                request_id: None,
            });
        }
        pool
    }

    #[test]
    fn seed_lru_example() {
        let now = 100_000;
        // GPUs 1, 2 and 5 free, released 3 h, 1 h and 2 h ago; all others busy.
        let pool = pool_with(
            &[
                (1, Some(now - 3 * 3600)),
                (2, Some(now - 3600)),
                (5, Some(now - 2 * 3600)),
            ],
            &[0, 3, 4, 6, 7],
        );
        assert_eq!(
            choose(&pool, 2, &BTreeSet::new(), Policy::Lru, "u"),
            Ok(vec![1, 5])
        );
    }

    #[test]
    fn never_used_first_then_lowest_id() {
        let pool = pool_with(&[(0, Some(10)), (1, Some(10)), (2, Some(5))], &[]);
        assert_eq!(
            choose(&pool, 3, &BTreeSet::new(), Policy::Lru, "u"),
            Ok(vec![3, 4, 5])
        );
        let pool = pool_with(
            &[
                (3, Some(1)),
                (4, Some(1)),
                (5, Some(1)),
                (6, Some(1)),
                (7, Some(1)),
            ],
            &[0, 1, 2],
        );
        assert_eq!(
            choose(&pool, 2, &BTreeSet::new(), Policy::Lru, "u"),
            Ok(vec![3, 4])
        );
    }

    #[test]
    fn sticky_prefers_my_most_recent_gpus_then_lru() {
        let mut pool = pool_with(
            &[(0, Some(10)), (1, Some(50)), (2, Some(40)), (3, Some(5))],
            &[],
        );
        pool.gpus[1].last_user = Some("me".into());
        pool.gpus[2].last_user = Some("me".into());
        pool.gpus[3].last_user = Some("you".into());
        assert_eq!(
            choose(&pool, 1, &BTreeSet::new(), Policy::Sticky, "me"),
            Ok(vec![1])
        );
        assert_eq!(
            choose(&pool, 2, &BTreeSet::new(), Policy::Sticky, "me"),
            Ok(vec![1, 2])
        );
        // Then LRU: never-used 4 before 3 (released at 5).
        assert_eq!(
            choose(&pool, 3, &BTreeSet::new(), Policy::Sticky, "me"),
            Ok(vec![1, 2, 4])
        );
        assert_eq!(
            choose(&pool, 1, &BTreeSet::new(), Policy::Lru, "me"),
            Ok(vec![4])
        );
    }

    #[test]
    fn specific_ids_are_all_checked() {
        let pool = pool_with(&[], &[1]);
        assert_eq!(check_ids(&pool, &[0, 2], &BTreeSet::new()), Ok(()));
        assert_eq!(
            check_ids(&pool, &[1, 2, 9], &BTreeSet::from([2])),
            Err(vec![
                Refusal::HeldBy(1, "x".into()),
                Refusal::InUseWithoutReservation(2),
                Refusal::NoSuchGpu(9)
            ])
        );
    }

    #[test]
    fn all_or_nothing_and_exclusions() {
        let pool = pool_with(&[], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(
            choose(&pool, 3, &BTreeSet::new(), Policy::Lru, "u"),
            Err(Shortage {
                requested: 3,
                available: 2
            })
        );
        assert_eq!(
            choose(&pool, 2, &BTreeSet::from([6]), Policy::Lru, "u"),
            Err(Shortage {
                requested: 2,
                available: 1
            })
        );
        assert_eq!(
            choose(&pool, 1, &BTreeSet::from([6]), Policy::Lru, "u"),
            Ok(vec![7])
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn pools() -> impl Strategy<Value = (Pool, BTreeSet<u32>, usize)> {
            (1u32..16).prop_flat_map(|size| {
                (
                    proptest::collection::vec(
                        (any::<bool>(), proptest::option::of(0i64..1000)),
                        size as usize,
                    ),
                    proptest::collection::btree_set(0..size, 0..size as usize),
                    0..=size as usize + 1,
                )
                    .prop_map(move |(slots, unusable, count)| {
                        let mut pool = Pool::new(size, 0);
                        for (slot, (busy, released)) in pool.gpus.iter_mut().zip(slots) {
                            slot.last_released = released;
                            if busy {
                                slot.reservation = pool_with(&[], &[0]).gpus[0].reservation.clone();
                            }
                        }
                        (pool, unusable, count)
                    })
            })
        }

        proptest! {
            #[test]
            fn never_busy_excluded_or_duplicate_and_exact_or_nothing(
                (pool, unusable, count) in pools()
            ) {
                let usable = pool
                    .gpus
                    .iter()
                    .filter(|s| s.reservation.is_none() && !unusable.contains(&s.id))
                    .count();
                let policy = if count % 2 == 0 { Policy::Lru } else { Policy::Sticky };
                match choose(&pool, count, &unusable, policy, "me") {
                    Ok(ids) => {
                        prop_assert_eq!(ids.len(), count);
                        let distinct: BTreeSet<_> = ids.iter().collect();
                        prop_assert_eq!(distinct.len(), count);
                        for id in ids {
                            prop_assert!(pool.gpus[id as usize].reservation.is_none());
                            prop_assert!(!unusable.contains(&id));
                        }
                    }
                    Err(shortage) => {
                        prop_assert!(usable < count);
                        prop_assert_eq!(shortage, Shortage { requested: count, available: usable });
                    }
                }
            }
        }
    }
}
