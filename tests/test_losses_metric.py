"""Tests of harness_plugins.classification.losses_metric: AnyLoss and EnsLoss.  Expected values
are computed with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import harness
from harness_plugins.classification.losses_metric import ens_derivatives

LOGITS = np.array([[0.3, -0.2], [1.0, 2.5], [-0.5, 0.5], [2.0, 0.0], [0.0, 0.1], [0.2, 0.1],
                   [-1.0, 1.0]])
TARGETS = np.array([0, 1, 0, 1, 1, 0, 1])
S = 1e-5




def t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def tl(a):
    return torch.tensor(a, dtype=torch.long)


def np_confusion(logits, y, L):
    p = 1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0])))  # softmax(logits)[:, 1]
    a = 1 / (1 + np.exp(-L * (p - 0.5)))
    n1 = y.sum()
    n0 = len(y) - n1
    tp = (y * a).sum()
    fp = a.sum() - tp
    return tp, fp, n1 - tp, n0 - fp, n1, n0, a.sum()


def np_anyloss(logits, y, metric, L, beta=1.0):
    tp, _fp, _fn, tn, n1, n0, sum_a = np_confusion(logits, y, L)
    if metric in ("f1", "fbeta"):
        b2 = 1.0 if metric == "f1" else beta ** 2
        return 1 - (1 + b2) * tp / (b2 * n1 + sum_a + S)
    if metric == "gmean":
        return 1 - tp * tn / (n1 * n0 + S)
    return 1 - (n0 * tp + n1 * tn) / (2 * n1 * n0 + S)


# -- AnyLoss ------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["f1", "fbeta", "gmean", "balanced_accuracy"])
@pytest.mark.parametrize("L", [73.0, 5.0])
def test_anyloss_hand_values(metric, L):
    spec = {"name": "anyloss", "metric": metric, "beta": 2.0, "L": L}
    got = harness.create("losses", spec)(t(LOGITS), tl(TARGETS), index=tl(range(7)), epoch=1)
    assert got.item() == pytest.approx(np_anyloss(LOGITS, TARGETS, metric, L, 2.0), rel=1e-10)


@pytest.mark.parametrize("metric", ["f1", "gmean"])
def test_anyloss_on_a_single_logit_model_uses_sigmoid_of_it(metric):
    # the paper's model has one output f and p = sigmoid(f); a 2-logit model's
    # softmax(logits)[:, 1] is sigmoid(logit_1 - logit_0)
    f = LOGITS[:, 1:] - LOGITS[:, :1]
    loss = harness.create("losses", {"name": "anyloss", "metric": metric, "L": 5.0})
    assert loss.logit_head == 1
    got = loss(t(f), tl(TARGETS))
    assert got.item() == pytest.approx(np_anyloss(LOGITS, TARGETS, metric, 5.0), rel=1e-10)


def test_anyloss_f1_ignores_beta_and_fbeta_one_is_f1():
    x, y = t(LOGITS), tl(TARGETS)
    f1 = harness.create("losses", {"name": "anyloss", "beta": 3.0})(x, y)
    fb = harness.create("losses", {"name": "anyloss", "metric": "fbeta", "beta": 1.0})(x, y)
    assert f1.item() == pytest.approx(fb.item(), rel=1e-12)
    assert f1.item() == pytest.approx(np_anyloss(LOGITS, TARGETS, "f1", 73.0), rel=1e-10)


def test_anyloss_large_L_approaches_hard_metrics():
    pred = (LOGITS[:, 1] > LOGITS[:, 0]).astype(int)  # p > 0.5
    tp = int(((pred == 1) & (TARGETS == 1)).sum())
    fp = int(((pred == 1) & (TARGETS == 0)).sum())
    fn = int(((pred == 0) & (TARGETS == 1)).sum())
    tn = int(((pred == 0) & (TARGETS == 0)).sum())
    f1 = 2 * tp / (2 * tp + fp + fn)
    tpr, tnr = tp / (tp + fn), tn / (tn + fp)
    x, y = t(LOGITS), tl(TARGETS)

    def big(metric):
        return harness.create("losses", {"name": "anyloss", "metric": metric, "L": 1e4})(x, y)

    assert big("f1").item() == pytest.approx(1 - f1, abs=1e-4)
    assert big("gmean").item() == pytest.approx(1 - tpr * tnr, abs=1e-4)
    assert big("balanced_accuracy").item() == pytest.approx(1 - (tpr + tnr) / 2, abs=1e-4)


def test_anyloss_uses_the_batch_length():
    # A short batch (e.g. the last of an epoch) has its own N, n0 and n1.
    x, y = LOGITS[:3], TARGETS[:3]
    for metric in ("gmean", "balanced_accuracy"):
        loss = harness.create("losses", {"name": "anyloss", "metric": metric})
        got = loss(t(x), tl(y)).item()
        assert got == pytest.approx(np_anyloss(x, y, metric, 73.0), rel=1e-10)


def test_anyloss_one_class_batch_is_finite():
    x = t(LOGITS[:3], grad=True)
    for metric in ("f1", "gmean", "balanced_accuracy"):
        value = harness.create("losses", {"name": "anyloss", "metric": metric})(x, tl([0, 0, 0]))
        assert torch.isfinite(value)
        value.backward()
        assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("metric", ["f1", "fbeta", "gmean", "balanced_accuracy"])
def test_anyloss_gradcheck(metric):
    loss = harness.create("losses", {"name": "anyloss", "metric": metric, "beta": 0.5, "L": 5.0})
    assert torch.autograd.gradcheck(lambda z: loss(z, tl(TARGETS)), (t(LOGITS, grad=True),))


def test_anyloss_is_batch_level_and_checks_parameters():
    loss = harness.create("losses", "anyloss")
    assert loss.batch_level and not hasattr(loss, "per_sample")
    with pytest.raises(harness.ConfigError):
        harness.create("losses", {"name": "anyloss", "metric": "mcc"})
    with pytest.raises(harness.ConfigError, match=r"L = 0.0: .*expects float \(> 0\)"):
        harness.create("losses", {"name": "anyloss", "L": 0.0})


# -- EnsLoss ------------------------------------------------------------------------------


def np_ens(s, z, lam):
    """METHODS.md steps 1-5, independently in numpy."""
    if lam == 0:
        inv = np.exp(z)
    else:
        with np.errstate(divide="ignore"):
            inv = np.maximum(1 + lam * z, 0) ** (1 / lam)
    g = np.maximum(np.sort(-inv), -1.0)
    out = np.empty_like(g)
    out[np.argsort(s, kind="stable")] = g
    with np.errstate(divide="ignore"):  # the phantom's margin 0 (its value is unused)
        out = np.where(s > 1, out / s, out)
    return out - 1e-6


def margins(logits, targets):
    return (2 * targets - 1) * (logits[:, 1] - logits[:, 0])


@pytest.mark.parametrize("lam", [0.0, 0.5, -0.5, 1.0])
def test_ens_derivatives_hand_values(lam):
    rng = np.random.default_rng(0)
    s = rng.normal(0, 2, size=50)
    z = rng.normal(size=50)
    got = ens_derivatives(t(s), t(z), lam).numpy()
    np.testing.assert_allclose(got, np_ens(s, z, lam), rtol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.5, -0.5])
def test_ens_derivatives_are_negative_and_non_decreasing_in_the_margin(lam):
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        s = torch.randn(64, generator=gen, dtype=torch.float64) * 3
        g = ens_derivatives(s, torch.randn(64, generator=gen), lam)
        assert (g < 0).all()
        assert (g >= -1 - 1e-6).all()
        g_by_margin = g[torch.argsort(s)]
        assert (torch.diff(g_by_margin) >= 0).all()


def test_ens_derivatives_phantom_sample_hand_values():
    # z chosen so that -exp(z) = -1, -0.5, -2, -0.25: sorted and clipped at -1
    # that is [-1, -1, -0.5, -0.25].  Margins -1, 2, 0.5 and the phantom 0 rank
    # as -1 < 0 < 0.5 < 2: sample 0 gets -1, the phantom -1, sample 2 -0.5,
    # sample 1 -0.25 / 2 (its margin is above 1).
    s = t([-1.0, 2.0, 0.5])
    z = t(np.log([1.0, 0.5, 2.0, 0.25]))
    got = ens_derivatives(s, z, 0.0).numpy()
    np.testing.assert_allclose(got, np.array([-1.0, -0.125, -0.5]) - 1e-6, rtol=1e-12)
    # without the phantom (N draws) sample 2 would take the second -1
    got = ens_derivatives(s, z[:3], 0.0).numpy()
    np.testing.assert_allclose(got, np.array([-1.0, -0.25, -1.0]) - 1e-6, rtol=1e-12)
    with pytest.raises(ValueError, match="5 draws for 3 margins"):
        ens_derivatives(s, torch.zeros(5), 0.0)


def test_ensloss_value_and_gradient_from_the_global_seed():
    s = margins(LOGITS, TARGETS)
    # the authors' procedure: N + 1 draws, a phantom sample of margin 0 ranked
    # with the batch (seed 5: a draw where the phantom changes the ranks)
    torch.manual_seed(5)
    z = torch.randn(len(s) + 1).numpy().astype(np.float64)
    g = np_ens(np.append(s, 0.0), z, 0.0)[:-1]
    assert not np.allclose(g, np_ens(s, z[:-1], 0.0))
    x = t(LOGITS, grad=True)
    torch.manual_seed(5)
    value = harness.create("losses", "ensloss")(x, tl(TARGETS), index=tl(range(7)), epoch=0)
    assert value.item() == pytest.approx((g * s).mean(), rel=1e-6)
    value.backward()
    # g is detached: d/d logit_1 = y g / N, d/d logit_0 = -y g / N.
    y = 2 * TARGETS - 1
    expected = np.stack([-y * g, y * g], axis=1) / len(s)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_ensloss_without_phantom_draws_n_values():
    s = margins(LOGITS, TARGETS)
    torch.manual_seed(5)
    g = np_ens(s, torch.randn(len(s)).numpy().astype(np.float64), 0.0)
    torch.manual_seed(5)
    value = harness.create("losses", {"name": "ensloss", "phantom": False})(t(LOGITS),
                                                                              tl(TARGETS))
    assert value.item() == pytest.approx((g * s).mean(), rel=1e-6)


def test_ensloss_on_a_single_logit_model_equals_the_two_logit_margin():
    f = LOGITS[:, 1:] - LOGITS[:, :1]
    torch.manual_seed(5)
    one = harness.create("losses", "ensloss")(t(f), tl(TARGETS))
    torch.manual_seed(5)
    two = harness.create("losses", "ensloss")(t(LOGITS), tl(TARGETS))
    assert one.item() == pytest.approx(two.item(), rel=1e-12)


def test_ensloss_is_reproducible_given_manual_seed():
    def run(seed):
        torch.manual_seed(seed)
        loss = harness.create("losses", "ensloss")
        return [loss(t(LOGITS), tl(TARGETS)).item() for _ in range(3)]

    assert run(0) == run(0)
    assert run(0) != run(1)
    # With resample_every=1 every call draws afresh.
    assert len(set(run(0))) == 3


def test_ensloss_is_batch_level():
    loss = harness.create("losses", "ensloss")
    assert loss.batch_level and not hasattr(loss, "per_sample")


def test_ensloss_resample_every():
    torch.manual_seed(0)
    loss = harness.create("losses", {"name": "ensloss", "resample_every": 3})
    values = [loss(t(LOGITS), tl(TARGETS)).item() for _ in range(6)]
    assert values[0] == values[1] == values[2]
    assert values[3] == values[4] == values[5]
    assert values[0] != values[3]
    # A batch of another size (the last of an epoch) draws anew.
    short = loss(t(LOGITS[:4]), tl(TARGETS[:4]))
    assert torch.isfinite(short)
    with pytest.raises(harness.ConfigError):
        harness.create("losses", {"name": "ensloss", "resample_every": "often"})
    with pytest.raises(harness.ConfigError, match=r"resample_every = 0: .*int \(>= 1\)"):
        harness.create("losses", {"name": "ensloss", "resample_every": 0})


def test_ensloss_pushes_wrong_samples_hardest():
    torch.manual_seed(0)
    x = t(LOGITS, grad=True)
    harness.create("losses", "ensloss")(x, tl(TARGETS)).backward()
    s = margins(LOGITS, TARGETS)
    # |d loss / d s_i| is largest for the smallest margin.
    push = np.abs(x.grad.numpy()[:, 1])
    assert push[np.argmin(s)] == pytest.approx(push.max())
