//! A real redis-server misbehaving under the tool: paused (SIGSTOP), restarted with and
//! without its data, out of memory, evicting, turned into a replica, given a password
//! mid-run, connections killed, and the reply to a commit lost on the way back (a
//! loopback proxy). Waiters must survive what running jobs survive, and every error must
//! name its real cause without printing credentials.

use crate::common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::proxy::ExecProxy;
use common::{Backend, LineWatcher, RedisServer, TestStore, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `canhazgpu` run against `url` instead of the test store's own.
fn at(store: &TestStore, url: &str, args: &[&str]) -> Output {
    store
        .std_cmd()
        .env("CANHAZGPU_STORE", url)
        .args(args)
        .output()
        .unwrap()
}

/// A waiting `reserve` whose stderr is watched, killed with its process group on drop.
struct Waiter {
    child: Child,
    lines: LineWatcher,
}

impl Waiter {
    fn start(store: &TestStore) -> Waiter {
        let mut child = store
            .std_cmd()
            .args(["reserve", "--wait=60s", "--duration", "1h"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let lines = LineWatcher::new(child.stderr.take().unwrap());
        Waiter { child, lines }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for it to end; returns whether it was served.
    fn served(&mut self) -> bool {
        let status = wait_for(DEADLINE, "the waiter to end", || {
            self.child.try_wait().unwrap()
        });
        status.success()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A `run` holding GPU 0, heartbeating every second, until `gate` exists.
fn hold_with_a_run(store: &TestStore, gate: &Path) -> (Run, LineWatcher) {
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done", gate.display());
    let mut child = store
        .std_cmd()
        .args([
            "run",
            "--heartbeat-interval",
            "1s",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let lines = LineWatcher::new(child.stderr.take().unwrap());
    lines.wait_for_line("running on GPU(s) [0]", DEADLINE);
    (Run(child), lines)
}

/// A running `run`, killed with its command if a test fails before it ends.
struct Run(Child);

impl Run {
    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// The queue's waiter pids, in order.
fn queued_pids(store: &TestStore) -> Vec<u32> {
    let text = store.redis().cli(&["GET", "canhazgpu:fifo"]);
    let queue: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    queue
        .iter()
        .filter_map(|w| w["owner"]["pid"].as_u64().map(|pid| pid as u32))
        .collect()
}

fn wait_queued(store: &TestStore, pids: &[u32]) {
    wait_for(DEADLINE, &format!("waiters {pids:?} in the queue"), || {
        (queued_pids(store) == pids).then_some(())
    });
}

/// One GPU held by a run, two waiters in line behind it.
fn two_waiters_behind_a_run(store: &TestStore) -> (Run, LineWatcher, Waiter, Waiter) {
    // Runs heartbeat every second, so that a pool lost and put back is open again soon.
    std::fs::write(store.config_path(), "heartbeat_interval = \"1s\"\n").unwrap();
    store.admin(1);
    let gate = store.home.path().join("done");
    let (run, run_lines) = hold_with_a_run(store, &gate);
    let first = Waiter::start(store);
    wait_queued(store, &[first.pid()]);
    let second = Waiter::start(store);
    wait_queued(store, &[first.pid(), second.pid()]);
    (run, run_lines, first, second)
}

/// Ends the run, then checks that the waiters are served in their original order.
fn finish_in_order(store: &TestStore, mut run: Run, mut first: Waiter, mut second: Waiter) {
    std::fs::write(store.home.path().join("done"), "").unwrap();
    assert!(run.wait().unwrap().success());
    assert!(first.served(), "{}", first.lines.all());
    assert!(
        second.child.try_wait().unwrap().is_none(),
        "the second waiter must still wait: {}",
        second.lines.all()
    );
    store.cmd().arg("release").assert().success();
    assert!(second.served(), "{}", second.lines.all());
}

#[test]
fn waiters_keep_their_place_while_the_server_is_paused() {
    let store = TestStore::new(Backend::Redis);
    let (run, _run_lines, first, second) = two_waiters_behind_a_run(&store);
    store.redis().pause();
    first
        .lines
        .wait_for_line("did not answer: timed out after 2 s", DEADLINE);
    store.redis().resume();
    first
        .lines
        .wait_for_line("the store answers again", DEADLINE);
    assert_eq!(queued_pids(&store), [first.pid(), second.pid()]);
    finish_in_order(&store, run, first, second);
}

#[test]
fn waiters_keep_their_place_through_a_planned_restart() {
    let mut store = TestStore::new(Backend::Redis);
    let (run, _run_lines, mut first, second) = two_waiters_behind_a_run(&store);
    store.redis_mut().save_and_stop();
    // Down until the first waiter has tried it (and, once, died of it).
    wait_for(DEADLINE, "the first waiter to find the server gone", || {
        let lines = first.lines.all();
        let tried = lines.contains("cannot connect") || lines.contains("lost the connection");
        (tried || first.child.try_wait().unwrap().is_some()).then_some(())
    });
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "{}",
        first.lines.all()
    );
    store.redis_mut().start_with_saved_data();
    assert_eq!(queued_pids(&store), [first.pid(), second.pid()]);
    finish_in_order(&store, run, first, second);
}

#[test]
fn waiters_come_back_in_their_order_after_a_restart_without_data() {
    let mut store = TestStore::new(Backend::Redis);
    let (run, run_lines, first, second) = two_waiters_behind_a_run(&store);
    store.redis_mut().stop();
    store.redis_mut().start_again();
    // The run puts the pool back; until the other jobs could have done the same, nobody
    // is served, and the waiters go back in line in their original order.
    run_lines.wait_for_line("recreated it with 1 GPUs", DEADLINE);
    wait_queued(&store, &[first.pid(), second.pid()]);
    first.lines.wait_for_line("has vanished", DEADLINE);
    finish_in_order(&store, run, first, second);
}

/// Waiters keep one connection for their whole wait: one the server kills is replaced.
#[test]
fn waiters_survive_their_connections_being_killed() {
    let store = TestStore::new(Backend::Redis);
    let (run, _run_lines, first, second) = two_waiters_behind_a_run(&store);
    for kind in ["normal", "pubsub"] {
        store.redis().cli(&["CLIENT", "KILL", "TYPE", kind]);
    }
    finish_in_order(&store, run, first, second);
}

#[test]
fn ctrl_c_ends_a_wait_at_the_head_of_the_queue_at_once() {
    let store = TestStore::new(Backend::Redis);
    store.admin(1);
    store
        .cmd()
        .args(["reserve", "--duration", "1h"])
        .assert()
        .success();
    let mut waiter = Waiter::start(&store);
    wait_queued(&store, &[waiter.pid()]);
    // Not synchronisation: lets the waiter's polling slow down to seconds between looks
    // (nothing changes in the pool), the state in which Ctrl-C used to wait for the next.
    std::thread::sleep(Duration::from_millis(3500));
    let signalled = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(waiter.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_for(
        Duration::from_secs(1),
        "the waiter to stop after SIGINT",
        || waiter.child.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(130), "{}", waiter.lines.all());
    eprintln!("stopped {:?} after SIGINT", signalled.elapsed());
    assert!(queued_pids(&store).is_empty());
}

#[test]
fn a_lost_reply_to_the_commit_is_found_out_and_the_truth_reported() {
    let store = TestStore::new(Backend::Redis);
    store.admin(2);
    let proxy = ExecProxy::start(&store.redis().socket());

    proxy.lose_exec_replies(1);
    let out = at(&store, &proxy.url(), &["reserve", "--duration", "1h"]);
    assert_eq!(proxy.lost(), 1);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Reserved 1 GPU(s) [0]"),
        "{}",
        stderr(&out)
    );
    // One reservation, not a second one by a retry.
    assert_eq!(store.busy_ids(), [0]);

    proxy.lose_exec_replies(1);
    let out = at(&store, &proxy.url(), &["release"]);
    assert_eq!(proxy.lost(), 2);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Released 1 GPU(s): [0]"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(store.busy_ids().is_empty());

    // A run whose reservation reply was lost runs, and releases what it holds.
    proxy.lose_exec_replies(1);
    let out = at(
        &store,
        &proxy.url(),
        &["run", "--", "sh", "-c", "echo $CUDA_VISIBLE_DEVICES"],
    );
    assert_eq!(proxy.lost(), 3);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    assert!(store.busy_ids().is_empty());
}

#[test]
fn a_huge_gpu_count_is_corrupt_and_admin_force_fixes_it_with_bounded_work() {
    let store = TestStore::new(Backend::Redis);
    store.admin(8);
    store
        .cmd()
        .args(["reserve", "--gpus", "6"])
        .assert()
        .success();
    let redis = store.redis();
    assert_eq!(redis.cli(&["SET", "canhazgpu:gpu_count", "100000"]), "OK");
    assert_eq!(redis.cli(&["CONFIG", "RESETSTAT"]), "OK");
    for args in [&["status"][..], &["reserve"], &["run", "--", "true"]] {
        let out = store.cmd().args(args).output().unwrap();
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(
            text.contains("canhazgpu:gpu_count")
                && text.contains("holds 100000, more than the 1024 GPUs")
                && text.contains("canhazgpu admin --gpus N --force"),
            "{text}"
        );
    }
    let out = store
        .cmd()
        .args(["admin", "--gpus", "4", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("clearing a pool the store could not read"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(store.status().lines().count(), 4);
    // The entries of the old, larger pool are gone, and no command scanned the server.
    assert_eq!(redis.cli(&["EXISTS", "canhazgpu:gpu:5"]), "0");
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(!stats.contains("cmdstat_keys"), "{stats}");
    assert!(!stats.contains("cmdstat_scan"), "{stats}");
}

#[test]
fn a_paused_server_is_a_timeout_error_naming_it() {
    let store = TestStore::new(Backend::Redis);
    store.admin(1);
    store.redis().pause();
    for args in [&["status"][..], &["release"]] {
        let started = Instant::now();
        let out = store.cmd().args(args).output().unwrap();
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains("did not answer: timed out after 2 s"),
            "{text}"
        );
        assert!(!text.contains("redis-server is running"), "{text}");
        eprintln!("{args:?} failed after {:?}", started.elapsed());
    }
    store.redis().resume();
}

#[test]
fn an_unreachable_server_says_so() {
    let mut store = TestStore::new(Backend::Redis);
    store.admin(1);
    store.redis_mut().stop();
    let out = store.cmd().arg("status").output().unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cannot connect to Redis at redis+unix://")
            && text.contains("check that redis-server is running there"),
        "{text}"
    );
}

#[test]
fn out_of_memory_is_named_and_changes_nothing() {
    let store = TestStore::new(Backend::Redis);
    store.admin(2);
    let redis = store.redis();
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let before = store.dump();
    let out = store.cmd().arg("reserve").output().unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("is out of memory"), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    // Reading still works.
    assert_eq!(store.status().lines().count(), 2);
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(store.dump(), before);
}

#[test]
fn an_evicted_pool_is_said_to_have_vanished_and_running_jobs_rebuild_it() {
    let store = TestStore::new(Backend::Redis);
    std::fs::write(store.config_path(), "heartbeat_interval = \"1s\"\n").unwrap();
    store.admin(2);
    let redis = store.redis();
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    // Any write makes the server evict every key it can.
    redis.cli(&["SET", "unrelated", "x"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(redis.cli(&["EXISTS", "canhazgpu:gpu_count"]), "0");
    let out = store.cmd().arg("status").output().unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("has probably vanished")
            && text.contains("maxmemory-policy allkeys-lru")
            && text.contains("next heartbeat")
            && text.contains("Wait one heartbeat interval"),
        "{text}"
    );

    // A running job puts it back; meanwhile nobody gets GPUs someone else may still use.
    store.admin(2);
    let gate = store.home.path().join("done");
    let (mut run, run_lines) = hold_with_a_run(&store, &gate);
    redis.cli(&["FLUSHALL"]);
    run_lines.wait_for_line("recreated it with 2 GPUs", DEADLINE);
    let out = store.cmd().arg("reserve").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the pool is being rebuilt"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&gate, "").unwrap();
    assert!(run.wait().unwrap().success());
}

#[test]
fn a_replica_is_named_as_read_only() {
    let store = TestStore::new(Backend::Redis);
    let primary = RedisServer::start_tcp();
    let port = primary.tcp_port().to_string();
    assert!(
        at(&store, &primary.url(), &["admin", "--gpus", "2"])
            .status
            .success()
    );
    let replica = store.redis();
    assert_eq!(replica.cli(&["REPLICAOF", "127.0.0.1", &port]), "OK");
    wait_for(DEADLINE, "the replica to follow its primary", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
            .then_some(())
    });
    let out = store.cmd().arg("reserve").output().unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("is a read-only replica (READONLY)"), "{text}");
    assert!(text.contains("primary"), "{text}");
    // Looking works on a replica.
    assert_eq!(store.status().lines().count(), 2);
}

#[test]
fn a_password_set_mid_run_is_named_and_never_printed() {
    let mut store = TestStore::new(Backend::Redis);
    store.admin(1);
    let gate = store.home.path().join("done");
    let (mut run, run_lines) = hold_with_a_run(&store, &gate);
    store.redis_mut().require_password("s3cret-pw");

    let out = store.cmd().arg("status").output().unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("requires a password (NOAUTH)"), "{text}");

    let socket = store.redis().socket();
    let right = format!("redis+unix://{}?pass=s3cret-pw", socket.display());
    let out = at(&store, &right, &["status", "--verbose"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "Store: Redis at redis+unix://{}",
            socket.display()
        )),
        "{}",
        stderr(&out)
    );
    let wrong = format!("redis+unix://{}?pass=wr0ng-pw", socket.display());
    let out = at(&store, &wrong, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refused the user name or password"),
        "{}",
        stderr(&out)
    );

    let unparsable = at(
        &store,
        "redis://alice:s3cret-pw@db.lab:no-port/0",
        &["status"],
    );
    assert_eq!(unparsable.status.code(), Some(2));
    assert!(
        stderr(&unparsable).contains("invalid Redis URL 'redis://db.lab:no-port/0'"),
        "{}",
        stderr(&unparsable)
    );

    // The run, connected before, keeps its reservation and ends cleanly.
    std::fs::write(&gate, "").unwrap();
    assert!(run.wait().unwrap().success());
    for text in [stderr(&out), stderr(&unparsable), run_lines.all()] {
        assert!(
            !text.contains("s3cret") && !text.contains("wr0ng"),
            "{text}"
        );
    }
}

#[test]
fn gpu_entries_beyond_the_pool_are_warned_about() {
    let store = TestStore::new(Backend::Redis);
    store.admin(4);
    store
        .cmd()
        .args(["reserve", "--gpu-ids", "3"])
        .assert()
        .success();
    store.redis().cli(&["SET", "canhazgpu:gpu_count", "2"]);
    let out = store.cmd().arg("status").output().unwrap();
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("entries for GPU(s) [2, 3] beyond the pool's 2 GPUs"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn history_in_redis_is_trimmed_to_90_days_and_expires() {
    let store = TestStore::new(Backend::Redis);
    store.admin(1);
    let now = common::unix_now();
    let old = now - 100 * 86_400;
    let record = serde_json::json!({
        "user": "old", "gpu_id": 0, "start_time": old - 60, "end_time": old,
        "duration_seconds": 60, "reservation_type": "run",
    })
    .to_string();
    let redis = store.redis();
    redis.cli(&[
        "ZADD",
        "canhazgpu:usage_history_sorted",
        &old.to_string(),
        &record,
    ]);
    store.cmd().args(["run", "--", "true"]).assert().success();
    let members = redis.cli(&["ZRANGE", "canhazgpu:usage_history_sorted", "0", "-1"]);
    assert!(!members.contains("\"old\""), "{members}");
    assert_eq!(members.lines().count(), 1, "{members}");
    let ttl: i64 = redis
        .cli(&["TTL", "canhazgpu:usage_history_sorted"])
        .parse()
        .unwrap();
    assert!(ttl > 89 * 86_400 && ttl <= 90 * 86_400, "{ttl}");
}
