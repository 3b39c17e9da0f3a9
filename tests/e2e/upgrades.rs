//! Upgrades keep reservations: each folder in `tests/fixtures/` holds what a released
//! version wrote on both stores while people held GPUs (`scripts/make-fixtures.sh`; the
//! scenario is in `tests/fixtures/README.md`), and this binary must read every one of
//! them: status shows the reservations, queue the waiter, report the history, release
//! gives GPUs back, and a month later everything has ended by the rules. A state file of
//! a newer schema than this binary knows is refused, never reset.
//!
//! A fixture is moved in time as a whole before use (every time in it shifted by the
//! same amount), so that its reservations are as fresh or as old as a check needs; its
//! bytes are otherwise exactly what the old version wrote.

use crate::common::{self, Backend, TestStore};

use std::path::{Path, PathBuf};

const MINUTE: i64 = 60;
const DAY: i64 = 86_400;

struct Fixture {
    /// The folder's name, e.g. v0.1.0.
    name: String,
    dir: PathBuf,
    file_store_written_at: i64,
    redis_written_at: i64,
}

/// Every fixture folder; there must be at least the one of the first packaged version.
fn fixtures() -> Vec<Fixture> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut fixtures: Vec<Fixture> = std::fs::read_dir(&root)
        .expect("tests/fixtures")
        .map(|entry| entry.expect("fixture entry").path())
        .filter(|dir| dir.join("written_at").is_file())
        .map(|dir| {
            let meta = std::fs::read_to_string(dir.join("written_at")).unwrap();
            let field = |name: &str| -> i64 {
                meta.lines()
                    .find_map(|line| line.strip_prefix(&format!("{name}=")))
                    .unwrap_or_else(|| panic!("{}: no {name}", dir.display()))
                    .parse()
                    .unwrap()
            };
            Fixture {
                name: dir.file_name().unwrap().to_string_lossy().into_owned(),
                file_store_written_at: field("file_store_written_at"),
                redis_written_at: field("redis_written_at"),
                dir,
            }
        })
        .collect();
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        fixtures.iter().any(|f| f.name == "v0.1.0"),
        "tests/fixtures/v0.1.0 is missing: old fixtures are never removed"
    );
    fixtures
}

/// `text` with every time moved so that `written_at` becomes `new_written_at`. Times are
/// the runs of exactly ten digits from a day before to a month after the writing;
/// nothing else in a fixture looks like that (pids, ticks and counts are shorter, and
/// PID namespace inode numbers start at 0xF0000000, beyond any such time until 2097).
fn moved_in_time(text: &str, written_at: i64, new_written_at: i64) -> String {
    let window = written_at - DAY..=written_at + 31 * DAY;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let digits = &rest[..end];
        match digits.parse::<i64>() {
            Ok(time) if digits.len() == 10 && window.contains(&time) => {
                out.push_str(&(time - written_at + new_written_at).to_string());
            }
            _ => out.push_str(digits),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A fresh store of `backend` holding the fixture, written `ago` seconds before now.
fn install(fixture: &Fixture, backend: Backend, ago: i64) -> TestStore {
    let store = TestStore::new(backend);
    let now = common::unix_now();
    match backend {
        Backend::File => {
            let written_at = fixture.file_store_written_at;
            std::fs::create_dir(store.state_dir()).unwrap();
            for file in ["state.json", "history.jsonl"] {
                let text = std::fs::read_to_string(fixture.dir.join("file-store").join(file))
                    .unwrap_or_else(|e| panic!("{}: {file}: {e}", fixture.name));
                let text = moved_in_time(&text, written_at, now - ago);
                std::fs::write(store.state_dir().join(file), text).unwrap();
            }
        }
        Backend::Redis => {
            let written_at = fixture.redis_written_at;
            let dump = std::fs::read_to_string(fixture.dir.join("redis.tsv")).unwrap();
            for line in moved_in_time(&dump, written_at, now - ago).lines() {
                load_redis_line(&store, line);
            }
        }
    }
    store
}

/// One line of `redis.tsv` into the store's Redis, with the command that writes it.
fn load_redis_line(store: &TestStore, line: &str) {
    let fields: Vec<&str> = line.split('\t').collect();
    let reply = match fields[..] {
        ["string", key, value] => store.redis().cli(&["SET", key, value]),
        ["zset", key, score, member] => store.redis().cli(&["ZADD", key, score, member]),
        ["hash", key, field, value] => store.redis().cli(&["HSET", key, field, value]),
        _ => panic!("redis.tsv: a line of unknown shape: {line:?}"),
    };
    assert!(reply == "OK" || reply == "1", "{line:?}: {reply}");
}

fn run_ok(store: &TestStore, args: &[&str]) -> String {
    let out = store.cmd().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (finished runs, finished manual reservations, in progress) over `days`, from report.
fn report_counts(store: &TestStore, days: u32) -> (u64, u64, u64) {
    let text = run_ok(store, &["report", "--days", &days.to_string(), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let total = &report["total"];
    let count = |name: &str| {
        total[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {text}"))
    };
    (
        count("run_count"),
        count("manual_count"),
        count("in_progress"),
    )
}

fn lines_with<'a>(text: &'a str, fragment: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| line.contains(fragment))
        .collect()
}

/// A minute after it was written, the fixture's pool is as its holders left it.
fn check_as_left(fixture: &Fixture, store: &TestStore) {
    let context = format!("{} on {:?}", fixture.name, store.backend);
    let status = store.status();
    assert_eq!(
        lines_with(&status, "IN USE").len(),
        5,
        "{context}:\n{status}"
    );
    assert_eq!(
        lines_with(&status, "AVAILABLE").len(),
        3,
        "{context}:\n{status}"
    );
    for (note, holder) in [
        ("fixture: plain reserve", "(manual"),
        ("fixture: shared account", "by alice"),
        ("fixture: shell", "(manual"),
    ] {
        let lines = lines_with(&status, note);
        assert!(
            lines.len() == 1 && lines[0].contains(holder),
            "{context}: {note}:\n{status}"
        );
    }
    let runs = lines_with(&status, "[fixture: run]");
    assert!(
        runs.len() == 2 && runs.iter().all(|line| line.contains("(run")),
        "{context}:\n{status}"
    );
    let queue = run_ok(store, &["queue"]);
    assert_eq!(
        lines_with(&queue, "wants 4 GPU(s)").len(),
        1,
        "{context}:\n{queue}"
    );
    assert_eq!(report_counts(store, 30), (1, 2, 5), "{context}");
}

/// Gives back the fixture user's manual reservations: the plain one, the one shown as
/// alice's and the shell's. The fixtures were written as root, so only root can.
fn check_release(fixture: &Fixture, store: &TestStore) {
    if !nix::unistd::geteuid().is_root() {
        common::skip(
            "check_release",
            "not root, so the fixture's (root's) reservations were not released",
        );
        return;
    }
    let context = format!("{} on {:?}", fixture.name, store.backend);
    let out = run_ok(store, &["release"]);
    assert!(out.contains("Released 3 GPU(s)"), "{context}: {out}");
    let status = store.status();
    assert_eq!(
        lines_with(&status, "IN USE").len(),
        2,
        "{context}:\n{status}"
    );
    assert_eq!(
        lines_with(&status, "[fixture: run]").len(),
        2,
        "{context}:\n{status}"
    );
    assert_eq!(report_counts(store, 30), (1, 5, 2), "{context}");
}

/// A month later every reservation has ended by the rules (expiry, heartbeat) and went
/// into the history, and the waiter gave up.
fn check_month_later(fixture: &Fixture, store: &TestStore) {
    let context = format!("{} on {:?}", fixture.name, store.backend);
    let status = store.status();
    assert_eq!(
        lines_with(&status, "AVAILABLE").len(),
        8,
        "{context}:\n{status}"
    );
    let queue = run_ok(store, &["queue", "--json"]);
    assert_eq!(queue.trim(), "[]", "{context}");
    assert_eq!(report_counts(store, 60), (3, 5, 0), "{context}");
}

#[test]
fn every_fixture_is_read_on_both_stores() {
    for fixture in fixtures() {
        for backend in common::BACKENDS {
            let store = install(&fixture, backend, MINUTE);
            check_as_left(&fixture, &store);
            check_release(&fixture, &store);
            let store = install(&fixture, backend, 31 * DAY);
            check_month_later(&fixture, &store);
        }
    }
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let fixture = fixtures().pop().unwrap();
    let store = install(&fixture, Backend::File, MINUTE);
    let state_path = store.state_dir().join("state.json");
    let state = std::fs::read_to_string(&state_path).unwrap();
    let mut newer: serde_json::Value = serde_json::from_str(&state).unwrap();
    newer["schema"] = 1_000_000.into();
    std::fs::write(&state_path, newer.to_string()).unwrap();
    let before = snapshot(store.state_dir().as_path());
    for args in [
        &["status"][..],
        &["reserve", "--gpus", "1"],
        &["release"],
        &["release", "--gpu-ids", "3"],
        &["run", "--", "true"],
        &["queue"],
        &["report"],
        &["admin", "--gpus", "2"],
        // Not corrupt, so not something --force may throw away.
        &["admin", "--gpus", "2", "--force"],
    ] {
        let out = store.cmd().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("written by a newer canhazgpu (schema 1000000")
                && stderr.contains("upgrade canhazgpu")
                && stderr.contains("state.json")
                && !stderr.contains("--force"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            snapshot(&store.state_dir()),
            before,
            "{args:?} changed the store"
        );
    }
}

/// Every file in `dir` with its bytes, for "nothing changed" checks.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().is_some_and(|name| name != "lock"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn moving_in_time_shifts_times_and_nothing_else() {
    let written_at = 1_796_227_089;
    let text = "{\"start_time\":1796227089,\"expiry_time\":1796241489,\"pid\":1,\
                \"pid_ns\":4026532179,\"start_ticks\":197069,\"old\":1696227089,\
                \"id\":\"8b75e152-1-197080\",\"score\":17962270890}\tzset\t1796227089";
    let moved = moved_in_time(text, written_at, written_at + 100);
    assert_eq!(
        moved,
        "{\"start_time\":1796227189,\"expiry_time\":1796241589,\"pid\":1,\
         \"pid_ns\":4026532179,\"start_ticks\":197069,\"old\":1696227089,\
         \"id\":\"8b75e152-1-197080\",\"score\":17962270890}\tzset\t1796227189"
    );
    assert_eq!(moved_in_time(text, written_at, written_at), text);
}
