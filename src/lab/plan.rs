//! Which stores a lab view reads, and which hosts' pools in each: pure, from this host's
//! own store, the config's `[hosts]` and what the command asked for.
//!
//! One job per store URL, so that the hosts sharing a Redis are read together in one
//! round of pipelined commands and a slow store holds up only its own hosts.

use std::collections::{BTreeMap, BTreeSet};

use crate::host::{HostName, Keyspace};

/// What a command asked to see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// This host's pool only (the dashboard's tests read each of their stores so).
    #[cfg_attr(not(test), allow(dead_code))]
    ThisHost,
    /// `--all-hosts`: this host, every host registered in its store, every `[hosts]` entry.
    All,
    /// `--host NAME`, repeatable, in the order given.
    Named(Vec<HostName>),
}

/// This host: its name as views show it, where its pool lives in its store, and the store.
#[derive(Clone, Debug)]
pub struct OwnHost {
    pub name: String,
    pub keyspace: Keyspace,
    pub url: String,
}

/// Which hosts registered in a store to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Registered {
    #[default]
    None,
    /// Every one, except those read otherwise (`skip`).
    All { skip: BTreeSet<HostName> },
    /// These, which the command named and nothing else knows.
    Only(Vec<HostName>),
}

/// The reads of one store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreJob {
    pub url: String,
    /// This host's pool is in this store, under this keyspace.
    pub own: Option<Keyspace>,
    /// `[hosts]` entries that point at this store: each one's pool is read under its
    /// name where the store's registry lists it, else at upstream's keys.
    pub entries: Vec<HostName>,
    pub registered: Registered,
}

impl StoreJob {
    fn new(url: &str) -> StoreJob {
        StoreJob {
            url: url.to_string(),
            own: None,
            entries: Vec::new(),
            registered: Registered::None,
        }
    }

    /// Whether the store's registry must be read before its pools.
    pub fn needs_registry(&self) -> bool {
        !self.entries.is_empty() || self.registered != Registered::None
    }
}

/// The jobs, this host's first.
pub fn plan(
    own: &OwnHost,
    entries: &BTreeMap<HostName, String>,
    selection: &Selection,
) -> Vec<StoreJob> {
    let mut jobs: Vec<StoreJob> = vec![StoreJob::new(&own.url)];
    let is_own = |name: &HostName| name.as_str() == own.name;
    let mut wanted_entries: Vec<&HostName> = Vec::new();
    let mut unknown: Vec<HostName> = Vec::new();
    let mut wants_own = false;
    match selection {
        Selection::ThisHost => wants_own = true,
        Selection::All => {
            wants_own = true;
            wanted_entries.extend(entries.keys().filter(|name| !is_own(name)));
        }
        Selection::Named(names) => {
            for name in names {
                if is_own(name) {
                    wants_own = true;
                } else if entries.contains_key(name) {
                    wanted_entries.push(name);
                } else {
                    unknown.push(name.clone());
                }
            }
        }
    }
    for name in dedup(wanted_entries) {
        let url = &entries[name];
        let index = match jobs.iter().position(|job| &job.url == url) {
            Some(index) => index,
            None => {
                jobs.push(StoreJob::new(url));
                jobs.len() - 1
            }
        };
        jobs[index].entries.push(name.clone());
    }
    let own_job = &mut jobs[0];
    if wants_own {
        own_job.own = Some(own.keyspace.clone());
    }
    own_job.registered = match selection {
        Selection::ThisHost => Registered::None,
        Selection::All => {
            let mut skip: BTreeSet<HostName> = entries.keys().cloned().collect();
            skip.extend(own.keyspace.host().cloned());
            Registered::All { skip }
        }
        Selection::Named(_) if unknown.is_empty() => Registered::None,
        Selection::Named(_) => Registered::Only(dedup(&unknown).into_iter().cloned().collect()),
    };
    jobs.retain(|job| {
        job.own.is_some() || !job.entries.is_empty() || job.registered != Registered::None
    });
    jobs
}

/// `names` without repeats, in their first order.
fn dedup<'a>(names: impl IntoIterator<Item = &'a HostName>) -> Vec<&'a HostName> {
    let mut seen = BTreeSet::new();
    names
        .into_iter()
        .filter(|name| seen.insert(*name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> HostName {
        HostName::parse(text, "test").unwrap()
    }

    fn own() -> OwnHost {
        OwnHost {
            name: "a".into(),
            keyspace: Keyspace::Named(name("a")),
            url: "redis://lab/0".into(),
        }
    }

    fn entries() -> BTreeMap<HostName, String> {
        BTreeMap::from([
            (name("x"), "redis://x/0".to_string()),
            (name("y"), "redis://x/0".to_string()),
            (name("z"), "redis://lab/0".to_string()),
            (name("a"), "redis://elsewhere/0".to_string()),
        ])
    }

    #[test]
    fn all_hosts_reads_each_store_once_and_this_host_from_its_own() {
        let jobs = plan(&own(), &entries(), &Selection::All);
        assert_eq!(jobs.len(), 2, "{jobs:?}");
        assert_eq!(jobs[0].url, "redis://lab/0");
        assert_eq!(jobs[0].own, Some(Keyspace::Named(name("a"))));
        assert_eq!(jobs[0].entries, [name("z")]);
        assert_eq!(
            jobs[0].registered,
            Registered::All {
                skip: [name("a"), name("x"), name("y"), name("z")].into()
            }
        );
        assert_eq!(jobs[1].url, "redis://x/0");
        assert_eq!(jobs[1].entries, [name("x"), name("y")]);
        assert_eq!(jobs[1].own, None);
        // The [hosts] entry named like this host is not read: this host's own store is
        // the truth about its pool.
        assert!(jobs.iter().all(|job| job.url != "redis://elsewhere/0"));
    }

    #[test]
    fn named_hosts_go_where_they_are_known() {
        let selection = Selection::Named(vec![name("y"), name("q"), name("a"), name("q")]);
        let jobs = plan(&own(), &entries(), &selection);
        assert_eq!(jobs.len(), 2, "{jobs:?}");
        assert_eq!(jobs[0].own, Some(Keyspace::Named(name("a"))));
        assert_eq!(jobs[0].registered, Registered::Only(vec![name("q")]));
        assert!(jobs[0].entries.is_empty());
        assert_eq!(jobs[1].entries, [name("y")]);
    }

    #[test]
    fn another_host_alone_leaves_this_hosts_store_unread_unless_it_is_there() {
        let jobs = plan(&own(), &entries(), &Selection::Named(vec![name("x")]));
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].url, "redis://x/0");
        let this = plan(&own(), &entries(), &Selection::ThisHost);
        assert_eq!(this.len(), 1);
        assert!(!this[0].needs_registry());
    }
}
