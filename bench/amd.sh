#!/usr/bin/env bash
# What AMD SMI costs `canhazgpu status`: the stub libamd_smi.so reporting 8 GPUs and 16
# processes, against status with no GPU library at all, on an embedded store in a temp
# dir. The baseline also shows what looking for the libraries costs a host without them.
#
# Usage: bench/amd.sh [BINARY] [hyperfine options...]
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
work=$(mktemp -d -p "$PWD/target" bench-amd.XXXXXX)
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
"${CC:-gcc}" -shared -fPIC -O2 -o "$work/stub/libamd_smi.so" tests/support/amd_smi_stub.c -ldl

# Real processes, so that status looks up their owners as it would on a real host.
for _ in $(seq 16); do
    sleep 600 &
    sleepers+=("$!")
done
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
} >"$work/stub/amd_smi_stub.conf"

export CANHAZGPU_STORE="file://$work/state"
export CANHAZGPU_CONFIG="$work/config.toml"
unset CANHAZGPU_NVML_LIBRARY CANHAZGPU_AMD_SMI_LIBRARY CANHAZGPU_AMD_SMI_STUB ROCM_PATH
: >"$CANHAZGPU_CONFIG"
"$bin" admin --gpus 8 >/dev/null
# Two reservations, so status shows every kind of line.
"$bin" reserve --gpus 2 --amd-smi-library "$work/stub" >/dev/null 2>&1

echo "== status with the stub"
"$bin" status --amd-smi-library "$work/stub"
echo

commands=()
if ldconfig -p 2>/dev/null | grep -q 'libnvidia-ml\.so\.1 \|libamd_smi\.so '; then
    # A real library is on the loader path: keep it out of the baseline by naming
    # libraries that do not exist (warnings, discarded by hyperfine).
    commands+=(-n "status, no GPU library" "$bin status --nvml-library $work/none --amd-smi-library $work/none")
else
    commands+=(-n "status, no GPU library" "$bin status")
fi
commands+=(-n "status, stub AMD SMI (8 GPUs, 16 processes)" "$bin status --amd-smi-library $work/stub")

# bench/all.sh collects the measurement as JSON in BENCH_JSON_DIR.
if [[ -n ${BENCH_JSON_DIR:-} ]]; then
    set -- "$@" --export-json "$BENCH_JSON_DIR/amd.json"
fi
hyperfine -N --warmup 20 --min-runs 200 "$@" "${commands[@]}"
