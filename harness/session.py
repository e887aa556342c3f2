"""One ``harness run`` from plan to leaderboard, for the CLI and the API alike.

``run_suite_plan`` executes a plan (``harness.runner.run_plan``) and, when
runs finished, concludes it: the leaderboard text and the suite's full report
logged as a suite-level MLflow run.  When a store writer wrote the runs
(``harness.runner.uses_writer``) it builds both (it has mlflow and the
report's modules imported while the runs trained).  ``harness run`` and
``harness.run_suite`` call the same function, so they batch, retry, limit and
report the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness import runstate
from harness.options import RunOptions


@dataclass
class SuiteSummary:
    """What one ``harness run`` did.

    ``counts`` maps status -> runs: ``finished``, ``diverged``, ``failed``,
    ``timeout``, ``oom``, ``interrupted`` for the runs executed now,
    ``skipped`` for runs already done, ``running`` for runs running in another
    process.  ``failed_earlier`` counts failed runs left alone (no
    ``rerun_failed``).  ``unavailable`` and ``input_errors`` map a dataset
    label to why its runs failed (data that could not be fetched; a bad
    input, retried by the next run without ``rerun_failed``).  ``warnings``:
    why the leaderboard or the report could not be built."""

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
    leaderboard: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Runs that failed, timed out or ran out of memory, now or earlier."""
        return sum(self.counts.get(s, 0) for s in runstate.FAILED) + self.failed_earlier

    @property
    def ok(self) -> bool:
        """True when no run failed or was interrupted (``harness run``'s exit 0)."""
        return not self.failed and not self.counts.get(runstate.INTERRUPTED, 0)


def run_suite_plan(plan, options: RunOptions, *, registry=None,
                   console=None) -> SuiteSummary:
    """Execute ``plan`` (``harness.runner.make_plan``) as ``options`` say,
    then conclude it when ``options.report`` and runs finished: the
    leaderboard text (``summary.leaderboard``, which the CLI prints) and the
    suite's report logged as a suite-level MLflow run."""
    from harness.runner import run_plan, uses_writer

    uri = options.uri
    writer = uses_writer(plan, options)
    if writer and options.report:
        from harness.storewriter import writer_for

        writer_for(uri).warm_reports()
    try:
        counts = run_plan(plan, options, registry=registry, console=console, close_writer=False)
        summary = SuiteSummary(plan.suite.name, plan.suite.file, uri, len(plan.runs),
                               {k: int(v) for k, v in counts.items() if v}, len(plan.failed),
                               dict(plan.unavailable), dict(plan.input_errors))
        results = sum(counts[s] for s in runstate.DONE) + counts["skipped"]
        if options.report and results:
            _conclude(plan, options, summary, writer)
    finally:
        if writer:
            from harness.storewriter import close_writers

            close_writers()
    return summary


def _conclude(plan, options: RunOptions, summary: SuiteSummary, writer: bool) -> None:
    """Build the leaderboard and log the suite's report; a problem with
    either is a warning (it must not hide the finished runs)."""
    uri, suite, counts = options.uri, plan.suite, dict(summary.counts)
    keys = [s.run_key for s in plan.runs]
    # the store writer that wrote this run's groups has the report's modules
    # imported; without one (nothing or little trained now), starting one
    # (mlflow's import) would cost more than the leaderboard itself
    if writer:
        from types import SimpleNamespace

        from harness.storewriter import WriterError, writer_for

        writer = writer_for(uri)
        board = writer.request("leaderboard", (suite.name,),
                               {"tracking_uri": uri, "metric": suite.rank_by, "run_keys": keys})
        info = SimpleNamespace(name=suite.name, file=suite.file, rank_by=suite.rank_by)
        report = writer.request("suite_report", (info, uri, counts), {})
        try:
            summary.leaderboard = board.result()
        except WriterError as exc:
            summary.warnings.append(f"no leaderboard: {exc}")
        try:
            summary.report_run_id = report.result()
        except WriterError as exc:
            summary.warnings.append(f"report not built: {exc}")
    else:
        from harness.report import console_leaderboard, log_suite_report

        try:
            summary.leaderboard = console_leaderboard(suite.name, tracking_uri=uri,
                                                      metric=suite.rank_by, run_keys=keys)
        except Exception as exc:  # noqa: BLE001 - said as a warning
            summary.warnings.append(f"no leaderboard: {runstate.one_line(exc)}")
        summary.report_run_id = log_suite_report(suite, uri, counts)
