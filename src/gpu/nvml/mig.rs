//! MIG (Multi-Instance GPU): whether a GPU is in MIG mode, and its instances.
//!
//! canhazgpu only reads: it never changes a GPU's MIG mode or its instances.

use nvml_wrapper::Device;
use nvml_wrapper::error::NvmlError;

/// `NVML_DEVICE_MIG_ENABLE`.
const ENABLED: u32 = 1;

/// Whether the GPU is in MIG mode now. GPUs without MIG, and drivers without the query,
/// say no.
pub(super) fn enabled(device: &Device) -> bool {
    device.mig_mode().is_ok_and(|mode| mode.current == ENABLED)
}

/// The GPU's MIG devices (one per compute instance), with their index among them.
///
/// NVML numbers them up to a maximum per GPU and leaves gaps where no instance exists,
/// answering NotFound there.
pub(super) fn instances<'nvml>(
    device: &Device<'nvml>,
) -> Result<Vec<(u32, Device<'nvml>)>, NvmlError> {
    let slots = device.mig_device_count()?;
    let mut found = Vec::new();
    for index in 0..slots {
        match device.mig_device_by_index(index) {
            Ok(instance) => found.push((index, instance)),
            Err(NvmlError::NotFound | NvmlError::InvalidArg) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(found)
}

/// The profile in a MIG device's name: `1g.10gb` from `NVIDIA A100-SXM4-80GB MIG
/// 1g.10gb`.
pub(super) fn profile(name: &str) -> Option<String> {
    let profile = match name.rsplit_once(" MIG ") {
        Some((_, profile)) => profile,
        None => name.strip_prefix("MIG ")?,
    };
    let profile = profile.trim();
    (!profile.is_empty()).then(|| profile.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_come_from_the_names() {
        assert_eq!(
            profile("NVIDIA A100-SXM4-80GB MIG 1g.10gb").as_deref(),
            Some("1g.10gb")
        );
        assert_eq!(profile("MIG 3g.40gb").as_deref(), Some("3g.40gb"));
        assert_eq!(profile("NVIDIA H100 80GB HBM3"), None);
        assert_eq!(profile("NVIDIA H100 MIG "), None);
    }
}
