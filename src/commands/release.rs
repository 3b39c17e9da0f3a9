//! `canhazgpu release`: give back the caller's manual reservations.
//!
//! Plain, or with `--all`: every manual reservation of the user (the seed's behaviour).
//! From the shell function of `init` (`--owner-pid`): only that shell's reservation, with
//! shell code on stdout that restores the shell's variables (`--shell`). The hidden modes
//! `--sync` and `--inherited` release nothing; they serve the prompt hook and shell start.

use crate::cli::ReleaseArgs;
use crate::commands::{Context, clock_offset, current_user, format_ids, now};
use crate::error::{Error, Result};
use crate::liveness::ProcView;
use crate::model::{Kind, Owner, Reservation};
use crate::shell::lease;
use crate::shell::session::{self, Session, Truth};
use crate::shell::vars::Vars;

pub fn release(ctx: &Context, args: &ReleaseArgs) -> Result<()> {
    let session = args
        .owner_pid
        .map(|pid| Session::attach(&ctx.view, pid))
        .transpose()?;
    if args.sync {
        return sync(ctx, args, session);
    }
    if let Some(ids) = &args.gpu_ids {
        return release_ids(ctx, ids, args.shell.is_some());
    }
    let vars = args.shell.map(|_| Vars::from_env()).transpose()?;
    let only = match (&session, args.all) {
        (Some(session), false) => Some(session.owner.clone()),
        _ => None,
    };
    let user = current_user();
    let (released, owners, others, pool, now) = ctx.store.update(|pool, now| {
        ctx.sweep(pool, now);
        let mine = |r: &Reservation| r.kind == Kind::Manual && r.held_by(&user);
        let chosen = pool.ids_where(|slot| {
            slot.reservation
                .as_ref()
                .is_some_and(|r| mine(r) && (only.is_none() || r.owner == only))
        });
        let mut owners: Vec<Owner> = Vec::new();
        for &id in &chosen {
            if let Some(owner) = pool.release(id, now).and_then(|r| r.owner)
                && !owners.contains(&owner)
            {
                owners.push(owner);
            }
        }
        // What the user still holds elsewhere, for the hint when this shell held nothing.
        let others = pool.ids_where(|slot| slot.reservation.as_ref().is_some_and(mine));
        let after = vars.is_some().then(|| pool.clone());
        Ok((chosen, owners, others, after, now))
    })?;
    // The shells that held them look at their markers at the next prompt.
    for owner in &owners {
        lease::remove(owner);
    }

    let Some(session) = session else {
        if released.is_empty() {
            println!("No manually reserved GPUs to release");
        } else {
            println!(
                "Released {} GPU(s): {}",
                released.len(),
                format_ids(&released)
            );
        }
        return Ok(());
    };
    // Shell mode: stdout is for shell code only.
    if !released.is_empty() {
        eprintln!(
            "Released {} GPU(s): {}",
            released.len(),
            format_ids(&released)
        );
    } else if args.shell.is_some() {
        explain_nothing_released(&session, vars.as_ref(), &others);
    }
    let (Some(shell), Some(vars)) = (args.shell, vars) else {
        return Ok(());
    };
    // From here on, this process's clock: the shell's prompt hook reads it.
    let offset = clock_offset(now);
    let (pool, now) = (pool.map(|pool| pool.shifted(offset)), now + offset);
    let truth = Truth::Store(pool.as_ref());
    let (after, dropped) = session.settle(&vars, truth, now, &ctx.rules(), &ctx.view);
    // What this shell released itself needs no story; anything else that went is news.
    let news: Vec<_> = dropped
        .into_iter()
        .filter(|d| !d.ids.iter().all(|id| released.contains(id)))
        .collect();
    session.report(&news);
    print!("{}", session::script(shell, &vars, &after, now));
    Ok(())
}

fn explain_nothing_released(session: &Session, vars: Option<&Vars>, others: &[u32]) {
    let inherited = vars
        .and_then(|v| Some((v.holder()?, v.gpus())))
        .filter(|(holder, ids)| *holder != session.shell_pid && !ids.is_empty());
    if let Some((holder, ids)) = inherited {
        eprintln!(
            "This shell reserved no GPUs itself; GPU(s) {} in its environment belong to shell {holder}: release them there, or with `canhazgpu release --all`",
            format_ids(&ids)
        );
    } else if !others.is_empty() {
        eprintln!(
            "No GPUs reserved by this shell; you hold GPU(s) {} from elsewhere, which `canhazgpu release --all` releases",
            format_ids(others)
        );
    } else {
        eprintln!("No manually reserved GPUs to release");
    }
}

/// `--sync`: the prompt hook saw the expiry pass or the marker vanish.
fn sync(ctx: &Context, args: &ReleaseArgs, session: Option<Session>) -> Result<()> {
    let (Some(shell), Some(session)) = (args.shell, session) else {
        return Err(Error::usage("--sync needs --shell and --owner-pid"));
    };
    let vars = Vars::from_env()?;
    let snapshot = if vars.has_layer() {
        Some(ctx.store.snapshot()?)
    } else {
        None
    };
    // On this process's clock, which the shell's prompt hook reads.
    let (pool, now) = match snapshot {
        Some(snapshot) => {
            let offset = clock_offset(snapshot.now);
            let pool = snapshot.pool.map(|pool| pool.shifted(offset));
            (Some(pool), snapshot.now + offset)
        }
        None => (None, now()),
    };
    let (mut after, dropped) = match &pool {
        Some(pool) => {
            let truth = Truth::Store(pool.as_ref());
            session.settle(&vars, truth, now, &ctx.rules(), &ctx.view)
        }
        None => (vars.clone(), Vec::new()),
    };
    session.report(&dropped);
    if after.has_layer() {
        session.refresh_lease(&mut after, &ctx.view);
    }
    print!("{}", session::script(shell, &vars, &after, now));
    Ok(())
}

/// `--inherited`: at shell start, drop variables that came from a shell that is not this
/// one's ancestor. Reads no configuration and no store, like the rest of `init`.
pub fn inherited(args: &ReleaseArgs) -> Result<i32> {
    let (Some(shell), Some(pid)) = (args.shell, args.owner_pid) else {
        return Err(Error::usage("--inherited needs --shell and --owner-pid"));
    };
    let view = ProcView::new();
    let session = Session::attach(&view, pid)?;
    let vars = Vars::from_env()?;
    let now = now();
    let rules = crate::liveness::Rules {
        heartbeat_timeout: crate::liveness::DEFAULT_HEARTBEAT_TIMEOUT,
        repair_clock_steps: false,
    };
    let (after, dropped) = session.settle(&vars, Truth::ProcessTree, now, &rules, &view);
    session.report(&dropped);
    print!("{}", session::script(shell, &vars, &after, now));
    Ok(0)
}

/// `release --gpu-ids`: exactly these GPUs, all or nothing, each of them the caller's.
fn release_ids(ctx: &Context, ids: &[u32], shell_mode: bool) -> Result<()> {
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    if ids.is_empty() || distinct.len() != ids.len() {
        return Err(Error::usage(
            "--gpu-ids names a GPU twice or none; give distinct ids, e.g. --gpu-ids 1,3",
        ));
    }
    let user = current_user();
    let owners = ctx.store.update(|pool, now| {
        ctx.sweep(pool, now);
        let refusals: Vec<String> = ids
            .iter()
            .filter_map(|&id| match pool.gpus.get(id as usize) {
                None => Some(format!("GPU {id} is not in the pool")),
                Some(slot) => match &slot.reservation {
                    None => Some(format!("GPU {id} is not reserved")),
                    Some(r) if !r.held_by(&user) => {
                        Some(format!("GPU {id} is held by {}, not by you", r.user))
                    }
                    Some(_) => None,
                },
            })
            .collect();
        if !refusals.is_empty() {
            return Err(Error::failure(format!(
                "released nothing: {}; see `canhazgpu status`",
                refusals.join("; ")
            )));
        }
        Ok(ids
            .iter()
            .filter_map(|&id| pool.release(id, now).and_then(|r| r.owner))
            .collect::<Vec<Owner>>())
    })?;
    // Shells that held any of them notice at their next prompt.
    for owner in &owners {
        lease::remove(owner);
    }
    let message = format!("Released {} GPU(s): {}", ids.len(), format_ids(ids));
    // In shell mode stdout is evaluated as shell code.
    if shell_mode {
        eprintln!("{message}");
    } else {
        println!("{message}");
    }
    Ok(())
}
