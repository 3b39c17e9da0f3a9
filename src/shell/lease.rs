//! Marker files that let a shell's prompt hook notice, without running anything, that its
//! reservation was released from somewhere else.
//!
//! A shell that reserves gets an empty file named after its process identity, and
//! `CANHAZGPU_LEASE` names it. Whoever releases that reservation (the shell itself,
//! `canhazgpu release` in another terminal, cron, an administrator reclaiming it) deletes
//! the file; the hook only tests that the file exists, a `stat` inside the shell, and
//! asks the store only when it is gone. Expiry needs no marker: the hook compares the
//! exported expiry with the shell's clock. A marker is only a hint: when one is missing
//! for any other reason the hook asks the store once and the binary puts the marker back.
//!
//! The marker's directory depends on nothing but the holder's uid (`/tmp/canhazgpu-UID`),
//! never on the environment, so a release finds it whatever the releaser's
//! `XDG_RUNTIME_DIR` or `TMPDIR`, and a shell started with `su` from the holder can
//! still test it: the directory is `0711`, so others may look up a name they know but
//! not list or change anything.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::liveness::{self, OwnerState, ProcessView};
use crate::model::Owner;

/// Searchable by everyone (a shell after `su` tests its parent's marker by name), not
/// listable, writable by the owner only.
const MARKER_DIR_MODE: u32 = 0o711;

/// Where markers of `uid`'s shells may be: the current place first, then where versions
/// before it put them (the default runtime directory), which removal still cleans.
fn dirs_of(uid: u32) -> [PathBuf; 2] {
    [
        PathBuf::from(format!("/tmp/canhazgpu-{uid}")),
        PathBuf::from(format!("/run/user/{uid}/canhazgpu")),
    ]
}

fn my_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// The directory for this user's markers, created if needed. Anything else at that path
/// (another user's directory, a symlink, a mode others can write) is not used.
fn marker_dir() -> Option<PathBuf> {
    let [dir, _] = dirs_of(my_uid());
    match fs::DirBuilder::new().mode(MARKER_DIR_MODE).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    let meta = fs::symlink_metadata(&dir).ok()?;
    if !meta.is_dir() || meta.uid() != my_uid() || meta.permissions().mode() & 0o022 != 0 {
        return None;
    }
    // A umask applied to the creation (077 would shut out a shell after `su`).
    if meta.permissions().mode() & 0o777 != MARKER_DIR_MODE {
        fs::set_permissions(&dir, fs::Permissions::from_mode(MARKER_DIR_MODE)).ok()?;
    }
    Some(dir)
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

/// The uid `owner` runs as, when it is alive and visible from here.
fn uid_of(owner: &Owner, view: &dyn ProcessView) -> Option<u32> {
    if !matches!(liveness::owner_state(owner, view), OwnerState::Alive) {
        return None;
    }
    fs::metadata(format!("/proc/{}", owner.pid))
        .ok()
        .map(|meta| meta.uid())
}

/// Creates the marker for `owner`; `None` when `owner` runs as another user (its marker
/// is in that user's directory, which only it can write) or no directory is usable, in
/// which case the hook relies on expiry and a slow poll.
pub fn create(owner: &Owner, view: &dyn ProcessView) -> Option<PathBuf> {
    if uid_of(owner, view) != Some(my_uid()) {
        return None;
    }
    let dir = marker_dir()?;
    let path = dir.join(file_name(owner));
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .ok()?;
    prune(&dir, view);
    Some(path)
}

/// Deletes the markers of `owners` (each once, however often named), so that their
/// shells' next prompts look, and then those of shells that are gone.
pub fn remove<'a>(owners: impl IntoIterator<Item = &'a Owner>, view: &dyn ProcessView) {
    let mut removed: Vec<&Owner> = Vec::new();
    for owner in owners {
        if !removed.contains(&owner) {
            remove_marker(owner, view);
            removed.push(owner);
        }
    }
    if !removed.is_empty() {
        for dir in dirs_of(my_uid()) {
            prune(&dir, view);
        }
    }
}

/// Deletes `owner`'s marker. The directory is the one of the uid `owner` runs as,
/// whoever asks (root reclaiming a GPU, say).
fn remove_marker(owner: &Owner, view: &dyn ProcessView) {
    let name = file_name(owner);
    let mut uids = vec![my_uid()];
    if let Some(uid) = uid_of(owner, view).filter(|uid| *uid != my_uid()) {
        uids.push(uid);
    }
    for uid in uids {
        for dir in dirs_of(uid) {
            // Missing files and foreign directories are the normal case here.
            let _ = fs::remove_file(dir.join(&name));
        }
    }
}

/// Deletes markers of shells that are gone (killed shells run no exit hook).
fn prune(dir: &Path, view: &dyn ProcessView) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !alive(name, view) {
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
    fn markers_of_this_user_are_made_and_removed_whatever_the_environment() {
        let view = crate::liveness::ProcView::new();
        let me = view.owner(std::process::id()).unwrap();
        let path = create(&me, &view).unwrap();
        assert_eq!(path, dirs_of(my_uid())[0].join(file_name(&me)));
        let mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, MARKER_DIR_MODE);
        assert!(path.exists());
        remove([&me, &me], &view);
        assert!(!path.exists());
        // A process that is not this user's gets no marker from us.
        let init = view.owner(1).unwrap();
        if uid_of(&init, &view) != Some(my_uid()) {
            assert_eq!(create(&init, &view), None);
        }
    }
}
