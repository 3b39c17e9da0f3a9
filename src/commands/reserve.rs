//! `canhazgpu reserve`: hold GPUs for a while.
//!
//! Called by the shell function from `init` (`--shell`, `--owner-pid`), the reservation
//! is bound to that shell and stdout carries the shell code that exports it there.

use crate::cli::ReserveArgs;
use crate::commands::acquire::{Asked, acquire};
use crate::commands::gpus::Allocation;
use crate::commands::{Context, current_user, format_ids};
use crate::duration::{self, format_hms};
use crate::error::{Error, Result};
use crate::gpu_env::{self, Device};
use crate::model::{Kind, Pool, Reservation, Timestamp};
use crate::output;
use crate::shell::Shell;
use crate::shell::emit;
use crate::shell::lease;
use crate::shell::session::{self, Session};
use crate::shell::vars::{Unwritable, Vars};
use crate::store::printable_url;

pub fn reserve(ctx: &Context, args: &ReserveArgs) -> Result<()> {
    let length = match &args.duration {
        Some(text) => duration::parse_whole_seconds(text)?,
        None => ctx.config.default_duration(),
    };
    let asked = Asked::from_args(&args.request, &ctx.config, current_user())?;
    let session = args
        .owner_pid
        .map(|pid| Session::attach(&ctx.view, pid))
        .transpose()?;
    if let Some(session) = session.as_ref().filter(|_| args.subshell) {
        session.check_output_returns("reserve")?;
    }
    // Read before reserving: variables the shell could not take, or could not get back
    // later, must stop us before the store changes, not after.
    let vars = match (args.shell, &session) {
        (Some(shell), Some(session)) => Some(shell_vars(ctx, shell, session)?),
        _ => None,
    };
    let owner = session.as_ref().map(|s| s.owner.clone());
    // While waiting in the queue, this process is what must stay alive.
    let me = ctx.own_identity()?;
    let gpus = Allocation::probe(&ctx.config, &args.alloc)?;
    let unusable = gpus.unusable();
    let request = asked.request(args.gpus, Kind::Manual, &unusable);
    let mut started = 0;
    let mut after = None;
    let mut written = None;
    let ids = acquire(ctx, &request, asked.wait, &me, |pool, ids, now, id| {
        started = now;
        let reservation = asked.reservation(Kind::Manual, now, Some(length), owner.clone(), id);
        pool.assign(ids, &reservation);
        written = Some(reservation);
        after = vars.is_some().then(|| pool.clone());
    })?;
    gpus.publish(&ctx.store);
    let reserved = Reserved {
        devices: gpus.chosen(&ids),
        ids,
        length,
        now: started,
    };
    let announced = match (args.shell, session, vars, after) {
        (Some(shell), Some(session), Some(vars), Some(pool)) => {
            let announced = announce_to_shell(ctx, &reserved, shell, &session, &vars, pool);
            if announced.is_err() {
                lease::remove([&session.owner], &ctx.view);
            }
            announced
        }
        _ => announce(&reserved),
    };
    // The export line is what tells the caller it holds GPUs: without it, nobody would
    // know of (or release) the reservation.
    announced.map_err(|e| take_back(ctx, &reserved.ids, written.as_ref(), &e))
}

/// The shell's variables, if a reservation can be put into them: none read-only,
/// numeric or otherwise unable to take a device list, and no layer of this shell from
/// another store (the new GPUs would hide those from `CUDA_VISIBLE_DEVICES`).
fn shell_vars(ctx: &Context, shell: Shell, session: &Session) -> Result<Vars> {
    let (vars, unwritable) = Vars::from_env(Some(shell))?;
    if let Some(locked) = unwritable.first() {
        return Err(refusal(shell, locked));
    }
    if vars.holder() == Some(session.shell_pid) && vars.store() != ctx.store_key.as_deref() {
        let theirs = vars
            .store()
            .map_or_else(|| "the default store".to_string(), printable_url);
        return Err(Error::usage(format!(
            "this shell holds GPU(s) {} from {theirs}, and a reservation from another store \
             would hide them from CUDA_VISIBLE_DEVICES; nothing was reserved. Release them \
             first (`canhazgpu release`), or reserve from the same store",
            format_ids(&vars.gpus())
        )));
    }
    Ok(vars)
}

fn refusal(shell: Shell, locked: &Unwritable) -> Error {
    Error::failure(format!(
        "{} is {} in this shell, so the GPUs could not be put into it; nothing was \
         reserved. Fix: {}; or reserve without the shell integration: \
         `command canhazgpu reserve ...`",
        locked.name,
        locked.problem.describe(shell),
        locked.problem.remedy(shell, locked.name)
    ))
}

/// What was reserved, for the messages.
struct Reserved {
    ids: Vec<u32>,
    devices: Vec<Device>,
    length: std::time::Duration,
    now: Timestamp,
}

impl Reserved {
    fn summary(&self) -> String {
        format!(
            "Reserved {} GPU(s) {} for {} (expires in {})",
            self.ids.len(),
            format_ids(&self.ids),
            duration::format_compact(self.length),
            format_hms(self.length.as_secs() as i64)
        )
    }

    /// How the shell's device lists name GPU `id`.
    fn device(&self, id: u32) -> Device {
        self.devices
            .iter()
            .find(|device| device.id == id)
            .cloned()
            .unwrap_or_else(|| Device::by_index(id))
    }
}

/// Plain `reserve`: the news on stderr, the export line alone on stdout.
fn announce(reserved: &Reserved) -> Result<()> {
    say!("{}", reserved.summary());
    say!("Release them early with `canhazgpu release`. To use them in this shell:");
    let env = gpu_env::environment(&reserved.devices);
    output::println(&emit::posix_export_line(
        env.iter().map(|(name, value)| (*name, value.as_str())),
    ))
}

/// From the shell function of `init`: shell code on stdout that exports the GPUs into
/// that shell.
fn announce_to_shell(
    ctx: &Context,
    reserved: &Reserved,
    shell: Shell,
    session: &Session,
    vars: &Vars,
    pool: Pool,
) -> Result<()> {
    let name = |id: u32| reserved.device(id);
    // Stale layers (an inherited reservation that ended) go first, so that the new layer
    // does not save them as the environment to come back to.
    let settled = ctx.settle_shell(session, vars, (reserved.now, Some(pool)), &name, &[]);
    let mut after = settled.vars;
    // A second reserve in the same shell adds to its layer; otherwise this shell starts
    // its own on top of whatever it inherited.
    if after.holder() != Some(session.shell_pid) {
        after = after.push_layer(session.shell_pid, ctx.store_key.as_deref());
        // The pool as this reservation left it, on this process's clock.
        let holding = settled
            .pools
            .of(ctx.store_key.as_deref())
            .map(|pool| {
                let now = settled.clock.unix();
                session::holding_of(pool, &session.owner, now, &ctx.rules(), &ctx.view)
            })
            .unwrap_or_default();
        after.hold(&holding, &name);
    }
    session.refresh_lease(&mut after, &ctx.view);
    let held = after.gpus();
    if held.len() > reserved.ids.len() {
        say!(
            "{}; this shell now holds {}",
            reserved.summary(),
            format_ids(&held)
        );
    } else {
        say!("{}", reserved.summary());
    }
    session::write_back(shell, vars, &after, &[], settled.clock)
}

/// Gives back the GPUs of a reservation whose caller never heard of it (its stdout had
/// gone), so that nothing stays held that nobody knows to release. Only GPUs still
/// holding exactly the reservation written are touched.
fn take_back(ctx: &Context, ids: &[u32], written: Option<&Reservation>, why: &Error) -> Error {
    let what = if why.closed_stdout {
        "standard output was closed before the export line could be written".to_string()
    } else {
        why.message.clone()
    };
    let released = ctx.store.update(|pool, now| {
        let ours = pool.ids_where(|slot| {
            ids.contains(&slot.id) && written.is_some() && slot.reservation.as_ref() == written
        });
        for &id in &ours {
            pool.release(id, now);
        }
        Ok(ours)
    });
    match released {
        Ok(released) => Error::failure(format!(
            "{what}; released GPU(s) {} again, so nothing is reserved",
            format_ids(&released)
        )),
        Err(e) => Error::failure(format!(
            "{what}, and giving GPU(s) {} back failed: {e}; release them with `canhazgpu \
             release --gpu-ids {}`",
            format_ids(ids),
            gpu_env::id_list(ids)
        )),
    }
}
