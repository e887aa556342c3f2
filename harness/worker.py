"""Execute one run: the code every executor calls, in whatever process.

``execute_run`` never raises for a run's own failure: it records the failure
in MLflow (status, one-line error, traceback artifact) and returns an
``Outcome``, so one bad run never stops a suite.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from harness.errors import Diverged
from harness.plan import RunSpec


@dataclass
class Outcome:
    """What a run ended with, as the runner summarises it."""

    run_key: str
    run_name: str
    status: str
    metrics: dict = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


def pick_device(requested: str = "auto") -> str:
    """``auto`` -> cuda, then mps, then cpu; anything else is passed through."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class RunContext:
    """What a task gets to run one RunSpec: data, components, logging."""

    def __init__(self, spec: RunSpec, logger, registry, device: str):
        self.spec = spec
        self.config = spec.config
        self.seeds = spec.seeds
        self.device = device
        self.registry = registry
        self._logger = logger
        self._data = None

    @property
    def data(self):
        """The prepared dataset (``harness.data.PreparedData``), loaded once."""
        if self._data is None:
            from harness.prepare import prepare_dataset

            self._data = prepare_dataset(self.spec.dataset, self.spec.seeds["split"],
                                         registry=self.registry)
        return self._data

    def create(self, kind: str, spec: Any, **filled: Any) -> Any:
        """Build a registered component (``filled``: data-derived arguments)."""
        return self.registry.create(kind, spec, kind, **filled)

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        """Log metrics at ``step`` (buffered)."""
        self._logger.log_metrics(values, step)

    def epoch_end(self, epoch: int, values: dict[str, float]) -> None:
        """Log one epoch's metrics and notify ``on_epoch_end`` hooks."""
        self._logger.log_metrics(values, epoch)
        if epoch % 10 == 9:
            self._logger.flush()
        self.registry.pm.hook.on_epoch_end(spec=self.spec, epoch=epoch, metrics=values)

    def log_text(self, text: str, name: str) -> None:
        """Store a text artifact."""
        self._logger.log_text(text, name)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Store a file or directory artifact."""
        self._logger.log_artifact(path, artifact_path)


def provenance_tags(spec: RunSpec, registry) -> dict[str, str]:
    """``harness.plugin.<kind>.<name>`` = ``dist==version`` for each component
    the run uses (dataset source, transforms, task, config components)."""
    used = [("tasks", spec.task), ("datasets", spec.dataset["source"])]
    used += [("transforms", name) for name, _ in spec.dataset.get("transforms", [])]
    used += [tuple(c) for c in spec.components]
    tags = {}
    for kind, name in used:
        info = registry.components(kind).get(name)
        if info is not None:
            tags[f"harness.plugin.{kind}.{name}"] = info.provenance
    return tags


def execute_run(spec_data: dict, uri: str | None, device: str = "auto",
                blocked: tuple[str, ...] = ()) -> Outcome:
    """Run one spec end to end and record it in MLflow.  ``KeyboardInterrupt``
    marks the run ``interrupted`` and propagates, so Ctrl-C stops the suite."""
    import yaml

    from harness.plugins import get_registry
    from harness.tracking import RunLogger

    spec = RunSpec.from_dict(spec_data)
    registry = get_registry(set(blocked) or None)
    hook = registry.pm.hook
    start = time.time()
    logger = RunLogger(uri, spec, provenance_tags(spec, registry))
    logger.log_text(yaml.safe_dump(spec.to_dict(), sort_keys=False), "config.yaml")
    try:
        dev = pick_device(spec.config.get("training", {}).get("device", device)
                          if device == "auto" else device)
        _seed_everything(spec.seeds["init"])
        hook.before_run(spec=spec)
        task = registry.get("tasks", spec.task).factory()
        ctx = RunContext(spec, logger, registry, dev)
        metrics = task.run(ctx)
        logger.log_metrics({f"test/{k}": v for k, v in metrics.items()}, 0)
        logger.end("finished")
        hook.after_run(spec=spec, status="finished", metrics=metrics)
        return Outcome(spec.run_key, spec.run_name, "finished", metrics,
                       seconds=time.time() - start)
    except Diverged as exc:
        logger.end("diverged", str(exc) or "loss became NaN/inf")
        hook.after_run(spec=spec, status="diverged", metrics={})
        return Outcome(spec.run_key, spec.run_name, "diverged", error=str(exc),
                       seconds=time.time() - start)
    except KeyboardInterrupt:
        logger.end("interrupted", "interrupted by the user (Ctrl-C)")
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        try:
            logger.log_text(traceback.format_exc(), "traceback.txt")
            hook.on_run_error(spec=spec, error=exc)
        finally:
            logger.end("failed", error)
        return Outcome(spec.run_key, spec.run_name, "failed", error=error,
                       seconds=time.time() - start)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
