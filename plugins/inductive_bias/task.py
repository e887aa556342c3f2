"""Task ``inductive_bias``: the bits needed to specify a well-generalising hypothesis.

Boopathy et al. (2024), "Towards exact computation of inductive bias".  One
run, for one hypothesis class on one task with a fixed training budget:

1. ``prepare`` splits the dataset's rows by the split seed into a test
   split (``split.test`` of the rows) and a pool, from which ``train_size``
   rows are the training data (the budget's data); tabular columns are
   standardised with the train rows' statistics, images and sources with a
   known teacher are left as they are.
2. ``n_hypotheses`` hypotheses are drawn from the class (random
   initialisation and data order from the run's init seed), each trained
   with the ``training`` budget, and their test losses (MSE against one-hot
   targets) are recorded; per epoch, ``train/loss`` is their mean train
   loss (the first chunk of 64).
3. The loss distribution is fit (``fit``: the paper's scaled non-central
   chi-squared, or a normal, or the empirical fraction) and
   -log2 P(loss <= target) is the run's ``inductive_bias_bits``, with a
   bootstrap standard error over the hypotheses (``bootstrap`` resamples).

Metric inputs: ``bits``, ``bits_se``, ``losses`` (numpy ``(n,)``) and
``target``.  Also logged: ``fit/<param>`` (the fit), ``fit/ks`` (its
Kolmogorov-Smirnov distance to the losses), ``time/sample_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import ConfigError, UserError
from harness.params import check_components, reject_boolean_numbers, validation_error

Spec = str | dict[str, Any]
INPUTS = ("bits", "bits_se", "losses", "target")


class Training(BaseModel):
    """The ``training:`` section: the budget every hypothesis trains with (Adam)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=20, ge=1, le=100_000)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=1e-3, gt=0, le=100)


class InductiveBiasConfig(BaseModel):
    """The method config of the inductive_bias task."""

    model_config = ConfigDict(extra="forbid")
    hypotheses: Spec = "mlp"
    n_hypotheses: int = Field(default=100, ge=2, le=1_000_000)
    train_size: int = Field(default=100, ge=1)
    training: Training = Training()
    target: float = Field(default=0.1, gt=0, le=1e6)
    fit: Literal["ncx2", "normal", "empirical"] = "ncx2"
    bootstrap: int = Field(default=20, ge=0, le=10_000)


SECTIONS = {(): InductiveBiasConfig, ("training",): Training}


@dataclass
class BiasData:
    """Train rows (the budget's) and test rows as float32 tensors, one-hot targets."""

    X_train: Any
    Y_train: Any
    X_test: Any
    Y_test: Any
    in_shape: tuple
    n_outputs: int
    truth: dict | None


class InductiveBiasTask:
    """Sample trained hypotheses from a class, fit their test-loss distribution, report bits."""

    metric_inputs = INPUTS
    cost_keys = ("hypotheses", "n_hypotheses", "train_size", "training", "bootstrap")

    def validate(self, config: dict, check) -> dict:
        """Check the config and the hypothesis class."""
        reject_boolean_numbers(InductiveBiasConfig, config)
        try:
            cfg = InductiveBiasConfig.model_validate(config).model_dump()
        except ValidationError as exc:
            raise validation_error(exc, config, SECTIONS, "the inductive_bias task") from None
        check_components(cfg, check, (("hypotheses", "hypothesis_classes"),))
        return cfg

    def dataset_entry(self, options: dict, registry) -> dict:
        """A dataset entry takes only ``split`` (its ``test`` fraction is held out)."""
        from harness_plugins.classification.entries import DEFAULT_SPLIT, check_split

        split = dict(DEFAULT_SPLIT)
        for key, value in options.items():
            if key != "split":
                raise ConfigError(key, value, f"the inductive_bias task applies no dataset "
                                  f"transform or option {key!r}; its dataset keys: split, label")
            split = check_split(value)
        return {"split": split}

    def prepare(self, entry: dict, seed: int, ctx) -> BiasData:
        """Held-out test rows and ``train_size`` train rows, drawn by ``seed``."""
        raw = ctx.load_raw(entry)
        return split_budget(raw, (entry.get("split") or {}).get("test", 0.2),
                            ctx.config["train_size"], seed, entry.get("label", raw.name))

    def run(self, ctx) -> dict[str, float]:
        """Draw and train the hypotheses, fit their losses, return the bits."""
        import numpy as np
        import torch

        from harness.metrics import compute_metrics
        from harness_plugins.inductive_bias.estimate import bits, bootstrap_se, ks_distance
        from harness_plugins.inductive_bias.hypotheses import Job

        cfg, data = ctx.config, ctx.data
        cls = ctx.create("hypothesis_classes", cfg["hypotheses"], in_shape=data.in_shape,
                         n_outputs=data.n_outputs)
        if hasattr(cls, "check"):
            cls.check(data.in_shape, data.truth)
        ctx.expect_epochs(cfg["training"]["epochs"])
        job = Job(data.X_train, data.Y_train, data.X_test, data.Y_test, cfg["n_hypotheses"],
                  cfg["training"], torch.Generator().manual_seed(ctx.seeds["init"]),
                  data.truth, lambda values, step: ctx.epoch_end(step, values))
        start = time.perf_counter()
        losses = np.asarray(cls.sample(job), np.float64)
        sample_s = time.perf_counter() - start
        if not np.isfinite(losses).all():
            from harness import Diverged

            raise Diverged("a sampled hypothesis's test loss is not finite")
        value, params = bits(losses, cfg["target"], cfg["fit"])
        se = bootstrap_se(losses, cfg["target"], cfg["fit"], cfg["bootstrap"],
                          ctx.seeds["init"])
        ctx.log_metrics({**{f"fit/{k}": v for k, v in params.items()},
                         "fit/ks": ks_distance(losses, params), "time/sample_s": sample_s})
        return compute_metrics(ctx.metrics(), {"bits": value, "bits_se": se, "losses": losses,
                                               "target": cfg["target"]})


def split_budget(raw, test_fraction: float, train_size: int, seed: int, label: str
                 ) -> BiasData:
    """Shuffle the rows by ``seed``: the first ``test_fraction`` are the test split,
    ``train_size`` of the rest the training data."""
    import numpy as np
    import torch

    X = raw.X
    if hasattr(X, "select_dtypes"):
        X = X.select_dtypes("number").to_numpy(np.float64)
    X = np.asarray(X, np.float64)
    if raw.y is None:
        raise UserError(f"dataset {label!r} has no labels: the inductive_bias task needs a "
                        f"labelled source")
    classes, y = np.unique(np.asarray(raw.y), return_inverse=True)
    image = raw.image_shape is not None
    in_shape = tuple(raw.image_shape) if image else (int(np.prod(X.shape[1:])),)
    X = X.reshape(len(X), *in_shape)
    n = len(X)
    n_test = max(1, round(test_fraction * n))
    if n - n_test < train_size:
        raise UserError(f"dataset {label!r} has {n} rows: {n_test} test rows leave "
                        f"{n - n_test}, fewer than train_size = {train_size}")
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:n_test + train_size]
    Xtr, Xte = X[train], X[test]
    meta = raw.meta or {}
    if not image and meta.get("standardize", True):
        mean, std = Xtr.mean(0), Xtr.std(0)
        std = np.where(std > 0, std, 1.0)
        Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std
    eye = np.eye(len(classes))

    def tensor(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)

    truth = meta.get("truth") if not meta.get("standardize", True) else None
    return BiasData(tensor(Xtr), tensor(eye[y[train]]), tensor(Xte), tensor(eye[y[test]]),
                    in_shape, len(classes), truth)


def inductive_bias():
    """Inductive bias (Boopathy et al. 2024): bits to specify a well-generalising hypothesis."""
    return InductiveBiasTask()
