//! Reading one GPU's facts, with fallbacks for drivers older than R510.

use std::mem::MaybeUninit;

use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use nvml_wrapper::{Device, Nvml};

use super::owner::Owners;
use super::{GpuInfo, GpuProcess, mib};

/// Everything about GPU `index`, or the warning text if an essential fact is
/// missing (see [`super::Probe::Unavailable`] for why that fails the probe).
pub(super) fn read(nvml: &Nvml, index: u32, owners: &mut Owners) -> Result<GpuInfo, String> {
    let failed = |what: &str, err: NvmlError| {
        format!("NVML could not read the {what} of GPU {index}: {err}; check `nvidia-smi`")
    };
    let device = nvml
        .device_by_index(index)
        .map_err(|err| failed("handle", err))?;
    let name = device.name().map_err(|err| failed("name", err))?;
    let uuid = device.uuid().map_err(|err| failed("UUID", err))?;
    let (total, used) = memory(nvml, &device).map_err(|err| failed("memory usage", err))?;
    let processes = compute_processes(&device)
        .into_iter()
        .map(|process| GpuProcess {
            pid: process.pid,
            used_mib: match process.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => mib(bytes),
                UsedGpuMemory::Unavailable => 0,
            },
            user: owners.of(process.pid),
        })
        .collect();
    Ok(GpuInfo {
        index,
        name,
        uuid,
        memory_total_mib: mib(total),
        memory_used_mib: mib(used),
        processes,
    })
}

/// Whether the library simply lacks the entry point, as older drivers do.
fn is_missing(err: &NvmlError) -> bool {
    matches!(
        err,
        NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound
    )
}

/// Total and used bytes.
fn memory(nvml: &Nvml, device: &Device) -> Result<(u64, u64), NvmlError> {
    match device.memory_info() {
        Ok(info) => Ok((info.total, info.used)),
        Err(err) if is_missing(&err) => memory_v1(nvml, device),
        Err(err) => Err(err),
    }
}

/// `nvmlDeviceGetMemoryInfo`, for drivers before R510 that lack the `_v2`
/// query nvml-wrapper uses. nvml-wrapper has no method for it, so this calls
/// the symbol it already loaded.
fn memory_v1(nvml: &Nvml, device: &Device) -> Result<(u64, u64), NvmlError> {
    let query = nvml_sym(nvml.lib().nvmlDeviceGetMemoryInfo.as_ref())?;
    // nvml-wrapper's sys crate is not a direct dependency, so the struct
    // type (nvmlMemory_t) is only named through the function's signature.
    let mut raw = MaybeUninit::zeroed();
    // SAFETY: the handle comes from this `nvml`, which is still initialised,
    // and `raw` is a writable nvmlMemory_t (plain integers, so all-zero is a
    // valid value even if the call leaves it untouched).
    let code = unsafe { query(device.handle(), raw.as_mut_ptr()) };
    nvml_try(code)?;
    // SAFETY: zero-initialised above, and any bit pattern is valid.
    let raw = unsafe { raw.assume_init() };
    Ok((raw.total, raw.used))
}

/// Compute processes on the GPU, preferring the `_v3` query and falling back
/// to `_v2` on drivers that predate it. Other failures give an empty list
/// (see [`GpuInfo::processes`] for why).
fn compute_processes(device: &Device) -> Vec<ProcessInfo> {
    match device.running_compute_processes() {
        Ok(processes) => processes,
        Err(err) if is_missing(&err) => device.running_compute_processes_v2().unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}
