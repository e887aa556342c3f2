"""The adversarial training schemes: DRO-AT's instance weights against the closed-form
KL-DRO weights, its step's objective, TRADES at beta = 0 against clean training, PGD-AT
training on the attacked batch."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import torch

import harness
from harness_plugins.classification.optimizers import PlainScheme
from harness_plugins.classification.trainer import ScalarLoss


def _setup(scheme, seed: int = 0, n: int = 32, d: int = 5, c: int = 3):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(d, 12), torch.nn.ReLU(), torch.nn.Linear(12, c))
    g = torch.Generator().manual_seed(seed + 1)
    X, y = torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)
    loss = ScalarLoss(harness.create("losses", "cross_entropy"), "cross_entropy")
    info = SimpleNamespace(n_train=n, n_classes=c, epochs=1, steps_per_epoch=1,
                           device=torch.device("cpu"), X_train=X, y_train=y)
    scheme.setup(model, loss, info)
    return model, {"x": X, "y": y, "index": torch.arange(n), "epoch": 0}


def _ce(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    return np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]


def test_dro_weights_are_the_closed_form_kl_dro_weights():
    r = 0.7
    scheme = harness.create("optimizers", {"name": "dro_at", "r": r})
    _setup(scheme)
    logits = np.array([[2.0, 0.1, -1.0], [0.0, 0.0, 0.0], [-1.5, 3.0, 0.2], [0.3, 0.2, 0.1]])
    y = np.array([0, 2, 0, 1])
    losses = _ce(logits, y)
    expected = np.exp(losses / r) / np.exp(losses / r).sum()
    got = scheme.weights(torch.tensor(logits), torch.tensor(y))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert abs(float(got.sum()) - 1) < 1e-12


def test_dro_step_minimises_the_reweighted_loss_of_the_batch():
    # eps = 0: x_adv = x, so the objective is sum_i w_i l_i at the clean batch
    r = 0.5
    scheme = harness.create("optimizers", {"name": "dro_at", "r": r,
                                           "base": {"name": "sgd", "lr": 0.1},
                                           "attack": {"name": "pgd", "eps": 0.0}})
    model, batch = _setup(scheme)
    with torch.no_grad():
        losses = _ce(model(batch["x"]).double().numpy(), batch["y"].numpy())
    w = np.exp(losses / r) / np.exp(losses / r).sum()
    twin = copy.deepcopy(model)
    value = scheme.step(batch)
    assert abs(value - float((w * losses).sum())) < 1e-5
    # its gradient is that of sum_i w_i l_i with w held fixed
    ce = torch.nn.functional.cross_entropy(twin(batch["x"]), batch["y"], reduction="none")
    (torch.tensor(w, dtype=ce.dtype) * ce).sum().backward()
    with torch.no_grad():
        for p, q in zip(model.parameters(), twin.parameters()):
            torch.testing.assert_close(p, q - 0.1 * q.grad, rtol=1e-5, atol=1e-6)
    assert 1.0 <= scheme.extra_metrics()["dro_max_weight"] <= len(losses)


def test_trades_with_beta_zero_is_clean_training():
    trades = harness.create("optimizers", {"name": "trades", "beta": 0.0,
                                           "base": {"name": "sgd", "lr": 0.1},
                                           "attack": {"name": "pgd", "eps": 0.5, "steps": 3}})
    clean = PlainScheme(harness.create("optimizers", {"name": "sgd", "lr": 0.1}))
    m1, batch = _setup(trades)
    m2, _ = _setup(clean)
    for _ in range(3):
        a, b = trades.step(batch), clean.step(batch)
        assert a == b
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)


def test_trades_with_beta_moves_the_weights_differently():
    trades = harness.create("optimizers", {"name": "trades", "beta": 6.0,
                                           "base": {"name": "sgd", "lr": 0.1},
                                           "attack": {"name": "pgd", "eps": 0.5, "steps": 3}})
    clean = PlainScheme(harness.create("optimizers", {"name": "sgd", "lr": 0.1}))
    m1, batch = _setup(trades)
    m2, _ = _setup(clean)
    assert trades.step(batch) > clean.step(batch)  # clean loss plus a positive KL
    assert not all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))


def test_pgd_at_trains_on_the_attacked_batch():
    attack = {"name": "pgd", "eps": 0.4, "steps": 5}
    scheme = harness.create("optimizers", {"name": "pgd_at", "attack": attack,
                                           "base": {"name": "sgd", "lr": 0.1}})
    model, batch = _setup(scheme)
    torch.manual_seed(5)
    x_adv = scheme.attack.perturb(model, batch["x"], batch["y"], scheme.bounds)
    with torch.no_grad():
        adv_loss = float(torch.nn.functional.cross_entropy(model(x_adv), batch["y"]))
    torch.manual_seed(5)  # the same random start
    assert abs(scheme.step(batch) - adv_loss) < 1e-6
