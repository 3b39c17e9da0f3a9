#!/usr/bin/env bash
# What NVML costs `canhazgpu status`: the stub libnvidia-ml.so.1 reporting 8 GPUs and
# 16 processes, against status without NVML, on an embedded store in a temp dir.
# On a host with a real NVIDIA driver it also times status against that driver.
#
# Usage: bench/nvml.sh [BINARY] [hyperfine options...]
#   BINARY defaults to target/release/canhazgpu (built when missing).
# Needs hyperfine and a C compiler ($CC, default gcc).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/release/canhazgpu}
shift || true
if [[ ! -x $bin ]]; then
    cargo build --release
fi
bin=$(realpath "$bin")

# Under target/, not /tmp: some hosts mount /tmp noexec, and dlopen refuses it there.
mkdir -p target
work=$(mktemp -d -p "$PWD/target" bench-nvml.XXXXXX)
sleepers=()
cleanup() {
    if ((${#sleepers[@]})); then
        kill "${sleepers[@]}" 2>/dev/null || true
        wait "${sleepers[@]}" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/stub"
"${CC:-gcc}" -shared -fPIC -O2 -o "$work/stub/libnvidia-ml.so.1" tests/support/nvml_stub.c -ldl

# Real processes, so that status looks up their owners as it would on a real host.
for _ in $(seq 16); do
    sleep 600 &
    sleepers+=("$!")
done
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
} >"$work/stub/nvml_stub.conf"

export CANHAZGPU_STORE="file://$work/state"
export CANHAZGPU_CONFIG="$work/config.toml"
unset CANHAZGPU_NVML_LIBRARY CANHAZGPU_NVML_STUB
: >"$CANHAZGPU_CONFIG"
"$bin" admin --gpus 8 >/dev/null
# Two reservations, so status shows every kind of line.
"$bin" reserve --gpus 2 --nvml-library "$work/stub" >/dev/null 2>&1

echo "== status with the stub"
"$bin" status --nvml-library "$work/stub"
echo

commands=()
if ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml\.so\.1 '; then
    # A real driver is on the loader path: keep it out of the baseline by naming
    # a library that does not exist (one warning, discarded by hyperfine).
    commands+=(-n "status, no NVML" "$bin status --nvml-library $work/none")
    commands+=(-n "status, real driver" "$bin status")
else
    commands+=(-n "status, no NVML" "$bin status")
fi
commands+=(-n "status, stub NVML (8 GPUs, 16 processes)" "$bin status --nvml-library $work/stub")

# bench/all.sh collects the measurement as JSON in BENCH_JSON_DIR.
if [[ -n ${BENCH_JSON_DIR:-} ]]; then
    set -- "$@" --export-json "$BENCH_JSON_DIR/nvml.json"
fi
hyperfine -N --warmup 20 --min-runs 200 "$@" "${commands[@]}"
