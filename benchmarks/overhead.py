"""Harness overhead: the same training through `harness run` and through a
plain PyTorch loop written here, plus start-up time of light commands.

    python benchmarks/overhead.py [--repeats 3]

Same data (breast_cancer, same stratified split and standardisation), model
(MLP 64-64), optimizer (Adam 3e-3), batch 64, 15 epochs, validation accuracy
and loss every epoch, best-epoch selection, test evaluation, 3 seeds.  The
harness side includes MLflow logging (sqlite), config validation and data
preparation; interpreter start-up and imports are excluded on both sides
(both run in this process after a warm-up).  The harness side runs twice:
each run alone (``--no-batch``) and the default (batch mode: the 3 seeds
train as one group).  Then the start-up of light commands, each a fresh
interpreter: ``--help``, ``plugins``, ``plan suites/imbalanced.yaml`` and a
``run`` of the (finished) suite.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH, LR, SEEDS = 64, 3e-3, (0, 1, 2)
SUITE = """\
name: overhead
task: classification
rank_by: accuracy
seeds: {seeds}
datasets: [{{sklearn: breast_cancer}}]
model: {{name: mlp, hidden: [64, 64]}}
loss: cross_entropy
training: {{epochs: {epochs}, batch_size: {batch}, optimizer: {{name: adam, lr: {lr}}}}}
methods: {{ce: {{}}}}
metrics: [accuracy]
"""


def plain_loop(epochs: int) -> float:
    """The hand-written baseline; returns seconds for all seeds."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    for seed in SEEDS:
        X, y = load_breast_cancer(return_X_y=True)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
        Xtr, Xva, ytr, yva = train_test_split(Xtr, ytr, test_size=0.25, stratify=ytr,
                                              random_state=seed)
        sc = StandardScaler().fit(Xtr)
        Xtr, Xva, Xte = (torch.tensor(sc.transform(a), dtype=torch.float32)
                         for a in (Xtr, Xva, Xte))
        ytr, yva_t = torch.tensor(ytr), torch.tensor(yva)
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                              nn.Linear(64, 2))
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        gen = torch.Generator().manual_seed(seed)
        best, state = float("inf"), None
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(ytr), generator=gen)
            for i in range(0, len(order), BATCH):
                idx = order[i:i + BATCH]
                opt.zero_grad()
                loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
                loss.backward()
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
    return time.perf_counter() - start


def harness_run(tmp: Path, epochs: int, batch: bool = True) -> float:
    """The same work through the runner (validation, prep, MLflow); seconds.
    ``batch``: the default (the 3 seeds train as one group); False: each run
    alone (``--no-batch``)."""
    from harness.options import RunOptions
    from harness.runner import make_plan, run_plan
    from harness.storewriter import close_writers

    suite = tmp / "overhead.yaml"
    suite.write_text(SUITE.format(seeds=list(SEEDS), epochs=epochs, batch=BATCH, lr=LR))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    start = time.perf_counter()
    plan = make_plan(str(suite), uri, force=True)
    counts = run_plan(plan, RunOptions(tracking_uri=uri, batch=batch, quiet=True))
    close_writers()
    assert counts["finished"] == len(SEEDS), counts
    return time.perf_counter() - start


def cli_seconds(*args: str) -> float:
    """Wall time of one `harness ...` command in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", *args], check=True,
                   capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    """Print the overhead table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from bytecode import compile_checkout

    compile_checkout()  # fresh processes load bytecode, as an installed package does
    import torch
    from tabulate import tabulate

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        harness_run(tmp, 2)  # warm-up: creates the MLflow schema, imports everything
        harness_run(tmp, 2, batch=False)
        plain_loop(2)
        for epochs in (15, 150):
            plain = statistics.median(plain_loop(epochs) for _ in range(args.repeats))
            rows.append([f"plain PyTorch loop, {epochs} epochs", f"{plain:.3f}", "1.00", ""])
            for batch, what in ((False, "--no-batch (each run alone)"),
                                (True, "default (the 3 seeds as one group)")):
                ours = statistics.median(harness_run(tmp, epochs, batch)
                                         for _ in range(args.repeats))
                per_run = (ours - plain) / len(SEEDS)
                rows.append([f"harness run {what}, {epochs} epochs", f"{ours:.3f}",
                             f"{ours / plain:.2f}", f"{per_run:.3f}"])
        suite = tmp / "overhead.yaml"
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        root = Path(__file__).resolve().parents[1]
        commands = {
            "`harness --help`": ("--help",),
            "`harness plugins`": ("plugins",),
            "`harness plan suites/imbalanced.yaml`": ("plan", str(root / "suites" /
                                                              "imbalanced.yaml"),
                                                      "--tracking-uri", uri),
            "`harness run` of a finished suite": ("run", str(suite), "--tracking-uri", uri,
                                                  "-q"),
        }
        for what, argv in commands.items():
            took = statistics.median(cli_seconds(*argv) for _ in range(args.repeats))
            rows.append([f"{what} (fresh process)", f"{took:.3f}", "", ""])
    load = os.getloadavg()[0]
    print(f"{len(SEEDS)} runs each; median of {args.repeats} repeats; load average {load:.1f} "
          f"on {os.cpu_count()} cores at the end")
    print(tabulate(rows, headers=["what", "median s", "ratio", "extra s per run"]))


if __name__ == "__main__":
    main()
