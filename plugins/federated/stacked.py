"""The clients of a round trained at once: their parameters stacked along a
leading client axis, one ``torch.func.vmap(grad(loss))`` call per local step.

Measured on this project's 2-core CPU (``benchmarks/federated_stacking.py``,
numbers in ``reports/federated/README.md``), stacking beats training the
clients one after another by about 2x at 10 clients and 10x at 100 clients
of an MLP, so the simulation stacks whenever it can (:func:`can_stack`):
plain SGD (momentum and weight decay allowed, no Nesterov), the unweighted
cross-entropy without label smoothing, a model without buffers (BatchNorm's
running statistics do not vmap) and a strategy with ``adjust_stacked``.
Otherwise, and for a single client, the loop of ``Simulation.train_client``
runs.

Clients differ in size, so client ``k`` takes ``epochs * ceil(n_k / bs)``
steps: the step schedule is padded to the longest client, a padded row has
weight 0 in its client's mean loss, and a client past its last step is
frozen (its update, momentum included, is masked).  Batch orders are drawn
from the generator in the loop's order (client by client, epoch by epoch),
so both paths train on the same batches; their numbers agree to float
rounding (batched matrix products), not bit for bit.
"""

from __future__ import annotations

import math


def can_stack(sim) -> bool:
    """Whether ``sim``'s clients can train stacked (see the module docstring)."""
    opt = sim.fed["optimizer"]
    loss = sim.cfg["loss"]
    loss_name = loss if isinstance(loss, str) else loss.get("name")
    plain_loss = loss_name == "cross_entropy" and not (
        isinstance(loss, dict) and (loss.get("label_smoothing") or loss.get("class_weight")))
    return (opt.get("name") == "sgd" and not opt.get("nesterov") and plain_loss
            and not list(sim.model.buffers()) and hasattr(sim.strategy, "adjust_stacked"))


def _schedule(sim, ks, epochs: int, generator):
    """``(index, weight, active, steps)``: per client and step, the rows of
    its batch (padded), their weights, whether it steps, its step count."""
    import torch

    bs = sim.fed["batch_size"]
    batches = []
    for k in ks:
        part = sim.parts[k]
        rows = []
        for _ in range(epochs):
            order = part[torch.randperm(len(part), generator=generator).to(part.device)]
            rows += [order[i:i + bs] for i in range(0, len(order), bs)]
        batches.append(rows)
    steps = [len(b) for b in batches]
    n_steps = max(steps)
    dev = sim.X.device
    index = torch.zeros(len(ks), n_steps, bs, dtype=torch.long, device=dev)
    weight = torch.zeros(len(ks), n_steps, bs, device=dev)
    for c, rows in enumerate(batches):
        for s, idx in enumerate(rows):
            index[c, s, :len(idx)] = idx
            weight[c, s, :len(idx)] = 1.0
    active = torch.tensor([[s < n for s in range(n_steps)] for n in steps], device=dev)
    return index, weight, active, steps


def train_stacked(sim, ks: list[int], start: list, epochs: int, generator, strategy=None):
    """Train clients ``ks`` from ``start``; ``strategy.adjust_stacked`` (when
    given) changes the stacked gradients.  Returns per client ``(params,
    steps, lr, mean loss)``."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, grad, vmap

    from harness.errors import Diverged

    opt = sim.fed["optimizer"]
    lr, momentum, decay = opt["lr"], opt.get("momentum", 0.0), opt.get("weight_decay", 0.0)
    model = sim.work
    names = [n for n, _ in model.named_parameters()]
    C = len(ks)
    params = [p.detach().unsqueeze(0).repeat(C, *[1] * p.dim()) for p in start]
    velocity = [torch.zeros_like(p) for p in params] if momentum else None
    index, weight, active, steps = _schedule(sim, ks, epochs, generator)

    def loss_of(p, xb, yb, wb):
        out = functional_call(model, dict(zip(names, p)), (xb,))
        per_row = F.cross_entropy(out, yb, reduction="none")
        value = (per_row * wb).sum() / wb.sum().clamp(min=1.0)
        return value, value.detach()

    grad_and_loss = vmap(grad(loss_of, has_aux=True), randomness="different")
    total = torch.zeros(C, device=sim.X.device)
    model.train()
    for s in range(index.shape[1]):
        idx, wb = index[:, s], weight[:, s]
        grads, loss = grad_and_loss(params, sim.X[idx], sim.y[idx], wb)
        total += loss.detach() * wb.sum(1)
        grads = list(grads)
        if strategy is not None:
            grads = strategy.adjust_stacked(ks, grads, params, start)
        if decay:  # torch's SGD adds it inside step(), after the strategy's change
            grads = [g + decay * p for g, p in zip(grads, params)]
        on = active[:, s]
        for j, g in enumerate(grads):
            mask = on.view(C, *[1] * (g.dim() - 1)).to(g.dtype)
            if velocity is not None:
                velocity[j] = torch.where(mask.bool(), momentum * velocity[j] + g, velocity[j])
                g = velocity[j]
            params[j] = params[j] - lr * mask * g
    seen = weight.sum(dim=(1, 2))
    mean_loss = (total / seen.clamp(min=1.0)).tolist()
    if not all(math.isfinite(v) for v in mean_loss):
        bad = next(k for k, v in zip(ks, mean_loss) if not math.isfinite(v))
        raise Diverged(f"client {bad}: non-finite local loss")
    return [([p[c].detach().clone() for p in params], steps[c], float(lr), mean_loss[c])
            for c in range(C)]
