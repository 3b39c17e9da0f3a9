//! A shell's reservation as the binary sees it: which shell asked, what the store says it
//! holds, and the shell code and messages that bring its variables in line.

use crate::commands::format_ids;
use crate::error::{Error, Result};
use crate::liveness::{self, ProcView, Rules, Verdict};
use crate::model::{Owner, Pool, Timestamp};

use super::Shell;
use super::emit::Script;
use super::lease;
use super::procs::Ancestry;
use super::vars::{Dropped, Ending, Fate, Holding, LEASE, Vars};

/// fish has no clock it can read without running a program, so its hook compares
/// `/proc/uptime` with this global instead of `CANHAZGPU_EXPIRES` with the time.
pub const FISH_DEADLINE: &str = "_canhazgpu_deadline";

/// What a layer is judged against.
#[derive(Clone, Copy)]
pub enum Truth<'a> {
    /// Only the process tree: at shell start, which must not need a store.
    ProcessTree,
    /// The store's pool as well (`None`: the pool is not initialized).
    Store(Option<&'a Pool>),
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
    pub fn attach(view: &ProcView, pid: u32) -> Result<Session> {
        let ancestry = Ancestry::of_this_process();
        if !ancestry.has_ancestor(pid) {
            return Err(Error::usage(format!(
                "--owner-pid {pid} is not a process this command runs under; the flag is for the shell function that `eval \"$(canhazgpu init bash)\"` (or zsh, fish) defines, which passes its own shell's PID"
            )));
        }
        let owner = view.owner(pid).ok_or_else(|| {
            Error::failure(format!(
                "cannot read /proc/{pid}/stat, which binds the reservation to that shell; is /proc mounted with the process visible?"
            ))
        })?;
        Ok(Session {
            shell_pid: pid,
            owner,
            ancestry,
        })
    }

    /// Whether a layer of variables still describes GPUs its holder has.
    pub fn fate(
        &self,
        truth: Truth,
        holder: Option<u32>,
        layer: &Vars,
        now: Timestamp,
        rules: &Rules,
        view: &ProcView,
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
        match truth {
            Truth::ProcessTree => Fate::Holds(Holding {
                ids: layer.gpus(),
                expires: layer.expires(),
            }),
            Truth::Store(None) => Fate::Ended(Ending::Released),
            Truth::Store(Some(pool)) => {
                let holding = holding_of(pool, &owner, now, rules, view);
                if !holding.ids.is_empty() {
                    Fate::Holds(holding)
                } else if layer.expires().is_some_and(|t| t <= now) {
                    Fate::Ended(Ending::Expired)
                } else {
                    Fate::Ended(Ending::Released)
                }
            }
        }
    }

    /// Drops layers that ended and updates the rest against `truth`.
    pub fn settle(
        &self,
        vars: &Vars,
        truth: Truth,
        now: Timestamp,
        rules: &Rules,
        view: &ProcView,
    ) -> (Vars, Vec<Dropped>) {
        vars.settle(|holder, layer| self.fate(truth, holder, layer, now, rules, view))
    }

    /// Marks the top layer's holder as holding, so the prompt hook stays quiet until a
    /// release deletes the marker.
    pub fn refresh_lease(&self, vars: &mut Vars, view: &ProcView) {
        let Some(owner) = vars.holder().and_then(|pid| view.owner(pid)) else {
            return;
        };
        let path = lease::create(&owner);
        let path = path.as_ref().and_then(|p| p.to_str()).unwrap_or("");
        vars.set(LEASE, path);
    }

    /// Messages for layers that were dropped, on stderr.
    pub fn report(&self, dropped: &[Dropped]) {
        for layer in dropped {
            let ids = format_ids(&layer.ids);
            let holder = layer
                .holder
                .map_or_else(|| "?".to_string(), |p| p.to_string());
            let why = match layer.why {
                Ending::Expired => format!("the reservation of GPU(s) {ids} expired"),
                Ending::Released => format!(
                    "GPU(s) {ids} are no longer reserved for shell {holder} (released elsewhere or reclaimed)"
                ),
                Ending::HolderGone => {
                    format!("GPU(s) {ids} belonged to shell {holder}, which has exited")
                }
                Ending::NotAncestor => format!(
                    "GPU(s) {ids} were inherited from shell {holder}, which is not an ancestor of this shell (a tmux server started there, or similar); reserve your own with `canhazgpu reserve`"
                ),
                Ending::Unreadable => "CANHAZGPU_OWNER_PID does not hold a process id".to_string(),
            };
            let what = if layer.restored {
                "this shell's CUDA_VISIBLE_DEVICES and CANHAZGPU_* variables are back to what they were before `canhazgpu reserve`"
            } else {
                "CANHAZGPU_RESTORE was unreadable, so CUDA_VISIBLE_DEVICES and the CANHAZGPU_* variables were unset rather than restored"
            };
            eprintln!("canhazgpu: {why}; {what}");
        }
    }
}

/// The GPUs `owner` still holds in `pool`, by the same rules every command applies.
pub fn holding_of(
    pool: &Pool,
    owner: &Owner,
    now: Timestamp,
    rules: &Rules,
    view: &ProcView,
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
    Holding { ids, expires }
}

/// The shell code that turns `before` into `after`.
pub fn script(shell: Shell, before: &Vars, after: &Vars, now: Timestamp) -> String {
    let mut script = Script::new(shell);
    before.write_changes(after, &mut script);
    if shell == Shell::Fish {
        // Both clocks are read in whole seconds; one second more keeps the hook from
        // asking before the store agrees that the reservation expired.
        let deadline = after
            .expires()
            .zip(uptime())
            .map(|(expires, up)| up + (expires - now).max(0) + 1);
        script.fish_global(FISH_DEADLINE, deadline);
    }
    script.finish()
}

/// Seconds since boot, the clock fish can read from a file without forking.
fn uptime() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    seconds.is_finite().then_some(seconds as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_accepts_ancestors_only() {
        let view = ProcView::new();
        let parent = super::super::procs::parent_of(std::process::id()).unwrap();
        let session = Session::attach(&view, parent).unwrap();
        assert_eq!(session.owner.pid, parent);
        let err = Session::attach(&view, std::process::id()).err().unwrap();
        assert!(err.message.contains("init"), "{}", err.message);
    }

    #[test]
    fn fish_script_carries_a_deadline() {
        let before = Vars::default();
        let mut after = before.push_layer(1, None);
        after.hold(&Holding {
            ids: vec![0],
            expires: Some(1000),
        });
        let text = script(Shell::Fish, &before, &after, 400);
        assert!(text.contains("set -gx CUDA_VISIBLE_DEVICES '0'"), "{text}");
        let deadline = text
            .lines()
            .find_map(|l| l.strip_prefix("set -g _canhazgpu_deadline "))
            .unwrap();
        let up = uptime().unwrap();
        let deadline: i64 = deadline.parse().unwrap();
        assert!(
            (up + 599..=up + 601).contains(&deadline),
            "{deadline} vs {up}"
        );
        let text = script(Shell::Fish, &after, &before, 400);
        assert!(
            text.ends_with("set -q -g _canhazgpu_deadline; and set -e -g _canhazgpu_deadline\n")
        );
        assert!(!script(Shell::Bash, &after, &before, 400).contains("deadline"));
    }
}
