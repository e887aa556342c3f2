"""Per-run epoch bookkeeping (``classification.epochs``) against hand-worked
sequences: what is logged, which epoch is best, when patience runs out."""

from __future__ import annotations

import math

import pytest
import torch

from harness import ConfigError, Diverged
from harness_plugins.classification.epochs import (
    AUGMENT_SEED_OFFSET,
    RunEpochs,
    augment_generator,
    monitor_sign,
)


class Ctx:
    def __init__(self):
        self.logged: list[tuple[int, dict, str]] = []

    def epoch_end(self, epoch, values, phase="train"):
        self.logged.append((epoch, dict(values), phase))


def play(values: list[float], monitor="val/loss", sign=-1.0, patience=None, restart_at=None,
         select_best=True):
    """Feed ``values`` as the monitor's value of successive epochs until the
    run stops; return (the tracker, each epoch's improved flag)."""
    training = {"early_stopping": {"monitor": monitor, "patience": patience},
                "select_best": select_best}
    run = RunEpochs(Ctx(), training, sign)
    flags = []
    for epoch, v in enumerate(values):
        if epoch == restart_at:
            run.restart()
        flags.append(run.end_epoch(epoch, 0.5, {monitor: v}))
        if run.stopped:
            break
    return run, flags


def test_min_monitor_patience_runs_out_at_the_right_epoch():
    # best 0.8 at epoch 1; epochs 2 and 3 are no better: patience 2 ends at epoch 3
    run, flags = play([1.0, 0.8, 0.9, 0.85, 0.7, 0.6], patience=2)
    assert flags == [True, True, False, False]
    assert (run.best_epoch, run.epochs_run, run.stopped) == (1, 4, True)
    assert [e for e, _, _ in run.ctx.logged] == [0, 1, 2, 3]


def test_an_improvement_resets_the_wait():
    run, flags = play([1.0, 1.1, 0.9, 1.2, 1.3, 1.0], patience=2)
    assert flags == [True, False, True, False, False]
    assert (run.best_epoch, run.epochs_run) == (2, 5)


def test_max_monitor_and_ties_are_not_improvements():
    seq = [0.5, 0.7, 0.7, 0.6, 0.9]
    run, flags = play(seq, monitor="val/accuracy", sign=1.0, patience=3)
    assert flags == [True, True, False, False, True]
    assert (run.best_epoch, run.epochs_run, run.stopped) == (4, 5, False)
    # the same values as a loss: the first epoch is the best, patience 3 ends at epoch 3
    run, flags = play(seq, monitor="val/accuracy", sign=-1.0, patience=3)
    assert flags == [True, False, False, False]
    assert (run.best_epoch, run.epochs_run) == (0, 4)


def test_without_patience_the_run_never_stops():
    run, _ = play([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (run.best_epoch, run.epochs_run, run.stopped) == (0, 5, False)


def test_without_select_best_patience_still_stops():
    run, flags = play([1.0, 2.0, 3.0], patience=1, select_best=False)
    assert flags == [True, False] and run.stopped and not run.select_best


def test_a_non_finite_monitor_value_never_improves():
    run, flags = play([math.nan, 2.0, math.inf, 1.0], patience=5)
    # epoch 0 is the best so far only because it is the first
    assert flags == [True, True, False, True]
    assert run.best_epoch == 3


def test_restart_makes_the_next_epoch_the_best_whatever_its_score():
    run, flags = play([0.5, 0.4, 0.9, 0.95, 0.85], patience=2, restart_at=2)
    assert flags == [True, True, True, False, True]
    assert (run.best_epoch, run.stopped) == (4, False)
    # without the restart epoch 1 stays best and patience ends at epoch 3
    run, _ = play([0.5, 0.4, 0.9, 0.95, 0.85], patience=2)
    assert (run.best_epoch, run.epochs_run) == (1, 4)


def test_a_non_finite_train_loss_is_divergence_named_by_its_first_bad_value():
    RunEpochs.check_finite([0.3, 0.2], 0)
    with pytest.raises(Diverged, match=r"^train loss became inf at epoch 3$"):
        RunEpochs.check_finite([0.3, math.inf, math.nan], 3)
    with pytest.raises(Diverged, match=r"^train loss became nan at epoch 0$"):
        RunEpochs.check_finite(torch.tensor([0.1, math.nan]).tolist(), 0)


def test_logged_values_and_result():
    ctx = Ctx()
    run = RunEpochs(ctx, {"early_stopping": {"monitor": "val/loss"}}, -1.0, phase="evaluate")
    assert run.end_epoch(0, 0.75, {"val/loss": 0.5, "val/accuracy": 0.8},
                         {"teacher_accuracy": 0.9, "swa/loss": 0.4})
    assert ctx.logged == [(0, {"train/loss": 0.75, "val/loss": 0.5, "val/accuracy": 0.8,
                               "train/teacher_accuracy": 0.9, "swa/loss": 0.4}, "evaluate")]
    result = run.result(1.5)
    assert (result.best_epoch, result.train_s, result.epochs_run) == (0, 1.5, 1)
    assert result.history == [ctx.logged[0][1]]


def test_a_monitor_that_is_not_logged_is_a_config_error_after_logging():
    ctx = Ctx()
    run = RunEpochs(ctx, {"early_stopping": {"monitor": "val/f1"}}, 1.0)
    with pytest.raises(ConfigError) as err:
        run.end_epoch(0, 0.7, {"val/loss": 0.5})
    assert "training.early_stopping.monitor" in str(err.value) and "val/f1" in str(err.value)
    assert len(ctx.logged) == 1


def test_monitor_sign():
    class Lower:
        greater_is_better = False

    assert monitor_sign("val/loss", {}) == -1.0
    assert monitor_sign("val/accuracy", {"accuracy": object()}) == 1.0
    assert monitor_sign("val/ece", {"ece": Lower()}) == -1.0

    class Signed:
        greater_is_better = None

    with pytest.raises(ConfigError, match="no direction") as err:
        monitor_sign("val/bias", {"bias": Signed()})
    assert err.value.path == "training.early_stopping.monitor"


def test_augment_generator_is_its_own_stream_per_run():
    seeds = {"order": 7}
    a = torch.rand(4, generator=augment_generator(seeds, "cpu"))
    torch.testing.assert_close(a, torch.rand(4, generator=augment_generator(seeds, "cpu")))
    order = torch.rand(4, generator=torch.Generator().manual_seed(7))
    other = torch.rand(4, generator=augment_generator({"order": 8}, "cpu"))
    assert not torch.equal(a, order) and not torch.equal(a, other)
    # beyond every 31-bit run seed, within the 32 bits the CPU generator keeps
    assert 2**31 <= 7 + AUGMENT_SEED_OFFSET < 2**32
