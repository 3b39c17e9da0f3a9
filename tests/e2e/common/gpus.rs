//! Helpers of the tests that run the binary against stub GPU libraries
//! (tests/support/nvml_stub.c, tests/support/amd_smi_stub.c): scenarios, their output,
//! and real processes for the stubs to report.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use tempfile::TempDir;

use super::shell::{Session, Sh};
use super::{BACKENDS, TestStore, path_str, wait_for};
use crate::amd_smi_stub as amd;
use crate::nvml_stub::{self as nvml, CONFIG_ENV, Variant};

/// A uid with a passwd entry on every Linux host.
pub const NOBODY: u32 = 65534;
/// A pid no kernel hands out (pid_max is at most 2^22).
pub const NO_SUCH_PID: u32 = u32::MAX - 1;

pub fn each_backend(test: impl Fn(&TestStore)) {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        eprintln!("--- {backend:?}");
        test(&store);
    }
}

/// A vendor's stub library of tests/support, as a scenario uses it: where the shared
/// build of a variant is, and the variable naming the configuration file it reads.
pub trait StubLibrary {
    type Variant: Copy;
    /// The variant of [`StubScenario::new`]: the library as a current driver has it.
    const CURRENT: Self::Variant;
    const CONFIG_ENV: &'static str;
    fn library_dir(variant: Self::Variant) -> PathBuf;
}

/// The fake libnvidia-ml.so.1 (tests/support/nvml.rs).
pub enum Nvml {}

impl StubLibrary for Nvml {
    type Variant = Variant;
    const CURRENT: Variant = Variant::Current;
    const CONFIG_ENV: &'static str = CONFIG_ENV;
    fn library_dir(variant: Variant) -> PathBuf {
        nvml::stub_library_dir(variant)
    }
}

/// The fake libamd_smi.so (tests/support/amd_smi.rs).
pub enum Amd {}

impl StubLibrary for Amd {
    type Variant = amd::Variant;
    const CURRENT: amd::Variant = amd::Variant::Current;
    const CONFIG_ENV: &'static str = amd::CONFIG_ENV;
    fn library_dir(variant: amd::Variant) -> PathBuf {
        amd::stub_library_dir(variant)
    }
}

/// A stub scenario: the shared stub build of one variant, found through
/// LD_LIBRARY_PATH, reading its own configuration file.
pub struct StubScenario<L: StubLibrary> {
    dir: TempDir,
    variant: L::Variant,
}

pub type NvmlStub = StubScenario<Nvml>;
pub type AmdStub = StubScenario<Amd>;

impl<L: StubLibrary> StubScenario<L> {
    pub fn new(config: &str) -> Self {
        Self::of(L::CURRENT, config)
    }

    pub fn of(variant: L::Variant, config: &str) -> Self {
        let stub = StubScenario {
            dir: tempfile::tempdir().expect("temp dir"),
            variant,
        };
        stub.set(config);
        stub
    }

    pub fn set(&self, config: &str) {
        std::fs::write(self.config(), config).expect("writing the stub config");
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("stub.conf")
    }

    pub fn library_dir(&self) -> PathBuf {
        L::library_dir(self.variant)
    }

    pub fn command(&self, store: &TestStore) -> Command {
        let mut cmd = store.std_cmd();
        cmd.env("LD_LIBRARY_PATH", self.library_dir())
            .env(L::CONFIG_ENV, self.config());
        cmd
    }

    /// `script` in a shell of `sh` (see [`TestStore::session_with`]) that finds this stub.
    pub fn session(&self, store: &TestStore, sh: Sh, script: &str) -> Session {
        let (library, config) = (self.library_dir(), self.config());
        let env = [
            ("LD_LIBRARY_PATH", path_str(&library)),
            (L::CONFIG_ENV, path_str(&config)),
        ];
        store.session_with(sh, script, &env)
    }

    pub fn run(&self, store: &TestStore, args: &[&str]) -> Out {
        Out::of(
            self.command(store)
                .args(args)
                .output()
                .expect("running canhazgpu"),
        )
    }
}

impl AmdStub {
    /// The binary on a host with both vendors' libraries (and GPUs, if configured).
    pub fn with_nvml(&self, nvml_stub: &NvmlStub, store: &TestStore) -> Command {
        let mut cmd = nvml_stub.command(store);
        let both = format!(
            "{}:{}",
            nvml::stub_library_dir(Variant::Current).display(),
            self.library_dir().display()
        );
        cmd.env("LD_LIBRARY_PATH", both)
            .env(amd::CONFIG_ENV, self.config());
        cmd
    }
}

/// Whether the loader cache (/etc/ld.so.cache) names `library`, as it does on a host with
/// the library installed; true when the cache cannot be read.
pub fn in_loader_cache(library: &str) -> bool {
    std::fs::read("/etc/ld.so.cache")
        .map(|cache| {
            cache
                .windows(library.len())
                .any(|w| w == library.as_bytes())
        })
        .unwrap_or(true)
}

/// How often glibc's loader searched for `library` during `status` (the `find library=`
/// lines of its LD_DEBUG=libs trace), with LD_LIBRARY_PATH set to `library_path`, or
/// unset.
pub fn loader_searches(store: &TestStore, library_path: Option<&Path>, library: &str) -> usize {
    let mut cmd = store.cmd();
    cmd.env_remove("LD_LIBRARY_PATH")
        .env("LD_DEBUG", "libs")
        .arg("status");
    if let Some(dir) = library_path {
        cmd.env("LD_LIBRARY_PATH", dir);
    }
    let out = cmd.output().expect("running canhazgpu");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|line| line.contains(&format!("find library={library}")))
        .count()
}

/// Commands on a host without any GPU library.
pub fn without_gpu_libraries(store: &TestStore, args: &[&str]) -> Out {
    let empty = tempfile::tempdir().expect("temp dir");
    let out = store
        .std_cmd()
        .env("LD_LIBRARY_PATH", empty.path())
        .env_remove(CONFIG_ENV)
        .args(args)
        .output()
        .expect("running canhazgpu");
    Out::of(out)
}

pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn of(out: Output) -> Out {
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn ok(self) -> Out {
        assert_eq!(self.code, Some(0), "failed: {}{}", self.stdout, self.stderr);
        self
    }

    pub fn line(&self, index: usize) -> &str {
        self.stdout
            .lines()
            .nth(index)
            .unwrap_or_else(|| panic!("no line {index} in\n{}", self.stdout))
    }

    pub fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|line| line.contains("warning"))
            .collect()
    }
}

pub fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A real process for the stub to report, as another user where the tests may
/// switch users (root), else as ourselves; killed on drop.
pub struct Sleeper {
    child: Child,
    pub user: String,
}

impl Sleeper {
    pub fn as_other_user() -> Sleeper {
        if !is_root() {
            eprintln!("not root: the 'other user' process runs as this user");
            return Sleeper::as_me();
        }
        let child = Command::new("setpriv")
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .args(["--clear-groups", "--", "sleep", "60"])
            .spawn()
            .expect("starting setpriv");
        let proc_dir = format!("/proc/{}", child.id());
        // /proc/<pid> belongs to the new user only once sleep has been executed.
        wait_for(Duration::from_secs(10), "setpriv to become nobody", || {
            let uid = std::fs::metadata(&proc_dir).ok()?.uid();
            (uid == NOBODY).then_some(())
        });
        let user = nix::unistd::User::from_uid(NOBODY.into())
            .unwrap()
            .map_or_else(|| NOBODY.to_string(), |user| user.name);
        Sleeper { child, user }
    }

    pub fn as_me() -> Sleeper {
        let child = Command::new("sleep").arg("60").spawn().expect("sleep");
        Sleeper { child, user: me() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
