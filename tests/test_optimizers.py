"""Plain optimizers, schedulers, the Scheme protocol and USEFUL; every optimizer and
scheme trains a small MLP through the protocol."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import harness
from harness_plugins.classification.optimizers import PlainScheme, Useful, as_scheme

# tiny models: intra-op threads only add contention on small CI machines


def ce(logits, y, **extras):
    """The loss contract: extras (index, epoch) are accepted and ignored."""
    return F.cross_entropy(logits, y)


def separable_data(n=600, seed=0):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=10, n_informative=5, n_redundant=0,
                               n_classes=2, class_sep=2.0, random_state=seed)
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y)


def mlp(d_in=10, n_classes=2, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d_in, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, n_classes))


def info_for(X, y, epochs, batch_size):
    return SimpleNamespace(n_train=len(y), n_classes=int(y.max()) + 1, epochs=epochs,
                           steps_per_epoch=-(-len(y) // batch_size), device=torch.device("cpu"),
                           X_train=X, y_train=y)


def train(scheme, model, X, y, epochs=20, batch_size=32, scheduler=None):
    """A minimal training loop honouring the protocol (as the classification task does)."""
    info = info_for(X, y, epochs, batch_size)
    scheme.setup(model, ce, info)
    sched = scheduler(scheme.optimizer, epochs) if scheduler else None
    gen = torch.Generator().manual_seed(0)
    losses = []
    for epoch in range(epochs):
        model.train()
        order = getattr(scheme, "epoch_order", lambda e, g: None)(epoch, gen)
        if order is None:
            order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            loss = scheme.step({"x": X[idx], "y": y[idx], "index": idx, "epoch": epoch})
            assert np.isfinite(loss)
            losses.append(loss)
        if hasattr(scheme, "on_epoch_end"):
            scheme.on_epoch_end(epoch)
        if sched is not None:
            sched.step()
    return losses


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "sam", "saf", "mesa", "grad_norm",
                                  "useful", {"name": "useful", "base": "sam"}])
def test_every_optimizer_and_scheme_learns_separable_data(name):
    X, y = separable_data()
    model = mlp()
    scheme = as_scheme(harness.create("optimizers", name))
    train(scheme, model, X, y, scheduler=harness.create("schedulers", "cosine"))
    model.eval()
    with torch.no_grad():
        acc = (model(X).argmax(1) == y).float().mean().item()
    assert acc > 0.9, (name, acc)


def test_plain_factories_build_configured_torch_optimizers():
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = harness.create("optimizers", {"name": "sgd", "lr": 0.1, "nesterov": True})(params)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["lr"] == 0.1 and opt.defaults["momentum"] == 0.9
    assert opt.defaults["nesterov"] is True
    opt = harness.create("optimizers", "adamw")(params)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 0.01
    opt = harness.create("optimizers", {"name": "adam", "betas": [0.5, 0.9]})(params)
    assert isinstance(opt, torch.optim.Adam) and tuple(opt.defaults["betas"]) == (0.5, 0.9)


def test_sgd_nesterov_without_momentum_is_rejected():
    with pytest.raises(ValueError, match="nesterov"):
        harness.create("optimizers", {"name": "sgd", "nesterov": True, "momentum": 0.0})


def lrs(sched_spec, epochs, lr=1.0):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = harness.create("schedulers", sched_spec)(opt, epochs)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, opt.param_groups[0]["lr"]


def test_cosine_defaults_to_the_run_length():
    values, final = lrs("cosine", 10)
    assert values[0] == pytest.approx(1.0)
    assert values[5] == pytest.approx(0.5)  # cos(pi/2) midpoint
    assert final == pytest.approx(0.0, abs=1e-12)
    values, _ = lrs({"name": "cosine", "t_max": 4, "eta_min": 0.1}, 5)
    assert values[4] == pytest.approx(0.1)


def test_step_and_multistep_decay():
    values, _ = lrs({"name": "step", "step_size": 3, "gamma": 0.5}, 7)
    assert values == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25])
    values, _ = lrs({"name": "step", "milestones": [2, 5], "gamma": 0.1}, 6)
    assert values == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01])


def test_as_scheme_wraps_build_callables_and_passes_schemes_through():
    build = harness.create("optimizers", "sgd")
    assert isinstance(as_scheme(build), PlainScheme)
    sam = harness.create("optimizers", "sam")
    assert as_scheme(sam) is sam
    with pytest.raises(TypeError):
        as_scheme(42)


def test_plain_scheme_passes_index_and_epoch_to_the_loss():
    seen = {}

    def loss(logits, y, **extras):
        seen.update(extras)
        return F.cross_entropy(logits, y)

    X, y = separable_data(40)
    scheme = as_scheme(harness.create("optimizers", "sgd"))
    scheme.setup(mlp(), loss, info_for(X, y, 1, 40))
    idx = torch.arange(40)
    scheme.step({"x": X, "y": y, "index": idx, "epoch": 3})
    assert seen["epoch"] == 3 and torch.equal(seen["index"], idx)


class CountingScheme(PlainScheme):
    """sgd that counts its steps and setups."""

    def __init__(self):
        super().__init__(harness.create("optimizers", {"name": "sgd", "lr": 0.05}))
        self.steps = self.setups = 0

    def setup(self, model, loss_fn, info):
        super().setup(model, loss_fn, info)
        self.setups += 1

    def step(self, batch):
        self.steps += 1
        return super().step(batch)


def test_useful_probes_in_setup_then_retrains_from_scratch_with_the_full_schedule():
    X, y = separable_data(300)
    model = mlp()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    inner = CountingScheme()
    scheme = Useful(inner, t_frac=0.2, factor=3, k=2)
    epochs = 10
    scheme.setup(model, ce, info_for(X, y, epochs, 32))
    # the probe: t_frac * epochs = 2 epochs of ceil(300 / 32) = 10 steps, then a fresh inner
    assert inner.steps == 20 and inner.setups == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, initial[k]), k
    assert len(scheme.optimizer.state) == 0  # momentum buffers forgotten
    slow = scheme.upsampled
    assert 0 < len(slow) < 300 and len(torch.unique(slow)) == len(slow)
    gen = torch.Generator().manual_seed(0)
    counts = torch.bincount(scheme.epoch_order(0, gen), minlength=300)
    expected = torch.ones(300, dtype=torch.long)
    expected[slow] = 3
    assert torch.equal(counts, expected)  # upsampled from the first loop epoch on
    # a scheduler the loop builds after setup runs the whole schedule on the retraining
    sched = harness.create("schedulers", "cosine")(scheme.optimizer, epochs)
    lrs_seen = []
    for _ in range(epochs):
        lrs_seen.append(scheme.optimizer.param_groups[0]["lr"])
        scheme.optimizer.step()
        sched.step()
    assert lrs_seen[0] == pytest.approx(0.05) and lrs_seen[5] == pytest.approx(0.025)
    assert scheme.extra_metrics() == {"useful_upsampled": float(len(slow))}


def test_useful_states_its_budget_in_its_listing():
    desc = harness.components("optimizers")["useful"].description
    assert "(1 + t_frac) x epochs" in desc


def test_useful_slow_cluster_is_the_higher_loss_cluster():
    # two clusters per class in logit space: one learned (big margin), one not
    torch.manual_seed(0)
    n = 200
    y = torch.arange(n) % 2
    hard = torch.arange(n) >= 150
    X = torch.zeros(n, 2)
    X[torch.arange(n), y] = torch.where(hard, -1.0, 5.0)  # hard samples: wrong-side logits
    X = X + 0.1 * torch.randn(n, 2)
    model = torch.nn.Identity()
    model.register_parameter("dummy", torch.nn.Parameter(torch.zeros(1)))
    scheme = Useful(as_scheme(harness.create("optimizers", "sgd")), 0.1, 2, 2)
    scheme.model, scheme.info = model, info_for(X, y, 10, 32)
    slow = scheme.slow_samples()
    assert set(slow.tolist()) == set(torch.nonzero(hard).flatten().tolist())
