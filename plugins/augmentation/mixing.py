"""Mixing generated data into training: the glue between augmenters and a task.

A task that accepts an ``augment:`` spec (the classification task does)
calls :func:`check_augment` from its ``validate`` and
:func:`augment_training` on its prepared data before training.  The
augmenter is fit on the train split only; ``ratio`` x (train size) generated
rows, shared out per class in the train split's proportions, are appended
to the train split.  Validation and test arrays are passed through as the
very same objects, so generated rows cannot reach them; the generator never
sees them either.  Quality figures (``harness_plugins.augmentation.quality``)
compare the generated rows with the validation split.

Logged metrics: ``augment/fit_s``, ``augment/sample_s``,
``augment/samples_per_s``, ``augment/n_generated``, ``augment/c2st`` and
``augment/mmd`` (when the validation split has enough rows per class), and
``augment/batch_fraction`` (generated share of each batch) for ``per_batch``.

``mode: fixed`` appends the generated rows to the train split;
``mode: per_batch`` appends them too, and :func:`training_config` then wraps
the run's optimizer so that every batch holds the generated fraction
``ratio / (1 + ratio)`` (``harness_plugins.augmentation.per_batch``).
"""

from __future__ import annotations

import time
from typing import Any

from harness import ConfigError, UserError

#: Modes this glue implements.
SUPPORTED_MODES = ("fixed", "per_batch")
#: Salt of the generator's seed, so it differs from the model's init stream.
SEED_SALT = 0xA06


def check_augment(spec: dict, path: str = "augment") -> None:
    """Reject values the factory's type hints cannot: a negative ``ratio`` or
    ``instance_noise``, and modes this glue does not implement.  ``spec`` is
    the normalised ``{"name": .., **params}`` mapping ``check`` returned."""
    ratio = spec.get("ratio", 1.0)
    if ratio is not None and ratio < 0:
        raise ConfigError(f"{path}.ratio", ratio, "ratio must be >= 0 (generated samples "
                          "per real training sample)")
    noise = spec.get("instance_noise", 0.0)
    if noise is not None and noise < 0:
        raise ConfigError(f"{path}.instance_noise", noise, "instance_noise must be >= 0 "
                          "(standard deviation of the noise added before fitting)")
    mode = spec.get("mode", "fixed")
    if mode not in SUPPORTED_MODES:
        raise ConfigError(f"{path}.mode", mode, f"mode {mode!r} is not implemented by this "
                          f"task; use: {', '.join(SUPPORTED_MODES)}")


def generated_counts(class_counts: list[int], ratio: float) -> dict[int, int]:
    """Generated rows per class: ``round(ratio * count)``, so class proportions
    follow the train split's."""
    return {c: int(round(ratio * n)) for c, n in enumerate(class_counts) if n > 0}


def augment(augmenter, data, seed: int, device: str = "cpu") -> tuple[Any, dict]:
    """Fit ``augmenter`` on ``data``'s train split and return ``(new data,
    info)``; the new data's train split is the real rows followed by the
    generated ones, everything else is ``data``'s own objects."""
    import dataclasses

    import numpy as np

    from harness_plugins.augmentation.quality import generated_quality

    counts = data.class_counts()
    present = {c: n for c, n in enumerate(counts) if n > 0}
    augmenter.check_counts(present, dict(enumerate(data.classes)))
    info: dict[str, float] = {"n_generated": 0.0, "n_real": float(len(data.y_train))}
    if augmenter.ratio == 0:
        return data, info
    augmenter.device = device
    rng = np.random.default_rng([abs(int(seed)), SEED_SALT])
    start = time.perf_counter()
    augmenter.fit(data.X_train, data.y_train, rng)
    info["fit_s"] = time.perf_counter() - start
    start = time.perf_counter()
    X_gen, y_gen = augmenter.sample(generated_counts(counts, augmenter.ratio), rng)
    info["sample_s"] = time.perf_counter() - start
    info["n_generated"] = float(len(y_gen))
    if augmenter.mode == "per_batch":
        info["batch_fraction"] = augmenter.ratio / (1 + augmenter.ratio)
    info["samples_per_s"] = len(y_gen) / max(info["sample_s"], 1e-9)
    if not np.all(np.isfinite(X_gen)):
        raise UserError(f"augmenter {augmenter.name!r} generated non-finite values")
    info.update(generated_quality(X_gen, y_gen, data.X_val, data.y_val, seed=abs(int(seed))))
    X_gen = as_train_dtype(X_gen, data.X_train.dtype)
    clean = data.y_train_clean
    new = dataclasses.replace(
        data,
        X_train=np.concatenate([data.X_train, X_gen]),
        y_train=np.concatenate([data.y_train, y_gen]),
        # generated rows carry the label they were generated for
        y_train_clean=None if clean is None else np.concatenate([clean, y_gen]),
        meta={**data.meta, "n_real_train": int(len(data.y_train)),
              "n_generated": int(len(y_gen)), "n_train": int(len(data.y_train) + len(y_gen))},
    )
    return new, info


def as_train_dtype(X_gen, dtype):
    """Generated rows in the train split's dtype.  Integer pixels (a uint8
    image source) are rounded and clipped to the type's range: a bare cast
    truncates 254.7 to 254 and wraps -3 around to 253."""
    import numpy as np

    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(X_gen), info.min, info.max).astype(dtype)
    return X_gen.astype(dtype, copy=False)


def augment_training(ctx, data, spec: dict) -> tuple[Any, dict]:
    """Build the run's augmenter from ``spec``, mix its samples into ``data``'s
    train split (see :func:`augment`) and log its cost and quality as
    ``augment/<name>``.  The generator's randomness derives from the run's
    init seed, so every seed gets its own generated set and the same seed the
    same one."""
    augmenter = ctx.create("augmenters", spec)
    new, info = augment(augmenter, data, ctx.seeds["init"], str(ctx.device))
    ctx.log_metrics({f"augment/{k}": float(v) for k, v in info.items()
                     if v == v and k != "n_real"})
    info["mode"] = augmenter.mode
    info["ratio"] = augmenter.ratio
    return new, info


def training_config(config: dict, info: dict) -> dict:
    """The config to train with after :func:`augment_training`: ``config``
    itself, or for ``mode: per_batch`` a copy whose optimizer mixes the
    generated fraction into every batch."""
    if info.get("mode") != "per_batch" or not info.get("n_generated"):
        return config
    from harness_plugins.augmentation.per_batch import per_batch_config

    n_real = int(info["n_real"])
    return per_batch_config(config, n_real, n_real + int(info["n_generated"]), info["ratio"])


def training_context(ctx, info: dict):
    """The context to train with after :func:`augment_training`: ``ctx``
    itself, or for ``mode: per_batch`` one that builds the wrapper
    :func:`training_config` put in the optimizer's place."""
    if info.get("mode") != "per_batch" or not info.get("n_generated"):
        return ctx
    from harness_plugins.augmentation.per_batch import PerBatchContext

    return PerBatchContext(ctx)
