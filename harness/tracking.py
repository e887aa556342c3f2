"""MLflow tracking: the one place that writes runs (schema in README.md).

Uses ``MlflowClient`` with explicit run ids rather than mlflow's global
active-run state, so several runs (or processes) never tangle.  Metrics are
buffered and written with ``log_batch``.
"""

from __future__ import annotations

import os
import platform
import random
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.runstate import (
    DEFAULT_URI,
    INTERRUPTED,
    MLFLOW_STATUS,
    RUNNING,
    normalize,
    prefer,
    resolve_uri,
)

__all__ = ["DEFAULT_URI", "MLFLOW_STATUS", "resolve_uri", "existing_runs", "MlflowRunLogger"]

#: Metrics per log_batch.  MLflow takes 1000 entities (metrics + params + tags)
#: per call and splits bigger batches itself; below that, a run's last metrics
#: and its status tags stay one call, one transaction.
BATCH = 990
#: Seconds between heartbeat tags while a run trains (a background thread, so a
#: long epoch never looks dead).
HEARTBEAT_S = float(os.environ.get("HARNESS_HEARTBEAT_S", 60))
#: Seconds between writes of a training run's buffered per-epoch metrics.
FLUSH_S = 10.0
#: How long a writer waits for the sqlite file lock before writing unlocked.
LOCK_WAIT_S = 120.0
#: Artifact folder and tag prefix of arrays shared between runs (``harness.shared``).
SHARED_DIR = "shared"
SHARED_TAG = "harness.shared."


def client(uri: str | None = None):
    """An ``MlflowClient`` for ``uri`` (see ``resolve_uri``)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=resolve_uri(uri))


def experiment_id(cl, name: str, uri: str | None = None) -> str:
    """Id of experiment ``name`` in the store of ``uri``, created on first use
    (with its artifacts beside a sqlite store: ``artifact_location``)."""
    exp = cl.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            cl.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return cl.create_experiment(name, artifact_location=artifact_location(uri, name))
    except Exception:  # another worker created it first
        return cl.get_experiment_by_name(name).experiment_id


def artifact_location(uri: str | None, name: str) -> str | None:
    """Where a new experiment ``name`` of a sqlite store keeps its artifacts:
    ``mlruns/<name>`` in the database file's folder, so a store is one folder
    wherever harness was started (MLflow's default is the ``mlruns`` of the
    current directory).  None (MLflow's default) for other stores."""
    import re
    from pathlib import Path

    uri = resolve_uri(uri)
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    folder = re.sub(r"[^\w.-]+", "_", name).strip("._") or "experiment"
    return str(Path(path).resolve().parent / "mlruns" / folder)


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """``{"loss": {"name": "focal", "gamma": 2}}`` -> ``{"loss.name": "focal",
    "loss.gamma": "2"}`` (MLflow params are strings)."""
    out: dict[str, str] = {}
    if isinstance(config, dict):
        for k, v in config.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = str(config)[:6000]
    return out


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the git checkout harness itself runs from (an editable
    install), with ``+dirty`` when tracked files differ from it; ``""`` when
    harness came from a wheel or git is missing.  Not the working directory's
    repository: a published report must name the code that produced it."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True,
                              timeout=5)

    try:
        # a wheel installed in a venv inside someone's repository is not that repository
        if git("ls-files", "--error-unmatch", Path(__file__).name).returncode:
            return ""
        commit = git("rev-parse", "HEAD").stdout.strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except Exception:
        return ""
    return f"{commit}+dirty" if commit and dirty else commit


def environment_tags() -> dict[str, str]:
    """Versions and host, so reports can tell runs from different machines apart."""
    import torch

    from harness import __version__

    tags = {
        "harness.version": __version__,
        "harness.git_commit": git_commit(),
        "harness.host": socket.gethostname(),
        "harness.python": platform.python_version(),
        "harness.torch": str(torch.__version__),  # not a TorchVersion: unpickling it imports torch
        "harness.cuda": str(torch.version.cuda or ""),
    }
    if torch.cuda.is_available():
        tags["harness.gpu"] = torch.cuda.get_device_name(0)
    return tags


def sqlite_path(uri: str) -> str | None:
    """The file of a ``sqlite:///`` URI (None for other stores and ``:memory:``)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):]
    return path if path and path != ":memory:" else None


_THREAD_LOCK = threading.RLock()
_LOCK = {"depth": 0, "fd": None, "key": None}


@contextmanager
def write_lock(uri: str | None):
    """Serialise MLflow writes to one sqlite file across processes.

    SQLite allows one writer; MLflow waits 20 s for it, and a transaction that
    read first and then writes can get ``database is locked`` at once (SQLite
    refuses the upgrade to avoid a deadlock).  An ``flock`` on ``<db>.lock``
    queues writers instead.  Re-entrant; other URIs (a server) need no lock."""
    try:
        import fcntl
    except ImportError:  # Windows: SQLite's busy timeout and _retry only
        fcntl = None
    path = sqlite_path(resolve_uri(uri))
    if path is None or fcntl is None:
        yield
        return
    with _THREAD_LOCK:  # flock excludes processes; threads share the fd
        key, locked = (os.path.abspath(path), os.getpid()), False
        if not _LOCK["depth"]:
            if _LOCK["key"] != key:  # a forked child must not share the parent's fd
                os.makedirs(os.path.dirname(key[0]) or ".", exist_ok=True)
                _LOCK["fd"], _LOCK["key"] = os.open(key[0] + ".lock", os.O_RDWR | os.O_CREAT), key
            deadline = time.monotonic() + LOCK_WAIT_S
            while not locked and time.monotonic() < deadline:
                try:
                    fcntl.flock(_LOCK["fd"], fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked = True
                except BlockingIOError:
                    time.sleep(0.002 + random.random() * 0.01)
        _LOCK["depth"] += 1
        try:
            yield
        finally:
            _LOCK["depth"] -= 1
            if locked:
                fcntl.flock(_LOCK["fd"], fcntl.LOCK_UN)


def _retry(fn, *args, tries: int = 8, **kwargs):
    """Call ``fn``; on ``database is locked`` back off and call again (writers
    outside harness, e.g. ``mlflow ui``, do not take our file lock)."""
    for attempt in range(tries):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if "database is locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(min(5.0, 0.1 * 2 ** attempt) * (0.5 + random.random()))


def write(uri: str | None, fn, *args, **kwargs):
    """Run one MLflow write call under the sqlite file lock, with retries."""
    with write_lock(uri):
        return _retry(fn, *args, **kwargs)


def prepare_store(uri: str | None, experiment: str) -> str:
    """Create the store's tables and the experiment once, before workers start:
    N workers creating a fresh sqlite schema at once race in MLflow's
    migrations (``duplicate column name``) and every run is lost."""
    with write_lock(uri):
        return _retry(lambda: experiment_id(client(uri), experiment, uri))


_ROW = ("key", "run_id", "mlflow_status", "status", "pid", "heartbeat", "error", "start",
        "failure_kind")


def _existing_runs_sqlite(path: str, experiment: str, since_ms: int | None = None
                          ) -> list[tuple]:
    """Rows of ``_ROW`` straight from MLflow's sqlite schema: importing mlflow
    costs ~2.5 s, too slow for ``harness plan`` and ``harness status``.
    Only reads; every write goes through MLflow."""
    import sqlite3

    tag = "LEFT JOIN tags {0} ON {0}.run_uuid = r.run_uuid AND {0}.key = 'harness.{1}'"
    joins = " ".join(tag.format(a, t) for a, t in
                     (("s", "status"), ("p", "pid"), ("h", "heartbeat"), ("x", "error"),
                      ("f", "failure_kind")))
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(
            f"""SELECT k.value, r.run_uuid, r.status, s.value, p.value,
                       h.value, x.value, r.start_time, f.value
               FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id
               JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'harness.run_key' {joins}
               WHERE e.name = ? AND r.lifecycle_stage = 'active' AND r.start_time >= ?
               ORDER BY r.start_time ASC""", (experiment, since_ms or 0)).fetchall()
    finally:
        con.close()


def _existing_runs_client(uri: str, experiment: str, since_ms: int | None = None
                          ) -> list[tuple]:
    from mlflow.entities import ViewType

    cl = client(uri)
    exp = cl.get_experiment_by_name(experiment)
    if exp is None:
        return []
    rows, token = [], None
    since = f"attributes.start_time >= {int(since_ms)}" if since_ms else ""
    while True:
        page = cl.search_runs([exp.experiment_id], since, run_view_type=ViewType.ACTIVE_ONLY,
                              max_results=5000, page_token=token,
                              order_by=["attributes.start_time ASC"])
        for r in page:
            t = r.data.tags
            rows.append((t.get("harness.run_key"), r.info.run_id, r.info.status,
                         t.get("harness.status"), t.get("harness.pid"),
                         t.get("harness.heartbeat"), t.get("harness.error"), r.info.start_time,
                         t.get("harness.failure_kind")))
        token = page.token
        if not token:
            return rows


def existing_runs(uri: str | None, experiment: str, since_ms: int | None = None
                  ) -> dict[str, dict]:
    """run_key -> {"status", "run_id", "pid", "heartbeat", "error",
    "failure_kind", ...} of the run that speaks for each key in the experiment
    (``harness.runstate.prefer``: the newest, but never a non-result over a
    result).  ``status`` is normalised (``runstate.normalize``): ``running``
    for MLflow RUNNING runs (``runstate.is_stale`` tells a live one from one
    left by a dead process).  ``since_ms``: only runs started at or after
    that time (ms since the epoch, MLflow's ``start_time``)."""
    uri = resolve_uri(uri)
    path = sqlite_path(uri)
    if path is not None:
        if not os.path.exists(path):
            return {}
        try:
            rows = _existing_runs_sqlite(path, experiment, since_ms)
        except Exception as exc:
            if "no such table" in str(exc):
                # another process is creating this store's schema right now:
                # nothing is recorded yet, and asking MLflow here would race it
                # in creating the same tables
                return {}
            rows = _existing_runs_client(uri, experiment, since_ms)  # a schema we do not know
    else:
        rows = _existing_runs_client(uri, experiment, since_ms)
    out: dict[str, dict] = {}
    for row in rows:
        info = dict(zip(_ROW, row))
        if not info["key"]:
            continue
        info["status"] = normalize(info["status"], info["mlflow_status"])
        prev = out.get(info["key"])
        if prefer(prev and prev["status"], info["status"]):
            out[info["key"]] = info
    return out


class MlflowRunLogger:
    """Writes one MLflow run from this process: tags, params, buffered
    metrics, artifacts (a ``harness.runlog.RunLogger``).

    A background thread refreshes ``harness.heartbeat`` every ``HEARTBEAT_S``
    seconds until ``end``, so other harness processes can tell a live run from
    one whose process died (``is_stale``)."""

    def __init__(self, uri: str | None, spec, provenance: dict[str, str],
                 extra_tags: dict[str, Any] | None = None,
                 environment: dict[str, str] | None = None):
        """``environment``: the training process's ``environment_tags()``,
        when the run is written by another process (the store writer)."""
        from mlflow.entities import Param

        self.uri = uri
        self.client = client(uri)
        with write_lock(uri):
            self.exp_id = _retry(experiment_id, self.client, spec.suite, uri)
        tags = {
            "mlflow.runName": spec.run_name,
            "harness.suite": spec.suite,
            "harness.run_key": spec.run_key,
            "harness.dataset": spec.dataset_label,
            "harness.method": spec.method,
            "harness.seed": str(spec.seed),
            "harness.task": spec.task,
            "harness.status": RUNNING,
            "harness.heartbeat": str(int(time.time())),
            "harness.pid": f"{socket.gethostname()}:{os.getpid()}",
            **(environment_tags() if environment is None else environment),
            **provenance,
            **{k: str(v) for k, v in (extra_tags or {}).items()},
        }
        # tags with the run itself: a run killed right after creation still
        # carries its run key and pid, so resume can find and close it
        run = write(uri, self.client.create_run, self.exp_id, run_name=spec.run_name,
                    tags={k: str(v)[:5000] for k, v in tags.items()})
        self.run_id = run.info.run_id
        params = flatten({"dataset": {k: v for k, v in spec.dataset.items()
                                      if k not in ("label", "base_dir")},
                          **spec.config, "seed": spec.seed})
        # written with the run's first metrics (or its end): each MLflow call
        # costs ~10 ms whatever it carries, a store writer's 160 runs 1.6 s
        self._params = [Param(k[:250], v) for k, v in params.items()]
        self._params_lock = threading.Lock()
        self._metrics: list = []
        self._flushed = time.monotonic()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="harness-heartbeat",
                                      daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._touch()
            except Exception:  # a missed beat only makes the run look older
                pass

    def _touch(self, metrics=()) -> None:
        from mlflow.entities import RunTag

        params = self._take_params(len(metrics))
        try:
            write(self.uri, self.client.log_batch, self.run_id, metrics=list(metrics),
                  params=params, tags=[RunTag("harness.heartbeat", str(int(time.time())))])
        except BaseException:
            self._put_back(params)
            raise

    def _take_params(self, n_metrics: int) -> list:
        """The params not written yet, to go with ``n_metrics`` metrics in one
        call (then none are left to write); if together they would pass
        MLflow's 1000 entities per call, the params are written alone now."""
        with self._params_lock:
            params, self._params = self._params, []
        if params and n_metrics + len(params) > BATCH:
            try:
                write(self.uri, self.client.log_batch, self.run_id, params=params)
            except BaseException:
                self._put_back(params)
                raise
            return []
        return params

    def _put_back(self, params: list) -> None:
        """Params whose write failed: the next write tries them again."""
        with self._params_lock:
            self._params = params + self._params

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        """Buffer metrics (non-finite values are logged as NaN by MLflow)."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._metrics.extend(Metric(k, float(v), ts, step) for k, v in values.items())
        if len(self._metrics) >= BATCH:
            self.flush()

    def log_metric_rows(self, rows: list[tuple]) -> None:
        """Buffer ``(key, value, timestamp ms, step)`` rows logged elsewhere
        (the store writer's client process)."""
        from mlflow.entities import Metric

        self._metrics.extend(Metric(k, v, ts, step) for k, v, ts, step in rows)
        if len(self._metrics) >= BATCH:
            self.flush()

    def pending(self) -> int:
        """How many metrics wait in the buffer."""
        return len(self._metrics)

    def stop_heartbeat(self) -> None:
        """Stop refreshing ``harness.heartbeat`` (the run's process is gone)."""
        self._stop.set()

    def flush(self) -> None:
        """Write buffered metrics and refresh the heartbeat tag."""
        # the last chunk and the heartbeat in one write: each write is a
        # sqlite transaction under the file lock
        self._touch(self._drain())
        self._flushed = time.monotonic()

    def _drain(self) -> list:
        """Write full chunks of the buffer; empty it and return the rest (at
        most ``BATCH`` metrics) for the caller's own write."""
        while len(self._metrics) > BATCH:
            chunk, self._metrics = self._metrics[:BATCH], self._metrics[BATCH:]
            write(self.uri, self.client.log_batch, self.run_id, metrics=chunk)
        last, self._metrics = self._metrics, []
        return last

    def flush_due(self) -> bool:
        """Whether buffered metrics have waited ``FLUSH_S`` seconds: a live
        run shows progress in ``mlflow ui`` without a write per epoch."""
        return bool(self._metrics) and time.monotonic() - self._flushed >= FLUSH_S

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags on the run now (values become strings)."""
        from mlflow.entities import RunTag

        write(self.uri, self.client.log_batch, self.run_id,
              tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_params(self, params: dict[str, Any]) -> None:
        """Log extra params (a task's derived settings); values become strings."""
        from mlflow.entities import Param

        write(self.uri, self.client.log_batch, self.run_id,
              params=[Param(k[:250], str(v)[:6000]) for k, v in flatten(params).items()])

    def log_text(self, text: str, name: str) -> None:
        """Store ``text`` as an artifact file ``name``."""
        self.client.log_text(self.run_id, text, name)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Store a local file or directory as an artifact."""
        if os.path.isdir(path):
            self.client.log_artifacts(self.run_id, path, artifact_path)
        else:
            self.client.log_artifact(self.run_id, path, artifact_path)

    def log_spooled_artifact(self, path: str, artifact_path: str | None, spool: str) -> None:
        """``log_artifact`` of a copy made for this logger, then delete the
        copy's folder ``spool``."""
        import shutil

        try:
            self.log_artifact(path, artifact_path)
        finally:
            shutil.rmtree(spool, ignore_errors=True)

    def find_shared(self, name: str, key: str) -> dict | None:
        """The arrays another run of this experiment stored as ``name`` under
        ``key`` (the oldest that still has them), else None."""
        import tempfile

        import numpy as np

        # MLflow draws a tqdm bar per download; in a suite that is noise
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        found = self.client.search_runs(
            [self.exp_id], filter_string=f"tags.`{SHARED_TAG}{name}` = '{key}'", max_results=5,
            order_by=["attributes.start_time ASC"])
        for run in found:
            if run.info.run_id == self.run_id:
                continue
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    path = self.client.download_artifacts(
                        run.info.run_id, f"{SHARED_DIR}/{name}.npz", tmp)
                    with np.load(path) as data:
                        return {k: data[k] for k in data.files}
            except Exception:  # artifact missing (that run died first): try the next
                continue
        return None

    def store_shared(self, name: str, key: str, arrays: dict) -> None:
        """Store ``arrays`` as ``shared/<name>.npz`` with the tag
        ``harness.shared.<name>`` = ``key`` (``find_shared`` finds it)."""
        import tempfile

        import numpy as np

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{name}.npz")
            np.savez_compressed(path, **arrays)
            self.client.log_artifact(self.run_id, path, SHARED_DIR)
        self.set_tags({f"{SHARED_TAG}{name}": key})

    def end(self, status: str, error: str = "") -> None:
        """Flush, tag the harness status (and one-line error), close the run."""
        self._stop.set()
        last = []
        try:
            last = self._drain()
        finally:
            close_run(self.uri, self.run_id, status, error, last,
                      params=self._take_params(len(last)))

    def wait(self, timeout: float | None = None) -> tuple[str | None, str]:
        """``(run_id, "")``: ``end`` wrote the run's end before returning."""
        return self.run_id, ""


def close_run(uri: str | None, run_id: str, status: str, error: str = "",
              metrics=(), tags: dict[str, str] | None = None, params=()) -> None:
    """Tag a run's harness status (and one-line error) and terminate it; also
    how a supervisor records a child it killed (timeout, oom, died).
    ``metrics``: the run's last buffered ``mlflow.entities.Metric``s, ``tags``
    (a failure kind) and ``params`` (``mlflow.entities.Param``s not written
    yet), written in the same batch as the status."""
    from mlflow.entities import RunTag

    cl = client(uri)
    tags = [RunTag("harness.status", status), *(RunTag(k, v) for k, v in (tags or {}).items())]
    if error:
        tags.append(RunTag("harness.error", error.splitlines()[0][:500]))
    write(uri, cl.log_batch, run_id, metrics=list(metrics), params=list(params), tags=tags)
    write(uri, cl.set_terminated, run_id, MLFLOW_STATUS.get(status, "FAILED"))


def find_run(uri: str | None, experiment: str, run_key: str, pid: str | None = None) -> str | None:
    """Id of the newest RUNNING run of ``run_key`` (started by ``pid``,
    ``host:pid``, when given), or None."""
    cl = client(uri)
    exp = cl.get_experiment_by_name(experiment)
    if exp is None:
        return None
    query = f"tags.`harness.run_key` = '{run_key}' AND attributes.status = 'RUNNING'"
    if pid:
        query += f" AND tags.`harness.pid` = '{pid}'"
    runs = cl.search_runs([exp.experiment_id], query, max_results=1,
                          order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def mark_stale(uri: str | None, run_id: str, reason: str) -> None:
    """Close a run left RUNNING by a dead process as ``interrupted``."""
    close_run(uri, run_id, INTERRUPTED, reason)


def log_suite_run(uri: str | None, suite: str, report_dir: str, counts: dict,
                  rank_by: str | None = None) -> str:
    """Record one suite-level MLflow run (tag ``harness.kind=suite``, no run
    key, so reports never count it) holding the report directory, with the
    suite's ``rank_by`` (tag ``harness.rank_by``) for ``harness report
    --experiment``."""
    from mlflow.entities import Metric, RunTag

    cl = client(uri)
    exp = experiment_id(cl, suite, uri)
    run = cl.create_run(exp, run_name=f"{suite} (suite)")
    ts = int(time.time() * 1000)
    cl.log_batch(run.info.run_id,
                 metrics=[Metric(f"runs/{k}", float(v), ts, 0) for k, v in counts.items()],
                 tags=[RunTag("harness.kind", "suite"), RunTag("harness.suite", suite),
                       RunTag("harness.git_commit", git_commit()),
                       *([RunTag("harness.rank_by", rank_by)] if rank_by else [])])
    cl.log_artifacts(run.info.run_id, report_dir, "report")
    cl.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
