"""Leaderboards built from MLflow runs.

``build_report`` reads the runs of a suite's experiment from any MLflow
tracking store, aggregates them per (dataset, method), ranks the methods
across datasets, tests significance and writes ``reports/<suite>/``
(index.md, index.html, leaderboard.tex, leaderboard.csv and PNG plots).
``console_leaderboard`` is the short table ``harness run`` prints at the end.

Pipeline: ``load`` (MLflow -> DataFrame) -> ``aggregate`` (cells, score
matrix) -> ``stats`` (ranks, Elo, Friedman, Nemenyi, Wilcoxon + Holm) ->
``analysis`` (one ``ReportData``) -> ``figures``/``plots`` -> ``render``.
Heavy libraries (mlflow, pandas, scipy, matplotlib) are imported inside
functions so importing this package stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from pathlib import Path

from harness.errors import UserError
from harness.runstate import DONE

__all__ = ["build_report", "console_leaderboard", "log_suite_report", "warm_up"]


def build_report(suite: str | Path | None = None, *, experiment: str | None = None,
                 tracking_uri: str | None = None, metric: str | None = None,
                 formats: Sequence[str] = ("md", "html", "latex", "csv"),
                 out: str | Path | None = None, baseline: str | None = None,
                 compare: Sequence[str] = (), include_stale: bool = False,
                 registry=None) -> Path:
    """Write the report of ``suite`` (a suite YAML file, or a suite name) and
    return the report directory (default ``reports/<suite name>``).

    A suite file is reported as it is now: only runs whose run key its
    current plan holds count (``planned``); runs of earlier configurations
    are left out and counted, or pooled in with ``include_stale``; planned
    runs that have no result are listed with their state, and the title says
    how complete the plan is.  A suite name or ``experiment`` alone reads
    every run of that MLflow experiment, and the report says so.

    ``experiment`` overrides the MLflow experiment (default: the suite name);
    ``metric`` the ranked metric (default: the suite's ``rank_by``, else the
    ``rank_by`` the last ``harness run`` logged with the experiment; without
    either, a ``UserError`` asks for one); its direction comes from the runs'
    ``harness.direction.*`` tags (``aggregate.direction``); ``baseline`` adds
    wins/ties/losses against that method; ``compare`` adds the methods of
    other suite files or experiments on the datasets they share with this
    one; ``registry`` validates suite files (default: the installed plugins).
    Raises ``UserError`` for a missing suite file, an unknown experiment,
    baseline, metric or format, or no runs."""
    return _build(suite, experiment=experiment, tracking_uri=tracking_uri, metric=metric,
                  formats=formats, out=out, baseline=baseline, compare=compare,
                  include_stale=include_stale, registry=registry)


def _build(suite: str | Path | None = None, *, experiment: str | None = None,
           tracking_uri: str | None = None, metric: str | None = None,
           formats: Sequence[str] = ("md", "html", "latex", "csv"),
           out: str | Path | None = None, baseline: str | None = None,
           compare: Sequence[str] = (), timings: dict | None = None,
           include_stale: bool = False, registry=None) -> Path:
    """``build_report`` plus ``timings`` (stage -> seconds), for benchmarks."""
    from harness.report import aggregate, analysis, figures, load, paired, planned, render
    from harness.runstate import FINISHED

    timings = {} if timings is None else timings
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now

    render.check_formats(formats)
    info = load.resolve_source(suite) if suite else None
    experiment = experiment or (info.name if info else None)
    if not experiment:
        raise UserError("build_report needs a suite file or an experiment name")
    title = info.name if info else experiment
    uri = load.resolve_tracking_uri(tracking_uri)
    plan = planned.from_suite_file(info.path, registry) if info and info.path else None
    loaded = load.load_runs(experiment, uri)
    runs, scope = planned.restrict(loaded.runs, plan, include_stale)
    notes = scope.notes(experiment) + _load_notes(loaded)
    metric = metric or (info.rank_by if info else None) or loaded.rank_by
    if not metric:
        raise UserError(_no_metric(experiment, runs))
    for spec in compare:
        other_info = load.resolve_source(spec)
        other = load.load_runs(other_info.name, uri)
        other_plan = (planned.from_suite_file(other_info.path, registry)
                      if other_info.path else None)
        other.runs, other_scope = planned.restrict(other.runs, other_plan, include_stale)
        notes += [f"`{other_info.name}`: {n}" for n in other_scope.notes(other_info.name)[1:]]
        runs, unshared = _merge(runs, other, other_info.name, notes)
        loaded.n_read += other.n_read
        for name, votes in other.directions.items():
            loaded.directions.setdefault(name, type(votes)()).update(votes)
        if unshared:
            notes.append(f"Datasets of `{other_info.name}` not in `{title}` were left out: "
                         + ", ".join(map(str, unshared)) + ".")
    if runs.empty:
        stale = (f" ({scope.n_stale} run(s) of earlier configurations ignored; "
                 "`--include-stale` to show them)" if scope.n_stale else "")
        if plan is not None:
            raise UserError(f"none of the {plan.total} planned runs of {info.path} is in "
                            f"MLflow experiment {experiment!r} at {uri}{stale}; "
                            f"`harness run {info.path}` runs them")
        raise UserError(f"no harness runs in MLflow experiment {experiment!r} at {uri} "
                        f"({loaded.n_read} runs read, none with harness.* tags)")
    lap("load")
    greater, warning = aggregate.direction(aggregate.metric_column(metric), loaded.directions)
    if warning:
        _warn(warning)
        notes.append(f"Warning: {warning}.")
    lap("metric direction")
    # values per test unit (an image), where the task logged them: paired comparisons
    key = paired.unit_key(aggregate.metric_column(metric))
    units = {}
    if key in runs.columns:
        logged = runs["status"].eq(FINISHED) & runs[key].notna()
        units = load.load_histories(list(runs.loc[logged, "run_id"]), key, uri)
    lap("unit values")
    data = analysis.analyse(loaded, title=title, metric=metric, tracking_uri=uri,
                            baseline=baseline, runs=runs, notes=notes, greater=greater,
                            scope=scope, units=units)
    lap("statistics")
    out_dir = Path(out) if out is not None else Path("reports") / title
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_times: dict = {}
    figs = []
    if {"md", "html"} & set(formats):  # only the pages show plots
        figs = figures.make_figures(data, out_dir, uri, timings=plot_times)
    lap("plots")
    timings.update({f"plots: {k}": v for k, v in plot_times.items()})
    render.write(data, figs, out_dir, formats)
    lap("render")
    return out_dir


def log_suite_report(suite, uri: str | None, counts: dict) -> str | None:
    """What ``harness run`` does at its end: build the full report of
    ``suite`` (a validated ``harness.suite.Suite``; the report counts the
    runs of its file's current plan, as ``build_report`` does) and log it, with the
    status ``counts``, as a suite-level MLflow run (``harness.kind=suite``,
    ``harness.rank_by``).  Return that run's id; ``None`` when no run finished
    or diverged now (the last suite run already holds this report) or the
    report could not be built (a warning: a report problem must not hide the
    finished runs)."""
    import tempfile

    from harness.tracking import log_suite_run

    if not sum(counts.get(s, 0) for s in DONE):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out = build_report(suite.file, tracking_uri=uri, out=tmp)
        except Exception as exc:
            _warn(f"report not built: {type(exc).__name__}: {exc}")
            return None
        return log_suite_run(uri, suite.name, str(out), dict(counts), suite.rank_by)


def warm_up() -> None:
    """Pay now what a process's first report pays: the plugin registry (the
    report re-plans the suite file) and matplotlib's font set-up (the first
    PNG).  The store writer calls it while the runs train, so the report at
    the end of ``harness run`` does not wait for either."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from harness.plugins import get_registry

    get_registry()
    fig = Figure(figsize=(1, 1))
    FigureCanvasAgg(fig)
    fig.add_subplot().set_title("warm")
    fig.savefig(io.BytesIO(), format="png")


def _warn(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr)


def _load_notes(loaded) -> list[str]:
    """What loading did to the runs, said out loud in the report."""
    notes = []
    if loaded.n_suite_runs:
        notes.append(f"{loaded.n_suite_runs} suite-level run(s) in `{loaded.experiment}` "
                     "(tag harness.kind=suite) hold earlier reports and are not results.")
    if loaded.n_untagged:
        notes.append(f"{loaded.n_untagged} run(s) in `{loaded.experiment}` have no "
                     "harness.dataset/harness.method tags and were not used.")
    if loaded.duplicates:
        keys = ", ".join(f"`{k}` ({n} runs, kept {rid})" for k, n, rid in loaded.duplicates)
        notes.append(f"{len(loaded.duplicates)} run key(s) were logged more than once; the "
                     f"latest finished run of each is used: {keys}.")
    return notes


def _merge(runs, other, name: str, notes: list[str]):
    from harness.report.aggregate import merge_compared

    notes.extend(_load_notes(other))
    clashes = set(runs["method"]) & set(other.runs["method"])
    merged, unshared = merge_compared(runs, other.runs, name)
    added = sorted(set(merged["method"]) - set(runs["method"]), key=str)
    notes.append(f"Compared with experiment `{name}`: added methods "
                 + (", ".join(f"`{m}`" for m in added) or "none")
                 + (f" (renamed `{name}:<method>` where names clash: "
                    f"{', '.join(sorted(map(str, clashes)))})" if clashes else "") + ".")
    return merged, unshared


def console_leaderboard(experiment: str, *, tracking_uri: str | None = None,
                        metric: str | None = None,
                        run_keys: Collection[str] | None = None) -> str:
    """Plain text for the end of ``harness run``: the ranked leaderboard
    (average rank, win rate, Elo with its 95% interval, datasets) over
    finished runs, then ``mean ± std (seeds)`` of ``test/<metric>`` per
    dataset (rows) and method (columns, best first).  Each table has one
    number format.

    ``run_keys``: the run keys of the suite's current plan (all of it, not
    only what this ``harness run`` ran): only those runs count, the runs of
    other configurations are counted in one line, and the first line says
    how complete the plan is (``24 of 888 runs: partial``).  None: every run
    of the experiment counts.  ``metric`` defaults to the ``rank_by`` the
    last ``harness run`` logged; without one a ``UserError`` asks for it."""
    from tabulate import tabulate

    from harness.report import aggregate, analysis, load, planned

    uri = load.resolve_tracking_uri(tracking_uri)
    loaded = load.load_runs(experiment, uri)
    plan = planned.from_run_keys(run_keys) if run_keys is not None else None
    runs, scope = planned.restrict(loaded.runs, plan)
    stale = (f"{scope.n_stale} run(s) of earlier configurations ignored; "
             "`harness report --include-stale` shows them" if scope.n_stale else "")
    if runs.empty:
        return "\n".join(x for x in (f"no harness runs in experiment {experiment!r}"
                                      + (f" ({scope.completeness()})" if plan else ""),
                                      stale) if x)
    metric = metric or loaded.rank_by
    if not metric:
        raise UserError(_no_metric(experiment, runs))
    column = aggregate.metric_column(metric)
    greater, warning = aggregate.direction(column, loaded.directions)
    if warning:
        _warn(warning)
    data = analysis.analyse(loaded, title=experiment, metric=column, tracking_uri=uri,
                            greater=greater, runs=runs, scope=scope)
    methods = data.methods
    # a dataset without a single result (e.g. unavailable offline) is one
    # line under the table, not a row of "missing"
    scored = [d for d in data.matrix.index if data.matrix.loc[d].notna().any()]
    empty = [str(d) for d in data.matrix.index if d not in scored]
    arrow = "higher" if greater else "lower"
    text = f"{column} ({arrow} is better) over finished runs"
    if plan is not None:
        text += f"; {scope.completeness()} ({planned.state_summary(scope.states)})"
    if stale:
        text += f"\n{stale}"
    if len(data.leaderboard):
        text += "\n\n" + _console_board(data)
    if data.per_seed is not None and len(data.per_seed):
        text += "\n" + _console_paired(data)
    headers, rows = analysis.console_table(data.cells, scored, methods)
    table = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    text += f"\n\nper dataset: mean ± std (seeds)\n{table}"
    if empty:
        text += f"\nno results on {len(empty)} dataset(s): {', '.join(empty)}"
    missing = [f"{d}/{m} ({data.reasons[(d, m)]})" for d, m in data.missing
               if (d, m) in data.reasons]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more"
                                           if len(missing) > 10 else "")
        text += f"\nmissing cells: {shown}"
    return text


def _no_metric(experiment: str, runs) -> str:
    """The error for a report without a metric to rank by: what to pass."""
    logged = sorted(c for c in runs.columns if str(c).startswith("test/")
                    and runs[c].notna().any())
    return (f"no metric to rank experiment {experiment!r} by: no suite file with rank_by and "
            f"no rank_by logged by `harness run`; pass --metric (metric= in Python), one of: "
            f"{', '.join(logged) or 'no test/* metric was logged'}")


def _console_paired(data, most: int = 8) -> str:
    """One paragraph: which per-seed comparisons Holm's correction separates."""
    pairs = data.per_seed
    sep = pairs[pairs["p_holm"] < 0.05]
    better = (sep["mean_diff"] > 0) == data.greater
    shown = [f"{r.method} {'>' if b else '<'} {r.vs} on {r.dataset}"
             for r, b in zip(sep.itertuples(), better)]
    listed = ", ".join(shown[:most]) + (f" and {len(shown) - most} more"
                                       if len(shown) > most else "")
    return (f"{data.n_independent} independent dataset(s): too few for tests over datasets; "
            f"paired over seeds (Holm), {len(sep)} of {len(pairs)} comparisons separated"
            + (f": {listed}" if shown else "") + " (the report's Paired over seeds has all)")


def _console_board(data) -> str:
    """The leaderboard as a plain-text table, best method first."""
    import math

    from tabulate import tabulate

    board = data.leaderboard

    def num(x: float, fmt: str) -> str:
        return format(x, fmt) if isinstance(x, float | int) and math.isfinite(x) else "–"

    rows = [[i, m, num(r.avg_rank, ".2f"), num(r.win_rate, ".3f"),
             f"{num(r.elo, '.0f')} [{num(r.elo_low, '.0f')}, {num(r.elo_high, '.0f')}]",
             int(r.n_datasets)]
            for i, (m, r) in enumerate(board.iterrows(), 1)]
    table = tabulate(rows, headers=["#", "method", "avg rank", "win rate", "Elo [95% CI]",
                                    "datasets"], tablefmt="simple", disable_numparse=True,
                     colalign=("right", "left", "right", "right", "right", "right"))
    n_c, n_all = len(data.complete), len(data.matrix)
    return (f"leaderboard: average rank over the {n_c} of {n_all} datasets where every "
            f"method has a result; win rate and Elo over every dataset\n{table}")
