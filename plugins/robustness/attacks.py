"""Adversarial attacks on model inputs: FGSM and PGD in the L-inf and L2 norms.

``eps`` lives in model-input units (standardised features, normalised
pixels; see ``harness_plugins.robustness.hookspecs``).  torch is imported
inside functions, so registering these costs no torch import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import Field

Norm = Literal["linf", "l2"]


def input_bounds(X, chunk: int = 4096):
    """``(lo, hi)``: each input coordinate's minimum and maximum over the rows of
    ``X`` (the train split as model inputs), shaped ``(1, *X.shape[1:])``: the valid
    range an attack clips to by default."""
    import torch

    lo = hi = None
    for i in range(0, len(X), chunk):
        part = torch.as_tensor(X[i:i + chunk]).float()
        a, b = part.amin(0, keepdim=True), part.amax(0, keepdim=True)
        lo = a if lo is None else torch.minimum(lo, a)
        hi = b if hi is None else torch.maximum(hi, b)
    return lo, hi


def logits_of(model, x):
    """The model's logits on ``x``; a single-logit output becomes ``[0, f]``."""
    from harness_plugins.classification.losses import two_class_logits

    return two_class_logits(model(x))


def _row_norm(t):
    import torch

    return torch.linalg.vector_norm(t.flatten(1), dim=1).view(-1, *[1] * (t.ndim - 1))


def project(delta, eps: float, norm: str):
    """``delta`` projected onto the ``eps`` ball of ``norm``, row by row."""
    import torch

    if norm == "linf":
        return delta.clamp(-eps, eps)
    scale = torch.clamp(eps / _row_norm(delta).clamp_min(1e-12), max=1.0)
    return delta * scale


def _clip(x_adv, x, bounds):
    """Clip to the valid range, widened per example to contain the clean ``x`` (a test
    point outside the train range stays where it is): clipping each coordinate to an
    interval that holds ``x`` never moves ``x_adv`` away from ``x``, so the result stays
    in the ball."""
    import torch

    if bounds is None:
        return x_adv
    lo, hi = bounds
    lo = torch.minimum(lo.to(x.device, x.dtype), x)
    hi = torch.maximum(hi.to(x.device, x.dtype), x)
    return torch.maximum(torch.minimum(x_adv, hi), lo)


def _random_start(x, eps: float, norm: str, generator):
    """A uniform point of the L-inf ball, or a point of the L2 ball with a uniform
    direction and radius ``eps * u^(1/d)`` (uniform in volume)."""
    import torch

    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (2 * u - 1) * eps
    d = x[0].numel()
    g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    r = torch.rand((len(x),), generator=generator, device=x.device, dtype=x.dtype)
    radius = eps * r.pow(1.0 / d).view(-1, *[1] * (x.ndim - 1))
    return g / _row_norm(g).clamp_min(1e-12) * radius


class GradientAttack:
    """``steps`` steps of size ``step_size`` along the sign (L-inf) or the normalised
    gradient (L2) of the objective, each projected onto the ``eps`` ball around ``x``
    and clipped to the valid range; FGSM is one step of size ``eps`` from ``x``."""

    def __init__(self, eps: float, steps: int, step_size: float | None, norm: str,
                 random_start: bool, name: str):
        self.eps, self.steps, self.norm = float(eps), int(steps), norm
        self.random_start, self.name = random_start, name
        # Madry et al.'s rule: 2.5 eps / steps lets a walk from the ball's edge cross it
        self.step_size = (float(step_size) if step_size is not None
                          else 2.5 * self.eps / max(1, self.steps))

    def __repr__(self) -> str:
        return (f"{self.name}(eps={self.eps}, steps={self.steps}, step_size={self.step_size}, "
                f"norm={self.norm}, random_start={self.random_start})")

    def perturb(self, model, x, y, bounds=None, objective: Callable | None = None,
                generator=None, start=None):
        """``x_adv`` within ``eps`` of ``x`` (see the ``attacks`` contract); ``start``, when
        given, replaces the attack's own starting point (TRADES starts near ``x``)."""
        import torch
        import torch.nn.functional as F

        x = x.detach()
        if self.eps == 0 or self.steps == 0:
            return x.clone()
        if objective is None:
            def objective(logits):
                return F.cross_entropy(logits, y, reduction="none")
        if start is not None:
            x_adv = x + project(start.detach() - x, self.eps, self.norm)
        elif self.random_start:
            x_adv = x + _random_start(x, self.eps, self.norm, generator)
        else:
            x_adv = x.clone()
        x_adv = _clip(x_adv, x, bounds)
        was = model.training
        model.eval()
        try:
            with torch.enable_grad():
                for _ in range(self.steps):
                    x_adv.requires_grad_(True)
                    value = objective(logits_of(model, x_adv)).sum()
                    (grad,) = torch.autograd.grad(value, x_adv)
                    x_adv = x_adv.detach()
                    if self.norm == "linf":
                        x_adv = x_adv + self.step_size * grad.sign()
                    else:
                        x_adv = x_adv + self.step_size * grad / _row_norm(grad).clamp_min(1e-12)
                    x_adv = _clip(x + project(x_adv - x, self.eps, self.norm), x, bounds)
        finally:
            model.train(was)
        return x_adv.detach()


# -- factories ----------------------------------------------------------------------

Eps = Annotated[float, Field(ge=0)]


def pgd(eps: Eps = 0.3, steps: Annotated[int, Field(ge=0)] = 10,
        step_size: Annotated[float, Field(gt=0)] | None = None, norm: Norm = "linf",
        random_start: bool = True):
    """Projected gradient descent on the cross-entropy (Madry et al., ICLR 2018), L-inf or L2; eps in model-input units.

    ``steps`` steps of ``step_size`` (default 2.5 eps / steps) from a random
    point of the ball (``random_start``), each projected onto the ``eps``
    ball and clipped to the valid input range.  eps is in the units the model
    sees: standardised features (std 1 per feature) or normalised pixels
    (8/255 in pixel space is 8/255 / std, ~0.13 on CIFAR-10).  ``eps = 0`` or
    ``steps = 0`` returns the clean input."""  # noqa: E501
    return GradientAttack(eps, steps, step_size, norm, random_start, "pgd")


def fgsm(eps: Eps = 0.3, norm: Norm = "linf"):
    """Fast gradient sign method (Goodfellow et al., ICLR 2015): one step of size eps along the gradient's sign (L2: its direction).

    x + eps sign(grad_x CE) (L-inf) or x + eps grad / |grad| (L2), clipped to
    the valid input range; eps in model-input units, as for ``pgd``."""  # noqa: E501
    return GradientAttack(eps, 1, eps if eps > 0 else None, norm, False, "fgsm")
