"""Task ``prototypes``: a nearest-prototype classifier, and the component
kind ``prototype_distances`` it adds.

One prototype per class starts at the class mean of the train split and is
refined by gradient steps on any registered loss, with logits
``-distance(x, prototype) / temperature``.  The task shows the parts of the
task contract:

- ``validate(config, check)``: the method config (every suite key that is not
  suite-level), checked before any run;
- ``dataset_entry(options, registry)``: the keys of a dataset entry besides
  its source and label; here the classification family's
  (``SplitAndTransforms``: transforms and ``split``), since ``prepare`` is
  the classification family's too;
- ``prepare(entry, seed, ctx)``: the data object; here the classification
  family's preparation, so every dataset source and transform works as in a
  classification suite;
- ``run(ctx)``: train, log per-step values, return the test metrics.

``metric_inputs`` names what the task feeds metrics: the classification
inputs ``labels`` and ``probs``, plus ``distances`` of its own.
"""

from __future__ import annotations

import time

from harness import ConfigError, Diverged, hookimpl
from harness_plugins.classification.entries import SplitAndTransforms

#: The method config's keys and defaults.
DEFAULTS = {"loss": "cross_entropy", "distance": "euclidean", "steps": 50, "lr": 0.05,
            "temperature": 1.0}


class PrototypeTask(SplitAndTransforms):
    """Nearest class prototype, refined with a loss."""

    #: What this task offers metrics: labels int64 (N,), probs float64 (N, C),
    #: distances float64 (N, C) to each class's prototype.
    metric_inputs = ("labels", "probs", "distances")

    def validate(self, config: dict, check) -> dict:
        """Known keys only; ``loss`` and ``distance`` through ``check`` (unknown
        names and parameters are reported, and the run records their
        provenance); numbers in range."""
        unknown = sorted(set(config) - set(DEFAULTS))
        if unknown:
            raise ConfigError(unknown[0], config[unknown[0]], f"unknown key {unknown[0]!r}; "
                              f"keys of the prototypes task: {', '.join(DEFAULTS)}")
        cfg = {**DEFAULTS, **config}
        for key, kind in (("loss", "losses"), ("distance", "prototype_distances")):
            name, params = check(kind, cfg[key], key)
            cfg[key] = {"name": name, **params}
        if not isinstance(cfg["steps"], int) or isinstance(cfg["steps"], bool) \
                or cfg["steps"] < 0:
            raise ConfigError("steps", cfg["steps"], "steps must be an integer >= 0")
        for key in ("lr", "temperature"):
            if not isinstance(cfg[key], (int, float)) or not cfg[key] > 0:
                raise ConfigError(key, cfg[key], f"{key} must be a number > 0")
            cfg[key] = float(cfg[key])
        return cfg

    def prepare(self, entry: dict, seed: int, ctx):
        """The classification family's ``PreparedData`` (encoded, split,
        transformed, standardised on train)."""
        from harness_plugins.classification.prepare import prepare_dataset

        return prepare_dataset(entry, seed, registry=ctx.registry)

    def run(self, ctx) -> dict[str, float]:
        """Fit the prototypes; return the test metrics (logged as ``test/<name>``)."""
        import torch

        from harness.metrics import compute_metrics

        cfg, data, dev = ctx.config, ctx.data, ctx.device
        X = torch.as_tensor(data.X_train, device=dev)
        y = torch.as_tensor(data.y_train, device=dev)
        distance = ctx.create("prototype_distances", cfg["distance"])
        loss_fn = ctx.create("losses", cfg["loss"])
        if hasattr(loss_fn, "setup"):  # e.g. a binary loss checks the class count
            loss_fn.setup(n_classes=data.n_classes, class_counts=data.class_counts(),
                          n_train=len(y))
        protos = torch.nn.Parameter(class_means(X, y, data.n_classes))
        optimizer = torch.optim.Adam([protos], lr=cfg["lr"])
        index = torch.arange(len(y), device=dev)
        metrics = ctx.metrics()

        def offered(X_np, labels) -> dict:
            with torch.no_grad():
                d = distance(torch.as_tensor(X_np, device=dev), protos).double()
            probs = torch.softmax(-d / cfg["temperature"], dim=1)
            return {"labels": labels, "probs": probs.cpu().numpy(),
                    "distances": d.cpu().numpy()}

        start = time.perf_counter()
        for step in range(cfg["steps"]):
            loss = loss_fn(-distance(X, protos) / cfg["temperature"], y, index=index,
                           epoch=step)
            if not torch.isfinite(loss):
                raise Diverged(f"loss became {float(loss)} at step {step}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            val = compute_metrics(metrics, offered(data.X_val, data.y_val))
            ctx.epoch_end(step, {"train/loss": loss.item(),
                                 **{f"val/{k}": v for k, v in val.items()}})
        ctx.log_metrics({"time/train_s": time.perf_counter() - start})
        return compute_metrics(metrics, offered(data.X_test, data.y_test))


def class_means(X, y, n_classes: int):
    """``(n_classes, F)`` class means of ``X``; a class absent from the train
    split (a strong ``imbalance``) starts at the overall mean."""
    import torch

    return torch.stack([X[y == k].mean(0) if bool((y == k).any()) else X.mean(0)
                        for k in range(n_classes)]).detach().clone()


def prototypes():
    """Nearest class prototype (class means refined with a loss) on any classification data."""
    return PrototypeTask()


def euclidean():
    """Squared Euclidean distance to each prototype."""

    def distance(X, P):
        # (N, F), (C, F) -> (N, C); differentiable everywhere, unlike cdist at 0
        return (X * X).sum(1, keepdim=True) - 2 * X @ P.T + (P * P).sum(1)

    return distance


def cosine(scale: float = 10.0):
    """Cosine distance, scale * (1 - cos(x, prototype)): ignores the norm."""
    import torch.nn.functional as F

    def distance(X, P):
        return scale * (1 - F.normalize(X, dim=1) @ F.normalize(P, dim=1).T)

    return distance


def distances_contract(register):
    """Register distances for the ``prototypes`` task.  ``factory(**params)``
    returns ``distance(X, P) -> (N, C) tensor``: ``X`` the ``(N, F)``
    features, ``P`` the ``(C, F)`` prototypes; differentiable in both."""


@hookimpl
def register_kinds(register):
    """This package's kind, with its contract (the function above)."""
    register("prototype_distances", distances_contract)


@hookimpl
def register_prototype_distances(register):
    register("euclidean", euclidean)
    register("cosine", cosine)


@hookimpl
def register_tasks(register):
    register("prototypes", prototypes)
