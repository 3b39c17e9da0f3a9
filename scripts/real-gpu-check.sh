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
# and times `status` with the real driver. The allocation checks use a GPU that is not
# in MIG mode. On a host with GPUs in MIG mode with MIG instances it then checks, with
# `mig = true` on a second private store:
#   mig-detect   `admin` counts the MIG instances as GPUs, each with its GPU, profile
#                and MIG UUID
#   mig-uuids    the MIG UUIDs match `nvidia-smi -L` (skipped without nvidia-smi)
#   mig-export   `run` exports a MIG instance by its MIG UUID
#   mig-foreign, mig-skipped, mig-force, mig-freed
#                the allocation checks above, on an idle MIG instance
# It only reads the GPUs: one context and one allocation at a time, no settings
# changed (no MIG mode or instance changes, no resets, no clocks).
#
# Options:
#   --binary PATH      canhazgpu binary to test (default: cargo build --release)
#   --allocator PATH   cuda_alloc built from tests/support/cuda_alloc.c (default: gcc)
#   --gpu INDEX        GPU to allocate on (default: the last idle one not in MIG mode)
#   --mib N            MiB to allocate (default: the threshold plus 1024)
#   --runs N           status timings (default 30)
# Exit status: 0 all checks passed, 1 a check failed, 2 usage or setup error,
# 3 inconclusive (no idle GPU or MIG instance to allocate on).
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

store="file://$work/store" config=/dev/null
chg() {
    env -u CANHAZGPU_STORE -u CANHAZGPU_CONFIG "$binary" --store "$store" --config "$config" "$@"
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

me=$(id -un 2>/dev/null || id -u)

# The allocation checks on one GPU of the current store: pool id $2, which CUDA knows
# as $3 (an NVML index, or a MIG instance's UUID); check names start with $1.
hold_and_check() {
    local prefix=$1 target=$2 device=$3 units=$4 line='' ready='' refused got ids forced
    coproc ALLOCATOR { CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=$device exec "$allocator" 0 "$mib"; }
    # shellcheck disable=SC2153 # set by coproc
    allocator_pid=$ALLOCATOR_PID
    if read -r -t 120 ready <&"${ALLOCATOR[0]}" && [[ $ready == ready\ * ]]; then
        printf '  allocator: pid %s holds %s MiB on %s (GPU %s here)\n' "${ready#ready }" "$mib" "$device" "$target"
    else
        fail "${prefix}foreign" "the allocator did not report its allocation within 120 s (see its error above)"
        return
    fi
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        line=$(status_line "$target")
        [[ $line == *"IN USE WITHOUT RESERVATION"* ]] && break
        sleep 0.5
    done
    printf '  status:    %s\n' "$line"
    if [[ $line == *"IN USE WITHOUT RESERVATION by "*"$me (pid ${ready#ready }, "* ]]; then
        pass "${prefix}foreign" "status names the process (pid ${ready#ready }) and user $me"
    elif [[ $line == *"IN USE WITHOUT RESERVATION"* && $line == *"$me (pid "* ]]; then
        pass "${prefix}foreign" "status names user $me (NVML reports the pid in another PID namespace)"
    elif [[ $line == *"IN USE WITHOUT RESERVATION"* ]]; then
        fail "${prefix}foreign" "the GPU shows as in use, but not as used by $me"
    else
        fail "${prefix}foreign" "GPU $target does not show as in use without reservation"
    fi

    if refused=$(chg reserve --gpu-ids "$target" --duration 1m 2>&1 >/dev/null); then
        fail "${prefix}skipped" "reserve --gpu-ids $target was handed out although it is in use"
        chg release >/dev/null 2>&1
    elif [[ $refused == *"in use without a reservation"* ]]; then
        pass "${prefix}skipped" "reserve --gpu-ids $target is refused: in use without a reservation"
    else
        fail "${prefix}skipped" "reserve --gpu-ids $target was not refused as in use: $refused"
    fi
    if chg reserve --gpus "$units" --duration 1m >/dev/null 2>&1; then
        fail "${prefix}skipped" "reserve --gpus $units succeeded although GPU $target is busy"
        chg release >/dev/null 2>&1
    elif ((units > 1)); then
        got=$(chg reserve --gpus $((units - 1)) --duration 1m 2>&1 >/dev/null)
        ids=$(printf '%s' "$got" | sed -n 's/^Reserved [0-9]* GPU(s) \[\([0-9, ]*\)\].*/\1/p')
        if [ -n "$ids" ] && [[ ", $ids, " != *", $target, "* ]]; then
            pass "${prefix}skipped" "reserve --gpus $units is refused, --gpus $((units - 1)) gets the others"
        else
            fail "${prefix}skipped" "reserve --gpus $((units - 1)) did not get the other GPUs: $got"
        fi
        chg release >/dev/null 2>&1
    else
        pass "${prefix}skipped" "reserve --gpus 1 is refused on this one-GPU host"
    fi

    if forced=$(chg reserve --gpu-ids "$target" --force --duration 1m 2>&1) &&
        [[ $forced == *"--force"* ]]; then
        pass "${prefix}force" "--force hands GPU $target out, with a warning"
    else
        fail "${prefix}force" "--force did not hand GPU $target out: $forced"
    fi
    chg release >/dev/null 2>&1

    [ -z "$prefix" ] && time_status

    local feed=${ALLOCATOR[1]} allocator_status
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
        pass "${prefix}freed" "GPU $target is available again once the process is gone"
    else
        fail "${prefix}freed" "after the allocator ended (status $allocator_status): $line"
    fi
}

# timing, while the driver has a process to report
time_status() {
    local timing='' times=() run start
    if command -v hyperfine >/dev/null; then
        hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/status.json" \
            "env -u CANHAZGPU_STORE $binary --store $store --config $config status" >/dev/null 2>&1
        timing=$(grep -o '"\(mean\|median\|min\)": *[0-9.e-]*' "$work/status.json" | head -3 |
            awk -F': *' '{printf "%s %.1f ms, ", $1, $2 * 1000}' | tr -d '"')
    else
        for ((run = 0; run < runs; run++)); do
            start=$(date +%s%N)
            chg status >/dev/null 2>&1
            times+=($((($(date +%s%N) - start) / 1000)))
        done
        timing=$(printf '%s\n' "${times[@]}" | sort -n |
            awk '{a[NR]=$1; s+=$1} END {printf "mean %.1f ms, median %.1f ms, min %.1f ms, ", s/NR/1000, a[int((NR+1)/2)]/1000, a[1]/1000}')
    fi
    printf '  timing:    status with the real driver (%s runs): %s\n' "$runs" "${timing%, }"
}

# Whole GPUs: the one asked for, else the last idle one not in MIG mode (CUDA cannot
# use a GPU in MIG mode as a whole).
idle=() available=0 whole=0
for ((id = 0; id < count; id++)); do
    [ "$(json_field "$json" "$id" state)" = available ] || continue
    available=$((available + 1))
    [[ $(json_field "$json" "$id" note) == *"MIG mode"* ]] && continue
    idle+=("$id")
done
if [ -n "$target" ]; then
    ((target < count)) || die "--gpu $target: this host has GPUs 0 to $((count - 1))"
elif ((${#idle[@]})); then
    target=${idle[-1]}
fi
if [ -n "$target" ]; then
    hold_and_check '' "$target" "$target" "$available"
    whole=1
else
    printf 'No idle GPU outside MIG mode to allocate on: every other GPU has more than %s MiB in use.\n' "$threshold"
fi

# MIG instances, with mig = true on a store of their own.
store="file://$work/mig-store" config=$work/mig.toml
printf 'mig = true\n' >"$config"
mig_admin=$(chg admin 2>&1)
units=$(printf '%s' "$mig_admin" | sed -n 's/^Detected \([0-9]*\) GPUs\{0,1\} through NVML.*/\1/p')
instances=$(printf '%s' "$mig_admin" | sed -n 's/.*, \([0-9]*\) of them MIG instances\{0,1\}$/\1/p; s/.*, 1 of them a MIG instance$/1/p')
if [ -z "$instances" ]; then
    skip mig "no GPU in MIG mode with MIG instances (this check never changes MIG modes)"
    ((whole)) || finish 3
    finish
fi
printf '  mig:       %s\n' "$(printf '%s' "$mig_admin" | head -1)"
json=$(chg status --json 2>/dev/null)
described=0 mig_idle=() mig_uuids=() available=0
for ((id = 0; id < units; id++)); do
    [ "$(json_field "$json" "$id" state)" = available ] && available=$((available + 1))
    uuid=$(json_field "$json" "$id" uuid)
    profile=$(json_field "$json" "$id" profile)
    [[ $uuid == MIG-* ]] || continue
    mig_uuids+=("$uuid")
    printf '  GPU %d:     GPU %s/MIG %s #%s, %s MiB, %s\n' "$id" "$(json_field "$json" "$id" gpu)" \
        "$profile" "$(json_field "$json" "$id" index)" "$(json_field "$json" "$id" memory_total_mib)" "$uuid"
    [ -n "$profile" ] && described=$((described + 1))
    [ "$(json_field "$json" "$id" state)" = available ] && mig_idle+=("$id")
done
if ((described == instances)); then
    pass mig-detect "$units GPU(s), $instances of them MIG instances with a profile and MIG UUID"
else
    fail mig-detect "only $described of $instances MIG instance(s) are described"
fi
if command -v nvidia-smi >/dev/null; then
    expected=$(nvidia-smi -L 2>/dev/null | grep -o 'UUID: MIG-[^)]*' | sed 's/UUID: //')
    if [ "$(printf '%s\n' "$expected" | sed '/^$/d')" = "$(printf '%s\n' "${mig_uuids[@]}")" ]; then
        pass mig-uuids "the MIG UUIDs match nvidia-smi -L, in order"
    else
        fail mig-uuids "nvidia-smi -L says ${expected//$'\n'/ }, status says ${mig_uuids[*]}"
    fi
else
    skip mig-uuids "no nvidia-smi on PATH"
fi
if ((${#mig_idle[@]} == 0)); then
    printf 'No idle MIG instance to allocate on.\n'
    ((whole)) || finish 3
    finish
fi
target=${mig_idle[-1]}
device=$(json_field "$json" "$target" uuid)
hold_and_check mig- "$target" "$device" "$available"
# After the allocation checks: a GPU released in the same second as a request's look
# at NVML counts as released after it, and is handed out whatever NVML saw.
# shellcheck disable=SC2016 # expanded by the shell run starts
exported=$(chg run --gpu-ids "$target" -- sh -c 'printf %s "$CUDA_VISIBLE_DEVICES"' 2>/dev/null)
if [ "$exported" = "$device" ]; then
    pass mig-export "run exports GPU $target as $device"
else
    fail mig-export "run exported '$exported' for GPU $target, not $device"
fi
finish
