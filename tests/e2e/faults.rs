//! Faults a shared host really sees: Redis restarting or going away under running jobs,
//! GPUs taken behind a job's back, debris in the state directory, clocks stepped back.

use crate::common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::{BACKENDS, Backend, LineWatcher, TestStore, unix_now, wait_for};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(15);

/// A `run` with fast heartbeats whose command ends when `release_file` appears.
fn start_run(
    store: &TestStore,
    extra: &[&str],
    release_file: &std::path::Path,
) -> (Child, LineWatcher) {
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.05; done",
        release_file.display()
    );
    let mut child = store
        .std_cmd()
        .args(["run", "--heartbeat-interval", "1s"])
        .args(extra)
        .args(["--", "sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let watcher = LineWatcher::new(child.stderr.take().unwrap());
    watcher.wait_for_line("running on GPU(s) [0]", DEADLINE);
    (child, watcher)
}

#[test]
fn a_run_reasserts_its_reservation_after_redis_restarts_empty() {
    let mut store = TestStore::new(Backend::Redis);
    store.admin(2);
    let done = store.home.path().join("done");
    let (mut run, watcher) = start_run(&store, &[], &done);
    store.redis_mut().stop();
    store.redis_mut().start_again();
    assert_eq!(store.redis().cli(&["EXISTS", "canhazgpu:gpu_count"]), "0");
    watcher.wait_for_line("recreated it with 2 GPUs", DEADLINE);
    watcher.wait_for_line("reserved them again", DEADLINE);
    assert_eq!(store.busy_ids(), vec![0]);
    std::fs::write(&done, "").unwrap();
    assert!(run.wait().unwrap().success());
    assert!(store.busy_ids().is_empty(), "{}", watcher.all());
}

#[test]
fn a_run_survives_redis_going_away_and_retries_its_heartbeats() {
    let mut store = TestStore::new(Backend::Redis);
    store.admin(1);
    let done = store.home.path().join("done");
    let (mut run, watcher) = start_run(&store, &[], &done);
    store.redis_mut().stop();
    watcher.wait_for_line("heartbeat failed, will retry", DEADLINE);
    assert!(
        run.try_wait().unwrap().is_none(),
        "the command must keep running"
    );
    store.redis_mut().start_again();
    watcher.wait_for_line("reserved them again", DEADLINE);
    std::fs::write(&done, "").unwrap();
    assert!(run.wait().unwrap().success(), "{}", watcher.all());
}

#[test]
fn a_gpu_taken_behind_a_runs_back_is_reported_and_on_lost_kill_stops_the_command() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(1);
        let intruder = || {
            let now = unix_now();
            store.set_raw_slot(
                0,
                json!({
                    "user": "intruder", "start_time": now, "last_heartbeat": now, "type": "manual",
                    "expiry_time": now + 600
                }),
            )
        };
        let done = store.home.path().join("done");
        // Default: warn, and the command runs on.
        let (mut run, watcher) = start_run(&store, &[], &done);
        intruder();
        watcher.wait_for_line("lost GPU 0, now held by intruder", DEADLINE);
        assert!(run.try_wait().unwrap().is_none());
        std::fs::write(&done, "").unwrap();
        assert!(run.wait().unwrap().success());
        // The intruder's reservation is not ours to release.
        assert_eq!(store.raw_slot(0)["user"], "intruder", "{backend:?}");

        store
            .cmd()
            .args(["admin", "--gpus", "1", "--force"])
            .assert()
            .success();
        std::fs::remove_file(&done).unwrap();
        let (mut run, watcher) = start_run(&store, &["--on-lost", "kill"], &done);
        intruder();
        watcher.wait_for_line("sending SIGTERM", DEADLINE);
        assert_eq!(
            run.wait().unwrap().code(),
            Some(128 + 15),
            "{backend:?}: {}",
            watcher.all()
        );
    }
}

#[test]
fn debris_of_a_writer_killed_before_its_rename_is_harmless() {
    let store = TestStore::new(Backend::File);
    store.admin(2);
    store.cmd().arg("reserve").assert().success();
    // What a writer killed between writing its temp file and renaming it leaves behind,
    // read-only as if another user had left it.
    let debris = store.state_dir().join(".state.json.tmp");
    std::fs::write(&debris, "{\"schema\":1,\"gp").unwrap();
    std::fs::set_permissions(&debris, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    assert_eq!(store.busy_ids(), vec![0]);
    store.cmd().arg("reserve").assert().success();
    assert_eq!(store.busy_ids(), vec![0, 1]);
    // The next writer replaced it: no debris piles up.
    let leftovers: Vec<_> = std::fs::read_dir(store.state_dir())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_state_file_replaced_by_a_directory_is_a_clear_error() {
    let store = TestStore::new(Backend::File);
    store.admin(2);
    let path = store.state_dir().join("state.json");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    for args in [&["status"][..], &["reserve"], &["run", "--", "true"]] {
        let out = store.cmd().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(path.to_str().unwrap()) && stderr.contains("directory"),
            "{stderr}"
        );
    }
    assert!(path.is_dir());
}

/// Written while the clock was a day ahead: a 1 h manual reservation on GPU 0, and on
/// GPU 1 a run whose owner this host cannot see.
fn reservations_from_a_day_ahead(store: &TestStore) {
    let now = unix_now();
    let day = 86_400;
    store.set_raw_slot(
        0,
        json!({
            "user": "a", "start_time": now + day, "last_heartbeat": now + day, "type": "manual",
            "expiry_time": now + day + 3600
        }),
    );
    store.set_raw_slot(
        1,
        json!({"user": "b", "start_time": now + day, "last_heartbeat": now + day, "type": "run",
               "owner_process": {"pid": 1, "start_ticks": 1, "boot_id": "elsewhere", "pid_ns": 1}}),
    );
}

#[test]
fn reservations_from_a_clock_stepped_back_are_neither_freed_early_nor_kept_forever() {
    // Every client of an embedded store reads the host's clock, so a time in the future
    // means that clock was stepped back: brought back to now, keeping the length.
    let store = TestStore::new(Backend::File);
    store.admin(2);
    reservations_from_a_day_ahead(&store);
    let status = store.status();
    assert!(status.contains("GPU 0: IN USE by a for 0h 0m "), "{status}");
    assert!(
        status.contains("(manual, expires in 0h 59m")
            || status.contains("(manual, expires in 1h 0m 0s)"),
        "{status}"
    );
    let slot = store.raw_slot(0);
    let start = slot["start_time"].as_i64().unwrap();
    assert!(start <= unix_now(), "{slot}");
    assert_eq!(slot["expiry_time"].as_i64().unwrap() - start, 3600);
    // The run's heartbeat now counts from now: with a 1 s timeout it ends soon.
    std::fs::write(store.config_path(), "heartbeat_timeout = \"1s\"\n").unwrap();
    wait_for(DEADLINE, "the silent run to be freed", || {
        (store.busy_ids() == vec![0]).then_some(())
    });
}

#[test]
fn on_redis_times_of_another_clock_are_left_as_written() {
    // Clients of one Redis each write their own clock's times (upstream clients do):
    // rewriting them to the server's clock would shorten or lengthen their holders'
    // reservations by the difference. They end by their own times.
    let store = TestStore::new(Backend::Redis);
    store.admin(2);
    reservations_from_a_day_ahead(&store);
    let before = [store.raw_slot(0), store.raw_slot(1)];
    let status = store.status();
    assert!(
        status.contains("GPU 0: IN USE by a for 0h 0m 0s"),
        "{status}"
    );
    assert!(
        status.contains("(manual, expires in 25h 0m")
            || status.contains("(manual, expires in 24h 59m"),
        "{status}"
    );
    assert!(
        status.contains("GPU 1: IN USE by b for 0h 0m 0s"),
        "{status}"
    );
    assert_eq!([store.raw_slot(0), store.raw_slot(1)], before);
}
