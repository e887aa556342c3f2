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
from harness.errors import MISSING, ConfigError
from harness.params import SUITE_KEYS, did_you_mean, reject_boolean_numbers, singular
from harness.yamlsource import YamlSource, load_yaml, parse_path

#: Keys of a suite that are not part of a method's config.
#: The largest ``seeds: N`` a suite may ask for.
MAX_SEEDS = 100_000

#: ``device:`` values: auto picks cuda, then mps, then cpu.
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"


class SuiteHeader(BaseModel):
    """The suite-level keys; everything else is the base config of methods."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    task: str | None = None
    seeds: int | list[int] = 3
    datasets: list[dict[str, Any]] = Field(min_length=1)
    methods: dict[str, dict[str, Any] | None] = Field(min_length=1)
    sweep: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)
    metrics: list[str | dict[str, Any]] | None = None
    rank_by: str | None = None
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if isinstance(v, int):
            if v < 1:
                raise ValueError("the number of seeds must be at least 1")
            if v > MAX_SEEDS:
                raise ValueError(f"at most {MAX_SEEDS:,} seeds (a count this large would "
                                 f"never finish); list the seeds to use")
            return v
        if not v:
            raise ValueError("the seed list is empty")
        if any(s < 0 or s >= 2**32 for s in v):
            raise ValueError("seeds must be non-negative integers below 2**32")
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
    #: Per dataset entry, the label its content alone gives (``default_label``,
    #: whatever ``label:`` says): split seeds derive from it, so renaming a
    #: dataset changes no number.
    content_labels: list[str] = field(default_factory=list)
    #: Per dataset entry, the ``condition_of:`` it declares (None: not said).
    #: Entries naming one dataset are conditions of it (sample sizes, noise
    #: levels drawn from one pool), not independent datasets: the report's
    #: cross-dataset statistics count them once.  Not part of a run's identity.
    conditions: list[str | None] = field(default_factory=list)
    #: Per dataset entry, the label of the dataset whose train and validation
    #: rows it shares (a source's ``split_label``: CIFAR-10-C trains on
    #: CIFAR-10); empty or equal to ``content_labels`` otherwise.  Split seeds
    #: derive from it, so such entries split alike.
    split_labels: list[str] = field(default_factory=list)


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
        reject_boolean_numbers(SuiteHeader, src.data)
    except ConfigError as exc:  # `seeds: yes` would be one seed
        top, _, rest = exc.path.partition("[")
        loc = (top, *(int(i) for i in rest.rstrip("]").split("]["))) if rest else (top,)
        raise src.error(loc, exc.value, exc.message) from None
    try:
        header = SuiteHeader.model_validate(src.data)
    except ValidationError as exc:
        raise _pydantic_error(src, exc) from None

    if header.task is None:
        tasks = ", ".join(sorted(registry.components("tasks"))) or "none installed"
        raise src.error((), MISSING, f"the suite has no 'task': add 'task: NAME' naming one of "
                        f"the installed tasks ({tasks})")
    try:
        task_info = registry.get("tasks", header.task, "task")
    except ConfigError as exc:
        raise src.error(("task",), header.task, exc.message) from None
    task = task_info.factory()
    if header.metrics is None:
        raise src.error((), MISSING, f"the suite has no 'metrics': add 'metrics: [...]' naming "
                        f"what to measure; task {header.task!r} can feed "
                        f"{_feedable(registry, task)}")
    base = {k: v for k, v in src.data.items() if k not in SUITE_KEYS}
    seeds = list(range(header.seeds)) if isinstance(header.seeds, int) else header.seeds
    datasets, conditions = [], []
    for i, entry in enumerate(header.datasets):
        got = normalize_dataset(src, i, entry, registry, task, header.task)
        datasets += got
        conditions += [_condition_of(src, i, entry)] * len(got)
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
    _check_rank_direction(src, registry, header.rank_by, rank_by, metric_specs)

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

    sources = registry.components("datasets")
    content = [default_label(sources[d["source"]], task, d) for d in datasets]
    split = [default_label(sources[d["source"]], task, d, split=True) for d in datasets]
    return Suite(header.name, str(file), header.task, seeds, datasets, methods,
                 names, rank_by, header.description, src, header.device, metric_specs, content,
                 conditions, split)


def _condition_of(src: YamlSource, i: int, entry) -> str | None:
    """An entry's ``condition_of:`` (the dataset it is a condition of), checked."""
    if not isinstance(entry, dict) or "condition_of" not in entry:
        return None
    value = entry["condition_of"]
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise src.error(("datasets", i, "condition_of"), value, "condition_of names the dataset "
                        "this entry is a condition of: a non-empty name such as 'bgmm'")
    return str(value)


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


def _check_rank_direction(src, registry, written, rank_by: str, specs: dict) -> None:
    """``rank_by`` (or the first metric, its default) must have a direction:
    a signed value such as a bias is shown, never ranked."""
    from harness.metrics import has_direction

    if has_direction(registry.get("metrics", specs[rank_by]["name"]).factory):
        return
    ranked = [n for n, s in specs.items()
              if has_direction(registry.get("metrics", s["name"]).factory)]
    why = (f"metric {rank_by!r} has no direction (neither higher nor lower is better), so "
           f"runs cannot be ranked by it; ")
    if written is None:
        raise src.error(("metrics", 0), rank_by, why + "list a metric with a direction first or "
                        f"set rank_by ({', '.join(ranked) or 'none of the metrics has one'})")
    raise src.error(("rank_by",), rank_by, why + f"rank by one of: "
                    f"{', '.join(ranked) or 'none of the metrics has one'}")


def _feedable(registry, task) -> str:
    """The installed metrics a task can feed, for the missing-``metrics`` hint."""
    from harness.metrics import metric_inputs

    offered = set(getattr(task, "metric_inputs", ()))
    names = [name for name, info in sorted(registry.components("metrics").items())
             if set(metric_inputs(info.factory)) <= offered]
    if not names:
        return "no installed metric"
    more = f" and {len(names) - 12} more (harness list metrics)" if len(names) > 12 else ""
    return ", ".join(names[:12]) + more


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


def normalize_dataset(src: YamlSource, i: int, entry: dict, registry, task=None,
                      task_name: str = "") -> list[dict]:
    """``{sklearn: digits, one_vs_rest: 0}`` -> the normalised entries planning
    and tasks use: ``source``, ``params``, ``label``, ``base_dir`` and the
    task's own keys (``task.dataset_entry``: a split, transforms ...).

    The core reads the source key, ``label`` and ``condition_of`` (kept out
    of the entry: ``Suite.conditions``); every other key is the
    task's to validate, and a task rejects the keys it does not apply.
    Usually one entry; a source whose factory has ``expand`` (a filter over
    a collection) gives one entry per dataset it selects.  ``base_dir`` is
    the suite's folder: ``pathlib.Path`` parameters are resolved against it
    when the data is loaded (it is not part of a run's identity)."""
    sources = registry.components("datasets")
    path = ("datasets", i)
    if not isinstance(entry, dict):
        raise src.error(path, entry, "a dataset entry must be a mapping such as "
                        "'{sklearn: breast_cancer}'")
    found = [k for k in entry if k in sources]
    if len(found) != 1:
        for key in entry:
            if key not in sources and did_you_mean(key, sources):
                raise src.error((*path, key), entry[key], f"unknown dataset source {key!r}"
                                f"{did_you_mean(key, sources)}; sources: {', '.join(sources)}")
        msg = ("a dataset entry needs one source key" if not found else
               f"a dataset entry has one source key, found {', '.join(found)}")
        raise src.error(path, entry, f"{msg} (one of {', '.join(sources) or 'none installed'})")
    source = found[0]
    info = sources[source]
    params = _source_params(src, registry, source, entry[source], (*path, source))
    base_dir = str(Path(src.file).resolve().parent) if getattr(src, "file", None) else "."
    label = str(entry["label"]) if "label" in entry else None
    options = {k: v for k, v in entry.items() if k not in (source, "label", "condition_of")}
    own = _task_entry(src, path, task, task_name, options, registry)
    expand = getattr(info.factory, "expand", None)
    if expand is not None:
        resolved = resolve_paths(info, params, base_dir)
        expanded = _call_source_hook(src, (*path, source), entry[source], expand, resolved)
        if expanded is not None:
            expanded = [_paths_as_written(info, params, resolved, dict(p)) for p in expanded]
            if label is not None and len(expanded) > 1:
                raise src.error((*path, "label"), label, f"this {source!r} entry stands for "
                                f"{len(expanded)} datasets; a label can name only one")
            if not expanded:
                raise src.error((*path, source), entry[source], f"no {source!r} dataset "
                                f"matches this selection")
            return [_one_dataset(src, path, info, source, dict(p), own, label, base_dir, task)
                    for p in expanded]
    return [_one_dataset(src, path, info, source, params, own, label, base_dir, task)]


def _paths_as_written(info, written: dict, resolved: dict, params: dict) -> dict:
    """``params`` from a source's ``expand`` with each path parameter that it
    passed through unchanged (equal to ``resolved``'s) put back as the suite
    wrote it, so run keys do not depend on where the suite's folder is."""
    for p in info.params:
        value = params.get(p.name)
        if (value is not None and is_path_param(p.annotation) and written.get(p.name) is not None
                and Path(str(value)) == resolved[p.name]):
            params[p.name] = written[p.name]
    return params


def _task_entry(src, path, task, task_name: str, options: dict, registry) -> dict:
    """The task's normalised keys of a dataset entry (``dataset_entry``);
    its ConfigError points into the entry."""
    validate = getattr(task, "dataset_entry", None)
    if validate is None:
        if options:
            key = next(iter(options))
            raise src.error((*path, key), options[key], f"unknown dataset key {key!r}: task "
                            f"{task_name!r} takes no dataset options (an entry holds a source "
                            f"and optionally 'label')")
        return {}
    try:
        own = validate(dict(options), registry)
    except ConfigError as exc:
        sub = tuple(parse_path(exc.path)) if exc.path else ()
        raise src.error((*path, *sub), exc.value, exc.message) from None
    clash = [k for k in own if k in ("source", "params", "label", "base_dir")]
    if clash:
        raise TypeError(f"task {task_name!r}: dataset_entry returned the core's key {clash[0]!r}")
    return own


def _one_dataset(src, path, info, source, params, own: dict, label, base_dir, task) -> dict:
    for p in info.params:  # paths stay as written (run keys do not depend on the checkout)
        if p.name in params and is_path_param(p.annotation) and params[p.name] is not None:
            params[p.name] = str(params[p.name])
    check = getattr(info.factory, "check", None)
    if check is not None:
        _call_source_hook(src, (*path, source), params, check, resolve_paths(info, params,
                                                                             base_dir))
    entry = {"source": source, "params": params, **copy.deepcopy(own)}
    entry["label"] = default_label(info, task, entry) if label is None else label
    entry["base_dir"] = base_dir
    return entry


def _call_source_hook(src, path, written, hook, params):
    """Call a source's ``expand``/``check``; its ConfigError points into the entry."""
    try:
        return hook(params)
    except ConfigError as exc:
        sub = tuple(parse_path(exc.path)) if exc.path and isinstance(written, dict) else ()
        raise src.error((*path, *sub), exc.value, exc.message) from None


def component_params(registry, kind: str, name: str, value: Any) -> dict:
    """Validate a component written inside a dataset entry (a source, a
    transform): a mapping of parameters, or a scalar for the factory's first
    parameter (``imbalance: 0.1``).  Returns the checked parameters, defaults
    filled in.  Raises ``ConfigError`` whose path is the parameter's key for
    a mapping, empty for a scalar (it stands for the value itself)."""
    from harness.params import validate_params

    info = registry.get(kind, name)
    if isinstance(value, dict):
        params = value
    elif not info.params:
        if value is None or value is True:
            return {}
        raise ConfigError("", value, f"{singular(kind)} {name!r} takes no value")
    else:
        params = {info.params[0].name: value}
    try:
        return validate_params(info.params, info.var_kw, params, "", f"{singular(kind)} {name!r}")
    except ConfigError as exc:
        raise ConfigError(exc.path if isinstance(value, dict) else "", exc.value,
                          exc.message) from None


def _source_params(src, registry, source: str, value, path) -> dict:
    try:
        return component_params(registry, "datasets", source, value)
    except ConfigError as exc:
        raise src.error((*path, *parse_path(exc.path)), exc.value, exc.message) from None


def default_label(info, task, entry: dict, *, split: bool = False) -> str:
    """The display label an entry gets without ``label:``, made from its
    content alone: the source's own ``label(params)``, else
    ``source-value`` for a single scalar parameter, else the source and a
    short hash of its parameters; then the task's ``dataset_label(base,
    entry)`` (``+imbalance=0.1,exp``).  ``info``: the source's
    ``ComponentInfo``.  Split seeds derive from it (``plan.expand_suite``),
    never from a ``label:`` the suite writes.  ``split``: the label of the
    dataset whose train and validation rows the entry shares, from the
    source's ``split_label(params)`` where it has one."""
    import hashlib
    import json

    source, params = entry["source"], entry["params"]
    own = getattr(info.factory, "label", None)
    if split and getattr(info.factory, "split_label", None) is not None:
        own = info.factory.split_label
    if own is not None:
        label = str(own(params))
    elif len(params) == 1 and isinstance(next(iter(params.values())), (int, str)):
        label = f"{source}-{next(iter(params.values()))}"
    elif params:
        digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
        label = f"{source}-{digest[:6]}"
    else:
        label = source
    describe = getattr(task, "dataset_label", None)
    return str(describe(label, entry)) if describe is not None else label
