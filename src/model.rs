//! The pool as every command sees it, and its one JSON form per GPU.
//!
//! Both stores keep each GPU as the JSON object upstream canhazgpu writes to
//! `canhazgpu:gpu:<id>`, so a Redis pool can be shared with upstream clients and the
//! file store needs no second format. Decoding is lenient (integer, float or RFC 3339
//! times; `null` means absent; unknown fields kept), encoding is strict (integer times,
//! absent fields omitted, never `null`).

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Unix time in whole seconds.
pub type Timestamp = i64;

/// The most GPUs a pool may have. `admin` refuses more, and a stored count above it is
/// corrupt: every transaction reads (and on Redis WATCHes) every GPU of the pool, so an
/// unbounded count would be unbounded work for a server other applications share.
pub const MAX_GPUS: u32 = 1024;

/// The latest time a store may hold: 9999-12-31T23:59:59Z. A time past it is no time
/// any clock wrote (`1e300`, say), and treating it as one would keep a GPU for ever.
pub const LATEST_TIME: Timestamp = 253_402_300_799;

/// This machine's clock. Transactions use the store's clock instead (see
/// [`crate::store::Store::transact`]), so that clients of one store agree on time.
pub fn local_now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Run,
    Manual,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Manual => "manual",
        }
    }
}

/// The process a reservation lives and dies with.
///
/// A pid alone is not an identity: pids are reused. The start time (in clock ticks since
/// boot, as in `/proc/<pid>/stat`) pins the process; the boot id and PID namespace say
/// whether a checker may trust what it sees under `/proc` at all.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub start_ticks: u64,
    pub boot_id: String,
    pub pid_ns: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reservation {
    /// Who the reservation is shown as held by.
    pub user: String,
    /// The real account, when it differs from `user`.
    pub actual_user: Option<String>,
    pub kind: Kind,
    pub start_time: Timestamp,
    pub last_heartbeat: Timestamp,
    /// Manual reservations only.
    pub expiry_time: Option<Timestamp>,
    pub note: Option<String>,
    pub owner: Option<Owner>,
    /// Ours: unique per `run` or `reserve` request, so that a client whose commit reply
    /// was lost can find out whether its reservation was made.
    pub request_id: Option<String>,
}

impl Reservation {
    /// Whether `account` may release this reservation as its own.
    pub fn held_by(&self, account: &str) -> bool {
        self.actual_user.as_deref().unwrap_or(&self.user) == account
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GpuSlot {
    pub id: u32,
    pub reservation: Option<Reservation>,
    pub last_released: Option<Timestamp>,
    /// The account that released it last, for the sticky allocation policy.
    pub last_user: Option<String>,
    /// The admin who took it back from `last_user` (`release --force`), until its next
    /// ordinary release; for the holder's shell to say why its GPU went.
    pub reclaimed_by: Option<String>,
    /// Fields written by other clients that this version does not know; kept on
    /// in-place updates (heartbeats) so that we do not destroy what they rely on.
    pub extra: Map<String, Value>,
}

impl GpuSlot {
    pub fn new(id: u32) -> Self {
        GpuSlot {
            id,
            reservation: None,
            last_released: None,
            last_user: None,
            reclaimed_by: None,
            extra: Map::new(),
        }
    }

    /// Who took this GPU back from its last holder (`release --gpu-ids N --force`), if
    /// that is how its last reservation ended.
    pub fn reclaimed_by(&self) -> Option<&str> {
        self.reclaimed_by.as_deref()
    }
}

/// A finished reservation, for the usage report (upstream's history record shape).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryRecord {
    pub user: String,
    pub gpu_id: u32,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
    pub duration_seconds: f64,
    pub reservation_type: String,
}

/// A request waiting for GPUs (`--wait`), in the store so that every client, whatever
/// its user or store, serves the queue in the same order.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Waiter {
    /// Unique while the waiting process lives: its pid, start ticks and boot id.
    pub id: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_user: Option<String>,
    /// How many GPUs it wants.
    pub count: u32,
    /// Specific GPUs it wants (`--gpu-ids`); then `count` is their number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_ids: Option<Vec<u32>>,
    /// `run` or `manual`.
    pub kind: String,
    pub enqueued_at: Timestamp,
    /// Its place in line: larger than every ticket handed out before it. A waiter keeps
    /// its ticket when the queue is lost (a store restarted without its data) and goes
    /// back in by it, so that the waiters return in their original order.
    #[serde(default)]
    pub ticket: u64,
    pub last_heartbeat: Timestamp,
    /// When it stops waiting by itself (`--wait=TIMEOUT`), on the store's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    /// When `admin` created the pool, where known (upstream pools do not record it).
    pub initialized_at: Option<Timestamp>,
    pub gpus: Vec<GpuSlot>,
    /// Requests waiting for GPUs, first come first.
    pub queue: Vec<Waiter>,
    /// Set when the store lost the pool and a running job put it back: until then no
    /// GPU is handed out, so that the other running jobs can put their reservations
    /// back (at their next heartbeat) before anyone else is given their GPUs.
    pub rebuilding_until: Option<Timestamp>,
}

impl Pool {
    pub fn new(count: u32, now: Timestamp) -> Self {
        Pool {
            initialized_at: Some(now),
            gpus: (0..count).map(GpuSlot::new).collect(),
            queue: Vec::new(),
            rebuilding_until: None,
        }
    }

    /// The ticket for a waiter joining the queue now: after everyone queued, and after
    /// every ticket of the past (tickets count milliseconds, so a waiter that lost its
    /// place in an emptied queue still ranks before those who came after it).
    pub fn next_ticket(&self, now: Timestamp) -> u64 {
        let after_queue = self.queue.iter().map(|w| w.ticket + 1).max().unwrap_or(0);
        after_queue.max(u64::try_from(now).unwrap_or(0) * 1000)
    }

    /// Puts `waiter` back in line by its ticket (it was dropped: the store lost the
    /// queue, or it was judged gone while it could not reach the store).
    pub fn requeue(&mut self, waiter: Waiter) -> usize {
        let position = self
            .queue
            .iter()
            .position(|other| other.ticket > waiter.ticket)
            .unwrap_or(self.queue.len());
        self.queue.insert(position, waiter);
        position
    }

    /// The pool with every time moved by `seconds`: the same pool on a clock that runs
    /// `seconds` ahead of the one it was read with. Liveness verdicts do not change
    /// (they compare times of one clock), only the numbers do.
    pub fn shifted(self, seconds: i64) -> Pool {
        let mut pool = self;
        let by = |t: Option<&mut Timestamp>| {
            if let Some(t) = t {
                *t += seconds;
            }
        };
        for slot in &mut pool.gpus {
            by(slot.last_released.as_mut());
            if let Some(r) = &mut slot.reservation {
                by(Some(&mut r.start_time));
                by(Some(&mut r.last_heartbeat));
                by(r.expiry_time.as_mut());
            }
        }
        for waiter in &mut pool.queue {
            by(Some(&mut waiter.enqueued_at));
            by(Some(&mut waiter.last_heartbeat));
            by(waiter.deadline.as_mut());
        }
        by(pool.initialized_at.as_mut());
        by(pool.rebuilding_until.as_mut());
        pool
    }

    /// The GPUs that hold reservations of request `request_id`.
    pub fn ids_of_request(&self, request_id: &str) -> Vec<u32> {
        self.ids_where(|slot| {
            slot.reservation
                .as_ref()
                .is_some_and(|r| r.request_id.as_deref() == Some(request_id))
        })
    }

    pub fn slot_mut(&mut self, id: u32) -> Option<&mut GpuSlot> {
        self.gpus.get_mut(id as usize)
    }

    /// Hands the GPUs `ids` to `reservation`; what other clients attached to their
    /// previous reservations does not carry over.
    pub fn assign(&mut self, ids: &[u32], reservation: &Reservation) {
        for &id in ids {
            if let Some(slot) = self.slot_mut(id) {
                slot.extra.clear();
                slot.reservation = Some(reservation.clone());
            }
        }
    }

    /// Frees a GPU, recording when (for LRU). `at` is when the reservation really ended,
    /// which for an expired one is its expiry; the store's history takes it from
    /// `last_released` (see [`ended_between`]).
    pub fn release(&mut self, id: u32, at: Timestamp) -> Option<Reservation> {
        let slot = self.gpus.get_mut(id as usize)?;
        let reservation = slot.reservation.take()?;
        slot.last_released = Some(at);
        slot.last_user = Some(
            reservation
                .actual_user
                .clone()
                .unwrap_or_else(|| reservation.user.clone()),
        );
        slot.reclaimed_by = None;
        // What other clients attached to the reservation ends with it.
        slot.extra.clear();
        Some(reservation)
    }

    /// Frees a GPU for an admin who takes it back from its holder: a release that the
    /// slot remembers, for the holder's shell and for `status`.
    pub fn reclaim(&mut self, id: u32, at: Timestamp, admin: &str) -> Option<Reservation> {
        let reservation = self.release(id, at)?;
        if let Some(slot) = self.gpus.get_mut(id as usize) {
            slot.reclaimed_by = Some(admin.to_string());
        }
        Some(reservation)
    }

    /// GPUs free in the pool.
    pub fn free_count(&self) -> usize {
        self.gpus
            .iter()
            .filter(|slot| slot.reservation.is_none())
            .count()
    }

    /// Where `id` waits (0 = first), if it does.
    pub fn queue_position(&self, id: &str) -> Option<usize> {
        self.queue.iter().position(|waiter| waiter.id == id)
    }

    /// How many GPUs the requests queued before position `before` (all of them for
    /// `None`) still want.
    pub fn wanted_ahead(&self, before: Option<usize>) -> usize {
        let ahead = before.unwrap_or(self.queue.len());
        self.queue[..ahead.min(self.queue.len())]
            .iter()
            .map(|waiter| waiter.count as usize)
            .sum()
    }

    /// The GPUs that the requests queued before position `before` (all of them for
    /// `None`) asked for by id.
    pub fn ids_wanted_ahead(&self, before: Option<usize>) -> std::collections::BTreeSet<u32> {
        let ahead = before.unwrap_or(self.queue.len());
        self.queue[..ahead.min(self.queue.len())]
            .iter()
            .filter_map(|waiter| waiter.gpu_ids.as_deref())
            .flatten()
            .copied()
            .collect()
    }

    pub fn ids_where(&self, keep: impl Fn(&GpuSlot) -> bool) -> Vec<u32> {
        self.gpus
            .iter()
            .filter(|slot| keep(slot))
            .map(|slot| slot.id)
            .collect()
    }
}

impl HistoryRecord {
    /// Reads a record as any upstream version wrote it (times as integers, floats or
    /// RFC 3339 strings); `None` for anything that is not a usable record.
    pub fn decode(text: &str) -> Option<HistoryRecord> {
        let value: Value = serde_json::from_str(text).ok()?;
        let start_time = decode_time(value.get("start_time")?)?;
        let end_time = decode_time(value.get("end_time")?)?;
        Some(HistoryRecord {
            user: value.get("user")?.as_str()?.to_string(),
            gpu_id: u32::try_from(value.get("gpu_id")?.as_u64()?).ok()?,
            start_time,
            end_time,
            duration_seconds: value
                .get("duration_seconds")
                .and_then(Value::as_f64)
                .unwrap_or((end_time - start_time) as f64),
            reservation_type: value
                .get("reservation_type")
                .and_then(Value::as_str)
                .unwrap_or("run")
                .to_string(),
        })
    }
}

/// The reservations a commit ended, for the usage history: derived from the pool before
/// and after, so that no transaction has to remember what it freed and every path that
/// frees a GPU (release, expiry, a dead owner, a reclaim, a reinitialization) is counted
/// the same way.
///
/// A reservation ended when its GPU is free afterwards, or was released and handed out
/// again within the commit (`last_released` moved), or left the pool. It ended at the
/// GPU's new `last_released`, else at `now`.
pub fn ended_between(
    before: Option<&Pool>,
    after: Option<&Pool>,
    now: Timestamp,
) -> Vec<HistoryRecord> {
    let Some(before) = before else {
        return Vec::new();
    };
    before
        .gpus
        .iter()
        .filter_map(|old| {
            let reservation = old.reservation.as_ref()?;
            let new = after.and_then(|pool| pool.gpus.get(old.id as usize));
            let end = match new {
                None => now,
                Some(new) if new.reservation.is_none() => new.last_released.unwrap_or(now),
                Some(new) if new.last_released != old.last_released => {
                    new.last_released.unwrap_or(now)
                }
                Some(_) => return None,
            };
            Some(HistoryRecord::of(reservation, old.id, end))
        })
        .collect()
}

impl HistoryRecord {
    fn of(reservation: &Reservation, gpu_id: u32, end: Timestamp) -> HistoryRecord {
        let end = end.max(reservation.start_time);
        HistoryRecord {
            user: reservation.user.clone(),
            gpu_id,
            start_time: reservation.start_time,
            end_time: end,
            duration_seconds: (end - reservation.start_time) as f64,
            reservation_type: reservation.kind.as_str().to_string(),
        }
    }
}

/// Whether a commit whose reply was lost was made, judged from the pool before it, the
/// pool it wrote and the pool as the store holds it now. A commit is atomic, so one sign
/// of it is enough: a reservation with a request id it wrote (ids are unique), or a GPU
/// entry it changed reading exactly as it wrote it. `None` when the commit changed
/// nothing that could tell (only the queue, say).
pub fn commit_landed(
    before: Option<&Pool>,
    written: Option<&Pool>,
    current: Option<&Pool>,
) -> Option<bool> {
    let written = written?;
    let Some(current) = current else {
        return Some(false);
    };
    let old_slot = |id: u32| before.and_then(|pool| pool.gpus.get(id as usize));
    let new_requests: Vec<&str> = written
        .gpus
        .iter()
        .filter_map(|slot| {
            let request = slot.reservation.as_ref()?.request_id.as_deref()?;
            let old = old_slot(slot.id).and_then(|old| old.reservation.as_ref());
            (old.and_then(|r| r.request_id.as_deref()) != Some(request)).then_some(request)
        })
        .collect();
    if !new_requests.is_empty() {
        return Some(
            new_requests
                .iter()
                .any(|request| !current.ids_of_request(request).is_empty()),
        );
    }
    let resized = before.map(|pool| pool.gpus.len()) != Some(written.gpus.len());
    if resized {
        return Some(
            current.gpus.len() == written.gpus.len()
                && current.initialized_at == written.initialized_at,
        );
    }
    let mut changed = written
        .gpus
        .iter()
        .filter(|slot| old_slot(slot.id) != Some(*slot))
        .peekable();
    changed.peek()?;
    Some(changed.any(|slot| current.gpus.get(slot.id as usize) == Some(slot)))
}

/// Field names of the upstream JSON, in one place.
mod field {
    pub const USER: &str = "user";
    pub const ACTUAL_USER: &str = "actual_user";
    pub const START: &str = "start_time";
    pub const HEARTBEAT: &str = "last_heartbeat";
    pub const TYPE: &str = "type";
    pub const EXPIRY: &str = "expiry_time";
    pub const NOTE: &str = "note";
    pub const LAST_RELEASED: &str = "last_released";
    /// Ours, for the sticky policy.
    pub const LAST_USER: &str = "last_user";
    /// Ours: the admin who took the GPU back (`release --force`).
    pub const RECLAIMED_BY: &str = "reclaimed_by";
    /// Ours: upstream ignores it, and it is what lets us free a crashed job at once.
    pub const OWNER: &str = "owner_process";
    /// Ours: which request made the reservation (see `Reservation::request_id`).
    pub const REQUEST: &str = "request_id";
    pub const KNOWN: [&str; 12] = [
        LAST_USER,
        RECLAIMED_BY,
        USER,
        ACTUAL_USER,
        START,
        HEARTBEAT,
        TYPE,
        EXPIRY,
        NOTE,
        LAST_RELEASED,
        OWNER,
        REQUEST,
    ];
}

/// Reads a time the way upstream versions wrote it: integer or float seconds, a numeric
/// string, or an RFC 3339 string. `None` for anything else, and for times before 1970 or
/// after [`LATEST_TIME`], which no clock wrote.
pub fn decode_time(value: &Value) -> Option<Timestamp> {
    let seconds = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<f64>() {
                Ok(f) => (f.is_finite() && f.abs() < 1e18).then_some(f as i64),
                Err(_) => {
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .ok()
                        .map(|t| t.unix_timestamp())
                }
            }
        }
        _ => None,
    }?;
    (0..=LATEST_TIME).contains(&seconds).then_some(seconds)
}

fn non_empty_string(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// An owner another client wrote in a shape we cannot read is treated as absent: the
/// reservation then follows the heartbeat rule instead of failing to decode.
fn decode_owner(value: &Value) -> Option<Owner> {
    serde_json::from_value(value.clone()).ok()
}

/// Decodes one GPU's JSON text (`None`: no entry, a free GPU). `what` names the source
/// for the error message.
pub fn decode_slot(id: u32, json: Option<&str>, what: &str) -> Result<GpuSlot> {
    let Some(text) = json else {
        return Ok(GpuSlot::new(id));
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| corrupt_slot(id, what, &format!("is not valid JSON ({e})")))?;
    decode_slot_value(id, value, what)
}

pub fn decode_slot_value(id: u32, value: Value, what: &str) -> Result<GpuSlot> {
    let mut slot = GpuSlot::new(id);
    let Value::Object(mut object) = value else {
        return Err(corrupt_slot(id, what, "is not a JSON object"));
    };
    slot.last_released = object.get(field::LAST_RELEASED).and_then(decode_time);
    slot.last_user = non_empty_string(object.get(field::LAST_USER));
    slot.reclaimed_by = non_empty_string(object.get(field::RECLAIMED_BY));
    if let Some(user) = decode_user(id, &object, what)? {
        slot.reservation = Some(decode_reservation(id, &object, what, user)?);
    }
    object.retain(|key, _| !field::KNOWN.contains(&key.as_str()));
    slot.extra = object;
    Ok(slot)
}

/// Who holds the GPU: `None` for a free one (no `user`, `null` or an empty name). A
/// `user` of another type is corrupt, not free: reading it as free would hand someone's
/// GPU to the next request.
fn decode_user(id: u32, object: &Map<String, Value>, what: &str) -> Result<Option<String>> {
    match object.get(field::USER) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(user)) => Ok((!user.is_empty()).then(|| user.clone())),
        Some(other) => Err(corrupt_slot(
            id,
            what,
            &format!("has a `user` that is not a name ({other})"),
        )),
    }
}

/// The reservation of `user`. Its times must be readable: a reservation without a
/// usable start would otherwise show as held since 1970 and never end, and one with an
/// unreadable expiry would never expire.
fn decode_reservation(
    id: u32,
    object: &Map<String, Value>,
    what: &str,
    user: String,
) -> Result<Reservation> {
    let time = |key: &str| -> Result<Option<Timestamp>> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => decode_time(value).map(Some).ok_or_else(|| {
                corrupt_slot(id, what, &format!("has an unusable `{key}` ({value})"))
            }),
        }
    };
    let start_time = time(field::START)?.ok_or_else(|| {
        corrupt_slot(
            id,
            what,
            &format!("is reserved by {user} but has no `start_time`"),
        )
    })?;
    let kind = match object.get(field::TYPE).and_then(Value::as_str) {
        Some("manual") => Kind::Manual,
        // The first upstream heartbeat wrote no type: such entries are runs.
        _ => Kind::Run,
    };
    Ok(Reservation {
        user,
        actual_user: non_empty_string(object.get(field::ACTUAL_USER)),
        kind,
        start_time,
        last_heartbeat: time(field::HEARTBEAT)?.unwrap_or(start_time),
        expiry_time: time(field::EXPIRY)?,
        note: non_empty_string(object.get(field::NOTE)),
        owner: object.get(field::OWNER).and_then(decode_owner),
        request_id: non_empty_string(object.get(field::REQUEST)),
    })
}

/// The error for a GPU entry that cannot be read without risking someone's reservation.
fn corrupt_slot(id: u32, what: &str, problem: &str) -> Error {
    Error::corrupt(format!(
        "GPU {id} in {what} {problem}; fix or delete that entry (deleting it frees that GPU), \
         or reinitialize with `canhazgpu admin --gpus N --force`"
    ))
}

pub fn encode_slot(slot: &GpuSlot) -> String {
    encode_slot_value(slot).to_string()
}

pub fn encode_slot_value(slot: &GpuSlot) -> Value {
    let mut object = slot.extra.clone();
    if let Some(t) = slot.last_released {
        object.insert(field::LAST_RELEASED.into(), t.into());
    }
    if let Some(user) = &slot.last_user {
        object.insert(field::LAST_USER.into(), user.clone().into());
    }
    if let Some(admin) = &slot.reclaimed_by {
        object.insert(field::RECLAIMED_BY.into(), admin.clone().into());
    }
    if let Some(r) = &slot.reservation {
        object.insert(field::USER.into(), r.user.clone().into());
        if let Some(actual) = &r.actual_user {
            object.insert(field::ACTUAL_USER.into(), actual.clone().into());
        }
        object.insert(field::START.into(), r.start_time.into());
        object.insert(field::HEARTBEAT.into(), r.last_heartbeat.into());
        object.insert(field::TYPE.into(), r.kind.as_str().into());
        if let Some(t) = r.expiry_time {
            object.insert(field::EXPIRY.into(), t.into());
        }
        if let Some(note) = &r.note {
            object.insert(field::NOTE.into(), note.clone().into());
        }
        if let Some(owner) = r.owner.as_ref().and_then(|o| serde_json::to_value(o).ok()) {
            object.insert(field::OWNER.into(), owner);
        }
        if let Some(request) = &r.request_id {
            object.insert(field::REQUEST.into(), request.clone().into());
        }
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_upstream_forms() {
        let slot = decode_slot(
            3,
            Some(concat!(
                r#"{"user":"bob","start_time":"2025-01-01T00:00:00-01:00","#,
                r#""last_heartbeat":1735696800.5,"type":"manual","expiry_time":"1735700000","#,
                r#""partial_queue_id":"q1"}"#
            )),
            "test",
        )
        .unwrap();
        let r = slot.reservation.as_ref().unwrap();
        assert_eq!(r.user, "bob");
        assert_eq!(r.kind, Kind::Manual);
        assert_eq!(r.start_time, 1735693200);
        assert_eq!(r.last_heartbeat, 1735696800);
        assert_eq!(r.expiry_time, Some(1735700000));
        assert_eq!(slot.extra.get("partial_queue_id"), Some(&Value::from("q1")));
    }

    #[test]
    fn entry_without_type_is_a_run_and_null_user_is_free() {
        let run = decode_slot(0, Some(r#"{"user":"a","start_time":5}"#), "t").unwrap();
        assert_eq!(run.reservation.unwrap().kind, Kind::Run);
        let free = decode_slot(0, Some(r#"{"user":null,"last_released":7}"#), "t").unwrap();
        assert!(free.reservation.is_none());
        assert_eq!(free.last_released, Some(7));
        assert!(
            decode_slot(0, Some("{}"), "t")
                .unwrap()
                .reservation
                .is_none()
        );
        assert!(decode_slot(0, None, "t").unwrap().reservation.is_none());
    }

    #[test]
    fn encoding_round_trips_and_never_writes_null() {
        let mut pool = Pool::new(1, 100);
        pool.gpus[0].reservation = Some(Reservation {
            user: "alice".into(),
            actual_user: None,
            kind: Kind::Run,
            start_time: 100,
            last_heartbeat: 160,
            expiry_time: None,
            note: None,
            owner: Some(Owner {
                pid: 42,
                start_ticks: 9,
                boot_id: "b".into(),
                pid_ns: 1,
            }),
            request_id: Some("req".into()),
        });
        let text = encode_slot(&pool.gpus[0]);
        assert!(!text.contains("null"), "{text}");
        assert_eq!(decode_slot(0, Some(&text), "t").unwrap(), pool.gpus[0]);
        let before = pool.clone();
        pool.release(0, 200);
        let text = encode_slot(&pool.gpus[0]);
        assert_eq!(text, r#"{"last_released":200,"last_user":"alice"}"#);
        let ended = ended_between(Some(&before), Some(&pool), 999);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].end_time, ended[0].duration_seconds), (200, 100.0));
    }

    #[test]
    fn a_reclaim_is_remembered_until_the_next_ordinary_release() {
        let mut pool = Pool::new(1, 0);
        pool.gpus[0].reservation = Some(held("alice", 100));
        let reserved = pool.gpus[0].clone();
        pool.reclaim(0, 300, "root");
        let text = encode_slot(&pool.gpus[0]);
        assert_eq!(
            text,
            r#"{"last_released":300,"last_user":"alice","reclaimed_by":"root"}"#
        );
        assert_eq!(decode_slot(0, Some(&text), "t").unwrap(), pool.gpus[0]);
        assert_eq!(pool.gpus[0].reclaimed_by(), Some("root"));
        // Reserved again: still the story of the last release.
        pool.gpus[0].reservation = reserved.reservation;
        assert_eq!(pool.gpus[0].reclaimed_by(), Some("root"));
        pool.release(0, 400);
        assert_eq!(pool.gpus[0].reclaimed_by(), None);
    }

    fn held(user: &str, start: Timestamp) -> Reservation {
        Reservation {
            user: user.into(),
            actual_user: None,
            kind: Kind::Manual,
            start_time: start,
            last_heartbeat: start,
            expiry_time: Some(start + 3600),
            note: None,
            owner: None,
            request_id: None,
        }
    }

    #[test]
    fn history_comes_from_the_difference_of_a_commit() {
        let mut before = Pool::new(4, 0);
        before.gpus[0].reservation = Some(held("a", 10));
        before.gpus[1].reservation = Some(held("b", 20));
        before.gpus[2].reservation = Some(held("c", 30));
        let mut after = before.clone();
        // A heartbeat is no end.
        after.gpus[0].reservation.as_mut().unwrap().last_heartbeat = 50;
        // Released, then handed to someone else in the same commit.
        after.release(1, 60);
        after.gpus[1].reservation = Some(held("d", 60));
        // Plainly released.
        after.release(2, 70);
        let ended = ended_between(Some(&before), Some(&after), 99);
        let summary: Vec<_> = ended
            .iter()
            .map(|r| (r.user.as_str(), r.gpu_id, r.end_time))
            .collect();
        assert_eq!(summary, [("b", 1, 60), ("c", 2, 70)]);
        // A reinitialization ends everything at the commit's time; a new pool ends nothing.
        let fresh = Pool::new(2, 99);
        let all = ended_between(Some(&before), Some(&fresh), 99);
        assert_eq!(
            all.iter().map(|r| r.end_time).collect::<Vec<_>>(),
            [99, 99, 99]
        );
        assert!(ended_between(None, Some(&fresh), 99).is_empty());
        assert!(ended_between(Some(&before), Some(&before), 99).is_empty());
    }

    #[test]
    fn history_records_in_upstream_forms() {
        let record = HistoryRecord::decode(concat!(
            r#"{"user":"a","gpu_id":1,"start_time":"2025-01-01T00:00:00Z","#,
            r#""end_time":1735693200.0,"duration_seconds":3600,"reservation_type":"manual"}"#
        ))
        .unwrap();
        assert_eq!(
            (record.start_time, record.end_time),
            (1735689600, 1735693200)
        );
        assert_eq!(record.reservation_type, "manual");
        assert!(HistoryRecord::decode(r#"{"user":"a"}"#).is_none());
        assert!(HistoryRecord::decode("not json").is_none());
    }

    #[test]
    fn malformed_reservations_are_corrupt_never_free() {
        let cases = [
            (
                r#"{"user":5,"start_time":1}"#,
                "`user` that is not a name (5)",
            ),
            (
                r#"{"user":"a","start_time":1e300}"#,
                "unusable `start_time` (1e+300)",
            ),
            (
                r#"{"user":"a","start_time":"soon"}"#,
                "unusable `start_time`",
            ),
            (r#"{"user":"a"}"#, "reserved by a but has no `start_time`"),
            (
                r#"{"user":"a","start_time":1,"type":"manual","expiry_time":"x"}"#,
                "`expiry_time`",
            ),
            (
                r#"{"user":"a","start_time":1,"last_heartbeat":[]}"#,
                "`last_heartbeat`",
            ),
            (r#"{"user":"a","start_time":-5}"#, "`start_time` (-5)"),
        ];
        for (json, problem) in cases {
            let err = decode_slot(4, Some(json), "canhazgpu:gpu:4 in Redis").unwrap_err();
            assert!(err.corrupt_store, "{json}");
            assert!(
                err.message
                    .starts_with("GPU 4 in canhazgpu:gpu:4 in Redis ")
                    && err.message.contains(problem)
                    && err.message.contains("admin --gpus N --force"),
                "{json}: {}",
                err.message
            );
        }
        // What upstream writes for a free GPU stays free.
        for free in [
            r#"{"user":null}"#,
            r#"{"user":""}"#,
            r#"{"last_released":"junk"}"#,
        ] {
            assert!(
                decode_slot(0, Some(free), "t")
                    .unwrap()
                    .reservation
                    .is_none()
            );
        }
    }

    #[test]
    fn times_outside_any_clock_are_not_times() {
        for value in [
            json!(1e300),
            json!(-1),
            json!("1e300"),
            json!(f64::MAX),
            json!(null),
        ] {
            assert_eq!(decode_time(&value), None, "{value}");
        }
        assert_eq!(decode_time(&json!(LATEST_TIME)), Some(LATEST_TIME));
        assert_eq!(decode_time(&json!(1.5e9)), Some(1_500_000_000));
    }

    #[test]
    fn a_lost_queue_comes_back_in_ticket_order() {
        let waiter = |id: &str, ticket: u64| Waiter {
            id: id.into(),
            user: "u".into(),
            actual_user: None,
            count: 1,
            gpu_ids: None,
            kind: "run".into(),
            enqueued_at: 0,
            ticket,
            last_heartbeat: 0,
            deadline: None,
            owner: None,
        };
        let mut pool = Pool::new(1, 0);
        let first = pool.next_ticket(100);
        assert_eq!(first, 100_000);
        pool.queue.push(waiter("a", first));
        let second = pool.next_ticket(100);
        assert_eq!(second, first + 1);
        pool.queue.push(waiter("b", second));
        pool.queue.push(waiter("c", pool.next_ticket(101)));
        let lost = pool.queue.clone();
        // The store restarted empty; a newcomer joins first, then the old waiters come
        // back in whatever order they notice.
        let mut fresh = Pool::new(1, 0);
        fresh.queue.push(waiter("new", fresh.next_ticket(200)));
        for returning in [2, 0, 1] {
            fresh.requeue(lost[returning].clone());
        }
        let order: Vec<&str> = fresh.queue.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(order, ["a", "b", "c", "new"]);
    }

    #[test]
    fn a_lost_commit_reply_is_settled_by_what_the_store_holds() {
        let before = Pool::new(2, 0);
        let mut reserved = before.clone();
        reserved.gpus[1].reservation = Some(Reservation {
            request_id: Some("req-1".into()),
            ..held("a", 10)
        });
        // Made, and heartbeated since: the request id still tells.
        let mut later = reserved.clone();
        later.gpus[1].reservation.as_mut().unwrap().last_heartbeat = 99;
        assert_eq!(
            commit_landed(Some(&before), Some(&reserved), Some(&later)),
            Some(true)
        );
        // Not made; and another request's reservation does not count.
        assert_eq!(
            commit_landed(Some(&before), Some(&reserved), Some(&before)),
            Some(false)
        );
        let mut other = before.clone();
        other.gpus[1].reservation = Some(Reservation {
            request_id: Some("req-2".into()),
            ..held("b", 10)
        });
        assert_eq!(
            commit_landed(Some(&before), Some(&reserved), Some(&other)),
            Some(false)
        );
        // A release is told by the entry it wrote.
        let mut released = reserved.clone();
        released.release(1, 50);
        assert_eq!(
            commit_landed(Some(&reserved), Some(&released), Some(&released)),
            Some(true)
        );
        assert_eq!(
            commit_landed(Some(&reserved), Some(&released), Some(&later)),
            Some(false)
        );
        // A new pool by its size and creation time; the pool gone means not made.
        let fresh = Pool::new(4, 77);
        assert_eq!(commit_landed(None, Some(&fresh), Some(&fresh)), Some(true));
        assert_eq!(commit_landed(None, Some(&fresh), None), Some(false));
        // Only the queue changed: nothing tells.
        let mut queued = before.clone();
        queued.rebuilding_until = Some(5);
        assert_eq!(
            commit_landed(Some(&before), Some(&queued), Some(&queued)),
            None
        );
    }

    #[test]
    fn garbage_is_an_error_naming_the_gpu() {
        let err = decode_slot(2, Some("{not json"), "canhazgpu:gpu:2").unwrap_err();
        assert!(err.to_string().contains("GPU 2 in canhazgpu:gpu:2"));
    }
}
