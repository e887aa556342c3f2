"""Time ``harness report`` over a synthetic MLflow store of 10,000 runs (or more).

Usage::

    python benchmarks/report_scale.py                 # build a store in a temp dir, then time
    python benchmarks/report_scale.py --store /tmp/s  # reuse (or create) the store in /tmp/s
    python benchmarks/report_scale.py --seeds 100     # 100,000 runs (50 datasets x 20 methods)

The store mimics what the runner logs (``harness.*`` tags, resolved params,
``test/<metric>``, ``time/train_s``, per-epoch ``val/<metric>`` and
``train/loss``), including failed / timeout / oom / diverged runs and one
(dataset, method) cell where every seed failed.  Building the store goes
through the public ``MlflowClient`` (``create_run`` + one ``log_batch`` per
run) so it exercises the same write path as real runs; it is slow and is
timed separately from the report.  Above 20,000 runs the store is written
straight into the sqlite tables MLflow created (``--build sql``), the same
rows in one transaction.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

EXPERIMENT = "scale"
METRICS = ("accuracy", "f1", "log_loss")
STATUSES = ("failed", "timeout", "oom", "diverged")


def synthetic_runs(n_datasets: int, n_methods: int, n_seeds: int, epochs: int):
    """Yield ``(name, status, tags, params, metrics)`` per synthetic run,
    ``metrics`` as ``(key, value, step)``; the same sequence for both builders."""
    import numpy as np

    rng = np.random.default_rng(0)
    skill = rng.normal(0, 0.03, n_methods)
    difficulty = rng.uniform(0.6, 0.9, n_datasets)
    cost = rng.uniform(1, 20, n_methods)
    for d in range(n_datasets):
        for m in range(n_methods):
            for s in range(n_seeds):
                status = "finished"
                if d == 1 and m == 2:
                    status = "failed"  # the missing cell: every seed failed
                elif rng.random() < 0.03:
                    status = STATUSES[int(rng.integers(len(STATUSES)))]
                method = "baseline" if m == 0 else f"method{m:02d}"
                tags = {
                    "harness.suite": EXPERIMENT, "harness.run_key": f"k{d}-{m}-{s}",
                    "harness.dataset": f"data{d:02d}", "harness.method": method,
                    "harness.seed": str(s), "harness.task": "classification",
                    "harness.status": status,
                    # what the runner tags: each suite metric's direction
                    "harness.direction.accuracy": "max", "harness.direction.f1": "max",
                    "harness.direction.log_loss": "min",
                }
                if status != "finished":
                    tags["harness.error"] = f"{status}: synthetic error"
                acc = float(np.clip(difficulty[d] + skill[m] + rng.normal(0, 0.01), 0, 1))
                metrics = []
                for e in range(epochs):
                    frac = (e + 1) / epochs
                    metrics.append(("val/accuracy", acc * (0.7 + 0.3 * frac), e))
                    metrics.append(("train/loss", 1.0 / (1 + e) + 0.1, e))
                if status == "finished":
                    metrics += [("test/accuracy", acc, 0), ("test/f1", acc - 0.05, 0),
                                ("test/log_loss", 1 - acc, 0),
                                ("time/train_s", float(cost[m] * rng.uniform(0.9, 1.1)), 0),
                                ("time/eval_s", 0.1, 0)]
                params = {"loss.name": method, "seed": str(s), "training.epochs": str(epochs),
                          "model.name": "mlp"}
                yield f"data{d}/{method}/{s}", status, tags, params, metrics


def build_store(uri: str, n_datasets: int, n_methods: int, n_seeds: int, epochs: int) -> int:
    """Log ``n_datasets * n_methods * n_seeds`` synthetic runs through the
    public ``MlflowClient`` (``create_run`` + one ``log_batch`` per run: the
    runner's write path, ~10-50 ms a run); returns the count."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXPERIMENT)
    n = 0
    for name, status, tags, params, metrics in synthetic_runs(n_datasets, n_methods, n_seeds,
                                                              epochs):
        now = int(time.time() * 1000)
        run = client.create_run(exp_id, start_time=now, run_name=name)
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, e) for k, v, e in metrics],
                         params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()])
        client.set_terminated(run.info.run_id, "FINISHED" if status == "finished" else "FAILED")
        n += 1
    return n


def build_store_sql(uri: str, n_datasets: int, n_methods: int, n_seeds: int,
                    epochs: int) -> int:
    """The same runs written straight into the sqlite tables MLflow created
    (its schema, one transaction): 100,000 runs in a minute instead of the
    client's hour or more.  Only for building a benchmark store; the harness
    writes every real run through MLflow."""
    import sqlite3
    import uuid

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXPERIMENT)
    location = client.get_experiment(exp_id).artifact_location
    con = sqlite3.connect(uri[len("sqlite:///"):])
    n = 0
    runs, tags, params, metrics, latest = [], [], [], [], []

    def flush():
        con.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, "
                        "entry_point_name, user_id, status, start_time, end_time, "
                        "source_version, lifecycle_stage, artifact_uri, experiment_id) "
                        "VALUES (?, ?, 'UNKNOWN', '', '', 'bench', ?, ?, ?, '', 'active', ?, ?)",
                        runs)
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", params)
        con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                        "VALUES (?, ?, ?, ?, ?, 0)", metrics)
        con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, "
                        "run_uuid) VALUES (?, ?, ?, ?, 0, ?)", latest)
        for rows in (runs, tags, params, metrics, latest):
            rows.clear()

    now = int(time.time() * 1000)
    for name, status, rtags, rparams, rmetrics in synthetic_runs(n_datasets, n_methods,
                                                                 n_seeds, epochs):
        rid = uuid.uuid4().hex
        runs.append((rid, name, "FINISHED" if status == "finished" else "FAILED", now + n,
                     now + n + 1, f"{location}/{rid}/artifacts", int(exp_id)))
        tags += [(k, v, rid) for k, v in {**rtags, "mlflow.runName": name}.items()]
        params += [(k, v, rid) for k, v in rparams.items()]
        metrics += [(k, v, now + n, rid, e) for k, v, e in rmetrics]
        last = {k: (v, e) for k, v, e in rmetrics}
        latest += [(k, v, now + n, e, rid) for k, (v, e) in last.items()]
        n += 1
        if len(metrics) > 200_000:
            flush()
    flush()
    con.commit()
    con.close()
    return n


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) the store, time each report stage and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="directory holding mlflow.db (reused if present)")
    ap.add_argument("--datasets", type=int, default=50)
    ap.add_argument("--methods", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--build", choices=("client", "sql"), default=None,
                    help="how to build a new store: through MlflowClient (the runner's write "
                    "path) or straight into MLflow's sqlite tables (default: sql above 20,000 "
                    "runs)")
    args = ap.parse_args(argv)

    import logging

    t0 = time.perf_counter()
    import mlflow  # noqa: F401 - imported first: it configures its logger on import

    import_s = time.perf_counter() - t0
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    store = Path(args.store or tempfile.mkdtemp(prefix="harness-report-scale-"))
    store.mkdir(parents=True, exist_ok=True)
    db = store / "mlflow.db"
    uri = f"sqlite:///{db}"
    rows: list[tuple[str, float]] = []
    if not db.exists():
        t0 = time.perf_counter()
        total = args.datasets * args.methods * args.seeds
        how = args.build or ("sql" if total > 20_000 else "client")
        builder = build_store_sql if how == "sql" else build_store
        n = builder(uri, args.datasets, args.methods, args.seeds, args.epochs)
        build_s = time.perf_counter() - t0
        print(f"built store with {n} runs in {build_s:.1f} s ({1000 * build_s / n:.1f} ms/run)",
              flush=True)
    else:
        print(f"reusing store {db}")

    from tabulate import tabulate

    from harness.report import _build, console_leaderboard

    out = store / "report"
    # First call in this process: cold, so mlflow/matplotlib/scipy imports and
    # the tracking store's start-up count, as they do for `harness report`.
    timings: dict = {}
    t0 = time.perf_counter()
    _build(experiment=EXPERIMENT, tracking_uri=uri, metric="accuracy", out=out,
           baseline="baseline", timings=timings)
    cold = time.perf_counter() - t0
    rows.append(("import mlflow", import_s))
    rows += [(f"  {k}", v) for k, v in timings.items()]
    rows.append(("build_report, cold (first call in process)", cold))
    rows.append(("cold total = import mlflow + first build_report", import_s + cold))
    t0 = time.perf_counter()
    _build(experiment=EXPERIMENT, tracking_uri=uri, metric="accuracy", out=out,
           baseline="baseline")
    rows.append(("build_report, warm (second call)", time.perf_counter() - t0))
    t0 = time.perf_counter()
    console_leaderboard(EXPERIMENT, tracking_uri=uri, metric="accuracy")
    rows.append(("console_leaderboard, warm", time.perf_counter() - t0))
    n_runs = (out / "index.md").read_text().split("Read **", 1)[1].split("**", 1)[0]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"runs read: {n_runs}; cpus: {os.cpu_count()}; load average at end: {load:.1f}; "
          f"python {sys.version.split()[0]}")
    print(tabulate(rows, headers=["stage", "seconds"], floatfmt=".2f"))
    print(f"report: {out}")
    return 0 if import_s + cold < 20 else 1


if __name__ == "__main__":
    sys.exit(main())
