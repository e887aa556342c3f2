"""The federated simulation: rounds of client sampling, local training and
server aggregation in one process, with the global model evaluated per round.

The sampled clients of a round train stacked along a leading client axis
(``harness_plugins.federated.stacked``, ``torch.func.vmap``) where the
optimizer, loss, model and strategy allow it, else one after another on one
working copy of the model (``train_client``); ``benchmarks/federated_stacking.py``
measured stacking about 2x faster at 10 clients and 10x at 100 on this
project's 2-core CPU.  Memory is the stacked clients of a round plus each
strategy's state (SCAFFOLD keeps one control variate per client), so 100
clients of the project's models fit easily.

Random streams, all shared by every method of a dataset and seed (paired
comparisons): the partition and the clients sampled each round derive from
the split seed (``sampling_rng``); the model initialisation from
``seeds["init"]`` (after the loss is built, as the classification trainer
does); the clients' batch orders from one ``torch.Generator`` seeded with
``seeds["order"]`` and drawn in (round, client) order, so one client in one
round draws exactly the batches centralised training draws.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np

from harness.errors import Diverged


@dataclass
class History:
    """What a simulation measured, per round and at the end."""

    test_accuracy: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    bytes: list = field(default_factory=list)
    train_s: float = 0.0


class Simulation:
    """Clients, the global model and one strategy; :meth:`run` trains all rounds."""

    def __init__(self, ctx, cfg: dict, data, strategy):
        import torch

        from harness_plugins.classification.models import spec_with_head
        from harness_plugins.classification.trainer import ScalarLoss, model_inputs

        self.ctx, self.cfg, self.data, self.strategy = ctx, cfg, data, strategy
        fed = cfg["federated"]
        self.fed = fed
        dev = torch.device(ctx.device)
        raw_loss = ctx.create("losses", cfg["loss"])
        torch.manual_seed(ctx.seeds["init"])
        model = ctx.create("models", spec_with_head(cfg["model"], raw_loss, ctx.registry),
                           **model_inputs(data.prepared))
        self.model = model.to(dev)
        if hasattr(raw_loss, "setup"):
            raw_loss.setup(n_classes=data.prepared.n_classes,
                           class_counts=data.prepared.class_counts(),
                           n_train=len(data.prepared.y_train))
        self.loss_fn = ScalarLoss(raw_loss.to(dev) if hasattr(raw_loss, "to") else raw_loss,
                                  cfg["loss"])
        build = ctx.create("optimizers", fed["optimizer"])
        if hasattr(build, "step") and hasattr(build, "setup"):
            from harness import ConfigError

            raise ConfigError("federated.optimizer", fed["optimizer"]["name"],
                              "a training scheme cannot be a client optimizer: use sgd, "
                              "adam or adamw")
        self.build_optimizer = build
        self.X = torch.as_tensor(data.prepared.X_train, device=dev)
        self.y = torch.as_tensor(data.prepared.y_train, device=dev)
        self.parts = [torch.as_tensor(p, device=dev) for p in data.parts]
        self.n_clients = len(self.parts)
        self.sizes = np.array([len(p) for p in data.parts], dtype=float)
        self.work = copy.deepcopy(self.model)
        self.global_params = [p.detach().clone() for p in self.model.parameters()]
        self.global_buffers = [b.detach().clone() for b in self.model.buffers()]
        self.model_bytes = sum(t.numel() * t.element_size() for t in
                               [*self.global_params, *self.global_buffers]
                               if t.is_floating_point())
        self.order_gen = torch.Generator().manual_seed(ctx.seeds["order"])
        from harness.plan import derive_seed

        self.explore_seed = derive_seed(ctx.seeds["order"], "explore")
        from harness_plugins.federated.stacked import can_stack

        #: Whether rounds train their clients stacked (``stacked.can_stack``).
        self.stack = can_stack(self)

    def sampling_rng(self, stream: int) -> np.random.Generator:
        """A numpy Generator from the split seed (the partition is stream 0)."""
        return np.random.default_rng([abs(int(self.ctx.seeds["split"])) % 2**32, stream])

    def _load(self, module, params, buffers=None) -> None:
        import torch

        with torch.no_grad():
            for p, v in zip(module.parameters(), params):
                p.copy_(v)
            for b, v in zip(module.buffers(), buffers or self.global_buffers):
                b.copy_(v)

    def train_client(self, k: int, start, epochs: int, generator, adjust=None):
        """Train client ``k`` from parameters ``start`` for ``epochs`` local
        epochs; ``adjust(params)`` changes the gradients before each step.
        Returns ``(params, steps, lr, mean loss, buffers)``."""
        import torch

        work = self.work
        self._load(work, start)
        params = [p for p in work.parameters()]
        opt = self.build_optimizer(params)
        lr = float(opt.param_groups[0]["lr"])
        part, bs = self.parts[k], self.fed["batch_size"]
        work.train()
        steps, total, seen = 0, 0.0, 0
        for epoch in range(epochs):
            order = torch.randperm(len(part), generator=generator).to(part.device)
            rows = part[order]
            for i in range(0, len(rows), bs):
                idx = rows[i:i + bs]
                opt.zero_grad(set_to_none=True)
                loss = self.loss_fn(work(self.X[idx]), self.y[idx], index=idx, epoch=epoch)
                loss.backward()
                if adjust is not None:
                    adjust(params)
                opt.step()
                value = loss.item()
                if not math.isfinite(value):
                    raise Diverged(f"client {k}: loss {value} at local epoch {epoch}")
                steps += 1
                total += value * len(idx)
                seen += len(idx)
        out = [p.detach().clone() for p in params]
        buffers = [b.detach().clone() for b in work.buffers()]
        return out, steps, lr, total / max(seen, 1), buffers

    def train_clients(self, ks: list[int], start, epochs: int, generator, strategy=None):
        """Train clients ``ks`` from ``start``: stacked when it can
        (``harness_plugins.federated.stacked``), else one after another.
        ``strategy.adjust_gradients`` (or ``adjust_stacked``) changes the
        gradients when a strategy is given.  Returns per client ``(params,
        steps, lr, mean loss, buffers)``."""
        from harness_plugins.federated.stacked import train_stacked

        if len(ks) > 1 and self.stack:
            return [(*out, []) for out in train_stacked(self, ks, start, epochs, generator,
                                                         strategy)]
        outs = []
        for k in ks:
            adjust = None
            if strategy is not None:
                def adjust(params, k=k):
                    strategy.adjust_gradients(k, params, start)
            outs.append(self.train_client(k, start, epochs, generator, adjust))
        return outs

    def _aggregate_buffers(self, buffers: list, weights) -> None:
        for j, g in enumerate(self.global_buffers):
            if g.is_floating_point():
                self.global_buffers[j] = sum(w * b[j] for w, b in zip(weights, buffers))
            else:  # BatchNorm's step counter
                self.global_buffers[j] = max((b[j] for b in buffers), key=int)

    def round(self, r: int) -> tuple[list, float, int]:
        """One round: sample, train each client, aggregate.  Returns the
        sampled clients, their sample-weighted training loss and the bytes."""
        n = self.n_clients
        m = self.fed["clients_per_round"] or n
        sampled = np.sort(self._sampler.choice(n, size=min(m, n), replace=False))
        start = self.global_params
        ks = [int(k) for k in sampled]
        trained = self.train_clients(ks, start, self.fed["local_epochs"], self.order_gen,
                                     self.strategy)
        locals_, buffers, losses, nbytes = [], [], [], 0
        for k, (local, steps, lr, loss, bufs) in zip(ks, trained):
            self.strategy.client_done(k, local, start, steps, lr)
            locals_.append(local)
            buffers.append(bufs)
            losses.append(loss)
            down, up = self.strategy.payload(k)
            nbytes += (down + up) * self.model_bytes
        weights = (self.sizes[sampled] / self.sizes[sampled].sum()).tolist()
        self.global_params = self.strategy.aggregate(start, locals_, weights,
                                                     self.fed["server_lr"])
        self._aggregate_buffers(buffers, weights)
        self.strategy.round_done([int(k) for k in sampled])
        return sampled.tolist(), float(np.dot(weights, losses)), nbytes

    def global_model(self):
        """The model holding the current global parameters."""
        self._load(self.model, self.global_params)
        return self.model

    def run(self, metric_fns: dict) -> History:
        """Every round, with the global model evaluated every ``eval_every``
        rounds (``val/*`` and ``round/test_*`` logged at step = round)."""
        import torch

        from harness_plugins.classification.trainer import validation_values

        ctx, fed, hist = self.ctx, self.fed, History()
        dev = torch.device(ctx.device)
        Xv = torch.as_tensor(self.data.prepared.X_val, device=dev)
        Xt = torch.as_tensor(self.data.prepared.X_test, device=dev)
        yt = torch.as_tensor(self.data.prepared.y_test, device=dev)
        self._sampler = self.sampling_rng(1)
        ctx.expect_epochs(fed["rounds"])
        start = time.perf_counter()
        extra = self.strategy.setup(self)
        for r in range(1, fed["rounds"] + 1):
            _, loss, nbytes = self.round(r)
            nbytes += extra if r == 1 else 0
            hist.bytes.append(nbytes)
            values = {"train/loss": loss, "comm/bytes": float(nbytes)}
            if r % fed["eval_every"] == 0 or r == fed["rounds"]:
                model = self.global_model()
                if len(Xv):
                    values.update(validation_values(model, Xv, self.data.prepared.y_val,
                                                    metric_fns, fed["eval_batch_size"]))
                acc, tl = self.test_scores(model, Xt, yt)
                values.update({"round/test_accuracy": acc, "round/test_loss": tl})
                hist.test_accuracy.append(acc)
                hist.test_loss.append(tl)
            else:
                hist.test_accuracy.append(float("nan"))
                hist.test_loss.append(float("nan"))
            ctx.epoch_end(r - 1, values)  # step 0 = after round 1, as epochs are logged
        hist.train_s = time.perf_counter() - start
        return hist

    def test_scores(self, model, Xt, yt) -> tuple[float, float]:
        """Accuracy and cross-entropy of ``model`` on the test split."""
        import torch.nn.functional as F

        from harness_plugins.classification.trainer import predict_logits

        logits = predict_logits(model, Xt, self.fed["eval_batch_size"])
        acc = float((logits.argmax(1) == yt).float().mean())
        return acc, float(F.cross_entropy(logits, yt))


def client_accuracies(probs: np.ndarray, y_test: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Per client, the global model's accuracy on a test distribution with the
    client's label mix: ``sum_c share_kc recall_c`` over the classes present
    in the test split (shares renormalised over them).  Exact in the label
    shift the partitions make, and free of the noise of tiny per-client test
    sets."""
    pred = probs.argmax(1)
    n_classes = shares.shape[1]
    recall = np.full(n_classes, np.nan)
    for c in range(n_classes):
        rows = y_test == c
        if rows.any():
            recall[c] = float((pred[rows] == c).mean())
    present = ~np.isnan(recall)
    w = shares[:, present]
    return (w @ recall[present]) / np.maximum(w.sum(axis=1), 1e-12)
