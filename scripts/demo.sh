#!/usr/bin/env bash
# Builds canhazgpu and runs its main job on the embedded store: initialise a pool of 8 GPUs
# in a private directory, then run a command on 2 of them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/canhazgpu
export CANHAZGPU_STORE="file://${TMPDIR:-/tmp}/canhazgpu-demo"
"$bin" admin --gpus 8 --force
# shellcheck disable=SC2016 # expanded by the command's own shell, inside the run
"$bin" run --gpus 2 -- sh -c 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"'
"$bin" status
