//! Marker files that let a shell's prompt hook notice, without running anything, that its
//! reservation was released from somewhere else.
//!
//! A shell that reserves gets an empty file named after its process identity in a private
//! per-user directory, and `CANHAZGPU_LEASE` names it. Whoever releases that reservation
//! (the shell itself, `canhazgpu release` in another shell of the same user) deletes the
//! file; the hook only tests that the file exists, a `stat` inside the shell, and asks the
//! store only when it is gone. Expiry needs no marker: the hook compares the exported
//! expiry with the shell's clock. A marker is only a hint: when one is missing for any
//! other reason the hook asks the store once and the binary puts the marker back.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::liveness::ProcessView;
use crate::model::Owner;

const PRIVATE_DIR_MODE: u32 = 0o700;

/// Where markers may live, preferred first: the XDG runtime directory (private, cleared
/// at logout), the standard runtime directory, then a private directory in /tmp. Removal
/// tries all of them, since two shells of one user need not agree on XDG_RUNTIME_DIR.
fn candidate_dirs() -> Vec<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let mut dirs = Vec::new();
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && runtime.is_absolute()
    {
        dirs.push(runtime.join("canhazgpu"));
    }
    for dir in [
        PathBuf::from(format!("/run/user/{uid}/canhazgpu")),
        PathBuf::from(format!("/tmp/canhazgpu-{uid}")),
    ] {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// A directory only this user can write, creating it if its parent exists. Anything
/// else at that path (another user's directory, a symlink, a loose mode) is not used.
fn private_dir(dir: &Path) -> Option<PathBuf> {
    if !dir.parent()?.is_dir() {
        return None;
    }
    match fs::DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    let meta = fs::symlink_metadata(dir).ok()?;
    let mine = meta.uid() == nix::unistd::getuid().as_raw();
    let private = meta.permissions().mode() & 0o077 == 0;
    (meta.is_dir() && mine && private).then(|| dir.to_path_buf())
}

fn file_name(owner: &Owner) -> String {
    // The boot id keeps a marker left in /tmp from another boot from matching a new
    // process that happens to get the same pid and start time.
    let boot: String = owner
        .boot_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    format!("{}-{}-{boot}", owner.pid, owner.start_ticks)
}

/// Creates the marker for `owner`; `None` when no private directory is available, in
/// which case the hook relies on expiry alone.
pub fn create(owner: &Owner) -> Option<PathBuf> {
    let dir = candidate_dirs().iter().find_map(|dir| private_dir(dir))?;
    let path = dir.join(file_name(owner));
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .ok()?;
    prune(&dir);
    Some(path)
}

/// Deletes `owner`'s marker wherever it is, so that its shell's next prompt looks.
pub fn remove(owner: &Owner) {
    let name = file_name(owner);
    for dir in candidate_dirs() {
        // Missing files and foreign directories are the normal case here.
        let _ = fs::remove_file(dir.join(&name));
    }
}

/// Deletes markers of shells that are gone (killed shells run no exit hook).
fn prune(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let view = crate::liveness::ProcView::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !alive(name, &view) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn alive(name: &str, view: &dyn ProcessView) -> bool {
    let mut parts = name.splitn(3, '-');
    let (Some(pid), Some(ticks), Some(boot)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(pid), Ok(ticks)) = (pid.parse::<u32>(), ticks.parse::<u64>()) else {
        return false;
    };
    view.boot_id().starts_with(boot) && view.start_ticks(pid) == Some(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct View;
    impl ProcessView for View {
        fn boot_id(&self) -> &str {
            "abcdef0123456789"
        }
        fn pid_ns(&self) -> u64 {
            1
        }
        fn start_ticks(&self, pid: u32) -> Option<u64> {
            (pid == 7).then_some(70)
        }
    }

    #[test]
    fn marker_names_identify_a_live_process() {
        let owner = Owner {
            pid: 7,
            start_ticks: 70,
            boot_id: "abcdef01-2345-6789".into(),
            pid_ns: 1,
        };
        let name = file_name(&owner);
        assert_eq!(name, "7-70-abcdef01");
        assert!(alive(&name, &View));
        assert!(!alive("7-71-abcdef01", &View));
        assert!(!alive("8-70-abcdef01", &View));
        assert!(!alive("7-70-ffffffff", &View));
        assert!(!alive("junk", &View));
    }

    #[test]
    fn private_dir_refuses_loose_modes() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("m");
        assert_eq!(private_dir(&dir), Some(dir.clone()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(private_dir(&dir), None);
        let link = base.path().join("l");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert_eq!(private_dir(&link), None);
        assert_eq!(private_dir(&base.path().join("no/such/dir")), None);
    }
}
