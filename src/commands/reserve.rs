//! `canhazgpu reserve`: hold GPUs for a while.
//!
//! Called by the shell function from `init` (`--shell`, `--owner-pid`), the reservation
//! is bound to that shell and stdout carries the shell code that exports it there.

use crate::cli::ReserveArgs;
use crate::commands::acquire::{Asked, acquire};
use crate::commands::gpus::Allocation;
use crate::commands::{Context, clock_offset, current_user, export_line, format_ids};
use crate::duration::{self, format_hms};
use crate::error::Result;
use crate::model::{Kind, Reservation};
use crate::shell::session::{self, Session, Truth};
use crate::shell::vars::Vars;

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
                    request_id: None,
                });
            }
        }
        after = vars.is_some().then(|| pool.clone());
    })?;
    let now = started;
    let expiry = now + length.as_secs() as i64;
    let devices = gpus.chosen(&ids);
    let reserved = format!(
        "Reserved {} GPU(s) {} for {} (expires in {})",
        ids.len(),
        format_ids(&ids),
        duration::format_compact(length),
        format_hms(expiry - now)
    );
    let (Some(shell), Some(session), Some(vars), Some(pool)) = (args.shell, session, vars, after)
    else {
        eprintln!("{reserved}");
        eprintln!("Release them early with `canhazgpu release`. To use them in this shell:");
        println!("{}", export_line(&devices));
        return Ok(());
    };

    // From here on, this process's clock: the shell's prompt hook reads it.
    let offset = clock_offset(now);
    let (pool, now) = (pool.shifted(offset), now + offset);
    let rules = ctx.rules();
    // Stale layers (an inherited reservation that ended) go first, so that the new layer
    // does not save them as the environment to come back to.
    let truth = Truth::Store(Some(&pool));
    let (mut after, dropped) = session.settle(&vars, truth, now, &rules, &ctx.view);
    session.report(&dropped);
    // A second reserve in the same shell adds to its layer; otherwise this shell starts
    // its own on top of whatever it inherited.
    if after.holder() != Some(session.shell_pid) {
        after = after.push_layer(session.shell_pid, None);
        after.hold(&session::holding_of(
            &pool,
            &session.owner,
            now,
            &rules,
            &ctx.view,
        ));
    }
    session.refresh_lease(&mut after, &ctx.view);
    let held = after.gpus();
    if held.len() > ids.len() {
        eprintln!("{reserved}; this shell now holds {}", format_ids(&held));
    } else {
        eprintln!("{reserved}");
    }
    print!("{}", session::script(shell, &vars, &after, now));
    Ok(())
}
