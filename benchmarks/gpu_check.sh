#!/usr/bin/env bash
# One GPU, under 5 minutes: ResNet-18 on a CIFAR-shaped epoch (generated
# images written in CIFAR-10's python format, 45000 train after the 10%
# validation hold-out), harness vs the hand-written loop of
# benchmarks/images.py, then batch mode with 8 seeds on a 10000-image split.
# Prints each table, and the peak GPU memory nvidia-smi saw per phase.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
#   CIFAR=DIR bash benchmarks/gpu_check.sh  # DIR holds the real cifar-10-batches-py/
#   bash benchmarks/gpu_check.sh batch      # only batch mode's part (images: only the images')
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
part=${1:-all}  # all | images | batch: each part stays under 5 minutes on its own
if [[ $part != batch ]]; then
phase single --n-train 50000 --epochs 1 --width 64 "${data[@]}"
phase batch8 --n-train 10000 --epochs 1 --width 64 --seeds 8
fi
if [[ $part == images ]]; then exit 0; fi

# --- batch mode (issue #25): groups of 8/32/128 MLP runs and 8 cnn runs -----
# benchmarks/batched.py on CUDA, 20 epochs: hand-written loop, every run
# alone (--no-batch) and the default (one group); the cnn also with --batch
# (it trains alone by default).  Then the automatic halving: a group of 64
# MLP runs on a device capped at a sliver of its memory must end as runs
# trained in halves (harness.error of the first attempt: "ran out of memory").
batch_phase() {  # batch_phase NAME SECONDS ARGS...: benchmarks/batched.py with GPU memory sampled
  local name=$1 limit=$2; shift 2
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 \
    > "$out/mem_$name.csv" &
  local smi=$!
  local started=$SECONDS
  timeout "$limit" python benchmarks/batched.py --device cuda --epochs 20 "$@" \
    | tee "$out/$name.txt" || echo "$name: stopped after ${limit}s"
  kill "$smi" 2>/dev/null || true
  wait "$smi" 2>/dev/null || true
  echo "$name: peak GPU memory used $(sort -n "$out/mem_$name.csv" | tail -1) MiB" \
       "(whole device), $((SECONDS - started)) s"
}
batch_phase mlp8 40 --workload mlp --seeds 2 --lrs 4
batch_phase mlp32 50 --workload mlp --seeds 8 --lrs 4
batch_phase mlp128 60 --workload mlp --seeds 8 --lrs 16 --sides loop,default
batch_phase cnn8 50 --workload cnn --seeds 2 --lrs 4 --epochs 5
timeout 60 python - <<'PY' | tee "$out/halving.txt" || echo "halving: stopped after 60s"
# a group of 64 runs on a device capped at 0.3% of its memory: the first
# attempt runs out of memory and is retrained in halves, down to what fits
import sqlite3, tempfile, torch
from pathlib import Path
from harness.cli import main

torch.cuda.set_per_process_memory_fraction(0.003)
tmp = Path(tempfile.mkdtemp())
(tmp / "s.yaml").write_text("""name: halving
task: classification
seeds: 8
datasets: [{synthetic: {n_samples: 20000, n_features: 256}}]
model: {name: mlp, hidden: [1024, 1024]}
training: {epochs: 1, batch_size: 4096, optimizer: {name: adam, lr: 1.0e-3}}
methods: {adam: {}}
sweep: {adam: {training.optimizer.lr: [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2, 0.1, 0.3]}}
metrics: [accuracy]
rank_by: accuracy
""")
db = tmp / "m.db"
code = main(["run", str(tmp / "s.yaml"), "--device", "cuda", "-q", "--tracking-uri",
             f"sqlite:///{db}"])
con = sqlite3.connect(db)
rows = con.execute("SELECT s.value, count(*) FROM tags s WHERE s.key = 'harness.status' "
                   "GROUP BY s.value").fetchall()
notes = con.execute("SELECT DISTINCT value FROM tags WHERE key = 'harness.error' AND value "
                    "LIKE '%ran out of memory%'").fetchall()
print("halving: exit", code, "statuses", rows)
for (note,) in notes:
    print("  ", note)
print("halving:", "OK" if notes and dict(rows).get("finished") == 64 else "NOT SEEN")
PY
