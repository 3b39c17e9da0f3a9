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
    if !common::root_or_skip("a_strict_umask_does_not_lock_other_users_out") {
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
    if !common::root_or_skip("admin_under_a_strict_umask_creates_missing_parents_others_can_enter")
    {
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
    if !common::root_or_skip("every_users_release_lands_in_the_report") {
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
    if !common::root_or_skip("a_lock_file_others_cannot_open_is_blamed_and_admin_repairs_it") {
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

fn write_config(store: &TestStore, text: &str) {
    std::fs::write(store.config_path(), text).unwrap();
}

#[test]
fn only_admins_may_reinitialize_the_pool() {
    if !common::root_or_skip("only_admins_may_reinitialize_the_pool") {
        return;
    }
    let store = shared_store();
    ok(
        "admin",
        canhazgpu(&store, ROOT, USUAL, &["admin", "--gpus", "2"]),
    );
    ok("reserve", canhazgpu(&store, ROOT, USUAL, &["reserve"]));
    let before = store.dump();
    let refused = canhazgpu(&store, NOBODY, USUAL, &["admin", "--gpus", "4", "--force"]);
    let stderr = stderr_of(&refused);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    for part in ["only an administrator", "root", "`admins`", "owner of"] {
        assert!(stderr.contains(part), "{part:?} in {stderr}");
    }
    assert_eq!(store.dump(), before, "a refused admin changed the pool");
    // Named in the configuration, by name or by group.
    for admins in [
        "admins = [\"nobody\"]",
        "admins = [\"alice\", \"@nogroup\"]",
    ] {
        write_config(&store, admins);
        ok(
            admins,
            canhazgpu(&store, NOBODY, USUAL, &["admin", "--gpus", "2", "--force"]),
        );
    }
    write_config(&store, "admins = [\"@no-such-group\"]");
    let refused = canhazgpu(&store, NOBODY, USUAL, &["admin", "--gpus", "2", "--force"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr_of(&refused));
    write_config(&store, "admins = \"nobody\"");
    let refused = canhazgpu(&store, ROOT, USUAL, &["admin", "--gpus", "2", "--force"]);
    assert!(
        stderr_of(&refused).contains("`admins`"),
        "{}",
        stderr_of(&refused)
    );
}

#[test]
fn the_owner_of_a_private_store_is_its_admin() {
    if !common::root_or_skip("the_owner_of_a_private_store_is_its_admin") {
        return;
    }
    let store = shared_store();
    let mine = store.home.path().join("nobodys");
    std::fs::create_dir(&mine).unwrap();
    nix::unistd::chown(&mine, Some(NOBODY.into()), Some(NOBODY.into())).unwrap();
    let url = format!("file://{}/pool", mine.display());
    let admin = |force: bool| {
        let mut args = vec!["--store", &url, "admin", "--gpus", "1"];
        if force {
            args.push("--force");
        }
        canhazgpu(&store, NOBODY, STRICT, &args)
    };
    ok("nobody's first admin", admin(false));
    ok("nobody's admin --force", admin(true));
    ok(
        "nobody's reserve",
        canhazgpu(&store, NOBODY, STRICT, &["--store", &url, "reserve"]),
    );
}

/// GPU 0 held by nobody (manual), GPU 1 by root.
fn two_holders(store: &TestStore) {
    ok(
        "admin",
        canhazgpu(store, ROOT, USUAL, &["admin", "--gpus", "2"]),
    );
    ok(
        "nobody's reserve",
        canhazgpu(
            store,
            NOBODY,
            USUAL,
            &["reserve", "-G", "0", "-n", "weekend"],
        ),
    );
    ok(
        "root's reserve",
        canhazgpu(store, ROOT, USUAL, &["reserve", "-G", "1"]),
    );
}

#[test]
fn an_admin_takes_back_a_gpu_and_the_history_and_the_slot_say_so() {
    if !common::root_or_skip("an_admin_takes_back_a_gpu_and_the_history_and_the_slot_say_so") {
        return;
    }
    for backend in common::BACKENDS {
        let store = TestStore::new(backend);
        std::fs::set_permissions(store.home.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::set_permissions(store.config_path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        two_holders(&store);
        // Without --force, even root is told whose it is.
        let refused = canhazgpu(&store, ROOT, USUAL, &["release", "-G", "0"]);
        assert!(
            stderr_of(&refused).contains("held by nobody"),
            "{backend:?}"
        );
        assert!(
            stderr_of(&refused).contains("--force"),
            "{}",
            stderr_of(&refused)
        );
        // A user who is no admin cannot force.
        let before = store.dump();
        let refused = canhazgpu(&store, NOBODY, USUAL, &["release", "-G", "1", "--force"]);
        let stderr = stderr_of(&refused);
        assert_eq!(refused.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("only an administrator"), "{stderr}");
        assert_eq!(store.dump(), before);

        let out = ok(
            "root's release --force",
            canhazgpu(&store, ROOT, USUAL, &["release", "-G", "0", "--force"]),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("from nobody"), "{stdout}");
        assert_eq!(store.busy_ids(), [1], "{backend:?}");
        let slot = store.raw_slot(0);
        assert_eq!(slot["reclaimed_by"], "root", "{backend:?}: {slot}");
        assert_eq!(slot["last_user"], "nobody", "{slot}");
        assert!(!slot.to_string().contains("null"), "{slot}");
        assert!(store.status().contains("reclaimed by root"));
        let out = ok(
            "report",
            canhazgpu(&store, ROOT, USUAL, &["report", "--json"]),
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let nobody = report["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|user| user["user"] == "nobody")
            .unwrap_or_else(|| panic!("{backend:?}: no record of nobody in {report}"));
        assert_eq!(nobody["manual_count"], 1, "{report}");
        // The next ordinary release of that GPU ends the story.
        ok(
            "reserve",
            canhazgpu(&store, ROOT, USUAL, &["reserve", "-G", "0"]),
        );
        ok(
            "release",
            canhazgpu(&store, ROOT, USUAL, &["release", "-G", "0"]),
        );
        assert!(store.raw_slot(0).get("reclaimed_by").is_none());
    }
}

#[test]
fn a_reclaimed_run_does_not_take_its_gpu_back() {
    if !common::root_or_skip("a_reclaimed_run_does_not_take_its_gpu_back") {
        return;
    }
    let store = shared_store();
    ok(
        "admin",
        canhazgpu(&store, ROOT, USUAL, &["admin", "--gpus", "1"]),
    );
    let mut run = Command::new("setpriv");
    run.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .args(["--clear-groups", "--"])
        .arg(common::binary())
        .args(["run", "--heartbeat-interval", "1s", "--", "sleep", "30"])
        .stderr(std::process::Stdio::piped());
    let mut run = store.select(&mut run).spawn().unwrap();
    let lines = common::LineWatcher::new(run.stderr.take().unwrap());
    lines.wait_for_line("running on GPU(s) [0]", std::time::Duration::from_secs(20));
    ok(
        "root's release --force",
        canhazgpu(&store, ROOT, USUAL, &["release", "-G", "0", "--force"]),
    );
    let warning = lines.wait_for_line("reclaimed by root", std::time::Duration::from_secs(20));
    assert!(warning.contains("GPU 0"), "{warning}");
    assert!(store.busy_ids().is_empty(), "the run took its GPU back");
    let _ = run.kill();
    run.wait().unwrap();
}
