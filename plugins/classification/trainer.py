"""The shared trainer: every task that trains a classifier uses it.

Three parts, usable apart:

- :func:`build_components` builds the model, loss, optimizer or training
  scheme and scheduler of a classification-style config (``model``, ``loss``,
  ``training``) for a ``PreparedData``-like object (``in_shape``,
  ``n_classes``, ``class_counts()``, ``y_train``);
- :func:`fit` runs the epoch loop: the scheme's batch order or a seeded
  permutation, the data's ``augment`` of each training batch, one
  ``scheme.step`` per batch, the scheduler, a per-epoch ``evaluate``
  callback and best-epoch restore; divergence, logging and early stopping
  are the run's :class:`epochs.RunEpochs`, as in batch mode (``batched``);
- :func:`train_classifier` is both for the common case, with validation
  metrics computed by :func:`validation_values`.

Random state is consumed in a fixed order (model init from ``seeds["init"]``,
then loss, scheme and scheduler; batch order from ``seeds["order"]``,
augmentation from its own stream, ``epochs.augment_generator``), so a run's
numbers do not depend on which task trains it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from harness_plugins.classification.epochs import (
    FitResult,
    RunEpochs,
    augment_generator,
    monitor_sign,
)

#: Metric inputs available every epoch on the validation split.
EPOCH_INPUTS = ("labels", "probs", "logits")


def _import_optimizer_machinery() -> None:
    """Import what torch's first optimizer of a process imports (torch._dynamo:
    1.1-1.4 s on a 2-core CPU) before a scheme's setup is timed: that is the
    process's start-up, not the method's training cost, and it made the first
    run of each process look ~1 s slower in ``time/train_s``."""
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # noqa: BLE001 - a torch without it builds optimizers without it
        pass


def logged_every_epoch(label: str) -> bool:
    """Whether a suite metric (its logged label, ``name:param-value``) is
    computed on the validation split every epoch, so it can be an
    early-stopping monitor: its inputs are all in ``EPOCH_INPUTS`` (robust
    accuracy, regret, ... exist only at test time; as a monitor they failed
    the run at its first epoch) and it has a direction to select by."""
    from harness import ConfigError
    from harness.metrics import metric_inputs
    from harness.plugins import get_registry

    try:
        factory = get_registry().get("metrics", label.split(":", 1)[0]).factory
        return (all(i in EPOCH_INPUTS for i in metric_inputs(factory))
                and getattr(factory, "greater_is_better", True) is not None)
    except (ConfigError, TypeError):
        return True  # the suite loader has reported an unknown metric already


@dataclass
class Components:
    """What :func:`build_components` makes for one run."""

    model: Any
    loss_fn: Any
    scheme: Any
    scheduler: Any
    batch_size: int
    steps_per_epoch: int
    #: seconds the scheme's setup trained (USEFUL's probe epochs), counted in train_s
    setup_s: float = 0.0
    #: the run's amp / channels_last / compile (``precision.Precision``)
    precision: Any = None


def batch_size_of(value: int | float, n: int) -> int:
    """An int is a batch size; a float in (0, 1] a fraction of ``n`` rows."""
    if isinstance(value, float) and value <= 1:
        return max(1, int(round(value * n)))
    return int(value)


def model_inputs(data) -> dict[str, Any]:
    """The data-derived values a classification model may declare with
    ``harness.FromData``: ``in_shape`` and ``n_classes``."""
    return {"in_shape": tuple(data.in_shape), "n_classes": data.n_classes}


def build_components(ctx, config: dict, data, X, y, *, model=None) -> Components:
    """Build model (unless given), loss, scheme and scheduler for ``config``
    on the train tensors ``X``, ``y`` (already on ``ctx.device``)."""
    import torch

    from harness_plugins.classification.models import spec_with_head
    from harness_plugins.classification.optimizers import as_scheme

    tr = config["training"]
    dev = torch.device(ctx.device)
    # the loss first (it draws no random numbers): binary losses ask for a
    # single-logit model (``logit_head``)
    loss_fn = ctx.create("losses", config["loss"])
    if model is None:
        torch.manual_seed(ctx.seeds["init"])
        model = ctx.create("models", spec_with_head(config["model"], loss_fn, ctx.registry),
                           **model_inputs(data))
    from harness_plugins.classification.precision import Precision

    precision = Precision(tr, dev)
    model = precision.model(model.to(dev))
    if hasattr(loss_fn, "setup"):
        loss_fn.setup(n_classes=data.n_classes, class_counts=data.class_counts(),
                      n_train=len(y))
    if hasattr(loss_fn, "to"):
        loss_fn = loss_fn.to(dev)
    loss_fn = ScalarLoss(loss_fn, config["loss"])
    n = len(y)
    bs = batch_size_of(tr["batch_size"], n)
    steps = math.ceil(n / bs)
    scheme = as_scheme(ctx.create("optimizers", tr["optimizer"]))
    precision.check_scheme(scheme)
    _import_optimizer_machinery()
    setup_start = time.perf_counter()
    scheme.setup(model, loss_fn, SchemeInfo(
        X, getattr(data, "inputs", None),
        n_train=n, n_classes=data.n_classes, epochs=tr["epochs"], steps_per_epoch=steps,
        device=dev, y_train=y, X_val=getattr(data, "X_val", None),
        y_val=getattr(data, "y_val", None)))
    setup_s = time.perf_counter() - setup_start
    scheduler = None
    if tr.get("scheduler"):
        scheduler = ctx.create("schedulers", tr["scheduler"])(scheme.optimizer, tr["epochs"])
    return Components(model, loss_fn, scheme, scheduler, bs, steps, setup_s, precision)


class SchemeInfo(SimpleNamespace):
    """What a scheme's ``setup`` gets (``n_train``, ``X_train``, ...).  ``X_train``
    holds model inputs: uint8 image pixels (``ImageData``) are normalised with
    ``inputs`` on first access, so schemes that never read it (most) cost no
    float copy of the split."""

    def __init__(self, X_train, inputs, **values):
        super().__init__(**values)
        self._pixels, self._inputs, self._converted = X_train, inputs, None

    @property
    def X_train(self):
        """The train split as model inputs, on the run's device."""
        if self._inputs is None:
            return self._pixels
        if self._converted is None:
            self._converted = self._inputs(self._pixels)
        return self._converted


class ScalarLoss:
    """A loss that must return a scalar: a plugin's loss returning per-sample
    values would otherwise fail inside autograd with torch's "grad can be
    implicitly created only for scalar outputs", naming nothing.  Other
    attributes are the wrapped loss's."""

    def __init__(self, loss, spec):
        self.loss = loss
        self.name = spec.get("name") if isinstance(spec, dict) else str(spec)

    def __call__(self, *args, **kwargs):
        out = self.loss(*args, **kwargs)
        if getattr(out, "ndim", 0) != 0:
            from harness.errors import UserError

            raise UserError(f"loss {self.name!r} returned a tensor of shape "
                            f"{tuple(out.shape)}; a loss must return a scalar (the batch "
                            f"mean, see `harness list losses` and register_losses)")
        return out

    def __getattr__(self, attr):
        return getattr(self.loss, attr)


def fit(ctx, parts: Components, X, y, training: dict,
        evaluate: Callable[[int], dict[str, float]], *, sign: float = -1.0,
        phase: str = "train", augment: Callable | None = None) -> FitResult:
    """Train ``parts.model`` on ``X``, ``y`` for ``training["epochs"]``.

    ``evaluate(epoch)`` returns that epoch's validation values (``val/...``);
    the ``training["early_stopping"]["monitor"]`` value among them, times
    ``sign``, selects the best epoch (restored at the end when
    ``select_best``) and drives ``patience`` (:class:`epochs.RunEpochs`).
    Each epoch is logged with ``ctx.epoch_end(epoch, values, phase)``.
    ``augment(x, generator)``, when given, transforms every training batch
    (never validation) with the run's own generator (``augment_generator``)."""
    import torch

    model, scheme, scheduler = parts.model, parts.scheme, parts.scheduler
    dev = X.device
    n, bs = len(y), parts.batch_size
    gen = torch.Generator().manual_seed(ctx.seeds["order"])
    aug_gen = augment_generator(ctx.seeds, dev) if augment is not None else None
    prec = parts.precision
    step = scheme.step if prec is None else (lambda batch: prec.step(scheme, batch))
    batch_format = (lambda x: x) if prec is None else prec.batch
    run = RunEpochs(ctx, training, sign, phase)
    best_state = None
    start = time.perf_counter()
    for epoch in range(training["epochs"]):
        model.train()
        order = getattr(scheme, "epoch_order", lambda e, g: None)(epoch, gen)
        if order is None:
            order = torch.randperm(n, generator=gen)
        order = order.to(dev)
        total = 0.0
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            x = X[idx] if augment is None else augment(X[idx], aug_gen)
            value = step({"x": batch_format(x), "y": y[idx], "index": idx, "epoch": epoch})
            # scheme.step has synchronised already: stop at the step that diverged
            run.check_finite((value,), epoch)
            total += value * len(idx)
        if hasattr(scheme, "on_epoch_end"):
            scheme.on_epoch_end(epoch)
        if scheduler is not None:
            scheduler.step()
        extra = getattr(scheme, "extra_metrics", None)  # a scheme's own (MESA's teacher)
        val = evaluate(epoch)
        if getattr(scheme, "restart_epoch", None) == epoch:
            run.restart()
        improved = run.end_epoch(epoch, total / len(order), val,
                                 extra() if extra is not None else None)
        if improved and run.select_best:
            best_state = copy.deepcopy(model.state_dict())
        if run.stopped:
            break
    train_s = time.perf_counter() - start + parts.setup_s
    if best_state is not None:
        model.load_state_dict(best_state)
    return run.result(train_s)


def predict_logits(model, X, batch_size: int = 8192):
    """Logits of ``model`` on tensor ``X`` in eval mode, in batches; a single-logit
    model's ``(N, 1)`` output f comes back as ``(N, 2)`` logits ``[0, f]`` (softmax
    ``[1 - sigmoid(f), sigmoid(f)]``), so metrics and calibrators always see two classes."""
    import torch

    from harness_plugins.classification.losses import two_class_logits

    model.eval()
    with torch.no_grad():
        out = torch.cat([model(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])
    return two_class_logits(out)


def prediction_inputs(logits, labels) -> dict[str, Any]:
    """The metric inputs a classifier's predictions offer: ``labels``,
    ``probs`` (float64 softmax) and ``logits`` as numpy arrays."""
    import torch

    probs = torch.softmax(logits.double(), 1).cpu().numpy()
    return {"labels": labels, "probs": probs, "logits": logits.detach().cpu().numpy()}


def epoch_metrics(metric_fns: dict) -> dict:
    """The metrics that can be computed every epoch from predictions alone."""
    from harness.metrics import metric_inputs

    return {k: f for k, f in metric_fns.items()
            if all(i in EPOCH_INPUTS for i in metric_inputs(f))}


def validation_values(model, Xv, yv, metric_fns: dict, batch_size: int) -> dict[str, float]:
    """``val/loss`` (cross-entropy) and ``val/<metric>`` for per-epoch metrics."""
    import torch
    import torch.nn.functional as F

    from harness.metrics import compute_metrics

    logits = predict_logits(model, Xv, batch_size)
    values = {"val/loss": float(F.cross_entropy(logits, torch.as_tensor(yv, device=Xv.device)))}
    scores = compute_metrics(epoch_metrics(metric_fns), prediction_inputs(logits, yv))
    values.update({f"val/{k}": v for k, v in scores.items()})
    return values


def train_classifier(ctx, config: dict, data, metric_fns: dict, *, phase: str = "train",
                     model=None) -> tuple[Any, Components, FitResult]:
    """Build and train ``config``'s classifier on ``data`` (a ``PreparedData``)
    with per-epoch validation; return the model at the selected epoch, its
    components and the fit result."""
    import torch

    tr = config["training"]
    dev = torch.device(ctx.device)
    X = torch.as_tensor(data.X_train, device=dev)
    y = torch.as_tensor(data.y_train, device=dev)
    parts = build_components(ctx, config, data, X, y, model=model)
    Xv = torch.as_tensor(data.X_val, device=dev)
    yv = data.y_val
    monitor = (tr.get("early_stopping") or {}).get("monitor", "val/loss")
    result = fit(ctx, parts, X, y, tr,
                 lambda epoch: validation_values(parts.model, Xv, yv, metric_fns,
                                                 tr["eval_batch_size"]),
                 sign=monitor_sign(monitor, metric_fns), phase=phase,
                 augment=getattr(data, "augment", None))
    return parts.model, parts, result
