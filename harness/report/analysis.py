"""Everything a report states, computed once from the loaded runs.

``analyse`` is pure (DataFrame in, ``ReportData`` out) so the numbers can be
tested without MLflow, and the renderers only format what is here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.errors import UserError
from harness.params import did_you_mean
from harness.report import aggregate, stats
from harness.runstate import FINISHED

#: Columns of leaderboard.csv, in order (wins/ties/losses only with a baseline).
LEADERBOARD_COLUMNS = ["method", "avg_rank", "win_rate", "normalized_score", "elo", "elo_low",
                       "elo_high"]


@dataclass
class ReportData:
    """The numbers and caveats of one report."""

    title: str
    experiment: str
    tracking_uri: str
    metric: str
    column: str
    greater: bool
    baseline: str | None
    runs: object  # every kept run (pandas.DataFrame)
    scored: object  # finished runs with the metric
    n_read: int
    status_counts: dict[str, int]
    cells: object  # per (dataset, method): mean, std, n, ci_low, ci_high, n_runs, n_bad
    matrix: object  # datasets x methods means, NaN = missing
    complete: object  # rows of matrix with every compared method
    dropped: dict[str, list[str]]  # dataset left out of complete-block stats -> missing methods
    missing: list[tuple[str, str]]
    unscored_methods: list[str]
    leaderboard: object  # index = method, LEADERBOARD_COLUMNS[1:] (+ w/t/l, train_s) + n_datasets
    friedman: stats.Friedman
    cd: float
    cliques: list[list[str]]
    wilcoxon: object
    notes: list[str] = field(default_factory=list)
    #: why there is no Nemenyi CD (too few datasets for the number of methods)
    cd_skipped: str | None = None
    #: which runs count and where the plan stands (``planned.Scope``; None: every run)
    scope: object = None
    #: (dataset, method) -> why it has fewer results than runs (``2 failed, 1 pending``)
    reasons: dict = field(default_factory=dict)
    #: independent datasets where at least two methods have a score (conditions
    #: of one dataset count once)
    n_independent: int = 0
    #: group -> its dataset labels, for groups of several conditions (``conditions``)
    shared: dict = field(default_factory=dict)
    #: group -> "declared" or "same source"
    shared_how: dict = field(default_factory=dict)
    #: per-seed paired comparisons (``paired.compare``), when there are too few
    #: independent datasets for the cross-dataset tests; else None
    per_seed: object = None
    #: comparisons paired on the test units a task logged (``unit/<metric>``); else None
    per_unit: object = None
    #: the suite's other metrics logged as ``test/<name>``: column -> ``higher``,
    #: ``lower`` or ``none`` (from the runs' direction tags), shown, not ranked
    other_metrics: dict = field(default_factory=dict)

    @property
    def completeness(self) -> str | None:
        """``24 of 888 runs: partial`` for a suite file's plan, else None."""
        return self.scope.completeness() if self.scope is not None else None

    @property
    def methods(self) -> list[str]:
        """Methods in leaderboard order (best first), unscored ones last."""
        return list(self.leaderboard.index) + self.unscored_methods

    @property
    def datasets(self) -> list[str]:
        """Datasets in sorted order."""
        return list(self.matrix.index)


def _ordered_methods(board) -> list[str]:
    keys = board.assign(_r=board["avg_rank"].fillna(math.inf), _w=-board["win_rate"].fillna(-1))
    return list(keys.sort_values(["_r", "_w", "method"]).index)


def leaderboard(matrix, complete, greater: bool, baseline: str | None, seed: int = 0,
                groups=None, min_groups: int = 2):
    """The cross-dataset table, one row per method, best first.

    avg_rank and normalized_score use the complete blocks; win_rate, Elo and
    wins/ties/losses every dataset where the pair has scores; n_datasets is
    the number of datasets where the method has a score.  ``groups`` (one
    label per row of ``matrix``) resamples conditions of one dataset
    together in Elo's bootstrap (``stats.elo``), which gives no interval
    with fewer than ``min_groups`` independent datasets."""
    import pandas as pd

    board = pd.DataFrame(index=pd.Index(list(matrix.columns)))
    board["method"] = list(matrix.columns)
    if len(complete):
        board["avg_rank"] = stats.average_ranks(complete, greater)
        board["normalized_score"] = stats.normalized_scores(complete, greater)
    else:
        board["avg_rank"] = board["normalized_score"] = math.nan
    board["win_rate"] = stats.win_rates(matrix, greater)
    board = board.join(stats.elo(matrix, greater, seed=seed, groups=groups,
                                 min_groups=min_groups))
    cols = list(LEADERBOARD_COLUMNS)
    if baseline is not None:
        board = board.join(stats.wins_ties_losses(matrix, greater, baseline))
        cols += ["wins", "ties", "losses"]
    board["n_datasets"] = matrix.notna().sum(axis=0)
    board = board[cols + ["n_datasets"]]
    return board.loc[_ordered_methods(board)]


TIME_COLUMN = "time/train_s"


def mean_train_time(scored, datasets):
    """Mean ``time/train_s`` per method over ``datasets``: per dataset first,
    then across datasets, so every dataset weighs the same (None when no run
    logged it)."""
    if TIME_COLUMN not in scored.columns or scored[TIME_COLUMN].isna().all():
        return None
    s = scored[scored["dataset"].isin(datasets)]
    return s.groupby(["dataset", "method"])[TIME_COLUMN].mean().groupby("method").mean()


def analyse(loaded, *, title: str, metric: str, tracking_uri: str, baseline: str | None = None,
            runs=None, notes: list[str] | None = None,
            greater: bool | None = None, scope=None, units: dict | None = None) -> ReportData:
    """Aggregate, rank and test the runs of ``loaded`` (or ``runs`` when the
    caller merged several experiments or kept a plan's runs).  ``greater``
    overrides the metric's direction (default: the runs' ``harness.direction.*``
    tags, ``aggregate.direction``).  ``scope`` (``planned.restrict``) adds the
    planned datasets and methods that have no run yet, as missing cells with
    their reasons, and says which datasets are conditions of one
    (``conditions``): the cross-dataset tests and Elo's bootstrap count each
    independent dataset once (the mean over its conditions).  With fewer
    independent datasets than a Wilcoxon test over datasets needs, methods
    are compared paired over seeds on each dataset (``paired``).  ``units``
    (``run_id -> [(unit, value)]`` of ``paired.unit_key(metric)``) adds the
    comparison paired on test units."""
    from harness.report import paired, planned

    runs = loaded.runs if runs is None else runs
    scope = scope if scope is not None else planned.Scope(None)
    notes = list(notes or [])
    column = aggregate.metric_column(metric)
    logged = sorted(c for c in runs.columns if c.startswith(("test/", "time/"))
                    and runs[c].notna().any())
    if column not in logged and runs["status"].eq(FINISHED).any():
        # Finished runs exist but none has the metric: almost surely a typo.
        raise UserError(f"no run logged {column}{did_you_mean(column, logged)}; logged: "
                        f"{', '.join(logged) or 'nothing'}; pass one of them to --metric")
    if greater is None:
        greater = aggregate.direction(column, loaded.directions)[0]
    scored = aggregate.scored_runs(runs, column)
    cells = aggregate.cell_table(runs, column)
    plan = scope.plan
    datasets = sorted(set(runs["dataset"]) | set(plan.datasets if plan else ()), key=str)
    all_methods = sorted(set(runs["method"]) | set(plan.methods if plan else ()), key=str)
    matrix = aggregate.score_matrix(cells, datasets, all_methods)
    methods, unscored = aggregate.split_methods(matrix)
    if baseline is not None and baseline not in all_methods:
        known = ", ".join(map(str, all_methods)) or "none"
        raise UserError(f"baseline method {baseline!r} not found (methods: {known})")
    if baseline is not None and baseline not in methods:
        # A typo is an error; a baseline whose runs all failed is a finding to report.
        notes.append(f"Baseline `{baseline}` has no result for {column}; no wins/ties/losses.")
        baseline = None
    compared = matrix[methods]
    complete, dropped = aggregate.complete_blocks(compared)
    groups = plan.groups if plan is not None and plan.groups is not None else None
    label = groups.group if groups is not None else str
    shared = groups.shared(compared.index) if groups is not None else {}
    # Elo's interval needs as many independent datasets as a Wilcoxon test
    board = leaderboard(compared, complete, greater, baseline,
                        groups=[label(d) for d in compared.index],
                        min_groups=stats.min_datasets_wilcoxon())
    # time next to the score: a method's cost is half of the comparison
    train_s = mean_train_time(scored, list(complete.index) or datasets)
    if train_s is not None:
        board.insert(len(board.columns) - 1, "train_s", train_s.reindex(board.index))
    # the tests over datasets see each independent dataset once
    independent = (stats.group_means(complete, [label(d) for d in complete.index])
                   if shared else complete)
    fr = stats.friedman(independent)
    cd, cd_skipped = _nemenyi(len(methods), len(independent))
    cliques = stats.cd_cliques(board["avg_rank"].dropna(), cd) if math.isfinite(cd) else []
    over = (stats.group_means(compared, [label(d) for d in compared.index])
            if shared else compared)
    wil = stats.pairwise_wilcoxon(over[list(board.index)], greater)
    seed_pairs = unit_pairs = None
    n_independent = int((over.notna().sum(axis=1) >= 2).sum())
    if len(methods) >= 2 and n_independent < stats.min_datasets_wilcoxon():
        seed_pairs = paired.compare(paired.per_seed(scored, column), greater, baseline)
    if units:
        unit_pairs = paired.compare(paired.per_unit(scored, units), greater, baseline)
        unit_pairs = unit_pairs if len(unit_pairs) else None

    unlogged = runs[runs["status"].eq(FINISHED)].shape[0] - len(scored)
    if unlogged:
        notes.append(f"{unlogged} finished run(s) did not log {column}; they are not scored.")
    per_seed = scored.groupby(["dataset", "method", "seed"]).size()
    if (per_seed > 1).any():
        notes.append(f"{int((per_seed > 1).sum())} (dataset, method, seed) combination(s) have "
                     "several scored runs with different run keys (sweep points?); "
                     "they are pooled into one cell.")
    return ReportData(
        title=title, experiment=loaded.experiment, tracking_uri=tracking_uri, metric=metric,
        column=column, greater=greater, baseline=baseline, runs=runs, scored=scored,
        n_read=loaded.n_read, status_counts=aggregate.status_counts(runs), cells=cells,
        matrix=matrix, complete=complete, dropped=dropped,
        missing=aggregate.missing_cells(matrix), unscored_methods=unscored, leaderboard=board,
        friedman=fr, cd=cd, cliques=cliques, wilcoxon=wil, notes=notes, cd_skipped=cd_skipped,
        scope=scope, reasons=planned.cell_reasons(runs, scope), n_independent=n_independent,
        shared=shared, shared_how={g: groups.how.get(g, "") for g in shared} if shared else {},
        per_seed=seed_pairs, per_unit=unit_pairs,
        other_metrics=other_metrics(runs, column, loaded.directions))


def other_metrics(runs, column: str, directions: dict) -> dict[str, str]:
    """``test/<name>`` -> ``higher`` | ``lower`` | ``none`` for each metric the
    runs tagged a direction for and logged, except ``column`` (the ranked
    one), in name order; the majority of the runs' tags decides the word."""
    from harness.metrics import DIRECTION_WORDS

    out = {}
    for name in sorted(directions, key=str):
        col = f"test/{name}"
        if col == column or col not in runs.columns or not runs[col].notna().any():
            continue
        votes = directions[name]
        top = max(votes, key=lambda v: (votes[v], v)) if votes else "none"
        out[col] = DIRECTION_WORDS.get(top, "none")
    return out


def _nemenyi(k: int, n: int) -> tuple[float, str | None]:
    """The critical difference, or NaN and why not: with fewer datasets than
    ``stats.min_datasets_nemenyi`` no pair could differ significantly, and a
    CD diagram would only suggest otherwise."""
    if k < 2:
        return math.nan, f"needs at least 2 methods, got {k}"
    need = stats.min_datasets_nemenyi(k)
    if n < need:
        return math.nan, (f"needs at least {need} complete datasets for {k} methods (with "
                          f"fewer, no difference of average ranks can reach the CD), got {n}")
    return stats.nemenyi_cd(k, n), None


def problems(runs):
    """Runs that did not finish, for the report's failure table."""
    bad = runs[~runs["status"].eq(FINISHED)]
    cols = ["dataset", "method", "seed", "status", "error", "run_id"]
    return bad[cols].sort_values(["dataset", "method", "seed"], key=lambda s: s.astype(str))


def console_table(cells, datasets, methods) -> tuple[list[str], list[list[str]]]:
    """Datasets x methods ``mean ± std (n)`` for the end of ``harness run``,
    every number with the same decimals (``table_decimals``)."""
    decimals = table_decimals(cells["mean"])
    rows = []
    for d in datasets:
        row = [str(d)]
        for m in methods:
            c = cells.loc[(d, m)] if (d, m) in cells.index else None
            row.append("missing" if c is None or c["n"] == 0
                       else fmt_mean_std(c["mean"], c["std"], int(c["n"]), decimals))
        rows.append(row)
    return ["dataset", *map(str, methods)], rows


def table_decimals(values, digits: int = 4) -> int:
    """Decimals that give the largest ``|value|`` ``digits`` significant
    digits (0 to 6): one format for a whole table, so columns line up and
    compare at a glance."""
    import numpy as np

    x = np.abs(np.asarray(list(values), dtype=float))
    x = x[np.isfinite(x) & (x > 0)]
    if not len(x):
        return digits
    return int(min(6, max(0, digits - 1 - math.floor(math.log10(x.max())))))


def fmt_num(x: float, digits: int = 4) -> str:
    """Compact number: 4 significant digits, '–' for NaN."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.{digits}g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _sig(x: float, digits: int) -> str:
    # '#' keeps trailing zeros (0.7000, not 0.7) so a column lines up by precision.
    text = f"{x:#.{digits}g}"
    return text[:-1] if text.endswith(".") else text


def fmt_mean_std(mean: float, std: float, n: int, decimals: int | None = None) -> str:
    """``0.9123 ± 0.0041 (5)``: with ``decimals``, mean and std both fixed to
    that many (one format per table); without, mean to 4 and std to 2
    significant digits.  std is omitted for a single seed."""
    if not math.isfinite(mean):
        return "–"
    if decimals is not None:
        spread = f" ± {std:.{decimals}f}" if n > 1 and math.isfinite(std) else ""
        return f"{mean:.{decimals}f}{spread} ({n})"
    spread = f" ± {_sig(std, 2)}" if n > 1 and math.isfinite(std) else ""
    return f"{_sig(mean, 4)}{spread} ({n})"
