//! The NVML stub builds as integration tests will use it. Probing itself is
//! tested by the unit tests in src/gpu, which can reach the module.

use crate::nvml_stub as nvml;

use nvml::{LIBRARY_NAME, Variant};

fn exports(variant: Variant, symbol: &str) -> bool {
    let library = std::fs::read(nvml::stub_library_file(variant)).expect("reading the stub");
    library
        .windows(symbol.len() + 1)
        .any(|window| window.starts_with(symbol.as_bytes()) && window[symbol.len()] == 0)
}

#[test]
fn variants_build_into_their_own_directories() {
    let current = nvml::stub_library_dir(Variant::Current);
    let no_v3 = nvml::stub_library_dir(Variant::NoV3);
    assert_ne!(current, no_v3);
    assert!(current.join(LIBRARY_NAME).is_file());
    assert!(no_v3.join(LIBRARY_NAME).is_file());
    assert!(current.starts_with(env!("CARGO_TARGET_TMPDIR")));
    // Built once per process.
    assert_eq!(nvml::stub_library_dir(Variant::Current), current);
}

#[test]
fn variants_leave_out_their_symbols() {
    let v3 = "nvmlDeviceGetComputeRunningProcesses_v3";
    let memory_v2 = "nvmlDeviceGetMemoryInfo_v2";
    assert!(exports(Variant::Current, v3));
    assert!(exports(Variant::Current, "nvmlShutdown"));
    assert!(!exports(Variant::NoV3, v3));
    assert!(exports(Variant::NoV3, memory_v2));
    assert!(!exports(Variant::R470, v3));
    assert!(!exports(Variant::R470, memory_v2));
    assert!(exports(
        Variant::R470,
        "nvmlDeviceGetComputeRunningProcesses_v2"
    ));
    assert!(!exports(Variant::NoShutdown, "nvmlShutdown"));
}
