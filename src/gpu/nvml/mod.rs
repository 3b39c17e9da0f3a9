//! NVIDIA's GPUs through NVML (`libnvidia-ml.so.1`, the library behind `nvidia-smi`),
//! by way of nvml-wrapper, with fallbacks for drivers before R510 and MIG instances as
//! units when the configuration asks for them (`mig = true`).

mod device;
mod load;
mod mig;

use std::path::Path;

use super::owner::Owners;
use super::{GpuInfo, Probe};

pub(crate) use load::LIBRARY_NAME;

/// Asks NVML about every GPU on this host; with `mig`, each MIG instance of a GPU in
/// MIG mode is a unit of its own, in the GPU's place.
///
/// `library_path` names the library file to load instead of looking up
/// `libnvidia-ml.so.1` the way the dynamic loader does; a directory means
/// `libnvidia-ml.so.1` inside it. Initialises NVML once per call and shuts it down
/// before returning.
pub(super) fn probe(library_path: Option<&Path>, mig: bool) -> Probe {
    let nvml = match load::init(library_path) {
        Ok(nvml) => nvml,
        Err(outcome) => return outcome,
    };
    let version = nvml.sys_driver_version().ok();
    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(err) => {
            return Probe::Unavailable(format!(
                "NVML could not count the GPUs: {err}; check that `nvidia-smi` works"
            ));
        }
    };
    let mut owners = Owners::default();
    let mut gpus: Vec<GpuInfo> = Vec::new();
    for index in 0..count {
        match device::read(&nvml, index, mig, &mut owners) {
            Ok(units) => {
                for mut unit in units {
                    unit.index = gpus.len() as u32;
                    gpus.push(unit);
                }
            }
            Err(message) => return Probe::Unavailable(message),
        }
    }
    Probe::Devices { version, gpus }
}
