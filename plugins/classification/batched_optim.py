"""Per-run optimizers and learning-rate schedules for stacked training.

The batched engine (``harness_plugins.classification.batched``) trains R runs
as one stacked model whose parameters have shape ``(R, ...)``.  Each run keeps
its own hyperparameters: they are read from the torch optimizer that the run's
own optimizer factory builds (on a dummy parameter), so any factory returning
a ``torch.optim.SGD``, ``Adam`` or ``AdamW`` is batchable with no declaration,
and the update below mirrors torch's single-tensor implementation formula by
formula (the float64 equivalence test holds it to that).  Schedules are the
run's own torch scheduler stepped on that dummy optimizer, so every scheduler
torch has gives the learning rate the single run would see, epoch by epoch.
"""

from __future__ import annotations

from typing import Any

#: torch optimizer class name -> the flags that must have these values for the
#: functional form below to be exact.
_SUPPORTED = {
    "SGD": {"maximize": False, "differentiable": False},
    "Adam": {"amsgrad": False, "maximize": False, "differentiable": False},
    "AdamW": {"amsgrad": False, "maximize": False, "differentiable": False},
}


class Declared:
    """An optimizer factory's declared ``batch_form`` (kind, hyperparameters),
    read like the torch optimizer it stands for (``param_groups[0]``)."""

    def __init__(self, kind: str, group: dict):
        self.kind = kind
        self.param_groups = [dict(group)]


def kind_of(opt) -> str:
    """``SGD``, ``Adam``, ``AdamW`` ...: of a torch optimizer or a ``Declared`` form."""
    return getattr(opt, "kind", None) or type(opt).__name__


def probe(build, *, real: bool = False) -> tuple[Any, str | None]:
    """What a run's optimizer factory ``build(parameters)`` makes: its declared
    ``batch_form`` (unless ``real``: a scheduler needs a torch optimizer to
    step), else the torch optimizer built on a dummy parameter.  Returns
    (that, None) or (None, why it cannot be batched)."""
    form = getattr(build, "batch_form", None)
    if form is not None and not real:
        kind, group = form
        if kind not in _SUPPORTED:
            return None, f"optimizer {kind} has no batched form (SGD, Adam, AdamW do)"
        return Declared(kind, group), None
    import torch

    dummy = torch.nn.Parameter(torch.zeros(1))
    try:
        opt = build([dummy])
    except Exception as exc:  # a factory with needs of its own: train it alone
        return None, f"its optimizer could not be probed ({type(exc).__name__}: {exc})"
    kind = type(opt).__name__
    if kind not in _SUPPORTED or len(opt.param_groups) != 1:
        return None, f"optimizer {kind} has no batched form (SGD, Adam, AdamW do)"
    group = opt.param_groups[0]
    for flag, value in _SUPPORTED[kind].items():
        if bool(group.get(flag, value)) != value:
            return None, f"optimizer {kind} with {flag}={group[flag]} has no batched form"
    return opt, None


def signature(opt) -> tuple:
    """What must be equal for two runs' optimizers to share a stacked update
    (the kind and its boolean switches; numeric hyperparameters may differ)."""
    group = opt.param_groups[0]
    return (kind_of(opt), bool(group.get("nesterov", False)), _decoupled(opt))


def _decoupled(opt) -> bool:
    return kind_of(opt) == "AdamW" or bool(
        opt.param_groups[0].get("decoupled_weight_decay", False))


class RunSchedules:
    """The learning rate of each run at the current epoch: the runs' own
    probe optimizers, each stepped by the run's own scheduler once per epoch."""

    def __init__(self, optimizers: list, schedulers: list):
        self.optimizers = optimizers
        self.schedulers = schedulers

    def lrs(self) -> list[float]:
        """Each run's learning rate now."""
        return [float(o.param_groups[0]["lr"]) for o in self.optimizers]

    def step(self) -> None:
        """End of an epoch: step every scheduler (runs without one keep their lr)."""
        import warnings

        with warnings.catch_warnings():
            # the probe optimizer never steps itself; torch would warn about the order
            warnings.simplefilter("ignore", UserWarning)
            for s in self.schedulers:
                if s is not None:
                    s.step()


class StackedOptimizer:
    """SGD (momentum, dampening, Nesterov), Adam or AdamW on stacked parameters,
    every numeric hyperparameter a per-run tensor.

    ``step(params, lr)`` takes the per-run learning rate of this step as an
    ``(R,)`` tensor; a run whose rate is 0 keeps its parameters bit for bit
    (how stopped runs are masked: they still compute, but never move)."""

    def __init__(self, optimizers: list, params: list):
        import torch

        self.kind, self.nesterov, self.decoupled = signature(optimizers[0])
        groups = [o.param_groups[0] for o in optimizers]

        # float64 on the CPU (MPS has no float64); each use casts to the
        # parameters' device and dtype, as torch casts a Python float
        def per_run(fn):
            return torch.tensor([float(fn(g)) for g in groups], dtype=torch.float64)

        self.wd = per_run(lambda g: g.get("weight_decay", 0.0))
        self.has_wd = bool((self.wd != 0).any())
        if self.kind == "SGD":
            self.momentum = per_run(lambda g: g["momentum"])
            self.dampening = per_run(lambda g: g["dampening"])
            self.buffers = [None] * len(params)
        else:
            self.beta1 = per_run(lambda g: g["betas"][0])
            self.beta2 = per_run(lambda g: g["betas"][1])
            self.eps = per_run(lambda g: g["eps"])
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = 0
        self._views: dict = {}

    def _view(self, name: str, value, p):
        """``value`` (R,) as ``(R, 1, ..., 1)`` in ``p``'s dtype, cached per shape."""
        key = (name, p.dim(), p.dtype)
        out = self._views.get(key)
        if out is None:
            out = _like(value, p)
            self._views[key] = out
        return out

    def _on(self, name: str, device):
        """Hyperparameter ``name`` (R,) float64 on ``device``, copied once."""
        key = (name, str(device))
        out = self._views.get(key)
        if out is None:
            out = self._views[key] = getattr(self, name).to(device)
        return out

    def step(self, params: list, lr) -> None:
        """One update of every run from ``p.grad``; ``lr``: (R,) float64, on
        the parameters' device (then a step copies nothing from the host: no
        synchronisation per step) or on the CPU (MPS, which has no float64)."""
        import torch

        self.steps += 1
        with torch.no_grad():
            if self.kind == "SGD":
                self._sgd(params, lr)
            else:
                self._adam(params, lr)

    def _sgd(self, params: list, lr) -> None:
        for i, p in enumerate(params):
            g = p.grad
            if self.has_wd:
                g = g + self._view("wd", self.wd, p) * p
            mom = self._view("momentum", self.momentum, p)
            if self.buffers[i] is None:
                buf = self.buffers[i] = g.clone()  # torch: the first buffer is the gradient
            else:
                buf = self.buffers[i]
                buf.mul_(mom).add_((1 - self._view("dampening", self.dampening, p)) * g)
            if self.nesterov:
                g = g + mom * buf
            else:
                g = buf
            p.sub_(_like(lr, p) * g)

    def _adam(self, params: list, lr) -> None:
        t = self.steps
        # float64 where lr is, as torch computes them in Python floats
        bc1 = 1 - self._on("beta1", lr.device) ** t
        bc2_sqrt = (1 - self._on("beta2", lr.device) ** t).sqrt()
        step_size = lr / bc1
        for i, p in enumerate(params):
            decay = wd = None
            if self.has_wd:
                if self.decoupled:
                    decay = 1 - _like(lr * self._on("wd", lr.device), p)
                else:
                    wd = self._view("wd", self.wd, p)
            one_b1 = self._view("1-beta1", 1 - self.beta1, p)
            b2, one_b2 = self._view("beta2", self.beta2, p), self._view("1-beta2",
                                                                        1 - self.beta2, p)
            eps, bc2, size = self._view("eps", self.eps, p), _like(bc2_sqrt, p), \
                _like(step_size, p)
            for r in _row_blocks(p):
                # the same element-wise ops on each block of runs as on the
                # whole: bit for bit the whole-tensor update
                pr, g, m, v = p[r], p.grad[r], self.exp_avg[i][r], self.exp_avg_sq[i][r]
                if decay is not None:
                    pr.mul_(decay[r])
                elif wd is not None:
                    g = g + wd[r] * pr
                m.lerp_(g, one_b1[r])
                # torch: v * beta2 + (1 - beta2) * g * g, in that order; in-place
                # ops, as few passes over the block as possible
                v.mul_(b2[r]).addcmul_(g * one_b2[r], g)
                denom = v.sqrt().div_(bc2[r]).add_(eps[r])
                pr.addcdiv_(size[r] * m, denom, value=-1)


#: Elements per parameter row block of a CPU update (1 MiB of float32): an
#: Adam step makes ~9 passes over its parameters, gradients and moments, and
#: blocks of runs whose four arrays stay in cache take those passes at cache
#: speed instead of memory speed (160 runs x 6,464 parameters: 3.8 -> 2.1 ms).
BLOCK_ELEMENTS = 1 << 18


def _row_blocks(p) -> list[slice]:
    """Row (run) slices of ``p`` for one update: blocks of about
    ``BLOCK_ELEMENTS`` on a CPU, the whole tensor on an accelerator (whose
    kernels want the largest launch)."""
    if p.device.type != "cpu" or p.dim() < 2:
        return [slice(None)]
    rows = max(1, BLOCK_ELEMENTS // max(1, p[0].numel()))
    return [slice(i, i + rows) for i in range(0, p.shape[0], rows)]


def _like(value, p):
    """Per-run ``value`` (R,) as ``(R, 1, ..., 1)`` on ``p``'s device, in its dtype."""
    return value.to(device=p.device, dtype=p.dtype).view(-1, *([1] * (p.dim() - 1)))
