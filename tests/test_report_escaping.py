"""Names in a shared MLflow store are written by anyone: a method, dataset
or experiment name holding HTML or LaTeX markup comes out escaped in every
report format, and a store written by another harness version (unknown
tags, missing metrics, odd tag values) is reported without a traceback."""

from __future__ import annotations

import csv
import html
import re

import pytest

pytest.importorskip("mlflow")

from harness.report import build_report  # noqa: E402

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
TEX = r"a_b&c%d$e#f{g}h~i^j\k"
PIPE = "x|y **z**"
METHODS = {"plain": [0.60, 0.61, 0.62], IMG: [0.70, 0.71, 0.72], TEX: [0.80, 0.81, 0.82],
           PIPE: [0.50, 0.52, 0.54]}
DATASETS = [SCRIPT, "d_1 & 50%", "ok"]


def log_run(client, exp_id, *, dataset, method, seed, acc, suite, extra_tags=None,
            metrics=True, status="finished"):
    """One run tagged the way the runner tags it (plus ``extra_tags``)."""
    from mlflow.entities import Metric, RunTag

    tags = {"harness.suite": suite, "harness.run_key": f"{suite}|{dataset}|{method}|{seed}",
            "harness.dataset": dataset, "harness.method": method, "harness.seed": str(seed),
            "harness.task": "classification", "harness.status": status,
            "harness.direction.accuracy": "max", **(extra_tags or {})}
    run = client.create_run(exp_id, run_name=f"{dataset}/{method}")
    ms = [Metric("val/accuracy", acc * (0.7 + 0.1 * e), 0, e) for e in range(3)]
    if metrics:
        ms += [Metric("test/accuracy", acc, 0, 0), Metric("time/train_s", 1.0, 0, 0)]
    client.log_batch(run.info.run_id, metrics=ms,
                     tags=[RunTag(k, v) for k, v in tags.items()])
    client.set_terminated(run.info.run_id, "FINISHED" if status == "finished" else "FAILED")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import logging

    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("hostile")
    for d_index, dataset in enumerate(DATASETS):
        for method, accs in METHODS.items():
            for seed, acc in enumerate(accs):
                log_run(client, exp, dataset=dataset, method=method, seed=seed,
                        acc=acc - 0.01 * d_index, suite="hostile")
    # a failed run whose error text holds markup too
    log_run(client, exp, dataset="ok", method=IMG, seed=9, acc=0.1, suite="hostile",
            status="failed", extra_tags={"harness.error": f"RuntimeError: {SCRIPT} {TEX}"})
    other = client.create_experiment("other-version")
    for dataset in ("d1", "d2", "d3"):
        for method, accs in (("a", [0.5, 0.6, 0.7]), ("b", [0.6, 0.7, 0.8])):
            for seed, acc in enumerate(accs):
                log_run(client, other, dataset=dataset, method=method, seed=seed, acc=acc,
                        suite="other-version",
                        extra_tags={"harness.shiny_new_tag": "x", "harness.schema": "99",
                                    "harness.direction.future_metric": "sideways"})
    # what another version may leave: a finished run without the ranked metric,
    # a status this version does not know, a seed that is not a number, a
    # run without a seed tag, a metric this version never logs
    log_run(client, other, dataset="d1", method="c", seed=0, acc=0.9, suite="other-version",
            metrics=False)
    log_run(client, other, dataset="d2", method="c", seed=0, acc=0.9, suite="other-version",
            status="paused")
    log_run(client, other, dataset="d3", method="c", seed="s1", acc=0.9, suite="other-version")
    run = client.create_run(other, tags={"harness.suite": "other-version",
                                         "harness.dataset": "d1", "harness.method": "d",
                                         "harness.status": "finished"})
    client.log_metric(run.info.run_id, "test/accuracy", 0.4)
    client.log_metric(run.info.run_id, "test/future_metric", 1.0)
    client.set_terminated(run.info.run_id)
    return uri


@pytest.fixture(scope="module")
def hostile(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "hostile"
    return build_report(experiment="hostile", tracking_uri=store, out=out, metric="accuracy",
                        baseline="plain")


def test_html_holds_no_markup_from_the_store(hostile):
    text = (hostile / "index.html").read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert not re.search(r"<[^>]*onerror", text)
    assert html.escape(SCRIPT, quote=False) in text
    assert html.escape(IMG, quote=False) in text
    # every tag left in the page is one the report writes itself
    tags = set(re.findall(r"</?([a-zA-Z][a-zA-Z0-9]*)", text))
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p",
                    "ul", "li", "table", "thead", "tbody", "tr", "th", "td", "b", "code",
                    "div", "details", "summary", "figure", "figcaption", "img", "em", "i",
                    "br", "span", "a", "strong", "small", "sup", "sub"}, tags


def test_latex_escapes_every_special_character(hostile):
    text = (hostile / "leaderboard.tex").read_text(encoding="utf-8")
    assert r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i\^{}j\textbackslash{}k" in text
    assert r"d\_1 \& 50\%" in text
    assert r"\ensuremath{<}script\ensuremath{>}" in text
    assert TEX not in text and SCRIPT not in text
    # every row keeps its columns: no '&' from a name splits a cell
    for table in re.findall(r"\\begin\{tabular\}\{(l+)\}(.*?)\\end\{tabular\}", text, re.S):
        columns, body = len(table[0]), table[1]
        rows = [r for r in body.split("\\\\") if "&" in r]
        assert rows
        for row in rows:
            assert len(re.findall(r"(?<!\\)&", row)) == columns - 1, row


def test_markdown_tables_keep_their_columns(hostile):
    """A ``|`` in a name is escaped in table rows (``x\\|y``)."""
    text = (hostile / "index.md").read_text(encoding="utf-8")
    assert r"| x\|y **z**" in text


def test_markdown_table_headers_keep_their_columns(hostile):
    text = (hostile / "index.md").read_text(encoding="utf-8")
    for block in re.split(r"\n\s*\n", text):
        rows = [ln for ln in block.splitlines() if ln.startswith("|")]
        if rows:
            widths = {len(re.split(r"(?<!\\)\|", r)) for r in rows}
            assert len(widths) == 1, rows


def test_markdown_holds_no_live_html(hostile):
    text = (hostile / "index.md").read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert not re.search(r"<img[^>]*onerror", text)


def test_csv_round_trips_the_names(hostile):
    with open(hostile / "leaderboard.csv", newline="", encoding="utf-8") as f:
        methods = {row["method"] for row in csv.DictReader(f)}
    assert methods == set(METHODS)


def test_report_of_another_versions_store_has_no_traceback(store, tmp_path):
    path = build_report(experiment="other-version", tracking_uri=store, out=tmp_path / "o",
                        metric="accuracy")
    md = (path / "index.md").read_text(encoding="utf-8")
    assert "| a " in md and "| b " in md
    assert {p.name for p in path.iterdir()} >= {"index.md", "index.html", "leaderboard.tex",
                                                 "leaderboard.csv"}
