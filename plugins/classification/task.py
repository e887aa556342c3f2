"""Task ``classification``: train a model with a loss and an optimizer (or a
training scheme), select the best epoch on validation, evaluate on test."""

from __future__ import annotations

import copy
import math
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import ConfigError, Diverged, hookimpl

Spec = str | dict[str, Any]


class EarlyStopping(BaseModel):
    """Best-epoch selection and early stopping on a validation quantity."""

    model_config = ConfigDict(extra="forbid")
    monitor: str = "val/loss"
    patience: int | None = Field(default=None, ge=1)


class Training(BaseModel):
    """The ``training:`` section of a classification suite."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=20, ge=1)
    #: An int is a batch size; a float in (0, 1] a fraction of the train split.
    batch_size: int | float = 64
    optimizer: Spec = "adam"
    scheduler: Spec | None = None
    early_stopping: EarlyStopping = EarlyStopping()
    select_best: bool = True
    device: str = "auto"
    eval_batch_size: int = Field(default=8192, ge=1)


class Config(BaseModel):
    """The method config of the classification task."""

    model_config = ConfigDict(extra="forbid")
    model: Spec = "mlp"
    loss: Spec = "cross_entropy"
    training: Training = Training()


def _config_error(exc: ValidationError, config: dict, root: type[BaseModel] | None = None
                  ) -> ConfigError:
    """A pydantic error as a ConfigError at its key path (``root`` is the
    config model, for listing the allowed keys of an unknown one)."""
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if isinstance(p, int) or p.isidentifier()]
    value: Any = config
    for part in loc:
        value = value.get(part) if isinstance(value, dict) else None
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        allowed = {(): root or Config, ("training",): Training,
                   ("training", "early_stopping"): EarlyStopping}.get(tuple(loc[:-1]))
        from harness.params import did_you_mean

        fields = list(allowed.model_fields) if allowed else []
        msg = (f"unknown key {loc[-1]!r}{did_you_mean(loc[-1], fields)}; "
               f"allowed: {', '.join(fields)}")
    return ConfigError(".".join(map(str, loc)), value, msg)


def train_model(ctx, config: dict, data, metric_fns: dict) -> tuple[Any, dict]:
    """Train ``config``'s model on ``data``; return (model with the selected
    epoch's weights, info with ``best_epoch``, ``train_s`` and the loss)."""
    import torch
    import torch.nn.functional as F

    from harness_plugins.classification.schemes import as_scheme

    tr = config["training"]
    dev = torch.device(ctx.device)
    torch.manual_seed(ctx.seeds["init"])
    model = ctx.create("models", config["model"], in_shape=tuple(data.in_shape),
                       n_classes=data.n_classes).to(dev)
    loss_fn = ctx.create("losses", config["loss"])
    if hasattr(loss_fn, "setup"):
        loss_fn.setup(n_classes=data.n_classes, class_counts=data.class_counts(),
                      n_train=len(data.y_train))
    if hasattr(loss_fn, "to"):
        loss_fn = loss_fn.to(dev)
    X = torch.as_tensor(data.X_train, device=dev)
    y = torch.as_tensor(data.y_train, device=dev)
    Xv = torch.as_tensor(data.X_val, device=dev)
    yv = data.y_val
    n = len(y)
    bs = tr["batch_size"]
    bs = max(1, int(round(bs * n))) if isinstance(bs, float) and bs <= 1 else int(bs)
    steps = math.ceil(n / bs)
    scheme = as_scheme(ctx.create("optimizers", tr["optimizer"]))
    from types import SimpleNamespace

    scheme.setup(model, loss_fn, SimpleNamespace(
        n_train=n, n_classes=data.n_classes, epochs=tr["epochs"], steps_per_epoch=steps,
        device=dev, X_train=X, y_train=y))
    scheduler = None
    if tr.get("scheduler"):
        scheduler = ctx.create("schedulers", tr["scheduler"])(scheme.optimizer, tr["epochs"])
    gen = torch.Generator().manual_seed(ctx.seeds["order"])
    es = tr.get("early_stopping") or {}
    monitor, patience = es.get("monitor", "val/loss"), es.get("patience")
    sign = -1.0 if monitor == "val/loss" or not getattr(
        metric_fns.get(monitor.split("/", 1)[-1]), "greater_is_better", True) else 1.0
    best, best_epoch, best_state, waited = -math.inf, -1, None, 0
    start = time.perf_counter()
    for epoch in range(tr["epochs"]):
        model.train()
        order = getattr(scheme, "epoch_order", lambda e, g: None)(epoch, gen)
        if order is None:
            order = torch.randperm(n, generator=gen)
        order = order.to(dev)
        total = 0.0
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            value = scheme.step({"x": X[idx], "y": y[idx], "index": idx, "epoch": epoch})
            if not math.isfinite(value):
                raise Diverged(f"train loss became {value} at epoch {epoch}")
            total += value * len(idx)
        if hasattr(scheme, "on_epoch_end"):
            scheme.on_epoch_end(epoch)
        if scheduler is not None:
            scheduler.step()
        logits = predict_logits(model, Xv, tr["eval_batch_size"])
        values = {"train/loss": total / len(order),
                  "val/loss": float(F.cross_entropy(logits, torch.as_tensor(yv, device=dev)))}
        probs = torch.softmax(logits.double(), 1).cpu().numpy()
        for name, fn in metric_fns.items():
            values[f"val/{name}"] = float(fn(yv, probs))
        ctx.epoch_end(epoch, values)
        current = values.get(monitor)
        if current is None:
            raise ConfigError("training.early_stopping.monitor", monitor,
                              f"not a logged quantity; use val/loss or one of "
                              f"{', '.join('val/' + m for m in metric_fns)}")
        score = sign * current if math.isfinite(current) else -math.inf
        if getattr(scheme, "restart_epoch", None) == epoch:
            # the scheme restarted training (USEFUL): earlier epochs are another model
            best, best_state, waited = -math.inf, None, 0
        if score > best or best_state is None:
            best, best_epoch, waited = score, epoch, 0
            if tr.get("select_best", True):
                best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if patience and waited >= patience:
                break
    train_s = time.perf_counter() - start
    if best_state is not None and tr.get("select_best", True):
        model.load_state_dict(best_state)
    return model, {"best_epoch": best_epoch, "train_s": train_s, "loss_fn": loss_fn}


def predict_logits(model, X, batch_size: int = 8192):
    """Logits of ``model`` on tensor ``X`` in eval mode, in batches."""
    import torch

    model.eval()
    with torch.no_grad():
        out = torch.cat([model(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])
    return out


class ClassificationTask:
    """Supervised classification: model + loss + optimizer/scheme, early
    stopping on validation, test metrics at the selected epoch."""

    def validate(self, config: dict, check) -> dict:
        """Check the config shape with pydantic and every component through
        ``check``; return it with component specs normalised to mappings."""
        try:
            cfg = Config.model_validate(config).model_dump()
        except ValidationError as exc:
            raise _config_error(exc, config) from None
        for path in ("model", "loss", "training.optimizer", "training.scheduler"):
            parent, _, key = path.rpartition(".")
            node = cfg["training"] if parent else cfg
            if node.get(key) is None:
                continue
            kind = {"model": "models", "loss": "losses", "optimizer": "optimizers",
                    "scheduler": "schedulers"}[key]
            name, params = check(kind, node[key], path)
            node[key] = {"name": name, **params}
        return cfg

    def run(self, ctx) -> dict[str, float]:
        """Train, select the best epoch, return test metrics."""
        import torch

        data = ctx.data
        fns = {m: ctx.create("metrics", m) for m in ctx.spec.metrics}
        epoch_fns = {k: f for k, f in fns.items() if not getattr(f, "needs_model", False)}
        model, info = train_model(ctx, ctx.config, data, epoch_fns)
        start = time.perf_counter()
        Xt = torch.as_tensor(data.X_test, device=ctx.device)
        logits = predict_logits(model, Xt, ctx.config["training"]["eval_batch_size"])
        probs = torch.softmax(logits.double(), 1).cpu().numpy()
        out = {name: float(fn(data.y_test, probs)) for name, fn in epoch_fns.items()}
        for name, fn in fns.items():
            if name not in epoch_fns:
                X = torch.as_tensor(data.X_train, device=ctx.device)
                y = torch.as_tensor(data.y_train, device=ctx.device)
                # plain cross-entropy (loss_fn=None), so sharpness is comparable
                # across methods and stateful losses are not stepped again
                out[name] = float(fn(model, None, X, y))
        ctx.log_metrics({"time/train_s": info["train_s"],
                         "time/eval_s": time.perf_counter() - start,
                         "train/best_epoch": info["best_epoch"]})
        return out


def classification():
    """Supervised classification with early stopping on a validation metric."""
    return ClassificationTask()


@hookimpl
def register_tasks(register):
    register("classification", classification)
