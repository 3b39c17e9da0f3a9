//! Clients whose clock is wrong (`faketime`, 10 minutes behind and ahead) must not free,
//! shorten or lengthen anyone's reservation: the store's clock rules (Redis: its `TIME`;
//! the embedded store: the host's kernel clock), and what goes into a shell is put on
//! the shell's own clock.

use crate::common;

use std::process::{Command, Output};

use common::shell::Sh;
use common::{BACKENDS, TestStore, binary, unix_now};
use serde_json::json;

const OFFSETS: [&str; 2] = ["-10m", "+10m"];

/// The binary with `args`, its clock moved by `offset` (faketime's `-f` syntax).
fn faked(store: &TestStore, offset: &str, args: &[&str]) -> Output {
    let base = store.std_cmd();
    let mut cmd = Command::new("faketime");
    cmd.args(["-f", offset]).arg(binary()).args(args);
    for (key, value) in base.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let out = cmd
        .output()
        .expect("faketime must be installed (apt-get install faketime)");
    assert!(
        out.status.success(),
        "{offset} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_client_with_a_wrong_clock_changes_nobodys_reservation() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(3);
        let now = unix_now();
        // Ends in 4 minutes: a client 10 minutes ahead would think it over.
        store.set_raw_slot(
            0,
            json!({"user": "a", "start_time": now - 60, "last_heartbeat": now - 60,
                   "type": "manual", "expiry_time": now + 240}),
        );
        // Heartbeat 5 s ago, owner on another host: judged by its heartbeat alone.
        store.set_raw_slot(
            1,
            json!({"user": "b", "start_time": now - 60, "last_heartbeat": now - 5, "type": "run",
                   "owner_process": {"pid": 1, "start_ticks": 1, "boot_id": "elsewhere",
                                     "pid_ns": 1}}),
        );
        let before = [store.raw_slot(0), store.raw_slot(1)];
        for offset in OFFSETS {
            faked(&store, offset, &["status"]);
            faked(&store, offset, &["queue"]);
            assert_eq!(
                [store.raw_slot(0), store.raw_slot(1)],
                before,
                "{backend:?}, a client {offset} rewrote reservations"
            );
        }
        assert_eq!(store.busy_ids(), [0, 1], "{backend:?}");

        // What it reserves itself is on the store's clock too.
        faked(&store, "-10m", &["reserve", "--duration", "1h"]);
        let mine = store.raw_slot(2);
        let start = mine["start_time"].as_i64().unwrap();
        assert!((start - unix_now()).abs() <= 5, "{backend:?}: {mine}");
        assert_eq!(mine["expiry_time"].as_i64().unwrap() - start, 3600);
    }
}

#[test]
fn a_shell_gets_its_expiry_on_its_own_clock() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        store.admin(1);
        for offset in OFFSETS {
            let script = format!(
                "{}\ncanhazgpu reserve --duration 1h 2>/dev/null\n\
                 echo \"left=$((CANHAZGPU_EXPIRES - EPOCHSECONDS))\"\n\
                 canhazgpu release 2>/dev/null",
                Sh::Bash.init_line()
            );
            let mut cmd = store.clean_cmd("faketime");
            cmd.args(["-f", offset, "bash"])
                .args(Sh::Bash.script_args(&script));
            let session = common::shell::finish(cmd.output().unwrap()).ok();
            let left: i64 = session.value("left").parse().unwrap();
            // The prompt hook compares CANHAZGPU_EXPIRES with the shell's clock: an hour
            // left on it, not an hour plus or minus the clocks' difference.
            assert!(
                (3595..=3600).contains(&left),
                "{backend:?} {offset}: {left}\n{}",
                session.describe()
            );
        }
    }
}
