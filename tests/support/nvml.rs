//! Builds the fake `libnvidia-ml.so.1` (nvml_stub.c, next to this file) for tests.
//!
//! Include it with `#[path = "support/nvml.rs"] mod nvml;` from an integration
//! test or with a `#[path]` relative to a module in `src/`. The stub's
//! configuration format is documented at the top of `nvml_stub.c`.
//!
//! Two ways to point code at a stub:
//! * [`stub_library_dir`]: one shared build per variant; select a scenario by
//!   setting [`CONFIG_ENV`] to a config file. Suits child processes, which get
//!   their own environment (and `LD_LIBRARY_PATH` pointing at the directory).
//! * [`install_stub`]: a private copy of the library with its config beside
//!   it. Suits tests that load the library in-process, where threads of one
//!   test binary cannot each have their own environment variable.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// Declared beside this module by whoever includes it (see build_stub.rs).
use super::build_stub;

/// The file name NVML is loaded by.
pub const LIBRARY_NAME: &str = "libnvidia-ml.so.1";

/// Environment variable naming the stub's configuration file.
pub const CONFIG_ENV: &str = "CANHAZGPU_NVML_STUB";

/// Configuration file the stub falls back to, in the directory holding it.
pub const CONFIG_FILE_NAME: &str = "nvml_stub.conf";

/// Which NVML generation the stub imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Every entry point nvml-wrapper uses for probing (R510 and later).
    Current,
    /// Without `nvmlDeviceGetComputeRunningProcesses_v3`.
    NoV3,
    /// Like an R470 driver: without the `_v3` process query and without
    /// `nvmlDeviceGetMemoryInfo_v2`.
    R470,
    /// Without `nvmlShutdown`, as a broken or foreign library would be.
    NoShutdown,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Current,
        Variant::NoV3,
        Variant::R470,
        Variant::NoShutdown,
    ];

    fn slot(self) -> usize {
        self as usize
    }

    fn dir_name(self) -> &'static str {
        match self {
            Variant::Current => "current",
            Variant::NoV3 => "no-v3",
            Variant::R470 => "r470",
            Variant::NoShutdown => "no-shutdown",
        }
    }

    fn defines(self) -> &'static [&'static str] {
        match self {
            Variant::Current => &[],
            Variant::NoV3 => &["-DNO_V3"],
            Variant::R470 => &["-DNO_V3", "-DNO_MEMORY_V2"],
            Variant::NoShutdown => &["-DNO_SHUTDOWN"],
        }
    }
}

/// Directory containing `libnvidia-ml.so.1` built for `variant`.
///
/// Compiled at most once per test process; panics if the compiler fails.
pub fn stub_library_dir(variant: Variant) -> PathBuf {
    static BUILT: [OnceLock<PathBuf>; Variant::ALL.len()] =
        [const { OnceLock::new() }; Variant::ALL.len()];
    BUILT[variant.slot()]
        .get_or_init(|| compile(variant))
        .clone()
}

/// Path of `libnvidia-ml.so.1` built for `variant`.
pub fn stub_library_file(variant: Variant) -> PathBuf {
    stub_library_dir(variant).join(LIBRARY_NAME)
}

/// Copies the stub into `dir` with `config` beside it as [`CONFIG_FILE_NAME`];
/// returns the path of the copy.
///
/// A copy, not a link: the dynamic loader shares one instance (and thus the
/// stub's global state) among paths that resolve to the same file.
pub fn install_stub(variant: Variant, dir: &Path, config: &str) -> PathBuf {
    let library = dir.join(LIBRARY_NAME);
    fs::copy(stub_library_file(variant), &library)
        .unwrap_or_else(|e| panic!("copying the NVML stub to {}: {e}", library.display()));
    write_config(dir, config);
    library
}

/// Replaces the configuration an installed stub reads at its next init.
pub fn write_config(dir: &Path, config: &str) {
    let path = dir.join(CONFIG_FILE_NAME);
    fs::write(&path, config).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn compile(variant: Variant) -> PathBuf {
    build_stub::compile(
        "nvml_stub.c",
        "nvml-stub",
        variant.dir_name(),
        LIBRARY_NAME,
        variant.defines(),
    )
}
