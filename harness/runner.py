"""Run a suite: resume from MLflow, execute the rest, summarise.

The runner decides *which* runs to execute; an executor plugin decides
*where*; ``harness.worker.execute_run`` does one run.  Results live only in
MLflow, so a crash or Ctrl-C loses nothing that finished.
"""

from __future__ import annotations

import functools
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from harness.plan import RunSpec, expand_suite
from harness.suite import Suite, load_suite

#: Statuses that count as a result (a diverged run is the method's outcome).
DONE = {"finished", "diverged"}
#: Statuses rerun only with ``--rerun-failed``.
FAILED = {"failed", "timeout", "oom"}


@dataclass
class Plan:
    """Which runs of a suite execute now and why the others do not."""

    suite: Suite
    runs: list[RunSpec]
    todo: list[RunSpec] = field(default_factory=list)
    done: list[RunSpec] = field(default_factory=list)
    failed: list[RunSpec] = field(default_factory=list)
    stale: dict[str, str] = field(default_factory=dict)  # run_key -> mlflow run id
    existing: dict = field(default_factory=dict)


def make_plan(suite_file: str, uri: str | None, *, only: str | None = None, force: bool = False,
              rerun_failed: bool = False, registry=None) -> Plan:
    """Load the suite, expand it and split its runs by their MLflow state."""
    from harness.tracking import existing_runs

    suite = load_suite(suite_file, registry)
    runs = expand_suite(suite, only)
    existing = existing_runs(uri, suite.name)
    plan = Plan(suite, runs, existing=existing)
    for spec in runs:
        state = existing.get(spec.run_key, {}).get("status")
        if force or state is None or state in ("interrupted",):
            plan.todo.append(spec)
        elif state in DONE:
            plan.done.append(spec)
        elif state in FAILED:
            (plan.todo if rerun_failed else plan.failed).append(spec)
        else:  # left "running" by a process that no longer runs
            plan.stale[spec.run_key] = existing[spec.run_key]["run_id"]
            plan.todo.append(spec)
    return plan


def _devices(device: str, jobs: int) -> list[str]:
    """One device per job: GPUs round-robin when there are several."""
    if device not in ("auto", "cuda"):
        return [device]
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:
        n = 0
    if n > 1 and jobs > 1:
        return [f"cuda:{i % n}" for i in range(jobs)]
    return [device]


def _call(item, uri, blocked):
    from harness.worker import execute_run

    spec_data, device = item
    return execute_run(spec_data, uri, device, blocked)


def run_plan(plan: Plan, uri: str | None, *, jobs: int = 1, device: str = "auto",
             executor: str | dict = "local", blocked: tuple[str, ...] = (), console=None,
             registry=None) -> Counter:
    """Execute ``plan.todo``; return a Counter of statuses (``skipped``
    counts runs already done).  Ctrl-C propagates after the executor stops."""
    from harness.plugins import get_registry
    from harness.tracking import mark_stale

    registry = registry or get_registry()
    out = console or _plain_console()
    for run_id in plan.stale.values():
        mark_stale(uri, run_id, "left running by a process that died; rerun")
    counts: Counter = Counter(skipped=len(plan.done))
    registry.pm.hook.before_suite(suite=plan.suite, runs=plan.todo)
    spec_exec = executor if isinstance(executor, dict) else {"name": executor}
    if spec_exec.get("name") == "local":
        spec_exec = {"jobs": jobs, **spec_exec}
    ex = registry.create("executors", spec_exec, "executor")
    devices = _devices(device, jobs)
    items = [(s.to_dict(), devices[i % len(devices)]) for i, s in enumerate(plan.todo)]
    fn = functools.partial(_call, uri=uri, blocked=blocked)
    with _progress(out, len(items)) as progress:
        for outcome in ex.map(fn, items):
            counts[outcome.status] += 1
            progress(outcome)
    registry.pm.hook.after_suite(suite=plan.suite, summary=dict(counts))
    return counts


class _plain_console:
    is_terminal = False

    def print(self, *args, **kwargs):
        print(*args, file=sys.stderr, flush=True)


class _progress:
    """Rich progress bar with ETA on a terminal; one plain line per run otherwise."""

    def __init__(self, console, total: int):
        self.console = console
        self.total = total
        self.n = 0
        self.start = time.time()
        self.bar = None

    def __enter__(self):
        if getattr(self.console, "is_terminal", False) and self.total:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeRemainingColumn(),
                                console=self.console)
            self.bar.__enter__()
            self.task = self.bar.add_task("runs", total=self.total)
        return self

    def __call__(self, outcome) -> None:
        self.n += 1
        line = f"[{self.n}/{self.total}] {outcome.status:<8} {outcome.run_name} " \
               f"({outcome.seconds:.1f}s)"
        if outcome.error:
            line += f": {outcome.error}"
        if self.bar is not None:
            self.bar.advance(self.task)
            if outcome.status != "finished":
                self.bar.console.print(line, markup=False)
        else:
            self.console.print(line, markup=False) if hasattr(self.console, "file") else \
                self.console.print(line)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
