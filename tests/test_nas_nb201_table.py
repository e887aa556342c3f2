"""NAS-Bench-201's published table as the ground truth: a small file written
in the benchmark's format (a ``torch.save`` of plain dicts, as
``nas_201_api`` reads it) read into the space's index order, its errors, and
a nas run scored against it."""

from __future__ import annotations

import itertools
import math
import textwrap

import pytest

from harness.cli import main
from harness_plugins.nas.nb201_table import TableError, load_file, read_table
from harness_plugins.nas.spaces import nb201

OURS = {"none": "none", "skip": "skip_connect", "conv1x1": "nor_conv_1x1",
        "conv3x3": "nor_conv_3x3", "avgpool3": "avg_pool_3x3"}


def arch_string(genotype) -> str:
    ops = iter(genotype)
    return "+".join("|" + "|".join(f"{OURS[next(ops)]}~{i}" for i in range(j)) + "|"
                    for j in range(1, 4))


def result(dataset: str, seed: int, sets: dict, epochs: int = 3) -> dict:
    """One trial as the benchmark stores it (ResultsCount's state dict): only
    the last epoch's numbers matter; earlier epochs hold decoys."""
    acc = {}
    for name, value in sets.items():
        for e in range(epochs):
            acc[f"{name}@{e}"] = value if e == epochs - 1 else 1.0
    return {"name": "x", "dataset": dataset, "seed": seed, "epochs": epochs,
            "eval_acc1es": acc, "eval_names": list(sets), "net_state_dict": None}


def fake_benchmark(ops=("none", "skip", "conv3x3")) -> tuple[dict, dict]:
    """Every cell of ``ops`` (in a scrambled order, as the benchmark's own
    order differs from ours), cifar10-valid with two seeds and cifar10 with
    one; returns (file dict, expected {genotype: (val, test)})."""
    cells = list(itertools.product(ops, repeat=6))
    cells = cells[::-1]  # the file's order is not the space's
    archs, infos, expected = [], {}, {}
    for i, genotype in enumerate(cells):
        val = [10.0 + (i % 50), 12.0 + (i % 50)]  # percent, per seed
        test = [20.0 + (i % 70), 24.0 + (i % 70)]
        full = {"arch_str": arch_string(genotype),
                "dataset_seed": {"cifar10-valid": [777, 888], "cifar10": [777]},
                "all_results": {
                    ("cifar10-valid", 777): result("cifar10-valid", 777,
                                                   {"x-valid": val[0], "ori-test": test[0]}),
                    ("cifar10-valid", 888): result("cifar10-valid", 888,
                                                   {"x-valid": val[1], "ori-test": test[1]}),
                    ("cifar10", 777): result("cifar10", 777, {"ori-test": 50.0 + i % 30})}}
        less = {"arch_str": full["arch_str"], "dataset_seed": {"cifar10-valid": [777]},
                "all_results": {("cifar10-valid", 777): result(
                    "cifar10-valid", 777, {"x-valid": 5.0, "ori-test": 6.0}, epochs=12)}}
        archs.append(full["arch_str"])
        infos[i] = {"full": full, "less": less}
        expected[genotype] = (sum(val) / 200, sum(test) / 200, (50.0 + i % 30) / 100)
    return {"meta_archs": archs, "arch2infos": infos, "evaluated_indexes": set(infos),
            "total_archs": len(archs)}, expected


def test_table_in_space_order_mean_of_seeds_last_epoch():
    data, expected = fake_benchmark()
    space = nb201(ops=["none", "skip", "conv3x3"])
    table = read_table(data, space)
    for genotype, (val, test, _) in expected.items():
        i = space.index(genotype)
        assert table["val_accuracy"][i] == pytest.approx(val, abs=1e-12)
        assert table["test_accuracy"][i] == pytest.approx(test, abs=1e-12)
    # cifar10 (train + valid) has no validation accuracy; its test set is ori-test
    c10 = read_table(data, space, dataset="cifar10")
    assert all(math.isnan(v) for v in c10["val_accuracy"])
    g = ("skip", "none", "conv3x3", "conv3x3", "none", "skip")
    assert c10["test_accuracy"][space.index(g)] == pytest.approx(expected[g][2])
    # the 12-epoch schedule is the "less" entry
    assert set(read_table(data, space, epochs=12)["test_accuracy"]) == {0.06}


def test_a_smaller_space_reads_its_cells_only():
    data, expected = fake_benchmark()
    space = nb201(ops=["skip", "conv3x3"])
    table = read_table(data, space)
    assert table["test_accuracy"].shape == (64,)
    g = ("skip",) * 3 + ("conv3x3",) * 3
    assert table["test_accuracy"][space.index(g)] == pytest.approx(expected[g][1])


@pytest.mark.parametrize("change, words", [
    (lambda d: d.pop("meta_archs"), ["not a NAS-Bench-201 file"]),
    (lambda d: d["arch2infos"].pop(5), ["cell 5", "not in 'arch2infos'"]),
    (lambda d: d["meta_archs"].pop(), ["1 of the space's 729 cells are not in the file"]),
])
def test_a_file_that_does_not_fit_says_what(change, words):
    data, _ = fake_benchmark()
    change(data)
    with pytest.raises(TableError) as err:
        read_table(data, nb201(ops=["none", "skip", "conv3x3"]))
    for word in words:
        assert word in str(err.value)


def test_load_file_round_trip_and_not_a_benchmark(tmp_path):
    import torch

    data, _ = fake_benchmark(ops=("skip", "conv3x3"))
    torch.save(data, tmp_path / "NAS-Bench-201-v1_1-096897.pth")
    loaded = load_file(str(tmp_path / "NAS-Bench-201-v1_1-096897.pth"))
    assert loaded["meta_archs"] == data["meta_archs"]
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(TableError, match="not a NAS-Bench-201 file"):
        load_file(str(tmp_path / "other.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(TableError, match="cannot read it"):
        load_file(str(tmp_path / "junk.pth"))


SUITE = """\
name: nas-nb201-table
task: nas
seeds: 1
datasets:
  - sklearn: {name: digits, as_image: true}
    split: {val: 0.2, test: 0.2}
space: {name: nb201, channels: 4, cells: 1, stages: 1, ops: [skip, conv3x3]}
search: none
selector: {name: fixed, genotype: "|skip~0|+|skip~0|conv3x3~1|+|skip~0|skip~1|conv3x3~2|"}
evaluate:
  training: {epochs: 1, batch_size: 256, optimizer: {name: adam, lr: 0.01}}
ground_truth: {nb201: TABLE}
methods:
  fixed: {}
metrics: [accuracy, regret, arch_rank]
rank_by: accuracy
"""


def test_missing_file_stops_at_plan_naming_the_key(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.replace("TABLE", str(tmp_path / "nope.pth")))
    assert main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    err = capsys.readouterr().err
    assert "ground_truth.nb201" in err and "nope.pth" in err and "no such file" in err, err
    bad = SUITE.replace("TABLE", str(tmp_path / "nope.pth")).replace(
        "{nb201: ", "{nb201: x, dataset: cifar11, x: ")
    suite.write_text(textwrap.dedent(bad))
    assert main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    assert "ground_truth" in capsys.readouterr().err


def test_run_scores_the_selected_cell_against_the_published_table(tmp_path, tracking_uri,
                                                                  capsys):
    import mlflow
    import torch

    data, expected = fake_benchmark(ops=("skip", "conv3x3"))
    torch.save(data, tmp_path / "table.pth")
    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE.replace("TABLE", str(tmp_path / "table.pth")))
    assert main(["run", str(suite), "-q"]) == 0, capsys.readouterr().err
    df = mlflow.search_runs(experiment_names=["nas-nb201-table"])
    row = df[df["tags.harness.run_key"].notna()].iloc[0]
    chosen = ("skip", "skip", "conv3x3", "skip", "skip", "conv3x3")
    tests = [t for _, t, _ in expected.values()]
    mine = expected[chosen][1]
    assert row["metrics.test/regret"] == pytest.approx(max(tests) - mine, abs=1e-9)
    assert row["metrics.test/arch_rank"] == 1 + sum(t > mine for t in tests)
    assert row["metrics.ground_truth/reused"] == 0.0
