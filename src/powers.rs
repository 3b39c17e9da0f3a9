//! Who may reinitialize the pool and take back GPUs that others hold: root, the users
//! and groups named in the configuration's `admins`, and, for an embedded store, the
//! owner of its directory (so that a private store needs no root).
//!
//! This prevents accidents, not malice: the embedded store's directory stays writable by
//! every user (see README's trust model), and anyone who edits it by hand can do anything.

use crate::account::name_of;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::{DirectoryOwner, Store};

/// The account asking, as the checks need it.
pub struct Caller {
    pub uid: u32,
    pub name: String,
    /// Its primary and supplementary groups.
    pub gids: Vec<u32>,
}

impl Caller {
    /// This process's real user and its groups.
    pub fn this_process() -> Caller {
        let uid = nix::unistd::getuid();
        let mut gids: Vec<u32> = nix::unistd::getgroups()
            .unwrap_or_default()
            .into_iter()
            .map(|gid| gid.as_raw())
            .collect();
        gids.push(nix::unistd::getgid().as_raw());
        Caller {
            uid: uid.as_raw(),
            name: crate::commands::current_user(),
            gids,
        }
    }
}

/// Whether `caller` is an admin. `group_id` resolves a group name; `store_owner` is the
/// uid that owns the embedded store's directory (`None` for Redis, or a directory not
/// created yet, which whoever creates it will own).
pub fn is_admin(
    caller: &Caller,
    admins: &[String],
    group_id: impl Fn(&str) -> Option<u32>,
    store_owner: Option<u32>,
) -> bool {
    if caller.uid == 0 || store_owner == Some(caller.uid) {
        return true;
    }
    admins.iter().any(|entry| match entry.strip_prefix('@') {
        Some(group) => group_id(group).is_some_and(|gid| caller.gids.contains(&gid)),
        None => *entry == caller.name,
    })
}

/// Refuses `action` unless this process's user is an admin of `store`.
pub fn require_admin(config: &Config, store: &Store, action: &str) -> Result<()> {
    let caller = Caller::this_process();
    let owner = match store.directory_owner() {
        DirectoryOwner::Uid(uid) => Some(uid),
        // Whoever may create it will own it: a private store needs no root.
        DirectoryOwner::NotCreated => Some(caller.uid),
        DirectoryOwner::NoDirectory => None,
    };
    let group_id = |name: &str| {
        nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .map(|group| group.gid.as_raw())
    };
    if is_admin(&caller, &config.admins, group_id, owner) {
        return Ok(());
    }
    let owner = match owner {
        Some(uid) => format!(", or the owner of {} ({})", store.describe(), name_of(uid)),
        None => String::new(),
    };
    Err(Error::failure(format!(
        "only an administrator may {action}: \
         root, a user or @group named in `admins` in {}{owner}; \
         {} is none of them, so ask one of them",
        config.shown_path(),
        caller.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uid: u32, name: &str, gids: &[u32]) -> Caller {
        Caller {
            uid,
            name: name.into(),
            gids: gids.to_vec(),
        }
    }

    fn groups(name: &str) -> Option<u32> {
        match name {
            "gpu-admins" => Some(500),
            "staff" => Some(50),
            _ => None,
        }
    }

    #[test]
    fn root_named_users_group_members_and_store_owners_are_admins() {
        let admins = ["alice".to_string(), "@gpu-admins".to_string()];
        let bob = caller(1001, "bob", &[1001]);
        assert!(is_admin(&caller(0, "root", &[0]), &[], groups, None));
        assert!(is_admin(
            &caller(1000, "alice", &[1000]),
            &admins,
            groups,
            None
        ));
        assert!(!is_admin(&bob, &admins, groups, None));
        assert!(is_admin(
            &caller(1001, "bob", &[1001, 500]),
            &admins,
            groups,
            None
        ));
        assert!(!is_admin(
            &caller(1001, "bob", &[1001, 50]),
            &admins,
            groups,
            None
        ));
        assert!(is_admin(&bob, &[], groups, Some(1001)));
        assert!(!is_admin(&bob, &[], groups, Some(0)));
        // A group that does not exist admits nobody; a user named like it is not it.
        let ghost = ["@ghosts".to_string()];
        assert!(!is_admin(&caller(7, "ghosts", &[7]), &ghost, groups, None));
    }
}
