"""Per-run epoch bookkeeping, shared by the single-run and the batched trainer.

One :class:`RunEpochs` per run decides, from what each epoch produced, what
that run logs and whether it goes on:

- divergence: a non-finite train loss ends the run with ``harness.Diverged``
  (the single trainer checks every step as it gets it, the batched trainer
  each run's steps once per epoch; the message names the first bad value);
- logging: ``train/loss``, the validation values and a scheme's own
  diagnostics as ``ctx.epoch_end(epoch, values, phase)``;
- best epoch and early stopping: the ``training.early_stopping.monitor``
  value times its sign ranks epochs; the first epoch (and the first after a
  scheme's restart) is the best so far, then only a strictly better one;
  ``patience`` epochs without improvement stop the run, with or without
  ``select_best``.

Which weights to keep is the caller's (a ``state_dict`` copy alone, a masked
copy of the stacked tensor in a group): it keeps the improved epoch's state
when ``select_best``, else the last trained one.

Runs may augment their training batches (``augment(x, generator)`` on the
prepared data): :func:`augment_generator` is each run's own stream for that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness import ConfigError, Diverged

#: Added to a run's ``order`` seed (31 bits, ``harness.plan.derive_seed``) to
#: seed its augmentation stream: bit 31 set, so it is never the batch-order
#: stream of this or any run, within the 32 bits torch's CPU generator keeps.
AUGMENT_SEED_OFFSET = 1 << 31


@dataclass
class FitResult:
    """How training went: the selected epoch, seconds, epochs run."""

    best_epoch: int
    train_s: float
    epochs_run: int
    history: list[dict] = field(default_factory=list)


def monitor_sign(monitor: str, metric_fns: dict) -> float:
    """+1 when a larger ``monitor`` value is better, -1 otherwise; a metric
    without a direction (``greater_is_better=None``) is a ``ConfigError``."""
    if monitor.endswith("/loss"):
        return -1.0
    fn = metric_fns.get(monitor.split("/", 1)[-1])
    better = getattr(fn, "greater_is_better", True)
    if better is None:
        from harness import ConfigError

        raise ConfigError("training.early_stopping.monitor", monitor,
                          "this metric has no direction (neither higher nor lower is better); "
                          "monitor val/loss or a metric with one")
    return 1.0 if better else -1.0


def augment_generator(seeds: dict, device) -> Any:
    """A run's generator for training-batch augmentation, on ``device``,
    seeded from its ``order`` seed and :data:`AUGMENT_SEED_OFFSET`."""
    import torch

    gen = torch.Generator(device=device)
    return gen.manual_seed(seeds["order"] + AUGMENT_SEED_OFFSET)


class RunEpochs:
    """One run's early stopping, best epoch, divergence and per-epoch logging.

    ``training`` is the run's ``training`` config (``early_stopping``,
    ``select_best``); ``sign`` is +1 when a larger monitor value is better
    (:func:`monitor_sign`)."""

    def __init__(self, ctx, training: dict, sign: float, phase: str = "train"):
        es = training.get("early_stopping") or {}
        self.ctx, self.phase, self.sign = ctx, phase, sign
        self.monitor: str = es.get("monitor", "val/loss")
        self.patience: int | None = es.get("patience")
        self.select_best: bool = training.get("select_best", True)
        self.best, self.best_epoch, self.waited = -math.inf, -1, 0
        self.fresh = True  # no epoch to compare with yet (start, or a scheme's restart)
        self.stopped = False  # patience ran out
        self.epochs_run = 0
        self.history: list[dict] = []
        # a long run's progress line shows the time left (fakes in tests have no such method)
        expect = getattr(ctx, "expect_epochs", None)
        if expect is not None and training.get("epochs"):
            expect(int(training["epochs"]), phase)

    @staticmethod
    def check_finite(losses, epoch: int) -> None:
        """Raise ``harness.Diverged`` at the first non-finite value of
        ``losses`` (one epoch's train losses, in step order)."""
        for value in losses:
            if not math.isfinite(value):
                raise Diverged(f"train loss became {value} at epoch {epoch}")

    def restart(self) -> None:
        """The scheme restarted training (USEFUL): earlier epochs belong to
        another model, so the next epoch is the best so far whatever its score."""
        self.best, self.waited, self.fresh = -math.inf, 0, True

    def end_epoch(self, epoch: int, train_loss: float, val: dict[str, float],
                  extra: dict[str, float] | None = None) -> bool:
        """Log ``epoch`` (``train/loss``, ``val``, then ``extra`` with names
        without a ``/`` put under ``train/``) and rank it; True when it is
        the best epoch so far.  Sets :attr:`stopped` when ``patience``
        epochs passed without improvement; raises ``ConfigError`` when the
        monitor is not among the logged values."""
        values = {"train/loss": train_loss, **val}
        if extra:
            values.update({k if "/" in k else f"train/{k}": v for k, v in extra.items()})
        self.ctx.epoch_end(epoch, values, self.phase)
        self.history.append(values)
        self.epochs_run = epoch + 1
        current = values.get(self.monitor)
        if current is None:
            raise ConfigError("training.early_stopping.monitor", self.monitor,
                              f"not a logged quantity; logged: {', '.join(values)}")
        score = self.sign * current if math.isfinite(current) else -math.inf
        if score > self.best or self.fresh:
            self.best, self.best_epoch, self.waited, self.fresh = score, epoch, 0, False
            return True
        self.waited += 1
        if self.patience and self.waited >= self.patience:
            self.stopped = True
        return False

    def result(self, train_s: float) -> FitResult:
        """The run's :class:`FitResult`."""
        return FitResult(self.best_epoch, train_s, self.epochs_run, self.history)
