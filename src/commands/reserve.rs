//! `canhazgpu reserve`: hold GPUs for a while.

use crate::cli::ReserveArgs;
use crate::commands::gpus::Allocation;
use crate::commands::{Context, choose, current_user, export_line, format_ids, now};
use crate::duration::{self, format_hms};
use crate::error::Result;
use crate::model::{Kind, Reservation};

pub fn reserve(ctx: &Context, args: &ReserveArgs) -> Result<()> {
    let length = duration::parse(&args.duration)?;
    let gpus = Allocation::probe(&ctx.config, &args.alloc);
    let unusable = gpus.unusable();
    let user = current_user();
    let now = now();
    let expiry = now + length.as_secs() as i64;
    let ids = ctx.store.update(|pool| {
        ctx.sweep(pool, now);
        let ids = choose(pool, args.gpus, &unusable)?;
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
                    owner: None,
                });
            }
        }
        Ok(ids)
    })?;
    let devices = gpus.chosen(&ids);
    eprintln!(
        "Reserved {} GPU(s) {} for {} (expires in {})",
        ids.len(),
        format_ids(&ids),
        duration::format_compact(length),
        format_hms(expiry - now)
    );
    eprintln!("Release them early with `canhazgpu release`. To use them in this shell:");
    println!("{}", export_line(&devices));
    Ok(())
}
