"""Metrics of the inductive_bias task (inputs: its ``metric_inputs``)."""

from __future__ import annotations

from harness import metric


@metric(inputs=("bits",), greater_is_better=False)
def inductive_bias_bits():
    """-log2 P(test loss <= target) under the fitted loss distribution of the class."""
    return lambda value: float(value)


@metric(inputs=("bits_se",), greater_is_better=False)
def inductive_bias_bits_se():
    """Bootstrap standard error of inductive_bias_bits over the sampled hypotheses."""
    return lambda value: float(value)


@metric(inputs=("losses", "target"), greater_is_better=False)
def empirical_bits():
    """-log2 of the fraction of sampled hypotheses at or below the target (inf when none)."""
    import math

    import numpy as np

    def value(losses, target):
        frac = float(np.mean(np.asarray(losses) <= target))
        return -math.log2(frac) if frac > 0 else math.inf

    return value


@metric(inputs=("losses",), greater_is_better=False)
def hypothesis_loss():
    """Mean test loss (MSE on one-hot targets) of the sampled hypotheses."""
    import numpy as np

    return lambda losses: float(np.mean(losses))
