//! Getting GPUs for `run` and `reserve`: at once, or after waiting in the store's FIFO
//! queue (`--wait`). [`crate::admission`] decides who may be served; this module runs the
//! transactions, and the waiting loop that keeps a waiter's place through signals,
//! deadlines and outages of the store.
//!
//! A waiter outlives a store that stops answering (paused, restarted, a dropped
//! connection): it keeps trying until its own deadline. If the store comes back with its
//! data, the waiter still has its place; if it comes back empty, waiters go back in line
//! by the tickets they drew, so in their original order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::admission::{At, NotYet, Request, admit, usable_free};
use crate::commands::Context;
pub use crate::commands::asked::{Asked, Wait};
use crate::commands::progress::Progress;
use crate::duration::format_hms;
use crate::error::{Error, Result};
use crate::model::{Owner, Pool, Timestamp, Waiter};
use crate::signals;

/// Waiters renew their queue entry this often, well inside the heartbeat timeout that
/// drops entries of processes the checker cannot see.
const WAITER_HEARTBEAT: Duration = Duration::from_secs(30);
/// Polling bounds: fast at first (the GPU may come back any moment), slower later. With
/// Redis, a release wakes waiters at once and polling is only the fallback.
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_millis(500);
/// With wake-ups (Redis pub/sub) polling only covers a lost message.
const POLL_MAX_WITH_WAKEUPS: Duration = Duration::from_secs(5);
/// Waiters that cannot be served before the queue moves ignore wake-ups; where wake-ups
/// exist they still look this often (Redis round trips cost more than a file read).
const POLL_MAX_FAR_WITH_WAKEUPS: Duration = Duration::from_secs(2);
/// How long a waiter pauses before asking a store that did not answer again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// The longest a waiter sleeps without looking whether it was told to stop.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Gets the GPUs for `request`, waiting as `wait` says, and writes the reservations with
/// `assign` in the same transaction that takes them. `assign` is given the request's id,
/// which the reservations must carry: a retry finds what an earlier attempt took by it.
pub fn acquire(
    ctx: &Context,
    request: &Request,
    wait: Wait,
    me: &Owner,
    mut assign: impl FnMut(&mut Pool, &[u32], Timestamp, &str),
) -> Result<Vec<u32>> {
    let mut line = Line {
        ctx,
        request,
        me,
        id: request_id(me),
        wait,
        give_up: match wait {
            Wait::For(limit) => Some(Instant::now() + limit),
            _ => None,
        },
        entry: None,
        probed_at: 0,
        assign: &mut assign,
    };
    match wait {
        Wait::No => line
            .join()?
            .ok_or_else(|| Error::failure("not served and not queued")),
        _ => wait_in_queue(&mut line),
    }
}

/// The id of the request this process makes (one per process): its waiter's id in the
/// queue and the `request_id` of the reservations it gets. Unique while the process lives.
fn request_id(me: &Owner) -> String {
    format!(
        "{}-{}-{}",
        me.boot_id.get(..8).unwrap_or(&me.boot_id),
        me.pid,
        me.start_ticks
    )
}

/// One request on its way through the queue.
struct Line<'a> {
    ctx: &'a Context,
    request: &'a Request<'a>,
    me: &'a Owner,
    /// The request's id and its waiter's: unique per process, and written into the
    /// reservations it gets, so that a retry finds what an earlier attempt took.
    id: String,
    wait: Wait,
    /// When this process stops waiting (`--wait=TIMEOUT`), to the millisecond.
    give_up: Option<Instant>,
    /// Its queue entry once it has one, to go back in line with if the queue was lost.
    entry: Option<Waiter>,
    /// The store's time of its first transaction, just after NVML was asked which GPUs
    /// are in use (see [`crate::admission::At`]).
    probed_at: Timestamp,
    assign: &'a mut Assign<'a>,
}

/// What writes the reservations: on the GPUs taken, at the store's time, of the request
/// whose id it is given.
type Assign<'a> = dyn FnMut(&mut Pool, &[u32], Timestamp, &str) + 'a;

enum Turn {
    Served(Vec<u32>),
    Waiting {
        position: usize,
        queued: usize,
        free: usize,
    },
}

impl Line<'_> {
    /// The first transaction: served at once if the request may be, otherwise queued
    /// (`None`) when it waits, or refused.
    fn join(&mut self) -> Result<Option<Vec<u32>>> {
        let ctx = self.ctx;
        let joined = ctx.store.update(|pool, now| {
            ctx.sweep(pool, now);
            self.probed_at = now;
            if let Some(ids) = self.served_already(pool) {
                return Ok(Ok(ids));
            }
            // Queued by an attempt whose commit reply was lost.
            if let Some(position) = pool.queue_position(&self.id) {
                return Ok(Err(pool.queue[position].clone()));
            }
            match admit(pool, self.request, None, self.at(now)) {
                Ok(ids) => Ok(Ok(self.take(pool, &ids, now))),
                Err(NotYet::Never(message)) => Err(Error::failure(message)),
                Err(NotYet::Busy(message)) if self.wait == Wait::No => Err(Error::failure(
                    format!("{message}; add --wait to queue for them"),
                )),
                Err(NotYet::Busy(_)) => {
                    let entry = self.new_entry(pool, now);
                    pool.queue.push(entry.clone());
                    Ok(Err(entry))
                }
            }
        })?;
        match joined {
            Ok(ids) => Ok(Some(ids)),
            Err(entry) => {
                self.entry = Some(entry);
                Ok(None)
            }
        }
    }

    /// The cheap unlocked look: the pool, this request's place, and whether taking the
    /// lock may serve it.
    fn look(&self) -> Result<(Pool, Option<usize>, bool)> {
        let (mut pool, now) = self.ctx.store.snapshot_pool()?;
        self.ctx.sweep(&mut pool, now);
        let position = pool.queue_position(&self.id);
        let may_serve = admit(&pool, self.request, position, self.at(now)).is_ok()
            || !pool.ids_of_request(&self.id).is_empty();
        Ok((pool, position, may_serve))
    }

    /// The locked turn: served if the request may be, else its entry renewed, and put
    /// back in line by its ticket if the queue had lost it.
    fn turn(&mut self) -> Result<Turn> {
        let ctx = self.ctx;
        ctx.store.update(|pool, now| {
            ctx.sweep(pool, now);
            if let Some(ids) = self.served_already(pool) {
                return Ok(Turn::Served(ids));
            }
            let position = match pool.queue_position(&self.id) {
                Some(position) => position,
                None => {
                    let entry = self
                        .entry
                        .clone()
                        .unwrap_or_else(|| self.new_entry(pool, now));
                    pool.requeue(Waiter {
                        last_heartbeat: now,
                        ..entry
                    })
                }
            };
            match admit(pool, self.request, Some(position), self.at(now)) {
                Ok(ids) => {
                    let ids = self.take(pool, &ids, now);
                    pool.queue.remove(position);
                    Ok(Turn::Served(ids))
                }
                Err(NotYet::Never(message)) => {
                    pool.queue.remove(position);
                    Err(Error::failure(message))
                }
                Err(NotYet::Busy(_)) => {
                    pool.queue[position].last_heartbeat = now;
                    Ok(Turn::Waiting {
                        position,
                        queued: pool.queue.len(),
                        free: usable_free(pool, self.request, self.probed_at),
                    })
                }
            }
        })
    }

    fn at(&self, now: Timestamp) -> At {
        At {
            now,
            probed_at: self.probed_at,
        }
    }

    /// What an earlier attempt of this request took, where its commit reply was lost;
    /// its queue entry goes.
    fn served_already(&self, pool: &mut Pool) -> Option<Vec<u32>> {
        let ids = pool.ids_of_request(&self.id);
        if ids.is_empty() {
            return None;
        }
        pool.queue.retain(|waiter| waiter.id != self.id);
        Some(ids)
    }

    fn take(&mut self, pool: &mut Pool, ids: &[u32], now: Timestamp) -> Vec<u32> {
        (self.assign)(pool, ids, now, &self.id);
        ids.to_vec()
    }

    fn new_entry(&self, pool: &Pool, now: Timestamp) -> Waiter {
        let request = self.request;
        Waiter {
            id: self.id.clone(),
            user: request.user.to_string(),
            actual_user: request.actual_user.map(str::to_string),
            count: request.wanted(),
            gpu_ids: request.gpu_ids.map(<[u32]>::to_vec),
            kind: request.kind.as_str().to_string(),
            enqueued_at: now,
            ticket: pool.next_ticket(now),
            last_heartbeat: now,
            deadline: match self.wait {
                Wait::For(limit) => Some(stored_deadline(now, limit)),
                _ => None,
            },
            owner: Some(self.me.clone()),
        }
    }

    /// Best effort: where the store cannot be reached, liveness drops the entry once
    /// this process is gone. Returns whether it left.
    fn leave(&self) -> bool {
        self.ctx
            .store
            .update(|pool, _| {
                pool.queue.retain(|waiter| waiter.id != self.id);
                Ok(())
            })
            .is_ok()
    }

    /// Why the wait ends now, if it does: a signal, or the deadline.
    fn stopping(&self, stop: &Stop, progress: &Progress, since: Instant) -> Option<Error> {
        if let Some(signal) = stop.caught() {
            return Some(Error {
                exit_code: 128 + signal,
                ..Error::failure(format!(
                    "stopped waiting: {}nothing was reserved",
                    self.leave_saying()
                ))
            });
        }
        if self.give_up.is_none_or(|at| Instant::now() < at) {
            return None;
        }
        let outage = progress
            .current_outage()
            .map(|why| format!(" (the store was not answering at the end: {why})"))
            .unwrap_or_default();
        Some(Error::failure(format!(
            "gave up after waiting {} for {}{outage}: {}nothing was reserved",
            format_hms(since.elapsed().as_secs() as i64),
            progress.what(),
            self.leave_saying()
        )))
    }

    fn leave_saying(&self) -> &'static str {
        match self.entry {
            None => "",
            Some(_) if self.leave() => "left the queue, ",
            Some(_) => "its queue entry goes once this process has ended; ",
        }
    }

    /// What a waiter says about an error it waits out. A pool it was queued in has not
    /// merely never been initialized.
    fn outage(&self, e: &Error) -> String {
        if e.no_pool && self.entry.is_some() && !e.message.contains("vanished") {
            return format!(
                "the GPU pool has vanished from {} (restarted without its data, or its keys \
                 evicted?); running jobs put it back at their next heartbeat",
                self.ctx.store.describe()
            );
        }
        e.message.clone()
    }

    fn until(&self) -> String {
        match self.give_up {
            Some(at) => format!(
                "until it gives up in {}",
                format_hms(at.saturating_duration_since(Instant::now()).as_secs() as i64)
            ),
            None => "until Ctrl-C".to_string(),
        }
    }
}

/// The deadline a waiter that started waiting `limit` long at `now` (a whole second of
/// the store's clock, truncated) writes into its queue entry: whole seconds, rounded up.
/// Entries are dropped only once the store's clock has passed it (see
/// [`crate::liveness::sweep`]), so never before the waiter gives up by itself.
fn stored_deadline(now: Timestamp, limit: Duration) -> Timestamp {
    now + limit.as_secs_f64().ceil() as Timestamp
}

fn wait_in_queue(line: &mut Line) -> Result<Vec<u32>> {
    // Until served, a signal means "stop waiting": leave the queue cleanly, hold nothing.
    let stop = Stop::catch();
    let mut progress = Progress::new(line.request.describe());
    let since = Instant::now();
    let wanted = line.request.wanted() as usize;
    let outcome = line.ctx.store.with_wakeups(|wait, wakeups| {
        let mut pace = Pace::new(wakeups);
        loop {
            if let Some(e) = line.stopping(&stop, &progress, since) {
                return Err(e);
            }
            let looked = match line.entry {
                None => line.join().map(|served| served.ok_or(None)),
                Some(_) => line.look().map(|look| Err(Some(look))),
            };
            let (pool, position, may_serve) = match looked {
                Ok(Ok(ids)) => return Ok(ids),
                Ok(Err(None)) => continue,
                Ok(Err(Some(look))) => look,
                // A store that does not answer, or lost the pool, may come back: keep
                // trying until this waiter's own deadline.
                Err(e) if e.transient || e.no_pool => {
                    progress.outage(&line.outage(&e), &line.until());
                    pause(wait, line.cap(RETRY_PAUSE), &stop, true);
                    continue;
                }
                Err(e) => return Err(line.left_after(e)),
            };
            if may_serve || pace.beat_due() || position.is_none() {
                pace.beat();
                match line.turn() {
                    Ok(Turn::Served(ids)) => return Ok(ids),
                    Ok(Turn::Waiting {
                        position,
                        queued,
                        free,
                    }) => {
                        progress.show(position, queued, free, pool.gpus.len());
                    }
                    Err(e) if e.transient || e.no_pool => {
                        progress.outage(&line.outage(&e), &line.until());
                        continue;
                    }
                    Err(e) => return Err(line.left_after(e)),
                }
            } else if let Some(position) = position {
                let free = usable_free(&pool, line.request, line.probed_at);
                progress.show(position, pool.queue.len(), free, pool.gpus.len());
            }
            // A request with more wanted ahead of it than the pool holds cannot be served
            // before the queue moves. Such waiters poll slowly and let wake-ups pass: every
            // look costs a read of the whole pool, and with dozens waiting, quick looks by
            // all of them at every release saturated a 2-core host while GPUs stood free
            // (tests/e2e/stress.rs).
            let in_reach = position.is_none_or(|position| {
                pool.wanted_ahead(Some(position)) + wanted <= pool.gpus.len()
            });
            let (poll, through_wakeups) = pace.next(pool, in_reach);
            if pause(wait, line.cap(poll), &stop, through_wakeups) {
                pace.woken();
            }
        }
    });
    progress.finish();
    outcome
}

impl Line<'_> {
    /// Refused for good (the store is corrupt, say): there is no place to keep.
    fn left_after(&self, e: Error) -> Error {
        if self.entry.is_some() {
            self.leave();
        }
        e
    }

    /// `pause`, but never past the moment of giving up.
    fn cap(&self, pause: Duration) -> Duration {
        self.give_up.map_or(pause, |at| {
            pause.min(at.saturating_duration_since(Instant::now()))
        })
    }
}

/// How often a waiter looks: quick while the pool moves, slower while it does not.
struct Pace {
    poll: Duration,
    poll_max: Duration,
    poll_max_far: Duration,
    last_beat: Instant,
    last_seen: Option<Pool>,
}

impl Pace {
    fn new(wakeups: bool) -> Pace {
        let (poll_max, poll_max_far) = if wakeups {
            (POLL_MAX_WITH_WAKEUPS, POLL_MAX_FAR_WITH_WAKEUPS)
        } else {
            (POLL_MAX, POLL_MAX)
        };
        Pace {
            poll: POLL_FIRST,
            poll_max,
            poll_max_far,
            last_beat: Instant::now(),
            last_seen: None,
        }
    }

    fn beat_due(&self) -> bool {
        self.last_beat.elapsed() >= WAITER_HEARTBEAT
    }

    fn beat(&mut self) {
        self.last_beat = Instant::now();
    }

    fn woken(&mut self) {
        self.poll = POLL_FIRST;
    }

    /// How long to wait before the next look at `pool`, and whether wake-ups may cut
    /// it short.
    fn next(&mut self, pool: Pool, in_reach: bool) -> (Duration, bool) {
        self.poll = if !in_reach {
            (self.poll * 2).min(self.poll_max_far)
        } else if self.last_seen.as_ref() == Some(&pool) {
            (self.poll * 2).min(self.poll_max)
        } else {
            POLL_FIRST
        };
        self.last_seen = Some(pool);
        (self.poll, !in_reach)
    }
}

/// Waits up to `total` in slices short enough to notice a signal at once. Wake-ups end
/// it early (returning `true`) unless `through_wakeups`.
fn pause(
    wait: &mut dyn FnMut(Duration) -> bool,
    total: Duration,
    stop: &Stop,
    through_wakeups: bool,
) -> bool {
    let until = Instant::now() + total;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stop.caught().is_some() {
            return false;
        }
        if wait(left.min(SIGNAL_CHECK)) && !through_wakeups {
            return true;
        }
    }
}

/// The signals that end a wait, caught while it lasts.
struct Stop {
    caught: Arc<AtomicUsize>,
    handlers: Vec<signal_hook::SigId>,
}

impl Stop {
    /// Not a signal the caller ignored: `nohup canhazgpu reserve --wait` must outlive
    /// SIGHUP.
    fn catch() -> Stop {
        let caught = Arc::new(AtomicUsize::new(0));
        let handlers = signals::not_ignored(&[SIGINT, SIGTERM, SIGHUP])
            .iter()
            .filter_map(|&sig| {
                signal_hook::flag::register_usize(sig, caught.clone(), sig as usize).ok()
            })
            .collect();
        Stop { caught, handlers }
    }

    fn caught(&self) -> Option<i32> {
        match self.caught.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal as i32),
        }
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        for handler in self.handlers.drain(..) {
            signal_hook::low_level::unregister(handler);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_deadlines_round_up_to_whole_seconds() {
        assert_eq!(stored_deadline(100, Duration::from_secs(60)), 160);
        assert_eq!(stored_deadline(100, Duration::from_millis(300)), 101);
        assert_eq!(stored_deadline(100, Duration::from_millis(1500)), 102);
    }
}
