"""The stacked trainer logs exactly what each run logs alone (float64, 1e-6),
per-run early stopping, divergence and hyperparameters included."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from harness.plugins import get_registry
from harness_plugins.classification.batched import (
    StackedLoss,
    component_reason,
    model_reason,
    train_group,
)
from harness_plugins.classification.task import ClassificationTask
from harness_plugins.classification.trainer import predict_logits, train_classifier

ENTRY = {"source": "sklearn", "params": {"name": "breast_cancer"}, "transforms": [],
         "split": {"val": 0.2, "test": 0.2}, "label": "bc"}


class Ctx:
    """The part of RunContext the trainers use; records what would be logged."""

    def __init__(self, config: dict, seed: int, data):
        self.registry = get_registry()
        self.config = ClassificationTask().validate(config, self.registry.check)
        self.seeds = {"init": 1000 + seed, "order": 2000 + seed, "split": seed}
        self.device = "cpu"
        self.data = data
        self.logged: list[tuple[int, dict]] = []

    def create(self, kind, spec, **offered):
        return self.registry.create(kind, spec, kind, **offered)

    def epoch_end(self, epoch, values, phase="train"):
        self.logged.append((epoch, dict(values)))


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


DIGITS = {**ENTRY, "params": {"name": "digits", "as_image": True}, "label": "digits"}
_DATA: dict = {}


def data64(seed: int, entry: dict = ENTRY):
    """``entry`` (breast_cancer) split by ``seed``, features in float64."""
    key = (entry["label"], seed)
    if key not in _DATA:
        from harness_plugins.classification.prepare import prepare_dataset

        d = prepare_dataset(entry, seed, registry=get_registry())
        _DATA[key] = dataclasses.replace(
            d, X_train=d.X_train.astype(np.float64), X_val=d.X_val.astype(np.float64),
            X_test=d.X_test.astype(np.float64))
    if entry is AUGMENTED:
        return Augmenting(_DATA[key])
    return _DATA[key]


class Augmenting:
    """Prepared data whose training batches get a seeded sign flip per row
    plus seeded noise (``augment``); records the batch sizes it was given."""

    def __init__(self, data):
        self.data, self.sizes = data, []

    def __getattr__(self, name):
        return getattr(self.data, name)

    def augment(self, x, generator):
        self.sizes.append(len(x))
        flip = torch.rand(len(x), 1, generator=generator, device=x.device) < 0.3
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return torch.where(flip, -x, x) + 0.5 * noise


AUGMENTED = {**ENTRY, "label": "bc-augmented"}


def config(optimizer, loss="cross_entropy", epochs=6, model=None, **training):
    return {"model": model or {"name": "mlp", "hidden": [16, 16]}, "loss": loss,
            "training": {"epochs": epochs, "batch_size": 32, "optimizer": optimizer,
                         **training}}


METRICS = ("accuracy", "log_loss")


def metrics():
    reg = get_registry()
    return {m: reg.create("metrics", m, m) for m in METRICS}


def alone(cfg, seed, entry=ENTRY):
    ctx = Ctx(cfg, seed, data64(seed, entry))
    try:
        model, _, result = train_classifier(ctx, ctx.config, ctx.data, metrics())
    except Exception as exc:  # noqa: BLE001 - compared with the batched outcome
        return ctx, exc
    return ctx, (model, result)


def together(cfgs_seeds, entry=ENTRY):
    ctxs = [Ctx(c, s, data64(s, entry)) for c, s in cfgs_seeds]
    out = train_group(ctxs, [c.data for c in ctxs], metrics())
    return ctxs, out


def assert_same(cfgs_seeds, entry=ENTRY):
    """Every logged value, the best epoch and the selected weights' test
    logits agree between the single and the stacked trainer."""
    ctxs, results = together(cfgs_seeds, entry)
    for (cfg, seed), ctx, result in zip(cfgs_seeds, ctxs, results):
        ref_ctx, ref = alone(cfg, seed, entry)
        assert [e for e, _ in ctx.logged] == [e for e, _ in ref_ctx.logged]
        for (_, got), (_, want) in zip(ctx.logged, ref_ctx.logged):
            assert got.keys() == want.keys()
            for k in want:
                assert got[k] == pytest.approx(want[k], abs=1e-6, rel=1e-6), k
        if isinstance(ref, BaseException):
            assert type(result) is type(ref) and str(result) == str(ref)
            continue
        model, info = result
        assert (info.best_epoch, info.epochs_run) == (ref[1].best_epoch, ref[1].epochs_run)
        Xt = torch.as_tensor(ctx.data.X_test)
        np.testing.assert_allclose(predict_logits(model, Xt).numpy(),
                                   predict_logits(ref[0], Xt).numpy(), atol=1e-6)
        for (k, b), (_, want) in zip(model.named_buffers(), ref[0].named_buffers()):
            torch.testing.assert_close(b, want, msg=k)
    return ctxs, results


def test_adam_cross_entropy_seeds_and_lrs(float64):
    runs = [(config({"name": "adam", "lr": lr}), seed)
            for seed in (0, 1) for lr in (1e-3, 1e-2)]
    ctxs, _ = assert_same(runs)
    assert all(len(c.logged) == 6 for c in ctxs)
    # the runs really differ: per-run data, order and lr
    assert len({c.logged[-1][1]["train/loss"] for c in ctxs}) == 4


def test_sgd_focal_per_run_gamma_weight_decay_and_schedule(float64):
    runs = [(config({"name": "sgd", "lr": lr, "momentum": 0.9, "nesterov": True,
                     "weight_decay": wd}, loss={"name": "focal", "gamma": gamma},
                    scheduler="cosine"), 0)
            for lr, wd, gamma in ((0.05, 0.0, 1.0), (0.02, 1e-3, 2.0), (0.05, 1e-2, 2.0))]
    assert_same(runs)


def test_adamw_and_plain_sgd_per_run_betas(float64):
    assert_same([(config({"name": "adamw", "lr": 3e-3, "betas": [0.8, 0.99],
                          "weight_decay": 0.1}, scheduler={"name": "step", "step_size": 2}), 2),
                 (config({"name": "adamw", "lr": 1e-3}), 3)])
    assert_same([(config({"name": "sgd", "lr": 0.1, "momentum": 0.0}), 0),
                 (config({"name": "sgd", "lr": 0.01, "momentum": 0.5}), 1)])


def test_early_stopping_is_per_run(float64):
    """Patience 1 on accuracy stops runs at different epochs; each logs only
    its own epochs and keeps its own best weights."""
    es = {"monitor": "val/accuracy", "patience": 1}
    runs = [(config({"name": "adam", "lr": lr}, epochs=12, early_stopping=es), seed)
            for seed, lr in ((0, 3e-2), (1, 1e-3), (2, 1e-2))]
    ctxs, _ = assert_same(runs)
    lengths = [len(c.logged) for c in ctxs]
    assert min(lengths) < 12 and len(set(lengths)) > 1


def test_one_diverged_run_does_not_stop_its_group(float64):
    runs = [(config({"name": "sgd", "lr": lr, "momentum": 0.9}), 0) for lr in (1e250, 0.01)]
    ctxs, results = assert_same(runs)
    from harness import Diverged

    assert isinstance(results[0], Diverged)
    assert not isinstance(results[1], BaseException) and len(ctxs[1].logged) == 6


def test_stacked_loss_per_row_gamma_matches_each_loss():
    """Focal with gamma 0 is cross-entropy; the stacked call gives each run
    the mean of its own loss."""
    reg = get_registry()
    losses = [reg.create("losses", {"name": "focal", "gamma": g}) for g in (0.0, 2.0, 2.0)]
    logits = torch.randn(3, 5, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (3, 5))
    got = StackedLoss(losses)(logits, y, 0)
    want = torch.stack([f(logits[r], y[r]) for r, f in enumerate(losses)])
    torch.testing.assert_close(got, want)
    ce = torch.nn.functional.cross_entropy(logits[0], y[0])
    torch.testing.assert_close(got[0], ce)


def test_stacked_loss_groups_runs_with_other_parameters():
    reg = get_registry()
    losses = [reg.create("losses", {"name": "cross_entropy", "label_smoothing": s})
              for s in (0.0, 0.1, 0.0)]
    stacked = StackedLoss(losses)
    assert sorted(m for m, _, _ in stacked.groups) == [[0, 2], [1]]
    logits, y = torch.randn(3, 4, 3, dtype=torch.float64), torch.randint(0, 3, (3, 4))
    want = torch.stack([f(logits[r], y[r]) for r, f in enumerate(losses)])
    torch.testing.assert_close(stacked(logits, y, 0), want)


def test_reasons_to_train_alone():
    reg = get_registry()
    assert component_reason("optimizers", "sam", reg.create("optimizers", "sam")) == \
        "scheme `sam` is not batchable"
    assert component_reason("optimizers", "adam", reg.create("optimizers", "adam")) is None
    assert component_reason("losses", "anyloss", reg.create("losses", "anyloss")) == \
        "loss `anyloss` is not batchable"
    mk = lambda **kw: reg.create("models", {"name": "mlp", **kw}, "models",  # noqa: E731
                                 in_shape=(4,), n_classes=2)
    assert model_reason(mk()) is None
    assert model_reason(mk(batchnorm=True)) is None  # its statistics are stacked
    assert "dropout" in model_reason(mk(dropout=0.5))


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_direct_mlp_is_the_vmapped_module(float64, activation):
    """The bmm path of plain MLPs computes what vmap(functional_call) does,
    and its backward writes the gradients autograd computes through the
    module, bit for bit; other models take the vmap path."""
    from torch.func import functional_call, vmap

    from harness_plugins.classification.batched import direct_mlp

    reg = get_registry()
    models = [reg.create("models", {"name": "mlp", "hidden": [5, 3], "activation": activation},
                         "models", in_shape=(2, 2), n_classes=3) for _ in range(4)]
    names = [k for k, _ in models[0].named_parameters()]
    ps = [torch.stack([dict(m.named_parameters())[k].detach() for m in models]) for k in names]
    x = torch.randn(4, 6, 2, 2)
    want = vmap(lambda p, xb: functional_call(models[0], dict(zip(names, p)), (xb,)))(ps, x)
    mlp = direct_mlp(models[0], names)
    torch.testing.assert_close(mlp(ps, x), want)
    for r, m in enumerate(models):
        torch.testing.assert_close(want[r], m(x[r]))

    leaves = [p.clone().requires_grad_() for p in ps]
    upstream = torch.randn(4, 6, 3)
    (mlp(leaves, x) * upstream).sum().backward()
    saved: list = []
    mlp(ps, x, saved)
    grads = [torch.full_like(p, float("nan")) for p in ps]  # every slice is written
    mlp.backward(ps, saved, upstream, grads)
    for name, leaf, got in zip(names, leaves, grads):
        assert torch.equal(got, leaf.grad), name

    cnn = reg.create("models", {"name": "cnn", "channels": [2]}, "models", in_shape=(1, 4, 4),
                     n_classes=2)
    assert direct_mlp(cnn, [k for k, _ in cnn.named_parameters()]) is None


@pytest.mark.parametrize("spec", [
    {"name": "sgd", "lr": 0.3, "momentum": 0.5, "nesterov": True, "weight_decay": 0.01},
    {"name": "sgd", "momentum": 0.0},
    {"name": "adam", "lr": 0.02, "betas": [0.8, 0.9], "weight_decay": 0.1},
    {"name": "adamw", "lr": 0.004, "weight_decay": 0.2}])
def test_declared_batch_form_is_the_built_optimizer(spec):
    """What batch mode reads without building an optimizer equals what the
    torch optimizer built by the same factory holds."""
    from harness_plugins.classification.batched_optim import kind_of, probe, signature

    build = get_registry().create("optimizers", spec)
    declared, _ = probe(build)
    real, _ = probe(build, real=True)
    assert kind_of(declared) == type(real).__name__ == kind_of(real)
    assert signature(declared) == signature(real)
    group = real.param_groups[0]
    for key, value in declared.param_groups[0].items():
        assert group[key] == (tuple(value) if isinstance(value, list) else value), key
    assert set(declared.param_groups[0]) >= {"lr", "weight_decay"}


@pytest.mark.parametrize("select_best", [True, False])
def test_batch_norm_statistics_are_per_run(float64, select_best):
    """The cnn (batch norm) on digits images: each run's running statistics
    evolve as alone, including after it stops early (masked runs keep theirs)."""
    es = {"monitor": "val/accuracy", "patience": 1}
    runs = [({"model": {"name": "cnn", "channels": [4], "hidden": 8}, "loss": "cross_entropy",
              "training": {"epochs": 5, "batch_size": 64, "select_best": select_best,
                           "early_stopping": es, "optimizer": {"name": "adam", "lr": lr}}}, seed)
            for seed, lr in ((0, 0.05), (1, 0.002), (2, 0.01))]
    ctxs, _ = assert_same(runs, DIGITS)
    # stopped at different epochs, with or without a kept best state
    assert len({len(c.logged) for c in ctxs}) > 1


def test_mlp_with_batch_norm(float64):
    assert_same([(config({"name": "sgd", "lr": lr}, model={"name": "mlp", "hidden": [8],
                                                            "batchnorm": True}), s)
                 for s, lr in ((0, 0.1), (1, 0.01))])


def test_training_batches_are_augmented_per_run_as_alone(float64):
    """Each run of a group augments its own training batches with its own
    stream, exactly as alone; validation batches are never augmented."""
    from harness_plugins.classification.trainer import validation_values

    runs = [(config({"name": "adam", "lr": lr}), seed)
            for seed, lr in ((0, 1e-2), (0, 3e-3), (1, 1e-2))]
    ctxs, results = assert_same(runs, AUGMENTED)
    plain, _ = together(runs)
    for ctx, base, (model, info) in zip(ctxs, plain, results):
        # augmentation changed the training
        assert ctx.logged[0][1]["train/loss"] != pytest.approx(base.logged[0][1]["train/loss"])
        # only training batches (of at most 32 rows), every train row once per epoch
        n = len(ctx.data.y_train)
        assert max(ctx.data.sizes) <= 32 and sum(ctx.data.sizes) == 6 * n
        # the logged validation is the selected model's on the raw validation rows
        want = validation_values(model, torch.as_tensor(ctx.data.X_val), ctx.data.y_val,
                                 metrics(), 8192)
        assert ctx.logged[info.best_epoch][1] == pytest.approx(
            {"train/loss": ctx.logged[info.best_epoch][1]["train/loss"], **want}, abs=1e-9)
