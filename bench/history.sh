#!/usr/bin/env bash
# History cost (issue 10 item 1): `canhazgpu run --gpus 1 -- true` (a reservation and a
# release that appends a history record) on an empty store against one holding 400k
# history records, 80 days of a busy 8-GPU host (about 55 MB), on both stores. The
# embedded store is measured with the records in monthly files, as this version writes
# them, and in the single history.jsonl of earlier versions, as an upgraded host has it.
# Needs hyperfine, python3 and redis-server (Debian packages). Talks only to unix sockets.
# Usage: bench/history.sh [path/to/canhazgpu]   (default: builds and uses target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need hyperfine redis-server python3
bench_setup "$@"
start_redis
mean_runs=(--warmup 10 --min-runs 100)
export CANHAZGPU_CONFIG=/dev/null

# 400k records ending over the last 80 days, as JSON lines: monthly files (by the month
# each ended in), one single file, and ZADD commands for redis-cli --pipe.
python3 - "$work" <<'PY'
import json, os, sys, time
work = sys.argv[1]
now = int(time.time())
count, span = 400_000, 80 * 86_400
for name in ("monthly", "single"):
    os.makedirs(os.path.join(work, name), exist_ok=True)
months, single = {}, []
with open(os.path.join(work, "zadd.txt"), "w") as zadd:
    for i in range(count):
        end = now - span + i * span // count
        record = json.dumps({"user": f"user{i % 40}", "gpu_id": i % 8, "start_time": end - 3600,
                             "end_time": end, "duration_seconds": 3600.0,
                             "reservation_type": "run"}, separators=(",", ":"))
        month = time.strftime("%Y-%m", time.gmtime(end))
        months.setdefault(month, []).append(record)
        single.append(record)
        zadd.write("ZADD canhazgpu:usage_history_sorted %d '%s'\n" % (end, record))
for month, records in months.items():
    with open(os.path.join(work, "monthly", f"history-{month}.jsonl"), "w") as f:
        f.write("\n".join(records) + "\n")
with open(os.path.join(work, "single", "history.jsonl"), "w") as f:
    f.write("\n".join(single) + "\n")
PY

fresh_file_store() { # name [history dir to copy in] -> store URL
    local dir=$work/store-$1
    CANHAZGPU_STORE=file://$dir "$bin" admin --gpus 8 >/dev/null
    [[ -n ${2:-} ]] && cp "$2"/history* "$dir"/
    echo "file://$dir"
}

file_empty=$(CANHAZGPU_STORE=$(fresh_file_store empty) mean_ms "$bin run --gpus 1 -- true")
file_monthly=$(CANHAZGPU_STORE=$(fresh_file_store monthly "$work/monthly") \
    mean_ms "$bin run --gpus 1 -- true")
file_single=$(CANHAZGPU_STORE=$(fresh_file_store single "$work/single") \
    mean_ms "$bin run --gpus 1 -- true")
CANHAZGPU_STORE=$redis_store "$bin" admin --gpus 8 >/dev/null
redis_empty=$(CANHAZGPU_STORE=$redis_store mean_ms "$bin run --gpus 1 -- true")
redis-cli -s "$work/redis.sock" DEL canhazgpu:usage_history_sorted >/dev/null
redis-cli -s "$work/redis.sock" <"$work/zadd.txt" >/dev/null
redis_full=$(CANHAZGPU_STORE=$redis_store mean_ms "$bin run --gpus 1 -- true")

echo "| measurement | result | target |"
echo "|---|---|---|"
echo "| run -- true, embedded store, no history | ${file_empty} ms | |"
echo "| run -- true, embedded store, 400k records in monthly files | ${file_monthly} ms ($(ratio "$file_monthly" "$file_empty")x) | at most 1.5x |"
echo "| run -- true, embedded store, 400k records in the old history.jsonl | ${file_single} ms ($(ratio "$file_single" "$file_empty")x) | at most 1.5x |"
echo "| run -- true, Redis, no history | ${redis_empty} ms | |"
echo "| run -- true, Redis, 400k records | ${redis_full} ms ($(ratio "$redis_full" "$redis_empty")x) | at most 1.5x |"
