//! AMD GPUs end to end: the real binary loads the stub libamd_smi.so
//! (tests/support/amd_smi_stub.c) the way it loads AMD SMI on a ROCm host, and exports
//! ROCR_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES.

use crate::amd_smi_stub as amd;
use crate::common;

use std::path::Path;
use std::process::Command;

use common::gpus::{AmdStub, NvmlStub, Out, Sleeper, each_backend, without_gpu_libraries};
use common::gpus::{in_loader_cache, loader_searches};
use common::{Backend, TestStore};

const MI300X: &str = "AMD Instinct MI300X";

fn uuid(index: u32) -> String {
    format!("{index:08x}-0000-1000-8012-1a2b3c4d5e6f")
}

/// MI300Xs with the given MiB in use, then `extra` lines.
fn mi300xs(used: &[u64], extra: &str) -> String {
    let mut config = String::from("driver 6.10.5\n");
    for (index, used) in used.iter().enumerate() {
        config.push_str(&format!(
            "gpu {} 196592 {used} {MI300X}\n",
            uuid(index as u32)
        ));
    }
    config + extra
}

/// What a program started with the GPUs sees.
const SHOW: &str = "echo \"${ROCR_VISIBLE_DEVICES-unset}|${HIP_VISIBLE_DEVICES-unset}|\
                    ${CUDA_VISIBLE_DEVICES-unset}|${NVIDIA_VISIBLE_DEVICES-unset}|\
                    ${CUDA_DEVICE_ORDER-unset}\"";

#[test]
fn admin_counts_amd_gpus_and_status_shows_them() {
    each_backend(|store| {
        let other = Sleeper::as_other_user();
        let stub = AmdStub::new(&mi300xs(
            &[283, 10283],
            &format!("proc 1 {} 10000\n", other.pid()),
        ));
        let out = stub.run(store, &["admin"]).ok();
        assert_eq!(
            out.stdout,
            "Detected 2 GPUs through AMD SMI (driver 6.10.5)\nInitialized 2 GPUs (IDs 0 to 1)\n"
        );
        assert_eq!(out.stderr, "");

        let status = stub.run(store, &["status"]).ok();
        assert_eq!(status.stderr, "");
        assert!(
            status.line(0).starts_with("GPU 0: AVAILABLE (")
                && status
                    .line(0)
                    .ends_with(&format!(") — {MI300X}, 283/196592 MiB")),
            "{}",
            status.stdout
        );
        assert_eq!(
            status.line(1),
            format!(
                "GPU 1: IN USE WITHOUT RESERVATION by {} (pid {}, 10000 MiB) — {MI300X}, \
                 10283/196592 MiB",
                other.user,
                other.pid()
            )
        );

        let verbose = stub.run(store, &["status", "--verbose"]).ok();
        assert!(
            verbose.stderr.contains(
                "AMD SMI: driver 6.10.5, 2 GPU(s); in use without reservation above 1024 MiB"
            ),
            "{}",
            verbose.stderr
        );

        let json = stub.run(store, &["status", "--json"]).ok();
        let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(json[1]["state"], "in_use_without_reservation");
        assert_eq!(json[1]["vendor"], "amd");
        assert_eq!(json[1]["mig"], serde_json::Value::Null);
        assert_eq!(json[1]["nvml"]["name"], MI300X);
        assert_eq!(json[1]["nvml"]["uuid"], uuid(1));
        assert_eq!(json[1]["nvml"]["memory_used_mib"], 10283);
        assert_eq!(json[1]["nvml"]["processes"][0]["user"], other.user.as_str());
        assert_eq!(json[1]["nvml"]["processes"][0]["used_mib"], 10000);
    });
}

#[test]
fn busy_amd_gpus_are_skipped_unless_forced_and_rocr_names_the_rest() {
    each_backend(|store| {
        let other = Sleeper::as_other_user();
        let stub = AmdStub::new(&mi300xs(
            &[10283, 0, 0],
            &format!("proc 0 {} 10000\n", other.pid()),
        ));
        stub.run(store, &["admin"]).ok();
        let show = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--", "sh", "-c", SHOW]);
            stub.run(store, &all).ok()
        };
        // HIP counts within what ROCr shows: GPUs 1 and 2 are HIP's 0 and 1.
        let ran = show(&["run", "--gpus", "2"]);
        assert_eq!(ran.stdout, "1,2|0,1|0,1|unset|unset\n");
        assert!(ran.warnings().is_empty(), "{}", ran.stderr);

        let refused = stub.run(store, &["run", "--gpus", "3", "--", "true"]);
        assert_eq!(refused.code, Some(1), "{}", refused.stderr);
        assert!(
            refused
                .stderr
                .contains("GPU(s) [0] have no reservation but are in use"),
            "{}",
            refused.stderr
        );
        let forced = show(&["run", "--force", "--gpus", "3"]);
        assert_eq!(forced.stdout, "0,1,2|0,1,2|0,1,2|unset|unset\n");
        assert_eq!(
            forced.warnings(),
            [format!(
                "canhazgpu: warning: --force: GPU 0 is in use without a reservation, by {} \
                 (pid {}, 10000 MiB)",
                other.user,
                other.pid()
            )]
        );

        // Plain reserve: the export line, evaluated by a real shell.
        let reserved = stub.run(store, &["reserve", "-G", "2"]).ok();
        assert_eq!(
            reserved.stdout,
            "export ROCR_VISIBLE_DEVICES=2 HIP_VISIBLE_DEVICES=0 CUDA_VISIBLE_DEVICES=0\n"
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{}{SHOW}", reserved.stdout))
            .env_remove("CUDA_DEVICE_ORDER")
            .env_remove("NVIDIA_VISIBLE_DEVICES")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "2|0|0|unset|unset\n");
    });
}

#[test]
fn uuid_mode_on_amd_exports_indices_with_a_warning() {
    let store = TestStore::new(Backend::File);
    let stub = AmdStub::new(&mi300xs(&[0, 0], ""));
    stub.run(&store, &["admin"]).ok();
    std::fs::write(store.config_path(), "visible_devices = \"uuid\"\n").unwrap();
    let ran = stub
        .run(&store, &["run", "--gpus", "2", "--", "sh", "-c", SHOW])
        .ok();
    assert_eq!(ran.stdout, "0,1|0,1|0,1|unset|unset\n");
    assert_eq!(ran.warnings().len(), 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("rocminfo"), "{}", ran.stderr);
}

#[test]
fn the_shell_integration_exports_amd_gpus_and_restores_hip() {
    let posix = r#"
export HIP_VISIBLE_DEVICES=7
INIT
canhazgpu reserve --gpus 2
order=${CUDA_DEVICE_ORDER-unset}
echo "two=$ROCR_VISIBLE_DEVICES|$HIP_VISIBLE_DEVICES|$CUDA_VISIBLE_DEVICES|$order"
export HIP_VISIBLE_DEVICES=1
canhazgpu release --gpu-ids 1
echo "one=$ROCR_VISIBLE_DEVICES|$HIP_VISIBLE_DEVICES|$CUDA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu reserve -G 2
echo "again=$ROCR_VISIBLE_DEVICES|$HIP_VISIBLE_DEVICES|$CUDA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu release
echo "none=${ROCR_VISIBLE_DEVICES-unset}|$HIP_VISIBLE_DEVICES|${CUDA_VISIBLE_DEVICES-unset}"
"#;
    let fish = r#"
set -gx HIP_VISIBLE_DEVICES 7
INIT
canhazgpu reserve --gpus 2; or exit 1
set -q CUDA_DEVICE_ORDER; and set order $CUDA_DEVICE_ORDER; or set order unset
echo "two=$ROCR_VISIBLE_DEVICES|$HIP_VISIBLE_DEVICES|$CUDA_VISIBLE_DEVICES|$order"
set -gx HIP_VISIBLE_DEVICES 1
canhazgpu release --gpu-ids 1; or exit 1
echo "one=$ROCR_VISIBLE_DEVICES|$HIP_VISIBLE_DEVICES|$CUDA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu reserve -G 2; or exit 1
echo "again=$ROCR_VISIBLE_DEVICES|$HIP_VISIBLE_DEVICES|$CUDA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu release; or exit 1
set -q ROCR_VISIBLE_DEVICES; and set rocr $ROCR_VISIBLE_DEVICES; or set rocr unset
set -q CUDA_VISIBLE_DEVICES; and set cuda $CUDA_VISIBLE_DEVICES; or set cuda unset
echo "none=$rocr|$HIP_VISIBLE_DEVICES|$cuda"
"#;
    for sh in common::shell::SHELLS {
        let store = TestStore::new(Backend::File);
        let stub = AmdStub::new(&mi300xs(&[0, 0, 0], ""));
        stub.run(&store, &["admin"]).ok();
        let run = stub
            .session(&store, sh, &common::shell::scripted(sh, posix, fish))
            .ok();
        let ctx = run.describe();
        assert_eq!(run.value("two"), "0,1|0,1|0,1|unset", "{sh:?}: {ctx}");
        // GPU 1 ended: HIP's "1" meant GPU 1, which is gone; GPU 0 stays HIP's 0.
        assert_eq!(run.value("one"), "0||0|0", "{sh:?}: {ctx}");
        // A second reserve appends GPU 2, and HIP's (empty) selection grows with it.
        assert_eq!(run.value("again"), "0,2|1|0,1|0,2", "{sh:?}: {ctx}");
        assert_eq!(run.value("none"), "unset|7|unset", "{sh:?}: {ctx}");
    }
}

#[test]
fn both_vendors_are_refused_unless_the_config_picks_one() {
    let store = TestStore::new(Backend::File);
    let nvml_stub = NvmlStub::new(
        "gpu GPU-1 81559 0 NVIDIA H100 80GB HBM3\ngpu GPU-2 81559 0 NVIDIA H100 80GB HBM3\n",
    );
    let amd_stub = AmdStub::new(&mi300xs(&[0, 0, 0, 0], ""));
    let run = |args: &[&str]| {
        Out::of(
            amd_stub
                .with_nvml(&nvml_stub, &store)
                .args(args)
                .output()
                .unwrap(),
        )
    };

    let admin = run(&["admin"]);
    assert_eq!(admin.code, Some(2), "{}", admin.stderr);
    for part in [
        "2 through NVML, 4 through AMD SMI",
        "gpu_vendor = \"nvidia\"",
        "--gpus N",
    ] {
        assert!(admin.stderr.contains(part), "{part:?} in {}", admin.stderr);
    }
    assert_eq!(store.dump(), "<no state file>");
    run(&["admin", "--gpus", "4"]).ok();
    let status = run(&["status"]).ok();
    assert_eq!(status.warnings().len(), 1, "{}", status.stderr);
    assert!(
        status.stderr.contains("showing reservations only"),
        "{}",
        status.stderr
    );
    for args in [&["reserve"][..], &["run", "--", "true"]] {
        let refused = run(args);
        assert_eq!(refused.code, Some(1), "{args:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("gpu_vendor"), "{}", refused.stderr);
        assert!(
            refused.stderr.contains("nothing was reserved"),
            "{}",
            refused.stderr
        );
    }
    assert!(!store.status().contains("IN USE"), "{}", store.status());

    std::fs::write(store.config_path(), "gpu_vendor = \"amd\"\n").unwrap();
    let admin = run(&["admin", "--force"]).ok();
    assert!(
        admin.stdout.starts_with("Detected 4 GPUs through AMD SMI"),
        "{}",
        admin.stdout
    );
    let reserved = run(&["reserve"]).ok();
    assert!(
        reserved
            .stdout
            .starts_with("export ROCR_VISIBLE_DEVICES=0 "),
        "{}",
        reserved.stdout
    );
    // The other vendor's library is not even loaded.
    let traced = Out::of(
        amd_stub
            .with_nvml(&nvml_stub, &store)
            .env("LD_DEBUG", "files")
            .arg("status")
            .output()
            .unwrap(),
    );
    assert_eq!(loads(&traced.stderr, "libnvidia-ml.so.1"), 0);
    assert_eq!(loads(&traced.stderr, "libamd_smi.so"), 1);

    std::fs::write(store.config_path(), "gpu_vendor = \"nvidia\"\n").unwrap();
    let admin = run(&["admin", "--force"]).ok();
    assert!(
        admin.stdout.starts_with("Detected 2 GPUs through NVML"),
        "{}",
        admin.stdout
    );
    let reserved = run(&["reserve"]).ok();
    assert!(
        reserved
            .stdout
            .starts_with("export CUDA_VISIBLE_DEVICES=0 "),
        "{}",
        reserved.stdout
    );
}

/// Lines of glibc's LD_DEBUG=files trace saying `library` was dlopen'ed.
fn loads(stderr: &str, library: &str) -> usize {
    stderr
        .lines()
        .filter(|line| line.contains(library) && line.contains("dynamically loaded"))
        .count()
}

#[test]
fn a_broken_amd_library_warns_once_and_a_missing_one_is_silent() {
    let store = TestStore::new(Backend::File);
    store.admin(2);
    let cases = [
        (
            amd::Variant::Current,
            "init_error 34\n",
            "amdgpu driver is not loaded",
        ),
        (amd::Variant::Current, "init_error 10\n", "/dev/kfd"),
        (
            amd::Variant::NoShutdown,
            "gpu U 100 0 X\n",
            "amdsmi_shut_down",
        ),
    ];
    for (variant, config, says) in cases {
        let stub = AmdStub::of(variant, config);
        let status = stub.run(&store, &["status"]).ok();
        assert_eq!(status.warnings().len(), 1, "{}", status.stderr);
        assert!(status.stderr.contains(says), "{}", status.stderr);
        assert!(
            status.stderr.contains("showing reservations only"),
            "{}",
            status.stderr
        );
        assert!(!status.stdout.contains(" — "), "{}", status.stdout);
        let ran = stub.run(&store, &["run", "--", "true"]).ok();
        assert_eq!(ran.warnings().len(), 1, "{}", ran.stderr);
    }
    // Beside a working NVML, a broken AMD SMI is one warning and changes nothing.
    let nvml_stub = NvmlStub::new("gpu GPU-1 81559 0 NVIDIA H100 80GB HBM3\n");
    let broken = AmdStub::new("init_error 34\n");
    let status = Out::of(
        broken
            .with_nvml(&nvml_stub, &store)
            .arg("status")
            .output()
            .unwrap(),
    )
    .ok();
    assert_eq!(status.warnings().len(), 1, "{}", status.stderr);
    assert!(
        !status.stderr.contains("showing reservations only"),
        "{}",
        status.stderr
    );
    assert!(
        status
            .line(0)
            .ends_with(" — NVIDIA H100 80GB HBM3, 0/81559 MiB"),
        "{}",
        status.stdout
    );
    // No library at all: silent.
    let status = without_gpu_libraries(&store, &["status"]).ok();
    assert_eq!(status.stderr, "");
}

#[test]
fn amd_smi_library_path_from_flag_env_config() {
    let store = TestStore::new(Backend::File);
    store.admin(1);
    // Under target/ rather than /tmp, which some hosts mount noexec (dlopen refuses).
    let copies = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let copy = |name: &str| {
        let dir = copies.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        amd::install_stub(
            amd::Variant::Current,
            &dir,
            &format!("gpu U 100 0 {name}\n"),
        )
    };
    let (config, env, flag) = (copy("config"), copy("env"), copy("flag"));
    let empty = tempfile::tempdir().unwrap();
    let base = || {
        let mut cmd = store.std_cmd();
        cmd.env("LD_LIBRARY_PATH", empty.path())
            .env_remove(amd::CONFIG_ENV);
        cmd
    };
    let seen = |cmd: &mut Command| {
        let out = Out::of(cmd.arg("status").output().unwrap()).ok();
        out.line(0).rsplit(" — ").next().unwrap_or("").to_string()
    };
    let dir_of = |file: &Path| file.parent().unwrap().display().to_string();
    std::fs::write(
        store.config_path(),
        format!("amd_smi_library = \"{}\"\n", dir_of(&config)),
    )
    .unwrap();
    assert_eq!(seen(&mut base()), "config, 0/100 MiB");
    let with_env = || {
        let mut cmd = base();
        cmd.env("CANHAZGPU_AMD_SMI_LIBRARY", &env);
        cmd
    };
    assert_eq!(seen(&mut with_env()), "env, 0/100 MiB");
    let mut with_flag = with_env();
    with_flag.arg("status").arg("--amd-smi-library").arg(&flag);
    let out = Out::of(with_flag.output().unwrap()).ok();
    assert!(
        out.line(0).ends_with(" — flag, 0/100 MiB"),
        "{}",
        out.stdout
    );

    let mut wrong = base();
    wrong.args(["status", "--amd-smi-library", "/nonexistent/libamd_smi.so"]);
    let out = Out::of(wrong.output().unwrap()).ok();
    assert_eq!(out.warnings().len(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no AMD SMI library at /nonexistent/libamd_smi.so"),
        "{}",
        out.stderr
    );
}

#[test]
fn without_amd_smi_status_does_not_walk_the_loader_path() {
    if in_loader_cache(amd::LIBRARY_NAME) {
        common::skip(
            "without_amd_smi_status_does_not_walk_the_loader_path",
            "this host has AMD SMI in the loader cache",
        );
        return;
    }
    let store = TestStore::new(Backend::File);
    store.admin(1);
    assert_eq!(
        loader_searches(&store, None, amd::LIBRARY_NAME),
        0,
        "the cache says no library: no search"
    );
    // Positive control: with LD_LIBRARY_PATH the loader is asked, since only it knows.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        loader_searches(&store, Some(empty.path()), amd::LIBRARY_NAME),
        1
    );
}
