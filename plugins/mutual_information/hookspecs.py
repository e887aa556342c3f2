"""The component kind of the mutual-information estimation family,
``mi_estimators``, with its contract (declared through ``register_kinds``, as
a third-party family would).

The ``mi_estimation`` task feeds metrics ``estimate`` and ``true_mi`` (nats)
and, when the run has an interval, ``lower`` and ``upper``.
"""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_mi_estimators(register):
    """Register mutual-information estimators.  ``factory(**params)`` returns
    an object with

    - ``estimate(x, y, seed) -> float``: the estimate of I(X; Y) in nats from
      paired samples ``x`` ``(n, dx)`` and ``y`` ``(n, dy)`` (float64 numpy
      arrays); ``seed`` (int) seeds whatever the estimator draws (critic
      initialisation, batches), so equal inputs give equal estimates;
    - ``min_samples`` (int): the smallest ``n`` it accepts (KSG: k + 1);
      suite validation rejects a smaller ``n_samples``, naming it.

    Optional members:

    - ``interval(x, y, level, seed) -> (lower, upper)``: the estimator's own
      interval at coverage ``level`` (MIST's quantiles); without it the task
      bootstraps ``estimate`` when the suite asks for intervals;
    - ``setup(ctx) -> dict[str, float]``: work shared by the runs of a suite
      (MIST's meta-training, through ``harness.shared``), done once before
      ``estimate``; returns timings to log (``time/meta_train_s``).
    Construction must stay cheap (no torch import): the task builds the
    estimator at suite validation to read ``min_samples``."""


@hookimpl
def register_kinds(register):
    """The mutual-information family's kind: mi_estimators."""
    register("mi_estimators", register_mi_estimators)
