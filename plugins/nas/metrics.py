"""Metrics of the ``nas`` task against the ground truth of a small space.

The task offers the inputs ``regret`` and ``arch_rank`` when it knows the
ground truth (``tiny``); on other spaces these metrics are not computed.
"""

from __future__ import annotations

import harness
from harness import hookimpl


@harness.metric(inputs=("regret",), greater_is_better=False)
def regret():
    """NAS regret: best test accuracy in the space minus the selected architecture's."""
    return lambda value: float(value)


@harness.metric(inputs=("arch_rank",), greater_is_better=False)
def arch_rank():
    """Rank of the selected architecture among all of the space by test accuracy (1 = best)."""
    return lambda value: float(value)


@hookimpl
def register_metrics(register):
    register("regret", regret)
    register("arch_rank", arch_rank)
