#!/usr/bin/env bash
# The dashboard's figures (issue 12):
#   - requests per second of /api/status and /api/hosts with 1 and 100 hosts of 8 GPUs
#     (each host its own embedded store, served through the dashboard's test seam, as the
#     multi-host reading will serve them), from 4 client threads, a new connection each;
#   - memory (RSS) of `canhazgpu web` idle and with 100 open event streams.
# `status` and `prompt` against /bin/true are bench/core.sh's and bench/shell.sh's rows.
# Needs python3 and cargo (the request figures come from an ignored test built in
# release mode). Talks only to 127.0.0.1.
# Usage: bench/web.sh [path/to/canhazgpu]   (default: builds and uses target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
need python3
bench_setup "$@"

echo "| measurement | result | target |"
echo "|---|---|---|"
cargo test --release --quiet --bin canhazgpu web::tests::bench_requests -- --ignored --nocapture \
    2>/dev/null | awk -F' *[|] *' '/^\| \/api/ {
        printf "| %s, %s host(s) of 8 GPUs (%s-byte answers), 4 clients | %s requests/s | |\n",
            $2, $3, $4, $5 }'

private_store
"$bin" web --listen 127.0.0.1:0 >"$work/out" 2>/dev/null &
server_pid=$!
background+=("$server_pid")
for _ in $(seq 100); do grep -q http "$work/out" 2>/dev/null && break; sleep 0.05; done
addr=$(sed -n 's|.*http://\([^/]*\)/.*|\1|p' "$work/out")
python3 - "$addr" "$server_pid" <<'PY'
import socket, sys

host, port = sys.argv[1].rsplit(":", 1)
pid = sys.argv[2]

def rss_mib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

def get(path):
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    while s.recv(65536):
        pass
    s.close()

for _ in range(200):  # warm: every thread has run, the page has been served
    get("/api/hosts")
get("/")
idle = rss_mib()
streams = []
for _ in range(100):
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    streams.append(s)
for s in streams:
    head = b""
    while b"retry:" not in head:
        data = s.recv(4096)
        if not data:
            sys.exit(f"an event stream was refused: {head[:60]!r}")
        head += data
get("/api/hosts")
with_streams = rss_mib()
print(f"| canhazgpu web RSS, idle after 200 requests | {idle:.1f} MiB | |")
print(f"| canhazgpu web RSS, 100 open event streams | {with_streams:.1f} MiB "
      f"(+{with_streams - idle:.2f} MiB) | |")
PY
