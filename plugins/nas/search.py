"""Search strategies (the component kind ``search_strategies``, declared in
``harness_plugins.nas.hookspecs``): how a supernet's weights w and
architecture weights alpha are trained.

Every strategy alternates, per step, an alpha update on a batch of the
alpha half and a weight update on a batch of the weight half of the train
split (DARTS's bilevel split).  Defaults follow DARTS: w by SGD (lr 0.025,
cosine to 0.001, momentum 0.9, weight decay 3e-4, gradient norm clip 5),
alpha by Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3).

- ``darts`` (Liu et al., ICLR 2019): first-order (alpha on L_val(w, alpha)) or
  second-order (unrolled one virtual SGD step of w, finite-difference
  Hessian-vector product; momentum is left out of the virtual step).
- ``rarts``: two weight copies, w on the weight half and y on the alpha half,
  coupled by (lam/2)||w - y||^2; w, then y, then alpha on
  L_train(w, alpha) + beta L_val(y, alpha): no second derivatives.
- ``sd_darts``: DARTS whose weight loss adds lam tau^2 KL(teacher || student),
  the teacher being the mean softmax(logits / tau) of the supernets of the
  previous ``teachers`` steps ("voting teachers").
- ``none``: no supernet (random search's baseline).

A strategy object has ``trains_supernet``; when true also ``setup(supernet,
epochs)``, ``step(weight_batch, alpha_batch) -> float`` (the weight loss),
``tune_step(batch) -> float`` (a plain cross-entropy weight step, used by
selectors that fine-tune the supernet), ``start_tuning(lr_factor)`` (DARTS-PT's
fresh weight optimizer for the selection phase) and ``epoch_end(epoch)``.  Batches are
``(x, y)`` device tensors.  Heavy imports are lazy.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import hookimpl


def proximity(ws, ys, lam: float):
    """RARTS's coupling term (lam / 2) * sum ||w - y||^2 over paired tensors."""
    return 0.5 * lam * sum(((w - y) ** 2).sum() for w, y in zip(ws, ys, strict=True))


def distillation(student_logits, teacher_logits: list, tau: float, lam: float):
    """SD-DARTS's term lam tau^2 KL(T || S): T the mean of softmax(teacher / tau)
    over the teachers, S = softmax(student / tau); batch mean."""
    import torch

    teacher = torch.stack([torch.softmax(t / tau, dim=1) for t in teacher_logits]).mean(0)
    log_student = torch.log_softmax(student_logits / tau, dim=1)
    kl = (teacher * (torch.log(teacher.clamp_min(1e-12)) - log_student)).sum(1).mean()
    return lam * tau ** 2 * kl


class NoSearch:
    """No supernet: the selector draws or fixes an architecture on its own."""

    trains_supernet = False


class Darts:
    """DARTS bilevel search; subclasses change the weight loss or the update."""

    trains_supernet = True
    #: ||w+ - w|| of the finite-difference Hessian-vector product (DARTS: 0.01)
    fd_radius = 0.01

    def __init__(self, order: int = 1, w_lr: float = 0.025, w_lr_min: float = 0.001,
                 momentum: float = 0.9, w_weight_decay: float = 3e-4, grad_clip: float = 5.0,
                 alpha_lr: float = 3e-4, alpha_weight_decay: float = 1e-3):
        self.order = order
        self.w_lr, self.w_lr_min, self.momentum = w_lr, w_lr_min, momentum
        self.w_weight_decay, self.grad_clip = w_weight_decay, grad_clip
        self.alpha_lr, self.alpha_weight_decay = alpha_lr, alpha_weight_decay

    def _weight_optimizer(self, params):
        import torch

        return torch.optim.SGD(params, lr=self.w_lr, momentum=self.momentum,
                               weight_decay=self.w_weight_decay)

    def setup(self, supernet, epochs: int) -> None:
        """Optimizers for w (cosine over ``epochs``) and alpha."""
        import torch

        self.net = supernet
        self.w_opt = self._weight_optimizer(supernet.weight_parameters())
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_opt, max(epochs, 1), eta_min=self.w_lr_min)
        self.a_opt = torch.optim.Adam(supernet.arch_parameters(), lr=self.alpha_lr,
                                      betas=(0.5, 0.999), weight_decay=self.alpha_weight_decay)

    def weight_loss(self, x, y):
        """The loss w minimises on a weight-half batch."""
        import torch.nn.functional as F

        return F.cross_entropy(self.net(x), y)

    def _w_update(self, opt, params, loss) -> float:
        import torch

        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        opt.step()
        return float(loss.detach())

    def step(self, weight_batch, alpha_batch) -> float:
        """Alpha update, then weight update (DARTS's order); the weight loss."""
        self.a_opt.zero_grad(set_to_none=True)
        if self.order == 2:
            self._unrolled_alpha_grad(weight_batch, alpha_batch)
        else:
            self._first_order_alpha_grad(alpha_batch)
        self.a_opt.step()
        loss = self.weight_loss(*weight_batch)
        return self._w_update(self.w_opt, self.net.weight_parameters(), loss)

    def start_tuning(self, lr_factor: float) -> None:
        """Replace the weight optimizer by a fresh SGD (same momentum and weight
        decay, no momentum buffers) at ``lr_factor`` x the initial search lr,
        constant: DARTS-PT's ``reset_optimizer(lr / 10)`` before its
        projection phase.  Later steps (``step``, ``tune_step``) use it."""
        self.w_opt = self._weight_optimizer(self.net.weight_parameters())
        for group in self.w_opt.param_groups:
            group["lr"] = self.w_lr * lr_factor
        self.sched = None

    def tune_step(self, batch) -> float:
        """One cross-entropy step of w alone (alpha fixed)."""
        import torch.nn.functional as F

        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        return self._w_update(self.w_opt, self.net.weight_parameters(), loss)

    def epoch_end(self, epoch: int) -> None:
        """Step the weights' cosine schedule (none after ``start_tuning``)."""
        if self.sched is not None:
            self.sched.step()

    def _first_order_alpha_grad(self, alpha_batch) -> None:
        import torch
        import torch.nn.functional as F

        x, y = alpha_batch
        alphas = self.net.arch_parameters()
        grads = torch.autograd.grad(F.cross_entropy(self.net(x), y), alphas)
        for a, g in zip(alphas, grads, strict=True):
            a.grad = g

    def _unrolled_alpha_grad(self, weight_batch, alpha_batch) -> None:
        """grad_alpha L_val(w', alpha) - xi * (grad_alpha L_train(w+) -
        grad_alpha L_train(w-)) / (2 eps), w' = w - xi grad_w L_train(w),
        w+- = w +- eps grad_w' L_val(w'), eps = fd_radius / ||grad_w' L_val||."""
        import torch
        import torch.nn.functional as F

        net, xi = self.net, self.w_opt.param_groups[0]["lr"]
        ws, alphas = net.weight_parameters(), net.arch_parameters()
        saved = [w.detach().clone() for w in ws]
        g_train = torch.autograd.grad(F.cross_entropy(net(weight_batch[0]), weight_batch[1]), ws,
                                      allow_unused=True)
        with torch.no_grad():
            for w, g in zip(ws, g_train, strict=True):
                if g is not None:
                    w.sub_(xi * (g + self.w_weight_decay * w))
        grads = torch.autograd.grad(F.cross_entropy(net(alpha_batch[0]), alpha_batch[1]),
                                    alphas + ws, allow_unused=True)
        d_alpha = grads[:len(alphas)]
        d_w = [torch.zeros_like(w) if g is None else g for w, g in zip(ws, grads[len(alphas):],
                                                                       strict=True)]
        eps = self.fd_radius / torch.sqrt(sum((g ** 2).sum() for g in d_w)).clamp_min(1e-12)
        hessian = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, s, g in zip(ws, saved, d_w, strict=True):
                    w.copy_(s + sign * eps * g)
            hessian.append(torch.autograd.grad(
                F.cross_entropy(net(weight_batch[0]), weight_batch[1]), alphas))
        with torch.no_grad():
            for w, s in zip(ws, saved, strict=True):
                w.copy_(s)
        for a, da, hp, hm in zip(alphas, d_alpha, hessian[0], hessian[1], strict=True):
            a.grad = da - xi * (hp - hm) / (2 * eps)


class Rarts(Darts):
    """RARTS: w and its twin y, coupled; alpha on both, first-order only."""

    def __init__(self, beta: float = 1.0, lam: float = 1.0, **kwargs):
        super().__init__(order=1, **kwargs)
        self.beta, self.lam = beta, lam

    def setup(self, supernet, epochs: int) -> None:
        """Also the twin y (a copy of w sharing alpha) and its optimizer."""
        import torch

        from harness_plugins.nas.supernet import clone_supernet

        super().setup(supernet, epochs)
        self.twin = clone_supernet(supernet)
        self.y_opt = self._weight_optimizer(self.twin.weight_parameters())
        self.y_sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.y_opt, max(epochs, 1), eta_min=self.w_lr_min)

    def w_objective(self, weight_batch):
        """L_train(w, alpha) + (lam/2)||w - y||^2, with y held fixed."""
        import torch.nn.functional as F

        ys = [y.detach() for y in self.twin.weight_parameters()]
        return (F.cross_entropy(self.net(weight_batch[0]), weight_batch[1])
                + proximity(self.net.weight_parameters(), ys, self.lam))

    def y_objective(self, alpha_batch):
        """beta L_val(y, alpha) + (lam/2)||w - y||^2, with w held fixed."""
        import torch.nn.functional as F

        ws = [w.detach() for w in self.net.weight_parameters()]
        return (self.beta * F.cross_entropy(self.twin(alpha_batch[0]), alpha_batch[1])
                + proximity(ws, self.twin.weight_parameters(), self.lam))

    def alpha_objective(self, weight_batch, alpha_batch):
        """L_train(w, alpha) + beta L_val(y, alpha)."""
        import torch.nn.functional as F

        return (F.cross_entropy(self.net(weight_batch[0]), weight_batch[1])
                + self.beta * F.cross_entropy(self.twin(alpha_batch[0]), alpha_batch[1]))

    def step(self, weight_batch, alpha_batch) -> float:
        """w, then y, then alpha, each by its own objective."""
        import torch

        out = self._w_update(self.w_opt, self.net.weight_parameters(),
                             self.w_objective(weight_batch))
        self._w_update(self.y_opt, self.twin.weight_parameters(), self.y_objective(alpha_batch))
        alphas = self.net.arch_parameters()
        grads = torch.autograd.grad(self.alpha_objective(weight_batch, alpha_batch), alphas)
        self.a_opt.zero_grad(set_to_none=True)
        for a, g in zip(alphas, grads, strict=True):
            a.grad = g
        self.a_opt.step()
        return out

    def start_tuning(self, lr_factor: float) -> None:
        """Fresh SGD for both weight copies at ``lr_factor`` x the search lr."""
        super().start_tuning(lr_factor)
        self.y_opt = self._weight_optimizer(self.twin.weight_parameters())
        for group in self.y_opt.param_groups:
            group["lr"] = self.w_lr * lr_factor
        self.y_sched = None

    def epoch_end(self, epoch: int) -> None:
        """Step both weight schedules (none after ``start_tuning``)."""
        super().epoch_end(epoch)
        if self.y_sched is not None:
            self.y_sched.step()


class SdDarts(Darts):
    """SD-DARTS: DARTS with voting-teacher self-distillation in the weight loss."""

    def __init__(self, lam: float = 1.0, tau: float = 2.0, teachers: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.lam, self.tau, self.teachers = lam, tau, teachers
        self.snapshots: list = []

    def weight_loss(self, x, y):
        """Cross-entropy plus the distillation term once snapshots exist."""
        import torch
        import torch.nn.functional as F

        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        if self.snapshots:
            with torch.no_grad():
                # teachers see the batch with batch-norm in train mode, like the student
                teacher = [snap(x) for snap in self.snapshots]
            loss = loss + distillation(logits, teacher, self.tau, self.lam)
        return loss

    def step(self, weight_batch, alpha_batch) -> float:
        """A DARTS step, then this step's supernet joins the teachers."""
        out = super().step(weight_batch, alpha_batch)
        self._snapshot()
        return out

    def _snapshot(self) -> None:
        import copy

        if len(self.snapshots) < self.teachers:
            snap = copy.deepcopy(self.net)
            for p in snap.parameters():
                p.requires_grad_(False)
        else:  # reuse the oldest teacher's module: no allocation per step
            snap = self.snapshots.pop(0)
            snap.load_state_dict(self.net.state_dict())
        self.snapshots.append(snap)


#: Learning rates and the gradient clip.
Rate = Annotated[float, Field(gt=0)]
#: Weight decays, penalty weights, a final learning rate.
NonNegative = Annotated[float, Field(ge=0)]
#: SGD momentum of the weights.
Momentum = Annotated[float, Field(ge=0, lt=1)]


def darts(order: Literal[1, 2] = 1, w_lr: Rate = 0.025, w_lr_min: NonNegative = 0.001,
          momentum: Momentum = 0.9, w_weight_decay: NonNegative = 3e-4, grad_clip: Rate = 5.0,
          alpha_lr: Rate = 3e-4, alpha_weight_decay: NonNegative = 1e-3) -> Darts:
    """DARTS (Liu et al., ICLR 2019): bilevel search, first- or second-order alpha updates."""
    return Darts(order, w_lr, w_lr_min, momentum, w_weight_decay, grad_clip, alpha_lr,
                 alpha_weight_decay)


def rarts(beta: Rate = 1.0, lam: NonNegative = 1.0, w_lr: Rate = 0.025,
          w_lr_min: NonNegative = 0.001, momentum: Momentum = 0.9,
          w_weight_decay: NonNegative = 3e-4, grad_clip: Rate = 5.0, alpha_lr: Rate = 3e-4,
          alpha_weight_decay: NonNegative = 1e-3) -> Rarts:
    """RARTS (Xue et al., 2020): weight twins coupled by (lam/2)||w-y||^2, first-order only."""
    return Rarts(beta, lam, w_lr=w_lr, w_lr_min=w_lr_min, momentum=momentum,
                 w_weight_decay=w_weight_decay, grad_clip=grad_clip, alpha_lr=alpha_lr,
                 alpha_weight_decay=alpha_weight_decay)


def sd_darts(lam: NonNegative = 1.0, tau: Rate = 2.0, teachers: Annotated[int, Field(ge=1)] = 2,
             order: Literal[1, 2] = 1, w_lr: Rate = 0.025, w_lr_min: NonNegative = 0.001,
             momentum: Momentum = 0.9, w_weight_decay: NonNegative = 3e-4,
             grad_clip: Rate = 5.0, alpha_lr: Rate = 3e-4,
             alpha_weight_decay: NonNegative = 1e-3) -> SdDarts:
    """SD-DARTS (Zhu et al., 2023): DARTS plus self-distillation from voting teachers."""
    return SdDarts(lam, tau, teachers, order=order, w_lr=w_lr, w_lr_min=w_lr_min,
                   momentum=momentum, w_weight_decay=w_weight_decay, grad_clip=grad_clip,
                   alpha_lr=alpha_lr, alpha_weight_decay=alpha_weight_decay)


def none() -> NoSearch:
    """No supernet training (for selectors that need none, e.g. random)."""
    return NoSearch()


@hookimpl
def register_search_strategies(register):
    register("darts", darts)
    register("rarts", rarts)
    register("sd_darts", sd_darts)
    register("none", none)
