"""Sharpness-aware training schemes: ``sam``, ``saf``, ``mesa``, ``grad_norm``.

Registered as ``optimizers``; each is a scheme (see
:class:`harness_plugins.classification.optimizers.Scheme`) that owns the whole optimization
step: extra forward/backward passes, extra loss terms.  ``Scheme``,
``PlainScheme`` and ``as_scheme`` are re-exported from ``optimizers``.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Annotated, Literal

from pydantic import Field

from harness import hookimpl
from harness_plugins.classification.losses import two_class_logits
from harness_plugins.classification.optimizers import PlainScheme, Scheme, as_scheme

__all__ = ["PlainScheme", "Scheme", "as_scheme", "ema_decay_for", "fd_hvp",
           "labelled_logit_mean"]


def _plain_base(base, who: str):
    import harness

    built = harness.create("optimizers", base)
    if hasattr(built, "setup"):
        raise ValueError(f"{who}: base {base!r} is a training scheme; it needs a plain optimizer "
                         "(sgd, adam, adamw)")
    return built


def _norm(tensors):
    import torch

    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


def _grads(params):
    import torch

    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            for p in params]


@contextlib.contextmanager
def _bn_frozen(model):
    """Extra forward passes at perturbed weights must not move BatchNorm running stats."""
    from torch.nn.modules.batchnorm import _BatchNorm

    saved = [(m, m.momentum) for m in model.modules() if isinstance(m, _BatchNorm)]
    for m, _ in saved:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in saved:
            m.momentum = momentum


def _grads_at(model, params, closure, shift):
    """Gradients of ``closure()`` at ``params + shift``; the weights are restored exactly
    (copied back, so no add/sub rounding drift accumulates)."""
    import torch

    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, s in zip(params, shift):
            p.add_(s)
    for p in params:
        p.grad = None
    with _bn_frozen(model):
        closure().backward()
    grads = _grads(params)
    with torch.no_grad():
        for p, s in zip(params, saved):
            p.copy_(s)
    return grads


def fd_hvp(model, closure, v, r: float = 1e-3):
    """Finite-difference Hessian-vector product ``H v ~ (g(w + r v/|v|) - g(w)) |v| / r``,
    the approximation ``grad_norm`` uses (``closure()`` returns the loss)."""
    params = [p for p in model.parameters() if p.requires_grad]
    vnorm = float(_norm(v))
    g0 = _grads_at(model, params, closure, [vi * 0 for vi in v])
    g1 = _grads_at(model, params, closure, [vi * (r / vnorm) for vi in v])
    return [(b - a) * (vnorm / r) for a, b in zip(g0, g1)]


def _distill(student, teacher, tau: float):
    """``tau^2 KL(softmax(teacher/tau) || softmax(student/tau))``, batch mean."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(student / tau, dim=1), F.log_softmax(teacher / tau, dim=1),
                    reduction="batchmean", log_target=True) * tau ** 2


class SAM(PlainScheme):
    """Sharpness-aware minimization: step with the gradient at ``w + e``."""

    def __init__(self, build, rho: float, adaptive: bool, eta: float = 0.01):
        super().__init__(build)
        self.rho, self.adaptive, self.eta = rho, adaptive, eta

    def setup(self, model, loss_fn, info) -> None:
        """Also note which trainable parameters are weights (ASAM scales only those)."""
        super().setup(model, loss_fn, info)
        # the authors' ASAM code scales parameters whose name contains "weight"
        # (linear, conv and normalisation weights); biases keep T = 1
        self.scaled = ["weight" in name for name, p in model.named_parameters()
                       if p.requires_grad]

    def step(self, batch) -> float:
        """Two forward/backward passes: ascend to ``w + e``, then update ``w`` with that
        gradient."""
        import torch

        self.epoch = batch.get("epoch", 0)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        g = _grads(self.params)
        if self.adaptive:
            # ASAM (Kwon et al., ICML 2021): e = rho T^2 g / |T g|, T = |w| + eta on
            # weights, T = 1 on biases
            t = [p.detach().abs() + self.eta if w else torch.ones_like(p)
                 for p, w in zip(self.params, self.scaled)]
            scale = self.rho / (_norm([ti * gi for ti, gi in zip(t, g)]) + 1e-12)
            shift = [ti * ti * gi * scale for ti, gi in zip(t, g)]
        else:
            scale = self.rho / (_norm(g) + 1e-12)
            shift = [gi * scale for gi in g]
        g_sam = _grads_at(self.model, self.params, lambda: self.loss(batch), shift)
        for p, gi in zip(self.params, g_sam):
            p.grad = gi
        self.optimizer.step()
        return loss.item()


class _Distill(PlainScheme):
    """The run's loss plus ``lam tau^2 KL(softmax(target/tau) || softmax(logits/tau))``
    whenever :meth:`target` returns teacher logits for the batch."""

    def target(self, batch, logits):
        raise NotImplementedError

    def after_step(self, batch, logits) -> None:
        """Hook after the update (buffer writes, EMA)."""

    def step(self, batch) -> float:
        """One pass; returns the objective (loss plus the KL term when active)."""
        import torch

        self.epoch = batch.get("epoch", 0)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(batch["x"])
        total = self.loss(batch, logits)
        # a single-logit model distils its two-class softmax [1 - sigmoid f, sigmoid f]
        wide = two_class_logits(logits)
        target = self.target(batch, wide)
        self.last_penalty = torch.zeros(())
        if target is not None:
            penalty = self.lam * _distill(wide, target, self.tau)
            total = total + penalty
            self.last_penalty = penalty.detach()
        total.backward()
        self.optimizer.step()
        self.after_step(batch, wide.detach())
        return total.item()


class SAF(_Distill):
    """Sharpness-aware training for free: distil from each sample's own logits of
    ``e_tilde`` epochs ago."""

    def __init__(self, build, lam, tau, e_tilde, e_start, e_end):
        super().__init__(build)
        self.lam, self.tau, self.e_tilde = lam, tau, e_tilde
        self.e_start, self.e_end = e_start, e_end

    def setup(self, model, loss_fn, info) -> None:
        """Allocate the ``[n_train, e_tilde + 1, C]`` logit ring buffer."""
        import torch

        super().setup(model, loss_fn, info)
        ref = self.params[0] if self.params else torch.zeros(())
        self.buffer = torch.zeros(info.n_train, self.e_tilde + 1, info.n_classes,
                                  device=ref.device, dtype=ref.dtype)
        self.valid_from = 0  # first epoch whose buffer slots hold logits of the current model

    def active(self, epoch: int) -> bool:
        """Whether the KL term is on in ``epoch`` (E_start < epoch < E_end, old logits exist)."""
        return (epoch > self.e_start and (self.e_end is None or epoch < self.e_end)
                and epoch - self.e_tilde >= self.valid_from)

    def target(self, batch, logits):
        """The batch samples' logits recorded exactly ``e_tilde`` epochs ago."""
        if not self.active(self.epoch):
            return None
        idx = batch["index"].to(self.buffer.device)
        return self.buffer[idx, (self.epoch - self.e_tilde) % (self.e_tilde + 1)]

    def after_step(self, batch, logits) -> None:
        """Record this epoch's logits (of the weights before the update, as the loss saw)."""
        idx = batch["index"].to(self.buffer.device)
        self.buffer[idx, self.epoch % (self.e_tilde + 1)] = logits.to(self.buffer.dtype)

    def reset(self) -> None:
        """Old logits belong to the discarded model: wait ``e_tilde`` epochs for new ones."""
        super().reset()
        self.valid_from = self.epoch + 1


class MESA(_Distill):
    """Memory-efficient SAF: distil from an exponential-moving-average teacher."""

    def __init__(self, build, decay, lam, tau, e_start):
        super().__init__(build)
        self.decay, self.lam, self.tau, self.e_start = decay, lam, tau, e_start

    def setup(self, model, loss_fn, info) -> None:
        """Copy the model into a frozen EMA teacher; fix the decay from the run length."""
        super().setup(model, loss_fn, info)
        self.teacher = copy.deepcopy(model).requires_grad_(False)
        # eval mode: no dropout noise in the targets; BN uses the EMA of the running stats
        self.teacher.eval()
        self.pairs = list(zip(self.teacher.state_dict().values(), model.state_dict().values()))
        self.ema_decay = self.decay if self.decay is not None else ema_decay_for(
            getattr(info, "steps_per_epoch", 1))

    def target(self, batch, logits):
        """The EMA teacher's logits, after ``e_start``."""
        import torch

        if self.epoch <= self.e_start:
            return None
        with torch.no_grad():
            return two_class_logits(self.teacher(batch["x"]))

    def after_step(self, batch, logits) -> None:
        """EMA update of the teacher's weights and buffers."""
        import torch

        with torch.no_grad():
            for t, s in self.pairs:
                if t.is_floating_point():
                    t.mul_(self.ema_decay).add_(s, alpha=1 - self.ema_decay)
                else:
                    t.copy_(s)

    def reset(self) -> None:
        """Restart the teacher from the (re-initialised) model."""
        super().reset()
        self.teacher.load_state_dict(self.model.state_dict())

    def extra_metrics(self) -> dict[str, float]:
        """The teacher's accuracy and mean max-probability at ``tau`` on the validation split
        (the train split when the task gives no validation data), so a run shows whether
        the teacher learned: an untrained one has chance accuracy and near-uniform
        targets, and the KL term then acts as label smoothing."""
        import torch

        X = getattr(self.info, "X_val", None)
        y = getattr(self.info, "y_val", None)
        split = "val"
        if X is None or y is None:
            X, y, split = self.info.X_train, self.info.y_train, "train"
        if X is None or y is None:
            return {}
        device = self.params[0].device if self.params else None
        with torch.no_grad():
            logits = two_class_logits(torch.cat([
                self.teacher(torch.as_tensor(X[i:i + 4096], device=device))
                for i in range(0, len(X), 4096)]))
            y = torch.as_tensor(y, device=logits.device)
            acc = float((logits.argmax(1) == y).float().mean())
            conf = float(torch.softmax(logits.double() / self.tau, 1).amax(1).mean())
        return {f"teacher_{split}_accuracy": acc, f"teacher_{split}_confidence": conf,
                "teacher_decay": float(self.ema_decay)}


def ema_decay_for(steps_per_epoch: int) -> float:
    """``1 - 1/steps_per_epoch``: an EMA whose horizon (the steps over which a weight decays
    by 1/e) is one epoch, whatever the run's length."""
    return 1.0 - 1.0 / max(1, int(steps_per_epoch))


def labelled_logit_mean(logits, targets):
    """G: the batch mean of the model's output for the labelled class (of the single
    output on a 1-logit model), the classification analogue of IGNITE's surrogate
    prediction."""
    if logits.shape[1] == 1:
        return logits[:, 0].mean()
    return logits.gather(1, targets[:, None]).mean()


class GradNorm(PlainScheme):
    """Gradient-norm penalty ``lam rho |grad G|`` (G the batch mean of the model's
    prediction, IGNITE's quantity; ``penalty="loss"``: G = the loss) with a
    finite-difference Hessian-vector step and dual ascent on ``lam``."""

    def __init__(self, build, rho, r, eps, lam0, eta, penalty: str = "prediction"):
        if penalty not in ("prediction", "loss"):
            raise ValueError(f"grad_norm: penalty must be 'prediction' or 'loss', got "
                             f"{penalty!r}")
        super().__init__(build)
        self.rho, self.r, self.eps, self.lam0, self.eta = rho, r, eps, lam0, eta
        self.penalty = penalty
        self.lam = lam0

    def setup(self, model, loss_fn, info) -> None:
        """Start the dual variable at ``lam0``."""
        super().setup(model, loss_fn, info)
        self.lam = self.lam0

    def quantity(self, batch, logits=None):
        """G on ``batch``: the labelled-class output mean, or the loss."""
        if self.penalty == "loss":
            return self.loss(batch, logits)
        if logits is None:
            logits = self.model(batch["x"])
        return labelled_logit_mean(logits, batch["y"])

    def step(self, batch) -> float:
        """``grad = grad L + lam (rho/r)(grad G(w + r u/|u|) - u)`` with ``u = grad G``, then
        ``lam += eta (rho |u| - eps)``."""
        import torch

        self.epoch = batch.get("epoch", 0)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(batch["x"])
        loss = self.loss(batch, logits)
        if self.penalty == "loss":
            loss.backward()
            g_loss = u = _grads(self.params)
        else:
            g_loss = _zero_filled(torch.autograd.grad(loss, self.params, retain_graph=True,
                                                      allow_unused=True), self.params)
            u = _zero_filled(torch.autograd.grad(self.quantity(batch, logits), self.params,
                                                 allow_unused=True), self.params)
        unorm = float(_norm(u))
        grads = g_loss
        if self.lam > 0 and 0 < unorm < float("inf"):
            shift = [ui * (self.r / unorm) for ui in u]
            g_hat = _grads_at(self.model, self.params, lambda: self.quantity(batch), shift)
            coef = self.lam * self.rho / self.r
            grads = [gl + coef * (gi - ui) for gl, ui, gi in zip(g_loss, u, g_hat)]
        for p, gi in zip(self.params, grads):
            p.grad = gi
        if unorm == unorm:  # a nan norm must not poison the dual variable
            self.lam = max(0.0, self.lam + self.eta * (self.rho * unorm - self.eps))
        self.optimizer.step()
        return loss.item()

    def reset(self) -> None:
        """Restart the dual variable too."""
        super().reset()
        self.lam = self.lam0


def _zero_filled(grads, params):
    import torch

    return [torch.zeros_like(p) if g is None else g.detach() for g, p in zip(grads, params)]


def sam(base: str | dict = "sgd", rho: Annotated[float, Field(ge=0)] = 0.05,
        adaptive: bool = False, eta: Annotated[float, Field(ge=0)] = 0.01):
    """SAM, sharpness-aware minimization (Foret et al., ICLR 2021); adaptive=True is ASAM (Kwon et al., ICML 2021).

    ASAM's ascent is e = rho T^2 g / |T g| with T = |w| + eta on weights and
    T = 1 on biases, as in the authors' code."""  # noqa: E501
    return SAM(_plain_base(base, "sam"), rho, adaptive, eta)


def saf(base: str | dict = "sgd", lam: Annotated[float, Field(ge=0)] = 0.3,
        tau: Annotated[float, Field(gt=0)] = 5.0, e_tilde: Annotated[int, Field(ge=1)] = 3,
        e_start: Annotated[int, Field(ge=0)] = 5,
        e_end: Annotated[int, Field(ge=0)] | None = None):
    """SAF, sharpness-aware training for free (Du et al., NeurIPS 2022).

    Adds ``lam tau^2 KL`` to each sample's own logits of ``e_tilde`` epochs ago, for
    ``e_start < epoch < e_end``."""
    return SAF(_plain_base(base, "saf"), lam, tau, e_tilde, e_start, e_end)


def mesa(base: str | dict = "sgd", decay: Annotated[float, Field(ge=0, lt=1)] | None = None,
         lam: Annotated[float, Field(ge=0)] = 0.8, tau: Annotated[float, Field(gt=0)] = 5.0,
         e_start: Annotated[int, Field(ge=0)] = 5):
    """MESA, memory-efficient SAF with an EMA teacher (Du et al., NeurIPS 2022); EMA horizon one epoch unless decay is set.

    ``decay=None`` uses 1 - 1/steps_per_epoch.  The paper's 0.9998 suits
    ImageNet-length runs; over the few hundred steps of a small suite such a
    teacher stays at its initialisation (chance accuracy, near-uniform
    targets).  The teacher's validation accuracy and confidence are logged
    per epoch (``train/teacher_val_accuracy``)."""  # noqa: E501
    return MESA(_plain_base(base, "mesa"), decay, lam, tau, e_start)


def grad_norm(base: str | dict = "sgd", rho: Annotated[float, Field(ge=0)] = 0.05,
              r: Annotated[float, Field(gt=0)] = 0.05, eps: Annotated[float, Field(ge=0)] = 0.1,
              lam0: Annotated[float, Field(ge=0)] = 1e-3,
              eta: Annotated[float, Field(ge=0)] = 1e-3,
              penalty: Literal["prediction", "loss"] = "prediction"):
    """Gradient-norm sharpness regularizer on the model's prediction, with dual ascent (IGNITE, Dao et al., NeurIPS 2024).

    Penalises rho |grad_w G| with G the batch mean of the model's output for
    the labelled class (IGNITE's surrogate prediction; ``penalty="loss"``
    penalises the loss gradient instead).  Finite-difference Hessian-vector
    step of radius ``r``; ``lam`` starts at ``lam0`` and follows
    ``lam = max(0, lam + eta (rho |grad G| - eps))``.  Three backward passes
    per step (two with ``penalty="loss"``)."""  # noqa: E501
    return GradNorm(_plain_base(base, "grad_norm"), rho, r, eps, lam0, eta, penalty)


@hookimpl
def register_optimizers(register):
    """Register the training schemes."""
    register("sam", sam)
    register("saf", saf)
    register("mesa", mesa)
    register("grad_norm", grad_norm)
