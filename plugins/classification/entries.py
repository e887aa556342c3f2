"""The dataset entry of the classification-like tasks (classification,
calibration, nas, and third-party tasks that prepare their data with
``harness_plugins.classification.prepare.prepare_dataset``).

Such an entry takes dataset ``transforms`` (the data family's kind) and a
``split``; the core reads only the source and ``label`` and hands the other
keys to the task (``dataset_entry`` in the tasks hookspec).  A task mixes in
``SplitAndTransforms`` to accept exactly the keys ``prepare_dataset``
applies.
"""

from __future__ import annotations

from typing import Any

from harness import ConfigError
from harness.params import did_you_mean

#: The split an entry without ``split:`` gets (fractions of the whole dataset).
DEFAULT_SPLIT = {"val": 0.2, "test": 0.2}


def check_split(value: Any, path: str = "split") -> dict:
    """``{val: .., test: ..}`` fractions (either may be left out) -> both,
    checked: each in (0, 1), leaving data for training."""
    if not isinstance(value, dict) or set(value) - {"val", "test"}:
        raise ConfigError(path, value, "split must be a mapping with 'val' and/or 'test' "
                          "fractions")
    out = {**DEFAULT_SPLIT, **value}
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
            raise ConfigError(f"{path}.{k}", v, "a split fraction must be between 0 and 1")
    if out["val"] + out["test"] >= 1:
        raise ConfigError(path, value, "val + test fractions must leave data for training")
    return out


def check_transform(registry, name: str, value: Any) -> dict:
    """The checked parameters of transform ``name`` written as ``value``; the
    factory is built once, so a value out of range stops the suite now."""
    from harness.suite import component_params

    try:
        params = component_params(registry, "transforms", name, value)
        registry.get("transforms", name).factory(**params)
    except ConfigError as exc:
        raise ConfigError(f"{name}.{exc.path}" if exc.path else name, exc.value,
                          exc.message) from None
    except ValueError as exc:
        raise ConfigError(name, value, str(exc)) from None
    return params


class SplitAndTransforms:
    """Mix-in: the dataset entry of a task whose ``prepare`` is
    ``prepare_dataset`` (transforms in suite order, then a seeded split)."""

    def dataset_entry(self, options: dict, registry) -> dict:
        """``{imbalance: 0.1, split: {test: 0.3}}`` -> ``{"transforms":
        [["imbalance", {...}]], "split": {"val": 0.2, "test": 0.3}}``; any
        other key is an error naming the keys this task takes."""
        known = registry.components("transforms") if "transforms" in registry.kinds() else {}
        transforms = []
        split = dict(DEFAULT_SPLIT)
        for key, value in options.items():
            if key == "split":
                split = check_split(value)
            elif key in known:
                transforms.append([key, check_transform(registry, key, value)])
            else:
                raise ConfigError(key, value, f"unknown dataset key {key!r}"
                                  f"{did_you_mean(key, [*known, 'split', 'label'])}; dataset keys: "
                                  f"label, split and the transforms "
                                  f"({', '.join(known) or 'none installed'})")
        return {"transforms": transforms, "split": split}

    def dataset_label(self, base: str, entry: dict) -> str:
        """``base`` plus ``+name=values`` per transform
        (``breast_cancer+imbalance=0.1``)."""
        for name, params in entry.get("transforms") or []:
            values = ",".join(str(v) for v in params.values())
            base += f"+{name}{'=' + values if values else ''}"
        return base
