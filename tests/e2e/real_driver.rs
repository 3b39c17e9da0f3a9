//! The real-driver check (`scripts/real-gpu-check.sh`): against a real NVIDIA driver when
//! one is present (`cargo test -- --ignored real_driver`), and in every run against the
//! NVML stub plus a fake `libcuda.so.1` (tests/support/cuda_stub.c) whose allocations the
//! NVML stub reports, so that the script a GPU host runs is known to work, and to fail
//! when it should, before anyone takes it to one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common;
use crate::nvml_stub::{self as nvml, Variant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/real-gpu-check.sh");
const SUPPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support");

/// Compiles `source` from tests/support with gcc into the test's build directory, once.
fn compile(source: &str, output: &str, flags: &[&str]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cuda-support");
    std::fs::create_dir_all(&dir).expect("creating the CUDA support build directory");
    let path = dir.join(output);
    let built = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&path)
        .arg(Path::new(SUPPORT).join(source))
        .arg("-ldl")
        .status()
        .expect("gcc must be installed for the tests");
    assert!(built.success(), "gcc failed on {source}");
    path
}

fn allocator() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| compile("cuda_alloc.c", "cuda_alloc", &["-O2", "-Wall"]))
}

fn cuda_stub() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| compile("cuda_stub.c", "libcuda.so.1", &["-shared", "-fPIC"]))
}

/// A pretend driver in a directory of its own: the NVML stub describing `gpus`, the fake
/// libcuda beside it, and optionally an `nvidia-smi` that lists `smi_uuids`.
struct FakeDriver {
    dir: tempfile::TempDir,
}

impl FakeDriver {
    fn new(gpus: &[&str], smi_uuids: Option<&[&str]>) -> FakeDriver {
        let mut config = String::from("driver 555.42.06\n");
        for uuid in gpus {
            config.push_str(&format!("gpu {uuid} 81559 0 NVIDIA H100 80GB HBM3\n"));
        }
        let listing = smi_uuids.map(|uuids| {
            uuids
                .iter()
                .enumerate()
                .map(|(i, uuid)| format!("GPU {i}: NVIDIA H100 80GB HBM3 (UUID: {uuid})\n"))
                .collect::<String>()
        });
        FakeDriver::of(&config, listing.as_deref())
    }

    /// The NVML stub with `config`, and an `nvidia-smi -L` that prints `listing`.
    fn of(config: &str, listing: Option<&str>) -> FakeDriver {
        let dir = tempfile::tempdir().expect("temp dir");
        nvml::install_stub(Variant::Current, dir.path(), config);
        std::fs::copy(cuda_stub(), dir.path().join("libcuda.so.1")).expect("copying libcuda");
        if let Some(listing) = listing {
            let bin = dir.path().join("bin");
            std::fs::create_dir(&bin).expect("bin dir");
            std::fs::write(bin.join("listing"), listing).expect("writing the listing");
            let smi = bin.join("nvidia-smi");
            let script = format!(
                "#!/bin/sh\ncase \"$1\" in -L) cat '{}';; *) echo 555.42.06;; esac\n",
                bin.join("listing").display()
            );
            std::fs::write(&smi, script).expect("writing nvidia-smi");
            let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
            std::fs::set_permissions(&smi, mode).expect("chmod nvidia-smi");
        }
        FakeDriver { dir }
    }

    fn check(&self) -> Output {
        let path = format!("{}:/usr/bin:/bin", self.dir.path().join("bin").display());
        Command::new("bash")
            .arg(SCRIPT)
            .args(["--binary"])
            .arg(common::binary())
            .arg("--allocator")
            .arg(allocator())
            .args(["--runs", "3"])
            .env("PATH", path)
            .env("LD_LIBRARY_PATH", self.dir.path())
            .env(
                nvml::CONFIG_ENV,
                self.dir.path().join(nvml::CONFIG_FILE_NAME),
            )
            .env_remove("CANHAZGPU_STORE")
            .output()
            .expect("running scripts/real-gpu-check.sh")
    }
}

fn report(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_check_passes_on_a_driver_that_behaves() {
    let uuids = ["GPU-0a0a0a0a-1111", "GPU-0b0b0b0b-2222"];
    let driver = FakeDriver::new(&uuids, Some(&uuids));
    let out = driver.check();
    let text = report(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for check in ["detect", "uuids", "foreign", "skipped", "force", "freed"] {
        assert!(text.contains(&format!("PASS {check}")), "{check}: {text}");
    }
    // Nothing here is in MIG mode: the MIG checks say so rather than pass.
    assert!(text.contains("SKIP mig "), "{text}");
    assert!(
        text.contains("result: 7 passed, 0 failed, 1 skipped"),
        "{text}"
    );
    assert!(
        text.contains("timing:    status with the real driver (3 runs): mean"),
        "{text}"
    );
}

#[test]
fn the_check_fails_when_the_driver_disagrees_with_nvidia_smi() {
    let driver = FakeDriver::new(&["GPU-0a0a0a0a-1111"], Some(&["GPU-ffffffff-9999"]));
    let out = driver.check();
    let text = report(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL uuids"), "{text}");
    // The other checks still ran, on the one GPU there is.
    assert!(
        text.contains("PASS skipped  reserve --gpus 1 is refused"),
        "{text}"
    );
    assert!(text.contains("PASS freed"), "{text}");
}

#[test]
fn without_nvidia_smi_the_uuid_check_is_skipped_not_passed() {
    let driver = FakeDriver::new(&["GPU-0a0a0a0a-1111"], None);
    let out = driver.check();
    let text = report(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("SKIP uuids"), "{text}");
    assert!(
        text.contains("result: 6 passed, 0 failed, 2 skipped"),
        "{text}"
    );
}

#[test]
fn on_a_mig_host_the_check_also_allocates_on_a_mig_instance() {
    // GPU 0 in MIG mode with instances in slots 0 and 2, GPU 1 without MIG.
    let config = "driver 555.42.06\n\
                  gpu GPU-a100 81920 0 NVIDIA A100-SXM4-80GB\n\
                  mig 0 1\n\
                  mig_device 0 0 MIG-aaaa 9856 0 NVIDIA A100-SXM4-80GB MIG 1g.10gb\n\
                  mig_device 0 2 MIG-cccc 40192 0 NVIDIA A100-SXM4-80GB MIG 3g.40gb\n\
                  gpu GPU-h100 81559 0 NVIDIA H100 80GB HBM3\n";
    let listing = "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-a100)\n  \
                   MIG 1g.10gb     Device  0: (UUID: MIG-aaaa)\n  \
                   MIG 3g.40gb     Device  1: (UUID: MIG-cccc)\n\
                   GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-h100)\n";
    let driver = FakeDriver::of(config, Some(listing));
    let out = driver.check();
    let text = report(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // The whole-GPU checks use GPU 1: CUDA cannot use GPU 0, in MIG mode, as a whole.
    assert!(text.contains("on 1 (GPU 1 here)"), "{text}");
    for check in [
        "mig-detect",
        "mig-uuids",
        "mig-export",
        "mig-foreign",
        "mig-skipped",
        "mig-force",
        "mig-freed",
    ] {
        assert!(text.contains(&format!("PASS {check}")), "{check}: {text}");
    }
    assert!(text.contains("on MIG-cccc (GPU 1 here)"), "{text}");
    assert!(
        text.contains("result: 15 passed, 0 failed, 0 skipped"),
        "{text}"
    );
    // The instances are read, never changed: the configuration is as it was.
    let after = std::fs::read_to_string(driver.dir.path().join(nvml::CONFIG_FILE_NAME)).unwrap();
    assert_eq!(after, config);
}

#[test]
fn the_mig_check_fails_when_nvidia_smi_lists_other_instances() {
    let config =
        "gpu GPU-a100 81920 0 A100\nmig 0 1\nmig_device 0 0 MIG-aaaa 9856 0 A100 MIG 1g.10gb\n";
    let listing = "GPU 0: A100 (UUID: GPU-a100)\n  MIG 1g.10gb Device 0: (UUID: MIG-ffff)\n";
    let out = FakeDriver::of(config, Some(listing)).check();
    let text = report(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL mig-uuids"), "{text}");
    assert!(text.contains("PASS mig-freed"), "{text}");
}

#[test]
#[ignore = "real driver: needs an NVIDIA GPU, libnvidia-ml.so.1 and libcuda.so.1"]
fn real_driver_check() {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .arg("--binary")
        .arg(common::binary())
        .arg("--allocator")
        .arg(allocator())
        .env_remove("CANHAZGPU_STORE")
        .output()
        .expect("running scripts/real-gpu-check.sh");
    let text = report(&out);
    println!("{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
}
