//! `canhazgpu report`: GPU-hours per user over a period, from the stores' history plus
//! the reservations still running; with `--host NAME` or `--all-hosts`, per user across
//! the hosts and per host.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cli::ReportArgs;
use crate::commands::Context;
use crate::commands::gpus::{Gpus, configured_threshold};
use crate::error::Result;
use crate::lab::{self, HostState};
use crate::model::{HistoryRecord, Pool, Timestamp};
use crate::output;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Usage {
    pub gpu_hours: f64,
    /// Finished reservations, one per GPU (a 2-GPU run counts twice), as upstream counts.
    pub run_count: u64,
    pub manual_count: u64,
    /// GPUs held right now; their time so far is in `gpu_hours`.
    pub in_progress: u64,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct UserUsage {
    pub user: String,
    #[serde(flatten)]
    pub usage: Usage,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct Report {
    pub days: u32,
    pub since: Timestamp,
    pub until: Timestamp,
    pub users: Vec<UserUsage>,
    pub total: Usage,
}

/// One host's report in `report --host/--all-hosts --json`: the host as `status`'s lab
/// views describe it, and its report, `null` when it could not be read.
#[derive(Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    pub store: String,
    pub this_host: bool,
    pub reachable: bool,
    pub error: Option<String>,
    pub report: Option<Report>,
}

impl Usage {
    fn merge(&mut self, other: &Usage) {
        self.gpu_hours += other.gpu_hours;
        self.run_count += other.run_count;
        self.manual_count += other.manual_count;
        self.in_progress += other.in_progress;
    }

    fn add(&mut self, seconds: i64, kind: &str, finished: bool) {
        self.gpu_hours += seconds.max(0) as f64 / 3600.0;
        match (finished, kind) {
            (false, _) => self.in_progress += 1,
            (true, "manual") => self.manual_count += 1,
            (true, _) => self.run_count += 1,
        }
    }
}

/// Sums what lies inside `[since, until]`: a reservation that began earlier counts from
/// `since`.
pub fn compute(
    history: &[HistoryRecord],
    pool: &Pool,
    since: Timestamp,
    until: Timestamp,
    days: u32,
) -> Report {
    let mut users: BTreeMap<String, Usage> = BTreeMap::new();
    let mut total = Usage::default();
    let clipped = |start: Timestamp, end: Timestamp| end.min(until) - start.max(since);
    for record in history
        .iter()
        .filter(|r| r.end_time >= since && r.start_time <= until)
    {
        let seconds = clipped(record.start_time, record.end_time);
        users
            .entry(record.user.clone())
            .or_default()
            .add(seconds, &record.reservation_type, true);
        total.add(seconds, &record.reservation_type, true);
    }
    for reservation in pool
        .gpus
        .iter()
        .filter_map(|slot| slot.reservation.as_ref())
    {
        let seconds = clipped(reservation.start_time, until);
        let kind = reservation.kind.as_str();
        users
            .entry(reservation.user.clone())
            .or_default()
            .add(seconds, kind, false);
        total.add(seconds, kind, false);
    }
    Report {
        days,
        since,
        until,
        users: sorted(users),
        total,
    }
}

/// The reports of several hosts as one: per user across them.
pub fn combine<'a>(reports: impl IntoIterator<Item = &'a Report>, days: u32) -> Report {
    let mut users: BTreeMap<String, Usage> = BTreeMap::new();
    let mut total = Usage::default();
    let (mut since, mut until) = (Timestamp::MAX, Timestamp::MIN);
    for report in reports {
        for user in &report.users {
            users
                .entry(user.user.clone())
                .or_default()
                .merge(&user.usage);
        }
        total.merge(&report.total);
        since = since.min(report.since);
        until = until.max(report.until);
    }
    if since > until {
        (since, until) = (0, 0);
    }
    Report {
        days,
        since,
        until,
        users: sorted(users),
        total,
    }
}

/// Most GPU-hours first, then by name.
fn sorted(users: BTreeMap<String, Usage>) -> Vec<UserUsage> {
    let mut users: Vec<UserUsage> = users
        .into_iter()
        .map(|(user, usage)| UserUsage { user, usage })
        .collect();
    users.sort_by(|a, b| {
        b.usage
            .gpu_hours
            .total_cmp(&a.usage.gpu_hours)
            .then(a.user.cmp(&b.user))
    });
    users
}

/// Returns the exit status (see `status`).
pub fn report(ctx: &Context, args: &ReportArgs) -> Result<i32> {
    if args.hosts.any() {
        return lab_report(ctx, args);
    }
    let (pool, until) = ctx.current_pool()?;
    let since = until - i64::from(args.days) * 86_400;
    let history = ctx.store.history(since)?;
    let report = compute(&history, &pool, since, until, args.days);
    if args.json {
        return output::print_json(&report, "the report", true).map(|()| 0);
    }
    output::print(&render(&report, since)).map(|()| 0)
}

fn lab_report(ctx: &Context, args: &ReportArgs) -> Result<i32> {
    let window = i64::from(args.days) * 86_400;
    let since = crate::model::local_now() - window;
    let threshold = configured_threshold(&ctx.config);
    let hosts = lab::read(
        ctx,
        &lab::selection(&args.hosts),
        (Gpus::none(), threshold),
        Some(since),
    )?;
    let reports: Vec<Option<Report>> = hosts
        .iter()
        .map(|host| {
            let read = host.outcome.as_ref().ok()?;
            let since = read.now - window;
            Some(compute(
                &read.history,
                &read.pool,
                since,
                read.now,
                args.days,
            ))
        })
        .collect();
    if args.json {
        let per_host: Vec<HostReport> = hosts
            .iter()
            .zip(reports)
            .map(|(host, report)| host_report(host, report))
            .collect();
        output::print_json(&per_host, "the report", true)?;
        return Ok(lab::exit_status(&hosts));
    }
    output::print(&render_lab(&hosts, &reports, args.days, since))?;
    Ok(lab::exit_status(&hosts))
}

fn host_report(host: &HostState, report: Option<Report>) -> HostReport {
    let problem = host.outcome.as_ref().err();
    HostReport {
        host: host.name.clone(),
        store: host.store.clone(),
        this_host: host.this_host,
        reachable: problem.is_none_or(|problem| problem.reachable),
        error: problem.map(|problem| problem.message.clone()),
        report,
    }
}

/// Per user across the hosts, then per host, then the hosts that could not be read.
fn render_lab(
    hosts: &[HostState],
    reports: &[Option<Report>],
    days: u32,
    since: Timestamp,
) -> String {
    let read: Vec<&Report> = reports.iter().flatten().collect();
    let combined = combine(read.iter().copied(), days);
    let mut text = render(&combined, since);
    text.insert_str(
        text.find('\n').unwrap_or(text.len()),
        &format!(", on {} host(s)", read.len()),
    );
    let per_host: Vec<UserUsage> = hosts
        .iter()
        .zip(reports)
        .filter_map(|(host, report)| {
            Some(UserUsage {
                user: host.name.clone(),
                usage: report.as_ref()?.total.clone(),
            })
        })
        .collect();
    text.push('\n');
    text.push_str(&table("Host", &per_host, &combined.total));
    for host in hosts.iter().filter(|host| host.outcome.is_err()) {
        text.push('\n');
        text.push_str(&lab::host_header(host));
        text.push('\n');
    }
    text
}

/// The report as a table under a heading.
fn render(report: &Report, since: Timestamp) -> String {
    let mut text = format!(
        "GPU usage over the last {} day(s), since {} UTC\n\n",
        report.days,
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(since.max(0) as u64)
        )
    );
    text.push_str(&table("User", &report.users, &report.total));
    text
}

/// Rows named in the first column (users or hosts), then the total.
fn table(heading: &str, rows: &[UserUsage], total: &Usage) -> String {
    let width = rows.iter().map(|u| u.user.len()).max().unwrap_or(4).max(5);
    let mut text = format!(
        "{:<width$}  {:>10}  {:>6}  {:>6}  {:>11}\n",
        heading, "GPU hours", "Runs", "Manual", "In progress"
    );
    let row = |name: &str, usage: &Usage| {
        format!(
            "{:<width$}  {:>10.2}  {:>6}  {:>6}  {:>11}\n",
            name, usage.gpu_hours, usage.run_count, usage.manual_count, usage.in_progress
        )
    };
    for user in rows {
        text.push_str(&row(&user.user, &user.usage));
    }
    text.push_str(&row("Total", total));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Reservation};

    fn record(user: &str, start: i64, end: i64, kind: &str) -> HistoryRecord {
        HistoryRecord {
            user: user.into(),
            gpu_id: 0,
            start_time: start,
            end_time: end,
            duration_seconds: (end - start) as f64,
            reservation_type: kind.into(),
        }
    }

    #[test]
    fn exact_gpu_hours_clipped_to_the_window() {
        let since = 10_000;
        let until = since + 86_400;
        let history = [
            record("alice", since, since + 7200, "run"),
            record("alice", since + 100, since + 1900, "manual"),
            // Began an hour before the window: only its last hour counts.
            record("bob", since - 3600, since + 3600, "run"),
            // Entirely before the window.
            record("carol", since - 9000, since - 10, "run"),
        ];
        let mut pool = Pool::new(2, 0);
        pool.gpus[1].reservation = Some(Reservation {
            user: "bob".into(),
            actual_user: None,
            kind: Kind::Manual,
            start_time: until - 1800,
            last_heartbeat: until,
            expiry_time: Some(until + 10),
            note: None,
            owner: None,
            request_id: None,
        });
        let report = compute(&history, &pool, since, until, 1);
        assert_eq!(report.users.len(), 2);
        assert_eq!(report.users[0].user, "alice");
        assert_eq!(
            report.users[0].usage,
            Usage {
                gpu_hours: 2.5,
                run_count: 1,
                manual_count: 1,
                in_progress: 0
            }
        );
        assert_eq!(
            report.users[1].usage,
            Usage {
                gpu_hours: 1.5,
                run_count: 1,
                manual_count: 0,
                in_progress: 1
            }
        );
        assert_eq!(report.total.gpu_hours, 4.0);
        assert_eq!(report.total.in_progress, 1);
    }

    #[test]
    fn hosts_combine_per_user() {
        let pool = Pool::new(1, 0);
        let a = compute(
            &[
                record("alice", 0, 3600, "run"),
                record("bob", 0, 7200, "manual"),
            ],
            &pool,
            0,
            10_000,
            1,
        );
        let b = compute(&[record("alice", 100, 7300, "run")], &pool, 100, 10_100, 1);
        let both = combine([&a, &b], 1);
        let users: Vec<(&str, f64, u64)> = both
            .users
            .iter()
            .map(|u| (u.user.as_str(), u.usage.gpu_hours, u.usage.run_count))
            .collect();
        assert_eq!(users, [("alice", 3.0, 2), ("bob", 2.0, 0)]);
        assert_eq!(both.total.gpu_hours, 5.0);
        assert_eq!((both.since, both.until), (0, 10_100));
        assert_eq!(combine([], 1).total, Usage::default());
    }
}
