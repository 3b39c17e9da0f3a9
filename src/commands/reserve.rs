//! `canhazgpu reserve`: hold GPUs for a while.
//!
//! Called by the shell function from `init` (`--shell`, `--owner-pid`), the reservation
//! is bound to that shell and stdout carries the shell code that exports it there.

use crate::cli::ReserveArgs;
use crate::commands::{Context, choose, cuda_list, current_user, format_ids, now};
use crate::duration::{self, format_hms};
use crate::error::Result;
use crate::model::{Kind, Reservation};
use crate::shell::session::{self, Session, Truth};
use crate::shell::vars::Vars;

pub fn reserve(ctx: &Context, args: &ReserveArgs) -> Result<()> {
    let length = duration::parse(&args.duration)?;
    let session = args
        .owner_pid
        .map(|pid| Session::attach(&ctx.view, pid))
        .transpose()?;
    // Read before reserving: variables that could not be restored later must stop us
    // before the store changes, not after.
    let vars = args.shell.map(|_| Vars::from_env()).transpose()?;
    let owner = session.as_ref().map(|s| s.owner.clone());
    let user = current_user();
    let now = now();
    let expiry = now + length.as_secs() as i64;
    let (ids, pool) = ctx.store.update(|pool| {
        ctx.sweep(pool, now);
        let ids = choose(pool, args.gpus)?;
        for &id in &ids {
            if let Some(slot) = pool.slot_mut(id) {
                slot.extra.clear();
                slot.reservation = Some(Reservation {
                    user: user.clone(),
                    actual_user: None,
                    kind: Kind::Manual,
                    start_time: now,
                    last_heartbeat: now,
                    expiry_time: Some(expiry),
                    note: None,
                    owner: owner.clone(),
                });
            }
        }
        let after = vars.is_some().then(|| pool.clone());
        Ok((ids, after))
    })?;
    let reserved = format!(
        "Reserved {} GPU(s) {} for {} (expires in {})",
        ids.len(),
        format_ids(&ids),
        duration::format_compact(length),
        format_hms(expiry - now)
    );
    let (Some(shell), Some(session), Some(vars), Some(pool)) = (args.shell, session, vars, pool)
    else {
        eprintln!("{reserved}");
        eprintln!("Release them early with `canhazgpu release`. To use them in this shell:");
        println!("export CUDA_VISIBLE_DEVICES={}", cuda_list(&ids));
        return Ok(());
    };

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
