#!/usr/bin/env bash
# What NVML costs `canhazgpu status`: the stub libnvidia-ml.so.1 reporting 8 GPUs and
# 16 processes, against status without NVML, on an embedded store in a temp dir.
# On a host with a real NVIDIA driver it also times status against that driver.
#
# Usage: bench/nvml.sh [BINARY] [hyperfine options...]
#   BINARY defaults to target/release/canhazgpu (built, or rebuilt when out of date).
# Needs hyperfine and a C compiler ($CC, default gcc).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need hyperfine
bench_setup "$@"

build_stub nvml_stub.c libnvidia-ml.so.1
start_sleepers 16
{
    echo "driver 550.54.15"
    # Two processes per GPU; GPUs 0 to 3 busy (in use without reservation).
    for gpu in $(seq 0 7); do
        echo "gpu GPU-0000000$gpu-1111-2222-3333-444444444444 81559 $((gpu < 4 ? 8192 : 200)) NVIDIA H100 80GB HBM3"
    done
    for i in $(seq 0 15); do
        gpu=$((i % 8))
        echo "proc $gpu ${sleepers[$i]} $((gpu < 4 ? 4096 : 100))"
    done
} >"$stub/nvml_stub.conf"
stub_store --nvml-library

commands=()
if ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml\.so\.1 '; then
    # A real driver is on the loader path: keep it out of the baseline by naming
    # a library that does not exist (one warning, discarded by hyperfine).
    commands+=(-n "status, no NVML" "$bin status --nvml-library $work/none")
    commands+=(-n "status, real driver" "$bin status")
else
    commands+=(-n "status, no NVML" "$bin status")
fi
commands+=(-n "status, stub NVML (8 GPUs, 16 processes)" "$bin status --nvml-library $stub")
hyperfine_saved nvml -N --warmup 20 --min-runs 200 "${commands[@]}"
