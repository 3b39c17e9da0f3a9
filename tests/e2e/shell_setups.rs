//! The shell integration under what an expert user's setup does to it: a release from a
//! process with another environment, a shell after `su`, read-only, numeric and
//! unexported variables, fish universal variables, a narrowed `CUDA_VISIBLE_DEVICES`,
//! prompt builders that run before the hook, a binary gone from PATH, another store,
//! an administrator's reclaim. Every case in real bash, zsh and fish, scripted;
//! interactive ones (bash-preexec, `jobs`) are in `shell_tmux.rs`.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use common::shell::{SHELLS, Session, Sh, finish, scripted};
use common::{Backend, TestStore};

fn store(gpus: u32) -> TestStore {
    let store = TestStore::new(Backend::File);
    store.admin(gpus);
    store
}

/// Waits, in the shell, until its hook's clock reaches `CANHAZGPU_EXPIRES` (bash, zsh)
/// or `_canhazgpu_deadline_cs` (fish); defines `wait_expiry`.
const WAIT_EXPIRY_POSIX: &str = r#"
clock() {
  if [ -n "${BASH_VERSION-}" ]; then printf -v now '%(%s)T' -1; else now=$EPOCHSECONDS; fi
}
wait_expiry() {
  n=0; clock
  while [ "$now" -lt "$CANHAZGPU_EXPIRES" ]; do
    n=$((n + 1)); [ "$n" -lt 200 ] || exit 3; sleep 0.05; clock
  done
}
"#;
const WAIT_EXPIRY_FISH: &str = r#"
function wait_expiry
    set -l n 0
    while test (_canhazgpu_uptime) -lt $_canhazgpu_deadline_cs
        set n (math $n + 1); test $n -lt 200; or exit 3; sleep 0.05
    end
end
"#;

/// Runs `script` in `sh` up to its `ready=1` line, then `between` (what happens
/// elsewhere meanwhile), then lets it go on (it waits with `read`) and returns all it
/// printed.
fn with_pause(
    mut cmd: std::process::Command,
    between: impl FnOnce(&str) -> String,
) -> (String, Session) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the shell");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut before = String::new();
    loop {
        let mut line = String::new();
        if stdout
            .read_line(&mut line)
            .expect("read the shell's output")
            == 0
        {
            let out = child.wait_with_output().expect("shell ends");
            panic!(
                "the shell ended before `ready=1`\n{before}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        before.push_str(&line);
        if line.trim_end() == "ready=1" {
            break;
        }
    }
    let note = between(&before);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("let the shell go on");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("the rest of stdout");
    let mut session = finish(child.wait_with_output().expect("shell ends"));
    session.stdout = before + &rest;
    (note, session)
}

fn value_in(text: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    text.lines()
        .rev()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in\n{text}"))
        .to_string()
}

#[test]
fn a_release_from_another_environment_reaches_the_shell() {
    let posix = r#"
INIT
canhazgpu reserve --duration 1h
lease=$CANHAZGPU_LEASE
XDG_RUNTIME_DIR=$HOME/elsewhere TMPDIR=$HOME/elsewhere command canhazgpu release >/dev/null
echo "lease_after=$([ -e "$lease" ] && echo yes || echo no)"
_canhazgpu_hook
echo "first=${CUDA_VISIBLE_DEVICES-unset}"
canhazgpu reserve --duration 1h
# As cron would: no XDG_RUNTIME_DIR at all.
env -u XDG_RUNTIME_DIR canhazgpu release >/dev/null
_canhazgpu_hook
echo "second=${CUDA_VISIBLE_DEVICES-unset}"
"#;
    let fish = r#"
INIT
canhazgpu reserve --duration 1h; or exit 1
set -l lease $CANHAZGPU_LEASE
env XDG_RUNTIME_DIR=$HOME/elsewhere TMPDIR=$HOME/elsewhere canhazgpu release >/dev/null
test -e $lease; and echo lease_after=yes; or echo lease_after=no
emit fish_prompt
set -q CUDA_VISIBLE_DEVICES; and echo "first=$CUDA_VISIBLE_DEVICES"; or echo first=unset
canhazgpu reserve --duration 1h; or exit 1
env -u XDG_RUNTIME_DIR canhazgpu release >/dev/null
emit fish_prompt
set -q CUDA_VISIBLE_DEVICES; and echo "second=$CUDA_VISIBLE_DEVICES"; or echo second=unset
"#;
    for sh in SHELLS {
        let store = store(2);
        let run = store.session(sh, &scripted(sh, posix, fish)).ok();
        let ctx = run.describe();
        assert_eq!(run.value("lease_after"), "no", "{sh:?}: {ctx}");
        assert_eq!(run.value("first"), "unset", "{sh:?}: {ctx}");
        assert_eq!(run.value("second"), "unset", "{sh:?}: {ctx}");
        assert_eq!(
            run.stderr.matches("released elsewhere").count(),
            2,
            "{sh:?}: {ctx}"
        );
    }
}

/// A directory for the other user's HOME.
fn home_of_nobody(store: &TestStore) -> std::path::PathBuf {
    let home = store.home.path().join("nobody");
    std::fs::create_dir_all(&home).unwrap();
    nix::unistd::chown(&home, Some(65534.into()), Some(65534.into())).unwrap();
    home
}

#[test]
fn a_shell_after_su_follows_the_first_users_release() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::getuid().is_root() {
        common::skip(
            "a_shell_after_su_follows_the_first_users_release",
            "needs root to switch to a second user",
        );
        return;
    }
    let inner_posix = r#"
INIT
echo "su_cvd=${CUDA_VISIBLE_DEVICES-unset}"
_canhazgpu_hook
echo "su_hooked=${CUDA_VISIBLE_DEVICES-unset}"
echo "mark=plain" >&2
canhazgpu release
echo "mark=all" >&2
canhazgpu release --all
echo "mark=end" >&2
echo "su_kept=${CUDA_VISIBLE_DEVICES-unset}"
echo "ready=1"
read -r x
_canhazgpu_hook
echo "su_after=${CUDA_VISIBLE_DEVICES-unset}|${CANHAZGPU_GPUS-unset}"
"#;
    let inner_fish = r#"
INIT
set -q CUDA_VISIBLE_DEVICES; and echo "su_cvd=$CUDA_VISIBLE_DEVICES"; or echo su_cvd=unset
emit fish_prompt
echo "su_hooked=$CUDA_VISIBLE_DEVICES"
echo "mark=plain" >&2
canhazgpu release
echo "mark=all" >&2
canhazgpu release --all
echo "mark=end" >&2
echo "su_kept=$CUDA_VISIBLE_DEVICES"
echo "ready=1"
read -l x
emit fish_prompt
set -q CUDA_VISIBLE_DEVICES; and set -l after $CUDA_VISIBLE_DEVICES; or set -l after unset
echo "su_after=$after|"(set -q CANHAZGPU_GPUS; and echo $CANHAZGPU_GPUS; or echo unset)
"#;
    for sh in SHELLS {
        let store = TestStore::new(Backend::File);
        std::fs::set_permissions(store.home.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::set_permissions(store.config_path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        store.admin(2);
        let home = home_of_nobody(&store);
        let inner = scripted(sh, inner_posix, inner_fish);
        let inner_args: Vec<String> = sh
            .script_args(&inner)
            .iter()
            .map(|arg| format!("'{}'", arg.replace('\'', r"'\''")))
            .collect();
        // `su` without `-`: the environment stays, the user changes.
        let outer = format!(
            r#"eval "$(canhazgpu init bash)"
canhazgpu reserve --duration 1h
echo "root_cvd=$CUDA_VISIBLE_DEVICES"
setpriv --reuid=65534 --regid=65534 --clear-groups env HOME='{home}' \
  XDG_CONFIG_HOME='{home}' XDG_DATA_HOME='{home}' XDG_CACHE_HOME='{home}' {program} {args}
echo "outer_done=1"
"#,
            home = home.display(),
            program = sh.program(),
            args = inner_args.join(" ")
        );
        let mut cmd = store.clean_cmd("bash");
        cmd.args(Sh::Bash.script_args(&outer));
        let (_, run) = with_pause(cmd, |_| {
            // The first user releases from a shell of their own.
            let release = store.plain(&["release"]);
            assert!(release.success(), "{}", release.describe());
            String::new()
        });
        let ctx = run.describe();
        assert!(run.success(), "{sh:?}: {ctx}");
        let held = run.value("root_cvd");
        assert_eq!(run.value("su_cvd"), held, "{sh:?}: {ctx}");
        assert_eq!(run.value("su_hooked"), held, "{sh:?}: {ctx}");
        assert_eq!(run.value("su_kept"), held, "{sh:?}: {ctx}");
        // Released by its owner: the shell after su drops the variables at once.
        assert_eq!(run.value("su_after"), "unset|unset", "{sh:?}: {ctx}");
        assert!(run.stderr.contains("released elsewhere"), "{sh:?}: {ctx}");
        // Neither release advises `release --all`, which cannot release another
        // user's GPUs: no loop of advice.
        let advice = &run.stderr[run.stderr.find("mark=plain").unwrap()..];
        let advice = &advice[..advice.find("mark=end").unwrap()];
        assert!(!advice.contains("release --all"), "{sh:?}: {ctx}");
        assert_eq!(
            advice.matches("only root or an administrator").count(),
            2,
            "{sh:?}: {ctx}"
        );
    }
}

#[test]
fn variables_that_cannot_take_a_device_list_stop_reserve_before_anything_is_held() {
    let cases: &[(Sh, &str, &str)] = &[
        (Sh::Bash, "readonly CUDA_VISIBLE_DEVICES=5", "read-only"),
        (Sh::Bash, "declare -i CUDA_VISIBLE_DEVICES", "integer"),
        (Sh::Bash, "declare -r NVIDIA_VISIBLE_DEVICES", "read-only"),
        (Sh::Bash, "declare -u CUDA_VISIBLE_DEVICES", "converts"),
        (Sh::Zsh, "typeset -r CUDA_VISIBLE_DEVICES=5", "read-only"),
        (Sh::Zsh, "integer CUDA_DEVICE_ORDER", "numeric"),
        (
            Sh::Zsh,
            "typeset -rx CUDA_DEVICE_ORDER=FASTEST_FIRST",
            "read-only",
        ),
        (Sh::Fish, "set -gx CUDA_VISIBLE_DEVICES 1 2", "list"),
    ];
    let posix = r#"
INIT
SETUP
if canhazgpu reserve; then echo "status=0"; else echo "status=$?"; fi
echo "gpus=${CANHAZGPU_GPUS-unset}|${CANHAZGPU_OWNER_PID-unset}"
"#;
    let fish = r#"
INIT
SETUP
canhazgpu reserve; echo "status=$status"
set -q CANHAZGPU_GPUS; and echo "gpus=$CANHAZGPU_GPUS"; or echo "gpus=unset|unset"
"#;
    let store = store(2);
    for &(sh, setup, what) in cases {
        let run = store
            .session(sh, &scripted(sh, posix, fish).replace("SETUP", setup))
            .ok();
        let ctx = run.describe();
        assert_eq!(run.value("status"), "1", "{sh:?} `{setup}`: {ctx}");
        assert_eq!(run.value("gpus"), "unset|unset", "{sh:?} `{setup}`: {ctx}");
        assert!(
            run.stderr.contains("nothing was reserved") && run.stderr.contains(what),
            "{sh:?} `{setup}`: {ctx}"
        );
        assert!(
            store.busy_ids().is_empty(),
            "{sh:?} `{setup}`: {}",
            store.status()
        );
    }
}

#[test]
fn unexported_variables_come_back_unexported() {
    let posix = r#"
INIT
CUDA_VISIBLE_DEVICES=3
CUDA_DEVICE_ORDER=FASTEST_FIRST
child() { sh -c 'echo "${CUDA_VISIBLE_DEVICES-unset}|${CUDA_DEVICE_ORDER-unset}"'; }
canhazgpu reserve
echo "held=$CUDA_VISIBLE_DEVICES|$(child)"
canhazgpu release
echo "back=$CUDA_VISIBLE_DEVICES|$CUDA_DEVICE_ORDER"
echo "child_after=$(child)"
"#;
    let fish = r#"
INIT
set -g CUDA_VISIBLE_DEVICES 3
set -g CUDA_DEVICE_ORDER FASTEST_FIRST
function child; sh -c 'echo "${CUDA_VISIBLE_DEVICES-unset}|${CUDA_DEVICE_ORDER-unset}"'; end
canhazgpu reserve; or exit 1
echo "held=$CUDA_VISIBLE_DEVICES|"(child)
canhazgpu release; or exit 1
echo "back=$CUDA_VISIBLE_DEVICES|$CUDA_DEVICE_ORDER"
echo "child_after="(child)
"#;
    for sh in SHELLS {
        let store = store(1);
        let run = store.session(sh, &scripted(sh, posix, fish)).ok();
        let ctx = run.describe();
        assert_eq!(run.value("held"), "0|0|PCI_BUS_ID", "{sh:?}: {ctx}");
        assert_eq!(run.value("back"), "3|FASTEST_FIRST", "{sh:?}: {ctx}");
        assert_eq!(run.value("child_after"), "unset|unset", "{sh:?}: {ctx}");
    }
}

#[test]
fn a_fish_universal_variable_is_not_shadowed_after_release() {
    let store = store(1);
    // With its configuration (and so universal variables), in a private config home.
    let script = r#"
set -Ux CUDA_VISIBLE_DEVICES 3
canhazgpu init fish | source
canhazgpu reserve; or exit 1
echo "held=$CUDA_VISIBLE_DEVICES"
canhazgpu release; or exit 1
set -qg CUDA_VISIBLE_DEVICES; and echo shadow=global; or echo shadow=none
set -Ux CUDA_VISIBLE_DEVICES 5
echo "now=$CUDA_VISIBLE_DEVICES"
set -eU CUDA_VISIBLE_DEVICES
"#;
    let mut cmd = store.clean_cmd("fish");
    cmd.args(["-c", script]);
    let run = finish(cmd.output().expect("fish")).ok();
    let ctx = run.describe();
    assert_eq!(run.value("held"), "0", "{ctx}");
    assert_eq!(run.value("shadow"), "none", "{ctx}");
    assert_eq!(run.value("now"), "5", "{ctx}");
}

#[test]
fn a_second_reserve_appends_to_the_list_the_shell_has() {
    let posix = r#"
INIT
canhazgpu reserve --gpus 2
export CUDA_VISIBLE_DEVICES=1
canhazgpu reserve
echo "cvd=$CUDA_VISIBLE_DEVICES gpus=$CANHAZGPU_GPUS nvd=$NVIDIA_VISIBLE_DEVICES"
"#;
    let fish = r#"
INIT
canhazgpu reserve --gpus 2; or exit 1
set -gx CUDA_VISIBLE_DEVICES 1
canhazgpu reserve; or exit 1
echo "cvd=$CUDA_VISIBLE_DEVICES gpus=$CANHAZGPU_GPUS nvd=$NVIDIA_VISIBLE_DEVICES"
"#;
    for sh in SHELLS {
        let store = store(3);
        let run = store.session(sh, &scripted(sh, posix, fish)).ok();
        assert_eq!(
            run.value("cvd"),
            "1,2 gpus=0,1,2 nvd=0,1,2",
            "{sh:?}: {}",
            run.describe()
        );
    }
}

#[test]
fn part_of_a_reservation_expiring_is_told_and_the_narrowed_list_shrinks() {
    let posix = format!(
        r#"{WAIT_EXPIRY_POSIX}
INIT
canhazgpu reserve --duration 1h
canhazgpu reserve --gpus 2 --duration 2s
echo "before=$CUDA_VISIBLE_DEVICES"
export CUDA_VISIBLE_DEVICES=2,0
wait_expiry
_canhazgpu_hook
echo "after=$CUDA_VISIBLE_DEVICES gpus=$CANHAZGPU_GPUS"
"#
    );
    let fish = format!(
        r#"{WAIT_EXPIRY_FISH}
INIT
canhazgpu reserve --duration 1h; or exit 1
canhazgpu reserve --gpus 2 --duration 2s; or exit 1
echo "before=$CUDA_VISIBLE_DEVICES"
set -gx CUDA_VISIBLE_DEVICES 2,0
wait_expiry
emit fish_prompt
echo "after=$CUDA_VISIBLE_DEVICES gpus=$CANHAZGPU_GPUS"
"#
    );
    std::thread::scope(|scope| {
        for sh in SHELLS {
            let (posix, fish) = (&posix, &fish);
            scope.spawn(move || {
                let store = store(3);
                let run = store.session(sh, &scripted(sh, posix, fish)).ok();
                let ctx = run.describe();
                assert_eq!(run.value("before"), "0,1,2", "{sh:?}: {ctx}");
                assert_eq!(run.value("after"), "0 gpus=0", "{sh:?}: {ctx}");
                assert!(
                    run.stderr.contains(
                        "the reservation of GPU(s) [1, 2] expired; this shell still holds \
                         GPU(s) [0]"
                    ),
                    "{sh:?}: {ctx}"
                );
            });
        }
    });
}

#[test]
fn the_prompt_right_after_a_short_reserve_counts_down_from_its_length() {
    let posix = "INIT\ncanhazgpu reserve --duration 3s\necho \"seg=$(canhazgpu_prompt)\"\n";
    let fish =
        "INIT\ncanhazgpu reserve --duration 3s; or exit 1\necho \"seg=\"(canhazgpu_prompt)\n";
    for sh in SHELLS {
        let store = store(1);
        let run = store.session(sh, &scripted(sh, posix, fish)).ok();
        let seg = run.value("seg");
        let left: i64 = seg
            .strip_prefix("gpu:0 ")
            .and_then(|s| s.strip_suffix('s'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{sh:?}: {}", run.describe()));
        // 3s, or less when a second passed meanwhile; never more than was reserved.
        assert!((1..=3).contains(&left), "{sh:?}: {seg}");
    }
}

#[test]
fn release_of_some_gpus_updates_the_variables_at_once() {
    let posix = r#"
INIT
canhazgpu reserve --gpus 2
canhazgpu release --gpu-ids 0
echo "part=$CUDA_VISIBLE_DEVICES gpus=$CANHAZGPU_GPUS"
canhazgpu release --gpu-ids 1
echo "last=${CUDA_VISIBLE_DEVICES-unset}|${CANHAZGPU_GPUS-unset}"
"#;
    let fish = r#"
INIT
canhazgpu reserve --gpus 2; or exit 1
canhazgpu release --gpu-ids 0; or exit 1
echo "part=$CUDA_VISIBLE_DEVICES gpus=$CANHAZGPU_GPUS"
canhazgpu release --gpu-ids 1; or exit 1
set -q CUDA_VISIBLE_DEVICES; and echo "last=$CUDA_VISIBLE_DEVICES"; or echo "last=unset|unset"
"#;
    for sh in SHELLS {
        let store = store(2);
        let run = store.session(sh, &scripted(sh, posix, fish)).ok();
        let ctx = run.describe();
        assert_eq!(run.value("part"), "1 gpus=1", "{sh:?}: {ctx}");
        assert_eq!(run.value("last"), "unset|unset", "{sh:?}: {ctx}");
        assert!(!run.stderr.contains("elsewhere"), "{sh:?}: {ctx}");
        assert!(store.busy_ids().is_empty(), "{sh:?}: {}", store.status());
    }
}

#[test]
fn a_reservation_from_another_store_is_released_and_watched_there() {
    let posix = r#"
INIT
canhazgpu reserve --store "$OTHER" --duration 1h
echo "held=$CUDA_VISIBLE_DEVICES"
rm -- "$CANHAZGPU_LEASE"
_canhazgpu_hook
echo "kept=${CUDA_VISIBLE_DEVICES-unset}"
echo "prompt=$(canhazgpu prompt)"
if canhazgpu reserve --store "$THIRD"; then echo "third=0"; else echo "third=$?"; fi
canhazgpu release
echo "after=${CUDA_VISIBLE_DEVICES-unset}"
canhazgpu reserve --store "$OTHER" --duration 1h
"#;
    let fish = r#"
INIT
canhazgpu reserve --store "$OTHER" --duration 1h; or exit 1
echo "held=$CUDA_VISIBLE_DEVICES"
rm -- $CANHAZGPU_LEASE
emit fish_prompt
set -q CUDA_VISIBLE_DEVICES; and echo "kept=$CUDA_VISIBLE_DEVICES"; or echo kept=unset
echo "prompt="(canhazgpu prompt)
canhazgpu reserve --store "$THIRD"; echo "third=$status"
canhazgpu release; or exit 1
set -q CUDA_VISIBLE_DEVICES; and echo "after=$CUDA_VISIBLE_DEVICES"; or echo after=unset
canhazgpu reserve --store "$OTHER" --duration 1h; or exit 1
"#;
    for sh in SHELLS {
        let default = store(1);
        let other = store(2);
        let third = store(1);
        let run = default
            .session_with(
                sh,
                &scripted(sh, posix, fish),
                &[("OTHER", &other.url()), ("THIRD", &third.url())],
            )
            .ok();
        let ctx = run.describe();
        assert_eq!(run.value("held"), "0", "{sh:?}: {ctx}");
        assert_eq!(run.value("kept"), "0", "{sh:?}: {ctx}");
        assert!(run.value("prompt").starts_with("gpu:0 "), "{sh:?}: {ctx}");
        assert_eq!(run.value("third"), "2", "{sh:?}: {ctx}");
        assert!(run.stderr.contains("from another store"), "{sh:?}: {ctx}");
        assert_eq!(run.value("after"), "unset", "{sh:?}: {ctx}");
        assert!(!run.stderr.contains("elsewhere"), "{sh:?}: {ctx}");
        assert!(run.stderr.contains("Released 1 GPU(s)"), "{sh:?}: {ctx}");
        // The exit hook released the last one from the store it came from.
        assert!(other.reserved_in_state_file().is_empty(), "{sh:?}: {ctx}");
        assert!(default.reserved_in_state_file().is_empty(), "{sh:?}: {ctx}");
        assert!(third.reserved_in_state_file().is_empty(), "{sh:?}: {ctx}");
    }
}

#[test]
fn a_reclaimed_gpu_is_told_at_the_next_prompt() {
    let posix = r#"
INIT
canhazgpu reserve --gpus 2 --duration 1h
echo "lease=$CANHAZGPU_LEASE"
echo "ready=1"
read -r x
_canhazgpu_hook
echo "after=$CUDA_VISIBLE_DEVICES"
"#;
    let fish = r#"
INIT
canhazgpu reserve --gpus 2 --duration 1h; or exit 1
echo "lease=$CANHAZGPU_LEASE"
echo "ready=1"
read -l x
emit fish_prompt
echo "after=$CUDA_VISIBLE_DEVICES"
"#;
    for sh in SHELLS {
        let store = store(2);
        let mut cmd = store.clean_cmd(sh.program());
        cmd.args(sh.script_args(&scripted(sh, posix, fish)));
        let (_, run) = with_pause(cmd, |before| {
            // What `release --gpu-ids 1 --force` by root leaves: the GPU free with the
            // reclaimer's account beside `last_released`, and the holder's marker gone.
            store.set_raw_slot(
                1,
                serde_json::json!({"last_released": common::unix_now(), "reclaimed_by": "root"}),
            );
            std::fs::remove_file(value_in(before, "lease")).expect("the marker");
            String::new()
        });
        let ctx = run.describe();
        assert!(run.success(), "{sh:?}: {ctx}");
        assert_eq!(run.value("after"), "0", "{sh:?}: {ctx}");
        assert!(
            run.stderr.contains(
                "GPU(s) [1] reclaimed by root, an administrator; this shell still holds GPU(s) [0]"
            ),
            "{sh:?}: {ctx}"
        );
    }
}

#[test]
fn markers_go_when_the_reservation_ends_by_any_path() {
    let posix = format!(
        r#"{WAIT_EXPIRY_POSIX}
INIT
canhazgpu reserve --duration 2s
lease=$CANHAZGPU_LEASE
wait_expiry
_canhazgpu_hook
echo "after_expiry=$([ -e "$lease" ] && echo yes || echo no)"
canhazgpu reserve --duration 1h
canhazgpu release
echo "after_release=$([ -e "$lease" ] && echo yes || echo no)"
canhazgpu reserve --duration 2s
echo "lease=$CANHAZGPU_LEASE"
wait_expiry
"#
    );
    let fish = format!(
        r#"{WAIT_EXPIRY_FISH}
INIT
canhazgpu reserve --duration 2s; or exit 1
set -l lease $CANHAZGPU_LEASE
wait_expiry
emit fish_prompt
test -e $lease; and echo after_expiry=yes; or echo after_expiry=no
canhazgpu reserve --duration 1h; or exit 1
canhazgpu release; or exit 1
test -e $lease; and echo after_release=yes; or echo after_release=no
canhazgpu reserve --duration 2s; or exit 1
echo "lease=$CANHAZGPU_LEASE"
wait_expiry
"#
    );
    std::thread::scope(|scope| {
        for sh in SHELLS {
            let (posix, fish) = (&posix, &fish);
            scope.spawn(move || {
                let store = store(1);
                let run = store.session(sh, &scripted(sh, posix, fish)).ok();
                let ctx = run.describe();
                assert_eq!(run.value("after_expiry"), "no", "{sh:?}: {ctx}");
                assert_eq!(run.value("after_release"), "no", "{sh:?}: {ctx}");
                // The shell exited after an expiry no prompt had noticed.
                let lease = std::path::Path::new(run.value("lease"));
                assert!(!lease.exists(), "{sh:?}: {ctx}");
            });
        }
    });
}

#[test]
fn a_binary_gone_from_path_is_said_once() {
    let posix = r#"
INIT
canhazgpu reserve --duration 1h
rm -- "$CANHAZGPU_LEASE"
saved=$PATH
PATH=/nonexistent
_canhazgpu_hook
_canhazgpu_hook
_canhazgpu_hook
if canhazgpu release; then echo "release=0"; else echo "release=$?"; fi
PATH=$saved
_canhazgpu_hook
echo "back=$CUDA_VISIBLE_DEVICES lease=$([ -e "$CANHAZGPU_LEASE" ] && echo yes || echo no)"
"#;
    let fish = r#"
INIT
canhazgpu reserve --duration 1h; or exit 1
rm -- $CANHAZGPU_LEASE
set -l saved $PATH
set PATH /nonexistent
emit fish_prompt
emit fish_prompt
emit fish_prompt
canhazgpu release; echo "release=$status"
set PATH $saved
emit fish_prompt
test -e $CANHAZGPU_LEASE; and set -l lease yes; or set -l lease no
echo "back=$CUDA_VISIBLE_DEVICES lease=$lease"
"#;
    for sh in SHELLS {
        let store = store(1);
        let run = store.session(sh, &scripted(sh, posix, fish)).ok();
        let ctx = run.describe();
        // Three prompts, one message; the command typed gets its own.
        assert_eq!(
            run.stderr.matches("is not on PATH").count(),
            2,
            "{sh:?}: {ctx}"
        );
        assert_eq!(run.value("release"), "127", "{sh:?}: {ctx}");
        assert!(!run.stderr.contains("command not found"), "{sh:?}: {ctx}");
        assert!(!run.stderr.contains("No such file"), "{sh:?}: {ctx}");
        assert!(!run.stderr.contains("Unknown command"), "{sh:?}: {ctx}");
        // Back on PATH, the next prompt catches up.
        assert_eq!(run.value("back"), "0 lease=yes", "{sh:?}: {ctx}");
    }
}

/// An interactive shell reading `input` from a pipe: it runs its prompt hooks before
/// each line, like at a terminal.
fn interactive(store: &TestStore, sh: Sh, input: &str) -> Session {
    let mut child = store
        .clean_cmd(sh.program())
        .args(&sh.interactive_args()[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the shell");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write input");
    finish(child.wait_with_output().expect("shell output"))
}

/// What a prompt builder printed at the first prompt after `step=released`.
fn seen_after_release(run: &Session) -> &str {
    let after = &run.stdout[run
        .stdout
        .find("step=released")
        .unwrap_or_else(|| panic!("{}", run.describe()))..];
    after
        .lines()
        .find_map(|line| line.strip_prefix("builder saw "))
        .unwrap_or_else(|| panic!("{}", run.describe()))
}

#[test]
fn prompt_builders_installed_before_the_init_see_the_current_state() {
    let store = store(1);
    let steps = r#"canhazgpu reserve
echo step=reserved
command canhazgpu release >/dev/null; echo step=released
echo step=end
"#;
    let bash_string = format!(
        "PROMPT_COMMAND='echo \"builder saw ${{CUDA_VISIBLE_DEVICES-unset}}\"'\n\
         eval \"$(canhazgpu init bash)\"\n{steps}"
    );
    let bash_array = format!(
        "PROMPT_COMMAND=('echo \"builder saw ${{CUDA_VISIBLE_DEVICES-unset}}\"')\n\
         eval \"$(canhazgpu init bash)\"\n{steps}"
    );
    // zsh frameworks hook precmd with add-zsh-hook, before or after the init line.
    let zsh = format!(
        "setopt no_prompt_sp\nautoload -Uz add-zsh-hook\n\
         builder() {{ echo \"builder saw ${{CUDA_VISIBLE_DEVICES-unset}}\" }}\n\
         late() {{ echo \"late saw ${{CUDA_VISIBLE_DEVICES-unset}}\" }}\n\
         add-zsh-hook precmd builder\n\
         eval \"$(canhazgpu init zsh)\"\nadd-zsh-hook precmd late\n{steps}"
    );
    for (sh, input) in [
        (Sh::Bash, bash_string),
        (Sh::Bash, bash_array),
        (Sh::Zsh, zsh),
    ] {
        let run = interactive(&store, sh, &input);
        assert_eq!(
            seen_after_release(&run),
            "unset",
            "{sh:?}: {}",
            run.describe()
        );
        assert!(
            run.stderr.contains("released elsewhere"),
            "{}",
            run.describe()
        );
        if sh == Sh::Zsh {
            let late = &run.stdout[run.stdout.find("step=released").unwrap()..];
            assert!(late.contains("late saw unset"), "{}", run.describe());
        }
    }
}

#[test]
fn a_gpu_an_administrator_takes_back_leaves_the_holders_shell_at_its_next_prompt() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::getuid().is_root() {
        common::skip(
            "a_gpu_an_administrator_takes_back_leaves_the_holders_shell_at_its_next_prompt",
            "needs root to hold GPUs as a second user and reclaim them",
        );
        return;
    }
    let posix = r#"
INIT
canhazgpu reserve --gpus 2 --duration 1h
echo "ready=1"
read -r x
echo "lease_after=$([ -e "$CANHAZGPU_LEASE" ] && echo yes || echo no)"
_canhazgpu_hook
echo "after=$CUDA_VISIBLE_DEVICES"
"#;
    let fish = r#"
INIT
canhazgpu reserve --gpus 2 --duration 1h; or exit 1
echo "ready=1"
read -l x
test -e $CANHAZGPU_LEASE; and echo lease_after=yes; or echo lease_after=no
emit fish_prompt
echo "after=$CUDA_VISIBLE_DEVICES"
"#;
    for sh in SHELLS {
        let store = TestStore::new(Backend::File);
        std::fs::set_permissions(store.home.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::set_permissions(store.config_path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        store.admin(2);
        let home = home_of_nobody(&store);
        let mut cmd = store.clean_cmd("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
            .arg(format!("HOME={}", home.display()))
            .arg(format!("XDG_CONFIG_HOME={}", home.display()))
            .arg(format!("XDG_DATA_HOME={}", home.display()))
            .arg(sh.program())
            .args(sh.script_args(&scripted(sh, posix, fish)));
        let (_, run) = with_pause(cmd, |_| {
            let out = store
                .cmd()
                .args(["release", "--gpu-ids", "0", "--force"])
                .output()
                .expect("root's release --force");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::new()
        });
        let ctx = run.describe();
        assert!(run.success(), "{sh:?}: {ctx}");
        // Root found the holder's marker in the holder's directory and deleted it.
        assert_eq!(run.value("lease_after"), "no", "{sh:?}: {ctx}");
        assert_eq!(run.value("after"), "1", "{sh:?}: {ctx}");
        assert!(
            run.stderr.contains(
                "GPU(s) [0] reclaimed by root, an administrator; this shell still holds GPU(s) [1]"
            ),
            "{sh:?}: {ctx}"
        );
    }
}

#[test]
fn what_no_marker_tells_the_hook_learns_at_its_next_check() {
    // `admin --force` starts the pool over and deletes no marker, like a release from a
    // container with another /tmp would not.
    let posix = r#"
INIT
canhazgpu reserve --duration 1h
command canhazgpu admin --gpus 2 --force 2>/dev/null
_canhazgpu_hook
echo "before_check=${CUDA_VISIBLE_DEVICES-unset}"
_canhazgpu_check=0
_canhazgpu_hook
echo "at_check=${CUDA_VISIBLE_DEVICES-unset}"
"#;
    let fish = concat!(
        r#"
INIT
canhazgpu reserve --duration 1h; or exit 1
command canhazgpu admin --gpus 2 --force 2>/dev/null
emit fish_prompt
set -q CUDA_VISIBLE_DEVICES; and echo "before_check=$CUDA_VISIBLE_DEVICES";"#,
        r#" or echo before_check=unset
set -g _canhazgpu_check 0
emit fish_prompt
set -q CUDA_VISIBLE_DEVICES; and echo "at_check=$CUDA_VISIBLE_DEVICES"; or echo at_check=unset
"#
    );
    for sh in SHELLS {
        let store = store(2);
        let run = store.session(sh, &scripted(sh, posix, fish)).ok();
        let ctx = run.describe();
        // Between checks the hook runs nothing...
        assert_eq!(run.value("before_check"), "0", "{sh:?}: {ctx}");
        // ...and at its check (a few minutes on; here, made due) it asks the store.
        assert_eq!(run.value("at_check"), "unset", "{sh:?}: {ctx}");
    }
}
