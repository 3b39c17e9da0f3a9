#!/usr/bin/env bash
# Core speed figures (issue 2), measured side by side in one run:
#   - `canhazgpu status` on 8 GPUs, embedded store and Redis, against /bin/true;
#   - allocation throughput: 8 workers each doing 25 `canhazgpu run --gpus 1 -- true`
#     on 8 GPUs, embedded store and Redis.
# Needs hyperfine and redis-server (Debian packages). Talks only to a unix socket.
# Usage: bench/core.sh [path/to/canhazgpu]   (default: builds and uses target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need hyperfine redis-server python3
bench_setup "$@"
start_redis
mean_runs=(--warmup 20 --min-runs 300)

export CANHAZGPU_CONFIG=/dev/null
file_store="file://$work/state"
CANHAZGPU_STORE=$file_store "$bin" admin --gpus 8 >/dev/null
CANHAZGPU_STORE=$redis_store "$bin" admin --gpus 8 >/dev/null

round() { # store -> runs per second of one round of 8 workers x 25 runs
    local store=$1 start end
    start=$(date +%s%N)
    for _ in $(seq 8); do
        (for _ in $(seq 25); do
            CANHAZGPU_STORE=$store "$bin" run --gpus 1 -- true 2>/dev/null || echo "run failed" >&2
        done) &
    done
    wait
    end=$(date +%s%N)
    python3 -c "print(200 / (($end - $start) / 1e9))"
}

throughput() { # store -> "median runs/s (min-max)" over 7 rounds: one round is only ~0.5 s
    local store=$1
    for _ in $(seq 7); do round "$store"; done | python3 -c '
import statistics, sys
rates = sorted(float(line) for line in sys.stdin)
print("%.0f runs/s (%.0f-%.0f over 7 rounds)" % (statistics.median(rates), rates[0], rates[-1]))'
}

true_ms=$(mean_ms /bin/true)
file_ms=$(CANHAZGPU_STORE=$file_store mean_ms "$bin status")
redis_ms=$(CANHAZGPU_STORE=$redis_store mean_ms "$bin status")
file_rps=$(throughput "$file_store")
redis_rps=$(throughput "$redis_store")

echo "| measurement | result | target |"
echo "|---|---|---|"
echo "| /bin/true | ${true_ms} ms | |"
echo "| status, 8 GPUs, embedded store | ${file_ms} ms ($(ratio "$file_ms" "$true_ms")x /bin/true) | within 3x |"
echo "| status, 8 GPUs, Redis (unix socket) | ${redis_ms} ms ($(ratio "$redis_ms" "$true_ms")x /bin/true) | |"
echo "| run throughput, 8 workers x 25, embedded store | ${file_rps} | at least 300 |"
echo "| run throughput, 8 workers x 25, Redis | ${redis_rps} | |"
