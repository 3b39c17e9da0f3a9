//! Many processes racing for a small pool never share a GPU.

use crate::common;

use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{BACKENDS, TestStore};

const WORKERS: usize = 16;
const CYCLES: usize = 6;
const POOL: u32 = 4;

#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // fields are read through Debug in the overlap message
struct Hold {
    gpu: u32,
    start: u128,
    end: u128,
    /// Which worker held it, for the failure message.
    worker: usize,
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn busy(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stderr).contains("Not enough GPUs available")
}

/// A run job: the command itself logs when it started and ended holding its GPUs.
fn run_worker(store: &TestStore, worker: usize) -> Vec<Hold> {
    let log = store.home.path().join(format!("run-{worker}.log"));
    let gpus = if worker.is_multiple_of(3) { "2" } else { "1" };
    let script = format!(
        "s=$(date +%s%N); sleep 0.01; e=$(date +%s%N); echo \"$CUDA_VISIBLE_DEVICES $s $e\" >> {}",
        log.display()
    );
    let mut done = 0;
    while done < CYCLES {
        let out = store
            .std_cmd()
            .args(["run", "--gpus", gpus, "--", "sh", "-c", &script])
            .output()
            .unwrap();
        if out.status.success() {
            done += 1;
        } else {
            assert!(
                busy(&out),
                "worker {worker}: unexpected failure: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut holds = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (start, end) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
        for gpu in fields[0].split(',') {
            holds.push(Hold {
                gpu: gpu.parse().unwrap(),
                start,
                end,
                worker,
            });
        }
    }
    assert_eq!(text.lines().count(), CYCLES);
    holds
}

/// A manual job, as its own Unix user where the tests can switch users (release gives
/// back every manual reservation of the calling user, so workers must not share one).
fn reserve_worker(store: &TestStore, worker: usize, uid: Option<u32>) -> Vec<Hold> {
    let command = |args: &[&str]| {
        let mut cmd = match uid {
            Some(uid) => {
                let mut cmd = std::process::Command::new("setpriv");
                cmd.args([
                    format!("--reuid={uid}"),
                    format!("--regid={uid}"),
                    "--clear-groups".into(),
                    "--".into(),
                ])
                .arg(common::binary());
                cmd
            }
            None => std::process::Command::new(common::binary()),
        };
        cmd.env("CANHAZGPU_STORE", store.url())
            .env("CANHAZGPU_CONFIG", store.config_path())
            .args(args);
        cmd.output().unwrap()
    };
    let mut holds = Vec::new();
    while holds.len() < CYCLES {
        let out = command(&["reserve", "--duration", "10m"]);
        if !out.status.success() {
            assert!(
                busy(&out),
                "worker {worker}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let start = nanos();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let gpu = stdout
            .split_whitespace()
            .nth(1)
            .and_then(|assignment| assignment.strip_prefix("CUDA_VISIBLE_DEVICES="))
            .unwrap()
            .parse()
            .unwrap();
        std::thread::sleep(Duration::from_millis(10));
        let end = nanos();
        let out = command(&["release"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        holds.push(Hold {
            gpu,
            start,
            end,
            worker,
        });
    }
    holds
}

#[test]
fn racing_processes_never_share_a_gpu() {
    let root = nix::unistd::getuid().is_root();
    if !root {
        common::skip(
            "racing_processes_never_share_a_gpu (as two users)",
            "needs root for the second user; racing as one user only",
        );
    }
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        if root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(store.home.path(), std::fs::Permissions::from_mode(0o755))
                .unwrap();
            std::fs::set_permissions(store.config_path(), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        store.admin(POOL);
        let holds: Vec<Hold> = std::thread::scope(|scope| {
            let store = &store;
            let workers: Vec<_> = (0..WORKERS)
                .map(|worker| {
                    scope.spawn(move || match worker {
                        // Two manual workers as distinct users (or one, without root).
                        0 if root => reserve_worker(store, worker, Some(60_000)),
                        1 if root => reserve_worker(store, worker, Some(60_001)),
                        0 => reserve_worker(store, worker, None),
                        _ => run_worker(store, worker),
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert!(
            holds.len() >= WORKERS * CYCLES,
            "{backend:?}: only {} holds",
            holds.len()
        );
        for a in &holds {
            for b in &holds {
                let same = std::ptr::eq(a, b);
                if !same && a.gpu == b.gpu {
                    assert!(
                        a.end <= b.start || b.end <= a.start,
                        "{backend:?}: GPU {} held twice at once: {a:?} and {b:?}",
                        a.gpu
                    );
                }
            }
        }
        assert!(
            store.busy_ids().is_empty(),
            "{backend:?}: something still held"
        );
        eprintln!("{backend:?}: {} holds, no overlap", holds.len());
    }
}
