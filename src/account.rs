//! Account names of uids, from the password database: what messages call a user.
//! Low in the module tree, so that the stores and the admin checks can use it too.

/// The account name of `uid`, or the number when it has none: containers often run uids
/// without a passwd entry, and the number still identifies.
pub fn name_of(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name_and_unknown_uids_keep_their_number() {
        assert_eq!(name_of(0), "root");
        // The highest uid is reserved as "no uid" (-1), so it has no passwd entry.
        assert_eq!(name_of(u32::MAX), u32::MAX.to_string());
    }
}
