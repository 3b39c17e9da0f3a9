//! The end-to-end suite, as one test binary: every area is a module, so the crate's
//! tests link once instead of once per file (on 2 cores linking was most of CI's time).
//!
//! Run one area with a filter, e.g. `cargo test --test e2e shell_sessions::`.

// The tests print freely (the harness captures it); the rule is for the binary.
#![allow(clippy::disallowed_macros)]

#[path = "../support/amd_smi.rs"]
mod amd_smi_stub;
#[path = "../support/build_stub.rs"]
mod build_stub;
mod common;
#[path = "../support/nvml.rs"]
mod nvml_stub;

mod amd;
mod bad_input;
mod clocks;
mod closed_stdout;
mod completions;
mod concurrency;
mod config_file;
mod core;
mod faults;
mod lab;
mod man_pages;
mod mig;
mod multi_user;
mod nvml;
mod nvml_probe;
mod queue;
mod real_driver;
mod redis_faults;
mod reporting;
mod request_options;
mod shell_sessions;
mod shell_setups;
mod shell_tmux;
mod signals_and_zombies;
mod stress;
mod upgrades;
mod web;
