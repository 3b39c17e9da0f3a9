//! The configuration file: keys checked, unknown ones warned about, values applied.

use crate::common;

use common::TestStore;
use predicates::prelude::*;

#[test]
fn config_keys_are_checked_and_unknown_ones_warned_about() {
    let store = TestStore::new(common::Backend::File);
    store.admin(1);
    store.write_config("allocation_policy = \"sticky\"\nbogus_key = 3\n");
    store
        .cmd()
        .arg("status")
        .assert()
        .success()
        .stderr(predicate::str::contains("unknown key `bogus_key`"));
    store.write_config("allocation_policy = \"random\"\n");
    store
        .cmd()
        .arg("status")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "`allocation_policy` must be \"lru\" or \"sticky\"",
        ));
    // The environment beats the file for the store.
    let elsewhere = store.home.path().join("elsewhere");
    store.write_config(&format!("store = \"file://{}\"\n", elsewhere.display()));
    store.cmd().arg("status").assert().success();
    store
        .cmd()
        .env_remove("CANHAZGPU_STORE")
        .arg("status")
        .assert()
        .failure()
        .stderr(predicate::str::contains(elsewhere.to_str().unwrap()));
}
