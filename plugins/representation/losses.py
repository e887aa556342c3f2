"""Contrastive losses on two views: SimCLR's NT-Xent, SogCLR and iSogCLR.

All three compare anchor ``i`` of one view with its positive (row ``i`` of
the other view) and with the ``2(B-1)`` negatives of the batch (the other
samples in both views), on cosine similarities ``s``.

- ``infonce`` (SimCLR's NT-Xent; Chen et al., ICML 2020): cross-entropy of
  the positive among the ``2B - 1`` other rows at a global temperature,
  averaged over the ``2B`` anchors.
- ``sogclr`` (Yuan et al., ICML 2022): the global contrastive loss
  ``tau log E_j exp((s_ij - s_ii+)/tau)`` over *all* negatives of the data
  set, optimised with a moving-average estimate ``u_i`` of each anchor's
  normaliser ``E_j exp(s_ij/tau)`` (indexed by sample id), so its gradient
  does not need large batches.  ``gamma`` is the weight of the batch's
  estimate: ``u_i <- (1 - gamma) u_i + gamma * batch mean`` (``gamma = 1``:
  the batch estimate alone, the batch global contrastive loss).
- ``isogclr`` (Qiu et al., ICML 2023, "Not All Semantics are Created
  Equal"): the KL-DRO robust loss ``tau_i log E_j exp((s_ij - s_ii+)/tau_i)
  + rho tau_i`` with one temperature per anchor, learned by momentum
  gradient steps on ``tau_i`` clipped to ``[tau_min, tau_max]``.

The update rules of ``u`` and ``tau`` follow the authors' library LibAUC
(``libauc/losses/contrastive.py``, ``GCLoss_v1`` with ``enable_isogclr``;
read, not copied): the two views of sample ``i`` share one stored ``u_i``
(the mean of the two updated estimates), the network's gradient uses the
updated estimate, the temperature gradient is ``log u_i + rho - E_p[s/tau_i]``
averaged over the two views, its moving average with weight ``beta`` on the
new value, then ``tau_i <- clip(tau_i - eta * m_i)``.  One difference: a
sample's estimate starts from its first batch estimate per sample (LibAUC
checks whether the whole batch is unseen).

The returned value of SogCLR/iSogCLR is the estimated objective (summed over
the two views, averaged over anchors, as LibAUC sums its two view losses)
with the gradient of the stochastic algorithm: a detached value plus a
surrogate whose gradient is ``-grad s_ii+ + mean_j p_ij grad s_ij`` with
weights ``p_ij = exp(s_ij / tau_i) / u_i``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import FromData

NSamples = Annotated[int, FromData]
#: A temperature; at 0.02 ``exp(1/tau)`` still fits float32 with room for a batch sum.
Temperature = Annotated[float, Field(ge=0.02, le=10)]
Fraction = Annotated[float, Field(gt=0, le=1)]


def _normalise(z):
    import torch.nn.functional as F

    return F.normalize(z.float(), dim=1)


def nt_xent_value(z1, z2, tau: float):
    """SimCLR's NT-Xent of two views ``(B, d)``: mean over the ``2B`` anchors
    of ``-log softmax`` of the positive among the other ``2B - 1`` rows."""
    import torch
    import torch.nn.functional as F

    z = _normalise(torch.cat([z1, z2]))
    b = len(z1)
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, target)


def _nt_xent_module():
    import torch

    class NTXent(torch.nn.Module):
        """NT-Xent at a global temperature."""

        min_batch = 2

        def __init__(self, tau: float):
            super().__init__()
            self.tau = tau

        def forward(self, z1, z2, index):
            return nt_xent_value(z1, z2, self.tau)

    return NTXent


def infonce(n_samples: NSamples, tau: Temperature = 0.1):
    """InfoNCE / SimCLR NT-Xent with a global temperature (Chen et al., ICML 2020)."""
    return _nt_xent_module()(tau)


def _pair_similarities(a, b):
    """Anchor rows ``a`` against the other view ``b`` and their own view:
    ``(positives (B,), negatives (B, 2B), negative mask (B, 2B))``."""
    import torch

    n = len(a)
    eye = torch.eye(n, dtype=torch.bool, device=a.device)
    ab, aa = a @ b.T, a @ a.T
    pos = ab.diagonal()
    neg = torch.cat([ab, aa], dim=1)
    mask = ~torch.cat([eye, eye], dim=1)
    return pos, neg, mask


def _global_contrastive_module():
    import torch

    class GlobalContrastive(torch.nn.Module):
        """SogCLR's global contrastive loss; iSogCLR when ``learn_tau``."""

        min_batch = 2

        def __init__(self, n_samples: int, tau: float, gamma: float, learn_tau: bool,
                     rho: float = 0.0, eta: float = 0.0, beta: float = 0.9,
                     tau_min: float = 0.05, tau_max: float = 0.7):
            super().__init__()
            self.gamma, self.learn_tau = gamma, learn_tau
            self.rho, self.eta, self.beta = rho, eta, beta
            self.tau_min, self.tau_max = tau_min, tau_max
            self.register_buffer("u", torch.zeros(n_samples))
            self.register_buffer("tau", torch.full((n_samples,), float(tau)))
            self.register_buffer("tau_grad", torch.zeros(n_samples))

        def _view(self, a, b, tau, u_old):
            """One view's (value, surrogate, updated u, tau gradient) per anchor."""
            pos, neg, mask = _pair_similarities(a, b)
            n_neg = mask.sum(1)  # 2(B-1)
            t = tau[:, None]
            e = torch.exp(neg / t) * mask
            batch_u = e.sum(1) / n_neg
            seen = u_old > 0
            u = torch.where(seen, (1 - self.gamma) * u_old + self.gamma * batch_u, batch_u)
            p = (e / u[:, None].clamp_min(1e-30)).detach()
            surrogate = -(pos - (p * neg).sum(1) / n_neg)
            value = tau * torch.log(u) - pos + self.rho * tau
            with torch.no_grad():
                grad = torch.log(u) + self.rho - (p * neg / t).sum(1) / n_neg
            return value, surrogate, u.detach(), grad

        def forward(self, z1, z2, index):
            a, b = _normalise(z1), _normalise(z2)
            tau, u_old = self.tau[index], self.u[index]
            va, sa, ua, ga = self._view(a, b, tau, u_old)
            vb, sb, ub, gb = self._view(b, a, tau, u_old)
            with torch.no_grad():
                self.u[index] = (ua + ub) / 2
                if self.learn_tau:
                    m = (1 - self.beta) * self.tau_grad[index] + self.beta * (ga + gb) / 2
                    self.tau_grad[index] = m
                    self.tau[index] = (tau - self.eta * m).clamp(self.tau_min, self.tau_max)
            value = (va + vb).mean()
            surrogate = (sa + sb).mean()
            return value.detach() + surrogate - surrogate.detach()

        def temperatures(self):
            """Each training sample's temperature (constant for SogCLR)."""
            return self.tau.detach().clone()

        def diagnostics(self) -> dict[str, float]:
            """Temperature quantiles of the samples seen so far (iSogCLR)."""
            if not self.learn_tau:
                return {}
            seen = self.tau[self.u > 0]
            if len(seen) == 0:
                return {}
            q = torch.quantile(seen, torch.tensor([0.1, 0.5, 0.9], device=seen.device))
            return {"tau_q10": float(q[0]), "tau_q50": float(q[1]), "tau_q90": float(q[2])}

    return GlobalContrastive


def sogclr(n_samples: NSamples, tau: Temperature = 0.1, gamma: Fraction = 0.9):
    """SogCLR: global contrastive loss with moving-average normalisers (Yuan et al., ICML 2022).

    ``gamma``: weight of the batch's estimate in each anchor's normaliser
    (1 = the batch estimate alone)."""
    return _global_contrastive_module()(n_samples, tau, gamma, learn_tau=False)


def isogclr(n_samples: NSamples, tau: Temperature = 0.1, gamma: Fraction = 0.9,
            rho: Annotated[float, Field(ge=0)] = 0.3, eta: Annotated[float, Field(ge=0)] = 0.01,
            beta: Fraction = 0.9, tau_min: Temperature = 0.05, tau_max: Temperature = 0.7):
    """iSogCLR: individualised temperatures by KL-DRO (Qiu et al., ICML 2023; LibAUC's update).

    ``tau`` is every sample's initial temperature, ``rho`` the KL radius's
    multiplier, ``eta`` the temperatures' step size (0 freezes them: SogCLR),
    ``beta`` the weight of the new gradient in their moving average."""
    if not tau_min <= tau <= tau_max:
        raise ValueError(f"isogclr: the initial tau ({tau}) must lie in [tau_min, tau_max] = "
                         f"[{tau_min}, {tau_max}]")
    return _global_contrastive_module()(n_samples, tau, gamma, learn_tau=True, rho=rho,
                                        eta=eta, beta=beta, tau_min=tau_min, tau_max=tau_max)
