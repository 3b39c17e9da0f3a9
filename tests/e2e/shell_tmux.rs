//! Interactive shells in tmux, driven like a person would: the prompt segment, `$?` in the
//! prompt, a release from another shell and an expiry noticed at the next prompt, exit,
//! and the tmux inheritance rule. Every test runs its own tmux server on its own socket
//! and kills it at the end.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use common::shell::Tmux;
use common::{Backend, TestStore};

fn store(gpus: u32) -> TestStore {
    let store = TestStore::new(Backend::File);
    store.admin(gpus);
    store
}

/// The segment for GPU `id` held for about an hour, as the prompt shows it.
fn hour_segment(line: &str, id: u32) -> bool {
    line.contains(&format!("gpu:{id} 1h0m")) || line.contains(&format!("gpu:{id} 59m"))
}

/// What every shell goes through once its prompt shows `canhazgpu_prompt`: reserve,
/// release elsewhere, expiry, exit. `idle_prompt` recognises the prompt line of a shell
/// that holds nothing after a command that succeeded.
fn lifecycle(store: &TestStore, tmux: &Tmux, fish: bool, idle_prompt: &dyn Fn(&str) -> bool) {
    let show = |key: &str| {
        if fish {
            format!(
                "set -q CUDA_VISIBLE_DEVICES; and echo \"{key}=$CUDA_VISIBLE_DEVICES\"; \
                 or echo {key}=unset"
            )
        } else {
            format!("echo \"{key}=${{CUDA_VISIBLE_DEVICES-unset}}\"")
        }
    };
    tmux.send("canhazgpu reserve --duration 1h");
    tmux.wait("the prompt segment", |_| hour_segment(&tmux.last_line(), 0));
    tmux.send("echo \"cvd=$CUDA_VISIBLE_DEVICES\"");
    assert_eq!(tmux.wait_line("cvd="), "0");

    // Another shell of the same user releases everything; the next prompt notices.
    let run = store.plain(&["release"]);
    assert!(run.success(), "{}", run.describe());
    tmux.enter_until("the release to be noticed", |screen| {
        screen.contains("released elsewhere") && idle_prompt(&tmux.last_line())
    });
    tmux.send(&show("after_release"));
    assert_eq!(tmux.wait_line("after_release="), "unset");

    // A reservation that expires behind the shell's back.
    tmux.send("canhazgpu reserve --duration 2s");
    tmux.wait("the short reservation", |screen| {
        screen.contains("Reserved 1 GPU(s) [1] for 2s")
    });
    tmux.enter_until("the expiry to be noticed", |screen| {
        screen.contains("GPU(s) [1] expired") && idle_prompt(&tmux.last_line())
    });
    tmux.send(&show("after_expiry"));
    assert_eq!(tmux.wait_line("after_expiry="), "unset");

    // Exit releases, through the exit hook (the state file applies no liveness rule).
    tmux.send("canhazgpu reserve --duration 1h");
    tmux.wait("the last reservation", |screen| {
        screen.contains("Reserved 1 GPU(s)") && screen.matches("Reserved").count() == 3
    });
    assert_eq!(store.reserved_in_state_file().len(), 1);
    tmux.send("exit");
    common::wait_for(
        std::time::Duration::from_secs(15),
        "the shell to exit",
        || (!tmux.alive()).then_some(()),
    );
    assert!(
        store.reserved_in_state_file().is_empty(),
        "{}",
        store.status()
    );
}

#[test]
fn bash_lifecycle_with_prompt_segment() {
    let store = store(2);
    let tmux = Tmux::start(&store, "bash", &["bash", "--norc", "--noprofile", "-i"]);
    tmux.send(r#"PS1='[$?|$(canhazgpu_prompt)]> '"#);
    tmux.send(r#"eval "$(canhazgpu init bash)""#);
    tmux.send("false");
    // $? reaches PS1 through the hook.
    tmux.wait("the status in the prompt", |_| tmux.last_line() == "[1|]>");
    lifecycle(&store, &tmux, false, &|line| line == "[0|]>");
}

#[test]
fn zsh_lifecycle_with_right_prompt() {
    let store = store(2);
    let tmux = Tmux::start(&store, "zsh", &["zsh", "-f", "-i"]);
    tmux.send("setopt prompt_subst no_prompt_sp; PS1='[%?]> '; RPROMPT='$(canhazgpu_prompt)'");
    tmux.send(r#"eval "$(canhazgpu init zsh)""#);
    tmux.send("false");
    tmux.wait("the status in the prompt", |_| tmux.last_line() == "[1]>");
    lifecycle(&store, &tmux, false, &|line| line == "[0]>");
}

#[test]
fn fish_lifecycle_with_right_prompt() {
    let store = store(2);
    let tmux = Tmux::start(&store, "fish", &["fish", "--no-config", "-i"]);
    tmux.send(
        "function fish_prompt; echo -n \"[$status]> \"; end; \
         function fish_right_prompt; canhazgpu_prompt; end",
    );
    tmux.send("canhazgpu init fish | source");
    tmux.send("false");
    tmux.wait("the status in the prompt", |_| tmux.last_line() == "[1]>");
    lifecycle(&store, &tmux, true, &|line| line == "[0]>");
}

#[test]
fn tmux_panes_do_not_inherit_a_shells_gpus() {
    let store = store(2);
    let socket = store.home.path().join("tmux-inherited");
    // A shell that holds a GPU starts a tmux server, which keeps that shell's
    // environment for every pane it creates.
    let holder_script = format!(
        r#"eval "$(canhazgpu init bash)"
canhazgpu reserve --duration 1h
tmux -S '{}' -f /dev/null new-session -d -x 160 -y 50 bash --norc --noprofile -i
echo started=1
read -r x
"#,
        socket.display()
    );
    let mut holder = store
        .clean_cmd("bash")
        .env("TERM", "xterm-256color")
        .args(["--norc", "--noprofile", "-c", &holder_script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the holder shell");
    let tmux = Tmux::adopt(socket);
    let mut lines = BufReader::new(holder.stdout.take().expect("stdout")).lines();
    assert_eq!(
        lines.next().and_then(|l| l.ok()).as_deref(),
        Some("started=1")
    );

    tmux.send("echo \"before=${CUDA_VISIBLE_DEVICES-unset}\"");
    assert_eq!(tmux.wait_line("before="), "0", "the pane inherited the GPU");
    tmux.send(r#"eval "$(canhazgpu init bash)""#);
    tmux.wait("the note about inherited variables", |screen| {
        screen.contains("not an ancestor")
    });
    tmux.send("echo \"after=${CUDA_VISIBLE_DEVICES-unset}|${CANHAZGPU_GPUS-unset}\"");
    assert_eq!(tmux.wait_line("after="), "unset|unset");
    tmux.send("echo \"prompt=[$(canhazgpu_prompt)]\"");
    assert_eq!(tmux.wait_line("prompt="), "[]");
    // The holder's reservation is untouched, and ends with the holder.
    assert_eq!(store.busy_ids(), vec![0]);
    holder
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"\n")
        .expect("let the holder go");
    let out = holder.wait_with_output().expect("holder exits");
    assert!(out.status.success());
    assert!(store.reserved_in_state_file().is_empty());
}

#[test]
fn tab_completes_through_the_function() {
    let store = TestStore::new(Backend::File);
    // bash: nothing installed; init registers a loader of the generated completion.
    let bash = Tmux::start(&store, "bash-tab", &["bash", "--norc", "--noprofile", "-i"]);
    bash.send(r#"eval "$(canhazgpu init bash)"; PS1='> '"#);
    bash.send("echo ready=1");
    bash.wait_line("ready=");
    bash.type_keys(&["canhazgpu res", "Tab"]);
    bash.wait("bash to complete `reserve`", |_| {
        bash.last_line() == "> canhazgpu reserve"
    });
    // zsh: init after compinit registers a completion for the function.
    let zsh = Tmux::start(&store, "zsh-tab", &["zsh", "-f", "-i"]);
    zsh.send("autoload -Uz compinit; compinit -u -D; PS1='> '");
    zsh.send(r#"eval "$(canhazgpu init zsh)""#);
    zsh.send("echo ready=1");
    zsh.wait_line("ready=");
    zsh.type_keys(&["canhazgpu rese", "Tab"]);
    zsh.wait("zsh to complete `reserve`", |_| {
        zsh.last_line() == "> canhazgpu reserve"
    });
}

/// The prompt drawn right after the line `marker` (a command's own output), once drawn.
fn prompt_after(tmux: &Tmux, marker: &str, is_prompt: impl Fn(&str) -> bool) -> String {
    let screen = tmux.wait(&format!("a prompt after {marker:?}"), |screen| {
        let Some(at) = screen.lines().position(|line| line == marker) else {
            return false;
        };
        screen
            .lines()
            .skip(at + 1)
            .any(|line| is_prompt(line.trim_end()))
    });
    let at = screen.lines().position(|line| line == marker).unwrap_or(0);
    screen
        .lines()
        .skip(at + 1)
        .find(|line| is_prompt(line.trim_end()))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

#[test]
fn bash_preexec_loaded_first_keeps_its_first_preexec_and_the_hook_runs_before_prompts() {
    let store = store(1);
    let standin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/bash-preexec-standin.bash");
    let tmux = Tmux::start(&store, "preexec", &["bash", "--norc", "--noprofile", "-i"]);
    // As a .bashrc would: bash-preexec, then canhazgpu, then a prompt builder that
    // uses bash-preexec's precmd_functions.
    let rc = [
        format!("source '{}'", standin.display()),
        r#"eval "$(canhazgpu init bash)""#.to_string(),
        r#"preexec() { echo "preexec saw: $1"; }"#.to_string(),
        r#"builder() { PS1="[${CUDA_VISIBLE_DEVICES-unset}]> "; }"#.to_string(),
        "precmd_functions+=(builder)".to_string(),
    ];
    tmux.send(&rc.join("; "));
    tmux.wait("the builder's prompt", |_| tmux.last_line() == "[unset]>");
    tmux.send("echo first");
    tmux.wait("the first preexec", |screen| {
        screen.contains("preexec saw: echo first")
    });
    tmux.send("canhazgpu reserve");
    tmux.wait("the prompt with the GPU", |_| tmux.last_line() == "[0]>");
    tmux.send("command canhazgpu release >/dev/null; echo step=released");
    let prompt = prompt_after(&tmux, "step=released", |line| line.starts_with('['));
    assert_eq!(prompt, "[unset]>", "{}", tmux.screen());
}

#[test]
fn fish_prompt_builders_hooked_before_the_init_see_the_current_state() {
    let store = store(1);
    let tmux = Tmux::start(&store, "fish-builder", &["fish", "--no-config", "-i"]);
    let config = [
        "function builder --on-event fish_prompt",
        "set -g seen (set -q CUDA_VISIBLE_DEVICES; and echo $CUDA_VISIBLE_DEVICES; or echo unset)",
        "end",
        "function fish_prompt; echo -n \"[$seen]> \"; end",
    ];
    tmux.send(&config.join("; "));
    tmux.send("canhazgpu init fish | source");
    tmux.send("canhazgpu reserve");
    tmux.wait("the prompt with the GPU", |_| tmux.last_line() == "[0]>");
    tmux.send("command canhazgpu release >/dev/null; echo step=released");
    let prompt = prompt_after(&tmux, "step=released", |line| line.starts_with('['));
    assert_eq!(prompt, "[unset]>", "{}", tmux.screen());
}

#[test]
fn jobs_shows_a_suspended_run_as_the_command_typed() {
    // zsh shows no text at all for a job stopped inside any function.
    for (name, argv) in [
        ("bash-jobs", vec!["bash", "--norc", "--noprofile", "-i"]),
        ("fish-jobs", vec!["fish", "--no-config", "-i"]),
    ] {
        let store = store(1);
        let tmux = Tmux::start(&store, name, &argv);
        let init = if name.starts_with("fish") {
            "canhazgpu init fish | source"
        } else {
            r#"eval "$(canhazgpu init bash)""#
        };
        tmux.send(init);
        tmux.send("canhazgpu run -- sleep 30");
        tmux.wait("the run to start", |screen| {
            screen.contains("running on GPU(s) [0]")
        });
        tmux.type_keys(&["C-z"]);
        tmux.send("jobs");
        let screen = tmux.wait("the job list", |screen| {
            screen.lines().any(|line| {
                line.to_lowercase().contains("stopped")
                    && line.ends_with("canhazgpu run -- sleep 30")
            })
        });
        assert!(!screen.contains("\"$@\""), "{name}: {screen}");
        assert!(!screen.contains("$argv"), "{name}: {screen}");
    }
}
