#!/usr/bin/env bash
# Benchmarks of the shell integration (issue 3), with hyperfine:
#   1. what `eval "$(canhazgpu init zsh)"` adds to an interactive zsh start
#      (`zsh -i -c exit` with and without it; target: under 5 ms more), and what
#      `source`-ing the same script from a file adds (the Debian package installs it as
#      /usr/share/canhazgpu/init.zsh, so that no process runs at shell start);
#   2. what `canhazgpu prompt` costs a prompt, against /bin/true (target: within 3x),
#      for a shell that holds GPUs (one snapshot read of the store) and one that
#      holds none (no store at all).
#
# Usage: bench/shell.sh [path/to/canhazgpu]
# Without an argument it builds and uses target/release/canhazgpu. It
# works in a temporary embedded store and a temporary ZDOTDIR; nothing else is touched.
# Extra hyperfine options can be passed in HYPERFINE_OPTS (e.g. "--export-json x.json").

set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh
need hyperfine zsh
bench_setup "$@"
bindir=$(dirname "$bin")

# A private pool and environment, so that the numbers do not depend on the host's.
export PATH="$bindir:$PATH"
export XDG_RUNTIME_DIR="$work/run"
mkdir -m 700 "$XDG_RUNTIME_DIR"
unset CUDA_VISIBLE_DEVICES NVIDIA_VISIBLE_DEVICES CUDA_DEVICE_ORDER CANHAZGPU_OWNER_PID CANHAZGPU_GPUS \
  CANHAZGPU_DEVICES CANHAZGPU_EXPIRES CANHAZGPU_LEASE CANHAZGPU_SHELL_STORE CANHAZGPU_RESTORE
private_store

echo "== zsh start with and without the shell integration ($(zsh --version))"
mkdir "$work/plain" "$work/init" "$work/source"
: >"$work/plain/.zshrc"
# shellcheck disable=SC2016 # zsh expands it, not this script
printf '%s\n' 'eval "$(canhazgpu init zsh)"' >"$work/init/.zshrc"
canhazgpu init zsh >"$work/init.zsh"
printf 'source %s\n' "$work/init.zsh" >"$work/source/.zshrc"
hyperfine_saved shell-zsh -N --warmup 5 --min-runs 50 \
  -n 'zsh -i -c exit' "env ZDOTDIR=$work/plain zsh -i -c exit" \
  -n 'zsh -i -c exit, with init' "env ZDOTDIR=$work/init zsh -i -c exit" \
  -n 'zsh -i -c exit, with source init.zsh' "env ZDOTDIR=$work/source zsh -i -c exit"

echo
echo "== canhazgpu prompt against /bin/true"
# A shell that holds two GPUs and stays alive while we measure; `exec` keeps its pid
# and start time, so the reservation stays bound to a live process.
bash --norc --noprofile -c '
  eval "$(canhazgpu init bash)"
  canhazgpu reserve --gpus 2 --duration 1h 2>/dev/null
  printf "%s\n" "$$" >"'"$work"'/holder"
  exec sleep 600' &
holder=$!
background+=("$holder")
for _ in $(seq 100); do
  [ -s "$work/holder" ] && break
  sleep 0.05
done
if [ ! -s "$work/holder" ]; then
  die "the holder shell did not reserve; see the messages above"
fi
echo "prompt of a shell that holds GPUs: $(CANHAZGPU_OWNER_PID=$holder canhazgpu prompt)"
# The variable is set for both commands, so that neither pays for setting it.
CANHAZGPU_OWNER_PID=$holder hyperfine_saved shell-prompt-holds -N --warmup 20 --min-runs 200 \
  -n '/bin/true' '/bin/true' \
  -n 'canhazgpu prompt (holds GPUs: reads the store)' "$bindir/canhazgpu prompt"
hyperfine_saved shell-prompt-none -N --warmup 20 --min-runs 200 \
  -n '/bin/true' '/bin/true' \
  -n 'canhazgpu prompt (holds none: no store)' "$bindir/canhazgpu prompt"
