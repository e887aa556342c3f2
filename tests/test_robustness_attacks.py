"""FGSM and PGD against hand-computed values: no-op cases, the sign-gradient step on a
linear model, the epsilon ball and the valid range."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness_plugins.robustness.attacks import fgsm, input_bounds, pgd


def _mlp(d: int = 6, c: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, 16), torch.nn.Tanh(), torch.nn.Linear(16, c))


def _batch(n: int = 20, d: int = 6, c: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("params", [{"steps": 0, "eps": 0.5}, {"steps": 10, "eps": 0.0}])
def test_pgd_without_steps_or_radius_returns_the_clean_input(norm, params):
    model, (x, y) = _mlp(), _batch()
    out = pgd(norm=norm, random_start=True, **params).perturb(model, x, y, input_bounds(x))
    assert torch.equal(out, x)
    assert fgsm(eps=0.0, norm=norm).perturb(model, x, y).equal(x)


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_is_one_gradient_step_on_a_linear_model(norm):
    # logits = x W^T + b: d CE / d x = (softmax(logits) - onehot(y)) W, by hand in numpy
    W = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, -1.0]])
    b = np.array([0.1, -0.3])
    x = np.array([[0.2, 0.4, -1.0], [1.0, -0.5, 0.3], [-0.7, 0.1, 0.9]])
    y = np.array([0, 1, 1])
    model = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(W))
        model.bias.copy_(torch.tensor(b))
    grad = (_softmax(x @ W.T + b) - np.eye(2)[y]) @ W
    eps = 0.25
    if norm == "linf":
        expected = x + eps * np.sign(grad)
    else:
        expected = x + eps * grad / np.linalg.norm(grad, axis=1, keepdims=True)
    out = fgsm(eps=eps, norm=norm).perturb(model, torch.tensor(x), torch.tensor(y))
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)
    # the valid range clips the step: [-0.5, 0.5] per coordinate, widened to hold x
    lo, hi = torch.full((1, 3), -0.5, dtype=torch.float64), torch.full((1, 3), 0.5,
                                                                          dtype=torch.float64)
    out = fgsm(eps=eps, norm=norm).perturb(model, torch.tensor(x), torch.tensor(y), (lo, hi))
    clipped = np.clip(expected, np.minimum(-0.5, x), np.maximum(0.5, x))
    np.testing.assert_allclose(out.numpy(), clipped, rtol=0, atol=1e-12)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_the_ball_and_the_valid_range(norm, random_start):
    model, (x, y) = _mlp(), _batch()
    train_x = _batch(200, seed=3)[0] * 0.8  # some test coordinates fall outside its range
    lo, hi = input_bounds(train_x)
    eps = 0.3 if norm == "linf" else 0.8
    out = pgd(eps=eps, steps=15, step_size=0.2, norm=norm,
              random_start=random_start).perturb(model, x, y, (lo, hi))
    delta = out - x
    if norm == "linf":
        assert float(delta.abs().max()) <= eps + 1e-6
    else:
        assert float(delta.norm(dim=1).max()) <= eps + 1e-5
    assert bool((out >= torch.minimum(lo, x) - 1e-7).all())
    assert bool((out <= torch.maximum(hi, x) + 1e-7).all())
    assert float(delta.abs().max()) > 0  # it moved


def test_pgd_raises_the_loss_and_keeps_the_model_untouched():
    model, (x, y) = _mlp(), _batch(200)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    ce = torch.nn.functional.cross_entropy
    out = pgd(eps=0.5, steps=10).perturb(model, x, y)
    with torch.no_grad():
        assert float(ce(model(out), y)) > float(ce(model(x), y)) + 0.1
    assert model.training
    assert all(torch.equal(a, p) and p.grad is None for a, p in zip(before, model.parameters()))


def test_input_bounds_are_per_coordinate_min_and_max():
    X = torch.tensor([[0.0, 5.0], [2.0, -1.0], [1.0, 3.0]])
    lo, hi = input_bounds(X, chunk=2)
    assert lo.tolist() == [[0.0, -1.0]] and hi.tolist() == [[2.0, 5.0]]
