//! Real shells against a test store: a clean environment with the binary on PATH,
//! scripted sessions whose `key=value` output lines the test reads back, and tmux
//! sessions driven with send-keys and capture-pane.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{TestStore, binary};

/// How long a tmux screen may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(15);

pub const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

pub fn bin_dir() -> PathBuf {
    binary()
        .parent()
        .expect("the binary lives in a directory")
        .to_path_buf()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sh {
    Bash,
    Zsh,
    Fish,
}

pub const SHELLS: [Sh; 3] = [Sh::Bash, Sh::Zsh, Sh::Fish];

impl Sh {
    pub fn program(self) -> &'static str {
        match self {
            Sh::Bash => "bash",
            Sh::Zsh => "zsh",
            Sh::Fish => "fish",
        }
    }

    /// The line a user puts in the shell's startup file.
    pub fn init_line(self) -> &'static str {
        match self {
            Sh::Bash => r#"eval "$(canhazgpu init bash)""#,
            Sh::Zsh => r#"eval "$(canhazgpu init zsh)""#,
            Sh::Fish => "canhazgpu init fish | source",
        }
    }

    /// Arguments that run `script` without startup files, as strict as the shell allows.
    pub fn script_args(self, script: &str) -> Vec<String> {
        let flags: &[&str] = match self {
            Sh::Bash => &["--norc", "--noprofile", "-euo", "pipefail", "-c"],
            Sh::Zsh => &["-f", "-euo", "pipefail", "-c"],
            Sh::Fish => &["--no-config", "-c"],
        };
        flags
            .iter()
            .map(|s| s.to_string())
            .chain([script.to_string()])
            .collect()
    }

    /// Arguments for an interactive shell without startup files.
    pub fn interactive_args(self) -> Vec<&'static str> {
        match self {
            Sh::Bash => vec!["bash", "--norc", "--noprofile", "-i"],
            Sh::Zsh => vec!["zsh", "-f", "-i"],
            Sh::Fish => vec!["fish", "--no-config", "-i"],
        }
    }
}

/// The script for `sh`: `posix` for bash and zsh, `fish` for fish, with `INIT` replaced
/// by the shell's init line.
pub fn scripted(sh: Sh, posix: &str, fish: &str) -> String {
    let text = if sh == Sh::Fish { fish } else { posix };
    text.replace("INIT", sh.init_line())
}

/// What a scripted session printed.
pub struct Session {
    pub output: Output,
    pub stdout: String,
    pub stderr: String,
}

impl Session {
    /// The value of the last `key=value` line on stdout.
    pub fn get(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.stdout
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix(&prefix))
    }

    /// Like [`Session::get`], failing the test with the whole session when missing.
    pub fn value(&self, key: &str) -> &str {
        self.get(key).unwrap_or_else(|| {
            panic!(
                "no `{key}=` line in the session output\n{}",
                self.describe()
            )
        })
    }

    pub fn values(&self) -> HashMap<&str, &str> {
        self.stdout
            .lines()
            .filter_map(|line| line.split_once('='))
            .collect()
    }

    pub fn success(&self) -> bool {
        self.output.status.success()
    }

    /// Asserts the session ended well and returns it.
    pub fn ok(self) -> Session {
        assert!(self.success(), "session failed\n{}", self.describe());
        self
    }

    pub fn describe(&self) -> String {
        format!(
            "status: {}\n--- stdout\n{}--- stderr\n{}",
            self.output.status, self.stdout, self.stderr
        )
    }
}

impl TestStore {
    /// A private runtime directory, where the shell integration keeps its markers.
    pub fn runtime_dir(&self) -> PathBuf {
        let dir = self.home.path().join("run");
        if !dir.exists() {
            std::fs::create_dir_all(&dir).expect("create runtime dir");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .expect("chmod runtime dir");
        }
        dir
    }

    /// `program` with nothing of the caller's environment but what a login would give:
    /// the binary on PATH, a private HOME and runtime directory, this store.
    pub fn clean_cmd(&self, program: &str) -> Command {
        let home = self.home.path();
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", format!("{}:{SYSTEM_PATH}", bin_dir().display()))
            .env("HOME", home)
            .env("USER", "tester")
            .env("LANG", "C.UTF-8")
            .env("TERM", "dumb")
            .env("XDG_RUNTIME_DIR", self.runtime_dir())
            .env("XDG_CONFIG_HOME", home.join("xdg-config"))
            .env("XDG_DATA_HOME", home.join("xdg-data"))
            .env("XDG_CACHE_HOME", home.join("xdg-cache"))
            .env("CANHAZGPU_STORE", self.url())
            .env("CANHAZGPU_CONFIG", self.config_path());
        cmd
    }

    /// Runs `script` in `sh` (strict mode) and returns what it printed.
    pub fn session(&self, sh: Sh, script: &str) -> Session {
        self.session_with(sh, script, &[])
    }

    pub fn session_with(&self, sh: Sh, script: &str, env: &[(&str, &str)]) -> Session {
        let mut cmd = self.clean_cmd(sh.program());
        cmd.args(sh.script_args(script));
        for (key, value) in env {
            cmd.env(key, value);
        }
        finish(cmd.output().expect("run the shell"))
    }

    /// The binary as another shell of the same user would run it.
    pub fn plain(&self, args: &[&str]) -> Session {
        let mut cmd = self.clean_cmd(&binary().to_string_lossy());
        cmd.args(args);
        finish(cmd.output().expect("run canhazgpu"))
    }

    /// Ids the embedded store's file records as reserved, read without running the
    /// binary: unlike `status`, this applies no liveness rule, so it shows whether a
    /// reservation was really released or would only be swept later.
    pub fn reserved_in_state_file(&self) -> Vec<u32> {
        let path = self.state_dir().join("state.json");
        let text = std::fs::read_to_string(&path).expect("state.json");
        let state: serde_json::Value = serde_json::from_str(&text).expect("state.json is JSON");
        state["gpus"]
            .as_array()
            .expect("gpus array")
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.get("user").is_some())
            .map(|(id, _)| id as u32)
            .collect()
    }
}

pub fn finish(output: Output) -> Session {
    Session {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        output,
    }
}

/// A tmux server of its own (its socket in the test's directory), killed on drop.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Starts a server whose one window runs `argv`, with the store's clean environment.
    pub fn start(store: &TestStore, name: &str, argv: &[&str]) -> Tmux {
        Tmux::start_with(store, name, argv, |_| {})
    }

    pub fn start_with(
        store: &TestStore,
        name: &str,
        argv: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Tmux {
        let socket = store.home.path().join(format!("tmux-{name}"));
        let mut cmd = store.clean_cmd("tmux");
        cmd.env("TERM", "xterm-256color")
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "50",
            ])
            .args(argv);
        adjust(&mut cmd);
        let out = cmd.output().expect("tmux must be installed for the tests");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmux { socket }
    }

    /// Takes charge of a server something else started on `socket` (killed on drop).
    pub fn adopt(socket: PathBuf) -> Tmux {
        Tmux { socket }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Types `line` and presses Enter.
    pub fn send(&self, line: &str) {
        assert!(self.tmux(&["send-keys", "-l", line]).status.success());
        self.enter();
    }

    /// Sends keys as tmux names them (`Tab`, `C-c`), text as it is.
    pub fn type_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success());
    }

    pub fn enter(&self) {
        assert!(self.tmux(&["send-keys", "Enter"]).status.success());
    }

    /// The pane's text, scrollback included; empty once the session is gone.
    pub fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-J", "-S", "-200"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `check`, and returns it.
    pub fn wait(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < end,
                "timed out after {WAIT:?} waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Presses Enter until the screen satisfies `check` (a prompt hook only runs when
    /// a prompt is drawn), and returns it.
    pub fn enter_until(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < end,
                "timed out after {WAIT:?} waiting for {what}; the screen:\n{screen}"
            );
            self.enter();
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits for a line of output that starts with `prefix` and returns the rest of it.
    pub fn wait_line(&self, prefix: &str) -> String {
        let screen = self.wait(&format!("a line starting with {prefix:?}"), |screen| {
            screen.lines().any(|line| line.starts_with(prefix))
        });
        let line = screen
            .lines()
            .rev()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_default();
        line[prefix.len()..].trim_end().to_string()
    }

    /// The last non-empty line: the prompt, once the shell waits for input.
    pub fn last_line(&self) -> String {
        self.screen()
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or_default()
            .trim_end()
            .to_string()
    }

    /// Whether the session (and with it the server) is still there.
    pub fn alive(&self) -> bool {
        self.tmux(&["has-session"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}
