//! Jobs that hold GPUs until the test lets them go, and the queue as a test reads it: what
//! the waiting and request tests share.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{TestStore, wait_for};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// A `run` whose command logs when it starts and then holds its GPUs until `gate` exists.
pub struct Job {
    pub child: Child,
    gate: PathBuf,
}

impl Job {
    pub fn start(store: &TestStore, name: &str, args: &[&str]) -> Job {
        let gate = store.home.path().join(format!("{name}.done"));
        let log = store.home.path().join("order.log");
        let script = format!(
            "echo \"{name} $CUDA_VISIBLE_DEVICES\" >> {log}; \
             while [ ! -e {gate} ]; do sleep 0.05; done",
            log = log.display(),
            gate = gate.display()
        );
        let child = store
            .std_cmd()
            .arg("run")
            .args(args)
            .args(["--", "sh", "-c", &script])
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Job { child, gate }
    }

    pub fn finish(mut self) {
        std::fs::write(&self.gate, "").unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Job {
    /// A failing test must not leave jobs holding GPUs behind.
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

pub fn started(store: &TestStore) -> Vec<String> {
    std::fs::read_to_string(store.home.path().join("order.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn wait_started(store: &TestStore, count: usize) -> Vec<String> {
    wait_for(DEADLINE, &format!("{count} job(s) to start"), || {
        let lines = started(store);
        (lines.len() >= count).then_some(lines)
    })
}

pub fn queue_json(store: &TestStore) -> Vec<Value> {
    let out = store.cmd().args(["queue", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn wait_queued(store: &TestStore, count: usize) -> Vec<Value> {
    wait_for(DEADLINE, &format!("{count} waiter(s)"), || {
        let queue = queue_json(store);
        (queue.len() == count).then_some(queue)
    })
}
