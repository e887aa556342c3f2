"""Batched execution: group the runs a task can train together, run a group.

Opt-in (``harness run --batch``, ``--max-group N``).  The core knows no
method: the task decides.  A task that batches has

- ``batch_key(spec) -> (key, reason)``: runs with the same key may train
  together; ``(None, reason)`` when this run must train alone (``"scheme
  `sam` is not batchable"``).  Called at plan time, so it must be cheap and
  must not load data;
- ``run_group(ctxs) -> list[dict | BaseException]``: train the runs of one
  group (one ``RunContext`` each) and return, per run, its final test
  metrics or the exception that ended it (``harness.Diverged`` ...).

A group is executed like its runs would be one by one (``execute_group``):
one MLflow run per spec with the same tags, params, artifacts and metrics as
``harness.worker.execute_run`` writes, plus the tag ``harness.group``; each
run ends with its own status, so identity, resume, ``--only`` and retries stay
per run.  A group of one is simply ``execute_run``.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from dataclasses import dataclass, field

from harness.plan import RunSpec

#: Tag naming the group a run trained in: ``<group id> <i>/<n>``.
GROUP_TAG = "harness.group"


@dataclass
class Grouping:
    """How the runs of a plan execute in batch mode, in plan order."""

    #: Each item is a list of specs: a group (>= 2) or one run training alone.
    items: list[list[RunSpec]] = field(default_factory=list)
    #: run_key -> why the run trains alone.
    alone: dict[str, str] = field(default_factory=dict)

    @property
    def groups(self) -> list[list[RunSpec]]:
        """The items that train more than one run."""
        return [i for i in self.items if len(i) > 1]


def batch_key(spec: RunSpec, registry, tasks: dict | None = None) -> tuple[str | None, str]:
    """The task's group key for ``spec`` (see the module docstring)."""
    tasks = {} if tasks is None else tasks
    if spec.task not in tasks:
        tasks[spec.task] = registry.get("tasks", spec.task).factory()
    fn = getattr(tasks[spec.task], "batch_key", None)
    if fn is None:
        return None, f"task `{spec.task}` does not train runs together"
    key, reason = fn(spec)
    return (f"{spec.task}:{key}", "") if key is not None else (None, reason)


def group_runs(specs: list[RunSpec], registry, max_group: int | None = None) -> Grouping:
    """Group ``specs`` by their task's batch key, in chunks of at most
    ``max_group``; the others train alone, with the reason."""
    if max_group is not None and max_group < 1:
        raise ValueError(f"max_group must be >= 1, got {max_group}")
    tasks: dict = {}
    buckets: dict[str, list[RunSpec]] = {}
    order: list = []  # a bucket key, or a spec training alone
    out = Grouping()
    for spec in specs:
        key, reason = batch_key(spec, registry, tasks)
        if key is None:
            out.alone[spec.run_key] = reason
            order.append(spec)
            continue
        if key not in buckets:
            order.append(key)
        buckets.setdefault(key, []).append(spec)
    for entry in order:
        if isinstance(entry, RunSpec):
            out.items.append([entry])
            continue
        members = buckets[entry]
        size = max_group or len(members)
        for i in range(0, len(members), size):
            chunk = members[i:i + size]
            if len(chunk) == 1:
                out.alone[chunk[0].run_key] = "no other run to train with"
            out.items.append(chunk)
    return out


def group_id(specs: list[RunSpec]) -> str:
    """A short stable id of a group: a hash of its run keys."""
    blob = ",".join(s.run_key for s in specs)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def execute_item(specs_data: list[dict], uri: str | None, device: str = "auto",
                 blocked: tuple[str, ...] = (), *, attempt: int = 1,
                 executor: str = "local") -> list:
    """Execute one batch-mode item: ``execute_run`` for a run alone,
    ``execute_group`` for a group; a list of ``Outcome`` either way."""
    from harness.worker import execute_run

    if len(specs_data) == 1:
        return [execute_run(specs_data[0], uri, device, blocked, attempt=attempt,
                            executor=executor)]
    return execute_group(specs_data, uri, device, blocked, attempt=attempt, executor=executor)


def execute_group(specs_data: list[dict], uri: str | None, device: str = "auto",
                  blocked: tuple[str, ...] = (), *, attempt: int = 1,
                  executor: str = "local") -> list:
    """Run a group end to end: one MLflow run per spec, ``task.run_group``,
    each run recorded with its own status.  Never raises for a run's failure
    (``KeyboardInterrupt`` marks every open run ``interrupted`` and
    propagates).  On CUDA out-of-memory the group's runs are closed as
    ``interrupted`` and the two halves run as groups of their own.

    The runs are written by this process's store writer
    (``harness.storewriter``): creating them and writing their per-epoch
    metrics overlap the training, in another process; each outcome is
    returned once its run's end is in the store."""
    import yaml

    from harness.plugins import get_registry
    from harness.storewriter import RemoteRunLogger, writer_for
    from harness.worker import (
        Outcome,
        RunContext,
        _one_line,
        _seed_everything,
        direction_tags,
        pick_device,
        provenance_tags,
    )

    specs = [RunSpec.from_dict(d) for d in specs_data]
    start = time.time()
    gid, n = group_id(specs), len(specs)
    try:
        registry = get_registry(set(blocked) or None)
    except Exception as exc:  # noqa: BLE001 - every run fails the same way
        return [Outcome(s.run_key, s.run_name, "failed", error=_one_line(exc), attempt=attempt,
                        error_type=type(exc).__name__) for s in specs]
    writer = writer_for(uri)
    loggers = []
    for i, spec in enumerate(specs):
        logger = RemoteRunLogger(writer, spec, {**provenance_tags(spec, registry),
                                                **direction_tags(spec, registry)},
                                 {"harness.attempt": attempt, "harness.executor": executor,
                                  GROUP_TAG: f"{gid} {i + 1}/{n}"})
        logger.log_text(yaml.safe_dump(spec.to_dict(), sort_keys=False), "config.yaml")
        loggers.append(logger)
    hook = registry.pm.hook
    try:
        first = specs[0]
        dev = pick_device(getattr(first, "device", "auto") if device == "auto" else device)
        _seed_everything(first.seeds["init"])
        for spec in specs:
            hook.before_run(spec=spec)
        task = registry.get("tasks", first.task).factory()
        ctxs = [RunContext(spec, loggers[i], registry, dev, task) for i, spec in enumerate(specs)]
        results = task.run_group(ctxs)
        if len(results) != len(ctxs):
            raise RuntimeError(f"task {first.task!r}: run_group returned {len(results)} "
                               f"results for {len(ctxs)} runs")
    except KeyboardInterrupt:
        for logger in loggers:
            logger.end("interrupted", "interrupted by the user (Ctrl-C)")
        for logger in loggers:
            logger.wait()
        raise
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError" and n > 1:
            return _split_after_oom(specs_data, loggers, exc, uri, device, blocked, attempt,
                                    executor)
        results = [exc] * n
    share = (time.time() - start) / n
    ended = [_end_run(specs[i], loggers[i], hook, result) for i, result in enumerate(results)]
    return [_settle(specs[i], loggers[i], hook, ended[i], share, attempt) for i in range(n)]


def _split_after_oom(specs_data, loggers, exc, uri, device, blocked, attempt,
                     executor) -> list:
    """Close the group's runs and run its two halves as groups of their own
    (each half opens new MLflow runs; resume counts the newest per key)."""
    import gc

    n = len(loggers)
    half = n // 2
    note = (f"the group of {n} ran out of memory ({type(exc).__name__}); "
            f"retrained in groups of {half} and {n - half}")
    for logger in loggers:
        logger.end("interrupted", note)
    for logger in loggers:
        logger.wait()
    del exc
    gc.collect()
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:  # no CUDA: nothing cached
        pass
    out = []
    for part in (specs_data[:half], specs_data[half:]):
        out += execute_item(part, uri, device, blocked, attempt=attempt, executor=executor)
    return out


def _end_run(spec: RunSpec, logger, hook, result) -> tuple:
    """Queue the end of one run of a group as ``execute_run`` would write it:
    test metrics and ``finished``, ``diverged``, or the failure with its
    traceback.  Returns ``(status, metrics, error, exception)``."""
    from harness.errors import DatasetUnavailable, Diverged, UserError
    from harness.worker import FAILURE_KIND_TAG, _one_line, is_oom

    if not isinstance(result, BaseException):
        logger.log_metrics({f"test/{k}": v for k, v in result.items()}, 0)
        logger.end("finished")
        return "finished", result, "", None
    if isinstance(result, Diverged):
        error = str(result) or "loss became NaN/inf"
        logger.end("diverged", error)
        return "diverged", {}, str(result), None
    error = _one_line(result)
    status = "oom" if is_oom(result) else "failed"
    logger.log_text("".join(traceback.format_exception(result)), "traceback.txt")
    try:
        hook.on_run_error(spec=spec, error=result)
    except Exception:  # recording must not hide the run's own error
        pass
    if isinstance(result, (UserError, DatasetUnavailable)):
        logger.set_tags({FAILURE_KIND_TAG: "input"})
    logger.end(status, error)
    return status, {}, error, result


def _settle(spec: RunSpec, logger, hook, ended: tuple, seconds: float, attempt: int):
    """The run's ``Outcome`` once its end is in the store; a run the store
    writer could not record fails (an infrastructure failure)."""
    from harness.worker import Outcome, is_infrastructure_error

    status, metrics, error, exc = ended
    run_id, problem = logger.wait()
    if problem:
        return Outcome(spec.run_key, spec.run_name, "failed", {}, problem, seconds, attempt,
                       True, run_id or "", "WriterError")
    if status in ("finished", "diverged"):
        hook.after_run(spec=spec, status=status, metrics=metrics)
    retryable = status == "failed" and is_infrastructure_error(exc)
    return Outcome(spec.run_key, spec.run_name, status, metrics, error, seconds, attempt,
                   retryable, run_id, type(exc).__name__ if exc is not None else "")


def lost_outcomes(lost, uri: str | None, suite: str) -> list:
    """Outcomes for a batch-mode item whose worker died: each of its runs is
    closed ``interrupted`` as ``harness.runner`` does for one run."""
    from harness.runner import _lost_outcome
    from harness.worker import Lost

    specs_data, dev, attempt = (*lost.item, 1)[:3]
    return [_lost_outcome(Lost((d, dev, attempt), lost.error, lost.infrastructure), uri, suite)
            for d in specs_data]


def batch_items(todo: list[RunSpec], registry, devices: list[str],
                max_group: int | None = None) -> list[tuple]:
    """The runner's work items in batch mode: ``(spec dicts, device, attempt)``
    per group or run training alone, devices round-robin over items."""
    grouping = group_runs(todo, registry, max_group)
    return [([s.to_dict() for s in item], devices[i % len(devices)], 1)
            for i, item in enumerate(grouping.items)]


def call_item(item: tuple, uri: str | None, blocked: tuple[str, ...] = (),
              executor: str = "local", env: dict | None = None) -> list:
    """Execute one batch-mode item in whatever process the executor chose
    (the counterpart of ``harness.runner._call``)."""
    from harness.runner import _apply_env

    if env is not None:
        _apply_env(env)
    specs_data, device, attempt = (*item, 1)[:3]
    return execute_item(specs_data, uri, device, blocked, attempt=attempt, executor=executor)


def flat_outcomes(results, uri: str | None, suite: str):
    """An executor's results for batch-mode items, one ``Outcome`` per run
    (an item whose worker died gives one ``interrupted`` outcome per run)."""
    from harness.worker import Lost

    for result in results:
        yield from (lost_outcomes(result, uri, suite) if isinstance(result, Lost) else result)


def describe(grouping: Grouping) -> list[str]:
    """Lines for ``harness plan --batch``: each group and its size, then the
    runs that train alone and why (one line per reason)."""
    lines = []
    for item in grouping.groups:
        methods = sorted({s.method for s in item})
        shown = ", ".join(methods[:4]) + (f", ... ({len(methods)} methods)"
                                          if len(methods) > 4 else "")
        lines.append(f"group {group_id(item)}: {len(item)} runs on {item[0].dataset_label}: "
                     f"{shown}")
    reasons: dict[str, list[str]] = {}
    for item in grouping.items:
        if len(item) == 1:
            spec = item[0]
            reasons.setdefault(grouping.alone.get(spec.run_key, ""), []).append(spec.run_name)
    for reason, names in reasons.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        lines.append(f"alone ({len(names)} runs): {reason}: {shown}")
    n_grouped = sum(len(g) for g in grouping.groups)
    lines.append(f"{len(grouping.items)} work items: {len(grouping.groups)} groups "
                 f"({n_grouped} runs), {len(grouping.items) - len(grouping.groups)} runs alone")
    return lines
