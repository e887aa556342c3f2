"""Execute one run: the code every executor calls, in whatever process.

``execute_run`` never raises for a run's own failure: it records the failure
in MLflow (status, one-line error, traceback artifact) and returns an
``Outcome``, so one bad run never stops a suite.  The outcome says whether the
failure was the infrastructure's (``retryable``: CUDA error, tracking server
unreachable) rather than the method's, which ``--retries`` acts on.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.errors import Diverged, UserError
from harness.plan import RunSpec

#: Tag on a failed run whose failure was its input's (a bad file, a dataset
#: that does not suit the config, data that could not be fetched).
FAILURE_KIND_TAG = "harness.failure_kind"

#: Messages of errors that come from the machine, not from a method's code.
_INFRA_MESSAGES = ("CUDA error", "CUBLAS_STATUS", "CUDNN_STATUS", "NCCL error",
                   "cudaErrorLaunchFailure", "uncorrectable ECC", "database is locked",
                   "unable to open database file", "Max retries exceeded",
                   "Connection refused", "Connection reset", "API request to")
_INFRA_TYPES = ("ConnectionError", "ConnectTimeout", "ReadTimeout", "MaxRetryError",
                "NewConnectionError", "ProtocolError", "RemoteDisconnected")


@dataclass
class Outcome:
    """What a run ended with, as the runner summarises it."""

    run_key: str
    run_name: str
    status: str
    metrics: dict = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    attempt: int = 1
    #: An infrastructure failure: ``--retries`` runs it again.
    retryable: bool = False
    run_id: str = ""
    #: Class name of the exception that ended the run (``DatasetUnavailable``,
    #: ``UserError``, ...), empty when it finished.
    error_type: str = ""


@dataclass
class Lost:
    """What an executor yields instead of a result for an item whose worker
    died (or whose call raised outside ``execute_run``): the runner records
    the run as ``interrupted`` and, with ``--retries``, runs it again."""

    item: Any
    error: str
    #: False when the call itself raised (a bug, not the machine): no retry.
    infrastructure: bool = True


def is_infrastructure_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is the machine's
    fault -- a CUDA/NCCL failure, a lost connection to the tracking server, a
    locked database -- rather than an error in a method's code."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = {c.__name__ for c in type(exc).__mro__}
        if names & set(_INFRA_TYPES) or any(m in str(exc) for m in _INFRA_MESSAGES):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def is_oom(exc: BaseException) -> bool:
    """``MemoryError`` (e.g. an address-space limit) or
    ``torch.cuda.OutOfMemoryError`` (matched by name: torch stays unimported)."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


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
        self._logger = logger
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
            self._logger.log_text(str(citation), "dataset/citation.bib")
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
        self._logger.log_metrics(values, step)

    def epoch_end(self, epoch: int, values: dict[str, float], phase: str = "train") -> None:
        """Log one epoch's metrics and notify ``on_epoch_end`` hooks.  Outside
        the ``train`` phase the keys are logged under ``<phase>/``."""
        logged = values if phase == "train" else {f"{phase}/{k}": v for k, v in values.items()}
        self._logger.log_metrics(logged, epoch)
        if self._logger.flush_due():
            self._logger.flush()
        self.registry.pm.hook.on_epoch_end(spec=self.spec, epoch=epoch, metrics=values,
                                           phase=phase)

    def log_params(self, params: dict[str, Any]) -> None:
        """Log extra run parameters (values become strings)."""
        self._logger.log_params(params)

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
    used += [("metrics", s["name"]) for s in spec.metric_components().values()]
    tags = {}
    for kind, name in used:
        info = registry.components(kind).get(name)
        if info is not None:
            tags[f"harness.plugin.{kind}.{name}"] = info.provenance
    return tags


def direction_tags(spec: RunSpec, registry) -> dict[str, str]:
    """``harness.direction.<metric>`` = ``max`` | ``min`` for each suite metric,
    so reports rank from MLflow alone."""
    from harness.metrics import DIRECTION_TAG

    tags = {}
    for name, s in spec.metric_components().items():
        info = registry.components("metrics").get(s["name"])
        if info is not None:
            better = getattr(info.factory, "greater_is_better", True)
            tags[f"{DIRECTION_TAG}{name}"] = "max" if better else "min"
    return tags


def execute_run(spec_data: dict, uri: str | None, device: str = "auto",
                blocked: tuple[str, ...] = (), *, attempt: int = 1, executor: str = "local",
                started: Callable[[str], None] | None = None) -> Outcome:
    """Run one spec end to end and record it in MLflow.  ``KeyboardInterrupt``
    marks the run ``interrupted`` and propagates, so Ctrl-C stops the suite.

    ``attempt`` and ``executor`` become the tags ``harness.attempt`` and
    ``harness.executor``; ``started(run_id)`` is called once the MLflow run
    exists (a supervising process uses it to record a kill)."""
    import yaml

    from harness.plugins import get_registry
    from harness.tracking import RunLogger

    spec = RunSpec.from_dict(spec_data)
    start = time.time()

    def outcome(status: str, metrics=None, error: str = "", retryable: bool = False,
                run_id: str = "", exc: BaseException | None = None) -> Outcome:
        return Outcome(spec.run_key, spec.run_name, status, metrics or {}, error,
                       time.time() - start, attempt, retryable, run_id,
                       type(exc).__name__ if exc is not None else "")

    try:
        registry = get_registry(set(blocked) or None)
        logger = RunLogger(uri, spec, {**provenance_tags(spec, registry),
                                       **direction_tags(spec, registry)},
                           {"harness.attempt": attempt, "harness.executor": executor})
    except Exception as exc:  # e.g. the tracking server is unreachable: no run to record into
        return outcome("failed", error=_one_line(exc), retryable=is_infrastructure_error(exc),
                       exc=exc)
    if started is not None:
        started(logger.run_id)
    hook = registry.pm.hook
    try:
        logger.log_text(yaml.safe_dump(spec.to_dict(), sort_keys=False), "config.yaml")
        dev = pick_device(spec.device if device == "auto" else device)
        _seed_everything(spec.seeds["init"])
        hook.before_run(spec=spec)
        task = registry.get("tasks", spec.task).factory()
        ctx = RunContext(spec, logger, registry, dev, task)
        metrics = task.run(ctx)
        logger.log_metrics({f"test/{k}": v for k, v in metrics.items()}, 0)
        logger.end("finished")
        hook.after_run(spec=spec, status="finished", metrics=metrics)
        return outcome("finished", metrics, run_id=logger.run_id)
    except Diverged as exc:
        logger.end("diverged", str(exc) or "loss became NaN/inf")
        hook.after_run(spec=spec, status="diverged", metrics={})
        return outcome("diverged", error=str(exc), run_id=logger.run_id)
    except KeyboardInterrupt:
        logger.end("interrupted", "interrupted by the user (Ctrl-C)")
        raise
    except Exception as exc:
        error = _one_line(exc)
        status = "oom" if is_oom(exc) else "failed"
        retryable = status == "failed" and is_infrastructure_error(exc)
        try:
            logger.log_text(traceback.format_exc(), "traceback.txt")
            hook.on_run_error(spec=spec, error=exc)
        except Exception:  # recording must not hide the run's own error
            pass
        try:
            # the input's fault, not the method's: the next `harness run` retries
            # it once the input is fixed.  Not DatasetUnavailable: an offline
            # dataset would add a failed run to the store at every `harness run`;
            # `--rerun-failed` retries it once the network is back.
            if isinstance(exc, UserError):
                logger.set_tags({FAILURE_KIND_TAG: "input"})
            logger.end(status, error)
        except Exception as track_exc:  # the tracking store went away mid-run
            retryable = retryable or is_infrastructure_error(track_exc)
        return outcome(status, error=error, retryable=retryable, run_id=logger.run_id, exc=exc)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def _seed_everything(seed: int) -> None:
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
