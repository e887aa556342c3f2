"""Paired comparisons of methods within one dataset: over seeds, or over test units.

With fewer independent datasets than the cross-dataset tests need, the
question "is A better than B" can still be asked on each dataset: runs of
every method with one seed share the split (and the test set), so their
scores pair by seed.  A task that logs one value per test unit (an image, a
test example) under ``unit/<metric>`` with the unit's id as the step pairs
finer: every method's value on the same test image of the same seed.

Each dataset (or condition) compares every method with the reference --
the ``baseline`` when given, else the method with the best mean there --
and with the method ranked just above it, so a reader sees both whether a
method is separated from the best and whether neighbouring ranks are.  The
test is the two-sided Wilcoxon signed-rank test on the paired differences
when there are at least ``stats.min_datasets_wilcoxon()`` units (fewer can
never reach p < 0.05), a paired t-test with 2 to 5 units (it assumes
roughly normal differences; the table says which test ran); p-values are
Holm-adjusted over every row of the table.
"""

from __future__ import annotations

import math

from harness.report.stats import holm, min_datasets_wilcoxon, signed_rank_p

#: Columns of a comparison table, in order.
COLUMNS = ["dataset", "method", "vs", "relation", "n", "wins", "ties", "losses", "mean_diff",
           "ci_low", "ci_high", "test", "p", "p_holm", "note"]
#: Prefix of the per-unit values a task logs (``unit/psnr`` with step = image id).
UNIT_PREFIX = "unit/"


def unit_key(column: str) -> str:
    """``test/x100/psnr`` -> ``unit/x100/psnr``: where per-unit values of a metric live."""
    return UNIT_PREFIX + (column.split("/", 1)[1] if "/" in column else column)


def difference_test(d, alpha: float = 0.05) -> dict:
    """Test, p-value, mean and 95% t-interval of paired differences ``d``
    (one per unit; NaN-free).  Keys: n, mean_diff, ci_low, ci_high, test, p, note."""
    import numpy as np
    from scipy import stats as sps

    d = np.asarray(d, dtype=float)
    n = len(d)
    out = {"n": n, "mean_diff": float(d.mean()) if n else math.nan, "ci_low": math.nan,
           "ci_high": math.nan, "test": "", "p": math.nan, "note": ""}
    if n >= 2:
        half = float(sps.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
        out.update(ci_low=out["mean_diff"] - half, ci_high=out["mean_diff"] + half)
    if n == 0:
        out["note"] = "no shared units"
    elif not np.any(d != 0):
        out.update(p=1.0, note="identical on every unit")
    elif n >= min_datasets_wilcoxon(alpha):
        out.update(test="Wilcoxon", p=signed_rank_p(d))
    elif n == 1:
        out["note"] = "one unit: no test"
    elif np.ptp(d) <= 1e-9 * np.abs(d).max():
        # equal up to float rounding (0.9503 - 0.9678 and 0.9444 - 0.9619 differ
        # in the 17th digit): a t-test would divide by that rounding (p ~ 1e-30)
        out["note"] = "the same difference on every unit: no test of its spread"
    else:
        out.update(test="paired t", p=float(sps.ttest_1samp(d, 0.0).pvalue))
    return out


def compare(long, greater: bool, baseline: str | None = None, alpha: float = 0.05):
    """Paired comparisons per dataset.

    ``long``: one row per value, columns ``dataset``, ``method``, ``seed``,
    ``unit`` (the seed itself when pairing over seeds) and ``value``.
    Values pair on (seed, unit); the differences of one unit are averaged
    over its seeds, so a test image met under several seeds counts once.
    ``mean_diff`` is method minus vs in the metric's units; wins/ties/losses
    count units where the method is better/equal/worse (``greater`` says
    which way is better).  Returns a DataFrame with ``COLUMNS``."""
    import numpy as np
    import pandas as pd

    rows = []
    for dataset, sub in long.groupby("dataset", sort=True):
        wide = sub.pivot_table(index=["seed", "unit"], columns="method", values="value",
                               aggfunc="mean")
        means = wide.mean(axis=0)
        order = sorted(means.index, key=lambda m: (-means[m] if greater else means[m], str(m)))
        ref = baseline if baseline in order else order[0]
        relation = "baseline" if baseline in order else "best"
        pairs = [(m, ref, relation) for m in order if m != ref]
        pairs += [(m, above, "next above") for above, m in zip(order, order[1:])
                  if ref not in (m, above)]
        for m, vs, rel in pairs:
            both = wide[[m, vs]].dropna()
            diff = (both[m] - both[vs]).groupby(level="unit").mean()
            d = diff.to_numpy(dtype=float)
            better = d if greater else -d
            row = {"dataset": dataset, "method": m, "vs": vs, "relation": rel,
                   "wins": int((better > 0).sum()), "ties": int((better == 0).sum()),
                   "losses": int((better < 0).sum())}
            row.update(difference_test(d, alpha))
            rows.append(row)
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "p_holm"])
    out.insert(COLUMNS.index("p_holm"), "p_holm",
               holm(out["p"].to_numpy(dtype=float)) if len(out) else np.array([]))
    return out[COLUMNS]


def per_seed(scored, column: str):
    """``compare``'s input from the scored runs: one value per (dataset,
    method, seed), paired over seeds."""
    long = scored[["dataset", "method", "seed", column]].rename(columns={column: "value"})
    return long.assign(unit=long["seed"])


def per_unit(scored, histories: dict):
    """``compare``'s input from per-unit histories (``run_id -> [(step, value)]``
    of ``unit_key(column)``): one value per (run, unit)."""
    import pandas as pd

    info = scored.set_index("run_id")[["dataset", "method", "seed"]]
    rows = [(rid, step, value) for rid, points in histories.items() if rid in info.index
            for step, value in points]
    long = pd.DataFrame(rows, columns=["run_id", "unit", "value"])
    # a unit logged twice by one run: the last value, as MLflow's latest metric
    long = long.drop_duplicates(["run_id", "unit"], keep="last")
    return long.join(info, on="run_id")[["dataset", "method", "seed", "unit", "value"]]
