//! Measures what liveness pays per process look-up: one read of /proc/<pid>/stat against
//! sysinfo's refresh of that one pid (docs/DESIGN-NOTES.md records the result).
//! Run: cargo run --release --example process_facts_cost

use std::time::Instant;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

const ROUNDS: u32 = 20_000;

fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

fn main() {
    let pid = std::process::id();
    let started = Instant::now();
    let mut sum = 0;
    for _ in 0..ROUNDS {
        sum += proc_stat(pid).map_or(0, |(_, ticks)| ticks);
    }
    let proc_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);

    // A fresh System per look-up is what a one-shot command pays.
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let mut system = System::new().unwrap();
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[Pid::from_u32(pid)]),
            true,
            ProcessRefreshKind::nothing(),
        );
        sum += system.process(Pid::from_u32(pid)).map_or(0, |p| p.start_time());
    }
    let fresh_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);

    // One System kept for all look-ups, as a long-lived view would.
    let mut system = System::new().unwrap();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[Pid::from_u32(pid)]),
            true,
            ProcessRefreshKind::nothing(),
        );
        sum += system.process(Pid::from_u32(pid)).map_or(0, |p| p.start_time());
    }
    let kept_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
    let start = system.process(Pid::from_u32(pid)).map(|p| (p.start_time(), p.status()));
    println!("checksum {sum}");
    println!("/proc/<pid>/stat read+parse: {proc_us:.2} us per look-up, start {:?}", proc_stat(pid));
    println!("sysinfo, new System each:    {fresh_us:.2} us per look-up");
    println!("sysinfo, one System kept:    {kept_us:.2} us per look-up, start {start:?}");
}
