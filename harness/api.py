"""Run a suite and build a report from Python: what ``harness run`` and
``harness report`` do, without the command line::

    import harness

    summary = harness.run_suite("suites/quickstart.yaml", jobs=2)
    print(summary.counts, summary.ok)
    path = harness.build_report("suites/quickstart.yaml", out="reports/qs")

Both are thin compositions of the functions the CLI uses
(``harness.runner.make_plan``, ``harness.session.run_suite_plan`` with a
``harness.options.RunOptions``, ``harness.report.build_report``), so a
suite run from Python is the same runs, run keys, MLflow records and numbers
as one run from the shell, and resumes the same way.  Input mistakes raise ``harness.ConfigError`` /
``harness.UserError`` (the CLI's exit status 2) before any run starts; a
run's own failure is recorded in MLflow and counted in the summary, never
raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.session import SuiteSummary

__all__ = ["SuiteSummary", "build_report", "run_suite"]


def run_suite(path: str | Path, *, tracking_uri: str | None = None, only: str | None = None,
              jobs: int = 1, device: str = "auto", force: bool = False,
              rerun_failed: bool = False, executor: Any = "local",
              executor_params: dict[str, Any] | None = None, timeout: float | str | None = None,
              memory_limit: int | str | None = None, retries: int = 0, batch: bool = True,
              batch_all: bool = False, max_group: int | None = None, blocked: Sequence[str] = (),
              report: bool = True) -> SuiteSummary:
    """Run the suite file ``path`` as ``harness run`` does and return a summary.

    Every option of ``harness run`` is a keyword (``harness.options.RunOptions``):
    runs already finished in MLflow are skipped (resume); ``force`` reruns
    them, ``rerun_failed`` retries failed ones.  ``tracking_uri`` defaults to
    ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``; ``only`` selects
    runs by a ``dataset/method/seed`` glob; ``device`` is ``auto``, ``cpu``,
    ``cuda``, ``cuda:N`` or ``mps`` (and must exist here).  ``executor`` is an
    executor name or a built executor, ``executor_params`` its options
    (``jobs`` is the local executor's); ``timeout`` (seconds or ``"30m"``)
    and ``memory_limit`` (bytes or ``"8G"``) supervise each work item;
    ``retries`` retries infrastructure failures; ``batch`` (the default)
    trains the runs a task can train together without changing their numbers
    as groups (of at most ``max_group``), ``batch_all`` also those whose
    numbers a group changes within rounding (``--batch``); ``blocked`` names
    plugins to leave out.  With ``report``, when runs finished, the leaderboard
    is built (``summary.leaderboard``) and the full report is logged as a
    suite-level MLflow run (its id is ``summary.report_run_id``).

    Raises ``harness.ConfigError`` for a mistake in the suite and
    ``harness.UserError`` for a bad argument, before anything runs."""
    from harness.errors import UserError
    from harness.limits import parse_duration, parse_memory
    from harness.options import RunOptions
    from harness.plugins import get_registry
    from harness.runflags import check_device, check_suite_device
    from harness.runner import build_executor, make_plan
    from harness.session import run_suite_plan

    try:
        timeout = parse_duration(timeout) if timeout is not None else None
        memory_limit = parse_memory(memory_limit) if memory_limit is not None else None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    registry = get_registry(set(blocked) or None)
    if isinstance(executor, str):  # built now: a bad option stops before anything runs
        params = dict(executor_params or {})
        if executor == "local" and jobs != 1:
            params.setdefault("jobs", jobs)
        executor = build_executor(registry, executor, params)
    options = RunOptions(tracking_uri=tracking_uri, only=only, force=force,
                         rerun_failed=rerun_failed, device=check_device(device),
                         executor=executor, blocked=tuple(blocked), timeout=timeout,
                         memory_limit=memory_limit, retries=retries, batch=batch,
                         batch_all=batch_all, max_group=max_group, report=report)
    plan = make_plan(str(path), options.uri, only=only, force=force, rerun_failed=rerun_failed,
                     registry=registry)
    if plan.todo:
        check_suite_device(plan.suite, options.device)
    return run_suite_plan(plan, options, registry=registry)


def build_report(suite_or_experiment: str | Path, *, tracking_uri: str | None = None,
                 out: str | Path | None = None, formats: Sequence[str] = ("md", "html", "csv"),
                 metric: str | None = None, baseline: str | None = None,
                 include_stale: bool = False) -> Path:
    """Write the report of a suite file (or of an MLflow experiment, by name)
    and return its directory, as ``harness report`` does.

    A suite file is reported as its current plan: runs of earlier
    configurations of the same suite are left out (and counted) unless
    ``include_stale``; an experiment name reads every run in it.  ``out``
    defaults to ``reports/<suite name>``; ``formats`` are any of ``md``,
    ``html``, ``latex``, ``csv``; ``metric`` (``auroc`` or ``test/auroc``)
    overrides the suite's ``rank_by`` (for an experiment: the ``rank_by`` its
    last ``harness run`` logged; without either the report says which
    metrics to pass); ``baseline`` is the method wins, ties and losses are
    counted against.  The report reads MLflow only.  Raises
    ``harness.UserError`` for an unknown experiment, format or metric, or
    when there are no runs."""
    from harness.report import build_report as build

    return build(suite_or_experiment, tracking_uri=tracking_uri, out=out,
                 formats=tuple(formats), metric=metric, baseline=baseline,
                 include_stale=include_stale)
