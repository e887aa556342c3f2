"""Run a suite and build a report from Python: what ``harness run`` and
``harness report`` do, without the command line::

    import harness

    summary = harness.run_suite("suites/quickstart.yaml", jobs=2)
    print(summary.counts, summary.ok)
    path = harness.build_report("suites/quickstart.yaml", out="reports/qs")

Both are thin compositions of the functions the CLI uses
(``harness.runner.make_plan``/``run_plan``, ``harness.report.build_report``,
``harness.report.log_suite_report``), so a suite run from Python is the same
runs, run keys, MLflow records and numbers as one run from the shell, and
resumes the same way.  Input mistakes raise ``harness.ConfigError`` /
``harness.UserError`` (the CLI's exit status 2) before any run starts; a
run's own failure is recorded in MLflow and counted in the summary, never
raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Statuses counted as failures (the CLI's exit status 1).
_FAILED = ("failed", "timeout", "oom")


@dataclass
class SuiteSummary:
    """What :func:`run_suite` did.

    ``counts`` maps status -> runs: ``finished``, ``diverged``, ``failed``,
    ``timeout``, ``oom``, ``interrupted`` for the runs executed now,
    ``skipped`` for runs already done, ``running`` for runs running in another
    process.  ``failed_earlier`` counts failed runs left alone (no
    ``rerun_failed``).  ``unavailable`` and ``input_errors`` map a dataset
    label to why its runs failed (data that could not be fetched; a bad
    input, retried by the next run without ``rerun_failed``)."""

    suite: str
    suite_file: str
    tracking_uri: str
    runs: int
    counts: dict[str, int]
    failed_earlier: int = 0
    unavailable: dict[str, str] = field(default_factory=dict)
    input_errors: dict[str, str] = field(default_factory=dict)
    #: The suite-level MLflow run holding the report, when one was logged.
    report_run_id: str | None = None

    @property
    def failed(self) -> int:
        """Runs that failed, timed out or ran out of memory, now or earlier."""
        return sum(self.counts.get(s, 0) for s in _FAILED) + self.failed_earlier

    @property
    def ok(self) -> bool:
        """True when no run failed or was interrupted (``harness run``'s exit 0)."""
        return not self.failed and not self.counts.get("interrupted", 0)


def run_suite(path: str | Path, *, tracking_uri: str | None = None, only: str | None = None,
              jobs: int = 1, device: str = "auto", force: bool = False,
              rerun_failed: bool = False) -> SuiteSummary:
    """Run the suite file ``path`` as ``harness run`` does and return a summary.

    Runs already finished in MLflow are skipped (resume); ``force`` reruns
    them, ``rerun_failed`` retries failed ones.  ``tracking_uri`` defaults to
    ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``; ``only`` selects
    runs by a ``dataset/method/seed`` glob; ``jobs`` runs that many local
    worker processes; ``device`` is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or
    ``mps`` (and must exist here).  When a run finished, the full report is
    logged as a suite-level MLflow run (its id is ``report_run_id``).

    Raises ``harness.ConfigError`` for a mistake in the suite and
    ``harness.UserError`` for a bad argument, before anything runs."""
    from harness.plugins import get_registry
    from harness.report import log_suite_report
    from harness.runflags import check_device
    from harness.runner import build_executor, make_plan, run_plan
    from harness.runstate import resolve_uri

    uri = resolve_uri(tracking_uri)
    device = check_device(device)
    registry = get_registry()
    executor = build_executor(registry, "local", {"jobs": jobs})
    plan = make_plan(str(path), uri, only=only, force=force, rerun_failed=rerun_failed,
                     registry=registry)
    counts = run_plan(plan, uri, device=device, executor=executor, registry=registry)
    run_id = log_suite_report(plan.suite, uri, counts)
    return SuiteSummary(plan.suite.name, plan.suite.file, uri, len(plan.runs),
                        {k: int(v) for k, v in counts.items() if v}, len(plan.failed),
                        dict(plan.unavailable), dict(plan.input_errors), run_id)


def build_report(suite_or_experiment: str | Path, *, tracking_uri: str | None = None,
                 out: str | Path | None = None, formats: Sequence[str] = ("md", "html", "csv"),
                 metric: str | None = None) -> Path:
    """Write the report of a suite file (or of an MLflow experiment, by name)
    and return its directory, as ``harness report`` does.

    ``out`` defaults to ``reports/<suite name>``; ``formats`` are any of
    ``md``, ``html``, ``latex``, ``csv``; ``metric`` (``auroc`` or
    ``test/auroc``) overrides the suite's ``rank_by`` (for an experiment: the
    ``rank_by`` its last ``harness run`` logged, else ``accuracy``).  The
    report reads MLflow only.  Raises ``harness.UserError`` for an unknown
    experiment or format, or when there are no runs."""
    from harness.report import build_report as build

    return build(suite_or_experiment, tracking_uri=tracking_uri, out=out,
                 formats=tuple(formats), metric=metric)
