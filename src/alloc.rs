//! Which GPUs a request gets: a pure function of the pool snapshot, so the policy is the
//! same for every store and can be tested without one.

use std::collections::BTreeSet;

use crate::model::Pool;

#[derive(Debug, PartialEq, Eq)]
pub struct Shortage {
    pub requested: usize,
    pub available: usize,
}

/// Least recently released first: GPUs never used come first, then those released longest
/// ago; ties go to the lowest id. All or nothing.
///
/// `unusable` holds GPUs that are free in the pool but must not be handed out (for example
/// in use by a process without a reservation).
pub fn choose(pool: &Pool, count: usize, unusable: &BTreeSet<u32>) -> Result<Vec<u32>, Shortage> {
    let mut free: Vec<_> = pool
        .gpus
        .iter()
        .filter(|slot| slot.reservation.is_none() && !unusable.contains(&slot.id))
        .map(|slot| (slot.last_released, slot.id))
        .collect();
    if free.len() < count {
        return Err(Shortage {
            requested: count,
            available: free.len(),
        });
    }
    // `None` sorts before any time: never-used GPUs first.
    free.sort_unstable();
    let mut chosen: Vec<u32> = free.into_iter().take(count).map(|(_, id)| id).collect();
    chosen.sort_unstable();
    Ok(chosen)
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
        assert_eq!(choose(&pool, 2, &BTreeSet::new()), Ok(vec![1, 5]));
    }

    #[test]
    fn never_used_first_then_lowest_id() {
        let pool = pool_with(&[(0, Some(10)), (1, Some(10)), (2, Some(5))], &[]);
        assert_eq!(choose(&pool, 3, &BTreeSet::new()), Ok(vec![3, 4, 5]));
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
        assert_eq!(choose(&pool, 2, &BTreeSet::new()), Ok(vec![3, 4]));
    }

    #[test]
    fn all_or_nothing_and_exclusions() {
        let pool = pool_with(&[], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(
            choose(&pool, 3, &BTreeSet::new()),
            Err(Shortage {
                requested: 3,
                available: 2
            })
        );
        assert_eq!(
            choose(&pool, 2, &BTreeSet::from([6])),
            Err(Shortage {
                requested: 2,
                available: 1
            })
        );
        assert_eq!(choose(&pool, 1, &BTreeSet::from([6])), Ok(vec![7]));
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
            fn never_busy_excluded_or_duplicate_and_exact_or_nothing((pool, unusable, count) in pools()) {
                let usable = pool.gpus.iter().filter(|s| s.reservation.is_none() && !unusable.contains(&s.id)).count();
                match choose(&pool, count, &unusable) {
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
