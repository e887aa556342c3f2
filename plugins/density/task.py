"""Task ``density_estimation``: fit an energy model, score it against the truth.

One run:

1. ``prepare`` takes the dataset's numeric columns (labels are ignored),
   drops rows with a missing value and splits the rows by the split seed
   into train / validation / test; tabular sets are standardised with the
   train split's statistics, sources with a known density
   (``meta["standardize"]`` False) are left on the scale their truth is on.
2. The method's ``density_objectives`` estimator fits the ``energy_models``
   model on the train split with noise from ``noise`` (``fitted``: the train
   split's per-column Gaussian, ``standard``: N(0, scale^2)); every epoch
   logs ``train/loss`` (the objective's estimate), ``train/log_z`` (the
   objective's own log Z estimate, NCE and compositional),
   ``val/log_likelihood`` and, where the truth has parameters the model
   holds, ``val/param_error``: the convergence curve.
3. On the test split: ``log_likelihood`` (exact where the model knows its
   normaliser, else importance-sampled over a Gaussian fitted to the train
   split with ``evaluation.proposal_scale`` x its spread, with its standard
   error ``log_likelihood_se`` and ``log_z_se``), ``log_likelihood_gap``
   (the true density's mean test log-likelihood minus the model's, an
   estimate of KL(truth || model) + its sampling error) and
   ``param_error`` where the truth is known.  The importance draws use the
   split seed, so methods of one seed are scored with the same draws.

Metric inputs: ``test_logp`` (per-row log-likelihoods), ``test_logp_se``,
``log_z_se``, ``true_logp`` (the true density's per-row log-likelihoods,
where the source knows it), ``estimate`` and ``truth_params`` (dicts of
named parameters, where the truth has some the model holds) and
``param_error_curve`` (the per-epoch parameter errors, there too).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import ConfigError, Diverged, UserError
from harness.params import check_components, reject_boolean_numbers, validation_error

Spec = str | dict[str, Any]
INPUTS = ("test_logp", "test_logp_se", "log_z_se", "true_logp", "estimate", "truth_params",
          "param_error_curve")


class Noise(BaseModel):
    """The ``noise:`` section: the noise distribution of NCE and the compositional objective."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["fitted", "standard"] = "fitted"
    scale: float = Field(default=1.0, gt=0, le=1e3)


class Training(BaseModel):
    """The ``training:`` section."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=20, ge=1, le=100_000)
    batch_size: int = Field(default=128, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0, le=100)
    momentum: float = Field(default=0.0, ge=0, lt=1)


class Evaluation(BaseModel):
    """The ``evaluation:`` section: importance sampling of log Z."""

    model_config = ConfigDict(extra="forbid")
    is_samples: int = Field(default=50_000, ge=100, le=100_000_000)
    curve_samples: int = Field(default=4096, ge=100, le=10_000_000)
    proposal_scale: float = Field(default=1.5, gt=0, le=100)


class DensityConfig(BaseModel):
    """The method config of the density_estimation task."""

    model_config = ConfigDict(extra="forbid")
    model: Spec = "mlp_energy"
    objective: Spec = "compositional"
    noise: Noise = Noise()
    training: Training = Training()
    evaluation: Evaluation = Evaluation()


SECTIONS = {(): DensityConfig, ("noise",): Noise, ("training",): Training,
            ("evaluation",): Evaluation}


@dataclass
class DensityData:
    """The split rows (float64 numpy) and the source's truth (None when unknown
    or when the rows were standardised away from its scale)."""

    train: Any
    val: Any
    test: Any
    truth: dict | None
    name: str


class DensityTask:
    """Fit an energy model by MLE, NCE or the compositional objective; score it against truth."""

    metric_inputs = INPUTS
    cost_keys = ("model", "objective", "training", "evaluation")

    def validate(self, config: dict, check) -> dict:
        """Check the config and its components; MLE needs a model with a known normaliser."""
        from harness.plugins import get_registry

        reject_boolean_numbers(DensityConfig, config)
        try:
            cfg = DensityConfig.model_validate(config).model_dump()
        except ValidationError as exc:
            raise validation_error(exc, config, SECTIONS, "the density_estimation task") from None
        check_components(cfg, check, (("model", "energy_models"),
                                      ("objective", "density_objectives")))
        registry = get_registry()
        model = registry.create("energy_models", cfg["model"], "model", dim=1)
        objective = registry.create("density_objectives", cfg["objective"], "objective")
        if objective.needs_normalizer and not model.known_normalizer:
            name = cfg["objective"] if isinstance(cfg["objective"], str) else \
                cfg["objective"].get("name")
            raise ConfigError("objective", name, "this objective needs the exact normaliser, "
                              "which the model does not know; use nce or compositional")
        return cfg

    def dataset_entry(self, options: dict, registry) -> dict:
        """A dataset entry takes only ``split`` (row fractions of val and test)."""
        from harness_plugins.classification.entries import DEFAULT_SPLIT, check_split

        split = dict(DEFAULT_SPLIT)
        for key, value in options.items():
            if key != "split":
                raise ConfigError(key, value, f"the density_estimation task applies no "
                                  f"dataset transform or option {key!r}; its dataset keys: "
                                  f"split, label")
            split = check_split(value)
        return {"split": split}

    def prepare(self, entry: dict, seed: int, ctx) -> DensityData:
        """Numeric rows of the source, split by ``seed``, standardised unless the truth is known."""
        raw = ctx.load_raw(entry)
        return split_rows(raw, entry.get("split") or {}, seed, entry.get("label", raw.name))

    def run(self, ctx) -> dict[str, float]:
        """Train, logging the convergence curve; evaluate on the test split."""
        import torch

        from harness.metrics import compute_metrics
        from harness_plugins.density.evaluation import (
            log_likelihood,
            make_noise,
            param_error,
            truth_log_density,
            truth_params,
        )

        cfg, data = ctx.config, ctx.data
        tr, ev = cfg["training"], cfg["evaluation"]
        torch.manual_seed(ctx.seeds["init"])
        model = ctx.create("energy_models", cfg["model"], dim=data.train.shape[1])
        objective = ctx.create("density_objectives", cfg["objective"])
        noise = make_noise(cfg["noise"]["kind"], cfg["noise"]["scale"], data.train)
        proposal = make_noise("fitted", ev["proposal_scale"], data.train)
        truth = truth_params(data.truth)
        params = list(model.parameters()) + list(objective.setup(model))
        errors: list[float] = []

        def curve(epoch: int, values: dict) -> None:
            gen = torch.Generator().manual_seed(ctx.seeds["split"])
            val = log_likelihood(model, data.val, proposal, ev["curve_samples"], gen)
            values["val/log_likelihood"] = float(val["logp"].mean())
            err = param_error(model.estimate(), truth)
            if err is not None:
                values["val/param_error"] = err
                errors.append(err)
            ctx.epoch_end(epoch, values)

        start = time.perf_counter()
        if objective.fit_closed_form(model, data.train):
            ctx.expect_epochs(1)
            curve(1, {})
        else:
            ctx.expect_epochs(tr["epochs"])
            if tr["optimizer"] == "adam":
                opt = torch.optim.Adam(params, lr=tr["lr"])
            else:
                opt = torch.optim.SGD(params, lr=tr["lr"], momentum=tr["momentum"])
            train_epochs(model, objective, opt, noise, data.train, tr, curve, ctx.seeds["order"])
        train_s = time.perf_counter() - start

        start = time.perf_counter()
        gen = torch.Generator().manual_seed(ctx.seeds["split"])
        test = log_likelihood(model, data.test, proposal, ev["is_samples"], gen)
        offered: dict[str, Any] = {"test_logp": test["logp"], "test_logp_se": test["se"],
                                   "log_z_se": test["log_z_se"]}
        if data.truth is not None:
            offered["true_logp"] = truth_log_density(data.truth, data.test)
        if param_error(model.estimate(), truth) is not None:
            offered |= {"estimate": model.estimate(), "truth_params": truth,
                        "param_error_curve": errors}
        out = compute_metrics(ctx.metrics(), offered)
        ctx.log_params({"evaluation.normaliser": "exact" if test["exact"] else "importance"})
        ctx.log_metrics({"time/train_s": train_s, "time/eval_s": time.perf_counter() - start,
                         "test/log_z": test["log_z"]})
        return out


def train_epochs(model, objective, opt, noise, train, tr: dict, curve, seed: int) -> None:
    """Mini-batch steps of ``objective`` (``tr``: the ``training`` section), the
    batch order and the noise drawn from ``seed``; ``curve(epoch, values)``
    after each epoch (``train/loss``, ``train/log_z``)."""
    import numpy as np
    import torch

    X = torch.as_tensor(np.asarray(train), dtype=torch.float32)
    order = torch.Generator().manual_seed(seed)
    draws = torch.Generator().manual_seed(seed + 1)
    n, bs = len(X), min(tr["batch_size"], len(X))
    for epoch in range(1, tr["epochs"] + 1):
        perm = torch.randperm(n, generator=order)
        total, steps = 0.0, 0
        for start in range(0, n - bs + 1, bs):  # full batches: equal noise per step
            x = X[perm[start:start + bs]]
            m = max(1, math.ceil(objective.noise_ratio * bs))
            y = noise.sample(m, draws) if objective.noise_ratio > 0 else x[:0]
            loss = objective.loss(model, x, y, noise)
            value = objective.value()
            if not (math.isfinite(float(loss.detach())) and math.isfinite(value)):
                raise Diverged(f"the objective became {value} at epoch {epoch}")
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + value, steps + 1
        values = {"train/loss": total / max(steps, 1)}
        log_z = objective.log_z()
        if log_z is not None:
            values["train/log_z"] = log_z
        curve(epoch, values)


def split_rows(raw, split: dict, seed: int, label: str) -> DensityData:
    """Shuffle the numeric rows by ``seed``; cut val and test fractions (at least one row each)."""
    import numpy as np

    X = raw.X
    if hasattr(X, "select_dtypes"):  # a DataFrame: its numeric columns
        X = X.select_dtypes("number").to_numpy(np.float64)
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or X.shape[1] == 0:
        raise UserError(f"dataset {label!r} has no numeric columns as a table of rows: the "
                        f"density_estimation task needs rows of numbers")
    X = X[~np.isnan(X).any(1)]
    n = len(X)
    n_val = max(1, round(split.get("val", 0.2) * n))
    n_test = max(1, round(split.get("test", 0.2) * n))
    if n - n_val - n_test < 2:
        raise UserError(f"dataset {label!r} has {n} complete rows: too few to split")
    order = np.random.default_rng(seed).permutation(n)
    test, val, train = (X[order[:n_test]], X[order[n_test:n_test + n_val]],
                        X[order[n_test + n_val:]])
    meta = raw.meta or {}
    truth = meta.get("truth")
    if meta.get("standardize", True):
        mean, std = train.mean(0), train.std(0)
        std = np.where(std > 0, std, 1.0)
        train, val, test = ((a - mean) / std for a in (train, val, test))
        truth = None  # a truth on the raw scale no longer describes these rows
    return DensityData(train, val, test, truth, label)


def density_estimation():
    """Unnormalized density models: MLE, NCE, compositional objective; error against the truth."""
    return DensityTask()

