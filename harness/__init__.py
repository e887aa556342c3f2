"""harness: a plugin-based benchmark harness for training methods.

Public API (kept import-light so ``harness --help`` starts fast):

- ``hookimpl``: marker for plugin hook implementations.
- ``create(kind, spec)``: build one registered component from a name or a
  ``{"name": ..., **params}`` mapping, with the same validation as a suite.
- ``components(kind)``: name -> ``ComponentInfo`` for one kind.
- ``ConfigError``, ``Diverged``: exceptions plugins raise.
- ``Component(kind)``: ``Annotated`` marker for a factory parameter whose value
  is a nested component spec (validated with the suite).
- ``FromData``: ``Annotated`` marker for a factory parameter the task fills
  from the data (a model's ``in_shape``), not the suite.
- ``Unbounded(reason)``: ``Annotated`` marker for a numeric factory parameter
  that takes any value on purpose (every other number declares its range).
- ``metric(inputs=..., greater_is_better=...)``: declares a metric factory.
- ``run_suite(path, ...)``, ``build_report(suite_or_experiment, ...)``: what
  ``harness run`` and ``harness report`` do, from Python (``harness.api``,
  imported on first use).
"""

from __future__ import annotations

import pluggy

from harness.errors import ConfigError, Diverged, UserError
from harness.metrics import metric
from harness.params import Component, FromData, Unbounded

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("harness")

__all__ = [
    "Component",
    "ConfigError",
    "Diverged",
    "FromData",
    "Unbounded",
    "UserError",
    "__version__",
    "build_report",
    "components",
    "create",
    "hookimpl",
    "metric",
    "run_suite",
]

#: Names served from ``harness.api`` on first access (``__getattr__``).
_API = ("run_suite", "build_report", "SuiteSummary")


def __getattr__(name: str):
    # importing harness.api only when used keeps `harness --help` fast
    if name in _API:
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def create(kind: str, spec):
    """Build one component of ``kind`` from ``spec`` (a name or a mapping with
    ``name`` and parameters), e.g. ``create("losses", {"name": "focal",
    "gamma": 2.0})``.  Unknown names or parameters raise ``ConfigError``."""
    from harness.plugins import get_registry

    return get_registry().create(kind, spec)


def components(kind: str) -> dict:
    """Map each registered name of ``kind`` to its ``ComponentInfo``
    (description, parameters, plugin, distribution, version)."""
    from harness.plugins import get_registry

    return get_registry().components(kind)
