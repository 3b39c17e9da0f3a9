//! What the lab views read from a Redis store: the registry and any hosts' pools, with
//! read commands only (`HGETALL`, `GET`, `MGET`, `ZRANGEBYSCORE`), so that a read-only
//! ACL user (`+@read +@connection`) can see every view; never `TIME` (not a read command)
//! nor `WATCH`. However many hosts, three round trips: the registry, then every pool's
//! small keys, then every pool's GPUs, one `MGET` each.

use crate::error::Result;
use crate::host::{HostName, Keyspace, PoolRead, PublishedGpus, REGISTRY_KEY, Registration};
use crate::model::{HistoryRecord, Timestamp};
use crate::store::Registry;
use crate::store::redis::{Keys, PoolParts, RedisStore, Session, next_reply, parse_count};

/// What the second round trip brings back for one pool.
struct Head {
    count: Option<String>,
    parts: PoolParts,
    last_write: Option<String>,
    gpus: Option<String>,
    history: Option<Vec<String>>,
}

impl RedisStore {
    /// See [`crate::store::Store::read_pools`].
    pub fn read_pools(
        &self,
        with_registry: bool,
        choose: &mut dyn FnMut(&Registry) -> Vec<Keyspace>,
        history_since: Option<Timestamp>,
    ) -> Result<Vec<Result<PoolRead>>> {
        let mut session = self.session();
        let registry = if with_registry {
            let entries: Vec<(String, String)> = session
                .call(|c| redis::cmd("HGETALL").arg(REGISTRY_KEY).query(c))
                .map_err(|e| self.explain(&e))?;
            decode_registry(entries)
        } else {
            Registry::new()
        };
        let keys: Vec<Keys> = choose(&registry).into_iter().map(Keys::new).collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let heads = self.read_heads(&mut session, &keys, history_since)?;
        let counts: Vec<Result<Option<u32>>> = keys
            .iter()
            .zip(&heads)
            .map(|(key, head)| {
                head.count
                    .as_deref()
                    .map(|text| parse_count(&key.count, &self.describe(), text))
                    .transpose()
            })
            .collect();
        let mut values = self.read_gpus(&mut session, &keys, &counts)?.into_iter();
        let reads = keys
            .iter()
            .zip(heads)
            .zip(counts)
            .map(|((key, head), count)| {
                let count = count?;
                let gpus = match count {
                    Some(count) if count > 0 => values.next().unwrap_or_default(),
                    _ => Vec::new(),
                };
                self.decode_read(key, head, count.is_some(), gpus)
            })
            .collect();
        Ok(reads)
    }

    /// The second round trip: every pool's small keys (and history), in one pipeline.
    fn read_heads(
        &self,
        session: &mut Session,
        keys: &[Keys],
        history_since: Option<Timestamp>,
    ) -> Result<Vec<Head>> {
        let mut small = redis::pipe();
        for key in keys {
            for name in [
                &key.count,
                &key.initialized,
                &key.queue,
                &key.rebuilding,
                &key.last_write,
                &key.gpus,
            ] {
                small.cmd("GET").arg(name);
            }
            if let Some(since) = history_since {
                small
                    .cmd("ZRANGEBYSCORE")
                    .arg(&key.history)
                    .arg(since)
                    .arg("+inf");
            }
        }
        let replies: Vec<redis::Value> = session
            .call(|c| small.query(c))
            .map_err(|e| self.explain(&e))?;
        let mut replies = replies.into_iter();
        keys.iter()
            .map(|_| {
                Ok(Head {
                    count: next_reply(&mut replies)?,
                    parts: PoolParts {
                        initialized: next_reply(&mut replies)?,
                        queue: next_reply(&mut replies)?,
                        rebuilding: next_reply(&mut replies)?,
                        gpus: Vec::new(),
                    },
                    last_write: next_reply(&mut replies)?,
                    gpus: next_reply(&mut replies)?,
                    history: match history_since {
                        Some(_) => Some(next_reply(&mut replies)?),
                        None => None,
                    },
                })
            })
            .collect()
    }

    /// The third round trip: one `MGET` of the GPUs of every pool that has any, in the
    /// order of `keys`.
    fn read_gpus(
        &self,
        session: &mut Session,
        keys: &[Keys],
        counts: &[Result<Option<u32>>],
    ) -> Result<Vec<Vec<Option<String>>>> {
        let mut gpus = redis::pipe();
        for (key, count) in keys.iter().zip(counts) {
            if let Ok(Some(count)) = count
                && *count > 0
            {
                let ids: Vec<String> = (0..*count).map(|id| key.gpu(id)).collect();
                gpus.cmd("MGET").arg(ids);
            }
        }
        if gpus.is_empty() {
            return Ok(Vec::new());
        }
        session
            .call(|c| gpus.query(c))
            .map_err(|e| self.explain(&e))
    }

    /// One pool as the views see it; `initialized` says whether it has a size at all.
    fn decode_read(
        &self,
        keys: &Keys,
        head: Head,
        initialized: bool,
        gpus: Vec<Option<String>>,
    ) -> Result<PoolRead> {
        let pool = if initialized {
            let parts = PoolParts { gpus, ..head.parts };
            Some(self.decode_pool(keys, parts)?)
        } else {
            None
        };
        let published = head.gpus.and_then(|text| {
            // Facts a later version wrote differently are not worth failing the view for.
            serde_json::from_str::<PublishedGpus>(&text).ok()
        });
        Ok(PoolRead {
            pool,
            last_write: head.last_write.and_then(|t| t.trim().parse().ok()),
            published,
            history: head.history.map(|members| {
                members
                    .iter()
                    .filter_map(|member| HistoryRecord::decode(member))
                    .collect()
            }),
        })
    }
}

/// The registry's entries that make sense: a field that is no valid host name, or a
/// value that is not a registration, was not written by canhazgpu and is left out.
fn decode_registry(entries: Vec<(String, String)>) -> Registry {
    entries
        .into_iter()
        .filter_map(|(name, value)| {
            let name = HostName::parse(&name, "").ok()?;
            let entry = serde_json::from_str::<Registration>(&value).ok()?;
            Some((name, entry))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sensible_registry_entries_count() {
        let registry = decode_registry(vec![
            ("gpu7".into(), r#"{"machine_id":"m","gpu_count":8}"#.into()),
            ("bad name".into(), r#"{"machine_id":"m"}"#.into()),
            ("gpu8".into(), "garbage".into()),
        ]);
        let names: Vec<&str> = registry.keys().map(HostName::as_str).collect();
        assert_eq!(names, ["gpu7"]);
    }
}
