"""Work items: which runs train together, and on which device.

Batch mode, the default of ``harness run`` (``--no-batch`` turns it off;
``--max-group N`` caps a group), groups the runs a task can train together
without changing their numbers; ``--batch`` also groups the runs whose
numbers a group changes within rounding.  Without batch mode every run is an
item of its own.  The core knows no method: the task decides.  A task that
batches has

- ``batch_key(spec) -> (key, reason)``: runs with the same key may train
  together.  ``(key, "")``: a group logs exactly what each run logs alone,
  whichever runs share it, so the default groups it.  ``(key, reason)``: a
  group changes the run's numbers within rounding (``reason`` says why), so
  only ``--batch`` groups it and the default trains it alone, saying why.
  ``(None, reason)``: the run must train alone (``"scheme `sam` is not
  batchable"``).  Called at plan time, so it must be cheap and must not
  load data;
- ``run_group(ctxs) -> list[dict | BaseException]``: train the runs of one
  group (one ``RunContext`` each) and return, per run, its final test
  metrics or the exception that ended it (``harness.Diverged`` ...).

Every item, a group or a run alone, executes through the one run lifecycle
(``harness.worker.execute_item``): one MLflow run per spec with the same
tags, params, artifacts and metrics whichever way it trained (a group's runs
carry the tag ``harness.group``), each ending with its own status, so
identity, resume, ``--only`` and retries stay per run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.interfaces import BatchTask
from harness.plan import RunSpec
from harness.worker import WorkItem, group_id

#: Set to ``1`` by the runner while ``--batch`` (``RunOptions.batch_all``)
#: runs, so that a task's ``run_group`` may also stack, at run time, the runs
#: whose numbers a group changes within rounding (what it can only tell once
#: the data is loaded: a model ``auto`` is a cnn on image data).  Workers and
#: supervised children inherit it (``harness.runner.worker_env``).
INEXACT_ENV = "HARNESS_BATCH_INEXACT"


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
    task = tasks[spec.task]
    if not isinstance(task, BatchTask):
        return None, f"task `{spec.task}` does not train runs together"
    key, reason = task.batch_key(spec)
    return (f"{spec.task}:{key}", reason or "") if key is not None else (None, reason)


def group_runs(specs: list[RunSpec], registry, max_group: int | None = None, *,
               inexact: bool = False) -> Grouping:
    """Group ``specs`` by their task's batch key, in chunks of at most
    ``max_group``; the others train alone, with the reason.  ``inexact``:
    also group the runs whose numbers a group changes within rounding (a
    key with a reason: ``--batch``)."""
    if max_group is not None and max_group < 1:
        raise ValueError(f"max_group must be >= 1, got {max_group}")
    tasks: dict = {}
    buckets: dict[str, list[RunSpec]] = {}
    order: list = []  # a bucket key, or a spec training alone
    out = Grouping()
    for spec in specs:
        key, reason = batch_key(spec, registry, tasks)
        if key is None or (reason and not inexact):
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


def work_items(todo: list[RunSpec], registry, devices: list[str], *, batch: bool = False,
               max_group: int | None = None, inexact: bool = False,
               writer: bool | None = None) -> list[WorkItem]:
    """The runner's work items for ``todo``: one per run, or in batch mode
    one per group or run training alone; devices round-robin over items.
    ``writer``: their runs log through a store writer (default: in batch
    mode; ``harness.runner.uses_writer``).  ``inexact``: see ``group_runs``."""
    items = group_runs(todo, registry, max_group, inexact=inexact).items if batch \
        else [[s] for s in todo]
    writer = batch if writer is None else writer
    return [WorkItem([s.to_dict() for s in item], devices[i % len(devices)], 1, writer)
            for i, item in enumerate(items)]


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
