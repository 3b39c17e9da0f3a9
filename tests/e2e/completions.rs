//! The committed completion scripts in `completions/` are what the binary generates.

use crate::common;

use std::path::PathBuf;

/// (shell, committed file)
const FILES: [(&str, &str); 3] = [
    ("bash", "completions/canhazgpu.bash"),
    ("zsh", "completions/_canhazgpu"),
    ("fish", "completions/canhazgpu.fish"),
];

#[test]
fn committed_completions_are_fresh() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // With CANHAZGPU_BLESS=1 the files are rewritten instead of compared.
    let bless = std::env::var_os("CANHAZGPU_BLESS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (shell, file) in FILES {
        let out = std::process::Command::new(common::binary())
            .args(["completions", shell])
            .env_remove("CANHAZGPU_STORE")
            .env("CANHAZGPU_CONFIG", "/nonexistent/config.toml")
            .output()
            .expect("run canhazgpu completions");
        assert!(
            out.status.success(),
            "completions {shell} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = root.join(file);
        if bless {
            std::fs::write(&path, &out.stdout).expect("write completions");
            continue;
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        if committed != out.stdout {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "stale completion files {stale:?}: the command line changed. Regenerate them with\n  \
         CANHAZGPU_BLESS=1 cargo test --test e2e completions::\nand commit the result"
    );
}

#[test]
fn completions_need_no_store_and_no_config() {
    let out = std::process::Command::new(common::binary())
        .args(["completions", "zsh"])
        .env("CANHAZGPU_STORE", "redis://192.0.2.1:1/0")
        .env("CANHAZGPU_CONFIG", "/nonexistent/config.toml")
        .output()
        .expect("run canhazgpu completions");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("#compdef canhazgpu"), "{text}");
    assert!(
        !text.contains("owner-pid"),
        "hidden flags must not be offered"
    );
}
