"""Dataset sources with a known density: the paper's shifted Gaussian and 2-D toys.

Each returns unlabelled rows (``y`` is ``None``) and its ground truth in
``meta["truth"]``, read by ``harness_plugins.density.truth``: the true
parameters (where an energy model can hold them) and the exact log-density.
``meta["standardize"]`` is False: the truth is on the scale drawn, so the
task must not rescale these rows.  The rows are fixed by ``random_state``;
each run's seed draws its own split of them.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from harness.data import RawDataset
from harness.params import Unbounded

Size = Annotated[int, Field(ge=10, le=10_000_000)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


def shifted_gaussian(mean: Annotated[float, Unbounded("a location: any real")] = 2.0,
                     d: Annotated[int, Field(ge=1, le=1000)] = 1,
                     std: Annotated[float, Field(gt=0)] = 1.0,
                     n_samples: Size = 2000, random_state: Seed = 0) -> RawDataset:
    """N(mean * 1, std^2 I) in d dimensions (d = 1: the paper's Gaussian mean estimation)."""
    import numpy as np

    rng = np.random.default_rng(random_state)
    X = mean + std * rng.standard_normal((n_samples, d))
    truth = {"kind": "gaussian", "mean": [float(mean)] * d, "std": float(std)}
    return RawDataset(f"shifted_gaussian_d{d}", X, None,
                      meta={"truth": truth, "standardize": False})


def toy2d(name: Literal["mog", "rings"] = "mog", n_samples: Size = 4000,
          std: Annotated[float, Field(gt=0, le=5)] = 0.3,
          components: Annotated[int, Field(ge=1, le=64)] = 8,
          random_state: Seed = 0) -> RawDataset:
    """2-D toy densities: mog (Gaussians on a circle of radius 2) or rings (radii 1, 2, ...).

    ``mog``: equal-weight isotropic Gaussians of ``std`` centred at radius 2,
    evenly spaced in angle.  ``rings``: ``components`` concentric rings of
    radius 1, 2, ..., each point's radius drawn as |N(r_k, std^2)| (a folded
    normal, so the density is exact) and its angle uniformly."""
    import numpy as np

    rng = np.random.default_rng(random_state)
    k = rng.integers(0, components, n_samples)
    if name == "mog":
        angles = 2 * math.pi * np.arange(components) / components
        means = 2.0 * np.stack([np.cos(angles), np.sin(angles)], 1)
        X = means[k] + std * rng.standard_normal((n_samples, 2))
        truth = {"kind": "mog", "means": means.tolist(), "std": float(std)}
    else:
        radii = np.arange(1, components + 1, dtype=float)
        r = np.abs(radii[k] + std * rng.standard_normal(n_samples))
        theta = rng.uniform(0, 2 * math.pi, n_samples)
        X = np.stack([r * np.cos(theta), r * np.sin(theta)], 1)
        truth = {"kind": "rings", "radii": radii.tolist(), "std": float(std)}
    return RawDataset(f"toy2d_{name}", X, None, meta={"truth": truth, "standardize": False})


def _label(base: str, defaults: dict):
    """A source's display label: ``base`` and each parameter set away from its default."""

    def label(params: dict) -> str:
        changed = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in sorted(params.items()) if k in defaults and v != defaults[k]]
        return f"{base}({','.join(changed)})" if changed else base

    return label


# the mean always shows: it is what a suite of this source varies
shifted_gaussian.label = lambda p: _label(f"shifted_gaussian(mean={p.get('mean', 2.0):g})",
                                          {"d": 1, "std": 1.0, "n_samples": 2000,
                                           "random_state": 0})(p).replace(")(", ",")
toy2d.label = lambda p: _label(f"toy2d_{p.get('name', 'mog')}",
                               {"n_samples": 4000, "std": 0.3, "components": 8,
                                "random_state": 0})(p)
