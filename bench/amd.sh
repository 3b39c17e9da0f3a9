#!/usr/bin/env bash
# What AMD SMI costs `canhazgpu status`: the stub libamd_smi.so reporting 8 GPUs and 16
# processes, against status with no GPU library at all, on an embedded store in a temp
# dir. The baseline also shows what looking for the libraries costs a host without them.
#
# Usage: bench/amd.sh [BINARY] [hyperfine options...]
#   BINARY defaults to target/release/canhazgpu (built, or rebuilt when out of date).
# Needs hyperfine and a C compiler ($CC, default gcc).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need hyperfine
bench_setup "$@"

build_stub amd_smi_stub.c libamd_smi.so
start_sleepers 16
{
    echo "driver 6.10.5"
    # Two processes per GPU; GPUs 0 to 3 busy (in use without reservation); two sockets.
    for gpu in $(seq 0 7); do
        ((gpu == 4)) && echo socket
        echo "gpu 0000000$gpu-0000-1000-8012-1a2b3c4d5e6f 196592 $((gpu < 4 ? 8192 : 283)) AMD Instinct MI300X"
    done
    for i in $(seq 0 15); do
        gpu=$((i % 8))
        echo "proc $gpu ${sleepers[$i]} $((gpu < 4 ? 4096 : 100))"
    done
} >"$stub/amd_smi_stub.conf"
stub_store --amd-smi-library

commands=()
if ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml\.so\.1 \|libamd_smi\.so '; then
    # A real library is on the loader path: keep it out of the baseline by naming
    # libraries that do not exist (warnings, discarded by hyperfine).
    commands+=(-n "status, no GPU library" "$bin status --nvml-library $work/none --amd-smi-library $work/none")
else
    commands+=(-n "status, no GPU library" "$bin status")
fi
commands+=(-n "status, stub AMD SMI (8 GPUs, 16 processes)" "$bin status --amd-smi-library $stub")
hyperfine_saved amd -N --warmup 20 --min-runs 200 "${commands[@]}"
