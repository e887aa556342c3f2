"""Mixing generated rows into training: only the train split grows, class
proportions follow it, bad specs stop at validation or with one line."""

from __future__ import annotations

import numpy as np
import pytest

from harness import ConfigError, UserError
from harness_plugins.augmentation import augmenters as A
from harness_plugins.augmentation.mixing import augment, check_augment, generated_counts
from harness_plugins.classification.prepare import PreparedData


def make_data(counts=(30, 20), d=4, seed=0, classes=("cat", "dog")):
    rng = np.random.default_rng(seed)

    def part(n_per_class):
        y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)]).astype(np.int64)
        X = (rng.normal(size=(len(y), d)) + 3 * y[:, None]).astype(np.float32)
        return X, y

    (Xt, yt), (Xv, yv), (Xs, ys) = part(counts), part((10, 10)), part((10, 10))
    return PreparedData("toy", Xt, yt, Xv, yv, Xs, ys, list(classes), (d,))


def test_generated_rows_only_reach_the_train_split():
    data = make_data()
    new, info = augment(A.gaussian_nb(ratio=2.0), data, seed=0)
    # validation and test are the very same objects, not copies
    assert new.X_val is data.X_val and new.y_val is data.y_val
    assert new.X_test is data.X_test and new.y_test is data.y_test
    n_real = len(data.y_train)
    assert np.array_equal(new.X_train[:n_real], data.X_train)
    generated = new.X_train[n_real:]
    assert len(generated) == info["n_generated"] == 100
    held_out = {row.tobytes() for row in np.concatenate([data.X_val, data.X_test])}
    assert not any(row.tobytes() in held_out for row in generated)
    assert new.meta["n_real_train"] == n_real and new.meta["n_generated"] == 100
    assert {"fit_s", "sample_s", "samples_per_s", "c2st", "mmd"} <= set(info)


def test_generated_class_proportions_follow_the_train_split():
    data = make_data(counts=(40, 10))
    new, _ = augment(A.gmm(ratio=1.5), data, seed=1)
    assert np.bincount(new.y_train[50:]).tolist() == [60, 15]
    assert generated_counts([40, 10, 0], 0.25) == {0: 10, 1: 2}


def test_ratio_zero_returns_the_data_untouched():
    data = make_data()
    new, info = augment(A.gaussian_nb(ratio=0.0), data, seed=0)
    assert new is data and info == {"n_generated": 0.0, "n_real": 50.0}


def test_same_seed_same_generated_rows_other_seed_others():
    data = make_data()
    a, _ = augment(A.gaussian_nb(), data, seed=3)
    b, _ = augment(A.gaussian_nb(), data, seed=3)
    c, _ = augment(A.gaussian_nb(), data, seed=4)
    assert np.array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)


def test_too_few_samples_names_the_class():
    data = make_data(counts=(30, 3), classes=("cat", "dog"))
    with pytest.raises(UserError, match="class 'dog' has 3 training sample.*at least 6"):
        augment(A.smote(k_neighbors=5), data, seed=0)


@pytest.mark.parametrize("spec, key", [
    ({"name": "gmm", "ratio": -0.5}, "augment.ratio"),
    ({"name": "gmm", "instance_noise": -1.0}, "augment.instance_noise"),
    ({"name": "gmm", "mode": "sometimes"}, "augment.mode"),
])
def test_check_augment_rejects_bad_values(spec, key):
    with pytest.raises(ConfigError) as err:
        check_augment(spec, "augment")
    assert err.value.path == key


def test_check_augment_accepts_defaults():
    check_augment({"name": "smote"}, "augment")
    check_augment({"name": "gmm", "ratio": 0.0, "mode": "fixed"}, "augment")
    check_augment({"name": "gmm", "ratio": 3.0, "mode": "per_batch"}, "augment")


def test_per_batch_order_puts_the_generated_fraction_in_every_batch():
    import torch

    from harness_plugins.augmentation.per_batch import PerBatchMix

    mix = PerBatchMix(lambda params: torch.optim.SGD(params, lr=0.1), n_real=10, ratio=3.0,
                      batch_size=8)
    mix.n_generated = 30
    order = mix.epoch_order(0, torch.Generator().manual_seed(0))
    # 8 / (1 + 3) = 2 real rows per batch, 6 generated: 5 batches of 8
    assert len(order) == 40
    batches = order.view(5, 8)
    assert ((batches < 10).sum(1) == 2).all()
    assert sorted(order[order < 10].tolist()) == list(range(10))
    assert ((order >= 10) & (order < 40)).sum() == 30


def test_per_batch_training_config_wraps_the_optimizer_only_for_per_batch():
    from harness_plugins.augmentation.mixing import training_config

    config = {"training": {"optimizer": {"name": "adam", "lr": 0.01}, "batch_size": 0.5}}
    assert training_config(config, {"mode": "fixed", "n_generated": 5}) is config
    wrapped = training_config(config, {"mode": "per_batch", "n_generated": 20.0,
                                       "n_real": 10.0, "ratio": 2.0})
    assert wrapped["training"]["optimizer"] == {
        "name": "augment_per_batch", "base": {"name": "adam", "lr": 0.01}, "n_real": 10,
        "ratio": 2.0, "batch_size": 15}
    assert config["training"]["optimizer"] == {"name": "adam", "lr": 0.01}


def test_per_batch_wrapper_is_built_by_the_training_context_not_the_registry():
    """The wrapper is internal: `harness list optimizers` does not offer it and
    a suite cannot name it; mode per_batch still trains with it."""
    from harness.plugins import get_registry
    from harness_plugins.augmentation.mixing import training_config, training_context
    from harness_plugins.augmentation.per_batch import PerBatchMix

    reg = get_registry()
    assert "augment_per_batch" not in reg.components("optimizers")
    with pytest.raises(ConfigError, match="unknown optimizer 'augment_per_batch'"):
        reg.check("optimizers", {"name": "augment_per_batch"}, "training.optimizer")

    class RunContext:  # what the trainer uses of a run's context
        registry = reg

        def create(self, kind, spec, **offered):
            return reg.create(kind, spec, kind, **offered)

    ctx = RunContext()
    info = {"mode": "per_batch", "n_generated": 20, "n_real": 10, "ratio": 2.0}
    config = training_config({"training": {"optimizer": {"name": "adam", "lr": 0.01},
                                           "batch_size": 0.5}}, info)
    assert training_context(ctx, {"mode": "fixed", "n_generated": 20}) is ctx
    train_ctx = training_context(ctx, info)
    mix = train_ctx.create("optimizers", config["training"]["optimizer"])
    assert isinstance(mix, PerBatchMix)
    assert (mix.n_real, mix.ratio, mix.batch_size) == (10, 2.0, 15)
    assert train_ctx.registry is reg  # everything else is the run's context


def test_generated_pixels_are_rounded_and_clipped_to_uint8():
    """A uint8 image source keeps its train split in uint8: a generator's
    float pixels are rounded and clipped, not truncated and wrapped."""
    from harness_plugins.augmentation.mixing import as_train_dtype

    gen = np.array([[-3.2, 0.4, 254.7, 300.0, 100.5, 101.5]])
    out = as_train_dtype(gen, np.uint8)
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 0, 255, 255, 100, 102]]  # rint: halves to even
    floats = as_train_dtype(gen, np.float32)
    assert floats.dtype == np.float32 and floats[0, 0] == np.float32(-3.2)


def test_uint8_train_split_gets_in_range_generated_rows():
    """End to end: a generator fit on uint8 pixels near 0 and 255 samples
    outside [0, 255]; the mixed train split holds those as 0 and 255."""
    data = make_data(d=4)
    rng = np.random.default_rng(1)
    X = np.where(rng.random(data.X_train.shape) < 0.5, 1, 254).astype(np.uint8)
    data = PreparedData("toy", X, data.y_train, data.X_val, data.y_val, data.X_test,
                        data.y_test, data.classes, data.in_shape)
    new, _ = augment(A.gaussian_nb(ratio=2.0), data, seed=0)
    generated = new.X_train[len(data.y_train):].astype(int)
    assert new.X_train.dtype == np.uint8
    # near 1 and 254 with a std of ~126, clipping is what keeps them in range:
    # a wrapped value would show as small/large values in the wrong place
    assert generated.min() == 0 and generated.max() == 255
    assert ((generated == 0) | (generated == 255)).mean() > 0.3
