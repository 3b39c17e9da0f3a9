//! `canhazgpu prompt`: the prompt segment from the store's truth.
//!
//! Prompts run it at every line, so it does the least that answers: no holder in the
//! environment means no output and no store; otherwise one unlocked snapshot read and
//! the liveness rules, never NVML and never a write.

use crate::commands::Context;
use crate::error::Result;
use crate::gpu_env::Device;
use crate::liveness::ProcessView;
use crate::output;
use crate::shell::prompt::{FORMAT_VAR, segment};
use crate::shell::session::holding_of;
use crate::shell::vars::Vars;

pub fn prompt(open: impl FnOnce() -> Result<Context>) -> Result<i32> {
    // Variables we cannot read cannot name a holder either; print nothing, like a shell
    // that holds nothing.
    let Ok((vars, _)) = Vars::from_env(None) else {
        return Ok(0);
    };
    let Some(holder) = vars.holder() else {
        return Ok(0);
    };
    let ctx = open()?;
    let Some(owner) = ctx.view.owner(holder) else {
        return Ok(0);
    };
    let snapshot = ctx.store.snapshot()?;
    let Some(pool) = snapshot.pool else {
        return Ok(0);
    };
    let now = snapshot.now;
    let holding = holding_of(&pool, &owner, now, &ctx.rules(), &ctx.view);
    if holding.ids.is_empty() {
        return Ok(0);
    }
    // The environment's order is the one CUDA_VISIBLE_DEVICES uses.
    let mut shown = vars;
    shown.hold(&holding, &Device::by_index);
    let format = std::env::var(FORMAT_VAR).ok();
    let text = segment(
        format.as_deref(),
        &shown.gpus(),
        holding.expires.map(|t| t - now),
    );
    output::print(&text)?;
    Ok(0)
}
