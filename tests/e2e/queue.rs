//! Waiting for GPUs (`--wait`): first come first served, giving up, what a waiter sees,
//! and `queue`, on both stores.

use crate::common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::gpus::me;
use common::jobs::{DEADLINE, Job, queue_json, wait_queued, wait_started};
use common::{BACKENDS, TestStore, wait_for};
use predicates::prelude::*;

#[test]
fn waiters_are_served_first_come_first_served_and_big_requests_are_not_starved() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(2);
        let holder_a = Job::start(&store, "holder-a", &["--gpus", "1"]);
        let holder_b = Job::start(&store, "holder-b", &["--gpus", "1"]);
        wait_started(&store, 2);
        let big = Job::start(&store, "big", &["--gpus", "2", "--wait"]);
        wait_queued(&store, 1);
        let small = Job::start(&store, "small", &["--gpus", "1", "--wait"]);
        let queue = wait_queued(&store, 2);
        assert_eq!(
            (queue[0]["gpus"].as_u64(), queue[1]["gpus"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(queue[0]["position"], 1);

        // One GPU comes free: the small request behind must not take it from the big one.
        holder_a.finish();
        let status = wait_for(DEADLINE, "GPU to be free", || {
            let status = store.status();
            status.contains("AVAILABLE").then_some(status)
        });
        assert_eq!(queue_json(&store).len(), 2, "{status}");
        // And a newcomer without --wait cannot jump the queue either.
        store
            .cmd()
            .args(["run", "--", "true"])
            .assert()
            .failure()
            .stderr(predicate::str::contains("waiting ahead"));

        holder_b.finish();
        let order = wait_started(&store, 3);
        assert_eq!(order[2], "big 0,1", "{backend:?}: {order:?}");
        big.finish();
        let order = wait_started(&store, 4);
        assert!(order[3].starts_with("small "), "{order:?}");
        small.finish();
        assert!(queue_json(&store).is_empty());
        assert!(store.busy_ids().is_empty());
    }
}

fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

#[test]
fn giving_up_leaves_the_queue_and_holds_nothing() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(1);
        let holder = Job::start(&store, "holder", &[]);
        wait_started(&store, 1);

        // Ctrl-C (SIGINT) while waiting.
        let waiter = store
            .std_cmd()
            .args(["run", "--wait", "--", "true"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_queued(&store, 1);
        signal(&waiter, nix::sys::signal::Signal::SIGINT);
        let out = waiter.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130));
        assert!(queue_json(&store).is_empty(), "{backend:?}");

        // A timeout.
        store
            .cmd()
            .args(["run", "--wait=1s", "--", "true"])
            .assert()
            .failure()
            .stderr(
                predicate::str::contains("gave up after waiting")
                    .and(predicate::str::contains("nothing was reserved")),
            );
        assert!(queue_json(&store).is_empty());

        // A waiter killed with -9 cannot clean up: liveness drops it.
        let mut doomed = store
            .std_cmd()
            .args(["run", "--wait", "--", "true"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_queued(&store, 1);
        signal(&doomed, nix::sys::signal::Signal::SIGKILL);
        doomed.wait().unwrap();
        assert!(
            queue_json(&store).is_empty(),
            "{backend:?}: dead waiter still queued"
        );

        assert_eq!(store.busy_ids(), vec![0]);
        holder.finish();
        assert!(store.busy_ids().is_empty());
    }
}

#[test]
fn a_wait_timeout_is_waited_in_full_not_to_the_next_whole_second() {
    let store = TestStore::new(common::Backend::File);
    store.admin(1);
    store.cmd().arg("reserve").assert().success();
    for (timeout, at_least) in [("1s", 1000), ("1500ms", 1500), ("300ms", 300)] {
        let started = std::time::Instant::now();
        let out = store
            .cmd()
            .args(["reserve", &format!("--wait={timeout}")])
            .output()
            .unwrap();
        let waited = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("gave up after waiting"), "{stderr}");
        assert!(
            waited >= Duration::from_millis(at_least),
            "--wait={timeout} gave up after {waited:?}"
        );
    }
}

/// What `reserve --wait=1s` shows on a terminal (a pty through `script`) with `TERM` and
/// `LANG`, while the pool's only GPU is held.
fn waiting_on_a_terminal(store: &TestStore, term: &str, lang: &str) -> String {
    let command = format!("{} reserve --wait=1s", common::binary().display());
    let out = store
        .select(&mut std::process::Command::new("script"))
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", term)
        .env("LANG", lang)
        .env_remove("LC_ALL")
        .env_remove("LC_CTYPE")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn waiting_shows_what_the_terminal_can_draw() {
    let store = TestStore::new(common::Backend::File);
    store.admin(1);
    store.cmd().arg("reserve").assert().success();
    let braille = |text: &str| text.chars().any(|c| ('\u{2800}'..='\u{28FF}').contains(&c));
    let waiting = "waiting for 1 GPU(s): position 1 of 1";
    // A terminal that can draw gets the spinner: what the other cases must not get.
    let fancy = waiting_on_a_terminal(&store, "xterm", "C.UTF-8");
    assert!(fancy.contains(waiting) && braille(&fancy), "{fancy:?}");
    // TERM=dumb cannot move the cursor: plain lines, no escape sequences.
    let dumb = waiting_on_a_terminal(&store, "dumb", "C.UTF-8");
    assert!(dumb.contains(&format!("canhazgpu: {waiting}")), "{dumb:?}");
    assert!(!dumb.contains('\x1b'), "{dumb:?}");
    // Without UTF-8 the spinner is ASCII.
    let ascii = waiting_on_a_terminal(&store, "xterm", "C");
    assert!(ascii.contains(waiting), "{ascii:?}");
    assert!(ascii.is_ascii(), "{ascii:?}");
}

#[test]
fn queue_lists_waiters_in_order() {
    let store = TestStore::new(common::Backend::File);
    store.admin(1);
    store
        .cmd()
        .arg("queue")
        .assert()
        .success()
        .stdout("Nobody is waiting for GPUs\n");
    let holder = Job::start(&store, "holder", &[]);
    wait_started(&store, 1);
    let waiter = Job::start(&store, "waiter", &["--wait=1h", "--gpu-ids", "0"]);
    let queue = wait_queued(&store, 1);
    assert_eq!(queue[0]["gpu_ids"], serde_json::json!([0]));
    assert_eq!(queue[0]["kind"], "run");
    assert!(queue[0]["deadline"].is_i64());
    store.cmd().arg("queue").assert().success().stdout(
        predicate::str::starts_with("1. ")
            .and(predicate::str::contains("wants GPU(s) [0] (run)"))
            .and(
                // The stored deadline is rounded up to a whole second.
                predicate::str::contains("gives up in 0h 59m")
                    .or(predicate::str::contains("gives up in 1h 0m 0s"))
                    .or(predicate::str::contains("gives up in 1h 0m 1s")),
            ),
    );
    holder.finish();
    wait_started(&store, 2);
    waiter.finish();
}

#[test]
fn reserve_waits_labels_and_is_released_by_the_real_account() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(1);
        let holder = Job::start(&store, "holder", &[]);
        wait_started(&store, 1);
        let waiter = store
            .std_cmd()
            .args([
                "reserve",
                "--wait=1m",
                "--duration",
                "1h",
                "--user",
                "lab-bot",
                "--note",
                "nightly eval",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_queued(&store, 1);
        holder.finish();
        let out = waiter.wait_with_output().unwrap();
        assert!(out.status.success(), "{backend:?}");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("export CUDA_VISIBLE_DEVICES=0"));
        let slot = store.raw_slot(0);
        assert_eq!(
            (slot["user"].as_str(), slot["actual_user"].as_str()),
            (Some("lab-bot"), Some(me().as_str()))
        );
        assert_eq!(slot["note"], "nightly eval");
        // The real account releases what it reserved under another name.
        store
            .cmd()
            .arg("release")
            .assert()
            .success()
            .stdout("Released 1 GPU(s): [0]\n");
    }
}

/// Found by the load suite (tests/e2e/stress.rs): a waiter for specific GPUs at the head of
/// the queue lost them to later requests whenever the count check let those through,
/// and could wait for ever while the pool stood mostly idle.
#[test]
fn gpus_a_waiter_asked_for_by_id_are_not_given_to_later_requests() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(4);
        for id in ["0", "1"] {
            store
                .cmd()
                .args(["reserve", "--gpu-ids", id])
                .assert()
                .success();
        }
        let waiter = store
            .std_cmd()
            .args(["reserve", "--gpu-ids", "0,1", "--wait=1m"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_queued(&store, 1);
        // GPU 0 comes free; the waiter still needs GPU 1 too.
        store
            .cmd()
            .args(["release", "--gpu-ids", "0"])
            .assert()
            .success();
        // Three GPUs are free and the queue wants two: the count check alone would let
        // these take GPU 0.
        store
            .cmd()
            .args(["reserve", "--gpu-ids", "0"])
            .assert()
            .failure()
            .stderr(
                predicate::str::contains("GPU 0 is wanted by a request waiting ahead")
                    .and(predicate::str::contains("canhazgpu queue")),
            );
        // Sticky would rank GPU 0 first: this user released it last.
        store
            .cmd()
            .args(["reserve", "--policy", "sticky"])
            .assert()
            .success()
            .stdout(predicate::str::starts_with(
                "export CUDA_VISIBLE_DEVICES=2 ",
            ));
        store
            .cmd()
            .args(["release", "--gpu-ids", "1"])
            .assert()
            .success();
        let out = waiter.wait_with_output().unwrap();
        assert!(out.status.success(), "{backend:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("export CUDA_VISIBLE_DEVICES=0,1 "),
            "{backend:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(queue_json(&store).is_empty());
    }
}
