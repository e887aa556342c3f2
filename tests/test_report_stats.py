"""Report statistics checked against scipy, statsmodels and hand computations.

No MLflow here: the functions take a datasets x methods score matrix.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.errors import UserError
from harness.report import aggregate, analysis, stats
from harness.report.load import read_suite, resolve_source
from harness.report.plots import pareto_front

# Per-dataset means of the end-to-end toy store (test_report_build.py); NaN = missing cell.
TOY = pd.DataFrame(
    {"baseline": [0.82, 0.70, 0.60, 0.90, 0.50],
     "focal": [0.86, 0.75, 0.60, 0.88, 0.55],
     "anyloss": [0.91, 0.72, 0.65, np.nan, 0.58]},
    index=["d1", "d2", "d3", "d4", "d5"])


def test_toy_hand_values():
    complete, dropped = aggregate.complete_blocks(TOY)
    assert list(complete.index) == ["d1", "d2", "d3", "d5"] and dropped == {"d4": ["anyloss"]}
    # ranks: d1 a1 f2 b3 | d2 f1 a2 b3 | d3 a1 f2.5 b2.5 | d5 a1 f2 b3
    assert stats.average_ranks(complete, True).to_dict() == pytest.approx(
        {"anyloss": 1.25, "focal": 1.875, "baseline": 2.875})
    # pairwise over all datasets: a beats b 4/4 and f 3/4; f vs b: W L T? -> 3.5/5
    assert stats.win_rates(TOY, True).to_dict() == pytest.approx(
        {"anyloss": 7 / 8, "focal": 4.5 / 9, "baseline": 1.5 / 9})
    assert stats.normalized_scores(complete, True).to_dict() == pytest.approx(
        {"baseline": 0.0, "focal": (0.04 / 0.09 + 1 + 0 + 0.625) / 4,
         "anyloss": (1 + 0.4 + 1 + 1) / 4})
    wtl = stats.wins_ties_losses(TOY, True, "baseline")
    assert wtl.loc["focal"].tolist() == [3, 1, 1] and wtl.loc["anyloss"].tolist() == [4, 0, 0]
    assert wtl.loc["baseline"].isna().all()


def test_direction_flips_everything():
    low = -TOY  # lower is better on the negated scores must give the same answers
    assert stats.average_ranks(low.dropna(), False).equals(stats.average_ranks(TOY.dropna(), True))
    assert stats.win_rates(low, False).equals(stats.win_rates(TOY, True))


def test_rank_matrix_ties_and_missing():
    m = pd.DataFrame({"a": [1.0, 3.0], "b": [1.0, np.nan], "c": [0.5, 1.0]})
    r = stats.rank_matrix(m, greater=True)
    assert r.iloc[0].tolist() == [1.5, 1.5, 3.0]
    assert r.iloc[1, 0] == 1 and math.isnan(r.iloc[1, 1]) and r.iloc[1, 2] == 2


def test_float_noise_still_ties():
    cells = pd.DataFrame({"mean": [0.1 + 0.2, 0.3]},
                         index=pd.MultiIndex.from_tuples([("d", "a"), ("d", "b")],
                                                         names=["dataset", "method"]))
    m = aggregate.score_matrix(cells)
    assert stats.win_rates(m, True).tolist() == [0.5, 0.5]


def test_friedman_against_scipy_and_hand_formula():
    rng = np.random.default_rng(1)
    m = pd.DataFrame(rng.normal(size=(8, 4)), columns=list("abcd"))
    fr = stats.friedman(m)
    ref = sps.friedmanchisquare(*(m[c] for c in m))
    assert (fr.statistic, fr.pvalue) == pytest.approx((ref.statistic, ref.pvalue))
    n, k = m.shape  # Demšar eq. (no ties): 12N/(k(k+1)) [sum R_j^2 - k(k+1)^2/4]
    r = stats.average_ranks(m, True).to_numpy()
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4)
    assert fr.statistic == pytest.approx(chi2)
    assert fr.pvalue == pytest.approx(sps.chi2.sf(chi2, k - 1))
    # with ties (the toy data) scipy applies its tie correction; we must match it
    complete = TOY.dropna()
    fr = stats.friedman(complete)
    ref = sps.friedmanchisquare(*(complete[c] for c in complete))
    assert (fr.statistic, fr.pvalue) == pytest.approx((ref.statistic, ref.pvalue))
    assert stats.friedman(m[["a", "b"]]).skipped == "needs at least 3 methods, got 2"
    assert stats.friedman(m.iloc[:2]).skipped.startswith(
        "needs at least 3 complete datasets for 4 methods")


def test_minimum_datasets_are_where_significance_becomes_reachable():
    """Below these counts no outcome can be significant at 0.05, so the report
    says so instead of printing a CD or p = 1 rows."""
    # Friedman's statistic is at most N (k - 1): k = 3, N = 2 gives 4 -> p = e^-2
    assert sps.chi2.sf(2 * 2, 2) == pytest.approx(math.exp(-2)) and math.exp(-2) > 0.05
    assert sps.chi2.sf(3 * 2, 2) < 0.05
    assert stats.min_datasets_friedman(3) == 3
    # k = 2: N (k - 1) = N ~ chi2(1): 3.84 is the 0.05 quantile, so N = 4
    assert stats.min_datasets_friedman(2) == 4
    # Nemenyi: CD(3, N) = 2.343 sqrt(2 / N) < 2 from N = 3 on (Demšar's q)
    assert stats.nemenyi_cd(3, 2) > 2 > stats.nemenyi_cd(3, 3)
    assert stats.min_datasets_nemenyi(3) == 3
    # Wilcoxon two-sided exact: smallest p = 2 / 2^N; 1/16 > 0.05 > 1/32
    assert stats.min_datasets_wilcoxon() == 6 and stats.min_datasets_wilcoxon(0.1) == 5
    five = pd.DataFrame({"a": [1.0, 2, 3, 4, 5], "b": [0.0, 1, 2, 3, 4]})
    assert sps.wilcoxon(five["a"], five["b"]).pvalue == pytest.approx(1 / 16)
    w = stats.pairwise_wilcoxon(five, True)
    assert math.isnan(w.loc[0, "p"]) and w.loc[0, "note"] == "too few datasets (needs 6)"
    assert w.loc[0, "wins_a"] == 5  # the counts are still given


@pytest.mark.parametrize("k,q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (6, 2.850),
                                 (7, 2.949), (8, 3.031), (9, 3.102), (10, 3.164)])
def test_nemenyi_cd_matches_demsar_table(k, q):
    # q_0.05 from Demšar (2006), Table 5(a)
    n = 14
    assert stats.nemenyi_cd(k, n) == pytest.approx(q * math.sqrt(k * (k + 1) / (6 * n)),
                                                   abs=2e-3)


def test_cd_cliques():
    r = pd.Series({"a": 1.0, "b": 1.5, "c": 2.9, "d": 3.2, "e": 5.0})
    assert stats.cd_cliques(r, 1.0) == [["a", "b"], ["c", "d"]]
    assert stats.cd_cliques(r, 2.0) == [["a", "b", "c"], ["b", "c", "d"], ["d", "e"]]
    assert stats.cd_cliques(r, 0.1) == []


def test_holm_against_statsmodels_and_hand():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # hand: sorted .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> max-accumulated .06
    assert stats.holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    from statsmodels.stats.multitest import multipletests  # the [test] extra has it

    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(0, 0.2, size=rng.integers(1, 12))
        assert stats.holm(q) == pytest.approx(multipletests(q, method="holm")[1])
    with_nan = stats.holm([0.01, np.nan, 0.02])
    assert with_nan[0] == pytest.approx(0.02) and math.isnan(with_nan[1])


def test_pairwise_wilcoxon_against_scipy():
    rng = np.random.default_rng(3)
    m = pd.DataFrame(rng.normal(size=(12, 3)), columns=["a", "b", "c"])
    m.loc[0, "c"] = np.nan
    w = stats.pairwise_wilcoxon(m, greater=True)
    assert list(zip(w.a, w.b)) == [("a", "b"), ("a", "c"), ("b", "c")]
    for r in w.itertuples():
        both = m[[r.a, r.b]].dropna()
        ref = sps.wilcoxon(both[r.a], both[r.b])
        assert (r.statistic, r.p, r.n) == pytest.approx((ref.statistic, ref.pvalue, len(both)))
    assert w.p_holm.tolist() == pytest.approx(stats.holm(w.p.to_numpy()).tolist())
    six = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    tied = stats.pairwise_wilcoxon(pd.DataFrame({"a": six, "b": six}), True)
    assert tied.p[0] == 1.0 and tied.note[0] == "all datasets tied"


def _bt_reference(wins, counts, prior=1.0):
    """Penalised Bradley-Terry MLE by generic optimisation (the MM fit must agree)."""
    from scipy.optimize import minimize

    k = len(wins)
    off = 1 - np.eye(k)
    w, n = wins + 0.5 * prior * off, counts + prior * off

    def nll(theta):
        d = theta[:, None] - theta[None, :]
        return -np.sum(w * d - 0.5 * n * np.logaddexp(0, d) - 0.5 * n * np.logaddexp(0, -d))

    theta = minimize(nll, np.zeros(k), method="BFGS", options={"gtol": 1e-10}).x
    return theta - theta.mean()


def test_bradley_terry_matches_direct_mle():
    wins = np.array([[0, 3, 4], [1, 0, 2.5], [0, 1.5, 0]])
    counts = wins + wins.T
    got = stats.bradley_terry(wins, counts)
    assert got == pytest.approx(_bt_reference(wins, counts), abs=1e-5)
    # a method that wins everything still gets a finite strength
    assert np.isfinite(stats.bradley_terry(np.array([[0, 5.0], [0, 0]]),
                                           np.array([[0, 5.0], [5, 0]]))).all()


def test_elo_point_bootstrap_and_reproducibility():
    e1, e2 = stats.elo(TOY, True), stats.elo(TOY, True)
    pd.testing.assert_frame_equal(e1, e2)
    assert e1.elo.mean() == pytest.approx(1000)
    assert (e1.elo_low <= e1.elo).all() and (e1.elo <= e1.elo_high).all()
    o = stats.pairwise_outcomes(TOY, True)
    theta = _bt_reference(np.nan_to_num(o).sum(0), (~np.isnan(o)).sum(0).astype(float))
    assert e1.elo.to_numpy() == pytest.approx(1000 + 400 / math.log(10) * theta, abs=1e-3)


def test_cell_table_t_interval():
    runs = pd.DataFrame({"dataset": ["d"] * 4 + ["e"], "method": ["m"] * 4 + ["m"],
                         "seed": [0, 1, 2, 3, 0], "status": ["finished"] * 3 + ["failed"] * 2,
                         "test/f1": [0.5, 0.6, 0.8, np.nan, np.nan]})
    cells = aggregate.cell_table(runs, "test/f1")
    c = cells.loc[("d", "m")]
    assert (c["mean"], c["std"], c.n, c.n_bad) == pytest.approx(
        (np.mean([0.5, 0.6, 0.8]), np.std([0.5, 0.6, 0.8], ddof=1), 3, 1))
    # bootstrap interval of the mean: inside [min, max] of the values, around the mean
    assert 0.5 <= c.ci_low < c["mean"] < c.ci_high <= 0.8
    assert (c.ci_low, c.ci_high) == aggregate.bootstrap_ci([0.5, 0.6, 0.8])  # fixed seed
    e = cells.loc[("e", "m")]
    assert e.n == 0 and e.n_bad == 1 and math.isnan(e["mean"])


def test_bootstrap_interval_stays_in_a_bounded_range():
    """The issue's case: a t interval of accuracies near 1 passes 1
    ([0.9342, 1.025]); the bootstrap interval cannot leave [min, max]."""
    acc = [0.94, 1.0, 1.0, 0.96, 1.0]
    t_hi = np.mean(acc) + sps.t.ppf(0.975, 4) * sps.sem(acc)
    assert t_hi > 1
    lo, hi = aggregate.bootstrap_ci(acc)
    assert 0.94 <= lo < np.mean(acc) < hi <= 1.0
    # two seeds: the resampled means are a, (a+b)/2 and b, so the interval is [a, b]
    assert aggregate.bootstrap_ci([0.2, 0.4]) == pytest.approx((0.2, 0.4))
    assert all(math.isnan(x) for x in aggregate.bootstrap_ci([0.5]))


@pytest.mark.parametrize("column,votes,greater,warns", [
    ("test/ece", {"ece": {"min": 3}}, False, False),
    ("test/f1", {"f1": {"max": 2}}, True, False),
    # parameterised metrics keep ':' and '-' in their logged name
    ("test/ece:bins-25", {"ece:bins-25": {"min": 1}, "ece": {"max": 1}}, False, False),
    ("val/ece:bins-25", {"ece:bins-25": {"min": 1}}, False, False),
    ("time/train_s", {}, False, False),  # harness's own keys need no tag
    ("val/loss", {}, False, False),
    ("test/log_loss", {}, True, True),  # no tag: higher-is-better, with a warning
    ("test/x", {"x": {"min": 1, "max": 3}}, True, True),  # disagreement: majority, warned
])
def test_direction_comes_from_run_tags(column, votes, greater, warns):
    from collections import Counter

    got, warning = aggregate.direction(column, {k: Counter(v) for k, v in votes.items()})
    assert got is greater and (warning is not None) is warns
    if warns:
        assert column in warning and "\n" not in warning


def test_a_metric_tagged_without_direction_is_never_ranked():
    """A signed metric (``harness.direction.bias = none``) is refused by name,
    also when logged per condition, and tables of directed metrics still rank."""
    from collections import Counter

    directions = {"bias": Counter(none=4), "abs_error": Counter(min=4)}
    for column in ("test/bias", "test/shift3/bias"):
        with pytest.raises(UserError, match="has no direction") as err:
            aggregate.direction(column, directions)
        assert column in str(err.value) and "--metric" in str(err.value)
    assert aggregate.direction("test/abs_error", directions) == (False, None)


def test_read_suite(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: imb\nrank_by: f1\nseeds: 3\n")
    info = read_suite(p)
    assert (info.name, info.rank_by) == ("imb", "f1")
    # without rank_by the suite ranks by its first metric, by its logged name
    p.write_text("name: imb\nmetrics: [{name: ece, bins: 25}, accuracy]\n")
    assert read_suite(p).rank_by == "ece:bins-25"
    p.write_text("name: imb\nmetrics: [accuracy, f1]\n")
    assert read_suite(p).rank_by == "accuracy"
    assert resolve_source("plain-name").name == "plain-name"
    with pytest.raises(UserError, match=r"nope\.yaml: suite file not found"):
        resolve_source(str(tmp_path / "nope.yaml"))
    p.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match=r"s\.yaml:\d+: malformed YAML"):
        read_suite(p)
    p.write_text("name: a\nname: b\n")
    with pytest.raises(UserError, match=r"s\.yaml:2: name: duplicate key 'name' \(first at "
                                        r"line 1\)"):
        read_suite(p)
    p.write_text("task: x\n")
    with pytest.raises(UserError, match="no 'name' key"):
        read_suite(p)


def test_pareto_front_and_formatting():
    t = pd.Series({"a": 1.0, "b": 2.0, "c": 3.0, "d": 2.5})
    s = pd.Series({"a": 0.5, "b": 0.7, "c": 0.9, "d": 0.6})
    assert pareto_front(t, s, True) == ["a", "b", "c"]
    assert pareto_front(t, -s, False) == ["a", "b", "c"]
    assert analysis.fmt_mean_std(0.91, 0.0173205, 3) == "0.9100 ± 0.017 (3)"
    assert analysis.fmt_mean_std(0.5, float("nan"), 1) == "0.5000 (1)"
    assert analysis.fmt_mean_std(1234.56, 12.0, 2) == "1235 ± 12 (2)"
    # one format per table: the largest value gets 4 significant digits
    assert analysis.table_decimals([0.91, 0.0012]) == 4
    assert analysis.table_decimals([12.5, 0.3]) == 2
    assert analysis.table_decimals([1234.5]) == 0 and analysis.table_decimals([]) == 4
    assert analysis.fmt_mean_std(0.91, 0.0173205, 3, 4) == "0.9100 ± 0.0173 (3)"
    assert analysis.fmt_mean_std(12.5, 0.25, 2, 2) == "12.50 ± 0.25 (2)"


def _runs(spec):
    rows = [{"run_id": f"{d}{m}{s}{st}", "start_time": 0, "mlflow_status": "FINISHED",
             "suite": "x", "run_key": f"{d}{m}{s}{st}", "dataset": d, "method": m,
             "seed": str(s), "task": "t", "status": st,
             "error": None if st == "finished" else "Boom\n  at line 3", "test/accuracy": v}
            for d, m, s, st, v in spec]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("spec,why", [
    ([("a", "m", 0, "finished", 0.5)], "Friedman test skipped: needs at least 3 methods, got 1"),
    ([("a", "m", 0, "failed", np.nan), ("a", "n", 0, "failed", np.nan)],
     "Methods without any result, left out of every cross-dataset statistic: `m`, `n`"),
    ([("a", "m", 0, "finished", 0.5), ("b", "n", 0, "finished", 0.6),
      ("c", "o", 0, "finished", 0.7)],
     "Friedman test skipped: needs at least 3 complete datasets for 3 methods"),
    # one dataset: no CD and no Wilcoxon rows with p = 1, but the reason
    ([("a", m, 0, "finished", v) for m, v in (("m", 0.5), ("n", 0.6), ("o", 0.7))],
     "Nemenyi critical difference skipped: needs at least 3 complete datasets for 3 methods"),
    ([("a", m, 0, "finished", v) for m, v in (("m", 0.5), ("n", 0.6), ("o", 0.7))],
     "Pairwise Wilcoxon tests skipped: a pair needs at least 6 shared datasets to reach "
     "p < 0.05; the most any pair shares is 1."),
])
def test_degenerate_reports_still_render(spec, why, tmp_path, monkeypatch):
    from harness.report import figures, render
    from harness.report.load import LoadedRuns

    monkeypatch.setattr(figures, "load_histories", lambda ids, key, uri: {})
    runs = _runs(spec)
    data = analysis.analyse(LoadedRuns("x", runs, len(runs)), title="x", metric="accuracy",
                            tracking_uri="u", greater=True)
    render.write(data, figures.make_figures(data, tmp_path, "u"), tmp_path, render.FORMATS)
    md = (tmp_path / "index.md").read_text()
    assert why in md
    assert "Pairwise Wilcoxon signed-rank tests" not in md  # no table of untestable pairs
    assert "CD = " not in md
    assert "Boom\n" not in md  # multi-line errors are folded into one table row
    assert ("Boom at line 3" in md) == (runs.status != "finished").any()
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(board.columns) == ["method", "avg_rank", "win_rate", "normalized_score", "elo",
                                   "elo_low", "elo_high", "n_datasets"]


def test_package_import_is_light():
    import subprocess
    import sys

    code = ("import sys, harness.report; heavy = {'mlflow', 'pandas', 'scipy', 'matplotlib'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_baseline_without_results_is_reported_not_fatal():
    from harness.report.load import LoadedRuns

    runs = _runs([("a", "m", 0, "failed", np.nan), ("a", "n", 0, "finished", 0.5)])
    data = analysis.analyse(LoadedRuns("x", runs, 2), title="x", metric="accuracy",
                            tracking_uri="u", baseline="m", greater=True)
    assert data.baseline is None and "wins" not in data.leaderboard.columns
    assert "Baseline `m` has no result for test/accuracy; no wins/ties/losses." in data.notes
    with pytest.raises(UserError, match="baseline method 'zz' not found"):
        analysis.analyse(LoadedRuns("x", runs, 2), title="x", metric="accuracy",
                         tracking_uri="u", baseline="zz", greater=True)


def test_many_failures_read_well_and_no_local_paths(tmp_path, monkeypatch):
    """Issue #12.3: the per-run failure table is cut to its first rows with a
    count, failures.csv beside it has them all, and a published report shows
    no directories of the machine that produced it."""
    from harness.report import figures, render
    from harness.report.load import LoadedRuns

    monkeypatch.setattr(figures, "load_histories", lambda ids, key, uri: {})
    spec = [(d, m, s, "finished", 0.5 + 0.01 * i)
            for i, (d, m) in enumerate([("a", "m"), ("a", "n"), ("b", "m"), ("b", "n")])
            for s in (0, 1)]
    spec += [(f"d{i}", "m", 0, "failed", np.nan) for i in range(25)]
    runs = _runs(spec)
    runs.loc[runs.status == "failed", "error"] = [
        f"FileNotFoundError: /home/alice/proj/data/set{i}.csv: no such file" for i in range(25)]
    data = analysis.analyse(LoadedRuns("x", runs, len(runs)), title="x", metric="accuracy",
                            tracking_uri="sqlite:////home/alice/proj/mlflow.db", greater=True)
    render.write(data, figures.make_figures(data, tmp_path, "u"), tmp_path, render.FORMATS)
    md = (tmp_path / "index.md").read_text()
    assert "**25 runs that did not finish (the first 20; all of them in failures.csv)**" in md
    table = md.split("25 runs that did not finish")[1].split("## Leaderboard")[0]
    assert table.count("| failed ") == render.FAILURE_ROWS
    # failures are also grouped by cause, one line per (dataset, status, error)
    assert "1 run(s) failed on `d7` (1 method(s)): FileNotFoundError: …/set7.csv" in md
    bad = pd.read_csv(tmp_path / "failures.csv")
    assert len(bad) == 25 and list(bad.columns) == ["dataset", "method", "seed", "status",
                                                    "error", "run_id"]
    assert bad.set_index("dataset").error["d3"] == "FileNotFoundError: …/set3.csv: no such file"
    assert "tracking URI `sqlite:///mlflow.db`" in md
    for name in ("index.md", "index.html", "failures.csv", "leaderboard.tex"):
        assert "/home/alice" not in (tmp_path / name).read_text(), name


def test_direction_of_a_per_condition_metric_comes_from_its_own_tag():
    from collections import Counter

    from harness.report.aggregate import direction

    tags = {"ece": Counter(min=3), "psnr": Counter(max=2)}
    assert direction("test/shift3/ece", tags) == (False, None)
    assert direction("test/x100/psnr", tags) == (True, None)
    assert direction("test/x100/other", tags)[1] is not None  # no tag: assumed, and said
