"""MLflow tracking: the one place that writes runs (schema in README.md).

Uses ``MlflowClient`` with explicit run ids rather than mlflow's global
active-run state, so several runs (or processes) never tangle.  Metrics are
buffered and written with ``log_batch``.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from functools import lru_cache
from typing import Any

DEFAULT_URI = "sqlite:///mlflow.db"
#: MLflow's log_batch accepts at most 1000 metrics per call.
BATCH = 1000
#: harness status -> MLflow run status.
MLFLOW_STATUS = {"finished": "FINISHED", "diverged": "FINISHED", "failed": "FAILED",
                 "timeout": "FAILED", "oom": "FAILED", "interrupted": "KILLED"}


def resolve_uri(uri: str | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def client(uri: str | None = None):
    """An ``MlflowClient`` for ``uri`` (see ``resolve_uri``)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=resolve_uri(uri))


def experiment_id(cl, name: str) -> str:
    """Id of experiment ``name``, created on first use."""
    exp = cl.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            cl.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return cl.create_experiment(name)
    except Exception:  # another worker created it first
        return cl.get_experiment_by_name(name).experiment_id


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
    """The commit of the working directory's git checkout, or ``""``."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except Exception:
        return ""


def environment_tags() -> dict[str, str]:
    """Versions and host, so reports can tell runs from different machines apart."""
    import torch

    from harness import __version__

    tags = {
        "harness.version": __version__,
        "harness.git_commit": git_commit(),
        "harness.host": socket.gethostname(),
        "harness.python": platform.python_version(),
        "harness.torch": torch.__version__,
        "harness.cuda": str(torch.version.cuda or ""),
    }
    if torch.cuda.is_available():
        tags["harness.gpu"] = torch.cuda.get_device_name(0)
    return tags


def _sqlite_path(uri: str) -> str | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):]
    return path if path and path != ":memory:" else None


def _existing_runs_sqlite(path: str, experiment: str) -> list[tuple[str, str, str, str]]:
    """(run_key, run_id, mlflow status, harness status) straight from MLflow's
    sqlite schema: importing mlflow costs ~2.5 s, too slow for ``harness plan``.
    Only reads; every write goes through MLflow."""
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(
            """SELECT k.value, r.run_uuid, r.status, COALESCE(s.value, 'running')
               FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id
               JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'harness.run_key'
               LEFT JOIN tags s ON s.run_uuid = r.run_uuid AND s.key = 'harness.status'
               WHERE e.name = ? AND r.lifecycle_stage = 'active'
               ORDER BY r.start_time ASC""", (experiment,)).fetchall()
    finally:
        con.close()


def _existing_runs_client(uri: str, experiment: str) -> list[tuple[str, str, str, str]]:
    from mlflow.entities import ViewType

    cl = client(uri)
    exp = cl.get_experiment_by_name(experiment)
    if exp is None:
        return []
    rows, token = [], None
    while True:
        page = cl.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY,
                              max_results=5000, page_token=token,
                              order_by=["attributes.start_time ASC"])
        rows += [(r.data.tags.get("harness.run_key"), r.info.run_id, r.info.status,
                  r.data.tags.get("harness.status", "running")) for r in page]
        token = page.token
        if not token:
            return rows


def existing_runs(uri: str | None, experiment: str) -> dict[str, dict]:
    """run_key -> {"status", "run_id"} of the newest run per key in the
    experiment; a finished run wins over any later unfinished one."""
    uri = resolve_uri(uri)
    path = _sqlite_path(uri)
    if path is not None:
        if not os.path.exists(path):
            return {}
        try:
            rows = _existing_runs_sqlite(path, experiment)
        except Exception:  # a schema we do not know: ask MLflow itself
            rows = _existing_runs_client(uri, experiment)
    else:
        rows = _existing_runs_client(uri, experiment)
    out: dict[str, dict] = {}
    for key, run_id, mlflow_status, status in rows:
        if not key:
            continue
        if mlflow_status == "RUNNING":
            status = "running"
        prev = out.get(key)
        if prev and prev["status"] == "finished" and status != "finished":
            continue
        out[key] = {"status": status, "run_id": run_id}
    return out


class RunLogger:
    """Writes one MLflow run: tags, params, buffered metrics, artifacts."""

    def __init__(self, uri: str | None, spec, provenance: dict[str, str]):
        from mlflow.entities import Param, RunTag

        self.client = client(uri)
        self.exp_id = experiment_id(self.client, spec.suite)
        tags = {
            "mlflow.runName": spec.run_name,
            "harness.suite": spec.suite,
            "harness.run_key": spec.run_key,
            "harness.dataset": spec.dataset_label,
            "harness.method": spec.method,
            "harness.seed": str(spec.seed),
            "harness.task": spec.task,
            "harness.status": "running",
            "harness.heartbeat": str(int(time.time())),
            "harness.pid": f"{socket.gethostname()}:{os.getpid()}",
            **environment_tags(),
            **provenance,
        }
        run = self.client.create_run(self.exp_id, run_name=spec.run_name,
                                     tags={"mlflow.runName": spec.run_name})
        self.run_id = run.info.run_id
        params = flatten({"dataset": {k: v for k, v in spec.dataset.items() if k != "label"},
                          **spec.config, "seed": spec.seed})
        self.client.log_batch(
            self.run_id,
            params=[Param(k[:250], v) for k, v in params.items()],
            tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()],
        )
        self._metrics: list = []

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        """Buffer metrics (non-finite values are logged as NaN by MLflow)."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._metrics.extend(Metric(k, float(v), ts, step) for k, v in values.items())
        if len(self._metrics) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Write buffered metrics and refresh the heartbeat tag."""
        from mlflow.entities import RunTag

        while self._metrics:
            chunk, self._metrics = self._metrics[:BATCH], self._metrics[BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)
        self.client.log_batch(self.run_id, tags=[RunTag("harness.heartbeat",
                                                        str(int(time.time())))])

    def log_text(self, text: str, name: str) -> None:
        """Store ``text`` as an artifact file ``name``."""
        self.client.log_text(self.run_id, text, name)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Store a local file or directory as an artifact."""
        if os.path.isdir(path):
            self.client.log_artifacts(self.run_id, path, artifact_path)
        else:
            self.client.log_artifact(self.run_id, path, artifact_path)

    def end(self, status: str, error: str = "") -> None:
        """Flush, tag the harness status (and one-line error), close the run."""
        from mlflow.entities import RunTag

        self.flush()
        tags = [RunTag("harness.status", status)]
        if error:
            tags.append(RunTag("harness.error", error.splitlines()[0][:500] if error else ""))
        self.client.log_batch(self.run_id, tags=tags)
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))


def mark_stale(uri: str | None, run_id: str, reason: str) -> None:
    """Close a run left RUNNING by a dead process as ``interrupted``."""
    from mlflow.entities import RunTag

    cl = client(uri)
    cl.log_batch(run_id, tags=[RunTag("harness.status", "interrupted"),
                               RunTag("harness.error", reason)])
    cl.set_terminated(run_id, "KILLED")


def log_suite_run(uri: str | None, suite: str, report_dir: str, counts: dict) -> str:
    """Record one suite-level MLflow run (tag ``harness.kind=suite``, no run
    key, so reports never count it) holding the report directory."""
    from mlflow.entities import Metric, RunTag

    cl = client(uri)
    exp = experiment_id(cl, suite)
    run = cl.create_run(exp, run_name=f"{suite} (suite)")
    ts = int(time.time() * 1000)
    cl.log_batch(run.info.run_id,
                 metrics=[Metric(f"runs/{k}", float(v), ts, 0) for k, v in counts.items()],
                 tags=[RunTag("harness.kind", "suite"), RunTag("harness.suite", suite),
                       RunTag("harness.git_commit", git_commit())])
    cl.log_artifacts(run.info.run_id, report_dir, "report")
    cl.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
