#!/usr/bin/env bash
# Waiting-queue figures (issue 5), embedded store and Redis side by side:
#   - 64 concurrent `reserve --wait --duration 1m` + `release --gpu-ids` cycles on 8 GPUs:
#     time until all 64 were served;
#   - what 32 waiters cost the store while they wait: Redis commands per second (from
#     INFO stats) and, for the embedded store, state-file reads and lock takes per second
#     of one waiter (strace), times 32.
# Needs redis-server, redis-cli and strace. Talks only to a unix socket.
# Usage: bench/queue.sh [path/to/canhazgpu]   (default: builds and uses target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need redis-server strace python3
bench_setup "$@"
start_redis
export CANHAZGPU_CONFIG=/dev/null

serve_all() { # store -> seconds until 64 waiting clients were each served once
    local store=$1 start end
    CANHAZGPU_STORE=$store "$bin" admin --gpus 8 --force >/dev/null
    start=$(date +%s%N)
    for client in $(seq 64); do
        (
            line=$(CANHAZGPU_STORE=$store "$bin" reserve --wait=5m --duration 1m 2>/dev/null) || {
                echo "client $client was not served" >&2
                exit 1
            }
            ids=${line#export CUDA_VISIBLE_DEVICES=}
            ids=${ids%% *}
            CANHAZGPU_STORE=$store "$bin" release --gpu-ids "$ids" >/dev/null
        ) &
    done
    wait
    end=$(date +%s%N)
    python3 -c "print('%.2f' % (($end - $start) / 1e9))"
}

start_waiters() { # store -> starts 32 waiters behind a full pool
    local store=$1
    CANHAZGPU_STORE=$store "$bin" admin --gpus 8 --force >/dev/null
    CANHAZGPU_STORE=$store "$bin" reserve --gpus 8 --duration 10m >/dev/null 2>&1
    waiters=()
    for _ in $(seq 32); do
        CANHAZGPU_STORE=$store "$bin" reserve --wait --duration 1m >/dev/null 2>&1 &
        waiters+=("$!")
    done
    for _ in $(seq 200); do
        [[ $(CANHAZGPU_STORE=$store "$bin" queue --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') == 32 ]] && break
        sleep 0.05
    done
    sleep 3 # let the waiters settle into their steady polling rate before measuring
}

stop_waiters() {
    kill "${waiters[@]}" 2>/dev/null
    wait "${waiters[@]}" 2>/dev/null || true
}

file_store="file://$work/state"
file_serve=$(serve_all "$file_store")
redis_serve=$(serve_all "$redis_store")

start_waiters "$redis_store"
before=$(redis-cli -s "$work/redis.sock" info stats | awk -F: '/^total_commands_processed/ {print $2+0}')
sleep 10
after=$(redis-cli -s "$work/redis.sock" info stats | awk -F: '/^total_commands_processed/ {print $2+0}')
redis_ops=$(python3 -c "print('%.1f' % (($after - $before) / 10))")
stop_waiters

start_waiters "$file_store"
# One more waiter, traced: its reads of state.json and its lock takes over 10 s.
timeout -s INT 10 strace -f -qq -e trace=openat,flock -o "$work/trace" \
    env CANHAZGPU_STORE="$file_store" "$bin" reserve --wait --duration 1m >/dev/null 2>&1 || true
reads=$(grep -c 'state.json", O_RDONLY' "$work/trace" || true)
locks=$(grep -c 'flock(.*LOCK_EX' "$work/trace" || true)
file_ops=$(python3 -c "print('%.1f reads + %.1f locks' % ($reads * 32 / 10, $locks * 32 / 10))")
stop_waiters

echo "| measurement | embedded store | Redis |"
echo "|---|---|---|"
echo "| 64 concurrent reserve --wait + release on 8 GPUs, time to serve all | ${file_serve} s | ${redis_serve} s |"
echo "| store operations per second while 32 waiters wait | ${file_ops} | ${redis_ops} commands |"
