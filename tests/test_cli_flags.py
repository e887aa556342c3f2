"""Flags: every bad value is one line and exit status 2 before anything runs;
executors declare their own flags and slots; a closed pipe ends quietly;
suite-file messages (issue #11 items 1, 4, 5)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import cli
from harness.cli import main

SUITE = """\
name: flags
seeds: {seeds}
datasets:
  - sklearn: iris
model: {{name: mlp, hidden: [4]}}
training: {{epochs: 1, batch_size: 32, optimizer: {{name: adam, lr: 0.01}}}}
methods:
  ce: {{loss: cross_entropy}}
metrics: [accuracy]
task: classification
"""

#: A third-party executor, known to the CLI only through its factory signature.
PLUGIN = '''
from harness import hookimpl


class Lanes:
    name = "lanes"

    def __init__(self, lanes):
        self.slots = lanes

    def map(self, fn, items):
        for item in items:
            yield fn(item)


def lanes(lanes: int = 1, colour: str = "red"):
    """Runs in this process, pretending to have ``lanes`` slots."""
    return Lanes(lanes)


@hookimpl
def register_executors(register):
    register("lanes", lanes)
'''


def suite(tmp_path: Path, seeds: int = 1) -> str:
    path = tmp_path / "flags.yaml"
    path.write_text(SUITE.format(seeds=seeds))
    return str(path)


def one_line_exit_2(capsys, argv) -> str:
    assert main(argv) == 2
    out = capsys.readouterr()
    assert out.err.startswith("error: ") and out.err.count("\n") == 1, out.err
    assert "Traceback" not in out.err and not out.out
    return out.err


@pytest.mark.parametrize("args,message", [
    (["--jobs", "0"], "error: --jobs 0: executors 'local' parameter 'jobs' expects int (>= 1): "
                      "Input should be greater than or equal to 1"),
    (["--jobs", "-2"], "error: --jobs -2: executors 'local' parameter 'jobs' expects int"),
    (["--jobs", "two"], "--jobs two: executors 'local' parameter 'jobs' expects int"),
    (["--threads", "0"], "error: --threads 0: executors 'local' parameter 'threads' expects "
                         "int (>= 1) | None"),
    (["--retries", "-1"], "argument --retries: must be at least 0, got -1"),
    (["--retries", "x"], "argument --retries: expected an integer, got 'x'"),
    (["--device", "gpu"], "--device gpu: unknown device; use auto, cpu, cuda, cuda:N or mps"),
    (["--timeout", "0"], "argument --timeout: duration must be positive"),
    (["--memory-limit", "lots"], "argument --memory-limit"),
    (["--jobs"], "argument --jobs: expected one argument"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    # the generated flags are not abbreviated: a plugin adding --max-x must not
    # change what --max means
    (["--max", "2"], "unrecognized arguments: --max 2"),
])
def test_bad_flag_is_one_line_exit_2(tmp_path, tracking_uri, capsys, args, message):
    err = one_line_exit_2(capsys, ["run", suite(tmp_path), *args])
    assert message in err
    assert not (tmp_path / "mlflow.db").exists()  # stopped before MLflow was touched


def test_device_cuda_without_cuda(tmp_path, tracking_uri, capsys):
    import torch

    if torch.cuda.is_available():
        err = one_line_exit_2(capsys, ["run", suite(tmp_path), "--device", "cuda:99"])
        assert "this machine has" in err
    else:
        err = one_line_exit_2(capsys, ["run", suite(tmp_path), "--device", "cuda"])
        assert f"--device cuda: torch {torch.__version__} has no CUDA" in err


def test_device_check_imports_torch_only_for_cuda_or_mps():
    code = ("import sys; from harness.cli import check_device; "
            "check_device('cpu'); check_device('auto'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_status_interval_must_be_positive(tmp_path, capsys):
    err = one_line_exit_2(capsys, ["status", suite(tmp_path), "--interval", "0"])
    assert "argument --interval: must be greater than 0" in err


@pytest.fixture
def lanes_plugin(tmp_path, monkeypatch, fresh_registry):
    (tmp_path / "harness_lanes.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_lanes")
    return fresh_registry()


def test_plugin_executor_declares_its_flags_and_slots(tmp_path, lanes_plugin, capsys):
    opts = cli.executor_options(lanes_plugin)
    assert opts["lanes"].executors == ["lanes"] and opts["lanes"].flag == "--lanes"
    assert opts["cpus_per_run"].executors == ["ray", "slurm"]  # one flag, two executors
    assert opts["jobs"].executors == ["local"]
    assert "device" not in opts and "timeout" not in opts  # harness run's own names
    args = cli._parse(["run", suite(tmp_path), "--executor", "lanes", "--lanes", "3"])
    executor = cli.executor_from_args(args, args.registry)
    assert executor.slots == 3
    # --help lists the plugin's flag with the executor that takes it
    with pytest.raises(SystemExit):
        cli._parse(["run", "--help"])
    assert "--lanes LANES" in capsys.readouterr().out
    err = one_line_exit_2(capsys, ["run", suite(tmp_path), "--lanes", "2"])
    assert ("--lanes 2: executor 'local' has no option 'lanes' (an option of lanes); its "
            "options: jobs, threads") in err
    err = one_line_exit_2(capsys, ["run", suite(tmp_path), "--executor", "lanes",
                                   "--lanes", "many"])
    assert "--lanes many: " in err and "expects int" in err


def test_local_slots_are_its_jobs(tracking_uri):
    from harness.plugins import get_registry
    from harness.runner import build_executor

    assert build_executor(get_registry(), "local", {"jobs": 3}).slots == 3
    assert build_executor(get_registry(), "local").slots == 1


def test_gpus_round_robin_over_executor_slots(monkeypatch):
    import torch

    from harness.runner import _devices

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert _devices("auto", 3) == ["cuda:0", "cuda:1", "cuda:0"]
    assert _devices("cuda", 1) == ["cuda"]  # one slot: the default device
    assert _devices("cpu", 4) == ["cpu"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert _devices("auto", 4) == ["auto"]


def test_plan_into_closed_pipe_ends_quietly(tmp_path):
    """`harness plan big.yaml | head -1`: no BrokenPipeError traceback."""
    path = suite(tmp_path, seeds=3000)  # ~250 kB of table: more than a pipe buffer
    env = {**os.environ, "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "plan", path,
                             "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.readline().split()[:3] == [b"dataset", b"method", b"seed"]
    proc.stdout.close()  # what `head` does after its first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


def test_missing_suite_file_message(tmp_path, capsys):
    err = one_line_exit_2(capsys, ["plan", str(tmp_path / "quickstrat.yaml")])
    assert err == f"error: {tmp_path / 'quickstrat.yaml'}: suite file not found\n"


def test_duplicate_key_names_both_lines(tmp_path, capsys):
    text = SUITE.format(seeds=1).replace(
        "  ce: {loss: cross_entropy}\n",
        "  ce: {loss: cross_entropy}\n  focal: {loss: focal}\n  ce: {loss: focal}\n")
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    err = one_line_exit_2(capsys, ["plan", str(path)])
    assert f"{path}:10: methods.ce: duplicate key 'ce' (first at line 8)" in err


@pytest.mark.parametrize("text,line,hint", [
    ("name: x\nseeds: 1\n  datasets: []\n", 3, "check the indentation"),
    ("name: x\nmethods:\n\tce: {}\n", 3, "YAML indents with spaces, not tabs"),
])
def test_yaml_indentation_gets_a_hint(tmp_path, capsys, text, line, hint):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    err = one_line_exit_2(capsys, ["plan", str(path)])
    assert err.startswith(f"error: {path}:{line}: malformed YAML: ") and hint in err


@pytest.mark.slow
def test_run_output_opens_with_the_plan_not_mlflow_logs(tmp_path):
    """A fresh store makes MLflow log `INFO ... Creating initial MLflow database
    tables...`; `harness run` keeps such lines out of its output."""
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", suite(tmp_path),
                           "--tracking-uri", f"sqlite:///{tmp_path / 'fresh.db'}"],
                          capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items()
                               if k != "MLFLOW_LOGGING_LEVEL"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("suite flags: 1 runs, 1 to run")
    assert " INFO " not in proc.stdout + proc.stderr
    assert "leaderboard:" in proc.stdout


def test_every_option_of_every_command_has_help_text():
    """`harness X --help` explains each option (status and plan --json had none)."""
    import argparse

    from harness.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    bare = [f"{name} {'/'.join(action.option_strings)}"
            for name, sub in subs.choices.items() for action in sub._actions
            if action.option_strings and action.help is None]
    assert bare == []


def test_status_watch_into_a_file_prints_each_refresh(tmp_path, tracking_uri, monkeypatch):
    """Without a terminal, --watch prints a table per refresh (a live region
    printed nothing until Ctrl-C)."""
    import io

    from rich.console import Console

    from harness import status

    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(status.time, "sleep", sleep)
    out = io.StringIO()
    code = status.show(suite(tmp_path), tracking_uri, watch=True, interval=7.0,
                       console=Console(file=out, width=120))
    assert code == 0 and sleeps == [7.0, 7.0]
    assert out.getvalue().count("pending") >= 2 and out.getvalue().count(" total ") == 2


def test_a_suites_device_missing_here_stops_before_any_run(tmp_path, tracking_uri, capsys):
    """``device: cuda`` in a suite on a machine without CUDA: exit 2 at the
    key, not one failed run per run (each failed on its first tensor);
    ``--device cpu`` still runs it."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = Path(suite(tmp_path))
    path.write_text(path.read_text() + "device: cuda\n")
    err = one_line_exit_2(capsys, ["run", str(path)])
    assert "flags.yaml:" in err and "device = 'cuda'" in err and "--device cpu" in err
    assert main(["run", str(path), "--device", "cpu", "-q"]) == 0


def test_the_python_api_checks_a_suites_device_too(tmp_path, tracking_uri):
    import torch

    import harness

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = Path(suite(tmp_path))
    path.write_text(path.read_text() + "device: cuda\n")
    with pytest.raises(harness.ConfigError, match="device = 'cuda'.*--device cpu"):
        harness.run_suite(path, tracking_uri=tracking_uri)
