"""Suites: YAML files naming datasets, methods, sweeps and seeds.

``load_suite`` reads a suite, validates the suite-level keys with pydantic,
normalises dataset entries and checks every method's merged config through
its task plugin, so that any mistake is reported before a run starts, as one
``ConfigError`` naming the file, line, key path and value.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.data import is_path_param, resolve_paths
from harness.errors import ConfigError
from harness.params import did_you_mean, singular
from harness.yamlsource import YamlSource, load_yaml, parse_path

#: Keys of a suite that are not part of a method's config.
SUITE_KEYS = ("name", "description", "task", "seeds", "datasets", "methods", "sweep",
              "metrics", "rank_by", "device")
#: Keys of a dataset entry that are neither a source nor a transform.
DATASET_KEYS = ("label", "split")
#: ``device:`` values: auto picks cuda, then mps, then cpu.
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"


class SuiteHeader(BaseModel):
    """The suite-level keys; everything else is the base config of methods."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    task: str = "classification"
    seeds: int | list[int] = 3
    datasets: list[dict[str, Any]] = Field(min_length=1)
    methods: dict[str, dict[str, Any] | None] = Field(min_length=1)
    sweep: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)
    metrics: list[str | dict[str, Any]] = Field(default_factory=lambda: ["accuracy"])
    rank_by: str | None = None
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if isinstance(v, int):
            if v < 1:
                raise ValueError("the number of seeds must be at least 1")
            return v
        if not v:
            raise ValueError("the seed list is empty")
        if any(s < 0 for s in v):
            raise ValueError("seeds must be non-negative integers")
        if len(set(v)) != len(v):
            raise ValueError("the seed list has duplicates")
        return v


@dataclass
class Method:
    """One leaderboard row: its name, merged config and sweep points."""

    name: str
    config: dict
    points: list[dict] = field(default_factory=lambda: [{}])
    components: list = field(default_factory=list)


@dataclass
class Suite:
    """A validated suite, ready for planning."""

    name: str
    file: str
    task: str
    seeds: list[int]
    datasets: list[dict]
    methods: list[Method]
    #: Logged metric names (``ece``, ``ece:bins-25``), in suite order.
    metrics: list[str]
    rank_by: str
    description: str = ""
    source: YamlSource | None = None
    device: str = "auto"
    #: Logged metric name -> normalised component spec ``{"name": .., **params}``.
    metric_specs: dict[str, dict] = field(default_factory=dict)


def _pydantic_error(src: YamlSource, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in (
        "int", "list[int]", "dict[str,any]", "function-after[_seeds(), int]")))
    # Union branches show up as pseudo-keys in loc; keep only real ones.
    loc = tuple(p for p in loc if isinstance(p, int) or "[" not in str(p))
    value = _get(src.data, loc)
    msg = err["msg"]
    if err["type"] == "missing":
        msg = f"required key {loc[-1]!r} is missing"
    elif err["type"] in ("too_short",):
        msg = f"{loc[-1]!r} must not be empty"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return src.error(loc, value, msg)


def _get(data: Any, path) -> Any:
    from harness.errors import MISSING

    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return MISSING
    return data


def merge(base: Any, override: Any) -> Any:
    """Deep-merge ``override`` into ``base``.  A mapping with a ``name`` key is
    a whole component and replaces the base instead of merging, so one
    method's loss parameters never leak into another loss."""
    if isinstance(base, dict) and isinstance(override, dict) and "name" not in override:
        out = copy.deepcopy(base)
        for k, v in override.items():
            out[k] = merge(out[k], v) if k in out else copy.deepcopy(v)
        return out
    if isinstance(base, str) and isinstance(override, dict) and "name" not in override:
        # `optimizer: adam` in the base, `optimizer.lr: 0.1` in a method
        return {"name": base, **copy.deepcopy(override)}
    return copy.deepcopy(override)


def set_dotted(config: dict, dotted: str, value: Any) -> dict:
    """Return a copy of ``config`` with ``a.b.c`` set; a bare component name
    on the way (``loss: focal``) becomes ``{name: focal}`` first."""
    out = copy.deepcopy(config)
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if isinstance(nxt, str):
            nxt = {"name": nxt}
        elif not isinstance(nxt, dict):
            nxt = {}
        node[part] = nxt
        node = nxt
    node[parts[-1]] = value
    return out


def _expand_dotted(override: dict) -> dict:
    out: dict = {}
    for key, value in override.items():
        part = set_dotted({}, key, value) if "." in str(key) else {key: value}
        out = merge(out, part)
    return out


def load_suite(file: str | Path, registry=None) -> Suite:
    """Load and fully validate a suite file.  Raises ``ConfigError``."""
    from harness.plugins import get_registry

    registry = registry or get_registry()
    src = load_yaml(file)
    if not isinstance(src.data, dict):
        raise src.error((), src.data, "a suite must be a YAML mapping")
    try:
        header = SuiteHeader.model_validate(src.data)
    except ValidationError as exc:
        raise _pydantic_error(src, exc) from None

    try:
        task_info = registry.get("tasks", header.task, "task")
    except ConfigError as exc:
        raise src.error(("task",), header.task, exc.message) from None
    task = task_info.factory()
    base = {k: v for k, v in src.data.items() if k not in SUITE_KEYS}
    seeds = list(range(header.seeds)) if isinstance(header.seeds, int) else header.seeds
    datasets = [d for i, entry in enumerate(header.datasets)
                for d in normalize_dataset(src, i, entry, registry)]
    labels = [d["label"] for d in datasets]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            raise src.error(("datasets", i), label, f"dataset label {label!r} is used twice; "
                            "give one of them a distinct 'label:'")

    for name in header.sweep:
        if name not in header.methods:
            raise src.error(("sweep", name), name, f"sweep names method {name!r} which is not "
                            f"in methods{did_you_mean(name, header.methods)}")
    metric_specs = _metric_specs(src, registry, header.metrics, header.task, task)
    names = list(metric_specs)
    rank_by = header.rank_by or names[0]
    if rank_by not in names:
        raise src.error(("rank_by",), rank_by, f"rank_by must be one of the suite's metrics "
                        f"({', '.join(names)}){did_you_mean(rank_by, names)}")

    methods = []
    for name, override in header.methods.items():
        override = override or {}
        merged = merge(base, _expand_dotted(override))
        used: list = []
        config = _validate_config(src, task, registry, merged, override, ("methods", name), used,
                                  names)
        points = [{}]
        for key, values in header.sweep.get(name, {}).items():
            if not values:
                raise src.error(("sweep", name, key), values, "a sweep needs at least one value")
            points = [{**p, key: v} for p in points for v in values]
        for point in points:
            if point:
                swept = config
                for key, v in point.items():
                    swept = set_dotted(swept, key, v)
                _validate_config(src, task, registry, swept, {}, ("sweep", name), used, names)
        methods.append(Method(name, config, points, [list(c) for c in sorted(set(used))]))

    return Suite(header.name, str(file), header.task, seeds, datasets, methods,
                 names, rank_by, header.description, src, header.device, metric_specs)


def _metric_specs(src, registry, metrics: list, task_name: str, task) -> dict[str, dict]:
    """Validate the suite's metrics; return logged name -> normalised spec.
    A metric needing an input the task does not offer is an error."""
    from harness.metrics import metric_inputs, metric_label

    offered = tuple(getattr(task, "metric_inputs", ()))
    out: dict[str, dict] = {}
    for i, spec in enumerate(metrics):
        name, params = _check_component(src, registry, "metrics", spec, ("metrics", i))
        label = metric_label(name, params)
        if label in out:
            raise src.error(("metrics", i), spec, f"metric {label!r} is listed twice")
        needed = metric_inputs(registry.get("metrics", name).factory)
        missing = [k for k in needed if k not in offered]
        if missing:
            raise src.error(("metrics", i), spec, f"metric {name!r} needs "
                            f"{', '.join(missing)}, which task {task_name!r} does not offer; "
                            f"it offers: {', '.join(offered) or 'nothing'}")
        out[label] = {"name": name, **params}
    return out


def _check_component(src, registry, kind, spec, path):
    try:
        return registry.check(kind, spec, "")
    except ConfigError as exc:
        sub = tuple(parse_path(exc.path)) if exc.path else ()
        raise src.error((*path, *sub), exc.value, exc.message) from None


def _validate_config(src: YamlSource, task, registry, merged: dict, override: dict, where,
                     used: list, metrics: list[str]):
    """Run the task's validation; locate errors in the method override when the
    offending key came from it, else in the suite's base config.  Every
    component the task checks is appended to ``used`` as (kind, name)."""

    def check(kind, spec, path):
        name, params = registry.check(kind, spec, path)
        used.append((kind, name))
        return name, params

    check.metrics = list(metrics)

    try:
        return task.validate(merged, check)
    except ConfigError as exc:
        parts = parse_path(exc.path)
        from_override = bool(parts) and parts[0] in _expand_dotted(override)
        path = (*where, *parts) if from_override or where[0] == "sweep" else parts
        raise src.error(path, exc.value, exc.message) from None


def normalize_dataset(src: YamlSource, i: int, entry: dict, registry) -> list[dict]:
    """``{sklearn: digits, one_vs_rest: 0}`` -> the normalised entries planning
    and tasks use: source, params, transforms, split, label, base_dir.

    Usually one entry; a source whose factory has ``expand`` (a filter over a
    collection) gives one entry per dataset it selects.  ``base_dir`` is the
    suite's folder: ``pathlib.Path`` parameters are resolved against it when
    the data is loaded (it is not part of a run's identity)."""
    sources = registry.components("datasets")
    transforms = registry.components("transforms")
    path = ("datasets", i)
    if not isinstance(entry, dict):
        raise src.error(path, entry, "a dataset entry must be a mapping such as "
                        "'{sklearn: breast_cancer}'")
    found = [k for k in entry if k in sources]
    if len(found) != 1:
        unknown = [k for k in entry if k not in sources and k not in transforms
                   and k not in DATASET_KEYS]
        if unknown:
            key = unknown[0]
            raise src.error((*path, key), entry[key], f"unknown dataset source or transform "
                            f"{key!r}{did_you_mean(key, [*sources, *transforms, *DATASET_KEYS])}; "
                            f"sources: {', '.join(sources)}; transforms: {', '.join(transforms)}")
        msg = ("a dataset entry needs one source key" if not found else
               f"a dataset entry has one source key, found {', '.join(found)}")
        raise src.error(path, entry, f"{msg} (one of {', '.join(sources) or 'none installed'})")
    source = found[0]
    info = sources[source]
    params = _component_params(src, registry, "datasets", source, entry[source], (*path, source))
    base_dir = str(Path(src.file).resolve().parent) if getattr(src, "file", None) else "."
    out_transforms = []
    split = {"val": 0.2, "test": 0.2}
    label = None
    for key, value in entry.items():
        if key == source:
            continue
        if key == "label":
            label = str(value)
        elif key == "split":
            split = _split(src, (*path, key), value)
        elif key in transforms:
            tparams = _component_params(src, registry, "transforms", key, value, (*path, key))
            _build_transform(src, transforms[key], tparams, value, (*path, key))
            out_transforms.append([key, tparams])
        else:
            raise src.error((*path, key), value, f"unknown dataset key {key!r}"
                            f"{did_you_mean(key, [*transforms, *DATASET_KEYS])}; transforms: "
                            f"{', '.join(transforms) or 'none installed'}")
    expand = getattr(info.factory, "expand", None)
    if expand is not None:
        expanded = _call_source_hook(src, (*path, source), entry[source], expand, params)
        if expanded is not None:
            if label is not None and len(expanded) > 1:
                raise src.error((*path, "label"), label, f"this {source!r} entry stands for "
                                f"{len(expanded)} datasets; a label can name only one")
            if not expanded:
                raise src.error((*path, source), entry[source], f"no {source!r} dataset "
                                f"matches this selection")
            return [_one_dataset(src, path, info, source, dict(p), out_transforms, split, label,
                                 base_dir) for p in expanded]
    return [_one_dataset(src, path, info, source, params, out_transforms, split, label, base_dir)]


def _one_dataset(src, path, info, source, params, transforms, split, label, base_dir) -> dict:
    for p in info.params:  # paths stay as written (run keys do not depend on the checkout)
        if p.name in params and is_path_param(p.annotation) and params[p.name] is not None:
            params[p.name] = str(params[p.name])
    check = getattr(info.factory, "check", None)
    if check is not None:
        _call_source_hook(src, (*path, source), params, check, resolve_paths(info, params,
                                                                             base_dir))
    if label is None:
        label = _default_label(info, source, params, transforms)
    return {"source": source, "params": params, "transforms": [list(t) for t in transforms],
            "split": dict(split), "label": label, "base_dir": base_dir}


def _build_transform(src, info, params: dict, written, path) -> None:
    """Build a transform once at validation: its factory checks its ranges
    (``label_noise: {rate: 1.5}``), and a transform is cheap to build."""
    try:
        info.factory(**params)
    except (ValueError, ConfigError) as exc:
        message = exc.message if isinstance(exc, ConfigError) else str(exc)
        raise src.error(path, written, message) from None


def _call_source_hook(src, path, written, hook, params):
    """Call a source's ``expand``/``check``; its ConfigError points into the entry."""
    try:
        return hook(params)
    except ConfigError as exc:
        sub = tuple(parse_path(exc.path)) if exc.path and isinstance(written, dict) else ()
        raise src.error((*path, *sub), exc.value, exc.message) from None


def _component_params(src, registry, kind, name, value, path) -> dict:
    """Validate a dataset source's or transform's value: a mapping of
    parameters, or a scalar for the factory's first parameter."""
    from harness.params import validate_params

    info = registry.get(kind, name)
    if isinstance(value, dict):
        params = value
    elif not info.params:
        if value is None or value is True:
            return {}
        raise src.error(path, value, f"{singular(kind)} {name!r} takes no value")
    else:
        params = {info.params[0].name: value}
    try:
        return validate_params(info.params, info.var_kw, params, "", f"{singular(kind)} {name!r}")
    except ConfigError as exc:
        key = parse_path(exc.path)
        # A scalar stands for the first parameter: point at the entry itself.
        sub = key if isinstance(value, dict) else ()
        raise src.error((*path, *sub), exc.value, exc.message) from None


def _split(src, path, value) -> dict:
    if not isinstance(value, dict) or set(value) - {"val", "test"}:
        raise src.error(path, value, "split must be a mapping with 'val' and/or 'test' fractions")
    out = {"val": 0.2, "test": 0.2, **value}
    for k, v in out.items():
        if not isinstance(v, (int, float)) or not 0 < v < 1:
            raise src.error((*path, k), v, "a split fraction must be between 0 and 1")
    if out["val"] + out["test"] >= 1:
        raise src.error(path, value, "val + test fractions must leave data for training")
    return out


def _default_label(info, source: str, params: dict, transforms: list) -> str:
    """The source's own ``label(params)``, else ``source-value`` for a single
    scalar parameter, else the source and a short hash of its parameters;
    then ``+transform=values`` for each transform."""
    import hashlib
    import json

    own = getattr(info.factory, "label", None)
    if own is not None:
        label = str(own(params))
    elif len(params) == 1 and isinstance(next(iter(params.values())), (int, str)):
        label = f"{source}-{next(iter(params.values()))}"
    elif params:
        digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
        label = f"{source}-{digest[:6]}"
    else:
        label = source
    for name, tparams in transforms:
        vals = ",".join(str(v) for v in tparams.values())
        label += f"+{name}{'=' + vals if vals else ''}"
    return label
