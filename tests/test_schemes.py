"""SAM / ASAM, SAF, MESA and grad_norm steps against their formulas; sharpness metric."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import harness
from harness_plugins.classification.schemes import SAF, fd_hvp


def info_for(n, n_classes, epochs=10):
    return SimpleNamespace(n_train=n, n_classes=n_classes, epochs=epochs, steps_per_epoch=1,
                           device=torch.device("cpu"), X_train=None, y_train=None)


class Quadratic(torch.nn.Module):
    """f(w) = 0.5 w^T A w: the 'logits' are w itself, the loss reads them back."""

    def __init__(self, A, w0):
        super().__init__()
        self.A = A
        self.w = torch.nn.Parameter(w0.clone())

    def forward(self, x):
        return self.w.expand(len(x), -1)

    def loss(self, logits, y, **extras):
        w = logits[0]
        return 0.5 * w @ self.A @ w


def spd(eigs, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return Q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ Q.T


def one_step(spec, A, w0):
    model = Quadratic(A, w0)
    scheme = harness.create("optimizers", spec)
    scheme.setup(model, model.loss, info_for(1, len(w0)))
    x = torch.zeros(1, 1, dtype=torch.float64)
    scheme.step({"x": x, "y": torch.zeros(1, dtype=torch.long), "index": torch.arange(1),
                 "epoch": 0})
    return model.w.detach(), scheme


def test_sam_step_matches_closed_form_on_a_quadratic():
    A = spd([3.0, 1.0, 0.5])
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    lr, rho = 0.1, 0.05
    got, _ = one_step({"name": "sam", "rho": rho,
                       "base": {"name": "sgd", "lr": lr, "momentum": 0.0}}, A, w)
    g = A @ w
    expected = w - lr * A @ (w + rho * g / g.norm())
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    plain = w - lr * g
    assert (got - plain).norm() > 1e-3  # the ascent step made a difference


def test_asam_step_matches_closed_form_on_a_quadratic():
    A = spd([2.0, 1.0, 0.2], seed=1)
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    lr, rho = 0.05, 0.5
    got, _ = one_step({"name": "sam", "rho": rho, "adaptive": True,
                       "base": {"name": "sgd", "lr": lr, "momentum": 0.0}}, A, w)
    g, t = A @ w, w.abs() + 0.01
    e = rho * t * t * g / (t * g).norm()
    torch.testing.assert_close(got, w - lr * A @ (w + e), rtol=1e-10, atol=1e-12)


def test_schemes_reject_a_scheme_as_base():
    with pytest.raises(ValueError, match="plain optimizer"):
        harness.create("optimizers", {"name": "sam", "base": "saf"})


def kl_term(old, new, lam, tau):
    p_old = F.softmax(old / tau, 1)
    return lam * tau ** 2 * (p_old * (F.log_softmax(old / tau, 1)
                                      - F.log_softmax(new / tau, 1))).sum(1).mean()


def test_saf_kl_uses_logits_exactly_e_tilde_epochs_old_and_is_off_until_e_start():
    torch.manual_seed(0)
    n, C, e_tilde, e_start, e_end = 16, 3, 3, 5, 11
    X = torch.randn(n, 4, dtype=torch.float64)
    y = torch.randint(0, C, (n,))
    model = torch.nn.Linear(4, C).double()
    scheme = harness.create("optimizers", {
        "name": "saf", "lam": 0.3, "tau": 5.0, "e_tilde": e_tilde, "e_start": e_start,
        "e_end": e_end, "base": {"name": "sgd", "lr": 0.5, "momentum": 0.0}})
    assert isinstance(scheme, SAF)
    scheme.setup(model, lambda z, t, **kw: F.cross_entropy(z, t), info_for(n, C, 14))
    assert scheme.buffer.shape == (n, e_tilde + 1, C)
    seen = {}
    perm = torch.randperm(n)  # a shuffled batch: the buffer is indexed by sample position
    for epoch in range(14):
        with torch.no_grad():
            seen[epoch] = model(X).clone()
        scheme.step({"x": X[perm], "y": y[perm], "index": perm, "epoch": epoch})
        torch.testing.assert_close(scheme.buffer[:, epoch % (e_tilde + 1)], seen[epoch])
        penalty = float(scheme.last_penalty)
        if epoch <= e_start or epoch >= e_end:
            assert penalty == 0.0, epoch
            continue
        expected = kl_term(seen[epoch - e_tilde], seen[epoch], 0.3, 5.0)
        assert penalty == pytest.approx(float(expected), rel=1e-9), epoch
        for wrong_age in (e_tilde - 1, e_tilde + 1):  # the test can tell other ages apart
            other = kl_term(seen[epoch - wrong_age], seen[epoch], 0.3, 5.0)
            assert abs(float(other) - penalty) > 1e-6 * penalty


def test_saf_after_a_reset_waits_e_tilde_epochs_for_fresh_logits():
    n, C = 8, 2
    X, y = torch.randn(n, 3), torch.randint(0, 2, (n,))
    scheme = harness.create("optimizers", {"name": "saf", "e_start": 0, "e_tilde": 2})
    scheme.setup(torch.nn.Linear(3, C), lambda z, t, **kw: F.cross_entropy(z, t),
                 info_for(n, C))
    batch = {"x": X, "y": y, "index": torch.arange(n)}
    for epoch in range(4):
        scheme.step({**batch, "epoch": epoch})
    assert float(scheme.last_penalty) > 0
    scheme.reset()  # what useful does after re-initialising the model at the end of epoch 3
    assert [scheme.active(e) for e in range(4, 8)] == [False, False, True, True]


def test_mesa_teacher_is_an_ema_and_kl_starts_after_e_start():
    torch.manual_seed(0)
    n, C, decay = 12, 3, 0.9
    X, y = torch.randn(n, 4, dtype=torch.float64), torch.randint(0, C, (n,))
    model = torch.nn.Linear(4, C).double()
    scheme = harness.create("optimizers", {"name": "mesa", "decay": decay, "e_start": 1,
                                           "base": {"name": "sgd", "lr": 0.5}})
    scheme.setup(model, lambda z, t, **kw: F.cross_entropy(z, t), info_for(n, C))
    teacher = model.weight.detach().clone()
    for epoch in range(4):
        with torch.no_grad():
            target = scheme.teacher(X).clone()
            current = model(X).clone()
        scheme.step({"x": X, "y": y, "index": torch.arange(n), "epoch": epoch})
        teacher = decay * teacher + (1 - decay) * model.weight.detach()
        torch.testing.assert_close(scheme.teacher.weight, teacher)
        expected = 0.0 if epoch <= 1 else float(kl_term(target, current, 0.8, 5.0))
        assert float(scheme.last_penalty) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(),
                               torch.nn.Linear(5, 3)).double()


def exact_hvp(model, closure, v):
    params = list(model.parameters())
    g = torch.autograd.grad(closure(), params, create_graph=True)
    return torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v)), params)


def test_finite_difference_hvp_matches_autograd():
    model = small_model()
    X, y = torch.randn(32, 3, dtype=torch.float64), torch.randint(0, 3, (32,))

    def closure():
        return F.cross_entropy(model(X), y)

    v = [torch.randn_like(p) for p in model.parameters()]
    exact = torch.cat([h.flatten() for h in exact_hvp(model, closure, v)])
    for r, tol in ((1e-5, 1e-4), (0.05, 0.05)):  # tiny r: exact; default r: a few percent
        approx = torch.cat([h.flatten() for h in fd_hvp(model, closure, v, r=r)])
        assert float((approx - exact).norm() / exact.norm()) < tol, r


def test_grad_norm_step_adds_the_penalty_gradient_and_updates_the_dual():
    model = small_model()
    X, y = torch.randn(32, 3, dtype=torch.float64), torch.randint(0, 3, (32,))
    lr, rho, lam0, eta, eps = 0.1, 0.05, 2.0, 0.01, 0.1
    scheme = harness.create("optimizers", {
        "name": "grad_norm", "rho": rho, "r": 1e-5, "lam0": lam0, "eta": eta, "eps": eps,
        "base": {"name": "sgd", "lr": lr, "momentum": 0.0}})
    scheme.setup(model, lambda z, t, **kw: F.cross_entropy(z, t), info_for(32, 3))
    w0 = [p.detach().clone() for p in model.parameters()]

    def closure():
        return F.cross_entropy(model(X), y)

    u = torch.autograd.grad(closure(), list(model.parameters()))
    unorm = float(torch.cat([g.flatten() for g in u]).norm())
    hu = exact_hvp(model, closure, u)
    scheme.step({"x": X, "y": y, "index": torch.arange(32), "epoch": 0})
    for p, w, g, h in zip(model.parameters(), w0, u, hu):
        # grad of lam * rho * |grad L| is lam * rho * H u / |u|
        torch.testing.assert_close(p.detach(), w - lr * (g + lam0 * rho * h / unorm),
                                   rtol=1e-6, atol=1e-7)
    assert scheme.lam == pytest.approx(max(0.0, lam0 + eta * (rho * unorm - eps)))


def test_sharpness_recovers_top_eigenvalue_of_a_quadratic():
    A = spd([5.0, 2.0, 1.0, -0.5], seed=3)
    model = Quadratic(A, torch.zeros(4, dtype=torch.float64))
    metric = harness.create("metrics", {"name": "sharpness", "iters": 30})
    assert metric.greater_is_better is False and metric.needs_model is True
    X = torch.zeros(700, 1, dtype=torch.float64)  # > one chunk: chunk weights must sum to 1
    value = metric(model, model.loss, X, torch.zeros(700, dtype=torch.long))
    assert value == pytest.approx(5.0, rel=1e-6)


def test_sharpness_matches_the_exact_hessian_of_a_small_network():
    model = small_model()
    torch.manual_seed(1)
    X, y = torch.randn(600, 3, dtype=torch.float64), torch.randint(0, 3, (600,))
    n = 300
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def flat_loss(theta):
        chunks = theta.split(sizes)
        ws = [c.view(s) for c, s in zip(chunks, shapes)]
        h = torch.tanh(X[:n] @ ws[0].T + ws[1])
        return F.cross_entropy(h @ ws[2].T + ws[3], y[:n])

    theta = torch.cat([p.detach().flatten() for p in params])
    eigs = torch.linalg.eigvalsh(torch.autograd.functional.hessian(flat_loss, theta))
    top = eigs[eigs.abs().argmax()]
    value = harness.create("metrics", {"name": "sharpness", "iters": 200, "n_samples": n})(
        model, None, X, y)
    assert value == pytest.approx(float(top), rel=1e-3)
    assert model.training  # mode restored
