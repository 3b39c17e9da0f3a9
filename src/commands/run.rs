//! `canhazgpu run`: reserve, run a command with the GPUs visible, heartbeat, release.
//!
//! The reservation is owned by this wrapper process, so if the wrapper dies the very next
//! command by anyone frees the GPUs (liveness); heartbeats cover checkers that cannot see
//! this process. Every exit path that leaves the wrapper alive releases explicitly.

use std::io::ErrorKind;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGPIPE, SIGTERM};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;

use crate::cli::{OnLost, RunArgs};
use crate::commands::acquire::{Asked, acquire};
use crate::commands::gpus::Allocation;
use crate::commands::{Context, current_user, format_ids};
use crate::duration;
use crate::error::{Error, Result};
use crate::gpu_env::{self, Device};
use crate::model::{Kind, Owner, Pool, Reservation};
use crate::signals;

/// Exit statuses of a shell for a command that cannot run.
const EXIT_NOT_FOUND: i32 = 127;
const EXIT_NOT_EXECUTABLE: i32 = 126;

pub fn run(ctx: &Context, args: &RunArgs) -> Result<i32> {
    let interval = match &args.heartbeat_interval {
        Some(text) => duration::parse_whole_seconds(text)?,
        None => ctx.config.heartbeat_interval(),
    };
    let Some((program, program_args)) = args.command.split_first() else {
        return Err(Error::usage(
            "nothing to run: give the command after `--`, \
             e.g. canhazgpu run --gpus 1 -- python train.py",
        ));
    };
    let me = ctx.own_identity()?;
    let timeout = match &args.timeout {
        Some(text) => Some((
            duration::parse(text)?,
            duration::parse(&args.timeout_grace)?,
        )),
        None => None,
    };
    let asked = Asked::from_args(&args.request, &ctx.config, current_user())?;
    let gpus = Allocation::probe(&ctx.config, &args.alloc)?;
    let unusable = gpus.unusable();
    let request = asked.request(args.gpus, Kind::Run, &unusable);
    let mut reservation = None;
    let mut pool_size = 0;
    let ids = acquire(ctx, &request, asked.wait, &me, |pool, ids, now, id| {
        let written = asked.reservation(Kind::Run, now, None, Some(me.clone()), id);
        pool_size = pool.gpus.len() as u32;
        pool.assign(ids, &written);
        reservation = Some(written);
    })?;
    let Some(reservation) = reservation else {
        return Err(Error::failure(
            "acquired GPUs without writing a reservation",
        ));
    };
    gpus.publish(&ctx.store);
    say!("canhazgpu: running on GPU(s) {}", format_ids(&ids));
    let devices = gpus.chosen(&ids);
    let held = Held {
        ids,
        reservation,
        me,
        pool_size,
        on_lost: args.on_lost,
        timeout,
        rebuild_grace: interval.max(ctx.config.heartbeat_interval()) + REBUILD_SLACK,
    };

    let outcome = supervise(ctx, &held, &devices, interval, program, program_args);
    // The command's own status matters more than a failed release, which liveness
    // repairs anyway: report it, but exit as the command did.
    if let Err(e) = release_own(ctx, &held.ids, &held.me) {
        say!("canhazgpu: warning: {e}");
    }
    outcome
}

/// What a running `run` holds, and what it needs to keep holding it.
struct Held {
    ids: Vec<u32>,
    /// As first written, to write again if the store forgot it.
    reservation: Reservation,
    me: Owner,
    /// The pool's size when allocated, to recreate a pool the store lost entirely.
    pool_size: u32,
    on_lost: OnLost,
    /// `--timeout` and its grace period.
    timeout: Option<(Duration, Duration)>,
    /// How long a pool this run had to put back stays closed to new requests: long
    /// enough for every other running job to heartbeat and put its own reservations back.
    rebuild_grace: Duration,
}

/// Beyond one heartbeat interval, for a heartbeat that is late (a slow or paused store).
const REBUILD_SLACK: Duration = Duration::from_secs(5);

/// Runs the command to its end, forwarding signals and heartbeating meanwhile.
fn supervise(
    ctx: &Context,
    held: &Held,
    devices: &[Device],
    interval: Duration,
    program: &std::ffi::OsString,
    program_args: &[std::ffi::OsString],
) -> Result<i32> {
    // Registered before the spawn so that no signal slips between spawn and handler.
    // Signals the caller ignored (nohup, a script's background job) get no handler, so
    // that they stay ignored here and in the command.
    let forwarded = signals::not_ignored(&[SIGINT, SIGTERM, SIGHUP]);
    let mut signals = SignalsInfo::<WithOrigin>::new(forwarded)
        .map_err(|e| Error::failure(format!("cannot install signal handlers: {e}")))?;
    let signal_handle = signals.handle();
    let mut command = Command::new(program);
    command
        .args(program_args)
        .envs(gpu_env::environment(devices));
    if signals::ignored_by_caller(SIGPIPE) {
        // SAFETY: the hook only makes an async-signal-safe call.
        unsafe { command.pre_exec(signals::restore_sigpipe_in_child) };
    }
    let spawned = command.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            signal_handle.close();
            let name = program.to_string_lossy();
            return Ok(match e.kind() {
                ErrorKind::NotFound => {
                    say!("canhazgpu: command not found: {name}; GPUs released");
                    EXIT_NOT_FOUND
                }
                _ => {
                    say!("canhazgpu: cannot run {name}: {e}; GPUs released");
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
            let mut killed = false;
            while let Err(RecvTimeoutError::Timeout) = heartbeat_stopped.recv_timeout(interval) {
                let lost = heartbeat(ctx, held);
                if lost && held.on_lost == OnLost::Kill && !killed {
                    say!("canhazgpu: sending SIGTERM to the command (--on-lost kill)");
                    let _ = kill(child_pid, Signal::SIGTERM);
                    killed = true;
                }
            }
        });
        let (stop_timer, timer_stopped) = mpsc::channel::<()>();
        if let Some((limit, grace)) = held.timeout {
            scope.spawn(move || {
                if timer_stopped.recv_timeout(limit) != Err(RecvTimeoutError::Timeout) {
                    return;
                }
                say!(
                    "canhazgpu: --timeout {} reached: sending SIGINT to the command",
                    duration::format_compact(limit)
                );
                let _ = kill(child_pid, Signal::SIGINT);
                if timer_stopped.recv_timeout(grace) == Err(RecvTimeoutError::Timeout) {
                    say!(
                        "canhazgpu: the command is still running {} later: sending SIGKILL",
                        duration::format_compact(grace)
                    );
                    let _ = kill(child_pid, Signal::SIGKILL);
                }
            });
        }
        let status = child.wait();
        drop(stop_timer);
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

#[derive(Default)]
struct Beat {
    recreated_pool: bool,
    reasserted: Vec<u32>,
    lost: Vec<(u32, String)>,
    /// GPUs an administrator took back, and who.
    reclaimed: Vec<(u32, String)>,
}

/// Renews this run's reservations. Where the store forgot them (a Redis restarted without
/// persistence) and the GPUs are still free, writes them again; where someone else holds
/// them now, says so loudly. Returns whether any GPU is lost to someone else.
fn heartbeat(ctx: &Context, held: &Held) -> bool {
    let outcome = ctx.store.transact(|pool, beat| {
        let mut report = Beat::default();
        let pool = pool.get_or_insert_with(|| {
            report.recreated_pool = true;
            Pool::new(held.pool_size, beat)
        });
        for &id in &held.ids {
            let Some(slot) = pool.slot_mut(id) else {
                report.lost.push((id, "no longer in the pool".to_string()));
                continue;
            };
            let reclaimed = slot
                .reclaimed_by()
                .filter(|_| slot.last_released >= Some(held.reservation.start_time))
                .map(str::to_string);
            match (&mut slot.reservation, reclaimed) {
                (Some(r), _) if r.owner.as_ref() == Some(&held.me) => r.last_heartbeat = beat,
                (Some(r), _) => report.lost.push((id, format!("now held by {}", r.user))),
                // An admin took it back: writing it again would undo that.
                (None, Some(admin)) => report.reclaimed.push((id, admin)),
                (None, None) => {
                    slot.reservation = Some(Reservation {
                        last_heartbeat: beat,
                        ..held.reservation.clone()
                    });
                    report.reasserted.push(id);
                }
            }
        }
        // The store lost reservations: other running jobs have surely lost theirs too,
        // and nobody may be handed their GPUs before they have put them back.
        if report.recreated_pool || !report.reasserted.is_empty() {
            let until = beat + held.rebuild_grace.as_secs() as i64;
            pool.rebuilding_until = Some(pool.rebuilding_until.map_or(until, |t| t.max(until)));
        }
        Ok(report)
    });
    let report = match outcome {
        Ok(report) => report,
        Err(e) => {
            say!("canhazgpu: warning: heartbeat failed, will retry: {e}");
            return false;
        }
    };
    if report.recreated_pool {
        say!(
            "canhazgpu: WARNING: the pool was missing from {} (restarted without persistence, \
             or its keys evicted?); recreated it with {} GPUs, and no GPU is handed out for \
             the next {} so that the other running jobs can put theirs back",
            ctx.store.describe(),
            held.pool_size,
            duration::format_compact(held.rebuild_grace)
        );
    }
    if !report.reasserted.is_empty() {
        say!(
            "canhazgpu: WARNING: the store had forgotten this run's GPU(s) {}; reserved them again",
            format_ids(&report.reasserted)
        );
    }
    for (id, why) in &report.lost {
        say!("canhazgpu: WARNING: this run lost GPU {id}, {why}; two jobs may now share it");
    }
    for (id, admin) in &report.reclaimed {
        say!(
            "canhazgpu: WARNING: GPU {id} was reclaimed by {admin} (an administrator) while this \
             run used it; it is no longer reserved for the command"
        );
    }
    !report.lost.is_empty() || !report.reclaimed.is_empty()
}

/// Frees the GPUs this run still holds, and only those: after a reinitialization or a
/// takeover they may belong to someone else now.
fn release_own(ctx: &Context, ids: &[u32], me: &Owner) -> Result<()> {
    ctx.store
        .update(|pool, end| {
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
                "could not release GPU(s) {}: {e}. They free themselves at the next canhazgpu \
                 command, since this run has ended",
                format_ids(ids)
            ))
        })
}
