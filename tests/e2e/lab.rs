//! Several hosts, one Redis (issue 11): hosts simulated on this machine with
//! `CANHAZGPU_HOST=a|b|c` against real redis-servers, and the lab views (`--host`,
//! `--all-hosts`) over them, stores in `[hosts]` that die or hang, TLS, ACL users.

use crate::common;
use crate::nvml_stub as nvml;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::tls::TestCerts;
use common::{RedisServer, unix_now};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Hosts that share one Redis, each a `CANHAZGPU_HOST` on this machine.
struct Lab {
    redis: RedisServer,
    home: TempDir,
    /// The store URL the hosts use (the unix socket unless a test says otherwise).
    url: String,
}

impl Lab {
    fn new() -> Lab {
        Lab::on(RedisServer::start())
    }

    fn on(redis: RedisServer) -> Lab {
        let url = redis.url();
        let lab = Lab {
            redis,
            home: tempfile::tempdir().expect("temp dir"),
            url,
        };
        lab.configure("");
        lab
    }

    fn config_path(&self) -> PathBuf {
        self.home.path().join("config.toml")
    }

    /// Replaces the configuration every host reads.
    fn configure(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// The binary as host `host` (`None`: unnamed, upstream's keys).
    fn command(&self, host: Option<&str>) -> Command {
        let mut cmd = Command::new(common::binary());
        cmd.env("CANHAZGPU_STORE", &self.url)
            .env("CANHAZGPU_CONFIG", self.config_path())
            .env_remove("CANHAZGPU_HOST")
            .env_remove("CUDA_VISIBLE_DEVICES")
            .env_remove("CANHAZGPU_NVML_LIBRARY")
            // No NVIDIA library: the tests that want one say so.
            .env("LD_LIBRARY_PATH", self.home.path());
        if let Some(host) = host {
            cmd.env("CANHAZGPU_HOST", host);
        }
        cmd
    }

    fn run(&self, host: Option<&str>, args: &[&str]) -> Output {
        self.command(host)
            .args(args)
            .output()
            .expect("run canhazgpu")
    }

    /// Runs and requires success; returns stdout.
    fn ok(&self, host: Option<&str>, args: &[&str]) -> String {
        let out = self.run(host, args);
        assert!(
            out.status.success(),
            "{host:?} {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self) -> BTreeSet<String> {
        self.redis
            .cli(&["--scan", "--pattern", "canhazgpu*"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every key with its value, for "nothing changed" checks.
    fn dump(&self) -> String {
        self.keys()
            .iter()
            .map(|key| {
                let value = match self.redis.cli(&["TYPE", key]).as_str() {
                    "string" => self.redis.cli(&["GET", key]),
                    "hash" => self.redis.cli(&["HGETALL", key]).replace('\n', " "),
                    _ => self.redis.cli(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
                };
                format!("{key}={value}\n")
            })
            .collect()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(out: &Output) -> Vec<Value> {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// This machine's host name, which names an unnamed pool in the views.
fn hostname() -> String {
    nix::unistd::gethostname().unwrap().into_string().unwrap()
}

fn reserve_manual(lab: &Lab, host: &str, gpus: u32) {
    lab.ok(
        Some(host),
        &["reserve", "--gpus", &gpus.to_string(), "-d", "1h"],
    );
}

#[test]
fn named_hosts_keep_independent_pools_under_their_own_keys() {
    let lab = Lab::new();
    for (host, gpus) in [("a", "2"), ("b", "3"), ("c", "1")] {
        lab.ok(Some(host), &["admin", "--gpus", gpus]);
    }
    reserve_manual(&lab, "a", 2);
    // a is full; b and c are not.
    let full = lab.run(Some("a"), &["reserve", "-d", "1h"]);
    assert!(!full.status.success());
    reserve_manual(&lab, "b", 1);
    let b = lab.ok(Some("b"), &["status"]);
    assert_eq!(common::parse_busy(&b).len(), 1, "{b}");
    assert_eq!(b.lines().count(), 3, "{b}");
    assert_eq!(
        common::parse_busy(&lab.ok(Some("c"), &["status"])),
        Vec::<u32>::new()
    );
    lab.ok(Some("b"), &["release"]);
    assert_eq!(common::parse_busy(&lab.ok(Some("a"), &["status"])), [0, 1]);

    let keys = lab.keys();
    for key in &keys {
        let known = ["canhazgpu:{a}:", "canhazgpu:{b}:", "canhazgpu:{c}:"]
            .iter()
            .any(|prefix| key.starts_with(prefix));
        assert!(
            known || key == "canhazgpu:hosts",
            "stray key {key}: {keys:?}"
        );
    }
    for key in [
        "canhazgpu:{a}:gpu_count",
        "canhazgpu:{b}:gpu:2",
        "canhazgpu:{b}:usage_history_sorted",
    ] {
        assert!(keys.contains(key), "{key} missing: {keys:?}");
    }
    let registry = lab.redis.cli(&["HGETALL", "canhazgpu:hosts"]);
    let entries: Vec<&str> = registry.lines().collect();
    assert_eq!(entries.len(), 6, "{registry}");
    let b_entry: Value =
        serde_json::from_str(entries[entries.iter().position(|l| *l == "b").unwrap() + 1]).unwrap();
    assert_eq!(b_entry["gpu_count"], 3);
    let machine_id = std::fs::read_to_string("/etc/machine-id").map(|id| id.trim().to_string());
    if let Ok(id) = machine_id {
        assert_eq!(b_entry["machine_id"], id.as_str());
    }
}

#[test]
fn upstream_keys_stay_exactly_as_they_are_when_host_is_unset() {
    let lab = Lab::new();
    lab.ok(None, &["admin", "--gpus", "2"]);
    lab.ok(None, &["reserve", "-d", "1h"]);
    lab.ok(None, &["run", "--", "true"]);
    let upstream: BTreeSet<String> = [
        "canhazgpu:gpu_count",
        "canhazgpu:gpu:0",
        "canhazgpu:gpu:1",
        "canhazgpu:initialized_at",
        "canhazgpu:usage_history_sorted",
    ]
    .map(String::from)
    .into();
    assert_eq!(
        lab.keys(),
        upstream,
        "no registry, no NVML facts, no new keys"
    );
    let before = lab.dump();

    // Named hosts join the same Redis; the unnamed pool is not touched.
    lab.ok(Some("a"), &["admin", "--gpus", "1"]);
    reserve_manual(&lab, "a", 1);
    lab.ok(Some("a"), &["status", "--all-hosts"]);
    let after = lab.dump();
    let upstream_only = |dump: &str| -> String {
        dump.lines()
            .filter(|line| !line.starts_with("canhazgpu:{") && !line.starts_with("canhazgpu:hosts"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(upstream_only(&before), upstream_only(&after));

    // The unnamed host sees itself under its machine's name, and the named ones.
    let all = lab.ok(None, &["status", "--all-hosts"]);
    assert!(
        all.starts_with(&format!(
            "== {} (this host) == 2 GPUs: 1 free, 1 reserved",
            hostname()
        )),
        "{all}"
    );
    assert!(all.contains("== a == 1 GPUs: 0 free, 1 reserved"), "{all}");
}

/// Racing `run`s on two hosts of one Redis at once: within each host, no GPU is ever
/// held twice; the hosts do not disturb each other.
#[test]
fn racing_runs_on_each_host_never_share_a_gpu() {
    const WORKERS: usize = 4;
    const CYCLES: usize = 4;
    let lab = Lab::new();
    for host in ["a", "b"] {
        lab.ok(Some(host), &["admin", "--gpus", "2"]);
    }
    let nanos = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    };
    let holds: Vec<(String, String, u128, u128)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2 * WORKERS)
            .map(|worker| {
                let lab = &lab;
                scope.spawn(move || {
                    let host = if worker % 2 == 0 { "a" } else { "b" };
                    let log = lab.home.path().join(format!("w{worker}.log"));
                    let script = format!(
                        "s=$(date +%s%N); sleep 0.01; e=$(date +%s%N); \
                         echo \"$CUDA_VISIBLE_DEVICES $s $e\" >> {}",
                        log.display()
                    );
                    let mut done = 0;
                    while done < CYCLES {
                        let out = lab.run(Some(host), &["run", "--", "sh", "-c", &script]);
                        if out.status.success() {
                            done += 1;
                        } else {
                            assert!(stderr(&out).contains("Not enough GPUs"), "{}", stderr(&out));
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    let _ = nanos();
                    std::fs::read_to_string(&log)
                        .unwrap()
                        .lines()
                        .map(|line| {
                            let f: Vec<&str> = line.split(' ').collect();
                            (
                                host.to_string(),
                                f[0].to_string(),
                                f[1].parse().unwrap(),
                                f[2].parse().unwrap(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(holds.len(), 2 * WORKERS * CYCLES);
    for (i, a) in holds.iter().enumerate() {
        for b in &holds[i + 1..] {
            if a.0 == b.0 && a.1 == b.1 {
                assert!(
                    a.3 <= b.2 || b.3 <= a.2,
                    "GPU {} of host {} held twice: {a:?} {b:?}",
                    a.1,
                    a.0
                );
            }
        }
    }
    for host in ["a", "b"] {
        assert!(common::parse_busy(&lab.ok(Some(host), &["status"])).is_empty());
    }
}

/// The keys of each host object of `status --all-hosts --json`, as documented.
const HOST_KEYS: [&str; 11] = [
    "host",
    "store",
    "this_host",
    "reachable",
    "error",
    "now",
    "last_write",
    "nvml_at",
    "summary",
    "gpus",
    "queue",
];
const SUMMARY_KEYS: [&str; 6] = [
    "gpus",
    "available",
    "in_use",
    "in_use_without_reservation",
    "waiting",
    "free_now",
];

fn sorted_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    keys.sort();
    keys
}

#[test]
fn all_hosts_lists_every_host_in_the_documented_json() {
    let documented =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status-json.md"))
            .unwrap();
    for key in HOST_KEYS.iter().chain(&SUMMARY_KEYS) {
        assert!(
            documented.contains(&format!("| `{key}` |")),
            "{key} is not documented"
        );
    }
    let lab = Lab::new();
    for (host, gpus) in [("a", "2"), ("b", "3"), ("c", "4")] {
        lab.ok(Some(host), &["admin", "--gpus", gpus]);
    }
    reserve_manual(&lab, "b", 2);
    reserve_manual(&lab, "c", 1);
    let out = lab.run(Some("a"), &["status", "--all-hosts", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let hosts = json_of(&out);
    let names: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b", "c"], "this host first, then by name");
    for host in &hosts {
        assert_eq!(sorted_keys(host), sorted(&HOST_KEYS));
        assert_eq!(sorted_keys(&host["summary"]), sorted(&SUMMARY_KEYS));
        assert_eq!(host["reachable"], true);
        assert_eq!(host["error"], Value::Null);
        assert_eq!(host["store"], format!("Redis at {}", lab.url));
        assert!(host["last_write"].as_i64().unwrap() > unix_now() - 60);
    }
    // Each host's GPUs are the objects of its own `status --json`.
    for (host, name) in hosts.iter().zip(["a", "b", "c"]) {
        let own: Value = serde_json::from_str(&lab.ok(Some(name), &["status", "--json"])).unwrap();
        let own: Vec<Vec<String>> = own.as_array().unwrap().iter().map(sorted_keys).collect();
        let lab_view: Vec<Vec<String>> = host["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .map(sorted_keys)
            .collect();
        assert_eq!(own, lab_view, "{name}");
    }
    assert_eq!(hosts[0]["this_host"], true);
    assert_eq!(hosts[1]["this_host"], false);
    assert_eq!(
        hosts[1]["summary"],
        json!({
            "gpus": 3, "available": 1, "in_use": 2, "in_use_without_reservation": 0, "waiting": 0,
            "free_now": 1
        })
    );
    assert_eq!(hosts[1]["gpus"][0]["user"], hosts[1]["gpus"][1]["user"]);

    let text = lab.ok(Some("b"), &["status", "--all-hosts"]);
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(headers.len(), 3, "{text}");
    assert!(
        headers[0].starts_with(
            "== b (this host) == 3 GPUs: 1 free, 2 reserved, 0 in use without reservation, \
             0 waiting; last write 0h 0m"
        ),
        "{text}"
    );
    assert!(headers[1].starts_with("== a == 2 GPUs: 2 free"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("GPU ")).count(),
        9,
        "{text}"
    );

    // Where can I get 2 GPUs now? c (3 free), then a (2); b has only 1.
    let free = lab.run(
        Some("b"),
        &["status", "--all-hosts", "--free", "2", "--json"],
    );
    let names: Vec<String> = json_of(&free)
        .iter()
        .map(|h| h["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["c", "a"]);
    let none = lab.ok(Some("b"), &["status", "--all-hosts", "--free", "4"]);
    assert_eq!(none, "No host has 4 GPU(s) free now\n");

    let picked = lab.run(
        Some("a"),
        &["status", "--host", "c", "--host", "b", "--json"],
    );
    let names: Vec<String> = json_of(&picked)
        .iter()
        .map(|h| h["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["b", "c"]);

    let queue = lab.run(Some("a"), &["queue", "--all-hosts", "--json"]);
    assert_eq!(json_of(&queue).len(), 3);
    let report = lab.ok(Some("a"), &["report", "--all-hosts"]);
    assert!(report.contains("on 3 host(s)"), "{report}");
    let per_host: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.starts_with("Host "))
        .collect();
    assert_eq!(per_host.len(), 5, "header, a, b, c, total: {report}");
    assert!(
        per_host[2].starts_with("b ") && per_host[2].trim_end().ends_with(" 2"),
        "{report}"
    );
}

#[test]
fn views_of_other_hosts_never_write() {
    let lab = Lab::new();
    lab.ok(Some("a"), &["admin", "--gpus", "1"]);
    lab.ok(Some("b"), &["admin", "--gpus", "3"]);
    let now = unix_now();
    // On b: an expired manual reservation, a run silent for 10 minutes, one alive.
    let slot = |user: &str, kind: &str, heartbeat: i64, expiry: Option<i64>| {
        let mut value = json!({
            "user": user, "start_time": now - 3600, "last_heartbeat": heartbeat, "type": kind
        });
        if let Some(t) = expiry {
            value["expiry_time"] = json!(t);
        }
        value.to_string()
    };
    lab.redis.cli(&[
        "SET",
        "canhazgpu:{b}:gpu:0",
        &slot("old", "manual", now - 3600, Some(now - 60)),
    ]);
    lab.redis.cli(&[
        "SET",
        "canhazgpu:{b}:gpu:1",
        &slot("gone", "run", now - 600, None),
    ]);
    lab.redis.cli(&[
        "SET",
        "canhazgpu:{b}:gpu:2",
        &slot("busy", "run", now - 5, None),
    ]);
    let before = lab.dump();
    let view = lab.ok(Some("a"), &["status", "--host", "b"]);
    assert!(
        view.contains("GPU 0: AVAILABLE"),
        "expired, in the view: {view}"
    );
    assert!(
        view.contains("GPU 1: AVAILABLE"),
        "silent too long, in the view: {view}"
    );
    assert!(view.contains("GPU 2: IN USE by busy"), "{view}");
    lab.ok(Some("a"), &["status", "--all-hosts", "--json"]);
    lab.ok(Some("a"), &["queue", "--all-hosts"]);
    lab.ok(Some("a"), &["report", "--all-hosts"]);
    assert_eq!(before, lab.dump(), "views wrote to the store");
    // b's own command does free them.
    lab.ok(Some("b"), &["status"]);
    assert_ne!(before, lab.dump());
}

#[test]
fn a_store_in_hosts_that_dies_or_hangs_does_not_hold_the_others() {
    let lab = Lab::new();
    lab.ok(Some("a"), &["admin", "--gpus", "2"]);
    // solo keeps a Redis of its own, in upstream's layout.
    let mut solo = RedisServer::start();
    let solo_store = |args: &[&str]| {
        let out = lab
            .command(None)
            .env("CANHAZGPU_STORE", solo.url())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    solo_store(&["admin", "--gpus", "4"]);
    solo_store(&["reserve", "--gpus", "3", "-d", "1h"]);
    lab.configure(&format!("[hosts]\nsolo = \"{}\"\n", solo.url()));
    let all = lab.ok(Some("a"), &["status", "--all-hosts"]);
    assert!(
        all.contains("== solo == 4 GPUs: 1 free, 3 reserved"),
        "{all}"
    );

    solo.pause();
    let started = Instant::now();
    let out = lab.run(Some("a"), &["status", "--all-hosts"]);
    let took = started.elapsed();
    solo.resume();
    assert!(
        took < Duration::from_secs(4),
        "a hung store held the view for {took:?}"
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("== a (this host) == 2 GPUs: 2 free"),
        "{text}"
    );
    let line = text.lines().find(|l| l.starts_with("== solo ==")).unwrap();
    assert!(
        line.contains(&solo.url()) && line.contains("check"),
        "{line}"
    );

    solo.stop();
    let out = lab.run(Some("a"), &["status", "--all-hosts", "--json"]);
    assert_eq!(out.status.code(), Some(1), "partial failure");
    let hosts = json_of(&out);
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0]["reachable"], true);
    assert_eq!(hosts[1]["host"], "solo");
    assert_eq!(hosts[1]["reachable"], false);
    assert_eq!(hosts[1]["summary"], Value::Null);
    let why = hosts[1]["error"].as_str().unwrap();
    assert!(why.contains("check"), "says what to check: {why}");
    let text = lab.run(Some("a"), &["status", "--all-hosts"]);
    assert_eq!(text.status.code(), Some(1));
    let lines: Vec<String> = stdout(&text)
        .lines()
        .filter(|l| l.contains("solo"))
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 1, "one line for the dead host: {lines:?}");
}

#[test]
fn tls_with_a_private_certificate_authority() {
    let certs = TestCerts::new();
    let mut lab = Lab::on(RedisServer::start_tls(&certs.dir()));
    lab.url = lab.redis.tcp_url("");
    // Without the CA the server's certificate cannot be trusted: a clear error.
    let out = lab.run(Some("a"), &["admin", "--gpus", "2"]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("certificate") && message.contains("tls_ca_file"),
        "{message}"
    );

    lab.configure(&format!("tls_ca_file = \"{}\"\n", certs.ca().display()));
    lab.ok(Some("a"), &["admin", "--gpus", "2"]);
    lab.ok(Some("a"), &["run", "--", "true"]);
    reserve_manual(&lab, "a", 1);
    // b has no pool yet: its own line says so, exit 1; a shows all the same.
    let out = lab.run(Some("b"), &["status", "--all-hosts"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let all = stdout(&out);
    assert!(all.contains("== a == 2 GPUs: 1 free, 1 reserved"), "{all}");
    assert!(
        all.contains("== b (this host) == its pool is not initialized"),
        "{all}"
    );
}

/// The ACL lines of docs/multi-host.md, exactly as written there.
fn documented_acl_lines() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/multi-host.md"))
        .unwrap();
    let lines: Vec<Vec<String>> = doc
        .lines()
        .filter(|line| line.starts_with("ACL SETUSER "))
        .map(|line| line.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(lines.len(), 2, "a user for the hosts and one for viewers");
    lines
}

/// `>password` of an ACL line.
fn password_of(line: &[String]) -> String {
    line.iter()
        .find_map(|word| word.strip_prefix('>'))
        .unwrap()
        .to_string()
}

#[test]
fn acl_users_from_the_docs_work_and_passwords_never_show() {
    let lab = Lab::on(RedisServer::start_tcp());
    let acl = documented_acl_lines();
    for line in &acl {
        let words: Vec<&str> = line.iter().map(String::as_str).collect();
        assert_eq!(lab.redis.cli(&words), "OK", "{words:?}");
    }
    let (writer, viewer) = (&acl[0][2], &acl[1][2]);
    let (writer_pass, viewer_pass) = (password_of(&acl[0]), password_of(&acl[1]));
    let as_user = |user: &str, password: &str| lab.redis.tcp_url(&format!("{user}:{password}"));
    let writer_url = as_user(writer, &writer_pass);
    let with = |url: &str, host: &str, args: &[&str]| {
        lab.command(Some(host))
            .env("CANHAZGPU_STORE", url)
            .args(args)
            .output()
            .unwrap()
    };
    for host in ["a", "b"] {
        let out = with(&writer_url, host, &["admin", "--gpus", "1"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // A waiter is woken through the pub/sub channel the ACL grants.
    let holder = with(&writer_url, "a", &["reserve", "-d", "1h"]);
    assert!(holder.status.success(), "{}", stderr(&holder));
    let mut waiter = lab
        .command(Some("a"))
        .env("CANHAZGPU_STORE", &writer_url)
        .args(["run", "--wait=20s", "--", "true"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for(Duration::from_secs(10), "the waiter to queue", || {
        lab.redis
            .cli(&["GET", "canhazgpu:{a}:fifo"])
            .contains("run")
            .then_some(())
    });
    let released = Instant::now();
    assert!(with(&writer_url, "a", &["release"]).status.success());
    assert!(waiter.wait().unwrap().success());
    assert!(
        released.elapsed() < Duration::from_secs(2),
        "woken, not polled"
    );

    // The read-only user sees every view.
    let viewer_url = as_user(viewer, &viewer_pass);
    for args in [
        &["status", "--all-hosts"][..],
        &["status", "--all-hosts", "--json"],
        &["status", "--host", "b"],
        &["status", "--all-hosts", "--free", "1"],
        &["queue", "--all-hosts"],
        &["queue", "--host", "a", "--json"],
        &["report", "--all-hosts"],
        &["report", "--host", "b", "--json"],
    ] {
        let out = with(&viewer_url, "a", args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(!stdout(&out).contains(&viewer_pass));
    }
    let out = with(&viewer_url, "a", &["status", "--all-hosts", "--json"]);
    assert_eq!(
        json_of(&out)[0]["store"],
        format!("Redis at {}", lab.redis.tcp_url("")),
        "no user name or password"
    );

    // A wrong password: a clear error, and no password in it.
    let wrong = as_user(writer, "not-the-password");
    for (host, args) in [
        ("a", &["status"][..]),
        ("a", &["status", "--all-hosts"]),
        ("a", &["reserve"]),
    ] {
        let out = with(&wrong, host, args);
        assert!(!out.status.success());
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            all.contains("authentication") || all.contains("password"),
            "{all}"
        );
        assert!(
            !all.contains("not-the-password"),
            "the password leaked: {all}"
        );
        assert!(!all.contains(&writer_pass), "{all}");
    }
}

#[test]
fn bad_names_urls_and_unknown_hosts_are_clear_errors() {
    let lab = Lab::new();
    for bad in ["a b", "-a", "a{b}", "a:b", &"x".repeat(64)] {
        let out = lab.run(Some(bad), &["status"]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let message = stderr(&out);
        assert!(
            message.contains("CANHAZGPU_HOST") && message.contains("not a valid host name"),
            "{message}"
        );
        let out = lab.run(Some("a"), &["status", &format!("--host={bad}")]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(
            stderr(&out).contains("not a valid host name"),
            "{}",
            stderr(&out)
        );
    }
    lab.configure("host = \"a b\"\n");
    let out = lab.run(None, &["status"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("`host`: \"a b\" is not a valid host name"),
        "{}",
        stderr(&out)
    );

    lab.configure("[hosts]\nbroken = \"redis://:secret@[::1/0\"\nodd = \"ftp://x\"\n");
    lab.ok(Some("a"), &["admin", "--gpus", "1"]);
    // The bad entries do not stop this host's own work.
    lab.ok(Some("a"), &["run", "--", "true"]);
    let out = lab.run(Some("a"), &["status", "--all-hosts"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("== a (this host) == 1 GPUs: 1 free"),
        "{text}"
    );
    for name in ["broken", "odd"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("== {name} ==")))
            .unwrap();
        assert!(
            line.contains("`[hosts]`") && line.contains("config.toml"),
            "{line}"
        );
    }
    assert!(!text.contains("secret"), "{text}");

    let out = lab.run(Some("a"), &["status", "--host", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(
        message.contains("unknown host nosuch") && message.contains("--all-hosts"),
        "{message}"
    );
    let out = lab.run(Some("a"), &["status", "--free", "1"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--free needs --host or --all-hosts"
    );
}

#[test]
fn a_second_machine_cannot_take_a_registered_name_by_mistake() {
    let lab = Lab::new();
    let other = json!({"machine_id": "0123456789abcdef", "hostname": "old-gpu7", "gpu_count": 4})
        .to_string();
    lab.redis.cli(&["HSET", "canhazgpu:hosts", "gpu7", &other]);
    for args in [&["admin", "--gpus", "2"][..], &["status"], &["reserve"]] {
        let out = lab.run(Some("gpu7"), args);
        assert!(!out.status.success(), "{args:?}");
        let message = stderr(&out);
        assert!(
            message.contains("gpu7")
                && message.contains("0123456789abcdef (old-gpu7)")
                && message.contains(&hostname())
                && message.contains("--take-over-host"),
            "{message}"
        );
    }
    assert_eq!(
        lab.keys(),
        BTreeSet::from(["canhazgpu:hosts".to_string()]),
        "refused before writing"
    );
    if !nix::unistd::getuid().is_root() {
        eprintln!("taking a name over needs an administrator; skipped without root");
        return;
    }
    lab.ok(Some("gpu7"), &["admin", "--take-over-host"]);
    let entry: Value =
        serde_json::from_str(&lab.redis.cli(&["HGET", "canhazgpu:hosts", "gpu7"])).unwrap();
    assert_ne!(entry["machine_id"], "0123456789abcdef");
    lab.ok(Some("gpu7"), &["admin", "--gpus", "2"]);
    reserve_manual(&lab, "gpu7", 1);
}

#[test]
fn other_hosts_see_what_a_host_published_of_its_gpus() {
    let lab = Lab::new();
    let stub_config = lab.home.path().join("stub.conf");
    std::fs::write(
        &stub_config,
        "driver 550.54.15\n\
         gpu GPU-00000000-1111-2222-3333-444444444444 81559 10 NVIDIA H100 80GB HBM3\n\
         gpu GPU-00000001-1111-2222-3333-444444444444 81559 30000 NVIDIA H100 80GB HBM3\n",
    )
    .unwrap();
    let with_gpus = |args: &[&str]| {
        let out = lab
            .command(Some("a"))
            .env(
                "LD_LIBRARY_PATH",
                nvml::stub_library_dir(nvml::Variant::Current),
            )
            .env(nvml::CONFIG_ENV, &stub_config)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    with_gpus(&["admin"]);
    assert!(
        lab.keys().contains("canhazgpu:{a}:gpus"),
        "{:?}",
        lab.keys()
    );
    // Published at most every 30 s: a second probe right away writes nothing.
    let published = lab.redis.cli(&["GET", "canhazgpu:{a}:gpus"]);
    with_gpus(&["status"]);
    assert_eq!(lab.redis.cli(&["GET", "canhazgpu:{a}:gpus"]), published);

    lab.ok(Some("b"), &["admin", "--gpus", "1"]);
    let view = lab.ok(Some("b"), &["status", "--host", "a"]);
    assert!(view.contains("; NVML asked 0h 0m"), "{view}");
    assert!(
        view.contains("GPU 0: AVAILABLE") && view.contains("NVIDIA H100 80GB HBM3, 10/81559 MiB"),
        "{view}"
    );
    assert!(view.contains("GPU 1: IN USE WITHOUT RESERVATION"), "{view}");
    let json = json_of(&lab.run(Some("b"), &["status", "--host", "a", "--json"]));
    assert_eq!(json[0]["gpus"][1]["state"], "in_use_without_reservation");
    assert_eq!(json[0]["gpus"][1]["nvml"]["memory_used_mib"], 30000);
    assert!(json[0]["nvml_at"].as_i64().unwrap() > unix_now() - 60);
    // This host's own GPUs are asked afresh, not read back.
    let own = json_of(&lab.run(Some("b"), &["status", "--all-hosts", "--json"]));
    assert_eq!(own[0]["nvml_at"], Value::Null);
}

/// A reader that stops early (`| head -1`) ends a lab view quietly, as any other view.
#[test]
fn a_lab_view_into_a_closed_pipe_exits_quietly() {
    let lab = Lab::new();
    for host in ["a", "b", "c"] {
        lab.ok(Some(host), &["admin", "--gpus", "8"]);
    }
    let out = Command::new("bash")
        .env("CANHAZGPU", common::binary())
        .env("CANHAZGPU_STORE", &lab.url)
        .env("CANHAZGPU_CONFIG", lab.config_path())
        .env("CANHAZGPU_HOST", "a")
        .args([
            "-c",
            "set -o pipefail; \"$CANHAZGPU\" status --all-hosts | head -1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

/// The dashboard of any host shows every host, as `status --all-hosts --json` does.
#[test]
fn the_dashboard_shows_every_host() {
    let lab = Lab::new();
    for (host, gpus) in [("a", "1"), ("b", "2")] {
        lab.ok(Some(host), &["admin", "--gpus", gpus]);
    }
    reserve_manual(&lab, "b", 1);
    let mut web = lab
        .command(Some("a"))
        .args(["web", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(web.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let hosts = common::http::get(addr, "/api/hosts").json();
    let _ = web.kill();
    let _ = web.wait();
    let names: Vec<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|host| host["host"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "{hosts}");
    assert_eq!(hosts[1]["summary"]["in_use"], 1);
    let cli = json_of(&lab.run(Some("a"), &["status", "--all-hosts", "--json"]));
    assert_eq!(hosts[1]["gpus"], cli[1]["gpus"]);
}
