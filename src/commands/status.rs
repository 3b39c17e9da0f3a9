//! `canhazgpu status`: one line per GPU.
//!
//! Each line starts with the seed's words (`GPU 0: AVAILABLE ...`, `GPU 1: IN USE by ...`)
//! so that scripts reading them keep working; what the GPU library (NVML or AMD SMI)
//! adds comes after them, or replaces AVAILABLE with IN USE WITHOUT RESERVATION for a
//! GPU someone uses unasked.
//!
//! With `--host NAME` or `--all-hosts`, the same lines for each host under a header that
//! sums the host up (see `crate::lab`).

use crate::cli::StatusArgs;
use crate::commands::gpus::{Gpus, describe_processes, memory_threshold};
use crate::commands::{Context, format_ids};
use crate::duration::format_hms;
use crate::error::Result;
use crate::gpu::GpuInfo;
use crate::lab::{self, HostState};
use crate::model::{GpuSlot, Kind, Pool, Reservation, Timestamp};
use crate::output;
use crate::views::{self, GpuState, HostView};

/// Returns the exit status: with `--host` or `--all-hosts`, 1 when a host could not be
/// shown.
pub fn status(ctx: &Context, args: &StatusArgs) -> Result<i32> {
    // Asked before the pool is read, so the reservations shown are no older than the
    // processes they are compared with.
    let gpus = Gpus::probe(&ctx.config, &args.usage.libraries);
    gpus.warn("showing reservations only");
    let threshold = memory_threshold(&ctx.config, &args.usage);
    if args.hosts.any() {
        return lab_status(ctx, args, gpus, threshold);
    }
    let (pool, now) = ctx.current_pool()?;
    ctx.store
        .publish_gpus(|probed_at| gpus.to_publish(probed_at, threshold));
    warn_about_size(ctx, &pool, &gpus);
    if args.verbose {
        say!("Store: {}", ctx.store.describe());
        say!("{}", describe_nvml(&gpus, pool.gpus.len(), threshold));
    }
    if args.json {
        let views = views::gpu_views(&pool, &gpus, threshold);
        return output::print_json(&views, "the status", false).map(|()| 0);
    }
    output::print(&gpu_lines(&pool, now, &gpus, threshold)).map(|()| 0)
}

fn gpu_lines(pool: &Pool, now: Timestamp, gpus: &Gpus, threshold: u64) -> String {
    let mut out = String::new();
    for slot in &pool.gpus {
        out.push_str(&describe(slot, pool, now, gpus, threshold));
        out.push('\n');
    }
    out
}

fn lab_status(ctx: &Context, args: &StatusArgs, gpus: Gpus, threshold: u64) -> Result<i32> {
    let hosts = lab::read(ctx, &lab::selection(&args.hosts), (gpus, threshold), None)?;
    let shown: Vec<&HostState> = match args.free {
        // The hosts that could not be read stay in the answer: the best host may be
        // among them.
        Some(wanted) => lab::rank_free(&hosts, wanted as usize)
            .into_iter()
            .map(|index| &hosts[index])
            .chain(hosts.iter().filter(|host| host.outcome.is_err()))
            .collect(),
        None => hosts.iter().collect(),
    };
    if args.verbose {
        for host in &hosts {
            say!("Store of {}: {}", host.name, host.store);
        }
    }
    if args.json {
        let views: Vec<HostView> = shown.iter().map(|host| host.view()).collect();
        output::print_json(&views, "the status", false)?;
        return Ok(lab::exit_status(&hosts));
    }
    let mut sections: Vec<String> = Vec::new();
    if let Some(wanted) = args.free
        && shown.iter().all(|host| host.outcome.is_err())
    {
        sections.push(format!("No host has {wanted} GPU(s) free now\n"));
    }
    sections.extend(lab::sections(shown, |pool| {
        gpu_lines(&pool.pool, pool.now, &pool.gpus, pool.threshold_mib)
    }));
    output::print(&sections.join("\n"))?;
    Ok(lab::exit_status(&hosts))
}

/// A pool whose size disagrees with what the store or the host holds: GPU entries beyond
/// it are reservations no command sees, and GPUs beyond what NVML reports do not exist
/// here. Checked by `status` only, which people run when something looks wrong, so
/// that other commands pay nothing for it.
fn warn_about_size(ctx: &Context, pool: &Pool, gpus: &Gpus) {
    let size = pool.gpus.len();
    match ctx.store.entries_beyond(size) {
        Ok(Some(beyond)) => say!(
            "canhazgpu: warning: the store holds entries for GPU(s) {} beyond the pool's \
             {size} GPUs; no command sees them, so reservations there are not honoured. If \
             the pool should be larger, set the right size (`redis-cli SET {} N`); \
             otherwise delete those entries",
            format_ids(&beyond.ids),
            beyond.count_key
        ),
        Ok(None) => {}
        Err(e) => {
            say!("canhazgpu: warning: could not look for GPU entries beyond the pool: {e}")
        }
    }
    if let Some(devices) = gpus.every_device()
        && devices.len() < size
    {
        say!(
            "canhazgpu: warning: the pool has {size} GPUs but {} reports {} on this host: \
             GPU(s) {} do not exist here, and jobs given them find no GPU; an administrator \
             can resize the pool with `canhazgpu admin --gpus {} --force`",
            gpus.library(),
            devices.len(),
            format_ids(&(devices.len() as u32..size as u32).collect::<Vec<_>>()),
            devices.len()
        );
    }
}

fn describe_nvml(gpus: &Gpus, pool_size: usize, threshold: u64) -> String {
    let Some(devices) = gpus.devices() else {
        return "NVML, AMD SMI: not available; showing reservations only".to_string();
    };
    let driver = gpus
        .driver_version()
        .map(|version| format!("driver {version}, "))
        .unwrap_or_default();
    let mismatch = if devices.len() == pool_size {
        String::new()
    } else {
        format!(" (the pool has {pool_size})")
    };
    let instances = devices.iter().filter(|gpu| gpu.mig.is_some()).count();
    let of_them = match instances {
        0 => String::new(),
        n => format!(", {n} of them MIG instances"),
    };
    format!(
        "{}: {driver}{} GPU(s){of_them}{mismatch}; in use without reservation above \
         {threshold} MiB",
        gpus.library(),
        devices.len()
    )
}

fn describe(slot: &GpuSlot, pool: &Pool, now: Timestamp, gpus: &Gpus, threshold: u64) -> String {
    let info = gpus.get(slot.id);
    let state = views::gpu_state(slot, info, threshold);
    let mut line = match (&slot.reservation, info) {
        (Some(r), _) => reserved(slot.id, r, now),
        (None, Some(gpu)) if state == GpuState::InUseWithoutReservation => {
            if gpu.processes.is_empty() {
                format!(
                    "GPU {}: IN USE WITHOUT RESERVATION ({} lists no processes)",
                    slot.id,
                    gpus.library()
                )
            } else {
                format!(
                    "GPU {}: IN USE WITHOUT RESERVATION by {}",
                    slot.id,
                    describe_processes(&gpu.processes)
                )
            }
        }
        (None, _) => available(slot, pool, now),
    };
    match info {
        Some(gpu) => {
            line.push_str(&format!(
                " — {}, {}/{} MiB",
                label(gpu),
                gpu.memory_used_mib,
                gpu.memory_total_mib
            ));
            if let Some(note) = &gpu.note {
                line.push_str(&format!(" — {note}"));
            }
            if let Some(r) = &slot.reservation {
                // Someone else's job on a reserved GPU is what crashes the holder's
                // runs with out-of-memory errors. Processes whose owner cannot be seen
                // may well be the holder's (in a container), so they are not flagged.
                let holder = |user: &str| user == r.user || Some(user) == r.actual_user.as_deref();
                let foreign: Vec<_> = gpu
                    .processes
                    .iter()
                    .filter(|p| p.user.as_deref().is_some_and(|user| !holder(user)))
                    .collect();
                if !foreign.is_empty() {
                    line.push_str(&format!(
                        " — WARNING: also used by {}",
                        describe_processes(foreign)
                    ));
                }
            }
        }
        None if gpus.devices().is_some() => {
            line.push_str(&format!(" — not reported by {}", gpus.library()))
        }
        None => {}
    }
    line
}

/// The model, and for a MIG instance where it is: `GPU 0/MIG 1g.10gb #2, NVIDIA A100`.
fn label(gpu: &GpuInfo) -> String {
    match &gpu.mig {
        Some(mig) => {
            let profile = mig
                .profile
                .as_deref()
                .map(|profile| format!(" {profile}"))
                .unwrap_or_default();
            format!("GPU {}/MIG{profile} #{}, {}", mig.gpu, mig.index, gpu.name)
        }
        None => gpu.name.clone(),
    }
}

fn available(slot: &GpuSlot, pool: &Pool, now: Timestamp) -> String {
    let id = slot.id;
    match (slot.last_released, pool.initialized_at) {
        (Some(t), _) => {
            let by = slot
                .reclaimed_by()
                .map(|admin| format!(", reclaimed by {admin}"))
                .unwrap_or_default();
            format!(
                "GPU {id}: AVAILABLE (last released {} ago{by})",
                format_hms(now - t)
            )
        }
        (None, Some(t)) => format!(
            "GPU {id}: AVAILABLE (never reserved, initialized {} ago)",
            format_hms(now - t)
        ),
        (None, None) => format!("GPU {id}: AVAILABLE"),
    }
}

fn reserved(id: u32, r: &Reservation, now: Timestamp) -> String {
    let detail = match r.kind {
        Kind::Run => format!(
            "run, last heartbeat {} ago",
            format_hms(now - r.last_heartbeat)
        ),
        Kind::Manual => match r.expiry_time {
            Some(t) => format!("manual, expires in {}", format_hms(t - now)),
            None => "manual".to_string(),
        },
    };
    // Upstream clients write actual_user even when it is the user shown.
    let detail = match &r.actual_user {
        Some(account) if *account != r.user => format!("{detail}, account {account}"),
        _ => detail,
    };
    let mut line = format!(
        "GPU {id}: IN USE by {} for {} ({detail})",
        r.user,
        format_hms(now - r.start_time)
    );
    if let Some(note) = &r.note {
        line.push_str(&format!(" [{note}]"));
    }
    line
}
