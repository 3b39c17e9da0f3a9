//! What the GPUs' own drivers say about this host: which GPUs (or MIG instances) it
//! has, how much of their memory is in use, and by which processes.
//!
//! Reservations alone cannot tell whether a GPU is really free: people start jobs
//! without asking. Before handing GPUs out, canhazgpu asks the driver, so that GPUs in
//! use without a reservation can be skipped and their users named.
//!
//! Two vendors answer, each through its management library, loaded into the process at
//! run time (no `nvidia-smi` or `amd-smi` subprocess): NVIDIA through NVML
//! (`libnvidia-ml.so.1`, by way of nvml-wrapper) and AMD through AMD SMI
//! (`libamd_smi.so`). Each implements [`Backend`]; [`detect`] asks the vendors the
//! configuration allows and [`choose`] decides which answer stands, so that the
//! commands see a [`Host`] and never which vendor answered.
//!
//! Hosts without a vendor's library are normal (a laptop, a CI runner, the other
//! vendor's host), so a missing library is [`Probe::NoLibrary`] and nobody is told. A
//! library that is present but unusable is worth a warning: [`Probe::Unavailable`]
//! carries the text. Each probe loads its library once and shuts it down before
//! returning.

mod amd;
mod choose;
mod loader;
mod nvml;
mod owner;

#[cfg(test)]
#[path = "../../tests/support/amd_smi.rs"]
mod amd_stub;
#[cfg(test)]
#[path = "../../tests/support/build_stub.rs"]
mod build_stub;
#[cfg(test)]
#[path = "../../tests/support/nvml.rs"]
pub(crate) mod stub;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use choose::choose;

/// Whose GPUs these are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Nvidia,
    Amd,
}

impl Vendor {
    /// As the configuration (`gpu_vendor`) and `status --json` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
        }
    }

    pub fn parse(text: &str) -> Option<Vendor> {
        match text {
            "nvidia" => Some(Vendor::Nvidia),
            "amd" => Some(Vendor::Amd),
            _ => None,
        }
    }

    /// The library canhazgpu asks, as messages name it.
    pub fn library(self) -> &'static str {
        match self {
            Vendor::Nvidia => "NVML",
            Vendor::Amd => "AMD SMI",
        }
    }

    /// The file the dynamic loader is asked for.
    pub fn library_file(self) -> &'static str {
        match self {
            Vendor::Nvidia => nvml::LIBRARY_NAME,
            Vendor::Amd => amd::LIBRARY_NAME,
        }
    }
}

/// A process using a GPU.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GpuProcess {
    /// As the driver reports it, i.e. in the host's PID namespace; inside a container
    /// it may not exist in our `/proc`, or be another process.
    pub pid: u32,
    /// GPU memory used by this process; 0 where the driver cannot tell (e.g. without
    /// enough privileges).
    pub used_mib: u64,
    /// Account owning `/proc/<pid>`; `None` when the process is not visible here (gone,
    /// other PID namespace, hidepid) or the uid has no name.
    pub user: Option<String>,
}

/// Where a MIG instance lives.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mig {
    /// NVML's index of the GPU it is part of.
    pub gpu: u32,
    pub gpu_uuid: String,
    /// Its index among that GPU's MIG devices (nvidia-smi -L's "Device N").
    pub index: u32,
    /// Its profile, e.g. `1g.10gb`; `None` when the driver's name for it has none.
    pub profile: Option<String>,
}

/// One reservable unit: a GPU, or a MIG instance of one. Serialisable because a named
/// host publishes what its GPU library says for the lab views of other hosts (see
/// `crate::host::PublishedGpus`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GpuInfo {
    /// Position in the host's list of units, which is the pool's id: GPUs in the
    /// vendor's order (PCI bus order for NVML), a MIG GPU's instances in their order.
    pub index: u32,
    /// The vendor's index of the GPU (the parent GPU for a MIG instance); the same as
    /// `index` on a host without MIG instances in the pool.
    pub gpu_index: u32,
    /// The model, e.g. `NVIDIA H100 80GB HBM3` (a MIG instance's GPU's).
    pub name: String,
    /// The GPU's UUID, or a MIG instance's `MIG-` UUID; empty where AMD SMI cannot
    /// make one.
    pub uuid: String,
    pub memory_total_mib: u64,
    /// With NVIDIA drivers before R510 this comes from the older memory query, which
    /// counts memory reserved by the driver as used.
    pub memory_used_mib: u64,
    /// Compute processes only. Empty both when none run and when the driver would not
    /// list them: the listing is refused in some containers and unsupported on some
    /// virtual GPUs, and failing the whole probe for it would throw away the memory
    /// figures, which show a busy GPU by themselves.
    pub processes: Vec<GpuProcess>,
    /// Set for a MIG instance.
    #[serde(default)]
    pub mig: Option<Mig>,
    /// Something about this unit that `status` says, e.g. that the GPU is in MIG mode
    /// but reserved whole.
    #[serde(default)]
    pub note: Option<String>,
}

/// Outcome of one vendor's probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The library is not installed: work silently from the pool size.
    NoLibrary,
    /// Library present but unusable (driver not loaded, no permission, missing
    /// symbol, ...): one clear warning text that says what went wrong and what to do.
    ///
    /// Also returned when an essential fact (handle, name, memory) of any GPU cannot be
    /// read, since reporting that GPU as idle, or leaving it out and shifting the
    /// meaning of the list, would be worse than falling back to the pool size. The text
    /// does not say what the caller will do about it; prefix it accordingly.
    Unavailable(String),
    Devices {
        /// The driver's version; `None` if the library would not tell.
        version: Option<String>,
        /// One entry per unit, in [`GpuInfo::index`] order.
        gpus: Vec<GpuInfo>,
    },
}

/// One vendor's management library, loaded at run time: the interface every vendor
/// implements.
trait Backend {
    /// Asks the library about every GPU on this host. Loads it (a path that does not
    /// exist gives [`Probe::NoLibrary`], like a failed lookup), initialises it once and
    /// shuts it down before returning; runs no subprocesses.
    fn probe(&self) -> Probe;
}

/// NVIDIA, through NVML.
struct Nvml {
    library: Option<PathBuf>,
    /// Whether a MIG GPU's instances are the units (`mig = true`).
    mig: bool,
}

impl Backend for Nvml {
    fn probe(&self) -> Probe {
        nvml::probe(self.library.as_deref(), self.mig)
    }
}

/// AMD, through AMD SMI.
struct AmdSmi {
    library: Option<PathBuf>,
}

impl Backend for AmdSmi {
    fn probe(&self) -> Probe {
        amd::probe(self.library.as_deref())
    }
}

/// A library path someone gave, and where (for messages about it).
#[derive(Clone, Copy, Debug)]
pub struct Library<'a> {
    /// The file, or a directory holding it.
    pub path: &'a Path,
    /// E.g. `--nvml-library or CANHAZGPU_NVML_LIBRARY`.
    pub source: &'a str,
}

/// What to ask.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    /// Only this vendor (`gpu_vendor`); both when `None`.
    pub vendor: Option<Vendor>,
    /// Where NVML is; the dynamic loader's search path when `None`.
    pub nvml: Option<Library<'a>>,
    /// Where AMD SMI is; the loader's search path, then ROCm's directory, when `None`.
    pub amd_smi: Option<Library<'a>>,
    /// Whether a MIG GPU's instances are the units.
    pub mig: bool,
}

/// The vendor that answered, and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub vendor: Vendor,
    pub version: Option<String>,
    pub gpus: Vec<GpuInfo>,
}

/// What this host's GPUs are, as far as the vendors' libraries could tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Host {
    /// `None` when no library could answer (or the answers conflict).
    pub found: Option<Found>,
    /// Why no library answered, where that deserves a warning; the caller says what it
    /// does instead.
    pub problem: Option<String>,
    /// Another vendor's library that is broken while one answered: worth a warning,
    /// changes nothing.
    pub notes: Vec<String>,
    /// Both vendors have GPUs here and the configuration picks neither.
    pub conflict: Option<String>,
}

/// Asks the vendors `request` allows, and decides with [`choose`].
pub fn detect(request: &Request) -> Host {
    let asked = |vendor: Vendor| request.vendor.is_none_or(|only| only == vendor);
    let nvidia = asked(Vendor::Nvidia).then(|| {
        let backend = Nvml {
            library: request.nvml.map(|l| l.path.to_path_buf()),
            mig: request.mig,
        };
        ask(&backend, Vendor::Nvidia, request.nvml)
    });
    let amd = asked(Vendor::Amd).then(|| {
        let backend = AmdSmi {
            library: request.amd_smi.map(|l| l.path.to_path_buf()),
        };
        ask(&backend, Vendor::Amd, request.amd_smi)
    });
    choose(request.vendor, nvidia, amd)
}

/// A path someone set and got wrong should not quietly turn the detection off.
fn ask(backend: &dyn Backend, vendor: Vendor, library: Option<Library>) -> Probe {
    match (backend.probe(), library) {
        (Probe::NoLibrary, Some(library)) => Probe::Unavailable(format!(
            "there is no {} library at {} (set by {}); fix or unset that path",
            vendor.library(),
            library.path.display(),
            library.source
        )),
        (outcome, _) => outcome,
    }
}

const MIB: u64 = 1024 * 1024;

fn mib(bytes: u64) -> u64 {
    bytes / MIB
}
