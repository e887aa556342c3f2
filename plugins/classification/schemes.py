"""Sharpness-aware training schemes: ``sam``, ``saf``, ``mesa``, ``grad_norm``.

Registered as ``optimizers``; each is a scheme (see
:class:`harness_plugins.classification.optimizers.Scheme`) that owns the whole optimization
step: extra forward/backward passes, extra loss terms.  ``Scheme``,
``PlainScheme`` and ``as_scheme`` are re-exported from ``optimizers``.
"""

from __future__ import annotations

import contextlib
import copy

from harness import hookimpl
from harness_plugins.classification.optimizers import PlainScheme, Scheme, as_scheme

__all__ = ["PlainScheme", "Scheme", "as_scheme", "fd_hvp"]


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

    def __init__(self, build, rho: float, adaptive: bool):
        super().__init__(build)
        self.rho, self.adaptive = rho, adaptive

    def step(self, batch) -> float:
        """Two forward/backward passes: ascend to ``w + e``, then update ``w`` with that
        gradient."""
        self.epoch = batch.get("epoch", 0)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        g = _grads(self.params)
        if self.adaptive:
            # ASAM (Kwon et al., ICML 2021): e = rho T^2 g / |T g|, T = |w| + 0.01
            t = [p.detach().abs() + 0.01 for p in self.params]
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
        target = self.target(batch, logits)
        self.last_penalty = torch.zeros(())
        if target is not None:
            penalty = self.lam * _distill(logits, target, self.tau)
            total = total + penalty
            self.last_penalty = penalty.detach()
        total.backward()
        self.optimizer.step()
        self.after_step(batch, logits.detach())
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
        """Copy the model into a frozen EMA teacher."""
        super().setup(model, loss_fn, info)
        self.teacher = copy.deepcopy(model).requires_grad_(False)
        # eval mode: no dropout noise in the targets; BN uses the EMA of the running stats
        self.teacher.eval()
        self.pairs = list(zip(self.teacher.state_dict().values(), model.state_dict().values()))

    def target(self, batch, logits):
        """The EMA teacher's logits, after ``e_start``."""
        import torch

        if self.epoch <= self.e_start:
            return None
        with torch.no_grad():
            return self.teacher(batch["x"])

    def after_step(self, batch, logits) -> None:
        """EMA update of the teacher's weights and buffers."""
        import torch

        with torch.no_grad():
            for t, s in self.pairs:
                if t.is_floating_point():
                    t.mul_(self.decay).add_(s, alpha=1 - self.decay)
                else:
                    t.copy_(s)

    def reset(self) -> None:
        """Restart the teacher from the (re-initialised) model."""
        super().reset()
        self.teacher.load_state_dict(self.model.state_dict())


class GradNorm(PlainScheme):
    """Gradient-norm penalty ``lam rho |grad L|`` with a finite-difference Hessian-vector
    step and dual ascent on ``lam``."""

    def __init__(self, build, rho, r, eps, lam0, eta):
        super().__init__(build)
        self.rho, self.r, self.eps, self.lam0, self.eta = rho, r, eps, lam0, eta
        self.lam = lam0

    def setup(self, model, loss_fn, info) -> None:
        """Start the dual variable at ``lam0``."""
        super().setup(model, loss_fn, info)
        self.lam = self.lam0

    def step(self, batch) -> float:
        """``grad += lam (rho/r)(g(w + r u/|u|) - u)``, then ``lam += eta(rho|u| - eps)``."""
        self.epoch = batch.get("epoch", 0)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        u = _grads(self.params)
        unorm = float(_norm(u))
        if self.lam > 0 and 0 < unorm < float("inf"):
            shift = [ui * (self.r / unorm) for ui in u]
            g_hat = _grads_at(self.model, self.params, lambda: self.loss(batch), shift)
            coef = self.lam * self.rho / self.r
            for p, ui, gi in zip(self.params, u, g_hat):
                p.grad = ui + coef * (gi - ui)
        if unorm == unorm:  # a nan norm must not poison the dual variable
            self.lam = max(0.0, self.lam + self.eta * (self.rho * unorm - self.eps))
        self.optimizer.step()
        return loss.item()

    def reset(self) -> None:
        """Restart the dual variable too."""
        super().reset()
        self.lam = self.lam0


def sam(base: str | dict = "sgd", rho: float = 0.05, adaptive: bool = False):
    """SAM, sharpness-aware minimization (Foret et al., ICLR 2021); adaptive=True is ASAM."""
    return SAM(_plain_base(base, "sam"), rho, adaptive)


def saf(base: str | dict = "sgd", lam: float = 0.3, tau: float = 5.0, e_tilde: int = 3,
        e_start: int = 5, e_end: int | None = None):
    """SAF, sharpness-aware training for free (Du et al., NeurIPS 2022).

    Adds ``lam tau^2 KL`` to each sample's own logits of ``e_tilde`` epochs ago, for
    ``e_start < epoch < e_end``."""
    return SAF(_plain_base(base, "saf"), lam, tau, e_tilde, e_start, e_end)


def mesa(base: str | dict = "sgd", decay: float = 0.9998, lam: float = 0.8, tau: float = 5.0,
         e_start: int = 5):
    """MESA, memory-efficient SAF with an EMA teacher (Du et al., NeurIPS 2022)."""
    return MESA(_plain_base(base, "mesa"), decay, lam, tau, e_start)


def grad_norm(base: str | dict = "sgd", rho: float = 0.05, r: float = 0.05, eps: float = 0.1,
              lam0: float = 1e-3, eta: float = 1e-3):
    """Gradient-norm sharpness regularizer with dual ascent (after IGNITE, Dao et al. 2024).

    Finite-difference Hessian-vector step of radius ``r``; ``lam`` starts at ``lam0`` and
    follows ``lam = max(0, lam + eta (rho |grad| - eps))`` (Dao et al., NeurIPS 2024)."""
    return GradNorm(_plain_base(base, "grad_norm"), rho, r, eps, lam0, eta)


@hookimpl
def register_optimizers(register):
    """Register the training schemes."""
    register("sam", sam)
    register("saf", saf)
    register("mesa", mesa)
    register("grad_norm", grad_norm)
