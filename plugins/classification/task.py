"""Task ``classification``: train a model with a loss and an optimizer (or a
training scheme), select the best epoch on validation, evaluate on test."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_serializer

from harness import ConfigError, hookimpl
from harness.params import SUITE_KEYS, check_components, reject_boolean_numbers
from harness_plugins.classification.entries import SplitAndTransforms

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
    batch_size: StrictInt | float = 64
    optimizer: Spec = "adam"
    scheduler: Spec | None = None
    early_stopping: EarlyStopping = EarlyStopping()
    select_best: bool = True
    eval_batch_size: int = Field(default=8192, ge=1)
    #: Speed options (``harness_plugins.classification.precision``); left out
    #: of the dumped config while off, so they moved no existing run key.
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False

    @model_serializer(mode="wrap")
    def _drop_off_options(self, handler):
        from harness_plugins.classification.precision import OFF

        out = handler(self)
        for key, off in OFF.items():
            if out.get(key) == off:
                out.pop(key)
        return out


class Config(BaseModel):
    """The method config of the classification task."""

    model_config = ConfigDict(extra="forbid")
    model: Spec = "mlp"
    loss: Spec = "cross_entropy"
    training: Training = Training()
    #: A generative augmenter whose samples are mixed into the train split
    #: (``harness_plugins.augmentation.mixing``).
    augment: Spec | None = None


def config_error(exc: ValidationError, config: dict, root: type[BaseModel] | None = None
                 ) -> ConfigError:
    """A pydantic error as a ConfigError at its key path (``root`` is the
    config model, for listing the allowed keys of an unknown one)."""
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if isinstance(p, int) or p.isidentifier()]
    if err["type"] == "extra_forbidden" and err["loc"]:
        # the unknown key itself, whatever its characters ('batch size', '<b>')
        loc = [*[p for p in err["loc"][:-1] if isinstance(p, int) or p.isidentifier()],
               err["loc"][-1]]
    value: Any = config
    for part in loc:
        value = value.get(part) if isinstance(value, dict) else None
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        from harness.params import did_you_mean

        nested = {(): root or Config, ("training",): Training,
                  ("training", "early_stopping"): EarlyStopping}
        allowed = nested.get(tuple(loc[:-1]))
        fields = list(allowed.model_fields) if allowed else []
        key = str(loc[-1])
        # a key that belongs one level down (`batch_size:` at the top of a suite)
        home = [".".join(path) for path, model in nested.items()
                if path != tuple(loc[:-1]) and key in model.model_fields]
        hint = (f" (did you mean {home[0] + '.' + key!r}?)" if home
                else did_you_mean(key, fields))
        where = "the method config" if not loc[:-1] else ".".join(map(str, loc[:-1]))
        msg = f"unknown key {key!r}{hint}; keys of {where}: {', '.join(fields)}"
        if not loc[:-1]:
            msg += f"; suite keys: {', '.join(SUITE_KEYS)}"
    return ConfigError(".".join(map(str, loc)), value, msg)


class ClassificationTask(SplitAndTransforms):
    """Supervised classification: model + loss + optimizer/scheme, early
    stopping on validation, test metrics at the selected epoch."""

    #: Inputs this task feeds metrics (see ``register_metrics``).
    metric_inputs = ("labels", "probs", "logits", "model", "train_x", "train_y",
                     "train_labels", "train_probs", "test_x", "test_y")
    #: What, with the dataset, sets a run's training time (``harness.estimate``).
    cost_keys = ("model", "training.epochs")

    def validate(self, config: dict, check) -> dict:
        """Check the config shape with pydantic and every component through
        ``check``; return it with component specs normalised to mappings."""
        cfg = validate_classifier_config(config, check, Config,
                                         extra=(("augment", "augmenters"),))
        if cfg.get("augment") is not None:
            from harness_plugins.augmentation.mixing import check_augment

            check_augment(cfg["augment"], "augment")
        return cfg

    def prepare(self, entry: dict, seed: int, ctx):
        """Encoded, split and preprocessed arrays (``PreparedData``)."""
        from harness_plugins.classification.prepare import prepare_dataset

        return prepare_dataset(entry, seed, registry=ctx.registry)

    def batch_key(self, spec) -> tuple[str | None, str]:
        """Batch mode: runs with equal keys train together (``batch_task``)."""
        from harness.plugins import get_registry
        from harness_plugins.classification.batch_task import batch_key

        if spec.config.get("augment") is not None:
            # each run's train split gets its own generated rows
            return None, "augmented runs train alone"
        return batch_key(spec, get_registry())

    def run_group(self, ctxs: list) -> list:
        """Batch mode: train one group's runs stacked (``batch_task``)."""
        from harness_plugins.classification.batch_task import run_group

        return run_group(self, ctxs)

    def run(self, ctx) -> dict[str, float]:
        """Train, select the best epoch, return test metrics."""
        from harness_plugins.classification.trainer import train_classifier

        data, config, train_ctx = ctx.data, ctx.config, ctx
        if ctx.config.get("augment") is not None:
            from harness_plugins.augmentation.mixing import (
                augment_training,
                training_config,
                training_context,
            )

            data, info = augment_training(ctx, data, ctx.config["augment"])
            config, train_ctx = training_config(config, info), training_context(ctx, info)
        fns = ctx.metrics()
        model, parts, result = train_classifier(train_ctx, config, data, fns)
        start = time.perf_counter()
        out = test_metrics(ctx, model, data, fns, ctx.config["training"]["eval_batch_size"])
        ctx.log_metrics({"time/train_s": result.train_s,
                         "time/eval_s": time.perf_counter() - start,
                         "train/best_epoch": result.best_epoch})
        return out


def test_metrics(ctx, model, data, fns: dict, batch_size: int) -> dict[str, float]:
    """Every metric of ``fns`` on the test split, from the inputs a trained
    classifier offers (train-split inputs are computed only when asked for)."""
    import torch

    from harness.metrics import compute_metrics, lazy
    from harness_plugins.classification.trainer import predict_logits, prediction_inputs

    dev = ctx.device
    # the test split as model inputs; offered as ``test_x`` too, for metrics that query
    # the model beyond its predictions (robust accuracy under an attack)
    test_x = torch.as_tensor(data.X_test, device=dev)
    logits = predict_logits(model, test_x, batch_size)
    offered = prediction_inputs(logits, data.y_test)
    # image pixels (ImageData) become normalised model inputs
    as_inputs = getattr(data, "inputs", lambda x: x)
    train_x = lazy(lambda: as_inputs(torch.as_tensor(data.X_train, device=dev)))
    train_probs = lazy(lambda: prediction_inputs(
        predict_logits(model, train_x(), batch_size),
        data.y_train)["probs"])
    offered.update(model=model, train_x=train_x,
                   train_y=lazy(lambda: torch.as_tensor(data.y_train, device=dev)),
                   train_labels=data.y_train, train_probs=train_probs,
                   test_x=test_x, test_y=lazy(lambda: torch.as_tensor(data.y_test, device=dev)))
    return compute_metrics(fns, offered)


def validate_classifier_config(config: dict, check, root: type[BaseModel],
                               extra: tuple[tuple[str, str], ...] = ()) -> dict:
    """Validate a classifier config (``model``, ``loss``, ``training``, plus
    ``extra`` (key, kind) component keys of ``root``) and its early-stopping
    monitor against the suite's metrics (``check.metrics``)."""
    reject_boolean_numbers(root, config)
    try:
        cfg = root.model_validate(config).model_dump()
    except ValidationError as exc:
        raise config_error(exc, config, root) from None
    check_components(cfg, check, [("model", "models"), ("loss", "losses"),
                                  ("training.optimizer", "optimizers"),
                                  ("training.scheduler", "schedulers"), *extra])
    tr = cfg["training"]
    if isinstance(tr["optimizer"], dict) and "base" in tr["optimizer"]:
        check_scheme_base(tr["optimizer"], "training.optimizer")
    if isinstance(tr["batch_size"], float) and not 0 < tr["batch_size"] <= 1:
        raise ConfigError("training.batch_size", tr["batch_size"], "a float batch size is a "
                          "fraction of the train split and must be in (0, 1]; an int is a size")
    if isinstance(tr["batch_size"], int) and tr["batch_size"] < 1:
        raise ConfigError("training.batch_size", tr["batch_size"], "the batch size must be >= 1")
    monitor = tr["early_stopping"]["monitor"]
    metrics = getattr(check, "metrics", None)
    if metrics is not None:
        from harness_plugins.classification.trainer import logged_every_epoch

        allowed = ["val/loss", *(f"val/{m}" for m in metrics if logged_every_epoch(m))]
        if monitor not in allowed:
            from harness.params import did_you_mean

            raise ConfigError("training.early_stopping.monitor", monitor,
                              f"not a quantity logged every epoch"
                              f"{did_you_mean(monitor, allowed)}; use one of: "
                              f"{', '.join(allowed)}")
    return cfg


def check_scheme_base(spec: dict, path: str) -> None:
    """A training scheme's ``base`` optimizer (sam, saf, mesa, ...), checked by
    building the scheme: the plain check of its parameters sees ``base`` as
    any spec, and normalising it there would change existing run keys."""
    import harness

    try:
        harness.create("optimizers", spec)
    except ConfigError as exc:
        inner = exc.path.split(".", 1)[1] if exc.path.startswith("optimizers.") else ""
        raise ConfigError(f"{path}.base" + (f".{inner}" if inner else ""), exc.value,
                          exc.message) from None
    except ValueError as exc:
        raise ConfigError(f"{path}.base", spec["base"], str(exc)) from None


def classification():
    """Supervised classification with early stopping on a validation metric."""
    return ClassificationTask()


@hookimpl
def register_tasks(register):
    register("classification", classification)
