//! The pools of a lab as one list of [`HostView`]s: what `status --all-hosts` and the web
//! dashboard show. Today the list holds this host's pool; the hosts sharing a Redis and
//! the stores named in the configuration join it with the multi-host work (issue 11),
//! behind the same function, so that its callers do not change.
//!
//! Reading never writes: a view of a pool is computed in memory (what a sweep would free)
//! and only this host's own commands change its pool.

use crate::commands::Context;
use crate::commands::gpus::Gpus;
use crate::commands::report::{self, Report};
use crate::error::Result;
use crate::liveness;
use crate::model;
use crate::views::{self, HostSummary, HostView};

/// Every host of the lab, this host first: the list the dashboard and `status
/// --all-hosts` show. `gpus` is what NVML says about this host's GPUs (other hosts' GPUs
/// are only known through their pools). A host that cannot be read is listed as
/// unreachable; the call itself never fails.
pub fn read_hosts(ctx: &Context, gpus: &Gpus, threshold_mib: u64) -> Vec<HostView> {
    vec![local_view(ctx, gpus, threshold_mib)]
}

/// `report --json` of this host's pool over the last `days`, computed without writing:
/// reservations that have ended but were not yet swept count as ended now, as `report`
/// itself would after its sweep.
pub fn local_report(ctx: &Context, days: u32) -> Result<Report> {
    let (pool, until) = ctx.store.snapshot_pool()?;
    let mut swept = pool.clone();
    liveness::sweep(&mut swept, until, &ctx.rules(), &ctx.view);
    let since = until - i64::from(days) * 86_400;
    let mut history = ctx.store.history(since)?;
    history.extend(model::ended_between(Some(&pool), Some(&swept), until));
    Ok(report::compute(&history, &swept, since, until, days))
}

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
    view_of(ctx, local_host_name(), gpus, threshold_mib)
}

/// The pool of `ctx`'s store as the view of the host named `host`.
pub fn view_of(ctx: &Context, host: String, gpus: &Gpus, threshold_mib: u64) -> HostView {
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
