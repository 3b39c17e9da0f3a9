//! A shell's reservation as the binary sees it: which shell asked, what the store says it
//! holds, and the shell code and messages that bring its variables in line.

use std::path::Path;

use crate::commands::format_ids;
use crate::error::{Error, Result};
use crate::gpu_env::Device;
use crate::liveness::{self, ProcessView, Rules, Verdict};
use crate::model::{Owner, Pool, Timestamp};

use super::Shell;
use super::emit::Script;
use super::lease;
use super::procs::Ancestry;
use super::vars::{Ending, Fate, Holding, LEASE, Lost, Unwritable, Vars};

/// fish has no clock it can read without running a program, so its hook compares
/// `/proc/uptime` (in hundredths of a second) with this global instead of
/// `CANHAZGPU_EXPIRES` with the time. Versions that counted in whole seconds called it
/// `_canhazgpu_deadline`: a fish started before an upgrade does not find this one, and
/// its old hook asks at every prompt rather than never.
pub const FISH_DEADLINE: &str = "_canhazgpu_deadline_cs";
/// When the hook asks the store even though nothing it can see changed (unix seconds;
/// fish: uptime in hundredths). It catches what no marker can signal: a release from
/// a container or another host, a reinitialized pool, a marker the shell cannot see.
pub const NEXT_CHECK: &str = "_canhazgpu_check";
/// How often, when a marker will tell of a release anyway.
const CHECK_WITH_MARKER_SECS: i64 = 300;
/// How often without one (no usable directory, or the holder is another user).
const CHECK_WITHOUT_MARKER_SECS: i64 = 30;

/// What a layer is judged against.
#[derive(Clone, Copy)]
pub enum Truth<'a> {
    /// Only the process tree: at shell start, which must not need a store.
    ProcessTree,
    /// The pools of the stores the layers are in, judged at `now` (on this process's
    /// clock, like the pools) by `rules`.
    Store {
        pools: &'a Pools,
        now: Timestamp,
        rules: &'a Rules,
    },
}

/// Pools by the store a layer names (`CANHAZGPU_SHELL_STORE`; `None`: the default).
#[derive(Default)]
pub struct Pools(Vec<(Option<String>, Option<Pool>)>);

impl Pools {
    /// Reads the pool of every store `vars`' layers are in, using `known` for its store
    /// rather than reading it again. A store that cannot be read is left out (its
    /// layers stay as they are) and its error returned.
    pub fn read(
        vars: &Vars,
        known: (Option<String>, Option<Pool>),
        snapshot: impl Fn(Option<&str>) -> Result<Option<Pool>>,
    ) -> (Pools, Vec<Error>) {
        let mut pools = Pools(vec![known]);
        let mut errors = Vec::new();
        let mut failed: Vec<Option<String>> = Vec::new();
        for store in vars.layer_stores() {
            if pools.get(store.as_deref()).is_some() || failed.contains(&store) {
                continue;
            }
            match snapshot(store.as_deref()) {
                Ok(pool) => pools.0.push((store, pool)),
                Err(e) => {
                    errors.push(e);
                    failed.push(store);
                }
            }
        }
        (pools, errors)
    }

    /// The pool of `store`; `None` also when it was not read.
    pub fn of(&self, store: Option<&str>) -> Option<&Pool> {
        self.get(store).flatten()
    }

    /// `None`: not read; `Some(None)`: the store has no pool.
    fn get(&self, store: Option<&str>) -> Option<Option<&Pool>> {
        self.0
            .iter()
            .find(|(key, _)| key.as_deref() == store)
            .map(|(_, pool)| pool.as_ref())
    }
}

/// Both clocks the shells use, read once: unix time and, for fish, uptime, each in
/// hundredths of a second.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub unix_centis: i64,
    pub uptime_centis: Option<i64>,
}

impl Clock {
    pub fn now() -> Clock {
        let unix_centis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64 / 10);
        Clock {
            unix_centis,
            uptime_centis: uptime_centis(),
        }
    }

    /// The store's time `now` (whole seconds; on Redis, Redis's clock), with this host's
    /// fraction of a second.
    pub fn at(now: Timestamp) -> Clock {
        let local = Clock::now();
        Clock {
            unix_centis: now * 100 + local.unix_centis.rem_euclid(100),
            uptime_centis: local.uptime_centis,
        }
    }

    pub fn unix(&self) -> Timestamp {
        self.unix_centis / 100
    }
}

/// The shell a `--owner-pid` names, checked.
pub struct Session {
    pub shell_pid: u32,
    pub owner: Owner,
    ancestry: Ancestry,
}

impl Session {
    /// Accepts `pid` only if it is one of this process's ancestors: the shell function
    /// passes its own shell, and nothing else should be able to bind a reservation to
    /// some unrelated long-lived process.
    pub fn attach(view: &dyn ProcessView, pid: u32) -> Result<Session> {
        let ancestry = Ancestry::of_this_process();
        if !ancestry.has_ancestor(pid) {
            return Err(Error::usage(format!(
                "--owner-pid {pid} is not a process this command runs under; the flag is for \
                 the shell function that `eval \"$(canhazgpu init bash)\"` (or zsh, fish) \
                 defines, which passes its own shell's PID"
            )));
        }
        let owner = view.owner(pid).ok_or_else(|| {
            Error::failure(format!(
                "cannot read /proc/{pid}/stat, which binds the reservation to that shell; is \
                 /proc mounted with the process visible?"
            ))
        })?;
        Ok(Session {
            shell_pid: pid,
            owner,
            ancestry,
        })
    }

    /// For the function in a subshell of the shell (`--subshell`): refuses unless this
    /// command's output goes back to the shell itself, as in
    /// `eval "$(canhazgpu reserve)"`, where the shell evaluates what it reads. Anywhere
    /// else (`( canhazgpu reserve )`, a pipeline) the exports would die with the
    /// subshell, and a reservation bound to the shell would have no variables.
    pub fn check_output_returns(&self, subcommand: &str) -> Result<()> {
        if output_read_by(self.shell_pid) {
            return Ok(());
        }
        Err(Error::failure(format!(
            "{subcommand} in a subshell ( ), a pipeline or a $( ) the shell does not evaluate \
             cannot change this shell's environment; nothing was done. Run it as a command \
             of its own, or as eval \"$(canhazgpu {subcommand} ...)\""
        )))
    }

    /// Whether a layer of variables still describes GPUs its holder has.
    pub fn fate(
        &self,
        truth: Truth,
        holder: Option<u32>,
        layer: &Vars,
        view: &dyn ProcessView,
    ) -> Fate {
        let Some(holder) = holder else {
            return Fate::Ended(Ending::Unreadable);
        };
        if !self
            .ancestry
            .holder_is_shell_or_above(self.shell_pid, holder)
        {
            return Fate::Ended(Ending::NotAncestor);
        }
        let Some(owner) = view.owner(holder) else {
            return Fate::Ended(Ending::HolderGone);
        };
        let unchanged = || {
            Fate::Holds(Holding {
                ids: layer.gpus(),
                expires: layer.expires(),
                lost: Vec::new(),
            })
        };
        let (pools, now, rules) = match truth {
            Truth::ProcessTree => return unchanged(),
            Truth::Store { pools, now, rules } => (pools, now, rules),
        };
        match pools.get(layer.store()) {
            // Not read: nothing to judge by, so nothing is taken away.
            None => unchanged(),
            Some(None) => Fate::Ended(Ending::Released),
            Some(Some(pool)) => {
                let mut holding = holding_of(pool, &owner, now, rules, view);
                holding.lost = layer
                    .gpus()
                    .into_iter()
                    .filter(|id| !holding.ids.contains(id))
                    .map(|id| (id, why_gone(pool, id, &owner, layer.expires(), now)))
                    .collect();
                Fate::Holds(holding)
            }
        }
    }

    /// Drops layers that ended and updates the rest against `truth`; `name` names GPUs
    /// new to the top layer.
    pub fn settle(
        &self,
        vars: &Vars,
        truth: Truth,
        view: &dyn ProcessView,
        name: &dyn Fn(u32) -> Device,
    ) -> (Vars, Vec<Lost>) {
        vars.settle(|holder, layer| self.fate(truth, holder, layer, view), name)
    }

    /// Points `CANHAZGPU_LEASE` at the top layer's marker, so the prompt hook stays quiet
    /// until a release deletes it. A holder of another user (a shell after `su`) has its
    /// marker in that user's directory: it is kept while it can be seen.
    pub fn refresh_lease(&self, vars: &mut Vars, view: &dyn ProcessView) {
        let Some(owner) = vars.holder().and_then(|pid| view.owner(pid)) else {
            return;
        };
        let path = match lease::create(&owner, view) {
            Some(path) => path.to_str().unwrap_or("").to_string(),
            None => match vars.get(LEASE) {
                Some(known) if !known.is_empty() && Path::new(known).exists() => known.to_string(),
                _ => String::new(),
            },
        };
        vars.set(LEASE, path);
    }

    /// Deletes the markers of layers that ended, so that none is left behind.
    pub fn forget(lost: &[Lost], view: &dyn ProcessView) {
        let owners: Vec<Owner> = lost
            .iter()
            .filter(|layer| layer.kept.is_empty())
            .filter(|layer| {
                layer.ended.iter().all(|(why, _)| {
                    matches!(
                        why,
                        Ending::Expired | Ending::Released | Ending::Reclaimed(_)
                    )
                })
            })
            .filter_map(|layer| view.owner(layer.holder?))
            .collect();
        lease::remove(&owners, view);
    }

    /// Messages for what ended, on stderr.
    pub fn report(lost: &[Lost]) {
        for layer in lost {
            let holder = layer
                .holder
                .map_or_else(|| "?".to_string(), |p| p.to_string());
            let then = if !layer.kept.is_empty() {
                format!(
                    "this shell still holds GPU(s) {} and its variables list only those",
                    format_ids(&layer.kept)
                )
            } else if layer.restored {
                "this shell's CUDA_VISIBLE_DEVICES and CANHAZGPU_* variables are back to what \
                 they were before `canhazgpu reserve`"
                    .to_string()
            } else {
                "CANHAZGPU_RESTORE was unreadable, so CUDA_VISIBLE_DEVICES and the CANHAZGPU_* \
                 variables were unset rather than restored"
                    .to_string()
            };
            for (why, ids) in &layer.ended {
                say!("canhazgpu: {}; {then}", ending(why, ids, &holder));
            }
        }
    }

    /// Warns about variables the shell would not let us change where they needed to.
    pub fn warn_unwritable(shell: Shell, unwritable: &[Unwritable], before: &Vars, after: &Vars) {
        for locked in unwritable {
            if before.get(locked.name) == after.get(locked.name) {
                continue;
            }
            say!(
                "canhazgpu: warning: {} is {} in this shell, so it still says {:?}; fix: {}",
                locked.name,
                locked.problem.describe(shell),
                before.get(locked.name).unwrap_or(""),
                locked.problem.remedy(shell, locked.name)
            );
        }
    }
}

fn ending(why: &Ending, ids: &[u32], holder: &str) -> String {
    let ids = format_ids(ids);
    match why {
        Ending::Expired => format!("the reservation of GPU(s) {ids} expired"),
        Ending::Released => {
            format!("GPU(s) {ids} are no longer reserved for shell {holder} (released elsewhere)")
        }
        Ending::Reclaimed(by) => format!("GPU(s) {ids} reclaimed by {by}, an administrator"),
        Ending::HolderGone => format!("GPU(s) {ids} belonged to shell {holder}, which has exited"),
        Ending::NotAncestor => format!(
            "GPU(s) {ids} were inherited from shell {holder}, which is not an ancestor of this \
             shell (a tmux server started there, or similar); reserve your own with \
             `canhazgpu reserve`"
        ),
        Ending::Unreadable => "CANHAZGPU_OWNER_PID does not hold a process id".to_string(),
    }
}

/// Why GPU `id`, which a layer of `owner` lists, is not `owner`'s any more. The pool
/// keeps no reason, so this reads the traces: an administrator's `reclaimed_by`, a
/// release at the very second the layer's first expiry passed, a reservation of ours
/// whose expiry passed but nobody swept yet. Anything else was released.
pub fn why_gone(
    pool: &Pool,
    id: u32,
    owner: &Owner,
    layer_expires: Option<Timestamp>,
    now: Timestamp,
) -> Ending {
    let Some(slot) = pool.gpus.get(id as usize) else {
        return Ending::Released;
    };
    let expired_at_layer_expiry =
        |at: Timestamp| layer_expires.is_some_and(|t| t <= now && at == t);
    match &slot.reservation {
        Some(r) if r.owner.as_ref() == Some(owner) => match r.expiry_time {
            Some(t) if t <= now => Ending::Expired,
            _ => Ending::Released,
        },
        Some(r) if layer_expires.is_some_and(|t| t <= now && r.start_time >= t) => Ending::Expired,
        Some(_) => Ending::Released,
        None => match slot.reclaimed_by() {
            Some(by) => Ending::Reclaimed(by.to_string()),
            None if slot.last_released.is_some_and(expired_at_layer_expiry) => Ending::Expired,
            None => Ending::Released,
        },
    }
}

/// The GPUs `owner` still holds in `pool`, by the same rules every command applies.
pub fn holding_of(
    pool: &Pool,
    owner: &Owner,
    now: Timestamp,
    rules: &Rules,
    view: &dyn ProcessView,
) -> Holding {
    let mut ids = Vec::new();
    let mut expires: Option<Timestamp> = None;
    for slot in &pool.gpus {
        let Some(r) = &slot.reservation else { continue };
        if r.owner.as_ref() != Some(owner) {
            continue;
        }
        if liveness::judge(r, now, rules, view) != Verdict::Held {
            continue;
        }
        ids.push(slot.id);
        if let Some(t) = r.expiry_time {
            expires = Some(expires.map_or(t, |e| e.min(t)));
        }
    }
    Holding {
        ids,
        expires,
        lost: Vec::new(),
    }
}

/// The shell code that turns `before` into `after`, with the hook's clocks.
pub fn script(
    shell: Shell,
    before: &Vars,
    after: &Vars,
    unwritable: &[Unwritable],
    clock: Clock,
) -> String {
    let mut script = Script::new(shell);
    before.write_changes(after, unwritable, &mut script);
    let interval = match after.get(LEASE) {
        Some(lease) if !lease.is_empty() => CHECK_WITH_MARKER_SECS,
        _ => CHECK_WITHOUT_MARKER_SECS,
    };
    let holds = after.has_layer();
    match shell {
        Shell::Fish => {
            let up = clock.uptime_centis;
            let deadline = after
                .expires()
                .zip(up)
                .map(|(expires, up)| up + (expires * 100 - clock.unix_centis).max(0));
            script.internal(FISH_DEADLINE, deadline);
            let check = up.filter(|_| holds).map(|up| up + interval * 100);
            script.internal(NEXT_CHECK, check);
        }
        Shell::Bash | Shell::Zsh => {
            let check = holds.then(|| clock.unix() + interval);
            script.internal(NEXT_CHECK, check);
        }
    }
    script.finish()
}

/// Writes the shell code that turns `before` into `after` on stdout, after warning
/// about the variables the shell would not let it change.
pub fn write_back(
    shell: Shell,
    before: &Vars,
    after: &Vars,
    unwritable: &[Unwritable],
    clock: Clock,
) -> Result<()> {
    Session::warn_unwritable(shell, unwritable, before, after);
    crate::output::print(&script(shell, before, after, unwritable, clock))
}

/// Whether this process's stdout is a pipe whose reading end process `pid` holds: the
/// shell reading a command substitution (its own stdout may be a pipe too, but that is
/// the writing end).
fn output_read_by(pid: u32) -> bool {
    let Ok(out) = std::fs::read_link("/proc/self/fd/1") else {
        return false;
    };
    if !out.to_string_lossy().starts_with("pipe:") {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|link| link == out)
            && std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .is_ok_and(|info| opened_for_reading(&info))
    })
}

/// From `/proc/PID/fdinfo/FD`: `flags:` is octal, and its access mode 0 is O_RDONLY.
fn opened_for_reading(fdinfo: &str) -> bool {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .and_then(|flags| u32::from_str_radix(flags.trim(), 8).ok())
        .is_some_and(|flags| flags & 0o3 == 0)
}

/// Hundredths of a second since boot, the clock fish can read from a file without
/// forking (`/proc/uptime` prints two decimals).
fn uptime_centis() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let (whole, fraction) = text.split_whitespace().next()?.split_once('.')?;
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = format!("{fraction:0<2}").get(..2)?.parse().ok()?;
    Some(whole * 100 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GpuSlot, Kind, Reservation};

    #[test]
    fn attach_accepts_ancestors_only() {
        let view = crate::liveness::ProcView::new();
        let parent = super::super::procs::parent_of(std::process::id()).unwrap();
        let session = Session::attach(&view, parent).unwrap();
        assert_eq!(session.owner.pid, parent);
        let err = Session::attach(&view, std::process::id()).err().unwrap();
        assert!(err.message.contains("init"), "{}", err.message);
    }

    fn clock() -> Clock {
        Clock {
            unix_centis: 40_030,
            uptime_centis: Some(1_000_050),
        }
    }

    #[test]
    fn fish_script_carries_the_deadline_in_hundredths() {
        let before = Vars::default();
        let mut after = before.push_layer(1, None);
        after.hold(
            &Holding {
                ids: vec![0],
                expires: Some(403),
                lost: Vec::new(),
            },
            &Device::by_index,
        );
        let text = script(Shell::Fish, &before, &after, &[], clock());
        assert!(text.contains("set -gx CUDA_VISIBLE_DEVICES '0'"), "{text}");
        // 3 s reserved at 400.30: 2.70 s left, which the prompt shows as 3s, not 4s.
        assert!(
            text.contains("set -g _canhazgpu_deadline_cs 1000320\n"),
            "{text}"
        );
        assert!(text.contains("set -g _canhazgpu_check 1003050\n"), "{text}");
        let text = script(Shell::Fish, &after, &before, &[], clock());
        assert!(
            text.contains(
                "set -q -g _canhazgpu_deadline_cs; and set -e -g _canhazgpu_deadline_cs\n"
            )
        );
        assert!(text.ends_with("set -q -g _canhazgpu_check; and set -e -g _canhazgpu_check\n"));
        let text = script(Shell::Bash, &before, &after, &[], clock());
        assert!(!text.contains("deadline"), "{text}");
        assert!(text.ends_with("_canhazgpu_check=430\n"), "{text}");
    }

    fn slot(id: u32) -> GpuSlot {
        GpuSlot::new(id)
    }

    fn owner(pid: u32) -> Owner {
        Owner {
            pid,
            start_ticks: 1,
            boot_id: "b".into(),
            pid_ns: 1,
        }
    }

    fn reservation(owner_pid: u32, start: i64, expiry: i64) -> Reservation {
        Reservation {
            user: "alice".into(),
            actual_user: None,
            kind: Kind::Manual,
            start_time: start,
            last_heartbeat: start,
            expiry_time: Some(expiry),
            note: None,
            owner: Some(owner(owner_pid)),
            request_id: None,
        }
    }

    #[test]
    fn why_gpus_are_gone() {
        let me = owner(7);
        let mut pool = Pool::new(5, 0);
        // 0: ours, expired at 100 but not swept yet.
        pool.gpus[0].reservation = Some(reservation(7, 0, 100));
        // 1: freed at the layer's expiry, 2: freed earlier (a release).
        pool.gpus[1].last_released = Some(100);
        pool.gpus[2].last_released = Some(50);
        // 3: reclaimed by an administrator.
        pool.gpus[3].reclaimed_by = Some("root".into());
        // 4: someone else's since 120.
        pool.gpus[4] = GpuSlot {
            reservation: Some(reservation(9, 120, 500)),
            ..slot(4)
        };
        let why = |id| why_gone(&pool, id, &me, Some(100), 130);
        assert_eq!(why(0), Ending::Expired);
        assert_eq!(why(1), Ending::Expired);
        assert_eq!(why(2), Ending::Released);
        assert_eq!(why(3), Ending::Reclaimed("root".into()));
        assert_eq!(why(4), Ending::Expired);
        assert_eq!(why(9), Ending::Released);
        // Before the layer's expiry nothing can have expired.
        assert_eq!(why_gone(&pool, 1, &me, Some(100), 99), Ending::Released);
    }

    /// A process table of our own making: pid -> start ticks, in boot "b".
    struct FakeView(Vec<(u32, u64)>);

    impl ProcessView for FakeView {
        fn boot_id(&self) -> &str {
            "b"
        }
        fn pid_ns(&self) -> u64 {
            1
        }
        fn start_ticks(&self, pid: u32) -> Option<u64> {
            self.0
                .iter()
                .find(|(p, _)| *p == pid)
                .map(|&(_, ticks)| ticks)
        }
    }

    #[test]
    fn a_shell_holds_what_is_alive_unexpired_and_its_own() {
        let rules = Rules {
            heartbeat_timeout: std::time::Duration::from_secs(300),
            repair_clock_steps: false,
        };
        let mut pool = Pool::new(4, 0);
        pool.gpus[0].reservation = Some(reservation(7, 0, 100));
        pool.gpus[1].reservation = Some(reservation(7, 0, 50));
        pool.gpus[2].reservation = Some(reservation(9, 0, 100));
        let alive = FakeView(vec![(7, 1), (9, 1)]);
        let holding = holding_of(&pool, &owner(7), 60, &rules, &alive);
        // GPU 1 expired at 50; GPU 2 is another shell's.
        assert_eq!((holding.ids, holding.expires), (vec![0], Some(100)));
        // The same pid started anew (another start time) is not the owner any more.
        let reused = FakeView(vec![(7, 2)]);
        assert!(
            holding_of(&pool, &owner(7), 60, &rules, &reused)
                .ids
                .is_empty()
        );
        assert_eq!(reused.owner(7).map(|o| o.start_ticks), Some(2));
    }

    #[test]
    fn read_ends_are_told_from_write_ends() {
        assert!(opened_for_reading(
            "pos:\t0\nflags:\t0100000\nmnt_id:\t15\n"
        ));
        assert!(!opened_for_reading("pos:\t0\nflags:\t01\n"));
        assert!(!opened_for_reading("pos:\t0\nflags:\t0100002\n"));
        assert!(!opened_for_reading("garbage"));
    }

    #[test]
    fn uptime_reads_hundredths() {
        let up = uptime_centis().unwrap();
        assert!(up > 0);
    }
}
