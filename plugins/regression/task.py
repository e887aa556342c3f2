"""Task ``regression``: a regressor trained on individual or on aggregate
responses, tested on individual responses.

One run:

1. ``prepare`` splits the rows by the split seed into train / validation /
   test (fractions of ``split``), one-hot encodes categorical columns, fills
   missing values with the training means and standardises the features on
   the training split.
2. The training rows are grouped into random bags of ``aggregation.bag_size``
   (seeded; ``aggregate.make_bags``) and only each bag's mean response is
   released, optionally through the Laplace mechanism (``epsilon``, responses
   clipped to ``mean +- clip x sd`` of the training responses; the clip
   bound is the public bound the mechanism assumes, computed here from the
   data).  Bag size 1 without epsilon is ordinary regression.
3. The released means are standardised (their mean and standard deviation)
   and the model is fitted with the method's aggregate loss
   (``aggregation.loss``, an ``aggregate_losses`` component): in closed form
   for the ``linear`` model (``training.solver: exact``, the default for it),
   else by minibatches of whole bags; the epoch with the lowest aggregate
   loss on the validation split, bagged and released the same way, is kept.
4. Test metrics compare predictions with the individual test responses, on
   the original scale (``targets``, ``predictions``).  On ``linear_gaussian``
   data a linear fit also logs ``test/population_risk`` (``noise^2 +
   |w - theta|^2 + b^2``: its exact risk on a new row), the asymptotic
   risk of its loss (``test/asymptotic_risk``, ``theory.interpolating_risk``)
   and the bag size that risk makes optimal (``test/optimal_bag_size``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import ConfigError
from harness.params import check_components, reject_boolean_numbers, validation_error

Spec = str | dict[str, Any]


class Aggregation(BaseModel):
    """The ``aggregation:`` section: bags, the released aggregate, the loss."""

    model_config = ConfigDict(extra="forbid")
    bag_size: int = Field(default=1, ge=1)
    bagging: Literal["random"] = "random"
    loss: Spec = "instance"
    epsilon: float | None = Field(default=None, gt=0)
    # an infinite bound makes the Laplace scale infinite: every released mean inf
    clip: float = Field(default=3.0, gt=0, allow_inf_nan=False)


class Training(BaseModel):
    """The ``training:`` section."""

    # finite floats: the ge bound alone lets an l2 of .inf through
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    solver: Literal["auto", "exact", "gradient"] = "auto"
    epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=64, ge=1)
    optimizer: Spec = {"name": "adam", "lr": 1.0e-3}
    l2: float = Field(default=0.0, ge=0)


class RegressionConfig(BaseModel):
    """The method config of the regression task."""

    model_config = ConfigDict(extra="forbid")
    model: Spec = "linear"
    aggregation: Aggregation = Aggregation()
    training: Training = Training()


SECTIONS = {(): RegressionConfig, ("aggregation",): Aggregation, ("training",): Training}


@dataclass
class RegressionData:
    """Standardised features and raw responses per split."""

    X_train: Any
    y_train: Any
    X_val: Any
    y_val: Any
    X_test: Any
    y_test: Any
    #: feature means and standard deviations of the training split
    mean: Any = None
    scale: Any = None
    meta: dict = field(default_factory=dict)


def train_rows(n: int, split: dict) -> int:
    """Training rows of ``n`` under ``split`` (as :func:`split_rows` cuts)."""
    return n - max(1, round(split["val"] * n)) - max(1, round(split["test"] * n))


def split_rows(n: int, split: dict, seed: int):
    """``(train, val, test)`` row indices of a seeded permutation."""
    import numpy as np

    n_val, n_test = max(1, round(split["val"] * n)), max(1, round(split["test"] * n))
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def prepare_regression(raw, split: dict, seed: int, label: str) -> RegressionData:
    """Numeric features (categoricals one-hot), split, standardised on train."""
    import numpy as np
    import pandas as pd

    from harness import UserError

    if raw.y is None:
        raise UserError(f"dataset {label!r} has no target: regression needs one")
    try:
        y = np.asarray(pd.to_numeric(pd.Series(np.asarray(raw.y)), errors="raise"),
                       dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"dataset {label!r} has a non-numeric target; the regression task "
                        f"needs a numeric response (an OpenML regression set)") from None
    X = raw.X if isinstance(raw.X, pd.DataFrame) else pd.DataFrame(np.asarray(raw.X).reshape(
        len(y), -1))
    X = pd.get_dummies(X, dummy_na=False).astype(np.float64).to_numpy()
    keep = np.isfinite(y)
    X, y = X[keep], y[keep]
    if train_rows(len(y), split) < 2:
        raise UserError(f"dataset {label!r} has {len(y)} rows: too few to split")
    tr, va, te = split_rows(len(y), split, seed)
    mean = np.nanmean(X[tr], axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    X = np.where(np.isfinite(X), X, mean)
    scale = X[tr].std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    Z = ((X - mean) / scale).astype(np.float64)
    return RegressionData(Z[tr], y[tr], Z[va], y[va], Z[te], y[te], mean, scale,
                          dict(raw.meta or {}))


class RegressionTask:
    """Fit a regressor on (aggregate) responses; test on individual responses."""

    metric_inputs = ("targets", "predictions")
    cost_keys = ("model", "training.epochs", "training.solver", "aggregation.bag_size")

    def __init__(self):
        # label -> training rows of the suite's datasets, recorded by
        # dataset_label (the suite loader names each dataset before it
        # validates the methods), so a bag size larger than a dataset's
        # training split stops at plan time
        self._rows: dict[str, int] = {}

    def validate(self, config: dict, check) -> dict:
        """Check the config, its components, and the bag size against the datasets."""
        reject_boolean_numbers(RegressionConfig, config)
        try:
            cfg = RegressionConfig.model_validate(config).model_dump()
        except ValidationError as exc:
            raise validation_error(exc, config, SECTIONS, "the regression task") from None
        check_components(cfg, check, (("model", "models"),
                                      ("aggregation.loss", "aggregate_losses"),
                                      ("training.optimizer", "optimizers")))
        if cfg["training"]["solver"] == "exact" and cfg["model"]["name"] != "linear":
            raise ConfigError("training.solver", "exact", f"the exact solver fits the linear "
                              f"model only, not {cfg['model']['name']!r}; use solver: gradient")
        k = cfg["aggregation"]["bag_size"]
        for label, n in self._rows.items():
            if k > n:
                raise ConfigError("aggregation.bag_size", k, f"exceeds the {n} training rows "
                                  f"of dataset {label!r}")
        return cfg

    def dataset_entry(self, options: dict, registry) -> dict:
        """A dataset entry takes only ``split`` (val/test fractions of the rows)."""
        from harness_plugins.classification.entries import DEFAULT_SPLIT, check_split

        split = dict(DEFAULT_SPLIT)
        for key, value in options.items():
            if key != "split":
                raise ConfigError(key, value, f"the regression task takes no dataset option "
                                  f"{key!r}; its dataset keys: split, label")
            split = check_split(value)
        return {"split": split}

    def dataset_label(self, base: str, entry: dict) -> str:
        """The source's label; records the entry's training rows when known."""
        from harness_plugins.regression.sources import rows_of

        n = rows_of(entry["source"], entry.get("params") or {})
        if n is not None:
            self._rows[base] = train_rows(n, entry.get("split") or {"val": 0.2, "test": 0.2})
        return base

    def prepare(self, entry: dict, seed: int, ctx) -> RegressionData:
        """Split and standardise the dataset by ``seed``."""
        raw = ctx.load_raw(entry)
        return prepare_regression(raw, entry["split"], seed, entry.get("label", raw.name))

    def run(self, ctx) -> dict[str, float]:
        """Bag, release, fit, test on individual responses."""
        from harness_plugins.regression.fitting import fit_and_predict

        return fit_and_predict(ctx, ctx.config, ctx.data)


def regression():
    """Regression on individual or aggregate (bag-mean) responses, tested on individual ones."""
    return RegressionTask()
