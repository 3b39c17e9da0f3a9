//! What the GPU libraries say about the GPUs, as the commands use it: which GPUs are in
//! use without a reservation and by whom, and how to name the GPUs handed out. Which
//! vendor answered matters only to the names (see `gpu_env`) and to the messages.
//!
//! Commands probe once, before any store transaction: asking the driver can take a
//! while on a big host, and must never happen while the pool is locked.

use std::collections::BTreeSet;
use std::path::Path;

use crate::cli::{AllocationArgs, GpuLibraryArgs, UsageArgs, VisibleDevices};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gpu::{self, GpuInfo, GpuProcess, Host, Library, Request, Vendor};
use crate::gpu_env::{self, Device, Known, Scheme};
use crate::host::PublishedGpus;
use crate::model::Timestamp;

pub const DEFAULT_MEMORY_THRESHOLD_MIB: u64 = 1024;

/// The most GPUs a pool may have (`admin --gpus` accepts no more, and a stored count
/// above it is corrupt): one constant, [`crate::model::MAX_GPUS`].
pub use crate::model::MAX_GPUS as MAX_POOL;

/// What `run` and `reserve` do without a GPU library, for the warning that says why.
const UNDETECTED: &str = "GPUs in use without a reservation cannot be detected";

/// A library's path from the flag (or its environment variable), else from the
/// configuration, with where it came from (`sources`, in that order) for the messages.
fn library<'a>(
    flag: Option<&'a Path>,
    configured: Option<&'a Path>,
    sources: [&'static str; 2],
) -> Option<Library<'a>> {
    let (path, source) = match (flag, configured) {
        (Some(path), _) => (path, sources[0]),
        (None, Some(path)) => (path, sources[1]),
        (None, None) => return None,
    };
    Some(Library { path, source })
}

/// The outcome of one probe.
#[derive(Clone)]
pub struct Gpus {
    host: Host,
}

impl Gpus {
    /// Loads the vendors' libraries from the flag or environment, else the configured
    /// path, else the dynamic loader's search path; only the configured vendor's when
    /// `gpu_vendor` is set.
    pub fn probe(config: &Config, args: &GpuLibraryArgs) -> Gpus {
        let request = Request {
            vendor: config.gpu_vendor,
            nvml: library(
                args.nvml_library.as_deref(),
                config.nvml_library.as_deref(),
                [
                    "--nvml-library or CANHAZGPU_NVML_LIBRARY",
                    "nvml_library in the configuration file",
                ],
            ),
            amd_smi: library(
                args.amd_smi_library.as_deref(),
                config.amd_smi_library.as_deref(),
                [
                    "--amd-smi-library or CANHAZGPU_AMD_SMI_LIBRARY",
                    "amd_smi_library in the configuration file",
                ],
            ),
            mig: config.mig.unwrap_or(false),
        };
        Gpus {
            host: gpu::detect(&request),
        }
    }

    /// The warnings a command gives about the GPU libraries; the one that leaves it
    /// without GPU facts ends with what it does instead (`consequence`).
    pub fn warn(&self, consequence: &str) {
        self.warn_notes();
        if let Some(problem) = self.problem() {
            say!("canhazgpu: warning: {problem}; {consequence}");
        }
    }

    /// Warnings about a vendor's broken library while another vendor answered.
    pub fn warn_notes(&self) {
        for note in &self.host.notes {
            say!("canhazgpu: warning: {note}");
        }
    }

    /// An error when both vendors have GPUs here and the configuration picks neither:
    /// handing out GPUs, or counting them, would have to guess which kind is meant.
    pub fn refuse_conflict(&self, refused: &str) -> Result<()> {
        match &self.host.conflict {
            Some(conflict) => Err(Error::failure(format!("{conflict}; {refused}"))),
            None => Ok(()),
        }
    }

    /// No GPU library at all, as on a host without a driver (or another host that
    /// published nothing).
    pub fn none() -> Gpus {
        Gpus {
            host: Host::default(),
        }
    }

    /// What another host published of its GPU library's answer, to be shown as if
    /// probed here.
    pub fn published(facts: &PublishedGpus) -> Gpus {
        Gpus {
            host: Host {
                found: Some(gpu::Found {
                    vendor: Vendor::parse(&facts.vendor).unwrap_or(Vendor::Nvidia),
                    version: facts.driver_version.clone(),
                    gpus: facts.gpus.clone(),
                }),
                ..Host::default()
            },
        }
    }

    /// What this host publishes of this probe for other hosts' views; `None` when no
    /// library answered.
    pub fn to_publish(&self, probed_at: Timestamp, threshold_mib: u64) -> Option<PublishedGpus> {
        let found = self.host.found.as_ref()?;
        Some(PublishedGpus {
            probed_at,
            memory_threshold_mib: threshold_mib,
            vendor: found.vendor.as_str().to_string(),
            driver_version: found.version.clone(),
            gpus: found.gpus.clone(),
        })
    }

    #[cfg(test)]
    pub fn of(vendor: Vendor, gpus: Vec<GpuInfo>) -> Gpus {
        Gpus {
            host: Host {
                found: Some(gpu::Found {
                    vendor,
                    version: None,
                    gpus,
                }),
                ..Host::default()
            },
        }
    }

    /// The units the library reports; `None` when no library could be asked.
    pub fn devices(&self) -> Option<&[GpuInfo]> {
        self.host.found.as_ref().map(|found| found.gpus.as_slice())
    }

    /// The units the library reports, when they are all this host has: `None` also when
    /// another vendor's library failed, whose GPUs would be missing from the count.
    pub fn every_device(&self) -> Option<&[GpuInfo]> {
        if self.host.notes.is_empty() && self.problem().is_none() {
            self.devices()
        } else {
            None
        }
    }

    pub fn vendor(&self) -> Option<Vendor> {
        self.host.found.as_ref().map(|found| found.vendor)
    }

    /// The library that answered, as messages name it (NVML without any).
    pub fn library(&self) -> &'static str {
        self.vendor().unwrap_or(Vendor::Nvidia).library()
    }

    /// How the GPUs handed out are named to their programs.
    pub fn scheme(&self) -> Scheme {
        match self.vendor() {
            Some(Vendor::Amd) => Scheme::Rocm,
            _ => Scheme::Cuda,
        }
    }

    /// Why no library answered, or that two vendors did.
    pub fn problem(&self) -> Option<&str> {
        self.host
            .conflict
            .as_deref()
            .or(self.host.problem.as_deref())
    }

    pub fn driver_version(&self) -> Option<&str> {
        self.host.found.as_ref()?.version.as_deref()
    }

    /// Whether some unit is a MIG instance, so that pool ids are not GPU indices.
    pub fn has_mig(&self) -> bool {
        self.devices()
            .unwrap_or_default()
            .iter()
            .any(|gpu| gpu.mig.is_some())
    }

    /// The unit with the pool's id `id`.
    pub fn get(&self, id: u32) -> Option<&GpuInfo> {
        self.devices()?.iter().find(|gpu| gpu.index == id)
    }

    /// GPUs with more than `threshold_mib` of memory in use, reserved or not.
    pub fn busy(&self, threshold_mib: u64) -> BTreeSet<u32> {
        self.devices()
            .unwrap_or_default()
            .iter()
            .filter(|gpu| in_use_mib(gpu) > threshold_mib)
            .map(|gpu| gpu.index)
            .collect()
    }
}

/// Flag > config > default.
pub fn memory_threshold(config: &Config, args: &UsageArgs) -> u64 {
    args.memory_threshold
        .unwrap_or(configured_threshold(config))
}

/// Config > default, for commands without the flag.
pub fn configured_threshold(config: &Config) -> u64 {
    config
        .memory_threshold
        .unwrap_or(DEFAULT_MEMORY_THRESHOLD_MIB)
}

/// MiB of memory in use on `gpu`, for the threshold.
///
/// The rule is about compute processes, but NVML lists none where it may not (other
/// containers, some virtual GPUs) and gives no per-process figure without privileges;
/// the device's own figure still shows such use, so the larger of the two counts.
pub fn in_use_mib(gpu: &GpuInfo) -> u64 {
    let processes: u64 = gpu.processes.iter().map(|p| p.used_mib).sum();
    gpu.memory_used_mib.max(processes)
}

/// `alice (pid 12, 10240 MiB), ? (pid 13, 0 MiB)`: `?` for a process whose owner
/// cannot be seen from here.
pub fn describe_processes<'a>(processes: impl IntoIterator<Item = &'a GpuProcess>) -> String {
    let described: Vec<String> = processes
        .into_iter()
        .map(|p| {
            format!(
                "{} (pid {}, {} MiB)",
                p.user.as_deref().unwrap_or("?"),
                p.pid,
                p.used_mib
            )
        })
        .collect();
    described.join(", ")
}

/// What `run` and `reserve` take from the GPU library: GPUs to skip, and how to name
/// the chosen.
pub struct Allocation {
    gpus: Gpus,
    /// What "in use without reservation" means here, for what this host publishes.
    threshold: u64,
    busy: BTreeSet<u32>,
    /// Pool ids no unit answers to where pool ids are not GPU indices (MIG): naming
    /// them by index would hand out someone else's GPU.
    unnamable: BTreeSet<u32>,
    force: bool,
    mode: VisibleDevices,
}

impl Allocation {
    /// Probes the GPU libraries (warning once if they fail); call before the store
    /// transaction. Refuses when two vendors' GPUs are here and the configuration picks
    /// neither, and when `mig = true` but NVML cannot say which MIG instance an id is.
    pub fn probe(config: &Config, args: &AllocationArgs) -> Result<Allocation> {
        let gpus = Gpus::probe(config, &args.usage.libraries);
        gpus.refuse_conflict("nothing was reserved")?;
        if config.mig == Some(true) && gpus.devices().is_none() {
            let why = gpus
                .problem()
                .unwrap_or("no NVML library (libnvidia-ml.so.1) was found");
            return Err(Error::failure(format!(
                "{why}; with mig = true in the configuration, GPU ids mean MIG instances \
                 that only NVML can name, so nothing was reserved: fix NVML, or set \
                 mig = false"
            )));
        }
        gpus.warn(UNDETECTED);
        let threshold = memory_threshold(config, &args.usage);
        let busy = gpus.busy(threshold);
        let unnamable = match gpus.devices() {
            Some(units) if gpus.has_mig() => (units.len() as u32..MAX_POOL).collect(),
            _ => BTreeSet::new(),
        };
        Ok(Allocation {
            gpus,
            threshold,
            busy,
            unnamable,
            force: args.force,
            mode: args
                .visible_devices
                .or(config.visible_devices)
                .unwrap_or_default(),
        })
    }

    /// Publishes what the probe found for other hosts' views, when due (see
    /// [`crate::store::Store::publish_gpus`]); call after the store was read.
    pub fn publish(&self, store: &crate::store::Store) {
        store.publish_gpus(|now| self.gpus.to_publish(now, self.threshold));
    }

    /// GPUs that must not be handed out even when the pool has them free.
    pub fn unusable(&self) -> BTreeSet<u32> {
        let mut unusable = self.unnamable.clone();
        if !self.force {
            unusable.extend(&self.busy);
        }
        unusable
    }

    /// Warns about busy GPUs that `--force` handed out, and returns the devices `ids`
    /// are, named as the configuration asks.
    pub fn chosen(&self, ids: &[u32]) -> Vec<Device> {
        for &id in ids {
            if let Some(gpu) = self.gpus.get(id).filter(|_| self.busy.contains(&id)) {
                let by = if gpu.processes.is_empty() {
                    format!("{} MiB in use", in_use_mib(gpu))
                } else {
                    format!("by {}", describe_processes(&gpu.processes))
                };
                say!("canhazgpu: warning: --force: GPU {id} is in use without a reservation, {by}");
            }
        }
        let known = |id: u32| {
            self.gpus.get(id).map(|gpu| Known {
                index: gpu.gpu_index,
                uuid: gpu.uuid.clone(),
                mig: gpu.mig.is_some(),
            })
        };
        let (devices, warnings) = gpu_env::name_devices(
            ids,
            self.mode,
            self.gpus.scheme(),
            known,
            self.gpus.devices().map(<[GpuInfo]>::len),
        );
        for warning in warnings {
            say!("canhazgpu: warning: {warning}");
        }
        devices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, used: u64, processes: &[(u32, u64, Option<&str>)]) -> GpuInfo {
        GpuInfo {
            index,
            gpu_index: index,
            mig: None,
            note: None,
            name: format!("GPU model {index}"),
            uuid: format!("GPU-{index}"),
            memory_total_mib: 80_000,
            memory_used_mib: used,
            processes: processes
                .iter()
                .map(|&(pid, used_mib, user)| GpuProcess {
                    pid,
                    used_mib,
                    user: user.map(str::to_string),
                })
                .collect(),
        }
    }

    fn gpus(devices: Option<Vec<GpuInfo>>) -> Gpus {
        match devices {
            Some(devices) => Gpus::of(Vendor::Nvidia, devices),
            None => Gpus::none(),
        }
    }

    #[test]
    fn busy_means_more_than_the_threshold() {
        let gpus = gpus(Some(vec![
            gpu(0, 1024, &[]),
            gpu(1, 1025, &[]),
            gpu(2, 0, &[(5, 2000, Some("bob"))]),
            gpu(3, 300, &[(6, 300, None)]),
        ]));
        assert_eq!(gpus.busy(1024), BTreeSet::from([1, 2]));
        assert_eq!(gpus.busy(200), BTreeSet::from([0, 1, 2, 3]));
        assert!(self::gpus(None).busy(0).is_empty());
    }

    #[test]
    fn processes_name_their_users() {
        let gpu = gpu(0, 0, &[(12, 10240, Some("alice")), (13, 0, None)]);
        assert_eq!(
            describe_processes(&gpu.processes),
            "alice (pid 12, 10240 MiB), ? (pid 13, 0 MiB)"
        );
    }
}
