//! Reading one GPU's facts (or its MIG instances'), with fallbacks for drivers older
//! than R510.

use std::mem::MaybeUninit;

use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use nvml_wrapper::{Device, Nvml};

use super::mig;
use crate::gpu::owner::Owners;
use crate::gpu::{GpuInfo, GpuProcess, Mig, mib};

/// GPU `index` as units: itself, or with `mig` and MIG mode on, its MIG instances.
/// `Err` is the warning text when an essential fact is missing (see
/// [`crate::gpu::Probe::Unavailable`] for why that fails the probe).
pub(super) fn read(
    nvml: &Nvml,
    index: u32,
    use_mig: bool,
    owners: &mut Owners,
) -> Result<Vec<GpuInfo>, String> {
    let failed = |what: &str, err: NvmlError| {
        format!("NVML could not read the {what} of GPU {index}: {err}; check `nvidia-smi`")
    };
    let device = nvml
        .device_by_index(index)
        .map_err(|err| failed("handle", err))?;
    let whole = facts(nvml, &device, index, owners).map_err(|(what, err)| failed(what, err))?;
    if !mig::enabled(&device) {
        return Ok(vec![whole]);
    }
    if !use_mig {
        return Ok(vec![GpuInfo {
            note: Some("in MIG mode, reserved whole (the configuration has no mig = true)".into()),
            ..whole
        }]);
    }
    let instances = mig::instances(&device).map_err(|err| failed("MIG instances", err))?;
    if instances.is_empty() {
        return Ok(vec![GpuInfo {
            note: Some("in MIG mode without MIG instances: CUDA cannot use it".into()),
            ..whole
        }]);
    }
    let mut units = Vec::new();
    for (mig_index, instance) in instances {
        let unit = facts(nvml, &instance, index, owners)
            .map_err(|(what, err)| failed(&format!("MIG instance {mig_index}: {what}"), err))?;
        units.push(GpuInfo {
            name: whole.name.clone(),
            mig: Some(Mig {
                gpu: index,
                gpu_uuid: whole.uuid.clone(),
                index: mig_index,
                profile: mig::profile(&unit.name),
            }),
            ..unit
        });
    }
    Ok(units)
}

/// A GPU's or MIG device's own facts, as a unit numbered like its GPU (the caller
/// renumbers); on failure, which fact and why.
fn facts(
    nvml: &Nvml,
    device: &Device,
    index: u32,
    owners: &mut Owners,
) -> Result<GpuInfo, (&'static str, NvmlError)> {
    let name = device.name().map_err(|err| ("name", err))?;
    let uuid = device.uuid().map_err(|err| ("UUID", err))?;
    let (total, used) = memory(nvml, device).map_err(|err| ("memory usage", err))?;
    let processes = compute_processes(device)
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
        gpu_index: index,
        name,
        uuid,
        memory_total_mib: mib(total),
        memory_used_mib: mib(used),
        processes,
        mig: None,
        note: None,
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
