//! Several Unix accounts on one embedded store, as on a real shared host: one user's
//! umask must not lock the others out or lose their history, and only admins may
//! reinitialize the pool or take back someone else's GPU.
//!
//! The tests run as root and act as `nobody` (uid 65534) through setpriv; without root
//! they say so and skip.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{Backend, TestStore};

const ROOT: u32 = 0;
const NOBODY: u32 = 65534;
const STRICT: u32 = 0o077;
const USUAL: u32 = 0o022;

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root to act as another user");
    false
}

/// An embedded store that other users can reach (the temp dir above it is private).
fn shared_store() -> TestStore {
    let store = TestStore::new(Backend::File);
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(store.home.path(), open.clone()).unwrap();
    std::fs::set_permissions(store.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    store
}

/// The binary as `uid` with `umask`, on `store`.
fn canhazgpu(store: &TestStore, uid: u32, umask: u32, args: &[&str]) -> Output {
    let mut cmd = if uid == ROOT {
        Command::new(common::binary())
    } else {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .args(["--clear-groups", "--"])
            .arg(common::binary());
        cmd
    };
    store.select(&mut cmd).args(args);
    let mask = nix::sys::stat::Mode::from_bits_truncate(umask);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::stat::umask(mask);
            Ok(())
        })
    };
    cmd.output().expect("running canhazgpu")
}

fn ok(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The modes every user of the host needs, whoever wrote last and with whatever umask.
fn assert_shared_modes(store: &TestStore) {
    let dir = store.state_dir();
    assert_eq!(mode_of(&dir), 0o777, "the state directory");
    assert_eq!(mode_of(&dir.join("state.json")), 0o644, "state.json");
    assert_eq!(mode_of(&dir.join("lock")), 0o666, "the lock file");
    if dir.join("history.jsonl").exists() {
        assert_eq!(mode_of(&dir.join("history.jsonl")), 0o666, "history.jsonl");
    }
}

#[test]
fn a_strict_umask_does_not_lock_other_users_out() {
    if !is_root() {
        return;
    }
    let store = shared_store();
    // An administrator with umask 077 creates the pool.
    ok(
        "admin",
        canhazgpu(&store, ROOT, STRICT, &["admin", "--gpus", "2"]),
    );
    assert_shared_modes(&store);
    ok(
        "nobody's status",
        canhazgpu(&store, NOBODY, USUAL, &["status"]),
    );
    // A user with umask 077 writes the state last, and ends a reservation (history).
    ok(
        "root's reserve",
        canhazgpu(&store, ROOT, STRICT, &["reserve"]),
    );
    ok(
        "root's release",
        canhazgpu(&store, ROOT, STRICT, &["release"]),
    );
    ok(
        "root's reserve",
        canhazgpu(&store, ROOT, STRICT, &["reserve"]),
    );
    assert_shared_modes(&store);
    let out = ok(
        "nobody's reserve",
        canhazgpu(&store, NOBODY, STRICT, &["reserve"]),
    );
    assert!(stderr_of(&out).contains("Reserved 1 GPU(s)"));
    assert_shared_modes(&store);
    ok("root's status", canhazgpu(&store, ROOT, USUAL, &["status"]));
    ok(
        "nobody's release",
        canhazgpu(&store, NOBODY, STRICT, &["release"]),
    );
    assert_shared_modes(&store);
}

#[test]
fn admin_under_a_strict_umask_creates_missing_parents_others_can_enter() {
    if !is_root() {
        return;
    }
    let store = shared_store();
    let dir = store.home.path().join("new/parents/pool");
    let url = format!("file://{}", dir.display());
    let out = canhazgpu(
        &store,
        ROOT,
        STRICT,
        &["--store", &url, "admin", "--gpus", "1"],
    );
    ok("admin", out);
    assert_eq!(mode_of(&store.home.path().join("new")), 0o755);
    assert_eq!(mode_of(&store.home.path().join("new/parents")), 0o755);
    assert_eq!(mode_of(&dir), 0o777);
    let out = canhazgpu(&store, NOBODY, STRICT, &["--store", &url, "reserve"]);
    ok("nobody's reserve", out);
}

#[test]
fn every_users_release_lands_in_the_report() {
    if !is_root() {
        return;
    }
    let store = shared_store();
    ok(
        "admin",
        canhazgpu(&store, ROOT, USUAL, &["admin", "--gpus", "2"]),
    );
    // The first record creates history.jsonl, as root with the usual umask.
    ok(
        "root's reserve",
        canhazgpu(&store, ROOT, USUAL, &["reserve"]),
    );
    ok(
        "root's release",
        canhazgpu(&store, ROOT, USUAL, &["release"]),
    );
    ok(
        "nobody's reserve",
        canhazgpu(&store, NOBODY, USUAL, &["reserve"]),
    );
    let out = ok(
        "nobody's release",
        canhazgpu(&store, NOBODY, USUAL, &["release"]),
    );
    let stderr = stderr_of(&out);
    assert!(!stderr.contains("warning"), "{stderr}");
    let out = ok(
        "report",
        canhazgpu(&store, ROOT, USUAL, &["report", "--json"]),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let users: Vec<&str> = report["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["user"].as_str().unwrap())
        .collect();
    assert!(users.contains(&"nobody"), "{report}");
    assert!(users.contains(&"root"), "{report}");
}

#[test]
fn a_lock_file_others_cannot_open_is_blamed_and_admin_repairs_it() {
    if !is_root() {
        return;
    }
    let store = shared_store();
    ok(
        "admin",
        canhazgpu(&store, ROOT, USUAL, &["admin", "--gpus", "1"]),
    );
    // What an older version left behind under umask 077.
    let lock = store.state_dir().join("lock");
    let history = store.state_dir().join("history.jsonl");
    std::fs::write(&history, "").unwrap();
    for file in [&lock, &history] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = canhazgpu(&store, NOBODY, USUAL, &["reserve"]);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&lock.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("mode 0600") && stderr.contains("root"),
        "{stderr}"
    );
    assert!(!stderr.contains("state directory must be"), "{stderr}");
    // admin repairs what it can: every file of the store, and the directory.
    std::fs::set_permissions(store.state_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = ok(
        "admin --force",
        canhazgpu(&store, ROOT, STRICT, &["admin", "--gpus", "1", "--force"]),
    );
    assert_shared_modes(&store);
    assert!(stderr_of(&out).contains("0777"), "{}", stderr_of(&out));
    ok(
        "nobody's reserve",
        canhazgpu(&store, NOBODY, USUAL, &["reserve"]),
    );
}
