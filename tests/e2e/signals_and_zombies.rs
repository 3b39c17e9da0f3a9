//! Processes as a shared host really has them: signals a caller ignored (`nohup`, a
//! script's background job), signal dispositions the command inherits, and owners that
//! were killed but not yet reaped (zombies).

use crate::common;

use std::io::BufRead;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Backend, TestStore, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const DEADLINE: Duration = Duration::from_secs(20);

/// The state letter of `/proc/<pid>/stat` (R, S, Z, ...).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).expect("sending a signal");
}

/// Reads the first line of `child`'s stdout, where its command prints its pid.
fn first_line_pid(child: &mut Child) -> u32 {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reading the command's pid");
    line.trim().parse().expect("a pid on the first line")
}

#[test]
fn a_killed_but_unreaped_run_wrapper_does_not_hold_its_gpu() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    // This test process is the wrapper's parent and does not reap it until the end, so
    // after kill -9 the wrapper stays a zombie: its /proc entry and start time remain.
    let mut run = store
        .std_cmd()
        .args(["run", "--", "sh", "-c", "echo $$; exec sleep 30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let job = first_line_pid(&mut run);
    assert_eq!(store.busy_ids(), [0]);
    signal(run.id(), Signal::SIGKILL);
    wait_for(DEADLINE, "the wrapper to become a zombie", || {
        (proc_state(run.id()) == Some('Z')).then_some(())
    });
    let busy = store.busy_ids();
    signal(job, Signal::SIGKILL);
    run.wait().unwrap();
    assert!(
        busy.is_empty(),
        "a zombie wrapper still holds GPU(s) {busy:?}"
    );
}
