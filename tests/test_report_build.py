"""End-to-end: a small MLflow store with known numbers -> build_report files.

One module-scoped sqlite store (MLflow's schema setup costs seconds) holds
suite ``toy``: 5 datasets x 3 methods x 3 seeds, with failed / timeout / oom
/ diverged runs, a (dataset, method) cell whose runs all failed, a run key
logged three times and a run without harness tags.
"""

from __future__ import annotations

import math
import re

import pytest

pytest.importorskip("mlflow")

import pandas as pd  # noqa: E402

from harness.errors import UserError  # noqa: E402
from harness.report import build_report, console_leaderboard  # noqa: E402

# dataset -> method -> accuracy per seed (3 seeds); d3 ties baseline and focal.
TOY = {
    "d1": {"baseline": [0.80, 0.82, 0.84], "focal": [0.85, 0.86, 0.87],
           "anyloss": [0.90, 0.90, 0.93]},
    "d2": {"baseline": [0.69, 0.70, 0.71], "focal": [0.74, 0.75, 0.76],
           "anyloss": [0.71, 0.72, 0.73]},
    "d3": {"baseline": [0.59, 0.60, 0.61], "focal": [0.58, 0.60, 0.62],
           "anyloss": [0.64, 0.65, 0.66]},
    "d4": {"baseline": [0.89, 0.90, 0.91], "focal": [0.87, 0.88, 0.89]},
    "d5": {"baseline": [0.49, 0.50, 0.51], "focal": [0.54, 0.55, 0.56],
           "anyloss": [0.57, 0.58, 0.59]},
}
COST = {"baseline": 1.0, "focal": 2.0, "anyloss": 5.0}


def log_run(client, exp_id, *, dataset, method, seed, status="finished", acc=None, key=None,
            start=0, tags=True, suite="toy", epochs=4):
    """Log one run the way the runner does (tags, history, final metrics)."""
    from mlflow.entities import Metric, RunTag

    t = {"harness.suite": suite, "harness.run_key": key or f"{suite}-{dataset}-{method}-{seed}",
         "harness.dataset": dataset, "harness.method": method, "harness.seed": str(seed),
         "harness.task": "classification", "harness.status": status,
         "harness.host": "node-b" if dataset == "d2" else "node-a",
         "harness.version": "0.1.0", "harness.git_commit": "abc123", "harness.torch": "2.13.0",
         # metric directions, as the worker logs them with every run
         "harness.direction.accuracy": "max", "harness.direction.log_loss": "min",
         } if tags else {}
    if status != "finished":
        t["harness.error"] = f"RuntimeError: {status} in {dataset}/{method}"
    run = client.create_run(exp_id, start_time=1_000_000 + start, run_name=f"{dataset}/{method}")
    ms = [Metric("val/accuracy", (acc or 0.5) * (0.6 + 0.1 * e), 0, e) for e in range(epochs)]
    ms += [Metric("train/loss", 1.0 / (e + 1), 0, e) for e in range(epochs)]
    if status == "finished":
        ms += [Metric("test/accuracy", acc, 0, 0), Metric("test/log_loss", 1 - acc, 0, 0),
               Metric("time/train_s", COST.get(method, 1.0), 0, 0)]
    client.log_batch(run.info.run_id, metrics=ms, tags=[RunTag(k, v) for k, v in t.items()])
    client.set_terminated(run.info.run_id, "FINISHED" if status == "finished" else "FAILED")
    return run.info.run_id


def make_toy(uri: str) -> None:
    """The known store described in the module docstring."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.create_experiment("toy")
    n = 0
    for d, methods in TOY.items():
        for m, accs in methods.items():
            for s, a in enumerate(accs):
                # d5/baseline/0 is logged three times under one run key: an older
                # finished run (0.10), this one (kept) and a newer failed one.
                key = "dup-key" if (d, m, s) == ("d5", "baseline", 0) else None
                log_run(client, exp, dataset=d, method=m, seed=s, acc=a, key=key, start=n)
                n += 1
    for s in range(3):
        log_run(client, exp, dataset="d4", method="anyloss", seed=s, status="failed", start=n)
    log_run(client, exp, dataset="d1", method="focal", seed=3, status="diverged", start=n)
    log_run(client, exp, dataset="d2", method="baseline", seed=3, status="timeout", start=n)
    log_run(client, exp, dataset="d3", method="anyloss", seed=3, status="oom", start=n)
    log_run(client, exp, dataset="d5", method="baseline", seed=0, acc=0.10, key="dup-key",
            start=-5)
    log_run(client, exp, dataset="d5", method="baseline", seed=0, status="failed",
            key="dup-key", start=10_000)
    log_run(client, exp, dataset="d1", method="stray", seed=0, acc=0.5, tags=False)
    # what `harness run` logs after a suite: a report holder, not a result
    suite_run = client.create_run(exp, run_name="toy (suite)",
                                  tags={"harness.kind": "suite", "harness.suite": "toy",
                                        "harness.rank_by": "accuracy"})
    client.set_terminated(suite_run.info.run_id)
    # A second suite for --compare: shares d1, d2 and d3; has its own `focal`.
    other = client.create_experiment("other")
    for d in ("d1", "d2", "d3", "d9"):
        for s in range(3):
            log_run(client, other, dataset=d, method="focal", seed=s, acc=0.99, suite="other")
            log_run(client, other, dataset=d, method="ldr", seed=s, acc=0.3, suite="other")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    make_toy(uri)
    return uri


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "toy"
    path = build_report(experiment="toy", tracking_uri=store, out=out, baseline="baseline")
    return path


def test_all_formats_and_plots_written(report):
    names = {p.name for p in report.iterdir()}
    assert {"index.md", "index.html", "leaderboard.tex", "leaderboard.csv"} <= names
    assert {"cd_diagram.png", "seeds.png", "rank_heatmap.png", "curves.png",
            "pareto.png"} <= names
    html = (report / "index.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html
    assert "<script" not in html and 'src="cd_diagram.png"' not in html
    tex = (report / "leaderboard.tex").read_text()
    assert "\\toprule" in tex and "\\textbf{" in tex and "$\\pm$" in tex


def test_leaderboard_csv(report):
    df = pd.read_csv(report / "leaderboard.csv")
    assert list(df.columns) == ["method", "avg_rank", "win_rate", "normalized_score", "elo",
                                "elo_low", "elo_high", "wins", "ties", "losses", "train_s",
                                "n_datasets"]
    b = df.set_index("method")
    assert list(b.index) == ["anyloss", "focal", "baseline"]
    # Hand values: see tests/test_report_stats.py::test_toy_hand_values for the derivation.
    assert b.avg_rank.to_dict() == pytest.approx({"anyloss": 1.25, "focal": 1.875,
                                                  "baseline": 2.875})
    assert b.win_rate.to_dict() == pytest.approx({"anyloss": 7 / 8, "focal": 4.5 / 9,
                                                  "baseline": 1.5 / 9})
    assert b.normalized_score["anyloss"] == pytest.approx((1 + 0.4 + 1 + 1) / 4)
    assert b.normalized_score["focal"] == pytest.approx((0.04 / 0.09 + 1 + 0 + 0.625) / 4)
    assert b.normalized_score["baseline"] == 0
    assert (b.loc["focal", ["wins", "ties", "losses"]].tolist()) == [3, 1, 1]
    assert (b.loc["anyloss", ["wins", "ties", "losses"]].tolist()) == [4, 0, 0]
    assert b.loc["baseline", ["wins", "ties", "losses"]].isna().all()
    assert b.n_datasets.to_dict() == {"anyloss": 4, "focal": 5, "baseline": 5}
    # time next to the score: every run of a method logged its COST as time/train_s
    assert b.train_s.to_dict() == pytest.approx(COST)
    # 5 datasets: too few independent ones for a bootstrap interval (needs 6)
    assert b.elo_low.isna().all() and b.elo_high.isna().all()
    assert b.elo.mean() == pytest.approx(1000)
    assert b.elo["anyloss"] > b.elo["focal"] > b.elo["baseline"]


def test_failures_missing_cells_and_duplicates_are_stated(report):
    md = (report / "index.md").read_text()
    # 52 runs logged for `toy`: 48 used + 1 untagged + 1 suite-level + 2 superseded duplicates
    assert "Read **52** runs from MLflow; **48** used" in md
    assert "1 suite-level run(s) in `toy` (tag harness.kind=suite)" in md
    assert "42 finished, 1 diverged, 3 failed, 1 timeout, 1 oom." in md
    # a missing cell says why: its runs' states, in `harness status`'s words
    assert "d4: anyloss (3 failed)" in md and "missing (3 failed)" in md
    # an experiment has no plan: every run counts, and the report says so
    assert "Report of MLflow experiment `toy`: every run in it counts" in md
    assert "`d4` (missing anyloss)" in md
    assert "1 run(s) in `toy` have no harness.dataset/harness.method tags" in md
    assert "`dup-key` (3 runs" in md
    assert "RuntimeError: oom in d3/anyloss" in md
    # where the runs came from, so runs of different machines are told apart
    produced = next(ln for ln in md.splitlines() if ln.startswith("- Produced by: "))
    assert "on `node-a` (harness 0.1.0, commit abc123, torch 2.13.0, CPU)" in produced
    assert "on `node-b` (" in produced
    # d5 baseline uses the latest *finished* duplicate (0.49), not the older 0.10
    assert "| d5 " in md and "0.5000 ± 0.010 (3)" in md


def test_markdown_statistics_sections(report):
    from scipy import stats as sps

    from harness.report.analysis import fmt_num

    md = (report / "index.md").read_text()
    means = {m: [sum(TOY[d][m]) / 3 for d in ("d1", "d2", "d3", "d5")]
             for m in ("anyloss", "focal", "baseline")}
    fr = sps.friedmanchisquare(*means.values())
    assert (f"Friedman test over 4 complete datasets and 3 methods: "
            f"chi² = {fmt_num(fr.statistic)}, p = {fmt_num(fr.pvalue, 3)}") in md
    # 5 datasets at most per pair: a two-sided Wilcoxon cannot reach p < 0.05 (1/16)
    assert ("Pairwise Wilcoxon tests skipped: a pair needs at least 6 shared datasets to "
            "reach p < 0.05; the most any pair shares is 5.") in md
    assert "| anyloss | baseline |" not in re.sub(" +", " ", md)
    assert "CD = 1.657" in md  # 2.343 * sqrt(3 * 4 / (6 * 4))
    assert "**0.9100 ± 0.017 (3)**" in md  # best of d1 in bold
    assert "![Critical difference diagram](cd_diagram.png)" in md


def test_metric_direction_and_errors(store, tmp_path):
    out = build_report(experiment="toy", metric="log_loss", tracking_uri=store,
                       out=tmp_path / "r", formats=["md", "csv"])
    # 5 datasets are too few for a Wilcoxon test over datasets: paired over seeds too
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".png") == [
        "failures.csv", "index.md", "leaderboard.csv", "paired_seeds.csv"]
    md = (out / "index.md").read_text()
    assert "Metric `test/log_loss` (lower is better)" in md
    df = pd.read_csv(out / "leaderboard.csv")
    assert list(df.method) == ["anyloss", "focal", "baseline"]  # same order, lower is better
    with pytest.raises(UserError, match="missing.yaml"):
        build_report(str(tmp_path / "missing.yaml"), tracking_uri=store)
    with pytest.raises(UserError, match="no MLflow experiment named 'nope'"):
        build_report(experiment="nope", tracking_uri=store, out=tmp_path / "x")
    with pytest.raises(UserError, match="baseline method 'ce' not found"):
        build_report(experiment="toy", tracking_uri=store, out=tmp_path / "x", baseline="ce")
    with pytest.raises(UserError, match="unknown report format"):
        build_report(experiment="toy", tracking_uri=store, formats=["pdf"])


def test_compare_adds_methods_on_shared_datasets(store, tmp_path):
    out = build_report(experiment="toy", tracking_uri=store, out=tmp_path / "c",
                       compare=["other"], formats=["md", "csv"])
    df = pd.read_csv(out / "leaderboard.csv").set_index("method")
    assert set(df.index) == {"anyloss", "focal", "baseline", "other:focal", "ldr"}
    assert df.loc["other:focal", "n_datasets"] == 3
    md = (out / "index.md").read_text()
    assert "d9" in md and "not in `toy` were left out" in md
    assert "`d4` (missing anyloss, ldr, other:focal); `d5` (missing ldr, other:focal)" in md


def test_console_leaderboard(store):
    """What `harness run` ends with: the ranked leaderboard above the
    per-dataset table, each table in one number format."""
    text = console_leaderboard("toy", tracking_uri=store)
    lines = text.splitlines()
    assert lines[0] == "test/accuracy (higher is better) over finished runs"
    board = lines.index(next(ln for ln in lines if ln.startswith("leaderboard:")))
    per_dataset = lines.index("per dataset: mean ± std (seeds)")
    assert board < per_dataset
    assert lines[board + 1].split() == ["#", "method", "avg", "rank", "win", "rate", "Elo",
                                        "[95%", "CI]", "datasets"]
    # hand values of tests/test_report_stats.py::test_toy_hand_values
    rows = [ln.split()[:4] for ln in lines[board + 3:board + 6]]
    assert rows == [["1", "anyloss", "1.25", "0.875"], ["2", "focal", "1.88", "0.500"],
                    ["3", "baseline", "2.88", "0.167"]]
    assert lines[per_dataset + 1].split() == ["dataset", "anyloss", "focal", "baseline"]
    # one format: every mean and std with 4 decimals (0.0173, not 0.017)
    assert "0.9100 ± 0.0173 (3)" in text and "missing" in text
    assert "test/log_loss (lower is better)" in console_leaderboard(
        "toy", tracking_uri=store, metric="log_loss")
    with pytest.raises(UserError, match="no run logged test/f2"):
        console_leaderboard("toy", tracking_uri=store, metric="f2")


def test_console_leaderboard_counts_only_the_planned_run_keys(store):
    """The end of `harness run`: the plan's run keys count, the others are
    one line, and the first line says how complete the plan is."""
    keys = [f"toy-{d}-{m}-{s}" for d in ("d1", "d2") for m in ("baseline", "focal")
            for s in range(3)]
    keys += ["toy-d1-anyloss-0", "never-ran-1", "never-ran-2"]
    text = console_leaderboard("toy", tracking_uri=store, run_keys=keys)
    lines = text.splitlines()
    # 13 of the 15 keys have a finished run; two never ran
    assert lines[0] == ("test/accuracy (higher is better) over finished runs; "
                        "13 of 15 runs: partial (13 done, 2 pending)")
    # 48 kept runs in `toy`, 13 of them planned
    assert lines[1] == ("35 run(s) of earlier configurations ignored; "
                        "`harness report --include-stale` shows them")
    per_dataset = lines.index("per dataset: mean ± std (seeds)")
    # ranked on d1, the one dataset with all three: anyloss 0.90 > focal 0.86 > baseline 0.82
    assert lines[per_dataset + 1].split() == ["dataset", "anyloss", "focal", "baseline"]
    assert [ln.split()[0] for ln in lines[per_dataset + 3:]][:2] == ["d1", "d2"]
    assert "d3" not in text and "d5" not in text
    # anyloss on d1: one planned seed, so one result
    assert "0.9000 (1)" in text


def test_a_report_needs_a_metric_and_says_which(tmp_path):
    """No suite rank_by, no logged rank_by, no --metric: no classification
    default, but an error naming what to pass."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    uri = f"sqlite:///{tmp_path / 'norank.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("norank")
    run = client.create_run(exp)
    tags = {"harness.dataset": "a", "harness.method": "x", "harness.seed": "0",
            "harness.status": "finished", "harness.run_key": "k"}
    client.log_batch(run.info.run_id, metrics=[Metric("test/mse", 0.5, 0, 0)],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    with pytest.raises(UserError, match=r"pass --metric .*one of: test/mse$"):
        build_report(experiment="norank", tracking_uri=uri, out=tmp_path / "r")
    with pytest.raises(UserError, match=r"pass --metric .*one of: test/mse$"):
        console_leaderboard("norank", tracking_uri=uri)
    assert "test/mse" in console_leaderboard("norank", tracking_uri=uri, metric="mse")


def test_no_history_and_no_time_skips_plots(tmp_path):
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    uri = f"sqlite:///{tmp_path / 'bare.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("bare")
    for d in ("a", "b"):
        for m, v in (("x", 0.1), ("y", 0.2)):
            run = client.create_run(exp)
            tags = {"harness.dataset": d, "harness.method": m, "harness.seed": "0",
                    "harness.status": "finished", "harness.run_key": f"{d}{m}"}
            client.log_batch(run.info.run_id, metrics=[Metric("test/accuracy", v, 0, 0)],
                             tags=[RunTag(k, x) for k, x in tags.items()])
    out = build_report(experiment="bare", tracking_uri=uri, out=tmp_path / "r",
                       metric="accuracy")
    md = (out / "index.md").read_text()
    assert "Learning curves (val/accuracy): not drawn (no run logged a val/accuracy" in md
    assert "not drawn (no run logged time/train_s)" in md
    assert "Friedman test skipped: needs at least 3 methods, got 2" in md
    assert not math.isnan(pd.read_csv(out / "leaderboard.csv").avg_rank[0])


def test_history_bulk_and_public_paths_agree(store):
    from mlflow import MlflowClient

    from harness.report import load

    ids = list(load.load_runs("toy", store).runs.run_id[:6])
    client = MlflowClient(store)
    bulk = load._bulk_histories(client._tracking_client.store, ids, "val/accuracy", batch=4)
    public = load._per_run_histories(client, ids, "val/accuracy", max_workers=2)
    assert bulk == public and len(bulk) == 6 and len(bulk[ids[0]]) == 4
    assert [s for s, _ in bulk[ids[0]]] == [0, 1, 2, 3]
    assert load.load_histories(ids[:2], "val/nothing", store) == {}


def test_unknown_metric_is_a_user_error(store, tmp_path):
    with pytest.raises(UserError, match=r"no run logged test/f2; logged: test/accuracy, "
                                        r"test/log_loss, time/train_s"):
        build_report(experiment="toy", tracking_uri=store, metric="f2", out=tmp_path)
    # a near miss is named
    with pytest.raises(UserError, match=r"no run logged test/acc \(did you mean "
                                        r"'test/accuracy'\?\)"):
        build_report(experiment="toy", tracking_uri=store, metric="test/acc", out=tmp_path)


def test_no_layout_warning_from_any_plot(store, tmp_path):
    import warnings

    from harness.report import plots

    # sweep-point labels on one dataset: the heatmap's fixed height could not
    # hold them ("Tight layout not applied. The bottom and top margins ...")
    ranks = pd.DataFrame([[1.0, 2.0, 3.0]], index=["wine"],
                         columns=["ce", "focal[loss.gamma=2.0]",
                                  "label-smoothing[loss.label_smoothing=0.1]"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.rank_heatmap(ranks, tmp_path / "heat.png")
        plots.pareto_scatter(pd.Series({"ce": 1.0, "focal[loss.gamma=2.0]": 2.0}),
                             pd.Series({"ce": 0.8, "focal[loss.gamma=2.0]": 0.9}), True,
                             "acc", {"ce": "red", "focal[loss.gamma=2.0]": "blue"},
                             tmp_path / "pareto.png")
        out = build_report(experiment="toy", tracking_uri=store, out=tmp_path / "w",
                           formats=["md"])
    assert (out / "rank_heatmap.png").is_file() and (out / "pareto.png").is_file()
    assert not [str(w.message) for w in caught if "layout" in str(w.message).lower()]


def test_pareto_front_uses_the_median_time_and_its_legend_shows_what_is_drawn(tmp_path,
                                                                              monkeypatch):
    from harness.report import plots
    from harness.report.figures import median_train_time

    # b is slower than a on one seed only (a busy machine): by the median it
    # is faster than a and better, so a is not on the front
    scored = pd.DataFrame({
        "dataset": ["d"] * 6, "method": ["a"] * 3 + ["b"] * 3,
        "time/train_s": [2.0, 2.0, 2.0, 1.0, 1.0, 90.0]})
    t = median_train_time(scored, ["d"])
    assert t.to_dict() == {"a": 2.0, "b": 1.0}
    score = pd.Series({"a": 0.8, "b": 0.9})
    assert plots.pareto_front(t, score, greater=True) == ["b"]
    # the mean would have put a on the front
    mean = scored.groupby("method")["time/train_s"].mean()
    assert plots.pareto_front(mean, score, greater=True) == ["a", "b"]

    drawn = {}

    def save(fig, path, tight=True):
        ax = fig.axes[0]
        legend = ax.get_legend()
        drawn.update(lines=[ln for ln in ax.get_lines() if ln.get_linestyle() == "--"],
                     legend=[t.get_text() for t in legend.get_texts()],
                     handle=legend.legend_handles[0].get_linestyle())
        return path

    monkeypatch.setattr(plots, "_save", save)
    colors = {"a": "red", "b": "blue"}
    plots.pareto_scatter(t, score, True, "acc", colors, tmp_path / "p.png")
    # a front of one method: its ring, and no line in the legend as none is drawn
    assert drawn["legend"] == ["Pareto front (1 of 2)"] and drawn["lines"] == []
    assert drawn["handle"] == "None"
    plots.pareto_scatter(pd.Series({"a": 1.0, "b": 2.0}), score, True, "acc", colors,
                         tmp_path / "p.png")
    assert drawn["legend"] == ["Pareto front (2 of 2)"] and len(drawn["lines"]) == 1
    assert drawn["handle"] == "--"


def test_a_dead_process_run_is_interrupted_as_in_status(tmp_path):
    """A run left RUNNING by a process that is gone reads `interrupted` (with
    the error `harness status` shows); a live one stays `running`."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from mlflow import MlflowClient

    from harness.report import load
    from harness.status import DIED

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    uri = f"sqlite:///{tmp_path / 'live.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("live")
    for key, pid in (("dead", proc.pid), ("alive", os.getpid())):
        client.create_run(exp, tags={
            "harness.dataset": "d", "harness.method": key, "harness.seed": "0",
            "harness.run_key": key, "harness.status": "running",
            "harness.pid": f"{socket.gethostname()}:{pid}",
            "harness.heartbeat": str(time.time())})
    runs = load.load_runs("live", uri).runs.set_index("run_key")
    assert runs.loc["dead", "status"] == "interrupted" and runs.loc["dead", "error"] == DIED
    assert runs.loc["alive", "status"] == "running"


def test_other_metrics_are_shown_and_a_signed_one_is_never_ranked(store, tmp_path):
    """A report ranks by one metric and shows the suite's others per dataset:
    a directed one with its best in bold, a signed bias (tag ``none``)
    unmarked; ranking by the bias is refused by name."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    client = MlflowClient(store)
    exp = client.create_experiment("signed")
    # method -> (accuracy, bias) per seed: a's bias is -0.3 (worse than b's +0.1)
    values = {"a": [(0.9, -0.3), (0.8, -0.3)], "b": [(0.7, 0.1), (0.6, 0.1)]}
    for method, pairs in values.items():
        for seed, (acc, bias) in enumerate(pairs):
            tags = {"harness.suite": "signed", "harness.run_key": f"s-{method}-{seed}",
                    "harness.dataset": "d", "harness.method": method,
                    "harness.seed": str(seed), "harness.status": "finished",
                    "harness.direction.accuracy": "max", "harness.direction.bias": "none",
                    "harness.direction.log_loss": "min"}
            run = client.create_run(exp)
            client.log_batch(run.info.run_id, metrics=[
                Metric("test/accuracy", acc, 0, 0), Metric("test/bias", bias, 0, 0),
                Metric("test/log_loss", 1 - acc, 0, 0)],
                tags=[RunTag(k, v) for k, v in tags.items()])
            client.set_terminated(run.info.run_id)
    out = build_report(experiment="signed", metric="accuracy", tracking_uri=store,
                       out=tmp_path / "r", formats=["md"])
    md = (out / "index.md").read_text()
    other = md.split("## Other metrics", 1)[1]
    assert "test/bias per dataset (no direction: shown, not ranked)" in other
    assert "test/log_loss per dataset (lower is better)" in other
    bias_table = other.split("test/bias per dataset", 1)[1].split("*Mean", 1)[0]
    row = [ln for ln in bias_table.splitlines() if ln.startswith("| d ")]
    assert row and "-0.3000 ± 0.0 (2)" in row[0] and "**" not in row[0]  # nothing marked best
    assert "**0.1500 ± 0.071 (2)**" in other  # a's log loss: the lower one, in bold
    assert "test/accuracy per dataset (" not in other  # the ranked metric is not repeated
    with pytest.raises(UserError, match="test/bias has no direction"):
        build_report(experiment="signed", metric="bias", tracking_uri=store,
                     out=tmp_path / "b", formats=["md"])


def test_curves_fall_back_to_a_loss_when_the_ranked_metric_has_no_history(tmp_path):
    """A test-time metric (a probe's accuracy) has no val/ history: the
    learning curves show the runs' train/loss instead, and say so."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    uri = f"sqlite:///{tmp_path / 'probe.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("probe")
    for m, v in (("x", 0.1), ("y", 0.2)):
        run = client.create_run(exp)
        tags = {"harness.dataset": "d", "harness.method": m, "harness.seed": "0",
                "harness.status": "finished", "harness.run_key": m}
        history = [Metric("train/loss", 1.0 / (e + 1), 0, e) for e in range(3)]
        client.log_batch(run.info.run_id, metrics=[Metric("test/probe_accuracy", v, 0, 0),
                                                   *history],
                         tags=[RunTag(k, x) for k, x in tags.items()])
    out = build_report(experiment="probe", tracking_uri=uri, out=tmp_path / "r",
                       metric="probe_accuracy", formats=["md"])
    md = (out / "index.md").read_text()
    assert "![Learning curves (train/loss)](curves.png)" in md
    assert "no run logged val/probe_accuracy per epoch, so train/loss is shown" in md
    assert (out / "curves.png").stat().st_size > 0


def test_report_without_a_suite_or_experiment_says_what_to_pass(capsys):
    from harness.cli import main

    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: harness report needs a suite file") and "--experiment" in err
