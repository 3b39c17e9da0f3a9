//! The pools of a lab as one list of hosts: what `status`, `queue` and `report` show with
//! `--host NAME` or `--all-hosts`, and what the web dashboard shows. The hosts are this
//! one, every host registered in this host's store (a shared Redis), and every store the
//! configuration's `[hosts]` names.
//!
//! Reading never writes: each pool is judged in memory (what a sweep would free) and only
//! a host's own commands change its pool; another host's owners are judged by heartbeats
//! and expiry alone, since only the host that runs a process can tell it is dead. Stores
//! are read in parallel, each in a few pipelined round trips, under one deadline.

mod judge;
mod plan;
mod read;
mod show;

use std::sync::Arc;
use std::time::Duration;

use crate::commands::Context;
use crate::commands::gpus::Gpus;
use crate::commands::report::{self, Report};
use crate::error::{Error, Result};
use crate::host::{HostName, Keyspace, PoolRead};
use crate::liveness::{InvisibleView, ProcessView, Rules};
use crate::model::{Timestamp, local_now};
use crate::store::{Registry, Store, StoreOptions, printable_url};
use crate::views::HostView;

pub use judge::{HostPool, HostState, Problem, rank_free};
pub use plan::Selection;
use plan::{OwnHost, Registered, StoreJob};
use read::{Opener, PoolReader, StoreOutcome, Target};
pub use show::{exit_status, host_header, sections, selection};

/// How long a view waits for all its stores together: a store's own connect and read
/// timeouts are 2 s, and the extra half second lets their message arrive instead of a
/// bare "no answer".
pub const DEADLINE: Duration = Duration::from_millis(2500);

/// This host's name as the views show it: config `host`, else the machine's host name.
pub fn this_host_name(ctx: &Context) -> String {
    match &ctx.config.host {
        Some(name) => name.to_string(),
        None => crate::host::local_hostname().unwrap_or_else(|| "localhost".to_string()),
    }
}

/// The hosts of `selection`, this host first, then by name. `local_gpus` is what this
/// command's NVML probe found, with the threshold in force. An unknown `--host` name is
/// a usage error; a host that cannot be read is listed with the reason.
pub fn read(
    ctx: &Context,
    selection: &Selection,
    local_gpus: (Gpus, u64),
    history_since: Option<Timestamp>,
) -> Result<Vec<HostState>> {
    let own = OwnHost {
        name: this_host_name(ctx),
        keyspace: ctx.config.store_options().keyspace,
        url: ctx.store_url.clone(),
    };
    let jobs = plan::plan(&own, &ctx.config.hosts, selection);
    let outcomes = read::read_all(&jobs, &opener(ctx), history_since, DEADLINE);
    let mut viewer = Viewer::new(ctx, local_gpus);
    let mut hosts = Vec::new();
    let mut unknown = Vec::new();
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let outcome = outcome.unwrap_or_else(|| did_not_answer(job));
        unknown.extend(outcome.unknown.iter().cloned());
        match &outcome.failure {
            Some(why) => hosts.extend(unread(ctx, &own, job, &outcome.store, why)),
            None => {
                for (target, read) in outcome.reads {
                    let this_host = target == Target::ThisHost;
                    hosts.push(HostState {
                        name: target_name(&target, &own.name),
                        store: outcome.store.clone(),
                        this_host,
                        outcome: read
                            .map_err(Problem::answered)
                            .and_then(|read| viewer.judge(this_host, read)),
                    });
                }
            }
        }
    }
    if !unknown.is_empty() {
        return Err(unknown_hosts(ctx, &own, &unknown));
    }
    hosts.sort_by(|a, b| {
        b.this_host
            .cmp(&a.this_host)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(hosts)
}

/// What this command brings to the pools it judges.
struct Viewer<'a> {
    ctx: &'a Context,
    now: Timestamp,
    own_rules: Rules,
    other_rules: Rules,
    /// This host's GPUs as this command probed them; taken by the first (only) read of
    /// this host's pool.
    local_gpus: Option<(Gpus, u64)>,
    default_threshold_mib: u64,
}

impl<'a> Viewer<'a> {
    fn new(ctx: &'a Context, local_gpus: (Gpus, u64)) -> Viewer<'a> {
        Viewer {
            ctx,
            now: local_now(),
            own_rules: ctx.rules(),
            // Another host's times are its store's; this viewer's clock is another, so a
            // time in the future is no sign of a clock step to repair (see
            // `Rules::repair_clock_steps`).
            other_rules: Rules {
                repair_clock_steps: false,
                ..ctx.rules()
            },
            default_threshold_mib: local_gpus.1,
            local_gpus: Some(local_gpus),
        }
    }

    /// Judges one pool: this host's with its processes visible and its fresh GPU facts,
    /// another's by heartbeats and what it published.
    fn judge(&mut self, this_host: bool, read: PoolRead) -> std::result::Result<HostPool, Problem> {
        let judge = judge::Judge {
            now: self.now,
            rules: if this_host {
                &self.own_rules
            } else {
                &self.other_rules
            },
            view: if this_host {
                &self.ctx.view as &dyn ProcessView
            } else {
                &InvisibleView
            },
            local_gpus: if this_host {
                self.local_gpus.take()
            } else {
                None
            },
            default_threshold_mib: self.default_threshold_mib,
        };
        judge.judge(read)
    }
}

/// The hosts of a store that could not be read, each with why.
fn unread(ctx: &Context, own: &OwnHost, job: &StoreJob, store: &str, why: &str) -> Vec<HostState> {
    // Only a `[hosts]` URL can fail to open: this host's store is open already.
    let why = if store.is_empty() {
        format!(
            "its store URL in `[hosts]` of {} is not usable: {why}",
            ctx.config.shown_path()
        )
    } else {
        why.to_string()
    };
    planned(job)
        .into_iter()
        .map(|target| HostState {
            name: target_name(&target, &own.name),
            store: store_name(store, &job.url),
            this_host: target == Target::ThisHost,
            outcome: Err(Problem::unreachable(why.clone())),
        })
        .collect()
}

/// Every host of the lab ([`Selection::All`]), this host first, as the dashboard shows
/// them: `gpus` is what the GPU library says about this host's GPUs (other hosts' come
/// from what they published). A host that cannot be read is listed with why; the call
/// itself never fails.
pub fn read_hosts(ctx: &Context, gpus: &Gpus, threshold_mib: u64) -> Vec<HostView> {
    match read(ctx, &Selection::All, (gpus.clone(), threshold_mib), None) {
        Ok(hosts) => hosts.iter().map(HostState::view).collect(),
        Err(e) => vec![unreachable_view(ctx, this_host_name(ctx), e.message)],
    }
}

/// The pool of `ctx`'s store as the view of the host named `host`: how the dashboard's
/// tests make a lab of several stores.
#[cfg(test)]
pub fn view_of(ctx: &Context, host: String, gpus: &Gpus, threshold_mib: u64) -> HostView {
    match read(
        ctx,
        &Selection::ThisHost,
        (gpus.clone(), threshold_mib),
        None,
    ) {
        Ok(hosts) if !hosts.is_empty() => HostView {
            host,
            ..hosts[0].view()
        },
        Ok(_) => unreachable_view(ctx, host, "nothing was read".to_string()),
        Err(e) => unreachable_view(ctx, host, e.message),
    }
}

fn unreachable_view(ctx: &Context, host: String, why: String) -> HostView {
    HostState {
        name: host,
        store: ctx.store.describe(),
        this_host: true,
        outcome: Err(Problem::unreachable(why)),
    }
    .view()
}

/// `report --json` of this host's pool over the last `days`, computed without writing:
/// reservations that have ended but were not yet swept count as ended now, as `report`
/// itself would after its sweep.
pub fn local_report(ctx: &Context, days: u32) -> Result<Report> {
    let (pool, until) = ctx.store.snapshot_pool()?;
    let mut swept = pool.clone();
    crate::liveness::sweep(&mut swept, until, &ctx.rules(), &ctx.view);
    let since = until - i64::from(days) * 86_400;
    let mut history = ctx.store.history(since)?;
    history.extend(crate::model::ended_between(
        Some(&pool),
        Some(&swept),
        until,
    ));
    Ok(report::compute(&history, &swept, since, until, days))
}

/// The hosts a job was to read, as far as they are known without the store's answer.
fn planned(job: &StoreJob) -> Vec<Target> {
    let mut targets = Vec::new();
    if job.own.is_some() {
        targets.push(Target::ThisHost);
    }
    targets.extend(job.entries.iter().cloned().map(Target::Entry));
    if let Registered::Only(names) = &job.registered {
        targets.extend(names.iter().cloned().map(Target::Registered));
    }
    targets
}

fn did_not_answer(job: &StoreJob) -> StoreOutcome {
    let store = printable_url(&job.url);
    StoreOutcome {
        failure: Some(format!(
            "no answer from {store} within {:.1} s; check that the server is up and \
             reachable from this host (network, firewall, its bind address)",
            DEADLINE.as_secs_f64()
        )),
        store,
        reads: Vec::new(),
        unknown: Vec::new(),
    }
}

fn store_name(described: &str, url: &str) -> String {
    if described.is_empty() {
        printable_url(url)
    } else {
        described.to_string()
    }
}

fn target_name(target: &Target, own: &str) -> String {
    match target {
        Target::ThisHost => own.to_string(),
        Target::Entry(name) | Target::Registered(name) => name.to_string(),
    }
}

fn unknown_hosts(ctx: &Context, own: &OwnHost, unknown: &[HostName]) -> Error {
    let names: Vec<&str> = unknown.iter().map(HostName::as_str).collect();
    let config = ctx.config.shown_path();
    Error::usage(format!(
        "unknown host {}: not this host ({}), not registered in the {}, and not in `[hosts]` \
         of {config}; `canhazgpu status --all-hosts` lists the hosts there are",
        names.join(", "),
        own.name,
        ctx.store.describe(),
    ))
}

/// Opens stores for the reading threads, with this host's TLS settings.
fn opener(ctx: &Context) -> Opener {
    let options = StoreOptions {
        keyspace: Keyspace::Upstream,
        viewing: true,
        ..ctx.config.store_options()
    };
    Arc::new(move |url: &str| {
        let store = Store::open(url, &options)?;
        Ok(Box::new(store) as Box<dyn PoolReader>)
    })
}

impl PoolReader for Store {
    fn describe(&self) -> String {
        Store::describe(self)
    }

    fn read(
        &self,
        with_registry: bool,
        choose: &mut dyn FnMut(&Registry) -> Vec<Keyspace>,
        history_since: Option<Timestamp>,
    ) -> Result<Vec<Result<PoolRead>>> {
        self.read_pools(with_registry, choose, history_since)
    }
}
