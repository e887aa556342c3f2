"""The federated task's own metrics: rounds to a target accuracy, client
accuracy (mean and worst), bytes communicated (total and per round)."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from harness import metric

Target = Annotated[float, Field(gt=0, le=1)]


@metric(("round_accuracy",), greater_is_better=False)
def rounds_to_target(target: Target = 0.8):
    """First round whose global test accuracy reaches ``target``; rounds + 1 if none does.

    The censored value (rounds + 1) gives every run a value to rank."""

    def rounds(acc):
        for r, a in enumerate(acc, start=1):
            if not math.isnan(a) and a >= target:
                return float(r)
        return float(len(acc) + 1)

    return rounds


@metric(("client_accuracy",), greater_is_better=True)
def client_accuracy_mean():
    """Mean over clients of the global model's accuracy on each client's label mix."""
    return lambda acc: float(acc.mean())


@metric(("client_accuracy",), greater_is_better=True)
def client_accuracy_worst():
    """Worst client's accuracy of the global model (on its label mix)."""
    return lambda acc: float(acc.min())


@metric(("bytes_per_round",), greater_is_better=False)
def bytes_total():
    """Bytes communicated over all rounds (down and up, every sampled client)."""
    return lambda b: float(b.sum())


@metric(("bytes_per_round",), greater_is_better=False)
def bytes_per_round():
    """Mean bytes communicated per round."""
    return lambda b: float(b.mean())
