//! MIG instances end to end: with `mig = true`, each MIG instance the stub NVML reports
//! is a GPU of the pool, shown with its GPU and profile, and exported by its MIG UUID;
//! whole GPUs beside them keep their NVML index, which is no longer their pool id.

use crate::common;

use common::gpus::{NvmlStub, Sleeper, each_backend};
use common::{Backend, TestStore};

const A100: &str = "NVIDIA A100-SXM4-80GB";
const H100: &str = "NVIDIA H100 80GB HBM3";

/// GPU 0: an A100 in MIG mode with instances in MIG slots 0 and 2 (pool ids 0 and 1);
/// GPU 1: an H100 without MIG (pool id 2). `busy` puts a process on the second
/// instance.
fn host(busy: Option<u32>) -> String {
    let mut config = format!(
        "driver 550.54.15\n\
         gpu GPU-a100 81920 9000 {A100}\n\
         mig 0 1\n\
         mig_device 0 0 MIG-aaaa 9856 12 {A100} MIG 1g.10gb\n\
         mig_device 0 2 MIG-cccc 40192 8000 {A100} MIG 3g.40gb\n\
         gpu GPU-h100 81559 0 {H100}\n"
    );
    if let Some(pid) = busy {
        config.push_str(&format!("proc 0/2 {pid} 7900\n"));
    } else {
        config = config.replace("40192 8000", "40192 0");
    }
    config
}

fn with_mig(store: &TestStore, on: bool) {
    std::fs::write(store.config_path(), format!("mig = {on}\n")).unwrap();
}

const SHOW: &str = "echo \"$CUDA_VISIBLE_DEVICES|$NVIDIA_VISIBLE_DEVICES|$CUDA_DEVICE_ORDER\"";

#[test]
fn admin_counts_mig_instances_and_status_shows_where_they_are() {
    each_backend(|store| {
        with_mig(store, true);
        let stub = NvmlStub::new(&host(None));
        let out = stub.run(store, &["admin"]).ok();
        assert_eq!(
            out.stdout,
            "Detected 3 GPUs through NVML (driver 550.54.15), 2 of them MIG instances\n\
             Initialized 3 GPUs (IDs 0 to 2)\n"
        );
        assert_eq!(out.stderr, "");

        let status = stub.run(store, &["status"]).ok();
        assert_eq!(status.stderr, "");
        let ends = [
            format!(" — GPU 0/MIG 1g.10gb #0, {A100}, 12/9856 MiB"),
            format!(" — GPU 0/MIG 3g.40gb #2, {A100}, 0/40192 MiB"),
            format!(" — {H100}, 0/81559 MiB"),
        ];
        for (index, end) in ends.iter().enumerate() {
            let line = status.line(index);
            assert!(
                line.starts_with(&format!("GPU {index}: AVAILABLE")) && line.ends_with(end),
                "{line:?} should end with {end:?}"
            );
        }
        let verbose = stub.run(store, &["status", "--verbose"]).ok();
        assert!(
            verbose
                .stderr
                .contains("NVML: driver 550.54.15, 3 GPU(s), 2 of them MIG instances;"),
            "{}",
            verbose.stderr
        );

        let json = stub.run(store, &["status", "--json"]).ok();
        let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(
            json[1]["mig"],
            serde_json::json!({"gpu": 0, "gpu_uuid": "GPU-a100", "index": 2, "profile": "3g.40gb"})
        );
        assert_eq!(json[1]["nvml"]["uuid"], "MIG-cccc");
        assert_eq!(json[1]["vendor"], "nvidia");
        assert_eq!(json[2]["mig"], serde_json::Value::Null);
        assert_eq!(json[2]["nvml"]["uuid"], "GPU-h100");
    });
}

#[test]
fn mig_instances_are_handed_out_by_mig_uuid_and_whole_gpus_by_nvml_index() {
    each_backend(|store| {
        with_mig(store, true);
        let other = Sleeper::as_other_user();
        let stub = NvmlStub::new(&host(Some(other.pid())));
        stub.run(store, &["admin"]).ok();
        let status = stub.run(store, &["status"]).ok();
        assert!(
            status.line(1).starts_with(&format!(
                "GPU 1: IN USE WITHOUT RESERVATION by {} (pid {}, 7900 MiB) — GPU 0/MIG \
                 3g.40gb #2",
                other.user,
                other.pid()
            )),
            "{}",
            status.stdout
        );
        let show = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--", "sh", "-c", SHOW]);
            stub.run(store, &all).ok()
        };
        // Pool id 2 is NVML's GPU 1.
        let ran = show(&["run", "-G", "2"]);
        assert_eq!(ran.stdout, "1|1|PCI_BUS_ID\n");
        let ran = show(&["run", "-G", "0"]);
        assert_eq!(ran.stdout, "MIG-aaaa|MIG-aaaa|PCI_BUS_ID\n");
        assert!(ran.warnings().is_empty(), "{}", ran.stderr);
        // The busy instance is skipped: two GPUs are what is left.
        let ran = show(&["run", "--gpus", "2"]);
        assert_eq!(ran.stdout, "MIG-aaaa,1|MIG-aaaa,1|PCI_BUS_ID\n");
        let refused = stub.run(store, &["run", "--gpus", "3", "--", "true"]);
        assert_eq!(refused.code, Some(1), "{}", refused.stderr);

        // Forced, with two MIG instances: CUDA would show the program only one.
        let forced = show(&["run", "--force", "-G", "0,1"]);
        assert_eq!(
            forced.stdout,
            "MIG-aaaa,MIG-cccc|MIG-aaaa,MIG-cccc|PCI_BUS_ID\n"
        );
        let warnings = forced.warnings();
        assert_eq!(warnings.len(), 2, "{}", forced.stderr);
        assert!(
            warnings[0].contains("--force: GPU 1 is in use"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("at most one MIG instance"),
            "{warnings:?}"
        );

        let reserved = stub.run(store, &["reserve", "-G", "0"]).ok();
        assert_eq!(
            reserved.stdout,
            "export CUDA_VISIBLE_DEVICES=MIG-aaaa NVIDIA_VISIBLE_DEVICES=MIG-aaaa \
             CUDA_DEVICE_ORDER=PCI_BUS_ID\n"
        );
    });
}

#[test]
fn the_shell_integration_exports_mig_uuids() {
    let posix = r#"
INIT
canhazgpu reserve -G 0
echo "one=$CUDA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu reserve -G 2
echo "two=$CUDA_VISIBLE_DEVICES|$NVIDIA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu release --gpu-ids 0
echo "left=$CUDA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu release
echo "none=${CUDA_VISIBLE_DEVICES-unset}"
"#;
    let fish = r#"
INIT
canhazgpu reserve -G 0; or exit 1
echo "one=$CUDA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu reserve -G 2; or exit 1
echo "two=$CUDA_VISIBLE_DEVICES|$NVIDIA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu release --gpu-ids 0; or exit 1
echo "left=$CUDA_VISIBLE_DEVICES|$CANHAZGPU_GPUS"
canhazgpu release; or exit 1
set -q CUDA_VISIBLE_DEVICES; and echo "none=$CUDA_VISIBLE_DEVICES"; or echo none=unset
"#;
    for sh in common::shell::SHELLS {
        let store = TestStore::new(Backend::File);
        with_mig(&store, true);
        let stub = NvmlStub::new(&host(None));
        stub.run(&store, &["admin"]).ok();
        let run = stub
            .session(&store, sh, &common::shell::scripted(sh, posix, fish))
            .ok();
        let ctx = run.describe();
        assert_eq!(run.value("one"), "MIG-aaaa|0", "{sh:?}: {ctx}");
        assert_eq!(
            run.value("two"),
            "MIG-aaaa,1|MIG-aaaa,1|0,2",
            "{sh:?}: {ctx}"
        );
        assert_eq!(run.value("left"), "1|2", "{sh:?}: {ctx}");
        assert_eq!(run.value("none"), "unset", "{sh:?}: {ctx}");
    }
}

#[test]
fn a_mig_gpu_is_one_gpu_with_a_note_without_the_switch_or_without_instances() {
    let store = TestStore::new(Backend::File);
    let stub = NvmlStub::new(&host(None));
    let out = stub.run(&store, &["admin"]).ok();
    assert!(
        out.stdout
            .starts_with("Detected 2 GPUs through NVML (driver 550.54.15)\n"),
        "{}",
        out.stdout
    );
    let status = stub.run(&store, &["status"]).ok();
    assert!(
        status.line(0).ends_with(&format!(
            " — {A100}, 9000/81920 MiB — in MIG mode, reserved whole (the configuration has \
             no mig = true)"
        )),
        "{}",
        status.stdout
    );
    let json = stub.run(&store, &["status", "--json"]).ok();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(
        json[0]["nvml"]["note"]
            .as_str()
            .unwrap()
            .contains("MIG mode"),
        "{json}"
    );
    assert_eq!(json[1]["nvml"]["note"], serde_json::Value::Null);

    with_mig(&store, true);
    stub.set(&format!(
        "gpu GPU-a100 81920 0 {A100}\nmig 0 1\ngpu GPU-h100 81559 0 {H100}\n"
    ));
    let status = stub.run(&store, &["status"]).ok();
    assert!(
        status
            .line(0)
            .ends_with(" — in MIG mode without MIG instances: CUDA cannot use it"),
        "{}",
        status.stdout
    );
}

#[test]
fn with_mig_on_a_pool_gpu_nvml_cannot_name_is_never_handed_out() {
    let store = TestStore::new(Backend::File);
    with_mig(&store, true);
    let broken = NvmlStub::new("init_error 9\n");
    broken.run(&store, &["admin", "--gpus", "3"]).ok();
    let before = store.dump();
    let refused = broken.run(&store, &["reserve"]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    for part in ["driver is not loaded", "mig = true", "nothing was reserved"] {
        assert!(
            refused.stderr.contains(part),
            "{part:?} in {}",
            refused.stderr
        );
    }
    assert_eq!(store.dump(), before);
    // Reading still works.
    let status = broken.run(&store, &["status"]).ok();
    assert_eq!(status.warnings().len(), 1, "{}", status.stderr);

    // A pool larger than the host's units: the ids past them name nothing.
    let stub = NvmlStub::new(&host(None));
    stub.run(&store, &["admin", "--gpus", "4", "--force"]).ok();
    let refused = stub.run(&store, &["reserve", "-G", "3"]);
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert_eq!(refused.stdout, "");
    let ran = stub
        .run(&store, &["run", "--gpus", "3", "--", "sh", "-c", SHOW])
        .ok();
    assert_eq!(
        ran.stdout,
        "MIG-aaaa,MIG-cccc,1|MIG-aaaa,MIG-cccc,1|PCI_BUS_ID\n"
    );
}
