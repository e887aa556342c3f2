"""From one row per run to one row per (dataset, method) cell.

Missing cells are never imputed: a cell without a finished run that logged
the metric stays NaN in the score matrix, and every statistic says which
datasets it used.
"""

from __future__ import annotations

import math

#: Metrics where smaller is better when no metrics plugin says otherwise.
LOWER_IS_BETTER = frozenset(
    {"log_loss", "nll", "ece", "adaptive_ece", "mce", "brier", "sharpness", "loss"})
STATUS_ORDER = ("finished", "failed", "timeout", "oom", "diverged", "interrupted", "running")


def greater_is_better(metric: str) -> bool:
    """Direction of ``metric`` (a bare name like ``f1`` or a key like ``time/train_s``).

    A registered metrics plugin decides; the lookup is guarded because a
    missing or broken plugin must not stop a report.  Otherwise: lower is
    better for losses, calibration errors and anything under ``time/``."""
    if metric.startswith("time/"):
        return False
    name = metric.split("/", 1)[1] if metric.startswith(("test/", "val/")) else metric
    try:
        import harness

        gib = getattr(harness.create("metrics", name), "greater_is_better", None)
        if isinstance(gib, bool):
            return gib
    except Exception:  # noqa: BLE001 - plugin absent, misconfigured or failing
        pass
    return name not in LOWER_IS_BETTER


def metric_column(metric: str) -> str:
    """``f1`` -> ``test/f1``; keys that already have a prefix are kept."""
    return metric if "/" in metric else f"test/{metric}"


def status_counts(runs) -> dict[str, int]:
    """Number of runs per ``harness.status``, known statuses first."""
    counts = runs["status"].value_counts().to_dict()
    out = {s: int(counts.pop(s, 0)) for s in STATUS_ORDER}
    out.update({str(k): int(v) for k, v in sorted(counts.items())})
    return out


def scored_runs(runs, column: str):
    """Finished runs that logged ``column``: the runs every statistic uses."""
    if column not in runs.columns:
        return runs.iloc[0:0].assign(**{column: []})
    return runs[runs["status"].eq("finished") & runs[column].notna()]


def cell_table(runs, column: str):
    """Mean, std (ddof=1), n and t-based 95% CI per (dataset, method).

    Every (dataset, method) pair seen in *any* run appears, so a cell whose
    runs all failed shows with ``n = 0`` and the failure counts instead of
    vanishing."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    ok = scored_runs(runs, column)
    g = ok.groupby(["dataset", "method"])[column]
    cells = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()})
    n = cells["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf(0.975, n - 1) * cells["std"].to_numpy() / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    cells["ci_low"] = cells["mean"] - half
    cells["ci_high"] = cells["mean"] + half
    status = runs.groupby(["dataset", "method"])["status"]
    cells = cells.reindex(status.size().index)
    cells["n"] = cells["n"].fillna(0).astype(int)
    cells["n_runs"] = status.size()
    cells["n_bad"] = status.apply(lambda s: int((s != "finished").sum()))
    return cells


def _round_sig(x: float) -> float:
    # Means that should tie may differ in the last bits after averaging;
    # 12 significant digits makes ties exact for ranking and win counting.
    return float(f"{x:.12g}") if math.isfinite(x) else x


def score_matrix(cells, datasets=None, methods=None):
    """Datasets x methods matrix of cell means (NaN = missing cell)."""
    mat = cells["mean"].unstack("method")
    if datasets is not None or methods is not None:
        mat = mat.reindex(index=datasets if datasets is not None else mat.index,
                          columns=methods if methods is not None else mat.columns)
    return mat.map(_round_sig).astype(float)


def missing_cells(matrix) -> list[tuple[str, str]]:
    """(dataset, method) pairs with no score, in table order."""
    return [(d, m) for d in matrix.index for m in matrix.columns
            if not math.isfinite(matrix.at[d, m])]


def split_methods(matrix):
    """Methods with a score on at least one dataset, and those without any.

    A method that never produced a score would make every dataset an
    incomplete block, so it is left out of cross-dataset statistics (and
    the report says so) rather than emptying them."""
    has_any = matrix.notna().any(axis=0)
    return list(matrix.columns[has_any]), list(matrix.columns[~has_any])


def complete_blocks(matrix):
    """Rows where every column has a score, plus ``dataset -> missing methods``
    for the rows left out (the reason printed in the report)."""
    if matrix.shape[1] == 0:  # no method has any result: nothing is comparable
        return matrix.iloc[0:0], {}
    full = matrix.notna().all(axis=1)
    dropped = {d: [m for m in matrix.columns if not math.isfinite(matrix.at[d, m])]
               for d in matrix.index[~full]}
    return matrix[full], dropped


def merge_compared(main, other, suite: str):
    """Add the runs of a compared suite on the datasets it shares with ``main``.

    Method names that clash with ``main``'s are prefixed ``<suite>:``.
    Returns (merged runs, datasets of ``other`` that were not shared)."""
    import pandas as pd

    shared = set(main["dataset"].unique())
    unshared = sorted(set(other["dataset"].unique()) - shared)
    other = other[other["dataset"].isin(shared)].copy()
    clash = set(main["method"].unique())
    other["method"] = [f"{suite}:{m}" if m in clash else m for m in other["method"]]
    return pd.concat([main, other], ignore_index=True), unshared
