//! The committed manual pages in `man/` are what the binary generates, and the internal
//! subcommand that generates them stays out of sight.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every `*.1` file in `dir`, by name.
fn pages_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut pages = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return pages;
    };
    for entry in entries {
        let path = entry.expect("read man dir entry").path();
        if path.extension().is_some_and(|ext| ext == "1") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            pages.insert(name, std::fs::read(&path).expect("read page"));
        }
    }
    pages
}

fn generate(dir: &Path) {
    let out = Command::new(common::binary())
        .arg("generate-man")
        .arg(dir)
        // Like `completions`: no store and no configuration are needed or read.
        .env("CANHAZGPU_STORE", "redis://192.0.2.1:1/0")
        .env("CANHAZGPU_CONFIG", "/nonexistent/config.toml")
        .output()
        .expect("run canhazgpu generate-man");
    assert!(
        out.status.success(),
        "generate-man failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn committed_man_pages_are_fresh() {
    let committed_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man");
    let fresh_dir = tempfile::tempdir().unwrap();
    generate(fresh_dir.path());
    let fresh = pages_in(fresh_dir.path());
    assert!(fresh.contains_key("canhazgpu.1"), "{:?}", fresh.keys());
    assert!(fresh.contains_key("canhazgpu-run.1"), "{:?}", fresh.keys());

    // With CANHAZGPU_BLESS=1 the directory is rewritten instead of compared.
    if std::env::var_os("CANHAZGPU_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&committed_dir).unwrap();
        for name in pages_in(&committed_dir).keys() {
            std::fs::remove_file(committed_dir.join(name)).unwrap();
        }
        for (name, text) in &fresh {
            std::fs::write(committed_dir.join(name), text).unwrap();
        }
        return;
    }
    let committed = pages_in(&committed_dir);
    let mut stale: Vec<&String> = fresh
        .iter()
        .filter(|(name, text)| committed.get(*name) != Some(text))
        .map(|(name, _)| name)
        .collect();
    stale.extend(committed.keys().filter(|name| !fresh.contains_key(*name)));
    assert!(
        stale.is_empty(),
        "stale manual pages {stale:?} in man/: the command line changed. Regenerate them with\n  \
         CANHAZGPU_BLESS=1 cargo test --test e2e man_pages::\nand commit the result"
    );
}

#[test]
fn the_generator_is_hidden_from_help_and_completions() {
    let help = Command::new(common::binary())
        .arg("--help")
        .output()
        .expect("run canhazgpu --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("completions"), "{help}");
    assert!(!help.contains("generate-man"), "{help}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for file in ["canhazgpu.bash", "_canhazgpu", "canhazgpu.fish"] {
        let text = std::fs::read_to_string(root.join("completions").join(file)).unwrap();
        assert!(text.contains("reserve"), "{file}");
        assert!(!text.contains("generate-man"), "{file} offers generate-man");
    }
}

#[test]
fn an_unwritable_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let out = Command::new(common::binary())
        .arg("generate-man")
        .arg(blocker.join("man"))
        .output()
        .expect("run canhazgpu generate-man");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write the manual pages to") && stderr.contains("file/man"),
        "{stderr}"
    );
}
