//! The Redis store, in upstream canhazgpu's key schema so that existing pools keep working
//! and old and new clients can share one.
//!
//! Transactions are optimistic: WATCH the pool's keys, read, decide in Rust, then
//! MULTI/SET/EXEC only the keys that changed; when EXEC aborts because someone else wrote
//! a watched key, start again after a short random pause.
//!
//! One connection serves a whole command. Each store operation has one deadline for all
//! its round trips, so that a paused or unreachable server is an error within about
//! [`TIMEOUT`], however many round trips the operation needed.

mod lab;
mod registry;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::{Client, Connection, ConnectionLike, ErrorKind, RedisError, Value as RedisValue};

use crate::error::{Error, Result};
use crate::host::{HostName, Keyspace};
use crate::model::{self, HistoryRecord, MAX_GPUS, Pool, Timestamp};
use crate::store::{EntriesBeyond, Snapshot, StoreOptions, printable_url};

/// The keys of one pool: upstream's (`canhazgpu:gpu_count`, ...), or a named host's, the
/// same names under `canhazgpu:{NAME}:` (see [`Keyspace`]).
struct Keys {
    space: Keyspace,
    count: String,
    /// Ours: upstream records no initialization time.
    initialized: String,
    history: String,
    /// Ours: the FIFO of `--wait` requests, a JSON array. Upstream's own queue keys are
    /// left alone; the two queues do not know each other.
    queue: String,
    /// Ours: see [`Pool::rebuilding_until`].
    rebuilding: String,
    /// The channel published in every commit that frees a GPU or shortens the queue, so
    /// that waiters wake up at once instead of polling fast.
    wake: String,
    /// Ours, named hosts only: the store's time of the host's last commit, written in
    /// the commit, for the lab views.
    last_write: String,
    /// Ours, named hosts only: what the host's GPU library said (see
    /// [`crate::host::PublishedGpus`]), and the store's time it was published at.
    gpus: String,
    gpus_at: String,
}

impl Keys {
    fn new(space: Keyspace) -> Keys {
        Keys {
            count: space.key("gpu_count"),
            initialized: space.key("initialized_at"),
            history: space.key("usage_history_sorted"),
            queue: space.key("fifo"),
            rebuilding: space.key("rebuilding_until"),
            wake: space.key("wake"),
            last_write: space.key("last_write"),
            gpus: space.key("gpus"),
            gpus_at: space.key("gpus_at"),
            space,
        }
    }

    fn gpu(&self, id: u32) -> String {
        self.space.key(&format!("gpu:{id}"))
    }

    /// The host's name; `None` for upstream's keys, which get nothing but upstream's.
    fn host(&self) -> Option<&HostName> {
        self.space.host()
    }
}

/// How long one store operation may wait for the server, all its round trips together.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Far more than contention on one host produces; reaching it means something is wrong.
const MAX_ATTEMPTS: u32 = 200;
/// Upstream keeps 90 days of history, and so do we.
const HISTORY_SECONDS: i64 = 90 * 86_400;

pub struct RedisStore {
    /// The URL as messages may show it (see [`printable_url`]).
    shown: String,
    client: Client,
    /// This host's pool's keys.
    keys: Keys,
    /// Opened by a lab view (see [`StoreOptions::viewing`]).
    viewing: bool,
    /// What the last read of this host's pool saw of the registry and of what the host
    /// published, for the writes that follow it (see [`registry`]).
    seen: Mutex<Option<registry::Seen>>,
    /// Opened at the first operation and kept for the next, dropped after any error
    /// that may have left it in an unknown state. A mutex because `run` heartbeats from
    /// a thread of its own.
    connection: Mutex<Option<Connection>>,
}

/// A connection held for one store operation, and that operation's deadline.
struct Session<'a> {
    store: &'a RedisStore,
    connection: MutexGuard<'a, Option<Connection>>,
    deadline: Instant,
}

impl Session<'_> {
    /// Runs `request` on the connection (opening it if needed) with whatever time the
    /// operation has left. After a failure the connection may be mid-reply, so it goes.
    fn call<T>(
        &mut self,
        request: impl FnOnce(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        if self.connection.is_none() {
            *self.connection = Some(self.store.client.get_connection_with_timeout(left)?);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(timed_out());
        };
        let left = self.deadline.saturating_duration_since(Instant::now());
        let outcome = connection
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .and_then(|()| connection.set_write_timeout(Some(left.max(Duration::from_millis(1)))))
            .and_then(|()| request(&mut FailFast(connection)));
        if outcome.is_err() {
            *self.connection = None;
        }
        outcome
    }

    /// The server answered: the next round trips get the full time again.
    fn renew(&mut self) {
        self.deadline = Instant::now() + TIMEOUT;
    }
}

/// The connection as queries use it: redis-rs's own, except that a pipeline stops
/// reading at its first failure. redis-rs reads every reply of a pipeline even after a
/// read timed out, so a paused server cost one whole timeout per command of a pipeline
/// (10 s for `status`) instead of one per operation.
struct FailFast<'a>(&'a mut Connection);

impl ConnectionLike for FailFast<'_> {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<RedisValue> {
        self.0.req_packed_command(cmd)
    }

    /// Replies before `offset` are those of MULTI and the queued commands of a
    /// transaction: an error among them (say OOM) is why the transaction was refused.
    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<RedisValue>> {
        self.0.send_packed_command(cmd)?;
        let mut replies = Vec::with_capacity(count);
        let mut refused = None;
        for index in 0..offset + count {
            match self.0.recv_response()? {
                RedisValue::ServerError(e) if index < offset => {
                    refused.get_or_insert(e);
                }
                reply if index >= offset => replies.push(reply),
                _ => {}
            }
        }
        match refused {
            Some(e) => Err(e.into()),
            None => Ok(replies),
        }
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.0.check_connection()
    }

    fn is_open(&self) -> bool {
        self.0.is_open()
    }
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "timed out",
    ))
}

impl RedisStore {
    pub fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        let shown = printable_url(url);
        let invalid = |e: RedisError| {
            Error::usage(format!(
                "invalid Redis URL '{shown}': {e}; use redis://host:port/db, \
                 redis://USER:PASSWORD@host:port/db, rediss://host:port/db (TLS) or \
                 redis+unix:///path/to/redis.sock"
            ))
        };
        let info = Client::open(url)
            .map_err(invalid)?
            .get_connection_info()
            .clone();
        // CLIENT SETINFO would cost a round trip per command, for a name nobody reads.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let info = info.set_redis_settings(settings);
        let client = match &options.tls_ca_file {
            Some(ca) if url.starts_with("rediss://") => {
                let pem = std::fs::read(ca).map_err(|e| {
                    Error::failure(format!(
                        "cannot read the certificate authority {} (`tls_ca_file` in the \
                         configuration) for {shown}: {e}; fix the path or its permissions",
                        ca.display()
                    ))
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                Client::build_with_tls(info, certificates).map_err(|e| {
                    Error::failure(format!(
                        "cannot use {} (`tls_ca_file` in the configuration) as the \
                         certificate authority of {shown}: {e}; it must be a PEM file",
                        ca.display()
                    ))
                })?
            }
            _ => Client::open(info).map_err(invalid)?,
        };
        Ok(RedisStore {
            shown,
            client,
            keys: Keys::new(options.keyspace.clone()),
            viewing: options.viewing,
            seen: Mutex::new(None),
            connection: Mutex::new(None),
        })
    }

    pub fn describe(&self) -> String {
        format!("Redis at {}", self.shown)
    }

    fn session(&self) -> Session<'_> {
        Session {
            store: self,
            // A thread that panicked while holding it left at worst a connection that
            // the next failure replaces.
            connection: self
                .connection
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            deadline: Instant::now() + TIMEOUT,
        }
    }

    /// Our error for what Redis or the connection to it said: the real cause, what to
    /// do about it, and whether waiting may help.
    fn explain(&self, e: &RedisError) -> Error {
        let advice = if self.viewing {
            Advice::CheckReach
        } else {
            Advice::ChooseAnother
        };
        explain_with(&self.shown, e, advice)
    }

    pub fn snapshot(&self) -> Result<Snapshot> {
        let mut session = self.session();
        self.read(&mut session, false)
    }

    /// Reads the pool and the server's clock; with `watch`, WATCHes every key read
    /// before reading it. A named host's read also asks the registry for its name (and
    /// refuses when another machine holds it) and when it last published its GPU facts,
    /// in the same round trip, for [`registry`]'s writes after it.
    fn read(&self, session: &mut Session, watch: bool) -> Result<Snapshot> {
        let keys = &self.keys;
        let mut head = redis::pipe();
        if watch {
            head.cmd("WATCH")
                .arg(&keys.count)
                .arg(&keys.initialized)
                .arg(&keys.queue)
                .arg(&keys.rebuilding)
                .ignore();
        }
        head.cmd("TIME")
            .cmd("GET")
            .arg(&keys.count)
            .cmd("GET")
            .arg(&keys.initialized)
            .cmd("GET")
            .arg(&keys.queue)
            .cmd("GET")
            .arg(&keys.rebuilding);
        if let Some(host) = keys.host() {
            head.cmd("HGET")
                .arg(crate::host::REGISTRY_KEY)
                .arg(host.as_str())
                .cmd("GET")
                .arg(&keys.gpus_at);
        }
        let replies: Vec<RedisValue> = session
            .call(|c| head.query(c))
            .map_err(|e| self.explain(&e))?;
        let mut replies = replies.into_iter();
        let (now, _micros): (Timestamp, u64) = next_reply(&mut replies)?;
        let count: Option<String> = next_reply(&mut replies)?;
        let initialized: Option<String> = next_reply(&mut replies)?;
        let queue: Option<String> = next_reply(&mut replies)?;
        let rebuilding: Option<String> = next_reply(&mut replies)?;
        if keys.host().is_some() {
            let registration: Option<String> = next_reply(&mut replies)?;
            let gpus_at: Option<String> = next_reply(&mut replies)?;
            self.remember(registry::Seen::new(
                now,
                registration.as_deref(),
                gpus_at.as_deref(),
            ))?;
        }
        let Some(count) = count else {
            return Ok(Snapshot { pool: None, now });
        };
        let count = self.parse_count(&count)?;
        let gpu_keys: Vec<String> = (0..count).map(|id| keys.gpu(id)).collect();
        let values: Vec<Option<String>> = if gpu_keys.is_empty() {
            Vec::new()
        } else {
            let mut body = redis::pipe();
            if watch {
                body.cmd("WATCH").arg(&gpu_keys).ignore();
            }
            body.cmd("MGET").arg(&gpu_keys);
            let (values,): (Vec<Option<String>>,) = session
                .call(|c| body.query(c))
                .map_err(|e| self.explain(&e))?;
            values
        };
        let parts = PoolParts {
            initialized,
            rebuilding,
            queue,
            gpus: values,
        };
        Ok(Snapshot {
            pool: Some(self.decode_pool(keys, parts)?),
            now,
        })
    }

    /// A pool from what its keys hold.
    fn decode_pool(&self, keys: &Keys, parts: PoolParts) -> Result<Pool> {
        let decode_time = |text: Option<String>| {
            text.as_deref()
                .and_then(|t| model::decode_time(&serde_json::Value::from(t)))
        };
        let mut pool = Pool {
            initialized_at: decode_time(parts.initialized),
            rebuilding_until: decode_time(parts.rebuilding),
            gpus: Vec::with_capacity(parts.gpus.len()),
            queue: match parts.queue {
                Some(text) => serde_json::from_str(&text).map_err(|e| {
                    Error::corrupt(format!(
                        "{} in {} is malformed ({e}); delete that key (the waiters \
                         re-queue) or reinitialize with `canhazgpu admin --gpus N --force`",
                        keys.queue,
                        self.describe()
                    ))
                })?,
                None => Vec::new(),
            },
        };
        for (id, value) in (0..).zip(parts.gpus) {
            let what = format!("{} in {}", keys.gpu(id), self.describe());
            pool.gpus
                .push(model::decode_slot(id, value.as_deref(), &what)?);
        }
        Ok(pool)
    }

    /// The pool's size, bounded: a larger count would make every command read (and
    /// WATCH) that many keys, which on a shared server blocks every other client.
    fn parse_count(&self, text: &str) -> Result<u32> {
        parse_count(&self.keys.count, &self.describe(), text)
    }

    /// See [`crate::store::Store::missing_pool`]. Asks the server once more, on this
    /// error path only: whether other keys of the pool are left, and whether the server
    /// evicts keys.
    pub fn missing_pool(&self) -> Error {
        let mut session = self.session();
        let mut probe = redis::pipe();
        probe
            .cmd("EXISTS")
            .arg(&self.keys.initialized)
            .arg(self.keys.gpu(0))
            .arg(&self.keys.history)
            .arg(&self.keys.queue)
            .cmd("INFO")
            .arg("memory")
            .cmd("INFO")
            .arg("stats");
        let Ok((traces, memory, stats)) = session.call(|c| probe.query::<(u32, String, String)>(c))
        else {
            return Error::not_initialized(&self.describe());
        };
        let policy = info_field(&memory, "maxmemory_policy").unwrap_or_default();
        let evicted: u64 = info_field(&stats, "evicted_keys")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if traces == 0 && evicted == 0 {
            return Error::not_initialized(&self.describe());
        }
        let evictions = format!(
            "this server has evicted {evicted} key(s) under maxmemory-policy {policy}; give \
             it more memory or `maxmemory-policy noeviction` so that it cannot drop the pool \
             again"
        );
        let what = match (traces, evicted) {
            (0, _) => format!(
                "the GPU pool is not in {}, and {evictions}. The pool has probably vanished \
                 with those keys (if it was never initialized, an administrator must run \
                 `canhazgpu admin --gpus N`)",
                self.describe()
            ),
            (_, 0) => format!(
                "the GPU pool has vanished from {}: other keys of the pool are still there, \
                 so the server lost or deleted part of its data",
                self.describe()
            ),
            _ => format!(
                "the GPU pool has vanished from {}: {evictions}",
                self.describe()
            ),
        };
        Error::no_pool(format!(
            "{what}. Running `canhazgpu run` jobs put the pool and their reservations back \
             at their next heartbeat (every 60 s by default); manual reservations and the \
             queue are lost. Wait one heartbeat interval: if the pool is still missing, an \
             administrator reinitializes it with `canhazgpu admin --gpus N`"
        ))
    }

    /// GPU entries above the pool's size; see [`crate::store::Store::entries_beyond`].
    /// One EXISTS of every id up to [`MAX_GPUS`]; which ones only when there are any.
    pub fn entries_beyond(&self, count: usize) -> Result<Option<EntriesBeyond>> {
        let ids: Vec<u32> = (count as u32..MAX_GPUS).collect();
        if ids.is_empty() {
            return Ok(None);
        }
        let keys: Vec<String> = ids.iter().map(|&id| self.keys.gpu(id)).collect();
        let mut session = self.session();
        let found: usize = session
            .call(|c| redis::cmd("EXISTS").arg(&keys).query(c))
            .map_err(|e| self.explain(&e))?;
        if found == 0 {
            return Ok(None);
        }
        let mut each = redis::pipe();
        for key in &keys {
            each.cmd("EXISTS").arg(key);
        }
        let exists: Vec<bool> = session
            .call(|c| each.query(c))
            .map_err(|e| self.explain(&e))?;
        let ids: Vec<u32> = ids
            .into_iter()
            .zip(exists)
            .filter_map(|(id, exists)| exists.then_some(id))
            .collect();
        // Deleted between the two queries: nothing to tell.
        Ok((!ids.is_empty()).then(|| EntriesBeyond {
            ids,
            count_key: self.keys.count.clone(),
        }))
    }

    /// See [`crate::store::Store::with_wakeups`]. Without a subscription (Redis gone, say)
    /// the waits just sleep, and the caller's polling still makes progress.
    pub fn with_wakeups<T>(
        &self,
        body: impl FnOnce(&mut dyn FnMut(Duration) -> bool, bool) -> T,
    ) -> T {
        let mut connection = self.client.get_connection_with_timeout(TIMEOUT).ok();
        let mut subscription = connection.as_mut().and_then(|connection| {
            // SUBSCRIBE waits for its confirmation: not for ever on a paused server.
            connection.set_write_timeout(Some(TIMEOUT)).ok()?;
            connection.set_read_timeout(Some(TIMEOUT)).ok()?;
            let mut pubsub = connection.as_pubsub();
            if pubsub.subscribe(&self.keys.wake).is_err() {
                // Dropping it unsubscribes and waits for the answer: not for long.
                let _ = pubsub.set_read_timeout(Some(Duration::from_millis(1)));
                return None;
            }
            Some(pubsub)
        });
        let subscribed = subscription.is_some();
        body(
            &mut |timeout| {
                let Some(pubsub) = subscription.as_mut() else {
                    std::thread::sleep(timeout);
                    return false;
                };
                // A zero timeout would mean "block forever" to the socket.
                let _ = pubsub.set_read_timeout(Some(timeout.max(Duration::from_millis(1))));
                match pubsub.get_message() {
                    Ok(_) => true,
                    Err(e) if e.is_timeout() => false,
                    Err(_) => {
                        subscription = None;
                        std::thread::sleep(timeout);
                        false
                    }
                }
            },
            subscribed,
        )
    }

    pub fn history(&self, since: Timestamp) -> Result<Vec<HistoryRecord>> {
        let mut session = self.session();
        let members: Vec<String> = session
            .call(|c| {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&self.keys.history)
                    .arg(since)
                    .arg("+inf")
                    .query(c)
            })
            .map_err(|e| self.explain(&e))?;
        Ok(members
            .iter()
            .filter_map(|m| HistoryRecord::decode(m))
            .collect())
    }

    pub fn transact<T>(
        &self,
        mut change: impl FnMut(&mut Option<Pool>, Timestamp) -> Result<T>,
    ) -> Result<T> {
        let mut session = self.session();
        for attempt in 0..MAX_ATTEMPTS {
            let Snapshot { pool: before, now } = self.read(&mut session, true)?;
            let mut pool = before.clone();
            let result = match change(&mut pool, now) {
                Ok(result) => result,
                Err(e) => {
                    let _ = session.call(|c| redis::cmd("UNWATCH").exec(c));
                    return Err(e);
                }
            };
            let Some(writes) = changes(&self.keys, before.as_ref(), pool.as_ref(), now) else {
                session
                    .call(|c| redis::cmd("UNWATCH").exec(c))
                    .map_err(|e| self.explain(&e))?;
                return Ok(result);
            };
            match session.call(|c| writes.query::<Option<RedisValue>>(c)) {
                Ok(Some(_)) => {
                    self.register(&mut session, pool.as_ref().map(|pool| pool.gpus.len()));
                    return Ok(result);
                }
                Ok(None) => {
                    session.renew();
                    std::thread::sleep(backoff(attempt));
                }
                // The commit was sent but its reply is lost: it may have been made.
                Err(e) if e.is_io_error() => {
                    drop(session);
                    if self.landed(before.as_ref(), pool.as_ref(), &e)? {
                        return Ok(result);
                    }
                    session = self.session();
                }
                Err(e) => return Err(self.explain(&e)),
            }
        }
        Err(Error::failure(format!(
            "gave up after {MAX_ATTEMPTS} conflicting updates of the pool in {}; try again",
            self.describe()
        )))
    }

    /// Whether a commit whose reply was lost was made, from a fresh read of the pool
    /// (see [`model::commit_landed`]); `false` when that cannot be told, so that the
    /// transaction runs again, and its closure finds its own earlier effect where it
    /// matters (a request's reservation carries the request's id).
    fn landed(
        &self,
        before: Option<&Pool>,
        written: Option<&Pool>,
        lost: &RedisError,
    ) -> Result<bool> {
        let current = self.snapshot().map_err(|e| Error {
            message: format!(
                "lost the connection to {} while committing ({}), and could not look \
                 whether the change was made: {e}. Check with `canhazgpu status`",
                self.describe(),
                self.explain(lost).message
            ),
            ..e
        })?;
        Ok(model::commit_landed(before, written, current.pool.as_ref()) == Some(true))
    }

    /// Writes the pool `fresh` makes, without reading what is there, which may be
    /// unreadable. Deletes every GPU entry up to [`MAX_GPUS`] above the new size (one
    /// command of bounded cost, never a scan of the server's whole key space).
    pub fn overwrite(&self, fresh: impl FnOnce(Timestamp) -> Pool) -> Result<()> {
        let mut session = self.session();
        let (now, _micros): (Timestamp, u64) = session
            .call(|c| redis::cmd("TIME").query(c))
            .map_err(|e| self.explain(&e))?;
        let pool = fresh(now);
        let mut writes = changes(&self.keys, None, Some(&pool), now).unwrap_or_else(redis::pipe);
        let stale: Vec<String> = (pool.gpus.len() as u32..MAX_GPUS)
            .map(|id| self.keys.gpu(id))
            .collect();
        if !stale.is_empty() {
            writes.cmd("UNLINK").arg(stale).ignore();
        }
        writes
            .cmd("UNLINK")
            .arg(&self.keys.queue)
            .arg(&self.keys.rebuilding)
            .ignore();
        session
            .call(|c| writes.query::<()>(c))
            .map_err(|e| self.explain(&e))
    }
}

/// What the keys of a pool hold, besides its size.
struct PoolParts {
    initialized: Option<String>,
    rebuilding: Option<String>,
    queue: Option<String>,
    gpus: Vec<Option<String>>,
}

/// See [`RedisStore::parse_count`]; `key` is where `text` came from, `store` which
/// store it is in.
fn parse_count(key: &str, store: &str, text: &str) -> Result<u32> {
    let fix = "reinitialize with `canhazgpu admin --gpus N --force`";
    let count: u32 = text.trim().parse().map_err(|_| {
        Error::corrupt(format!(
            "{key} in {store} holds '{}', not a GPU count; {fix}",
            text.chars().take(40).collect::<String>()
        ))
    })?;
    if count > MAX_GPUS {
        return Err(Error::corrupt(format!(
            "{key} in {store} holds {count}, more than the {MAX_GPUS} GPUs a pool may have; \
             {fix}, or set it right with `redis-cli SET {key} N`"
        )));
    }
    Ok(count)
}

/// The next reply of a pipeline, as `T`.
fn next_reply<T: redis::FromRedisValue>(
    replies: &mut impl Iterator<Item = RedisValue>,
) -> Result<T> {
    let reply = replies.next().unwrap_or(RedisValue::Nil);
    redis::from_redis_value(reply).map_err(|e| {
        Error::failure(format!(
            "Redis answered something unexpected: {e}; try again"
        ))
    })
}

/// One `field:value` line of `INFO` output.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
}

/// What a message about an unreachable store suggests: for this host's own store, another
/// store; for one read only to look at other hosts (see [`StoreOptions::viewing`]), what
/// to check about reaching it.
#[derive(Clone, Copy)]
enum Advice {
    ChooseAnother,
    CheckReach,
}

impl Advice {
    /// After a timeout or a lost connection.
    fn retry(self) -> &'static str {
        match self {
            Advice::ChooseAnother => {
                "try again, or choose another store with --store or CANHAZGPU_STORE"
            }
            Advice::CheckReach => {
                "try again later, and check that this host may reach it (network, firewall, \
                 the server's bind address) and its URL in the configuration"
            }
        }
    }

    /// After a refused connection.
    fn check(self) -> &'static str {
        match self {
            Advice::ChooseAnother => {
                "check that redis-server is running there, or choose another store with \
                 --store or CANHAZGPU_STORE"
            }
            Advice::CheckReach => {
                "check that redis-server is running there, that this host may reach it \
                 (network, firewall, the server's bind address) and its URL in the \
                 configuration"
            }
        }
    }
}

/// See [`RedisStore::explain`]. `shown` is the printable URL; `advice` is for a store
/// that cannot be reached.
fn explain_with(shown: &str, e: &RedisError, advice: Advice) -> Error {
    let store = format!("Redis at {shown}");
    if let Some(error) = explain_refusal(&store, e) {
        return error;
    }
    if let Some(error) = explain_tls(&store, e) {
        return error;
    }
    if e.kind() == ErrorKind::AuthenticationFailed {
        return Error::failure(format!(
            "{store} refused the user name or password in the store URL ({e}); ask its \
             administrator for the right ones"
        ));
    }
    if e.is_timeout() {
        return Error::transient(format!(
            "{store} did not answer: timed out after {} s (is the server paused, \
             overloaded or far away?); {}",
            TIMEOUT.as_secs(),
            advice.retry()
        ));
    }
    if e.is_connection_refusal() {
        return Error::transient(format!(
            "cannot connect to {store} ({e}); {}",
            advice.check()
        ));
    }
    if e.is_io_error() {
        return Error::transient(format!(
            "lost the connection to {store} ({e}); {}",
            advice.retry()
        ));
    }
    Error::failure(format!("{store} failed: {e}"))
}

/// A TLS handshake that failed: the server's certificate is not trusted, names another
/// host, or the server does not speak TLS. Trying again does not help.
fn explain_tls(store: &str, e: &RedisError) -> Option<Error> {
    let text = e.to_string();
    let certificate = text.contains("certificate") || text.contains("Certificate");
    let handshake = text.contains("InvalidContentType") || text.contains("CorruptMessage");
    if certificate {
        Some(Error::failure(format!(
            "cannot verify the TLS certificate of {store} ({e}); if a private certificate \
             authority signed it, set `tls_ca_file` in the configuration to that \
             authority's PEM file; the certificate must also name the host in the URL"
        )))
    } else if handshake {
        Some(Error::failure(format!(
            "{store} does not answer in TLS ({e}); use redis:// for a server without TLS, \
             or the server's TLS port (`tls-port`)"
        )))
    } else {
        None
    }
}

/// What the server said no with, by its error code. A transaction refused as a whole
/// says why in the errors of its commands.
fn explain_refusal(store: &str, e: &RedisError) -> Option<Error> {
    let code = e
        .clone()
        .into_server_errors()
        .and_then(|errors| errors.first().map(|(_, error)| error.code().to_string()))
        .or_else(|| e.code().map(str::to_string))?;
    let (message, transient) = match code.as_str() {
        "OOM" => (
            "refused the write: it is out of memory (above its `maxmemory`); nothing was \
             changed. Free memory there or raise `maxmemory`"
                .to_string(),
            false,
        ),
        "READONLY" => (
            "is a read-only replica (READONLY): it cannot take reservations; point the store \
             URL at the primary server, or choose another store with --store or \
             CANHAZGPU_STORE"
                .to_string(),
            false,
        ),
        "NOAUTH" => (
            "requires a password (NOAUTH); put it in the store URL: \
             redis://:PASSWORD@host:port/db, or redis+unix:///path/to/redis.sock?pass=PASSWORD"
                .to_string(),
            false,
        ),
        "WRONGPASS" => (
            "refused the user name or password in the store URL (WRONGPASS); ask its \
             administrator for the right ones"
                .to_string(),
            false,
        ),
        "NOPERM" => (
            format!(
                "does not let this user run what canhazgpu needs (NOPERM: {e}); its \
                 administrator must allow the canhazgpu:* keys and their commands"
            ),
            false,
        ),
        "MISCONF" => (
            "refuses writes because it cannot save its data to disk (MISCONF); its \
             administrator must fix its disk or `save` setting"
                .to_string(),
            false,
        ),
        "LOADING" => (
            "is loading its data after a restart (LOADING); try again in a moment".to_string(),
            true,
        ),
        "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "BUSY" => (
            format!("cannot answer now ({e}); try again in a moment"),
            true,
        ),
        _ => return None,
    };
    let message = format!("{store} {message}");
    Some(if transient {
        Error::transient(message)
    } else {
        Error::failure(message)
    })
}

/// The MULTI/EXEC block that turns `before` into `after`, or `None` when nothing changed;
/// the reservations it ends go to the history in the same block.
/// A named host's commit also records its time in `last_write`, for the lab views.
fn changes(
    keys: &Keys,
    before: Option<&Pool>,
    after: Option<&Pool>,
    now: Timestamp,
) -> Option<redis::Pipeline> {
    let after = after?;
    if before == Some(after) {
        return None;
    }
    let mut writes = redis::pipe();
    writes.atomic();
    let old_count = before.map_or(0, |pool| pool.gpus.len());
    if old_count != after.gpus.len() || before.is_none() {
        writes.set(&keys.count, after.gpus.len()).ignore();
        for id in after.gpus.len()..old_count {
            writes.del(keys.gpu(id as u32)).ignore();
        }
    }
    if keys.host().is_some() {
        writes.set(&keys.last_write, now).ignore();
    }
    set_or_delete(
        &mut writes,
        &keys.initialized,
        before.and_then(|pool| pool.initialized_at),
        after.initialized_at,
    );
    set_or_delete(
        &mut writes,
        &keys.rebuilding,
        before.and_then(|pool| pool.rebuilding_until),
        after.rebuilding_until,
    );
    for slot in &after.gpus {
        let old = before.and_then(|pool| pool.gpus.get(slot.id as usize));
        if old != Some(slot) {
            writes
                .set(keys.gpu(slot.id), model::encode_slot(slot))
                .ignore();
        }
    }
    let old_queue = before.map_or(&[][..], |pool| &pool.queue[..]);
    if old_queue != after.queue.as_slice() {
        if after.queue.is_empty() {
            writes.del(&keys.queue).ignore();
        } else if let Ok(queue) = serde_json::to_string(&after.queue) {
            writes.set(&keys.queue, queue).ignore();
        }
    }
    append_history(
        &mut writes,
        &keys.history,
        &model::ended_between(before, Some(after), now),
        now,
    );
    let freed = before.is_some_and(|pool| pool.free_count() < after.free_count());
    if freed || after.queue.len() < old_queue.len() {
        writes.publish(&keys.wake, "").ignore();
    }
    Some(writes)
}

fn set_or_delete(
    writes: &mut redis::Pipeline,
    key: &str,
    old: Option<Timestamp>,
    new: Option<Timestamp>,
) {
    if old != new {
        match new {
            Some(t) => writes.set(key, t).ignore(),
            None => writes.del(key).ignore(),
        };
    }
}

/// Adds the records and trims what has aged out, in the same block: the trim removes
/// only records older than 90 days (a few at a time, O(log n) to find), and the
/// key's 90-day expiry, as upstream sets it, clears a history nobody adds to.
fn append_history(
    writes: &mut redis::Pipeline,
    key: &str,
    records: &[HistoryRecord],
    now: Timestamp,
) {
    if records.is_empty() {
        return;
    }
    for record in records {
        if let Ok(member) = serde_json::to_string(record) {
            writes.zadd(key, member, record.end_time).ignore();
        }
    }
    writes
        .cmd("ZREMRANGEBYSCORE")
        .arg(key)
        .arg("-inf")
        .arg(format!("({}", now - HISTORY_SECONDS))
        .ignore();
    writes.expire(key, HISTORY_SECONDS).ignore();
}

/// A few milliseconds, growing with the attempt, spread so that racing clients separate.
fn backoff(attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let spread = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 1000;
    Duration::from_micros(200 * u64::from(attempt.min(20)) + u64::from(spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a store that is not only viewed says.
    fn explain(shown: &str, e: &RedisError) -> Error {
        explain_with(shown, e, Advice::ChooseAnother)
    }

    #[test]
    fn tls_failures_say_what_to_set_and_views_what_to_check() {
        let shown = "rediss://db.lab:6380/0";
        let untrusted = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        ));
        let error = explain(shown, &untrusted);
        assert!(!error.transient);
        assert!(
            error.message.contains("cannot verify the TLS certificate")
                && error.message.contains("tls_ca_file"),
            "{}",
            error.message
        );
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let own = explain_with(shown, &refused, Advice::ChooseAnother);
        assert!(own.message.contains("--store"), "{}", own.message);
        let view = explain_with(shown, &refused, Advice::CheckReach);
        assert!(!view.message.contains("--store"), "{}", view.message);
        assert!(view.message.contains("may reach it"), "{}", view.message);
    }

    #[test]
    fn info_fields() {
        let info = "# Memory\r\nused_memory:100\r\nmaxmemory_policy:allkeys-lru\r\n";
        assert_eq!(
            info_field(info, "maxmemory_policy").as_deref(),
            Some("allkeys-lru")
        );
        assert_eq!(info_field(info, "used_memory").as_deref(), Some("100"));
        assert_eq!(info_field(info, "maxmemory"), None);
    }

    #[test]
    fn errors_name_the_cause_and_whether_to_retry() {
        let shown = "redis://db.lab:6379/0";
        let server = |code: &str, detail: &str| {
            redis::make_extension_error(code.to_string(), Some(detail.to_string()))
        };
        let oom = explain(shown, &server("OOM", "command not allowed"));
        assert!(oom.message.contains("out of memory") && !oom.transient);
        let readonly = explain(shown, &server("READONLY", "You can't write"));
        assert!(readonly.message.contains("read-only replica") && !readonly.transient);
        let noauth = explain(shown, &server("NOAUTH", "Authentication required."));
        assert!(noauth.message.contains("requires a password"));
        let loading = explain(shown, &server("LOADING", "Redis is loading"));
        assert!(loading.transient);
        let timeout = explain(shown, &timed_out());
        assert!(timeout.transient, "{}", timeout.message);
        assert!(
            timeout.message.contains("timed out after 2 s")
                && !timeout.message.contains("redis-server is running"),
            "{}",
            timeout.message
        );
        for error in [oom, readonly, noauth, loading, timeout] {
            assert!(
                error.message.contains("Redis at redis://db.lab:6379/0"),
                "{}",
                error.message
            );
        }
    }
}
