"""Noise distributions, ground-truth densities and log-likelihood evaluation.

The test log-likelihood of an energy model is mean_i[-E(x_i)] - log Z: with
the model's exact log Z where it is known, else with an importance-sampling
estimate over a proposal q,

    log Z_hat = log (1/M) sum_j w_j,  w_j = exp(-E(y_j)) / q(y_j),  y_j ~ q,

whose standard error is the delta method's sd(w) / (sqrt(M) mean(w)) (the
relative standard error of the mean weight).  The log-likelihood's standard
error adds the test rows' own sampling error, sqrt(se_logZ^2 + var(-E)/n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LOG_2PI = math.log(2 * math.pi)


@dataclass
class GaussianNoise:
    """A diagonal Gaussian q = N(loc, diag(scale^2)) (numpy arrays of length d)."""

    loc: object
    scale: object

    def sample(self, n: int, generator):
        """``n`` rows as a float32 tensor, drawn with the torch ``generator``."""
        import torch

        d = len(self.loc)
        z = torch.randn(n, d, generator=generator)
        return (torch.as_tensor(self.loc, dtype=torch.float32)
                + torch.as_tensor(self.scale, dtype=torch.float32) * z)

    def log_prob(self, x):
        """log q(x) per row of the tensor ``x`` ``(n, d)``."""
        import torch

        loc = torch.as_tensor(self.loc, dtype=x.dtype)
        scale = torch.as_tensor(self.scale, dtype=x.dtype)
        z = (x - loc) / scale
        return -0.5 * (z ** 2).sum(1) - torch.log(scale).sum() - 0.5 * x.shape[1] * LOG_2PI


def make_noise(kind: str, scale: float, X) -> GaussianNoise:
    """``standard``: N(0, scale^2 I); ``fitted``: the train rows' per-column mean
    and scale x their standard deviation."""
    import numpy as np

    X = np.asarray(X, np.float64)
    d = X.shape[1]
    if kind == "standard":
        return GaussianNoise(np.zeros(d), np.full(d, scale))
    std = X.std(0)
    return GaussianNoise(X.mean(0), scale * np.where(std > 0, std, 1.0))


def truth_log_density(truth: dict, X):
    """The exact log-density of the rows ``X`` (numpy ``(n, d)``) under a
    source's ``meta["truth"]`` (``gaussian``, ``mog``, ``rings``)."""
    import numpy as np
    from scipy.special import logsumexp

    X = np.asarray(X, np.float64)
    s = truth["std"]
    if truth["kind"] == "gaussian":
        z = (X - np.asarray(truth["mean"])) / s
        return -0.5 * (z ** 2).sum(1) - X.shape[1] * (math.log(s) + 0.5 * LOG_2PI)
    if truth["kind"] == "mog":
        means = np.asarray(truth["means"])
        sq = ((X[:, None, :] - means[None]) ** 2).sum(-1) / s ** 2
        return (logsumexp(-0.5 * sq, axis=1) - math.log(len(means))
                - X.shape[1] * (math.log(s) + 0.5 * LOG_2PI))
    if truth["kind"] == "rings":
        radii = np.asarray(truth["radii"])
        r = np.maximum(np.linalg.norm(X, axis=1), 1e-300)
        # folded normal of the radius: N(r; r_k, s) + N(-r; r_k, s), angle uniform
        both = np.concatenate([-0.5 * ((r[:, None] - radii) / s) ** 2,
                               -0.5 * ((r[:, None] + radii) / s) ** 2], 1)
        log_r = (logsumexp(both, axis=1) - math.log(len(radii)) - math.log(s) - 0.5 * LOG_2PI)
        return log_r - np.log(2 * math.pi * r)
    raise ValueError(f"unknown ground truth kind {truth['kind']!r}")


def truth_params(truth: dict | None) -> dict:
    """The true parameters an energy model's ``estimate()`` can be compared with."""
    import numpy as np

    if truth and truth["kind"] == "gaussian":
        return {"mean": np.asarray(truth["mean"], np.float64)}
    return {}


def param_error(estimate: dict, truth: dict) -> float | None:
    """Euclidean distance over the parameters both name; ``None`` when none is shared."""
    import numpy as np

    shared = sorted(set(estimate) & set(truth))
    if not shared:
        return None
    diff = np.concatenate([np.ravel(np.asarray(estimate[k], np.float64) - truth[k])
                           for k in shared])
    return float(np.sqrt((diff ** 2).sum()))


def log_z_importance(model, proposal: GaussianNoise, n: int, generator,
                     chunk: int = 65536) -> tuple[float, float]:
    """(log Z_hat, its delta-method standard error) from ``n`` draws of ``proposal``."""
    import torch

    logs = []
    with torch.no_grad():
        for start in range(0, n, chunk):
            y = proposal.sample(min(chunk, n - start), generator)
            logs.append((-model.energy(y) - proposal.log_prob(y)).double())
    log_w = torch.cat(logs)
    top = log_w.max()
    w = torch.exp(log_w - top)
    mean = w.mean()
    log_z = float(top + torch.log(mean))
    se = float(w.std() / (math.sqrt(n) * mean)) if n > 1 else float("inf")
    return log_z, se


def log_likelihood(model, X, proposal: GaussianNoise, n_samples: int, generator
                   ) -> dict:
    """Per-row log-likelihoods of ``X`` and how they were normalised.

    Returns ``{"logp": numpy (n,), "log_z": float, "log_z_se": float, "se":
    float, "exact": bool}``: exact log Z (``log_z_se`` 0) where the model
    knows it, else the importance-sampling estimate."""
    import numpy as np
    import torch

    x = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    with torch.no_grad():
        neg_e = (-model.energy(x)).double().numpy()
        exact = model.log_normalizer()
    if exact is not None:
        log_z, log_z_se = float(exact), 0.0
    else:
        log_z, log_z_se = log_z_importance(model, proposal, n_samples, generator)
    logp = neg_e - log_z
    se = math.sqrt(log_z_se ** 2 + (logp.var(ddof=1) / len(logp) if len(logp) > 1 else 0.0))
    return {"logp": logp, "log_z": log_z, "log_z_se": log_z_se, "se": se,
            "exact": exact is not None}
