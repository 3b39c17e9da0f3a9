//! `canhazgpu web`: a read-only dashboard of the lab and its JSON API, served by the
//! binary itself.
//!
//! The server is synchronous and small, like the rest of the tool: one I/O thread owns
//! every socket and multiplexes them with poll(2), so that a slow or idle client costs a
//! table entry and never a thread; a few worker threads compute answers (store reads);
//! one thread watches the stores and tells the open event streams when something
//! changed. Everything it shows comes through the [`Lab`] trait, which the command
//! implements with [`crate::lab`] and tests implement with hosts of their own.
//!
//! Nothing here writes to a store: the views are computed in memory, as `status` of
//! another host is.

mod assets;
mod events;
mod http;
mod routes;
mod server;

#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::commands::report::Report;
use crate::error::Result;
use crate::views::HostView;

pub use server::Server;

/// A wait for a change: sleeps up to the timeout, `true` when woken by a change.
pub type Wait<'a> = dyn FnMut(Duration) -> bool + 'a;

/// The lab as the dashboard reads it.
pub trait Lab: Send + Sync {
    /// Every host, the one this server runs on first. Never fails: a host that cannot be
    /// read is in the list as unreachable.
    fn hosts(&self) -> Vec<HostView>;

    /// `report --json` over the last `days`.
    fn report(&self, days: u32) -> Result<Report>;

    /// Runs `body` with a `wait(timeout)` that returns `true` early when a store
    /// announced a change. Without such announcements (the default) it just sleeps; the
    /// dashboard polls [`Lab::hosts`] anyway.
    fn watch(&self, body: &mut dyn FnMut(&mut Wait)) {
        body(&mut |timeout| {
            std::thread::sleep(timeout);
            false
        });
    }
}

/// How much the server serves at once, and how long it waits for a client. A client
/// that stays within none of these is dropped; it never holds a thread.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections being read, answered or written at once. When all are taken, a new
    /// connection replaces the one that has waited longest for its request head.
    pub connections: usize,
    /// Open event streams (`/api/events`); one more gets 503 and the page polls.
    pub streams: usize,
    /// Threads computing answers.
    pub workers: usize,
    /// Requests waiting for a worker (those that read a store); one more gets 503.
    pub queue: usize,
    /// From connecting to the end of the request head.
    pub head_timeout: Duration,
    /// For the client to take a whole response.
    pub write_timeout: Duration,
    /// Bytes of events an event stream may fall behind before it is dropped.
    pub stream_backlog: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 256,
            streams: 256,
            workers: 4,
            // As many as there may be connections: every page asks at once after a
            // change, and none of them should be refused for it.
            queue: 256,
            head_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            stream_backlog: 64 * 1024,
        }
    }
}
