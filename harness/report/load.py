"""Read harness runs from MLflow into a tidy pandas DataFrame.

The report never reads private files: everything comes from the tracking
store through the MLflow client, so any tracking URI (sqlite file, ``mlflow
server``, Databricks) works.  One row per MLflow run, with the ``harness.*``
tags as columns and only the ``test/*`` and ``time/*`` metrics (per-epoch
histories are read separately, and only for the plots, see
``load_histories``).
"""

from __future__ import annotations

import gc
import os
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness import runstate
from harness.errors import UserError
from harness.metrics import DIRECTION_TAG
from harness.status import DIED

TAG_COLUMNS = ("suite", "run_key", "dataset", "method", "seed", "task", "status", "error",
               "host", "version", "git_commit", "torch", "gpu", "executor", "failure_kind",
               "pid", "heartbeat")
#: The tracking URI rule is ``harness.runstate``'s.
resolve_tracking_uri = runstate.resolve_uri


@dataclass
class SuiteInfo:
    """The two suite keys a report needs (the full suite is validated elsewhere)."""

    name: str
    rank_by: str | None = None
    path: str | None = None


def read_suite(path: str | Path) -> SuiteInfo:
    """Read ``name`` and ``rank_by`` from a suite YAML file; without a
    ``rank_by`` key, the first of its ``metrics`` (as the suite loader
    defaults it), by its logged name.

    A missing or unreadable file, malformed YAML, a duplicate key or a file
    without a ``name`` raises ``UserError`` with a one-line message naming the
    file (and line), as ``harness run`` would say it."""
    from harness.yamlsource import load_yaml

    data = load_yaml(path).data
    if not isinstance(data, dict) or not data.get("name"):
        raise UserError(f"{path}: suite file has no 'name' key")
    rank_by = data.get("rank_by") or _first_metric(data.get("metrics"))
    return SuiteInfo(str(data["name"]), str(rank_by) if rank_by else None, str(path))


def _first_metric(metrics) -> str | None:
    """The logged name of a suite's first metric (``accuracy``,
    ``{name: ece, bins: 25}`` -> ``ece:bins-25``), or None."""
    from harness.metrics import metric_label

    first = metrics[0] if isinstance(metrics, list) and metrics else None
    if isinstance(first, str):
        return first
    if isinstance(first, dict) and isinstance(first.get("name"), str):
        return metric_label(first["name"], {k: v for k, v in first.items() if k != "name"})
    return None


def looks_like_file(spec: str) -> bool:
    """A suite argument is a file when it exists or is spelled like one;
    otherwise it is taken as an MLflow experiment (= suite) name."""
    return spec.endswith((".yaml", ".yml")) or os.sep in spec or "/" in spec or Path(
        spec).is_file()


def resolve_source(spec: str | Path) -> SuiteInfo:
    """``suites/x.yaml`` -> its name and rank_by; a bare name -> that experiment."""
    spec = str(spec)
    return read_suite(spec) if looks_like_file(spec) else SuiteInfo(spec)


@dataclass
class LoadedRuns:
    """Runs of one experiment plus what was done to them on the way in."""

    experiment: str
    runs: object  # pandas.DataFrame; typed loosely to keep pandas out of import time
    n_read: int
    n_untagged: int = 0
    #: (run_key, number of runs, run_id kept) for run keys logged more than once
    duplicates: list[tuple[str, int, str]] = field(default_factory=list)
    #: suite-level runs (tag harness.kind=suite) that hold earlier reports, not results
    n_suite_runs: int = 0
    #: ``rank_by`` of the newest suite-level run (tag ``harness.rank_by``)
    rank_by: str | None = None
    #: logged metric name -> how many runs tagged it ``max`` and ``min``
    directions: dict[str, Counter] = field(default_factory=dict)


@contextmanager
def _no_gc():
    # MLflow's SQL store builds ~20 ORM objects per run; with 10,000 runs the
    # cyclic GC keeps rescanning them and doubles the search time.  Nothing
    # here creates reference cycles that need collecting meanwhile.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _search_all(client, exp_id: str) -> list:
    """Every run of the experiment, page by page (a store may cap page size)."""
    from mlflow.entities import ViewType

    runs, token = [], None
    with _no_gc():
        while True:
            page = client.search_runs([exp_id], run_view_type=ViewType.ACTIVE_ONLY,
                                      max_results=50_000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs


#: The metrics a report row keeps (``load_runs``), by name prefix.
METRIC_PREFIXES = ("test/", "time/", "unit/")


def _read_sqlite(path: str, experiment: str) -> list[tuple] | None:
    """The runs of ``experiment`` straight from MLflow's sqlite tables, as
    ``_client_rows`` gives them (None: no such experiment), reading only what
    the report needs: the ``harness.*`` tags and the ``METRIC_PREFIXES``
    latest metrics of active runs, in MLflow's search order.  Importing
    mlflow and building its run objects costs seconds (at 100,000 runs, 40 s
    of a 55 s report); the tables answer in a few.  Only reads: every write
    goes through MLflow.  A schema this does not know raises
    ``sqlite3.Error`` (the caller then asks MLflow)."""
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        exp = con.execute("SELECT experiment_id FROM experiments WHERE name = ?",
                          (experiment,)).fetchone()
        if exp is None:
            return None
        scope = ("JOIN runs r ON r.run_uuid = x.run_uuid "
                 "WHERE r.experiment_id = ? AND r.lifecycle_stage = 'active'")
        runs = {rid: (rid, start or 0, status, {}, {}) for rid, start, status in con.execute(
            "SELECT run_uuid, start_time, status FROM runs WHERE experiment_id = ? "
            "AND lifecycle_stage = 'active' ORDER BY start_time DESC, run_uuid", (exp[0],))}
        for rid, key, value in con.execute(
                f"SELECT x.run_uuid, x.key, x.value FROM tags x {scope} "
                "AND substr(x.key, 1, 8) = 'harness.'", (exp[0],)):
            runs[rid][3][key] = value
        prefixes = " OR ".join(f"substr(x.key, 1, {len(p)}) = ?" for p in METRIC_PREFIXES)
        for rid, key, value, is_nan in con.execute(
                f"SELECT x.run_uuid, x.key, x.value, x.is_nan FROM latest_metrics x {scope} "
                f"AND ({prefixes})", (exp[0], *METRIC_PREFIXES)):
            runs[rid][4][key] = float("nan") if is_nan else value
        return list(runs.values())
    finally:
        con.close()


def _client_rows(uri: str, experiment: str) -> list[tuple] | None:
    """``(run_id, start_time, mlflow status, tags, metrics)`` per active run
    of ``experiment`` through ``MlflowClient`` (any store); None: no such
    experiment."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    return [(run.info.run_id, run.info.start_time or 0, run.info.status, run.data.tags,
             run.data.metrics) for run in _search_all(client, exp.experiment_id)]


def _rows(uri: str, experiment: str) -> list[tuple] | None:
    """``_read_sqlite`` for a sqlite store, else (or for a schema it does not
    know) ``_client_rows``."""
    import sqlite3

    from harness.tracking import sqlite_path

    path = sqlite_path(uri)
    if path is not None:
        if not os.path.exists(path):
            return None  # asking MLflow would create an empty store
        try:
            return _read_sqlite(path, experiment)
        except sqlite3.Error:  # a schema this does not know: MLflow reads it
            pass
    return _client_rows(uri, experiment)


def load_runs(experiment: str, tracking_uri: str | None = None) -> LoadedRuns:
    """All runs of ``experiment`` as one row per run.

    Columns: ``run_id``, ``start_time`` (ms), ``mlflow_status``, the
    ``harness.*`` tags without prefix (``dataset``, ``method``, ``seed``,
    ``status``, ...) and every ``test/*`` and ``time/*`` metric (and ``unit/*``,
    whose latest value only marks the runs that logged per-unit values).  Runs without
    ``harness.dataset``/``harness.method`` tags, and suite-level runs
    (``harness.kind=suite``), are counted, not kept.  When a
    run key was logged more than once, the latest finished run is kept (else
    the latest run) and the duplicate is recorded.  A sqlite store is read
    from its tables (``_read_sqlite``), any other through MLflow's client."""
    import pandas as pd

    uri = resolve_tracking_uri(tracking_uri)
    found = _rows(uri, experiment)
    if found is None:
        raise UserError(f"no MLflow experiment named {experiment!r} at {uri}")
    rows, directions, rank_by = [], {}, (-1, None)
    for run_id, start, status, tags, metrics in found:
        if tags.get("harness.kind") == "suite" and tags.get("harness.rank_by") \
                and start >= rank_by[0]:
            rank_by = (start, tags["harness.rank_by"])
        row = {"run_id": run_id, "start_time": start, "mlflow_status": status,
               "kind": tags.get("harness.kind")}
        for col in TAG_COLUMNS:
            row[col] = tags.get(f"harness.{col}")
        # unit/* (a metric per test unit): its latest value only says the run has them
        row.update({k: v for k, v in metrics.items() if k.startswith(METRIC_PREFIXES)})
        rows.append(row)
        for key, value in tags.items():
            if key.startswith(DIRECTION_TAG):
                directions.setdefault(key[len(DIRECTION_TAG):], Counter())[value] += 1
    df = pd.DataFrame(rows, columns=None if rows else ["run_id", "start_time", "mlflow_status",
                                                        "kind", *TAG_COLUMNS])
    n_read = len(df)
    suite_runs = df["kind"].eq("suite")
    tagged = df["dataset"].notna() & df["method"].notna() & ~suite_runs
    n_untagged = int((~tagged & ~suite_runs).sum())
    df = df[tagged].drop(columns="kind")
    df["status"] = [_status(row) for row in df.to_dict("records")]
    died = df["status"].eq(runstate.INTERRUPTED) & df["mlflow_status"].eq("RUNNING")
    df.loc[died & df["error"].isna(), "error"] = DIED
    df["run_key"] = df["run_key"].fillna(df["run_id"])
    df, dups = _dedupe(df)
    return LoadedRuns(experiment, df.reset_index(drop=True), n_read, n_untagged, dups,
                      int(suite_runs.sum()), rank_by[1], directions)


def _status(row: dict) -> str:
    """The run's status word (``runstate.normalize``), with a run left
    RUNNING by a process that is gone (``runstate.is_stale``) ``interrupted``,
    as ``harness status`` and ``harness run`` see it."""
    status = row["status"]
    word = runstate.normalize(status if isinstance(status, str) else None, row["mlflow_status"])
    if word == runstate.RUNNING and runstate.is_stale(
            {"pid": _text(row["pid"]), "heartbeat": _text(row["heartbeat"]),
             "start": row["start_time"]}):
        return runstate.INTERRUPTED
    return word


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _dedupe(df):
    """One run per run key, chosen by ``harness.runstate.prefer`` (the newest,
    but never a run without a result over one with a result)."""
    counts = df["run_key"].value_counts()
    repeated = counts[counts > 1]
    if repeated.empty:
        return df, []
    kept: dict = {}
    for idx, key, status in df.sort_values("start_time", kind="stable")[
            ["run_key", "status"]].itertuples():
        if runstate.prefer(kept[key][1] if key in kept else None, status):
            kept[key] = (idx, status)
    out = df.loc[sorted(i for i, _ in kept.values())]
    by_key = out.set_index("run_key")["run_id"]
    dups = [(str(k), int(n), str(by_key[k])) for k, n in repeated.items()]
    return out, dups


def load_histories(run_ids: list[str], key: str, tracking_uri: str | None = None,
                   max_workers: int = 8) -> dict[str, list[tuple[int, float]]]:
    """``run_id -> [(step, value), ...]`` for one metric key.

    The caller bounds ``run_ids``.  SQL tracking stores answer one bulk query
    per 500 runs (``get_metric_history_bulk``, what the MLflow UI uses; about
    50x faster than a request per run); every other store gets the public
    ``MlflowClient.get_metric_history`` per run, in threads to hide the
    latency of a remote server.  A run whose history cannot be read is absent."""
    from mlflow import MlflowClient

    if not run_ids:
        return {}
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if hasattr(store, "get_metric_history_bulk"):
        try:
            return _bulk_histories(store, run_ids, key)
        except Exception:  # noqa: BLE001 - private API changed: use the public one
            pass
    return _per_run_histories(client, run_ids, key, max_workers)


def _bulk_histories(store, run_ids, key, batch: int = 500):
    out: dict[str, list[tuple[int, float]]] = {}
    with _no_gc():
        for i in range(0, len(run_ids), batch):
            chunk = run_ids[i:i + batch]
            for m in store.get_metric_history_bulk(chunk, key, max_results=10**9):
                out.setdefault(m.run_id, []).append((m.step, m.value))
    return {rid: sorted(pts) for rid, pts in out.items()}


def _per_run_histories(client, run_ids, key, max_workers):
    from concurrent.futures import ThreadPoolExecutor

    def one(run_id: str):
        try:
            hist = client.get_metric_history(run_id, key)
        except Exception:  # noqa: BLE001 - a plot must not fail the report
            return run_id, []
        return run_id, sorted((m.step, m.value) for m in hist)

    with ThreadPoolExecutor(max_workers=min(max_workers, len(run_ids))) as pool:
        return {rid: pts for rid, pts in pool.map(one, run_ids) if pts}
