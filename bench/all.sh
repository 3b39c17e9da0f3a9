#!/usr/bin/env bash
# Every speed figure the issues ask for, measured side by side in one run, as one table
# (docs/PERFORMANCE.md holds the latest). Runs bench/core.sh, bench/history.sh,
# bench/queue.sh, bench/lab.sh, bench/shell.sh, bench/nvml.sh, bench/amd.sh and bench/web.sh
# on the same binary. Needs hyperfine, redis-server, zsh, strace, gcc and python3 (Debian
# packages), and cargo (bench/web.sh builds its request harness in release mode).
# Usage: bench/all.sh [path/to/canhazgpu]   (default: builds and uses target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need hyperfine redis-server zsh strace python3
bench_setup "$@"
# Each script saves hyperfine's results here; the table is made of them.
BENCH_JSON_DIR=$work
export BENCH_JSON_DIR

core=$(bench/core.sh "$bin")
history=$(bench/history.sh "$bin")
queue=$(bench/queue.sh "$bin")
lab=$(bench/lab.sh "$bin")
bench/shell.sh "$bin" >/dev/null 2>&1
bench/nvml.sh "$bin" >/dev/null 2>&1
bench/amd.sh "$bin" >/dev/null 2>&1
web=$(bench/web.sh "$bin")

echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(date -u +%Y-%m-%d)"
echo
echo "| measurement | result | target |"
echo "|---|---|---|"
grep "^| " <<<"$core" | tail -n +2
grep "^| " <<<"$history" | tail -n +2
python3 - "$BENCH_JSON_DIR" "$queue" <<'PY'
import json, os, sys

folder, queue = sys.argv[1], sys.argv[2]

def means(name):
    with open(os.path.join(folder, name + ".json")) as f:
        return [r["mean"] * 1000 for r in json.load(f)["results"]]

zsh_plain, zsh_init, zsh_source = means("shell-zsh")
print(f"| zsh -i -c exit | {zsh_plain:.2f} ms | |")
print(f"| zsh -i -c exit with init | {zsh_init:.2f} ms (+{zsh_init - zsh_plain:.2f} ms) | under +5 ms |")
print(f"| zsh -i -c exit with source init.zsh (Debian package) | {zsh_source:.2f} ms (+{zsh_source - zsh_plain:.2f} ms) | |")
for name, label in [("shell-prompt-holds", "holding GPUs"), ("shell-prompt-none", "holding none")]:
    true_ms, prompt_ms = means(name)
    print(f"| canhazgpu prompt, shell {label} | {prompt_ms:.2f} ms ({prompt_ms / true_ms:.2f}x /bin/true) | within 3x |")
nvml = means("nvml")
without, stub = nvml[0], nvml[-1]
print(f"| status, no NVML | {without:.2f} ms | |")
print(f"| status, stub NVML (8 GPUs, 16 processes) | {stub:.2f} ms (+{stub - without:.2f} ms) | under +5 ms |")
if len(nvml) == 3:
    print(f"| status, real NVIDIA driver | {nvml[1]:.2f} ms | |")
none, amd = means("amd")
print(f"| status, stub AMD SMI (8 GPUs, 16 processes) | {amd:.2f} ms (+{amd - none:.2f} ms) | under +5 ms |")
for line in queue.splitlines()[2:]:
    cells = [c.strip() for c in line.strip("|").split("|")]
    print(f"| {cells[0]}, embedded store | {cells[1]} | |")
    print(f"| {cells[0]}, Redis | {cells[2]} | |")
PY
grep "^| " <<<"$lab" | tail -n +2
grep "^| " <<<"$web" | tail -n +2
