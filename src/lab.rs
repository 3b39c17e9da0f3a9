//! The pools of a lab as one list of [`HostView`]s: what `status --all-hosts` and the web
//! dashboard show. Today the list holds this host's pool; the hosts sharing a Redis and
//! the stores named in the configuration join it with the multi-host work (issue 11),
//! behind the same function, so that its callers do not change.
//!
//! Reading never writes: a view of a pool is computed in memory (what a sweep would free)
//! and only this host's own commands change its pool.

// Scaffolding until its first callers (the dashboard, `status --all-hosts`) land.
#![allow(dead_code)]

use crate::commands::Context;
use crate::commands::gpus::Gpus;
use crate::error::Result;
use crate::liveness;
use crate::views::{self, HostSummary, HostView};

/// This machine's name, for an unnamed pool.
pub fn local_host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// This host's pool as a view, with what NVML says (`gpus`) about its GPUs. A store that
/// cannot be read gives an unreachable view, not an error: the other hosts still show.
pub fn local_view(ctx: &Context, gpus: &Gpus, threshold_mib: u64) -> HostView {
    let host = local_host_name();
    let store = ctx.store.describe();
    match read_local(ctx, gpus, threshold_mib, &host, &store) {
        Ok(view) => view,
        Err(e) => HostView {
            host,
            store,
            reachable: false,
            error: Some(e.message),
            now: None,
            summary: None,
            gpus: Vec::new(),
            queue: Vec::new(),
        },
    }
}

fn read_local(
    ctx: &Context,
    gpus: &Gpus,
    threshold_mib: u64,
    host: &str,
    store: &str,
) -> Result<HostView> {
    let (mut pool, now) = ctx.store.snapshot_pool()?;
    liveness::sweep(&mut pool, now, &ctx.rules(), &ctx.view);
    let gpu_views = views::gpu_views(&pool, gpus, threshold_mib);
    let queue = views::waiter_views(&pool.queue);
    Ok(HostView {
        host: host.to_string(),
        store: store.to_string(),
        reachable: true,
        error: None,
        now: Some(now),
        summary: Some(HostSummary::of(&gpu_views, &queue)),
        gpus: gpu_views,
        queue,
    })
}
