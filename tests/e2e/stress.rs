//! Load: many clients on one pool of 8 GPUs, on both stores, with and without `kill -9`.
//!
//! Every client runs a few operations chosen by a seeded PRNG: `run` of a short job
//! (without waiting, with `--wait`, with `--wait=2s`, by count or by `--gpu-ids`),
//! `reserve` then `release --gpu-ids` of exactly what it got (all clients share one Unix
//! user, so a plain `release` would give back the others' GPUs too), and `status` /
//! `queue` looks. Every job logs the GPUs it was given and when it started and ended,
//! from inside the job (`date +%s%N`); a reserve logs its hold from the test's side,
//! between `reserve` returning and `release` starting, which lies inside the real hold.
//!
//! Asserted:
//! - no two logged intervals on one GPU overlap;
//! - no lost wake-up: every `--wait` was served, every `--wait=2s` was served or gave up
//!   after really waiting (>= 1 s: the deadline has whole-second resolution), and no
//!   process ran longer than the plan's hang limit;
//! - the only errors are the busy message ("Not enough GPUs available") for requests
//!   that do not wait and the give-up message for `--wait=2s`; any other stderr line
//!   (a warning, a panic, another error) fails the test;
//! - `queue --json` never lists more entries than there are waiting clients alive;
//! - afterwards the queue is empty, every GPU is available and `run --gpus 8` succeeds.
//!
//! The kill variants send SIGKILL at random points (after a random delay, while queued,
//! while the job runs) to whole `run` process groups (wrapper and job), to the wrapper
//! alone, to the job alone, to waiting and non-waiting `reserve`, to `release` and to
//! `status`/`queue`. After each kill the very next `status --json` must show none of the
//! killed operation's GPUs as held by it (runs: the owner is dead, so the next command
//! frees them), except manual reservations, which by design live until their expiry
//! without an owner process: those are found by their `--note` and released by id, as a
//! user would. A job whose wrapper alone was killed keeps running while its GPUs are
//! freed (documented in README: the reservation belongs to the wrapper), so its
//! intervals are left out of the overlap check; how often such a job really shared a GPU
//! is printed.
//!
//! Heavier runs: `cargo test --test e2e stress:: -- --ignored --nocapture`.
//! `CANHAZGPU_STRESS_SEED=N` replays a plan (the timing still differs from run to run).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use common::{BACKENDS, Backend, TestStore};

const POOL: u32 = 8;
/// `--wait=TIMEOUT` of the clients that wait with a limit.
const WAIT_LIMIT: &str = "2s";
/// The least a `--wait=2s` may wait before giving up: its deadline is a whole second.
const WAIT_LIMIT_FLOOR: Duration = Duration::from_secs(1);
/// How often a client looks at a process it means to kill.
const POLL: Duration = Duration::from_millis(5);

/// The job every `run` starts: `$1` log, `$2` operation token, `$3` seconds to work.
/// `$$` is the job's pid, which the test needs to kill the job alone.
const JOB: &str = concat!(
    r#"s=$(date +%s%N); echo "S $2 $$ $CUDA_VISIBLE_DEVICES $s" >> "$1";"#,
    r#" sleep "$3"; e=$(date +%s%N); echo "E $2 $e" >> "$1""#
);

#[derive(Clone, Copy, Debug)]
struct Plan {
    clients: usize,
    ops_per_client: usize,
    /// Percentage of operations that get a `kill -9`.
    kill_percent: u64,
    /// A process alive this long is stuck: a lost wake-up, or a hang.
    hang_after: Duration,
}

const CI: Plan = Plan {
    clients: 64,
    ops_per_client: 5,
    kill_percent: 0,
    // Below the waiters' 30 s queue heartbeat, so that a waiter served only by its
    // heartbeat (a lost wake-up) is caught; legitimate waits here take a few seconds.
    hang_after: Duration::from_secs(20),
};

const CI_KILL: Plan = Plan {
    kill_percent: 35,
    ..CI
};

const HEAVY: Plan = Plan {
    clients: 96,
    ops_per_client: 15,
    kill_percent: 0,
    hang_after: Duration::from_secs(60),
};

const HEAVY_KILL: Plan = Plan {
    kill_percent: 30,
    ..HEAVY
};

#[test]
fn sixty_four_clients_on_eight_gpus_never_share_one_and_every_waiter_is_served() {
    load(CI);
}

#[test]
fn sixty_four_clients_with_kill_9_leave_only_live_holders_and_no_dead_waiters() {
    load(CI_KILL);
}

/// `cargo test --test e2e stress:: -- --ignored --nocapture` (about a minute on 2 cores).
#[test]
#[ignore = "heavy: run with --ignored"]
fn heavy_load() {
    load(HEAVY);
}

/// `cargo test --test e2e stress:: -- --ignored --nocapture` (about a minute on 2 cores).
#[test]
#[ignore = "heavy: run with --ignored"]
fn heavy_load_with_kill_9() {
    load(HEAVY_KILL);
}

/// splitmix64: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high - low + 1))
    }
}

fn seed() -> u64 {
    std::env::var("CANHAZGPU_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_ca11_ab1e)
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

#[derive(Clone, Debug, PartialEq)]
enum Want {
    Count(u32),
    Ids(Vec<u32>),
}

impl Want {
    fn args(&self) -> Vec<String> {
        match self {
            Want::Count(n) => vec!["--gpus".into(), n.to_string()],
            Want::Ids(ids) => vec!["--gpu-ids".into(), join(ids)],
        }
    }

    fn accepts(&self, got: &[u32]) -> bool {
        let distinct: BTreeSet<_> = got.iter().collect();
        let sane = distinct.len() == got.len() && got.iter().all(|&id| id < POOL);
        sane && match self {
            Want::Count(n) => got.len() == *n as usize,
            Want::Ids(ids) => {
                let wanted: BTreeSet<_> = ids.iter().collect();
                wanted == distinct
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum WaitMode {
    No,
    Forever,
    Limited,
}

impl WaitMode {
    fn args(self) -> Vec<String> {
        match self {
            WaitMode::No => vec![],
            WaitMode::Forever => vec!["--wait".into()],
            WaitMode::Limited => vec![format!("--wait={WAIT_LIMIT}")],
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Look {
    Status,
    StatusJson,
    QueueJson,
}

#[derive(Clone, Debug)]
enum Op {
    Run {
        want: Want,
        wait: WaitMode,
        work: Duration,
    },
    Reserve {
        want: Want,
        wait: WaitMode,
        hold: Duration,
    },
    Look(Look),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// The `run` wrapper and its job together (`kill -9 -PGID`).
    Group,
    /// The process the test started, alone: a `run` wrapper, `reserve`, `release`, `status`.
    Process,
    /// The job of a `run`, alone.
    Job,
}

#[derive(Clone, Copy, Debug)]
enum Moment {
    AfterSpawn(Duration),
    /// Once the process says it waits in the queue.
    WhileQueued(Duration),
    /// Once the job of a `run` has logged its start.
    WhileJobRuns(Duration),
}

#[derive(Clone, Copy, Debug)]
struct Kill {
    target: Target,
    moment: Moment,
}

fn choose_want(rng: &mut Rng, waits: bool) -> Want {
    // Specific ids only when waiting: a busy `--gpu-ids` that does not wait explains
    // which GPU is whose instead of the "Not enough GPUs available" this suite expects.
    if waits && rng.chance(30) {
        let first = rng.below(u64::from(POOL)) as u32;
        let mut ids = vec![first];
        if rng.chance(30) {
            ids.push((first + 1 + rng.below(u64::from(POOL) - 1) as u32) % POOL);
        }
        return Want::Ids(ids);
    }
    match rng.below(20) {
        0 => Want::Count(3),
        1..=4 => Want::Count(2),
        _ => Want::Count(1),
    }
}

fn choose_op(rng: &mut Rng) -> Op {
    let roll = rng.below(100);
    let wait = match roll {
        0..=29 | 55..=69 => WaitMode::No,
        30..=44 | 70..=74 => WaitMode::Forever,
        _ => WaitMode::Limited,
    };
    match roll {
        0..=54 => Op::Run {
            want: choose_want(rng, wait != WaitMode::No),
            wait,
            work: rng.millis(10, 40),
        },
        55..=79 => Op::Reserve {
            want: choose_want(rng, wait != WaitMode::No),
            wait,
            hold: rng.millis(10, 40),
        },
        80..=89 => Op::Look(Look::StatusJson),
        90..=94 => Op::Look(Look::Status),
        _ => Op::Look(Look::QueueJson),
    }
}

fn choose_kill(rng: &mut Rng, op: &Op) -> Kill {
    let waits = matches!(
        op,
        Op::Run { wait, .. } | Op::Reserve { wait, .. } if *wait != WaitMode::No
    );
    let moment = |rng: &mut Rng| {
        if waits && rng.chance(40) {
            Moment::WhileQueued(rng.millis(0, 30))
        } else {
            Moment::AfterSpawn(rng.millis(0, 150))
        }
    };
    match op {
        Op::Run { work, .. } => {
            let during_job = Moment::WhileJobRuns(rng.millis(0, work.as_millis() as u64));
            match rng.below(3) {
                0 => Kill {
                    target: Target::Job,
                    moment: during_job,
                },
                n => Kill {
                    target: if n == 1 {
                        Target::Group
                    } else {
                        Target::Process
                    },
                    moment: if rng.chance(50) {
                        during_job
                    } else {
                        moment(rng)
                    },
                },
            }
        }
        Op::Reserve { .. } => Kill {
            target: Target::Process,
            moment: moment(rng),
        },
        Op::Look(_) => Kill {
            target: Target::Process,
            moment: Moment::AfterSpawn(rng.millis(0, 20)),
        },
    }
}

/// A process group the test started, killed on drop unless seen empty: a failing test
/// must not leave jobs behind.
struct Group {
    pgid: i32,
    empty: bool,
}

impl Drop for Group {
    fn drop(&mut self) {
        // Only while the group still has members: then its id cannot have been reused.
        if !self.empty && live_groups().contains(&self.pgid) {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
    }
}

/// Fields 3 (state), 4 (ppid) and 5 (pgrp) of `/proc/<pid>/stat`.
fn proc_stat(pid: &str) -> Option<(char, i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Process groups with a member that is not a zombie.
fn live_groups() -> BTreeSet<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let (state, _, pgrp) = proc_stat(&name)?;
            (state != 'Z' && state != 'X').then_some(pgrp)
        })
        .collect()
}

/// What the clients share.
struct Shared<'a> {
    store: &'a TestStore,
    dir: PathBuf,
    running: Mutex<BTreeMap<String, (i32, Instant, String)>>,
    /// Clients with `--wait` alive now, and ever started, for the queue bound.
    waiters: Mutex<(usize, usize)>,
    finished: AtomicUsize,
    /// Set by the watchdog: start nothing more.
    aborted: AtomicBool,
}

/// One process, run to its end (or killed).
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
    /// When it had been reaped (nanoseconds since the epoch).
    reaped_at: u128,
    /// When the kill was sent (just before), if it was sent while the process (or the
    /// job) still ran.
    killed_at: Option<u128>,
}

impl Shared<'_> {
    fn execute(
        &self,
        token: &str,
        args: &[String],
        waits: bool,
        kill: Option<Kill>,
        log: Option<&Path>,
        groups: &mut Vec<Group>,
    ) -> Ran {
        let out_path = self.dir.join(format!("{token}.out"));
        let err_path = self.dir.join(format!("{token}.err"));
        let mut cmd = self.store.std_cmd();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).expect("stdout file"))
            .stderr(File::create(&err_path).expect("stderr file"))
            // Its own group, so that a kill of the group reaches the job but not us.
            .process_group(0);
        if waits {
            // Counted before it can possibly queue (see `check_queue`).
            let mut waiters = self.waiters.lock().unwrap();
            waiters.0 += 1;
            waiters.1 += 1;
        }
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn canhazgpu");
        let pgid = child.id() as i32;
        groups.push(Group { pgid, empty: false });
        self.running
            .lock()
            .unwrap()
            .insert(token.to_string(), (pgid, started, args.join(" ")));
        let killed_at =
            kill.and_then(|kill| self.kill_at(&mut child, kill, token, &err_path, log, started));
        let status = child.wait().expect("wait for canhazgpu");
        let reaped_at = nanos();
        let elapsed = started.elapsed();
        self.running.lock().unwrap().remove(token);
        if waits {
            self.waiters.lock().unwrap().0 -= 1;
        }
        Ran {
            status,
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
            elapsed,
            reaped_at,
            killed_at,
        }
    }

    /// Waits for the kill's moment and sends SIGKILL if the target still runs then;
    /// returns when it was sent.
    fn kill_at(
        &self,
        child: &mut Child,
        kill: Kill,
        token: &str,
        err_path: &Path,
        log: Option<&Path>,
        started: Instant,
    ) -> Option<u128> {
        let exited = |child: &mut Child| !matches!(child.try_wait(), Ok(None));
        // When the moment's condition holds, and (for the job) the job's pid.
        let mut since: Option<(Instant, Option<i32>)> = None;
        loop {
            if exited(child) {
                return None;
            }
            if since.is_none() {
                since = match kill.moment {
                    Moment::AfterSpawn(_) => Some((started, None)),
                    Moment::WhileQueued(_) => std::fs::read_to_string(err_path)
                        .ok()
                        .filter(|text| text.contains("canhazgpu: waiting for"))
                        .map(|_| (Instant::now(), None)),
                    Moment::WhileJobRuns(_) => {
                        job_started(log, token).map(|(pid, _)| (Instant::now(), Some(pid)))
                    }
                };
            }
            let delay = match kill.moment {
                Moment::AfterSpawn(d) | Moment::WhileQueued(d) | Moment::WhileJobRuns(d) => d,
            };
            if let Some((at, job)) = since
                && at.elapsed() >= delay
            {
                return self.send_kill(child, kill.target, job, token, log);
            }
            std::thread::sleep(POLL);
        }
    }

    fn send_kill(
        &self,
        child: &mut Child,
        target: Target,
        job: Option<i32>,
        token: &str,
        log: Option<&Path>,
    ) -> Option<u128> {
        // The wrapper is not reaped yet, so its pid (and group id) is still ours.
        let wrapper = Pid::from_raw(child.id() as i32);
        // Taken before the kill: a killed job stops after this, and whoever gets its GPUs
        // next starts after it stopped, so this end can never make a false overlap.
        let at = nanos();
        let sent = match target {
            Target::Group => killpg(wrapper, Signal::SIGKILL).is_ok(),
            Target::Process => kill(wrapper, Signal::SIGKILL).is_ok(),
            Target::Job => {
                let job = job?;
                if job_ended(log, token) {
                    return None;
                }
                // Only a process of this group: pids are handed out in sequence, so one
                // freed between this check and the kill is not reused within microseconds.
                match proc_stat(&job.to_string()) {
                    Some((state, _, pgrp)) if pgrp == wrapper.as_raw() && state != 'Z' => {
                        kill(Pid::from_raw(job), Signal::SIGKILL).is_ok()
                    }
                    _ => false,
                }
            }
        };
        sent.then_some(at)
    }

    /// `status --json`, which must work; GPUs whose note is `token`.
    fn gpus_noted(&self, token: &str) -> Vec<u32> {
        let out = self
            .store
            .std_cmd()
            .args(["status", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "status --json after a kill: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        entries
            .as_array()
            .unwrap()
            .iter()
            .filter(|gpu| gpu["note"] == token)
            .map(|gpu| gpu["id"].as_u64().unwrap() as u32)
            .collect()
    }

    /// Releases, by id, what a killed `reserve` or `release` left reserved; returns how
    /// many GPUs that was.
    fn repair(&self, token: &str, problems: &mut Vec<String>) -> usize {
        let left = self.gpus_noted(token);
        if !left.is_empty() {
            let out = self
                .store
                .std_cmd()
                .args(["release", "--gpu-ids", &join(&left)])
                .output()
                .unwrap();
            if !out.status.success() {
                problems.push(format!(
                    "{token}: release --gpu-ids {} of a killed reserve's GPUs failed: {}",
                    join(&left),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        left.len()
    }

    /// `queue --json` while clients come and go: no more entries than waiting clients
    /// that could have been alive while it looked, so no dead waiter stays queued.
    fn check_queue(&self, ran: &Ran, bound: usize, token: &str, problems: &mut Vec<String>) {
        let Ok(entries) = serde_json::from_str::<serde_json::Value>(&ran.stdout) else {
            problems.push(format!("{token}: queue --json is not JSON: {}", ran.stdout));
            return;
        };
        let len = entries.as_array().map_or(usize::MAX, Vec::len);
        if len > bound {
            problems.push(format!(
                "{token}: queue lists {len} waiters but at most {bound} waiting clients lived: {}",
                ran.stdout
            ));
        }
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn log_lines(log: Option<&Path>) -> String {
    log.and_then(|log| std::fs::read_to_string(log).ok())
        .unwrap_or_default()
}

/// The job's pid and GPUs, once it has logged its start.
fn job_started(log: Option<&Path>, token: &str) -> Option<(i32, String)> {
    let prefix = format!("S {token} ");
    log_lines(log).lines().find_map(|line| {
        let mut fields = line.strip_prefix(&prefix)?.split(' ');
        Some((fields.next()?.parse().ok()?, fields.next()?.to_string()))
    })
}

fn job_ended(log: Option<&Path>, token: &str) -> bool {
    let prefix = format!("E {token} ");
    log_lines(log).lines().any(|line| line.starts_with(&prefix))
}

#[derive(Default, Debug)]
struct Tally {
    runs: usize,
    runs_served: usize,
    reserves: usize,
    holds: usize,
    busy: usize,
    queued: usize,
    waits_served: usize,
    waits_timed_out: usize,
    /// The longest a `--wait` took to be served.
    longest_wait: Duration,
    looks: usize,
    kills: BTreeMap<String, usize>,
    kills_missed: usize,
    killed_while_queued: usize,
    leaked_manual_gpus_released: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.runs += other.runs;
        self.runs_served += other.runs_served;
        self.reserves += other.reserves;
        self.holds += other.holds;
        self.busy += other.busy;
        self.queued += other.queued;
        self.waits_served += other.waits_served;
        self.waits_timed_out += other.waits_timed_out;
        self.longest_wait = self.longest_wait.max(other.longest_wait);
        self.looks += other.looks;
        for (what, n) in other.kills {
            *self.kills.entry(what).or_default() += n;
        }
        self.kills_missed += other.kills_missed;
        self.killed_while_queued += other.killed_while_queued;
        self.leaked_manual_gpus_released += other.leaked_manual_gpus_released;
    }
}

#[derive(Debug, Clone)]
struct Interval {
    gpu: u32,
    start: u128,
    end: u128,
    token: String,
}

/// What one client saw.
#[derive(Default)]
struct ClientLog {
    tally: Tally,
    /// Reserve holds, measured by the client.
    holds: Vec<Interval>,
    /// `run` operations that were served or killed, with when the kill was sent.
    runs: BTreeMap<String, (Want, Option<u128>)>,
    /// Runs whose wrapper alone was killed: their jobs outlive the reservation.
    orphaned: BTreeSet<String>,
    groups: Vec<Group>,
    problems: Vec<String>,
}

/// Lines of stderr the suite accepts from a process that was not killed.
fn expected_line(line: &str, wait: WaitMode) -> bool {
    line.starts_with("canhazgpu: running on GPU(s) ")
        || line.starts_with("canhazgpu: waiting for ")
        || line.starts_with("Reserved ")
        || line.starts_with("Release them early with `canhazgpu release`")
        || (wait == WaitMode::No && line.starts_with("Error: Not enough GPUs available"))
        || (wait == WaitMode::Limited && line.starts_with("Error: gave up after waiting"))
}

/// Judges a `run` or `reserve` that was not killed; returns whether it was served.
fn judge_request(
    ran: &Ran,
    wait: WaitMode,
    token: &str,
    tally: &mut Tally,
    problems: &mut Vec<String>,
) -> bool {
    if let Some(line) = ran.stderr.lines().find(|l| !expected_line(l, wait)) {
        problems.push(format!(
            "{token} ({wait:?}): unexpected stderr line {line:?}"
        ));
    }
    let queued = ran.stderr.contains("canhazgpu: waiting for");
    tally.queued += usize::from(queued);
    match (ran.status.code(), wait) {
        (Some(0), _) => {
            if wait != WaitMode::No {
                tally.waits_served += 1;
                tally.longest_wait = tally.longest_wait.max(ran.elapsed);
            }
            true
        }
        (Some(1), WaitMode::No) if ran.stderr.contains("Not enough GPUs available") => {
            tally.busy += 1;
            false
        }
        (Some(1), WaitMode::Limited) if ran.stderr.contains("gave up after waiting") => {
            tally.waits_timed_out += 1;
            if ran.elapsed < WAIT_LIMIT_FLOOR {
                problems.push(format!(
                    "{token}: --wait={WAIT_LIMIT} gave up after only {:?}",
                    ran.elapsed
                ));
            }
            false
        }
        _ => {
            problems.push(format!(
                "{token} ({wait:?}): exit {:?} after {:?}: {}",
                ran.status, ran.elapsed, ran.stderr
            ));
            false
        }
    }
}

fn client(shared: &Shared, plan: Plan, index: usize, seed: u64, start: &Barrier) -> ClientLog {
    let mut rng = Rng::new(seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut me = ClientLog::default();
    let log = shared.dir.join(format!("client-{index}.log"));
    start.wait();
    for op_index in 0..plan.ops_per_client {
        if shared.aborted.load(Ordering::SeqCst) {
            break;
        }
        let token = format!("c{index}-{op_index}");
        let op = choose_op(&mut rng);
        let kill = rng
            .chance(plan.kill_percent)
            .then(|| choose_kill(&mut rng, &op));
        let policy = if rng.chance(20) { "sticky" } else { "lru" };
        let note = ["--note".to_string(), token.clone()];
        match op {
            Op::Run { want, wait, work } => {
                me.tally.runs += 1;
                let mut args = vec!["run".to_string()];
                args.extend(want.args());
                args.extend(wait.args());
                args.extend(note.clone());
                args.extend(["--policy".into(), policy.into(), "--".into()]);
                args.extend(["sh", "-c", JOB, "job"].map(String::from));
                args.push(log.display().to_string());
                args.push(token.clone());
                args.push(format!("{:.3}", work.as_secs_f64()));
                let waits = wait != WaitMode::No;
                let ran = shared.execute(&token, &args, waits, kill, Some(&log), &mut me.groups);
                if let Some(killed_at) = ran.killed_at {
                    let kill = kill.expect("killed by plan");
                    me.tally.record_kill("run", kill);
                    let served = ran.stderr.contains("canhazgpu: running on");
                    if !served && ran.stderr.contains("canhazgpu: waiting for") {
                        me.tally.killed_while_queued += 1;
                    }
                    if kill.target == Target::Process {
                        me.orphaned.insert(token.clone());
                    }
                    // The job alone died: the wrapper reports it as its own death (unless
                    // the job had just ended by itself when the kill came).
                    let finished = ran.status.success() && job_ended(Some(&log), &token);
                    if kill.target == Target::Job && ran.status.code() != Some(137) && !finished {
                        me.problems.push(format!(
                            "{token}: job killed with SIGKILL but run exited {:?}",
                            ran.status
                        ));
                    }
                    me.runs.insert(token.clone(), (want, Some(killed_at)));
                    // The next command sees the truth: a run's owner is dead (or
                    // released), so nothing may still be held for it.
                    let left = shared.gpus_noted(&token);
                    if !left.is_empty() {
                        me.problems.push(format!(
                            "{token}: killed ({kill:?}), reaped, \
                             yet status still shows GPU(s) {left:?} held for it"
                        ));
                    }
                    continue;
                }
                me.tally.kills_missed += usize::from(kill.is_some());
                if judge_request(&ran, wait, &token, &mut me.tally, &mut me.problems) {
                    me.tally.runs_served += 1;
                    if !job_ended(Some(&log), &token) {
                        me.problems
                            .push(format!("{token}: run exited 0 but its job logged no end"));
                    }
                    me.runs.insert(token.clone(), (want, None));
                }
            }
            Op::Reserve { want, wait, hold } => {
                me.tally.reserves += 1;
                let mut args = vec!["reserve".to_string()];
                args.extend(want.args());
                args.extend(wait.args());
                args.extend(note.clone());
                args.extend(["--policy", policy, "--duration", "10m"].map(String::from));
                let waits = wait != WaitMode::No;
                let ran = shared.execute(&token, &args, waits, kill, None, &mut me.groups);
                if ran.killed_at.is_some() {
                    me.tally
                        .record_kill("reserve", kill.expect("killed by plan"));
                    if !ran.stderr.contains("Reserved ")
                        && ran.stderr.contains("canhazgpu: waiting for")
                    {
                        me.tally.killed_while_queued += 1;
                    }
                    // A manual reservation has no owner process and lives until its
                    // expiry: find it by its note and give it back, as a user would.
                    me.tally.leaked_manual_gpus_released += shared.repair(&token, &mut me.problems);
                    continue;
                }
                me.tally.kills_missed += usize::from(kill.is_some());
                if !judge_request(&ran, wait, &token, &mut me.tally, &mut me.problems) {
                    continue;
                }
                let got: Option<Vec<u32>> = ran
                    .stdout
                    .split_whitespace()
                    .nth(1)
                    .and_then(|a| a.strip_prefix("CUDA_VISIBLE_DEVICES="))
                    .and_then(|list| list.split(',').map(|id| id.parse().ok()).collect());
                let Some(got) = got.filter(|got| want.accepts(got)) else {
                    me.problems.push(format!(
                        "{token}: asked for {want:?}, reserve printed {:?}",
                        ran.stdout
                    ));
                    continue;
                };
                me.tally.holds += 1;
                let start = ran.reaped_at;
                // The job of a manual reservation: hold the GPUs for a while.
                std::thread::sleep(hold);
                let end = nanos();
                me.holds.extend(got.iter().map(|&gpu| Interval {
                    gpu,
                    start,
                    end,
                    token: token.clone(),
                }));
                let release_kill = rng.chance(plan.kill_percent / 2).then(|| Kill {
                    target: Target::Process,
                    moment: Moment::AfterSpawn(rng.millis(0, 15)),
                });
                let release_token = format!("{token}-release");
                let args = ["release".to_string(), "--gpu-ids".into(), join(&got)];
                let ran = shared.execute(
                    &release_token,
                    &args,
                    false,
                    release_kill,
                    None,
                    &mut me.groups,
                );
                if ran.killed_at.is_some() {
                    me.tally
                        .record_kill("release", release_kill.expect("killed by plan"));
                    me.tally.leaked_manual_gpus_released += shared.repair(&token, &mut me.problems);
                } else if !ran.status.success() || !ran.stderr.is_empty() {
                    me.problems.push(format!(
                        "{release_token}: release of GPU(s) {got:?} failed ({:?}): {}",
                        ran.status, ran.stderr
                    ));
                }
            }
            Op::Look(look) => {
                me.tally.looks += 1;
                let args: Vec<String> = match look {
                    Look::Status => vec!["status".into()],
                    Look::StatusJson => vec!["status".into(), "--json".into()],
                    Look::QueueJson => vec!["queue".into(), "--json".into()],
                };
                let (alive_before, started_before) = *shared.waiters.lock().unwrap();
                let ran = shared.execute(&token, &args, false, kill, None, &mut me.groups);
                if ran.killed_at.is_some() {
                    me.tally.record_kill("look", kill.expect("killed by plan"));
                    continue;
                }
                me.tally.kills_missed += usize::from(kill.is_some());
                if !ran.status.success() || !ran.stderr.is_empty() {
                    me.problems.push(format!(
                        "{token} {args:?}: {:?}: {}",
                        ran.status, ran.stderr
                    ));
                    continue;
                }
                match look {
                    Look::Status => {
                        if ran.stdout.lines().count() != POOL as usize {
                            me.problems
                                .push(format!("{token}: status printed {:?}", ran.stdout));
                        }
                    }
                    Look::StatusJson => {
                        let gpus: serde_json::Value =
                            serde_json::from_str(&ran.stdout).unwrap_or_default();
                        let fine = gpus.as_array().is_some_and(|gpus| {
                            gpus.len() == POOL as usize
                                && gpus
                                    .iter()
                                    .all(|g| g["state"] == "available" || g["state"] == "in_use")
                        });
                        if !fine {
                            me.problems
                                .push(format!("{token}: status --json printed {}", ran.stdout));
                        }
                    }
                    Look::QueueJson => {
                        let started_after = shared.waiters.lock().unwrap().1;
                        let bound = alive_before + (started_after - started_before);
                        shared.check_queue(&ran, bound, &token, &mut me.problems);
                    }
                }
            }
        }
    }
    shared.finished.fetch_add(1, Ordering::SeqCst);
    me
}

impl Tally {
    fn record_kill(&mut self, what: &str, kill: Kill) {
        let moment = match kill.moment {
            Moment::AfterSpawn(_) => "at a random time",
            Moment::WhileQueued(_) => "while queued",
            Moment::WhileJobRuns(_) => "while the job ran",
        };
        let target = match (what, kill.target) {
            ("run", Target::Group) => "run wrapper and job",
            ("run", Target::Process) => "run wrapper alone",
            ("run", Target::Job) => "run job alone",
            (what, _) => what,
        };
        *self.kills.entry(format!("{target} {moment}")).or_default() += 1;
    }
}

/// Reads the jobs' logs into intervals; checks every served run's job logged both ends
/// and saw the GPUs it asked for.
fn job_intervals(
    dir: &Path,
    clients: usize,
    runs: &BTreeMap<String, (Want, Option<u128>)>,
    problems: &mut Vec<String>,
) -> Vec<Interval> {
    let mut starts: BTreeMap<String, (String, u128)> = BTreeMap::new();
    let mut ends: BTreeMap<String, u128> = BTreeMap::new();
    for index in 0..clients {
        let text =
            std::fs::read_to_string(dir.join(format!("client-{index}.log"))).unwrap_or_default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields[..] {
                ["S", token, _pid, gpus, start] => {
                    starts.insert(token.into(), (gpus.into(), start.parse().unwrap()));
                }
                ["E", token, end] => {
                    ends.insert(token.into(), end.parse().unwrap());
                }
                _ => problems.push(format!("malformed job log line {line:?}")),
            }
        }
    }
    let mut intervals = Vec::new();
    for (token, (gpus, start)) in starts {
        let Some((want, killed_at)) = runs.get(&token) else {
            problems.push(format!("{token}: a job ran for a run that did not succeed"));
            continue;
        };
        let ids: Vec<u32> = gpus.split(',').filter_map(|id| id.parse().ok()).collect();
        if !want.accepts(&ids) {
            problems.push(format!("{token}: asked for {want:?}, the job saw {gpus:?}"));
        }
        // A job killed before its end stopped once the kill came.
        let Some(end) = ends.get(&token).copied().or(*killed_at) else {
            problems.push(format!("{token}: the job logged no end and was not killed"));
            continue;
        };
        intervals.extend(ids.into_iter().map(|gpu| Interval {
            gpu,
            start,
            end,
            token: token.clone(),
        }));
    }
    intervals
}

/// Pairs of intervals on one GPU that overlap.
fn overlaps(intervals: &[Interval]) -> Vec<(Interval, Interval)> {
    let mut by_gpu: BTreeMap<u32, Vec<&Interval>> = BTreeMap::new();
    for interval in intervals {
        by_gpu.entry(interval.gpu).or_default().push(interval);
    }
    let mut found = Vec::new();
    for list in by_gpu.values_mut() {
        list.sort_by_key(|i| i.start);
        let mut latest: Option<&Interval> = None;
        for &interval in list.iter() {
            if let Some(previous) = latest
                && interval.start < previous.end
            {
                found.push((previous.clone(), interval.clone()));
            }
            if latest.is_none_or(|p| interval.end > p.end) {
                latest = Some(interval);
            }
        }
    }
    found
}

fn load(plan: Plan) {
    let seed = seed();
    for backend in BACKENDS {
        load_on(plan, backend, seed);
    }
}

fn load_on(plan: Plan, backend: Backend, seed: u64) {
    let store = TestStore::new(backend);
    store.admin(POOL);
    let dir = store.home.path().join("ops");
    std::fs::create_dir(&dir).unwrap();
    let shared = Shared {
        store: &store,
        dir: dir.clone(),
        running: Mutex::new(BTreeMap::new()),
        waiters: Mutex::new((0, 0)),
        finished: AtomicUsize::new(0),
        aborted: AtomicBool::new(false),
    };
    let began = Instant::now();
    let start = Barrier::new(plan.clients);
    let mut stuck = None;
    let logs: Vec<ClientLog> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..plan.clients)
            .map(|index| {
                let (shared, start) = (&shared, &start);
                scope.spawn(move || client(shared, plan, index, seed, start))
            })
            .collect();
        // The watchdog: a process alive past the hang limit waits for a wake-up that
        // never comes (or hangs). Then the clients stop and everything is killed, so
        // that the test can say which process it was.
        while shared.finished.load(Ordering::SeqCst) < plan.clients {
            let running = shared.running.lock().unwrap();
            if stuck.is_none()
                && let Some((token, (_, since, what))) = running
                    .iter()
                    .find(|(_, (_, since, _))| since.elapsed() > plan.hang_after)
            {
                // What the pool looked like then, to tell a lost wake-up from a hang.
                let look = |args: &[&str]| {
                    let out = store.std_cmd().args(args).output().unwrap();
                    String::from_utf8_lossy(&out.stdout).into_owned()
                };
                stuck = Some(format!(
                    "{token} (`canhazgpu {what}`) still running after {:?}; {} processes running\n\
                     queue: {}\nstatus: {}",
                    since.elapsed(),
                    running.len(),
                    look(&["queue", "--json"]),
                    look(&["status"]),
                ));
                shared.aborted.store(true, Ordering::SeqCst);
            }
            if stuck.is_some() {
                for (pgid, _, _) in running.values() {
                    let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
                }
            }
            drop(running);
            std::thread::sleep(Duration::from_millis(50));
        }
        handles
            .into_iter()
            .map(|handle| handle.join().expect("client thread"))
            .collect()
    });
    let label = format!("{backend:?}, seed {seed}");
    if let Some(stuck) = stuck {
        panic!("{label}: lost wake-up or hang: {stuck}");
    }
    let clients_took = began.elapsed();

    let mut tally = Tally::default();
    let mut problems = Vec::new();
    let mut runs = BTreeMap::new();
    let mut orphaned = BTreeSet::new();
    let mut holds = Vec::new();
    let mut groups = Vec::new();
    for log in logs {
        tally.add(log.tally);
        problems.extend(log.problems);
        runs.extend(log.runs);
        orphaned.extend(log.orphaned);
        holds.extend(log.holds);
        groups.extend(log.groups);
    }
    // Jobs whose wrapper alone was killed run on; they end by themselves.
    let ours: BTreeSet<i32> = groups.iter().map(|g| g.pgid).collect();
    common::wait_for(Duration::from_secs(20), "orphaned jobs to end", || {
        live_groups().is_disjoint(&ours).then_some(())
    });
    for group in &mut groups {
        group.empty = true;
    }

    let jobs = job_intervals(&dir, plan.clients, &runs, &mut problems);
    let (orphans, checked): (Vec<Interval>, Vec<Interval>) = jobs
        .into_iter()
        .partition(|interval| orphaned.contains(&interval.token));
    let mut intervals = checked;
    intervals.extend(holds);
    for (a, b) in overlaps(&intervals) {
        problems.push(format!(
            "GPU {} held twice at once: {} [{}, {}] and {} [{}, {}]",
            a.gpu, a.token, a.start, a.end, b.token, b.start, b.end
        ));
    }
    // How busy the GPUs were: the logged intervals over the pool's time.
    let used: u128 = intervals
        .iter()
        .map(|i| i.end.saturating_sub(i.start))
        .sum();
    let utilization = used as f64 / (clients_took.as_nanos() as f64 * f64::from(POOL));
    let mut all = intervals.clone();
    all.extend(orphans.iter().cloned());
    let orphan_sharing = overlaps(&all)
        .iter()
        .filter(|(a, b)| orphaned.contains(&a.token) || orphaned.contains(&b.token))
        .count();

    // Afterwards: nobody waits, nothing is held, and the whole pool can be had.
    let queue = store.cmd().args(["queue", "--json"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&queue.stdout).trim(),
        "[]",
        "{label}: dead waiters left in the queue"
    );
    let status = store.cmd().args(["status", "--json"]).output().unwrap();
    let gpus: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let held: Vec<&serde_json::Value> = gpus
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["state"] != "available")
        .collect();
    assert!(held.is_empty(), "{label}: still held at the end: {held:?}");
    store
        .cmd()
        .args(["run", "--gpus", "8", "--", "true"])
        .assert()
        .success();

    eprintln!(
        "{label}: {} clients x {} ops in {clients_took:.1?}: {} runs ({} served), \
         {} reserves ({} held), {} busy refusals, {} queued, \
         {} waits served (longest {:.1?}), {} waits timed out, {} looks; \
         {} intervals checked (the GPUs were in use {:.0}% of the time); \
         kills {:?} ({} kill plans missed: the process ended first), \
         {} killed while queued, {} manual GPUs left by killed reserve/release released by id, \
         {} runs whose wrapper alone was killed, \
         whose {} job interval(s) overlapped a later holder's",
        plan.clients,
        plan.ops_per_client,
        tally.runs,
        tally.runs_served,
        tally.reserves,
        tally.holds,
        tally.busy,
        tally.queued,
        tally.waits_served,
        tally.longest_wait,
        tally.waits_timed_out,
        tally.looks,
        intervals.len(),
        utilization * 100.0,
        tally.kills,
        tally.kills_missed,
        tally.killed_while_queued,
        tally.leaked_manual_gpus_released,
        orphaned.len(),
        orphan_sharing,
    );
    assert!(
        problems.is_empty(),
        "{label}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The load must really have been load: contention, queueing, and (with kills) kills.
    assert!(
        tally.runs_served > 0 && tally.holds > 0,
        "{label}: {tally:?}"
    );
    assert!(
        tally.busy > 0 && tally.queued > 0,
        "{label}: no contention: {tally:?}"
    );
    if plan.kill_percent > 0 {
        assert!(!tally.kills.is_empty(), "{label}: nothing was killed");
    }
}
