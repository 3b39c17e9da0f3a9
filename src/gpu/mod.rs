//! What the NVIDIA driver says about this host's GPUs, read through NVML
//! (`libnvidia-ml.so.1`, the library behind `nvidia-smi`).
//!
//! Reservations alone cannot tell whether a GPU is really free: people start
//! jobs without asking. Before handing GPUs out, canhazgpu asks the driver
//! which GPUs exist, how much of their memory is in use and by which
//! processes, so that GPUs in use without a reservation can be skipped and
//! their users named.
//!
//! Hosts without the NVIDIA driver are normal (a laptop, a CI runner), so a
//! missing library is reported as [`Probe::NoLibrary`] and the caller works
//! from the configured pool size without complaint. A library that is present
//! but unusable is worth a warning: [`Probe::Unavailable`] carries the text.
//!
//! The probe loads the library in-process (no `nvidia-smi` subprocess), once
//! per call, and unloads it again before returning.

mod device;
mod load;
mod owner;

#[cfg(test)]
#[path = "../../tests/support/nvml.rs"]
pub(crate) mod stub;
#[cfg(test)]
mod tests;

use std::path::Path;

/// A process holding a compute context on a GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuProcess {
    /// As NVML reports it, i.e. in the host's PID namespace; inside a
    /// container it may not exist in our `/proc`, or be another process.
    pub pid: u32,
    /// GPU memory used by this process; 0 where the driver cannot tell
    /// (e.g. under Windows WDDM or without enough privileges).
    pub used_mib: u64,
    /// Account owning `/proc/<pid>`; `None` when the process is not visible
    /// here (gone, other PID namespace, hidepid) or the uid has no name.
    pub user: Option<String>,
}

/// One GPU as NVML enumerates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    /// NVML's index (PCI bus order); CUDA numbers GPUs the same way only
    /// under `CUDA_DEVICE_ORDER=PCI_BUS_ID`.
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total_mib: u64,
    /// With drivers before R510 this comes from the older memory query,
    /// which counts memory reserved by the driver as used.
    pub memory_used_mib: u64,
    /// Compute processes only (CUDA and the like), not graphics clients.
    /// Empty both when none run and when the driver would not list them:
    /// the listing is refused in some containers and unsupported on some
    /// virtual GPUs, and failing the whole probe for it would throw away the
    /// memory figures, which show a busy GPU by themselves.
    pub processes: Vec<GpuProcess>,
}

/// Outcome of [`probe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// libnvidia-ml.so.1 is not installed: work silently from the pool size.
    NoLibrary,
    /// Library present but unusable (DriverNotLoaded, NoPermission, missing symbol, ...): one clear warning text that says what went wrong and what to do.
    ///
    /// Also returned when an essential fact (handle, name, UUID, memory) of
    /// any GPU cannot be read, since reporting that GPU as idle, or leaving
    /// it out and shifting the meaning of the list, would be worse than
    /// falling back to the pool size. The text does not say what the caller
    /// will do about it; prefix it accordingly.
    Unavailable(String),
    Devices {
        /// `None` if the driver would not tell; nothing depends on it.
        driver_version: Option<String>,
        /// In NVML index order, one entry per GPU.
        gpus: Vec<GpuInfo>,
    },
}

/// Asks NVML about every GPU on this host.
///
/// `library_path` names the library file to load instead of looking up
/// `libnvidia-ml.so.1` the way the dynamic loader does; a directory means
/// `libnvidia-ml.so.1` inside it. A path that does not exist gives
/// [`Probe::NoLibrary`], like a failed lookup.
///
/// Initialises NVML once per call and shuts it down before returning; runs
/// no subprocesses.
pub fn probe(library_path: Option<&Path>) -> Probe {
    let nvml = match load::init(library_path) {
        Ok(nvml) => nvml,
        Err(outcome) => return outcome,
    };
    let driver_version = nvml.sys_driver_version().ok();
    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(err) => {
            return Probe::Unavailable(format!(
                "NVML could not count the GPUs: {err}; check that `nvidia-smi` works"
            ));
        }
    };
    let mut owners = owner::Owners::default();
    let mut gpus = Vec::new();
    for index in 0..count {
        match device::read(&nvml, index, &mut owners) {
            Ok(gpu) => gpus.push(gpu),
            Err(message) => return Probe::Unavailable(message),
        }
    }
    Probe::Devices {
        driver_version,
        gpus,
    }
}

const MIB: u64 = 1024 * 1024;

fn mib(bytes: u64) -> u64 {
    bytes / MIB
}
