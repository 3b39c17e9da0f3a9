//! What the event streams say, and the thread that decides when to say it.
//!
//! The watcher reads the lab every [`POLL_INTERVAL`] and at once when a store announces
//! a change (Redis's wake channel, the embedded store's state file), and sends a
//! `change` event when what the page would show differs from what it last saw. Expiry
//! and heartbeats change views without any write, which is why it polls as well. Events
//! carry no data but a generation number: every page then asks `/api/hosts`, so that
//! an event stream never needs more than a few bytes of buffer.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::views::HostView;
use crate::web::Lab;

/// How often the lab is read when no store has announced anything. Changes that no
/// store announces (a reservation on Redis, an expiry) reach the page within this plus
/// one request.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// A quiet stream still gets a `ping` this often, so that the page can tell a live
/// stream from a dead one and the server notices clients that have gone.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Subscriptions are renewed this often (a Redis restarted meanwhile drops them).
const RESUBSCRIBE_INTERVAL: Duration = Duration::from_secs(60);

/// What opens every stream: the reconnection delay for EventSource.
pub const STREAM_PREAMBLE: &[u8] = b"retry: 2000\n\n";

pub fn change_event(generation: u64) -> Vec<u8> {
    format!("event: change\ndata: {{\"generation\":{generation}}}\n\n").into_bytes()
}

pub fn ping_event() -> Vec<u8> {
    b"event: ping\ndata: {}\n\n".to_vec()
}

/// A digest of what the page shows of `hosts`: everything but the time of the reading,
/// which differs every second without anything having changed.
pub fn fingerprint(hosts: &[HostView]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for host in hosts {
        let mut value = serde_json::to_value(host).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.remove("now");
        }
        value.to_string().hash(&mut hasher);
    }
    hosts.len().hash(&mut hasher);
    hasher.finish()
}

/// Watches `lab` until `stop`, handing every event to `send`.
pub fn watch(lab: &dyn Lab, stop: &AtomicBool, send: &mut dyn FnMut(Vec<u8>)) {
    let mut last = None;
    let mut generation = 0;
    let mut last_sent = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        lab.watch(&mut |wait| {
            let renew_at = Instant::now() + RESUBSCRIBE_INTERVAL;
            while !stop.load(Ordering::Relaxed) && Instant::now() < renew_at {
                let seen = Some(fingerprint(&lab.hosts()));
                // The first reading is no change: pages ask for the data when their
                // stream opens.
                if last.is_none() {
                    last = seen;
                    last_sent = Instant::now();
                } else if seen != last {
                    last = seen;
                    generation += 1;
                    send(change_event(generation));
                    last_sent = Instant::now();
                } else if last_sent.elapsed() >= PING_INTERVAL {
                    send(ping_event());
                    last_sent = Instant::now();
                }
                wait(POLL_INTERVAL);
            }
        });
    }
}

/// Starts [`watch`] on its own thread.
pub fn spawn_watcher(
    lab: Arc<dyn Lab>,
    stop: Arc<AtomicBool>,
    mut send: impl FnMut(Vec<u8>) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("web-watch".into())
        .spawn(move || watch(lab.as_ref(), &stop, &mut send))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::HostSummary;

    fn host(error: Option<&str>, now: i64) -> HostView {
        HostView {
            host: "a".into(),
            store: "embedded store in /x".into(),
            this_host: true,
            reachable: true,
            error: error.map(str::to_string),
            now: Some(now),
            last_write: None,
            nvml_at: None,
            summary: Some(HostSummary::default()),
            gpus: Vec::new(),
            queue: Vec::new(),
        }
    }

    #[test]
    fn the_time_of_reading_is_no_change() {
        assert_eq!(
            fingerprint(&[host(None, 100)]),
            fingerprint(&[host(None, 101)])
        );
    }

    #[test]
    fn anything_else_is() {
        let base = fingerprint(&[host(None, 100)]);
        assert_ne!(base, fingerprint(&[host(Some("down"), 100)]));
        assert_ne!(base, fingerprint(&[host(None, 100), host(None, 100)]));
        assert_ne!(base, fingerprint(&[]));
    }

    #[test]
    fn events_are_well_formed() {
        assert_eq!(
            String::from_utf8(change_event(7)).unwrap(),
            "event: change\ndata: {\"generation\":7}\n\n"
        );
        assert!(ping_event().ends_with(b"\n\n"));
    }
}
