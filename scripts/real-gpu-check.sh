#!/usr/bin/env bash
# The real-driver check: canhazgpu against a host's real NVIDIA driver.
#
# Run it on a host with an NVIDIA GPU, from a checkout:
#     bash scripts/real-gpu-check.sh
# It builds the release binary (cargo) and a small CUDA allocator (gcc, no CUDA
# headers needed) unless given prebuilt ones, for GPU hosts without a toolchain:
#     bash scripts/real-gpu-check.sh --binary ./canhazgpu --allocator ./cuda_alloc
#
# What it checks, on a private store (a temporary directory; the host's own pool is
# never touched):
#   detect     `admin` counts the GPUs through NVML; `status --json` has a model,
#              UUID and memory for each
#   uuids      the UUIDs match `nvidia-smi -L` (skipped without nvidia-smi)
#   foreign    a process of ours holding GPU memory without a reservation (the
#              allocator, through the CUDA driver API) makes its GPU IN USE WITHOUT
#              RESERVATION in `status`, naming the process and our user
#   skipped    allocation does not hand out that GPU
#   force      `--force` does
#   freed      once the process is gone, the GPU is available again
# and times `status` with the real driver. It only reads the GPUs: one context and
# one allocation, no settings changed (no MIG mode, no resets, no clocks).
#
# Options:
#   --binary PATH      canhazgpu binary to test (default: cargo build --release)
#   --allocator PATH   cuda_alloc built from tests/support/cuda_alloc.c (default: gcc)
#   --gpu INDEX        GPU to allocate on (default: the last one that is idle)
#   --mib N            MiB to allocate (default: the threshold plus 1024)
#   --runs N           status timings (default 30)
# Exit status: 0 all checks passed, 1 a check failed, 2 usage or setup error,
# 3 inconclusive (no idle GPU to allocate on).
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
binary='' allocator='' target='' mib='' runs=30
threshold=1024

die() {
    printf 'real-gpu-check: %s\n' "$*" >&2
    exit 2
}

while (($#)); do
    case $1 in
        --binary) binary=${2-} && shift ;;
        --allocator) allocator=${2-} && shift ;;
        --gpu) target=${2-} && shift ;;
        --mib) mib=${2-} && shift ;;
        --runs) runs=${2-} && shift ;;
        -h | --help)
            sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
[[ -z $target || $target =~ ^[0-9]+$ ]] || die "--gpu takes a GPU index"
[[ -z $mib || $mib =~ ^[1-9][0-9]*$ ]] || die "--mib takes a number of MiB"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs takes a positive number"
mib=${mib:-$((threshold + 1024))}

work=$(mktemp -d "${TMPDIR:-/tmp}/canhazgpu-real-check.XXXXXX") || die "cannot make a temporary directory"
allocator_pid=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "$allocator_pid" ]; then
        kill "$allocator_pid" 2>/dev/null
        wait "$allocator_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

if [ -z "$binary" ]; then
    command -v cargo >/dev/null || die "no --binary given and no cargo to build one"
    (cd "$here" && cargo build --release --locked --quiet) || die "cargo build failed"
    binary=$here/target/release/canhazgpu
fi
[ -x "$binary" ] || die "binary $binary is not executable"
if [ -z "$allocator" ]; then
    command -v gcc >/dev/null || die "no --allocator given and no gcc to build one"
    allocator=$work/cuda_alloc
    gcc -O2 -o "$allocator" "$here/tests/support/cuda_alloc.c" -ldl || die "building the allocator failed"
fi
[ -x "$allocator" ] || die "allocator $allocator is not executable"

store="file://$work/store"
chg() {
    env -u CANHAZGPU_STORE -u CANHAZGPU_CONFIG "$binary" --store "$store" --config /dev/null "$@"
}

passed=0 failed=0 skipped=0
pass() {
    printf 'PASS %-8s %s\n' "$1" "$2"
    passed=$((passed + 1))
}
fail() {
    printf 'FAIL %-8s %s\n' "$1" "$2"
    failed=$((failed + 1))
}
skip() {
    printf 'SKIP %-8s %s\n' "$1" "$2"
    skipped=$((skipped + 1))
}
finish() {
    printf '\nresult: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
    if ((failed)); then exit 1; fi
    exit "${1:-0}"
}

# One GPU's line of `status`, and one key of one GPU in `status --json` (flat values).
status_line() {
    chg status 2>/dev/null | grep -m1 "^GPU $1: "
}
json_field() { # json, gpu index, key
    local object
    object=$(printf '%s' "$1" | sed 's/},{"id":/}\n{"id":/g' | grep -m1 "^\[\{0,1\}{\"id\":$2,")
    printf '%s' "$object" | grep -o "\"$3\":\(\"[^\"]*\"\|[^,}]*\)" | head -1 | sed "s/^\"$3\"://; s/^\"//; s/\"$//"
}

printf 'canhazgpu real-driver check\n  binary:    %s\n  allocator: %s\n' "$binary" "$allocator"
if command -v nvidia-smi >/dev/null; then
    printf '  nvidia-smi: driver %s\n' "$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)"
fi

# detect
admin_out=$(chg admin 2>&1)
count=$(printf '%s' "$admin_out" | sed -n 's/^Detected \([0-9]*\) GPUs\{0,1\} through NVML.*/\1/p')
printf '  admin:     %s\n' "$(printf '%s' "$admin_out" | head -1)"
if [ -z "$count" ]; then
    fail detect "admin did not detect GPUs through NVML: $admin_out"
    finish
fi
json=$(chg status --json 2>/dev/null)
described=0
for ((id = 0; id < count; id++)); do
    name=$(json_field "$json" "$id" name)
    total=$(json_field "$json" "$id" memory_total_mib)
    uuid=$(json_field "$json" "$id" uuid)
    printf '  GPU %d:     %s, %s MiB, %s\n' "$id" "$name" "$total" "$uuid"
    if [ -n "$name" ] && [ "${total:-0}" -gt 0 ] 2>/dev/null && [[ $uuid == GPU-* || $uuid == MIG-* ]]; then
        described=$((described + 1))
    fi
done
if ((described == count)); then
    pass detect "$count GPU(s), each with a model, memory and UUID"
else
    fail detect "only $described of $count GPU(s) have a model, memory and UUID"
fi

# uuids
if command -v nvidia-smi >/dev/null; then
    expected=$(nvidia-smi -L 2>/dev/null | grep -o 'UUID: GPU-[^)]*' | sed 's/UUID: //')
    seen=$(for ((id = 0; id < count; id++)); do json_field "$json" "$id" uuid; echo; done)
    if [ "$(printf '%s\n' "$expected" | sed '/^$/d')" = "$(printf '%s\n' "$seen" | sed '/^$/d')" ]; then
        pass uuids "the UUIDs match nvidia-smi -L, in order"
    else
        fail uuids "nvidia-smi -L says ${expected//$'\n'/ }, status says ${seen//$'\n'/ }"
    fi
else
    skip uuids "no nvidia-smi on PATH"
fi

# The GPU to allocate on: the one asked for, else the last idle one.
idle=()
for ((id = 0; id < count; id++)); do
    [ "$(json_field "$json" "$id" state)" = available ] && idle+=("$id")
done
if [ -z "$target" ]; then
    if ((${#idle[@]} == 0)); then
        printf 'No idle GPU to allocate on: every GPU has more than %s MiB in use.\n' "$threshold"
        finish 3
    fi
    target=${idle[-1]}
fi
((target < count)) || die "--gpu $target: this host has GPUs 0 to $((count - 1))"
me=$(id -un 2>/dev/null || id -u)

# foreign
coproc ALLOCATOR { CUDA_DEVICE_ORDER=PCI_BUS_ID exec "$allocator" "$target" "$mib"; }
# shellcheck disable=SC2153 # set by coproc
allocator_pid=$ALLOCATOR_PID
ready=''
if read -r -t 120 ready <&"${ALLOCATOR[0]}" && [[ $ready == ready\ * ]]; then
    printf '  allocator: pid %s holds %s MiB on GPU %s\n' "${ready#ready }" "$mib" "$target"
else
    fail foreign "the allocator did not report its allocation within 120 s (see its error above)"
    finish
fi
line='' deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
    line=$(status_line "$target")
    [[ $line == *"IN USE WITHOUT RESERVATION"* ]] && break
    sleep 0.5
done
printf '  status:    %s\n' "$line"
if [[ $line == *"IN USE WITHOUT RESERVATION by "*"$me (pid ${ready#ready }, "* ]]; then
    pass foreign "status names the process (pid ${ready#ready }) and user $me"
elif [[ $line == *"IN USE WITHOUT RESERVATION"* && $line == *"$me (pid "* ]]; then
    pass foreign "status names user $me (NVML reports the pid in another PID namespace)"
elif [[ $line == *"IN USE WITHOUT RESERVATION"* ]]; then
    fail foreign "the GPU shows as in use, but not as used by $me"
else
    fail foreign "GPU $target does not show as in use without reservation"
fi

# skipped
before=${#idle[@]}
if refused=$(chg reserve --gpu-ids "$target" --duration 1m 2>&1 >/dev/null); then
    fail skipped "reserve --gpu-ids $target was handed out although it is in use"
    chg release >/dev/null 2>&1
elif [[ $refused == *"in use without a reservation"* ]]; then
    pass skipped "reserve --gpu-ids $target is refused: in use without a reservation"
else
    fail skipped "reserve --gpu-ids $target was not refused as in use: $refused"
fi
if chg reserve --gpus "$before" --duration 1m >/dev/null 2>&1; then
    fail skipped "reserve --gpus $before succeeded although GPU $target is busy"
    chg release >/dev/null 2>&1
elif ((before > 1)); then
    got=$(chg reserve --gpus $((before - 1)) --duration 1m 2>/dev/null)
    if [ -n "$got" ] && [[ ,$(printf '%s' "$got" | sed -n 's/.*CUDA_VISIBLE_DEVICES=\([0-9,]*\).*/\1/p'), != *",$target,"* ]]; then
        pass skipped "reserve --gpus $before is refused, --gpus $((before - 1)) gets the others"
    else
        fail skipped "reserve --gpus $((before - 1)) did not get the other GPUs: $got"
    fi
    chg release >/dev/null 2>&1
else
    pass skipped "reserve --gpus 1 is refused on this one-GPU host"
fi

# force
if forced=$(chg reserve --gpu-ids "$target" --force --duration 1m 2>&1) &&
    [[ $forced == *"--force"* ]]; then
    pass force "--force hands GPU $target out, with a warning"
else
    fail force "--force did not hand GPU $target out: $forced"
fi
chg release >/dev/null 2>&1

# timing, while the driver has a process to report
timing=''
if command -v hyperfine >/dev/null; then
    hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/status.json" \
        "env -u CANHAZGPU_STORE $binary --store $store --config /dev/null status" >/dev/null 2>&1
    timing=$(grep -o '"\(mean\|median\|min\)": *[0-9.e-]*' "$work/status.json" | head -3 |
        awk -F': *' '{printf "%s %.1f ms, ", $1, $2 * 1000}' | tr -d '"')
else
    times=()
    for ((run = 0; run < runs; run++)); do
        start=$(date +%s%N)
        chg status >/dev/null 2>&1
        times+=($((($(date +%s%N) - start) / 1000)))
    done
    timing=$(printf '%s\n' "${times[@]}" | sort -n |
        awk '{a[NR]=$1; s+=$1} END {printf "mean %.1f ms, median %.1f ms, min %.1f ms, ", s/NR/1000, a[int((NR+1)/2)]/1000, a[1]/1000}')
fi
printf '  timing:    status with the real driver (%s runs): %s\n' "$runs" "${timing%, }"

# freed
feed=${ALLOCATOR[1]}
exec {feed}>&-
wait "$allocator_pid"
allocator_status=$?
allocator_pid=''
deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
    line=$(status_line "$target")
    [[ $line == "GPU $target: AVAILABLE"* ]] && break
    sleep 0.5
done
if ((allocator_status == 0)) && [[ $line == "GPU $target: AVAILABLE"* ]]; then
    pass freed "GPU $target is available again once the process is gone"
else
    fail freed "after the allocator ended (status $allocator_status): $line"
fi
finish
