"""Task ``semi_supervised``: m labeled samples plus n unlabeled samples from a
shifted distribution; a linear classifier is fit by an ``ssl_methods`` method
and scored on the in-domain distribution.

A dataset entry names a source and the task's keys: ``labeled`` (m >= 1),
``unlabeled`` (n >= 0), ``shift`` (the TV distance between the unlabeled and
the labeled feature marginals, in [0, 1)), and for tables ``test`` (held-out
fraction) and ``direction`` (``pc1`` | ``random``: the covariate shift's
direction), for the mixture ``test_size`` (rows of the drawn test sample).
See ``harness_plugins.semisupervised.data`` for how each source is split and
shifted.  Every method of a seed sees the same rows (the split seed), so
methods are paired per seed.

Metric inputs: ``error`` (exact on the Gaussian mixture, else the held-out
error), ``robust_error`` (a function of the l2 budget eps, exact likewise),
``labels``/``probs`` (the test sample: integer labels, ``(N, 2)``
probabilities ``sigma(f)``; a drawn sample on the mixture).  Logged besides:
``train/loss`` every ``training.log_every`` steps of each fit (steps numbered
across fits), ``shift/tv`` (the shift's computed TV), ``shift/delta`` or
``shift/beta``, ``data/bayes_error`` (mixture), ``train/pseudo_label_error``
(the final model's sign against the unlabeled rows' own labels, a
diagnostic no method sees) and ``time/train_s``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.params import check_components, reject_boolean_numbers, validation_error

Spec = str | dict[str, Any]


class LossConfig(BaseModel):
    """The per-sample surrogate (``loss:``)."""

    # finite floats here and below: the gt / ge bounds alone let .inf through
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: Literal["ramp", "logistic"] = "ramp"
    gamma: float = Field(default=2.0, gt=0)


class TrainingConfig(BaseModel):
    """Full-batch Adam (``training:``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    steps: int = Field(default=200, ge=1)
    lr: float = Field(default=0.05, gt=0)
    weight_decay: float = Field(default=1e-3, ge=0)
    log_every: int = Field(default=50, ge=1)


class SslConfig(BaseModel):
    """The method config of the ``semi_supervised`` task."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    method: Spec = "erm"
    loss: LossConfig = LossConfig()
    #: the training loss's adversarial l2 budget: 0 = the non-robust loss
    epsilon: float = Field(default=0.0, ge=0)
    intercept: bool = True
    training: TrainingConfig = TrainingConfig()


class EntryOptions(BaseModel):
    """The task's keys of a dataset entry."""

    model_config = ConfigDict(extra="forbid")
    # row counts bounded: 10**30 unlabeled rows planned and failed in numpy at run time
    labeled: int = Field(default=20, ge=1, le=10_000_000)
    unlabeled: int = Field(default=0, ge=0, le=10_000_000)
    shift: float = Field(default=0.0, ge=0, lt=1)
    test: float = Field(default=0.3, gt=0, lt=1)
    direction: Literal["pc1", "random"] = "pc1"
    test_size: int = Field(default=10000, ge=1, le=10_000_000)


_MODELS = {(): SslConfig, ("loss",): LossConfig, ("training",): TrainingConfig}


class SemiSupervisedTask:
    """Labeled + shifted unlabeled data, a linear classifier, in-domain test error."""

    metric_inputs = ("error", "robust_error", "labels", "probs")
    #: With the dataset, what sets a run's training time.
    cost_keys = ("method", "training.steps")

    def validate(self, config: dict, check) -> dict:
        """Check the config (unknown keys, such as another task's, are errors)
        and the method component."""
        reject_boolean_numbers(SslConfig, config)
        try:
            cfg = SslConfig.model_validate(config).model_dump()
        except ValidationError as exc:
            raise validation_error(exc, config, _MODELS, "the semi_supervised task") from None
        check_components(cfg, check, (("method", "ssl_methods"),))
        return cfg

    def dataset_entry(self, options: dict, registry) -> dict:
        """``labeled``, ``unlabeled``, ``shift``, ``test``, ``direction``,
        ``test_size`` with their defaults filled in."""
        try:
            return EntryOptions.model_validate(options).model_dump()
        except ValidationError as exc:
            raise validation_error(exc, options, {(): EntryOptions}, "the dataset entry") from None

    def dataset_label(self, base: str, entry: dict) -> str:
        """``<source>+m=20+n=1000+tv=0.1``, then any of ``test``, ``direction``,
        ``test_size`` that is not its default (``+direction=random``)."""
        label = f"{base}+m={entry['labeled']}+n={entry['unlabeled']}+tv={entry['shift']:g}"
        defaults = EntryOptions().model_dump()
        for key in ("test", "direction", "test_size"):
            if key in entry and entry[key] != defaults[key]:
                label += f"+{key}={entry[key]:g}" if key == "test" else f"+{key}={entry[key]}"
        return label

    def prepare(self, entry: dict, seed: int, ctx):
        """Draw (mixture) or split and shift (table) one run's data."""
        from harness_plugins.semisupervised.data import prepare_mixture, prepare_table
        from harness_plugins.semisupervised.gaussian import GaussianMixture

        raw = ctx.load_raw(entry)
        if isinstance(raw.X, GaussianMixture):
            return prepare_mixture(raw.X, entry, seed)
        return prepare_table(raw, entry, seed)

    def run(self, ctx) -> dict[str, float]:
        """Fit the method's linear classifier; return the test metrics."""
        import numpy as np

        from harness.metrics import compute_metrics
        from harness_plugins.semisupervised.gaussian import linear_error
        from harness_plugins.semisupervised.objectives import Loss, Training

        cfg, data = ctx.config, ctx.data
        ctx.log_metrics({k if "/" in k else f"data/{k}": float(v) for k, v in data.info.items()})
        step = [0]

        def log(_, values):
            step[0] += 1
            ctx.epoch_end(step[0], {f"train/{k}": v for k, v in values.items()})

        loss = Loss(cfg["loss"]["name"], cfg["loss"]["gamma"], cfg["epsilon"])
        t = cfg["training"]
        training = Training(t["steps"], t["lr"], t["weight_decay"], cfg["intercept"],
                            t["log_every"], log)
        method = ctx.create("ssl_methods", cfg["method"])
        U = data.U if method.uses_unlabeled else data.U[:0]
        start = time.perf_counter()
        model = method.fit(data.X, data.s, U, loss, training)
        train_s = time.perf_counter() - start

        def robust_error(epsilon: float) -> float:
            if data.exact is not None:
                return linear_error(model.theta, model.bias, data.exact["mu"],
                                    data.exact["variances"], epsilon)
            margin = data.s_test * model.decision(data.X_test)
            return float(np.mean(margin <= epsilon * np.linalg.norm(model.theta)))

        offered = {"error": robust_error(0.0), "robust_error": robust_error,
                   "labels": (data.s_test > 0).astype(np.int64),
                   "probs": model.probs(data.X_test)}
        out = compute_metrics(ctx.metrics(), offered)
        extra = {"time/train_s": train_s}
        if len(data.U):
            extra["train/pseudo_label_error"] = float(
                np.mean(model.predict_sign(data.U) != data.U_s))
        ctx.log_metrics(extra)
        return out


def semi_supervised():
    """Semi-supervised learning, out-of-domain unlabeled data: m labeled + n shifted unlabeled."""
    return SemiSupervisedTask()
