//! Bad input gets a clear error, no panic, and leaves the pool exactly as it was.

use crate::common;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use common::{BACKENDS, Backend, TestStore};
use predicates::prelude::*;

/// One invalid invocation and what its error must say.
struct Case {
    args: Vec<OsString>,
    /// Environment on top of the test store's.
    env: Vec<(&'static str, OsString)>,
    /// Variables to remove (say the store, so that the configuration file's is used).
    unset: Vec<&'static str>,
    /// Contents of the configuration file to use instead of the empty one.
    config: Option<&'static str>,
    /// The part of the message that says what is wrong or what to do.
    fragment: &'static str,
    code: i32,
}

fn case(args: &[&str], fragment: &'static str, code: i32) -> Case {
    Case {
        args: args.iter().map(OsString::from).collect(),
        env: Vec::new(),
        unset: Vec::new(),
        config: None,
        fragment,
        code,
    }
}

impl Case {
    fn env(mut self, name: &'static str, value: impl Into<OsString>) -> Case {
        self.env.push((name, value.into()));
        self
    }

    fn unset(mut self, name: &'static str) -> Case {
        self.unset.push(name);
        self
    }

    fn config(mut self, text: &'static str) -> Case {
        self.config = Some(text);
        self
    }

    /// Replaces the argument `placeholder` with raw bytes (not UTF-8).
    fn raw(mut self, placeholder: &str, bytes: &[u8]) -> Case {
        for arg in &mut self.args {
            if arg == placeholder {
                *arg = OsStr::from_bytes(bytes).to_os_string();
            }
        }
        self
    }

    /// Whether the case gets as far as the store: the others (usage errors, bad
    /// configuration, another store's URL) are the same whatever the store, and run
    /// against the embedded one only.
    fn reaches_store(&self) -> bool {
        self.code == 1 && self.config.is_none() && self.env.is_empty() && self.unset.is_empty()
    }

    fn describe(&self) -> String {
        let mut text: String = self
            .args
            .iter()
            .map(|arg| arg.to_string_lossy().chars().take(40).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ");
        for (name, value) in &self.env {
            text.push_str(&format!(" [{name}={}]", value.to_string_lossy()));
        }
        if let Some(config) = self.config {
            text.push_str(&format!(" [config: {config}]"));
        }
        text
    }
}

/// Every case runs against a pool of 4 where GPU 0 is this user's manual reservation and
/// GPU 1 is alice's; `PID` stands for a live process that is not an ancestor.
fn cases() -> Vec<Case> {
    let long_note = "x".repeat(10_000);
    let long_user = "u".repeat(65);
    let config_dir = std::env::temp_dir();
    vec![
        // Counts.
        case(&["reserve", "--gpus", "0"], "--gpus", 2),
        case(&["reserve", "--gpus", "-1"], "-1", 2),
        case(&["reserve", "--gpus", "two"], "two", 2),
        case(&["reserve", "--gpus", ""], "--gpus", 2),
        case(&["reserve", "--gpus", "99999999999"], "1..=1024", 2),
        case(
            &["reserve", "--gpus", "5"],
            "Not enough GPUs available: requested 5",
            1,
        ),
        case(
            &["reserve", "--gpus", "3"],
            "add --wait to queue for them",
            1,
        ),
        case(&["run", "--gpus", "0", "--", "true"], "--gpus", 2),
        case(
            &["run", "--gpus", "9", "--", "true"],
            "pool has only 4 GPU(s)",
            1,
        ),
        case(&["admin", "--gpus", "0"], "--gpus", 2),
        case(&["admin", "--gpus", "3"], "--force", 1),
        // Ids.
        case(
            &["reserve", "--gpu-ids", "9"],
            "GPU 9 is not in the pool, which has GPUs 0 to 3",
            1,
        ),
        case(
            &["run", "--gpu-ids", "4", "--", "true"],
            "which has GPUs 0 to 3",
            1,
        ),
        case(&["reserve", "--gpu-ids", "1,1"], "give distinct ids", 2),
        case(&["reserve", "--gpu-ids", "x"], "'x' for '--gpu-ids", 2),
        case(&["reserve", "--gpu-ids", ""], "--gpu-ids", 2),
        case(
            &["reserve", "--gpu-ids", "1", "--gpus", "2"],
            "cannot be used with",
            2,
        ),
        case(
            &["reserve", "--gpu-ids", "1"],
            "GPU 1 is reserved by alice; add --wait",
            1,
        ),
        case(
            &["release", "--gpu-ids", "1"],
            "GPU 1 is held by alice, not by you",
            1,
        ),
        case(&["release", "--gpu-ids", "3"], "GPU 3 is not reserved", 1),
        case(&["release", "--gpu-ids", "9"], "see `canhazgpu status`", 1),
        case(&["release", "--gpu-ids", "0,0"], "give distinct ids", 2),
        // All or nothing: GPU 0 is mine, GPU 3 is not reserved; GPU 0 stays.
        case(&["release", "--gpu-ids", "0,3"], "released nothing", 1),
        case(
            &["release", "--gpu-ids", "0", "--all"],
            "cannot be used with",
            2,
        ),
        // Durations.
        case(&["reserve", "--duration", "abc"], "e.g. 30m", 2),
        case(&["reserve", "--duration", "-5m"], "negative", 2),
        case(&["reserve", "--duration", "0m"], "zero", 2),
        case(&["reserve", "--duration", "5"], "no unit", 2),
        case(&["reserve", "--duration", ""], "empty", 2),
        case(&["reserve", "--duration", "1e9h"], "e.g. 30m", 2),
        case(
            &["reserve", "--duration", "99999d"],
            "longer than 30 days",
            2,
        ),
        case(&["reserve", "--duration", "500ms"], "at least 1s", 2),
        case(
            &["run", "--heartbeat-interval", "1ms", "--", "true"],
            "at least 1s",
            2,
        ),
        case(
            &["status"],
            "`heartbeat_interval`: invalid duration '10ms'",
            1,
        )
        .config("heartbeat_interval = \"10ms\""),
        case(&["reserve"], "at least 1s", 1).config("default_duration = \"0.2s\""),
        case(&["reserve", "--wait=abc"], "invalid duration 'abc'", 2),
        // A timeout after a space is not --wait's: say how to give it.
        case(&["reserve", "--wait", "5s"], "--wait=5s", 2),
        case(&["run", "--wait", "5s", "--", "true"], "--wait=5s", 2),
        case(&["reserve", "-w", "2h"], "-w=2h", 2),
        case(&["reserve", "-w30m"], "-w=30m", 2),
        case(&["reserve", "--wait="], "empty", 2),
        case(&["run", "--wait=0s", "--", "true"], "zero", 2),
        case(&["run", "--timeout", "0s", "--", "true"], "zero", 2),
        case(&["run", "--timeout", "abc", "--", "true"], "e.g. 30m", 2),
        case(
            &["run", "--heartbeat-interval", "0s", "--", "true"],
            "zero",
            2,
        ),
        case(
            &["run", "--on-lost", "explode", "--", "true"],
            "warn, kill",
            2,
        ),
        case(&["report", "--days", "0"], "1..=3650", 2),
        case(&["report", "--days", "-1"], "-1", 2),
        // Notes and user names.
        case(
            &["reserve", "--note", "\x1b[31mred"],
            "control characters",
            2,
        ),
        case(
            &["reserve", "--note", "two\nlines"],
            "control characters",
            2,
        ),
        // C1 CSI: an escape sequence without ESC.
        case(
            &["run", "--note", "\u{9b}2J", "--", "true"],
            "control characters",
            2,
        ),
        case(
            &["reserve", "--note", &long_note],
            "10000 characters long; keep it to 200",
            2,
        ),
        case(&["reserve", "--note", "RAW"], "invalid UTF-8", 2).raw("RAW", b"caf\xe9"),
        case(
            &["reserve", "--user", "alice smith"],
            "not a valid name: use 1 to 64",
            2,
        ),
        case(&["reserve", "--user", "jörg"], "not a valid name", 2),
        case(&["reserve", "--user=-rf"], "(not first)", 2),
        case(
            &["reserve", "--note", "safe\u{202E}txt.exe"],
            "bidirectional overrides",
            2,
        ),
        case(&["reserve", "--user", &long_user], "not a valid name", 2),
        case(&["reserve", "--user", ""], "not a valid name", 2),
        case(
            &["run", "--user", "a;b", "--", "true"],
            "not a valid name",
            2,
        ),
        case(&["reserve", "--user", "RAW"], "invalid UTF-8", 2).raw("RAW", b"\xff"),
        // Store URLs.
        case(&["status"], "file:///", 2).env("CANHAZGPU_STORE", "http://localhost/"),
        case(&["status"], "file:///", 2).env("CANHAZGPU_STORE", "file:relative/dir"),
        case(&["status"], "needs an absolute path", 2).env("CANHAZGPU_STORE", "file://"),
        case(&["status"], "redis://host:port/db", 2).env("CANHAZGPU_STORE", "redis://[bad"),
        case(&["status"], "invalid Redis URL", 2)
            .env("CANHAZGPU_STORE", "redis://127.0.0.1:6379/notadb"),
        case(&["--store", "", "status"], "unknown store URL ''", 2),
        // Configuration files.
        case(&["status"], "not valid TOML", 1).config("[[["),
        case(&["status"], "must be \"lru\" or \"sticky\"", 1)
            .config("allocation_policy = \"random\""),
        case(&["status"], "whole number of MiB", 1).config("memory_threshold = -1"),
        case(&["status"], "`heartbeat_interval` must be a string", 1)
            .config("heartbeat_interval = 5"),
        case(&["reserve"], "`default_duration`: invalid duration", 1)
            .config("default_duration = \"forever\""),
        case(&["status"], "zero", 1).config("heartbeat_timeout = \"0s\""),
        case(&["status"], "\"index\" or \"uuid\"", 1).config("visible_devices = \"name\""),
        case(&["status"], "absolute path", 1).config("nvml_library = \"lib\""),
        case(&["status"], "`store`: unknown store URL 'ftp://x'", 2)
            .config("store = \"ftp://x\"")
            .unset("CANHAZGPU_STORE"),
        case(
            &["status"],
            "point --config / CANHAZGPU_CONFIG elsewhere",
            1,
        )
        .env("CANHAZGPU_CONFIG", config_dir.as_os_str()),
        case(
            &["status"],
            "point --config / CANHAZGPU_CONFIG elsewhere",
            1,
        )
        .env("CANHAZGPU_CONFIG", "/nonexistent/canhazgpu.toml"),
        // Shell integration flags and environment.
        case(&["reserve", "--shell", "bash"], "--owner-pid", 2),
        case(
            &["reserve", "--shell", "tcsh", "--owner-pid", "1"],
            "bash, zsh, fish",
            2,
        ),
        case(
            &["reserve", "--shell", "bash", "--owner-pid", "0"],
            "--owner-pid",
            2,
        ),
        case(
            &["reserve", "--shell", "bash", "--owner-pid", "PID"],
            "is not a process this command runs under",
            2,
        ),
        case(
            &["reserve", "--shell", "bash", "--owner-pid", "SELF"],
            "not UTF-8, which the shell integration cannot save and restore; unset it",
            1,
        )
        .env("CUDA_VISIBLE_DEVICES", OsStr::from_bytes(b"\xff$(touch x)")),
        case(
            &["release", "--shell", "bash", "--owner-pid", "SELF"],
            "unset it",
            1,
        )
        .env("CANHAZGPU_RESTORE", OsStr::from_bytes(b"{\"a\":\"\xfe\"}")),
        // Usage.
        case(&["run", "echo", "hi"], "'--'", 2),
        case(&["run", "--"], "COMMAND", 2),
        case(&["frobnicate"], "unrecognized subcommand", 2),
        case(&["reserve", "--policy", "random"], "lru, sticky", 2),
        case(
            &["status", "--memory-threshold", "x"],
            "--memory-threshold",
            2,
        ),
    ]
}

#[test]
fn each_bad_invocation_explains_itself_and_changes_nothing() {
    let cases = cases();
    assert!(cases.len() >= 40, "the issue asks for at least 40");
    // A live process that is not an ancestor of the binary, for --owner-pid.
    let stranger = Stranger(
        std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap(),
    );
    let stranger_pid = stranger.0.id().to_string();
    // The test process is an ancestor of every binary it starts.
    let self_pid = std::process::id().to_string();
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(4);
        store
            .cmd()
            .args(["reserve", "--gpu-ids", "0"])
            .assert()
            .success();
        let now = common::unix_now();
        store.set_raw_slot(
            1,
            serde_json::json!({
                "user": "alice", "start_time": now, "last_heartbeat": now, "type": "manual",
                "expiry_time": now + 3600
            }),
        );
        let before = store.dump();
        for case in cases
            .iter()
            .filter(|case| backend == Backend::File || case.reaches_store())
        {
            let what = format!("{backend:?} {}", case.describe());
            let mut cmd = store.cmd();
            for arg in &case.args {
                match arg.to_str() {
                    Some("PID") => cmd.arg(&stranger_pid),
                    Some("SELF") => cmd.arg(&self_pid),
                    _ => cmd.arg(arg),
                };
            }
            if let Some(text) = case.config {
                let path = store.home.path().join("case.toml");
                std::fs::write(&path, text).unwrap();
                cmd.env("CANHAZGPU_CONFIG", path);
            }
            for (name, value) in &case.env {
                cmd.env(name, value);
            }
            for name in &case.unset {
                cmd.env_remove(name);
            }
            let out = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(case.code), "{what}: {stderr}");
            assert!(
                stderr.contains(case.fragment),
                "{what}: {stderr:?} lacks {:?}",
                case.fragment
            );
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
            // What clap rejects points to --help; what we reject says what to do itself.
            if stderr.starts_with("error:") {
                assert!(stderr.contains("--help"), "{what}: {stderr}");
            }
            // A failing shell-integration call prints no shell code to evaluate.
            assert!(out.stdout.is_empty(), "{what}: {:?}", out.stdout);
            assert_eq!(store.dump(), before, "{what} changed the pool");
        }
    }
}

/// A child killed on drop, also when the test fails.
struct Stranger(std::process::Child);

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
        // (A newer schema is not corrupt: tests/e2e/upgrades.rs.)
        "{\"schema\":1,\"gpus\":[7]}",
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
        common::skip(
            "an_unwritable_state_directory_is_a_clear_error_and_other_users_can_reserve",
            "needs root to act as another user",
        );
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

/// Shell code the integration evaluates must never run what a variable holds: values
/// with shell metacharacters in every variable it reads, through `init`, the prompt hook,
/// the prompt function, `reserve` and `release`, in real bash, zsh and fish. Each either
/// works with the value kept as plain text (restored exactly on release) or is dropped
/// with a warning; nothing is executed, and nothing stays reserved.
#[test]
fn shell_metacharacters_in_the_environment_are_never_executed() {
    use common::shell::{SHELLS, Sh};
    let store = TestStore::new(Backend::File);
    store.admin(2);
    let marker = store.home.path().join("executed");
    let m = marker.display();
    // `SELF` makes the script put its own pid there, so that the hook reads the rest.
    let cases: Vec<Vec<(&str, String)>> = vec![
        vec![("CUDA_VISIBLE_DEVICES", format!("$(touch {m})"))],
        vec![("CUDA_VISIBLE_DEVICES", format!("`touch {m}`"))],
        vec![("CUDA_VISIBLE_DEVICES", format!("'; touch {m}; '"))],
        vec![("NVIDIA_VISIBLE_DEVICES", format!("\"$(touch {m})\""))],
        vec![("CUDA_DEVICE_ORDER", format!("x\ntouch {m}"))],
        vec![("CANHAZGPU_GPUS", format!("1;touch {m}"))],
        vec![("CANHAZGPU_GPUS", format!("x[$(touch {m})]"))],
        vec![("CANHAZGPU_OWNER_PID", format!("$(touch {m})"))],
        // Arithmetic evaluation runs command substitutions in array subscripts.
        vec![
            ("CANHAZGPU_OWNER_PID", "SELF".into()),
            ("CANHAZGPU_EXPIRES", format!("x[$(touch {m})]")),
            ("CANHAZGPU_GPUS", "0".into()),
        ],
        vec![
            ("CANHAZGPU_OWNER_PID", "SELF".into()),
            ("CANHAZGPU_LEASE", format!("/nonexistent'; touch {m}; '")),
        ],
        vec![(
            "CANHAZGPU_RESTORE",
            format!("{{\"CUDA_VISIBLE_DEVICES\":\"'$(touch {m})'\"}}"),
        )],
        vec![(
            "CANHAZGPU_RESTORE",
            format!("{{\"X;touch {m};Y\":\"1\",\"PATH\":\"$(touch {m})\"}}"),
        )],
    ];
    let posix = r#"
if [ "${CANHAZGPU_OWNER_PID-}" = SELF ]; then CANHAZGPU_OWNER_PID=$$; fi
INIT
_canhazgpu_hook
echo "p1=[$(canhazgpu_prompt)]"
if canhazgpu reserve --duration 1h; then echo "reserved=yes"; else echo "reserved=no"; fi
echo "gpus=${CANHAZGPU_GPUS-}"
_canhazgpu_hook
echo "p2=[$(canhazgpu_prompt)]"
if canhazgpu release; then echo "released=yes"; else echo "released=no"; fi
if [ "${WATCHED-}" = "${ORIGINAL-}" ]; then echo "restored=yes"; else echo "restored=no"; fi
"#;
    let fish = r#"
if test "$CANHAZGPU_OWNER_PID" = SELF; set -gx CANHAZGPU_OWNER_PID $fish_pid; end
INIT
_canhazgpu_hook
echo "p1=["(canhazgpu_prompt)"]"
if canhazgpu reserve --duration 1h; echo reserved=yes; else; echo reserved=no; end
echo "gpus=$CANHAZGPU_GPUS"
_canhazgpu_hook
echo "p2=["(canhazgpu_prompt)"]"
if canhazgpu release; echo released=yes; else; echo released=no; end
if test "$$WATCHED_NAME" = "$ORIGINAL"; echo restored=yes; else; echo restored=no; end
"#;
    for sh in SHELLS {
        for env in &cases {
            let (name, value) = env.last().expect("a variable");
            // POSIX shells compare through WATCHED; fish dereferences the name.
            let watched = match sh {
                Sh::Fish => format!("${name}"),
                _ => format!("${{{name}-}}"),
            };
            let script = match sh {
                Sh::Fish => fish.replace("$$WATCHED_NAME", &watched),
                _ => posix.replace("${WATCHED-}", &watched),
            }
            .replace("INIT", sh.init_line());
            let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            vars.push(("ORIGINAL", value));
            let run = store.session_with(sh, &script, &vars);
            let what = format!("{sh:?} {env:?}\n{}", run.describe());
            assert!(run.success(), "{what}");
            assert!(!marker.exists(), "{what}: the value was executed");
            assert!(!run.stderr.contains("panicked"), "{what}");
            assert_eq!(run.value("reserved"), "yes", "{what}");
            assert!(
                run.value("gpus")
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == ','),
                "{what}"
            );
            assert_eq!(run.value("released"), "yes", "{what}");
            // A value the shell had before reserving is back, byte for byte.
            if name.starts_with("CUDA_") || name.starts_with("NVIDIA_") {
                assert_eq!(run.value("restored"), "yes", "{what}");
            }
            assert!(store.busy_ids().is_empty(), "{what}: {}", store.status());
        }
    }
}
