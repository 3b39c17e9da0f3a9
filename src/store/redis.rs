//! The Redis store, in upstream canhazgpu's key schema so that existing pools keep working
//! and old and new clients can share one.
//!
//! Transactions are optimistic: WATCH the pool's keys, read, decide in Rust, then
//! MULTI/SET/EXEC only the keys that changed; when EXEC aborts because someone else wrote
//! a watched key, start again after a short random pause.

use std::time::Duration;

use redis::{Client, Connection, Value as RedisValue};

use crate::error::{Error, Result};
use crate::model::{self, HistoryRecord, Pool, Timestamp};
use crate::store::Snapshot;

const KEY_COUNT: &str = "canhazgpu:gpu_count";
/// Ours: upstream records no initialization time.
const KEY_INITIALIZED: &str = "canhazgpu:initialized_at";
const KEY_HISTORY: &str = "canhazgpu:usage_history_sorted";
/// Ours: the FIFO of `--wait` requests, a JSON array. Upstream's own queue keys are left
/// alone; the two queues do not know each other.
const KEY_QUEUE: &str = "canhazgpu:fifo";
/// Published in every commit that frees a GPU or shortens the queue, so that waiters
/// wake up at once instead of polling fast.
pub const CHANNEL_WAKE: &str = "canhazgpu:wake";
const TIMEOUT: Duration = Duration::from_secs(2);
/// Far more than contention on one host produces; reaching it means something is wrong.
const MAX_ATTEMPTS: u32 = 200;

fn gpu_key(id: u32) -> String {
    format!("canhazgpu:gpu:{id}")
}

pub struct RedisStore {
    url: String,
    client: Client,
}

impl RedisStore {
    pub fn open(url: &str) -> Result<Self> {
        let client = Client::open(url).map_err(|e| {
            Error::usage(format!(
                "invalid Redis URL '{url}': {e}; use redis://host:port/db or redis+unix:///path/to/redis.sock"
            ))
        })?;
        Ok(RedisStore {
            url: url.to_string(),
            client,
        })
    }

    pub fn describe(&self) -> String {
        format!("Redis at {}", self.url)
    }

    fn unreachable(&self, e: &redis::RedisError) -> Error {
        Error::failure(format!(
            "cannot use Redis at {}: {e}; check that redis-server is running there, or choose another store with --store or CANHAZGPU_STORE",
            self.url
        ))
    }

    fn connect(&self) -> Result<Connection> {
        let connection = self
            .client
            .get_connection_with_timeout(TIMEOUT)
            .map_err(|e| self.unreachable(&e))?;
        // The sync client waits forever by default; a hung server must not hang users.
        connection
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| connection.set_write_timeout(Some(TIMEOUT)))
            .map_err(|e| self.unreachable(&e))?;
        Ok(connection)
    }

    pub fn snapshot(&self) -> Result<Snapshot> {
        let mut connection = self.connect()?;
        self.read(&mut connection, false)
    }

    /// Reads the pool and the server's clock; with `watch`, WATCHes every key read
    /// before reading it.
    fn read(&self, connection: &mut Connection, watch: bool) -> Result<Snapshot> {
        let mut head = redis::pipe();
        if watch {
            head.cmd("WATCH")
                .arg(KEY_COUNT)
                .arg(KEY_INITIALIZED)
                .arg(KEY_QUEUE)
                .ignore();
        }
        head.cmd("TIME")
            .cmd("GET")
            .arg(KEY_COUNT)
            .cmd("GET")
            .arg(KEY_INITIALIZED)
            .cmd("GET")
            .arg(KEY_QUEUE);
        type Head = (
            (Timestamp, u64),
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let ((now, _micros), count, initialized, queue): Head =
            head.query(connection).map_err(|e| self.unreachable(&e))?;
        let Some(count) = count else {
            return Ok(Snapshot { pool: None, now });
        };
        let count: u32 = count.trim().parse().map_err(|_| {
            Error::corrupt(format!(
                "{KEY_COUNT} in Redis at {} holds '{count}', not a GPU count; reinitialize with `canhazgpu admin --gpus N --force`",
                self.url
            ))
        })?;
        let keys: Vec<String> = (0..count).map(gpu_key).collect();
        let values: Vec<Option<String>> = if keys.is_empty() {
            Vec::new()
        } else {
            let mut body = redis::pipe();
            if watch {
                body.cmd("WATCH").arg(&keys).ignore();
            }
            body.cmd("MGET").arg(&keys);
            let (values,): (Vec<Option<String>>,) =
                body.query(connection).map_err(|e| self.unreachable(&e))?;
            values
        };
        let mut pool = Pool {
            initialized_at: initialized
                .as_deref()
                .and_then(|t| model::decode_time(&serde_json::Value::from(t))),
            gpus: Vec::with_capacity(keys.len()),
            queue: match queue {
                Some(text) => serde_json::from_str(&text).map_err(|e| {
                    Error::corrupt(format!(
                        "{KEY_QUEUE} in Redis at {} is malformed ({e}); delete that key (the waiters re-queue) or reinitialize with `canhazgpu admin --gpus N --force`",
                        self.url
                    ))
                })?,
                None => Vec::new(),
            },
        };
        for (id, (key, value)) in (0..count).zip(keys.iter().zip(values)) {
            let what = format!("{key} in Redis at {}", self.url);
            pool.gpus
                .push(model::decode_slot(id, value.as_deref(), &what)?);
        }
        Ok(Snapshot {
            pool: Some(pool),
            now,
        })
    }

    /// See [`crate::store::Store::with_wakeups`]. Without a subscription (Redis gone, say)
    /// the waits just sleep, and the caller's polling still makes progress.
    pub fn with_wakeups<T>(
        &self,
        body: impl FnOnce(&mut dyn FnMut(Duration) -> bool, bool) -> T,
    ) -> T {
        let mut connection = self.connect().ok();
        let mut subscription = connection.as_mut().and_then(|connection| {
            let mut pubsub = connection.as_pubsub();
            pubsub.subscribe(CHANNEL_WAKE).ok()?;
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
        let mut connection = self.connect()?;
        let members: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(KEY_HISTORY)
            .arg(since)
            .arg("+inf")
            .query(&mut connection)
            .map_err(|e| self.unreachable(&e))?;
        Ok(members
            .iter()
            .filter_map(|m| HistoryRecord::decode(m))
            .collect())
    }

    pub fn transact<T>(
        &self,
        mut change: impl FnMut(&mut Option<Pool>, Timestamp) -> Result<T>,
    ) -> Result<T> {
        let mut connection = self.connect()?;
        for attempt in 0..MAX_ATTEMPTS {
            let Snapshot { pool: before, now } = self.read(&mut connection, true)?;
            let mut pool = before.clone();
            let result = match change(&mut pool, now) {
                Ok(result) => result,
                Err(e) => {
                    let _ = redis::cmd("UNWATCH").exec(&mut connection);
                    return Err(e);
                }
            };
            let Some(writes) = changes(before.as_ref(), pool.as_ref(), now) else {
                redis::cmd("UNWATCH")
                    .exec(&mut connection)
                    .map_err(|e| self.unreachable(&e))?;
                return Ok(result);
            };
            let committed: Option<RedisValue> = writes
                .query(&mut connection)
                .map_err(|e| self.unreachable(&e))?;
            if committed.is_some() {
                return Ok(result);
            }
            std::thread::sleep(backoff(attempt));
        }
        Err(Error::failure(format!(
            "gave up after {MAX_ATTEMPTS} conflicting updates of the pool in Redis at {}; try again",
            self.url
        )))
    }
}

impl RedisStore {
    /// Writes `pool` without reading what is there, which may be unreadable. Every GPU key
    /// of the old pool goes, however many there were.
    pub fn overwrite(&self, pool: &Pool) -> Result<()> {
        let mut connection = self.connect()?;
        let old_keys: Vec<String> = redis::cmd("KEYS")
            .arg("canhazgpu:gpu:*")
            .query(&mut connection)
            .map_err(|e| self.unreachable(&e))?;
        let mut writes =
            changes(None, Some(pool), pool.initialized_at.unwrap_or(0)).unwrap_or_else(redis::pipe);
        for key in old_keys {
            if key
                .rsplit(':')
                .next()
                .and_then(|id| id.parse::<usize>().ok())
                >= Some(pool.gpus.len())
            {
                writes.del(key).ignore();
            }
        }
        writes
            .query::<()>(&mut connection)
            .map_err(|e| self.unreachable(&e))
    }
}

/// The MULTI/EXEC block that turns `before` into `after`, or `None` when nothing changed;
/// the reservations it ends go to the history in the same block.
fn changes(before: Option<&Pool>, after: Option<&Pool>, now: Timestamp) -> Option<redis::Pipeline> {
    let after = after?;
    if before == Some(after) {
        return None;
    }
    let mut writes = redis::pipe();
    writes.atomic();
    let old_count = before.map_or(0, |pool| pool.gpus.len());
    if old_count != after.gpus.len() || before.is_none() {
        writes.set(KEY_COUNT, after.gpus.len()).ignore();
        for id in after.gpus.len()..old_count {
            writes.del(gpu_key(id as u32)).ignore();
        }
    }
    if before.and_then(|pool| pool.initialized_at) != after.initialized_at {
        match after.initialized_at {
            Some(t) => writes.set(KEY_INITIALIZED, t).ignore(),
            None => writes.del(KEY_INITIALIZED).ignore(),
        };
    }
    for slot in &after.gpus {
        let old = before.and_then(|pool| pool.gpus.get(slot.id as usize));
        if old != Some(slot) {
            writes
                .set(gpu_key(slot.id), model::encode_slot(slot))
                .ignore();
        }
    }
    let old_queue = before.map_or(&[][..], |pool| &pool.queue[..]);
    if old_queue != after.queue.as_slice() {
        if after.queue.is_empty() {
            writes.del(KEY_QUEUE).ignore();
        } else if let Ok(queue) = serde_json::to_string(&after.queue) {
            writes.set(KEY_QUEUE, queue).ignore();
        }
    }
    for record in model::ended_between(before, Some(after), now) {
        if let Ok(member) = serde_json::to_string(&record) {
            writes.zadd(KEY_HISTORY, member, record.end_time).ignore();
        }
    }
    let freed = before.is_some_and(|pool| pool.free_count() < after.free_count());
    if freed || after.queue.len() < old_queue.len() {
        writes.publish(CHANNEL_WAKE, "").ignore();
    }
    Some(writes)
}

/// A few milliseconds, growing with the attempt, spread so that racing clients separate.
fn backoff(attempt: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let spread = (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 1000;
    Duration::from_micros(200 * u64::from(attempt.min(20)) + u64::from(spread))
}
