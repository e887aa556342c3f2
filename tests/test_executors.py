"""Executors: the same suite through local, --jobs, Ray and SLURM (submitit's
local executor) gives the same runs and numbers; --jobs 8 on one sqlite file
loses and duplicates nothing; executor options are validated."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main

PLUGINS = Path(__file__).parent / "plugins"
SUITE = """\
name: {name}
seeds: {seeds}
datasets:
{datasets}
model: {{name: mlp, hidden: [8]}}
training: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: adam, lr: 0.01}}}}
methods:
  ce: {{loss: cross_entropy}}
  focal: {{loss: {{name: focal, gamma: 2.0}}}}
metrics: [accuracy, log_loss]
task: classification
"""


def write_suite(tmp_path, name="tiny", seeds=2, datasets=("iris",), epochs=2) -> str:
    f = tmp_path / f"{name}.yaml"
    f.write_text(SUITE.format(name=name, seeds=seeds, epochs=epochs,
                              datasets="\n".join(f"  - sklearn: {d}" for d in datasets)))
    return str(f)


def harness_runs(uri: str, experiment: str) -> list:
    """The experiment's runs that belong to a run key (not the suite-level run)."""
    from mlflow.tracking import MlflowClient

    cl = MlflowClient(uri)
    exp = cl.get_experiment_by_name(experiment)
    runs = cl.search_runs([exp.experiment_id], max_results=5000)
    return [r for r in runs if "harness.run_key" in r.data.tags]


def results(uri: str, experiment: str) -> dict[str, dict]:
    """run_key -> test metrics of its FINISHED run (asserting there is one)."""
    out: dict[str, dict] = {}
    for r in harness_runs(uri, experiment):
        if r.info.status == "FINISHED":
            key = r.data.tags["harness.run_key"]
            assert key not in out, f"two FINISHED runs for {key}"
            out[key] = {k: v for k, v in r.data.metrics.items() if k.startswith("test/")}
    return out


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray (2 CPUs) for the module: start-up takes seconds."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny suite run sequentially in this process: run key -> test metrics."""
    tmp = tmp_path_factory.mktemp("reference")
    uri = f"sqlite:///{tmp / 'local.db'}"
    assert main(["run", write_suite(tmp), "--tracking-uri", uri]) == 0
    got = results(uri, "tiny")
    assert len(got) == 4 and {r.data.tags["harness.executor"]
                              for r in harness_runs(uri, "tiny")} == {"local"}
    return got


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["jobs2", "ray", "slurm"])
def test_same_runs_and_numbers_on_every_executor(variant, reference, tmp_path, request, capsys):
    args = {
        "jobs2": ["--jobs", "2"],
        "ray": ["--executor", "ray"],
        # every submitit job is a fresh interpreter (seconds of imports): two runs
        "slurm": ["--executor", "slurm", "--executor-opt", "cluster=local",
                  "--executor-opt", f"folder={tmp_path / 'submitit' / '%j'}",
                  "--executor-opt", "poll_s=0.2", "--only", "iris/*/0"],
    }[variant]
    if variant == "ray":
        request.getfixturevalue("ray_local")
    if variant == "slurm":
        pytest.importorskip("submitit")
    uri = f"sqlite:///{tmp_path / variant}.db"
    assert main(["run", write_suite(tmp_path), "--tracking-uri", uri, *args]) == 0
    n = 2 if "--only" in args else 4
    assert f"{n} finished" in capsys.readouterr().out
    executors = {r.data.tags["harness.executor"] for r in harness_runs(uri, "tiny")}
    assert executors == {"local" if variant == "jobs2" else variant}
    got = results(uri, "tiny")
    assert len(got) == n and got.keys() <= reference.keys()
    for key, metrics in got.items():
        assert metrics == pytest.approx(reference[key], rel=1e-9, abs=1e-12), key


@pytest.mark.slow
def test_jobs8_on_sqlite_loses_and_duplicates_nothing(tmp_path, capsys):
    # a fresh database: 8 workers creating MLflow's schema at once used to race
    uri = f"sqlite:///{tmp_path / 'many.db'}"
    suite = write_suite(tmp_path, "many", seeds=6, datasets=("iris", "wine"), epochs=1)
    assert main(["run", suite, "--tracking-uri", uri, "--jobs", "8"]) == 0
    assert "24 finished" in capsys.readouterr().out
    per_key = Counter(r.data.tags["harness.run_key"] for r in harness_runs(uri, "many"))
    assert len(per_key) == 24 and set(per_key.values()) == {1}
    assert len(results(uri, "many")) == 24


@pytest.mark.parametrize("args, message", [
    (["--executor", "ray", "--partition", "gpu"],
     "--partition gpu: executor 'ray' has no option 'partition' (an option of slurm)"),
    (["--jobs", "2", "--executor", "slurm"], "--jobs 2: unknown option 'jobs' of executor "
                                              "'slurm'"),
    (["--executor-opt", "nodes=2"], "executor 'local' has no option 'nodes'"),
    (["--executor", "slurm", "--executor-opt", "slurm_acount=x"],
     "--executor-opt slurm_acount=x: unknown option 'slurm_acount'"),
    (["--executor", "rey"], "unknown executor 'rey' (did you mean 'ray'?)"),
    (["--executor-opt", "jobs"], "expected KEY=VALUE"),
])
def test_unknown_executor_option_exits_2(tmp_path, tracking_uri, capsys, args, message):
    if "slurm" in args:
        pytest.importorskip("submitit")
    assert main(["run", write_suite(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("args", [["--timeout", "3x"], ["--memory-limit", "lots"],
                                  ["--timeout", "0"]])
def test_bad_limit_exits_2(tmp_path, args, capsys):
    assert main(["run", write_suite(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: argument {args[0]}: ") and err.count("\n") == 1


def test_plan_and_plugins_stay_light(tmp_path):
    """`harness plan` and `harness plugins` import neither torch, MLflow nor Ray."""
    suite = write_suite(tmp_path)
    code = ("import sys; from harness.cli import main; "
            f"main(['plan', {suite!r}, '--tracking-uri', 'sqlite:///{tmp_path}/none.db']); "
            "main(['plugins']); "
            "print(sorted(m for m in ('torch', 'mlflow', 'ray', 'submitit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(PLUGINS)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_local_executor_says_when_it_runs_items_here():
    """The runner starts training before the store writer has created the
    store only for items run in this process (``in_process``)."""
    from harness_plugins.executors.local import LocalExecutor

    assert LocalExecutor(jobs=1).in_process(["a", "b", "c"])
    assert LocalExecutor(jobs=2).in_process(["a"])
    assert not LocalExecutor(jobs=2).in_process(["a", "b"])
