//! What every end-to-end test needs: a private store (embedded or a real redis-server of
//! its own), the real binary, and polling with deadlines instead of sleeps.
#![allow(dead_code)]

pub mod browser;
pub mod gpus;
pub mod http;
pub mod jobs;
pub mod proxy;
pub mod shell;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use tempfile::TempDir;

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_canhazgpu"))
}

/// Says that a test did not check what it is for, where the run's output shows it: the
/// test harness hides what a passing test prints with `eprintln!`, so this writes to the
/// process's stderr directly. Use it for every early return (`if !root { return }`).
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let line = format!("SKIPPED {test}: {why}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Whether this process may act as other users (setpriv); says the test was skipped if not.
pub fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        skip(test, "needs root to act as another user");
    }
    root
}

/// Polls `check` until it returns `Some` or `deadline` passes.
pub fn wait_for<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A redis-server on a unix socket in its own temp dir, stopped on drop.
pub struct RedisServer {
    child: Child,
    pub dir: TempDir,
    /// Also listening on this loopback TCP port (for a replica to follow it).
    tcp_port: Option<u16>,
    /// The password `cli` authenticates with, once one is set.
    password: Option<String>,
    /// The certificates of a server whose TCP port speaks TLS (see [`tls`]).
    tls: Option<PathBuf>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with_port(None, None)
    }

    /// One that also listens on a loopback TCP port, which replicas need.
    pub fn start_tcp() -> RedisServer {
        Self::start_with_port(Some(free_port()), None)
    }

    /// One whose loopback TCP port speaks TLS only, with the server certificate made by
    /// [`tls::TestCerts`] in `certs`.
    pub fn start_tls(certs: &Path) -> RedisServer {
        Self::start_with_port(Some(free_port()), Some(certs.to_path_buf()))
    }

    fn start_with_port(tcp_port: Option<u16>, tls: Option<PathBuf>) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let child = Self::spawn(dir.path(), tcp_port, tls.as_deref());
        let server = RedisServer {
            child,
            dir,
            tcp_port,
            password: None,
            tls,
        };
        server.wait_until_listening();
        server
    }

    /// `redis://[USERINFO@]127.0.0.1:PORT/0`, `rediss://` for TLS; `userinfo` is
    /// `user:password`, or empty.
    pub fn tcp_url(&self, userinfo: &str) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let at = if userinfo.is_empty() { "" } else { "@" };
        format!("{scheme}://{userinfo}{at}127.0.0.1:{}/0", self.tcp_port())
    }

    /// Stops the server; its data is gone (it runs without persistence).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts it again, empty, on the same socket.
    pub fn start_again(&mut self) {
        let _ = std::fs::remove_file(self.dir.path().join("dump.rdb"));
        self.child = Self::spawn(self.dir.path(), self.tcp_port, self.tls.as_deref());
        self.password = None;
        self.wait_until_listening();
    }

    /// The first half of a planned restart: saves the data and stops.
    pub fn save_and_stop(&mut self) {
        assert_eq!(self.cli(&["SAVE"]), "OK");
        self.stop();
    }

    /// The second half: starts again with the data saved.
    pub fn start_with_saved_data(&mut self) {
        self.child = Self::spawn(self.dir.path(), self.tcp_port, self.tls.as_deref());
        self.wait_until_listening();
        wait_for(
            Duration::from_secs(10),
            "redis-server to load its data",
            || {
                self.cli(&["INFO", "persistence"])
                    .contains("loading:0")
                    .then_some(())
            },
        );
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal redis-server");
    }

    /// Requires `password` from now on, as `CONFIG SET requirepass` does on a live server.
    pub fn require_password(&mut self, password: &str) {
        assert_eq!(self.cli(&["CONFIG", "SET", "requirepass", password]), "OK");
        self.password = Some(password.to_string());
    }

    pub fn tcp_port(&self) -> u16 {
        self.tcp_port.expect("a server started with start_tcp")
    }

    fn wait_until_listening(&self) {
        let socket = self.socket();
        wait_for(Duration::from_secs(10), "redis-server to listen", || {
            std::os::unix::net::UnixStream::connect(&socket).ok()
        });
    }

    fn spawn(dir: &Path, tcp_port: Option<u16>, tls: Option<&Path>) -> Child {
        let socket = dir.join("redis.sock");
        let port = tcp_port.map_or_else(|| "0".to_string(), |port| port.to_string());
        let mut command = StdCommand::new("redis-server");
        match tls {
            None => command.args(["--port", &port]),
            Some(certs) => command
                .args(["--port", "0", "--tls-port", &port])
                .arg("--tls-cert-file")
                .arg(certs.join(tls::SERVER_CERT))
                .arg("--tls-key-file")
                .arg(certs.join(tls::SERVER_KEY))
                .arg("--tls-ca-cert-file")
                .arg(certs.join(tls::CA_CERT))
                .args(["--tls-auth-clients", "no"]),
        };
        command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .args(["--unixsocketperm", "777", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for the tests (apt-get install redis-server)")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Runs redis-cli against this server and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cli = StdCommand::new("redis-cli");
        cli.arg("-s").arg(self.socket());
        if let Some(password) = &self.password {
            cli.args(["--no-auth-warning", "-a", password]);
        }
        let out = cli.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }
}

/// A loopback TCP port nobody listens on right now (the server binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    File,
    Redis,
}

pub const BACKENDS: [Backend; 2] = [Backend::File, Backend::Redis];

/// One private pool: an empty embedded store directory or a fresh redis-server.
pub struct TestStore {
    pub backend: Backend,
    pub home: TempDir,
    redis: Option<RedisServer>,
}

impl TestStore {
    pub fn new(backend: Backend) -> TestStore {
        let home = tempfile::tempdir().expect("temp dir");
        let redis = (backend == Backend::Redis).then(RedisServer::start);
        TestStore {
            backend,
            home,
            redis,
        }
    }

    pub fn url(&self) -> String {
        match &self.redis {
            Some(redis) => redis.url(),
            None => format!("file://{}", self.state_dir().display()),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home.path().join("state")
    }

    pub fn redis(&self) -> &RedisServer {
        self.redis.as_ref().expect("a Redis-backed test store")
    }

    pub fn redis_mut(&mut self) -> &mut RedisServer {
        self.redis.as_mut().expect("a Redis-backed test store")
    }

    /// An empty config file, so that no host configuration leaks into tests.
    pub fn config_path(&self) -> PathBuf {
        let path = self.home.path().join("config.toml");
        if !path.exists() {
            std::fs::write(&path, "").expect("write config");
        }
        path
    }

    /// Replaces the configuration file every command of this store reads; returns its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The binary with this store selected and a clean environment.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    pub fn std_cmd(&self) -> StdCommand {
        let mut cmd = StdCommand::new(binary());
        self.select(&mut cmd);
        cmd
    }

    /// Gives `cmd` (a wrapper such as nohup, setpriv or a shell that runs the binary) the
    /// environment that selects this store.
    pub fn select<'a>(&self, cmd: &'a mut StdCommand) -> &'a mut StdCommand {
        cmd.env("CANHAZGPU_STORE", self.url())
            .env("CANHAZGPU_CONFIG", self.config_path())
            .env_remove("CUDA_VISIBLE_DEVICES")
            .env_remove("HIP_VISIBLE_DEVICES")
            .env_remove("ROCR_VISIBLE_DEVICES")
            .env_remove("CANHAZGPU_NVML_LIBRARY")
            .env_remove("CANHAZGPU_AMD_SMI_LIBRARY")
            .env_remove("ROCM_PATH")
    }

    pub fn admin(&self, gpus: u32) {
        self.cmd()
            .args(["admin", "--gpus", &gpus.to_string()])
            .assert()
            .success();
    }

    pub fn status(&self) -> String {
        let out = self.cmd().arg("status").output().expect("run status");
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The status lines of GPUs shown IN USE, by id.
    pub fn busy_ids(&self) -> Vec<u32> {
        parse_busy(&self.status())
    }
}

pub fn parse_busy(status: &str) -> Vec<u32> {
    status
        .lines()
        .filter(|line| line.contains(": IN USE"))
        .filter_map(|line| line.strip_prefix("GPU ")?.split(':').next()?.parse().ok())
        .collect()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

impl TestStore {
    /// The JSON of one GPU exactly as stored (upstream's format in both stores).
    pub fn raw_slot(&self, id: u32) -> serde_json::Value {
        match self.backend {
            Backend::File => self.raw_state()["gpus"][id as usize].clone(),
            Backend::Redis => {
                let text = self.redis().cli(&["GET", &format!("canhazgpu:gpu:{id}")]);
                if text.is_empty() {
                    serde_json::json!({})
                } else {
                    serde_json::from_str(&text).expect("GPU JSON in Redis")
                }
            }
        }
    }

    /// Writes one GPU's JSON behind the tool's back, as another client would.
    pub fn set_raw_slot(&self, id: u32, value: serde_json::Value) {
        match self.backend {
            Backend::File => {
                let mut state = self.raw_state();
                state["gpus"][id as usize] = value;
                let path = self.state_dir().join("state.json");
                std::fs::write(path, state.to_string()).expect("write state.json");
            }
            Backend::Redis => {
                let key = format!("canhazgpu:gpu:{id}");
                assert_eq!(self.redis().cli(&["SET", &key, &value.to_string()]), "OK");
            }
        }
    }

    pub fn raw_state(&self) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.state_dir().join("state.json")).expect("state.json");
        serde_json::from_str(&text).expect("state.json is JSON")
    }

    /// Everything the store holds, for "nothing changed" checks.
    pub fn dump(&self) -> String {
        match self.backend {
            Backend::File => std::fs::read_to_string(self.state_dir().join("state.json"))
                .unwrap_or_else(|_| "<no state file>".into()),
            Backend::Redis => {
                let mut keys: Vec<String> = self
                    .redis()
                    .cli(&["KEYS", "canhazgpu:*"])
                    .lines()
                    .map(str::to_string)
                    .collect();
                keys.sort();
                keys.iter()
                    .map(|key| {
                        let kind = self.redis().cli(&["TYPE", key]);
                        let value = if kind == "string" {
                            self.redis().cli(&["GET", key])
                        } else {
                            self.redis().cli(&["ZRANGE", key, "0", "-1"])
                        };
                        format!("{key}={value}\n")
                    })
                    .collect()
            }
        }
    }
}

/// The text of every usage history file of an embedded store (one per month, and the
/// single file of earlier versions).
pub fn history_files(state_dir: &Path) -> Vec<String> {
    std::fs::read_dir(state_dir)
        .expect("state directory")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?;
            (name.starts_with("history") && name.ends_with(".jsonl"))
                .then(|| std::fs::read_to_string(&path).expect("history file"))
        })
        .collect()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Collects a child's stderr lines as they come, so a test can wait for a message.
pub struct LineWatcher {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl LineWatcher {
    pub fn new(stream: impl std::io::Read + Send + 'static) -> LineWatcher {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stream)).map_while(Result::ok)
            {
                sink.lock().expect("line sink").push(line);
            }
        });
        LineWatcher { lines }
    }

    /// Waits until a line containing `fragment` has arrived, and returns it.
    pub fn wait_for_line(&self, fragment: &str, deadline: Duration) -> String {
        wait_for(deadline, &format!("a line containing {fragment:?}"), || {
            self.lines
                .lock()
                .expect("lines")
                .iter()
                .find(|l| l.contains(fragment))
                .cloned()
        })
    }

    pub fn all(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }
}

/// The parent of `pid`, from `/proc/<pid>/stat`.
pub fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    let after_name = &stat[stat.rfind(')').expect("a command name") + 1..];
    after_name
        .split_whitespace()
        .nth(1)
        .and_then(|ppid| ppid.parse().ok())
        .expect("a parent pid")
}
