//! Reading the stores of a lab view: one thread per store, all at once, and a deadline
//! for the lot, so that one slow or dead store costs the view at most the deadline and
//! holds up nobody else's hosts. A thread still waiting at the deadline is left behind
//! (the command exits soon after); its hosts are reported as not answering.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::host::{HostName, Keyspace, PoolRead};
use crate::lab::plan::{Registered, StoreJob};
use crate::model::Timestamp;
use crate::store::Registry;

/// What a lab view needs of a store. Read-only by design: a viewer's ACL user may lack
/// every write command, `WATCH` and `TIME`.
pub trait PoolReader {
    /// The store, without credentials.
    fn describe(&self) -> String;
    /// The pools under the keyspaces `choose` picks from the named hosts registered in
    /// the store (read when `with_registry`; empty where there is no registry), each on
    /// its own (one may be unreadable while the others are fine), with their history
    /// since `history_since` when given. See [`crate::store::Store::read_pools`].
    fn read(
        &self,
        with_registry: bool,
        choose: &mut dyn FnMut(&Registry) -> Vec<Keyspace>,
        history_since: Option<Timestamp>,
    ) -> Result<Vec<Result<PoolRead>>>;
}

/// Opens a store by URL, for one thread.
pub type Opener = Arc<dyn Fn(&str) -> Result<Box<dyn PoolReader>> + Send + Sync>;

/// Whose pool a read is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    ThisHost,
    /// A `[hosts]` entry.
    Entry(HostName),
    /// Registered in this host's store.
    Registered(HostName),
}

/// What one store gave.
pub struct StoreOutcome {
    /// The store, without credentials.
    pub store: String,
    /// Each target's pool, or why it could not be read.
    pub reads: Vec<(Target, std::result::Result<PoolRead, String>)>,
    /// Names asked for with `--host` that the store's registry does not list.
    pub unknown: Vec<HostName>,
    /// Why the store as a whole could not be read: then `reads` is empty.
    pub failure: Option<String>,
}

/// Runs every job in its own thread and collects what arrived before `deadline`;
/// `None` for a job that had not finished by then.
pub fn read_all(
    jobs: &[StoreJob],
    open: &Opener,
    history_since: Option<Timestamp>,
    deadline: Duration,
) -> Vec<Option<StoreOutcome>> {
    let (sender, receiver) = mpsc::channel();
    for (index, job) in jobs.iter().enumerate() {
        let sender = sender.clone();
        let job = job.clone();
        let open = open.clone();
        // A thread that cannot start is a job that did not answer.
        let _ = std::thread::Builder::new()
            .name(format!("lab-read-{index}"))
            .spawn(move || {
                let outcome = read_store(&job, &open, history_since);
                let _ = sender.send((index, outcome));
            });
    }
    drop(sender);
    let mut outcomes: Vec<Option<StoreOutcome>> = jobs.iter().map(|_| None).collect();
    let end = Instant::now() + deadline;
    while outcomes.iter().any(Option::is_none) {
        let left = end.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok((index, outcome)) => outcomes[index] = Some(outcome),
            Err(_) => break,
        }
    }
    outcomes
}

/// One store's reads, in at most three round trips: its registry (where needed), then
/// every pool at once.
fn read_store(job: &StoreJob, open: &Opener, history_since: Option<Timestamp>) -> StoreOutcome {
    let failed = |store: String, why: String| StoreOutcome {
        store,
        reads: Vec::new(),
        unknown: Vec::new(),
        failure: Some(why),
    };
    let reader = match open(&job.url) {
        Ok(reader) => reader,
        Err(e) => return failed(String::new(), e.message),
    };
    let store = reader.describe();
    // What the keyspaces read stand for is decided with them, from the registry that
    // only the store's read sees.
    let mut chosen = (Vec::new(), Vec::new());
    let mut choose = |registry: &Registry| {
        let (targets, keyspaces, unknown) = targets(job, registry);
        chosen = (targets, unknown);
        keyspaces
    };
    let reads = match reader.read(job.needs_registry(), &mut choose, history_since) {
        Ok(reads) => reads,
        Err(e) => return failed(store, e.message),
    };
    let (targets, unknown) = chosen;
    StoreOutcome {
        store,
        reads: targets
            .into_iter()
            .zip(reads)
            .map(|(target, read)| (target, read.map_err(|e| e.message)))
            .collect(),
        unknown,
        failure: None,
    }
}

/// What to read in a store whose registry is `registry`, and which names asked for
/// it does not know.
fn targets(job: &StoreJob, registry: &Registry) -> (Vec<Target>, Vec<Keyspace>, Vec<HostName>) {
    let mut targets = Vec::new();
    let mut keyspaces = Vec::new();
    let mut unknown = Vec::new();
    if let Some(keyspace) = &job.own {
        targets.push(Target::ThisHost);
        keyspaces.push(keyspace.clone());
    }
    for name in &job.entries {
        targets.push(Target::Entry(name.clone()));
        keyspaces.push(if registry.contains_key(name) {
            Keyspace::Named(name.clone())
        } else {
            Keyspace::Upstream
        });
    }
    let registered: Vec<&HostName> = match &job.registered {
        Registered::None => Vec::new(),
        Registered::All { skip } => registry
            .keys()
            .filter(|name| !skip.contains(*name))
            .collect(),
        Registered::Only(names) => {
            unknown.extend(
                names
                    .iter()
                    .filter(|name| !registry.contains_key(*name))
                    .cloned(),
            );
            names
                .iter()
                .filter(|name| registry.contains_key(*name))
                .collect()
        }
    };
    for name in registered {
        targets.push(Target::Registered(name.clone()));
        keyspaces.push(Keyspace::Named(name.clone()));
    }
    (targets, keyspaces, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::host::Registration;
    use crate::model::Pool;
    use std::collections::BTreeMap;

    fn name(text: &str) -> HostName {
        HostName::parse(text, "test").unwrap()
    }

    /// A store that answers after `delay`, or fails, with one host registered as "r".
    struct Fake {
        delay: Duration,
        fail: bool,
    }

    impl PoolReader for Fake {
        fn describe(&self) -> String {
            "fake".into()
        }
        fn read(
            &self,
            _: bool,
            choose: &mut dyn FnMut(&Registry) -> Vec<Keyspace>,
            _: Option<Timestamp>,
        ) -> Result<Vec<Result<PoolRead>>> {
            std::thread::sleep(self.delay);
            if self.fail {
                return Err(Error::failure("connection refused"));
            }
            let entry = Registration {
                machine_id: "m".into(),
                hostname: None,
                gpu_count: Some(2),
                last_write: None,
            };
            let registry = BTreeMap::from([(name("r"), entry)]);
            let reads = choose(&registry)
                .iter()
                .map(|_| {
                    Ok(PoolRead {
                        pool: Some(Pool::new(2, 0)),
                        ..PoolRead::default()
                    })
                })
                .collect();
            Ok(reads)
        }
    }

    fn job(url: &str) -> StoreJob {
        StoreJob {
            url: url.into(),
            own: None,
            entries: vec![name("e")],
            registered: Registered::Only(vec![name("r"), name("nobody")]),
        }
    }

    #[test]
    fn a_slow_store_costs_the_deadline_and_holds_nobody_else() {
        let open: Opener = Arc::new(|url: &str| {
            let fake = match url {
                "slow" => Fake {
                    delay: Duration::from_secs(30),
                    fail: false,
                },
                "dead" => Fake {
                    delay: Duration::ZERO,
                    fail: true,
                },
                _ => Fake {
                    delay: Duration::ZERO,
                    fail: false,
                },
            };
            Ok(Box::new(fake) as Box<dyn PoolReader>)
        });
        let jobs = [job("slow"), job("dead"), job("fine")];
        let started = Instant::now();
        let outcomes = read_all(&jobs, &open, None, Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(outcomes[0].is_none(), "the slow one missed the deadline");
        let dead = outcomes[1].as_ref().unwrap();
        assert_eq!(dead.failure.as_deref(), Some("connection refused"));
        let fine = outcomes[2].as_ref().unwrap();
        assert_eq!(fine.failure, None);
        let targets: Vec<&Target> = fine.reads.iter().map(|(target, _)| target).collect();
        assert_eq!(
            targets,
            [&Target::Entry(name("e")), &Target::Registered(name("r"))]
        );
        assert_eq!(fine.unknown, [name("nobody")]);
    }

    #[test]
    fn entries_are_read_under_their_name_where_the_registry_has_it() {
        let registry = BTreeMap::from([(
            name("e"),
            Registration {
                machine_id: "m".into(),
                hostname: None,
                gpu_count: None,
                last_write: None,
            },
        )]);
        let mut job = job("x");
        job.entries.push(name("plain"));
        job.registered = Registered::All {
            skip: [name("e")].into(),
        };
        let (_, keyspaces, unknown) = targets(&job, &registry);
        assert_eq!(keyspaces, [Keyspace::Named(name("e")), Keyspace::Upstream]);
        assert!(unknown.is_empty());
    }
}
