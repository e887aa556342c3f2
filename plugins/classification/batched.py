"""Stacked training: R classification runs of one model shape trained as one model.

``train_group(ctxs, datas, metric_fns)`` is the batched counterpart of the
single-run trainer: the runs' models (each built from its own init seed, as
alone) are stacked with ``torch.func.stack_module_state`` and trained with
``vmap(functional_call)``.  Every run keeps what makes its numbers its own:

- its data split (runs of different seeds have different splits, stacked as
  ``(R, n, ...)``), its batch order, drawn from its own order seed, and its
  training-batch augmentation (the data's ``augment``, its own generator);
- its hyperparameters, as per-run tensors (``batched_optim``: lr, weight
  decay, betas, momentum; its own scheduler), and its loss parameters (a
  loss's ``batch_params``, e.g. focal's ``gamma``, become per-row tensors);
- its early stopping, best epoch, divergence and logging: the single
  trainer's ``epochs.RunEpochs``, fed once per epoch.  A run that stops is
  masked (learning rate 0, so its weights do not move) and no longer logged,
  not removed; a NaN/inf loss ends that run with ``harness.Diverged`` and the
  others go on.

What each run logs is what it would log alone (``train/loss``, ``val/loss``,
``val/<metric>`` per epoch); the float64 equivalence test holds it to 1e-6.

Batchability is declared by the plugins: a loss with ``batchable = True``
(its ``per_sample`` works on any ``(N, C)`` rows and uses no per-sample state
such as ``index``); an optimizer whose factory builds a torch SGD, Adam or
AdamW (training schemes are not batchable); a model without dropout, whose
per-run randomness would differ from the single run's (batch norm's running
statistics are stacked like the parameters).
``component_reason`` and ``model_reason`` say why a run must train alone;
``inexact_reason`` why a model's stacked float32 numbers are not its numbers
alone (the default ``harness run`` then trains it alone).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

from harness import ConfigError, Diverged


def component_reason(kind: str, name: str, obj) -> str | None:
    """Why a built loss or optimizer cannot be batched (None if it can)."""
    if kind == "losses":
        if not getattr(obj, "batchable", False) or not hasattr(obj, "per_sample"):
            return f"loss `{name}` is not batchable"
        return None
    if hasattr(obj, "step") and hasattr(obj, "setup"):
        return f"scheme `{name}` is not batchable"
    return None


def model_reason(model) -> str | None:
    """Why a model cannot be stacked: active dropout (its random masks would
    not be the single run's), or the model says so (``batchable = False``).
    Buffers (batch norm) are stacked like parameters."""
    import torch.nn as nn

    if getattr(model, "batchable", True) is False:
        return f"model {type(model).__name__} declares batchable = False"
    if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return "the model uses dropout, which is not batchable"
    return None


def inexact_reason(model) -> str | None:
    """Why a group's float32 numbers for ``model`` are not those of its runs
    alone (None when they are): only a model that goes through
    ``DirectMLP`` (an MLP without buffers) computes each run's rows with
    the single run's matmul kernels (its logged values agree to ~1e-7 in any
    group, bit for bit between group sizes).  ``vmap`` turns a convolution
    into one grouped convolution over the runs, whose float32 rounding differs
    from a run alone (a cnn on digits: 8e-3 in logged values after 8 epochs),
    so such a run's numbers would depend on which runs share its group."""
    names = [k for k, _ in model.named_parameters()]
    if next(iter(model.buffers()), None) is not None or direct_mlp(model, names) is None:
        return ("its stacked float32 forward (vmap) rounds differently from a run "
                "alone; --batch trains it in groups")
    return None


def direct_mlp(model, names: list[str]) -> DirectMLP | None:
    """The stacked MLP of ``model`` (an ``nn.Sequential`` of Flatten, Linear,
    ReLU, Tanh, GELU and Identity layers), or None for any other model, which
    then goes through ``vmap(functional_call)``."""
    import torch.nn as nn

    if type(model) is not nn.Sequential:
        return None
    steps: list[tuple] = []
    for prefix, layer in model.named_children():
        kind = type(layer)
        if kind is nn.Linear:
            bias = names.index(f"{prefix}.bias") if layer.bias is not None else None
            steps.append(("linear", names.index(f"{prefix}.weight"), bias))
        elif kind is nn.Flatten and layer.start_dim == 1 and layer.end_dim == -1:
            steps.append(("flatten",))
        elif kind is nn.ReLU:
            steps.append(("relu",))
        elif kind is nn.Tanh:
            steps.append(("tanh",))
        elif kind is nn.GELU:
            steps.append(("gelu", layer.approximate))
        elif kind is not nn.Identity:
            return None
    mlp = DirectMLP(steps)
    return mlp if mlp.first is not None else None  # no weights, nothing to train


class DirectMLP:
    """A stacked MLP's forward and backward in ``bmm``: the layers' own
    arithmetic on ``(R, b, ...)`` rows, with the weights ``(R, out, in)``.

    vmap's per-call dispatch costs more than a small MLP's matmuls, and
    autograd through the views of the one ``(R, P)`` parameter leaf copies
    every gradient twice (a transposed weight gradient reshaped, then the
    parts concatenated): 160 runs of a 64-64 MLP, batch 32, 6.9 -> 5.5 ms a
    step.  ``backward`` runs the ops autograd runs (``threshold_backward``,
    ``tanh_backward``, ``gelu_backward``, the same ``bmm``s) and writes each
    gradient into its slice of the leaf's gradient; each run's rows are a
    batch element of every op, so a run's numbers do not depend on its group."""

    def __init__(self, steps: list[tuple]):
        self.steps = steps
        #: the first linear layer's step: the backward stops there
        self.first = next((k for k, s in enumerate(steps) if s[0] == "linear"), None)

    def __call__(self, ps: list, x, saved: list | None = None):
        """Logits ``(R, b, C)`` of inputs ``x`` ``(R, b, ...)`` with parameters
        ``ps`` (each ``(R, ...)``); ``saved`` collects what ``backward`` needs."""
        import torch
        import torch.nn.functional as F

        for step in self.steps:
            op = step[0]
            if saved is not None:
                saved.append(x)
            if op == "linear":
                w = ps[step[1]].transpose(1, 2)
                x = torch.bmm(x, w) if step[2] is None else torch.baddbmm(
                    ps[step[2]].unsqueeze(1), x, w)
            elif op == "flatten":
                x = x.flatten(2)
            elif op == "relu":
                x = F.relu(x)
            elif op == "tanh":
                x = torch.tanh(x)
            else:
                x = F.gelu(x, approximate=step[1])
        if saved is not None:
            saved.append(x)
        return x

    def backward(self, ps: list, saved: list, grad, grads: list) -> None:
        """Write the parameters' gradients into ``grads`` (views shaped as
        ``ps``) from ``grad``, the loss's gradient by the logits, and the
        forward's ``saved`` values; every parameter's slice is overwritten."""
        import torch

        aten = torch.ops.aten
        first = self.first
        for k in range(len(self.steps) - 1, first - 1, -1):
            step, x, y = self.steps[k], saved[k], saved[k + 1]
            op = step[0]
            if op == "linear":
                grads[step[1]].copy_(torch.bmm(grad.transpose(1, 2), x))
                if step[2] is not None:
                    torch.sum(grad, 1, out=grads[step[2]])
                if k == first:
                    return  # the inputs need no gradient
                grad = torch.bmm(grad, ps[step[1]])
            elif op == "flatten":
                grad = grad.view(x.shape)
            elif op == "relu":
                grad = aten.threshold_backward(grad, y, 0)
            elif op == "tanh":
                grad = aten.tanh_backward(grad, y)
            else:
                grad = aten.gelu_backward(grad, x, approximate=step[1])


class StackedLoss:
    """The runs' losses on stacked logits ``(R, b, C)`` -> per-run batch means ``(R,)``.

    Runs whose loss objects are equal apart from their ``batch_params`` share
    one ``per_sample`` call with those parameters as per-row tensors."""

    def __init__(self, losses: list):
        groups: dict[str, list[int]] = {}
        for r, fn in enumerate(losses):
            groups.setdefault(self._key(fn), []).append(r)
        self.groups = []
        for members in groups.values():
            fn = losses[members[0]]
            names = tuple(getattr(fn, "batch_params", ()))
            values = {k: [float(getattr(losses[r], k)) for r in members] for k in names}
            # a parameter equal in every run stays a Python number (exact fast paths)
            varying = {k: v for k, v in values.items() if len(set(v)) > 1}
            self.groups.append((members, fn, varying))
        self._tensors: dict = {}

    @staticmethod
    def _key(fn) -> str:
        skip = set(getattr(fn, "batch_params", ()))
        state = {k: v for k, v in sorted(vars(fn).items()) if k not in skip}
        return f"{type(fn).__module__}.{type(fn).__qualname__}:{state!r}"

    def _bound(self, g: int, fn, varying: dict, members: list, b: int, like):
        """``fn`` with each varying parameter as a per-row tensor for batch size ``b``."""
        if not varying:
            return fn
        import torch

        key = (g, b)
        bound = self._tensors.get(key)
        if bound is None:
            bound = copy.copy(fn)
            for k, v in varying.items():
                t = torch.tensor(v, dtype=like.dtype, device=like.device)
                setattr(bound, k, t.repeat_interleave(b))
            self._tensors[key] = bound
        return bound

    def __call__(self, logits, targets, epoch: int):
        import torch

        R, b, C = logits.shape
        if len(self.groups) == 1:
            members, fn, varying = self.groups[0]
            fn = self._bound(0, fn, varying, members, b, logits)
            return fn.per_sample(logits.reshape(-1, C), targets.reshape(-1),
                                 epoch=epoch).view(R, b).mean(1)
        out = logits.new_empty(R)
        for g, (members, fn, varying) in enumerate(self.groups):
            fn = self._bound(g, fn, varying, members, b, logits)
            idx = self._tensors.get((g, logits.device))
            if idx is None:  # built once: a copy from the host each step would wait
                idx = self._tensors[g, logits.device] = torch.as_tensor(
                    members, device=logits.device)
            out[idx] = fn.per_sample(logits[idx].reshape(-1, C), targets[idx].reshape(-1),
                                     epoch=epoch).view(len(members), b).mean(1)
        return out


def _stack(arrays: list, device):
    import numpy as np
    import torch

    return torch.as_tensor(np.stack(arrays), device=device)


def train_group(ctxs: list, datas: list, metric_fns: dict, *, phase: str = "train"
                ) -> list[tuple[Any, Any] | BaseException]:
    """Train the runs of ``ctxs`` (whose configs differ only in per-run values)
    as one stacked model; per run return (its model with the selected epoch's
    weights, its ``trainer.FitResult``; ``train_s`` is the group's time over R)
    or the exception that ended it (``harness.Diverged``; ``ConfigError`` for
    an unknown monitor).

    ``datas``: each run's prepared split (same shapes); ``metric_fns``: name ->
    metric, those computable from predictions logged as ``val/<name>`` every
    epoch.  The caller has checked that the runs stack (``component_reason``,
    ``model_reason``, equal shapes: ``batch_task``)."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, vmap

    from harness.metrics import compute_metrics
    from harness_plugins.classification.batched_optim import (
        RunSchedules,
        StackedOptimizer,
        probe,
    )
    from harness_plugins.classification.epochs import (
        RunEpochs,
        augment_generator,
        monitor_sign,
    )
    from harness_plugins.classification.models import spec_with_head
    from harness_plugins.classification.trainer import (
        batch_size_of,
        epoch_metrics,
        model_inputs,
    )

    ctx0 = ctxs[0]
    cfg = ctx0.config
    tr = cfg["training"]
    dev = torch.device(ctx0.device)
    models, losses, probes, schedulers = [], [], [], []
    for ctx, data in zip(ctxs, datas):
        # as the single-run trainer: the loss first (it may ask for the model's head)
        fn = ctx.create("losses", ctx.config["loss"])
        torch.manual_seed(ctx.seeds["init"])
        models.append(ctx.create("models", spec_with_head(ctx.config["model"], fn, ctx.registry),
                                 **model_inputs(data)).to(dev))
        if hasattr(fn, "setup"):
            fn.setup(n_classes=data.n_classes, class_counts=data.class_counts(),
                     n_train=len(data.y_train))
        losses.append(fn.to(dev) if hasattr(fn, "to") else fn)
        sched = ctx.config["training"].get("scheduler")
        opt, _ = probe(ctx.create("optimizers", ctx.config["training"]["optimizer"]),
                       real=bool(sched))
        probes.append(opt)
        schedulers.append(ctx.create("schedulers", sched)(opt, ctx.config["training"]["epochs"])
                          if sched else None)
    R = len(ctxs)
    base = copy.deepcopy(models[0]).to("meta")
    # one (R, P) leaf holding every run's parameters: the optimizer updates it
    # with a few whole-tensor ops per step instead of a few per parameter
    names = [k for k, _ in models[0].named_parameters()]
    shapes = [p.shape for _, p in models[0].named_parameters()]
    sizes_p = [p.numel() for _, p in models[0].named_parameters()]
    flat = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()])
                        for m in models]).requires_grad_()
    opt = StackedOptimizer(probes, [flat])
    lr_now = RunSchedules(probes, schedulers)
    loss_fn = StackedLoss(losses)

    # buffers (batch norm's running statistics) stacked too: under vmap each
    # run's forward updates its own slice in place, as its module would
    buf_names = [k for k, _ in models[0].named_buffers()]
    bufs = [torch.stack([dict(m.named_buffers())[k] for m in models]) for k in buf_names]

    def forward(ps, bs, x):
        return functional_call(base, {**dict(zip(names, ps)), **dict(zip(buf_names, bs))},
                               (x,))

    vmapped = vmap(forward)
    direct = None if bufs else direct_mlp(models[0], names)

    def views(flat):
        return [t.view(R, *shape) for t, shape in zip(flat.split(sizes_p, 1), shapes)]

    def stacked_forward(flat, x):
        return direct(views(flat), x) if direct is not None else vmapped(views(flat), bufs, x)

    if direct is not None:  # its own backward writes here, no autograd through flat
        flat.grad = torch.zeros_like(flat)
        params, grads = views(flat.detach()), views(flat.grad)
    X = _stack([d.X_train for d in datas], dev)
    y = _stack([d.y_train for d in datas], dev)
    Xv = _stack([d.X_val for d in datas], dev)
    yv_np = [d.y_val for d in datas]
    yv = _stack(yv_np, dev)
    n = y.shape[1]
    bs = batch_size_of(tr["batch_size"], n)
    steps = math.ceil(n / bs)
    rows = torch.arange(R, device=dev)[:, None]
    sign = monitor_sign((tr.get("early_stopping") or {}).get("monitor", "val/loss"), metric_fns)
    per_epoch = epoch_metrics(metric_fns)
    runs = [RunEpochs(ctx, ctx.config["training"], sign, phase) for ctx in ctxs]
    errors: list[BaseException | None] = [None] * R
    orders = [torch.Generator().manual_seed(ctx.seeds["order"]) for ctx in ctxs]
    # each run augments its own rows with its own stream, as alone
    augments = [getattr(d, "augment", None) for d in datas]
    aug_gens = [augment_generator(ctx.seeds, dev) if a is not None else None
                for ctx, a in zip(ctxs, augments)]
    if all(a is None for a in augments):
        augments = []
    # with select_best: each run's best epoch; without: each run's last trained
    # epoch (a stopped run keeps computing at lr 0 and its batch norm
    # statistics would still move)
    best = flat.detach().clone()
    best_bufs = [b.clone() for b in bufs]
    active = torch.ones(R, dtype=torch.float64)  # CPU, as the learning rates
    eval_bs = tr["eval_batch_size"]
    start = time.perf_counter()
    for epoch in range(tr["epochs"]):
        base.train()
        order = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(dev)
        lr = torch.tensor(lr_now.lrs(), dtype=torch.float64) * active
        if dev.type != "mps":  # one copy per epoch, none per step (MPS has no float64)
            lr = lr.to(dev)
        step_loss = torch.empty(steps, R, dtype=flat.dtype, device=dev)
        sizes = []
        for s, i in enumerate(range(0, n, bs)):
            idx = order[:, i:i + bs]
            x = X[rows, idx]
            if augments:
                x = torch.stack([x[r] if a is None else a(x[r], aug_gens[r])
                                 for r, a in enumerate(augments)])
            if direct is not None:
                saved: list = []
                with torch.no_grad():
                    logits = direct(params, x, saved).requires_grad_()
                value = loss_fn(logits, y[rows, idx], epoch)
                value.sum().backward()
                direct.backward(params, saved, logits.grad, grads)
            else:
                flat.grad = None
                value = loss_fn(stacked_forward(flat, x), y[rows, idx], epoch)
                value.sum().backward()
            opt.step([flat], lr)
            step_loss[s] = value.detach()
            sizes.append(idx.shape[1])
        lr_now.step()
        with torch.no_grad():
            base.eval()
            logits = torch.cat([stacked_forward(flat.detach(), Xv[:, j:j + eval_bs])
                                for j in range(0, Xv.shape[1], eval_bs)], 1)
            C = logits.shape[-1]
            vloss = F.cross_entropy(logits.reshape(-1, C), yv.reshape(-1),
                                    reduction="none").view(R, -1).mean(1)
            probs = torch.softmax(logits.double(), -1).cpu().numpy()
            logits_np = logits.cpu().numpy()
        # the epoch's one synchronisation: every run's step losses at once
        losses_cpu = step_loss.cpu().double()  # the single run sums .item() floats
        totals = (losses_cpu * torch.tensor(sizes, dtype=torch.float64)[:, None]).sum(0)
        finite = torch.isfinite(losses_cpu).all(0).tolist()
        vloss = vloss.tolist()
        improved = []
        trained = [r for r in range(R) if errors[r] is None and not runs[r].stopped]
        for r in trained:
            run = runs[r]
            try:
                if not finite[r]:
                    run.check_finite(losses_cpu[:, r].tolist(), epoch)
                val = {"val/loss": vloss[r], **{f"val/{k}": v for k, v in compute_metrics(
                    per_epoch, {"labels": yv_np[r], "probs": probs[r],
                                "logits": logits_np[r]}).items()}}
                if run.end_epoch(epoch, float(totals[r]) / n, val):
                    improved.append(r)
            except (Diverged, ConfigError) as exc:
                errors[r] = exc
            if errors[r] is not None or run.stopped:
                # masked: lr 0 from now on; its batch norm statistics still move
                # with the group's forward passes, the ones kept for it do not
                active[r] = 0.0
        keep = improved if runs[0].select_best else trained
        if keep:
            mask = torch.zeros(R, dtype=torch.bool, device=dev)
            mask[keep] = True
            best.copy_(torch.where(mask[:, None], flat.detach(), best))
            for kept, b in zip(best_bufs, bufs):
                kept.copy_(torch.where(mask.view(-1, *([1] * (b.dim() - 1))), b, kept))
        if not active.any():
            break
    train_s = (time.perf_counter() - start) / R
    final = best.split(sizes_p, 1)
    out: list = []
    for r, (run, model) in enumerate(zip(runs, models)):
        if errors[r] is not None:
            out.append(errors[r])
            continue
        with torch.no_grad():
            for (k, p) in model.named_parameters():
                p.copy_(final[names.index(k)][r].view(p.shape))
            for (k, b) in model.named_buffers():
                b.copy_(best_bufs[buf_names.index(k)][r])
        out.append((model, run.result(train_s)))
    return out
