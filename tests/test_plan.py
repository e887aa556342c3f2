"""Planning: run keys are stable, seeds are per axis, sweeps expand."""

from __future__ import annotations

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
