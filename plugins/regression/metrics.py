"""Regression metrics on the original scale of the response: ``targets`` are
the individual test responses, ``predictions`` the model's."""

from __future__ import annotations

from harness import metric


def _arrays(targets, predictions):
    import numpy as np

    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    f = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if y.shape != f.shape:
        raise ValueError(f"{len(y)} targets but {len(f)} predictions")
    return y, f


@metric(inputs=("targets", "predictions"), greater_is_better=False)
def mse():
    """Mean squared error on individual test responses (the test risk), original scale."""

    def score(targets, predictions) -> float:
        y, f = _arrays(targets, predictions)
        return float(((y - f) ** 2).mean())

    return score


@metric(inputs=("targets", "predictions"), greater_is_better=False)
def mae():
    """Mean absolute error on individual test responses, original scale."""

    def score(targets, predictions) -> float:
        y, f = _arrays(targets, predictions)
        return float(abs(y - f).mean())

    return score


@metric(inputs=("targets", "predictions"), greater_is_better=True)
def r2():
    """Coefficient of determination R^2 = 1 - SSE / SST, SST about the test mean."""

    def score(targets, predictions) -> float:
        y, f = _arrays(targets, predictions)
        sst = float(((y - y.mean()) ** 2).sum())
        sse = float(((y - f) ** 2).sum())
        if sst == 0:
            return 1.0 if sse == 0 else 0.0
        return 1.0 - sse / sst

    return score
