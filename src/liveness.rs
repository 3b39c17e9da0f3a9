//! Whether a reservation still has a holder: expiry, owner processes and heartbeats.
//!
//! Applied inside every transaction, allocation included, so a crashed job's GPU is free
//! for the very next command rather than after someone happens to run `status`.

use std::time::Duration;

use crate::model::{Kind, Owner, Pool, Reservation, Timestamp};
use crate::process::ProcessFacts;

/// Upstream's rule: a run without a visible owner is dead after 5 minutes of silence.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);

/// What this process can know about others: its own boot and PID namespace, and the
/// start time of any pid it can see.
pub trait ProcessView {
    fn boot_id(&self) -> &str;
    fn pid_ns(&self) -> u64;
    /// Start time in clock ticks of a running process, `None` if there is no such process
    /// or it has exited.
    fn start_ticks(&self, pid: u32) -> Option<u64>;

    /// The identity of a process as seen from here, for recording as an owner.
    fn owner(&self, pid: u32) -> Option<Owner> {
        Some(Owner {
            pid,
            start_ticks: self.start_ticks(pid)?,
            boot_id: self.boot_id().to_string(),
            pid_ns: self.pid_ns(),
        })
    }

    /// Whether any owner may be judged by its process at all; see [`InvisibleView`].
    fn sees_processes(&self) -> bool {
        true
    }
}

/// The view of a viewer who owns no process of the pool it looks at: another host's pool
/// (`status --all-hosts`). Every owner is invisible, so only expiry and heartbeats decide,
/// whatever boot or pid the owner names; only the host that runs the processes may call
/// one dead.
pub struct InvisibleView;

impl ProcessView for InvisibleView {
    fn boot_id(&self) -> &str {
        ""
    }

    fn pid_ns(&self) -> u64 {
        0
    }

    fn start_ticks(&self, _pid: u32) -> Option<u64> {
        None
    }

    fn sees_processes(&self) -> bool {
        false
    }
}

/// The real `/proc`.
pub struct ProcView {
    boot_id: String,
    pid_ns: u64,
}

impl ProcView {
    pub fn new() -> Self {
        ProcView {
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            pid_ns: pid_namespace("self").unwrap_or(0),
        }
    }
}

impl Default for ProcView {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessView for ProcView {
    fn boot_id(&self) -> &str {
        &self.boot_id
    }

    fn pid_ns(&self) -> u64 {
        self.pid_ns
    }

    /// A zombie counts as gone: killed but not yet reaped by its parent, it still has
    /// its pid and start time, and nothing to hold GPUs for.
    fn start_ticks(&self, pid: u32) -> Option<u64> {
        ProcessFacts::read(pid)
            .filter(|facts| !facts.has_exited())
            .map(|facts| facts.start_ticks)
    }
}

fn pid_namespace(pid: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    let text = link.to_str()?;
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

pub struct Rules {
    pub heartbeat_timeout: Duration,
    /// Whether to bring times that lie in the future back to now ([`pull_back_from_future`]).
    /// Only for a store whose clients all read one clock (the embedded store: the host's
    /// kernel clock), where such a time can only mean that the clock was stepped back.
    /// On Redis, future times are written by other clients with their own clocks
    /// (upstream clients write theirs), and rewriting them would shorten or lengthen
    /// their holders' reservations by the difference of two clocks.
    pub repair_clock_steps: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Held,
    /// Freed, with the time the reservation really ended.
    Ended(Timestamp),
}

pub enum OwnerState {
    Alive,
    Dead,
    /// Another boot or PID namespace: /proc here says nothing about it.
    Invisible,
}

pub fn owner_state(owner: &Owner, view: &dyn ProcessView) -> OwnerState {
    if !view.sees_processes() || owner.boot_id != view.boot_id() || owner.pid_ns != view.pid_ns() {
        return OwnerState::Invisible;
    }
    match view.start_ticks(owner.pid) {
        Some(ticks) if ticks == owner.start_ticks => OwnerState::Alive,
        _ => OwnerState::Dead,
    }
}

pub fn judge(
    reservation: &Reservation,
    now: Timestamp,
    rules: &Rules,
    view: &dyn ProcessView,
) -> Verdict {
    if let Some(expiry) = reservation.expiry_time
        && now >= expiry
    {
        return Verdict::Ended(expiry);
    }
    let owner = reservation.owner.as_ref().map(|o| owner_state(o, view));
    match (reservation.kind, owner) {
        (_, Some(OwnerState::Dead)) => Verdict::Ended(now),
        (_, Some(OwnerState::Alive)) => Verdict::Held,
        // A manual reservation without a visible owner lives until its expiry.
        (Kind::Manual, _) => Verdict::Held,
        (Kind::Run, _) => {
            let timeout = rules.heartbeat_timeout.as_secs() as i64;
            if now - reservation.last_heartbeat > timeout {
                Verdict::Ended(reservation.last_heartbeat.max(reservation.start_time))
            } else {
                Verdict::Held
            }
        }
    }
}

/// Brings a reservation that claims to start or beat in the future (the store's clock was
/// stepped back) back to now, keeping its length: trusting the future times would keep it
/// for as long as the step, ignoring them would free it early. Safe only where every
/// client reads the same clock (see [`Rules::repair_clock_steps`]): a client with a clock
/// of its own would otherwise age every reservation by its error. Returns whether
/// anything changed.
fn pull_back_from_future(reservation: &mut Reservation, now: Timestamp) -> bool {
    let shift = reservation.start_time - now;
    if shift > 0 {
        reservation.start_time -= shift;
        reservation.last_heartbeat = (reservation.last_heartbeat - shift).min(now);
        reservation.expiry_time = reservation.expiry_time.map(|t| t - shift);
        return true;
    }
    if reservation.last_heartbeat > now {
        reservation.last_heartbeat = now;
        return true;
    }
    false
}

/// Frees every GPU whose reservation has ended. Returns whether anything changed.
pub fn sweep(pool: &mut Pool, now: Timestamp, rules: &Rules, view: &dyn ProcessView) -> bool {
    let mut changed = false;
    if rules.repair_clock_steps {
        for slot in &mut pool.gpus {
            if let Some(reservation) = &mut slot.reservation {
                changed |= pull_back_from_future(reservation, now);
            }
        }
    }
    if pool.rebuilding_until.is_some_and(|until| now >= until) {
        pool.rebuilding_until = None;
        changed = true;
    }
    let ended: Vec<(u32, Timestamp)> = pool
        .gpus
        .iter()
        .filter_map(
            |slot| match judge(slot.reservation.as_ref()?, now, rules, view) {
                Verdict::Ended(at) => Some((slot.id, at)),
                Verdict::Held => None,
            },
        )
        .collect();
    for &(id, at) in &ended {
        pool.release(id, at);
    }
    let waiting = pool.queue.len();
    pool.queue
        .retain(|waiter| waiter_alive(waiter, now, rules, view));
    changed || !ended.is_empty() || pool.queue.len() != waiting
}

/// A waiter leaves the queue when its process dies, when its own deadline passes, or,
/// for a process this host cannot see, when it stops heartbeating: a dead waiter must
/// never block the requests behind it.
fn waiter_alive(
    waiter: &crate::model::Waiter,
    now: Timestamp,
    rules: &Rules,
    view: &dyn ProcessView,
) -> bool {
    // Only once the second of the deadline is over: `now` is truncated to whole seconds,
    // and the waiter itself gives up to the millisecond.
    if waiter.deadline.is_some_and(|deadline| now > deadline) {
        return false;
    }
    let silent_too_long = now - waiter.last_heartbeat > rules.heartbeat_timeout.as_secs() as i64;
    match waiter.owner.as_ref().map(|o| owner_state(o, view)) {
        Some(OwnerState::Alive) => true,
        Some(OwnerState::Dead) => false,
        _ => !silent_too_long,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeView(HashMap<u32, u64>);

    impl ProcessView for FakeView {
        fn boot_id(&self) -> &str {
            "boot"
        }
        fn pid_ns(&self) -> u64 {
            7
        }
        fn start_ticks(&self, pid: u32) -> Option<u64> {
            self.0.get(&pid).copied()
        }
    }

    fn run_owned_by(pid: u32, ticks: u64, boot: &str, heartbeat: Timestamp) -> Reservation {
        Reservation {
            user: "u".into(),
            actual_user: None,
            kind: Kind::Run,
            start_time: 0,
            last_heartbeat: heartbeat,
            expiry_time: None,
            note: None,
            request_id: None,
            owner: Some(Owner {
                pid,
                start_ticks: ticks,
                boot_id: boot.into(),
                pid_ns: 7,
            }),
        }
    }

    const RULES: Rules = Rules {
        heartbeat_timeout: Duration::from_secs(300),
        repair_clock_steps: true,
    };

    #[test]
    fn another_hosts_viewer_judges_by_heartbeat_and_expiry_only() {
        let now = 10_000;
        // Even an owner whose boot id and namespace a broken /proc would share.
        let mut unreadable = run_owned_by(10, 55, "", now - 10);
        unreadable.owner.as_mut().unwrap().pid_ns = 0;
        assert_eq!(
            judge(&unreadable, now, &RULES, &InvisibleView),
            Verdict::Held
        );
        let silent = run_owned_by(10, 55, "", now - 301);
        assert_eq!(
            judge(&silent, now, &RULES, &InvisibleView),
            Verdict::Ended(now - 301)
        );
        let mut manual = run_owned_by(10, 55, "boot", 0);
        manual.kind = Kind::Manual;
        manual.expiry_time = Some(now + 1);
        assert_eq!(judge(&manual, now, &RULES, &InvisibleView), Verdict::Held);
        manual.expiry_time = Some(now);
        assert_eq!(
            judge(&manual, now, &RULES, &InvisibleView),
            Verdict::Ended(now)
        );
    }

    #[test]
    fn owner_rules() {
        let view = FakeView(HashMap::from([(10, 55)]));
        let now = 10_000;
        // Alive owner holds even with an old heartbeat.
        assert_eq!(
            judge(&run_owned_by(10, 55, "boot", 0), now, &RULES, &view),
            Verdict::Held
        );
        // Same pid, other start time: the pid was reused, the owner is gone.
        assert_eq!(
            judge(&run_owned_by(10, 54, "boot", now), now, &RULES, &view),
            Verdict::Ended(now)
        );
        // Invisible owner falls back to the heartbeat.
        assert_eq!(
            judge(&run_owned_by(99, 1, "other", now - 10), now, &RULES, &view),
            Verdict::Held
        );
        assert_eq!(
            judge(&run_owned_by(99, 1, "other", now - 301), now, &RULES, &view),
            Verdict::Ended(now - 301)
        );
    }

    #[test]
    fn manual_expiry_and_sweep_records_history() {
        let view = FakeView(HashMap::new());
        let mut pool = Pool::new(2, 0);
        pool.gpus[1].reservation = Some(Reservation {
            kind: Kind::Manual,
            expiry_time: Some(500),
            owner: None,
            ..run_owned_by(1, 1, "boot", 0)
        });
        assert!(!sweep(&mut pool, 499, &RULES, &view));
        let before = pool.clone();
        assert!(sweep(&mut pool, 10_000, &RULES, &view));
        assert_eq!(pool.gpus[1].last_released, Some(500));
        let ended = crate::model::ended_between(Some(&before), Some(&pool), 10_000);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].end_time, 500);
    }

    #[test]
    fn future_times_are_pulled_back_keeping_the_length() {
        let view = FakeView(HashMap::new());
        let now = 1_000_000;
        let mut pool = Pool::new(2, 0);
        pool.gpus[0].reservation = Some(Reservation {
            kind: Kind::Manual,
            start_time: now + 86_400,
            last_heartbeat: now + 86_400,
            expiry_time: Some(now + 86_400 + 3600),
            owner: None,
            ..run_owned_by(1, 1, "boot", 0)
        });
        // An invisible run whose heartbeat lies a day ahead.
        pool.gpus[1].reservation = Some(run_owned_by(9, 9, "other", now + 86_400));
        assert!(sweep(&mut pool, now, &RULES, &view));
        let manual = pool.gpus[0].reservation.as_ref().unwrap();
        assert_eq!(
            (manual.start_time, manual.expiry_time),
            (now, Some(now + 3600))
        );
        assert_eq!(
            pool.gpus[1].reservation.as_ref().unwrap().last_heartbeat,
            now
        );
        // Not kept forever: once silent for the timeout, the run is freed.
        assert!(sweep(&mut pool, now + 301, &RULES, &view));
        assert!(pool.gpus[1].reservation.is_none());
        assert!(pool.gpus[0].reservation.is_some());
        assert!(
            !sweep(&mut pool, now + 302, &RULES, &view),
            "stable once normalised"
        );
    }

    #[test]
    fn without_a_shared_clock_future_times_are_left_alone_and_end_on_time() {
        let rules = Rules {
            repair_clock_steps: false,
            ..RULES
        };
        let view = FakeView(HashMap::new());
        let now = 1_000_000;
        let mut pool = Pool::new(2, 0);
        // Written by a client whose clock runs 10 minutes ahead of the store's.
        let manual = Reservation {
            kind: Kind::Manual,
            start_time: now + 600,
            last_heartbeat: now + 600,
            expiry_time: Some(now + 600 + 3600),
            owner: None,
            ..run_owned_by(1, 1, "boot", 0)
        };
        pool.gpus[0].reservation = Some(manual.clone());
        pool.gpus[1].reservation = Some(run_owned_by(9, 9, "other", now + 600));
        let before = pool.clone();
        assert!(!sweep(&mut pool, now, &rules, &view));
        assert_eq!(pool, before, "nothing rewritten");
        // The run is judged by its own heartbeat, the manual one ends at its expiry.
        assert!(!sweep(&mut pool, now + 600 + 300, &rules, &view));
        assert!(sweep(&mut pool, now + 600 + 301, &rules, &view));
        assert!(pool.gpus[1].reservation.is_none());
        assert!(!sweep(&mut pool, now + 4199, &rules, &view));
        assert!(sweep(&mut pool, now + 4200, &rules, &view));
        assert!(pool.gpus[0].reservation.is_none());
    }

    #[test]
    fn dead_expired_and_silent_waiters_leave_the_queue() {
        use crate::model::Waiter;
        let view = FakeView(HashMap::from([(10, 55)]));
        let now = 10_000;
        let waiter = |id: &str,
                      owner: Option<(u32, u64, &str)>,
                      heartbeat: i64,
                      deadline: Option<i64>| Waiter {
            id: id.into(),
            user: "u".into(),
            actual_user: None,
            count: 1,
            gpu_ids: None,
            kind: "run".into(),
            enqueued_at: 0,
            ticket: 0,
            last_heartbeat: heartbeat,
            deadline,
            owner: owner.map(|(pid, ticks, boot)| Owner {
                pid,
                start_ticks: ticks,
                boot_id: boot.into(),
                pid_ns: 7,
            }),
        };
        let mut pool = Pool::new(1, 0);
        pool.queue = vec![
            waiter("alive", Some((10, 55, "boot")), 0, None),
            waiter("dead", Some((10, 54, "boot")), now, None),
            waiter("timed-out", Some((10, 55, "boot")), now, Some(now - 1)),
            waiter("in-its-last-second", Some((10, 55, "boot")), now, Some(now)),
            waiter("far-and-fresh", Some((3, 3, "other")), now - 10, None),
            waiter("far-and-silent", Some((3, 3, "other")), now - 301, None),
        ];
        assert!(sweep(&mut pool, now, &RULES, &view));
        let left: Vec<&str> = pool.queue.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(left, ["alive", "in-its-last-second", "far-and-fresh"]);
    }

    #[test]
    fn this_process_is_alive_and_has_an_identity() {
        let me = ProcView::new();
        assert!(me.start_ticks(std::process::id()).is_some());
        assert!(me.owner(std::process::id()).is_some());
    }
}
