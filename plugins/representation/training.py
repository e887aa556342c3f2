"""The contrastive pre-training loop and the frozen-encoder evaluation.

An encoder (a model of the classification family's ``models`` kind, built
with ``n_classes = embed_dim``: its last layer's outputs are the
representation) and a projection head (``Linear-ReLU`` blocks of the
``projection`` widths, the last without ReLU; none when empty) train on two
views of every batch; the loss sees the projections of both views and the
samples' ids.  Each epoch is a seeded permutation of the train split cut
into batches of ``batch_size`` (a last batch smaller than the loss's
``min_batch`` is dropped); both views come from the run's augmentation
stream (``epochs.augment_generator``).  The encoder of the last epoch is
evaluated (no best-epoch selection: there is no label to select by).

Every ``eval_every`` epochs and after the last one, the frozen encoder's
features of the (unaugmented) train split fit a linear probe and form the
k-NN bank; the validation split's ``probe_accuracy``, ``knn_accuracy`` and
the suite's metrics are logged as ``val/<metric>``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from harness import Diverged


@dataclass
class Encoder:
    """What pre-training produced: the encoder, its inputs and timings."""

    model: Any
    loss_fn: Any
    as_inputs: Any
    train_s: float
    history: list[dict] = field(default_factory=list)


def projection_head(embed_dim: int, widths: list[int]):
    """``Linear-ReLU`` blocks to ``widths`` (no ReLU after the last); identity when empty."""
    import torch.nn as nn

    layers: list = []
    width = embed_dim
    for i, w in enumerate(widths):
        layers.append(nn.Linear(width, w))
        if i < len(widths) - 1:
            layers.append(nn.ReLU())
        width = w
    return nn.Sequential(*layers) if layers else nn.Identity()


def model_inputs_of(data):
    """The function turning stored train rows into model inputs (``ImageData``
    normalises uint8 pixels), or None when they already are."""
    pipeline = getattr(data, "pipeline", None)
    return None if pipeline is None else data.inputs


def pretrain(ctx, cfg: dict, data, evaluate) -> Encoder:
    """Train encoder and head with the run's loss on two views per sample;
    call ``evaluate(model, as_inputs, split)`` on the evaluation epochs."""
    import torch

    from harness_plugins.classification.epochs import augment_generator
    from harness_plugins.representation.views import view_maker

    dev = torch.device(ctx.device)
    tr = cfg["training"]
    torch.manual_seed(ctx.seeds["init"])
    model = ctx.create("models", cfg["model"], in_shape=tuple(data.in_shape),
                       n_classes=cfg["embed_dim"]).to(dev)
    head = projection_head(cfg["embed_dim"], cfg["projection"]).to(dev)
    X = torch.as_tensor(data.X_train, device=dev)
    n = len(X)
    loss_fn = ctx.create("contrastive_losses", cfg["loss"], n_samples=n).to(dev)
    params = [*model.parameters(), *head.parameters()]
    optimizer = ctx.create("optimizers", tr["optimizer"])(params)
    scheduler = None
    if tr.get("scheduler"):
        scheduler = ctx.create("schedulers", tr["scheduler"])(optimizer, tr["epochs"])
    as_inputs = model_inputs_of(data)
    view = view_maker(cfg["views"], tuple(data.in_shape), str(ctx.spec.dataset_label))
    order = torch.Generator().manual_seed(ctx.seeds["order"])
    augment = augment_generator(ctx.seeds, dev)
    bs = min(tr["batch_size"], n)
    keep_last = getattr(loss_fn, "min_batch", 2)
    if n < keep_last:
        from harness import UserError

        raise UserError(f"dataset {ctx.spec.dataset_label!r} has {n} training rows; the loss "
                        f"needs batches of at least {keep_last}")
    ctx.expect_epochs(tr["epochs"])
    history: list[dict] = []
    train_s = 0.0
    for epoch in range(tr["epochs"]):
        start = time.perf_counter()
        model.train()
        head.train()
        perm = torch.randperm(n, generator=order).to(dev)
        losses = []
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            if len(idx) < keep_last:
                continue
            x = X[idx]
            x = as_inputs(x) if as_inputs is not None else x.float()
            both = torch.cat([view(x, augment), view(x, augment)])
            z = head(model(both))
            loss = loss_fn(z[:len(idx)], z[len(idx):], idx)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise Diverged(f"train loss became {value} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(value)
        if scheduler is not None:
            scheduler.step()
        # evaluation epochs' probes are not training time
        train_s += time.perf_counter() - start
        values = {"train/loss": sum(losses) / max(len(losses), 1)}
        diagnostics = getattr(loss_fn, "diagnostics", None)
        if diagnostics is not None:
            values.update({f"train/{k}": v for k, v in diagnostics().items()})
        last = epoch == tr["epochs"] - 1
        if (epoch + 1) % tr["eval_every"] == 0 or last:
            values.update({f"val/{k}": v for k, v in evaluate(model, as_inputs, "val").items()})
        ctx.epoch_end(epoch, values)
        history.append(values)
    model.eval()
    return Encoder(model, loss_fn, as_inputs, train_s, history)


def frozen_inputs(ctx, cfg: dict, data, model, as_inputs, split: str) -> dict:
    """The metric inputs of ``split`` (``val`` or ``test``) from the frozen
    encoder: ``labels``, ``probe_probs`` (= ``probs``) and ``knn_probs``."""
    import numpy as np
    import torch

    from harness_plugins.representation.probe import encode, knn_probs, linear_probe

    dev = torch.device(ctx.device)
    ev = cfg["evaluation"]
    bs = cfg["training"]["eval_batch_size"]
    train_f = encode(model, torch.as_tensor(data.X_train, device=dev), bs, as_inputs)
    X_eval = getattr(data, f"X_{split}")
    y_eval = getattr(data, f"y_{split}")
    eval_f = encode(model, torch.as_tensor(X_eval, device=dev), bs)
    train_np, eval_np = train_f.cpu().numpy(), eval_f.cpu().numpy()
    if not (np.isfinite(train_np).all() and np.isfinite(eval_np).all()):
        raise Diverged("the encoder's features are not finite")
    probe = linear_probe(train_np, data.y_train, eval_np, data.n_classes, C=ev["probe_C"],
                         max_iter=ev["probe_max_iter"], seed=ctx.seeds["init"] % 2**31)
    knn = knn_probs(train_f, data.y_train, eval_f, data.n_classes, k=ev["k"],
                    temperature=ev["knn_temperature"])
    return {"labels": np.asarray(y_eval), "probs": probe, "probe_probs": probe,
            "knn_probs": knn}
