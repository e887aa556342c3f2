"""Variational lower bounds on MI with a small torch critic: MINE, InfoNCE, NWJ.

A critic ``f(x, y)`` (an MLP on the concatenated pair) scores every pair of a
batch of B samples: the diagonal holds the joint pairs, the off-diagonal
entries pairs from the product of marginals (Poole et al. 2019's batch
construction; the critic trains on the CPU whatever the run's device).
With ``S = [f(x_i, y_j)]``:

- InfoNCE (van den Oord et al. 2018): ``mean_i(S_ii - logsumexp_j S_ij) +
  log B``; never above ``log B``, whatever the critic;
- NWJ (Nguyen, Wainwright and Jordan 2010): ``mean_i S_ii -
  mean_{i != j} exp(S_ij - 1)``;
- MINE (Belghazi et al. 2018), the Donsker-Varadhan bound ``mean_i S_ii -
  log mean_{i != j} exp(S_ij)``, trained with the paper's moving-average
  correction of the gradient of the log term.

The critic trains on one part of the sample (``1 - test_fraction``) and the
bound is evaluated on the rest, in batches of B (averaged), so a critic that
memorised its training pairs does not inflate the estimate.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Annotated

from pydantic import Field

BOUNDS = ("infonce", "nwj", "mine")


@contextmanager
def torch_threads():
    """One torch thread (or ``HARNESS_TORCH_THREADS``) while a tiny network
    trains: on a loaded 2-core machine two threads made a 50-step critic 10x
    slower (30 s against 3 s), and tiny matrices gain nothing from more."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("HARNESS_TORCH_THREADS", "1")))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _critic(dim: int, hidden: int, layers: int):
    import torch

    mods, width = [], dim
    for _ in range(layers):
        mods += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    mods.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*mods)


def score_matrix(critic, x, y):
    """``S[i, j] = f(x_i, y_j)`` for a batch (B, dx), (B, dy)."""
    import torch

    b = len(x)
    pairs = torch.cat([x.unsqueeze(1).expand(b, b, x.shape[1]),
                       y.unsqueeze(0).expand(b, b, y.shape[1])], dim=2)
    return critic(pairs).squeeze(-1)


def bound(name: str, scores, ema=None):
    """The value of bound ``name`` on a score matrix; for ``mine`` with a
    moving average ``ema`` of ``mean exp`` (a tensor), also the surrogate
    whose gradient is MINE's bias-corrected one."""
    import math

    import torch

    b = scores.shape[0]
    diag = scores.diagonal()
    off = scores[~torch.eye(b, dtype=torch.bool, device=scores.device)]
    if name == "infonce":
        return (diag - torch.logsumexp(scores, dim=1)).mean() + math.log(b)
    if name == "nwj":
        return diag.mean() - torch.exp(off - 1).mean()
    log_mean_exp = torch.logsumexp(off, dim=0) - math.log(off.numel())
    value = diag.mean() - log_mean_exp
    if ema is None:
        return value
    # grad of log E[e^f] is E[e^f grad f] / E[e^f]; MINE divides by a moving average instead
    surrogate = diag.mean() - torch.exp(log_mean_exp) / ema.detach()
    return value, surrogate


class VariationalBound:
    """A critic trained to maximise one of ``BOUNDS``."""

    def __init__(self, name: str, batch_size: int, steps: int, lr: float, hidden: int,
                 layers: int, test_fraction: float, ema_rate: float = 0.01):
        self.name = name
        self.batch_size = batch_size
        self.steps = steps
        self.lr = lr
        self.hidden = hidden
        self.layers = layers
        self.test_fraction = test_fraction
        self.ema_rate = ema_rate
        # two points for training and two for evaluation: a batch needs a negative pair
        self.min_samples = 4

    def _split(self, n: int, rng):
        perm = rng.permutation(n)
        n_test = min(n - 2, max(2, int(round(self.test_fraction * n))))
        return perm[n_test:], perm[:n_test]

    def estimate(self, x, y, seed: int) -> float:
        with torch_threads():
            return self._estimate(x, y, seed)

    def _estimate(self, x, y, seed: int) -> float:
        import numpy as np
        import torch

        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        train, test = self._split(len(x), rng)
        tx, ty = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
        # standardised with the training part's moments: the critic's scale-free input
        mx, sx = tx[train].mean(0), tx[train].std(0).clamp_min(1e-6)
        my, sy = ty[train].mean(0), ty[train].std(0).clamp_min(1e-6)
        tx, ty = (tx - mx) / sx, (ty - my) / sy
        critic = _critic(tx.shape[1] + ty.shape[1], self.hidden, self.layers)
        opt = torch.optim.Adam(critic.parameters(), lr=self.lr)
        b = min(self.batch_size, len(train))
        ema = torch.tensor(1.0)
        for _ in range(self.steps):
            idx = torch.as_tensor(rng.choice(train, size=b, replace=False))
            scores = score_matrix(critic, tx[idx], ty[idx])
            if self.name == "mine":
                value, objective = bound("mine", scores, ema)
                with torch.no_grad():
                    off = scores[~torch.eye(b, dtype=torch.bool)]
                    ema = (1 - self.ema_rate) * ema + self.ema_rate * torch.exp(off).mean()
            else:
                objective = bound(self.name, scores)
            opt.zero_grad()
            (-objective).backward()
            opt.step()
        return self._evaluate(critic, tx[test], ty[test], rng)

    def _evaluate(self, critic, x, y, rng) -> float:
        import torch

        b = min(self.batch_size, len(x))
        order = rng.permutation(len(x))
        values = []
        with torch.no_grad():
            for start in range(0, len(x) - b + 1, b):
                idx = torch.as_tensor(order[start:start + b])
                values.append(float(bound(self.name, score_matrix(critic, x[idx], y[idx]))))
        return float(sum(values) / len(values))


Positive = Annotated[int, Field(ge=1)]
Rate = Annotated[float, Field(gt=0, le=1)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


def infonce(batch_size: Annotated[int, Field(ge=2)] = 128, steps: Positive = 500,
            lr: Rate = 1e-3, hidden: Positive = 64, layers: Positive = 2,
            test_fraction: Fraction = 0.5) -> VariationalBound:
    """InfoNCE lower bound (van den Oord et al. 2018), MLP critic; at most log(batch_size)."""
    return VariationalBound("infonce", batch_size, steps, lr, hidden, layers, test_fraction)


def nwj(batch_size: Annotated[int, Field(ge=2)] = 128, steps: Positive = 500,
        lr: Rate = 1e-3, hidden: Positive = 64, layers: Positive = 2,
        test_fraction: Fraction = 0.5) -> VariationalBound:
    """NWJ (f-divergence) lower bound (Nguyen, Wainwright and Jordan 2010) with an MLP critic."""
    return VariationalBound("nwj", batch_size, steps, lr, hidden, layers, test_fraction)


def mine(batch_size: Annotated[int, Field(ge=2)] = 128, steps: Positive = 500,
         lr: Rate = 1e-3, hidden: Positive = 64, layers: Positive = 2,
         test_fraction: Fraction = 0.5,
         ema_rate: Rate = 0.01) -> VariationalBound:
    """MINE (Belghazi et al. 2018): Donsker-Varadhan bound, moving-average gradient correction."""
    return VariationalBound("mine", batch_size, steps, lr, hidden, layers, test_fraction,
                            ema_rate)

