//! Builds the fake `libamd_smi.so` (amd_smi_stub.c, next to this file) for tests.
//!
//! Include it with `#[path = "support/amd_smi.rs"] mod amd_smi;` from an integration
//! test or with a `#[path]` relative to a module in `src/`. The stub's configuration
//! format is documented at the top of `amd_smi_stub.c`; like the NVML stub (nvml.rs),
//! it is found through [`stub_library_dir`] and [`CONFIG_ENV`] by child processes, or
//! installed as a private copy with its configuration beside it ([`install_stub`]) by
//! tests that load it in-process.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// Declared beside this module by whoever includes it (see build_stub.rs).
use super::build_stub;

/// The file name AMD SMI is loaded by.
pub const LIBRARY_NAME: &str = "libamd_smi.so";

/// Environment variable naming the stub's configuration file.
pub const CONFIG_ENV: &str = "CANHAZGPU_AMD_SMI_STUB";

/// Configuration file the stub falls back to, in the directory holding it.
pub const CONFIG_FILE_NAME: &str = "amd_smi_stub.conf";

/// Which AMD SMI release the stub imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// ROCm 6.4 and later: process records with 256-byte strings.
    Current,
    /// ROCm 6.1 to 6.3: process records with 32-byte strings.
    ShortRecords,
    /// Before ROCm 6.1: a list of pids and `amdsmi_get_gpu_process_info`.
    ProcessPids,
    /// Without `amdsmi_shut_down`, as a broken or foreign library would be.
    NoShutdown,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::Current,
        Variant::ShortRecords,
        Variant::ProcessPids,
        Variant::NoShutdown,
    ];

    fn dir_name(self) -> &'static str {
        match self {
            Variant::Current => "current",
            Variant::ShortRecords => "short-records",
            Variant::ProcessPids => "process-pids",
            Variant::NoShutdown => "no-shutdown",
        }
    }

    fn defines(self) -> &'static [&'static str] {
        match self {
            Variant::Current => &[],
            Variant::ShortRecords => &["-DSHORT_RECORDS"],
            Variant::ProcessPids => &["-DPROCESS_PIDS", "-DSHORT_RECORDS"],
            Variant::NoShutdown => &["-DNO_SHUTDOWN"],
        }
    }
}

/// Directory containing `libamd_smi.so` built for `variant`; compiled at most once per
/// test process.
pub fn stub_library_dir(variant: Variant) -> PathBuf {
    static BUILT: [OnceLock<PathBuf>; Variant::ALL.len()] =
        [const { OnceLock::new() }; Variant::ALL.len()];
    BUILT[variant as usize]
        .get_or_init(|| {
            build_stub::compile(
                "amd_smi_stub.c",
                "amd-smi-stub",
                variant.dir_name(),
                LIBRARY_NAME,
                variant.defines(),
            )
        })
        .clone()
}

/// Copies the stub into `dir` with `config` beside it; returns the path of the copy (a
/// copy, not a link: the loader shares one instance among paths to the same file).
pub fn install_stub(variant: Variant, dir: &Path, config: &str) -> PathBuf {
    let library = dir.join(LIBRARY_NAME);
    fs::copy(stub_library_dir(variant).join(LIBRARY_NAME), &library)
        .unwrap_or_else(|e| panic!("copying the AMD SMI stub to {}: {e}", library.display()));
    write_config(dir, config);
    library
}

/// Replaces the configuration an installed stub reads at its next init.
pub fn write_config(dir: &Path, config: &str) {
    let path = dir.join(CONFIG_FILE_NAME);
    fs::write(&path, config).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
