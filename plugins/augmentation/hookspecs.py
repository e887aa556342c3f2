"""The component kind of the augmentation family: generative ``augmenters``,
with its contract (declared through ``register_kinds``, as a third-party
family would).  A classification suite uses one as ``augment:``."""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_augmenters(register):
    """Register generative augmenters: fit on the train split, sample labelled rows.

    ``factory(**params)`` returns an object with:

    - ``fit(X, y, rng) -> self``: fit on the train split only (``X`` float32
      numpy ``(N, *in_shape)``, ``y`` int64 ``(N,)``, ``rng`` a
      ``numpy.random.Generator`` seeded from the run's init seed);
    - ``sample(n_per_class, rng) -> (X_gen, y_gen)``: ``n_per_class`` is a
      ``{class: count}`` dict or a total count (shared out in the train
      split's class proportions); ``X_gen`` float32 ``(n, *in_shape)``,
      ``y_gen`` int64;
    - ``ratio`` (generated rows per real train row, >= 0), ``mode``
      (``"fixed"``: one generated set appended to the train split;
      ``"per_batch"``: every batch holds the generated share
      ``ratio / (1 + ratio)``, drawn from that set) and ``min_per_class``
      (the fewest train rows of a class it can fit on);
    - ``device``: set by the mixing glue to the run's device before ``fit``
      (torch generators train there);
    - ``check_counts(counts, names)``: raise ``harness.UserError`` naming
      the first class with fewer than ``min_per_class`` rows.

    Base classes that provide all but the fitting and sampling:
    ``harness_plugins.augmentation.augmenters.Augmenter`` and
    ``LikelihoodAugmenter`` (adds ``instance_noise``).  A task mixes them in
    with ``harness_plugins.augmentation.mixing.augment_training(ctx, data,
    spec)``, which logs ``augment/fit_s``, ``augment/samples_per_s`` and
    the quality of the samples against the validation split
    (``augment/c2st``, ``augment/mmd``); generated rows never reach the
    validation or test split.
    """


@hookimpl
def register_kinds(register):
    """The augmentation family's kind: augmenters."""
    register("augmenters", register_augmenters)
