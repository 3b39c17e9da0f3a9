//! Getting GPUs for `run` and `reserve`: at once, or after waiting in the store's FIFO
//! queue (`--wait`).
//!
//! The queue is strict: a request is served only when everything the requests queued
//! before it want still fits in what stays free, so a large request at the head is never
//! starved by small ones arriving behind it, and a request that does not wait cannot jump
//! the queue either.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::alloc::{self, Policy, Refusal};
use crate::cli::RequestArgs;
use crate::commands::{Context, format_ids};
use crate::config::Config;
use crate::duration;
use crate::error::{Error, Result};
use crate::model::{Kind, Owner, Pool, Timestamp, Waiter};
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

/// Longest `--note`; status lines should stay lines.
const MAX_NOTE_CHARS: usize = 200;
const MAX_USER_CHARS: usize = 64;

/// The request flags of `run` and `reserve`, checked.
pub struct Asked {
    pub gpu_ids: Option<Vec<u32>>,
    pub wait: Wait,
    pub note: Option<String>,
    /// Who the reservation is shown as held by.
    pub user: String,
    /// The real account, when `--user` names someone else.
    pub actual_user: Option<String>,
    pub policy: Policy,
}

impl Asked {
    pub fn from_args(args: &RequestArgs, config: &Config, account: String) -> Result<Asked> {
        let gpu_ids = match &args.gpu_ids {
            Some(ids) => {
                let unique: BTreeSet<u32> = ids.iter().copied().collect();
                if ids.is_empty() || unique.len() != ids.len() {
                    return Err(Error::usage(format!(
                        "--gpu-ids {} names a GPU twice or none; give distinct ids, e.g. --gpu-ids 1,3",
                        ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                    )));
                }
                Some(ids.clone())
            }
            None => None,
        };
        let note = match &args.note {
            Some(note) if note.chars().count() > MAX_NOTE_CHARS => {
                return Err(Error::usage(format!(
                    "--note is {} characters long; keep it to {MAX_NOTE_CHARS}",
                    note.chars().count()
                )));
            }
            // Control characters would let a note rewrite other people's terminals, and
            // bidirectional overrides would let it disguise the rest of a status line.
            Some(note) if note.chars().any(|c| c.is_control() || is_bidi_control(c)) => {
                return Err(Error::usage(
                    "--note must not contain control characters (newlines, tabs, escapes, bidirectional overrides); use plain text",
                ));
            }
            Some(note) if note.trim().is_empty() => None,
            Some(note) => Some(note.trim().to_string()),
            None => None,
        };
        let (user, actual_user) = match &args.user {
            Some(name) => {
                // A leading '-' would read as an option wherever the name is passed on.
                let valid = !name.is_empty()
                    && !name.starts_with('-')
                    && name.chars().count() <= MAX_USER_CHARS
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
                if !valid {
                    return Err(Error::usage(format!(
                        "--user {name:?} is not a valid name: use 1 to {MAX_USER_CHARS} letters, digits, '.', '_', '@' or '-' (not first)"
                    )));
                }
                let actual = (name != &account).then_some(account);
                (name.clone(), actual)
            }
            None => (account, None),
        };
        Ok(Asked {
            gpu_ids,
            wait: Wait::from_arg(args.wait.as_ref())?,
            note,
            user,
            actual_user,
            policy: args.policy.or(config.allocation_policy).unwrap_or_default(),
        })
    }

    /// The request as `acquire` takes it; `unusable` is what NVML said just now.
    pub fn request<'a>(
        &'a self,
        count: u32,
        kind: Kind,
        unusable: &'a BTreeSet<u32>,
    ) -> Request<'a> {
        Request {
            count,
            gpu_ids: self.gpu_ids.as_deref(),
            kind,
            user: &self.user,
            actual_user: self.actual_user.as_deref(),
            policy: self.policy,
            unusable,
        }
    }
}

/// Unicode's bidirectional formatting characters (marks, embeddings, overrides, isolates).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

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
    fn wanted(&self) -> u32 {
        self.gpu_ids.map_or(self.count, |ids| ids.len() as u32)
    }

    fn describe(&self) -> String {
        match self.gpu_ids {
            Some(ids) => format!("GPU(s) {}", format_ids(ids)),
            None => format!("{} GPU(s)", self.count),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    No,
    Forever,
    For(Duration),
}

impl Wait {
    /// `--wait` (no value: forever) and `--wait=2h`.
    pub fn from_arg(arg: Option<&Option<String>>) -> Result<Wait> {
        match arg {
            None => Ok(Wait::No),
            Some(None) => Ok(Wait::Forever),
            Some(Some(text)) => Ok(Wait::For(duration::parse(text)?)),
        }
    }
}

/// Why a request cannot be served right now.
enum NotYet {
    /// Waiting may help.
    Busy(String),
    /// Waiting cannot help (a GPU id outside the pool, more GPUs than the pool has, or
    /// than it has without the GPUs in use outside the tool).
    Never(String),
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

/// Free GPUs that may be handed out: not reserved, not in use outside the tool.
fn usable_free(pool: &Pool, outside: &BTreeSet<u32>) -> usize {
    pool.gpus
        .iter()
        .filter(|slot| slot.reservation.is_none() && !outside.contains(&slot.id))
        .count()
}

/// Serves `request` from `pool` if it may be served now, as the waiter at `position`
/// (`None`: not queued), writing the reservations through `assign`.
fn try_serve(
    pool: &mut Pool,
    request: &Request,
    position: Option<usize>,
    probed_at: Timestamp,
    assign: &mut dyn FnMut(&mut Pool, &[u32]),
) -> std::result::Result<Vec<u32>, NotYet> {
    let total = pool.gpus.len();
    let wanted = request.wanted() as usize;
    if wanted > total {
        return Err(NotYet::Never(format!(
            "Not enough GPUs available: requested {wanted}, this host's pool has only {total} GPU(s)"
        )));
    }
    let ahead = pool.wanted_ahead(position);
    let outside = busy_outside(pool, request, probed_at);
    let usable_free = usable_free(pool, &outside);
    let waiting_ahead = || {
        let waiting = position.unwrap_or(pool.queue.len());
        NotYet::Busy(format!(
            "Not enough GPUs available: requested {wanted}, {usable_free} free of {total}, but {waiting} request(s) waiting ahead want {ahead} of them first (see `canhazgpu queue`)"
        ))
    };
    // GPUs that requests waiting ahead asked for by id are theirs next. The count check
    // below cannot protect them: without this, later requests could take them whenever
    // enough others were free, and such a waiter could wait for ever while the pool
    // stood mostly idle (found by tests/e2e/stress.rs).
    let claimed = pool.ids_wanted_ahead(position);
    let ids = match request.gpu_ids {
        Some(ids) => {
            if let Err(refusals) = alloc::check_ids(pool, ids, &outside) {
                return Err(explain_refusals(&refusals, total));
            }
            let taken: Vec<u32> = ids
                .iter()
                .copied()
                .filter(|id| claimed.contains(id))
                .collect();
            if !taken.is_empty() {
                let reasons: Vec<String> = taken
                    .iter()
                    .map(|id| format!("GPU {id} is wanted by a request waiting ahead"))
                    .collect();
                return Err(NotYet::Busy(format!(
                    "cannot have the GPUs asked for: {} (see `canhazgpu queue`)",
                    reasons.join("; ")
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
    assign(pool, &ids);
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
                    "GPU {id} is in use without a reservation (see `canhazgpu status`; --force takes it anyway)"
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
            "GPU(s) {} have no reservation but are in use (see `canhazgpu status` for whose processes); {force}",
            format_ids(&ids)
        )
    };
    format!(
        "Not enough GPUs available: requested {wanted}, {available} available of {total}; {hint}"
    )
}

/// Gets the GPUs for `request`, waiting as `wait` says, and writes the reservations with
/// `assign` in the same transaction that takes them.
pub fn acquire(
    ctx: &Context,
    request: &Request,
    wait: Wait,
    me: &Owner,
    mut assign: impl FnMut(&mut Pool, &[u32], Timestamp),
) -> Result<Vec<u32>> {
    let give_up = match wait {
        Wait::For(limit) => Some(GiveUp {
            at: Instant::now() + limit,
            stored: stored_deadline(std::time::SystemTime::now(), limit),
        }),
        _ => None,
    };
    let deadline = give_up.map(|give_up| give_up.stored);
    let waiter_id = format!(
        "{}-{}-{}",
        me.boot_id.get(..8).unwrap_or(&me.boot_id),
        me.pid,
        me.start_ticks
    );
    let mut probed_at = 0;
    let first = ctx.store.update(|pool, now| {
        probed_at = now;
        ctx.sweep(pool, now);
        match try_serve(pool, request, None, now, &mut |pool, ids| {
            assign(pool, ids, now)
        }) {
            Ok(ids) => Ok(Some(ids)),
            Err(NotYet::Never(message)) => Err(Error::failure(message)),
            Err(NotYet::Busy(message)) if wait == Wait::No => Err(Error::failure(format!(
                "{message}; add --wait to queue for them"
            ))),
            Err(NotYet::Busy(_)) => {
                pool.queue
                    .push(new_waiter(&waiter_id, request, me, now, deadline));
                Ok(None)
            }
        }
    })?;
    if let Some(ids) = first {
        return Ok(ids);
    }
    let waiting = Waiting {
        request,
        me,
        waiter_id: &waiter_id,
        give_up,
        probed_at,
    };
    wait_in_queue(ctx, &waiting, &mut assign)
}

/// A request in the queue, and what its waiting loop needs to know about it.
struct Waiting<'a> {
    request: &'a Request<'a>,
    me: &'a Owner,
    waiter_id: &'a str,
    give_up: Option<GiveUp>,
    /// The store's time of the request's first transaction.
    probed_at: Timestamp,
}

/// When a waiter with `--wait=TIMEOUT` gives up.
#[derive(Clone, Copy)]
struct GiveUp {
    /// For this process: to the millisecond (`--wait=1s` waits a second, not to the
    /// next whole second).
    at: Instant,
    /// In its queue entry, for other clients (queue listings, liveness sweeps): the
    /// store's whole seconds, rounded up so that nobody drops the entry before its
    /// waiter gives up by itself.
    stored: Timestamp,
}

/// The whole second at or after `now + limit`.
fn stored_deadline(now: std::time::SystemTime, limit: Duration) -> Timestamp {
    let end = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(limit);
    let whole = end.as_secs() as Timestamp;
    if end.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    }
}

fn new_waiter(
    id: &str,
    request: &Request,
    me: &Owner,
    now: Timestamp,
    deadline: Option<Timestamp>,
) -> Waiter {
    Waiter {
        id: id.to_string(),
        user: request.user.to_string(),
        actual_user: request.actual_user.map(str::to_string),
        count: request.wanted(),
        gpu_ids: request.gpu_ids.map(<[u32]>::to_vec),
        kind: request.kind.as_str().to_string(),
        enqueued_at: now,
        last_heartbeat: now,
        deadline,
        owner: Some(me.clone()),
    }
}

enum Step {
    Served(Vec<u32>),
    Waiting {
        position: usize,
        queued: usize,
        free: usize,
    },
}

fn wait_in_queue(
    ctx: &Context,
    waiting: &Waiting,
    assign: &mut dyn FnMut(&mut Pool, &[u32], Timestamp),
) -> Result<Vec<u32>> {
    let &Waiting {
        request,
        me,
        waiter_id,
        give_up,
        probed_at,
    } = waiting;
    let deadline = give_up.map(|give_up| give_up.stored);
    // Until served, a signal means "stop waiting": leave the queue cleanly, hold nothing.
    // Not one the caller ignored: `nohup canhazgpu reserve --wait` must outlive SIGHUP.
    let signal = Arc::new(AtomicUsize::new(0));
    let handlers: Vec<_> = signals::not_ignored(&[SIGINT, SIGTERM, SIGHUP])
        .iter()
        .filter_map(|&sig| {
            signal_hook::flag::register_usize(sig, signal.clone(), sig as usize).ok()
        })
        .collect();
    let mut progress = Progress::new(request);
    let waited_since = Instant::now();
    let outcome = ctx.store.with_wakeups(|wait, wakeups| {
        let (poll_max, poll_max_far) = if wakeups {
            (POLL_MAX_WITH_WAKEUPS, POLL_MAX_FAR_WITH_WAKEUPS)
        } else {
            (POLL_MAX, POLL_MAX)
        };
        let mut poll = POLL_FIRST;
        let mut last_beat = Instant::now();
        let mut last_seen: Option<Pool> = None;
        loop {
            let caught = signal.load(Ordering::SeqCst);
            if caught != 0 {
                leave_queue(ctx, waiter_id);
                return Err(Error {
                    exit_code: 128 + caught as i32,
                    ..Error::failure("stopped waiting: left the queue, nothing was reserved")
                });
            }
            let left = give_up.map(|give_up| give_up.at.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                leave_queue(ctx, waiter_id);
                return Err(Error::failure(format!(
                    "gave up after waiting {} for {}: left the queue, nothing was reserved",
                    duration::format_hms(waited_since.elapsed().as_secs() as i64),
                    request.describe()
                )));
            }
            // Cheap unlocked look first; the locked transaction only when it may succeed
            // or the queue entry needs renewing.
            let (mut pool, now) = ctx.store.snapshot_pool()?;
            ctx.sweep(&mut pool, now);
            let position = pool.queue_position(waiter_id);
            let mut scratch = pool.clone();
            let may_serve =
                try_serve(&mut scratch, request, position, probed_at, &mut |_, _| {}).is_ok();
            let beat_due = last_beat.elapsed() >= WAITER_HEARTBEAT || position.is_none();
            if may_serve || beat_due {
                last_beat = Instant::now();
                let step = ctx.store.update(|pool, now| {
                    ctx.sweep(pool, now);
                    let position = match pool.queue_position(waiter_id) {
                        Some(position) => position,
                        // Dropped (admin --force, or judged dead while stalled): back in
                        // line, at the end, as a newcomer.
                        None => {
                            pool.queue
                                .push(new_waiter(waiter_id, request, me, now, deadline));
                            pool.queue.len() - 1
                        }
                    };
                    match try_serve(
                        pool,
                        request,
                        Some(position),
                        probed_at,
                        &mut |pool, ids| assign(pool, ids, now),
                    ) {
                        Ok(ids) => {
                            pool.queue.remove(position);
                            Ok(Step::Served(ids))
                        }
                        Err(NotYet::Never(message)) => {
                            pool.queue.remove(position);
                            Err(Error::failure(message))
                        }
                        Err(NotYet::Busy(_)) => {
                            pool.queue[position].last_heartbeat = now;
                            Ok(Step::Waiting {
                                position,
                                queued: pool.queue.len(),
                                free: usable_free(pool, &busy_outside(pool, request, probed_at)),
                            })
                        }
                    }
                })?;
                match step {
                    Step::Served(ids) => return Ok(ids),
                    Step::Waiting {
                        position,
                        queued,
                        free,
                    } => {
                        progress.show(position, queued, free, pool.gpus.len());
                    }
                }
            } else if let Some(position) = position {
                progress.show(
                    position,
                    pool.queue.len(),
                    usable_free(&pool, &busy_outside(&pool, request, probed_at)),
                    pool.gpus.len(),
                );
            }
            // A request with more wanted ahead of it than the pool holds cannot be served
            // before the queue moves. Such waiters poll slowly and let wake-ups pass: every
            // look costs a read of the whole pool, and with dozens waiting, quick looks by
            // all of them at every release saturated a 2-core host while GPUs stood free
            // (tests/e2e/stress.rs).
            let in_reach = position.is_none_or(|position| {
                pool.wanted_ahead(Some(position)) + request.wanted() as usize <= pool.gpus.len()
            });
            // Never sleep past the moment of giving up.
            let until_give_up = |poll: Duration| left.map_or(poll, |left| poll.min(left));
            if !in_reach {
                poll = (poll * 2).min(poll_max_far);
                last_seen = Some(pool);
                sleep_through_wakeups(wait, until_give_up(poll));
                continue;
            }
            // Back to quick polls whenever the pool moved; slower while nothing happens.
            poll = if last_seen.as_ref() == Some(&pool) {
                (poll * 2).min(poll_max)
            } else {
                POLL_FIRST
            };
            last_seen = Some(pool);
            if wait(until_give_up(poll)) {
                poll = POLL_FIRST;
            }
        }
    });
    for handler in handlers {
        signal_hook::low_level::unregister(handler);
    }
    progress.finish();
    outcome
}

/// Waits `total` whatever wake-ups arrive meanwhile.
fn sleep_through_wakeups(wait: &mut dyn FnMut(Duration) -> bool, total: Duration) {
    let until = Instant::now() + total;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || !wait(left) {
            return;
        }
    }
}

/// Best effort: if this fails, liveness drops the entry once this process is gone.
fn leave_queue(ctx: &Context, waiter_id: &str) {
    let _ = ctx.store.update(|pool, _| {
        pool.queue.retain(|waiter| waiter.id != waiter_id);
        Ok(())
    });
}

/// How waiting is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Display {
    /// A line whenever the position changes: for pipes, logs and terminals that cannot
    /// move the cursor.
    Lines,
    /// A spinner redrawn in place; ASCII where the locale is not UTF-8.
    Spinner { ascii: bool },
}

/// The display for stderr: a spinner needs a terminal that can redraw a line (not
/// `TERM=dumb`, which indicatif leaves blank) and, for its braille, a UTF-8 locale.
/// `locale` is the first of LC_ALL, LC_CTYPE and LANG that is set.
fn display_for(terminal: bool, term: Option<&str>, locale: Option<&str>) -> Display {
    let can_redraw = terminal && !matches!(term, None | Some("" | "dumb"));
    if !can_redraw {
        return Display::Lines;
    }
    let utf8 = locale.is_some_and(|locale| {
        let locale = locale.to_ascii_lowercase();
        locale.contains("utf-8") || locale.contains("utf8")
    });
    Display::Spinner { ascii: !utf8 }
}

fn stderr_display() -> Display {
    let term = std::env::var("TERM").ok();
    let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()));
    display_for(
        std::io::stderr().is_terminal(),
        term.as_deref(),
        locale.as_deref(),
    )
}

/// What a waiting user sees: a spinner on a terminal, an occasional line otherwise.
struct Progress {
    what: String,
    spinner: Option<indicatif::ProgressBar>,
    last_line: Option<(usize, usize)>,
}

impl Progress {
    fn new(request: &Request) -> Progress {
        let spinner = match stderr_display() {
            Display::Lines => None,
            Display::Spinner { ascii } => {
                let spinner = indicatif::ProgressBar::new_spinner();
                if ascii {
                    let style = indicatif::ProgressStyle::default_spinner().tick_chars("|/-\\ ");
                    spinner.set_style(style);
                }
                spinner.enable_steady_tick(Duration::from_millis(120));
                Some(spinner)
            }
        };
        Progress {
            what: request.describe(),
            spinner,
            last_line: None,
        }
    }

    fn show(&mut self, position: usize, queued: usize, free: usize, total: usize) {
        let message = format!(
            "waiting for {}: position {} of {queued} in the queue, {free} of {total} GPUs free (Ctrl-C to give up)",
            self.what,
            position + 1
        );
        match &self.spinner {
            Some(spinner) => spinner.set_message(message),
            None if self.last_line != Some((position, queued)) => {
                eprintln!("canhazgpu: {message}");
                self.last_line = Some((position, queued));
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(spinner) = &self.spinner {
            spinner.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinners_only_where_the_terminal_can_draw_them() {
        let utf8 = Some("en_US.UTF-8");
        assert_eq!(display_for(false, Some("xterm"), utf8), Display::Lines);
        assert_eq!(display_for(true, Some("dumb"), utf8), Display::Lines);
        assert_eq!(display_for(true, None, utf8), Display::Lines);
        assert_eq!(display_for(true, Some(""), utf8), Display::Lines);
        let fancy = Display::Spinner { ascii: false };
        assert_eq!(display_for(true, Some("xterm-256color"), utf8), fancy);
        assert_eq!(display_for(true, Some("screen"), Some("C.utf8")), fancy);
        let ascii = Display::Spinner { ascii: true };
        assert_eq!(display_for(true, Some("xterm"), Some("C")), ascii);
        assert_eq!(display_for(true, Some("xterm"), Some("POSIX")), ascii);
        assert_eq!(display_for(true, Some("xterm"), None), ascii);
    }

    #[test]
    fn stored_deadlines_round_up_to_whole_seconds() {
        let at = |secs: u64, millis: u64| {
            std::time::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
        };
        let second = Duration::from_secs(1);
        assert_eq!(stored_deadline(at(100, 640), second), 102);
        assert_eq!(stored_deadline(at(100, 0), second), 101);
        assert_eq!(stored_deadline(at(100, 0), Duration::from_millis(300)), 101);
        assert_eq!(
            stored_deadline(at(100, 900), Duration::from_millis(100)),
            101
        );
    }
}
