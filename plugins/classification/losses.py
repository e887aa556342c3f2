"""Standard classification losses: cross-entropy, focal and the binary margin
baselines (logistic, hinge, exponential) that EnsLoss is compared against.

Every loss is a small callable object, ``loss(logits, targets, **extras)``
returning the batch mean; ``per_sample`` returns the ``(N,)`` losses so that
wrappers such as ``kl_dro`` can reweight any of them.  This module also holds
the shared base classes used by ``losses_robust`` and ``losses_metric``.

torch is imported inside functions so that ``harness plugins`` starts fast.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import hookimpl


def binary_error(name: str, n_classes: int) -> ValueError:
    """The one message every binary loss gives on non-binary data."""
    return ValueError(f"loss {name!r} is binary: it needs 2 classes, the data has {n_classes}; "
                      f"use a one_vs_rest transform on the dataset")


class Loss:
    """Base of the built-in losses: ``__call__`` is the mean of ``per_sample``.

    ``batch_level`` losses (AnyLoss, EnsLoss) have no per-sample form: their
    value couples the whole batch, so reweighting wrappers must reject them."""

    name = "loss"
    binary = False
    batch_level = False

    def setup(self, n_classes: int, class_counts: list[int], n_train: int) -> None:
        """Called once before training; the default needs nothing."""

    # Subclasses define per_sample(logits, targets, **extras) -> (N,); the
    # batch-level ones override __call__ instead and have no per_sample, so
    # that hasattr(loss, "per_sample") tells a wrapper whether it may reweight.

    def __call__(self, logits, targets, **extras):
        return self.per_sample(logits, targets, **extras).mean()

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class BinaryLoss(Loss):
    """A loss defined for two classes on the score f of the positive class.

    ``logit_head = 1`` asks the task for the papers' model: one output f per
    sample, ``(N, 1)`` logits.  A 2-logit model is accepted too, with
    f = logit_1 - logit_0; its last layer then moves f twice as fast as a
    1-logit one (both rows of the weight move), i.e. a doubled learning rate."""

    binary = True
    #: outputs per sample of the model this loss is defined on (the task reads it)
    logit_head = 1

    def setup(self, n_classes: int, class_counts: list[int], n_train: int) -> None:
        if n_classes != 2:
            raise binary_error(self.name, n_classes)

    def check(self, logits) -> None:
        if logits.ndim != 2 or logits.shape[1] not in (1, 2):
            raise binary_error(self.name, logits.shape[1] if logits.ndim == 2 else 1)

    def score(self, logits):
        """f: the single logit, or logit_1 - logit_0 of a 2-logit model."""
        self.check(logits)
        return logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]

    def signed_margin(self, logits, targets):
        """y f with y in {-1, +1}: positive when the sample is right."""
        f = self.score(logits)
        y = targets.to(f.dtype) * 2 - 1
        return y * f


def two_class_logits(logits):
    """``(N, 2)`` logits ``[0, f]`` of a 1-logit model's ``(N, 1)`` output (``(N, 2)`` passes
    through): their softmax is ``[1 - sigmoid(f), sigmoid(f)]``, so metrics, cross-entropy
    and calibrators see two classes whatever the head."""
    import torch

    if logits.ndim == 2 and logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


# -- multi-class ----------------------------------------------------------------


class CrossEntropy(Loss):
    name = "cross_entropy"
    #: stateless per-sample form: the batched engine may stack runs of it
    batchable = True

    def __init__(self, label_smoothing: float = 0.0,
                 class_weight: str | list[float] | None = None):
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        # "balanced" is only known once the class counts are (in setup).
        self._weight = None if class_weight in (None, "balanced") else list(class_weight)

    def setup(self, n_classes: int, class_counts: list[int], n_train: int) -> None:
        if self.class_weight == "balanced":
            # max(.., 1): a class absent from train would get an infinite weight,
            # which label smoothing would then multiply into every sample.
            self._weight = [n_train / (n_classes * max(int(c), 1)) for c in class_counts]
        if self._weight is not None and len(self._weight) != n_classes:
            raise ValueError(f"loss 'cross_entropy': class_weight has {len(self._weight)} "
                             f"entries, the data has {n_classes} classes")

    def per_sample(self, logits, targets, **extras):
        import torch
        import torch.nn.functional as F

        weight = None
        if self.class_weight == "balanced" and self._weight is None:
            raise ValueError("loss 'cross_entropy' with class_weight='balanced' needs "
                             "setup(n_classes, class_counts, n_train) before use")
        if self._weight is not None:
            if len(self._weight) != logits.shape[1]:
                raise ValueError(f"loss 'cross_entropy': class_weight has {len(self._weight)} "
                                 f"entries, the logits have {logits.shape[1]} classes")
            weight = torch.tensor(self._weight, dtype=logits.dtype, device=logits.device)
        # Per-sample w_y * l_i, averaged over N (not over sum w_y as torch's
        # "mean" does) so that per_sample and kl_dro see the same numbers;
        # balanced weights average to 1 over the train split anyway.
        return F.cross_entropy(logits, targets, weight=weight, reduction="none",
                               label_smoothing=self.label_smoothing)


class Focal(Loss):
    name = "focal"
    batchable = True
    #: may differ between stacked runs: per_sample broadcasts a per-row tensor
    batch_params = ("gamma",)

    def __init__(self, gamma: float = 2.0, alpha: float | None = None):
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"focal alpha must be in [0, 1], got {alpha}")
        self.gamma = gamma
        self.alpha = alpha

    def _check_alpha(self, n_classes: int) -> None:
        if self.alpha is not None and n_classes != 2:
            raise ValueError(f"loss 'focal': alpha weighs the positive class of a binary "
                             f"problem, the data has {n_classes} classes; use alpha=None "
                             f"(or cross_entropy with class_weight for per-class weights)")

    def setup(self, n_classes: int, class_counts: list[int], n_train: int) -> None:
        self._check_alpha(n_classes)

    def per_sample(self, logits, targets, **extras):
        import torch

        self._check_alpha(logits.shape[1])
        logp = torch.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
        # -expm1(log p) keeps 1 - p accurate for confident samples; it still
        # reaches 0 when log p rounds to 0 (a logit gap ~100 in float32), and
        # there (1 - p)^gamma has an infinite derivative for gamma < 1: the
        # clamp at the smallest normal number keeps the gradient 0, not nan.
        one_minus_p = (-torch.expm1(logp)).clamp_min(torch.finfo(logp.dtype).tiny)
        loss = -(one_minus_p ** self.gamma) * logp
        if self.alpha is not None:
            # Lin et al.'s alpha_t: alpha for the positive class, 1 - alpha otherwise.
            t = targets.to(logits.dtype)
            loss = loss * (self.alpha * t + (1 - self.alpha) * (1 - t))
        return loss


# -- binary margin baselines ------------------------------------------------------


class Logistic(BinaryLoss):
    name = "bce"

    def per_sample(self, logits, targets, **extras):
        import torch.nn.functional as F

        return F.softplus(-self.signed_margin(logits, targets))


class Hinge(BinaryLoss):
    name = "hinge"

    def per_sample(self, logits, targets, **extras):
        return (1 - self.signed_margin(logits, targets)).clamp_min(0)


class Exponential(BinaryLoss):
    name = "exponential"

    def per_sample(self, logits, targets, **extras):
        return (-self.signed_margin(logits, targets)).exp()


# -- factories ---------------------------------------------------------------------


def cross_entropy(label_smoothing: Annotated[float, Field(ge=0, le=1)] = 0.0,
                  class_weight: Literal["balanced"] | list[Annotated[float, Field(ge=0)]]
                  | None = None):
    """Cross-entropy with optional label smoothing (Szegedy et al., CVPR 2016) and class weights.

    ``class_weight="balanced"`` weighs class k by n_train / (C * count_k),
    computed in ``setup`` from the train split; a list gives the weights.
    The batch value is the mean over samples of w_y * l_i."""
    return CrossEntropy(label_smoothing, class_weight)


def focal(gamma: Annotated[float, Field(ge=0)] = 2.0,
          alpha: Annotated[float, Field(ge=0, le=1)] | None = None):
    """Focal loss (Lin et al., ICCV 2017): down-weights easy examples by (1-p_y)^gamma.

    ``alpha`` (binary data only) weighs the positive class by alpha and the
    negative one by 1 - alpha; ``gamma=0`` is cross-entropy."""
    return Focal(gamma, alpha)


def bce():
    """Binary logistic loss softplus(-y f) on a single-logit model's score f (Cox, JRSS B 1958).

    Binary only; one of the EnsLoss baselines.  The task builds a 1-output
    model (``logit_head = 1``); on a 2-logit model f = logit_1 - logit_0."""
    return Logistic()


def hinge():
    """Hinge loss max(0, 1 - y f) on a single-logit model's score f (Cortes & Vapnik, Machine Learning 1995).

    Binary only; one of the EnsLoss baselines.  The task builds a 1-output
    model (``logit_head = 1``); on a 2-logit model f = logit_1 - logit_0."""  # noqa: E501
    return Hinge()


def exponential():
    """Exponential loss exp(-y f), as in AdaBoost (Freund & Schapire, JCSS 1997); inf for margins y f < -88 (float32): the run ends diverged.

    Binary only; one of the EnsLoss baselines, on a single-logit model's score
    f (``logit_head = 1``; f = logit_1 - logit_0 on a 2-logit model).  Once a
    margin is below about -88 in float32, exp(-y f) overflows to inf and the
    run ends as ``diverged`` ("train loss became inf"); lower the learning
    rate or use bce."""  # noqa: E501
    return Exponential()


@hookimpl
def register_losses(register):
    register("cross_entropy", cross_entropy)
    register("focal", focal)
    register("bce", bce)
    register("hinge", hinge)
    register("exponential", exponential)
