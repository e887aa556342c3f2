"""Dataset source ``circle_blobs`` and transform ``feature_noise``.

A source returns a ``harness.data.RawDataset`` (features ``X``, labels ``y``
of any hashable type); the core loads it once per process and caches it.
A transform is an object with a ``stage`` and ``apply(X, y, rng) -> (X, y)``
on numpy arrays; the classification family's preparation (which the example
``prototypes`` task reuses) runs it at its stage.
"""

from __future__ import annotations

from harness import ConfigError, hookimpl
from harness.data import RawDataset


def circle_blobs(n_samples: int = 300, classes: int = 3, radius: float = 1.0,
                 spread: float = 0.3, seed: int = 0) -> RawDataset:
    """Gaussian blobs on a circle, one per class, equal sizes (a nearest-mean toy problem)."""
    import numpy as np

    # the dataset is fixed by `seed`; the runs' seeds only change its split
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % classes
    angle = 2 * np.pi * y / classes
    centres = radius * np.column_stack([np.cos(angle), np.sin(angle)])
    X = centres + rng.normal(0.0, spread, size=(n_samples, 2))
    labels = np.array([f"blob{k}" for k in y], dtype=object)
    return RawDataset(f"circle_blobs-{classes}", X, labels,
                      meta={"radius": radius, "spread": spread})


def _with_defaults(params: dict) -> dict:
    # a suite's entry holds only the parameters it sets
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(circle_blobs).parameters.items()}
    return {**defaults, **params}


def _check_blobs(params: dict) -> None:
    # cheap checks at suite validation: a mistake stops before any run
    p = _with_defaults(params)
    if p["classes"] < 2:
        raise ConfigError("classes", p["classes"], "circle_blobs needs at least 2 classes")
    if p["n_samples"] < 3 * p["classes"]:
        raise ConfigError("n_samples", p["n_samples"], f"circle_blobs needs at least 3 rows "
                          f"per class ({3 * p['classes']} for {p['classes']} classes)")
    if p["spread"] < 0:
        raise ConfigError("spread", p["spread"], "spread must be >= 0")


def _blobs_label(params: dict) -> str:
    # the dataset's display name in reports when the suite gives no `label:`
    p = _with_defaults(params)
    return f"blobs{p['classes']}-s{p['spread']}"


circle_blobs.check = _check_blobs
circle_blobs.label = _blobs_label


class FeatureNoise:
    """Adds Gaussian noise to the training split's features."""

    # "train": after the split, on the train split only ("full": before the
    # split; "trainval": train and validation splits, each separately)
    stage = "train"

    def __init__(self, std: float):
        self.std = std

    def apply(self, X, y, rng):
        """``X``: float array ``(N, ...)`` of raw features (preprocessing is
        fit afterwards, on the noisy train split); ``y``: int64 labels, kept."""
        return X + rng.normal(0.0, self.std, size=X.shape), y

    def __repr__(self) -> str:
        return f"FeatureNoise(std={self.std!r})"


def feature_noise(std: float) -> FeatureNoise:
    """Gaussian noise of standard deviation `std` (raw feature units) on TRAIN features."""
    if std < 0:
        # a transform is built at suite validation: this is an exit-2 error
        raise ValueError(f"feature_noise std must be >= 0, got {std!r}")
    return FeatureNoise(std)


@hookimpl
def register_datasets(register):
    register("circle_blobs", circle_blobs)


@hookimpl
def register_transforms(register):
    register("feature_noise", feature_noise)
