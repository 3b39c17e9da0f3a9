#!/usr/bin/env bash
# Writes the upgrade fixtures of this version: tests/fixtures/vVERSION/ with what the
# binary really wrote, on both stores, while people held GPUs (tests/fixtures/README.md
# says what the scenario is; tests/e2e/upgrades.rs checks that the binary reads every
# version's fixtures). Run it once per release; it never overwrites an existing folder.
#
# Usage: scripts/make-fixtures.sh [path/to/canhazgpu]   (default: a release build)
# Needs root (the holders run in PID namespaces of their own, see below), util-linux's
# unshare, redis-server and redis-cli.
set -euo pipefail
cd "$(dirname "$0")/.."

if ((EUID != 0)); then
    echo "scripts/make-fixtures.sh: run it as root (unshare --pid needs it)" >&2
    exit 1
fi
bin=${1:-}
if [[ -z $bin ]]; then
    cargo build --release --locked --quiet
    bin=target/release/canhazgpu
fi
bin=$(realpath "$bin")
version=$("$bin" --version)
version=${version#canhazgpu }
dest=tests/fixtures/v$version
if [[ -e $dest ]]; then
    echo "scripts/make-fixtures.sh: $dest exists; fixtures of a released version are never" \
        "rewritten (bump the version first)" >&2
    exit 1
fi

work=$(mktemp -d)
holders=()
redis_pid=
cleanup() {
    local pid
    for pid in "${holders[@]}" $redis_pid; do
        kill -KILL "$pid" 2>/dev/null || :
        wait "$pid" 2>/dev/null || :
    done
    rm -rf "$work"
}
trap cleanup EXIT

# A private environment: the tested binary first on PATH, no host configuration.
bindir=$(dirname "$bin")
export PATH="$bindir:$PATH"
export CANHAZGPU_CONFIG=$work/empty.toml XDG_RUNTIME_DIR=$work/run
: >"$CANHAZGPU_CONFIG"
mkdir -m 700 "$XDG_RUNTIME_DIR"
unset CUDA_VISIBLE_DEVICES NVIDIA_VISIBLE_DEVICES CUDA_DEVICE_ORDER CANHAZGPU_OWNER_PID \
    CANHAZGPU_GPUS CANHAZGPU_EXPIRES CANHAZGPU_LEASE CANHAZGPU_RESTORE CANHAZGPU_NVML_LIBRARY

wait_until() { # wait_until WHAT COMMAND...: polls COMMAND for up to 20 s
    local what=$1
    shift
    for _ in $(seq 200); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "scripts/make-fixtures.sh: timed out waiting for $what" >&2
    exit 1
}
busy_count() { # busy_count N: the pool shows exactly N GPUs in use
    [[ $(canhazgpu status | grep -c 'IN USE') == "$1" ]]
}

# The holders run in PID namespaces of their own: a later test sees owners it cannot
# judge by pid on any machine and any boot, so their reservations live by their expiry
# or heartbeat, whatever machine reads the fixture. (Owners in the reader's own
# namespace would be dead on the boot that wrote them and unknown on any other.)
foreign() {
    unshare --pid --fork --mount-proc --kill-child -- "$@" </dev/null >/dev/null 2>&1 &
    holders+=($!)
}

# The scenario; tests/fixtures/README.md describes it and tests/e2e/upgrades.rs
# expects exactly it.
scenario() {
    canhazgpu admin --gpus 8 >/dev/null
    # Finished: one run and a manual reservation of 2 GPUs, for the history.
    canhazgpu run --gpus 1 -- true 2>/dev/null
    canhazgpu reserve --gpus 2 --duration 1h >/dev/null 2>&1
    canhazgpu release >/dev/null
    # Held: 5 of 8 GPUs.
    canhazgpu reserve --gpus 1 --duration 4h --note 'fixture: plain reserve' >/dev/null 2>&1
    canhazgpu reserve --gpus 1 --duration 4h --user alice --note 'fixture: shared account' \
        >/dev/null 2>&1
    # shellcheck disable=SC2016 # expanded by the foreign shell
    foreign bash --norc --noprofile -c 'eval "$(canhazgpu init bash)"
        canhazgpu reserve --gpus 1 --duration 4h --note "fixture: shell" 2>/dev/null
        exec sleep 600'
    foreign canhazgpu run --gpus 2 --note 'fixture: run' -- sleep 600
    wait_until "the shell's and the run's reservations" busy_count 5
    # Waiting: 4 GPUs wanted, 3 free.
    foreign canhazgpu reserve --gpus 4 --wait=1h --note 'fixture: waiting'
    wait_until "the waiter in the queue" bash -c 'canhazgpu queue | grep -q "wants 4 GPU"'
    # Stop the holders without letting them release (SIGKILL): the store keeps what it
    # held while they lived, as after a crash or while an upgrade runs.
    local pid
    for pid in "${holders[@]}"; do
        kill -KILL "$pid"
        wait "$pid" 2>/dev/null || :
    done
    holders=()
}

mkdir -p "$dest"

echo "== embedded store" >&2
export CANHAZGPU_STORE=file://$work/state
scenario
mkdir "$dest/file-store"
cp "$work/state/state.json" "$work/state/history.jsonl" "$dest/file-store/"
file_written_at=$(date +%s)

echo "== Redis" >&2
mkdir "$work/redis"
redis-server --port 0 --save '' --appendonly no --unixsocket "$work/redis/redis.sock" \
    --dir "$work/redis" >/dev/null &
redis_pid=$!
wait_until redis-server redis-cli -s "$work/redis/redis.sock" PING
export CANHAZGPU_STORE=redis+unix://$work/redis/redis.sock
scenario
rcli() { redis-cli -s "$work/redis/redis.sock" "$@"; }
# One line per value, tab-separated: `string KEY VALUE`, `zset KEY SCORE MEMBER` or
# `hash KEY FIELD VALUE` (JSON and our keys hold no tabs or newlines).
rcli --scan | sort | while read -r key; do
    case $(rcli TYPE "$key") in
        string) printf 'string\t%s\t%s\n' "$key" "$(rcli GET "$key")" ;;
        zset) rcli ZRANGE "$key" 0 -1 WITHSCORES | while read -r member && read -r score; do
            printf 'zset\t%s\t%s\t%s\n' "$key" "$score" "$member"
        done ;;
        hash) rcli HGETALL "$key" | while read -r field && read -r value; do
            printf 'hash\t%s\t%s\t%s\n' "$key" "$field" "$value"
        done ;;
        *)
            echo "scripts/make-fixtures.sh: $key is a $(rcli TYPE "$key"), which the" \
                "dump does not handle yet; teach it" >&2
            exit 1
            ;;
    esac
done >"$dest/redis.tsv"
redis_written_at=$(date +%s)

# When each was written: the test moves every time in the fixture by the same amount,
# so that the reservations are as fresh (or as old) as it needs.
printf 'file_store_written_at=%s\nredis_written_at=%s\nwritten_by=canhazgpu %s\n' \
    "$file_written_at" "$redis_written_at" "$version" >"$dest/written_at"
echo "wrote $dest" >&2
