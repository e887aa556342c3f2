"""Batch mode: runs/s of a hand-written DataLoader loop, `harness run --no-batch`
(every run alone), `harness run` (the default: batch mode) and `harness run
--batch` on the same trainings, each timed as a whole process.

    python benchmarks/batched.py [--workload mlp|cnn|all] [--lrs 4] [--seeds 10]
                                 [--sides loop,alone,default,batch,record] [--repeats 1]
                                 [--epochs N] [--device cpu|cuda]

Workloads (issue #14, #25): Adam with ``--lrs`` learning rates (4: 1e-3, 3e-3,
1e-2, 3e-2; otherwise spaced geometrically over that range) x ``--seeds``
seeds (40 runs by default; ``--lrs 16`` gives the 160-run sweep), batch 32,
validation loss and accuracy every epoch, best epoch on validation loss,
test accuracy; ``mlp``: breast_cancer, MLP 30-64-64-2, 100 epochs; ``cnn``:
digits as 1x8x8 images, the built-in cnn (conv 16-32 with batch norm, head
64), 20 epochs (the cnn trains alone by default: its side ``batch`` is
``harness run --batch``).  Every side is a fresh interpreter (start-up and
imports included); the harness sides write to an MLflow sqlite store whose
schema exists already.  Wall time depends on how loaded the machine is, so
the table also gives each process's CPU time (user + sys) and the load
average.  For each harness run it splits the wall time (``wall_split``):
training, evaluation, start-up with imports and data, waiting for the runs'
MLflow writes to end, the end-of-run report, and exit.

The side ``record`` is the floor the store puts under a harness run: a whole
process that records the same runs in the same store (tags, params, every
epoch's three metrics, the final metrics, the end) in the fewest MLflow calls
(each run's rows in its end's batch), with no training; the hand-written loop
records nothing.

For the mlp it also prints the distance to the FLOP limit: the training's
matmul FLOPs (forward, backward, validation) at the rate this process
measures for a 1024x1024 matmul and for the group's own small batched
matmuls, against the training time the batched run logged.
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
BATCH = 32
SUITE = """\
name: batched_bench
task: classification
rank_by: accuracy
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
EPOCHS, LRS, SEEDS, DEV = {epochs}, {lrs}, {seeds}, {device!r}
{data}
for seed in range(SEEDS):
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
    Xtr, Xva, ytr, yva = train_test_split(Xtr, ytr, test_size=0.25, stratify=ytr,
                                          random_state=seed)
    axes = (0,) if Xtr.ndim == 2 else (0, 2, 3)  # per feature, or per image channel
    mean, std = Xtr.mean(axes, keepdims=True), Xtr.std(axes, keepdims=True) + 1e-12
    Xtr, Xva, Xte = (torch.tensor((a - mean) / std, dtype=torch.float32, device=DEV)
                     for a in (Xtr, Xva, Xte))
    ytr, yva_t = torch.tensor(ytr, device=DEV), torch.tensor(yva, device=DEV)
    for lr in LRS:
        torch.manual_seed(seed)
        model = {model}
        model = model.to(DEV)
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
                np.mean(logits.argmax(1).cpu().numpy() == yva)
            if vloss < best:
                best, state = vloss, copy.deepcopy(model.state_dict())
        model.load_state_dict(state)
        with torch.no_grad():
            np.mean(model(Xte).argmax(1).cpu().numpy() == yte)
"""


RECORD = """\
import sys
from harness.runner import make_plan
from harness.tracking import MlflowRunLogger

EPOCHS, uri = {epochs}, sys.argv[1]
for spec in make_plan("suite.yaml", uri).runs:
    lg = MlflowRunLogger(uri, spec, {{}})
    for e in range(EPOCHS):
        lg.log_metrics({{"train/loss": 1 / (e + 1), "val/loss": 1 / (e + 2),
                        "val/accuracy": 0.9}}, step=e)
    lg.log_metrics({{"train/best_epoch": 9, "test/accuracy": 0.9, "time/train_s": 0.1,
                    "time/eval_s": 0.01}})
    lg.end("finished")  # the rows go with the end: the fewest MLflow calls
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


#: side -> (label, harness flags; None for a script: ``SCRIPTS``)
SIDES = {"loop": ("hand-written DataLoader loop", None),
         "record": ("its MLflow writes alone, no training", None),
         "alone": ("harness run --no-batch", ["--no-batch"]),
         "default": ("harness run (batch mode, the default)", []),
         "batch": ("harness run --batch", ["--batch"])}


#: sides that run a script of their own (given the store's URI when they write one)
SCRIPTS = {"loop": "loop.py", "record": "record.py"}


def learning_rates(n: int) -> list[float]:
    """The sweep's learning rates: ``LRS`` for 4, else ``n`` spaced
    geometrically from 1e-3 to 3e-2."""
    if n == len(LRS):
        return list(LRS)
    return [float(f"{1e-3 * 30 ** (i / max(n - 1, 1)):.4g}") for i in range(n)]


def measure(workload: str, epochs: int, args, tmp: Path, env: dict) -> dict[str, list]:
    """Time the chosen sides of one workload ``args.repeats`` times."""
    from harness.tracking import prepare_store

    dataset, model, data, loop_model, _ = WORKLOADS[workload]
    lrs = learning_rates(args.lrs)
    work = tmp / workload
    work.mkdir()
    (work / "loop.py").write_text(LOOP.format(threads=args.threads, epochs=epochs, lrs=lrs,
                                              seeds=args.seeds, data=data, device=args.device,
                                              model=loop_model.strip()))
    (work / "suite.yaml").write_text(SUITE.format(seeds=args.seeds, epochs=epochs, lrs=lrs,
                                                  dataset=dataset, model=model))
    (work / "record.py").write_text(RECORD.format(epochs=epochs))
    template = work / "template.db"
    prepare_store(f"sqlite:///{template}", "batched_bench")
    harness = [sys.executable, "-m", "harness.cli", "run", "suite.yaml", "-q",
               "--device", args.device, "--tracking-uri"]
    extra = [f"--max-group={args.max_group}"] if args.max_group else []
    results: dict[str, list] = {side: [] for side in args.sides}
    for r in range(args.repeats):
        for side in args.sides:
            flags = SIDES[side][1]
            db = work / f"{side}{r}.db"
            if side != "loop":  # every other side writes this store
                shutil.copy(template, db)
            if flags is None:
                store = [f"sqlite:///{db}"] if side == "record" else []
                results[side].append(timed([sys.executable, SCRIPTS[side], *store], work, env))
                continue
            wall, cpu, started = timed([*harness, f"sqlite:///{db}", *flags,
                                        *(extra if side != "alone" else [])], work, env)
            results[side].append((wall, cpu, wall_split(db, started, wall)))
    return results


def flop_limit(epochs: int, n_runs: int, threads: int) -> dict[str, float]:
    """The mlp workload's matmul FLOPs and the seconds they take at this
    process's measured rates: ``peak`` (a 1024x1024 float32 matmul) and
    ``small`` (the group's own forward and backward batched matmuls, R runs
    of batch 32, timed with the harness's ``DirectMLP`` arithmetic)."""
    import torch

    from harness.plugins import get_registry
    from harness_plugins.classification.prepare import prepare_dataset

    torch.set_num_threads(threads)
    entry = {"source": "sklearn", "params": {"name": "breast_cancer"}, "transforms": [],
             "split": {"val": 0.2, "test": 0.2}, "label": "breast_cancer"}
    d = prepare_dataset(entry, 0, registry=get_registry())
    n_train, n_val, n_in = len(d.y_train), len(d.y_val), d.X_train.shape[1]
    dims = [n_in, 64, 64, 2]
    macs = sum(a * b for a, b in zip(dims, dims[1:]))  # per sample
    # forward 2 MACs, weight gradient 2, input gradient 2 (none for layer 1)
    train = (6 * macs - 2 * dims[0] * dims[1]) * n_train * epochs * n_runs
    flops = train + 2 * macs * n_val * epochs * n_runs

    def rate(fn, flop: float) -> float:
        fn()
        start, reps = time.perf_counter(), 0
        while time.perf_counter() - start < 1.0:
            fn()
            reps += 1
        return flop * reps / (time.perf_counter() - start)

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    peak = rate(lambda: a @ b, 2 * 1024 ** 3)
    ws = [torch.randn(n_runs, o, i, requires_grad=True) for i, o in zip(dims, dims[1:])]
    x = torch.randn(n_runs, BATCH, n_in)

    def step():
        h = x
        for k, w in enumerate(ws):
            h = torch.bmm(h, w.transpose(1, 2))
            if k < len(ws) - 1:
                h = h.relu()
        h.sum().backward()

    small = rate(step, (6 * macs - 2 * dims[0] * dims[1]) * BATCH * n_runs)
    return {"flops": flops, "peak": peak, "small": small}


def report(workload: str, epochs: int, results: dict, args, loads: list) -> None:
    """Print one workload's table and the wall-time split of the harness runs."""
    from tabulate import tabulate

    n_runs = args.seeds * args.lrs
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for k, v in results.items()}
    base = "loop" if "loop" in med else next(iter(med))
    base_wall, base_cpu = med[base]
    rows = [[SIDES[side][0], f"{wall:.1f}", f"{n_runs / wall:.2f}", f"{base_wall / wall:.2f}",
             f"{cpu:.1f}", f"{base_cpu / cpu:.2f}"] for side, (wall, cpu) in med.items()]
    what = {"mlp": "breast_cancer MLP 64-64", "cnn": "digits 8x8 images, cnn 16-32"}[workload]
    print(f"\n{n_runs} runs ({args.seeds} seeds x {args.lrs} lr), {what}, {epochs} epochs, "
          f"batch 32, {args.threads} torch thread(s), {args.device}; whole processes, median "
          f"of {args.repeats}; load average {min(loads):.1f}-{max(loads):.1f} on "
          f"{os.cpu_count()} cores")
    print(tabulate(rows, headers=["what", "wall s", "runs/s", f"x {base} (wall)", "CPU s",
                                  f"x {base} (CPU)"]))
    splits = {}
    for side in med:
        if SIDES[side][1] is None:
            continue
        wall, _, split = sorted(results[side], key=lambda x: x[0])[len(results[side]) // 2]
        splits[side] = split
        parts = " + ".join(f"{k} {v:.1f}" for k, v in split.items())
        print(f"{SIDES[side][0]}: wall {wall:.1f} s = {parts}")
    grouped = splits.get("default") if workload == "mlp" else None
    if grouped is not None and args.device == "cpu":
        lim = flop_limit(epochs, n_runs, args.threads)
        at_peak, at_small = lim["flops"] / lim["peak"], lim["flops"] / lim["small"]
        print(f"FLOP limit: {lim['flops'] / 1e9:.1f} GFLOP of matmuls = {at_peak:.2f} s at "
              f"{lim['peak'] / 1e9:.0f} GFLOP/s (1024x1024 matmul), {at_small:.2f} s at "
              f"{lim['small'] / 1e9:.0f} GFLOP/s (the group's own batched matmuls, forward "
              f"+ backward); the batched training took {grouped['training']:.1f} s: "
              f"{grouped['training'] / at_small:.1f}x the small-matmul limit, "
              f"{grouped['training'] / at_peak:.0f}x the peak limit")


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: 100 for mlp, 20 for cnn")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--lrs", type=int, default=len(LRS), help="learning rates per seed")
    parser.add_argument("--sides", default=None, help=f"comma-separated, of {', '.join(SIDES)} "
                        "(default: loop,alone,default; the cnn adds batch)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    parser.add_argument("--max-group", type=int, default=None)
    args = parser.parse_args()
    from bytecode import compile_checkout

    compile_checkout()  # fresh processes load bytecode, as an installed package does
    env = {**os.environ, "HARNESS_TORCH_THREADS": str(args.threads),
           "OMP_NUM_THREADS": str(args.threads)}
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]
    with tempfile.TemporaryDirectory() as tmp:
        for workload in workloads:
            epochs = args.epochs or WORKLOADS[workload][4]
            sides = args.sides or ("loop,alone,default" + (",batch" if workload == "cnn" else ""))
            args_w = argparse.Namespace(**{**vars(args), "sides": sides.split(",")})
            unknown = set(args_w.sides) - set(SIDES)
            if unknown:
                parser.error(f"unknown side(s) {', '.join(sorted(unknown))}")
            loads = [os.getloadavg()[0]]
            results = measure(workload, epochs, args_w, Path(tmp), env)
            loads.append(os.getloadavg()[0])
            report(workload, epochs, results, args_w, loads)


if __name__ == "__main__":
    main()
