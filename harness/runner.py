"""Run a suite: resume from MLflow, execute the rest, retry, summarise.

The runner decides *which* runs to execute and how they form work items
(``harness.groups``); an executor plugin decides *where*;
``harness.worker.execute_item`` trains an item's runs (in a supervised child
process of its own when limits or retries ask for one: ``harness.limits``).
Results live only in MLflow, so a crash, a ``kill -9`` or Ctrl-C loses nothing
that finished, and the next ``harness run`` does exactly what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from harness import runstate
from harness.errors import UserError
from harness.options import RunOptions
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
    #: When the plan read the store (ms since the epoch): runs of its keys
    #: that another process starts later are not started again here.
    made_ms: int = 0


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
    if only and not runs:
        raise UserError(_no_match(suite, only))
    made_ms = int(time.time() * 1000)
    existing = existing_runs(uri, suite.name)
    plan = Plan(suite, runs, existing=existing, made_ms=made_ms)
    now = time.time()
    lists = {runstate.TODO: plan.todo, runstate.DONE_STATE: plan.done,
             runstate.FAILED_STATE: plan.failed, runstate.RUNNING: plan.running,
             runstate.STALE: plan.todo}
    for spec in runs:
        info = existing.get(spec.run_key)
        state = runstate.plan_state(info, now, force=force, rerun_failed=rerun_failed)
        if state == runstate.STALE:
            plan.stale[spec.run_key] = info["run_id"]
        lists[state].append(spec)
    return plan


def _no_match(suite: Suite, only: str) -> str:
    """``--only`` matched no run: say so with three run names it could have
    matched (the closest to the pattern)."""
    import difflib

    names = [s.run_name for s in expand_suite(suite)]
    close = difflib.get_close_matches(only, names, n=3, cutoff=0) or names[:3]
    shown = ", ".join(close) if close else "the suite has no runs"
    return (f"--only {only}: matches none of the {len(names)} runs of {suite.file}; run names "
            f"are dataset/method/seed, e.g. {shown}")


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


def run_item(item, uri: str | None, blocked: tuple[str, ...] = (), executor: str = "local",
             limits=None, env: dict | None = None, since_ms: int | None = None) -> list:
    """Execute one ``harness.worker.WorkItem`` in whatever process the
    executor chose (the function executors map); in a supervised child
    process of its own when ``limits`` say so.  One ``Outcome`` per run.
    ``since_ms`` (the plan's ``made_ms``): first leave out the item's runs that
    another harness process finished or started since the plan was made."""
    import multiprocessing

    from harness.progress import EPOCHS

    if env is not None:
        _apply_env(env)
    if multiprocessing.parent_process() is not None:  # a worker: its lines say which
        EPOCHS.prefix = f"[worker {os.getpid()}] "
    claimed: list = []
    if since_ms:
        item, claimed = claimed_elsewhere(item, uri, since_ms)
        if not item.specs:
            return claimed
    if limits is not None and limits.isolate:
        from harness.limits import run_isolated

        return claimed + run_isolated(item, uri, blocked, executor=executor, limits=limits)
    from harness.worker import execute_item

    return claimed + execute_item(item, uri, blocked, executor=executor)


#: How long one read of the runs started since the plan answers
#: ``claimed_elsewhere`` in a process (many short items, one read: it takes
#: ~0.2 s on an experiment of 100,000 runs).
CLAIMS_FRESH_S = 2.0
_CLAIMS: dict = {}


def claimed_elsewhere(item, uri: str | None, since_ms: int) -> tuple:
    """``(item, outcomes)``: the item without the runs another harness process
    finished, or started and still runs, since ``since_ms``, and an outcome
    (``skipped`` or ``running``) for each run left out.  Two processes given
    the same suite so train each run once, except for runs both start within
    the same moment (the store has no atomic claim)."""
    from harness.plan import RunSpec
    from harness.tracking import existing_runs
    from harness.worker import Outcome

    keys = set(item.run_keys)
    cache_key = (uri, item.specs[0]["suite"], since_ms)
    at, seen = _CLAIMS.get(cache_key, (0.0, {}))
    # a retry reads afresh: a snapshot may show its own first attempt running
    if item.attempt > 1 or time.monotonic() - at > CLAIMS_FRESH_S:
        seen = existing_runs(uri, item.specs[0]["suite"], since_ms)
        _CLAIMS.clear()
        _CLAIMS[cache_key] = (time.monotonic(), seen)
    seen = {k: v for k, v in seen.items() if k in keys}
    keep, out = [], []
    for d in item.specs:
        info = seen.get(d["run_key"])
        status = info and info["status"]
        name = RunSpec.from_dict(d).run_name
        if status in runstate.DONE:
            out.append(Outcome(d["run_key"], name, "skipped",
                               error="done by another harness process since this one planned"))
        elif status == runstate.RUNNING and not runstate.is_stale(info):
            out.append(Outcome(d["run_key"], name, "running",
                               error="started by another harness process since this one "
                                     "planned"))
        else:
            keep.append(d)
    return dataclasses.replace(item, specs=keep), out


def _dataset_failure(outcome) -> str | None:
    """``unavailable`` or ``input`` for a failure that belongs to the run's
    dataset rather than its method (every run on that dataset fails the same
    way), else None."""
    if outcome.failure_kind in (runstate.UNAVAILABLE_FAILURE, runstate.INPUT_FAILURE):
        return outcome.failure_kind
    return None


def _reason(outcome) -> str:
    """The one-line error without its ``ExceptionType: `` prefix."""
    prefix = f"{outcome.error_type}: "
    return outcome.error[len(prefix):] if outcome.error.startswith(prefix) else outcome.error


#: Runs to train from which batch mode logs through a store writer: below,
#: its start (a process importing mlflow, ~1.5-3 s) costs more than the
#: MLflow writes it takes off the training process (~0.2 ms a metric row).
WRITER_MIN_RUNS = 8


def uses_writer(plan: Plan, options: RunOptions) -> bool:
    """Whether ``run_plan`` logs ``plan``'s runs through a store writer
    (``harness.storewriter``): in batch mode, with ``WRITER_MIN_RUNS`` or
    more runs to train; otherwise each run logs from the process training it."""
    return options.batch and len(plan.todo) >= WRITER_MIN_RUNS


def run_plan(plan: Plan, options: RunOptions | None = None, *, registry=None, console=None,
             close_writer: bool = True) -> Counter:
    """Execute ``plan.todo`` as ``options`` say; return a Counter of statuses
    (``skipped`` counts runs already done, ``running`` those running
    elsewhere).

    Work items (``harness.groups.work_items``): one per run, or in batch mode
    one per group of runs the task trains together (at most ``max_group``),
    their runs written by a store writer when there are enough of them
    (``uses_writer``; ``harness.storewriter``, stopped at the end unless
    ``close_writer`` is false).  The executor's ``slots``
    (runs at once on this machine, default 1) spread the items over the GPUs
    round-robin.  ``timeout``/``memory_limit`` supervise each item in a child
    process (a group shares one deadline); ``retries``: how many more times
    a run whose failure was the infrastructure's is tried, alone, in a fresh
    process (``harness.attempt`` counts).  A failure that belongs to a
    dataset (unavailable, or a bad input) is reported once per dataset
    (``plan.unavailable``, ``plan.input_errors``).  Ctrl-C propagates after
    the executor stops."""
    from harness.groups import INEXACT_ENV, work_items
    from harness.interfaces import Executor
    from harness.plugins import get_registry
    from harness.tracking import existing_runs, mark_stale, prepare_store
    from harness.worker import Lost, lost_outcomes

    options = options or RunOptions()
    if options.batch_all and os.environ.get(INEXACT_ENV) != "1":
        with _environ(INEXACT_ENV, "1"):
            return run_plan(plan, options, registry=registry, console=console,
                            close_writer=close_writer)
    if options.quiet:
        from harness.progress import MODE_ENV

        # workers and supervised children inherit it (worker_env)
        with _environ(MODE_ENV, "off"):
            return run_plan(plan, dataclasses.replace(options, quiet=False), registry=registry,
                            console=console, close_writer=close_writer)
    uri = options.uri
    registry = registry or get_registry(set(options.blocked) or None)
    out = console or _plain_console()
    for run_id in plan.stale.values():
        mark_stale(uri, run_id, "left running by a process that died; rerun")
    counts: Counter = Counter(skipped=len(plan.done), running=len(plan.running))
    prepared = None
    writer = uses_writer(plan, options)
    if writer:
        from harness.storewriter import writer_for

        # batch mode writes through a store writer (harness.storewriter): it
        # imports mlflow and creates the store while this process groups the runs
        prepared = writer_for(uri).prepare(plan.suite.name)
    elif plan.todo:
        prepare_store(uri, plan.suite.name)
    registry.pm.hook.before_suite(suite=plan.suite, runs=plan.todo)
    executor = options.executor
    if isinstance(executor, (str, dict)):
        spec = executor if isinstance(executor, dict) else {"name": executor}
        params = {**{k: v for k, v in spec.items() if k != "name"}, **options.executor_params}
        executor = build_executor(registry, spec.get("name", "local"), params)
    if not isinstance(executor, Executor):
        raise UserError(f"executor {executor!r} has no map(fn, items) method "
                        "(see register_executors in harness/hookspecs.py)")
    name = getattr(executor, "name", type(executor).__name__)
    limits = options.limits
    devices = _devices(options.device, int(getattr(executor, "slots", 1) or 1))
    items = work_items(plan.todo, registry, devices, batch=options.batch,
                       max_group=options.max_group, inexact=options.batch_all, writer=writer)
    here = not limits.isolate and bool(getattr(executor, "in_process", lambda _: False)(items))
    if prepared is not None and not here:
        prepared.result()
    fn = functools.partial(run_item, uri=uri, blocked=options.blocked, executor=name,
                           limits=limits, env=worker_env(), since_ms=plan.made_ms or None)
    # each call supervises its own child process: a local executor may drive
    # them from threads instead of worker processes
    fn.isolated = limits.isolate
    labels = {s.run_key: s.dataset_label for s in plan.todo}
    with _progress(out, len(plan.todo)) as progress:
        while items:
            by_key = {d["run_key"]: (item, d) for item in items for d in item.specs}
            again = []
            for result in executor.map(fn, items):
                outcomes = lost_outcomes(result, uri, plan.suite.name) \
                    if isinstance(result, Lost) else result
                for outcome in outcomes:
                    if outcome.retryable and outcome.attempt <= options.retries:
                        item, data = by_key[outcome.run_key]
                        again.append(item.alone(data))
                        progress.retry(outcome, options.retries + 1)
                        continue
                    counts[outcome.status] += 1
                    progress(outcome, _said_once(plan, outcome, labels[outcome.run_key]))
            # a worker may have died after its run finished: never run it twice
            done = existing_runs(uri, plan.suite.name) if again else {}
            items = [i for i in again
                     if done.get(i.run_keys[0], {}).get("status") not in runstate.DONE]
            for _ in range(len(again) - len(items)):
                counts[runstate.FINISHED] += 1
                progress.n += 1
    if prepared is not None:
        prepared.result()  # a store the writer could not create: its runs failed, say why
    if writer and close_writer:
        from harness.storewriter import close_writers

        close_writers()
    registry.pm.hook.after_suite(suite=plan.suite, summary=dict(counts))
    return counts


@contextlib.contextmanager
def _environ(name: str, value: str):
    """Set an environment variable for the duration of the block."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _said_once(plan: Plan, outcome, label: str) -> str | None:
    """Record a dataset's failure in ``plan.unavailable``/``plan.input_errors``;
    the line to print instead of the run's own error once it was said."""
    kind = _dataset_failure(outcome)
    if kind is None:
        return None
    seen = plan.unavailable if kind == runstate.UNAVAILABLE_FAILURE else plan.input_errors
    said = f"same as above ({kind} dataset {label})" if label in seen else None
    seen.setdefault(label, _reason(outcome))
    return said


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

            from harness.progress import EPOCHS

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeRemainingColumn(),
                                console=self.console)
            self.bar.__enter__()
            self.task = self.bar.add_task("runs", total=self.total)
            # the epochs of a run training in this process, on a line of their own
            epochs = self.bar.add_task("", total=None, start=False)
            EPOCHS.live = lambda text: self.bar.update(epochs, description=text)
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
            if outcome.status != runstate.FINISHED:
                self._print(line)
        else:
            self._print(line)

    def __exit__(self, *exc):
        if self.bar is not None:
            from harness.progress import EPOCHS

            EPOCHS.live = None
            self.bar.__exit__(*exc)
        return False
