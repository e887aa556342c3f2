"""Task ``mi_estimation``: estimate I(X; Y) from a sample of a distribution whose MI is known.

One run draws ``n_samples`` (x, y) rows from the dataset's distribution
(sources ``mi_gaussian``, ``mi_student``, ``mi_mixture``) with the run's
split seed (every estimator of a seed sees the same sample; a smaller
``n_samples`` gets a prefix of the same stream of draws), asks the estimator
(``estimator``, kind ``mi_estimators``) for its estimate, and scores it
against the distribution's MI.  Intervals at coverage ``interval.level``:
the estimator's own when it has one (MIST's quantiles), else a percentile
bootstrap of ``interval.bootstrap`` resamples (0: none).

Metric inputs: ``estimate``, ``true_mi`` and, with an interval, ``lower``,
``upper`` (nats).  Every run also logs ``test/estimate``, ``test/true_mi``
(and ``test/lower``, ``test/upper``), ``time/estimate_s`` (the estimate
alone; also ``time/train_s``, the leaderboard's time column),
``time/interval_s`` and, for an estimator with a shared set-up (MIST),
what its ``setup`` returns (``time/meta_train_s``, 0 when reused).
"""

from __future__ import annotations

import math
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import ConfigError
from harness.params import check_components, reject_boolean_numbers

Spec = str | dict[str, Any]


class Interval(BaseModel):
    """``interval:``: coverage level, and bootstrap resamples for estimators without one."""

    model_config = ConfigDict(extra="forbid")
    level: float = Field(default=0.9, gt=0, lt=1)
    bootstrap: int = Field(default=0, ge=0, le=10_000)


class MiConfig(BaseModel):
    """The method config of the ``mi_estimation`` task."""

    model_config = ConfigDict(extra="forbid")
    estimator: Spec = "ksg"
    n_samples: int = Field(default=1000, ge=2, le=10_000_000)
    interval: Interval = Interval()


def bootstrap_interval(estimator, x, y, level: float, resamples: int, seed: int):
    """Percentile bootstrap interval of ``estimator.estimate`` (rows drawn
    with replacement; KSG then sees exact duplicates, which biases it up:
    one reason the MIST paper finds bootstrap intervals unreliable)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    values = []
    for b in range(resamples):
        idx = rng.integers(0, len(x), len(x))
        values.append(estimator.estimate(x[idx], y[idx], seed + b + 1))
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


class MiEstimationTask:
    """Estimate the MI of a sample; error, bias and interval coverage against the true MI."""

    metric_inputs = ("estimate", "true_mi", "lower", "upper")
    cost_keys = ("estimator", "n_samples", "interval")

    def validate(self, config: dict, check) -> dict:
        """Check the config and the estimator; reject ``n_samples`` below what
        the estimator needs (KSG: k + 1)."""
        import harness
        from harness_plugins.classification.task import config_error

        reject_boolean_numbers(MiConfig, config)
        try:
            cfg = MiConfig.model_validate(config).model_dump()
        except ValidationError as exc:
            raise config_error(exc, config, MiConfig) from None
        check_components(cfg, check, (("estimator", "mi_estimators"),))
        try:
            estimator = harness.create("mi_estimators", cfg["estimator"])
        except ValueError as exc:
            raise ConfigError("estimator", cfg["estimator"], str(exc)) from None
        need = int(getattr(estimator, "min_samples", 2))
        if cfg["n_samples"] < need:
            spec = cfg["estimator"]
            params = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
            raise ConfigError("n_samples", cfg["n_samples"],
                              f"estimator {spec['name']!r} ({params or 'defaults'}) needs at "
                              f"least {need} samples")
        return cfg

    def dataset_entry(self, options: dict, registry) -> dict:
        """A dataset entry is a distribution and takes no option: any key is an error."""
        for key, value in options.items():
            raise ConfigError(key, value, f"the mi_estimation task takes no dataset option "
                              f"{key!r}: an entry is a distribution source (mi_gaussian, "
                              f"mi_student, mi_mixture) and an optional label; the sample "
                              f"size is the method key n_samples")
        return {}

    def prepare(self, entry: dict, seed: int, ctx):
        """The entry's distribution (``PairDistribution``)."""
        return ctx.load_raw(entry).X

    def run(self, ctx) -> dict[str, float]:
        """Draw the sample, estimate, score; return the test metrics."""
        import numpy as np

        from harness import Diverged
        from harness.metrics import compute_metrics

        cfg, dist = ctx.config, ctx.data
        x, y = dist.sample(cfg["n_samples"], np.random.default_rng(ctx.seeds["split"]))
        estimator = ctx.create("mi_estimators", cfg["estimator"])
        logged: dict[str, float] = {}
        if hasattr(estimator, "setup"):
            logged.update(estimator.setup(ctx) or {})
        seed = int(ctx.seeds["init"]) % 2**31
        start = time.perf_counter()
        value = float(estimator.estimate(x, y, seed))
        logged["time/estimate_s"] = logged["time/train_s"] = time.perf_counter() - start
        if not math.isfinite(value):
            raise Diverged(f"the estimate is {value}")
        offered: dict[str, float] = {"estimate": value, "true_mi": dist.true_mi}
        level, resamples = cfg["interval"]["level"], cfg["interval"]["bootstrap"]
        start = time.perf_counter()
        if hasattr(estimator, "interval"):
            offered["lower"], offered["upper"] = estimator.interval(x, y, level, seed)
        elif resamples:
            offered["lower"], offered["upper"] = bootstrap_interval(estimator, x, y, level,
                                                                    resamples, seed)
        logged["time/interval_s"] = time.perf_counter() - start
        ctx.log_metrics(logged)
        out = compute_metrics(ctx.metrics(), offered)
        out.update(offered)
        if dist.true_mi_se:
            out["true_mi_se"] = dist.true_mi_se
        return out


def mi_estimation():
    """Mutual-information estimation against distributions with known MI (error, bias, coverage)."""
    return MiEstimationTask()
