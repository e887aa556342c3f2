"""The contrastive losses and the differentiable sorting network against
hand-computed values and their special cases."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from harness_plugins.representation.groco import groco
from harness_plugins.representation.losses import infonce, isogclr, sogclr
from harness_plugins.representation.sorting import relaxed_sort, sorting_network

Z1 = [[1.0, 0.0], [0.6, 0.8], [0.0, -2.0]]
Z2 = [[0.8, 0.6], [0.0, 1.0], [-1.0, -1.0]]


def _unit(rows):
    return [[x / math.hypot(*r) for x in r] for r in rows]


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b))


def _views():
    return torch.tensor(Z1), torch.tensor(Z2), torch.arange(3)


def _negatives(anchors, others, i):
    """Anchor i's 2(B-1) negatives: the other samples of both views."""
    return [_cos(anchors[i], others[j]) for j in range(len(anchors)) if j != i] + \
           [_cos(anchors[i], anchors[j]) for j in range(len(anchors)) if j != i]


def _batch_gcl(z1, z2, tau):
    """Hand-computed batch global contrastive loss: per anchor, per view,
    tau log mean_j exp(s_j / tau) - s_pos; summed over views, mean over anchors."""
    a, b = _unit(z1), _unit(z2)
    total = 0.0
    for anchors, others in ((a, b), (b, a)):
        for i in range(len(a)):
            negs = _negatives(anchors, others, i)
            u = sum(math.exp(s / tau) for s in negs) / len(negs)
            total += tau * math.log(u) - _cos(anchors[i], others[i])
    return total / len(a)


def test_infonce_is_nt_xent_by_hand():
    tau = 0.5
    rows = _unit(Z1) + _unit(Z2)
    n, b = len(rows), len(Z1)
    expected = 0.0
    for k in range(n):
        pos = (k + b) % n
        den = sum(math.exp(_cos(rows[k], rows[j]) / tau) for j in range(n) if j != k)
        expected += -math.log(math.exp(_cos(rows[k], rows[pos]) / tau) / den)
    z1, z2, idx = _views()
    assert infonce(3, tau=tau)(z1, z2, idx).item() == pytest.approx(expected / n, rel=1e-5)


def test_sogclr_first_batch_is_the_batch_global_loss():
    z1, z2, idx = _views()
    loss = sogclr(3, tau=0.2, gamma=0.3)
    assert loss(z1, z2, idx).item() == pytest.approx(_batch_gcl(Z1, Z2, 0.2), rel=1e-5)


def _gcl_torch(z1, z2, tau):
    """The batch global contrastive loss written with logsumexp, for its gradient."""
    import torch.nn.functional as F

    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = len(a)
    eye = torch.eye(n, dtype=torch.bool)
    total = 0
    for x, y in ((a, b), (b, a)):
        neg = torch.cat([(x @ y.T).masked_fill(eye, -torch.inf),
                         (x @ x.T).masked_fill(eye, -torch.inf)], 1)
        lse = torch.logsumexp(neg / tau, 1) - math.log(2 * (n - 1))
        total = total + tau * lse - (x * y).sum(1)
    return total.mean()


def test_sogclr_with_gamma_one_is_the_batch_loss_value_and_gradient():
    loss = sogclr(3, tau=0.2, gamma=1.0)
    z1, z2, idx = _views()
    loss(z1, z2, idx)  # fills the moving averages
    g = torch.Generator().manual_seed(0)
    y1 = torch.randn(3, 2, generator=g, requires_grad=True)
    y2 = torch.randn(3, 2, generator=g, requires_grad=True)
    value = loss(y1, y2, idx)
    value.backward()
    ref = [t.detach().clone().requires_grad_() for t in (y1, y2)]
    expected = _gcl_torch(*ref, 0.2)
    expected.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(y1.grad, ref[0].grad, atol=1e-5)
    assert torch.allclose(y2.grad, ref[1].grad, atol=1e-5)


def test_sogclr_moving_average_by_hand():
    tau, gamma = 0.2, 0.25
    loss = sogclr(3, tau=tau, gamma=gamma)
    z1, z2, idx = _views()
    loss(z1, z2, idx)
    # the stored u_i is the mean of the two views' batch estimates
    a, b = _unit(Z1), _unit(Z2)

    def batch_u(anchors, others, i):
        negs = _negatives(anchors, others, i)
        return sum(math.exp(s / tau) for s in negs) / len(negs)

    u0 = [(batch_u(a, b, i) + batch_u(b, a, i)) / 2 for i in range(3)]
    assert loss.u.tolist() == pytest.approx(u0, rel=1e-5)
    # second step on swapped views: u <- (1 - gamma) u + gamma * batch estimate
    value = loss(z2, z1, idx).item()
    expected = 0.0
    for anchors, others in ((b, a), (a, b)):
        for i in range(3):
            u = (1 - gamma) * u0[i] + gamma * batch_u(anchors, others, i)
            expected += tau * math.log(u) - _cos(anchors[i], others[i])
    assert value == pytest.approx(expected / 3, rel=1e-5)


def test_isogclr_with_frozen_equal_temperatures_is_sogclr():
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g),
                torch.randperm(6, generator=g)[:4]) for _ in range(3)]
    frozen, plain = isogclr(6, tau=0.3, gamma=0.5, eta=0.0, rho=0.0), sogclr(6, tau=0.3,
                                                                              gamma=0.5)
    for x1, x2, idx in batches:
        grads = []
        for loss in (frozen, plain):
            y1, y2 = x1.clone().requires_grad_(), x2.clone().requires_grad_()
            value = loss(y1, y2, idx)
            value.backward()
            grads.append((value.item(), y1.grad, y2.grad))
        assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
        assert torch.equal(grads[0][1], grads[1][1]) and torch.equal(grads[0][2], grads[1][2])
    assert torch.equal(frozen.u, plain.u)
    assert torch.all(frozen.temperatures() == 0.3)


def test_isogclr_temperature_step_by_hand():
    tau, rho, eta, beta = 0.2, 0.3, 0.05, 0.9
    loss = isogclr(3, tau=tau, gamma=0.9, rho=rho, eta=eta, beta=beta, tau_min=0.05,
                   tau_max=0.7)
    z1, z2, idx = _views()
    value = loss(z1, z2, idx).item()
    a, b = _unit(Z1), _unit(Z2)
    expected_tau, expected_value = [], 0.0
    for i in range(3):
        grads = []
        for anchors, others in ((a, b), (b, a)):
            negs = _negatives(anchors, others, i)
            u = sum(math.exp(s / tau) for s in negs) / len(negs)
            p = [math.exp(s / tau) / u for s in negs]
            grads.append(math.log(u) + rho - sum(pj * s / tau for pj, s in zip(p, negs))
                         / len(negs))
            expected_value += tau * math.log(u) - _cos(anchors[i], others[i]) + rho * tau
        m = beta * (grads[0] + grads[1]) / 2  # the moving average starts at 0
        expected_tau.append(min(max(tau - eta * m, 0.05), 0.7))
    assert value == pytest.approx(expected_value / 3, rel=1e-5)
    assert loss.temperatures().tolist() == pytest.approx(expected_tau, rel=1e-5)
    assert loss.temperatures().tolist() != pytest.approx([tau] * 3)


def test_isogclr_rejects_an_initial_tau_outside_its_bounds():
    with pytest.raises(ValueError, match="tau_min, tau_max"):
        isogclr(3, tau=0.01 + 0.02, tau_min=0.05)


def test_groco_with_one_negative_is_minus_log_cauchy_by_hand():
    steep = 2.0
    loss = groco(3, topk_neg=1, steepness=steep)
    z1, z2, idx = _views()
    a, b = _unit(Z1), _unit(Z2)
    expected = []
    for anchors, others in ((a, b), (b, a)):
        for i in range(3):
            pos = _cos(anchors[i], others[i])
            hardest = max(_cos(anchors[i], anchors[j]) for j in range(3) if j != i)
            expected.append(-math.log(math.atan(steep * (pos - hardest)) / math.pi + 0.5))
    assert loss(z1, z2, idx).item() == pytest.approx(sum(expected) / 6, rel=1e-5)


def test_groco_needs_topk_negatives_in_the_batch():
    from harness import UserError

    z1, z2, idx = _views()
    with pytest.raises(UserError, match="at least topk_neg"):
        groco(3, topk_neg=3)(z1, z2, idx)


@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_networks_sort_every_zero_one_sequence(network, n):
    """The 0-1 principle: a comparator network sorting every 0/1 input sorts everything."""
    layers = sorting_network(network, n)
    width = max(max(c) for layer in layers for c in layer) + 1
    for bits in itertools.product([0, 1], repeat=n):
        x = list(bits) + [2] * (width - n)  # padding wires hold +infinity
        for layer in layers:
            for lo, hi in layer:
                x[lo], x[hi] = min(x[lo], x[hi]), max(x[lo], x[hi])
        assert x[:n] == sorted(bits)


@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
@pytest.mark.parametrize("distribution", ["cauchy", "logistic", "logistic_phi"])
def test_sorted_input_gives_the_identity_permutation(network, distribution):
    x = torch.tensor([[-0.9, -0.5, 0.1, 0.3, 0.7, 0.95]])
    _, perm = relaxed_sort(x, network, steepness=1e4, distribution=distribution)
    assert torch.allclose(perm[0], torch.eye(6), atol=1e-3)
    # relaxed, the sorted input still puts most of each element's mass in its own place
    _, soft = relaxed_sort(x, network, steepness=30.0, distribution=distribution)
    assert torch.equal(soft[0].argmax(1), torch.arange(6))
    assert torch.equal(soft[0].argmax(0), torch.arange(6))


@pytest.mark.parametrize("network,n", [("odd_even", 5), ("bitonic", 5), ("bitonic", 8),
                                       ("odd_even", 11)])
def test_relaxed_permutation_is_doubly_stochastic_and_consistent(network, n):
    x = torch.randn(4, n, generator=torch.Generator().manual_seed(n))
    values, perm = relaxed_sort(x, network, steepness=3.0, distribution="cauchy")
    assert torch.allclose(perm.sum(1), torch.ones(4, n), atol=1e-5)
    assert torch.allclose(perm.sum(2), torch.ones(4, n), atol=1e-5)
    assert (perm >= 0).all()
    assert torch.allclose((x[:, None, :] @ perm)[:, 0], values, atol=1e-5)
    hard_values, hard = relaxed_sort(x, network, steepness=1e6, distribution="logistic")
    assert torch.allclose(hard_values, x.sort(1).values, atol=1e-4)
    assert torch.equal(hard.argmax(1), x.argsort(1))
