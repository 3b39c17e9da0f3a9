//! The options of a request, on both stores: `--gpu-ids` (all or nothing), `--note` and
//! `--user` in status, `--policy`, `run --timeout`, and `release --gpu-ids`.

use crate::common;

use common::gpus::me;
use common::jobs::{DEADLINE, Job, wait_started};
use common::{BACKENDS, TestStore, wait_for};
use predicates::prelude::*;

#[test]
fn specific_gpu_ids_are_all_or_nothing_with_reasons() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(3);
        let holder = Job::start(&store, "holder", &["--gpu-ids", "1"]);
        assert_eq!(wait_started(&store, 1), vec!["holder 1"]);
        let before = store.dump();
        let me = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap()
            .name;
        store
            .cmd()
            .args(["run", "--gpu-ids", "0,1,7", "--", "true"])
            .assert()
            .failure()
            .stderr(predicate::str::contains("GPU 7 is not in the pool").and(
                predicate::str::contains(format!("GPU 1 is reserved by {me}")),
            ));
        store
            .cmd()
            .args(["run", "--gpu-ids", "0,0", "--", "true"])
            .assert()
            .code(2);
        store
            .cmd()
            .args(["run", "--gpus", "2", "--gpu-ids", "0,2", "--", "true"])
            .assert()
            .code(2);
        assert_eq!(
            store.dump(),
            before,
            "{backend:?}: a refused request changed the pool"
        );
        let out = store
            .cmd()
            .args([
                "run",
                "--gpu-ids",
                "2,0",
                "--",
                "sh",
                "-c",
                "echo $CUDA_VISIBLE_DEVICES",
            ])
            .output()
            .unwrap();
        // The order asked for is kept: CUDA device 0 is GPU 2 here.
        assert_eq!(String::from_utf8_lossy(&out.stdout), "2,0\n");
        holder.finish();
    }
}

#[test]
fn notes_and_display_users_show_in_status() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(1);
        let job = Job::start(
            &store,
            "labelled",
            &["--note", "ablation sweep 3", "--user", "team-vision"],
        );
        wait_started(&store, 1);
        let me = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap()
            .name;
        let status = store.status();
        assert!(status.contains("IN USE by team-vision for "), "{status}");
        assert!(status.contains(&format!("account {me})")), "{status}");
        assert!(status.contains("[ablation sweep 3]"), "{status}");
        job.finish();
        for (flag, value, fragment) in [
            ("--note", "a\u{1b}[2Jb", "control characters"),
            ("--note", &"x".repeat(201)[..], "keep it to 200"),
            ("--user", "rm -rf", "not a valid name"),
            ("--user", "", "not a valid name"),
        ] {
            store
                .cmd()
                .args(["run", flag, value, "--", "true"])
                .assert()
                .code(2)
                .stderr(predicate::str::contains(fragment));
        }
    }
}

#[test]
fn timeout_interrupts_then_kills() {
    let store = TestStore::new(common::Backend::File);
    store.admin(1);
    // A command that stops on SIGINT exits with 130.
    store
        .cmd()
        .args(["run", "--timeout", "1s", "--", "sleep", "30"])
        .assert()
        .code(130)
        .stderr(predicate::str::contains(
            "--timeout 1s reached: sending SIGINT",
        ));
    // One that ignores it is killed after the grace period.
    store
        .cmd()
        .args([
            "run",
            "--timeout",
            "1s",
            "--timeout-grace",
            "1s",
            "--",
            "sh",
            "-c",
            "trap '' INT; sleep 30",
        ])
        .assert()
        .code(137)
        .stderr(predicate::str::contains("sending SIGKILL"));
    assert!(store.busy_ids().is_empty());
}

/// Release times are whole seconds: wait for the next one so that "most recent" is
/// well defined between two steps.
fn next_second() {
    let now = common::unix_now();
    wait_for(DEADLINE, "the next second", || {
        (common::unix_now() > now).then_some(())
    });
}

fn cvd(store: &TestStore, args: &[&str]) -> String {
    next_second();
    let out = store
        .cmd()
        .arg("run")
        .args(args)
        .args(["--", "sh", "-c", "echo $CUDA_VISIBLE_DEVICES"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn sticky_policy_from_flag_or_config_prefers_my_last_gpu() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(4);
        assert_eq!(cvd(&store, &["--gpu-ids", "2"]), "2");
        // LRU: never-used GPUs first.
        assert_eq!(cvd(&store, &[]), "0");
        assert_eq!(
            cvd(&store, &["--policy", "sticky"]),
            "0",
            "0 is now my most recent"
        );
        assert_eq!(cvd(&store, &["--gpu-ids", "3"]), "3");
        assert_eq!(cvd(&store, &["--policy", "sticky"]), "3");
        store.write_config("allocation_policy = \"sticky\"\n");
        assert_eq!(cvd(&store, &[]), "3");
        // The flag beats the config: LRU gives the never-used GPU 1.
        assert_eq!(cvd(&store, &["--policy", "lru"]), "1");
    }
}

#[test]
fn release_by_id_takes_back_my_runs_too_but_nothing_of_others() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(3);
        let now = common::unix_now();
        // A run whose wrapper this host cannot see any more, still heartbeating recently.
        let invisible =
            serde_json::json!({"pid": 1, "start_ticks": 1, "boot_id": "gone", "pid_ns": 1});
        store.set_raw_slot(
            0,
            serde_json::json!({
                "user": me(), "start_time": now, "last_heartbeat": now, "type": "run",
                "owner_process": invisible
            }),
        );
        store.set_raw_slot(
            1,
            serde_json::json!({
                "user": "someone", "start_time": now, "last_heartbeat": now, "type": "manual",
                "expiry_time": now + 600
            }),
        );
        // Plain release leaves runs alone.
        store
            .cmd()
            .arg("release")
            .assert()
            .success()
            .stdout(predicate::str::contains("No manually reserved GPUs"));
        let before = store.dump();
        for (ids, fragment) in [
            ("0,1", "GPU 1 is held by someone, not by you"),
            ("2", "GPU 2 is not reserved"),
            ("5", "GPU 5 is not in the pool"),
        ] {
            store
                .cmd()
                .args(["release", "--gpu-ids", ids])
                .assert()
                .failure()
                .stderr(
                    predicate::str::contains(fragment)
                        .and(predicate::str::contains("released nothing")),
                );
        }
        store
            .cmd()
            .args(["release", "--gpu-ids", "0,0"])
            .assert()
            .code(2);
        assert_eq!(store.dump(), before, "{backend:?}");
        store
            .cmd()
            .args(["release", "--gpu-ids", "0"])
            .assert()
            .success()
            .stdout("Released 1 GPU(s): [0]\n");
        assert_eq!(store.busy_ids(), vec![1]);
    }
}
