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
from harness.errors import MISSING, ConfigError, UserError
from harness.metrics import better_word
from harness.params import Param, did_you_mean, signature_params, singular, validate_params

ENTRY_POINT_GROUP = "harness"
DISTRIBUTION = "harness-bench"


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
    #: Parameters the task fills from the data (``harness.FromData``).
    from_data: list[str] = field(default_factory=list)

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
                {"name": p.name, "type": p.describe().partition(": ")[2].partition(" = ")[0]
                 if ":" in p.describe() else "",
                 "default": None if p.required else repr(p.default), "required": p.required}
                for p in self.params
            ],
            "plugin": self.plugin,
            "distribution": self.dist,
            "version": self.version,
            **({"better": better_word(self.factory)} if self.kind == "metrics" else {}),
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
    """Components of every kind, keyed by name, with their provenance.

    ``strict=False`` leaves out a plugin whose registrations fail (a
    duplicate name, a metric without a direction) and records it in
    ``broken`` (plugin -> (distribution, message)) instead of raising."""

    def __init__(self, pm: pluggy.PluginManager, strict: bool = True):
        self.pm = pm
        self.strict = strict
        self.broken: dict[str, tuple[str | None, str]] = {}
        self._kinds: dict[str, dict[str, ComponentInfo]] = {}
        #: Kind -> description, for kinds that families declare (``register_kinds``).
        self.added_kinds: dict[str, str] = dict(getattr(pm, "harness_kinds", {}))
        dists = getattr(pm, "harness_dists", {})
        for kind in [*hookspecs.CORE_KINDS, *self.added_kinds]:
            table: dict[str, ComponentInfo] = {}
            hook = getattr(pm.hook, f"register_{kind}")
            for impl in reversed(hook.get_hookimpls()):
                if impl.plugin_name in self.broken:
                    continue
                self._collect(kind, table, impl, dists.get(impl.plugin_name, (None, None)))
            self._kinds[kind] = table
        for name in self.broken:  # a plugin left out leaves no component behind
            for table in self._kinds.values():
                for key in [k for k, info in table.items() if info.plugin == name]:
                    del table[key]

    def _collect(self, kind: str, table: dict, impl, dist) -> None:
        def fail(error: PluginError) -> None:
            if self.strict:
                raise error
            self.broken.setdefault(error.plugin, (error.dist, error.message))

        def register(name: str, factory: Callable) -> None:
            if name in table:
                error = _duplicate(kind, name, table[name], impl.plugin_name, dist[0])
                fail(error)
                if error.plugin == impl.plugin_name:
                    return
            better = getattr(factory, "greater_is_better", "undeclared")
            if kind == "metrics" and better is not None and not isinstance(better, bool):
                return fail(PluginError(impl.plugin_name, dist[0],
                                        f"metric {name!r} does not say whether greater is "
                                        f"better: decorate its factory with @harness.metric("
                                        f"inputs=..., greater_is_better=True, False or None)"))
            if kind == "metrics" and not isinstance(getattr(factory, "inputs", None), tuple):
                return fail(PluginError(impl.plugin_name, dist[0],
                                        f"metric {name!r} does not declare its inputs: decorate "
                                        f"its factory with @harness.metric(inputs=(...), "
                                        f"greater_is_better=...)"))
            params, var_kw, from_data = signature_params(factory)
            table[name] = ComponentInfo(kind, name, factory, impl.plugin_name, dist[0], dist[1],
                                        params, var_kw, from_data)

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
        info = self.get(kind, name, _join(path, "name") if isinstance(spec, dict) else path)
        checked = validate_params(info.params, info.var_kw, params, path, f"{kind} {name!r}")
        for p in info.params:  # nested component specs (``params.Component``)
            if p.component and p.name in checked:
                inner, inner_params = self.check(p.component, checked[p.name],
                                                 _join(path, p.name))
                checked[p.name] = {"name": inner, **inner_params}
        return name, checked

    def create(self, kind: str, spec: Any, path: str = "", **offered: Any) -> Any:
        """Validate ``spec`` and call the factory.

        ``offered``: data-derived values a task offers (``in_shape=...``);
        the factory receives those it declares with ``harness.FromData``, and
        one it declares but the task does not offer is an error."""
        name, params = self.check(kind, spec, path or kind)
        info = self.get(kind, name)
        missing = [p for p in info.from_data if p not in offered]
        if missing:
            raise ConfigError(path or kind, name, f"{singular(kind)} {name!r} needs "
                              f"{', '.join(map(repr, missing))} from the data, which this task "
                              f"does not provide (it offers: {', '.join(offered) or 'nothing'})")
        obj = info.factory(**{k: offered[k] for k in info.from_data}, **params)
        if kind == "metrics":
            obj = _declared(obj, info.factory)
        return obj


def _declared(fn: Callable, factory: Callable) -> Callable:
    """The metric callable carrying its factory's declaration (inputs,
    direction: what validation checked).  A callable that already carries
    another declaration (one function returned by two factories) is wrapped,
    so one factory's create never changes what another's callable says."""
    wanted = {attr: getattr(factory, attr) for attr in ("inputs", "greater_is_better")}
    if all(getattr(fn, a, None) == v for a, v in wanted.items()):
        return fn
    if not any(hasattr(fn, a) for a in wanted):
        try:
            for attr, value in wanted.items():
                setattr(fn, attr, value)
            return fn
        except AttributeError:  # a builtin or slotted callable
            pass
    inner = fn

    def metric(*args, **kwargs):
        return inner(*args, **kwargs)

    metric.__name__ = getattr(fn, "__name__", "metric")
    metric.__doc__ = getattr(fn, "__doc__", None)
    for attr, value in wanted.items():
        setattr(metric, attr, value)
    return metric


def _join(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the top of a spec (no leading dot)."""
    return f"{path}.{key}" if path else key


class PluginError(ConfigError):
    """A plugin that cannot be used: it failed to import, implements an
    unknown hook, or registers a name another plugin already has.  One line
    naming the plugin, its distribution and the way to skip it."""

    def __init__(self, plugin: str, dist: str | None, message: str, module: str | None = None):
        self.plugin = plugin
        self.dist = dist
        where = f"plugin {plugin!r}"
        if dist or module:
            where += " (" + ", ".join(x for x in (
                f"distribution {dist}" if dist else "", f"module {module}" if module else "")
                if x) + ")"
        super().__init__("", MISSING, f"{where}: {message}; run without it with "
                         f"'harness -p no:{plugin} ...'")


def _duplicate(kind: str, name: str, first: ComponentInfo, plugin: str, dist: str | None
               ) -> PluginError:
    """The error for ``name`` registered by ``first`` and again by ``plugin``.
    It blames (and its hint blocks) the newcomer: the plugin that is not
    harness's own (whichever loaded first), else ``plugin``, so the hint
    never drops a built-in for a third-party package."""
    def who(p: str, d: str | None) -> str:
        return f"plugin {p!r} (distribution {d})" if d else f"plugin {p!r}"

    message = (f"{kind} component {name!r} is registered twice: by {who(first.plugin, first.dist)}"
               f" and by {who(plugin, dist)}")
    if dist == DISTRIBUTION and first.dist != DISTRIBUTION:
        return PluginError(first.plugin, first.dist, message)
    return PluginError(plugin, dist, message)


def _blocked_from_env() -> set[str]:
    return {p.strip() for p in os.environ.get("HARNESS_BLOCK_PLUGINS", "").split(",") if p.strip()}


def make_plugin_manager(blocked: set[str] | None = None, *, strict: bool = True
                        ) -> pluggy.PluginManager:
    """Build the plugin manager: hookspecs, entry points, ``HARNESS_PLUGINS``,
    then the component kinds plugins add (``register_kinds``).

    ``HARNESS_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the built-in plugins (the
    entry points of harness's own distribution); ``blocked`` (``-p no:NAME``)
    and ``HARNESS_BLOCK_PLUGINS=a,b`` keep named plugins out, and a blocked
    name that no plugin has is an error; ``HARNESS_PLUGINS=mod1,mod2``
    registers importable modules as plugins.  A plugin that fails to import
    or implements an unknown hook raises ``PluginError`` naming it; with
    ``strict=False`` it is left out and recorded in ``pm.harness_broken``
    (``harness plugins`` lists it).  ``pm.harness_dists`` maps plugin name ->
    (distribution, version)."""
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    pm.harness_dists = {}
    pm.harness_broken = {}
    pm.harness_kinds = {}
    blocked = set(blocked or set()) | _blocked_from_env()
    for name in blocked:
        pm.set_blocked(name)

    def failed(name: str, dist: str | None, module: str, exc: BaseException) -> None:
        error = PluginError(name, dist, f"failed to load: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}", module)
        if strict:
            raise error from None
        pm.harness_broken[name] = (dist, module, error.message)

    seen: set[str] = set()
    builtin_only = bool(os.environ.get("HARNESS_DISABLE_PLUGIN_AUTOLOAD"))
    # (name, version) per distribution: each read parses its METADATA file,
    # and one distribution holds many entry points (harness's own: ~40)
    dists: dict = {}

    def dist_of(ep) -> tuple[str | None, str | None]:
        if ep.dist is None:
            return None, None
        key = str(getattr(ep.dist, "_path", id(ep.dist)))
        if key not in dists:
            meta = ep.dist.metadata
            dists[key] = (meta["Name"], meta["Version"])
        return dists[key]

    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist_name, dist_version = dist_of(ep)
        if builtin_only and dist_name != DISTRIBUTION:
            continue
        seen.add(ep.name)
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
        except Exception as exc:
            failed(ep.name, dist_name, ep.value, exc)
            continue
        pm.register(module, name=ep.name)
        pm.harness_dists[ep.name] = (dist_name, dist_version)
    for modname in os.environ.get("HARNESS_PLUGINS", "").split(","):
        modname = modname.strip()
        if not modname:
            continue
        seen.add(modname)
        if pm.is_blocked(modname) or pm.get_plugin(modname) is not None:
            continue
        try:
            pm.register(importlib.import_module(modname), name=modname)
        except Exception as exc:
            failed(modname, None, modname, exc)
    unknown = sorted(blocked - seen)
    if unknown:
        raise UserError(f"-p no:{unknown[0]}: no plugin named {unknown[0]!r}"
                        f"{did_you_mean(unknown[0], seen)}; plugins: {', '.join(sorted(seen))}")
    _add_kinds(pm, strict)
    _check_hooks(pm, strict)
    if not strict:
        _leave_out_bad_registrations(pm)
    return pm


def _leave_out_bad_registrations(pm: pluggy.PluginManager) -> None:
    """Record (in ``pm.harness_broken``) and unregister the plugins whose
    registrations fail (a component name another plugin has, a metric
    without a direction), so ``harness plugins`` marks them."""
    for name, (dist, message) in Registry(pm, strict=False).broken.items():
        plugin = pm.get_plugin(name)
        pm.harness_broken[name] = (dist, getattr(plugin, "__name__", None), message)
        if plugin is not None:
            pm.unregister(plugin)


def _add_kinds(pm: pluggy.PluginManager, strict: bool) -> None:
    """Ask plugins for the component kinds they declare, with their
    contracts, and declare a ``register_<kind>`` hook for each (pytest's
    ``pytest_addhooks`` idea).  A plugin whose declaration is wrong is an
    error (or, not strict, recorded as broken and left out)."""
    added: dict[str, tuple[str, str, Callable]] = {}
    for impl in reversed(pm.hook.register_kinds.get_hookimpls()):
        dist = pm.harness_dists.get(impl.plugin_name, (None, None))[0]

        def register(kind: str, contract: str | Callable = "", _plugin=impl.plugin_name,
                     _dist=dist) -> None:
            if not str(kind).isidentifier():
                raise PluginError(_plugin, _dist, f"component kind {kind!r} is not an identifier")
            if kind in hookspecs.CORE_KINDS or kind in added:
                owner = ("harness" if kind in hookspecs.CORE_KINDS
                         else f"plugin {added[kind][0]!r}")
                raise PluginError(_plugin, _dist, f"component kind {kind!r} already exists "
                                  f"(declared by {owner})")
            added[kind] = (_plugin, *_kind_spec(kind, contract, _plugin, _dist))

        try:
            impl.function(register=register)
        except PluginError as error:
            if strict:
                raise
            pm.harness_broken[impl.plugin_name] = (dist, getattr(impl.plugin, "__name__", None),
                                                   error.message)
            for kind in [k for k, v in added.items() if v[0] == impl.plugin_name]:
                del added[kind]
            pm.unregister(impl.plugin)
    if not added:
        return
    # by declaring plugin, so `harness list` shows a family's kinds together
    # whatever order the entry points load in
    added = dict(sorted(added.items(), key=lambda item: item[1][0]))
    namespace = {f"register_{kind}": spec for kind, (_, _, spec) in added.items()}
    pm.add_hookspecs(type("AddedKinds", (), namespace))
    pm.harness_kinds = {kind: desc for kind, (_, desc, _) in added.items()}


def _kind_spec(kind: str, contract: str | Callable, plugin: str, dist: str | None
               ) -> tuple[str, Callable]:
    """(description, hookspec) of a declared kind.  ``contract`` is a
    function ``(register)`` whose docstring is the contract (the family's
    ``register_<kind>`` in its ``hookspecs`` module), or a one-line
    description."""
    import inspect

    if callable(contract):
        params = list(inspect.signature(contract).parameters)
        doc = inspect.getdoc(contract) or ""
        if params != ["register"] or not doc:
            raise PluginError(plugin, dist, f"the contract of kind {kind!r} must be a function "
                              f"'register_{kind}(register)' whose docstring documents it")
        first = " ".join(doc.split("\n\n")[0].split())
        description = first.split(".  ")[0].split(". ")[0]
        doc = contract.__doc__
    else:
        description = str(contract)
        doc = (f"Register {kind} (a kind declared by plugin {plugin!r}): "
               f"{description}").rstrip(": ")

    def spec(register):
        pass

    # a fresh function: the family's own may share its name with a hookimpl
    spec.__name__ = spec.__qualname__ = f"register_{kind}"
    spec.__doc__ = doc
    return description, hookspecs.hookspec(spec)


def _check_hooks(pm: pluggy.PluginManager, strict: bool) -> None:
    """A hook implementation whose name no spec declares is a misspelling
    (pluggy's ``check_pending``): name the plugin and suggest the closest hook."""
    hooks = {name: caller for name, caller in vars(pm.hook).items() if not name.startswith("_")}
    declared = [name for name, caller in hooks.items() if caller.has_spec()]
    for name, caller in hooks.items():
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook or pm.get_plugin(impl.plugin_name) is None:
                continue
            dist = pm.harness_dists.get(impl.plugin_name, (None, None))[0]
            error = PluginError(impl.plugin_name, dist,
                                f"unknown hook {name!r}{did_you_mean(name, declared)}",
                                getattr(impl.plugin, "__name__", None))
            if strict:
                raise error
            pm.harness_broken[impl.plugin_name] = (dist, getattr(impl.plugin, "__name__", None),
                                                   error.message)
            pm.unregister(impl.plugin)


_REGISTRY: Registry | None = None


def get_registry(blocked: set[str] | None = None, reload: bool = False) -> Registry:
    """The process-wide registry, built on first use.  A broken plugin raises
    ``PluginError`` (one line naming it, with the ``-p no:NAME`` hint)."""
    global _REGISTRY
    if _REGISTRY is None or reload or blocked:
        _REGISTRY = Registry(make_plugin_manager(blocked))
    return _REGISTRY
