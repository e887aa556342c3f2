"""Every numeric parameter of a built-in component declares its valid range
in its signature (or is marked ``Unbounded`` on purpose), so a suite's
out-of-range value stops ``harness plan`` with one line instead of failing
inside every run."""

from __future__ import annotations

import textwrap
import typing
from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

from harness import ConfigError, Unbounded
from harness.cli import main
from harness.errors import MISSING
from harness.params import signature_params, validate_params
from harness.plugins import get_registry

BOUNDS = ("ge", "gt", "le", "lt")


def _bounded(meta) -> bool:
    """A ``Field(ge=..)``, an ``annotated_types.Ge`` or an ``Unbounded``."""
    if isinstance(meta, Unbounded):
        return True
    if any(getattr(meta, b, None) is not None for b in BOUNDS):
        return True
    return any(_bounded(m) for m in getattr(meta, "metadata", []))


def unranged(ann: Any, covered: bool = False) -> list[str]:
    """The numeric types in ``ann`` that no range or ``Unbounded`` covers."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        covered = covered or any(_bounded(m) for m in ann.__metadata__)
        return unranged(ann.__origin__, covered)
    if ann is bool or origin is Literal:
        return []
    if ann in (int, float):
        return [] if covered else [ann.__name__]
    return [name for arg in typing.get_args(ann) for name in unranged(arg, covered)]


def every_param():
    registry = get_registry()
    for kind in registry.kinds():
        for name, info in registry.components(kind).items():
            for p in info.params:
                yield kind, name, p


def test_the_checker_itself():
    assert unranged(float) == ["float"]
    assert unranged(int | None) == ["int"]
    assert unranged(list[float] | None) == ["float"]
    assert unranged(tuple[float, Annotated[float, Field(ge=0)]]) == ["float"]
    assert unranged(Annotated[float, Field(ge=0)] | None) == []
    assert unranged(list[Annotated[int, Field(ge=1)]]) == []
    assert unranged(Annotated[int, Unbounded("any")] | str) == []
    assert unranged(Literal[1, 2] | bool | str) == []


def test_every_numeric_parameter_declares_its_range():
    missing = [f"{kind}/{name}.{p.name}: {p.describe()}"
               for kind, name, p in every_param() if unranged(p.annotation)]
    assert not missing, ("numeric parameters without a range (Annotated[.., Field(ge=..)]) "
                         "or Unbounded(reason):\n" + "\n".join(missing))


def test_every_default_lies_in_its_declared_range():
    """A range that refuses its own default is a wrong range."""
    wrong = []
    for kind, name, p in every_param():
        if p.required or p.default is None:
            continue
        try:
            validate_params([p], False, {p.name: p.default}, "x", f"{kind} {name!r}")
        except ConfigError as exc:
            wrong.append(str(exc))
    assert not wrong, "\n".join(wrong)


def test_unbounded_is_shown_as_the_plain_type_and_validated_as_one():
    def f(shift: Annotated[float, Unbounded("any real")] = 0.0):
        """A component."""

    params, var_kw, _ = signature_params(f)
    assert params[0].describe() == "shift: float = 0.0"
    assert validate_params(params, var_kw, {"shift": "-3.5"}, "x", "c") == {"shift": -3.5}
    with pytest.raises(ConfigError, match="expects float"):
        validate_params(params, var_kw, {"shift": "left"}, "x", "c")


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "inf"])
def test_non_finite_numbers_are_refused_even_when_unbounded(value):
    def f(shift: Annotated[float, Unbounded("any real")] = 0.0,
          gamma: Annotated[float, Field(ge=0)] = 1.0, rate: float = 0.1):
        """A component."""

    params, var_kw, _ = signature_params(f)
    for key in ("shift", "gamma", "rate"):
        with pytest.raises(ConfigError, match=f"x.{key} = .*finite number"):
            validate_params(params, var_kw, {key: value}, "x", "c")


def test_a_field_may_allow_infinity_on_purpose():
    def f(limit: Annotated[float, Field(gt=0, allow_inf_nan=True)] = float("inf")):
        """A component."""

    params, var_kw, _ = signature_params(f)
    inf = float("inf")
    assert validate_params(params, var_kw, {"limit": inf}, "x", "c") == {"limit": inf}


SUITE = """\
name: r
seeds: 1
task: classification
datasets:
  - sklearn: iris
model: {name: mlp, hidden: [8]}
training:
  epochs: 1
  optimizer: {name: sgd, lr: 0.1}
loss: cross_entropy
methods:
  focal: {loss: {name: focal, gamma: 2.0}}
metrics: [accuracy]
"""


def plan(tmp_path, capsys, text: str):
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent(text))
    code = main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    return code, capsys.readouterr().err, str(suite)


def test_the_suite_plans_as_written(tmp_path, capsys):
    code, err, _ = plan(tmp_path, capsys, SUITE)
    assert code == 0, err


@pytest.mark.parametrize("old,new,line,path,value,words", [
    # the example: it used to fail inside every run with exit 1
    ("gamma: 2.0", "gamma: -3", 12, "methods.focal.loss.gamma", "-3",
     ["losses 'focal' parameter 'gamma' expects float (>= 0)", "greater than or equal to 0"]),
    ("gamma: 2.0", "gamma: .inf", 12, "methods.focal.loss.gamma", "inf", ["finite number"]),
    ("lr: 0.1", "lr: 0", 9, "training.optimizer.lr", "0", ["expects float (> 0)"]),
    ("lr: 0.1", "lr: .nan", 9, "training.optimizer.lr", "nan", ["finite number"]),
    ("hidden: [8]", "hidden: [8, 0]", 6, "model.hidden", "[8, 0]",
     ["expects list[int (>= 1)]", "greater than or equal to 1"]),
    ("sklearn: iris", "sklearn: iris\n    label_noise: {rate: 1.5}", 6,
     "datasets[0].label_noise.rate", "1.5", ["less than or equal to 1"]),
    ("gamma: 2.0", "alpha: 2", 12, "methods.focal.loss.alpha", "2",
     ["expects float (>= 0, <= 1) | None"]),
])
def test_out_of_range_values_stop_plan_with_one_line(tmp_path, capsys, old, new, line, path,
                                                     value, words):
    code, err, file = plan(tmp_path, capsys, SUITE.replace(old, new))
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {file}:{line}: {path} = {value}: "), err
    for word in words:
        assert word in err, (word, err)


def test_harness_list_shows_the_ranges(capsys):
    assert main(["list", "losses", "--json"]) == 0
    import json

    rows = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    gamma = {p["name"]: p for p in rows["focal"]["params"]}["gamma"]
    assert gamma["type"] == "float (>= 0)" and gamma["default"] == "2.0"
    alpha = {p["name"]: p for p in rows["aldr_kl"]["params"]}["alpha"]
    assert alpha["type"] == "float (> 1)"
    sgd = {p.name: p for p in get_registry().get("optimizers", "sgd").params}
    assert sgd["lr"].describe() == "lr: float (> 0) = 0.01"
    assert sgd["momentum"].describe() == "momentum: float (>= 0, < 1) = 0.9"


def test_missing_marker_is_distinct_from_a_default():
    """``Param.required`` still keys on MISSING once Annotated wraps the type."""
    def f(n: Annotated[int, Field(ge=1)], m: Annotated[int, Field(ge=1)] = 2):
        """A component."""

    params, _, _ = signature_params(f)
    assert [p.default for p in params] == [MISSING, 2]
    with pytest.raises(ConfigError, match="x.n = <missing>|needs parameter 'n'"):
        validate_params(params, False, {}, "x", "c")
