"""Run a suite: resume from MLflow, execute the rest, retry, summarise.

The runner decides *which* runs to execute; an executor plugin decides
*where*; ``harness.worker.execute_run`` does one run (in a supervised child
process of its own when limits or retries ask for one: ``harness.limits``).
Results live only in MLflow, so a crash, a ``kill -9`` or Ctrl-C loses nothing
that finished, and the next ``harness run`` does exactly what is missing.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from harness import runstate
from harness.plan import RunSpec, expand_suite
from harness.suite import Suite, load_suite

#: Environment that workers (pools, Ray, SLURM jobs) must see as the planner
#: did: plugin selection and test switches.  Thread count is per worker.
_ENV_PREFIXES = ("HARNESS_", "MLFLOW_")
_ENV_LOCAL = ("HARNESS_TORCH_THREADS",)


@dataclass
class Plan:
    """Which runs of a suite execute now and why the others do not."""

    suite: Suite
    runs: list[RunSpec]
    todo: list[RunSpec] = field(default_factory=list)
    done: list[RunSpec] = field(default_factory=list)
    failed: list[RunSpec] = field(default_factory=list)
    #: Running now in another live process: not started twice.
    running: list[RunSpec] = field(default_factory=list)
    stale: dict[str, str] = field(default_factory=dict)  # run_key -> mlflow run id
    existing: dict = field(default_factory=dict)
    #: Filled by ``run_plan``: dataset label -> why its data could not be
    #: fetched (``DatasetUnavailable``), so the CLI says it once per dataset.
    unavailable: dict[str, str] = field(default_factory=dict)
    #: Filled by ``run_plan``: dataset label -> the input error that failed its
    #: runs (``harness.failure_kind=input``), said once per dataset; the next
    #: ``harness run`` retries those runs without ``--rerun-failed``.
    input_errors: dict[str, str] = field(default_factory=dict)


def make_plan(suite_file: str, uri: str | None, *, only: str | None = None, force: bool = False,
              rerun_failed: bool = False, registry=None) -> Plan:
    """Load the suite, expand it and split its runs by their MLflow state
    (``harness.runstate.plan_state``).

    A run still RUNNING in a live process is never started again, not even
    with ``force``; one left RUNNING by a dead process is closed as
    ``interrupted`` by ``run_plan`` and redone; a run that failed because of
    its input is redone without ``rerun_failed``."""
    from harness.tracking import existing_runs

    suite = load_suite(suite_file, registry)
    runs = expand_suite(suite, only)
    existing = existing_runs(uri, suite.name)
    plan = Plan(suite, runs, existing=existing)
    now = time.time()
    lists = {"todo": plan.todo, "done": plan.done, "failed": plan.failed,
             "running": plan.running, "stale": plan.todo}
    for spec in runs:
        info = existing.get(spec.run_key)
        state = runstate.plan_state(info, now, force=force, rerun_failed=rerun_failed)
        if state == "stale":
            plan.stale[spec.run_key] = info["run_id"]
        lists[state].append(spec)
    return plan


def build_executor(registry, name: str = "local", params: dict | None = None):
    """Validate ``params`` against executor ``name``'s factory signature and
    build it (``harness.ConfigError`` names an unknown option)."""
    return registry.create("executors", {"name": name, **(params or {})}, "executor")


def _devices(device: str, slots: int) -> list[str]:
    """One device per executor slot: GPUs round-robin when there are several
    and the executor runs several runs at once on this machine."""
    if device not in ("auto", "cuda") or slots <= 1:
        return [device]
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:
        n = 0
    if n > 1:
        return [f"cuda:{i % n}" for i in range(slots)]
    return [device]


def worker_env() -> dict[str, str]:
    """The planner's ``HARNESS_*``/``MLFLOW_*`` environment, for workers that
    were started before it was set (a Ray cluster, a reused pool)."""
    return {k: v for k, v in os.environ.items()
            if k.startswith(_ENV_PREFIXES) and k not in _ENV_LOCAL}


def _apply_env(env: dict[str, str]) -> None:
    changed = False
    for key in [k for k in os.environ if k.startswith(_ENV_PREFIXES) and k not in _ENV_LOCAL]:
        if key not in env:
            del os.environ[key]
            changed = True
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
            changed = True
    if changed:  # the plugin selection may differ from what this worker loaded
        from harness.plugins import get_registry

        get_registry(reload=True)


def _call(item, uri, blocked, executor="local", limits=None, env=None):
    """Run one item ``(spec dict, device, attempt)`` in whatever process the
    executor chose; isolated in a supervised child when ``limits`` say so."""
    from harness.worker import execute_run

    if env is not None:
        _apply_env(env)
    spec_data, device, attempt = (*item, 1)[:3]
    if limits is not None and limits.isolate:
        from harness.limits import run_isolated

        return run_isolated(spec_data, uri, device, blocked, attempt=attempt,
                            executor=executor, limits=limits)
    return execute_run(spec_data, uri, device, blocked, attempt=attempt, executor=executor)


def _lost_outcome(lost, uri: str | None, suite: str):
    """An ``Outcome`` for an item whose worker died; close the run it left
    RUNNING (the executor saw the worker go, so waiting for staleness is moot)."""
    from harness.tracking import close_run, existing_runs
    from harness.worker import Outcome

    spec_data, _, attempt = (*lost.item, 1)[:3]
    spec = RunSpec.from_dict(spec_data)
    info = existing_runs(uri, suite).get(spec.run_key, {})
    pid = runstate.local_pid(info)
    if info.get("status") == runstate.RUNNING and not (pid and runstate.pid_alive(pid)):
        try:
            close_run(uri, info["run_id"], "interrupted", lost.error)
        except Exception:  # tracking down too: resume closes it once stale
            pass
    return Outcome(spec.run_key, spec.run_name, "interrupted", error=lost.error,
                   attempt=attempt, retryable=lost.infrastructure)


def _dataset_failure(outcome) -> str | None:
    """``unavailable`` or ``input`` for a failure that belongs to the run's
    dataset rather than its method (every run on that dataset fails the same
    way), else None."""
    if outcome.status != runstate.FAILED_:
        return None
    error_type = getattr(outcome, "error_type", "")
    if error_type == "DatasetUnavailable":
        return "unavailable"
    kind = getattr(outcome, "failure_kind", None)
    if kind is None:  # an Outcome without the field: the core's input error types
        from harness import errors

        cls = getattr(errors, error_type, None)
        kind = runstate.INPUT_FAILURE if isinstance(cls, type) and issubclass(
            cls, errors.UserError) else ""
    return "input" if kind == runstate.INPUT_FAILURE else None


def _reason(outcome) -> str:
    """The one-line error without its ``ExceptionType: `` prefix."""
    prefix = f"{getattr(outcome, 'error_type', '')}: "
    return outcome.error[len(prefix):] if outcome.error.startswith(prefix) else outcome.error


def run_plan(plan: Plan, uri: str | None, *, device: str = "auto",
             executor="local", blocked: tuple[str, ...] = (), console=None,
             registry=None, limits=None, retries: int = 0, batch: bool = False,
             max_group: int | None = None, close_writer: bool = True) -> Counter:
    """Execute ``plan.todo``; return a Counter of statuses (``skipped``
    counts runs already done, ``running`` those running elsewhere).

    ``batch``: one work item per group of runs the task trains together
    (``harness.groups``, at most ``max_group`` runs each); not with a
    timeout or memory limit, which are per process; a run retried after an
    infrastructure failure of its group trains alone.  Its runs are written
    by a store writer (``harness.storewriter``), stopped at the end unless
    ``close_writer`` is false (``harness run`` asks it for the report first).

    ``executor``: a name, a ``{"name": ..., **params}`` spec or a built
    executor; its ``slots`` (runs at once on this machine, default 1) spread
    the runs over the GPUs round-robin.  A failure that belongs to a dataset
    (unavailable, or a bad input) is reported once per dataset
    (``plan.unavailable``, ``plan.input_errors``).  ``limits``
    (``harness.limits.Limits``) runs each run in a supervised child process.
    ``retries``: how many more times a run whose failure was the
    infrastructure's is tried (``harness.attempt`` counts).
    Ctrl-C propagates after the executor stops."""
    from harness.limits import Limits
    from harness.plugins import get_registry
    from harness.tracking import existing_runs, mark_stale, prepare_store
    from harness.worker import Lost

    registry = registry or get_registry()
    out = console or _plain_console()
    for run_id in plan.stale.values():
        mark_stale(uri, run_id, "left running by a process that died; rerun")
    counts: Counter = Counter(skipped=len(plan.done), running=len(plan.running))
    prepared = None
    if plan.todo and batch:
        from harness.storewriter import writer_for

        # batch mode writes through a store writer (harness.storewriter): it
        # imports mlflow and creates the store while this process groups the runs
        prepared = writer_for(uri).prepare(plan.suite.name)
    elif plan.todo:
        prepare_store(uri, plan.suite.name)
    registry.pm.hook.before_suite(suite=plan.suite, runs=plan.todo)
    name = getattr(executor, "name", type(executor).__name__)
    if isinstance(executor, (str, dict)):
        spec = executor if isinstance(executor, dict) else {"name": executor}
        name, params = spec.get("name", "local"), {k: v for k, v in spec.items() if k != "name"}
        executor = build_executor(registry, name, params)
    limits = limits or Limits()
    if retries and not limits.isolate:
        # a retried run needs a fresh process: after a worker death or a sticky
        # CUDA error the old one is gone or unusable
        limits = Limits(limits.timeout_s, limits.memory_bytes, isolate=True)
    devices = _devices(device, int(getattr(executor, "slots", 1) or 1))
    pending = [(s.to_dict(), devices[i % len(devices)], 1) for i, s in enumerate(plan.todo)]
    fn = functools.partial(_call, uri=uri, blocked=blocked, executor=name, limits=limits,
                           env=worker_env())
    # each call supervises its own child process: a local executor may drive
    # them from threads instead of worker processes
    fn.isolated = limits.isolate
    group_fn = None
    if batch:
        from harness.groups import batch_items, call_item, flat_outcomes

        if limits.timeout_s or limits.memory_bytes:
            raise ValueError("batch mode trains a group in one process: it does not "
                             "combine with a timeout or a memory limit")
        pending = batch_items(plan.todo, registry, devices, max_group)
        if prepared is not None:
            prepared.result()
        group_fn = functools.partial(call_item, uri=uri, blocked=blocked, executor=name,
                                     env=worker_env())
        group_fn.isolated = False
    labels = {s.run_key: s.dataset_label for s in plan.todo}
    with _progress(out, len(plan.todo)) as progress:
        while pending:
            if group_fn is not None:  # items are groups: (spec dicts, device, attempt)
                by_key = {d["run_key"]: (d, dev, att) for ds, dev, att in pending for d in ds}
                results = flat_outcomes(executor.map(group_fn, pending), uri, plan.suite.name)
            else:
                by_key = {item[0]["run_key"]: item for item in pending
                          if isinstance(item[0], dict)}
                results = executor.map(fn, pending)
            # a run retried after its group failed trains alone, in a fresh process
            group_fn = None
            again = []
            for result in results:
                outcome = _lost_outcome(result, uri, plan.suite.name) \
                    if isinstance(result, Lost) else result
                if outcome.retryable and outcome.attempt <= retries:
                    spec_data, dev, _ = by_key[outcome.run_key]
                    again.append((spec_data, dev, outcome.attempt + 1))
                    progress.retry(outcome, retries + 1)
                    continue
                counts[outcome.status] += 1
                kind = _dataset_failure(outcome)
                said = None
                if kind is not None:
                    seen = plan.unavailable if kind == "unavailable" else plan.input_errors
                    label = labels[outcome.run_key]
                    if label in seen:
                        said = f"same as above ({kind} dataset {label})"
                    seen.setdefault(label, _reason(outcome))
                progress(outcome, said)
            # a worker may have died after its run finished: never run it twice
            done = existing_runs(uri, plan.suite.name) if again else {}
            pending = [i for i in again
                       if done.get(i[0]["run_key"], {}).get("status") not in runstate.DONE]
            for _ in range(len(again) - len(pending)):
                counts["finished"] += 1
                progress.n += 1
    if batch and close_writer:
        from harness.storewriter import close_writers

        close_writers()
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
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeRemainingColumn(),
                                console=self.console)
            self.bar.__enter__()
            self.task = self.bar.add_task("runs", total=self.total)
        return self

    def _print(self, line: str) -> None:
        # soft_wrap: a log file or CI page gets one line per run, not lines
        # broken at rich's default 80 columns
        if self.bar is not None:
            self.bar.console.print(line, markup=False, soft_wrap=True)
        elif hasattr(self.console, "file"):
            self.console.print(line, markup=False, soft_wrap=True)
        else:
            self.console.print(line)

    def retry(self, outcome, attempts: int) -> None:
        """Report a run that failed for infrastructure reasons and goes again."""
        self._print(f"[retry {outcome.attempt + 1}/{attempts}] {outcome.run_name}: "
                    f"{outcome.status}: {outcome.error}")

    def __call__(self, outcome, error: str | None = None) -> None:
        """Report one finished run; ``error`` replaces its one-line error
        (a dataset's failure is spelled out once, not per run)."""
        self.n += 1
        line = f"[{self.n}/{self.total}] {outcome.status:<8} {outcome.run_name} " \
               f"({outcome.seconds:.1f}s)"
        if outcome.attempt > 1:
            line += f" attempt {outcome.attempt}"
        if error or outcome.error:
            line += f": {error or outcome.error}"
        if self.bar is not None:
            self.bar.advance(self.task)
            if outcome.status != "finished":
                self._print(line)
        else:
            self._print(line)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
