//! What `status`, `queue` and `report` share when they show a lab as text: which hosts
//! the flags ask for, each host's header and section, and the exit status.

use crate::cli::HostsArgs;
use crate::duration::format_hms;
use crate::error::EXIT_FAILURE;
use crate::lab::{HostPool, HostState, Selection};

/// What `--host` and `--all-hosts` ask for.
pub fn selection(args: &HostsArgs) -> Selection {
    if args.all_hosts {
        Selection::All
    } else {
        Selection::Named(args.hosts.clone())
    }
}

/// The exit status of a lab view: 1 when a host could not be shown.
pub fn exit_status(hosts: &[HostState]) -> i32 {
    if hosts.iter().all(|host| host.outcome.is_ok()) {
        0
    } else {
        EXIT_FAILURE
    }
}

/// One section per host: its header, then what `body` makes of its pool (nothing for a
/// host that could not be read, whose header says why), each ending in a newline, to be
/// joined with blank lines between them.
pub fn sections<'a>(
    hosts: impl IntoIterator<Item = &'a HostState>,
    body: impl Fn(&HostPool) -> String,
) -> Vec<String> {
    hosts
        .into_iter()
        .map(|host| {
            let mut section = host_header(host);
            section.push('\n');
            if let Ok(pool) = &host.outcome {
                section.push_str(&body(pool));
            }
            section
        })
        .collect()
}

/// `== gpu7 (this host) == 8 GPUs: 3 free, 4 reserved, ...; last write 0h 0m 12s ago`,
/// or the one line saying why the host could not be shown.
pub fn host_header(host: &HostState) -> String {
    let this = if host.this_host { " (this host)" } else { "" };
    let title = format!("== {}{this} ==", host.name);
    let pool = match &host.outcome {
        Ok(pool) => pool,
        Err(problem) => return format!("{title} {}", problem.message),
    };
    let summary = pool.summary();
    let mut line = format!(
        "{title} {} GPUs: {} free, {} reserved, {} in use without reservation, {} waiting",
        summary.gpus,
        summary.available,
        summary.in_use,
        summary.in_use_without_reservation,
        summary.waiting
    );
    if let Some(t) = pool.last_write {
        line.push_str(&format!("; last write {} ago", format_hms(pool.now - t)));
    }
    if let Some(t) = pool.nvml_at {
        line.push_str(&format!(
            "; {} asked {} ago",
            pool.gpus.library(),
            format_hms(pool.now - t)
        ));
    }
    line
}
