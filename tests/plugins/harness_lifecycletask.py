"""Fixture task for the run lifecycle: each run ends the way its config says.

``ending`` is one of ``finish``, ``fail`` (the method's error), ``input`` (a
``UserError``), ``diverge``, ``die`` (the training process exits: only under
a supervisor, ``--timeout``) and ``sleep`` (sleeps ``value`` seconds, for
timeouts).  The task has a batch mode: the runs of one dataset and ending
train as a group, so a single-run suite and a batched one can be compared
run by run (tests/test_lifecycle.py).
"""

from __future__ import annotations

import os
import time

from harness import ConfigError, Diverged, UserError, hookimpl, metric
from harness.data import RawDataset

ENDINGS = ("finish", "fail", "input", "diverge", "die", "sleep")


def constant(value: float = 1.0) -> RawDataset:
    """One number as a dataset."""
    import numpy as np

    return RawDataset("constant", np.array([value]), None)


def unreachable(name: str = "x") -> RawDataset:
    """A dataset that can never be fetched."""
    from harness.errors import DatasetUnavailable

    raise DatasetUnavailable(f"dataset {name} is unreachable")


@metric(inputs=("score",), greater_is_better=True)
def score():
    """The run's score, as the task computed it."""
    return lambda value: float(value)


class Lifecycle:
    """Ends each run as ``ending`` says."""

    metric_inputs = ("score",)

    def validate(self, config, check):
        """``ending`` (one of ENDINGS) and ``value`` (a number)."""
        ending = config.get("ending", "finish")
        if ending not in ENDINGS:
            raise ConfigError("ending", ending, f"one of {', '.join(ENDINGS)}")
        unknown = set(config) - {"ending", "value"}
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(key, config[key], "unknown key; keys: ending, value")
        return {"ending": ending, "value": float(config.get("value", 1.0))}

    def _one(self, ctx):
        from harness.metrics import compute_metrics

        base = float(ctx.data.X[0])
        ending, value = ctx.config["ending"], ctx.config["value"]
        for epoch in range(2):
            ctx.epoch_end(epoch, {"train/loss": value / (epoch + 1)})
        if ending == "fail":
            raise RuntimeError("the method broke")
        if ending == "input":
            raise UserError("the data does not suit this method")
        if ending == "diverge":
            raise Diverged("loss became NaN at epoch 2")
        if ending == "die":
            os._exit(3)
        if ending == "sleep":
            time.sleep(value)
        return compute_metrics(ctx.metrics(), {"score": base + value + ctx.spec.seed})

    def run(self, ctx):
        """One run."""
        return self._one(ctx)

    def batch_key(self, spec):
        """Runs of one dataset and ending train together."""
        return f"{spec.dataset_label}:{spec.config['ending']}", ""

    def run_group(self, ctxs):
        """Each run of the group, its exception returned, not raised."""
        out = []
        for ctx in ctxs:
            try:
                out.append(self._one(ctx))
            except Exception as exc:  # noqa: BLE001 - the run's own ending
                out.append(exc)
        return out


@hookimpl
def register_tasks(register):
    register("lifecycle", Lifecycle)


@hookimpl
def register_datasets(register):
    register("constant", constant)
    register("unreachable", unreachable)


@hookimpl
def register_metrics(register):
    register("score", score)
