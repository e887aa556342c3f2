"""Plugin discovery, provenance, blocking, duplicate and misspelled hooks,
and a third-party distribution found through the entry-point group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import harness
from harness.errors import ConfigError

THIRD_PARTY = '''
"""A third-party harness plugin: one loss, one dataset."""
from harness import hookimpl


def double_ce(scale: float = 2.0):
    """Cross-entropy times a constant (third-party test loss)."""
    import torch.nn.functional as F

    def loss(logits, targets, **extras):
        return scale * F.cross_entropy(logits, targets)
    return loss


def blobs(n: int = 300):
    """Gaussian blobs (third-party test dataset)."""
    from sklearn.datasets import make_blobs
    from harness.data import RawDataset
    X, y = make_blobs(n_samples=n, centers=3, random_state=0)
    return RawDataset("blobs", X.astype("float32"), y)


@hookimpl
def register_losses(register):
    register("double_ce", double_ce)


@hookimpl
def register_datasets(register):
    register("blobs", blobs)
'''


@pytest.fixture
def third_party(tmp_path) -> Path:
    """A distribution `harness-mylosses` with an entry point in group `harness`,
    laid out as pip installs it (module + dist-info)."""
    site = tmp_path / "site"
    (site / "harness_mylosses").mkdir(parents=True)
    (site / "harness_mylosses" / "__init__.py").write_text(THIRD_PARTY)
    info = site / "harness_mylosses-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-mylosses\n"
                                   "Version: 0.3.1\n")
    (info / "entry_points.txt").write_text("[harness]\nmylosses = harness_mylosses\n")
    return site


def harness_cli(args, site: Path | None = None, **env):
    environ = {**os.environ, **env}
    if site:
        environ["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, env=environ, timeout=300)


def test_builtin_components_record_provenance():
    info = harness.components("losses")["cross_entropy"]
    assert info.dist == "harness-bench" and info.plugin == "losses"
    assert info.provenance.startswith("harness-bench==")
    assert harness.components("models")["mlp"].description


def test_create_validates_params():
    assert callable(harness.create("losses", {"name": "focal", "gamma": 2.0}))
    with pytest.raises(ConfigError, match="did you mean 'gamma'"):
        harness.create("losses", {"name": "focal", "gama": 2.0})
    with pytest.raises(ConfigError, match="unknown kind|unknown component kind"):
        harness.components("lossez")


def test_third_party_plugin_is_listed(third_party):
    out = harness_cli(["plugins", "--json"], third_party)
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["mylosses"]["distribution"] == "harness-mylosses"
    assert plugins["mylosses"]["version"] == "0.3.1"
    assert set(plugins["mylosses"]["hooks"]) == {"register_losses", "register_datasets"}
    listed = json.loads(harness_cli(["list", "losses", "--json"], third_party).stdout)
    mine = next(c for c in listed if c["name"] == "double_ce")
    assert mine["distribution"] == "harness-mylosses"
    assert mine["params"][0]["name"] == "scale"


def test_autoload_off_and_blocking(third_party):
    off = harness_cli(["plugins", "--json"], third_party, HARNESS_DISABLE_PLUGIN_AUTOLOAD="1")
    names = {p["name"] for p in json.loads(off.stdout)}
    assert "mylosses" not in names and "losses" in names
    blocked = harness_cli(["-p", "no:mylosses", "plugins", "--json"], third_party)
    assert "mylosses" not in {p["name"] for p in json.loads(blocked.stdout)}


@pytest.mark.slow
def test_suite_uses_third_party_components(third_party, tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent("""\
        name: tp
        seeds: 1
        datasets: [{blobs: 200}]
        model: {name: mlp, hidden: [8]}
        loss: {name: double_ce, scale: 3.0}
        training: {epochs: 3, optimizer: adam}
        methods: {mine: {}}
        metrics: [accuracy]
        """))
    out = harness_cli(["run", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
                      third_party)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "1 finished" in out.stdout


def _pm_with(*modules):
    import pluggy

    from harness import hookspecs
    from harness.plugins import Registry

    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    pm.harness_dists = {}
    for name, mod in modules:
        pm.register(mod, name=name)
    pm.check_pending()
    return Registry(pm)


def _module(name, source):
    import types

    mod = types.ModuleType(name)
    exec(textwrap.dedent(source), mod.__dict__)
    return mod


def test_duplicate_names_name_both_plugins():
    src = """
        from harness import hookimpl
        def f():
            "x"
        @hookimpl
        def register_losses(register):
            register("same", f)
        """
    with pytest.raises(ConfigError) as err:
        _pm_with(("first", _module("a", src)), ("second", _module("b", src)))
    assert "'first'" in str(err.value) and "'second'" in str(err.value)


def test_misspelled_hook_fails_loudly():
    import pluggy

    src = """
        from harness import hookimpl
        @hookimpl
        def register_loses(register):
            pass
        """
    with pytest.raises(pluggy.PluginValidationError, match="register_loses"):
        _pm_with(("typo", _module("c", src)))


def test_misspelled_hook_in_installed_plugin_exits_2(tmp_path):
    site = tmp_path / "site"
    (site / "badplug").mkdir(parents=True)
    (site / "badplug" / "__init__.py").write_text(
        "from harness import hookimpl\n@hookimpl\ndef register_lossez(register):\n    pass\n")
    out = harness_cli(["list", "losses"], site, HARNESS_PLUGINS="badplug")
    assert out.returncode == 2
    assert "register_lossez" in out.stderr and "Traceback" not in out.stderr
    assert "did you mean 'register_losses'" in out.stderr and "-p no:badplug" in out.stderr
    listed = harness_cli(["plugins"], site, HARNESS_PLUGINS="badplug")
    assert listed.returncode == 1 and "BROKEN" in listed.stdout
