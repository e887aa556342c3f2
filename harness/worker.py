"""The run lifecycle: execute one work item, in whatever process.

A work item (``WorkItem``) is a list of run specs for one device: a run
trained alone is an item of one, a batch-mode group (``harness.groups``) an
item of several.  ``execute_item`` is the only code that starts and ends runs:

1. each run gets its MLflow run (``harness.runlog.open_logger``: written
   from this process, or through the store writer in batch mode) with its
   tags, params and ``config.yaml``;
2. the task trains: ``task.run_group(ctxs)`` for a group, when the task has a
   batch mode; else ``task.run(ctx)`` for each run in turn (a run's MLflow
   run is opened when it starts);
3. each run ends through ``harness.runstate.judge`` (status, failure kind,
   retry), with its test metrics, or its traceback and one-line error.

``execute_item`` never raises for a run's own failure: one bad run never
stops a suite.  ``KeyboardInterrupt`` ends the open runs ``interrupted`` and
propagates, so Ctrl-C stops the suite.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from harness import runstate
from harness.context import (
    RunContext,
    direction_tags,
    pick_device,
    provenance_tags,
    seed_everything,
)
from harness.interfaces import BatchTask
from harness.plan import RunSpec
from harness.progress import EPOCHS

#: Tag naming the group a run trained in: ``<group id> <i>/<n>``.
GROUP_TAG = "harness.group"


@dataclass
class WorkItem:
    """What an executor runs in one call: run specs (``RunSpec.to_dict()``,
    picklable) trained on ``device``, the ``attempt`` they are on, and whether
    they log through a store writer (``writer``: batch mode)."""

    specs: list[dict]
    device: str = "auto"
    attempt: int = 1
    writer: bool = False

    @property
    def run_keys(self) -> list[str]:
        """The run keys of the item's runs, in order."""
        return [d["run_key"] for d in self.specs]

    def alone(self, spec: dict) -> WorkItem:
        """One of this item's runs as an item of its own, on its next attempt
        (how ``--retries`` retries a run whose item failed on the machine)."""
        return WorkItem([spec], self.device, self.attempt + 1, self.writer)


@dataclass
class Outcome:
    """How one run ended, as the runner counts and reports it."""

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
    #: Class name of the exception that ended the run, "" when it finished.
    error_type: str = ""
    #: ``harness.runstate`` failure kind (``input``, ``unavailable``, ...).
    failure_kind: str = ""


@dataclass
class Lost:
    """What an executor yields instead of a result for an item whose worker
    died (or whose call raised outside ``execute_item``): the runner records
    its runs ``interrupted`` and, with ``--retries``, runs them again."""

    item: WorkItem
    error: str
    #: False when the call itself raised (a bug, not the machine): no retry.
    infrastructure: bool = True


def group_id(specs: list[RunSpec]) -> str:
    """A short stable id of a group: a hash of its run keys."""
    import hashlib

    blob = ",".join(s.run_key for s in specs)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def outcome(spec: RunSpec, verdict: runstate.Verdict, *, metrics: dict | None = None,
            seconds: float = 0.0, attempt: int = 1, run_id: str | None = "") -> Outcome:
    """The ``Outcome`` of ``spec`` for ``verdict``."""
    return Outcome(spec.run_key, spec.run_name, verdict.status, metrics or {}, verdict.error,
                   seconds, attempt, verdict.retryable, run_id or "", verdict.error_type,
                   verdict.failure_kind)


#: ``started(run_key, run_id | None, writer pid | None)``.
Started = Callable[[str, "str | None", "int | None"], None]
Ended = Callable[[Outcome], None]


def execute_item(item: WorkItem, uri: str | None, blocked: tuple[str, ...] = (), *,
                 executor: str = "local", started: Started | None = None,
                 ended: Ended | None = None) -> list[Outcome]:
    """Train the runs of ``item`` and record each in MLflow; one ``Outcome``
    per run, in order.  ``started(run_key, run_id | None, writer_pid | None)``
    is called when a run's MLflow run is opened (the id is None while a store
    writer creates it; the writer's pid is None without one) and
    ``ended(outcome)`` when its end is in the store: a supervising process
    uses them to record a kill."""
    from harness.plugins import get_registry

    specs = [RunSpec.from_dict(d) for d in item.specs]
    try:
        registry = get_registry(set(blocked) or None)
    except Exception as exc:  # noqa: BLE001 - no registry: nothing can be recorded
        return [outcome(s, runstate.judge(exc), attempt=item.attempt) for s in specs]
    lifecycle = _Lifecycle(item, uri, registry, executor, started, ended)
    if len(specs) > 1 and isinstance(lifecycle.task, BatchTask):
        return lifecycle.together(specs)
    return [lifecycle.alone(spec) for spec in specs]


class _Lifecycle:
    """Start, train and end the runs of one work item."""

    def __init__(self, item: WorkItem, uri, registry, executor: str, started, ended):
        self.item, self.uri, self.registry = item, uri, registry
        self.executor, self.started, self.ended = executor, started, ended
        self.hook = registry.pm.hook
        first = RunSpec.from_dict(item.specs[0])
        try:
            self.task = registry.get("tasks", first.task).factory()
        except Exception as exc:  # noqa: BLE001 - each run records it
            self.task = exc

    def _open(self, spec: RunSpec, group: str | None = None):
        import yaml

        from harness.runlog import open_logger

        tags = {**provenance_tags(spec, self.registry), **direction_tags(spec, self.registry),
                "harness.attempt": str(self.item.attempt), "harness.executor": self.executor}
        if group:
            tags[GROUP_TAG] = group
        logger = open_logger(self.uri, spec, tags, writer=self.item.writer)
        logger.log_text(yaml.safe_dump(spec.to_dict(), sort_keys=False), "config.yaml")
        if self.started is not None:
            self.started(spec.run_key, getattr(logger, "run_id", None),
                         getattr(logger, "writer_pid", None))
        return logger

    def _device(self, spec: RunSpec) -> str:
        device = self.item.device
        return pick_device(getattr(spec, "device", "auto") if device == "auto" else device)

    def _task(self):
        if isinstance(self.task, BaseException):
            raise self.task
        return self.task

    def alone(self, spec: RunSpec) -> Outcome:
        """Train one run with ``task.run``."""
        start = time.time()
        try:
            logger = self._open(spec)
        except Exception as exc:  # noqa: BLE001 - e.g. the tracking server is unreachable
            return outcome(spec, runstate.judge(exc), seconds=time.time() - start,
                           attempt=self.item.attempt)
        result: dict | BaseException
        EPOCHS.begin(spec.run_name)
        try:
            seed_everything(spec.seeds["init"])
            task = self._task()
            self.hook.before_run(spec=spec)
            result = task.run(RunContext(spec, logger, self.registry, self._device(spec), task))
        except KeyboardInterrupt as exc:
            self._settle(spec, logger, self._end(spec, logger, exc), time.time() - start)
            raise
        except Exception as exc:  # noqa: BLE001 - the run's failure, recorded
            result = exc
        finally:
            EPOCHS.end()
        ended = self._end(spec, logger, result)
        return self._settle(spec, logger, ended, time.time() - start)

    def together(self, specs: list[RunSpec]) -> list[Outcome]:
        """Train a group with ``task.run_group``; a CUDA out-of-memory splits
        it in halves that train as groups of their own."""
        start = time.time()
        gid, n = group_id(specs), len(specs)
        loggers = []
        try:
            for i, spec in enumerate(specs):
                loggers.append(self._open(spec, f"{gid} {i + 1}/{n}"))
        except Exception as exc:  # noqa: BLE001 - the store is unusable for all of them
            verdict = runstate.judge(exc)
            ended = [self._end(s, lg, exc) for s, lg in zip(specs, loggers)]
            done = [self._settle(s, lg, e, time.time() - start)
                    for s, lg, e in zip(specs, loggers, ended)]
            return done + [outcome(s, verdict, attempt=self.item.attempt)
                           for s in specs[len(loggers):]]
        EPOCHS.begin(specs[0].run_name, n)
        try:
            seed_everything(specs[0].seeds["init"])
            task = self._task()
            for spec in specs:
                self.hook.before_run(spec=spec)
            device = self._device(specs[0])
            ctxs = [RunContext(s, lg, self.registry, device, task)
                    for s, lg in zip(specs, loggers)]
            results = list(task.run_group(ctxs))
            if len(results) != n:
                raise RuntimeError(f"task {specs[0].task!r}: run_group returned {len(results)} "
                                   f"results for {n} runs")
        except KeyboardInterrupt as exc:
            ended = [self._end(s, lg, exc) for s, lg in zip(specs, loggers)]
            for s, lg, e in zip(specs, loggers, ended):
                self._settle(s, lg, e, time.time() - start)
            raise
        except Exception as exc:  # noqa: BLE001 - every run of the group ends with it
            if type(exc).__name__ == "OutOfMemoryError" and n > 1:
                return self._split(specs, loggers, exc)
            results = [exc] * n
        finally:
            EPOCHS.end()
        ended = [self._end(s, lg, r) for s, lg, r in zip(specs, loggers, results)]
        share = (time.time() - start) / n
        return [self._settle(s, lg, e, share) for s, lg, e in zip(specs, loggers, ended)]

    def _split(self, specs: list[RunSpec], loggers: list, exc: BaseException) -> list[Outcome]:
        """End the group's runs ``interrupted`` and train its halves (each
        opens new MLflow runs; resume counts the newest run of a key)."""
        import gc

        n, half = len(specs), len(specs) // 2
        note = (f"the group of {n} ran out of memory ({type(exc).__name__}); "
                f"retrained in groups of {half} and {n - half}")
        for logger in loggers:
            logger.end(runstate.INTERRUPTED, note)
        for logger in loggers:
            logger.wait()
        del exc
        gc.collect()
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - no CUDA: nothing cached
            pass
        item = self.item
        out = []
        for part in (item.specs[:half], item.specs[half:]):
            out += execute_item(WorkItem(part, item.device, item.attempt, item.writer), self.uri,
                                executor=self.executor, started=self.started, ended=self.ended)
        return out

    def _end(self, spec: RunSpec, logger, result) -> tuple:
        """Queue the end of one run: test metrics and its status, or the
        failure with its traceback.  Returns ``(verdict, metrics)``."""
        exc = result if isinstance(result, BaseException) else None
        verdict = runstate.judge(exc)
        try:
            if exc is None:
                logger.log_metrics({f"test/{k}": v for k, v in result.items()}, 0)
            elif verdict.status not in runstate.DONE and not isinstance(exc, KeyboardInterrupt):
                logger.log_text("".join(traceback.format_exception(exc)), "traceback.txt")
                try:
                    self.hook.on_run_error(spec=spec, error=exc)
                except Exception:  # noqa: BLE001 - recording must not hide the run's error
                    pass
            if verdict.tags:
                logger.set_tags(verdict.tags)
            logger.end(verdict.status, verdict.error)
        except Exception as track_exc:  # noqa: BLE001 - the store went away mid-run
            return runstate.judge(track_exc), {}
        return verdict, ({} if exc is not None else result)

    def _settle(self, spec: RunSpec, logger, ended: tuple, seconds: float) -> Outcome:
        """The run's ``Outcome`` once its end is in the store (``seconds``:
        its training time); a run that could not be recorded failed on the
        infrastructure."""
        from harness.errors import NotRecorded

        verdict, metrics = ended
        run_id, problem = logger.wait()
        if problem:
            verdict, metrics = runstate.judge(NotRecorded(problem)), {}
        elif verdict.status in runstate.DONE:
            self.hook.after_run(spec=spec, status=verdict.status, metrics=metrics)
        done = outcome(spec, verdict, metrics=metrics, seconds=seconds,
                       attempt=self.item.attempt, run_id=run_id)
        if self.ended is not None:
            self.ended(done)
        return done


def lost_outcomes(lost: Lost, uri: str | None, suite: str) -> list[Outcome]:
    """Outcomes for an item whose worker died: each run it left RUNNING (in
    a process that is gone) is closed ``interrupted``."""
    from harness.errors import WorkerLost
    from harness.tracking import close_run, existing_runs

    verdict = runstate.judge(WorkerLost(lost.error))
    if not lost.infrastructure:
        verdict = dataclasses.replace(verdict, failure_kind=runstate.METHOD_FAILURE,
                                      retryable=False)
    try:
        existing = existing_runs(uri, suite)
    except Exception:  # noqa: BLE001 - tracking down too: resume closes them once stale
        existing = {}
    out = []
    for data in lost.item.specs:
        spec = RunSpec.from_dict(data)
        info = existing.get(spec.run_key, {})
        pid = runstate.local_pid(info)
        if info.get("status") == runstate.RUNNING and not (pid and runstate.pid_alive(pid)):
            try:
                close_run(uri, info["run_id"], verdict.status, lost.error)
            except Exception:  # noqa: BLE001 - resume closes it once stale
                pass
        out.append(outcome(spec, verdict, attempt=lost.item.attempt))
    return out
