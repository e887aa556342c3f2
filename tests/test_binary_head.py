"""The binary losses' single-logit model (``logit_head = 1``) through the shared trainer:
the model is built with one output, metrics, calibrators and schemes still see two
classes; plus the trainer-side contracts of issue #13 (MESA's teacher metrics logged
per epoch, an overflowing loss ends the run as diverged)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import harness
from harness.plugins import get_registry
from harness_plugins.classification.models import mlp, spec_with_head
from harness_plugins.classification.task import ClassificationTask
from harness_plugins.classification.trainer import predict_logits, train_classifier

ENTRY = {"source": "sklearn", "params": {"name": "breast_cancer"}, "transforms": [],
         "split": {"val": 0.2, "test": 0.2}, "label": "bc"}
_DATA: dict = {}


def data():
    if not _DATA:
        from harness_plugins.classification.prepare import prepare_dataset

        _DATA["bc"] = prepare_dataset(ENTRY, 0, registry=get_registry())
    return _DATA["bc"]


class Ctx:
    """The part of RunContext the trainer uses; records the logged epochs."""

    def __init__(self, config: dict):
        self.registry = get_registry()
        self.config = ClassificationTask().validate(config, self.registry.check)
        self.seeds = {"init": 1, "order": 2, "split": 0}
        self.device = "cpu"
        self.data = data()
        self.logged: list[dict] = []

    def create(self, kind, spec, **offered):
        return self.registry.create(kind, spec, kind, **offered)

    def epoch_end(self, epoch, values, phase="train"):
        self.logged.append(dict(values))


def train(loss, model=None, optimizer=None, epochs=3):
    ctx = Ctx({"model": model or {"name": "mlp", "hidden": [16]}, "loss": loss,
               "training": {"epochs": epochs, "batch_size": 64,
                            "optimizer": optimizer or {"name": "adam", "lr": 1e-2}}})
    model, parts, result = train_classifier(ctx, ctx.config, ctx.data, {})
    return ctx, model, parts


def last_layer(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]


@pytest.mark.parametrize("loss, outputs", [("bce", 1), ("ensloss", 1), ("hinge", 1),
                                           ("cross_entropy", 2)])
def test_binary_losses_get_a_single_logit_model(loss, outputs):
    ctx, model, _ = train(loss)
    assert last_layer(model).out_features == outputs
    # evaluation sees two classes whatever the head: [0, f] -> [1 - sigmoid f, sigmoid f]
    X = torch.as_tensor(ctx.data.X_test)
    logits = predict_logits(model, X)
    assert logits.shape == (len(X), 2)
    probs = torch.softmax(logits.double(), 1)
    if outputs == 1:
        f = model.eval()(X)[:, 0].double()
        torch.testing.assert_close(probs[:, 1], torch.sigmoid(f))
    assert all(np.isfinite(v["val/loss"]) for v in ctx.logged)


def test_an_explicit_head_wins_and_a_head_that_does_not_fit_is_an_error():
    _, model, _ = train("bce", model={"name": "mlp", "hidden": [16], "head": 2})
    assert last_layer(model).out_features == 2
    with pytest.raises(harness.ConfigError, match="model.head = 1: the data has 3 classes"):
        mlp((4,), 3, head=1)


def test_spec_with_head_only_fills_an_unset_head_of_a_model_that_takes_one():
    reg = get_registry()
    bce, ce = harness.create("losses", "bce"), harness.create("losses", "cross_entropy")
    assert spec_with_head({"name": "mlp"}, bce, reg) == {"name": "mlp", "head": 1}
    assert spec_with_head({"name": "mlp", "head": 2}, bce, reg) == {"name": "mlp", "head": 2}
    assert spec_with_head({"name": "mlp"}, ce, reg) == {"name": "mlp"}


@pytest.mark.parametrize("scheme", [{"name": "saf", "e_start": 0, "e_tilde": 1},
                                    {"name": "mesa", "e_start": 0}])
def test_distilling_schemes_work_on_a_single_logit_model(scheme):
    _, model, parts = train("bce", optimizer={**scheme, "base": {"name": "sgd", "lr": 0.05}},
                            epochs=4)
    assert last_layer(model).out_features == 1
    assert float(parts.scheme.last_penalty) > 0  # the two-class KL term is active


def test_sharpness_of_a_single_logit_model():
    ctx, model, _ = train("bce")
    sharp = harness.create("metrics", {"name": "sharpness", "iters": 5, "n_samples": 64})
    value = sharp(model, torch.as_tensor(ctx.data.X_train), torch.as_tensor(ctx.data.y_train))
    assert np.isfinite(value) and value > 0


def test_mesa_teacher_accuracy_on_the_validation_split_is_logged_every_epoch():
    ctx, _, parts = train("cross_entropy", optimizer={
        "name": "mesa", "e_start": 0, "base": {"name": "sgd", "lr": 0.05}}, epochs=3)
    assert len(ctx.logged) == 3
    for values in ctx.logged:
        assert 0 <= values["train/teacher_val_accuracy"] <= 1
        assert values["train/teacher_decay"] == pytest.approx(1 - 1 / parts.steps_per_epoch)
    assert ctx.logged[-1]["train/teacher_val_accuracy"] > 0.8


def test_an_overflowing_exponential_loss_ends_the_run_as_diverged():
    # exp(-y f) overflows once a margin passes -88 (float32): the trainer's
    # non-finite check turns that into harness.Diverged ("diverged" status)
    with pytest.raises(harness.Diverged, match="train loss became (inf|nan)"):
        train("exponential", optimizer={"name": "sgd", "lr": 1e3, "momentum": 0.0}, epochs=5)


def test_useful_probe_epochs_count_in_the_training_time():
    ctx = Ctx({"model": {"name": "mlp", "hidden": [16]}, "loss": "cross_entropy",
               "training": {"epochs": 4, "batch_size": 64, "scheduler": "cosine",
                            "optimizer": {"name": "useful", "t_frac": 0.5,
                                          "base": {"name": "sgd", "lr": 0.05}}}})
    _, parts, result = train_classifier(ctx, ctx.config, ctx.data, {})
    assert parts.setup_s > 0 and result.train_s > parts.setup_s
    assert len(ctx.logged) == 4  # the full schedule after the 2-epoch probe
    assert ctx.logged[0]["train/useful_upsampled"] > 0
