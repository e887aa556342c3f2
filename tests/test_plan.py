"""Planning: run keys are stable, seeds are per axis, sweeps expand."""

from __future__ import annotations

import pytest

from harness.plan import derive_seed, expand_suite
from harness.suite import load_suite

SUITE = """\
name: p
seeds: [0, 1]
datasets:
{datasets}
model: {{name: mlp, hidden: [8]}}
training: {{epochs: 1, optimizer: adam}}
methods:
{methods}
metrics: [accuracy]
task: classification
{sweep}"""
DS = ["  - sklearn: iris", "  - sklearn: wine"]
METHODS = ["  ce: {loss: cross_entropy}", "  focal: {loss: focal}"]


def runs(tmp_path, datasets, methods):
    f = tmp_path / "s.yaml"
    sweep = "sweep:\n  focal: {loss.gamma: [1.0, 2.0]}\n" if "  focal: {loss: focal}" in methods \
        else ""
    f.write_text(SUITE.format(datasets="\n".join(datasets), methods="\n".join(methods),
                              sweep=sweep))
    return {r.run_name: r for r in expand_suite(load_suite(f))}


def test_expansion_count_and_sweep_labels(tmp_path):
    r = runs(tmp_path, DS, METHODS)
    # 2 datasets x (ce + 2 focal sweep points) x 2 seeds
    assert len(r) == 12
    assert "iris/focal[loss.gamma=2.0]/1" in r
    assert r["iris/focal[loss.gamma=2.0]/1"].config["loss"] == {"name": "focal", "gamma": 2.0}


def test_keys_do_not_depend_on_order_or_other_entries(tmp_path):
    full = runs(tmp_path, DS, METHODS)
    fewer = runs(tmp_path, DS[::-1], METHODS[:1] + ["  other: {loss: mae}"])
    for name, spec in fewer.items():
        if name in full:
            assert full[name].run_key == spec.run_key
            assert full[name].seeds == spec.seeds


def test_seeds_are_per_axis_and_shared_across_methods(tmp_path):
    r = runs(tmp_path, DS, METHODS)
    a, b = r["iris/ce/0"], r["iris/focal[loss.gamma=1.0]/0"]
    assert a.seeds == b.seeds  # paired comparison: same split, init and order
    assert r["wine/ce/0"].seeds["split"] != a.seeds["split"]
    assert len({a.seeds["split"], a.seeds["init"], a.seeds["order"]}) == 3
    assert r["iris/ce/1"].seeds["init"] != a.seeds["init"]
    assert derive_seed(0, "init") == a.seeds["init"]


def test_changing_a_param_changes_the_key(tmp_path):
    r1 = runs(tmp_path, DS[:1], ["  ce: {loss: cross_entropy}"])
    r2 = runs(tmp_path, DS[:1], ["  ce: {loss: {name: cross_entropy, label_smoothing: 0.1}}"])
    assert r1["iris/ce/0"].run_key != r2["iris/ce/0"].run_key


def test_int_and_float_spellings_give_one_key(tmp_path):
    r1 = runs(tmp_path, DS[:1], ["  f: {loss: {name: focal, gamma: 2}}"])
    r2 = runs(tmp_path, DS[:1], ["  f: {loss: {name: focal, gamma: 2.0}}"])
    assert r1["iris/f/0"].run_key == r2["iris/f/0"].run_key


def test_method_override_merges_into_base(tmp_path):
    r = runs(tmp_path, DS[:1], ["  fast: {training.optimizer.lr: 0.5}"])
    assert r["iris/fast/0"].config["training"]["optimizer"] == {"name": "adam", "lr": 0.5}
    assert r["iris/fast/0"].config["training"]["epochs"] == 1


def test_renaming_a_dataset_keeps_its_split_seed(tmp_path):
    """The split seed derives from the entry's content (its default label),
    as the run key does, never from the ``label:`` a suite writes."""
    plain = runs(tmp_path, ["  - sklearn: iris", "  - sklearn: wine\n    imbalance: 0.5"],
                 METHODS[:1])
    named = runs(tmp_path, ["  - sklearn: iris\n    label: flowers",
                            "  - sklearn: wine\n    imbalance: 0.5\n    label: grapes"],
                 METHODS[:1])
    renamed = runs(tmp_path, ["  - sklearn: iris\n    label: irises",
                              "  - sklearn: wine\n    imbalance: 0.5\n    label: vino"],
                   METHODS[:1])
    for old, new, again in (("iris", "flowers", "irises"), ("wine+imbalance=0.5", "grapes",
                                                            "vino")):
        for seed in (0, 1):
            a, b = plain[f"{old}/ce/{seed}"], named[f"{new}/ce/{seed}"]
            c = renamed[f"{again}/ce/{seed}"]
            assert a.seeds == b.seeds == c.seeds
            # a dataset with a label of its own has its own key (before the
            # split came from the content, its split came from that label):
            # renaming it again keeps its finished runs
            assert b.run_key == c.run_key != a.run_key
    # an unlabelled entry keeps the seed it always had (derived from its label)
    assert plain["iris/ce/0"].seeds["split"] == derive_seed(0, "split", "iris")
    # a transform is content: it changes the split seed
    assert plain["wine+imbalance=0.5/ce/0"].seeds["split"] != derive_seed(0, "split", "wine")


def test_a_renamed_datasets_new_method_gets_the_same_numbers(tmp_path):
    """Renaming a dataset keeps its finished runs (same run key); a method
    added afterwards trains on the same split as in a store where the
    dataset was never renamed, so its metrics are equal."""
    from mlflow.tracking import MlflowClient

    from harness.cli import main

    def suite(label: str, methods: list[str]) -> str:
        f = tmp_path / "r.yaml"
        f.write_text(SUITE.replace("seeds: [0, 1]", "seeds: [0]").replace(
            "metrics: [accuracy]", "metrics: [accuracy, log_loss]").format(
            datasets="  - synthetic: {n_samples: 120, n_features: 4}" + label,
            methods="\n".join(methods), sweep=""))
        return str(f)

    def test_metrics(uri: str) -> dict:
        cl = MlflowClient(uri)
        exp = cl.get_experiment_by_name("p")
        return {r.data.tags["harness.method"]: {
            k: v for k, v in r.data.metrics.items() if not k.startswith("time/")}
            for r in cl.search_runs([exp.experiment_id]) if "harness.run_key" in r.data.tags}

    renamed = f"sqlite:///{tmp_path / 'renamed.db'}"
    assert main(["run", suite("\n    label: blobs", METHODS[:1]), "--tracking-uri",
                 renamed]) == 0
    both = ["  ce: {loss: cross_entropy}", "  ls: {loss: {name: cross_entropy, "
            "label_smoothing: 0.2}}"]
    assert main(["run", suite("\n    label: spheres", both), "--tracking-uri", renamed]) == 0
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert main(["run", suite("", both), "--tracking-uri", fresh]) == 0
    got, want = test_metrics(renamed), test_metrics(fresh)
    assert set(got) == {"ce", "ls"}
    # the same split as never labelled at all; batch mode (the default) trained
    # ce alone here and beside ls there: equal to float32 rounding of a group
    for method, metrics in want.items():
        assert got[method].keys() == metrics.keys()
        for name, value in metrics.items():
            assert got[method][name] == pytest.approx(value, rel=1e-6, abs=1e-6), name
    from harness.tracking import existing_runs

    assert len(existing_runs(renamed, "p")) == 2  # ce was not rerun under its new label


def test_an_entry_on_another_datasets_rows_splits_as_that_entry(tmp_path):
    """A source's ``split_label`` (CIFAR-10-C: CIFAR-10's train rows) gives
    its entries the split seed of that dataset's entry; its label and run
    key stay its own, and every other entry keeps its content's seed."""
    from test_image_sources import write_cifar10

    write_cifar10(tmp_path / "data" / "cifar-10-batches-py")
    (tmp_path / "data" / "CIFAR-10-C").mkdir()
    suite = tmp_path / "c.yaml"
    suite.write_text(
        "name: c\ntask: classification\nseeds: 2\nmodel: mlp\n"
        "datasets:\n  - cifar10: {root: data}\n"
        "  - cifar10_c: {root: data, corruption: fog, severity: 2}\n"
        "  - cifar10_c: {root: data, corruption: fog, severity: 4}\n  - sklearn: iris\n"
        "methods: {ce: {}}\nmetrics: [accuracy]\n")
    import numpy as np

    np.save(tmp_path / "data" / "CIFAR-10-C" / "fog.npy", np.zeros((5, 32, 32, 3), np.uint8))
    np.save(tmp_path / "data" / "CIFAR-10-C" / "labels.npy", np.zeros(5, np.int64))
    by = {s.run_name: s for s in expand_suite(load_suite(suite))}
    for seed in (0, 1):
        clean = by[f"cifar10/ce/{seed}"]
        fog2, fog4 = by[f"cifar10_c-fog-2/ce/{seed}"], by[f"cifar10_c-fog-4/ce/{seed}"]
        assert clean.seeds == fog2.seeds == fog4.seeds
        assert len({clean.run_key, fog2.run_key, fog4.run_key}) == 3
        assert by[f"iris/ce/{seed}"].seeds["split"] == derive_seed(seed, "split", "iris")
    assert by["cifar10/ce/0"].seeds["split"] == derive_seed(0, "split", "cifar10")


FOLDER_SOURCE = '''
from pathlib import Path

from harness import hookimpl


def tables(folder: Path, file: str = ""):
    """One dataset per csv file of ``folder`` (a test source with ``expand``)."""
    raise AssertionError("not loaded in planning")


def _each_file(params):
    return [{**params, "file": f.name} for f in sorted(Path(params["folder"]).glob("*.csv"))]


tables.expand = _each_file
tables.label = lambda params: Path(params["file"]).stem


@hookimpl
def register_datasets(register):
    register("tables", tables)
'''


def test_expand_sees_paths_from_the_suites_folder_and_keys_keep_them_as_written(
        tmp_path, monkeypatch, fresh_registry):
    """A source's ``expand`` reads a folder named relative to the suite (not
    to the working directory), and the entries it makes keep the path as the
    suite wrote it, so moving the suite's folder keeps every run key."""
    (tmp_path / "harness_tables.py").write_text(FOLDER_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_tables")
    fresh_registry()
    keys = []
    for where in ("one", "two"):
        data = tmp_path / where / "data"
        data.mkdir(parents=True)
        for name in ("b.csv", "a.csv", "notes.txt"):
            (data / name).write_text("x,y\n1,0\n")
        suite = tmp_path / where / "s.yaml"
        suite.write_text("name: s\ntask: classification\nseeds: 1\nmodel: mlp\n"
                         "datasets:\n  - tables: {folder: data}\n"
                         "methods: {ce: {}}\nmetrics: [accuracy]\n")
        monkeypatch.chdir(tmp_path)  # not the suite's folder
        runs = expand_suite(load_suite(suite))
        assert [r.run_name for r in runs] == ["a/ce/0", "b/ce/0"]
        assert {r.dataset["params"]["folder"] for r in runs} == {"data"}
        keys.append([r.run_key for r in runs])
    assert keys[0] == keys[1]
