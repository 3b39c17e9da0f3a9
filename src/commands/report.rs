//! `canhazgpu report`: GPU-hours per user over a period, from the stores' history plus
//! the reservations still running.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cli::ReportArgs;
use crate::commands::Context;
use crate::error::{Error, Result};
use crate::model::{HistoryRecord, Pool, Timestamp};
use crate::output;

#[derive(Debug, Default, PartialEq, Serialize)]
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

impl Usage {
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
    Report {
        days,
        since,
        until,
        users,
        total,
    }
}

pub fn report(ctx: &Context, args: &ReportArgs) -> Result<()> {
    let (pool, until) = ctx.current_pool()?;
    let since = until - i64::from(args.days) * 86_400;
    let history = ctx.store.history(since)?;
    let report = compute(&history, &pool, since, until, args.days);
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::failure(format!("cannot encode the report as JSON: {e}")))?;
        return output::println(&text);
    }
    output::print(&render(&report, since))
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
    let width = report
        .users
        .iter()
        .map(|u| u.user.len())
        .max()
        .unwrap_or(4)
        .max(5);
    text.push_str(&format!(
        "{:<width$}  {:>10}  {:>6}  {:>6}  {:>11}\n",
        "User", "GPU hours", "Runs", "Manual", "In progress"
    ));
    let row = |name: &str, usage: &Usage| {
        format!(
            "{:<width$}  {:>10.2}  {:>6}  {:>6}  {:>11}\n",
            name, usage.gpu_hours, usage.run_count, usage.manual_count, usage.in_progress
        )
    };
    for user in &report.users {
        text.push_str(&row(&user.user, &user.usage));
    }
    text.push_str(&row("Total", &report.total));
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
}
