//! Probing against the stub NVML in tests/support/nvml_stub.c.
//!
//! Each test loads its own copy of the stub with its own config beside it,
//! so tests can run in parallel threads without sharing the stub's state or
//! touching the process environment.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use tempfile::TempDir;

use super::load::loader_found_nothing;
use super::stub::{self, Variant};
use super::{GpuInfo, GpuProcess, Probe, probe};

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
        Probe::Devices {
            driver_version,
            gpus,
        } => (driver_version, gpus),
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
    assert!(loader_found_nothing(
        "libnvidia-ml.so.1: cannot open shared object file: No such file or directory"
    ));
    assert!(loader_found_nothing(
        "Error loading shared library libnvidia-ml.so.1: No such file or directory"
    ));
    // Found, but broken: worth a warning.
    assert!(!loader_found_nothing(
        "libfoo.so.2: cannot open shared object file: No such file or directory"
    ));
    assert!(!loader_found_nothing(
        "libnvidia-ml.so.1: cannot open shared object file: Permission denied"
    ));
    assert!(!loader_found_nothing(
        "Error loading shared library libfoo.so.2: No such file or directory \
         (needed by /usr/lib/libnvidia-ml.so.1)"
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
