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

/// The signals ignored by the process reading `/proc/self/status` (its `SigIgn` mask) that
/// `run` and shells care about, by name.
fn ignored_signals(status_line: &str) -> Vec<&'static str> {
    let mask = status_line
        .trim()
        .strip_prefix("SigIgn:")
        .map(|hex| u64::from_str_radix(hex.trim(), 16).expect("a hex mask"))
        .unwrap_or_else(|| panic!("not a SigIgn line: {status_line:?}"));
    [("HUP", 1), ("INT", 2), ("PIPE", 13), ("TERM", 15)]
        .into_iter()
        .filter(|(_, number)| mask & (1 << (number - 1)) != 0)
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn the_command_inherits_the_signals_its_caller_ignored_and_no_others() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let bin = common::binary();
    let show = "run -- grep ^SigIgn: /proc/self/status";
    let cases = [
        // Nothing ignored by the caller (std resets SIGPIPE for the children it spawns).
        (format!("exec {} {show}", bin.display()), vec![]),
        // nohup ignores SIGHUP; a script ignores INT for its background jobs; a caller
        // may ignore PIPE and TERM.
        (
            format!("trap '' INT PIPE TERM; exec nohup {} {show}", bin.display()),
            vec!["HUP", "INT", "PIPE", "TERM"],
        ),
    ];
    for (script, expected) in cases {
        let out = store
            .select(&mut std::process::Command::new("bash"))
            .args(["-c", &script])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{script}: {out:?}");
        assert_eq!(ignored_signals(&stdout), expected, "{script}");
    }
}

/// Sends `signal` to every process of the group that `leader` leads, as a terminal does.
fn signal_group(leader: u32, signal: Signal) {
    nix::sys::signal::killpg(Pid::from_raw(leader as i32), signal).expect("killpg");
}

#[test]
fn nohup_run_survives_sighup_and_keeps_its_gpu() {
    use std::os::unix::process::CommandExt;
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let mut run = store
        .select(&mut std::process::Command::new("nohup"))
        .arg(common::binary())
        .args(["run", "--", "sh", "-c", "echo $$; exec sleep 30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let job = first_line_pid(&mut run);
    // The SSH session drops: the whole group gets SIGHUP.
    signal_group(run.id(), Signal::SIGHUP);
    // A signal run does pass on, sent after; pending signals arrive lowest number first,
    // so had SIGHUP not been ignored, the job would have died of it (129), not of this.
    signal(run.id(), Signal::SIGTERM);
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15), "the job died of SIGHUP");
    assert!(proc_state(job).is_none_or(|state| state == 'Z'));
    assert!(store.busy_ids().is_empty(), "not released at the end");
}

#[test]
fn a_scripts_background_run_survives_sigint() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    // bash ignores SIGINT in the background jobs of a script (no job control), so a
    // Ctrl-C meant for the foreground leaves them running.
    let script = format!(
        "{} run -- sh -c 'echo $$; exec sleep 30' & wait $!; echo \"exit $?\"",
        common::binary().display()
    );
    let mut bash = store
        .select(&mut std::process::Command::new("bash"))
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(bash.stdout.take().unwrap()).lines();
    let job: u32 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let run = crate::common::parent_of(job);
    signal(job, Signal::SIGINT);
    signal(run, Signal::SIGINT);
    assert_eq!(store.busy_ids(), [0]);
    signal(run, Signal::SIGTERM);
    let last = lines.next().unwrap().unwrap();
    bash.wait().unwrap();
    assert_eq!(
        last, "exit 143",
        "the job died of SIGINT (130) instead of SIGTERM"
    );
    assert!(store.busy_ids().is_empty(), "not released at the end");
}

#[test]
fn a_nohup_waiter_survives_sighup_and_is_served() {
    use std::os::unix::process::CommandExt;
    let store = TestStore::new(Backend::File);
    store.admin(1);
    store
        .cmd()
        .args(["reserve", "--duration", "1h"])
        .assert()
        .success();
    let waiter = store
        .select(&mut std::process::Command::new("nohup"))
        .arg(common::binary())
        .args(["reserve", "--wait=30s", "--duration", "1h"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for(DEADLINE, "the waiter to queue", || {
        let out = store.cmd().args(["queue", "--json"]).output().unwrap();
        let queue: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (queue.as_array()?.len() == 1).then_some(())
    });
    signal_group(waiter.id(), Signal::SIGHUP);
    store.cmd().arg("release").assert().success();
    let out = waiter.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("Reserved 1 GPU(s) [0]"), "{stderr}");
}
