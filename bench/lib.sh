# shellcheck shell=bash
# What the bench scripts share; each sources it after `cd`-ing to the repository root,
# so that it keeps only what it measures:
#   bench_setup [BINARY [HYPERFINE-OPTION...]]
#                            the binary to measure (bin) and a temporary folder (work),
#                            removed at exit with every process listed in background
#   need TOOL...             stops, saying what to install, when a tool is missing
#   start_redis              a private Redis server on a unix socket (redis_store)
#   private_store            an embedded store of 8 GPUs in work, no configuration
#   stub_store               that store, two GPUs reserved through a stub GPU library
#   mean_ms, ratio           hyperfine's mean of one command, and a quotient
#   hyperfine_saved          hyperfine, its results also saved for bench/all.sh
#   build_stub, start_sleepers   a fake GPU library of tests/support with real processes
# Not a script of its own: bench/*.sh source it (shellcheck checks it with them).

bench_script=bench/$(basename "$0")

die() { # message -> stops the script with it
    echo "$bench_script: $*" >&2
    exit 1
}

need() { # tool... -> stops when one is not installed (the Debian packages are named alike)
    local tool
    for tool; do
        command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install $tool)"
    done
}

# More hyperfine options for hyperfine_saved, split at blanks (e.g. --show-output).
read -r -a hyperfine_extra <<<"${HYPERFINE_OPTS:-}"

background=() # processes to stop at exit
temporary=()  # folders to remove at exit
bench_cleanup() {
    if ((${#background[@]})); then
        kill "${background[@]}" 2>/dev/null || true
        wait "${background[@]}" 2>/dev/null || true
    fi
    if ((${#temporary[@]})); then
        rm -rf "${temporary[@]}"
    fi
}

# bench_setup [BINARY [HYPERFINE-OPTION...]]: sets bin to BINARY's absolute path or,
# without one (or with ""), builds target/release (cargo does nothing when it is up to
# date, so a bench never measures a stale build); sets work to a new temporary folder.
# The options go to hyperfine_saved, for the scripts that print hyperfine's report.
bench_setup() {
    if [[ -z ${1:-} ]]; then
        cargo build --release --quiet
        bin=$PWD/target/release/canhazgpu
    elif [[ -x $1 && -f $1 ]]; then
        bin=$(realpath "$1")
    else
        die "$1 is not an executable; build it or pass another path"
    fi
    hyperfine_extra+=("${@:2}")
    trap bench_cleanup EXIT
    work=$(mktemp -d)
    temporary+=("$work")
}

# start_redis: a Redis server of this script's own on $work/redis.sock (no port, nothing
# saved); sets redis_store to its URL.
start_redis() {
    redis-server --port 0 --save '' --appendonly no --unixsocket "$work/redis.sock" \
        --dir "$work" >/dev/null 2>&1 &
    background+=("$!")
    for _ in $(seq 100); do [[ -S $work/redis.sock ]] && break; sleep 0.05; done
    [[ -S $work/redis.sock ]] || die "redis-server did not open $work/redis.sock within 5 s"
    # shellcheck disable=SC2034 # the scripts read it
    redis_store=redis+unix://$work/redis.sock
}

# private_store: an embedded store of 8 GPUs in $work and no configuration file, so that
# the figures depend on nothing of the host's.
private_store() {
    export CANHAZGPU_CONFIG=/dev/null CANHAZGPU_STORE=file://$work/state
    "$bin" admin --gpus 8 >/dev/null
}

# stub_store LIBRARY_OPTION: a private store (above) with two GPUs reserved through the
# stub that build_stub made, so that status shows every kind of line; prints that status.
# The option alone names the GPU library, not the environment.
stub_store() {
    unset CANHAZGPU_NVML_LIBRARY CANHAZGPU_NVML_STUB CANHAZGPU_AMD_SMI_LIBRARY \
        CANHAZGPU_AMD_SMI_STUB ROCM_PATH
    private_store
    "$bin" reserve --gpus 2 "$1" "$stub" >/dev/null 2>&1
    echo "== status with the stub"
    "$bin" status "$1" "$stub"
    echo
}

# Warm-up and runs of each mean_ms; a script of fast commands asks for more.
mean_runs=(--warmup 20 --min-runs 200)
mean_ms() { # command... -> its mean wall time in ms
    hyperfine -N "${mean_runs[@]}" --export-json "$work/h.json" "$@" >/dev/null 2>&1
    python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["results"][0]["mean"]*1000))' "$work/h.json"
}

ratio() { # a b [decimals] -> a / b, to 2 decimals unless told
    python3 -c "print('%.${3:-2}f' % ($1 / $2))"
}

hyperfine_saved() { # name hyperfine-argument... -> hyperfine's own report
    local name=$1
    shift
    # bench/all.sh collects each measurement as JSON in BENCH_JSON_DIR.
    if [[ -n ${BENCH_JSON_DIR:-} ]]; then
        set -- --export-json "$BENCH_JSON_DIR/$name.json" "$@"
    fi
    hyperfine "${hyperfine_extra[@]}" "$@"
}

# build_stub SOURCE LIBRARY: compiles tests/support/SOURCE into $stub/LIBRARY, in a folder
# of its own under target/, not /tmp: some hosts mount /tmp noexec, and dlopen refuses
# it there.
build_stub() {
    mkdir -p target
    stub=$(mktemp -d -p "$PWD/target" bench-stub.XXXXXX)
    temporary+=("$stub")
    "${CC:-gcc}" -shared -fPIC -O2 -o "$stub/$2" "tests/support/$1" -ldl
}

# start_sleepers N: N real processes, listed in sleepers, so that status looks up their
# owners as it would on a real host.
sleepers=()
start_sleepers() {
    for _ in $(seq "$1"); do
        sleep 600 &
        sleepers+=("$!")
        background+=("$!")
    done
}
