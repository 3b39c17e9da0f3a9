//! Compiles a stub C library of tests/support with gcc, the same way for every stub.
//!
//! The stub helpers beside it (nvml.rs, amd_smi.rs) use it as `super::build_stub`, so
//! whoever includes them declares it next to them, once:
//! `#[path = "../support/build_stub.rs"] mod build_stub;`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `source` (a file of tests/support) with `defines` into
/// `<build root>/<root>/<dir>/<library>`; returns the directory. Panics if the compiler
/// fails.
///
/// Other test binaries may be loading or building the same file right now: the build
/// goes to a private name, then is renamed, which replaces the file atomically and leaves
/// anyone holding the old one undisturbed.
pub fn compile(source: &str, root: &str, dir: &str, library: &str, defines: &[&str]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(source);
    let dir = build_root().join(root).join(dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let partial = dir.join(format!("{library}.{}.tmp", std::process::id()));
    let compiler = std::env::var_os("CC").unwrap_or_else(|| "gcc".into());
    let output = Command::new(&compiler)
        .args(["-shared", "-fPIC", "-O1"])
        .args(defines)
        .arg("-o")
        .arg(&partial)
        .arg(&source)
        .arg("-ldl")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} to build {}: {e}",
                compiler.to_string_lossy(),
                source.display()
            )
        });
    if !output.status.success() {
        let _ = fs::remove_file(&partial);
        panic!(
            "building {} failed ({}):\n{}",
            source.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let built = dir.join(library);
    fs::rename(&partial, &built).unwrap_or_else(|e| panic!("installing {}: {e}", built.display()));
    dir
}

/// Where stubs are built: under target/, not /tmp, which is mounted noexec on some hosts
/// and then refuses dlopen.
fn build_root() -> PathBuf {
    // Cargo only sets CARGO_TARGET_TMPDIR for integration tests; unit tests live in
    // target/<profile>/deps, so build next to that.
    if let Some(dir) = option_env!("CARGO_TARGET_TMPDIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("locating the test executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable has no parent directory")
        .to_path_buf()
}
