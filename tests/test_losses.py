"""Tests of harness_plugins.classification.losses (cross-entropy, focal, binary margin losses)
and of what every built-in loss shares: registration, gradients, training."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import harness

OURS = {"losses", "losses_robust", "losses_metric"}
BINARY = {"anyloss", "ensloss", "bce", "hinge", "exponential"}
EXPECTED = BINARY | {"cross_entropy", "focal", "comp_sum", "gce", "mae", "z_loss", "ldr_kl",
                     "aldr_kl", "kl_dro"}
BUILTIN = sorted(n for n, i in harness.components("losses").items() if i.plugin in OURS)

LOGITS3 = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
TARGETS3 = np.array([0, 2, 0, 1])
LOGITS2 = np.array([[0.3, -0.2], [1.0, 2.5], [-0.5, 0.5], [2.0, 0.0], [0.0, 0.1]])
TARGETS2 = np.array([0, 1, 0, 1, 1])




def np_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def t(a, dtype=torch.float64, grad=False):
    return torch.tensor(a, dtype=dtype, requires_grad=grad)


def tl(a):
    return torch.tensor(a, dtype=torch.long)


def margins(logits, targets):
    return (2 * targets - 1) * (logits[:, 1] - logits[:, 0])


# -- registration ---------------------------------------------------------------


def test_every_loss_is_listed_with_a_description():
    infos = harness.components("losses")
    assert EXPECTED <= set(infos)
    for name in EXPECTED:
        assert infos[name].plugin in OURS
        desc = infos[name].description
        assert desc and "(" in desc and ")" in desc, (name, desc)  # cites a paper


def test_binary_flag_matches_the_binary_set():
    assert {n for n in EXPECTED if harness.create("losses", n).binary} == BINARY


# -- cross-entropy ----------------------------------------------------------------


def test_cross_entropy_hand_value():
    expected = -np_log_softmax(LOGITS3)[np.arange(4), TARGETS3].mean()
    got = harness.create("losses", "cross_entropy")(t(LOGITS3), tl(TARGETS3), epoch=0)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_label_smoothing_matches_torch_and_hand():
    eps = 0.2
    loss = harness.create("losses", {"name": "cross_entropy", "label_smoothing": eps})
    got = loss(t(LOGITS3), tl(TARGETS3))
    ref = F.cross_entropy(t(LOGITS3), tl(TARGETS3), label_smoothing=eps)
    assert got.item() == pytest.approx(ref.item(), rel=1e-12)
    lp = np_log_softmax(LOGITS3)
    k = LOGITS3.shape[1]
    hand = (-(1 - eps) * lp[np.arange(4), TARGETS3] - eps / k * lp.sum(axis=1)).mean()
    assert got.item() == pytest.approx(hand, rel=1e-12)


def test_cross_entropy_balanced_class_weights():
    counts = [6, 3, 1]
    loss = harness.create("losses", {"name": "cross_entropy", "class_weight": "balanced"})
    with pytest.raises(ValueError, match="setup"):
        loss(t(LOGITS3), tl(TARGETS3))
    loss.setup(3, counts, 10)
    w = np.array([10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)])
    nll = -np_log_softmax(LOGITS3)[np.arange(4), TARGETS3]
    expected = (w[TARGETS3] * nll).mean()
    assert loss(t(LOGITS3), tl(TARGETS3)).item() == pytest.approx(expected, rel=1e-12)
    # Balanced weights average to 1 over the train split.
    assert float(np.dot(w, counts)) == pytest.approx(10.0)


def test_cross_entropy_list_weights_and_wrong_length():
    loss = harness.create("losses", {"name": "cross_entropy", "class_weight": [1.0, 2.0, 0.5]})
    nll = -np_log_softmax(LOGITS3)[np.arange(4), TARGETS3]
    expected = (np.array([1.0, 2.0, 0.5])[TARGETS3] * nll).mean()
    assert loss(t(LOGITS3), tl(TARGETS3)).item() == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="class_weight has 3 entries"):
        loss.setup(2, [5, 5], 10)


def test_cross_entropy_bad_config_is_rejected():
    with pytest.raises(harness.ConfigError):
        harness.create("losses", {"name": "cross_entropy", "class_weight": "inverse"})
    with pytest.raises(harness.ConfigError):
        harness.create("losses", {"name": "cross_entropy", "smoothing": 0.1})


# -- focal --------------------------------------------------------------------------


def test_focal_hand_value():
    lp = np_log_softmax(LOGITS3)[np.arange(4), TARGETS3]
    expected = (-((1 - np.exp(lp)) ** 2) * lp).mean()
    got = harness.create("losses", "focal")(t(LOGITS3), tl(TARGETS3))
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_focal_gamma_zero_is_cross_entropy():
    focal = harness.create("losses", {"name": "focal", "gamma": 0.0})
    ce = harness.create("losses", "cross_entropy")
    x, y = t(LOGITS3), tl(TARGETS3)
    assert focal(x, y).item() == pytest.approx(ce(x, y).item(), rel=1e-12)


def test_focal_alpha_binary_hand_value_and_multiclass_refusal():
    loss = harness.create("losses", {"name": "focal", "gamma": 1.0, "alpha": 0.25})
    lp = np_log_softmax(LOGITS2)[np.arange(5), TARGETS2]
    alpha_t = np.where(TARGETS2 == 1, 0.25, 0.75)
    expected = (-alpha_t * (1 - np.exp(lp)) * lp).mean()
    assert loss(t(LOGITS2), tl(TARGETS2)).item() == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="alpha"):
        loss.setup(3, [1, 1, 1], 3)


@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9])
def test_focal_gamma_below_one_has_a_finite_gradient_when_p_rounds_to_one(gamma):
    # a logit gap of 100 makes log p_y exactly 0 in float32: (1 - p)^gamma then
    # has an infinite derivative, which used to turn into a nan gradient
    x = torch.tensor([[100.0, 0.0, 0.0], [0.0, 100.0, 0.0]], requires_grad=True)
    loss = harness.create("losses", {"name": "focal", "gamma": gamma})
    value = loss(x, tl([0, 0]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()
    # the confident right sample contributes nothing; the wrong one is pushed
    assert x.grad[0].abs().max() == 0
    assert x.grad[1, 0] < 0


def test_focal_down_weights_easy_examples():
    x, y = t([[5.0, 0.0], [0.2, 0.0]]), tl([0, 0])
    ce = harness.create("losses", "cross_entropy").per_sample(x, y)
    fl = harness.create("losses", "focal").per_sample(x, y)
    ratio = (fl / ce).numpy()
    assert ratio[0] < 1e-4 < ratio[1] < 1


# -- binary margin losses -------------------------------------------------------------


@pytest.mark.parametrize("name, fn", [
    ("bce", lambda m: np.log1p(np.exp(-m))),
    ("hinge", lambda m: np.maximum(0.0, 1 - m)),
    ("exponential", lambda m: np.exp(-m)),
])
def test_binary_margin_hand_values(name, fn):
    expected = fn(margins(LOGITS2, TARGETS2)).mean()
    got = harness.create("losses", name)(t(LOGITS2), tl(TARGETS2), index=tl(range(5)), epoch=3)
    assert got.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_losses_ask_for_a_single_logit_head_and_accept_it(name):
    loss = harness.create("losses", name)
    assert loss.logit_head == 1
    f = LOGITS2[:, 1:] - LOGITS2[:, :1]  # the 2-logit model's margin as a 1-logit output
    torch.manual_seed(0)
    one = loss(t(f), tl(TARGETS2), index=tl(range(5)), epoch=0)
    torch.manual_seed(0)
    two = loss(t(LOGITS2), tl(TARGETS2), index=tl(range(5)), epoch=0)
    assert one.item() == pytest.approx(two.item(), rel=1e-12)


def test_multiclass_losses_keep_the_n_classes_head():
    for name in sorted(EXPECTED - BINARY):
        assert getattr(harness.create("losses", name), "logit_head", None) is None, name


def test_a_single_logit_gets_half_the_margin_step_of_two_logits():
    # why the papers' head matters: one SGD step on the last layer moves the
    # 2-logit margin l1 - l0 twice as far as the single logit
    torch.manual_seed(0)
    h = torch.randn(8, 4)
    y = (torch.arange(8) % 2)
    bce = harness.create("losses", "bce")
    one = torch.nn.Linear(4, 1)
    two = torch.nn.Linear(4, 2)
    with torch.no_grad():
        two.weight.zero_()
        two.bias.zero_()
        one.weight.zero_()
        one.bias.zero_()
    moved = []
    for model in (one, two):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        bce(model(h), y).backward()
        opt.step()
        with torch.no_grad():
            out = model(h)
            moved.append(out[:, 0] if out.shape[1] == 1 else out[:, 1] - out[:, 0])
    torch.testing.assert_close(moved[1], 2 * moved[0])


def test_two_class_logits_gives_sigmoid_probabilities():
    from harness_plugins.classification.losses import two_class_logits

    f = t([[0.0], [2.0], [-3.0]])
    probs = torch.softmax(two_class_logits(f), dim=1)
    expected = torch.sigmoid(f[:, 0])
    torch.testing.assert_close(probs[:, 1], expected)
    torch.testing.assert_close(probs.sum(1), torch.ones(3, dtype=torch.float64))
    two = t(LOGITS2)
    assert two_class_logits(two) is two


def test_exponential_overflows_to_inf_and_says_the_run_diverges():
    # exp(-y f) is inf once y f < -88.7 in float32; the training loop turns the
    # non-finite loss into a ``diverged`` run, and the docs say so
    x = torch.tensor([[0.0, -100.0]])
    assert torch.isinf(harness.create("losses", "exponential")(x, tl([1])))
    assert "diverged" in harness.components("losses")["exponential"].description


def test_bce_equals_two_class_cross_entropy():
    x, y = t(LOGITS2), tl(TARGETS2)
    bce = harness.create("losses", "bce")(x, y)
    assert bce.item() == pytest.approx(F.cross_entropy(x, y).item(), rel=1e-12)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_losses_refuse_three_classes(name):
    loss = harness.create("losses", name)
    msg = (f"loss '{name}' is binary: it needs 2 classes, the data has 3; "
           f"use a one_vs_rest transform on the dataset")
    with pytest.raises(ValueError) as err:
        loss.setup(3, [2, 1, 1], 4)
    assert str(err.value) == msg
    with pytest.raises(ValueError) as err:
        loss(t(LOGITS3), tl(TARGETS3))
    assert str(err.value) == msg
    loss.setup(2, [2, 3], 5)  # two classes are fine


# -- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [
    "cross_entropy",
    {"name": "cross_entropy", "label_smoothing": 0.1, "class_weight": [1.0, 2.0, 0.5]},
    "focal",
    {"name": "focal", "gamma": 0.5},
])
def test_gradcheck_multiclass(spec):
    loss = harness.create("losses", spec)
    x = t(LOGITS3, grad=True)
    assert torch.autograd.gradcheck(lambda z: loss(z, tl(TARGETS3)), (x,))


@pytest.mark.parametrize("spec", ["bce", "exponential", {"name": "focal", "alpha": 0.3}])
def test_gradcheck_binary(spec):
    loss = harness.create("losses", spec)
    x = t(LOGITS2, grad=True)
    assert torch.autograd.gradcheck(lambda z: loss(z, tl(TARGETS2)), (x,))


@pytest.mark.parametrize("name", BUILTIN)
def test_gradients_finite_and_nonzero(name):
    k = 2 if name in BINARY else 3
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, k, generator=gen, requires_grad=True)
    y = torch.randint(0, k, (32,), generator=gen)
    loss = harness.create("losses", name)
    loss.setup(k, torch.bincount(y, minlength=k).tolist(), 32)
    value = loss(x, y, index=torch.arange(32), epoch=0)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 1e-6


@pytest.mark.parametrize("name", sorted(EXPECTED - {"anyloss", "ensloss"}))
def test_per_sample_mean_is_the_loss(name):
    k = 2 if name in BINARY else 3
    x = torch.randn(16, k, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.arange(16) % k
    loss = harness.create("losses", name)
    per = loss.per_sample(x, y, index=torch.arange(16), epoch=0)
    assert per.shape == (16,)
    if name != "kl_dro":  # kl_dro's value is r log-mean-exp (see test_losses_robust)
        assert loss(x, y, index=torch.arange(16)).item() == pytest.approx(per.mean().item())


# -- training ---------------------------------------------------------------------------


@functools.cache
def _data(n_classes: int):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=600, n_features=10, n_informative=5, n_redundant=0,
                               n_classes=n_classes, n_clusters_per_class=1, class_sep=2.0,
                               flip_y=0.0, random_state=0)
    X = (X - X.mean(0)) / X.std(0)
    X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    return X[:400], y[:400], X[400:], y[400:]


@pytest.mark.parametrize("name", BUILTIN)
def test_loss_trains_a_small_mlp(name):
    k = 2 if name in BINARY else 3
    x_tr, y_tr, x_te, y_te = _data(k)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, k))
    loss = harness.create("losses", name)
    if hasattr(loss, "setup"):
        loss.setup(k, torch.bincount(y_tr, minlength=k).tolist(), len(y_tr))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(10):
        perm = torch.randperm(len(y_tr))
        for i in range(0, len(y_tr), 64):
            idx = perm[i:i + 64]
            value = loss(model(x_tr[idx]), y_tr[idx], index=idx, epoch=epoch)
            assert math.isfinite(value.item())
            opt.zero_grad()
            value.backward()
            opt.step()
    with torch.no_grad():
        accuracy = (model(x_te).argmax(1) == y_te).float().mean().item()
    assert accuracy > 0.9, f"{name}: test accuracy {accuracy:.3f}"
