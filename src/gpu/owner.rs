//! Naming the user behind a GPU process, so canhazgpu can say whom to ask.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;

use nix::unistd::{Uid, User};

/// Caches uid → name for one probe: one user often runs many processes, and
/// the lookup may go to the network (LDAP, NIS).
#[derive(Default)]
pub(super) struct Owners {
    names: HashMap<u32, Option<String>>,
}

impl Owners {
    /// Owner of `/proc/<pid>`: the process's effective uid, except that the
    /// kernel shows root for processes that made themselves non-dumpable,
    /// which GPU jobs have no reason to do.
    pub(super) fn of(&mut self, pid: u32) -> Option<String> {
        let uid = fs::metadata(format!("/proc/{pid}")).ok()?.uid();
        self.names
            .entry(uid)
            .or_insert_with(|| {
                User::from_uid(Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|user| user.name)
            })
            .clone()
    }
}
