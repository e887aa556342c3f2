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
        task: classification
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
        def register_datasets(register):
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


DUPLICATE = '''
"""A third-party plugin that registers a loss name harness already has."""
from harness import hookimpl


def focal(gamma: float = 1.0):
    """Not harness's focal loss."""


@hookimpl
def register_losses(register):
    register("focal", focal)
'''


@pytest.fixture
def duplicate(tmp_path) -> Path:
    """A distribution `harness-dupes` whose plugin `dupes` registers `focal`."""
    site = tmp_path / "site"
    (site / "harness_dupes").mkdir(parents=True)
    (site / "harness_dupes" / "__init__.py").write_text(DUPLICATE)
    info = site / "harness_dupes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-dupes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[harness]\ndupes = harness_dupes\n")
    return site


def test_duplicate_of_a_builtin_blames_the_newcomer(duplicate):
    """The error names both distributions, and its hint blocks the
    third-party plugin, never the built-in one; ``harness plugins`` exits 1
    and marks it; blocking it as the hint says works."""
    out = harness_cli(["list", "losses"], duplicate)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    for words in ("losses component 'focal' is registered twice",
                  "plugin 'losses' (distribution harness-bench)",
                  "plugin 'dupes' (distribution harness-dupes)",
                  "'harness -p no:dupes ...'"):
        assert words in out.stderr, out.stderr
    assert "-p no:losses" not in out.stderr
    listed = harness_cli(["plugins", "--json"], duplicate)
    assert listed.returncode == 1
    rows = {p["name"]: ", ".join(p["hooks"]) for p in json.loads(listed.stdout)}
    assert rows["dupes"].startswith("BROKEN: plugin 'dupes' (distribution harness-dupes): "
                                    "losses component 'focal' is registered twice")
    assert rows["losses"] == "register_losses"
    blocked = harness_cli(["-p", "no:dupes", "list", "losses", "--json"], duplicate)
    assert blocked.returncode == 0, blocked.stderr
    focal = next(c for c in json.loads(blocked.stdout) if c["name"] == "focal")
    assert focal["distribution"] == "harness-bench"


def test_hookspecs_name_no_domain_kind():
    """The core declares hooks for the kinds it consumes only; every other
    kind (losses, transforms, denoisers, ...) is a family's, declared and
    documented in its own package."""
    import re

    from harness import hookspecs
    from harness.plugins import get_registry

    declared = {name for name in vars(hookspecs) if name.startswith("register_")}
    assert declared == {f"register_{k}" for k in hookspecs.CORE_KINDS} | {"register_kinds"}
    assert set(hookspecs.CORE_KINDS) == {"tasks", "datasets", "metrics", "executors"}
    registry = get_registry()
    family_kinds = [k for k in registry.kinds() if k not in hookspecs.CORE_KINDS]
    assert {"losses", "models", "transforms", "calibrators", "nas_selectors", "denoisers",
            "noise_models", "augmenters", "sensors"} <= set(family_kinds)
    text = Path(hookspecs.__file__).read_text()
    named = [k for k in family_kinds if re.search(rf"\b{k}\b", text)]
    assert named == []
    # each built-in kind's contract is its family's docstring
    spec = registry.pm.hook.register_losses.spec
    from harness_plugins.classification import hookspecs as classification

    assert spec.function.__doc__ == classification.register_losses.__doc__
    assert "logits" in spec.function.__doc__


FAMILY = '''
"""A toy family: the kind `corruptions`, declared with its contract."""
from harness import hookimpl


def corruptions_contract(register):
    """Register input corruptions.  ``factory(**params)`` returns
    ``corrupt(x) -> x_bad``."""


@hookimpl
def register_kinds(register):
    register("corruptions", corruptions_contract)


def fgsm(eps: float = 0.1):
    """Fast gradient sign (toy)."""


@hookimpl
def register_corruptions(register):
    register("fgsm", fgsm)
'''

USER = '''
"""A third-party plugin implementing the toy family's kind and a built-in family's."""
from harness import hookimpl


def pgd(steps: int = 10):
    """Projected gradient descent (toy)."""


def twice(scale: float = 2.0):
    """A loss of a third party."""


@hookimpl
def register_corruptions(register):
    register("pgd", pgd)


@hookimpl
def register_losses(register):
    register("twice", twice)
'''


def test_a_family_declares_a_kind_with_its_contract(monkeypatch, tmp_path, fresh_registry):
    """A kind declared from a plugin's own module, with a documented
    contract, takes implementations from other plugins (validated after the
    declaration); a misspelled hook of it still fails loudly."""
    (tmp_path / "harness_toyfamily.py").write_text(FAMILY)
    (tmp_path / "harness_toyuser.py").write_text(USER)
    (tmp_path / "harness_toytypo.py").write_text(USER.replace("def register_corruptions",
                                                              "def register_corruptons"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_toyuser,harness_toyfamily")
    registry = fresh_registry()
    assert "corruptions" in registry.kinds()
    assert set(registry.components("corruptions")) == {"fgsm", "pgd"}
    assert registry.components("corruptions")["pgd"].plugin == "harness_toyuser"
    assert "twice" in registry.components("losses")
    doc = registry.pm.hook.register_corruptions.spec.function.__doc__
    assert doc.startswith("Register input corruptions.") and "x_bad" in doc
    assert registry.added_kinds["corruptions"] == "Register input corruptions"
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_toytypo,harness_toyfamily")
    with pytest.raises(ConfigError, match="unknown hook 'register_corruptons' "
                                          "\\(did you mean 'register_corruptions'\\?\\)"):
        fresh_registry()


def test_a_contract_must_document_the_kind(monkeypatch, tmp_path, fresh_registry):
    (tmp_path / "harness_nodoc.py").write_text(FAMILY.replace(
        '''    """Register input corruptions.  ``factory(**params)`` returns
    ``corrupt(x) -> x_bad``."""\n''', "    pass\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_nodoc")
    with pytest.raises(ConfigError, match="contract of kind 'corruptions' must be a function "
                                          "'register_corruptions\\(register\\)' whose docstring"):
        fresh_registry()


@pytest.mark.parametrize("order, blamed", [
    (("builtin", "third"), "third"), (("third", "builtin"), "third"),
    (("third", "other"), None),  # two third parties: either, named consistently
])
def test_duplicate_blames_the_non_builtin_whatever_the_load_order(order, blamed):
    import pluggy

    from harness import hookspecs
    from harness.plugins import DISTRIBUTION, PluginError, Registry

    src = """
        from harness import hookimpl
        def f():
            "x"
        @hookimpl
        def register_datasets(register):
            register("same", f)
        """
    dists = {"builtin": (DISTRIBUTION, "0.1.0"), "third": ("harness-third", "1.0"),
             "other": ("harness-other", "2.0")}
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    pm.harness_dists = {name: dists[name] for name in order}
    for name in order:
        pm.register(_module(name, src), name=name)
    with pytest.raises(PluginError) as err:
        Registry(pm)
    blamed = blamed or err.value.plugin
    assert err.value.plugin == blamed and blamed in order
    assert str(err.value).endswith(f"run without it with 'harness -p no:{blamed} ...'")
    for name in order:
        assert f"plugin {name!r} (distribution {dists[name][0]})" in str(err.value)
    assert set(Registry(pm, strict=False).broken) == {blamed}


def test_a_kind_in_a_message_is_singular():
    from harness.params import singular

    assert [singular(k) for k in ("losses", "datasets", "federated_strategies", "metrics",
                                  "hypothesis_classes", "pdes")] == \
        ["loss", "dataset", "federated_strategy", "metric", "hypothesis_class", "pde"]
