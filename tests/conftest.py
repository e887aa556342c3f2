"""Shared fixtures: an isolated MLflow store and registry per test."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"
sys.path.insert(0, str(PLUGINS))
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# caches a test run writes (keel class sizes, ...) stay out of the user's home;
# the folder made here goes when the session ends
_CACHE_DIR = None
if "HARNESS_CACHE_DIR" not in os.environ:
    _CACHE_DIR = os.environ["HARNESS_CACHE_DIR"] = tempfile.mkdtemp(prefix="harness-test-cache-")


def pytest_sessionfinish(session, exitstatus):
    if _CACHE_DIR is not None:
        import shutil

        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: on 2 shared cores, more threads make tiny models
    many times slower and timings erratic."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch):
    """A fresh sqlite MLflow store for one test (also set as the env default)."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # mlflow keeps a process-wide URI once any test sets one: point it here too
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture
def fresh_registry(monkeypatch):
    """Rebuild the process-wide registry after the test changes plugin env vars."""
    import harness.plugins as hp

    yield lambda: hp.get_registry(reload=True)
    monkeypatch.undo()
    hp.get_registry(reload=True)


@pytest.fixture
def test_plugin(monkeypatch, fresh_registry):
    """Load tests/plugins/harness_testplugin.py (failing and NaN losses)."""
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_testplugin")
    return fresh_registry()


def write_suite(path: Path, text: str) -> Path:
    """Write a suite file and return its path."""
    path.write_text(text)
    return path
