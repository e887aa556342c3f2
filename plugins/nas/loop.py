"""The search phase's loops: supernet training over the two halves of the
train split, fine-tuning, and the supernet's accuracy.

Supernet accuracy is measured with batch-norm in train mode (batch
statistics) under ``no_grad``: a selector's projections and masks change the
feature statistics, so the running averages gathered on the unmasked mix
would misjudge them.  Evaluation batches are large (``eval_batch_size``) so
the statistics are stable.  The running averages this touches are never used.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from harness import Diverged


def split_halves(n: int, seed: int):
    """(weight half, alpha half) index arrays: a seeded permutation of ``n``
    cut in two (DARTS's split of the train set)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def supernet_accuracy(net, X, y, eval_batch_size: int = 1024) -> float:
    """Accuracy of ``net`` on tensors ``X``, ``y`` (batch statistics, no grad)."""
    import torch

    net.train()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(X), eval_batch_size):
            correct += int((net(X[i:i + eval_batch_size]).argmax(1) == y[i:i + eval_batch_size])
                           .sum())
    return correct / max(len(X), 1)


def _batches(n: int, batch_size: int, generator):
    import torch

    order = torch.randperm(n, generator=generator)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def train_supernet(strategy, net, weight_data, alpha_data, epochs: int, batch_size: int,
                   generator, on_epoch: Callable[[int, float], None]) -> None:
    """``epochs`` epochs of ``strategy.step`` on paired batches of the weight
    and alpha halves (the shorter half is cycled); ``on_epoch(epoch,
    mean weight loss)`` after each.  A NaN/inf loss raises ``Diverged``."""
    Xw, yw = weight_data
    Xa, ya = alpha_data
    for epoch in range(epochs):
        net.train()
        w_batches = _batches(len(Xw), batch_size, generator)
        a_batches = _batches(len(Xa), batch_size, generator)
        total = 0.0
        for i, idx in enumerate(w_batches):
            jdx = a_batches[i % len(a_batches)]
            loss = strategy.step((Xw[idx], yw[idx]), (Xa[jdx], ya[jdx]))
            if not math.isfinite(loss):
                raise Diverged(f"supernet weight loss became {loss} at search epoch {epoch}")
            total += loss
        strategy.epoch_end(epoch)
        on_epoch(epoch, total / max(len(w_batches), 1))


def fine_tune(strategy, net, weight_data, epochs: int, batch_size: int, generator) -> None:
    """``epochs`` epochs of ``strategy.tune_step`` (weights only) on the weight half."""
    X, y = weight_data
    net.train()
    for epoch in range(epochs):
        for idx in _batches(len(X), batch_size, generator):
            loss = strategy.tune_step((X[idx], y[idx]))
            if not math.isfinite(loss):
                raise Diverged(f"supernet loss became {loss} while fine-tuning (epoch {epoch})")
