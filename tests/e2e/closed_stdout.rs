//! Output to a reader that has gone (`canhazgpu status | true`, `| head -1`): a quiet
//! exit, never a panic, and never a reservation its caller did not hear of.

use crate::common;

use std::io::Read;
use std::process::{Output, Stdio};

use common::{Backend, TestStore};

/// The write end of a pipe whose read end is already closed: every write fails (EPIPE).
fn pipe_without_reader() -> Stdio {
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    drop(reader);
    Stdio::from(writer)
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_quiet_exit(what: &str, out: &Output) {
    let stderr = stderr_of(out);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
}

/// A store with something to show in every listing: a held GPU, a finished reservation
/// in the history and a waiter in the queue.
fn busy_store() -> (TestStore, std::process::Child) {
    let store = TestStore::new(Backend::File);
    store.admin(2);
    store
        .cmd()
        .args(["reserve", "--gpus", "2"])
        .assert()
        .success();
    store.cmd().arg("release").assert().success();
    store
        .cmd()
        .args(["reserve", "--gpus", "2"])
        .assert()
        .success();
    let waiter = store
        .std_cmd()
        .args(["reserve", "--wait=60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for(std::time::Duration::from_secs(20), "a waiter", || {
        let out = store.cmd().arg("queue").output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .contains("1. ")
            .then_some(())
    });
    (store, waiter)
}

#[test]
fn every_listing_exits_quietly_when_the_reader_is_gone_before_the_first_write() {
    let (store, mut waiter) = busy_store();
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["report"],
        &["report", "--json"],
        &["queue"],
        &["queue", "--json"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["completions", "fish"],
    ] {
        let out = store
            .std_cmd()
            .args(args)
            .stdout(pipe_without_reader())
            .output()
            .unwrap();
        assert_quiet_exit(&args.join(" "), &out);
    }
    waiter.kill().unwrap();
    waiter.wait().unwrap();
}

#[test]
fn a_reader_that_leaves_after_the_first_write_is_a_quiet_exit() {
    let store = TestStore::new(Backend::File);
    store.admin(1024);
    // Far more than a pipe holds (64 KiB), so the writer is still writing when the
    // reader leaves, whatever the timing.
    let note = "x".repeat(200);
    store
        .cmd()
        .args(["reserve", "--gpus", "1024", "--note", &note])
        .assert()
        .success();
    for args in [["status", "--json"], ["status", "--verbose"]] {
        let mut child = store
            .std_cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 100];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The read end is dropped here, with most of the output unread.
        let out = child.wait_with_output().unwrap();
        assert_quiet_exit(&args.join(" "), &out);
    }
    // The same through a real shell, as people type it.
    let out = store
        .select(&mut std::process::Command::new("bash"))
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {} status | head -1",
            common::binary().display()
        ))
        .output()
        .unwrap();
    assert_quiet_exit("status | head -1", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn reserve_that_cannot_print_its_export_line_holds_nothing() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let out = store
        .std_cmd()
        .args(["reserve", "--duration", "1h"])
        .stdout(pipe_without_reader())
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("released GPU(s) [0] again"), "{stderr}");
    assert!(store.busy_ids().is_empty(), "the GPU stayed reserved");
    // A reader that is there gets the reservation as usual.
    store
        .cmd()
        .args(["reserve", "--duration", "1h"])
        .assert()
        .success();
    assert_eq!(store.busy_ids(), [0]);
}

/// `2>&1 | head -1` with the reader gone: what canhazgpu says on stderr is lost, and the
/// command still ends as it would have (an error's status, a run's command's status),
/// never with a panic's 101.
#[test]
fn a_stderr_nobody_reads_loses_messages_not_the_command() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let missing = store.home.path().join("no-such-store");
    let error = store
        .std_cmd()
        .arg("--store")
        .arg(format!("file://{}", missing.display()))
        .arg("status")
        .stderr(pipe_without_reader())
        .output()
        .unwrap();
    assert_eq!(
        error.status.code(),
        Some(1),
        "an error exits 1 even unheard"
    );
    // run says which GPU it got and warns about what it sees, on stderr.
    let run = store
        .std_cmd()
        .args(["run", "--", "sh", "-c", "exit 3"])
        .stderr(pipe_without_reader())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3), "run exits as its command did");
    store
        .cmd()
        .arg("status")
        .assert()
        .success()
        .stdout(predicates::str::contains("GPU 0: AVAILABLE"));
}
