//! What the commands show, as data: the objects of `status --json` and `queue --json`.
//!
//! One type per object, serialised as it is for every consumer (the CLI's `--json`, the
//! text views that read the same decisions, and later the web API and the views of other
//! hosts), so that a key cannot mean one thing in one output and another elsewhere. The
//! schemas are documented in docs/status-json.md; keys are never removed or renamed.

use serde::Serialize;

use crate::commands::gpus::{Gpus, in_use_mib};
use crate::gpu::GpuInfo;
use crate::model::{GpuSlot, Kind, Pool, Timestamp, Waiter};

/// What a GPU is, as far as anyone asking may use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuState {
    Available,
    /// Reserved.
    InUse,
    /// Free in the pool, but the GPU library shows more memory in use than the threshold.
    InUseWithoutReservation,
}

/// One GPU of `status --json`. Every key is always present (`null` when unknown or not
/// applicable), so that scripts need no existence checks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuView {
    pub id: u32,
    pub state: GpuState,
    pub user: Option<String>,
    pub actual_user: Option<String>,
    pub kind: Option<&'static str>,
    pub since: Option<Timestamp>,
    pub last_heartbeat: Option<Timestamp>,
    pub expires: Option<Timestamp>,
    pub note: Option<String>,
    pub last_released: Option<Timestamp>,
    /// What the GPU library (NVML or AMD SMI) says; the key predates AMD support.
    pub nvml: Option<NvmlView>,
    /// `"nvidia"` or `"amd"`: whose library answered; `null` without one.
    pub vendor: Option<&'static str>,
    /// Set when this pool GPU is a MIG instance.
    pub mig: Option<MigView>,
}

/// What the GPU library says about one GPU.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NvmlView {
    pub name: String,
    pub uuid: String,
    pub memory_used_mib: u64,
    pub memory_total_mib: u64,
    pub processes: Vec<GpuProcessView>,
    /// What `status` notes about the GPU, e.g. MIG mode without instances.
    pub note: Option<String>,
}

/// Where a MIG instance lives.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MigView {
    /// NVML's index of its GPU.
    pub gpu: u32,
    pub gpu_uuid: String,
    /// Its index among the GPU's MIG devices.
    pub index: u32,
    pub profile: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuProcessView {
    pub pid: u32,
    pub user: Option<String>,
    pub used_mib: u64,
}

/// One waiting request of `queue --json`, in the order they will be served.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WaiterView {
    /// 1 is served first.
    pub position: usize,
    pub user: String,
    pub actual_user: Option<String>,
    pub gpus: u32,
    pub gpu_ids: Option<Vec<u32>>,
    pub kind: String,
    pub since: Timestamp,
    pub deadline: Option<Timestamp>,
}

/// One host's pool as the lab views show it (`status --all-hosts --json`, the web API):
/// a host that could not be read is still listed, with `error` saying why. The schema is
/// documented in docs/status-json.md ("Several hosts").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostView {
    /// The host's name (config `host`), or this machine's hostname for an unnamed pool.
    pub host: String,
    /// Where the pool lives, without credentials.
    pub store: String,
    /// Whether this is the host the command ran on.
    pub this_host: bool,
    /// Whether its store answered; `false` with `error` when it could not be reached.
    pub reachable: bool,
    /// Why the host's pool could not be shown; `null` when it was.
    pub error: Option<String>,
    /// The time the view was computed at: the viewer's clock.
    pub now: Option<Timestamp>,
    /// When the host last committed a change to its pool (named hosts on Redis).
    pub last_write: Option<Timestamp>,
    /// When the host's NVML was asked for the `nvml` objects shown; `null` when this
    /// command asked it (this host) or there are none.
    pub nvml_at: Option<Timestamp>,
    /// Counts of `gpus` by state, and of `queue`; `null` when the pool was not read.
    pub summary: Option<HostSummary>,
    pub gpus: Vec<GpuView>,
    pub queue: Vec<WaiterView>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostSummary {
    pub gpus: usize,
    pub available: usize,
    pub in_use: usize,
    pub in_use_without_reservation: usize,
    /// Requests waiting in the queue.
    pub waiting: usize,
    /// GPUs a request without `--wait` would get now: those available, less what the
    /// requests waiting in the queue want first (the queue is served first come, first
    /// served).
    pub free_now: usize,
}

impl HostSummary {
    /// The counts of what [`gpu_views`] and [`waiter_views`] would list, without making
    /// the views.
    pub fn of(pool: &Pool, gpus: &Gpus, threshold_mib: u64) -> HostSummary {
        let states: Vec<GpuState> = pool
            .gpus
            .iter()
            .map(|slot| gpu_state(slot, gpus.get(slot.id), threshold_mib))
            .collect();
        let count = |state| states.iter().filter(|&&each| each == state).count();
        let available = count(GpuState::Available);
        let wanted: usize = pool.queue.iter().map(|waiter| waiter.count as usize).sum();
        HostSummary {
            gpus: states.len(),
            available,
            in_use: count(GpuState::InUse),
            in_use_without_reservation: count(GpuState::InUseWithoutReservation),
            waiting: pool.queue.len(),
            free_now: available.saturating_sub(wanted),
        }
    }
}

/// The state of `slot` given what the GPU library reports about it (`info`).
pub fn gpu_state(slot: &GpuSlot, info: Option<&GpuInfo>, threshold_mib: u64) -> GpuState {
    match (&slot.reservation, info) {
        (Some(_), _) => GpuState::InUse,
        (None, Some(gpu)) if in_use_mib(gpu) > threshold_mib => GpuState::InUseWithoutReservation,
        (None, _) => GpuState::Available,
    }
}

fn gpu_view(slot: &GpuSlot, gpus: &Gpus, threshold_mib: u64) -> GpuView {
    let info = gpus.get(slot.id);
    let r = slot.reservation.as_ref();
    GpuView {
        id: slot.id,
        state: gpu_state(slot, info, threshold_mib),
        user: r.map(|r| r.user.clone()),
        actual_user: r.and_then(|r| r.actual_user.clone()),
        kind: r.map(|r| r.kind.as_str()),
        since: r.map(|r| r.start_time),
        last_heartbeat: r.filter(|r| r.kind == Kind::Run).map(|r| r.last_heartbeat),
        expires: r.and_then(|r| r.expiry_time),
        note: r.and_then(|r| r.note.clone()),
        last_released: slot.last_released,
        nvml: info.map(nvml_view),
        vendor: info.and(gpus.vendor()).map(|vendor| vendor.as_str()),
        mig: info.and_then(|gpu| gpu.mig.as_ref()).map(|mig| MigView {
            gpu: mig.gpu,
            gpu_uuid: mig.gpu_uuid.clone(),
            index: mig.index,
            profile: mig.profile.clone(),
        }),
    }
}

fn nvml_view(gpu: &GpuInfo) -> NvmlView {
    NvmlView {
        name: gpu.name.clone(),
        uuid: gpu.uuid.clone(),
        memory_used_mib: gpu.memory_used_mib,
        memory_total_mib: gpu.memory_total_mib,
        processes: gpu
            .processes
            .iter()
            .map(|p| GpuProcessView {
                pid: p.pid,
                user: p.user.clone(),
                used_mib: p.used_mib,
            })
            .collect(),
        note: gpu.note.clone(),
    }
}

pub fn gpu_views(pool: &Pool, gpus: &Gpus, threshold_mib: u64) -> Vec<GpuView> {
    pool.gpus
        .iter()
        .map(|slot| gpu_view(slot, gpus, threshold_mib))
        .collect()
}

pub fn waiter_views(queue: &[Waiter]) -> Vec<WaiterView> {
    queue
        .iter()
        .enumerate()
        .map(|(index, waiter)| WaiterView {
            position: index + 1,
            user: waiter.user.clone(),
            actual_user: waiter.actual_user.clone(),
            gpus: waiter.count,
            gpu_ids: waiter.gpu_ids.clone(),
            kind: waiter.kind.clone(),
            since: waiter.enqueued_at,
            deadline: waiter.deadline,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reservation;

    #[test]
    fn a_summary_counts_each_state() {
        let mut pool = Pool::new(3, 0);
        pool.gpus[2].reservation = Some(Reservation {
            user: "bob".into(),
            actual_user: None,
            kind: Kind::Run,
            start_time: 1,
            last_heartbeat: 1,
            expiry_time: None,
            note: None,
            owner: None,
            request_id: None,
        });
        let summary = HostSummary::of(&pool, &Gpus::none(), 1024);
        assert_eq!(
            (
                summary.gpus,
                summary.available,
                summary.in_use,
                summary.waiting
            ),
            (3, 2, 1, 0)
        );
    }

    #[test]
    fn every_key_is_present_and_states_are_snake_case() {
        let mut pool = Pool::new(2, 0);
        pool.gpus[1].reservation = Some(Reservation {
            user: "alice".into(),
            actual_user: None,
            kind: Kind::Manual,
            start_time: 10,
            last_heartbeat: 10,
            expiry_time: Some(100),
            note: Some("<b>".into()),
            owner: None,
            request_id: None,
        });
        let views = gpu_views(&pool, &Gpus::none(), 1024);
        let json = serde_json::to_value(&views).unwrap();
        let keys = [
            "id",
            "state",
            "user",
            "actual_user",
            "kind",
            "since",
            "last_heartbeat",
            "expires",
            "note",
            "last_released",
            "nvml",
            "vendor",
            "mig",
        ];
        for entry in json.as_array().unwrap() {
            let object = entry.as_object().unwrap();
            assert_eq!(object.len(), keys.len(), "{object:?}");
            for key in keys {
                assert!(object.contains_key(key), "{key} missing");
            }
        }
        assert_eq!(json[0]["state"], "available");
        assert_eq!(json[1]["state"], "in_use");
        assert_eq!(json[1]["last_heartbeat"], serde_json::Value::Null);
        assert_eq!(json[1]["expires"], 100);
    }
}
