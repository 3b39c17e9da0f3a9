//! `canhazgpu release`: give back the caller's manual reservations.

use crate::cli::ReleaseArgs;
use crate::commands::{Context, current_user, format_ids, now};
use crate::error::Result;
use crate::model::Kind;

pub fn release(ctx: &Context, _args: &ReleaseArgs) -> Result<()> {
    let user = current_user();
    let now = now();
    let released = ctx.store.update(|pool| {
        ctx.sweep(pool, now);
        let mine = pool.ids_where(|slot| {
            slot.reservation
                .as_ref()
                .is_some_and(|r| r.kind == Kind::Manual && r.held_by(&user))
        });
        for &id in &mine {
            pool.release(id, now);
        }
        Ok(mine)
    })?;
    if released.is_empty() {
        println!("No manually reserved GPUs to release");
    } else {
        println!(
            "Released {} GPU(s): {}",
            released.len(),
            format_ids(&released)
        );
    }
    Ok(())
}
