"""Training and testing one domain generalization run on the classification
family's pieces: its models, optimizers, schedulers, epoch loop
(``trainer.fit``: best epoch, early stopping, divergence, per-epoch logging)
and validation values; what is the family's own is the domain-balanced batch
order and the method's loss (:class:`DomainScheme`)."""

from __future__ import annotations

import math

import numpy as np


class DomainScheme:
    """A training scheme (the classification family's contract) stepping a DG
    network: every batch holds ``per_domain`` rows of each source domain, each
    step the network's ``loss(x, y, domains)``."""

    def __init__(self, net, optimizer, domains, per_domain: int):
        import torch

        self.net, self.optimizer = net, optimizer
        self.domains = domains  # (n_train,) LongTensor on the device
        self.per_domain = per_domain
        self.k = int(domains.max()) + 1
        self.rows = [torch.nonzero(domains.cpu() == d).flatten() for d in range(self.k)]
        # an epoch: as many steps as the pooled rows fill, as the plain loop makes
        self.steps = math.ceil(len(domains) / (per_domain * self.k))

    def epoch_order(self, epoch: int, generator):
        """Step by step, ``per_domain`` rows of every domain in domain order;
        each domain's rows in a fresh permutation, cycled when it runs out."""
        import torch

        need = self.steps * self.per_domain
        streams = []
        for rows in self.rows:
            perms = [rows[torch.randperm(len(rows), generator=generator)]
                     for _ in range(math.ceil(need / len(rows)))]
            streams.append(torch.cat(perms)[:need].view(self.steps, self.per_domain))
        return torch.stack(streams, 1).reshape(-1)

    def step(self, batch) -> float:
        """One update on the batch; returns its loss."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.net.loss(batch["x"], batch["y"], self.domains[batch["index"]])
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def extra_metrics(self) -> dict[str, float]:
        """The method's diagnostics of the epoch (logged under ``train/``)."""
        diag = getattr(self.net, "diagnostics", None)
        return diag() if diag is not None else {}


def train_network(ctx, config: dict, data):
    """Build the model and the method's network; train with
    training-domain validation; return ``(network, FitResult)`` at the
    selected epoch."""
    import torch

    from harness.errors import UserError
    from harness_plugins.classification.epochs import monitor_sign
    from harness_plugins.classification.optimizers import PlainScheme, as_scheme
    from harness_plugins.classification.trainer import Components, fit

    tr = config["training"]
    dev = torch.device(ctx.device)
    torch.manual_seed(ctx.seeds["init"])
    model = ctx.create("models", config["model"], in_shape=data.in_shape,
                       n_classes=data.n_classes)
    method = ctx.create("dg_methods", config["method"])
    net = method.build(model, len(data.source_names)).to(dev)
    opt = as_scheme(ctx.create("optimizers", tr["optimizer"]))
    if type(opt) is not PlainScheme:
        raise UserError(f"training.optimizer {tr['optimizer']!r} is a training scheme; the "
                        f"domain_generalization task steps the method's loss with a plain "
                        f"optimizer (adam, sgd, adamw, ...)")
    optimizer = opt.build([p for p in net.parameters() if p.requires_grad])
    X = torch.as_tensor(data.X_train, device=dev)
    y = torch.as_tensor(data.y_train, device=dev)
    scheme = DomainScheme(net, optimizer, torch.as_tensor(data.d_train, device=dev),
                          tr["batch_size"])
    scheduler = None
    if tr.get("scheduler"):
        scheduler = ctx.create("schedulers", tr["scheduler"])(optimizer, tr["epochs"])
    parts = Components(net, None, scheme, scheduler, tr["batch_size"] * scheme.k, scheme.steps)
    fns = ctx.metrics()
    Xv = torch.as_tensor(data.X_val, device=dev)
    monitor = tr["early_stopping"]["monitor"]
    result = fit(ctx, parts, X, y, tr,
                 lambda epoch: validation(net, Xv, data.y_val, fns, tr["eval_batch_size"]),
                 sign=monitor_sign(monitor, fns))
    return net, result


def validation(net, Xv, yv, fns: dict, batch_size: int) -> dict[str, float]:
    """``val/loss``, ``val/accuracy`` and the suite's per-epoch metrics on the
    source domains' validation rows."""
    from harness_plugins.classification.trainer import validation_values

    values = validation_values(net, Xv, yv, fns, batch_size)
    if "val/accuracy" not in values:
        from harness_plugins.classification.trainer import predict_logits

        pred = predict_logits(net, Xv, batch_size).argmax(1).cpu().numpy()
        values["val/accuracy"] = float((pred == yv).mean())
    return values


def per_domain_accuracy(labels, probs, domains) -> dict[int, float]:
    """Accuracy of the argmax prediction within each domain index."""
    labels, domains = np.asarray(labels), np.asarray(domains)
    hit = np.asarray(probs).argmax(1) == labels
    return {int(d): float(hit[domains == d].mean()) for d in np.unique(domains)}


def test_metrics(ctx, net, data) -> dict[str, float]:
    """The suite's metrics on the target rows and the source test rows; each
    domain's accuracy logged as ``test/domain/<name>/accuracy``, each row's
    correctness as ``unit/target_accuracy`` / ``unit/source_accuracy`` (step:
    the row's position in the dataset) when the suite has that metric."""
    import torch

    from harness.metrics import compute_metrics
    from harness_plugins.classification.trainer import predict_logits, prediction_inputs

    bs = ctx.config["training"]["eval_batch_size"]
    dev = ctx.device
    target = prediction_inputs(predict_logits(net, torch.as_tensor(data.X_target, device=dev),
                                              bs), data.y_target)
    source = prediction_inputs(predict_logits(net, torch.as_tensor(data.X_source, device=dev),
                                              bs), data.y_source)
    offered = {**target, "domains": data.d_target, "source_labels": data.y_source,
               "source_probs": source["probs"], "source_domains": data.d_source}
    per = {f"test/domain/{data.target_names[d]}/accuracy": v for d, v in
           per_domain_accuracy(data.y_target, target["probs"], data.d_target).items()}
    per.update({f"test/domain/{data.source_names[d]}/accuracy": v for d, v in
                per_domain_accuracy(data.y_source, source["probs"], data.d_source).items()})
    ctx.log_metrics(per)
    out = compute_metrics(ctx.metrics(), offered)
    # each row's correctness, step = its position in the dataset: a report
    # pairs methods on the same rows (``harness.report.paired``)
    for name, labels, probs, ids in (("target_accuracy", data.y_target, target["probs"],
                                      data.i_target),
                                     ("source_accuracy", data.y_source, source["probs"],
                                      data.i_source)):
        if name in out and ids is not None:
            hits = (np.asarray(probs).argmax(1) == np.asarray(labels)).astype(float)
            for i, hit in zip(ids.tolist(), hits.tolist()):
                ctx.log_metrics({f"unit/{name}": hit}, int(i))
    return out
