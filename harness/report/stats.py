"""Cross-dataset statistics over a datasets x methods score matrix.

Every function takes the matrix of per-dataset means (``aggregate.score_matrix``)
and ``greater`` (True when higher is better), so datasets are weighted
equally whatever their number of seeds.  Which rows each statistic uses is
the caller's decision: rank-based ones (average rank, normalized score,
Friedman, Nemenyi) need complete blocks; pairwise ones (win rate,
Bradley-Terry, Wilcoxon, wins vs baseline) use every dataset where both
methods of a pair have a score.

References: Demšar, "Statistical comparisons of classifiers over multiple
data sets", JMLR 2006; Hunter, "MM algorithms for generalized Bradley-Terry
models", Ann. Statist. 2004; Holm, Scand. J. Statist. 1979.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ELO_BASE, ELO_SCALE = 1000.0, 400.0


def _oriented(matrix, greater: bool):
    """Scores as a float array where larger is always better."""

    values = matrix.to_numpy(dtype=float)
    return values if greater else -values


def rank_matrix(matrix, greater: bool):
    """Per-dataset ranks, 1 = best, ties get the average rank; NaN stays NaN
    and the remaining methods of that row are ranked among themselves."""
    import pandas as pd

    # pandas' average ranks are scipy's rankdata(nan_policy="omit"), without
    # importing scipy.stats (~1 s) where nothing else needs it
    oriented = pd.DataFrame(-_oriented(matrix, greater), index=matrix.index,
                            columns=matrix.columns)
    return oriented.rank(axis=1, method="average", na_option="keep").astype(float)


def average_ranks(complete, greater: bool):
    """Mean rank per method over complete rows."""
    return rank_matrix(complete, greater).mean(axis=0)


def normalized_scores(complete, greater: bool):
    """Mean over rows of (score - worst) / (best - worst); 0 = worst, 1 = best.
    A row where every method scores the same counts as 1 for all of them."""
    import numpy as np
    import pandas as pd

    x = _oriented(complete, greater)
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(span > 0, (x - lo) / np.where(span > 0, span, 1), 1.0)
    return pd.Series(norm.mean(axis=0) if len(x) else np.nan, index=complete.columns)


def pairwise_outcomes(matrix, greater: bool):
    """Array ``O[d, i, j]``: 1 if method i beats j on dataset d, 0.5 tie, 0 loss,
    NaN where either score is missing (and on the diagonal)."""
    import numpy as np

    x = _oriented(matrix, greater)
    a, b = x[:, :, None], x[:, None, :]
    with np.errstate(invalid="ignore"):
        out = np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))
    out[np.isnan(a) | np.isnan(b)] = np.nan
    idx = np.arange(x.shape[1])
    out[:, idx, idx] = np.nan
    return out


def win_rates(matrix, greater: bool):
    """Share of pairwise dataset comparisons won (ties count half)."""
    import numpy as np
    import pandas as pd

    o = pairwise_outcomes(matrix, greater)
    with np.errstate(invalid="ignore"):
        rate = np.nansum(o, axis=(0, 2)) / (~np.isnan(o)).sum(axis=(0, 2))
    return pd.Series(rate, index=matrix.columns)


def wins_ties_losses(matrix, greater: bool, baseline: str):
    """Per method: datasets won, tied and lost against ``baseline`` (NA for itself)."""
    import pandas as pd

    o = pairwise_outcomes(matrix, greater)
    j = list(matrix.columns).index(baseline)
    col = o[:, :, j]
    out = pd.DataFrame({"wins": (col == 1).sum(axis=0), "ties": (col == 0.5).sum(axis=0),
                        "losses": (col == 0).sum(axis=0)}, index=matrix.columns).astype("Int64")
    out.loc[baseline] = pd.NA  # the baseline against itself is not a result
    return out


def bradley_terry(wins, counts, prior: float = 1.0, tol: float = 1e-10, max_iter: int = 100):
    """Bradley-Terry log-strengths by maximum likelihood, batched over leading axes.

    ``wins[..., i, j]`` = wins of i over j (ties counted half), ``counts[..., i, j]``
    = comparisons.  ``prior`` virtual ties per pair keep the estimate finite
    when a method wins every comparison.  Returns log-strengths centred to
    mean 0 (shape ``wins.shape[:-1]``).

    Newton's method on the concave log-likelihood: a dozen batched k x k
    solves, where Hunter's MM needs thousands of iterations on lopsided data
    (a 1000-replicate bootstrap took seconds with MM)."""
    import numpy as np

    k = wins.shape[-1]
    off = 1.0 - np.eye(k)
    w = wins + 0.5 * prior * off
    n = counts + prior * off
    theta = np.zeros(wins.shape[:-1])
    # Adding -J removes the null direction (shifting every strength); the
    # gradient has no component along it, so the step is unchanged otherwise.
    gauge = np.ones((k, k))
    for _ in range(max_iter):
        s = 1.0 / (1.0 + np.exp(theta[..., None, :] - theta[..., :, None]))  # P(i beats j)
        grad = (w - n * s).sum(axis=-1)
        h = n * s * (1.0 - s)
        hess = h - np.eye(k) * h.sum(axis=-1)[..., None] - gauge
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        step = np.clip(step, -2.0, 2.0)  # damping: a full step can overshoot far from the optimum
        theta = theta - step
        theta -= theta.mean(axis=-1, keepdims=True)
        if np.max(np.abs(step)) < tol:
            break
    return theta


def elo(matrix, greater: bool, n_boot: int = 1000, seed: int = 0, groups=None,
        min_groups: int = 2):
    """Elo-scaled Bradley-Terry strength (mean 1000, 400 points = 10x odds)
    with a bootstrap 95% interval from resampling datasets (fixed ``seed``).

    ``groups`` (one label per row; default: every row its own) names the
    independent dataset of each row: rows that are conditions of one dataset
    are resampled together.  With fewer than ``min_groups`` independent
    datasets the interval is NaN: over one, every resample is the data
    itself (zero width); over a few, there are a handful of distinct resamples."""
    import numpy as np
    import pandas as pd

    o = pairwise_outcomes(matrix, greater)
    seen = ~np.isnan(o)
    o0 = np.nan_to_num(o)
    to_elo = ELO_SCALE / math.log(10)
    n_d = o.shape[0]
    if n_d == 0 or o.shape[1] == 0:
        nan = np.full(matrix.shape[1], np.nan)
        return pd.DataFrame({"elo": nan, "elo_low": nan, "elo_high": nan}, index=matrix.columns)
    point = ELO_BASE + to_elo * bradley_terry(o0.sum(0), seen.sum(0, dtype=float))
    codes = (np.arange(n_d) if groups is None
             else pd.factorize(pd.Series(list(groups), dtype=object))[0])
    n_g = int(codes.max()) + 1
    if n_g < max(2, min_groups):
        nan = np.full(matrix.shape[1], np.nan)
        return pd.DataFrame({"elo": point, "elo_low": nan, "elo_high": nan}, index=matrix.columns)
    rng = np.random.default_rng(seed)
    # A bootstrap sample of datasets is a multinomial count per independent
    # dataset; each of its rows (conditions) gets that count.
    weights = rng.multinomial(n_g, np.full(n_g, 1.0 / n_g), size=n_boot).astype(float)[:, codes]
    w = np.einsum("bd,dij->bij", weights, o0)
    c = np.einsum("bd,dij->bij", weights, seen.astype(float))
    boot = ELO_BASE + to_elo * bradley_terry(w, c)
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    return pd.DataFrame({"elo": point, "elo_low": low, "elo_high": high}, index=matrix.columns)


def group_means(matrix, groups):
    """One row per independent dataset: the mean of its rows (conditions),
    NaN where a method lacks a row of the group.  ``groups``: one label per row."""
    import pandas as pd

    key = pd.Series(list(groups), index=matrix.index, dtype=object)
    complete = matrix.notna().groupby(key, sort=True).all()
    return matrix.groupby(key, sort=True).mean().where(complete)


@dataclass
class Friedman:
    """Result of the Friedman test, or why it was skipped."""

    statistic: float = math.nan
    pvalue: float = math.nan
    k: int = 0
    n: int = 0
    skipped: str | None = None


def min_datasets_friedman(k: int, alpha: float = 0.05) -> int:
    """Fewest complete datasets on which the Friedman test can reject at
    ``alpha`` with ``k`` methods: its statistic is at most ``n (k - 1)``
    (every dataset ranks the methods the same way)."""
    from scipy.stats import chi2

    n = 1
    while chi2.sf(n * (k - 1), k - 1) >= alpha:
        n += 1
    return n


def min_datasets_nemenyi(k: int, alpha: float = 0.05) -> int:
    """Fewest datasets for which the Nemenyi critical difference of ``k``
    methods is below ``k - 1``, the largest possible difference of average
    ranks (with fewer, no pair can ever differ significantly)."""
    n = 1
    while nemenyi_cd(k, n, alpha) >= k - 1:
        n += 1
    return n


def min_datasets_wilcoxon(alpha: float = 0.05) -> int:
    """Fewest datasets on which a two-sided exact Wilcoxon signed-rank test
    can reach ``p < alpha``: its smallest p-value is ``2 / 2**n`` (6 for 0.05)."""
    return math.floor(math.log2(2 / alpha)) + 1


def friedman(complete, alpha: float = 0.05) -> Friedman:
    """Friedman chi-square over complete rows (needs >= 3 methods, and the
    datasets that can reach ``p < alpha``: ``min_datasets_friedman``)."""
    from scipy.stats import friedmanchisquare

    n, k = complete.shape
    if k < 3:
        return Friedman(k=k, n=n, skipped=f"needs at least 3 methods, got {k}")
    need = max(2, min_datasets_friedman(k, alpha))
    if n < need:
        return Friedman(k=k, n=n, skipped=f"needs at least {need} complete datasets for {k} "
                        f"methods (with fewer, p < {alpha} is out of reach even when one "
                        f"method always wins), got {n}")
    res = friedmanchisquare(*(complete[c].to_numpy(dtype=float) for c in complete.columns))
    return Friedman(float(res.statistic), float(res.pvalue), k, n)


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks for k methods on n datasets:
    q_alpha * sqrt(k (k + 1) / (6 n)), q_alpha = studentized range / sqrt(2)."""
    from scipy.stats import studentized_range

    if k < 2 or n < 1:
        return math.nan
    q = studentized_range.ppf(1 - alpha, k, math.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * n)))


def cd_cliques(avg_ranks, cd: float) -> list[list[str]]:
    """Maximal groups of methods whose average ranks differ by less than ``cd``
    (the bars of a CD diagram); singletons are not listed."""
    order = avg_ranks.sort_values()
    names, r = list(order.index), order.to_numpy()
    groups: list[tuple[int, int]] = []
    for i in range(len(r)):
        j = i
        while j + 1 < len(r) and r[j + 1] - r[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in groups):
            groups.append((i, j))
    return [names[a:b + 1] for a, b in groups]


def holm(pvalues):
    """Holm step-down adjusted p-values (NaN entries are left out and kept NaN)."""
    import numpy as np

    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


#: Up to this many nonzero differences with tied magnitudes the Wilcoxon
#: p-value is exact (every sign assignment enumerated, ties given average
#: ranks); above, the normal approximation with tie correction.
EXACT_MAX = 16


def signed_rank_p(d) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of ``d`` (zeros
    dropped, as Wilcoxon did): scipy's exact test for up to 50 untied
    differences, else exact enumeration (tied, up to ``EXACT_MAX``) or the
    tie-corrected normal approximation.  Deterministic: scipy 1.17 answers
    tied differences with a permutation test that is slow and, above a dozen
    pairs, random."""
    import numpy as np
    from scipy import stats as sps

    d = np.asarray(d, dtype=float)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        return 1.0
    if len(np.unique(np.abs(d))) == n and n <= 50:
        return float(sps.wilcoxon(d, method="exact").pvalue)
    ranks = sps.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    centre = ranks.sum() / 2
    if n <= EXACT_MAX:
        signs = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
        w = signs @ ranks
        # a relative tolerance, so sums of average ranks that should tie do
        return float(np.mean(np.abs(w - centre) >= abs(observed - centre) * (1 - 1e-12)))
    var = (ranks ** 2).sum() / 4  # the tie-corrected variance of W+
    z = abs(observed - centre) / math.sqrt(var)
    return float(min(1.0, 2 * sps.norm.sf(z)))


def pairwise_wilcoxon(matrix, greater: bool, alpha: float = 0.05):
    """Two-sided Wilcoxon signed-rank test for every pair of methods over the
    datasets where both have a score (``signed_rank_p``), with Holm-adjusted p-values.  A pair
    with fewer datasets than ``min_datasets_wilcoxon`` gets no p-value (it
    could not reach ``alpha``) and a note saying so.

    Columns: a, b, n, wins_a, ties, wins_b, statistic, p, p_holm, note."""
    import numpy as np
    import pandas as pd
    from scipy.stats import rankdata

    rows = []
    cols = list(matrix.columns)
    need = min_datasets_wilcoxon(alpha)
    for i, a in enumerate(cols):
        for b in cols[i + 1:]:
            both = matrix[[a, b]].dropna()
            xa, xb = both[a].to_numpy(float), both[b].to_numpy(float)
            d = (xa - xb) if greater else (xb - xa)
            row = {"a": a, "b": b, "n": len(d), "wins_a": int((d > 0).sum()),
                   "ties": int((d == 0).sum()), "wins_b": int((d < 0).sum()),
                   "statistic": math.nan, "p": math.nan, "note": ""}
            if len(d) == 0:
                row["note"] = "no shared datasets"
            elif len(d) < need:
                row["note"] = f"too few datasets (needs {need})"
            elif not np.any(d != 0):
                row.update(p=1.0, note="all datasets tied")
            else:
                nonzero = d[d != 0]
                ranks = rankdata(np.abs(nonzero))
                # scipy's statistic: the smaller of the two signed-rank sums
                row.update(statistic=float(min(ranks[nonzero > 0].sum(),
                                               ranks[nonzero < 0].sum())),
                           p=signed_rank_p(d))
            rows.append(row)
    df = pd.DataFrame(rows, columns=["a", "b", "n", "wins_a", "ties", "wins_b", "statistic",
                                     "p", "note"])
    df.insert(8, "p_holm", holm(df["p"].to_numpy()) if len(df) else [])
    return df
