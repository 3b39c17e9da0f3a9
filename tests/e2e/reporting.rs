//! Machine-readable status and the usage report, on both stores.

use crate::common;

use common::{BACKENDS, Backend, TestStore, unix_now};
use serde_json::{Value, json};

const STATUS_KEYS: [&str; 13] = [
    "id",
    "state",
    "user",
    "actual_user",
    "kind",
    "since",
    "last_heartbeat",
    "expires",
    "note",
    "last_released",
    "nvml",
    "vendor",
    "mig",
];

#[test]
fn status_json_follows_the_documented_schema() {
    let documented =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status-json.md"))
            .unwrap();
    for key in STATUS_KEYS {
        assert!(
            documented.contains(&format!("| `{key}` |")),
            "{key} is not documented"
        );
    }
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(3);
        let now = unix_now();
        store.set_raw_slot(1, json!({"last_released": now - 60}));
        store.set_raw_slot(
            2,
            json!({
                "user": "alice", "start_time": now - 10, "last_heartbeat": now - 10,
                "type": "manual", "expiry_time": now + 3600, "note": "sweep"
            }),
        );
        let out = store.cmd().args(["status", "--json"]).output().unwrap();
        assert!(out.status.success());
        let gpus: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(gpus.len(), 3);
        for (id, gpu) in gpus.iter().enumerate() {
            let object = gpu.as_object().unwrap();
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            let mut expected = STATUS_KEYS.to_vec();
            expected.sort_unstable();
            assert_eq!(keys, expected, "{backend:?}");
            assert_eq!(gpu["id"], id);
        }
        assert_eq!(gpus[0]["state"], "available");
        assert_eq!(gpus[0]["last_released"], Value::Null);
        assert_eq!(gpus[1]["last_released"], now - 60);
        assert_eq!(gpus[2]["state"], "in_use");
        assert_eq!(gpus[2]["user"], "alice");
        assert_eq!(gpus[2]["kind"], "manual");
        assert_eq!(gpus[2]["expires"], now + 3600);
        assert_eq!(gpus[2]["since"], now - 10);
        assert_eq!(gpus[2]["note"], "sweep");
        assert_eq!(gpus[2]["last_heartbeat"], Value::Null);
        assert_eq!(gpus[2]["nvml"], Value::Null);
    }
}

fn add_history(store: &TestStore, record: Value) {
    match store.backend {
        Backend::File => {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(store.state_dir().join("history.jsonl"))
                .unwrap();
            writeln!(file, "{record}").unwrap();
        }
        Backend::Redis => {
            // Upstream scores by end time; the RFC 3339 record ends at 2020-01-01T01:00:00Z.
            let score = record["end_time"]
                .as_i64()
                .unwrap_or(1_577_840_400)
                .to_string();
            store.redis().cli(&[
                "ZADD",
                "canhazgpu:usage_history_sorted",
                &score,
                &record.to_string(),
            ]);
        }
    }
}

#[test]
fn report_gives_exact_gpu_hours_from_a_fixed_history() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(2);
        let now = unix_now();
        let day = 86_400;
        let record = |user: &str, start: i64, end: i64, kind: &str| {
            json!({
                "user": user, "gpu_id": 0, "start_time": start, "end_time": end,
                "duration_seconds": end - start, "reservation_type": kind
            })
        };
        add_history(
            &store,
            record("alice", now - 3 * day, now - 3 * day + 7200, "run"),
        );
        add_history(
            &store,
            record("alice", now - 2 * day, now - 2 * day + 1800, "manual"),
        );
        add_history(&store, record("bob", now - day, now - day + 5400, "run"));
        // Outside a 7-day window; inside a 30-day one.
        add_history(
            &store,
            record("carol", now - 20 * day, now - 20 * day + 36_000, "run"),
        );
        // Upstream Go wrote RFC 3339 times.
        add_history(
            &store,
            json!({
                "user": "bob", "gpu_id": 1, "start_time": "2020-01-01T00:00:00Z",
                "end_time": "2020-01-01T01:00:00Z", "duration_seconds": 3600.0,
                "reservation_type": "run"
            }),
        );
        let out = store
            .cmd()
            .args(["report", "--days", "7", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let users = report["users"].as_array().unwrap();
        assert_eq!(users.len(), 2, "{report}");
        assert_eq!(users[0]["user"], "alice");
        assert_eq!(users[0]["gpu_hours"], 2.5);
        assert_eq!(users[0]["run_count"], 1);
        assert_eq!(users[0]["manual_count"], 1);
        assert_eq!(users[1]["user"], "bob");
        assert_eq!(users[1]["gpu_hours"], 1.5);
        assert_eq!(report["total"]["gpu_hours"], 4.0);
        assert_eq!(report["days"], 7);

        let table = store.cmd().args(["report"]).output().unwrap();
        let table = String::from_utf8_lossy(&table.stdout);
        assert!(table.contains("last 30 day(s)"), "{table}");
        let carol = table.lines().find(|l| l.starts_with("carol")).unwrap();
        assert!(carol.contains("10.00"), "{table}");
        let total = table.lines().find(|l| l.starts_with("Total")).unwrap();
        assert!(total.contains("14.00"), "{table}");
    }
}

#[test]
fn report_counts_reservations_in_progress() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(2);
        let now = unix_now();
        store.set_raw_slot(
            0,
            json!({
                "user": "dave", "start_time": now - 7200, "last_heartbeat": now, "type": "manual",
                "expiry_time": now + 3600
            }),
        );
        let out = store.cmd().args(["report", "--json"]).output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let dave = &report["users"][0];
        assert_eq!(dave["user"], "dave");
        assert_eq!(dave["in_progress"], 1);
        let hours = dave["gpu_hours"].as_f64().unwrap();
        assert!((2.0..2.01).contains(&hours), "{hours}");
    }
}

#[test]
fn history_goes_to_one_file_a_month_and_the_old_single_file_still_counts() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let now = unix_now();
    // Left by an earlier version.
    add_history(
        &store,
        json!({"user": "alice", "gpu_id": 0, "start_time": now - 3 * 86_400,
               "end_time": now - 3 * 86_400 + 7200, "duration_seconds": 7200,
               "reservation_type": "run"}),
    );
    store.cmd().args(["run", "--", "true"]).assert().success();
    let names: Vec<String> = std::fs::read_dir(store.state_dir())
        .unwrap()
        .filter_map(|entry| entry.unwrap().file_name().into_string().ok())
        .filter(|name| name.starts_with("history-"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let month = &names[0]["history-".len()..];
    assert!(
        month.len() == "2026-12.jsonl".len() && month.ends_with(".jsonl"),
        "{names:?}"
    );
    let out = store
        .cmd()
        .args(["report", "--days", "7", "--json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = report["total"]["run_count"].as_u64();
    assert_eq!(runs, Some(2), "{report}");
    assert_eq!(report["users"][0]["user"], "alice", "{report}");
}
