"""Decide which plots a report gets, gather their data and draw them.

Each plot is optional: when its data is absent (no epoch history, no
``time/train_s``, too few complete datasets) or drawing fails, the report
carries the reason instead of the image, so one bad plot never costs the
whole report.

Preparing a plot (choosing runs, reading MLflow histories, captions) is
separate from drawing it (pure matplotlib), so each is timed on its own.
Drawing in forked worker processes was tried and measured slower on a
loaded 2-core machine, so plots are drawn one after another.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.report import plots, stats
from harness.report.analysis import TIME_COLUMN, ReportData
from harness.report.load import load_histories

log = logging.getLogger(__name__)

#: Learning curves need the per-epoch history of each run; these bound the reads.
MAX_HISTORY_RUNS = 600
MAX_CURVE_METHODS = 8
MAX_CURVE_DATASETS = 16
CURVE_SEEDS = 3


@dataclass
class Figure:
    """One plot of the report: its file, or why there is none."""

    key: str
    title: str
    path: Path | None = None
    caption: str = ""
    skipped: str | None = None
    job: tuple = field(default=(), repr=False)  # (plot function, *args) to draw


def _cd(data: ReportData, out: Path, colors, uri: str) -> Figure:
    fig = Figure("cd", "Critical difference diagram")
    k, n = data.complete.shape[1], len(data.complete)
    if k < 2 or n < 2 or not math.isfinite(data.cd):
        fig.skipped = data.cd_skipped or (f"needs >= 2 methods on >= 2 complete datasets "
                                          f"(have {k} on {n})")
        return fig
    ranks = data.leaderboard["avg_rank"].dropna()
    fig.job = (plots.cd_diagram, ranks, data.cd, data.cliques, out / "cd_diagram.png", n)
    fig.caption = (f"Average ranks over {n} complete datasets; methods joined by a bar are "
                   f"not significantly different (Nemenyi, CD = {data.cd:.3f}).")
    return fig


def _seeds(data: ReportData, out: Path, colors, uri: str) -> Figure:
    fig = Figure("seeds", f"{data.column} across seeds")
    if data.scored.empty:
        fig.skipped = f"no finished run logged {data.column}"
        return fig
    scored = data.scored[["dataset", "method", data.column]]
    fig.job = (plots.seed_plots, scored, data.column, data.datasets, data.methods, colors,
               out / "seeds.png")
    fig.caption = ("Per dataset and method: box = quartiles over seeds, whiskers = min to "
                   "max, line = median; dots are single seeds.")
    return fig


def _heatmap(data: ReportData, out: Path, colors, uri: str) -> Figure:
    fig = Figure("ranks", "Rank per dataset")
    methods = list(data.leaderboard.index)
    if not methods:
        fig.skipped = "no method has results"
        return fig
    ranks = stats.rank_matrix(data.matrix[methods], data.greater)
    fig.job = (plots.rank_heatmap, ranks, out / "rank_heatmap.png")
    fig.caption = ("Rank of each method per dataset (1 = best, ties averaged) among the "
                   "methods with results there; grey '–' = missing cell.")
    return fig


#: Per-epoch keys a curve falls back to when the ranked metric has no
#: validation history (a test-time metric such as a probe's accuracy).
CURVE_FALLBACKS = ("val/loss", "train/loss")


def _curves(data: ReportData, out: Path, colors, uri: str) -> Figure:
    import pandas as pd

    own = "val/" + data.column.split("/", 1)[-1] if data.column.startswith("test/") else None
    keys = [k for k in (own, *CURVE_FALLBACKS) if k is not None]
    fig = Figure("curves", f"Learning curves ({keys[0]})")
    if data.scored.empty:
        fig.skipped = f"no per-epoch metric corresponds to {data.column}"
        return fig
    methods = list(data.leaderboard.index)[:MAX_CURVE_METHODS]
    if data.baseline and data.baseline not in methods:
        methods[-1] = data.baseline
    per_ds = len(methods) * CURVE_SEEDS
    n_ds = max(1, min(len(data.datasets), MAX_CURVE_DATASETS, MAX_HISTORY_RUNS // per_ds))
    datasets = data.datasets[:n_ds]
    pick = data.scored[data.scored["dataset"].isin(datasets) & data.scored["method"].isin(methods)]
    pick = pick.sort_values("seed", key=lambda s: s.astype(str))
    pick = pick.groupby(["dataset", "method"], sort=False).head(CURVE_SEEDS)
    for key in keys:
        hist = load_histories(list(pick["run_id"]), key, uri)
        if hist:
            break
    else:
        fig.skipped = f"no run logged a {' / '.join(keys)} history"
        return fig
    fig.title = f"Learning curves ({key})"
    rows = [(rid, step, val) for rid, pts in hist.items() for step, val in pts]
    frame = pd.DataFrame(rows, columns=["run_id", "step", "value"]).merge(
        pick[["run_id", "dataset", "method"]], on="run_id")
    fig.job = (plots.learning_curves, frame, key, datasets, methods, colors, out / "curves.png")
    shown = [f"the first {len(datasets)} of {len(data.datasets)} datasets"
             if n_ds < len(data.datasets) else "all datasets",
             f"the top {len(methods)} of {len(data.leaderboard)} methods"
             if len(methods) < len(data.leaderboard) else "all methods"]
    instead = (f"no run logged {keys[0]} per epoch, so {key} is shown; " if key != keys[0]
               else "")
    fig.caption = (f"{instead}Mean ± std over up to {CURVE_SEEDS} seeds of {key} per epoch; "
                   f"{' and '.join(shown)} (history reads are bounded to "
                   f"{MAX_HISTORY_RUNS} runs to keep large reports fast).")
    return fig


def _pareto(data: ReportData, out: Path, colors, uri: str) -> Figure:
    tcol = TIME_COLUMN
    fig = Figure("pareto", f"{data.column} vs training time")
    if "train_s" not in data.leaderboard.columns:  # analyse found no run that logged it
        fig.skipped = f"no run logged {tcol}"
        return fig
    use = list(data.complete.index) or data.datasets
    # a run's time is noisy (a busy machine, a cold cache): the front is
    # chosen from the median over seeds, which one slow run does not move
    t = median_train_time(data.scored, use).reindex(data.leaderboard.index)
    y = data.matrix.loc[use].mean(axis=0)
    both = [m for m in data.leaderboard.index if math.isfinite(t[m])
            and math.isfinite(y.get(m, math.nan))]
    if not both:
        fig.skipped = f"no method has both {data.column} and {tcol}"
        return fig
    what = f"{len(use)} complete datasets" if data.complete.size else f"{len(use)} datasets"
    fig.job = (plots.pareto_scatter, t[both], y[both], data.greater,
               f"mean {data.column} over {what}", colors, out / "pareto.png",
               f"median {tcol} over seeds, mean over datasets (s)")
    front = plots.pareto_front(t[both], y[both], data.greater)
    fig.caption = (f"Training time per run (median over seeds of {tcol}, then the mean over "
                   f"the {what}) vs mean {data.column}; Pareto front (ringed): "
                   f"{', '.join(map(str, front))}.")
    return fig


def median_train_time(scored, datasets):
    """Per method: the median ``time/train_s`` over seeds of each dataset,
    averaged over ``datasets`` (every dataset weighs the same)."""
    s = scored[scored["dataset"].isin(datasets)]
    return s.groupby(["dataset", "method"])[TIME_COLUMN].median().groupby("method").mean()


def _run_images(data: ReportData, out: Path, colors, uri: str) -> Figure:
    """Images the runs logged under ``report/`` (a task's own figure, e.g. a
    denoiser's output beside its input and the clean image), for the first
    dataset and its lowest seed: one row per method, in leaderboard order."""
    fig = Figure("run_images", "Images logged by the runs")
    runs = data.runs
    if runs.empty or "run_id" not in runs.columns:
        fig.skipped = "no runs"
        return fig
    dataset = data.datasets[0] if data.datasets else runs["dataset"].iloc[0]
    rows = runs[runs["dataset"] == dataset]
    seed = sorted(rows["seed"].astype(str))[0]
    rows = rows[rows["seed"].astype(str) == seed]
    import os
    import tempfile

    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory() as folder:  # drawn now: the downloads go with it
        panels = []
        for method in data.methods:
            chosen = rows[rows["method"] == method]
            if chosen.empty:
                continue
            run_id = chosen["run_id"].iloc[0]
            pngs = [a.path for a in client.list_artifacts(run_id, "report")
                    if a.path.endswith(".png")]
            if pngs:
                panels.append((method, client.download_artifacts(
                    run_id, pngs[0], os.path.join(folder, str(len(panels))))))
        if not panels:
            fig.skipped = "no run logged an image under report/"
            return fig
        fig.path = plots.image_rows(panels, out / "run_images.png")
    fig.caption = (f"Dataset {dataset}, seed {seed}: the image each method's run logged "
                   f"under report/ (its meaning is the task's: see the run's report/*.txt).")
    return fig


MAKERS = (_cd, _seeds, _heatmap, _curves, _pareto, _run_images)


def _draw(job: tuple) -> tuple[Path | None, str | None, float]:
    """Run one plot job; returns (path, error, seconds) instead of raising."""
    t0 = time.perf_counter()
    try:
        return job[0](*job[1:]), None, time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - a plot must never cost the report
        log.warning("report plot %s failed", job[0].__name__, exc_info=True)
        return None, f"plot failed: {type(exc).__name__}: {exc}", time.perf_counter() - t0


def make_figures(data: ReportData, out: Path, uri: str,
                 timings: dict | None = None) -> list[Figure]:
    """Draw every plot into ``out``; failures become ``skipped`` reasons.
    ``timings`` (optional) receives seconds per plot."""
    colors = plots.method_colors(data.methods)
    figures = []
    for make in MAKERS:
        t0 = time.perf_counter()
        try:
            figures.append(make(data, out, colors, uri))
        except Exception as exc:  # noqa: BLE001 - same policy as drawing
            log.warning("report plot %s failed", make.__name__, exc_info=True)
            key = make.__name__.strip("_")
            figures.append(Figure(key, key, skipped=f"plot failed: {type(exc).__name__}: {exc}"))
        if timings is not None:
            timings[f"prepare {figures[-1].key}"] = time.perf_counter() - t0
    todo = [f for f in figures if f.job]
    results = [_draw(f.job) for f in todo]
    for f, (path, error, seconds) in zip(todo, results):
        f.path, f.skipped, f.job = path, error, ()
        if timings is not None:
            timings[f"draw {f.key}"] = seconds
    return figures
