//! `canhazgpu run`: reserve, run a command with the GPUs visible, heartbeat, release.
//!
//! The reservation is owned by this wrapper process, so if the wrapper dies the very next
//! command by anyone frees the GPUs (liveness); heartbeats cover checkers that cannot see
//! this process. Every exit path that leaves the wrapper alive releases explicitly.

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;

use crate::cli::RunArgs;
use crate::commands::gpus::Allocation;
use crate::commands::{Context, choose, current_user, device_env, format_ids, now};
use crate::duration;
use crate::error::{Error, Result};
use crate::model::{Kind, Owner, Reservation};

/// Exit statuses of a shell for a command that cannot run.
const EXIT_NOT_FOUND: i32 = 127;
const EXIT_NOT_EXECUTABLE: i32 = 126;

pub fn run(ctx: &Context, args: &RunArgs) -> Result<i32> {
    let interval = match &args.heartbeat_interval {
        Some(text) => duration::parse(text)?,
        None => ctx.config.heartbeat_interval(),
    };
    let Some((program, program_args)) = args.command.split_first() else {
        return Err(Error::usage(
            "nothing to run: give the command after `--`, e.g. canhazgpu run --gpus 1 -- python train.py",
        ));
    };
    let me = ctx.view.owner(std::process::id()).ok_or_else(|| {
        Error::failure("cannot read this process's own entry in /proc, which liveness checks need; is /proc mounted?")
    })?;
    let gpus = Allocation::probe(&ctx.config, &args.alloc);
    let unusable = gpus.unusable();
    let user = current_user();
    let start = now();
    let ids = ctx.store.update(|pool| {
        ctx.sweep(pool, start);
        let ids = choose(pool, args.gpus, &unusable)?;
        for &id in &ids {
            if let Some(slot) = pool.slot_mut(id) {
                slot.extra.clear();
                slot.reservation = Some(Reservation {
                    user: user.clone(),
                    actual_user: None,
                    kind: Kind::Run,
                    start_time: start,
                    last_heartbeat: start,
                    expiry_time: None,
                    note: None,
                    owner: Some(me.clone()),
                });
            }
        }
        Ok(ids)
    })?;
    eprintln!("canhazgpu: running on GPU(s) {}", format_ids(&ids));
    let devices = gpus.chosen(&ids);

    let outcome = supervise(ctx, &ids, &devices, &me, interval, program, program_args);
    // The command's own status matters more than a failed release, which liveness
    // repairs anyway: report it, but exit as the command did.
    if let Err(e) = release_own(ctx, &ids, &me) {
        eprintln!("canhazgpu: warning: {e}");
    }
    outcome
}

/// Runs the command to its end, forwarding signals and heartbeating meanwhile.
fn supervise(
    ctx: &Context,
    ids: &[u32],
    devices: &str,
    me: &Owner,
    interval: Duration,
    program: &std::ffi::OsString,
    program_args: &[std::ffi::OsString],
) -> Result<i32> {
    // Registered before the spawn so that no signal slips between spawn and handler.
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::failure(format!("cannot install signal handlers: {e}")))?;
    let signal_handle = signals.handle();
    let spawned = Command::new(program)
        .args(program_args)
        .envs(device_env(devices))
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            signal_handle.close();
            let name = program.to_string_lossy();
            return Ok(match e.kind() {
                ErrorKind::NotFound => {
                    eprintln!("canhazgpu: command not found: {name}; GPUs released");
                    EXIT_NOT_FOUND
                }
                _ => {
                    eprintln!("canhazgpu: cannot run {name}: {e}; GPUs released");
                    EXIT_NOT_EXECUTABLE
                }
            });
        }
    };
    let child_pid = Pid::from_raw(child.id() as i32);
    let (stop_heartbeat, heartbeat_stopped) = mpsc::channel::<()>();
    let status = std::thread::scope(|scope| {
        scope.spawn(|| {
            for origin in signals.forever() {
                // A signal from the terminal (Ctrl-C) already reached the command, which
                // shares our process group; forwarding it would deliver it twice.
                if matches!(origin.cause, Cause::Kernel) {
                    continue;
                }
                if let Ok(signal) = Signal::try_from(origin.signal) {
                    let _ = kill(child_pid, signal);
                }
            }
        });
        scope.spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = heartbeat_stopped.recv_timeout(interval) {
                heartbeat(ctx, ids, me);
            }
        });
        let status = child.wait();
        drop(stop_heartbeat);
        signal_handle.close();
        status
    });
    let status = status.map_err(|e| Error::failure(format!("lost track of the command: {e}")))?;
    Ok(exit_code(status))
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1)
}

fn heartbeat(ctx: &Context, ids: &[u32], me: &Owner) {
    let beat = now();
    let lost = ctx.store.update(|pool| {
        let mut lost = Vec::new();
        for &id in ids {
            match pool.slot_mut(id).and_then(|slot| slot.reservation.as_mut()) {
                Some(r) if r.owner.as_ref() == Some(me) => r.last_heartbeat = beat,
                _ => lost.push(id),
            }
        }
        Ok(lost)
    });
    match lost {
        Ok(lost) if lost.is_empty() => {}
        Ok(lost) => eprintln!(
            "canhazgpu: WARNING: this run no longer holds GPU(s) {} (reinitialized or taken by someone else); the command keeps running",
            format_ids(&lost)
        ),
        Err(e) => eprintln!("canhazgpu: warning: heartbeat failed, will retry: {e}"),
    }
}

/// Frees the GPUs this run still holds, and only those: after a reinitialization or a
/// takeover they may belong to someone else now.
fn release_own(ctx: &Context, ids: &[u32], me: &Owner) -> Result<()> {
    let end = now();
    ctx.store
        .update(|pool| {
            for &id in ids {
                let mine = pool
                    .gpus
                    .get(id as usize)
                    .and_then(|slot| slot.reservation.as_ref())
                    .is_some_and(|r| r.owner.as_ref() == Some(me));
                if mine {
                    pool.release(id, end);
                }
            }
            Ok(())
        })
        .map_err(|e| {
            Error::failure(format!(
                "could not release GPU(s) {}: {e}. They free themselves at the next canhazgpu command, since this run has ended",
                format_ids(ids)
            ))
        })
}
