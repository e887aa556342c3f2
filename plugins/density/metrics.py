"""Metrics of the density_estimation task (inputs: its ``metric_inputs``)."""

from __future__ import annotations

from harness import metric


@metric(inputs=("test_logp",), greater_is_better=True)
def log_likelihood():
    """Mean test log-likelihood (exact normaliser where known, else importance-sampled)."""
    import numpy as np

    return lambda logp: float(np.mean(logp))


@metric(inputs=("test_logp_se",), greater_is_better=False)
def log_likelihood_se():
    """Standard error of the mean test log-likelihood (log Z's and the rows' together)."""
    return lambda se: float(se)


@metric(inputs=("log_z_se",), greater_is_better=False)
def log_z_se():
    """Delta-method standard error of the importance-sampled log Z (0 when exact)."""
    return lambda se: float(se)


@metric(inputs=("test_logp", "true_logp"), greater_is_better=False)
def log_likelihood_gap():
    """True density's mean test log-likelihood minus the model's (estimates KL(truth||model))."""
    import numpy as np

    return lambda logp, true: float(np.mean(true) - np.mean(logp))


@metric(inputs=("estimate", "truth_params"), greater_is_better=False)
def param_error():
    """Euclidean distance of the model's parameters to the true ones (the Gaussian's mean)."""
    from harness_plugins.density.evaluation import param_error as distance

    return lambda est, truth: float(distance(est, truth))


@metric(inputs=("param_error_curve",), greater_is_better=False)
def param_error_auc():
    """Mean of the per-epoch parameter error: the area under the convergence curve per epoch."""
    import numpy as np

    return lambda curve: float(np.mean(curve))
