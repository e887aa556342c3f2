"""Component parameter schemas, read from factory signatures.

A factory's signature is its schema: names, type hints and defaults.  Values
from a suite are validated with pydantic against the hints before any run
starts, so a wrong name or type is reported with its key path.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import MISSING, ConfigError

#: The keys of a suite file's top level (``harness.suite``); every other
#: top-level key is the task's config.  Here, not in ``harness.suite``, so the
#: messages of ``validation_error`` can name them without importing the suite
#: loader (which imports this module).
SUITE_KEYS = ("name", "description", "task", "seeds", "datasets", "methods", "sweep",
              "metrics", "rank_by", "device")


@dataclass(frozen=True)
class Component:
    """Marks a parameter whose value is itself a component spec of ``kind``:
    ``base: Annotated[str | dict, Component("losses")] = "cross_entropy"``.
    The nested spec is validated with the rest of the suite (unknown name,
    wrong parameter) instead of failing when the run builds it."""

    kind: str


class _FromData:
    """Marks a factory parameter that the task fills from the data, not the
    suite: ``in_shape: Annotated[tuple, FromData]``.  Such parameters are not
    part of the component's schema (``harness list`` does not show them, a
    suite may not set them); the task offers values by name and each factory
    receives the ones it declares."""

    def __repr__(self) -> str:
        return "FromData"


FromData: Any = _FromData()


@dataclass(frozen=True)
class Unbounded:
    """Marks a numeric parameter that takes any value on purpose:
    ``shift: Annotated[float, Unbounded("a shift of the logits: any real")]``.

    Every numeric parameter of a built-in component declares its valid range
    in its signature (``Annotated[float, pydantic.Field(gt=0)]``, ``Literal``)
    so that a suite is checked before any run; a test walks the registry and
    fails on a number with neither a range nor this marker.  ``reason`` says
    why every value is valid.  Non-finite floats (``.inf``, ``.nan``) are
    refused either way, unless the ``Field`` sets ``allow_inf_nan=True``."""

    reason: str


@dataclass(frozen=True)
class Param:
    """One factory parameter: name, type hint (or ``Any``), default
    (``MISSING`` when required), and the component kind its value names
    (``Component``), if any."""

    name: str
    annotation: Any
    default: Any
    component: str | None = None

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def describe(self) -> str:
        """``name: type = default`` as ``harness list`` shows it."""
        ann = _type_name(self.annotation)
        if self.component:
            ann = f"{self.component} spec"
        text = f"{self.name}: {ann}" if ann else self.name
        return text if self.required else f"{text} = {self.default!r}"


def _type_name(ann: Any) -> str:
    """``Literal['a'] | list[float] | None`` rather than typing's repr."""
    if ann is Any or ann is inspect.Parameter.empty:
        return ""
    if typing.get_origin(ann) is typing.Annotated:
        bounds = [f"{op} {getattr(m, attr)}" for m in ann.__metadata__
                  for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                  if getattr(m, attr, None) is not None]
        for m in ann.__metadata__:  # pydantic's Field() keeps bounds in its metadata
            for c in getattr(m, "metadata", []):
                bounds += [f"{op} {getattr(c, attr)}" for attr, op in
                           (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                           if getattr(c, attr, None) is not None]
        base = _type_name(ann.__origin__)
        return f"{base} ({', '.join(bounds)})" if bounds else base
    if ann is type(None):
        return "None"
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Union or type(ann).__name__ == "UnionType":
        return " | ".join(_type_name(a) for a in args)
    if isinstance(ann, type) and not args:
        return ann.__name__
    if origin is not None and args:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]"
    return str(ann).replace("typing.", "")


def signature_params(factory: Callable) -> tuple[list[Param], bool, list[str]]:
    """Return the parameters of ``factory``, whether it takes ``**kwargs``,
    and the names of its ``FromData`` parameters (filled by the task, not
    part of the schema)."""
    target = factory.__init__ if isinstance(factory, type) else factory
    sig = inspect.signature(target)
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable forward refs: fall back to no type checking
        hints = {}
    params: list[Param] = []
    from_data: list[str] = []
    var_kw = False
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        default = MISSING if p.default is p.empty else p.default
        ann, component = hints.get(p.name, Any), None
        if typing.get_origin(ann) is typing.Annotated:
            if any(m is FromData for m in ann.__metadata__):
                from_data.append(p.name)
                continue
            marks = [m for m in ann.__metadata__ if isinstance(m, Component)]
            component = marks[0].kind if marks else None
            # other metadata (pydantic's Field(ge=0, le=1)) stays: validation checks it
            rest = tuple(m for m in ann.__metadata__ if not isinstance(m, Component))
            ann = typing.Annotated[(ann.__origin__, *rest)] if rest else ann.__origin__
        params.append(Param(p.name, ann, default, component))
    return params, var_kw, from_data


def singular(kind: str) -> str:
    """``losses`` -> ``loss``, ``datasets`` -> ``dataset``,
    ``federated_strategies`` -> ``federated_strategy``: a kind in a message."""
    if kind.endswith("sses"):
        return kind[:-2]
    if kind.endswith("ies"):
        return kind[:-3] + "y"
    return kind[:-1] if kind.endswith("s") else kind


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: A parameter's range is finite unless its ``Field`` says ``allow_inf_nan``:
#: ``gamma: .inf`` would otherwise pass ``ge=0`` and fail inside every run.
_NO_INF_NAN: Any = {"allow_inf_nan": False}


def _adapter(annotation: Any):
    """A pydantic ``TypeAdapter`` refusing non-finite floats; a type that
    carries its own config (a model, a dataclass) keeps it."""
    from pydantic import PydanticUserError, TypeAdapter

    try:
        return TypeAdapter(annotation, config=_NO_INF_NAN)
    except PydanticUserError:
        return TypeAdapter(annotation)


#: Why a YAML boolean is refused where a number goes.
_BOOLEAN = "a YAML boolean (true/false, yes/no, on/off) is not a number"


def _coerces_bool(annotation: Any) -> bool:
    """Whether pydantic's lax mode turns a boolean into a number for
    ``annotation`` (``epochs: yes`` -> 1) although the type takes no boolean."""
    from pydantic import ValidationError

    try:
        adapter = _adapter(annotation)
    except Exception:  # noqa: BLE001 - no schema: pydantic says nothing either
        return False
    try:
        adapter.validate_python(True, strict=True)
        return False  # a boolean is a value of the type (bool, Literal[True], Any)
    except ValidationError:
        pass
    try:
        adapter.validate_python(True, strict=False)
        return True
    except ValidationError:  # refused anyway, with pydantic's own message
        return False


def _element_type(annotation: Any) -> Any:
    """``X`` of ``list[X]`` / ``tuple[X, ...]`` (also the one list of a union,
    ``int | list[int]``), else None."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = annotation.__origin__
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        items = [t for t in map(_element_type, args) if t is not None]
        return items[0] if len(items) == 1 else None
    if origin in (list, tuple) and args:
        return args[0]
    return None


def _check_bools(annotation: Any, value: Any, path: str, what: str) -> None:
    if isinstance(value, bool) and _coerces_bool(annotation):
        raise ConfigError(path, value, f"{what}expects {_type_name(annotation) or 'a number'}; "
                          f"{_BOOLEAN}")
    item = _element_type(annotation) if isinstance(value, list) else None
    if item is not None:
        for i, v in enumerate(value):
            _check_bools(item, v, f"{path}[{i}]", what)


def reject_boolean_numbers(model: Any, config: Any, path: str = "") -> None:
    """Raise ``ConfigError`` at the key where ``config`` gives a boolean to a
    field of the pydantic ``model`` that takes numbers and no boolean (in
    nested models and list items too): pydantic's lax mode would read
    ``epochs: yes`` as 1 and ``gamma: true`` as 1.0.  Call it before
    ``model.model_validate(config)``."""
    fields = getattr(model, "model_fields", None)
    if not isinstance(config, dict) or fields is None:
        return
    for key, value in config.items():
        field = fields.get(key)
        if field is None:
            continue
        key_path = f"{path}.{key}" if path else str(key)
        _check_bools(field.annotation, value, key_path, "")
        sub = _model_in(field.annotation)
        if sub is not None and isinstance(value, dict):
            reject_boolean_numbers(sub, value, key_path)
        item = _model_in(_element_type(field.annotation)) if isinstance(value, list) else None
        if item is not None:
            for i, v in enumerate(value):
                reject_boolean_numbers(item, v, f"{key_path}[{i}]")


def _model_in(annotation: Any) -> Any:
    """The pydantic model class in ``annotation`` (``Model``, ``Model | None``)."""
    if annotation is None:
        return None
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = annotation.__origin__
    candidates = typing.get_args(annotation) or (annotation,)
    models = [a for a in candidates if isinstance(a, type) and hasattr(a, "model_fields")]
    return models[0] if len(models) == 1 else None


def validate_params(params: list[Param], var_kw: bool, values: dict, path: str,
                    what: str) -> dict:
    """Check ``values`` against ``params``; return them coerced by pydantic.

    Raises ``ConfigError`` naming ``path.<param>`` for an unknown name, a
    missing required parameter or a value of the wrong type."""
    from pydantic import ValidationError

    known = {p.name: p for p in params}
    out: dict = {}
    for key, value in values.items():
        key_path = f"{path}.{key}" if path else key
        if key not in known:
            if var_kw:
                out[key] = value
                continue
            names = ", ".join(known) or "none"
            raise ConfigError(key_path, value, f"unknown parameter {key!r} of {what}"
                              f"{did_you_mean(key, known)}; parameters: {names}")
        p = known[key]
        if p.annotation is Any:
            out[key] = value
            continue
        _check_bools(p.annotation, value, key_path, f"{what} parameter {key!r} ")
        try:
            out[key] = _adapter(p.annotation).validate_python(value, strict=False)
        except ValidationError as exc:
            msg = exc.errors()[0].get("msg", str(exc))
            raise ConfigError(key_path, value, f"{what} parameter {key!r} expects "
                              f"{_type_name(p.annotation)}: {msg}") from None
        except Exception:  # a hint pydantic cannot build a schema for: accept as is
            out[key] = value
    for p in params:
        if p.required and p.name not in values:
            raise ConfigError(f"{path}.{p.name}" if path else p.name, MISSING,
                              f"{what} needs parameter {p.name!r}")
    return out


def check_components(config: dict, check: Callable, paths) -> dict:
    """Check the component specs of a task's ``config`` at dotted ``paths``
    (``(path, kind)`` pairs such as ``("training.optimizer", "optimizers")``)
    with the ``check`` a task's ``validate`` receives, and replace each with
    its normalised ``{"name": .., **params}``; a missing or ``None`` spec is
    skipped.  Returns ``config`` (changed in place)."""
    for path, kind in paths:
        *parents, key = path.split(".")
        node = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or node.get(key) is None:
            continue
        name, params = check(kind, node[key], path)
        node[key] = {"name": name, **params}
    return config


def validation_error(exc, config: dict, sections: dict, top: str):
    """The first error of a task's pydantic config model as a ``ConfigError``:
    the key path (list items as ``[i]``), the value written there, and for an
    unknown key the keys allowed where it stands.  ``sections`` maps a key
    path (a tuple; ``()`` for the root) to the model of that section; ``top``
    names the root in the message (``"the contrastive task"``)."""
    err = exc.errors()[0]
    raw = list(err["loc"])

    def key(p) -> bool:  # pydantic adds union and validator tags to the location
        return isinstance(p, int) or str(p).isidentifier()

    unknown = err["type"] == "extra_forbidden" and bool(raw)
    # an unknown key is named whatever its characters ('batch size', '<b>')
    parts = [p for p in raw[:-1] if key(p)] + [raw[-1]] if unknown else [p for p in raw if key(p)]
    value: Any = config
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
            value = value[part] if isinstance(value, list) and 0 <= part < len(value) else None
        else:
            path += f".{part}" if path else str(part)
            value = value.get(part) if isinstance(value, dict) else None
    msg = err["msg"]
    if unknown:
        section = tuple(str(p) for p in parts[:-1] if not isinstance(p, int))
        fields = list(sections.get(section, sections[()]).model_fields)
        name = str(parts[-1])
        msg = (f"unknown key {name!r}{did_you_mean(name, fields)}; keys of "
               f"{'.'.join(section) or top}: {', '.join(fields)}")
        if not section:
            msg += f"; suite keys: {', '.join(SUITE_KEYS)}"
    return ConfigError(path, value, msg)
