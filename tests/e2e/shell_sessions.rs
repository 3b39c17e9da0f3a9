//! The shell integration in real bash, zsh and fish, scripted: the function from `init`,
//! the variables it exports and restores, its hooks, and the traps the issue lists
//! (`$?`, PROMPT_COMMAND forms, `set -u`, double init, subshells, inherited variables).
//! bash and zsh run with `-euo pipefail`, fish with `--no-config`. Interactive sessions
//! in tmux are in `shell_tmux.rs`.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::shell::{SHELLS, Sh, finish};
use common::{Backend, TestStore};

fn unix_now_for_tests() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn store(gpus: u32) -> TestStore {
    let store = TestStore::new(Backend::File);
    store.admin(gpus);
    store
}

/// The script for `sh` with `INIT` replaced by its init line. bash and zsh share
/// scripts; fish gets its own.
fn script(sh: Sh, posix: &str, fish: &str) -> String {
    let text = if sh == Sh::Fish { fish } else { posix };
    text.replace("INIT", sh.init_line())
}

#[test]
fn reserve_exports_and_release_restores() {
    let posix = r#"
INIT
export CUDA_VISIBLE_DEVICES=7
canhazgpu reserve --gpus 2 --duration 1h
echo "cvd=$CUDA_VISIBLE_DEVICES"
echo "nvd=$NVIDIA_VISIBLE_DEVICES"
echo "gpus=$CANHAZGPU_GPUS"
echo "order=$CUDA_DEVICE_ORDER"
echo "owner=$CANHAZGPU_OWNER_PID"
echo "self=$$"
echo "expires=$CANHAZGPU_EXPIRES"
canhazgpu status
canhazgpu reserve --duration 30m
echo "cvd2=$CUDA_VISIBLE_DEVICES"
canhazgpu release
echo "after=${CUDA_VISIBLE_DEVICES-unset}"
echo "nvd_after=${NVIDIA_VISIBLE_DEVICES-unset}"
echo "order_after=${CUDA_DEVICE_ORDER-unset}"
echo "gpus_after=${CANHAZGPU_GPUS-unset}|${CANHAZGPU_OWNER_PID-unset}|${CANHAZGPU_RESTORE-unset}"
unset CUDA_VISIBLE_DEVICES
export CUDA_DEVICE_ORDER=FASTEST_FIRST
canhazgpu reserve
echo "order_held=$CUDA_DEVICE_ORDER"
canhazgpu release
echo "order_back=$CUDA_DEVICE_ORDER"
echo "unset_after=${CUDA_VISIBLE_DEVICES-unset}"
"#;
    let fish = concat!(
        r#"
function show; if set -q $argv[2]; echo "$argv[1]=$$argv[2]"; else; echo "$argv[1]=unset"; end; end
INIT
set -gx CUDA_VISIBLE_DEVICES 7
canhazgpu reserve --gpus 2 --duration 1h; or exit 1
show cvd CUDA_VISIBLE_DEVICES
show nvd NVIDIA_VISIBLE_DEVICES
show gpus CANHAZGPU_GPUS
show order CUDA_DEVICE_ORDER
show owner CANHAZGPU_OWNER_PID
echo "self=$fish_pid"
show expires CANHAZGPU_EXPIRES
canhazgpu status; or exit 1
canhazgpu reserve --duration 30m; or exit 1
show cvd2 CUDA_VISIBLE_DEVICES
canhazgpu release; or exit 1
show after CUDA_VISIBLE_DEVICES
show nvd_after NVIDIA_VISIBLE_DEVICES
show order_after CUDA_DEVICE_ORDER
echo "gpus_after="(set -q CANHAZGPU_GPUS; and echo set; or echo unset)"|""#,
        r#"(set -q CANHAZGPU_OWNER_PID; and echo set; or echo unset)"|""#,
        r#"(set -q CANHAZGPU_RESTORE; and echo set; or echo unset)
set -e CUDA_VISIBLE_DEVICES
set -gx CUDA_DEVICE_ORDER FASTEST_FIRST
canhazgpu reserve; or exit 1
show order_held CUDA_DEVICE_ORDER
canhazgpu release; or exit 1
show order_back CUDA_DEVICE_ORDER
show unset_after CUDA_VISIBLE_DEVICES
"#
    );
    for sh in SHELLS {
        let store = store(4);
        let before = unix_now_for_tests();
        let run = store.session(sh, &script(sh, posix, fish)).ok();
        let ctx = run.describe();
        let cvd = run.value("cvd");
        let ids: Vec<&str> = cvd.split(',').collect();
        assert_eq!(ids.len(), 2, "{sh:?}: {ctx}");
        assert_eq!(run.value("gpus"), cvd, "{sh:?}: {ctx}");
        assert_eq!(run.value("nvd"), cvd, "{sh:?}: {ctx}");
        assert_eq!(run.value("order"), "PCI_BUS_ID", "{sh:?}: {ctx}");
        assert_eq!(run.value("owner"), run.value("self"), "{sh:?}: {ctx}");
        let expires: i64 = run.value("expires").parse().unwrap();
        assert!(
            (before + 3600..=unix_now_for_tests() + 3600).contains(&expires),
            "{sh:?}: {ctx}"
        );
        // status went through the function to the binary and shows both GPUs.
        for id in &ids {
            assert!(
                run.stdout.contains(&format!("GPU {id}: IN USE")),
                "{sh:?}: {ctx}"
            );
        }
        // A second reserve adds, keeping the first ones in front.
        let cvd2 = run.value("cvd2");
        assert!(cvd2.starts_with(&format!("{cvd},")), "{sh:?}: {ctx}");
        assert_eq!(cvd2.split(',').count(), 3, "{sh:?}: {ctx}");
        assert!(run.stderr.contains("this shell now holds"), "{sh:?}: {ctx}");
        // Release restores what was there before.
        assert_eq!(run.value("after"), "7", "{sh:?}: {ctx}");
        assert_eq!(run.value("nvd_after"), "unset", "{sh:?}: {ctx}");
        assert_eq!(run.value("order_after"), "unset", "{sh:?}: {ctx}");
        assert_eq!(
            run.value("gpus_after"),
            "unset|unset|unset",
            "{sh:?}: {ctx}"
        );
        assert!(run.stderr.contains("Released 3 GPU(s)"), "{sh:?}: {ctx}");
        // One rule for every path: ids mean PCI order while GPUs are held (so that they
        // name the reserved GPUs), and the user's order comes back with the release.
        assert_eq!(run.value("order_held"), "PCI_BUS_ID", "{sh:?}: {ctx}");
        assert_eq!(run.value("order_back"), "FASTEST_FIRST", "{sh:?}: {ctx}");
        assert_eq!(run.value("unset_after"), "unset", "{sh:?}: {ctx}");
        assert!(store.busy_ids().is_empty(), "{sh:?}: {}", store.status());
    }
}

#[test]
fn failures_evaluate_nothing_and_other_commands_pass_through() {
    let posix = r#"
INIT
if canhazgpu reserve --gpus 9; then echo "big=ok"; else echo "big=$?"; fi
echo "cvd=${CUDA_VISIBLE_DEVICES-unset}"
if canhazgpu reserve --duration soon; then echo "bad=ok"; else echo "bad=$?"; fi
canhazgpu reserve --help | head -n 1
canhazgpu --version
canhazgpu status --verbose
"#;
    let fish = r#"
INIT
canhazgpu reserve --gpus 9; echo "big=$status"
set -q CUDA_VISIBLE_DEVICES; and echo "cvd=$CUDA_VISIBLE_DEVICES"; or echo "cvd=unset"
canhazgpu reserve --duration soon; echo "bad=$status"
canhazgpu reserve --help | head -n 1
canhazgpu --version
canhazgpu status --verbose
"#;
    for sh in SHELLS {
        let store = store(2);
        let run = store.session(sh, &script(sh, posix, fish)).ok();
        let ctx = run.describe();
        assert_eq!(run.value("big"), "1", "{sh:?}: {ctx}");
        assert_eq!(run.value("bad"), "2", "{sh:?}: {ctx}");
        assert_eq!(run.value("cvd"), "unset", "{sh:?}: {ctx}");
        assert!(
            run.stdout.contains("Reserve GPUs manually"),
            "{sh:?}: {ctx}"
        );
        assert!(run.stdout.contains("canhazgpu 0."), "{sh:?}: {ctx}");
        assert!(run.stdout.contains("GPU 1: AVAILABLE"), "{sh:?}: {ctx}");
        assert!(run.stderr.contains("Not enough GPUs"), "{sh:?}: {ctx}");
    }
}

#[test]
fn normal_exit_releases_through_the_exit_hook() {
    for sh in SHELLS {
        let store = store(3);
        let run = store
            .session(
                sh,
                &format!(
                    "{}\ncanhazgpu reserve --gpus 2 --duration 1h\necho held=1",
                    sh.init_line()
                ),
            )
            .ok();
        assert_eq!(run.value("held"), "1");
        // Read from the state file, which applies no liveness rule: the hook released
        // them, nobody merely could.
        assert!(
            store.reserved_in_state_file().is_empty(),
            "{sh:?}: still reserved after exit\n{}",
            run.describe()
        );
        assert!(
            run.stderr.contains("Released 2 GPU(s)"),
            "{sh:?}: {}",
            run.describe()
        );
    }
}

#[test]
fn kill_9_of_the_shell_frees_its_gpus_for_the_next_command() {
    for sh in SHELLS {
        let store = store(3);
        let wait = if sh == Sh::Fish {
            "read -l x"
        } else {
            "read -r x"
        };
        let script = format!(
            "{}\ncanhazgpu reserve --gpus 2 --duration 1h\necho ready=1\n{wait}",
            sh.init_line()
        );
        let mut child = store
            .clean_cmd(sh.program())
            .args(sh.script_args(&script))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the shell");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines.next().and_then(|line| line.ok());
        assert_eq!(ready.as_deref(), Some("ready=1"), "{sh:?}");
        let state = std::fs::read_to_string(store.state_dir().join("state.json")).unwrap();
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        let owners: Vec<_> = state["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|slot| slot["owner_process"]["pid"].as_u64())
            .collect();
        assert_eq!(
            owners,
            vec![u64::from(child.id()); 2],
            "{sh:?}: the shell owns its reservation: {state}"
        );
        assert_eq!(store.reserved_in_state_file().len(), 2);
        child.kill().expect("kill -9 the shell");
        child.wait().expect("reap the shell");
        assert!(store.busy_ids().is_empty(), "{sh:?}: {}", store.status());
        // And they can be had again at once.
        store
            .cmd()
            .args(["reserve", "--gpus", "3"])
            .assert()
            .success();
    }
}

#[test]
fn reserve_in_a_subshell_is_refused_unless_its_output_is_evaluated() {
    let posix = r#"
INIT
if ( canhazgpu reserve ); then echo "paren=ok"; else echo "paren=$?"; fi
if canhazgpu reserve | cat; then echo "pipe=ok"; else echo "pipe=$?"; fi
if ( canhazgpu release ); then echo "release=ok"; else echo "release=$?"; fi
if x=$(canhazgpu reserve | cat); then echo "piped_subst=ok"; else echo "piped_subst=$?"; fi
( canhazgpu status >/dev/null ) && echo "status=ok"
echo "cvd=${CUDA_VISIBLE_DEVICES-unset}"
eval "$(canhazgpu reserve --gpus 2)"
echo "evaluated=$CUDA_VISIBLE_DEVICES owner=$CANHAZGPU_OWNER_PID self=$$"
eval "$(canhazgpu release)"
echo "released=${CUDA_VISIBLE_DEVICES-unset}"
"#;
    for sh in [Sh::Bash, Sh::Zsh] {
        let store = store(2);
        let run = store.session(sh, &script(sh, posix, "")).ok();
        let ctx = run.describe();
        for key in ["paren", "pipe", "release", "piped_subst"] {
            assert_eq!(run.value(key), "1", "{sh:?} {key}: {ctx}");
        }
        assert_eq!(run.value("status"), "ok", "{sh:?}: {ctx}");
        assert_eq!(run.value("cvd"), "unset", "{sh:?}: {ctx}");
        assert!(run.stderr.contains("in a subshell"), "{sh:?}: {ctx}");
        // `eval "$(canhazgpu reserve)"`, as `reserve --help` shows it, works with the
        // integration too: bound to this shell, and released by the shell's release.
        let evaluated = run.value("evaluated");
        let self_pid = run
            .value("evaluated")
            .rsplit("self=")
            .next()
            .unwrap_or_default();
        assert!(evaluated.starts_with("0,1 owner="), "{sh:?}: {ctx}");
        assert!(
            evaluated.contains(&format!("owner={self_pid} ")),
            "{sh:?}: {ctx}"
        );
        assert_eq!(run.value("released"), "unset", "{sh:?}: {ctx}");
        assert!(run.stderr.contains("Released 2 GPU(s)"), "{sh:?}: {ctx}");
        assert!(store.busy_ids().is_empty(), "{sh:?}: {}", store.status());
    }
}

#[test]
fn fish_has_no_subshells_so_reserve_works_in_a_pipeline() {
    let store = store(2);
    let run = store
        .session(
            Sh::Fish,
            "canhazgpu init fish | source\ncanhazgpu reserve | cat\n\
             echo \"cvd=$CUDA_VISIBLE_DEVICES\"\necho \"gpus=$CANHAZGPU_GPUS\"",
        )
        .ok();
    assert_eq!(run.value("cvd"), run.value("gpus"), "{}", run.describe());
    assert!(
        run.stderr.contains("Reserved 1 GPU(s)"),
        "{}",
        run.describe()
    );
}

/// A process that is alive but not an ancestor of the shells the test starts.
struct Stranger(std::process::Child);

impl Stranger {
    fn start() -> Stranger {
        Stranger(
            std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .expect("start sleep"),
        )
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn variables_inherited_from_a_non_ancestor_are_dropped_at_init() {
    let stranger = Stranger::start();
    let pid = stranger.0.id().to_string();
    let expires = (unix_now_for_tests() + 3600).to_string();
    let inherited = [
        ("CANHAZGPU_OWNER_PID", pid.as_str()),
        ("CANHAZGPU_GPUS", "3"),
        ("CANHAZGPU_EXPIRES", expires.as_str()),
        ("CUDA_VISIBLE_DEVICES", "3"),
        ("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
        ("CANHAZGPU_RESTORE", r#"{"CUDA_VISIBLE_DEVICES":"9"}"#),
    ];
    let posix = r#"
INIT
echo "cvd=${CUDA_VISIBLE_DEVICES-unset}"
echo "order=${CUDA_DEVICE_ORDER-unset}"
echo "gpus=${CANHAZGPU_GPUS-unset}"
echo "prompt=[$(canhazgpu_prompt)]"
"#;
    let fish = r#"
INIT
echo "cvd=$CUDA_VISIBLE_DEVICES"
set -q CUDA_DEVICE_ORDER; and echo "order=$CUDA_DEVICE_ORDER"; or echo "order=unset"
set -q CANHAZGPU_GPUS; and echo "gpus=$CANHAZGPU_GPUS"; or echo "gpus=unset"
set -l p (canhazgpu_prompt)
echo "prompt=[$p]"
"#;
    for sh in SHELLS {
        // No store at all: this happens at shell start and must not need one.
        let store = TestStore::new(Backend::File);
        let run = store
            .session_with(sh, &script(sh, posix, fish), &inherited)
            .ok();
        let ctx = run.describe();
        assert_eq!(run.value("cvd"), "9", "{sh:?}: {ctx}");
        assert_eq!(run.value("order"), "unset", "{sh:?}: {ctx}");
        assert_eq!(run.value("gpus"), "unset", "{sh:?}: {ctx}");
        assert_eq!(run.value("prompt"), "[]", "{sh:?}: {ctx}");
        assert!(run.stderr.contains("not an ancestor"), "{sh:?}: {ctx}");
    }
}

#[test]
fn nested_shells_keep_their_parents_gpus_and_stack_their_own() {
    let inner = r#"eval "$(canhazgpu init bash)"
echo "inner_cvd=${CUDA_VISIBLE_DEVICES-unset}"
echo "inner_prompt=$(canhazgpu_prompt)"
canhazgpu release
echo "inner_kept=${CUDA_VISIBLE_DEVICES-unset}"
canhazgpu reserve --duration 1h
echo "inner_top=$CUDA_VISIBLE_DEVICES"
canhazgpu release
echo "inner_back=$CUDA_VISIBLE_DEVICES owner=$CANHAZGPU_OWNER_PID"
"#;
    let outer = format!(
        r#"eval "$(canhazgpu init bash)"
export CUDA_VISIBLE_DEVICES=5
canhazgpu reserve --duration 1h
echo "outer_cvd=$CUDA_VISIBLE_DEVICES outer_pid=$$"
bash --norc --noprofile -euo pipefail -c '{}'
echo "outer_after=$CUDA_VISIBLE_DEVICES"
canhazgpu release
echo "outer_restored=$CUDA_VISIBLE_DEVICES"
"#,
        inner.replace('\'', r"'\''")
    );
    let store = store(2);
    let run = store.session(Sh::Bash, &outer).ok();
    let ctx = run.describe();
    let outer_line = run.value("outer_cvd");
    let (outer_ids, outer_pid) = outer_line.split_once(" outer_pid=").unwrap();
    assert_eq!(run.value("inner_cvd"), outer_ids, "{ctx}");
    assert!(
        run.value("inner_prompt")
            .starts_with(&format!("gpu:{outer_ids} ")),
        "{ctx}"
    );
    // The nested shell's release leaves its parent's GPUs alone, and says why.
    assert_eq!(run.value("inner_kept"), outer_ids, "{ctx}");
    assert!(run.stderr.contains("belong to shell"), "{ctx}");
    let inner_top = run.value("inner_top");
    assert_ne!(inner_top, outer_ids, "{ctx}");
    assert_eq!(
        run.value("inner_back"),
        format!("{outer_ids} owner={outer_pid}"),
        "{ctx}"
    );
    assert_eq!(run.value("outer_after"), outer_ids, "{ctx}");
    assert_eq!(run.value("outer_restored"), "5", "{ctx}");
    assert!(store.busy_ids().is_empty(), "{}", store.status());
}

#[test]
fn the_prompt_hook_notices_a_release_elsewhere_and_expiry() {
    let posix = concat!(
        r#"
INIT
canhazgpu reserve --duration 1h
lease=$CANHAZGPU_LEASE
echo "lease_exists=$([ -e "$lease" ] && echo yes || echo no)"
command canhazgpu release
echo "lease_after_release=$([ -e "$lease" ] && echo yes || echo no)"
_canhazgpu_hook
echo "after_release=${CUDA_VISIBLE_DEVICES-unset}"
canhazgpu reserve --duration 2s
_canhazgpu_hook
echo "still=${CUDA_VISIBLE_DEVICES-unset}"
# The hook's own clock: time(2) may lag the clock date(1) reads by a few milliseconds.
clock() { if [ -n "${BASH_VERSION-}" ]; then printf -v now '%(%s)T' -1;"#,
        r#" else now=$EPOCHSECONDS; fi; }
n=0
clock
while [ "$now" -lt "$CANHAZGPU_EXPIRES" ]; do
  n=$((n + 1)); [ "$n" -lt 200 ] || exit 3; sleep 0.05; clock
done
_canhazgpu_hook
echo "after_expiry=${CUDA_VISIBLE_DEVICES-unset}"
"#
    );
    let fish = concat!(
        r#"
INIT
canhazgpu reserve --duration 1h; or exit 1
set -l lease $CANHAZGPU_LEASE
test -e $lease; and echo lease_exists=yes; or echo lease_exists=no
command canhazgpu release
test -e $lease; and echo lease_after_release=yes; or echo lease_after_release=no
emit fish_prompt
set -q CUDA_VISIBLE_DEVICES; and echo "after_release=$CUDA_VISIBLE_DEVICES";"#,
        r#" or echo after_release=unset
canhazgpu reserve --duration 2s; or exit 1
emit fish_prompt
set -q CUDA_VISIBLE_DEVICES; and echo "still=$CUDA_VISIBLE_DEVICES"; or echo still=unset
set -l n 0
while test (_canhazgpu_uptime) -lt $_canhazgpu_deadline_cs
  set n (math $n + 1); test $n -lt 200; or exit 3; sleep 0.05
end
emit fish_prompt
set -q CUDA_VISIBLE_DEVICES; and echo "after_expiry=$CUDA_VISIBLE_DEVICES";"#,
        r#" or echo after_expiry=unset
"#
    );
    // Each shell waits out an expiry: side by side rather than one after another.
    std::thread::scope(|scope| {
        for sh in SHELLS {
            scope.spawn(move || hook_notices(sh, &script(sh, posix, fish)));
        }
    });
}

fn hook_notices(sh: Sh, text: &str) {
    let store = store(2);
    let run = store.session(sh, text).ok();
    let ctx = run.describe();
    assert_eq!(run.value("lease_exists"), "yes", "{sh:?}: {ctx}");
    assert_eq!(run.value("lease_after_release"), "no", "{sh:?}: {ctx}");
    assert_eq!(run.value("after_release"), "unset", "{sh:?}: {ctx}");
    assert!(run.stderr.contains("released elsewhere"), "{sh:?}: {ctx}");
    assert_ne!(run.value("still"), "unset", "{sh:?}: {ctx}");
    assert_eq!(run.value("after_expiry"), "unset", "{sh:?}: {ctx}");
    assert!(run.stderr.contains("expired"), "{sh:?}: {ctx}");
}

#[test]
fn prompt_function_forks_nothing_and_matches_the_binary() {
    let posix = r#"
INIT
canhazgpu reserve --gpus 2 --duration 1h30m30s
saved=$PATH
PATH=
fn=$(canhazgpu_prompt)
_canhazgpu_hook
PATH=$saved
echo "fn=$fn"
echo "bin=$(canhazgpu prompt)"
export CANHAZGPU_PROMPT_FORMAT='<{count}|{gpus}|{left}>'
echo "fn2=$(canhazgpu_prompt)"
echo "bin2=$(canhazgpu prompt)"
canhazgpu release
echo "empty=[$(canhazgpu_prompt)][$(canhazgpu prompt)]"
"#;
    let fish = r#"
INIT
canhazgpu reserve --gpus 2 --duration 1h30m30s; or exit 1
set -l saved $PATH
set PATH
set -l fn (canhazgpu_prompt)
emit fish_prompt
set PATH $saved
echo "fn=$fn"
echo "bin="(canhazgpu prompt)
set -gx CANHAZGPU_PROMPT_FORMAT '<{count}|{gpus}|{left}>'
echo "fn2="(canhazgpu_prompt)
echo "bin2="(canhazgpu prompt)
canhazgpu release; or exit 1
set -l a (canhazgpu_prompt)
set -l b (canhazgpu prompt)
echo "empty=[$a][$b]"
"#;
    for sh in SHELLS {
        let store = store(3);
        let run = store.session(sh, &script(sh, posix, fish)).ok();
        let ctx = run.describe();
        let fn_segment = run.value("fn");
        assert!(
            fn_segment.starts_with("gpu:") && fn_segment.ends_with(" 1h30m"),
            "{sh:?}: {ctx}"
        );
        assert_eq!(fn_segment, run.value("bin"), "{sh:?}: {ctx}");
        let fn2 = run.value("fn2");
        assert!(
            fn2.starts_with("<2|") && fn2.ends_with("|1h30m>"),
            "{sh:?}: {ctx}"
        );
        assert_eq!(fn2, run.value("bin2"), "{sh:?}: {ctx}");
        assert_eq!(run.value("empty"), "[][]", "{sh:?}: {ctx}");
        assert!(!run.stderr.contains("not found"), "{sh:?}: {ctx}");
        assert!(!run.stderr.contains("Unknown command"), "{sh:?}: {ctx}");
    }
}

#[test]
fn init_and_prompt_need_no_store_and_no_configuration() {
    for sh in SHELLS {
        let store = TestStore::new(Backend::File);
        let line = sh.init_line();
        let text = if sh == Sh::Fish {
            // An empty command substitution is an empty list in fish; `set` keeps it.
            format!("{line}\n{line}\nset -l p (canhazgpu prompt)\necho \"p=[$p]\"\necho ok=1")
        } else {
            format!("{line}\n{line}\necho \"p=[$(canhazgpu prompt)]\"\necho ok=1")
        };
        let run = store
            .session_with(
                sh,
                &text,
                &[
                    // Contacting either would fail loudly.
                    ("CANHAZGPU_STORE", "redis://192.0.2.1:1/0"),
                    ("CANHAZGPU_CONFIG", "/nonexistent/canhazgpu.toml"),
                ],
            )
            .ok();
        assert_eq!(run.value("ok"), "1", "{sh:?}: {}", run.describe());
        assert_eq!(run.value("p"), "[]", "{sh:?}: {}", run.describe());
        assert_eq!(run.stderr, "", "{sh:?}: {}", run.describe());
    }
}

#[test]
fn bash_hook_keeps_status_and_a_string_prompt_command_under_set_u() {
    let store = store(2);
    let input = r#"set -u
PS1='[st=$?]'
PROMPT_COMMAND='echo "pc_str saw $?"'
trap 'echo user-exit-trap' EXIT
eval "$(canhazgpu init bash)"
eval "$(canhazgpu init bash)"
echo "hooks=${PROMPT_COMMAND//$'\n'/;}"
echo "trap=$(trap -p EXIT | tr '\n' ';')"
canhazgpu reserve
false
"#;
    let run = interactive_bash(&store, input);
    let ctx = run.describe();
    assert_eq!(
        run.value("hooks"),
        r#"_canhazgpu_hook;echo "pc_str saw $?""#,
        "one hook, before the user's: {ctx}"
    );
    let trap = run.value("trap");
    assert_eq!(trap.matches("_canhazgpu_exit").count(), 1, "{ctx}");
    assert!(trap.contains("user-exit-trap"), "{ctx}");
    // After `false`, the user's hook and PS1 (expanded after all hooks) both see 1.
    assert!(run.stdout.contains("pc_str saw 1"), "{ctx}");
    assert!(run.stderr.contains("[st=1]"), "{ctx}");
    // Exit: our trap released, then the user's trap ran.
    assert!(run.stderr.contains("Released 1 GPU(s)"), "{ctx}");
    assert!(run.stdout.contains("user-exit-trap"), "{ctx}");
    assert!(store.reserved_in_state_file().is_empty());
    assert!(!run.stderr.contains("unbound variable"), "{ctx}");
}

#[test]
fn bash_hook_keeps_an_array_prompt_command() {
    let store = store(2);
    let input = r#"set -u
PS1='[st=$?]'
PROMPT_COMMAND=('echo "pc_arr saw $?"' 'echo pc_second')
eval "$(canhazgpu init bash)"
eval "$(canhazgpu init bash)"
echo "hooks=${#PROMPT_COMMAND[@]}:${PROMPT_COMMAND[0]}"
false
"#;
    let run = interactive_bash(&store, input);
    let ctx = run.describe();
    assert_eq!(run.value("hooks"), "3:_canhazgpu_hook", "{ctx}");
    assert!(run.stdout.contains("pc_arr saw 1"), "{ctx}");
    assert!(run.stdout.contains("pc_second"), "{ctx}");
    assert!(run.stderr.contains("[st=1]"), "{ctx}");
}

/// An interactive bash reading `input` from a pipe: it runs PROMPT_COMMAND and prints
/// PS1 (on stderr) before each line, like at a terminal.
fn interactive_bash(store: &TestStore, input: &str) -> common::shell::Session {
    use std::io::Write;
    let mut child = store
        .clean_cmd("bash")
        .args(["--norc", "--noprofile", "-i"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bash");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write input");
    finish(child.wait_with_output().expect("bash output"))
}

#[test]
fn zsh_hooks_keep_status_and_existing_hooks() {
    use std::io::Write;
    let store = store(2);
    let input = r#"setopt no_prompt_sp nounset
PS1='[st=%?]'
precmd_functions=(mine)
mine() { echo "mine saw $?" }
zshexit_functions=(bye)
bye() { echo user-zshexit }
eval "$(canhazgpu init zsh)"
eval "$(canhazgpu init zsh)"
echo "pre=${(j:,:)precmd_functions}"
echo "exit=${(j:,:)zshexit_functions}"
canhazgpu reserve
false
"#;
    let mut child = store
        .clean_cmd("zsh")
        .args(["-f", "-i"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start zsh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write input");
    let run = finish(child.wait_with_output().expect("zsh output"));
    let ctx = run.describe();
    assert_eq!(run.value("pre"), "_canhazgpu_hook,mine", "{ctx}");
    assert_eq!(run.value("exit"), "bye,_canhazgpu_exit", "{ctx}");
    assert!(run.stdout.contains("mine saw 1"), "{ctx}");
    assert!(run.stderr.contains("[st=1]"), "{ctx}");
    assert!(run.stdout.contains("user-zshexit"), "{ctx}");
    assert!(run.stderr.contains("Released 1 GPU(s)"), "{ctx}");
    assert!(store.reserved_in_state_file().is_empty());
}

#[test]
fn fish_double_init_installs_one_handler_each() {
    let store = store(1);
    let run = store
        .session(
            Sh::Fish,
            "canhazgpu init fish | source\ncanhazgpu init fish | source\n\
             echo \"prompt=\"(functions --handlers-type generic \
             | string match '*_canhazgpu_hook*' | count)\n\
             echo \"exit=\"(functions --handlers-type generic \
             | string match '*_canhazgpu_exit*' | count)",
        )
        .ok();
    // One handler per event: fish_prompt and fish_postexec.
    assert_eq!(run.value("prompt"), "2", "{}", run.describe());
    assert_eq!(run.value("exit"), "1", "{}", run.describe());
}

#[test]
fn the_function_keeps_completion_working() {
    let store = TestStore::new(Backend::File);
    // bash: nothing registered, so init registers a loader of the generated completion.
    let run = store
        .session(
            Sh::Bash,
            r#"eval "$(canhazgpu init bash)"
echo "spec=$(complete -p canhazgpu)"
COMP_WORDS=(canhazgpu res); COMP_CWORD=1; COMP_LINE='canhazgpu res'; COMP_POINT=${#COMP_LINE}
_canhazgpu_complete canhazgpu res canhazgpu 2>/dev/null || true
echo "reply=${COMPREPLY[*]}"
echo "now=$(complete -p canhazgpu)""#,
        )
        .ok();
    assert!(
        run.value("spec").contains("_canhazgpu_complete"),
        "{}",
        run.describe()
    );
    assert_eq!(run.value("reply"), "reserve", "{}", run.describe());
    assert!(
        run.value("now").contains("-F _canhazgpu "),
        "{}",
        run.describe()
    );

    // zsh: no compdef before compinit (calling it would fail under -e)...
    let run = store
        .session(
            Sh::Zsh,
            "eval \"$(canhazgpu init zsh)\"\necho \"comps=${+_comps}\"",
        )
        .ok();
    assert_eq!(run.value("comps"), "0", "{}", run.describe());
    assert_eq!(run.stderr, "", "{}", run.describe());
    // ...and a registration after it.
    let run = store
        .session(
            Sh::Zsh,
            "autoload -Uz compinit\ncompinit -u -D\neval \"$(canhazgpu init zsh)\"\n\
             echo \"comp=${_comps[canhazgpu]}\"",
        )
        .ok();
    assert_eq!(
        run.value("comp"),
        "_canhazgpu_complete",
        "{}",
        run.describe()
    );

    // fish: completions by command name apply to the function.
    let completions =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/canhazgpu.fish");
    let run = store
        .session(
            Sh::Fish,
            &format!(
                "source {}\ncanhazgpu init fish | source\n\
                 echo \"reply=\"(complete -C 'canhazgpu res' | string replace -r '\\t.*' '')",
                completions.display()
            ),
        )
        .ok();
    assert_eq!(run.value("reply"), "reserve", "{}", run.describe());
}

#[test]
fn shellcheck_passes_on_the_bash_script() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // As strictly as zoxide lints its scripts: every optional check too.
    let out = std::process::Command::new("shellcheck")
        .args(["--enable", "all"])
        .arg(root.join("shell/init.bash"))
        .output()
        .expect("shellcheck must be installed for the tests (apt-get install shellcheck)");
    assert!(
        out.status.success(),
        "shellcheck shell/init.bash:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let rendered = std::process::Command::new(common::binary())
        .args(["init", "bash"])
        .output()
        .expect("canhazgpu init bash");
    assert!(rendered.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.bash");
    std::fs::write(&file, &rendered.stdout).unwrap();
    let out = std::process::Command::new("shellcheck")
        .args(["--shell=bash", "--enable", "all"])
        .arg(&file)
        .output()
        .expect("run shellcheck");
    assert!(
        out.status.success(),
        "shellcheck on `canhazgpu init bash`:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_shell_flags_are_checked_by_the_binary() {
    let store = store(2);
    let stranger = Stranger::start();
    // Not an ancestor: refused before anything is reserved.
    let pid = stranger.0.id().to_string();
    let run = store.plain(&["reserve", "--shell", "bash", "--owner-pid", &pid]);
    assert!(!run.success(), "{}", run.describe());
    assert!(
        run.stderr
            .contains("is not a process this command runs under"),
        "{}",
        run.describe()
    );
    assert!(store.busy_ids().is_empty());
    // --shell alone is not enough.
    let run = store.plain(&["reserve", "--shell", "bash"]);
    assert_eq!(run.output.status.code(), Some(2), "{}", run.describe());
    let run = store.plain(&["reserve", "--shell", "sh", "--owner-pid", &pid]);
    assert_eq!(run.output.status.code(), Some(2), "{}", run.describe());
}

#[test]
fn plain_binary_behaviour_is_unchanged() {
    let store = store(3);
    let run = store.plain(&["reserve", "--gpus", "2"]);
    assert!(run.success(), "{}", run.describe());
    assert!(
        run.stdout.starts_with("export CUDA_VISIBLE_DEVICES="),
        "{}",
        run.describe()
    );
    // The plain release releases every manual reservation of the user, shell-bound
    // ones included.
    let shell = store
        .session(
            Sh::Bash,
            "eval \"$(canhazgpu init bash)\"\ncanhazgpu reserve\ncommand canhazgpu release\n\
             echo \"cvd=$CUDA_VISIBLE_DEVICES\"",
        )
        .ok();
    assert!(
        shell.stdout.contains("Released 3 GPU(s)"),
        "{}",
        shell.describe()
    );
    assert!(store.busy_ids().is_empty());
    // release --all in a shell releases everything and restores the shell.
    store.plain(&["reserve"]);
    let shell = store
        .session(
            Sh::Zsh,
            "eval \"$(canhazgpu init zsh)\"\ncanhazgpu reserve\ncanhazgpu release --all\n\
             echo \"cvd=${CUDA_VISIBLE_DEVICES-unset}\"",
        )
        .ok();
    assert_eq!(shell.value("cvd"), "unset", "{}", shell.describe());
    assert!(
        shell.stderr.contains("Released 2 GPU(s)"),
        "{}",
        shell.describe()
    );
    assert!(store.busy_ids().is_empty());
}

#[test]
fn redis_smoke_reserve_and_release_in_a_shell() {
    let store = TestStore::new(Backend::Redis);
    store.admin(2);
    let run = store
        .session(
            Sh::Bash,
            r#"eval "$(canhazgpu init bash)"
canhazgpu reserve --gpus 2
echo "cvd=$CUDA_VISIBLE_DEVICES"
echo "prompt=$(canhazgpu prompt)"
canhazgpu release
echo "after=${CUDA_VISIBLE_DEVICES-unset}""#,
        )
        .ok();
    assert_eq!(run.value("cvd"), "0,1", "{}", run.describe());
    assert!(
        run.value("prompt").starts_with("gpu:0,1 "),
        "{}",
        run.describe()
    );
    assert_eq!(run.value("after"), "unset", "{}", run.describe());
    assert!(store.busy_ids().is_empty());
}

#[test]
fn a_lost_marker_costs_one_check_and_comes_back() {
    let store = store(2);
    let run = store
        .session(
            Sh::Bash,
            r#"eval "$(canhazgpu init bash)"
canhazgpu reserve --duration 1h
lease=$CANHAZGPU_LEASE
rm -- "$lease"
_canhazgpu_hook
echo "cvd=${CUDA_VISIBLE_DEVICES-unset}"
echo "same_lease=$([ "$CANHAZGPU_LEASE" = "$lease" ] && echo yes || echo no)"
echo "lease_back=$([ -e "$lease" ] && echo yes || echo no)""#,
        )
        .ok();
    let ctx = run.describe();
    assert_eq!(run.value("cvd"), "0", "{ctx}");
    assert_eq!(run.value("same_lease"), "yes", "{ctx}");
    assert_eq!(run.value("lease_back"), "yes", "{ctx}");
    assert!(!run.stderr.contains("canhazgpu:"), "no news to tell: {ctx}");
}

#[test]
fn rendered_zsh_and_fish_scripts_parse() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, check) in [
        ("zsh", vec!["zsh", "-n"]),
        ("fish", vec!["fish", "--no-config", "--no-execute"]),
    ] {
        let rendered = std::process::Command::new(common::binary())
            .args(["init", shell])
            .output()
            .expect("canhazgpu init");
        assert!(rendered.status.success());
        let file = dir.path().join(format!("init.{shell}"));
        std::fs::write(&file, &rendered.stdout).unwrap();
        let out = std::process::Command::new(check[0])
            .args(&check[1..])
            .arg(&file)
            .output()
            .expect("run the shell's syntax check");
        assert!(
            out.status.success(),
            "{shell} rejects `canhazgpu init {shell}`:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
