"""Plugin manager and component registry.

Built-in plugins and third-party packages are found the same way: through the
``harness`` entry-point group.  Each ``register_<kind>`` implementation is
called separately so every component records which plugin (and distribution
and version) supplied it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from harness import hookspecs
from harness.errors import MISSING, ConfigError
from harness.params import Param, did_you_mean, signature_params, singular, validate_params

ENTRY_POINT_GROUP = "harness"
DISTRIBUTION = "harness-bench"
#: Parameters of model factories that the task fills from the data.
HARNESS_FILLED = {"models": ("in_shape", "n_classes")}


@dataclass
class ComponentInfo:
    """A registered component: where it came from and how to build it."""

    kind: str
    name: str
    factory: Callable
    plugin: str
    dist: str | None = None
    version: str | None = None
    params: list[Param] = field(default_factory=list)
    var_kw: bool = False

    @property
    def description(self) -> str:
        """First line of the factory's docstring."""
        doc = (self.factory.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @property
    def provenance(self) -> str:
        """``dist==version`` or the plugin name when not from a distribution."""
        return f"{self.dist}=={self.version}" if self.dist else self.plugin

    def as_dict(self) -> dict:
        """JSON-ready view, as ``harness list --json`` prints it."""
        return {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "params": [
                {"name": p.name, "type": p.describe().split(":", 1)[1].split("=")[0].strip()
                 if ":" in p.describe() else "",
                 "default": None if p.required else repr(p.default), "required": p.required}
                for p in self.params
            ],
            "plugin": self.plugin,
            "distribution": self.dist,
            "version": self.version,
        }


def split_spec(spec: Any, path: str) -> tuple[str, dict]:
    """``"focal"`` or ``{"name": "focal", "gamma": 2}`` -> (name, params)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict):
        if "name" not in spec:
            raise ConfigError(path, spec, "a component mapping needs a 'name' key")
        params = {k: v for k, v in spec.items() if k != "name"}
        return str(spec["name"]), params
    raise ConfigError(path, spec, "expected a component name or a mapping with 'name'")


class Registry:
    """Components of every kind, keyed by name, with their provenance."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self._kinds: dict[str, dict[str, ComponentInfo]] = {}
        dists = getattr(pm, "harness_dists", {})
        for kind in hookspecs.KINDS:
            table: dict[str, ComponentInfo] = {}
            hook = getattr(pm.hook, f"register_{kind}")
            for impl in reversed(hook.get_hookimpls()):
                dist = dists.get(impl.plugin_name, (None, None))
                self._collect(kind, table, impl, dist)
            self._kinds[kind] = table

    def _collect(self, kind: str, table: dict, impl, dist) -> None:
        def register(name: str, factory: Callable) -> None:
            if name in table:
                other = table[name]
                raise ConfigError("", MISSING, f"{kind} component {name!r} is registered twice: "
                                  f"by plugin {other.plugin!r} and by plugin {impl.plugin_name!r}")
            params, var_kw = signature_params(factory, HARNESS_FILLED.get(kind, ()))
            table[name] = ComponentInfo(
                kind, name, factory, impl.plugin_name,
                dist[0], dist[1],
                params, var_kw,
            )

        impl.function(register=register)

    def kinds(self) -> list[str]:
        """All component kinds."""
        return list(self._kinds)

    def components(self, kind: str) -> dict[str, ComponentInfo]:
        """Name -> info for one kind; unknown kind raises ``ConfigError``."""
        if kind not in self._kinds:
            raise ConfigError("", kind, f"unknown component kind{did_you_mean(kind, self._kinds)};"
                              f" kinds: {', '.join(self._kinds)}")
        return self._kinds[kind]

    def get(self, kind: str, name: str, path: str = "") -> ComponentInfo:
        """The info for ``name``; unknown names raise with a suggestion."""
        table = self.components(kind)
        if name not in table:
            known = ", ".join(sorted(table)) or "none installed"
            raise ConfigError(path, name, f"unknown {singular(kind)} "
                              f"{name!r}{did_you_mean(name, table)}; known: {known}")
        return table[name]

    def check(self, kind: str, spec: Any, path: str) -> tuple[str, dict]:
        """Validate a component spec; return (name, coerced params)."""
        name, params = split_spec(spec, path)
        info = self.get(kind, name, f"{path}.name" if isinstance(spec, dict) else path)
        checked = validate_params(info.params, info.var_kw, params, path, f"{kind} {name!r}")
        for p in info.params:  # nested component specs (``params.Component``)
            if p.component and p.name in checked:
                inner, inner_params = self.check(p.component, checked[p.name],
                                                 f"{path}.{p.name}")
                checked[p.name] = {"name": inner, **inner_params}
        return name, checked

    def create(self, kind: str, spec: Any, path: str = "", **filled: Any) -> Any:
        """Validate ``spec`` and call the factory (``filled`` adds harness-filled
        arguments such as a model's ``in_shape``)."""
        name, params = self.check(kind, spec, path or kind)
        obj = self.get(kind, name).factory(**filled, **params)
        return obj


def _blocked_from_env() -> set[str]:
    return {p.strip() for p in os.environ.get("HARNESS_BLOCK_PLUGINS", "").split(",") if p.strip()}


def make_plugin_manager(blocked: set[str] | None = None) -> pluggy.PluginManager:
    """Build the plugin manager: hookspecs, entry points, ``HARNESS_PLUGINS``.

    ``HARNESS_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the built-in plugins (the
    entry points of harness's own distribution); ``blocked`` (``-p no:NAME``)
    and ``HARNESS_BLOCK_PLUGINS=a,b`` keep named plugins out;
    ``HARNESS_PLUGINS=mod1,mod2`` registers importable modules as plugins.
    Misspelled hook names in any plugin fail here (``check_pending``).
    The distribution of each plugin is kept in ``pm.harness_dists``."""
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    pm.harness_dists = {}
    for name in (blocked or set()) | _blocked_from_env():
        pm.set_blocked(name)
    builtin_only = bool(os.environ.get("HARNESS_DISABLE_PLUGIN_AUTOLOAD"))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist_name = ep.dist.metadata["Name"] if ep.dist is not None else None
        if builtin_only and dist_name != DISTRIBUTION:
            continue
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        pm.register(ep.load(), name=ep.name)
        pm.harness_dists[ep.name] = (dist_name, ep.dist.version if ep.dist else None)
    for modname in os.environ.get("HARNESS_PLUGINS", "").split(","):
        modname = modname.strip()
        if modname and not pm.is_blocked(modname) and pm.get_plugin(modname) is None:
            pm.register(importlib.import_module(modname), name=modname)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = getattr(exc.plugin, "__name__", repr(exc.plugin))
        raise ConfigError("", MISSING, f"plugin {name}: {exc}") from None
    return pm


_REGISTRY: Registry | None = None


def get_registry(blocked: set[str] | None = None, reload: bool = False) -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None or reload or blocked:
        _REGISTRY = Registry(make_plugin_manager(blocked))
    return _REGISTRY
