//! End-to-end behaviour of the seed commands, run against both stores.

use crate::common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use common::{BACKENDS, Backend, TestStore, parse_busy, unix_now, wait_for};
use predicates::prelude::*;
use serde_json::json;

fn each_backend(test: impl Fn(&TestStore)) {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        eprintln!("--- {backend:?}");
        test(&store);
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn top_level_help_lists_the_seed_commands() {
    let store = TestStore::new(Backend::File);
    let out = store.cmd().arg("--help").output().unwrap();
    // Column widths grow with the longest command name; the words are what matter.
    let squeeze = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let help = squeeze(&String::from_utf8_lossy(&out.stdout));
    for line in [
        "Usage: canhazgpu [OPTIONS] <COMMAND>",
        "admin    Initialize GPU pool for this machine",
        "release  Release all manually reserved GPUs held by the current user",
        "reserve  Reserve GPUs manually for a specified duration",
        "run      Reserve GPUs and run a command with CUDA_VISIBLE_DEVICES set",
        "status   Show current GPU allocation status",
    ] {
        assert!(help.contains(&squeeze(line)), "missing {line:?} in\n{help}");
    }
    for sub in ["admin", "release", "reserve", "run", "status"] {
        store.cmd().args([sub, "--help"]).assert().success().stdout(
            predicate::str::contains("Examples:").and(predicate::str::contains("canhazgpu")),
        );
    }
}

#[test]
fn upstream_short_flags_work() {
    let store = TestStore::new(Backend::File);
    store
        .cmd()
        .args(["admin", "-g", "3"])
        .assert()
        .success()
        .stdout("Initialized 3 GPUs (IDs 0 to 2)\n");
    store
        .cmd()
        .args([
            "reserve", "-g", "2", "-d", "1h", "-n", "sweep", "-u", "alice",
        ])
        .assert()
        .success();
    let status = store.status();
    assert_eq!(status.matches("IN USE by alice").count(), 2, "{status}");
    assert!(status.contains("[sweep]"), "{status}");
    // Only GPU 2 is left: -G asks for it, -w=T waits for it with a timeout.
    store
        .cmd()
        .args(["run", "-G", "2", "-t", "30s", "-w=5s", "--", "true"])
        .assert()
        .success();
    store
        .cmd()
        .args(["reserve", "-G", "0", "-w=300ms"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("gave up after waiting"));
    store
        .cmd()
        .args(["release", "-G", "0,1"])
        .assert()
        .success();
    assert!(store.busy_ids().is_empty());
    for (sub, flags) in [
        (
            "reserve",
            &[
                "-g, --gpus",
                "-G, --gpu-ids",
                "-d, --duration",
                "-w, --wait",
            ][..],
        ),
        ("run", &["-n, --note", "-u, --user", "-t, --timeout"]),
        ("release", &["-G, --gpu-ids"]),
        ("admin", &["-g, --gpus"]),
    ] {
        let out = store.cmd().args([sub, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in flags {
            assert!(help.contains(flag), "{sub} --help lacks {flag}:\n{help}");
        }
    }
}

#[test]
fn upstream_reservations_naming_their_own_account_show_no_account() {
    each_backend(|store| {
        store.admin(2);
        let now = unix_now();
        // Upstream clients always write actual_user, equal to user unless --user is given.
        for (id, actual) in [(0, "bob"), (1, "carol")] {
            store.set_raw_slot(
                id,
                json!({
                    "user": "bob", "actual_user": actual, "start_time": now, "last_heartbeat": now,
                    "type": "manual", "expiry_time": now + 3600
                }),
            );
        }
        let status = store.status();
        let lines: Vec<&str> = status.lines().collect();
        assert!(!lines[0].contains("account"), "{status}");
        assert!(lines[1].contains("account carol"), "{status}");
    });
}

#[test]
fn a_pool_of_one_is_one_gpu() {
    let store = TestStore::new(Backend::File);
    store
        .cmd()
        .args(["admin", "--gpus", "1"])
        .assert()
        .success()
        .stdout("Initialized 1 GPU (ID 0)\n");
    store
        .cmd()
        .args(["admin", "--gpus", "1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already initialized with 1 GPU;"));
    store
        .cmd()
        .args(["admin", "--gpus", "1", "--force"])
        .assert()
        .success()
        .stdout("Force reinitializing: clearing 1 existing GPU...\nReinitialized 1 GPU (ID 0)\n");
}

#[test]
fn admin_initializes_refuses_twice_and_force_reinitializes() {
    each_backend(|store| {
        store
            .cmd()
            .args(["admin", "--gpus", "8"])
            .assert()
            .success()
            .stdout("Initialized 8 GPUs (IDs 0 to 7)\n");
        store.cmd().args(["reserve"]).assert().success();
        let before = store.dump();
        store
            .cmd()
            .args(["admin", "--gpus", "4"])
            .assert()
            .failure()
            .stderr(
                predicate::str::contains("already initialized with 8 GPUs")
                    .and(predicate::str::contains("--force")),
            );
        assert_eq!(store.dump(), before, "a refused admin changed the pool");
        store
            .cmd()
            .args(["admin", "--gpus", "4", "--force"])
            .assert()
            .success()
            .stdout(
                "Force reinitializing: clearing 8 existing GPUs...\n\
                 Reinitialized 4 GPUs (IDs 0 to 3)\n",
            );
        let status = store.status();
        assert_eq!(status.lines().count(), 4, "{status}");
        assert!(parse_busy(&status).is_empty(), "{status}");
    });
}

#[test]
fn admin_makes_the_state_directory_usable_by_everyone() {
    use std::os::unix::fs::PermissionsExt;
    let store = TestStore::new(Backend::File);
    store.admin(2);
    let mode = std::fs::metadata(store.state_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o777);
}

#[test]
fn status_lines_use_the_seed_words() {
    each_backend(|store| {
        store.admin(4);
        let now = unix_now();
        store.set_raw_slot(0, json!({"last_released": now - (30 * 60 + 15)}));
        store.set_raw_slot(
            1,
            json!({
                "user": "alice", "start_time": now - (15 * 60 + 30), "last_heartbeat": now - 5,
                "type": "run"
            }),
        );
        store.set_raw_slot(
            3,
            json!({
                "user": "bob", "start_time": now - 3735, "last_heartbeat": now - 3735,
                "type": "manual", "expiry_time": now + 11745
            }),
        );
        let status = store.status();
        let lines: Vec<&str> = status.lines().collect();
        // A second may pass between writing and reading.
        let ok = |line: &str, options: &[String]| options.iter().any(|o| o == line);
        let around = |f: &dyn Fn(i64) -> String| vec![f(0), f(1)];
        assert!(
            ok(
                lines[0],
                &around(&|d| format!("GPU 0: AVAILABLE (last released 0h 30m {}s ago)", 15 + d))
            ),
            "{status}"
        );
        assert!(
            ok(
                lines[1],
                &around(&|d| format!(
                    "GPU 1: IN USE by alice for 0h 15m {}s (run, last heartbeat 0h 0m {}s ago)",
                    30 + d,
                    5 + d
                ))
            ),
            "{status}"
        );
        assert!(
            lines[2].starts_with("GPU 2: AVAILABLE (never reserved, initialized 0h 0m "),
            "{status}"
        );
        assert!(
            ok(
                lines[3],
                &around(&|d| format!(
                    "GPU 3: IN USE by bob for 1h 2m {}s (manual, expires in 3h 15m {}s)",
                    15 + d,
                    45 - d
                ))
            ),
            "{status}"
        );
    });
}

#[test]
fn status_without_a_pool_says_to_run_admin() {
    each_backend(|store| {
        store
            .cmd()
            .arg("status")
            .assert()
            .failure()
            .stderr(predicate::str::contains("canhazgpu admin --gpus N"));
    });
}

#[test]
fn run_sets_visible_devices_and_passes_exit_status_and_output() {
    each_backend(|store| {
        store.admin(4);
        let out = store
            .cmd()
            .env("CUDA_VISIBLE_DEVICES", "7")
            .args([
                "run",
                "--gpus",
                "2",
                "--",
                "sh",
                "-c",
                "echo \"$CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER\"; exit 3",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "0,1 PCI_BUS_ID\n");
        assert!(stderr_of(&out).contains("[0, 1]"), "{}", stderr_of(&out));
        assert!(store.busy_ids().is_empty(), "run did not release");
    });
}

#[test]
fn run_shares_stdin_with_the_command() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let mut child = store
        .std_cmd()
        .args(["run", "--", "sh", "-c", "read answer; echo \"got $answer\""])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"forty-two\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got forty-two\n");
}

#[test]
fn run_releases_on_not_found_and_signal_deaths() {
    each_backend(|store| {
        store.admin(2);
        store
            .cmd()
            .args(["run", "--", "/definitely/not/here"])
            .assert()
            .code(127)
            .stderr(predicate::str::contains("command not found"));
        assert!(store.busy_ids().is_empty());
        store
            .cmd()
            .args(["run", "--", "sh", "-c", "kill -KILL $$"])
            .assert()
            .code(128 + 9);
        assert!(store.busy_ids().is_empty());
    });
}

#[test]
fn signals_sent_to_run_reach_the_command_and_run_releases_after_it() {
    for (signal, number) in [("TERM", 15), ("INT", 2), ("HUP", 1)] {
        let store = TestStore::new(Backend::File);
        store.admin(1);
        let marker = store.home.path().join("got-signal");
        let script = format!(
            "trap 'echo {signal} > {m}; exit 42' {signal}; echo ready; \
             while :; do sleep 0.05; done",
            m = marker.display()
        );
        let mut run = store
            .std_cmd()
            .args(["run", "--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(run.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert_eq!(line, "ready\n");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(run.id() as i32),
            nix::sys::signal::Signal::try_from(number).unwrap(),
        )
        .unwrap();
        let status = run.wait().unwrap();
        assert_eq!(status.code(), Some(42), "SIG{signal}");
        assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), signal);
        assert!(store.busy_ids().is_empty(), "SIG{signal}: not released");
    }
}

/// A run that heartbeats every second while its command sleeps.
fn heartbeating_run(store: &TestStore) -> std::process::Child {
    store
        .std_cmd()
        .args(["run", "--heartbeat-interval", "1s", "--", "sleep", "30"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn run_heartbeats_while_the_command_runs() {
    each_backend(|store| {
        store.admin(1);
        let mut run = heartbeating_run(store);
        let first = wait_for(Duration::from_secs(10), "the reservation", || {
            store.raw_slot(0)["last_heartbeat"].as_i64()
        });
        let owner_pid = store.raw_slot(0)["owner_process"]["pid"].as_u64();
        assert_eq!(owner_pid, Some(u64::from(run.id())));
        wait_for(Duration::from_secs(10), "a newer heartbeat", || {
            (store.raw_slot(0)["last_heartbeat"].as_i64()? > first).then_some(())
        });
        run.kill().unwrap();
        run.wait().unwrap();
    });
}

#[test]
fn not_enough_gpus_fails_and_holds_nothing() {
    each_backend(|store| {
        store.admin(2);
        store.cmd().args(["reserve"]).assert().success();
        let before = store.dump();
        store
            .cmd()
            .args(["run", "--gpus", "2", "--", "true"])
            .assert()
            .failure()
            .stderr(predicate::str::contains(
                "Not enough GPUs available: requested 2, 1 available",
            ));
        store
            .cmd()
            .args(["reserve", "--gpus", "2"])
            .assert()
            .failure()
            .stderr(predicate::str::contains("Not enough GPUs available"));
        assert_eq!(store.dump(), before);
    });
}

#[test]
fn reserve_defaults_and_prints_an_export_line() {
    each_backend(|store| {
        store.admin(4);
        store
            .cmd()
            .arg("reserve")
            .assert()
            .success()
            .stdout(
                "export CUDA_VISIBLE_DEVICES=0 NVIDIA_VISIBLE_DEVICES=0 \
                 CUDA_DEVICE_ORDER=PCI_BUS_ID\n",
            )
            .stderr(predicate::str::contains(
                "Reserved 1 GPU(s) [0] for 8h (expires in",
            ));
        let expiry = store.raw_slot(0)["expiry_time"].as_i64().unwrap();
        let start = store.raw_slot(0)["start_time"].as_i64().unwrap();
        assert_eq!(expiry - start, 8 * 3600);
        assert_eq!(store.raw_slot(0)["type"], "manual");
        store
            .cmd()
            .args(["reserve", "--gpus", "2", "--duration", "0.5h"])
            .assert()
            .success()
            .stdout(
                "export CUDA_VISIBLE_DEVICES=1,2 NVIDIA_VISIBLE_DEVICES=1,2 \
                 CUDA_DEVICE_ORDER=PCI_BUS_ID\n",
            )
            .stderr(predicate::str::contains("for 30m"));
    });
}

#[test]
fn the_user_is_the_real_account_not_dollar_user() {
    each_backend(|store| {
        store.admin(1);
        store
            .cmd()
            .env("USER", "mallory")
            .arg("reserve")
            .assert()
            .success();
        let me = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap()
            .name;
        assert_eq!(store.raw_slot(0)["user"], me.as_str());
    });
}

#[test]
fn release_takes_back_only_my_manual_reservations() {
    each_backend(|store| {
        store.admin(4);
        let now = unix_now();
        store.set_raw_slot(
            0,
            json!({
                "user": "someone-else", "start_time": now, "last_heartbeat": now, "type": "manual",
                "expiry_time": now + 3600
            }),
        );
        store
            .cmd()
            .args(["reserve", "--gpus", "2"])
            .assert()
            .success();
        let mut run = store
            .std_cmd()
            .args(["run", "--", "sleep", "30"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(10), "the run to hold GPU 3", || {
            (store.busy_ids() == vec![0, 1, 2, 3]).then_some(())
        });
        store
            .cmd()
            .arg("release")
            .assert()
            .success()
            .stdout("Released 2 GPU(s): [1, 2]\n");
        assert_eq!(store.busy_ids(), vec![0, 3]);
        store
            .cmd()
            .arg("release")
            .assert()
            .success()
            .stdout(predicate::str::contains("No manually reserved GPUs"));
        run.kill().unwrap();
        run.wait().unwrap();
    });
}

#[test]
fn lru_gives_never_used_gpus_first_then_the_longest_rested() {
    each_backend(|store| {
        store.admin(3);
        let now = unix_now();
        store.set_raw_slot(0, json!({"last_released": now - 100}));
        store.set_raw_slot(1, json!({"last_released": now - 300}));
        let cvd = |store: &TestStore| {
            let out = store
                .cmd()
                .args(["run", "--", "sh", "-c", "echo $CUDA_VISIBLE_DEVICES"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(cvd(store), "2", "never used first");
        // GPU 2 was just released; of 0 and 1, 1 rested longest.
        assert_eq!(cvd(store), "1");
        assert_eq!(cvd(store), "0");
    });
}

#[test]
fn expired_manual_reservations_free_themselves() {
    each_backend(|store| {
        store.admin(1);
        store
            .cmd()
            .args(["reserve", "--duration", "1s"])
            .assert()
            .success();
        // Read raw: times are whole seconds, so a 1 s reservation made late in a second
        // may already have expired when the next command looks.
        let slot = store.raw_slot(0);
        assert_eq!(slot["user"], common::gpus::me(), "{slot}");
        assert_eq!(
            slot["expiry_time"].as_i64(),
            slot["start_time"].as_i64().map(|t| t + 1)
        );
        wait_for(Duration::from_secs(10), "expiry", || {
            store.busy_ids().is_empty().then_some(())
        });
        let released = store.raw_slot(0)["last_released"].as_i64().unwrap();
        assert!(released <= unix_now());
    });
}

#[test]
fn a_killed_run_frees_its_gpu_for_the_very_next_command() {
    each_backend(|store| {
        store.admin(1);
        let mut run = store
            .std_cmd()
            .args(["run", "--", "sleep", "60"])
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(10), "the run to hold the GPU", || {
            store.raw_slot(0)["user"].as_str().map(|_| ())
        });
        // kill -9 of run together with its command.
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(run.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        run.wait().unwrap();
        // No status in between: the allocation itself must notice.
        store.cmd().args(["run", "--", "true"]).assert().success();
    });
}

#[test]
fn heartbeat_rules_for_owners_this_host_cannot_see() {
    each_backend(|store| {
        store.admin(2);
        let now = unix_now();
        let invisible = json!({"pid": 1, "start_ticks": 1, "boot_id": "another-host", "pid_ns": 1});
        store.set_raw_slot(
            0,
            json!({
                "user": "x", "start_time": now - 900, "last_heartbeat": now - 301, "type": "run",
                "owner_process": invisible
            }),
        );
        store.set_raw_slot(
            1,
            json!({
                "user": "y", "start_time": now - 900, "last_heartbeat": now - 10, "type": "run",
                "owner_process": invisible
            }),
        );
        assert_eq!(store.busy_ids(), vec![1]);
        // Upstream entries without an owner follow the same rule.
        store.set_raw_slot(
            0,
            json!({"user": "z", "start_time": now - 900, "last_heartbeat": now - 400}),
        );
        assert_eq!(store.busy_ids(), vec![1]);
    });
}

#[test]
fn a_dead_owner_on_this_host_frees_at_once_and_pid_reuse_does_not_fool_it() {
    each_backend(|store| {
        store.admin(1);
        let now = unix_now();
        // Our own pid is alive, but with another start time it is another process.
        let me = std::process::id();
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
        let ns: u64 = ns
            .to_str()
            .unwrap()
            .trim_start_matches("pid:[")
            .trim_end_matches(']')
            .parse()
            .unwrap();
        store.set_raw_slot(
            0,
            json!({
                "user": "x", "start_time": now, "last_heartbeat": now, "type": "run",
                "owner_process": {"pid": me, "start_ticks": 1, "boot_id": boot.trim(), "pid_ns": ns}
            }),
        );
        assert!(store.busy_ids().is_empty());
        let history_has_it = match store.backend {
            Backend::File => common::history_files(&store.state_dir())
                .iter()
                .any(|text| text.contains("\"user\":\"x\"")),
            Backend::Redis => store
                .redis()
                .cli(&["ZRANGE", "canhazgpu:usage_history_sorted", "0", "-1"])
                .contains("\"user\":\"x\""),
        };
        assert!(
            history_has_it,
            "the freed reservation was not recorded in history"
        );
    });
}

#[test]
fn redis_pool_written_by_upstream_works_without_admin() {
    let store = TestStore::new(Backend::Redis);
    let redis = store.redis();
    let now = unix_now();
    redis.cli(&["SET", "canhazgpu:gpu_count", "3"]);
    // Upstream Go wrote RFC 3339 strings and, in its first heartbeat, no type.
    redis.cli(&[
        "SET",
        "canhazgpu:gpu:0",
        &json!({
            "user": "carol", "start_time": "2020-01-01T00:00:00Z", "last_heartbeat": now.to_string()
        })
        .to_string(),
    ]);
    redis.cli(&[
        "SET",
        "canhazgpu:gpu:1",
        &json!({"last_released": now - 60, "note": null}).to_string(),
    ]);
    let status = store.status();
    assert!(status.contains("GPU 0: IN USE by carol for "), "{status}");
    assert!(status.contains("(run, last heartbeat 0h 0m"), "{status}");
    assert!(
        status.contains("GPU 1: AVAILABLE (last released 0h 1m"),
        "{status}"
    );
    assert!(
        status.lines().nth(2).unwrap().ends_with("GPU 2: AVAILABLE"),
        "{status}"
    );
    // What we write is what upstream reads: integer times, a type, no nulls.
    store
        .cmd()
        .args(["reserve", "--duration", "1h"])
        .assert()
        .success();
    let written = redis.cli(&["GET", "canhazgpu:gpu:2"]);
    assert!(!written.contains("null"), "{written}");
    let value: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(value["type"], "manual");
    assert!(
        value["start_time"].is_i64()
            && value["expiry_time"].is_i64()
            && value["last_heartbeat"].is_i64()
    );
    store.cmd().arg("release").assert().success();
    let freed: serde_json::Value =
        serde_json::from_str(&redis.cli(&["GET", "canhazgpu:gpu:2"])).unwrap();
    assert!(
        freed.get("user").is_none() && freed["last_released"].is_i64(),
        "{freed}"
    );
}

#[test]
fn unknown_fields_of_other_clients_survive_heartbeats() {
    each_backend(|store| {
        store.admin(1);
        let mut run = heartbeating_run(store);
        let mut slot = wait_for(Duration::from_secs(10), "the reservation", || {
            let slot = store.raw_slot(0);
            slot["user"].is_string().then_some(slot)
        });
        let beat = slot["last_heartbeat"].as_i64().unwrap();
        slot["run_host"] = json!("gpu-box-1");
        store.set_raw_slot(0, slot);
        let after = wait_for(Duration::from_secs(10), "a heartbeat", || {
            let slot = store.raw_slot(0);
            (slot["last_heartbeat"].as_i64()? > beat).then_some(slot)
        });
        assert_eq!(after["run_host"], "gpu-box-1");
        run.kill().unwrap();
        run.wait().unwrap();
    });
}
