#!/usr/bin/env bash
# One GPU, under 5 minutes: ResNet-18 on a CIFAR-shaped epoch (generated
# images written in CIFAR-10's python format, 45000 train after the 10%
# validation hold-out), harness vs the hand-written loop of
# benchmarks/images.py, then batch mode with 8 seeds on a 10000-image split.
# Prints each table, and the peak GPU memory nvidia-smi saw per phase.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
#   CIFAR=DIR bash benchmarks/gpu_check.sh  # DIR holds the real cifar-10-batches-py/
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

phase() {  # phase NAME ARGS...: run benchmarks/images.py, sampling GPU memory every 200 ms
  local name=$1; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 \
    > "$out/mem_$name.csv" &
  local smi=$!
  local started=$SECONDS
  timeout 150 python benchmarks/images.py --device cuda --repeats 1 "$@" | tee "$out/$name.txt" || true
  kill "$smi" 2>/dev/null || true
  wait "$smi" 2>/dev/null || true
  echo "$name: peak GPU memory used $(sort -n "$out/mem_$name.csv" | tail -1) MiB" \
       "(whole device), $((SECONDS - started)) s"
}

data=()
if [[ -n "${CIFAR:-}" ]]; then data=(--cifar "$CIFAR"); fi
phase single --n-train 50000 --epochs 1 --width 64 "${data[@]}"
phase batch8 --n-train 10000 --epochs 1 --width 64 --seeds 8
