"""Metrics of the ``mi_estimation`` task: error against the true MI, and intervals.

Inputs (``MiEstimationTask.metric_inputs``): ``estimate`` and ``true_mi``
(nats); ``lower`` and ``upper`` only for runs with an interval (the
estimator's own or a bootstrap), so ``coverage`` and ``interval_width`` are
not computed for the others.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

import harness


@harness.metric(inputs=("estimate", "true_mi"), greater_is_better=False)
def abs_error():
    """|estimate - true MI| in nats."""
    return lambda est, true: abs(float(est) - float(true))


@harness.metric(inputs=("estimate", "true_mi"), greater_is_better=False)
def rel_error(floor: Annotated[float, Field(gt=0)] = 0.05):
    """|estimate - true MI| / max(true MI, floor): relative error, defined at MI = 0."""
    return lambda est, true: abs(float(est) - float(true)) / max(float(true), floor)


@harness.metric(inputs=("estimate", "true_mi"), greater_is_better=None)
def bias():
    """Signed error estimate - true MI (nats), 0 at best: shown, never ranked.

    Its mean over seeds is the estimator's bias."""
    return lambda est, true: float(est) - float(true)


@harness.metric(inputs=("lower", "upper", "true_mi"), greater_is_better=True)
def coverage():
    """1 when the interval holds the true MI, else 0 (its mean over runs is the coverage)."""
    return lambda lo, hi, true: float(lo <= float(true) <= hi)


@harness.metric(inputs=("lower", "upper"), greater_is_better=False)
def interval_width():
    """Width of the interval, nats."""
    return lambda lo, hi: float(hi) - float(lo)
