//! `canhazgpu release`: give back the caller's manual reservations.
//!
//! Plain, or with `--all`: every manual reservation of the user (the seed's behaviour).
//! From the shell function of `init` (`--owner-pid`): only that shell's reservation, with
//! shell code on stdout that restores the shell's variables (`--shell`). The hidden modes
//! `--sync` and `--inherited` release nothing; they serve the prompt hook and shell start.

use crate::cli::ReleaseArgs;
use crate::commands::{Context, asked, current_user, format_ids};
use crate::error::{Error, Result};
use crate::gpu_env::Device;
use crate::liveness::ProcView;
use crate::model::{Kind, Owner, Pool, Reservation, Timestamp};
use crate::output;
use crate::powers;
use crate::shell::Shell;
use crate::shell::lease;
use crate::shell::session::{self, Clock, Session, Truth};
use crate::shell::vars::{Unwritable, Vars};

/// What a release did.
struct Released {
    ids: Vec<u32>,
    /// The processes that held them, whose shells' markers go (one may hold several).
    owners: Vec<Owner>,
    /// Manual reservations of the user left elsewhere, for the hint when none was this
    /// shell's.
    others: Vec<u32>,
    /// GPUs an administrator took back, and from whom.
    reclaimed: Vec<(u32, String)>,
    pool: Pool,
    /// The store's time of the commit.
    now: Timestamp,
}

pub fn release(ctx: &Context, args: &ReleaseArgs) -> Result<()> {
    let session = args
        .owner_pid
        .map(|pid| Session::attach(&ctx.view, pid))
        .transpose()?;
    if let Some(session) = session.as_ref().filter(|_| args.subshell) {
        session.check_output_returns("release")?;
    }
    if args.sync {
        return sync(ctx, args, session);
    }
    let (vars, unwritable) = match args.shell {
        Some(shell) => Vars::from_env(Some(shell))?,
        None => (Vars::default(), Vec::new()),
    };
    let user = current_user();
    let done = match &args.gpu_ids {
        Some(ids) => release_ids(ctx, ids, &user, args.force)?,
        None => {
            let only = match (&session, args.all) {
                (Some(session), false) => Some(session.owner.clone()),
                _ => None,
            };
            release_manual(ctx, only.as_ref(), &user)?
        }
    };
    // The shells that held them look at their markers at the next prompt. From the exit
    // hook (no --shell), whatever this shell held is over, its marker too.
    let exiting = session.as_ref().filter(|_| args.shell.is_none());
    let ended = done
        .owners
        .iter()
        .chain(exiting.map(|session| &session.owner));
    lease::remove(ended, &ctx.view);
    let message = match done.ids.len() {
        0 if args.gpu_ids.is_none() => None,
        n => {
            let mut message = format!("Released {n} GPU(s): {}", format_ids(&done.ids));
            for (id, holder) in &done.reclaimed {
                message.push_str(&format!("\nTook GPU {id} back from {holder}"));
            }
            Some(message)
        }
    };
    let Some(session) = session else {
        let message = message.as_deref();
        return output::println(message.unwrap_or("No manually reserved GPUs to release"));
    };
    // Shell mode: stdout is for shell code only.
    let Some(shell) = args.shell else {
        // The exit hook.
        if let Some(message) = message {
            say!("{message}");
        }
        return Ok(());
    };
    match message {
        Some(message) => say!("{message}"),
        None => explain_nothing_released(&session, &vars, &done, args.all, &user),
    }
    restore_shell(ctx, shell, &session, (&vars, &unwritable), done)
}

/// After a release in shell mode: the shell code that brings its variables in line
/// with what it still holds, and news of what else ended.
fn restore_shell(
    ctx: &Context,
    shell: Shell,
    session: &Session,
    (vars, unwritable): (&Vars, &[Unwritable]),
    done: Released,
) -> Result<()> {
    // What this command released needs no story; anything else that went is news.
    let read = (done.now, Some(done.pool));
    let settled = ctx.settle_shell(session, vars, read, &Device::by_index, &done.ids);
    let mut after = settled.vars;
    if after.has_layer() {
        session.refresh_lease(&mut after, &ctx.view);
    }
    session::write_back(shell, vars, &after, unwritable, settled.clock)
}

/// The manual reservations of `user`; only those of `only` when given (a shell's own).
fn release_manual(ctx: &Context, only: Option<&Owner>, user: &str) -> Result<Released> {
    ctx.store.update(|pool, now| {
        ctx.sweep(pool, now);
        let mine = |r: &Reservation| r.kind == Kind::Manual && r.held_by(user);
        let chosen = pool.ids_where(|slot| {
            slot.reservation
                .as_ref()
                .is_some_and(|r| mine(r) && (only.is_none() || r.owner.as_ref() == only))
        });
        let mut owners = Vec::new();
        for &id in &chosen {
            owners.extend(pool.release(id, now).and_then(|r| r.owner));
        }
        let others = pool.ids_where(|slot| slot.reservation.as_ref().is_some_and(mine));
        Ok(Released {
            ids: chosen,
            owners,
            others,
            reclaimed: Vec::new(),
            pool: pool.clone(),
            now,
        })
    })
}

/// Why nothing was released, and what would release it.
fn explain_nothing_released(
    session: &Session,
    vars: &Vars,
    done: &Released,
    all: bool,
    user: &str,
) {
    let inherited = vars
        .holder()
        .filter(|holder| *holder != session.shell_pid)
        .map(|holder| (holder, vars.gpus()))
        .filter(|(_, ids)| !ids.is_empty());
    if let Some((holder, ids)) = inherited {
        let ids = format_ids(&ids);
        match account_of(&done.pool, holder) {
            // `--all` is no help: they are another account's (a shell after `su`).
            Some(account) if account != user => say!(
                "GPU(s) {ids} in this shell's environment were reserved by {account}'s shell \
                 {holder}, and this shell runs as {user}: only {account} or an administrator \
                 can release them; they leave this shell's variables when that happens"
            ),
            _ if all => say!("No manually reserved GPUs to release"),
            _ => say!(
                "This shell reserved no GPUs itself; GPU(s) {ids} in its environment belong to \
                 shell {holder}: release them there, or with `canhazgpu release --all`"
            ),
        }
    } else if !done.others.is_empty() && !all {
        say!(
            "No GPUs reserved by this shell; you hold GPU(s) {} from elsewhere, which \
             `canhazgpu release --all` releases",
            format_ids(&done.others)
        );
    } else {
        say!("No manually reserved GPUs to release");
    }
}

/// The account whose reservation process `pid` holds.
fn account_of(pool: &Pool, pid: u32) -> Option<String> {
    pool.gpus
        .iter()
        .filter_map(|slot| slot.reservation.as_ref())
        .find(|r| r.owner.as_ref().is_some_and(|owner| owner.pid == pid))
        .map(|r| r.actual_user.clone().unwrap_or_else(|| r.user.clone()))
}

/// `--sync`: the prompt hook saw the expiry pass, the marker vanish, or its time to
/// look come.
fn sync(ctx: &Context, args: &ReleaseArgs, session: Option<Session>) -> Result<()> {
    let (Some(shell), Some(session)) = (args.shell, session) else {
        return Err(Error::usage("--sync needs --shell and --owner-pid"));
    };
    let (vars, unwritable) = Vars::from_env(Some(shell))?;
    if !vars.has_layer() {
        return session::write_back(shell, &vars, &vars, &unwritable, Clock::now());
    }
    // The store's time judges expiry, as in every command.
    let top = ctx.store.snapshot()?;
    let settled = ctx.settle_shell(&session, &vars, (top.now, top.pool), &Device::by_index, &[]);
    let mut after = settled.vars;
    if after.has_layer() {
        session.refresh_lease(&mut after, &ctx.view);
    }
    session::write_back(shell, &vars, &after, &unwritable, settled.clock)
}

/// `--inherited`: at shell start, drop variables that came from a shell that is not this
/// one's ancestor. Reads no configuration and no store, like the rest of `init`.
pub fn inherited(args: &ReleaseArgs) -> Result<i32> {
    let (Some(shell), Some(pid)) = (args.shell, args.owner_pid) else {
        return Err(Error::usage("--inherited needs --shell and --owner-pid"));
    };
    let view = ProcView::new();
    let session = Session::attach(&view, pid)?;
    let (vars, unwritable) = Vars::from_env(Some(shell))?;
    let clock = Clock::now();
    let truth = Truth::ProcessTree;
    let (after, lost) = session.settle(&vars, truth, &view, &Device::by_index);
    Session::report(&lost);
    session::write_back(shell, &vars, &after, &unwritable, clock)?;
    Ok(0)
}

/// `release --gpu-ids`: exactly these GPUs, all or nothing, each of them the caller's;
/// with `--force` (admins only) others' too.
fn release_ids(ctx: &Context, ids: &[u32], user: &str, force: bool) -> Result<Released> {
    asked::distinct_gpu_ids(ids)?;
    if force {
        powers::require_admin(&ctx.config, &ctx.store, "take back GPUs that others hold")?;
    }
    ctx.store.update(|pool, now| {
        ctx.sweep(pool, now);
        let refusals: Vec<String> = ids
            .iter()
            .filter_map(|&id| match pool.gpus.get(id as usize) {
                None => Some(format!("GPU {id} is not in the pool")),
                Some(slot) => match &slot.reservation {
                    None => Some(format!("GPU {id} is not reserved")),
                    Some(r) if !r.held_by(user) && !force => Some(format!(
                        "GPU {id} is held by {}, not by you (an admin can take it back with \
                         --force)",
                        r.user
                    )),
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
        let mut owners = Vec::new();
        let mut reclaimed = Vec::new();
        for &id in ids {
            let others = pool.gpus[id as usize]
                .reservation
                .as_ref()
                .filter(|r| !r.held_by(user))
                .map(|r| r.user.clone());
            let ended = match &others {
                Some(holder) => {
                    reclaimed.push((id, holder.clone()));
                    pool.reclaim(id, now, user)
                }
                None => pool.release(id, now),
            };
            owners.extend(ended.and_then(|r| r.owner));
        }
        Ok(Released {
            ids: ids.to_vec(),
            owners,
            others: Vec::new(),
            reclaimed,
            pool: pool.clone(),
            now,
        })
    })
}
