//! What NVML says about the GPUs, as the commands use it: which GPUs are in use without
//! a reservation and by whom, and how to name the GPUs handed out.
//!
//! Commands probe once, before any store transaction: asking the driver can take a
//! while on a big host, and must never happen while the pool is locked.

use std::collections::BTreeSet;

use crate::cli::{AllocationArgs, NvmlArgs, UsageArgs, VisibleDevices};
use crate::config::Config;
use crate::gpu::{self, GpuInfo, GpuProcess, Probe};
use crate::gpu_env::{self, Device};
use crate::host::PublishedGpus;
use crate::model::Timestamp;

pub const DEFAULT_MEMORY_THRESHOLD_MIB: u64 = 1024;

/// What `run` and `reserve` do without NVML, for the warning that says why.
const UNDETECTED: &str = "GPUs in use without a reservation cannot be detected";

/// The outcome of one probe.
pub struct Gpus {
    /// `None` when NVML could not be asked.
    devices: Option<Vec<GpuInfo>>,
    driver_version: Option<String>,
    /// Why NVML could not be asked, where that deserves a warning. A host without the
    /// NVIDIA library is normal and gets none.
    problem: Option<String>,
}

impl Gpus {
    /// Loads NVML from the flag or environment, else the configured path, else the
    /// dynamic loader's search path.
    pub fn probe(config: &Config, args: &NvmlArgs) -> Gpus {
        let (path, source) = match (&args.nvml_library, &config.nvml_library) {
            (Some(path), _) => (Some(path), "--nvml-library or CANHAZGPU_NVML_LIBRARY"),
            (None, Some(path)) => (Some(path), "nvml_library in the configuration file"),
            (None, None) => (None, ""),
        };
        match gpu::probe(path.map(|path| path.as_path())) {
            Probe::Devices {
                driver_version,
                gpus,
            } => Gpus {
                devices: Some(gpus),
                driver_version,
                problem: None,
            },
            // Silent only when nobody asked for a library: a path someone set and got
            // wrong should not quietly turn the detection off.
            Probe::NoLibrary => Gpus {
                devices: None,
                driver_version: None,
                problem: path.map(|path| {
                    format!(
                        "there is no NVML library at {} (set by {source}); fix or unset that path",
                        path.display()
                    )
                }),
            },
            Probe::Unavailable(problem) => Gpus {
                devices: None,
                driver_version: None,
                problem: Some(problem),
            },
        }
    }

    /// The one warning a command gives when NVML was expected but failed, ending with
    /// what the command does instead.
    pub fn warn(&self, consequence: &str) {
        if let Some(problem) = &self.problem {
            eprintln!("canhazgpu: warning: {problem}; {consequence}");
        }
    }

    /// What another host published of its NVML's answer, to be shown as if probed here.
    pub fn published(facts: &PublishedGpus) -> Gpus {
        Gpus {
            devices: Some(facts.gpus.clone()),
            driver_version: facts.driver_version.clone(),
            problem: None,
        }
    }

    /// What this host publishes of this probe for other hosts' views; `None` without NVML.
    pub fn to_publish(&self, probed_at: Timestamp, threshold_mib: u64) -> Option<PublishedGpus> {
        Some(PublishedGpus {
            probed_at,
            memory_threshold_mib: threshold_mib,
            driver_version: self.driver_version.clone(),
            gpus: self.devices.clone()?,
        })
    }

    /// No NVML at all, as on a host without the driver (or another host that published
    /// nothing).
    pub fn none() -> Gpus {
        Gpus {
            devices: None,
            driver_version: None,
            problem: None,
        }
    }

    pub fn devices(&self) -> Option<&[GpuInfo]> {
        self.devices.as_deref()
    }

    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    pub fn driver_version(&self) -> Option<&str> {
        self.driver_version.as_deref()
    }

    /// NVML's GPU `id`, which is the pool's GPU `id`: both number in PCI order.
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
        .or(config.memory_threshold)
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

/// What `run` and `reserve` take from NVML: GPUs to skip, and how to name the chosen.
pub struct Allocation {
    gpus: Gpus,
    busy: BTreeSet<u32>,
    force: bool,
    mode: VisibleDevices,
}

impl Allocation {
    /// Probes NVML (warning once if it fails); call before the store transaction.
    pub fn probe(config: &Config, args: &AllocationArgs) -> Allocation {
        let gpus = Gpus::probe(config, &args.usage.nvml);
        gpus.warn(UNDETECTED);
        let busy = gpus.busy(memory_threshold(config, &args.usage));
        Allocation {
            gpus,
            busy,
            force: args.force,
            mode: args
                .visible_devices
                .or(config.visible_devices)
                .unwrap_or_default(),
        }
    }

    /// GPUs that must not be handed out even when the pool has them free.
    pub fn unusable(&self) -> BTreeSet<u32> {
        if self.force {
            BTreeSet::new()
        } else {
            self.busy.clone()
        }
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
                eprintln!(
                    "canhazgpu: warning: --force: GPU {id} is in use without a reservation, {by}"
                );
            }
        }
        let (devices, warning) = gpu_env::name_devices(
            ids,
            self.mode,
            |id| self.gpus.get(id).map(|gpu| gpu.uuid.clone()),
            self.gpus.devices().map(<[GpuInfo]>::len),
        );
        if let Some(warning) = warning {
            eprintln!("canhazgpu: warning: {warning}");
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
        Gpus {
            devices,
            driver_version: None,
            problem: None,
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
