"""Tests of harness_plugins.classification.losses_robust: comp-sum family, z-loss, LDR-KL,
ALDR-KL and KL-DRO reweighting.  Expected values are computed with numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import harness

LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 4.0],
                   [1.5, -0.5, 0.7]])
TARGETS = np.array([0, 2, 0, 1, 2])
ROWS = np.arange(len(TARGETS))




def np_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def np_softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_softplus(z):
    return np.log1p(np.exp(z))


def np_ldr_d(logits, targets, margin=0.1, softplus=True):
    f = logits
    if softplus:
        f = np_softplus(logits)
        f = f / f.mean(axis=1, keepdims=True)
    onehot = np.eye(logits.shape[1])[targets]
    return f, margin * (1 - onehot) + f - f[np.arange(len(targets)), targets][:, None]


def np_ldr(d, lam):
    """lam log mean_k exp(d_k / lam); lam a scalar or one per row."""
    lam = np.broadcast_to(np.asarray(lam, dtype=float), (len(d),))
    return lam * np.log(np.mean(np.exp(d / lam[:, None]), axis=1))


def t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def tl(a):
    return torch.tensor(a, dtype=torch.long)


def value(spec, logits=LOGITS, targets=TARGETS, **extras):
    return harness.create("losses", spec)(t(logits), tl(targets), **extras).item()


LP = np_log_softmax(LOGITS)[ROWS, TARGETS]
P = np.exp(LP)
CE = -LP.mean()


# -- comp-sum family ------------------------------------------------------------------


@pytest.mark.parametrize("tau, per_sample", [
    (0.0, 1 / P - 1),
    (0.5, (1 - P ** -0.5) / -0.5),
    (1.5, (1 - P ** 0.5) / 0.5),
    (3.0, (1 - P ** 2) / 2),
])
def test_comp_sum_hand_values(tau, per_sample):
    assert value({"name": "comp_sum", "tau": tau}) == pytest.approx(per_sample.mean(), rel=1e-12)


def test_comp_sum_default_is_gce_half():
    assert value("comp_sum") == pytest.approx(((1 - P ** 0.5) / 0.5).mean(), rel=1e-12)


def test_comp_sum_tau_one_is_cross_entropy():
    assert value({"name": "comp_sum", "tau": 1.0}) == pytest.approx(CE, rel=1e-12)
    assert value({"name": "comp_sum", "tau": 1.0}) == pytest.approx(value("cross_entropy"))


def test_comp_sum_tau_two_is_mae():
    assert value({"name": "comp_sum", "tau": 2.0}) == pytest.approx((1 - P).mean(), rel=1e-12)
    assert value("mae") == pytest.approx((1 - P).mean(), rel=1e-12)


def test_gce_hand_value_and_limits():
    assert value("gce") == pytest.approx(((1 - P ** 0.7) / 0.7).mean(), rel=1e-12)
    assert value({"name": "gce", "q": 1e-6}) == pytest.approx(CE, rel=1e-5)
    assert value({"name": "gce", "q": 1.0}) == pytest.approx(value("mae"), rel=1e-12)
    assert value({"name": "gce", "q": 0.3}) == pytest.approx(value({"name": "comp_sum",
                                                                    "tau": 1.3}), rel=1e-12)
    with pytest.raises(harness.ConfigError, match=r"q = -0.5: .*expects float \(>= 0\)"):
        harness.create("losses", {"name": "gce", "q": -0.5})


def test_comp_sum_is_bounded_for_tau_above_one():
    # Robustness to label noise comes from the bound 1/(tau-1) on the loss.
    hopeless = np.array([[30.0, -30.0, 0.0]])
    assert value({"name": "comp_sum", "tau": 1.5}, hopeless, [1]) == pytest.approx(2.0)
    assert value("mae", hopeless, [1]) == pytest.approx(1.0)


# -- z-loss ------------------------------------------------------------------------------


def np_z_loss(logits, targets, a, b):
    z = (logits - logits.mean(axis=1, keepdims=True)) / logits.std(axis=1, keepdims=True)
    return (np_softplus(a * (b - z[np.arange(len(targets)), targets])) / a).mean()


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (0.5, 2.0), (3.0, 0.5)])
def test_z_loss_hand_value(a, b):
    got = value({"name": "z_loss", "a": a, "b": b})
    assert got == pytest.approx(np_z_loss(LOGITS, TARGETS, a, b), rel=1e-8)


def test_z_loss_shift_and_scale_invariant():
    base = value("z_loss")
    assert value("z_loss", LOGITS + 7.5) == pytest.approx(base, rel=1e-8)
    assert value("z_loss", LOGITS - 100.0) == pytest.approx(base, rel=1e-8)
    assert value("z_loss", LOGITS * 3.7) == pytest.approx(base, rel=1e-8)
    assert value("z_loss", LOGITS * 0.05) == pytest.approx(base, rel=1e-6)
    # Per-sample shifts and scales too (each row is standardised on its own).
    rows = LOGITS * np.array([[2.0], [0.5], [10.0], [1.0], [0.3]]) + np.arange(5)[:, None]
    assert value("z_loss", rows) == pytest.approx(base, rel=1e-6)


def test_z_loss_equal_logits_have_finite_gradient():
    x = torch.zeros(4, 3, requires_grad=True)
    harness.create("losses", "z_loss")(x, tl([0, 1, 2, 0])).backward()
    assert torch.isfinite(x.grad).all()


def test_z_loss_refuses_two_classes():
    loss = harness.create("losses", "z_loss")
    with pytest.raises(ValueError, match="at least 3 classes"):
        loss.setup(2, [3, 3], 6)
    with pytest.raises(ValueError, match="at least 3 classes"):
        loss(t([[0.0, 1.0]]), tl([1]))


# -- LDR-KL ------------------------------------------------------------------------------


@pytest.mark.parametrize("lam, margin, softplus", [(10.0, 0.1, True), (1.0, 0.5, True),
                                                   (0.1, 0.1, False), (2.0, 0.0, False)])
def test_ldr_kl_hand_value(lam, margin, softplus):
    _, d = np_ldr_d(LOGITS, TARGETS, margin, softplus)
    spec = {"name": "ldr_kl", "lam": lam, "margin": margin, "softplus": softplus}
    assert value(spec) == pytest.approx(np_ldr(d, lam).mean(), rel=1e-10)


@pytest.mark.parametrize("lam", [0.1, 1.0, 10.0])
def test_ldr_kl_equals_its_variational_form(lam):
    _, d = np_ldr_d(LOGITS, TARGETS)
    k = d.shape[1]

    def objective(p):
        return (p * d).sum(axis=1) - lam * (p * np.log(k * p)).sum(axis=1)

    best = objective(np_softmax(d / lam, axis=1))
    assert value({"name": "ldr_kl", "lam": lam}) == pytest.approx(best.mean(), rel=1e-10)
    # ... and softmax(d / lam) is the maximiser: other points of the simplex do worse.
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.dirichlet(np.ones(k), size=len(d))
        assert (objective(p) <= best + 1e-12).all()


def test_ldr_kl_small_lambda_tends_to_max_d():
    _, d = np_ldr_d(LOGITS, TARGETS)
    got = value({"name": "ldr_kl", "lam": 1e-3})
    assert got == pytest.approx(d.max(axis=1).mean(), abs=2e-3)
    # Large lambda: the mean of d (the KL term pins p to uniform).
    assert value({"name": "ldr_kl", "lam": 1e4}) == pytest.approx(d.mean(), abs=1e-3)


def test_ldr_kl_is_stable_for_tiny_lambda_and_large_logits():
    big = LOGITS * 50
    got = harness.create("losses", {"name": "ldr_kl", "lam": 1e-4, "softplus": False})
    assert math.isfinite(got(t(big), tl(TARGETS)).item())


# -- ALDR-KL -----------------------------------------------------------------------------


def np_aldr(logits, targets, lam0, alpha, prev, margin=0.1):
    f, d = np_ldr_d(logits, targets, margin)
    k = logits.shape[1]
    p = np_softmax(f / prev[:, None], axis=1) + 1e-5
    p = p / p.sum(axis=1, keepdims=True)
    kl = (p * np.log(k * p)).sum(axis=1)
    lam = lam0 - lam0 * kl / (alpha * np.log(k))
    loss = np_ldr(d, lam) - alpha * np.log(k) / (2 * lam0) * (lam - lam0) ** 2
    return loss.mean(), lam


def test_aldr_kl_hand_value_without_state():
    expected, lam = np_aldr(LOGITS, TARGETS, 1.0, 2.0, np.ones(5))
    assert value({"name": "aldr_kl", "lam0": 1.0}) == pytest.approx(expected, rel=1e-10)
    # lambda_i stays in [lam0 (1 - 1/alpha), lam0].
    assert ((lam >= 0.5) & (lam <= 1.0)).all() and lam.min() < 0.99


def test_aldr_kl_keeps_per_instance_lambda():
    loss = harness.create("losses", {"name": "aldr_kl", "lam0": 1.0, "alpha": 3.0})
    loss.setup(3, [3, 3, 2], 8)
    index = tl([1, 3, 5, 0, 7])
    first, lam1 = np_aldr(LOGITS, TARGETS, 1.0, 3.0, np.ones(5))
    assert loss(t(LOGITS), tl(TARGETS), index=index).item() == pytest.approx(first, rel=1e-10)
    # Next step on new predictions starts from the stored lambda_i.
    logits2 = LOGITS[::-1] * 2.0
    second, _ = np_aldr(logits2, TARGETS, 1.0, 3.0, lam1)
    got = loss(t(logits2), tl(TARGETS), index=index).item()
    assert got == pytest.approx(second, rel=1e-10)
    assert got != pytest.approx(np_aldr(logits2, TARGETS, 1.0, 3.0, np.ones(5))[0], rel=1e-6)
    # Samples not seen yet still start at lam0.
    fresh = loss(t(logits2), tl(TARGETS), index=tl([2, 4, 6, 2, 4])).item()
    assert fresh == pytest.approx(np_aldr(logits2, TARGETS, 1.0, 3.0, np.ones(5))[0], rel=1e-10)


@pytest.mark.parametrize("name", ["ldr_kl", "aldr_kl"])
def test_ldr_losses_are_finite_when_every_logit_is_very_negative(name):
    # softplus(z) underflows to 0 below about -104 in float32: the mean
    # normalisation used to be 0/0.  Equal logits give f = 1 for every class,
    # so d = margin 1[k != y] and the loss is lam log((1 + (K-1) e^(c/lam)) / K).
    x = torch.full((2, 3), -200.0, requires_grad=True)
    loss = harness.create("losses", {"name": name, "lam": 1.0} if name == "ldr_kl"
                          else {"name": name, "lam0": 1.0})
    value = loss(x, tl([0, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()
    if name == "ldr_kl":
        assert value.item() == pytest.approx(math.log((1 + 2 * math.exp(0.1)) / 3), rel=1e-6)
    # unequal logits below the underflow keep their ratio (exp(z) / mean exp(z))
    z = np.array([[-200.0, -201.0, -203.0]])
    f_exact = np.exp(z - z.max()) / np.exp(z - z.max()).mean()
    d = 0.1 * np.array([[0.0, 1.0, 1.0]]) + f_exact - f_exact[:, :1]
    got = harness.create("losses", {"name": "ldr_kl", "lam": 1.0})(
        torch.tensor(z, dtype=torch.float32), tl([0]))
    assert got.item() == pytest.approx(np_ldr(d, 1.0)[0], rel=1e-5)


def test_comp_sum_below_tau_one_overflows_and_its_doc_says_the_run_diverges():
    x = torch.tensor([[0.0, 120.0]])  # log p_0 = -120 in float32: 1/p - 1 = e^120 = inf
    assert torch.isinf(harness.create("losses", {"name": "comp_sum", "tau": 0.0})(x, tl([0])))
    assert "diverged" in harness.components("losses")["comp_sum"].description


def test_aldr_kl_default_is_close_to_ldr_kl_and_rejects_small_alpha():
    # lam0 = 10 makes softmax(f / lam0) nearly uniform: lambda_i ~ lam0.
    assert value("aldr_kl") == pytest.approx(value("ldr_kl"), rel=1e-3)
    with pytest.raises(harness.ConfigError, match=r"alpha = 1.0: .*expects float \(> 1\)"):
        harness.create("losses", {"name": "aldr_kl", "alpha": 1.0})


# -- KL-DRO ----------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [0.3, 1.0, 5.0])
def test_kl_dro_hand_value_and_gradient(r):
    nll = -LP
    expected = r * np.log(np.mean(np.exp(nll / r)))
    x = t(LOGITS, grad=True)
    got = harness.create("losses", {"name": "kl_dro", "r": r})(x, tl(TARGETS))
    assert got.item() == pytest.approx(expected, rel=1e-12)
    got.backward()
    # d/dlogits = w_i (softmax_i - onehot_i), w = softmax(l / r) over the batch.
    w = np_softmax(nll / r)
    grad = w[:, None] * (np_softmax(LOGITS, axis=1) - np.eye(3)[TARGETS])
    np.testing.assert_allclose(x.grad.numpy(), grad, rtol=1e-10, atol=1e-14)


def test_kl_dro_per_sample_has_the_gradient_of_the_objective():
    loss = harness.create("losses", {"name": "kl_dro", "r": 0.5})
    x1, x2 = t(LOGITS, grad=True), t(LOGITS, grad=True)
    loss(x1, tl(TARGETS)).backward()
    loss.per_sample(x2, tl(TARGETS)).mean().backward()
    np.testing.assert_allclose(x1.grad.numpy(), x2.grad.numpy(), rtol=1e-10)


def test_kl_dro_large_r_is_the_plain_mean():
    assert value({"name": "kl_dro", "r": 1e6}) == pytest.approx(CE, rel=1e-5)
    # Small r approaches the worst sample's loss.
    assert value({"name": "kl_dro", "r": 1e-3}) == pytest.approx((-LP).max(), abs=2e-3)


def test_kl_dro_any_per_sample_base():
    spec = {"name": "kl_dro", "base": {"name": "focal", "gamma": 1.0}, "r": 2.0}
    focal = -(1 - P) * LP
    assert value(spec) == pytest.approx(2.0 * np.log(np.mean(np.exp(focal / 2.0))), rel=1e-12)
    gce = (1 - P ** 0.7) / 0.7
    got = value({"name": "kl_dro", "base": "gce"})
    assert got == pytest.approx(np.log(np.mean(np.exp(gce))), rel=1e-12)


def test_kl_dro_forwards_setup_to_its_base():
    loss = harness.create("losses", {"name": "kl_dro", "base": "bce"})
    with pytest.raises(ValueError, match="'bce' is binary"):
        loss.setup(3, [1, 1, 1], 3)
    loss = harness.create("losses", {"name": "kl_dro",
                                     "base": {"name": "cross_entropy", "class_weight": "balanced"}})
    loss.setup(3, [6, 3, 1], 10)
    assert math.isfinite(loss(t(LOGITS), tl(TARGETS)).item())


@pytest.mark.parametrize("base", ["anyloss", "ensloss", "kl_dro"])
def test_kl_dro_rejects_batch_level_bases(base):
    with pytest.raises(ValueError, match=f"'{base}' is a batch-level loss"):
        harness.create("losses", {"name": "kl_dro", "base": base})


def test_kl_dro_unknown_base_is_a_config_error():
    with pytest.raises(harness.ConfigError, match="focall"):
        harness.create("losses", {"name": "kl_dro", "base": "focall"})


# -- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [
    {"name": "comp_sum", "tau": 0.0}, "comp_sum", "gce", "mae",
    "z_loss", {"name": "z_loss", "a": 0.5, "b": 2.0},
    "ldr_kl", {"name": "ldr_kl", "lam": 0.5, "softplus": False},
    "kl_dro", {"name": "kl_dro", "base": "focal", "r": 0.5},
])
def test_gradcheck(spec):
    loss = harness.create("losses", spec)
    x = t(LOGITS, grad=True)
    assert torch.autograd.gradcheck(lambda z: loss(z, tl(TARGETS)), (x,))
