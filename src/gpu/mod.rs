//! NVML probing: what the driver says about the GPUs (placeholder until the NVML work lands).
