"""NAS library: spaces, supernet, search strategies' extra terms, selectors, ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness_plugins.nas import ground_truth, ops, search, selectors, spaces
from harness_plugins.nas.supernet import clone_supernet, derive


def _one_hot(space, genotype):
    w = torch.zeros(len(space.edges), len(space.ops))
    for e, op in enumerate(genotype):
        w[e, space.ops.index(op)] = 1.0
    return w


def _job(space, net, rng=0, accuracy=None, fine_tune=None, logged=None, alpha_accuracy=None,
         search_epochs=None, start_tuning=None):
    return selectors.SelectionJob(
        space=space, supernet=net, rng=np.random.default_rng(rng),
        accuracy=accuracy or (lambda: 0.0), fine_tune=fine_tune or (lambda epochs: None),
        log=(lambda v, s: logged.append(v)) if logged is not None else (lambda v, s: None),
        alpha_accuracy=alpha_accuracy or accuracy or (lambda: 0.0),
        search_epochs=search_epochs or (lambda epochs: None),
        start_tuning=start_tuning or (lambda factor: None))


def test_op_vocabulary_is_what_ops_builds():
    for name in spaces.OP_NAMES:
        x = torch.randn(2, 3, 5, 5)
        assert ops.build_op(name, 3)(x).shape == x.shape
    assert torch.equal(ops.build_op("none", 3)(x), torch.zeros_like(x))


@pytest.mark.parametrize("space", [spaces.tiny(channels=4),
                                   spaces.nb201(channels=4, cells=1, stages=2),
                                   spaces.skip_trap(channels=4, cells=1, stages=1)])
@pytest.mark.parametrize("train_mode", [True, False])
def test_one_hot_supernet_equals_discrete_network(space, train_mode):
    torch.manual_seed(0)
    net = space.build((1, 8, 8), 10)
    x = torch.randn(6, 1, 8, 8)
    net.train()
    net(x)  # move the BN running averages off their initial values
    rng = np.random.default_rng(1)
    for genotype in [space.all_genotypes()[int(i)] for i in rng.integers(space.size, size=4)]:
        discrete = derive(net, genotype)
        net.train(train_mode)
        discrete.train(train_mode)
        got = net(x, _one_hot(space, genotype))
        want = discrete(x)
        assert torch.allclose(got, want, atol=1e-6), space.format(genotype)
        # another op on the input->output edge gives another function (the check can fail)
        e = space.edges.index((0, space.nodes - 1))
        other = list(genotype)
        other[e] = space.ops[(space.ops.index(genotype[e]) + 1) % len(space.ops)]
        assert not torch.allclose(net(x, _one_hot(space, other)), want, atol=1e-4)


def test_genotype_string_round_trip_and_index():
    space = spaces.nb201()
    g = ("conv3x3", "skip", "conv1x1", "none", "avgpool3", "conv3x3")
    text = space.format(g)
    assert text == "|conv3x3~0|+|skip~0|conv1x1~1|+|none~0|avgpool3~1|conv3x3~2|"
    assert space.parse(text) == g
    assert space.parse(list(g)) == g
    tiny = spaces.tiny()
    assert tiny.size == 27
    assert [tiny.index(g) for g in tiny.all_genotypes()] == list(range(27))
    # mixed radix: (skip, conv3x3, avgpool3) -> 0 * 9 + 1 * 3 + 2
    assert tiny.index(("skip", "conv3x3", "avgpool3")) == 5


def test_skip_trap_cell_has_its_four_edges():
    space = spaces.skip_trap()
    assert space.edges == ((0, 1), (1, 2), (2, 3), (0, 3)) and space.size == 5 ** 4
    g = ("conv3x3", "skip", "none", "avgpool3")
    # node 3 takes node 2 and the input; nothing else reaches it
    assert space.format(g) == "|conv3x3~0|+|skip~1|+|none~2|avgpool3~0|"
    assert space.parse(space.format(g)) == g
    with pytest.raises(ValueError, match="node 2's edge 0 must come from node 1"):
        space.parse("|conv3x3~0|+|skip~0|+|none~2|avgpool3~0|")
    with pytest.raises(ValueError, match="genotype node 2 has 2 inputs; it needs 1"):
        space.parse("|conv3x3~0|+|skip~1|skip~0|+|none~2|avgpool3~0|")
    # the supernet's cell wires exactly these edges
    net = spaces.skip_trap(channels=4, cells=1, stages=1).build((1, 8, 8), 3)
    cells = [m for m in net.modules() if type(m).__name__ == "Cell"]
    assert cells and all(c.edges == space.edges for c in cells)


@pytest.mark.parametrize("genotype, message", [
    (["skip", "conv3x3"], "genotype has 2 edges; space 'tiny' has 3"),
    (["skip", "conv3x3", "conv5x5"], "operation 'conv5x5' is not in space 'tiny'"),
    ("|skip~0|+|skip~0|skip~1|+|skip~0|skip~1|skip~2|", "genotype has 4 nodes; the space has 3"),
    ("|skip~0|+|skip~1|skip~0|", "node 2's edge 0 must come from node 0"),
])
def test_bad_genotypes_are_named(genotype, message):
    with pytest.raises(ValueError, match=message.replace("|", r"\|")):
        spaces.tiny().parse(genotype)


def test_unknown_op_in_space():
    with pytest.raises(ValueError, match="unknown operation 'sepconv'"):
        spaces.tiny(ops=["skip", "sepconv"])
    assert spaces.tiny(nodes=4, ops=["skip", "conv3x3"]).size == 2 ** 6


def test_magnitude_picks_argmax_of_hand_set_alphas():
    space = spaces.tiny()
    net = space.build((1, 8, 8), 3)
    with torch.no_grad():
        net.alphas.copy_(torch.tensor([[0.1, 0.5, 0.2],    # conv3x3
                                       [2.0, -1.0, 1.9],   # skip
                                       [0.0, 0.0, 0.3]]))  # avgpool3
    assert selectors.magnitude().select(_job(space, net)) == ("conv3x3", "skip", "avgpool3")


def test_perturbation_keeps_the_op_whose_mask_hurts_most_stub():
    """Accuracy as a function of the mask state: edge 0 needs op 2, edge 1 op 0,
    edge 2 op 1; alpha says otherwise everywhere."""
    space = spaces.tiny()
    net = space.build((1, 8, 8), 3)
    with torch.no_grad():
        net.alphas.copy_(torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [3.0, 0, 0]]))
    needed = {0: 2, 1: 0, 2: 1}

    def accuracy():
        if net._masked is None:
            return 0.9
        e, k = net._masked
        return 0.2 if needed[e] == k else 0.85 - 0.01 * k

    # the official procedure by default: masks scored on the alpha half of the
    # train split, search epochs (alpha trains too) after one fresh optimizer at lr/10
    searched, frozen, fresh, logged = [], [], [], []
    job = _job(space, net, accuracy=lambda: 0.0, alpha_accuracy=accuracy,
               fine_tune=frozen.append, search_epochs=searched.append,
               start_tuning=fresh.append, logged=logged)
    got = selectors.perturbation(tune_epochs=3).select(job)
    assert got == ("avgpool3", "skip", "conv3x3")
    assert selectors.magnitude().select(_job(space, net)) == got  # projected edges now rule
    assert searched == [3, 3] and frozen == []  # between decisions, not after the last
    assert fresh == [0.1]
    assert sorted(v["select/edge"] for v in logged) == [0, 1, 2]
    assert all(v["select/drop"] == pytest.approx(0.7) for v in logged)
    # the earlier harness procedure stays available
    net.projected.clear()
    searched, frozen, fresh = [], [], []
    job = _job(space, net, accuracy=accuracy, alpha_accuracy=lambda: 0.0,
               fine_tune=frozen.append, search_epochs=searched.append, start_tuning=fresh.append)
    legacy = selectors.perturbation(tune_epochs=2, tune_alpha=False, tune_lr_factor=None,
                                    score_split="val")
    assert legacy.select(job) == got
    assert frozen == [2, 2] and searched == [] and fresh == []


def test_perturbation_on_a_hand_built_supernet():
    """One edge with ops (none, skip) and alpha favouring none: the label is in
    the input, so only masking skip destroys accuracy.  Magnitude keeps none."""
    torch.manual_seed(0)
    space = spaces.tiny(nodes=2, ops=["none", "skip"], channels=4, stages=1)
    net = space.build((1, 4, 4), 2)
    with torch.no_grad():
        net.alphas.copy_(torch.tensor([[1.0, 0.0]]))
    y = torch.arange(128) % 2
    X = torch.randn(128, 1, 4, 4) * 0.3 + (2.0 * y - 1.0)[:, None, None, None]
    strategy = search.darts()
    strategy.setup(net, epochs=1)
    for _ in range(60):
        strategy.tune_step((X, y))
    from harness_plugins.nas.loop import supernet_accuracy

    acc = lambda: supernet_accuracy(net, X, y)  # noqa: E731
    assert acc() > 0.95
    with net.masked(0, 1):
        assert acc() < 0.7
    assert selectors.magnitude().select(_job(space, net)) == ("none",)
    assert selectors.perturbation(tune_epochs=0).select(_job(space, net, accuracy=acc)) == (
        "skip",)


def test_darts_pt_tuning_fresh_sgd_at_a_tenth_and_alpha_keeps_training():
    """DARTS-PT's projection phase (ruocwang/darts-pt, nasbench201/projection.py):
    reset_optimizer(lr / 10) once, then search steps that update alpha too."""
    from harness_plugins.nas.loop import fine_tune, train_supernet

    torch.manual_seed(0)
    space = spaces.tiny(nodes=2, ops=["none", "skip", "conv3x3"], channels=4, stages=1)
    net = space.build((1, 4, 4), 2)
    y = torch.arange(64) % 2
    X = torch.randn(64, 1, 4, 4) * 0.3 + (2.0 * y - 1.0)[:, None, None, None]
    strategy = search.darts()
    strategy.setup(net, epochs=3)
    gen = torch.Generator().manual_seed(0)
    train_supernet(strategy, net, (X[:32], y[:32]), (X[32:], y[32:]), 3, 16, gen,
                   lambda e, loss: None)
    assert strategy.w_opt.param_groups[0]["lr"] == pytest.approx(0.001)  # cosine at its end
    assert any(strategy.w_opt.state[p] for p in net.weight_parameters())
    strategy.start_tuning(0.1)
    group = strategy.w_opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.0025) and group["momentum"] == 0.9
    assert group["weight_decay"] == pytest.approx(3e-4)
    assert not any(strategy.w_opt.state[p] for p in net.weight_parameters())  # no momentum
    before = net.alphas.detach().clone()
    fine_tune(strategy, net, (X[:32], y[:32]), 1, 16, gen)
    assert torch.equal(net.alphas, before)  # weight steps alone leave alpha
    train_supernet(strategy, net, (X[:32], y[:32]), (X[32:], y[32:]), 2, 16, gen,
                   lambda e, loss: None)
    assert not torch.equal(net.alphas, before)  # search epochs train alpha too
    assert strategy.w_opt.param_groups[0]["lr"] == pytest.approx(0.0025)  # constant


def test_rarts_tuning_resets_both_weight_copies():
    space = spaces.tiny(nodes=2, ops=["none", "skip"], channels=4, stages=1)
    net = space.build((1, 4, 4), 2)
    strategy = search.rarts()
    strategy.setup(net, epochs=2)
    strategy.start_tuning(0.5)
    assert strategy.w_opt.param_groups[0]["lr"] == pytest.approx(0.0125)
    assert strategy.y_opt.param_groups[0]["lr"] == pytest.approx(0.0125)
    strategy.epoch_end(0)  # no schedule to step any more
    assert strategy.y_opt.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_random_selector_covers_the_space_reproducibly():
    space = spaces.tiny()
    sel = selectors.random()
    draws = [sel.select(_job(space, None, rng=s)) for s in range(200)]
    assert all(space.parse(d) == d for d in draws)
    assert len(set(draws)) > 20
    assert draws[:5] == [sel.select(_job(space, None, rng=s)) for s in range(5)]
    assert not sel.needs_supernet and selectors.perturbation().needs_supernet


def test_rarts_proximity_hand_computed():
    w = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    y = [torch.tensor([0.0, 4.0]), torch.tensor([[1.0]])]
    # (lam / 2) * ((1 + 4) + 4) with lam = 0.5
    assert float(search.proximity(w, y, 0.5)) == pytest.approx(0.25 * 9)


def test_rarts_objectives_on_a_tiny_net():
    torch.manual_seed(0)
    space = spaces.tiny(channels=2, nodes=2, ops=["skip", "conv1x1"], stages=1)
    net = space.build((1, 4, 4), 2)
    strat = search.rarts(beta=0.5, lam=2.0)
    strat.setup(net, epochs=1)
    with torch.no_grad():
        for p in strat.twin.weight_parameters():
            p.add_(0.1)
    assert strat.twin.alphas is net.alphas
    n = sum(p.numel() for p in net.weight_parameters())
    xb, yb = torch.randn(8, 1, 4, 4), torch.arange(8) % 2
    xv, yv = torch.randn(8, 1, 4, 4), torch.arange(8) % 2
    with torch.no_grad():
        ce_w = F.cross_entropy(net(xb), yb)
        ce_y = F.cross_entropy(strat.twin(xv), yv)
    prox = 0.5 * 2.0 * n * 0.1 ** 2
    assert float(strat.w_objective((xb, yb)).detach()) == pytest.approx(float(ce_w) + prox,
                                                                        rel=1e-5)
    assert float(strat.y_objective((xv, yv)).detach()) == pytest.approx(0.5 * float(ce_y) + prox,
                                                               rel=1e-5)
    assert float(strat.alpha_objective((xb, yb), (xv, yv)).detach()) == pytest.approx(
        float(ce_w) + 0.5 * float(ce_y), rel=1e-5)
    before = net.alphas.detach().clone()
    strat.step((xb, yb), (xv, yv))
    assert not torch.equal(before, net.alphas.detach())


def test_sd_darts_distillation_hand_computed():
    ln3 = math.log(3.0)
    student = torch.zeros(1, 2)
    # one teacher: T = softmax([2 ln 3, 0] / 2) = (3/4, 1/4), S = (1/2, 1/2)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    got = search.distillation(student, [torch.tensor([[2 * ln3, 0.0]])], tau=2.0, lam=0.5)
    assert float(got) == pytest.approx(0.5 * 4 * kl)
    # voting: T = mean((3/4, 1/4), (1/2, 1/2)) = (5/8, 3/8)
    kl2 = 0.625 * math.log(0.625 / 0.5) + 0.375 * math.log(0.375 / 0.5)
    got = search.distillation(student, [torch.tensor([[2 * ln3, 0.0]]), torch.zeros(1, 2)],
                              tau=2.0, lam=1.0)
    assert float(got) == pytest.approx(4 * kl2)


def test_sd_darts_keeps_the_last_k_steps_as_teachers():
    torch.manual_seed(0)
    space = spaces.tiny(channels=2, nodes=2, ops=["skip", "conv1x1"], stages=1)
    net = space.build((1, 4, 4), 2)
    strat = search.sd_darts(teachers=2, lam=1.0)
    strat.setup(net, epochs=1)
    batch = (torch.randn(8, 1, 4, 4), torch.arange(8) % 2)
    states = []
    for _ in range(3):
        strat.step(batch, batch)
        states.append(net.alphas.detach().clone())
    assert len(strat.snapshots) == 2
    assert torch.equal(strat.snapshots[0].alphas, states[1])
    assert torch.equal(strat.snapshots[1].alphas, states[2])
    # with teachers equal to the student the extra term is zero
    strat.snapshots = [clone_supernet(net)]
    net.eval()
    strat.snapshots[0].eval()
    assert float(strat.weight_loss(*batch).detach()) == pytest.approx(
        float(F.cross_entropy(net(batch[0]), batch[1])), abs=1e-6)


def test_second_order_darts_matches_exact_hypergradient():
    """The finite-difference Hessian-vector product of DARTS's unrolled step
    against the exact gradient through w' = w - xi (grad L_train + wd w)."""
    torch.manual_seed(0)
    space = spaces.tiny(channels=2, nodes=2, ops=["skip", "conv1x1", "avgpool3"], stages=1)
    net = space.build((1, 4, 4), 2).double()
    net.eval()  # fixed BN statistics: a smooth function of w and alpha
    xt, yt = torch.randn(16, 1, 4, 4, dtype=torch.float64), torch.arange(16) % 2
    xv, yv = torch.randn(16, 1, 4, 4, dtype=torch.float64), torch.arange(16) % 2
    strat = search.darts(order=2, w_lr=0.5, w_weight_decay=0.0)
    strat.fd_radius = 1e-4  # DARTS's 0.01 crosses ReLU kinks on a net this small
    strat.setup(net, epochs=1)
    strat._unrolled_alpha_grad((xt, yt), (xv, yv))
    approx = net.alphas.grad.clone()
    ws = net.weight_parameters()
    g = torch.autograd.grad(F.cross_entropy(net(xt), yt), ws, create_graph=True)
    unrolled = {name: p - 0.5 * gp for (name, p), gp in zip(
        [(n, p) for n, p in net.named_parameters() if n != "alphas"], g)}
    unrolled["alphas"] = net.alphas
    out = torch.func.functional_call(net, unrolled, (xv,))
    exact = torch.autograd.grad(F.cross_entropy(out, yv), net.alphas)[0]
    first = torch.autograd.grad(F.cross_entropy(net(xv), yv), net.alphas)[0]
    assert torch.allclose(approx, exact, rtol=1e-3, atol=1e-7)
    assert not torch.allclose(first, exact, rtol=1e-3, atol=1e-7)


def test_regret_and_rank_by_hand():
    acc = [0.5, 0.9, 0.7, 0.9]
    assert ground_truth.regret_and_rank(acc, 2) == (pytest.approx(0.2), 3)
    assert ground_truth.regret_and_rank(acc, 3) == (0.0, 1)
    assert ground_truth.regret_and_rank(acc, 0) == (pytest.approx(0.4), 4)


def test_build_table_trains_every_genotype_in_index_order():
    space = spaces.tiny(ops=["skip", "conv3x3"])
    seen = []

    def train(genotype):
        seen.append(genotype)
        return space.index(genotype) / 10, space.index(genotype) / 100

    table = ground_truth.build_table(space, train)
    assert seen == space.all_genotypes()
    assert table["test_accuracy"][5] == pytest.approx(0.05)
    assert table["val_accuracy"].shape == (8,)


def test_nas_cell_model_is_the_genotype_network():
    from harness.plugins import get_registry

    registry = get_registry()
    model = registry.create("models", {
        "name": "nas_cell", "space": {"name": "tiny", "channels": 4},
        "genotype": "|conv3x3~0|+|skip~0|avgpool3~1|"}, "model", in_shape=(1, 8, 8), n_classes=3)
    assert model.genotype == ("conv3x3", "skip", "avgpool3")
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="not in space 'tiny'"):
        registry.create("models", {"name": "nas_cell", "space": "tiny",
                                   "genotype": ["none", "skip", "skip"]},
                        "model", in_shape=(1, 8, 8), n_classes=3)


def test_sampled_ground_truth_trains_the_same_cells_for_every_seed():
    """``ground_truth_sample: N``: N cells drawn once (the same for every run
    seed), trained in index order, NaN for the rest."""
    space = spaces.tiny(ops=["skip", "conv3x3"])
    cells = ground_truth.sampled_cells(space.size, 5)
    assert cells == sorted(cells) and len(set(cells)) == 5
    assert cells == ground_truth.sampled_cells(space.size, 5)
    assert ground_truth.sampled_cells(space.size, 8) is None
    assert ground_truth.sampled_cells(space.size, None) is None
    seen = []

    def train(genotype):
        seen.append(space.index(genotype))
        return space.index(genotype) / 10, space.index(genotype) / 100

    table = ground_truth.build_table(space, train, cells=cells)
    assert seen == cells
    trained = ~np.isnan(table["test_accuracy"])
    assert np.flatnonzero(trained).tolist() == cells
    assert table["test_accuracy"][cells[0]] == pytest.approx(cells[0] / 100)


def test_regret_and_rank_among_sampled_cells():
    acc = [0.5, np.nan, 0.7, np.nan]
    # the selected cell is in the sample
    assert ground_truth.regret_and_rank(acc, 0) == (pytest.approx(0.2), 2)
    # not in the sample: its own accuracy joins the trained cells
    assert ground_truth.regret_and_rank(acc, 1, own=0.9) == (0.0, 1)
    assert ground_truth.regret_and_rank(acc, 3, own=0.6) == (pytest.approx(0.1), 2)


def test_val_test_agreement_is_kendalls_tau_of_the_trained_cells():
    table = {"val_accuracy": np.array([0.1, 0.2, np.nan, 0.3, 0.4]),
             "test_accuracy": np.array([0.2, 0.3, 0.9, 0.4, 0.5])}
    assert ground_truth.val_test_agreement(table) == pytest.approx(1.0)
    table["test_accuracy"] = np.array([0.5, 0.4, 0.9, 0.3, 0.2])
    assert ground_truth.val_test_agreement(table) == pytest.approx(-1.0)
