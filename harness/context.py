"""What a task gets to run: the ``RunContext`` and the values it is built from.

A ``RunContext`` is one run's view of the harness: its spec and config, its
seeds, its device, the component registry, and logging through the run's
``harness.runlog.RunLogger``.  The run lifecycle (``harness.worker``) builds
one per run, for a run trained alone as for a run trained in a group.
"""

from __future__ import annotations

import os
from typing import Any

from harness.plan import RunSpec


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

    def __init__(self, spec: RunSpec, logger, registry, device: str, task=None):
        self.spec = spec
        self.config = spec.config
        self.seeds = spec.seeds
        self.device = device
        self.registry = registry
        self.task = task
        #: This run's ``harness.runlog.RunLogger`` (what every ``log_*`` below uses).
        self.logger = logger
        self._data = None
        self._cited = False

    @property
    def data(self):
        """The task's data object for this run (its ``prepare(entry, seed,
        ctx)``), built once; a task without ``prepare`` gets the raw dataset."""
        if self._data is None:
            prepare = getattr(self.task, "prepare", None)
            if prepare is None:
                self._data = self.load_raw()
            else:
                self._data = prepare(self.spec.dataset, self.spec.seeds["split"], self)
        return self._data

    def load_raw(self, entry: dict | None = None):
        """The ``RawDataset`` of ``entry`` (default: this run's dataset),
        loaded through the process-wide cache.  A citation in the run's own
        dataset's ``meta["citation"]`` is stored with the run
        (``dataset/citation.bib``)."""
        from harness.data import load_entry

        raw = load_entry(entry or self.spec.dataset, self.registry)
        citation = (raw.meta or {}).get("citation") if entry in (None, self.spec.dataset) else None
        if citation and not self._cited:
            self.logger.log_text(str(citation), "dataset/citation.bib")
            self._cited = True
        return raw

    def create(self, kind: str, spec: Any, **offered: Any) -> Any:
        """Build a registered component; ``offered`` are data-derived values
        (``in_shape=...``), passed to the factory where it declares them
        with ``harness.FromData``."""
        return self.registry.create(kind, spec, kind, **offered)

    def metrics(self) -> dict[str, Any]:
        """The suite's metrics, built: logged name -> callable (with its
        declared ``inputs`` and ``greater_is_better``)."""
        return {name: self.registry.create("metrics", spec, f"metrics.{name}")
                for name, spec in self.spec.metric_components().items()}

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        """Log metrics at ``step`` (buffered)."""
        self.logger.log_metrics(values, step)

    def epoch_end(self, epoch: int, values: dict[str, float], phase: str = "train") -> None:
        """Log one epoch's metrics and notify ``on_epoch_end`` hooks.  Outside
        the ``train`` phase the keys are logged under ``<phase>/``."""
        from harness.progress import EPOCHS

        logged = values if phase == "train" else {f"{phase}/{k}": v for k, v in values.items()}
        self.logger.log_metrics(logged, epoch)
        EPOCHS.epoch(self.spec.run_name, phase, epoch)
        if self.logger.flush_due():
            self.logger.flush()
        self.registry.pm.hook.on_epoch_end(spec=self.spec, epoch=epoch, metrics=values,
                                           phase=phase)

    def expect_epochs(self, epochs: int, phase: str = "train") -> None:
        """Say how many epochs ``phase`` will train, so the progress line of
        a long run shows the time left (``harness.progress``)."""
        from harness.progress import EPOCHS

        EPOCHS.expect(self.spec.run_name, phase, epochs)

    def log_params(self, params: dict[str, Any]) -> None:
        """Log extra run parameters (values become strings)."""
        self.logger.log_params(params)

    def log_text(self, text: str, name: str) -> None:
        """Store a text artifact."""
        self.logger.log_text(text, name)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Store a file or directory artifact."""
        self.logger.log_artifact(path, artifact_path)


def provenance_tags(spec: RunSpec, registry) -> dict[str, str]:
    """``harness.plugin.<kind>.<name>`` = ``dist==version`` for each component
    the run uses (dataset source, transforms, task, config components)."""
    used = [("tasks", spec.task), ("datasets", spec.dataset["source"])]
    used += [("transforms", name) for name, _ in spec.dataset.get("transforms", [])]
    used += [tuple(c) for c in spec.components]
    used += [("metrics", s["name"]) for s in spec.metric_components().values()]
    tags = {}
    for kind, name in used:
        info = registry.components(kind).get(name)
        if info is not None:
            tags[f"harness.plugin.{kind}.{name}"] = info.provenance
    return tags


def direction_tags(spec: RunSpec, registry) -> dict[str, str]:
    """``harness.direction.<metric>`` = ``max`` | ``min`` | ``none`` for each
    suite metric, so reports rank from MLflow alone."""
    from harness.metrics import DIRECTION_TAG, direction_tag

    tags = {}
    for name, s in spec.metric_components().items():
        info = registry.components("metrics").get(s["name"])
        if info is not None:
            tags[f"{DIRECTION_TAG}{name}"] = direction_tag(info.factory)
    return tags


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch for a run; set its torch thread count."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    # executors set this per worker so runs sharing a machine do not oversubscribe
    # its cores, and so every executor computes with the same thread count
    threads = os.environ.get("HARNESS_TORCH_THREADS")
    if threads and int(threads) != torch.get_num_threads():
        torch.set_num_threads(int(threads))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
