"""Batch mode: runs/s of a hand-written DataLoader loop, `harness run` and
`harness run --batch` on the same 40 trainings, each timed as a whole process.

    python benchmarks/batched.py [--workload mlp|cnn|all] [--repeats 1] [--epochs N]

Workloads (issue #14): Adam with lr in {1e-3, 3e-3, 1e-2, 3e-2} x 10 seeds =
40 runs, batch 32, validation loss and accuracy every epoch, best epoch on
validation loss, test accuracy; ``mlp``: breast_cancer, MLP 30-64-64-2, 100
epochs; ``cnn``: digits as 1x8x8 images, the built-in cnn (conv 16-32 with
batch norm, head 64), 20 epochs.  Every side is a fresh interpreter (start-up and imports
included); the harness sides write to an MLflow sqlite store whose schema
exists already.  Wall time depends on how loaded the machine is, so the
table also gives each process's CPU time (user + sys) and the load average.
For each harness run it splits the wall time (``wall_split``): training,
evaluation, start-up with imports and data, waiting for the runs' MLflow
writes to end, the end-of-run report, and exit.
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
datasets: [{dataset}]
model: {model}
loss: cross_entropy
training: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: adam, lr: 0.001}}}}
methods: {{adam: {{}}}}
sweep: {{adam: {{training.optimizer.lr: {lrs}}}}}
metrics: [accuracy]
"""

#: workload -> (suite dataset, suite model, loop data code, loop model code, default epochs)
WORKLOADS = {
    "mlp": ("{sklearn: breast_cancer}", "{name: mlp, hidden: [64, 64]}", """\
X, y = load_breast_cancer(return_X_y=True)
""", """\
nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
""", 100),
    "cnn": ("{sklearn: {name: digits, as_image: true}}", "{name: cnn}", """\
X, y = load_digits(return_X_y=True)
X = X.reshape(-1, 1, 8, 8)
""", """\
nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
              nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 64), nn.ReLU(),
              nn.Linear(64, 10))
""", 20),
}

LOOP = """\
import copy, sys
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

torch.set_num_threads({threads})
EPOCHS, LRS, SEEDS = {epochs}, {lrs}, {seeds}
{data}
for seed in range(SEEDS):
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
    Xtr, Xva, ytr, yva = train_test_split(Xtr, ytr, test_size=0.25, stratify=ytr,
                                          random_state=seed)
    axes = (0,) if Xtr.ndim == 2 else (0, 2, 3)  # per feature, or per image channel
    mean, std = Xtr.mean(axes, keepdims=True), Xtr.std(axes, keepdims=True) + 1e-12
    Xtr, Xva, Xte = (torch.tensor((a - mean) / std, dtype=torch.float32) for a in (Xtr, Xva, Xte))
    ytr, yva_t = torch.tensor(ytr), torch.tensor(yva)
    for lr in LRS:
        torch.manual_seed(seed)
        model = {model}
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


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float, float]:
    """(wall s, CPU s of the child, unix start time) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, started


def wall_split(db: Path, started: float, wall: float) -> dict[str, float]:
    """Where a harness process's wall time went, read from its MLflow store:
    ``training`` and ``evaluation`` (``time/train_s`` and ``time/eval_s`` summed
    over the runs), ``start, imports, data`` (the rest until the last run's
    test metrics were logged), ``ending runs`` (until the last run was
    terminated in the store: the MLflow writes the process waited for),
    ``report`` (until the suite-level run ended) and ``exit``."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        def one(sql: str) -> float:
            return float(con.execute(sql).fetchone()[0] or 0)

        keyed = "SELECT run_uuid FROM tags WHERE key = 'harness.run_key'"
        train = one("SELECT SUM(value) FROM latest_metrics WHERE key = 'time/train_s'")
        evaluate = one("SELECT SUM(value) FROM latest_metrics WHERE key = 'time/eval_s'")
        # test metrics are stamped by the training process when it logs them
        tested = one(f"SELECT MAX(timestamp) FROM metrics WHERE key LIKE 'test/%' "
                     f"AND run_uuid IN ({keyed})") / 1000
        ended = one(f"SELECT MAX(end_time) FROM runs WHERE run_uuid IN ({keyed})") / 1000
        reported = one("SELECT MAX(end_time) FROM runs WHERE run_uuid IN (SELECT run_uuid "
                       "FROM tags WHERE key = 'harness.kind' AND value = 'suite')") / 1000
    finally:
        con.close()
    return {"training": train, "evaluation": evaluate,
            "start, imports, data": tested - started - train - evaluate,
            "ending runs": ended - tested, "report": reported - ended,
            "exit": started + wall - reported}


def measure(workload: str, epochs: int, args, tmp: Path, env: dict) -> dict[str, list]:
    """Time the three sides of one workload ``args.repeats`` times."""
    from harness.tracking import prepare_store

    dataset, model, data, loop_model, _ = WORKLOADS[workload]
    work = tmp / workload
    work.mkdir()
    (work / "loop.py").write_text(LOOP.format(threads=args.threads, epochs=epochs, lrs=LRS,
                                              seeds=SEEDS, data=data, model=loop_model.strip()))
    (work / "suite.yaml").write_text(SUITE.format(seeds=SEEDS, epochs=epochs, lrs=list(LRS),
                                                  dataset=dataset, model=model))
    template = work / "template.db"
    prepare_store(f"sqlite:///{template}", "batched_bench")
    harness = [sys.executable, "-m", "harness.cli", "run", "suite.yaml", "--tracking-uri"]
    batch_flags = ["--batch"] + ([f"--max-group={args.max_group}"] if args.max_group else [])
    results: dict[str, list] = {"loop": [], "harness": [], "batched": []}
    for r in range(args.repeats):
        results["loop"].append(timed([sys.executable, "loop.py"], work, env))
        for side, flags in (("harness", []), ("batched", batch_flags)):
            db = work / f"{side}{r}.db"
            shutil.copy(template, db)
            wall, cpu, started = timed([*harness, f"sqlite:///{db}", *flags], work, env)
            results[side].append((wall, cpu, wall_split(db, started, wall)))
    return results


def report(workload: str, epochs: int, results: dict, args, loads: list) -> None:
    """Print one workload's table and the wall-time split of the harness runs."""
    from tabulate import tabulate

    n_runs = SEEDS * len(LRS)
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for k, v in results.items()}
    loop_wall, loop_cpu = med["loop"]
    labels = {"loop": "hand-written DataLoader loop", "harness": "harness run",
              "batched": "harness run --batch"}
    rows = [[labels[side], f"{wall:.1f}", f"{n_runs / wall:.2f}", f"{loop_wall / wall:.2f}",
             f"{cpu:.1f}", f"{loop_cpu / cpu:.2f}"] for side, (wall, cpu) in med.items()]
    what = {"mlp": "breast_cancer MLP 64-64", "cnn": "digits 8x8 images, cnn 16-32"}[workload]
    print(f"\n{n_runs} runs ({SEEDS} seeds x {len(LRS)} lr), {what}, {epochs} epochs, "
          f"batch 32, {args.threads} torch thread(s); whole processes, median of "
          f"{args.repeats}; load average {min(loads):.1f}-{max(loads):.1f} on "
          f"{os.cpu_count()} cores")
    print(tabulate(rows, headers=["what", "wall s", "runs/s", "x loop (wall)", "CPU s",
                                  "x loop (CPU)"]))
    for side in ("harness", "batched"):
        wall, _, split = sorted(results[side], key=lambda x: x[0])[len(results[side]) // 2]
        parts = " + ".join(f"{k} {v:.1f}" for k, v in split.items())
        print(f"{labels[side]}: wall {wall:.1f} s = {parts}")


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: 100 for mlp, 20 for cnn")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--max-group", type=int, default=None)
    args = parser.parse_args()
    env = {**os.environ, "HARNESS_TORCH_THREADS": str(args.threads),
           "OMP_NUM_THREADS": str(args.threads)}
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]
    with tempfile.TemporaryDirectory() as tmp:
        for workload in workloads:
            epochs = args.epochs or WORKLOADS[workload][4]
            loads = [os.getloadavg()[0]]
            results = measure(workload, epochs, args, Path(tmp), env)
            loads.append(os.getloadavg()[0])
            report(workload, epochs, results, args, loads)


if __name__ == "__main__":
    main()
