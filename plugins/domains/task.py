"""Task ``domain_generalization``: train on source domains, test on a held-out one.

One run per (dataset entry, method, seed); an entry of a domain source
names its held-out ``target`` domain, and without one stands for one entry
per domain (leave-one-domain-out, DomainBed's protocol), so the report shows
a row per held-out domain and their average.

A run:

1. ``prepare`` splits every source domain into train / validation / test
   (``split:`` of the entry, default 60/20/20); target rows are held out whole;
2. the suite's ``model`` (the classification family's models) is built from
   the run's ``init`` seed, and the ``method`` (a ``dg_methods`` component)
   builds its network on it;
3. the classification family's epoch loop (``trainer.fit``) trains it on
   domain-balanced batches (``training.batch_size`` rows of every source
   domain per step, as DomainBed), with the run's optimizer and scheduler;
4. every epoch the network predicts the pooled validation rows of the source
   domains; the best epoch by ``training.early_stopping.monitor`` (default
   ``val/accuracy``) is kept: **training-domain validation** model selection,
   no target row is seen before the test;
5. test: the metrics on the target rows (``labels``, ``probs``, ``logits``,
   ``domains``) and on the source test rows (``source_labels``,
   ``source_probs``, ``source_domains``); ``target_accuracy`` and
   ``source_accuracy`` average per domain.  Each domain's accuracy is also
   logged as ``test/domain/<name>/accuracy``, and each row's correctness as
   ``unit/target_accuracy`` / ``unit/source_accuracy`` with step = the row's
   position in the dataset, so a report compares methods paired on rows.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import ConfigError
from harness.params import check_components, reject_boolean_numbers, validation_error

Spec = str | dict[str, Any]


class EarlyStopping(BaseModel):
    """Epoch selection on the source domains' validation rows."""

    model_config = ConfigDict(extra="forbid")
    monitor: str = "val/accuracy"
    patience: int | None = Field(default=None, ge=1)


class Training(BaseModel):
    """The ``training:`` section."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=20, ge=1)
    #: rows of every source domain per step (DomainBed's per-domain batch)
    batch_size: int = Field(default=32, ge=2)
    optimizer: Spec = "adam"
    scheduler: Spec | None = None
    early_stopping: EarlyStopping = EarlyStopping()
    select_best: bool = True
    eval_batch_size: int = Field(default=8192, ge=1)


class DomainConfig(BaseModel):
    """The method config of the domain generalization task."""

    model_config = ConfigDict(extra="forbid")
    model: Spec = "auto"
    method: Spec = "erm"
    training: Training = Training()


_NESTED = {(): DomainConfig, ("training",): Training,
           ("training", "early_stopping"): EarlyStopping}


class DomainGeneralizationTask:
    """Train on source domains with a DG method, select on their validation
    rows, test on held-out target domains."""

    metric_inputs = ("labels", "probs", "logits", "domains", "source_labels", "source_probs",
                     "source_domains")
    #: What, with the dataset, sets a run's training time (``harness.estimate``).
    cost_keys = ("model", "method", "training.epochs", "training.batch_size")

    def validate(self, config: dict, check) -> dict:
        """Check the config with pydantic, its components through ``check``
        and the monitor against what every epoch logs."""
        reject_boolean_numbers(DomainConfig, config)
        try:
            cfg = DomainConfig.model_validate(config).model_dump()
        except ValidationError as exc:
            raise validation_error(exc, config, _NESTED, "the domain_generalization task") from None
        check_components(cfg, check, [("model", "models"), ("method", "dg_methods"),
                                      ("training.optimizer", "optimizers"),
                                      ("training.scheduler", "schedulers")])
        monitor = cfg["training"]["early_stopping"]["monitor"]
        metrics = getattr(check, "metrics", None)
        if metrics is not None:
            from harness.params import did_you_mean

            allowed = ["val/loss", "val/accuracy", *(f"val/{m}" for m in metrics
                                                     if m != "accuracy")]
            if monitor not in allowed:
                raise ConfigError("training.early_stopping.monitor", monitor,
                                  f"not a quantity logged every epoch"
                                  f"{did_you_mean(monitor, allowed)}; use one of: "
                                  f"{', '.join(allowed)}")
        return cfg

    def dataset_entry(self, options: dict, registry) -> dict:
        """An entry takes ``split`` (fractions of every source domain for
        validation and source test); the domain selection is the source's."""
        from harness_plugins.classification.entries import DEFAULT_SPLIT, check_split

        split = dict(DEFAULT_SPLIT)
        for key, value in options.items():
            if key != "split":
                raise ConfigError(key, value, f"unknown dataset key {key!r}: the "
                                  f"domain_generalization task's dataset keys are split and "
                                  f"label; held-out and source domains are the source's "
                                  f"'target' and 'sources'")
            split = check_split(value)
        return {"split": split}

    def prepare(self, entry: dict, seed: int, ctx):
        """The entry's ``DomainData``."""
        from harness_plugins.domains.data import prepare_domains

        return prepare_domains(ctx.load_raw(entry), entry["split"], seed)

    def run(self, ctx) -> dict[str, float]:
        """Train, select on source validation, test on target and source test rows."""
        from harness_plugins.domains.training import test_metrics, train_network

        net, result = train_network(ctx, ctx.config, ctx.data)
        start = time.perf_counter()
        out = test_metrics(ctx, net, ctx.data)
        ctx.log_metrics({"time/train_s": result.train_s,
                         "time/eval_s": time.perf_counter() - start,
                         "train/best_epoch": result.best_epoch})
        return out


def domain_generalization():
    """Domain generalization: train on source domains, test on a held-out one (DomainBed)."""
    return DomainGeneralizationTask()
