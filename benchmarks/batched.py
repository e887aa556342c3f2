"""Batch mode: runs/s of a hand-written DataLoader loop, `harness run` and
`harness run --batch` on the same 40 trainings, each timed as a whole process.

    python benchmarks/batched.py [--repeats 1] [--epochs 100] [--threads 1]

Workload (issue #14): breast_cancer, MLP 30-64-64-2, Adam with lr in
{1e-3, 3e-3, 1e-2, 3e-2} x 10 seeds = 40 runs, 100 epochs, batch 32,
validation loss and accuracy every epoch, best epoch on validation loss,
test accuracy.  Every side is a fresh interpreter (start-up and imports
included); the harness sides write to an MLflow sqlite store whose schema
exists already.  Wall time depends on how loaded the machine is, so the
table also gives each process's CPU time (user + sys) and the load average.
For the batched run it splits the wall time into training, evaluation
(``time/train_s``, ``time/eval_s`` summed over the runs) and the rest
(interpreter, imports, planning, data, MLflow writes).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LRS = (1e-3, 3e-3, 1e-2, 3e-2)
SEEDS = 10
SUITE = """\
name: batched_bench
seeds: {seeds}
datasets: [{{sklearn: breast_cancer}}]
model: {{name: mlp, hidden: [64, 64]}}
loss: cross_entropy
training: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: adam, lr: 0.001}}}}
methods: {{adam: {{}}}}
sweep: {{adam: {{training.optimizer.lr: {lrs}}}}}
metrics: [accuracy]
"""

LOOP = """\
import copy, sys
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

torch.set_num_threads({threads})
EPOCHS, LRS, SEEDS = {epochs}, {lrs}, {seeds}
X, y = load_breast_cancer(return_X_y=True)
for seed in range(SEEDS):
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
    Xtr, Xva, ytr, yva = train_test_split(Xtr, ytr, test_size=0.25, stratify=ytr,
                                          random_state=seed)
    sc = StandardScaler().fit(Xtr)
    Xtr, Xva, Xte = (torch.tensor(sc.transform(a), dtype=torch.float32) for a in (Xtr, Xva, Xte))
    ytr, yva_t = torch.tensor(ytr), torch.tensor(yva)
    for lr in LRS:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                              nn.Linear(64, 2))
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        loader = DataLoader(TensorDataset(Xtr, ytr), batch_size=32, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        best, state = float("inf"), None
        for _ in range(EPOCHS):
            model.train()
            for xb, yb in loader:
                opt.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                logits = model(Xva)
                vloss = float(F.cross_entropy(logits, yva_t))
                np.mean(logits.argmax(1).numpy() == yva)
            if vloss < best:
                best, state = vloss, copy.deepcopy(model.state_dict())
        model.load_state_dict(state)
        with torch.no_grad():
            np.mean(model(Xte).argmax(1).numpy() == yte)
"""


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def run_times(db: Path) -> tuple[float, float, int]:
    """Sum of ``time/train_s`` and ``time/eval_s`` over the runs, and their count."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT key, SUM(value), COUNT(*) FROM latest_metrics "
                           "WHERE key IN ('time/train_s', 'time/eval_s') GROUP BY key").fetchall()
    finally:
        con.close()
    sums = {k: (v, n) for k, v, n in rows}
    return sums["time/train_s"][0], sums["time/eval_s"][0], sums["time/train_s"][1]


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--max-group", type=int, default=None)
    args = parser.parse_args()
    from tabulate import tabulate

    from harness.tracking import prepare_store

    n_runs = SEEDS * len(LRS)
    env = {**os.environ, "HARNESS_TORCH_THREADS": str(args.threads),
           "OMP_NUM_THREADS": str(args.threads)}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "loop.py").write_text(LOOP.format(threads=args.threads, epochs=args.epochs,
                                                 lrs=LRS, seeds=SEEDS))
        (tmp / "suite.yaml").write_text(SUITE.format(seeds=SEEDS, epochs=args.epochs,
                                                     lrs=list(LRS)))
        template = tmp / "template.db"
        prepare_store(f"sqlite:///{template}", "batched_bench")
        harness = [sys.executable, "-m", "harness.cli", "run", "suite.yaml", "--tracking-uri"]
        batch_flags = ["--batch"] + ([f"--max-group={args.max_group}"] if args.max_group else [])
        results: dict[str, list] = {"loop": [], "harness": [], "batched": []}
        for r in range(args.repeats):
            results["loop"].append(timed([sys.executable, "loop.py"], tmp, env))
            for side, flags in (("harness", []), ("batched", batch_flags)):
                db = tmp / f"{side}{r}.db"
                shutil.copy(template, db)
                results[side].append((*timed([*harness, f"sqlite:///{db}", *flags], tmp, env),
                                      *run_times(db)))
            loads.append(os.getloadavg()[0])
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for k, v in results.items()}
    loop_wall, loop_cpu = med["loop"]
    rows = []
    labels = {"loop": "hand-written DataLoader loop", "harness": "harness run",
              "batched": "harness run --batch"}
    for side, (wall, cpu) in med.items():
        rows.append([labels[side], f"{wall:.1f}", f"{n_runs / wall:.2f}", f"{loop_wall / wall:.2f}",
                     f"{cpu:.1f}", f"{loop_cpu / cpu:.2f}"])
    print(f"{n_runs} runs ({SEEDS} seeds x {len(LRS)} lr), breast_cancer MLP 64-64, "
          f"{args.epochs} epochs, batch 32, {args.threads} torch thread(s); whole processes, "
          f"median of {args.repeats}; load average {min(loads):.1f}-{max(loads):.1f} "
          f"on {os.cpu_count()} cores")
    print(tabulate(rows, headers=["what", "wall s", "runs/s", "x loop (wall)", "CPU s",
                                  "x loop (CPU)"]))
    for side in ("harness", "batched"):
        wall, _, train, evaluate, n = results[side][len(results[side]) // 2]
        print(f"{labels[side]}: wall {wall:.1f} s = training {train:.1f} + evaluation "
              f"{evaluate:.1f} + the rest {wall - train - evaluate:.1f} "
              f"(interpreter, imports, planning, data, MLflow writes; {n} runs)")


if __name__ == "__main__":
    main()
