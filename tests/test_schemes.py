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


def test_asam_scales_weights_and_leaves_biases_unscaled():
    # the authors' ASAM: T = |w| + eta on parameters named "weight", T = 1 on the rest
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    X, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,))
    lr, rho, eta = 0.1, 0.5, 0.01
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()

    def grads_at(w, b):
        w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
        F.cross_entropy(X @ w.T + b, y).backward()
        return w.grad, b.grad

    gw, gb = grads_at(w0, b0)
    tw = w0.abs() + eta
    norm = torch.cat([(tw * gw).flatten(), gb]).norm()
    ew, eb = rho * tw * tw * gw / norm, rho * gb / norm
    sw, sb = grads_at(w0 + ew, b0 + eb)
    scheme = harness.create("optimizers", {"name": "sam", "rho": rho, "adaptive": True,
                                           "base": {"name": "sgd", "lr": lr, "momentum": 0.0}})
    scheme.setup(model, lambda z, t, **kw: F.cross_entropy(z, t), info_for(16, 2))
    assert scheme.scaled == [True, False]
    scheme.step({"x": X, "y": y, "index": torch.arange(16), "epoch": 0})
    torch.testing.assert_close(model.weight.detach(), w0 - lr * sw, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(model.bias.detach(), b0 - lr * sb, rtol=1e-10, atol=1e-12)
    # scaling the bias too (the former behaviour) gives another step
    tb = b0.abs() + eta
    norm_all = torch.cat([(tw * gw).flatten(), tb * gb]).norm()
    _, sb_all = grads_at(w0 + rho * tw * tw * gw / norm_all, b0 + rho * tb * tb * gb / norm_all)
    assert (sb_all - sb).abs().max() > 1e-6


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


def test_mesa_default_decay_is_an_ema_horizon_of_one_epoch():
    from harness_plugins.classification.schemes import ema_decay_for

    assert ema_decay_for(50) == pytest.approx(0.98)
    assert ema_decay_for(1) == 0.0
    model = torch.nn.Linear(2, 2)
    for decay, steps, expected in ((None, 20, 0.95), (None, 400, 0.9975), (0.9998, 20, 0.9998)):
        scheme = harness.create("optimizers", {"name": "mesa", "decay": decay})
        info = info_for(8, 2)
        info.steps_per_epoch = steps
        scheme.setup(model, lambda z, t, **kw: F.cross_entropy(z, t), info)
        assert scheme.ema_decay == pytest.approx(expected)
    with pytest.raises(harness.ConfigError, match=r"decay = 1.0: .*float \(>= 0, < 1\)"):
        harness.create("optimizers", {"name": "mesa", "decay": 1.0})


def teacher_accuracy_after(decay, epochs=6):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=640, n_features=8, n_informative=4, n_redundant=0,
                               n_classes=4, class_sep=2.0, random_state=0)
    X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    scheme = harness.create("optimizers", {"name": "mesa", "decay": decay, "e_start": 2,
                                           "base": {"name": "sgd", "lr": 0.05}})
    info = info_for(640, 4, epochs)
    info.steps_per_epoch, info.X_train, info.y_train = 20, X, y
    info.X_val, info.y_val = X[:200], y[:200]
    scheme.setup(model, lambda z, t, **kw: F.cross_entropy(z, t), info)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        for idx in torch.randperm(640, generator=gen).split(32):
            scheme.step({"x": X[idx], "y": y[idx], "index": idx, "epoch": epoch})
    return scheme.extra_metrics()


def test_mesa_teacher_learns_with_the_default_decay_and_logs_its_accuracy():
    # 120 steps: the paper's 0.9998 keeps the teacher at its initialisation
    # (near-chance accuracy, near-uniform targets at tau = 5); the default
    # one-epoch horizon follows the student
    paper = teacher_accuracy_after(0.9998)
    default = teacher_accuracy_after(None)
    assert set(default) == {"teacher_val_accuracy", "teacher_val_confidence", "teacher_decay"}
    assert default["teacher_decay"] == pytest.approx(0.95)
    assert default["teacher_val_accuracy"] > 0.85
    assert paper["teacher_val_accuracy"] < 0.5
    assert paper["teacher_val_confidence"] < default["teacher_val_confidence"]


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(),
                               torch.nn.Linear(5, 3)).double()


def exact_hvp(model, closure, v):
    params = list(model.parameters())
    g = torch.autograd.grad(closure(), params, create_graph=True)
    # G is linear in the last bias: that block of H v is zero (unused by autograd)
    hv = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v)), params,
                             allow_unused=True)
    return [torch.zeros_like(p) if h is None else h for h, p in zip(hv, params)]


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


def test_labelled_logit_mean_hand_value():
    from harness_plugins.classification.schemes import labelled_logit_mean

    z = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert float(labelled_logit_mean(z, torch.tensor([2, 0]))) == pytest.approx(3.5)
    assert float(labelled_logit_mean(torch.tensor([[1.0], [-3.0]]), torch.tensor([1, 0]))) == -1


def grad_norm_case(penalty):
    model = small_model()
    X, y = torch.randn(32, 3, dtype=torch.float64), torch.randint(0, 3, (32,))
    lr, rho, lam0, eta, eps = 0.1, 0.05, 2.0, 0.01, 0.1
    scheme = harness.create("optimizers", {
        "name": "grad_norm", "rho": rho, "r": 1e-5, "lam0": lam0, "eta": eta, "eps": eps,
        "penalty": penalty, "base": {"name": "sgd", "lr": lr, "momentum": 0.0}})
    scheme.setup(model, lambda z, t, **kw: F.cross_entropy(z, t), info_for(32, 3))
    w0 = [p.detach().clone() for p in model.parameters()]

    def loss():
        return F.cross_entropy(model(X), y)

    def prediction():  # G: batch mean of the labelled class's output
        return model(X).gather(1, y[:, None]).mean()

    g_loss = torch.autograd.grad(loss(), list(model.parameters()))
    G = prediction if penalty == "prediction" else loss
    u = torch.autograd.grad(G(), list(model.parameters()))
    unorm = float(torch.cat([g.flatten() for g in u]).norm())
    hu = exact_hvp(model, G, u)
    scheme.step({"x": X, "y": y, "index": torch.arange(32), "epoch": 0})
    for p, w, g, h in zip(model.parameters(), w0, g_loss, hu):
        # grad of lam * rho * |grad G| is lam * rho * H_G u / |u|, u = grad G; the
        # finite difference of G's gradient at r = 1e-5 matches autograd's H_G u
        torch.testing.assert_close(p.detach(), w - lr * (g + lam0 * rho * h / unorm),
                                   rtol=1e-6, atol=1e-7)
    assert scheme.lam == pytest.approx(max(0.0, lam0 + eta * (rho * unorm - eps)))
    return unorm


def test_grad_norm_penalises_the_gradient_of_the_prediction_by_default():
    assert harness.create("optimizers", "grad_norm").penalty == "prediction"
    unorm_g = grad_norm_case("prediction")
    unorm_l = grad_norm_case("loss")
    assert abs(unorm_g - unorm_l) > 1e-3  # the two quantities differ on this net


def test_grad_norm_rejects_an_unknown_penalty():
    with pytest.raises(harness.ConfigError):
        harness.create("optimizers", {"name": "grad_norm", "penalty": "weights"})


def test_sharpness_recovers_top_eigenvalue_of_a_quadratic():
    A = spd([5.0, 2.0, 1.0, -0.5], seed=3)
    model = Quadratic(A, torch.zeros(4, dtype=torch.float64))
    metric = harness.create("metrics", {"name": "sharpness", "iters": 30})
    assert metric.greater_is_better is False
    assert metric.inputs == ("model", "train_x", "train_y")
    from harness_plugins.classification.metrics import Sharpness

    X = torch.zeros(700, 1, dtype=torch.float64)  # > one chunk: chunk weights must sum to 1
    value = Sharpness(30, 512)(model, model.loss, X, torch.zeros(700, dtype=torch.long))
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
        model, X, y)
    assert value == pytest.approx(float(top), rel=1e-3)
    assert model.training  # mode restored


@pytest.mark.parametrize("base, words", [
    ("{name: sgdd, lr: 0.1}", ["training.optimizer.base.name", "'sgdd'", "did you mean 'sgd'"]),
    ("{name: sgd, lrr: 0.1}", ["training.optimizer.base.lrr", "did you mean 'lr'"]),
    ("{name: sam}", ["training.optimizer.base", "is a training scheme"]),
])
def test_a_bad_scheme_base_stops_at_plan_naming_the_key(tmp_path, capsys, base, words):
    from harness.cli import main

    suite = tmp_path / "s.yaml"
    suite.write_text(f"""\
name: base-check
task: classification
seeds: 1
datasets: [{{sklearn: iris}}]
model: {{name: mlp, hidden: [8]}}
training: {{epochs: 1, optimizer: {{name: sam, base: {base}}}}}
methods: {{sam: {{}}}}
metrics: [accuracy]
""")
    assert main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)
