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
}
