//! Bad input gets a clear error, no panic, and leaves the pool exactly as it was.

mod common;

use std::time::{Duration, Instant};

use common::{BACKENDS, Backend, TestStore};
use predicates::prelude::*;

/// Each case: arguments, a fragment the error must contain, the expected exit status.
const CASES: &[(&[&str], &str, i32)] = &[
    (&["reserve", "--gpus", "0"], "--gpus", 2),
    (&["reserve", "--gpus", "-1"], "-1", 2),
    (&["reserve", "--gpus", "two"], "two", 2),
    (
        &["reserve", "--gpus", "5"],
        "Not enough GPUs available: requested 5",
        1,
    ),
    (&["run", "--gpus", "0", "--", "true"], "--gpus", 2),
    (
        &["run", "--gpus", "9", "--", "true"],
        "pool has only 4 GPU(s)",
        1,
    ),
    (&["reserve", "--duration", "abc"], "e.g. 30m", 2),
    (&["reserve", "--duration", "-5m"], "negative", 2),
    (&["reserve", "--duration", "0m"], "zero", 2),
    (&["reserve", "--duration", "5"], "no unit", 2),
    (
        &["reserve", "--duration", "99999d"],
        "longer than 30 days",
        2,
    ),
    (&["run", "echo", "hi"], "'--'", 2),
    (&["run", "--"], "COMMAND", 2),
    (&["admin", "--gpus", "0"], "--gpus", 2),
    (&["admin", "--gpus", "3"], "--force", 1),
    (&["frobnicate"], "unrecognized subcommand", 2),
];

#[test]
fn each_bad_invocation_explains_itself_and_changes_nothing() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(4);
        store.cmd().arg("reserve").assert().success();
        let before = store.dump();
        for (args, fragment, code) in CASES {
            let out = store.cmd().args(*args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(*code),
                "{backend:?} {args:?}: {stderr}"
            );
            assert!(
                stderr.contains(fragment),
                "{backend:?} {args:?}: {stderr:?} lacks {fragment:?}"
            );
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
            assert_eq!(
                store.dump(),
                before,
                "{backend:?} {args:?} changed the pool"
            );
        }
    }
}

#[test]
fn unknown_command_to_run_is_127_and_holds_nothing() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(2);
        store
            .cmd()
            .args(["run", "--", "no-such-program-anywhere"])
            .assert()
            .code(127);
        assert!(store.busy_ids().is_empty());
    }
}

#[test]
fn store_urls_with_unknown_schemes_are_refused() {
    let store = TestStore::new(Backend::File);
    for url in [
        "http://localhost/",
        "file:relative/dir",
        "/var/lib/canhazgpu",
        "mysql://x",
    ] {
        let out = store
            .cmd()
            .env("CANHAZGPU_STORE", url)
            .arg("status")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains("file:///"), "{url}: {stderr}");
    }
}

#[test]
fn unreachable_redis_fails_fast_naming_the_url() {
    let store = TestStore::new(Backend::File);
    let missing = store.home.path().join("nobody-listens.sock");
    for url in [
        format!("redis+unix://{}", missing.display()),
        "redis://127.0.0.1:1/0".to_string(),
    ] {
        for args in [
            &["status"][..],
            &["reserve"],
            &["run", "--", "true"],
            &["admin", "--gpus", "2"],
        ] {
            let started = Instant::now();
            let out = store
                .cmd()
                .env("CANHAZGPU_STORE", &url)
                .args(args)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{url} {args:?}: {stderr}");
            assert!(
                stderr.contains(&url) && stderr.contains("redis-server"),
                "{stderr}"
            );
            // Generous: the product promise is 3 s, this only guards against hanging.
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{url} {args:?} took {:?}",
                started.elapsed()
            );
        }
    }
}

#[test]
fn a_corrupt_state_file_is_an_error_naming_it_and_is_left_alone() {
    let store = TestStore::new(Backend::File);
    store.admin(2);
    let path = store.state_dir().join("state.json");
    for garbage in [
        "",
        "{\"schema\":1,\"gpus\":[{\"user\":",
        "[1,2,3]",
        "{\"schema\":77,\"gpus\":[]}",
    ] {
        std::fs::write(&path, garbage).unwrap();
        for args in [
            &["status"][..],
            &["reserve"],
            &["release"],
            &["run", "--", "true"],
        ] {
            let out = store.cmd().args(args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{garbage:?} {args:?}: {stderr}");
            assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
            assert!(stderr.contains("--force"), "{stderr}");
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                garbage,
                "the corrupt file was changed"
            );
        }
    }
    // An administrator can always start over.
    store
        .cmd()
        .args(["admin", "--gpus", "2", "--force"])
        .assert()
        .success();
    assert_eq!(store.status().lines().count(), 2);
}

/// Runs the binary as an unprivileged user (the tests run as root, which ignores modes).
fn as_nobody(store: &TestStore, args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(common::binary())
        .args(args)
        .env("CANHAZGPU_STORE", store.url())
        .env("CANHAZGPU_CONFIG", store.config_path())
        .output()
        .expect("setpriv (util-linux)")
}

fn open_up(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn an_unwritable_state_directory_is_a_clear_error_and_other_users_can_reserve() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let store = TestStore::new(Backend::File);
    open_up(store.home.path());
    std::fs::set_permissions(store.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    store.admin(2);
    // admin's mode lets another local user reserve and release.
    let out = as_nobody(&store, &["reserve"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(store.status().contains("IN USE by nobody"));
    assert!(as_nobody(&store, &["release"]).status.success());
    // A directory that lost its mode gives a clear error and no change.
    std::fs::set_permissions(store.state_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = store.dump();
    let out = as_nobody(&store, &["reserve"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("writable") && stderr.contains("0777"),
        "{stderr}"
    );
    assert_eq!(store.dump(), before);
}

#[test]
fn admin_force_starts_over_on_a_corrupt_redis_pool() {
    let store = TestStore::new(Backend::Redis);
    store.admin(4);
    store.redis().cli(&["SET", "canhazgpu:gpu:1", "{garbage"]);
    store.cmd().arg("status").assert().failure().stderr(
        predicates::str::contains("canhazgpu:gpu:1").and(predicates::str::contains("--force")),
    );
    store
        .cmd()
        .args(["admin", "--gpus", "2", "--force"])
        .assert()
        .success();
    assert_eq!(store.status().lines().count(), 2);
    assert_eq!(store.redis().cli(&["EXISTS", "canhazgpu:gpu:3"]), "0");
}
