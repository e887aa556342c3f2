"""Raw datasets: what dataset sources return, loaded and cached by the core.

Dataset plugins return a ``RawDataset``; ``load_raw`` builds it once per
process (an LRU cache by source and parameters) and remembers sources that
could not be fetched, so the other runs on them fail at once.  What a task
makes of the raw data (label encoding, splits, preprocessing, patches) is the
task's ``prepare``: the core knows no data layout.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import DatasetUnavailable

if TYPE_CHECKING:  # numpy is imported lazily: plugin modules import this one at start-up
    import numpy as np


@dataclass
class RawDataset:
    """What a dataset plugin returns.

    ``X``: a pandas DataFrame (tabular; categorical columns as category/object
    dtype), a float numpy array ``(N, *shape)``, or whatever the tasks that
    use the source expect (a list of images of different sizes).  ``y``:
    labels of any hashable type, or ``None`` for unlabelled data.
    ``image_shape``: ``(C, H, W)`` for image data, whose rows of ``X`` may be
    flat.  ``splits``: predefined ``(train_idx, test_idx)``
    (an OpenML task's split), else ``None`` for a seeded stratified split.
    """

    name: str
    X: Any
    y: np.ndarray | None
    image_shape: tuple[int, ...] | None = None
    splits: tuple[np.ndarray, np.ndarray] | None = None
    meta: dict = field(default_factory=dict)


#: How many loaded datasets one process keeps (they can be large).
RAW_CACHE_SIZE = 4
_RAW_CACHE: OrderedDict[tuple, RawDataset] = OrderedDict()
#: Sources that failed to fetch in this process: fail fast on the next run.
_UNAVAILABLE: dict[tuple, DatasetUnavailable] = {}


def build_component(registry, kind: str, name: str, params: dict, path: str) -> Any:
    """Validate ``params`` and call the factory.  Not ``registry.create``: its
    ``{"name": ..., **params}`` spec would collide with a parameter that is
    itself called ``name`` (the ``sklearn`` source's)."""
    from harness.params import singular, validate_params

    info = registry.get(kind, name, path)
    checked = validate_params(info.params, info.var_kw, dict(params), path,
                              f"{singular(kind)} {name!r}")
    return info.factory(**checked)


def is_path_param(annotation) -> bool:
    """Whether a parameter's type hint is ``pathlib.Path`` (or ``Path | None``)."""
    import typing
    from pathlib import Path

    return annotation is Path or Path in typing.get_args(annotation)


def resolve_paths(info, params: dict, base_dir: str | None) -> dict:
    """``params`` with each ``pathlib.Path`` parameter of component ``info``
    made absolute against ``base_dir`` (the suite's folder)."""
    from pathlib import Path

    out = dict(params)
    for p in info.params:
        value = out.get(p.name)
        if value is not None and is_path_param(p.annotation):
            value = Path(str(value)).expanduser()
            out[p.name] = value if value.is_absolute() or not base_dir else Path(base_dir) / value
    return out


def load_entry(entry: dict, registry) -> RawDataset:
    """The ``RawDataset`` of a normalised dataset entry (``source``,
    ``params``, ``base_dir``), through the cache of ``load_raw``."""
    return load_raw(entry["source"], dict(entry.get("params") or {}), registry,
                    entry.get("base_dir"))


def load_raw(source: str, params: dict, registry, base_dir: str | None = None) -> RawDataset:
    """The ``RawDataset`` of one source, cached per process by source and
    params; ``pathlib.Path`` parameters resolve against ``base_dir``."""
    info = registry.get("datasets", source, "dataset")
    params = resolve_paths(info, params, base_dir)
    key = (source, info.plugin, json.dumps(params, sort_keys=True, default=str))
    if key in _RAW_CACHE:
        _RAW_CACHE.move_to_end(key)
        return _RAW_CACHE[key]
    if key in _UNAVAILABLE:
        raise _UNAVAILABLE[key]
    try:
        raw = build_component(registry, "datasets", source, params, f"dataset.{source}")
    except DatasetUnavailable as exc:
        _UNAVAILABLE[key] = exc
        raise
    if not isinstance(raw, RawDataset):
        raise TypeError(f"dataset source {source!r} returned {type(raw).__name__}, "
                        f"not a harness.data.RawDataset")
    _RAW_CACHE[key] = raw
    while len(_RAW_CACHE) > RAW_CACHE_SIZE:
        _RAW_CACHE.popitem(last=False)
    return raw


def clear_cache() -> None:
    """Forget the datasets loaded by this process."""
    _RAW_CACHE.clear()
    _UNAVAILABLE.clear()
