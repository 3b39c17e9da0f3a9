//! Probing against the stub libraries of tests/support: NVML (nvml_stub.c, with MIG
//! devices) and AMD SMI (amd_smi_stub.c).
//!
//! Each test loads its own copy of a stub with its own config beside it,
//! so tests can run in parallel threads without sharing the stub's state or
//! touching the process environment.

// Tests print what they measured; the test harness captures it.
#![allow(clippy::disallowed_macros)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use tempfile::TempDir;

use super::amd_stub::{self, Variant as AmdVariant};
use super::loader::loader_found_nothing;
use super::stub::{self, Variant};
use super::{GpuInfo, GpuProcess, Mig, Probe};

/// NVML as `mig = false` asks it.
fn probe(library: Option<&Path>) -> Probe {
    super::nvml::probe(library, false)
}

/// A pid no kernel hands out (pid_max is at most 2^22).
const NO_SUCH_PID: u32 = u32::MAX - 1;

/// A scratch directory for stub copies. Under target/ rather than /tmp,
/// which is mounted noexec on some hosts and then refuses dlopen.
fn scratch() -> TempDir {
    let root = stub::stub_library_dir(Variant::Current);
    let parent = root.parent().unwrap_or(&root);
    tempfile::tempdir_in(parent).expect("creating a scratch directory")
}

fn install(variant: Variant, config: &str) -> (TempDir, PathBuf) {
    let dir = scratch();
    let library = stub::install_stub(variant, dir.path(), config);
    (dir, library)
}

fn devices(outcome: Probe) -> (Option<String>, Vec<GpuInfo>) {
    match outcome {
        Probe::Devices { version, gpus } => (version, gpus),
        other => panic!("expected devices, got {other:?}"),
    }
}

fn unavailable(outcome: Probe) -> String {
    match outcome {
        Probe::Unavailable(message) => message,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// A real process to put in the stub's process list; killed on drop.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Self {
        Sleeper(
            Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("starting sleep"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .expect("looking up the current user")
        .expect("the current uid has a name")
        .name
}

#[test]
fn reads_devices_memory_and_processes() {
    let sleeper = Sleeper::start();
    let config = format!(
        "# two GPUs, names with spaces\n\
         driver 550.54.15\n\
         gpu GPU-11111111-2222-3333-4444-555555555555 81559 1234 NVIDIA H100 80GB HBM3\n\
         gpu GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee 24576 0 NVIDIA A10\n\
         proc 0 {pid} 1024\n\
         proc 0 {NO_SUCH_PID} na\n",
        pid = sleeper.pid()
    );
    let (_dir, library) = install(Variant::Current, &config);

    let (driver, gpus) = devices(probe(Some(&library)));

    assert_eq!(driver.as_deref(), Some("550.54.15"));
    assert_eq!(
        gpus,
        vec![
            GpuInfo {
                index: 0,
                gpu_index: 0,
                mig: None,
                note: None,
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-11111111-2222-3333-4444-555555555555".into(),
                memory_total_mib: 81559,
                memory_used_mib: 1234,
                processes: vec![
                    GpuProcess {
                        pid: sleeper.pid(),
                        used_mib: 1024,
                        user: Some(current_user()),
                    },
                    GpuProcess {
                        pid: NO_SUCH_PID,
                        used_mib: 0,
                        user: None,
                    },
                ],
            },
            GpuInfo {
                index: 1,
                gpu_index: 1,
                mig: None,
                note: None,
                name: "NVIDIA A10".into(),
                uuid: "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".into(),
                memory_total_mib: 24576,
                memory_used_mib: 0,
                processes: vec![],
            },
        ]
    );
}

#[test]
fn no_gpus_is_an_empty_list() {
    let (_dir, library) = install(Variant::Current, "");
    let (driver, gpus) = devices(probe(Some(&library)));
    assert!(driver.is_some());
    assert!(gpus.is_empty());
}

#[test]
fn directory_path_means_the_library_inside() {
    let (dir, _library) = install(Variant::Current, "gpu GPU-1 100 0 Only\n");
    let (_, gpus) = devices(probe(Some(dir.path())));
    assert_eq!(gpus.len(), 1);
}

#[test]
fn missing_library_is_silent() {
    let dir = scratch();
    assert_eq!(
        probe(Some(&dir.path().join("libnvidia-ml.so.1"))),
        Probe::NoLibrary
    );
    assert_eq!(probe(Some(dir.path())), Probe::NoLibrary);
    assert_eq!(
        probe(Some(Path::new("/nonexistent/libnvidia-ml.so.1"))),
        Probe::NoLibrary
    );
}

#[test]
fn loader_messages_for_a_missing_library() {
    let nvml = "libnvidia-ml.so.1";
    assert!(loader_found_nothing(
        "libnvidia-ml.so.1: cannot open shared object file: No such file or directory",
        nvml
    ));
    assert!(loader_found_nothing(
        "Error loading shared library libnvidia-ml.so.1: No such file or directory",
        nvml
    ));
    assert!(loader_found_nothing(
        "libamd_smi.so: cannot open shared object file: No such file or directory",
        "libamd_smi.so"
    ));
    // Found, but broken: worth a warning.
    assert!(!loader_found_nothing(
        "libfoo.so.2: cannot open shared object file: No such file or directory",
        nvml
    ));
    assert!(!loader_found_nothing(
        "libnvidia-ml.so.1: cannot open shared object file: Permission denied",
        nvml
    ));
    assert!(!loader_found_nothing(
        "Error loading shared library libfoo.so.2: No such file or directory \
         (needed by /usr/lib/libnvidia-ml.so.1)",
        nvml
    ));
}

#[test]
fn a_file_that_is_not_a_library_warns() {
    let dir = scratch();
    let library = dir.path().join("libnvidia-ml.so.1");
    std::fs::write(&library, "not an ELF file").expect("writing a fake library");
    let message = unavailable(probe(Some(&library)));
    assert!(message.contains("cannot load"), "{message}");
    assert!(
        message.contains(&library.display().to_string()),
        "{message}"
    );
}

#[test]
fn driver_not_loaded_warns() {
    let (_dir, library) = install(Variant::Current, "init_error 9\ngpu GPU-1 100 0 X\n");
    let message = unavailable(probe(Some(&library)));
    assert!(message.contains("driver is not loaded"), "{message}");
}

#[test]
fn no_permission_warns() {
    let (_dir, library) = install(Variant::Current, "init_error 4\n");
    let message = unavailable(probe(Some(&library)));
    assert!(message.contains("permission"), "{message}");
    assert!(message.contains("/dev/nvidia"), "{message}");
}

#[test]
fn missing_shutdown_warns_instead_of_panicking() {
    let (_dir, library) = install(Variant::NoShutdown, "gpu GPU-1 100 0 X\n");
    let message = unavailable(probe(Some(&library)));
    assert!(message.contains("nvmlShutdown"), "{message}");
}

#[test]
fn count_failure_warns() {
    let (_dir, library) = install(Variant::Current, "count_error 999\n");
    let message = unavailable(probe(Some(&library)));
    assert!(message.contains("count"), "{message}");
}

#[test]
fn unreadable_memory_fails_the_probe() {
    let config = "gpu GPU-1 100 0 A\ngpu GPU-2 100 0 B\nmemory_error 1 15\n";
    let (_dir, library) = install(Variant::Current, config);
    let message = unavailable(probe(Some(&library)));
    assert!(message.contains("GPU 1"), "{message}");
    assert!(message.contains("memory"), "{message}");
}

#[test]
fn unlistable_processes_leave_the_rest() {
    let config = "gpu GPU-1 100 60 A\ngpu GPU-2 100 0 B\n\
                  proc 0 1 10\nproc 1 2 10\nproc_error 0 4\n";
    let (_dir, library) = install(Variant::Current, config);
    let (_, gpus) = devices(probe(Some(&library)));
    assert_eq!(gpus[0].memory_used_mib, 60);
    assert!(gpus[0].processes.is_empty());
    assert_eq!(gpus[1].processes.len(), 1);
}

#[test]
fn processes_fall_back_to_v2_without_v3() {
    let config = format!("gpu GPU-1 100 50 A\nproc 0 {NO_SUCH_PID} 50\n");
    let (_dir, library) = install(Variant::NoV3, &config);
    let (_, gpus) = devices(probe(Some(&library)));
    assert_eq!(
        gpus[0].processes,
        vec![GpuProcess {
            pid: NO_SUCH_PID,
            used_mib: 50,
            user: None,
        }]
    );
}

#[test]
fn r470_style_driver_uses_the_older_queries() {
    let config = "gpu GPU-1 16160 300 Tesla V100\nproc 0 4242 300\n";
    let (_dir, library) = install(Variant::R470, config);
    let (_, gpus) = devices(probe(Some(&library)));
    assert_eq!(gpus[0].memory_total_mib, 16160);
    assert_eq!(gpus[0].memory_used_mib, 300);
    assert_eq!(gpus[0].processes.len(), 1);
    assert_eq!(gpus[0].processes[0].used_mib, 300);
}

/// Each probe initialises and shuts down NVML anew, so probes may repeat,
/// and probes of separate libraries may overlap.
#[test]
fn probes_repeat_and_overlap() {
    let (dir, library) = install(Variant::Current, "gpu GPU-1 100 0 First\n");
    let (_, gpus) = devices(probe(Some(&library)));
    assert_eq!(gpus[0].name, "First");

    stub::write_config(dir.path(), "gpu GPU-1 100 0 Second\n");
    let (_, gpus) = devices(probe(Some(&library)));
    assert_eq!(gpus[0].name, "Second");

    let handles: Vec<_> = (0..4)
        .map(|n| {
            std::thread::spawn(move || {
                let (_dir, library) =
                    install(Variant::Current, &format!("gpu GPU-{n} 100 0 T{n}\n"));
                (0..3)
                    .map(|_| devices(probe(Some(&library))).1[0].name.clone())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (n, handle) in handles.into_iter().enumerate() {
        let names = handle.join().expect("probe thread panicked");
        assert_eq!(names, vec![format!("T{n}"); 3]);
    }
}

const A100: &str = "NVIDIA A100-SXM4-80GB";

/// GPU 0 an A100 in MIG mode with instances in slots 0 and 2, GPU 1 without MIG; a
/// process on instance 2 and one on GPU 1.
fn mig_host(sleeper: u32) -> String {
    format!(
        "gpu GPU-a100 81920 9000 {A100}\n\
         mig 0 1\n\
         mig_device 0 0 MIG-aaaa 9856 12 {A100} MIG 1g.10gb\n\
         mig_device 0 2 MIG-cccc 40192 8000 {A100} MIG 3g.40gb\n\
         gpu GPU-h100 81559 0 NVIDIA H100 80GB HBM3\n\
         proc 0/2 {sleeper} 7900\n\
         proc 1 {NO_SUCH_PID} 10\n"
    )
}

#[test]
fn mig_instances_are_the_units_when_asked() {
    let sleeper = Sleeper::start();
    let (_dir, library) = install(Variant::Current, &mig_host(sleeper.pid()));
    let (_, gpus) = devices(super::nvml::probe(Some(&library), true));
    let mig = |index: u32, profile: &str| {
        Some(Mig {
            gpu: 0,
            gpu_uuid: "GPU-a100".into(),
            index,
            profile: Some(profile.into()),
        })
    };
    assert_eq!(
        gpus,
        vec![
            GpuInfo {
                index: 0,
                gpu_index: 0,
                name: A100.into(),
                uuid: "MIG-aaaa".into(),
                memory_total_mib: 9856,
                memory_used_mib: 12,
                processes: vec![],
                mig: mig(0, "1g.10gb"),
                note: None,
            },
            GpuInfo {
                index: 1,
                gpu_index: 0,
                name: A100.into(),
                uuid: "MIG-cccc".into(),
                memory_total_mib: 40192,
                memory_used_mib: 8000,
                processes: vec![GpuProcess {
                    pid: sleeper.pid(),
                    used_mib: 7900,
                    user: Some(current_user()),
                }],
                mig: mig(2, "3g.40gb"),
                note: None,
            },
            GpuInfo {
                index: 2,
                gpu_index: 1,
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-h100".into(),
                memory_total_mib: 81559,
                memory_used_mib: 0,
                processes: vec![GpuProcess {
                    pid: NO_SUCH_PID,
                    used_mib: 10,
                    user: None,
                }],
                mig: None,
                note: None,
            },
        ]
    );
}

#[test]
fn a_mig_gpu_is_whole_without_the_switch_or_without_instances() {
    let (dir, library) = install(Variant::Current, &mig_host(NO_SUCH_PID));
    let (_, gpus) = devices(super::nvml::probe(Some(&library), false));
    assert_eq!(gpus.len(), 2);
    assert_eq!(
        (gpus[0].uuid.as_str(), gpus[0].mig.as_ref()),
        ("GPU-a100", None)
    );
    assert_eq!(gpus[0].memory_used_mib, 9000);
    assert!(gpus[0].note.as_deref().unwrap().contains("mig = true"));
    assert_eq!(gpus[1].note, None);

    let config = format!("gpu GPU-a100 81920 0 {A100}\nmig 0 1\n");
    stub::write_config(dir.path(), &config);
    let (_, gpus) = devices(super::nvml::probe(Some(&library), true));
    assert_eq!(gpus.len(), 1);
    assert!(
        gpus[0]
            .note
            .as_deref()
            .unwrap()
            .contains("without MIG instances"),
        "{gpus:?}"
    );

    // MIG mode off: instances left over in the configuration are not there.
    let config = format!("gpu GPU-a100 81920 0 {A100}\nmig 0 0\nmig_device 0 0 MIG-a 10 0 X\n");
    stub::write_config(dir.path(), &config);
    let (_, gpus) = devices(super::nvml::probe(Some(&library), true));
    assert_eq!((gpus.len(), gpus[0].note.as_ref()), (1, None));
}

#[test]
fn unlistable_mig_instances_fail_the_probe() {
    let config = format!("gpu GPU-a100 81920 0 {A100}\nmig 0 1\nmig_error 0 999\n");
    let (_dir, library) = install(Variant::Current, &config);
    let message = unavailable(super::nvml::probe(Some(&library), true));
    assert!(message.contains("MIG instances of GPU 0"), "{message}");
    // Without the switch they are not asked for.
    let (_, gpus) = devices(super::nvml::probe(Some(&library), false));
    assert_eq!(gpus.len(), 1);
}

fn install_amd(variant: AmdVariant, config: &str) -> (TempDir, PathBuf) {
    let dir = scratch();
    let library = amd_stub::install_stub(variant, dir.path(), config);
    (dir, library)
}

fn amd(library: &Path) -> Probe {
    super::amd::probe(Some(library))
}

const MI300X: &str = "AMD Instinct MI300X";

/// A pid no kernel hands out, within the range AMD SMI's records may hold.
const NO_SUCH_AMD_PID: u32 = 1 << 22;

#[test]
fn reads_amd_gpus_memory_and_processes() {
    let sleeper = Sleeper::start();
    let config = format!(
        "driver 6.10.5\n\
         gpu 58ff74a1-0000-1000-8012-aaaaaaaaaaaa 196592 10283 {MI300X}\n\
         cpu\n\
         socket\n\
         gpu - 196592 0 -\n\
         proc 0 {pid} 10000\n\
         proc 0 {NO_SUCH_AMD_PID} 200\n",
        pid = sleeper.pid()
    );
    for variant in [
        AmdVariant::Current,
        AmdVariant::ShortRecords,
        AmdVariant::ProcessPids,
    ] {
        let (_dir, library) = install_amd(variant, &config);
        let (version, gpus) = devices(amd(&library));
        assert_eq!(version.as_deref(), Some("6.10.5"), "{variant:?}");
        assert_eq!(
            gpus,
            vec![
                GpuInfo {
                    index: 0,
                    gpu_index: 0,
                    name: MI300X.into(),
                    uuid: "58ff74a1-0000-1000-8012-aaaaaaaaaaaa".into(),
                    memory_total_mib: 196592,
                    memory_used_mib: 10283,
                    processes: vec![
                        GpuProcess {
                            pid: sleeper.pid(),
                            used_mib: 10000,
                            user: Some(current_user()),
                        },
                        GpuProcess {
                            pid: NO_SUCH_AMD_PID,
                            used_mib: 200,
                            user: None,
                        },
                    ],
                    mig: None,
                    note: None,
                },
                // On another socket, after a CPU; without a UUID or a market name.
                GpuInfo {
                    index: 1,
                    gpu_index: 1,
                    name: "AMD GPU".into(),
                    uuid: String::new(),
                    memory_total_mib: 196592,
                    memory_used_mib: 0,
                    processes: vec![],
                    mig: None,
                    note: None,
                },
            ],
            "{variant:?}"
        );
    }
}

#[test]
fn amd_process_lists_that_change_or_fail_leave_the_rest() {
    // Many processes, and a GPU that will not list them.
    let mut config = format!("gpu U1 1000 900 {MI300X}\ngpu U2 1000 0 {MI300X}\nproc_error 1 10\n");
    for pid in 1..=30 {
        config.push_str(&format!("proc 0 {pid} 1\nproc 1 {pid} 1\n"));
    }
    let (_dir, library) = install_amd(AmdVariant::Current, &config);
    let (_, gpus) = devices(amd(&library));
    assert_eq!(gpus[0].processes.len(), 30);
    assert!(gpus[1].processes.is_empty());
    assert_eq!(gpus[0].memory_used_mib, 900);
}

#[test]
fn amd_failures_warn_and_say_what_to_do() {
    let cases = [
        ("init_error 34\n", "sudo modprobe amdgpu"),
        ("init_error 10\n", "/dev/kfd"),
        ("init_error 7\n", "status 7"),
        (
            "gpu A 100 0 X\ngpu B 100 0 Y\nmemory_error 1 2\n",
            "memory usage of GPU 1",
        ),
    ];
    for (config, says) in cases {
        let (_dir, library) = install_amd(AmdVariant::Current, config);
        let message = unavailable(amd(&library));
        assert!(message.contains(says), "{config:?}: {message}");
    }
    let (_dir, library) = install_amd(AmdVariant::NoShutdown, "gpu A 100 0 X\n");
    let message = unavailable(amd(&library));
    assert!(message.contains("amdsmi_shut_down"), "{message}");

    let dir = scratch();
    let fake = dir.path().join("libamd_smi.so");
    std::fs::write(&fake, "not an ELF file").expect("writing a fake library");
    let message = unavailable(amd(&fake));
    assert!(message.contains("cannot load"), "{message}");
    assert!(message.contains("amd-smi"), "{message}");
}

#[test]
fn a_missing_amd_library_is_silent() {
    let dir = scratch();
    assert_eq!(amd(&dir.path().join("libamd_smi.so")), Probe::NoLibrary);
    assert_eq!(amd(dir.path()), Probe::NoLibrary);
    let (dir, _) = install_amd(AmdVariant::Current, "gpu A 100 0 X\n");
    assert_eq!(
        devices(amd(dir.path())).1.len(),
        1,
        "a directory means the file in it"
    );
}

#[test]
fn amd_probes_repeat() {
    let (dir, library) = install_amd(AmdVariant::Current, "gpu A 100 0 First\n");
    assert_eq!(devices(amd(&library)).1[0].name, "First");
    amd_stub::write_config(dir.path(), "gpu A 100 0 Second\ngpu B 100 0 Third\n");
    let (_, gpus) = devices(amd(&library));
    assert_eq!((gpus.len(), gpus[1].name.as_str()), (2, "Third"));
}

#[test]
#[ignore = "real driver: needs an NVIDIA GPU and its libnvidia-ml.so.1"]
fn real_driver() {
    let outcome = probe(None);
    println!("{outcome:#?}");
    let (_, gpus) = devices(outcome);
    assert!(!gpus.is_empty(), "no GPUs reported");
    for gpu in &gpus {
        assert!(!gpu.name.is_empty(), "GPU {} has no name", gpu.index);
        assert!(gpu.memory_total_mib > 0, "GPU {} has no memory", gpu.index);
    }
}
