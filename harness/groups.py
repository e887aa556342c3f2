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
    ``interrupted`` and the two halves run as groups of their own."""
    import yaml

    from harness.plugins import get_registry
    from harness.tracking import RunLogger
    from harness.worker import (
        Outcome,
        RunContext,
        _one_line,
        _seed_everything,
        direction_tags,
        is_infrastructure_error,
        pick_device,
        provenance_tags,
    )

    specs = [RunSpec.from_dict(d) for d in specs_data]
    start = time.time()
    gid, n = group_id(specs), len(specs)
    outcomes: dict[int, Outcome] = {}
    registry = None
    loggers = {}
    for i, spec in enumerate(specs):
        try:
            registry = registry or get_registry(set(blocked) or None)
            loggers[i] = RunLogger(uri, spec, {**provenance_tags(spec, registry),
                                               **direction_tags(spec, registry)},
                                   {"harness.attempt": attempt, "harness.executor": executor,
                                    GROUP_TAG: f"{gid} {i + 1}/{n}"})
        except Exception as exc:  # the tracking store is unreachable: no run to record into
            outcomes[i] = Outcome(spec.run_key, spec.run_name, "failed", error=_one_line(exc),
                                  attempt=attempt, retryable=is_infrastructure_error(exc),
                                  error_type=type(exc).__name__)
    live = sorted(loggers)
    if not live:
        return [outcomes[i] for i in range(n)]
    hook = registry.pm.hook
    try:
        for i in live:
            loggers[i].log_text(yaml.safe_dump(specs[i].to_dict(), sort_keys=False),
                                "config.yaml")
        first = specs[live[0]]
        dev = pick_device(getattr(first, "device", "auto") if device == "auto" else device)
        _seed_everything(first.seeds["init"])
        for i in live:
            hook.before_run(spec=specs[i])
        task = registry.get("tasks", first.task).factory()
        ctxs = [RunContext(specs[i], loggers[i], registry, dev, task) for i in live]
        results = task.run_group(ctxs)
        if len(results) != len(ctxs):
            raise RuntimeError(f"task {first.task!r}: run_group returned {len(results)} "
                               f"results for {len(ctxs)} runs")
    except KeyboardInterrupt:
        for i in live:
            loggers[i].end("interrupted", "interrupted by the user (Ctrl-C)")
        raise
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError" and len(live) > 1:
            return _split_after_oom(specs_data, live, loggers, outcomes, exc, uri, device,
                                    blocked, attempt, executor)
        results = [exc] * len(live)
    share = (time.time() - start) / n
    for i, result in zip(live, results):
        outcomes[i] = _record(specs[i], loggers[i], hook, result, share, attempt)
    return [outcomes[i] for i in range(n)]


def _split_after_oom(specs_data, live, loggers, outcomes, exc, uri, device, blocked,
                     attempt, executor) -> list:
    """Close the group's runs and run its two halves as groups of their own
    (each half opens new MLflow runs; resume counts the newest per key)."""
    import gc

    half = len(live) // 2
    note = (f"the group of {len(live)} ran out of memory ({type(exc).__name__}); "
            f"retrained in groups of {half} and {len(live) - half}")
    for i in live:
        loggers[i].end("interrupted", note)
    del exc
    gc.collect()
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:  # no CUDA: nothing cached
        pass
    parts = [[specs_data[i] for i in live[:half]], [specs_data[i] for i in live[half:]]]
    results = {}
    for part in parts:
        for outcome in execute_item(part, uri, device, blocked, attempt=attempt,
                                    executor=executor):
            results[outcome.run_key] = outcome
    for i in live:
        outcomes[i] = results[specs_data[i]["run_key"]]
    return [outcomes[i] for i in range(len(specs_data))]


def _record(spec: RunSpec, logger, hook, result, seconds: float, attempt: int):
    """End one run of a group as ``execute_run`` would have: test metrics and
    ``finished``, ``diverged``, or the failure with its traceback."""
    from harness.errors import DatasetUnavailable, Diverged, UserError
    from harness.worker import (
        FAILURE_KIND_TAG,
        Outcome,
        _one_line,
        is_infrastructure_error,
        is_oom,
    )

    def outcome(status, metrics=None, error="", retryable=False, exc=None):
        return Outcome(spec.run_key, spec.run_name, status, metrics or {}, error, seconds,
                       attempt, retryable, logger.run_id,
                       type(exc).__name__ if exc is not None else "")

    if not isinstance(result, BaseException):
        logger.log_metrics({f"test/{k}": v for k, v in result.items()}, 0)
        logger.end("finished")
        hook.after_run(spec=spec, status="finished", metrics=result)
        return outcome("finished", result)
    if isinstance(result, Diverged):
        logger.end("diverged", str(result) or "loss became NaN/inf")
        hook.after_run(spec=spec, status="diverged", metrics={})
        return outcome("diverged", error=str(result))
    error = _one_line(result)
    status = "oom" if is_oom(result) else "failed"
    retryable = status == "failed" and is_infrastructure_error(result)
    try:
        logger.log_text("".join(traceback.format_exception(result)), "traceback.txt")
        hook.on_run_error(spec=spec, error=result)
    except Exception:  # recording must not hide the run's own error
        pass
    try:
        if isinstance(result, (UserError, DatasetUnavailable)):
            logger.set_tags({FAILURE_KIND_TAG: "input"})
        logger.end(status, error)
    except Exception as track_exc:  # the tracking store went away mid-run
        retryable = retryable or is_infrastructure_error(track_exc)
    return outcome(status, error=error, retryable=retryable, exc=result)


def lost_outcomes(lost, uri: str | None, suite: str) -> list:
    """Outcomes for a batch-mode item whose worker died: each of its runs is
    closed ``interrupted`` as ``harness.runner`` does for one run."""
    from harness.runner import _lost_outcome
    from harness.worker import Lost

    specs_data, dev, attempt = (*lost.item, 1)[:3]
    return [_lost_outcome(Lost((d, dev, attempt), lost.error, lost.infrastructure), uri, suite)
            for d in specs_data]
