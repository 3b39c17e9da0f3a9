//! A named host's writes outside its pool's transactions: its entry in the registry of
//! hosts (`canhazgpu:hosts`), which is another Redis Cluster slot than the pool's keys,
//! and the GPU facts it publishes for other hosts' views. Both are decided from what the
//! last read of the pool saw in the same round trip (see [`Seen`]), so that they cost a
//! round trip only when they write, which is rarely.

use crate::error::{Error, Result};
use crate::host::{
    self, HostName, PUBLISH_INTERVAL_SECONDS, PublishedGpus, REGISTRY_KEY, Registration,
};
use crate::model::Timestamp;
use crate::store::redis::{RedisStore, Session};

/// A registration this old is written again after the next commit, so that the
/// registry's `last_write` stays within a minute of the truth.
const REGISTRATION_REFRESH_SECONDS: Timestamp = 60;

/// What one read of a named host's pool saw besides the pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// The store's time of the read.
    pub now: Timestamp,
    /// The name's registry entry; `None` when there is none or it cannot be decoded
    /// (then it is written anew).
    pub registration: Option<Registration>,
    /// Whether there is an entry that could not be decoded.
    pub garbled: bool,
    /// When the host last published its GPU facts.
    pub gpus_at: Option<Timestamp>,
}

impl Seen {
    pub fn new(now: Timestamp, registration: Option<&str>, gpus_at: Option<&str>) -> Seen {
        let decoded = registration.map(serde_json::from_str::<Registration>);
        Seen {
            now,
            garbled: matches!(decoded, Some(Err(_))),
            registration: decoded.and_then(std::result::Result::ok),
            gpus_at: gpus_at.and_then(|t| t.trim().parse().ok()),
        }
    }
}

/// The entry to write after a commit that left the pool with `gpu_count` GPUs, and
/// whether only if there is none yet (`HSETNX`, so that of two machines claiming a new
/// name at once, one wins and the other is refused at its next command); `None` when the
/// entry is recent and right. Pure.
pub fn registration_update(
    seen: &Seen,
    machine_id: &str,
    hostname: Option<&str>,
    gpu_count: Option<usize>,
) -> Option<(Registration, bool)> {
    if host::held_elsewhere(seen.registration.as_ref(), machine_id).is_some() {
        return None;
    }
    let fresh = Registration {
        machine_id: machine_id.to_string(),
        hostname: hostname.map(str::to_string),
        gpu_count: gpu_count.and_then(|n| u32::try_from(n).ok()),
        last_write: Some(seen.now),
    };
    match &seen.registration {
        None => Some((fresh, !seen.garbled)),
        Some(entry) => {
            let stale = entry
                .last_write
                .is_none_or(|t| seen.now - t >= REGISTRATION_REFRESH_SECONDS);
            let changed = entry.gpu_count != fresh.gpu_count || entry.hostname != fresh.hostname;
            (stale || changed).then_some((fresh, false))
        }
    }
}

/// Whether GPU facts last published at `gpus_at` are due again at `now`. Pure.
pub fn publish_due(gpus_at: Option<Timestamp>, now: Timestamp) -> bool {
    gpus_at.is_none_or(|t| now - t >= PUBLISH_INTERVAL_SECONDS || t > now)
}

impl RedisStore {
    /// Keeps what a read saw; refuses when another machine holds this host's name, before
    /// anything is written under it.
    pub(super) fn remember(&self, seen: Seen) -> Result<()> {
        if let (Some(name), Some(theirs)) = (
            self.keys.host(),
            host::held_elsewhere(seen.registration.as_ref(), host::machine_id()),
        ) {
            return Err(Error::failure(host::claimed_elsewhere(
                name,
                theirs,
                &self.describe(),
            )));
        }
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(seen);
        Ok(())
    }

    fn last_seen(&self) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// After a commit: the registry entry, when it is missing, another machine's (never:
    /// [`RedisStore::remember`] refused before), out of date or a minute old. Best
    /// effort: a failure here loses nothing but freshness, and the next commit tries again.
    pub(super) fn register(&self, session: &mut Session, gpu_count: Option<usize>) {
        let (Some(name), Some(seen)) = (self.keys.host(), self.last_seen()) else {
            return;
        };
        let hostname = host::local_hostname();
        let Some((entry, only_if_new)) =
            registration_update(&seen, host::machine_id(), hostname.as_deref(), gpu_count)
        else {
            return;
        };
        let Ok(value) = serde_json::to_string(&entry) else {
            return;
        };
        let command = if only_if_new { "HSETNX" } else { "HSET" };
        let _ = session.call(|c| {
            redis::cmd(command)
                .arg(REGISTRY_KEY)
                .arg(name.as_str())
                .arg(&value)
                .exec(c)
        });
    }

    /// See [`crate::store::Store::take_over_host`].
    pub fn take_over_host(&self, name: &HostName) -> Result<()> {
        let entry = Registration {
            machine_id: host::machine_id().to_string(),
            hostname: host::local_hostname(),
            gpu_count: None,
            last_write: None,
        };
        let value = serde_json::to_string(&entry)
            .map_err(|e| Error::failure(format!("cannot encode the registration: {e}")))?;
        let mut session = self.session();
        session
            .call(|c| {
                redis::cmd("HSET")
                    .arg(REGISTRY_KEY)
                    .arg(name.as_str())
                    .arg(&value)
                    .exec(c)
            })
            .map_err(|e| self.explain(&e))
    }

    /// See [`crate::store::Store::publish_gpus`].
    pub fn publish_gpus(&self, facts: impl FnOnce(Timestamp) -> Option<PublishedGpus>) {
        let Some(seen) = self.last_seen().filter(|_| self.keys.host().is_some()) else {
            return;
        };
        if !publish_due(seen.gpus_at, seen.now) {
            return;
        }
        let Some(value) = facts(seen.now).and_then(|facts| serde_json::to_string(&facts).ok())
        else {
            return;
        };
        let mut session = self.session();
        let published = session.call(|c| {
            redis::cmd("MSET")
                .arg(&self.keys.gpus)
                .arg(&value)
                .arg(&self.keys.gpus_at)
                .arg(seen.now)
                .exec(c)
        });
        if published.is_ok()
            && let Some(seen) = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_mut()
        {
            seen.gpus_at = Some(seen.now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(now: Timestamp, entry: Option<Registration>) -> Seen {
        Seen {
            now,
            registration: entry,
            garbled: false,
            gpus_at: None,
        }
    }

    fn entry(machine: &str, count: u32, last_write: Timestamp) -> Registration {
        Registration {
            machine_id: machine.into(),
            hostname: Some("h".into()),
            gpu_count: Some(count),
            last_write: Some(last_write),
        }
    }

    #[test]
    fn the_registry_is_written_when_new_changed_or_a_minute_old() {
        let new = registration_update(&seen(100, None), "m", Some("h"), Some(8)).unwrap();
        assert_eq!(
            (new.0.gpu_count, new.0.last_write, new.1),
            (Some(8), Some(100), true)
        );
        let recent = seen(100, Some(entry("m", 8, 50)));
        assert_eq!(registration_update(&recent, "m", Some("h"), Some(8)), None);
        let resized = registration_update(&recent, "m", Some("h"), Some(4)).unwrap();
        assert_eq!((resized.0.gpu_count, resized.1), (Some(4), false));
        let old = seen(110, Some(entry("m", 8, 50)));
        assert!(registration_update(&old, "m", Some("h"), Some(8)).is_some());
        let theirs = seen(1000, Some(entry("other", 8, 50)));
        assert_eq!(registration_update(&theirs, "m", Some("h"), Some(8)), None);
        let mut garbled = seen(100, None);
        garbled.garbled = true;
        assert!(
            !registration_update(&garbled, "m", None, Some(8)).unwrap().1,
            "overwritten"
        );
    }

    #[test]
    fn publishing_waits_30_seconds() {
        assert!(publish_due(None, 100));
        assert!(!publish_due(Some(100), 129));
        assert!(publish_due(Some(100), 130));
        // Published "in the future" (the store's clock was stepped back): due.
        assert!(publish_due(Some(200), 100));
        let seen = Seen::new(5, Some("{not json"), Some("4"));
        assert!(seen.garbled && seen.registration.is_none());
        assert_eq!(seen.gpus_at, Some(4));
    }
}
