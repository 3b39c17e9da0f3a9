//! GPU truth through NVML, end to end: the real binary loads the stub
//! libnvidia-ml.so.1 (tests/support/nvml_stub.c) through its normal loading path,
//! so nvml-wrapper's real code runs.

use crate::common;
use crate::nvml_stub as nvml;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::gpus::without_gpu_libraries as without_nvml;
use common::gpus::{NO_SUCH_PID, NvmlStub as Stub, Out, Sleeper, each_backend, is_root, me};
use common::gpus::{in_loader_cache, loader_searches};
use common::{Backend, TestStore, wait_for};
use nvml::{CONFIG_ENV, Variant};
use tempfile::TempDir;

const H100: &str = "NVIDIA H100 80GB HBM3";
fn uuid(index: u32) -> String {
    format!("GPU-{index:08x}-1111-2222-3333-444444444444")
}

/// Stub configuration: H100s with the given MiB in use, then `extra` lines.
fn h100s(used: &[u64], extra: &str) -> String {
    let mut config = String::from("driver 550.54.15\n");
    for (index, used) in used.iter().enumerate() {
        config.push_str(&format!("gpu {} 81559 {used} {H100}\n", uuid(index as u32)));
    }
    config + extra
}

#[test]
fn admin_counts_the_gpus_through_nvml() {
    each_backend(|store| {
        let stub = Stub::new(&h100s(&[0, 0, 0], ""));
        let out = stub.run(store, &["admin"]).ok();
        assert_eq!(
            out.stdout,
            "Detected 3 GPUs through NVML (driver 550.54.15)\nInitialized 3 GPUs (IDs 0 to 2)\n"
        );
        assert_eq!(out.stderr, "");
        assert_eq!(stub.run(store, &["status"]).ok().stdout.lines().count(), 3);

        let again = stub.run(store, &["admin"]);
        assert_eq!(again.code, Some(1));
        assert!(
            again.stderr.contains("`canhazgpu admin --force`"),
            "{}",
            again.stderr
        );

        // An admin may hold GPUs back: warned, done.
        let fewer = stub.run(store, &["admin", "--gpus", "2", "--force"]).ok();
        assert_eq!(
            fewer.warnings(),
            ["canhazgpu: warning: NVML reports 3 GPUs but --gpus is 2, \
                 so the pool leaves out GPU 2"]
        );
        assert!(
            fewer.stdout.contains("Reinitialized 2 GPUs"),
            "{}",
            fewer.stdout
        );

        let more = stub.run(store, &["admin", "--gpus", "5", "--force"]).ok();
        assert_eq!(more.warnings().len(), 1, "{}", more.stderr);
        assert!(
            more.stderr
                .contains("NVML reports only 3 GPU(s): the driver knows no GPUs 3 to 4"),
            "{}",
            more.stderr
        );
        let status = stub.run(store, &["status"]).ok();
        assert!(
            status.line(4).ends_with(" — not reported by NVML"),
            "{}",
            status.stdout
        );
    });
}

#[test]
fn admin_without_nvml_asks_for_the_pool_size() {
    let store = TestStore::new(Backend::File);
    let out = without_nvml(&store, &["admin"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("neither NVIDIA's libnvidia-ml.so.1 nor AMD's libamd_smi.so"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--gpus N"), "{}", out.stderr);

    let broken = Stub::new("init_error 9\n");
    let out = broken.run(&store, &["admin"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("driver is not loaded"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--gpus N"), "{}", out.stderr);

    let empty = Stub::new("");
    let out = empty.run(&store, &["admin"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("NVML reports no GPUs"),
        "{}",
        out.stderr
    );
    assert_eq!(store.dump(), "<no state file>", "a failed admin wrote");

    let out = broken.run(&store, &["admin", "--gpus", "2"]).ok();
    assert_eq!(out.warnings().len(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot check --gpus 2"),
        "{}",
        out.stderr
    );
}

#[test]
fn status_shows_model_and_memory() {
    each_backend(|store| {
        let config = format!(
            "driver 550.54.15\ngpu {} 81559 900 {H100}\ngpu {} 24576 0 NVIDIA A10\n",
            uuid(0),
            uuid(1)
        );
        let stub = Stub::new(&config);
        stub.run(store, &["admin"]).ok();
        stub.run(store, &["reserve"]).ok();
        let out = stub.run(store, &["status"]).ok();
        assert_eq!(out.stderr, "");
        let reserved = out.line(0);
        assert!(
            reserved.starts_with(&format!("GPU 0: IN USE by {} for ", me())),
            "{reserved}"
        );
        assert!(
            reserved.ends_with(&format!(
                "(manual, expires in 7h 59m 59s) — {H100}, 900/81559 MiB"
            )) || reserved.ends_with(&format!(
                "(manual, expires in 8h 0m 0s) — {H100}, 900/81559 MiB"
            )),
            "{reserved}"
        );
        let free = out.line(1);
        assert!(free.starts_with("GPU 1: AVAILABLE ("), "{free}");
        assert!(free.ends_with(") — NVIDIA A10, 0/24576 MiB"), "{free}");

        let verbose = stub.run(store, &["status", "--verbose"]).ok();
        assert!(
            verbose.stderr.contains(
                "NVML: driver 550.54.15, 2 GPU(s); in use without reservation above 1024 MiB"
            ),
            "{}",
            verbose.stderr
        );
    });
}

#[test]
fn use_without_reservation_is_shown_and_not_handed_out() {
    each_backend(|store| {
        let other = Sleeper::as_other_user();
        let stub = Stub::new(&h100s(
            &[10300, 0, 0],
            &format!("proc 0 {} 10240\n", other.pid()),
        ));
        stub.run(store, &["admin"]).ok();

        let status = stub.run(store, &["status"]).ok();
        assert_eq!(
            status.line(0),
            format!(
                "GPU 0: IN USE WITHOUT RESERVATION by {} (pid {}, 10240 MiB) \
                 — {H100}, 10300/81559 MiB",
                other.user,
                other.pid()
            )
        );
        assert!(
            status.line(1).starts_with("GPU 1: AVAILABLE"),
            "{}",
            status.stdout
        );

        // LRU alone would pick GPU 0.
        let reserved = stub.run(store, &["reserve"]).ok();
        assert!(
            reserved
                .stdout
                .starts_with("export CUDA_VISIBLE_DEVICES=1 "),
            "{}",
            reserved.stdout
        );

        let before = store.dump();
        let refused = stub.run(store, &["run", "--gpus", "2", "--", "true"]);
        assert_eq!(refused.code, Some(1), "{}", refused.stderr);
        for part in [
            "Not enough GPUs available: requested 2, 1 available of 3",
            "GPU(s) [0] have no reservation but are in use",
            "canhazgpu status",
            "--force",
        ] {
            assert!(
                refused.stderr.contains(part),
                "{part:?} in {}",
                refused.stderr
            );
        }
        assert_eq!(store.dump(), before, "a refused run changed the pool");

        let ran = stub
            .run(
                store,
                &["run", "--", "sh", "-c", "echo $CUDA_VISIBLE_DEVICES"],
            )
            .ok();
        assert_eq!(ran.stdout, "2\n");
    });
}

#[test]
fn waiting_counts_and_hints_leave_out_gpus_busy_outside_the_tool() {
    let store = TestStore::new(Backend::File);
    let other = Sleeper::as_other_user();
    // GPU 0 is busy without a reservation, GPU 1 will be reserved, GPU 2 is free.
    let stub = Stub::new(&h100s(
        &[10300, 0, 0],
        &format!("proc 0 {} 10240\n", other.pid()),
    ));
    stub.run(&store, &["admin"]).ok();
    stub.run(&store, &["reserve", "-G", "1"]).ok();

    // Waiting can help (GPU 1 comes back): the hint and the waiting line count GPU 0 out.
    let refused = stub.run(&store, &["reserve", "--gpus", "2"]);
    assert!(refused.stderr.contains("add --wait"), "{}", refused.stderr);
    let waited = stub.run(&store, &["reserve", "--gpus", "2", "--wait=300ms"]);
    assert!(
        waited
            .stderr
            .contains("position 1 of 1 in the queue, 1 of 3 GPUs free (Ctrl-C to give up)"),
        "{}",
        waited.stderr
    );

    // Waiting cannot help: only --force (or the other user) frees GPU 0.
    for args in [
        &["reserve", "--gpus", "3"][..],
        &["reserve", "--gpus", "3", "--wait=30s"],
        &["reserve", "-G", "0"],
        &["reserve", "-G", "0,1", "--wait=30s"],
    ] {
        let refused = stub.run(&store, args);
        assert_eq!(refused.code, Some(1), "{args:?}: {}", refused.stderr);
        assert!(
            refused.stderr.contains("--force"),
            "{args:?}: {}",
            refused.stderr
        );
        assert!(
            !refused.stderr.contains("--wait") && !refused.stderr.contains("gave up"),
            "{args:?}: {}",
            refused.stderr
        );
    }
}

#[test]
fn a_waiter_gets_a_gpu_its_holder_was_using_once_released() {
    let store = TestStore::new(Backend::File);
    let holder = Sleeper::as_me();
    // The holder's job uses GPU 0 when the waiter asks NVML.
    let stub = Stub::new(&h100s(
        &[10300],
        &format!("proc 0 {} 10240\n", holder.pid()),
    ));
    stub.run(&store, &["admin"]).ok();
    stub.run(&store, &["reserve", "--force"]).ok();
    let waiter = stub
        .command(&store)
        .args(["reserve", "--wait=30s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(20), "the waiter to queue", || {
        let queue = stub.run(&store, &["queue"]).ok();
        queue.stdout.starts_with("1. ").then_some(())
    });
    // The job ends and the holder releases: what the waiter saw is stale now.
    drop(holder);
    stub.set(&h100s(&[0], ""));
    stub.run(&store, &["release"]).ok();
    let out = Out::of(waiter.wait_with_output().unwrap());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("Reserved 1 GPU(s) [0]"),
        "{}",
        out.stderr
    );
}

#[test]
fn force_hands_out_gpus_in_use() {
    each_backend(|store| {
        let other = Sleeper::as_other_user();
        let stub = Stub::new(&h100s(
            &[10300, 0],
            &format!("proc 0 {} 10240\n", other.pid()),
        ));
        stub.run(store, &["admin"]).ok();
        let script = "echo $CUDA_VISIBLE_DEVICES";
        let ran = stub
            .run(
                store,
                &["run", "--force", "--gpus", "2", "--", "sh", "-c", script],
            )
            .ok();
        assert_eq!(ran.stdout, "0,1\n");
        assert_eq!(
            ran.warnings(),
            [format!(
                "canhazgpu: warning: --force: GPU 0 is in use without a reservation, \
                 by {} (pid {}, 10240 MiB)",
                other.user,
                other.pid()
            )]
        );
        let reserved = stub.run(store, &["reserve", "--force", "--gpus", "2"]).ok();
        assert!(
            reserved
                .stdout
                .starts_with("export CUDA_VISIBLE_DEVICES=0,1 "),
            "{}",
            reserved.stdout
        );
    });
}

#[test]
fn foreign_use_of_a_reserved_gpu_is_flagged() {
    if !is_root() {
        common::skip(
            "foreign_use_of_a_reserved_gpu_is_flagged",
            "needs root to run a process as another user",
        );
        return;
    }
    each_backend(|store| {
        let stub = Stub::new(&h100s(&[0, 0], ""));
        stub.run(store, &["admin"]).ok();
        stub.run(store, &["reserve", "--gpus", "2"]).ok();

        let mine = Sleeper::as_me();
        let other = Sleeper::as_other_user();
        stub.set(&h100s(
            &[2000, 5000],
            &format!(
                "proc 0 {mine} 2000\nproc 0 {NO_SUCH_PID} 10\nproc 1 {mine} 2000\n\
                 proc 1 {other} 3000\n",
                mine = mine.pid(),
                other = other.pid()
            ),
        ));
        let status = stub.run(store, &["status"]).ok();
        let own = status.line(0);
        assert!(
            own.starts_with(&format!("GPU 0: IN USE by {}", me())),
            "{own}"
        );
        // Our own process, and one whose owner cannot be seen, are no alarm.
        assert!(!own.contains("WARNING"), "{own}");
        let shared = status.line(1);
        assert!(
            shared.starts_with(&format!("GPU 1: IN USE by {}", me())),
            "{shared}"
        );
        assert!(
            shared.ends_with(&format!(
                " — {H100}, 5000/81559 MiB — WARNING: also used by {} (pid {}, 3000 MiB)",
                other.user,
                other.pid()
            )),
            "{shared}"
        );
    });
}

#[test]
fn memory_threshold_from_flag_and_config() {
    let store = TestStore::new(Backend::File);
    let mine = Sleeper::as_me();
    let stub = Stub::new(&h100s(&[600, 0], &format!("proc 0 {} 600\n", mine.pid())));
    stub.run(&store, &["admin"]).ok();
    let gpu0 = |args: &[&str]| stub.run(&store, args).ok().line(0).to_string();

    assert!(gpu0(&["status"]).starts_with("GPU 0: AVAILABLE"));
    let busy = "GPU 0: IN USE WITHOUT RESERVATION by";
    assert!(gpu0(&["status", "--memory-threshold", "500"]).starts_with(busy));
    // More than the threshold, not as much.
    assert!(gpu0(&["status", "--memory-threshold", "600"]).starts_with("GPU 0: AVAILABLE"));

    std::fs::write(store.config_path(), "memory_threshold = 500\n").unwrap();
    assert!(gpu0(&["status"]).starts_with(busy));
    assert!(gpu0(&["status", "--memory-threshold", "1000"]).starts_with("GPU 0: AVAILABLE"));

    let reserved = stub.run(&store, &["reserve"]).ok();
    assert!(
        reserved
            .stdout
            .starts_with("export CUDA_VISIBLE_DEVICES=1 "),
        "{}",
        reserved.stdout
    );
    let reserved = stub
        .run(&store, &["reserve", "--memory-threshold", "600"])
        .ok();
    assert!(
        reserved
            .stdout
            .starts_with("export CUDA_VISIBLE_DEVICES=0 "),
        "{}",
        reserved.stdout
    );
}

#[test]
fn a_broken_driver_warns_once_and_the_tool_still_works() {
    each_backend(|store| {
        let stub = Stub::new("init_error 9\ngpu GPU-1 100 0 X\n");
        let admin = stub.run(store, &["admin", "--gpus", "2"]).ok();
        assert_eq!(admin.warnings().len(), 1, "{}", admin.stderr);

        let status = stub.run(store, &["status"]).ok();
        assert_eq!(status.stderr.lines().count(), 1, "{}", status.stderr);
        assert!(
            status
                .stderr
                .starts_with("canhazgpu: warning: the NVIDIA driver is not loaded"),
            "{}",
            status.stderr
        );
        assert!(status.stderr.contains("showing reservations only"));
        assert_eq!(status.stdout.lines().count(), 2);
        assert!(!status.stdout.contains(" — "), "{}", status.stdout);

        for args in [&["reserve"][..], &["run", "--", "true"]] {
            let out = stub.run(store, args).ok();
            assert_eq!(out.warnings().len(), 1, "{args:?}: {}", out.stderr);
            assert!(
                out.stderr
                    .contains("GPUs in use without a reservation cannot be detected"),
                "{}",
                out.stderr
            );
        }
    });
}

#[test]
fn unusable_libraries_warn_once() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let cases = [
        (Variant::Current, "init_error 4\n", "permission"),
        (Variant::NoShutdown, "gpu GPU-1 100 0 X\n", "nvmlShutdown"),
    ];
    for (variant, config, says) in cases {
        let out = Stub::of(variant, config).run(&store, &["status"]).ok();
        assert_eq!(out.warnings().len(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(says), "{}", out.stderr);
        assert!(out.stdout.starts_with("GPU 0: AVAILABLE"), "{}", out.stdout);
    }
}

#[test]
fn a_missing_library_is_silent() {
    each_backend(|store| {
        without_nvml(store, &["admin", "--gpus", "2"]).ok();
        let status = without_nvml(store, &["status"]).ok();
        assert_eq!(status.stderr, "");
        assert!(!status.stdout.contains(" — "), "{}", status.stdout);
        let reserved = without_nvml(store, &["reserve"]).ok();
        assert!(reserved.warnings().is_empty(), "{}", reserved.stderr);
        let ran = without_nvml(store, &["run", "--", "true"]).ok();
        assert_eq!(ran.stderr, "canhazgpu: running on GPU(s) [1]\n");
    });
}

#[test]
fn drivers_without_the_v3_process_query_fall_back_to_v2() {
    let other = Sleeper::as_other_user();
    for variant in [Variant::NoV3, Variant::R470] {
        let store = TestStore::new(Backend::File);
        let stub = Stub::of(
            variant,
            &h100s(&[5000, 0], &format!("proc 0 {} 5000\n", other.pid())),
        );
        stub.run(&store, &["admin"]).ok();
        let status = stub.run(&store, &["status"]).ok();
        assert_eq!(status.stderr, "", "{variant:?}");
        assert!(
            status.line(0).starts_with(&format!(
                "GPU 0: IN USE WITHOUT RESERVATION by {} (pid {}, 5000 MiB) \
                 — {H100}, 5000/81559 MiB",
                other.user,
                other.pid()
            )),
            "{variant:?}: {}",
            status.stdout
        );
        let reserved = stub.run(&store, &["reserve"]).ok();
        assert!(
            reserved
                .stdout
                .starts_with("export CUDA_VISIBLE_DEVICES=1 "),
            "{variant:?}: {}",
            reserved.stdout
        );
    }
}

#[test]
fn uuid_mode_exports_gpu_uuids() {
    each_backend(|store| {
        let stub = Stub::new(&h100s(&[0, 0], ""));
        stub.run(store, &["admin"]).ok();
        let script = "echo \"$CUDA_VISIBLE_DEVICES|$NVIDIA_VISIBLE_DEVICES|$CUDA_DEVICE_ORDER\"";
        let ran = stub
            .run(
                store,
                &["run", "--visible-devices", "uuid", "--", "sh", "-c", script],
            )
            .ok();
        assert_eq!(ran.stdout, format!("{0}|{0}|PCI_BUS_ID\n", uuid(0)));

        std::fs::write(store.config_path(), "visible_devices = \"uuid\"\n").unwrap();
        let reserved = stub.run(store, &["reserve", "--gpus", "2"]).ok();
        let both = format!("{},{}", uuid(0), uuid(1));
        assert_eq!(
            reserved.stdout,
            format!(
                "export CUDA_VISIBLE_DEVICES={both} NVIDIA_VISIBLE_DEVICES={both} \
                 CUDA_DEVICE_ORDER=PCI_BUS_ID\n"
            )
        );
        stub.run(store, &["release"]).ok();

        // The flag beats the config.
        let ran = stub
            .run(
                store,
                &[
                    "run",
                    "--visible-devices",
                    "index",
                    "--",
                    "sh",
                    "-c",
                    script,
                ],
            )
            .ok();
        assert_eq!(ran.stdout, "0|0|PCI_BUS_ID\n");

        // Without NVML there are no UUIDs: indices, and a warning saying so.
        let ran = without_nvml(store, &["run", "--", "sh", "-c", script]).ok();
        let index = ran.stdout.split('|').next().unwrap_or_default();
        assert!(index == "0" || index == "1", "{}", ran.stdout);
        assert_eq!(ran.stdout, format!("{index}|{index}|PCI_BUS_ID\n"));
        assert_eq!(ran.warnings().len(), 1, "{}", ran.stderr);
        assert!(ran.stderr.contains("need NVML"), "{}", ran.stderr);
    });
}

#[test]
fn run_and_reserve_export_nvidia_visible_devices() {
    each_backend(|store| {
        without_nvml(store, &["admin", "--gpus", "3"]).ok();
        let script = "echo \"$CUDA_VISIBLE_DEVICES|$NVIDIA_VISIBLE_DEVICES|$CUDA_DEVICE_ORDER\"";
        let ran = without_nvml(store, &["run", "--gpus", "2", "--", "sh", "-c", script]).ok();
        assert_eq!(ran.stdout, "0,1|0,1|PCI_BUS_ID\n");
        // The export line, evaluated by a real shell.
        let reserved = without_nvml(store, &["reserve"]).ok();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{}\n{script}", reserved.stdout))
            .env_remove("CUDA_DEVICE_ORDER")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "2|2|PCI_BUS_ID\n");
    });
}

/// Lines of glibc's LD_DEBUG=files trace saying libnvidia-ml.so.1 was dlopen'ed.
fn nvml_loads(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|line| line.contains("libnvidia-ml.so.1") && line.contains("dynamically loaded"))
        .count()
}

#[test]
fn release_never_loads_nvml() {
    each_backend(|store| {
        // Loading this stub would warn; tracing the loader shows even a silent load.
        let stub = Stub::new("init_error 9\n");
        stub.run(store, &["admin", "--gpus", "2"]).ok();
        stub.run(store, &["reserve"]).ok();
        let traced = |args: &[&str]| {
            Out::of(
                stub.command(store)
                    .env(
                        "CANHAZGPU_NVML_LIBRARY",
                        nvml::stub_library_dir(Variant::Current),
                    )
                    .env("LD_DEBUG", "files")
                    .args(args)
                    .output()
                    .unwrap(),
            )
            .ok()
        };
        let release = traced(&["release"]);
        assert!(
            release.stdout.contains("Released 1 GPU(s)"),
            "{}",
            release.stdout
        );
        assert_eq!(nvml_loads(&release.stderr), 0, "{}", release.stderr);
        assert!(release.warnings().is_empty(), "{}", release.stderr);
        // The tracing works: status does load it.
        assert_eq!(nvml_loads(&traced(&["status"]).stderr), 1);
    });
}

#[test]
fn each_command_loads_nvml_once() {
    let store = TestStore::new(Backend::File);
    let stub = Stub::new(&h100s(&[0, 0], ""));
    let traced = |args: &[&str]| {
        let out = stub
            .command(&store)
            .env("LD_DEBUG", "files")
            .args(args)
            .output()
            .unwrap();
        Out::of(out).ok()
    };
    for args in [
        &["admin"][..],
        &["status"],
        &["reserve"],
        &["run", "--", "true"],
    ] {
        assert_eq!(nvml_loads(&traced(args).stderr), 1, "{args:?}");
    }
}

/// A private copy of the stub with its configuration beside it, naming its one GPU.
fn stub_copy(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    nvml::install_stub(Variant::Current, &dir, &format!("gpu GPU-1 100 0 {name}\n"))
}

#[test]
fn library_path_precedence_flag_env_config_loader() {
    // Under target/ rather than /tmp, which some hosts mount noexec (dlopen refuses).
    let copies = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let loader = stub_copy(copies.path(), "loader");
    let config = stub_copy(copies.path(), "config");
    let env = stub_copy(copies.path(), "env");
    let flag = stub_copy(copies.path(), "flag");
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let name_seen = |cmd: &mut Command| {
        let out = Out::of(cmd.arg("status").output().unwrap()).ok();
        let line = out.line(0).to_string();
        line.rsplit(" — ").next().unwrap_or("").to_string()
    };
    let base = || {
        let mut cmd = store.std_cmd();
        cmd.env("LD_LIBRARY_PATH", loader.parent().unwrap())
            .env_remove(CONFIG_ENV);
        cmd
    };
    assert_eq!(name_seen(&mut base()), "loader, 0/100 MiB");

    std::fs::write(
        store.config_path(),
        format!(
            "nvml_library = \"{}\"\n",
            config.parent().unwrap().display()
        ),
    )
    .unwrap();
    assert_eq!(name_seen(&mut base()), "config, 0/100 MiB");

    let with_env = || {
        let mut cmd = base();
        cmd.env("CANHAZGPU_NVML_LIBRARY", &env);
        cmd
    };
    assert_eq!(name_seen(&mut with_env()), "env, 0/100 MiB");
    let mut with_flag = with_env();
    with_flag.arg("status").arg("--nvml-library").arg(&flag);
    let out = Out::of(with_flag.output().unwrap()).ok();
    assert!(
        out.line(0).ends_with(" — flag, 0/100 MiB"),
        "{}",
        out.stdout
    );

    // A path someone set but got wrong is not the silent "no NVIDIA here".
    let mut wrong = base();
    wrong.args(["status", "--nvml-library", "/nonexistent/libnvidia-ml.so.1"]);
    let out = Out::of(wrong.output().unwrap()).ok();
    assert_eq!(out.warnings().len(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no NVML library at /nonexistent/libnvidia-ml.so.1"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_nvml_settings_are_explained() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    let out = Out::of(
        store
            .std_cmd()
            .args(["status", "--memory-threshold", "lots"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("lots"), "{}", out.stderr);
    let out = Out::of(
        store
            .std_cmd()
            .args(["run", "--visible-devices", "serial", "--", "true"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("index, uuid"), "{}", out.stderr);
    for (config, says) in [
        ("memory_threshold = \"1G\"", "whole number of MiB"),
        ("nvml_library = \"lib\"", "absolute path"),
        ("visible_devices = \"serial\"", "\"index\" or \"uuid\""),
    ] {
        std::fs::write(store.config_path(), config).unwrap();
        let out = Out::of(store.std_cmd().arg("status").output().unwrap());
        assert_eq!(out.code, Some(1), "{config}");
        assert!(out.stderr.contains(says), "{config}: {}", out.stderr);
    }
}

#[test]
fn without_the_library_status_does_not_walk_the_loader_path() {
    if in_loader_cache(nvml::LIBRARY_NAME) {
        common::skip(
            "without_the_library_status_does_not_walk_the_loader_path",
            "this host has an NVIDIA library in the loader cache",
        );
        return;
    }
    let store = TestStore::new(Backend::File);
    store.admin(1);
    assert_eq!(
        loader_searches(&store, None, nvml::LIBRARY_NAME),
        0,
        "the cache says no library: no search"
    );
    // Positive control: with LD_LIBRARY_PATH the loader is asked, since only it knows.
    let empty = TempDir::new().unwrap();
    assert_eq!(
        loader_searches(&store, Some(empty.path()), nvml::LIBRARY_NAME),
        1
    );
}

#[test]
fn the_shell_integration_exports_uuids_like_run() {
    let posix = r#"
INIT
canhazgpu reserve
echo "one=$CUDA_VISIBLE_DEVICES|$NVIDIA_VISIBLE_DEVICES|$CANHAZGPU_GPUS|$CUDA_DEVICE_ORDER"
canhazgpu reserve --gpus 2
echo "three=$CUDA_VISIBLE_DEVICES"
canhazgpu release --gpu-ids 1
echo "two=$CUDA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu release
echo "none=${CUDA_VISIBLE_DEVICES-unset}"
"#;
    let fish = r#"
INIT
canhazgpu reserve; or exit 1
echo "one=$CUDA_VISIBLE_DEVICES|$NVIDIA_VISIBLE_DEVICES|$CANHAZGPU_GPUS|$CUDA_DEVICE_ORDER"
canhazgpu reserve --gpus 2; or exit 1
echo "three=$CUDA_VISIBLE_DEVICES"
canhazgpu release --gpu-ids 1; or exit 1
echo "two=$CUDA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu release; or exit 1
set -q CUDA_VISIBLE_DEVICES; and echo "none=$CUDA_VISIBLE_DEVICES"; or echo none=unset
"#;
    for sh in common::shell::SHELLS {
        let store = TestStore::new(Backend::File);
        let stub = Stub::new(&h100s(&[0, 0, 0], ""));
        stub.run(&store, &["admin"]).ok();
        std::fs::write(store.config_path(), "visible_devices = \"uuid\"\n").unwrap();
        let run = stub
            .session(&store, sh, &common::shell::scripted(sh, posix, fish))
            .ok();
        let ctx = run.describe();
        let (u0, u1, u2) = (uuid(0), uuid(1), uuid(2));
        assert_eq!(
            run.value("one"),
            format!("{u0}|{u0}|0|PCI_BUS_ID"),
            "{sh:?}: {ctx}"
        );
        assert_eq!(
            run.value("three"),
            format!("{u0},{u1},{u2}"),
            "{sh:?}: {ctx}"
        );
        assert_eq!(run.value("two"), format!("{u0},{u2}|0,2"), "{sh:?}: {ctx}");
        assert_eq!(run.value("none"), "unset", "{sh:?}: {ctx}");
    }
}
