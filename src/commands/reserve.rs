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
use crate::shell::Shell;
use crate::shell::emit;
use crate::shell::session::{self, Clock, Pools, Session, Truth};
use crate::shell::vars::{Unwritable, Vars};

pub fn reserve(ctx: &Context, args: &ReserveArgs) -> Result<()> {
    let length = match &args.duration {
        Some(text) => duration::parse(text)?,
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
    let gpus = Allocation::probe(&ctx.config, &args.alloc);
    let unusable = gpus.unusable();
    let request = asked.request(args.gpus, Kind::Manual, &unusable);
    let mut started = 0;
    let mut after = None;
    let ids = acquire(ctx, &request, asked.wait, &me, |pool, ids, now| {
        started = now;
        for &id in ids {
            if let Some(slot) = pool.slot_mut(id) {
                slot.extra.clear();
                slot.reservation = Some(Reservation {
                    user: asked.user.clone(),
                    actual_user: asked.actual_user.clone(),
                    kind: Kind::Manual,
                    start_time: now,
                    last_heartbeat: now,
                    expiry_time: Some(now + length.as_secs() as i64),
                    note: asked.note.clone(),
                    owner: owner.clone(),
                });
            }
        }
        after = vars.is_some().then(|| pool.clone());
    })?;
    let now = started;
    let expiry = now + length.as_secs() as i64;
    let reserved = Reserved {
        devices: gpus.chosen(&ids),
        message: format!(
            "Reserved {} GPU(s) {} for {} (expires in {})",
            ids.len(),
            format_ids(&ids),
            duration::format_compact(length),
            format_hms(expiry - now)
        ),
        ids,
        now,
    };
    match (args.shell, session, vars, after) {
        (Some(shell), Some(session), Some(vars), Some(pool)) => {
            export_into_shell(ctx, shell, &session, &vars, &pool, &reserved);
        }
        _ => {
            eprintln!("{}", reserved.message);
            eprintln!("Release them early with `canhazgpu release`. To use them in this shell:");
            let env = gpu_env::environment(&reserved.devices);
            println!(
                "{}",
                emit::posix_export_line(env.iter().map(|(name, value)| (*name, value.as_str())))
            );
        }
    }
    Ok(())
}

/// What `reserve` got.
struct Reserved {
    ids: Vec<u32>,
    devices: Vec<Device>,
    now: Timestamp,
    message: String,
}

/// Brings the shell's variables in line with the pool after the reservation, on
/// stdout as shell code.
fn export_into_shell(
    ctx: &Context,
    shell: Shell,
    session: &Session,
    vars: &Vars,
    pool: &Pool,
    reserved: &Reserved,
) {
    let now = reserved.now;
    let name = |id: u32| {
        reserved
            .devices
            .iter()
            .find(|device| device.id == id)
            .cloned()
            .unwrap_or_else(|| Device::by_index(id))
    };
    let rules = ctx.rules();
    let (pools, unread) = Pools::read(
        vars,
        Some((ctx.store_key.clone(), Some(pool.clone()))),
        |store| ctx.snapshot_of(store),
    );
    for problem in unread {
        eprintln!("canhazgpu: warning: {problem}");
    }
    // Stale layers (an inherited reservation that ended) go first, so that the new layer
    // does not save them as the environment to come back to.
    let truth = Truth::Store(&pools);
    let (mut after, lost) = session.settle(vars, truth, now, &rules, &ctx.view, &name);
    session.report(&lost);
    session.forget(&lost, &ctx.view);
    // A second reserve in the same shell adds to its layer; otherwise this shell starts
    // its own on top of whatever it inherited.
    if after.holder() != Some(session.shell_pid) {
        after = after.push_layer(session.shell_pid, ctx.store_key.as_deref());
        after.hold(
            &session::holding_of(pool, &session.owner, now, &rules, &ctx.view),
            &name,
        );
    }
    session.refresh_lease(&mut after, &ctx.view);
    let held = after.gpus();
    if held.len() > reserved.ids.len() {
        eprintln!(
            "{}; this shell now holds {}",
            reserved.message,
            format_ids(&held)
        );
    } else {
        eprintln!("{}", reserved.message);
    }
    print!(
        "{}",
        session::script(shell, vars, &after, &[], Clock::now())
    );
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
        let theirs = vars.store().unwrap_or("the default store");
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
