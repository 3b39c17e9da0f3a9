#!/usr/bin/env bash
# Lab view figures (issue 11): `canhazgpu status --all-hosts` on one Redis (unix socket)
# holding 1, 10 and 100 named hosts of 8 GPUs each, half of them reserved, each with a
# history of 20 finished reservations and published GPU facts (8 H100s, 2 processes
# each, as a host with a driver publishes them); plus `status --host` of one other host
# and `report --all-hosts` at 100 hosts. Target: 100 hosts cost at most 5x one host, and
# under 20 ms on the 2-core machine.
# Needs hyperfine, redis-server and redis-cli. Talks only to a unix socket.
# Usage: bench/lab.sh [path/to/canhazgpu]   (default: builds and uses target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need hyperfine redis-server python3
bench_setup "$@"
start_redis

export CANHAZGPU_CONFIG=/dev/null CANHAZGPU_STORE=$redis_store
# No NVIDIA library: the figures are the store's and the tool's, not a driver's.
export LD_LIBRARY_PATH=$work

# What a host with 8 H100s publishes (canhazgpu:{NAME}:gpus), as of now.
facts=$(python3 -c '
import json, time
gpus = [{"index": i, "gpu_index": i, "name": "NVIDIA H100 80GB HBM3",
         "uuid": "GPU-%08x-1111-2222-3333-444444444444" % i,
         "memory_total_mib": 81559, "memory_used_mib": 40000,
         "processes": [{"pid": 1000 + 2 * i + j, "used_mib": 20000, "user": "alice"} for j in range(2)],
         "mig": None, "note": None} for i in range(8)]
print(json.dumps({"probed_at": int(time.time()), "memory_threshold_mib": 1024,
                  "vendor": "nvidia", "driver_version": "550.54.15", "gpus": gpus}))')

hosts=0
add_hosts() { # total -> registers hosts up to that many, each 8 GPUs, 4 reserved, 20 runs
    local total=$1 name
    while ((hosts < total)); do
        name=$(printf 'gpu%03d' "$hosts")
        CANHAZGPU_HOST=$name "$bin" admin --gpus 8 >/dev/null
        for _ in $(seq 20); do CANHAZGPU_HOST=$name "$bin" run -- true 2>/dev/null; done
        CANHAZGPU_HOST=$name "$bin" reserve --gpus 4 --duration 8h >/dev/null 2>&1
        redis-cli -s "$work/redis.sock" SET "canhazgpu:{$name}:gpus" "$facts" >/dev/null
        hosts=$((hosts + 1))
    done
}

export CANHAZGPU_HOST=gpu000
add_hosts 1
own_ms=$(mean_ms "$bin status")
one_ms=$(mean_ms "$bin status --all-hosts")
add_hosts 10
ten_ms=$(mean_ms "$bin status --all-hosts")
other_ms=$(mean_ms "$bin status --host gpu005")
add_hosts 100
hundred_ms=$(mean_ms "$bin status --all-hosts")
json_ms=$(mean_ms "$bin status --all-hosts --json")
report_ms=$(mean_ms "$bin report --all-hosts")

echo "| measurement | result | target |"
echo "|---|---|---|"
echo "| status, this host only (named, 8 GPUs, Redis) | ${own_ms} ms | |"
echo "| status --all-hosts, 1 host of 8 GPUs | ${one_ms} ms | |"
echo "| status --all-hosts, 10 hosts | ${ten_ms} ms ($(ratio "$ten_ms" "$one_ms" 1)x one host) | |"
echo "| status --host (another host), 10 registered | ${other_ms} ms | |"
echo "| status --all-hosts, 100 hosts | ${hundred_ms} ms ($(ratio "$hundred_ms" "$one_ms" 1)x one host) | at most 5x one host, under 20 ms |"
echo "| status --all-hosts --json, 100 hosts | ${json_ms} ms | |"
echo "| report --all-hosts, 100 hosts x 20 finished runs | ${report_ms} ms | |"
