//! `canhazgpu status`: one line per GPU.

use crate::cli::StatusArgs;
use crate::commands::{Context, now};
use crate::duration::format_hms;
use crate::error::{Error, Result};
use crate::model::{GpuSlot, Kind, Pool, Timestamp};

pub fn status(ctx: &Context, args: &StatusArgs) -> Result<()> {
    let now = now();
    // The cheap unlocked read is the truth unless something has ended since the last
    // commit; then commit the sweep, so that what we show is what the store holds.
    let mut pool = ctx.store.snapshot()?.ok_or_else(Error::not_initialized)?;
    if ctx.sweep(&mut pool, now) {
        pool = ctx.store.update(|pool| {
            ctx.sweep(pool, now);
            Ok(pool.clone())
        })?;
    }
    if args.verbose {
        eprintln!("Store: {}", ctx.store.describe());
    }
    let mut out = String::new();
    for slot in &pool.gpus {
        out.push_str(&describe(slot, &pool, now));
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}

fn describe(slot: &GpuSlot, pool: &Pool, now: Timestamp) -> String {
    let id = slot.id;
    let Some(r) = &slot.reservation else {
        return match (slot.last_released, pool.initialized_at) {
            (Some(t), _) => format!(
                "GPU {id}: AVAILABLE (last released {} ago)",
                format_hms(now - t)
            ),
            (None, Some(t)) => format!(
                "GPU {id}: AVAILABLE (never reserved, initialized {} ago)",
                format_hms(now - t)
            ),
            (None, None) => format!("GPU {id}: AVAILABLE"),
        };
    };
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
