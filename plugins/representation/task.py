"""Task ``contrastive``: pre-train an encoder on two views per sample without
labels, then judge its frozen features by a linear probe and k-NN.

One run:

1. ``prepare``: the classification family's preparation (transforms such as
   ``imbalance``, then a stratified split; images stay uint8 on the device);
   labels are used only by the evaluation.
2. Pre-training (:mod:`harness_plugins.representation.training`): encoder
   ``model`` (any of the ``models`` kind: ``mlp`` for rows, ``cnn`` or the
   resnets for images; its ``embed_dim`` outputs are the representation),
   projection head ``projection``, the ``loss`` of kind
   ``contrastive_losses`` on ``views`` (:mod:`...views`); per epoch
   ``train/loss`` (and a loss's diagnostics), every ``eval_every`` epochs
   ``val/probe_accuracy``, ``val/knn_accuracy`` and the suite's metrics.
3. Evaluation of the last epoch's frozen encoder on the test split:
   ``test/probe_accuracy``, ``test/knn_accuracy`` (always) and the suite's
   metrics; a loss that learns per-sample temperatures (iSogCLR) also
   reports their distribution by class (:mod:`...temperatures`).

Metric inputs: ``labels`` (the evaluated split's), ``probe_probs`` and
``probs`` (the linear probe's class probabilities: the classification
metrics apply to the probe), ``knn_probs`` (k-NN vote shares), and, for a
loss with learned temperatures, ``temperatures`` with ``train_labels``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import ConfigError
from harness.params import check_components, reject_boolean_numbers, validation_error
from harness_plugins.classification.entries import SplitAndTransforms
from harness_plugins.representation.views import Views

Spec = str | dict[str, Any]


class Training(BaseModel):
    """The ``training:`` section of a contrastive suite."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=128, ge=2)
    optimizer: Spec = {"name": "adam", "lr": 1.0e-3}
    scheduler: Spec | None = None
    eval_every: int = Field(default=5, ge=1)
    eval_batch_size: int = Field(default=1024, ge=1)


class Evaluation(BaseModel):
    """The ``evaluation:`` section: the linear probe and k-NN."""

    model_config = ConfigDict(extra="forbid")
    k: int = Field(default=20, ge=1)
    #: weights exp(s / T) of the k neighbours' votes; null: plain majority
    knn_temperature: Annotated[float, Field(gt=0)] | None = 0.07
    probe_C: float = Field(default=1.0, gt=0)
    probe_max_iter: int = Field(default=1000, ge=1)


class ContrastiveConfig(BaseModel):
    """The method config of the ``contrastive`` task."""

    model_config = ConfigDict(extra="forbid")
    model: Spec = "auto"
    embed_dim: int = Field(default=64, ge=1)
    projection: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64, 32])
    loss: Spec = "infonce"
    views: Views = Views()
    training: Training = Training()
    evaluation: Evaluation = Evaluation()


_SECTIONS = {(): ContrastiveConfig, ("training",): Training, ("views",): Views,
             ("evaluation",): Evaluation}


def _build(kind: str, spec: dict, path: str, **offered):
    """Build a component at validation, so a bad value in its constructor
    stops the suite (exit 2) rather than a run."""
    from harness.plugins import get_registry

    try:
        return get_registry().create(kind, spec, path, **offered)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(path, spec, str(exc)) from None


class ContrastiveTask(SplitAndTransforms):
    """Contrastive pre-training on two views; frozen features judged by a linear probe and k-NN."""

    metric_inputs = ("labels", "probs", "probe_probs", "knn_probs", "temperatures",
                     "train_labels")
    #: What, with the dataset, sets a run's training time (``harness.estimate``).
    cost_keys = ("model", "embed_dim", "projection", "loss.name", "training.epochs",
                 "training.batch_size", "training.eval_every")

    def validate(self, config: dict, check) -> dict:
        """Check the config shape, every component, the loss against the batch size."""
        reject_boolean_numbers(ContrastiveConfig, config)
        try:
            cfg = ContrastiveConfig.model_validate(config).model_dump()
        except ValidationError as exc:
            raise validation_error(exc, config, _SECTIONS, "the contrastive task") from None
        check_components(cfg, check, (("model", "models"), ("loss", "contrastive_losses"),
                                      ("training.optimizer", "optimizers"),
                                      ("training.scheduler", "schedulers")))
        tr = cfg["training"]
        loss = _build("contrastive_losses", cfg["loss"], "loss", n_samples=2)
        need = getattr(loss, "min_batch", 2)
        if tr["batch_size"] < need:
            raise ConfigError("training.batch_size", tr["batch_size"],
                              f"loss {cfg['loss']['name']!r} needs batches of at least {need}")
        optimizer = _build("optimizers", tr["optimizer"], "training.optimizer")
        if not callable(optimizer) or hasattr(optimizer, "setup"):
            raise ConfigError("training.optimizer", tr["optimizer"]["name"],
                              "the contrastive task takes a plain optimizer (sgd, adam, "
                              "adamw), not a training scheme")
        lo, hi = cfg["views"]["crop_scale"]
        if lo > hi:
            raise ConfigError("views.crop_scale", [lo, hi], "the smaller area fraction first")
        return cfg

    def prepare(self, entry: dict, seed: int, ctx):
        """The classification preparation (``PreparedData`` / ``ImageData``)."""
        from harness_plugins.classification.prepare import prepare_dataset

        return prepare_dataset(entry, seed, registry=ctx.registry)

    def run(self, ctx) -> dict[str, float]:
        """Pre-train, freeze, probe; return the test metrics."""
        from harness_plugins.representation.training import frozen_inputs, pretrain

        cfg, data = ctx.config, ctx.data
        fns = ctx.metrics()

        def evaluate(model, as_inputs, split: str) -> dict[str, float]:
            offered = frozen_inputs(ctx, cfg, data, model, as_inputs, split)
            return _scores(fns, offered)

        encoder = pretrain(ctx, cfg, data, evaluate)
        start = time.perf_counter()
        offered = frozen_inputs(ctx, cfg, data, encoder.model, encoder.as_inputs, "test")
        temperatures = getattr(encoder.loss_fn, "temperatures", None)
        if temperatures is not None and getattr(encoder.loss_fn, "learn_tau", True):
            from harness_plugins.representation.temperatures import report_temperatures

            tau = temperatures().cpu().numpy()
            offered.update(temperatures=tau, train_labels=data.y_train)
            report_temperatures(ctx, tau, data.y_train)
        out = _scores(fns, offered)
        ctx.log_metrics({"time/train_s": encoder.train_s,
                         "time/eval_s": time.perf_counter() - start})
        return out


def _scores(fns: dict, offered: dict) -> dict[str, float]:
    """Probe and k-NN accuracy (always) and every suite metric the inputs feed."""
    from harness.metrics import compute_metrics
    from harness_plugins.representation.probe import knn_accuracy, probe_accuracy

    out = {"probe_accuracy": probe_accuracy()(offered["labels"], offered["probe_probs"]),
           "knn_accuracy": knn_accuracy()(offered["labels"], offered["knn_probs"])}
    out.update(compute_metrics(fns, offered))
    return out


def contrastive():
    """Contrastive pre-training; the frozen encoder judged by a linear probe and k-NN."""
    return ContrastiveTask()
