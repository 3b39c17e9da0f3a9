//! `canhazgpu reserve`: hold GPUs for a while.
//!
//! Called by the shell function from `init` (`--shell`, `--owner-pid`), the reservation
//! is bound to that shell and stdout carries the shell code that exports it there.

use crate::cli::ReserveArgs;
use crate::commands::acquire::{Asked, acquire};
use crate::commands::gpus::Allocation;
use crate::commands::{Context, current_user, export_line, format_ids};
use crate::duration::{self, format_hms};
use crate::error::{Error, Result};
use crate::model::{Kind, Pool, Reservation, Timestamp};
use crate::output;
use crate::shell::Shell;
use crate::shell::lease;
use crate::shell::session::{self, Session, Truth};
use crate::shell::vars::Vars;

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
    // Read before reserving: variables that could not be restored later must stop us
    // before the store changes, not after.
    let vars = args.shell.map(|_| Vars::from_env()).transpose()?;
    let owner = session.as_ref().map(|s| s.owner.clone());
    // While waiting in the queue, this process is what must stay alive.
    let me = ctx.own_identity()?;
    let gpus = Allocation::probe(&ctx.config, &args.alloc);
    let unusable = gpus.unusable();
    let request = asked.request(args.gpus, Kind::Manual, &unusable);
    let mut started = 0;
    let mut after = None;
    let mut written = None;
    let ids = acquire(ctx, &request, asked.wait, &me, |pool, ids, now| {
        started = now;
        let reservation = Reservation {
            user: asked.user.clone(),
            actual_user: asked.actual_user.clone(),
            kind: Kind::Manual,
            start_time: now,
            last_heartbeat: now,
            expiry_time: Some(now + length.as_secs() as i64),
            note: asked.note.clone(),
            owner: owner.clone(),
        };
        for &id in ids {
            if let Some(slot) = pool.slot_mut(id) {
                slot.extra.clear();
                slot.reservation = Some(reservation.clone());
            }
        }
        written = Some(reservation);
        after = vars.is_some().then(|| pool.clone());
    })?;
    let reserved = Reserved {
        devices: gpus.chosen(&ids),
        ids,
        length,
        now: started,
    };
    let announced = match (args.shell, session, vars, after) {
        (Some(shell), Some(session), Some(vars), Some(pool)) => {
            let announced = announce_to_shell(ctx, &reserved, shell, &session, &vars, &pool);
            if announced.is_err() {
                lease::remove(&session.owner);
            }
            announced
        }
        _ => announce(&reserved),
    };
    // The export line is what tells the caller it holds GPUs: without it, nobody would
    // know of (or release) the reservation.
    announced.map_err(|e| take_back(ctx, &reserved.ids, written.as_ref(), &e))
}

/// What was reserved, for the messages.
struct Reserved {
    ids: Vec<u32>,
    /// The CUDA_VISIBLE_DEVICES list.
    devices: String,
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
}

/// Plain `reserve`: the news on stderr, the export line alone on stdout.
fn announce(reserved: &Reserved) -> Result<()> {
    eprintln!("{}", reserved.summary());
    eprintln!("Release them early with `canhazgpu release`. To use them in this shell:");
    output::println(&export_line(&reserved.devices))
}

/// From the shell function of `init`: shell code on stdout that exports the GPUs into
/// that shell.
fn announce_to_shell(
    ctx: &Context,
    reserved: &Reserved,
    shell: Shell,
    session: &Session,
    vars: &Vars,
    pool: &Pool,
) -> Result<()> {
    let now = reserved.now;
    let rules = ctx.rules();
    // Stale layers (an inherited reservation that ended) go first, so that the new layer
    // does not save them as the environment to come back to.
    let truth = Truth::Store(Some(pool));
    let (mut after, dropped) = session.settle(vars, truth, now, &rules, &ctx.view);
    session.report(&dropped);
    // A second reserve in the same shell adds to its layer; otherwise this shell starts
    // its own on top of whatever it inherited.
    if after.holder() != Some(session.shell_pid) {
        after = after.push_layer(session.shell_pid, None);
        after.hold(&session::holding_of(
            pool,
            &session.owner,
            now,
            &rules,
            &ctx.view,
        ));
    }
    session.refresh_lease(&mut after, &ctx.view);
    let held = after.gpus();
    if held.len() > reserved.ids.len() {
        eprintln!(
            "{}; this shell now holds {}",
            reserved.summary(),
            format_ids(&held)
        );
    } else {
        eprintln!("{}", reserved.summary());
    }
    output::print(&session::script(shell, vars, &after, now))
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
            "{what}, and giving GPU(s) {} back failed: {e}; release them with `canhazgpu release --gpu-ids {}`",
            format_ids(ids),
            crate::commands::cuda_list(ids)
        )),
    }
}
