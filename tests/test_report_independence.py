"""Statistics that know what a dataset is (issue 23 items 8, 9, 10).

One dataset: no zero-width Elo intervals, the report says it has one
dataset and compares methods paired over seeds, Holm-corrected.  Conditions
of one dataset (m_S levels drawn from one pool): the tests over datasets
count them once.  Per-image values: methods paired on the same test images.
Stores are real sqlite MLflow stores in tmp_path.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

pytest.importorskip("mlflow")

from harness.errors import ConfigError  # noqa: E402
from harness.report import build_report, console_leaderboard, paired, stats  # noqa: E402

SEEDS = 8
BASE = [0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97]
# b is worse than a on every seed, by a different amount each (exact Wilcoxon:
# p = 2 / 2**8); c is a plus noise of both signs (4 better, 4 worse)
NOISE = [0.002, -0.003, 0.001, -0.002, 0.003, -0.0025, 0.0015, -0.0005]
ONE = {"a": BASE, "b": [x - 0.010 - 0.001 * i for i, x in enumerate(BASE)],
       "c": [x + e for x, e in zip(BASE, NOISE)]}


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    """These tests read statistics; drawing the figures would only cost time."""
    from harness.report import figures

    monkeypatch.setattr(figures, "make_figures", lambda *args, **kwargs: [])


def _log(client, exp, *, dataset, method, seed, value, key=None, units=None, metric="accuracy"):
    from mlflow.entities import Metric, RunTag

    tags = {"harness.suite": "s", "harness.run_key": key or f"{dataset}-{method}-{seed}",
            "harness.dataset": dataset, "harness.method": method, "harness.seed": str(seed),
            "harness.task": "t", "harness.status": "finished",
            f"harness.direction.{metric}": "max"}
    run = client.create_run(exp, run_name=f"{dataset}/{method}/{seed}")
    ms = [Metric(f"test/{metric}", value, 0, 0)]
    ms += [Metric(f"unit/{metric}", v, 0, step) for step, v in (units or {}).items()]
    client.log_batch(run.info.run_id, metrics=ms, tags=[RunTag(k, v) for k, v in tags.items()])
    client.set_terminated(run.info.run_id)


def _store(tmp_path, name: str = "s"):
    import logging

    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment(name)


def test_difference_test_hand_values():
    # all 6 differences positive: exact two-sided Wilcoxon p = 2 / 2**6
    r = paired.difference_test([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert r["test"] == "Wilcoxon" and r["p"] == pytest.approx(2 / 64)
    assert r["mean_diff"] == pytest.approx(0.35)
    half = sps.t.ppf(0.975, 5) * np.std([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], ddof=1) / math.sqrt(6)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.35 - half, 0.35 + half))
    # 3 units: a paired t-test (Wilcoxon could never reach 0.05)
    r = paired.difference_test([1.0, 2.0, 4.0])
    t = (7 / 3) / (np.std([1, 2, 4], ddof=1) / math.sqrt(3))
    assert r["test"] == "paired t" and r["p"] == pytest.approx(2 * sps.t.sf(t, 2))
    # exact and deterministic with ties: |d| ranks 1.5, 1.5, 3; W+ = 4.5 of the
    # 8 sign patterns' 0, 1.5, 1.5, 3, 3, 4.5, 4.5, 6: 6 as far from 3
    assert stats.signed_rank_p([1.0, -1.0, 2.0]) == 0.75
    rng = np.random.default_rng(3)
    for n in (7, 12, 30):  # untied: scipy's exact test
        d = rng.normal(0.4, 1.0, n)
        assert stats.signed_rank_p(d) == pytest.approx(sps.wilcoxon(d, method="exact").pvalue)
    # 20 pairs with tied magnitudes: the tie-corrected normal approximation
    d = np.round(rng.normal(0.4, 1.0, 20), 1)
    assert len(np.unique(np.abs(d))) < 20
    assert stats.signed_rank_p(d) == pytest.approx(
        sps.wilcoxon(d, method="approx", correction=False).pvalue)
    assert paired.difference_test([0.5])["note"] == "one unit: no test"
    assert paired.difference_test([0.0, 0.0, 0.0])["p"] == 1.0
    assert math.isnan(paired.difference_test([0.2, 0.2])["p"])


def test_elo_has_no_interval_on_one_independent_dataset():
    m = pd.DataFrame({"a": [0.9, 0.8, 0.5], "b": [0.8, 0.7, 0.6]}, index=["d1", "d2", "d3"])
    free = stats.elo(m, True)
    assert (free.elo_low < free.elo_high).all()
    # the same rows as conditions of one dataset: nothing to resample
    one = stats.elo(m, True, groups=["g", "g", "g"])
    assert one.elo.tolist() == free.elo.tolist() and one.elo_low.isna().all()
    assert stats.elo(m.iloc[:1], True).elo_high.isna().all()
    assert stats.elo(m, True, min_groups=4).elo_low.isna().all()  # the report asks for 6
    # every row its own group: the same bootstrap as no groups
    assert stats.elo(m, True, groups=["x", "y", "z"]).equals(free)
    # conditions are averaged into one row per independent dataset
    g = stats.group_means(m, ["g", "g", "h"])
    assert g.loc["g"].tolist() == pytest.approx([0.85, 0.75]) and list(g.index) == ["g", "h"]


def test_one_dataset_report_says_so_and_pairs_over_seeds(tmp_path):
    uri, client, exp = _store(tmp_path)
    for m, values in ONE.items():
        for s, v in enumerate(values):
            _log(client, exp, dataset="digits", method=m, seed=s, value=v)
    out = build_report(experiment="s", tracking_uri=uri, out=tmp_path / "r",
                       formats=["md", "csv"], metric="accuracy")
    md = (out / "index.md").read_text()
    board = pd.read_csv(out / "leaderboard.csv").set_index("method")
    # no bootstrap "interval" of zero width, on the page or in the CSV
    assert board.elo_low.isna().all() and board.elo_high.isna().all()
    assert not re.search(r"\[(\d+), \1\]", md)
    assert "**1 independent dataset(s)**" in md and "With 1 independent dataset" in md
    assert "## Paired over seeds" in md
    pairs = pd.read_csv(out / "paired_seeds.csv")
    rows = {(r.method, r.vs): r for r in pairs.itertuples()}
    # order by mean: a, c, b; c and b against a (best), b against c (next above)
    assert set(rows) == {("c", "a"), ("b", "a"), ("b", "c")}
    ba = rows[("b", "a")]
    assert (ba.n, ba.wins, ba.ties, ba.losses, ba.test) == (8, 0, 0, 8, "Wilcoxon")
    assert ba.mean_diff == pytest.approx(-0.0135)
    assert ba.p == pytest.approx(2 / 256)
    # Holm over the 3 rows: the two smallest p (2/256 each) times 3
    assert ba.p_holm == pytest.approx(3 * 2 / 256) and rows[("b", "c")].p_holm == ba.p_holm
    ca = rows[("c", "a")]
    assert (ca.wins, ca.losses) == (4, 4) and ca.p_holm > 0.05
    # |d| ties (0.002 twice, 0.003 twice): scipy's permutation test, exact at n = 8
    diff = np.array(ONE["c"]) - np.array(ONE["a"])
    assert ca.p == pytest.approx(sps.wilcoxon(diff, method="auto").pvalue)
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines()
             if line.startswith("| digits")]
    shown = {(c[1], c[2]): (c[4], c[-1]) for c in cells if len(c) == 10}
    assert shown[("c", "a (best)")] == ("4/0/4", "tied")
    assert shown[("b", "a (best)")] == ("0/0/8", "separated")
    # the end of `harness run` says the same in one line
    text = console_leaderboard("s", tracking_uri=uri, metric="accuracy")
    assert ("1 independent dataset(s): too few for tests over datasets; paired over seeds "
            "(Holm), 2 of 3 comparisons separated: b < a on digits, b < c on digits") in text
    assert "[–, –]" in text


COND = """\
name: cond
task: classification
seeds: 10
datasets:
  - {{bgmm: {{d: 2, n_samples: 400}}, train_size: 10, label: m10{c}}}
  - {{bgmm: {{d: 2, n_samples: 400}}, train_size: 20, label: m20{c}}}
  - {{bgmm: {{d: 2, n_samples: 400}}, train_size: 40, label: m40{c}}}
  - {{synthetic: {{n_samples: 200}}, label: other{o}}}
model: {{name: bgmm_mean, sigma: 0.6}}
training: {{epochs: 1, batch_size: 4096, optimizer: closed_form}}
methods:
  theta: {{augment: {{name: gaussian_nb, ratio: 0}}}}
sweep:
  theta: {{augment.ratio: [0, 1, 10]}}
metrics: [accuracy]
rank_by: accuracy
"""


def _cond_store(tmp_path, text: str):
    from harness.plan import expand_suite
    from harness.suite import load_suite

    path = tmp_path / "cond.yaml"
    path.write_text(text)
    uri, client, exp = _store(tmp_path, "cond")
    effect = {"theta[augment.ratio=0]": 0.0, "theta[augment.ratio=1]": 0.001,
              "theta[augment.ratio=10]": 0.02}
    for spec in expand_suite(load_suite(str(path))):
        rng = np.random.default_rng(spec.seed)
        value = 0.8 + effect[spec.method] + 0.01 * spec.seed + 0.001 * rng.standard_normal()
        _log(client, exp, dataset=spec.dataset_label, method=spec.method, seed=spec.seed,
             value=value, key=spec.run_key)
    return path, uri


def test_conditions_of_one_dataset_count_once(tmp_path):
    path, uri = _cond_store(tmp_path, COND.format(c="", o=""))
    out = build_report(str(path), tracking_uri=uri, out=tmp_path / "r", formats=["md", "csv"],
                       metric="accuracy")
    md = " ".join((out / "index.md").read_text().split())
    # inferred from the shared source: m10, m20, m40 are one dataset; `other` another
    assert "3 dataset entries are conditions of one dataset `" in md
    assert "(same source and parameters; `condition_of:` in the suite overrides): `m10`, " \
           "`m20`, `m40`" in md
    assert "**2 independent dataset(s)**" in md
    board = pd.read_csv(out / "leaderboard.csv")
    assert board.elo_low.isna().all() and "Counted as 2 independent dataset(s)" in md
    # Friedman sees 2 datasets, not 4 (with 3 methods it needs 3)
    assert "Friedman test skipped: needs at least 3 complete datasets for 3 methods" in md
    assert md.count("got 2") >= 2 and "got 4" not in md
    # every condition is still compared, paired over seeds (12 rows: a table, not folded)
    assert "**accuracy: methods compared paired on seeds**" in md.replace("test/", "")
    pairs = pd.read_csv(out / "paired_seeds.csv")
    assert sorted(set(pairs.dataset)) == ["m10", "m20", "m40", "other"]
    best = pairs[(pairs.relation == "best")]
    assert set(best.vs) == {"theta[augment.ratio=10]"}
    assert (best.p_holm < 0.05).all()  # 0.02 better on 10 of 10 seeds, everywhere

    # the same store read as an experiment: nothing says what a dataset is
    plain = build_report(experiment="cond", tracking_uri=uri, out=tmp_path / "e",
                         formats=["md"], metric="accuracy")
    text = " ".join((plain / "index.md").read_text().split())
    assert "conditions of one dataset" not in text and "**4 independent dataset(s)**" in text


def test_declared_conditions_and_their_errors(tmp_path):
    # condition_of groups entries of different sources, and overrides inference
    text = COND.format(c=", condition_of: pool", o=", condition_of: pool")
    path, uri = _cond_store(tmp_path, text)
    out = build_report(str(path), tracking_uri=uri, out=tmp_path / "r", formats=["md"])
    md = " ".join((out / "index.md").read_text().split())
    assert "4 dataset entries are conditions of one dataset `pool` (declared with " \
           "`condition_of:`)" in md
    assert "**1 independent dataset(s)**" in md
    # the run keys do not depend on condition_of: the same runs count
    assert "(120 of 120 runs: complete)" in md

    from harness.suite import load_suite

    bad = tmp_path / "bad.yaml"
    bad.write_text(COND.format(c=", condition_of: ''", o=""))
    with pytest.raises(ConfigError, match="condition_of") as err:
        load_suite(str(bad))
    assert "datasets[0].condition_of" in str(err.value) or "datasets.0.condition_of" in str(
        err.value)


def test_methods_paired_on_test_units(tmp_path):
    """Item 10: per-image values logged as unit/<metric>; seed spread hides a
    small per-image edge that pairing on images shows."""
    uri, client, exp = _store(tmp_path)
    rng = np.random.default_rng(0)
    images = list(range(10))
    difficulty = {i: 25 + 3 * rng.standard_normal() for i in images}
    for seed in range(3):
        test = [int(i) for i in np.random.default_rng(seed).choice(images, 7, replace=False)]
        shift = 1.5 * seed  # a different split per seed moves every method together
        for method in ("good", "plain", "twin"):
            # good: 0.1 + 0.01 i dB above plain on image i; twin: 0.001 i dB
            edge = {"good": 0.1, "plain": 0.0, "twin": 0.0}[method]
            step = {"good": 0.01, "plain": 0.0, "twin": 0.001}[method]
            units = {i: difficulty[i] + shift + edge + step * i for i in test}
            _log(client, exp, dataset="photos", method=method, seed=seed,
                 value=float(np.mean(list(units.values()))), units=units, metric="psnr")
    out = build_report(experiment="s", tracking_uri=uri, out=tmp_path / "r",
                       formats=["md", "csv"], metric="psnr")
    md = (out / "index.md").read_text()
    assert "## Paired on test units" in md and "`unit/psnr`" in md
    units = pd.read_csv(out / "paired_units.csv")
    rows = {(r.method, r.vs): r for r in units.itertuples()}
    seen = sorted({int(i) for s in range(3)
                   for i in np.random.default_rng(s).choice(images, 7, replace=False)})
    gp = rows[("plain", "good")]
    # every image: plain is 0.1 + 0.01 i dB below good; the unit is the image
    # (its seeds averaged), so n is the number of distinct test images
    assert gp.n == len(seen) and gp.losses == len(seen)
    assert gp.mean_diff == pytest.approx(-np.mean([0.1 + 0.01 * i for i in seen]))
    assert gp.test == "Wilcoxon" and gp.p == pytest.approx(2 / 2 ** len(seen))
    assert gp.p_holm < 0.05
    # the per-seed comparison (3 seeds) cannot separate them: only a t-test on 3 values
    seeds = pd.read_csv(out / "paired_seeds.csv")
    assert set(seeds.test.dropna()) <= {"paired t"}


DENOISE = """\
name: dn
task: denoising
seeds: [0, 1]
datasets:
  - photos: {size: 16}
    split: {val: 0.2, test: 0.4}
sensor: {name: simulated, size: 16, n_dark: 4, n_heldout: 2}
denoiser: {name: unet, width: 4, depth: 2}
ratios: [100, 250]
patch: 8
training: {epochs: 1, patches_per_epoch: 8, batch_size: 8}
methods:
  pg: {noise_model: poisson_gaussian}
  identity: {denoiser: identity}
metrics: [psnr, ssim]
rank_by: psnr
"""


@pytest.mark.slow
def test_denoising_logs_per_image_values_the_report_pairs(tmp_path):
    from mlflow import MlflowClient

    from harness.cli import main

    suite = tmp_path / "dn.yaml"
    suite.write_text(DENOISE)
    uri = f"sqlite:///{tmp_path / 'dn.db'}"
    assert main(["run", str(suite), "--tracking-uri", uri, "-q"]) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("dn").experiment_id
    ids = {}
    for run in client.search_runs([exp], "tags.`harness.status` = 'finished'"):
        m = run.data.metrics
        rid = run.info.run_id
        images = {}
        for key in ("unit/psnr", "unit/x100/psnr", "unit/x250/ssim"):
            hist = client.get_metric_history(rid, key)
            images[key] = {h.step: h.value for h in hist}
            # 4 of the 10 photos are test images; their values average to the metric
            assert len(hist) == 4
            assert np.mean(list(images[key].values())) == pytest.approx(
                m["test/" + key.split("/", 1)[1]])
        # per image, unit/psnr is the mean over the ratios
        for step, v in images["unit/psnr"].items():
            x250 = {h.step: h.value for h in client.get_metric_history(rid, "unit/x250/psnr")}
            assert v == pytest.approx((images["unit/x100/psnr"][step] + x250[step]) / 2)
        ids.setdefault(run.data.tags["harness.seed"], []).append(sorted(images["unit/psnr"]))
    # one seed, one split: both methods were tested on the same images (ids 0-9)
    for lists in ids.values():
        assert len(lists) == 2 and lists[0] == lists[1] and set(lists[0]) <= set(range(10))
    out = build_report(str(suite), tracking_uri=uri, out=tmp_path / "r", formats=["md", "csv"])
    units = pd.read_csv(out / "paired_units.csv")
    assert {(r.method, r.vs) for r in units.itertuples()} in ({("identity", "pg")},
                                                              {("pg", "identity")})
    assert units.n.iloc[0] == len({i for lists in ids.values() for i in lists[0]})


def test_a_long_paired_table_folds():
    from harness.report import render, tables

    t = tables.Table("paired_seeds", "t", ["a"], [["x"]] * (render.PAIRED_ROWS + 1))
    assert render._fold(t)[0] == "details" and "31 comparisons; also in paired_seeds.csv" in \
        render._fold(t)[1]
    t.rows = t.rows[:render.PAIRED_ROWS]
    assert render._fold(t) == ("table", t)


def test_a_difference_equal_up_to_rounding_on_every_seed_is_not_tested():
    """One test sample in 57 on each of 3 seeds: the differences agree but for
    float rounding, and a paired t-test divided by that rounding (p 4e-30,
    'separated'); no test of a spread that is not there."""
    a = np.array([55 / 57 * 0.9849, 54 / 57, 56 / 57])
    d = a - (a + 1 / 57)
    assert not np.all(d == d[0])  # the rounding the test is about
    out = paired.difference_test(d)
    assert out["test"] == "" and math.isnan(out["p"])
    assert out["note"].startswith("the same difference on every unit")
    # a real spread still gets its t-test
    assert paired.difference_test(d + [0.0, 0.001, -0.002])["test"] == "paired t"
