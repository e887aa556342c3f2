"""Federated strategies: FedAvg, FedProx, SCAFFOLD and FedLEx.

Every strategy is driven by ``harness_plugins.federated.simulation`` through
the members of :class:`FedAvg` (the contract is ``register_federated_strategies``
in this family's hookspecs).  Parameters are lists of tensors in
``model.parameters()`` order.

- FedAvg (McMahan et al., AISTATS 2017): local SGD, the server takes the
  sample-weighted mean of the clients' models (with ``server_lr`` < 1, a step
  of that size toward it).
- FedProx (Li et al., MLSys 2020): FedAvg plus the proximal term
  ``mu/2 ||w - w_global||^2`` in each local objective (gradient
  ``mu (w - w_global)``); ``mu = 0`` is FedAvg step for step.
- SCAFFOLD (Karimireddy et al., ICML 2020): local steps use
  ``g - c_i + c``; after ``K`` local steps at learning rate ``lr`` the client
  takes option II, ``c_i+ = c_i - c + (x - y_i) / (K lr)``; the server adds
  ``(1/N) sum_{i in S} (c_i+ - c_i)`` to ``c`` (N = all clients), so after a
  round with every client ``c`` is the mean of the ``c_i`` (all start at 0).
  The model is aggregated as FedAvg's (sample weights; the paper writes the
  plain mean of the sampled clients, equal under equal client sizes).
- FedLEx (Internò et al., IJCNN 2024, arXiv 2506.18640; code
  github.com/ChristianInterno/FedLEx): see :class:`FedLEx`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field


class FedAvg:
    """Federated averaging: local SGD, sample-weighted mean of the client models."""

    name = "fedavg"

    def setup(self, sim) -> int:
        """Nothing to prepare; no bytes."""
        self.sim = sim
        return 0

    def adjust_gradients(self, k: int, params, global_params) -> None:
        """FedAvg trains the plain local objective."""

    def adjust_stacked(self, ks: list[int], grads: list, params: list, global_params) -> list:
        """``adjust_gradients`` for the stacked clients ``ks``: ``grads`` and
        ``params`` have a leading client axis; returns the changed gradients."""
        return grads

    def client_done(self, k: int, local, global_params, steps: int, lr: float) -> None:
        """No client state."""

    def aggregate(self, global_params, locals_, weights, server_lr: float) -> list:
        """``sum_k w_k y_k`` (exactly the client's model when one client holds
        all the weight), or ``x + server_lr (sum_k w_k y_k - x)``."""
        import torch

        out = []
        for j, x in enumerate(global_params):
            mean = sum(w * loc[j] for w, loc in zip(weights, locals_))
            if not isinstance(mean, torch.Tensor):  # no client: keep the model
                mean = x.clone()
            out.append(mean if server_lr == 1.0 else x + server_lr * (mean - x))
        return out

    def round_done(self, sampled) -> None:
        """No server state."""

    def payload(self, k: int) -> tuple[int, int]:
        """The model down, the model up."""
        return 1, 1


class FedProx(FedAvg):
    """FedAvg with the proximal term mu/2 ||w - w_global||^2 in each local objective."""

    name = "fedprox"

    def __init__(self, mu: float = 0.01):
        self.mu = mu

    def adjust_gradients(self, k: int, params, global_params) -> None:
        """Add ``mu (w - w_global)`` to each gradient."""
        if self.mu == 0:
            return
        for p, g in zip(params, global_params):
            if p.grad is not None:
                p.grad.add_(p.detach() - g, alpha=self.mu)

    def adjust_stacked(self, ks, grads, params, global_params) -> list:
        """``g + mu (w - w_global)`` per client."""
        if self.mu == 0:
            return grads
        return [g + self.mu * (p - g0) for g, p, g0 in zip(grads, params, global_params)]


class Scaffold(FedAvg):
    """SCAFFOLD: control variates correct client drift (option II of the paper)."""

    name = "scaffold"

    def setup(self, sim) -> int:
        """Server ``c`` and every client's ``c_i`` start at zero."""
        import torch

        self.sim = sim
        self.c = [torch.zeros_like(p) for p in sim.global_params]
        self.c_clients: dict[int, list] = {}
        self.delta: dict[int, list] = {}
        return 0

    def client_c(self, k: int) -> list:
        """Client ``k``'s control variate (zeros until it has trained)."""
        import torch

        if k not in self.c_clients:
            self.c_clients[k] = [torch.zeros_like(p) for p in self.c]
        return self.c_clients[k]

    def adjust_gradients(self, k: int, params, global_params) -> None:
        """``g <- g - c_i + c``."""
        ci = self.client_c(k)
        for p, c_k, c in zip(params, ci, self.c):
            if p.grad is not None:
                p.grad.sub_(c_k).add_(c)

    def adjust_stacked(self, ks, grads, params, global_params) -> list:
        """``g - c_i + c`` per client (the correction is fixed within a round)."""
        import torch

        key = tuple(ks)
        if getattr(self, "_stacked_key", None) != key:
            self._stacked_key = key
            self._correction = [c - torch.stack([self.client_c(k)[j] for k in ks])
                                for j, c in enumerate(self.c)]
        return [g + corr for g, corr in zip(grads, self._correction)]

    def client_done(self, k: int, local, global_params, steps: int, lr: float) -> None:
        """Option II: ``c_i+ = c_i - c + (x - y_i) / (K lr)``; keep ``c_i+ - c_i``."""
        ci = self.client_c(k)
        scale = 1.0 / (max(steps, 1) * lr)
        new = [c_k - c + (x - y) * scale for c_k, c, x, y in zip(ci, self.c, global_params,
                                                                 local)]
        self.delta[k] = [n - o for n, o in zip(new, ci)]
        self._stacked_key = None
        self.c_clients[k] = new

    def round_done(self, sampled) -> None:
        """``c <- c + (1/N) sum_{i in S} (c_i+ - c_i)``."""
        n = self.sim.n_clients
        for k in sampled:
            for c, d in zip(self.c, self.delta.pop(k)):
                c.add_(d, alpha=1.0 / n)

    def payload(self, k: int) -> tuple[int, int]:
        """Model and ``c`` down; model and ``c_i+ - c_i`` up."""
        return 2, 2


class FedLEx(FedAvg):
    """FedLEx: an exploration phase builds a global guidance matrix from the
    explorers' parameter deviations; every later local gradient is scaled by it.

    As the paper and its public code (github.com/ChristianInterno/FedLEx,
    ``GTL_utils.create_mask``, ``FedlexClient.update``) describe: before round 1
    a fraction ``explore_fraction`` of the clients (seeded, paired across
    methods) each train a copy of the initial global model ``theta_0`` for
    ``explore_epochs`` local epochs (the "scouts"); per parameter tensor the
    guidance is ``G = mean_s (theta_s - theta_0)^2``, normalised to [0, 1]
    by its min and max over the tensor (``normalization: robust``: median and
    inter-quartile range, the code's alternative).  In every round each
    client's gradient is multiplied by ``G`` elementwise before its optimizer
    step; aggregation is FedAvg's.

    Not reproduced from the code: its base model ``tl_base`` is the global
    model after one epoch on the first explorer's data, and the explorers
    train the server's model object in place one after another (so the
    global model starts from their training); here every scout starts from
    ``theta_0`` and the global model from the initialisation every method
    shares.  The code's early stopping of scouts on their last batch loss
    (``Patience_mask``) is left out (a fixed ``explore_epochs``), and the
    guidance is built once, not rebuilt per round from the sampled clients'
    scouts (the code does that only when every client explores).  Bytes: each
    explorer downloads the model and uploads its scout once (counted in round
    1); each client downloads ``G`` the first time it is sampled.
    """

    name = "fedlex"

    def __init__(self, explore_fraction: float = 1.0, explore_epochs: int = 5,
                 normalization: Literal["minmax", "robust"] = "minmax"):
        self.explore_fraction = explore_fraction
        self.explore_epochs = explore_epochs
        self.normalization = normalization

    def setup(self, sim) -> int:
        """Run the exploration phase; return the bytes it communicated."""
        import numpy as np
        import torch

        self.sim = sim
        n = sim.n_clients
        count = max(1, round(self.explore_fraction * n))
        explorers = np.sort(sim.sampling_rng(2).choice(n, size=count, replace=False))
        theta0 = [p.detach().clone() for p in sim.global_params]
        gen = torch.Generator().manual_seed(sim.explore_seed)
        spread = [torch.zeros_like(p) for p in theta0]
        for scout, *_ in sim.train_clients([int(k) for k in explorers], theta0,
                                           self.explore_epochs, gen):
            for s, t, t0 in zip(spread, scout, theta0):
                s.add_((t - t0) ** 2, alpha=1.0 / count)
        self.guidance = [self._normalise(s) for s in spread]
        self.has_guidance: set[int] = set()
        # how far the guidance scales steps down, on average (the effective learning rate)
        total = sum(float(g.sum()) for g in self.guidance)
        sim.ctx.log_metrics({"fedlex/guidance_mean": total / sum(g.numel()
                                                                 for g in self.guidance)})
        return 2 * count * sim.model_bytes

    def _normalise(self, ls):
        import torch

        if self.normalization == "robust":
            flat = ls.flatten()
            q1, med, q3 = torch.quantile(flat, torch.tensor([0.25, 0.5, 0.75],
                                                            dtype=flat.dtype))
            iqr = q3 - q1
            return (ls - med) / iqr if iqr > 0 else torch.ones_like(ls)
        lo, hi = ls.min(), ls.max()
        # a tensor no scout moved (or moved uniformly) is left unguided
        return (ls - lo) / (hi - lo) if hi > lo else torch.ones_like(ls)

    def adjust_gradients(self, k: int, params, global_params) -> None:
        """``g <- G * g`` elementwise."""
        for p, g in zip(params, self.guidance):
            if p.grad is not None:
                p.grad.mul_(g)

    def adjust_stacked(self, ks, grads, params, global_params) -> list:
        """``G * g`` per client."""
        return [g * guide for g, guide in zip(grads, self.guidance)]

    def payload(self, k: int) -> tuple[int, int]:
        """The model (and ``G`` on a client's first round) down, the model up."""
        first = k not in self.has_guidance
        self.has_guidance.add(k)
        return (2 if first else 1), 1


Mu = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]
Epochs = Annotated[int, Field(ge=1)]


def fedavg():
    """FedAvg (McMahan et al. 2017): local SGD, sample-weighted model averaging."""
    return FedAvg()


def fedprox(mu: Mu = 0.01):
    """FedProx (Li et al. 2020): FedAvg with a proximal term mu/2 ||w - w_global||^2."""
    return FedProx(mu)


def scaffold():
    """SCAFFOLD (Karimireddy et al. 2020): control variates, option II update."""
    return Scaffold()


def fedlex(explore_fraction: Fraction = 1.0, explore_epochs: Epochs = 5,
           normalization: Literal["minmax", "robust"] = "minmax"):
    """FedLEx (Internò et al. 2024): exploration builds a guidance matrix that scales
    every later local gradient."""
    return FedLEx(explore_fraction, explore_epochs, normalization)
