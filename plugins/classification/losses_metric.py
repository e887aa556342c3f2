"""Batch-level binary losses: AnyLoss (a confusion-matrix metric as a loss) and
EnsLoss (random calibrated loss derivatives).

Neither is a mean of per-sample losses, so they have no ``per_sample`` and
``kl_dro`` rejects them.  Formulas follow /work/shared/METHODS.md ("Losses");
torch is imported inside functions.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import Unbounded, hookimpl
from harness_plugins.classification.losses import BinaryLoss

# AnyLoss's smoothing constant, against 0/0 on one-class batches.
_S = 1e-5


class AnyLoss(BinaryLoss):
    name = "anyloss"
    batch_level = True

    def __init__(self, metric: str, beta: float, L: float):
        if metric not in ("f1", "fbeta", "gmean", "balanced_accuracy"):
            raise ValueError(f"anyloss metric must be f1, fbeta, gmean or balanced_accuracy, "
                             f"got {metric!r}")
        if beta <= 0 or L <= 0:
            raise ValueError(f"anyloss beta and L must be > 0, got beta={beta}, L={L}")
        self.metric = metric
        self.beta = beta
        self.L = L

    def soft_confusion(self, logits, targets):
        """(TP, FP, FN, TN, n1, n0, sum A) of the batch with soft predictions
        A = sigmoid(L (p - 0.5)); p = sigmoid(f) (= softmax(logits)[:, 1] for 2 logits)."""
        import torch

        p = torch.sigmoid(self.score(logits))
        a = torch.sigmoid(self.L * (p - 0.5))
        y = targets.to(a.dtype)
        # N is the batch length, not a constant: the last, shorter batch of an
        # epoch must not count phantom negatives.
        n1 = y.sum()
        n0 = len(y) - n1
        tp = (y * a).sum()
        sum_a = a.sum()
        fp = sum_a - tp
        return tp, fp, n1 - tp, n0 - fp, n1, n0, sum_a

    def __call__(self, logits, targets, **extras):
        tp, _fp, _fn, tn, n1, n0, sum_a = self.soft_confusion(logits, targets)
        if self.metric in ("f1", "fbeta"):
            b2 = 1.0 if self.metric == "f1" else self.beta ** 2
            return 1 - (1 + b2) * tp / (b2 * n1 + sum_a + _S)
        if self.metric == "gmean":
            # METHODS.md: 1 - TPR * TNR, deliberately without the square root.
            return 1 - tp * tn / (n1 * n0 + _S)
        return 1 - (n0 * tp + n1 * tn) / (2 * n1 * n0 + _S)


def box_cox_inverse(z, lam: float):
    """max(1 + lam z, 0)^(1/lam), and exp(z) at lam = 0."""
    import torch

    if lam == 0:
        return torch.exp(z)
    return torch.clamp_min(1 + lam * z, 0) ** (1.0 / lam)


def ens_derivatives(margins, z, lam: float = 0.0):
    """EnsLoss derivatives g_i (detached) for margins s_i = y_i f_i from draws z_i.

    Steps 1-5 of METHODS.md: g = -BoxCoxInverse(z), sorted ascending and
    clipped at -1, given by rank of the margin (the smallest margin gets the
    most negative g, so g is non-decreasing in s: a convex loss), divided by s
    where s > 1, shifted by -1e-6 to be strictly negative.  With one draw more
    than margins (``len(z) == len(margins) + 1``) the batch is ranked together
    with a phantom sample of margin 0 that takes its share of the draws and is
    then dropped, as the authors' code does."""
    import torch

    with torch.no_grad():
        s = margins.detach()
        n = len(s)
        if len(z) not in (n, n + 1):
            raise ValueError(f"ens_derivatives: {len(z)} draws for {n} margins; "
                             f"need {n} or {n + 1}")
        if len(z) == n + 1:
            s = torch.cat([s, s.new_zeros(1)])
        g = -box_cox_inverse(z.to(device=s.device, dtype=s.dtype), lam)
        g = torch.sort(g).values.clamp_min(-1.0)
        out = torch.empty_like(g)
        # stable: a real margin tied with the phantom's 0 ranks before it
        out[torch.argsort(s, stable=True)] = g
        # Past s = 1 the derivative decays as 1/s, towards 0 for confident
        # samples; the order is kept since g <= 0.
        out = torch.where(s > 1, out / s, out)
        return out[:n] - 1e-6


class EnsLoss(BinaryLoss):
    name = "ensloss"
    batch_level = True

    def __init__(self, lam: float, resample_every: int, phantom: bool = True):
        if resample_every < 1:
            raise ValueError(f"ensloss resample_every must be >= 1, got {resample_every}")
        self.lam = lam
        self.resample_every = resample_every
        self.phantom = phantom
        self._z = None
        self._calls = 0

    def draw(self, n: int):
        """The z_i of this call (``n + 1`` of them with the phantom sample): fresh every
        ``resample_every`` calls."""
        import torch

        n = n + 1 if self.phantom else n
        if self._z is None or len(self._z) != n or self._calls % self.resample_every == 0:
            # The global CPU generator: a run is reproducible from
            # torch.manual_seed on any device.
            self._z = torch.randn(n)
        self._calls += 1
        return self._z

    def __call__(self, logits, targets, **extras):
        s = self.signed_margin(logits, targets)
        g = ens_derivatives(s, self.draw(len(s)), self.lam)
        # d loss / d s_i = g_i / N: the random derivative is the whole signal.
        return (g * s).mean()


# -- factories ---------------------------------------------------------------------


def anyloss(metric: Literal["f1", "fbeta", "gmean", "balanced_accuracy"] = "f1",
            beta: Annotated[float, Field(gt=0)] = 1.0, L: Annotated[float, Field(gt=0)] = 73.0):
    """AnyLoss: a confusion-matrix metric (F-beta, G-mean, balanced accuracy) made a differentiable loss (Han et al., KDD 2024).

    Soft confusion matrix over the batch from A = sigmoid(L (p - 0.5)),
    p = sigmoid(f) of a 1-logit model (``logit_head = 1``; softmax(logits)[:, 1]
    on a 2-logit one).  ``beta`` is used by metric="fbeta" only; the
    authors' later runs use L = 30.  Binary only; batch-level (no per_sample)."""  # noqa: E501
    return AnyLoss(metric, beta, L)


def ensloss(lam: Annotated[float, Unbounded("a Box-Cox exponent: any real")] = 0.0,
            resample_every: Annotated[int, Field(ge=1)] = 1, phantom: bool = True):
    """EnsLoss: random calibrated convex loss derivatives, an ensemble of losses by SGD (Dai, ICML 2025).

    Per batch, N + 1 draws z ~ N(0, 1) from torch's global RNG,
    g = -BoxCoxInverse_lam(z) assigned by rank of the margin among the batch's
    N margins and a phantom margin 0 whose term is dropped (the authors' code;
    ``phantom=False`` draws N); loss = mean over the N samples of
    detach(g) * y f.  The draws are renewed every ``resample_every`` calls.
    Binary only (a 1-logit model, ``logit_head = 1``); batch-level."""  # noqa: E501
    return EnsLoss(lam, resample_every, phantom)


@hookimpl
def register_losses(register):
    register("anyloss", anyloss)
    register("ensloss", ensloss)
