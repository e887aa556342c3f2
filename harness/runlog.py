"""The ``RunLogger`` protocol: how a run writes to the tracking store.

A run logs through one of two implementations, chosen by the run lifecycle
(``harness.worker``), never by a task:

- ``harness.tracking.MlflowRunLogger`` writes from the training process
  itself (one MLflow client, a heartbeat thread);
- ``harness.storewriter.RemoteRunLogger`` queues every call to a store-writer
  child process, so the training process never imports mlflow and its
  writes overlap the training (batch mode).

Both record the same tags, params, metrics and artifacts, and both serve the
shared-array lookup of ``harness.shared`` (``find_shared``/``store_shared``),
so a task behaves the same whichever one it is given.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RunLogger(Protocol):
    """What a run's logger offers (``ctx.logger``)."""

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        """Buffer metrics at ``step``."""

    def flush(self) -> None:
        """Write (or send) buffered metrics."""

    def flush_due(self) -> bool:
        """Whether buffered metrics have waited long enough to be flushed now."""

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags on the run (values become strings)."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Log extra params (flattened with dots; values become strings)."""

    def log_text(self, text: str, name: str) -> None:
        """Store ``text`` as the artifact file ``name``."""

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Store a local file or directory as an artifact."""

    def find_shared(self, name: str, key: str) -> dict | None:
        """The arrays another run of this experiment stored as ``name`` under
        ``key`` (``store_shared``), or None when no run holds them."""

    def store_shared(self, name: str, key: str, arrays: dict) -> None:
        """Store ``{name: numpy array}`` with this run, findable by ``key``."""

    def end(self, status: str, error: str = "") -> None:
        """End the run: last metrics, status tag (and one-line error), terminated."""

    def wait(self, timeout: float | None = None) -> tuple[str | None, str]:
        """``(run_id, problem)`` once the run's end is in the store;
        ``problem`` says why the run could not be recorded ("" when it was)."""


def open_logger(uri: str | None, spec, tags: dict[str, str], *, writer: bool) -> RunLogger:
    """A logger for ``spec``'s new MLflow run with ``tags`` (provenance,
    directions, attempt, executor, group): through this process's store
    writer when ``writer``, else written from this process."""
    if writer:
        from harness.storewriter import RemoteRunLogger, writer_for

        return RemoteRunLogger(writer_for(uri), spec, tags)
    from harness.tracking import MlflowRunLogger

    return MlflowRunLogger(uri, spec, tags)
