"""Start-up hygiene: the light commands import none of the heavy libraries.

``harness --help``, ``harness plugins``, ``harness plan``, ``harness status``
and a ``harness run`` with nothing to train must start in well under a
second; importing torch, mlflow, scikit-learn, SciPy or pandas costs 0.5-3 s
each on a small machine.  Checked as a behaviour (``sys.modules`` of a fresh
interpreter after the command), not as a timing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "mlflow", "sklearn", "scipy", "pandas", "matplotlib", "sqlalchemy")


def _imported_after(*commands: list[str]) -> list[str]:
    """The heavy modules a fresh interpreter holds after ``harness.cli.main``
    ran each of ``commands``."""
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from harness.cli import main
        for argv in {commands!r}:
            with contextlib.redirect_stdout(io.StringIO()), \\
                    contextlib.redirect_stderr(io.StringIO()):
                try:
                    code = main(argv)
                except SystemExit as exc:  # --help
                    code = exc.code
            assert code in (0, None), (argv, code)
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_plugins_plan_and_status_import_no_heavy_library(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    suite = str(ROOT / "suites" / "imbalanced.yaml")
    assert _imported_after(["--help"], ["plugins"], ["plan", suite, "--tracking-uri", uri],
                           ["status", suite, "--tracking-uri", uri]) == []


@pytest.mark.slow
def test_a_finished_suite_runs_without_torch_or_mlflow(tmp_path):
    """Nothing to train: the plan reads the store's tables and the leaderboard
    too; neither training (torch, scikit-learn) nor MLflow is imported."""
    from harness.cli import main

    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent("""\
        name: startup
        task: classification
        seeds: 2
        datasets: [{sklearn: iris}]
        model: {name: mlp, hidden: [8]}
        training: {epochs: 2, batch_size: 32, optimizer: {name: adam, lr: 0.01}}
        methods: {ce: {}, fast: {training.optimizer.lr: 0.05}}
        metrics: [accuracy]
        rank_by: accuracy
    """))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["run", str(suite), "--tracking-uri", uri, "-q"]) == 0
    # the leaderboard's table (pandas) and its tests (scipy), nothing else
    assert _imported_after(["run", str(suite), "--tracking-uri", uri, "-q"]) == [
        "pandas", "scipy"]


def test_console_exit_keeps_output_threads_and_exit_handlers(tmp_path):
    """The console script ends without the interpreter's teardown, but what
    a normal exit does still happens: buffered stdout reaches the reader, a
    non-daemon thread finishes, atexit handlers run, the status is kept."""
    marker = tmp_path / "atexit.txt"
    code = textwrap.dedent(f"""
        import atexit, sys, threading, time
        from pathlib import Path
        from harness.cli import exit_now
        atexit.register(lambda: Path({str(marker)!r}).write_text("ran"))
        def late():
            time.sleep(0.3)
            sys.stdout.write("thread done")
        threading.Thread(target=late).start()
        sys.stdout.write("buffered, no newline;")
        exit_now(3)
        print("never")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 3
    assert out.stdout == "buffered, no newline;thread done"
    assert marker.read_text() == "ran"


def test_console_exit_ends_idle_thread_pool_workers():
    """An executor's idle worker (MLflow's artifact threads) waits for work
    until threading's exit hook stops it: the exit must run that hook, not
    wait for the worker (``harness report`` hung at its end)."""
    code = textwrap.dedent("""
        from concurrent.futures import ThreadPoolExecutor
        from harness.cli import exit_now
        pool = ThreadPoolExecutor(2)
        print(pool.submit(lambda: 41 + 1).result())
        exit_now(0)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert (out.returncode, out.stdout) == (0, "42\n")


def test_environment_tags_unpickle_without_torch():
    """The store writer unpickles each run's environment tags; a
    ``TorchVersion`` among them made it import torch (~2 s)."""
    import pickle

    from harness.tracking import environment_tags

    tags = environment_tags()
    assert all(type(v) is str for v in tags.values())
    assert b"torch" not in pickle.dumps(tags).replace(b"harness.torch", b"")
