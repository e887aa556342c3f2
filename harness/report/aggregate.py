"""From one row per run to one row per (dataset, method) cell.

Missing cells are never imputed: a cell without a finished run that logged
the metric stays NaN in the score matrix, and every statistic says which
datasets it used.
"""

from __future__ import annotations

import math

from harness.errors import UserError
from harness.runstate import FINISHED, STATUSES

#: Status words in display order (``harness.runstate``'s).
STATUS_ORDER = STATUSES


def metric_name(column: str) -> str:
    """``test/ece:bins-25`` -> ``ece:bins-25``: the name a metric is logged under
    (after the first ``/``; ``:`` and ``-`` are part of the name)."""
    return column.split("/", 1)[1] if "/" in column else column


def direction(column: str, directions: dict | None = None) -> tuple[bool, str | None]:
    """Whether higher is better for metric ``column``, and a one-line warning
    when that had to be assumed.

    The runs say it: ``directions`` maps a logged metric name to how many runs
    tagged it ``max`` / ``min`` (``harness.direction.<name>``, read by
    ``load.load_runs``); the majority wins.  The harness's own keys need no
    tag: ``time/*`` and ``*/loss`` are lower-is-better.  Without any tag the
    metric is ranked higher-is-better, and the warning says so.  A metric
    its runs tag ``none`` (a signed error) is refused with a ``UserError``."""
    name = metric_name(column)
    if column.startswith("time/") or name == "loss":
        return False, None
    directions = directions or {}
    # a task may log a metric per condition (test/x100/psnr, test/shift3/ece):
    # the metric's own tag, found under its last path component, still says it
    votes = directions.get(name) or directions.get(name.rsplit("/", 1)[-1]) or {}
    n_max, n_min, n_none = votes.get("max", 0), votes.get("min", 0), votes.get("none", 0)
    if n_none > n_max + n_min:
        raise UserError(f"{column} has no direction (its runs tag harness.direction.{name} = "
                        f"none: neither higher nor lower is better), so a report cannot rank "
                        f"by it; pass a metric with a direction to --metric")
    if not n_max and not n_min:
        return True, (f"no run tags the direction of {column} (harness.direction.{name}); "
                      "ranked as higher-is-better")
    warning = None
    if n_max and n_min:
        warning = (f"runs disagree on the direction of {column}: {n_max} say max, {n_min} "
                   f"say min; ranked by the majority ({'max' if n_max >= n_min else 'min'})")
    return n_max >= n_min, warning


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
    return runs[runs["status"].eq(FINISHED) & runs[column].notna()]


#: Resamples of the bootstrap interval of a cell's mean.
BOOTSTRAP = 2000


def bootstrap_ci(values, n_boot: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of ``values`` (fixed
    ``seed``: same runs, same interval).  Resampled means never leave the range
    of the values, so the interval of a bounded metric stays inside its
    bounds, unlike a t interval (``[0.9342, 1.025]`` for an accuracy).  NaN
    for fewer than two values."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    low, high = np.clip(np.percentile(means, [2.5, 97.5]), x.min(), x.max())  # float noise
    return float(low), float(high)


def cell_table(runs, column: str):
    """Mean, std (ddof=1), n and a bootstrap 95% interval of the mean
    (``bootstrap_ci``) per (dataset, method).

    Every (dataset, method) pair seen in *any* run appears, so a cell whose
    runs all failed shows with ``n = 0`` and the failure counts instead of
    vanishing."""
    import pandas as pd

    ok = scored_runs(runs, column)
    g = ok.groupby(["dataset", "method"])[column]
    cells = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()})
    ci = g.apply(lambda v: bootstrap_ci(v.to_numpy()))
    cells["ci_low"] = [lo for lo, _ in ci.reindex(cells.index)] if len(cells) else []
    cells["ci_high"] = [hi for _, hi in ci.reindex(cells.index)] if len(cells) else []
    status = runs.groupby(["dataset", "method"])["status"]
    cells = cells.reindex(status.size().index)
    cells["n"] = cells["n"].fillna(0).astype(int)
    cells["n_runs"] = status.size()
    cells["n_bad"] = status.apply(lambda s: int((s != FINISHED).sum()))
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
