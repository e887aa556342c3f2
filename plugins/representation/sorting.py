"""Differentiable sorting networks (Petersen et al., ICML 2021 and ICLR 2022).

A sorting network is a fixed sequence of layers of comparators ``(lo, hi)``
that sorts any input ascending when each comparator puts the smaller value on
wire ``lo`` and the larger on ``hi``.  The relaxed network replaces each hard
swap by a mix: with ``alpha = f(b - a)`` (``a`` on ``lo``, ``b`` on ``hi``,
``f`` a sigmoid-shaped CDF, 1/2 at 0),

    lo <- alpha a + (1 - alpha) b,    hi <- (1 - alpha) a + alpha b,

and the same mix of columns of a running permutation matrix ``P`` (identity
at the start), so ``P[i, j]`` is the relaxed probability that input ``i``
ends at position ``j`` (ascending).  Every layer multiplies ``P`` by a doubly
stochastic matrix, so ``P`` stays doubly stochastic; as the steepness grows
it becomes the hard permutation that sorts the input.

``f``: ``logistic`` (``sigmoid(s x)``), ``logistic_phi`` (``sigmoid(s x /
|x|^lambda)``, lambda = 0.25) and ``cauchy`` (``atan(s x) / pi + 1/2``, the
monotonic relaxation GroCo uses).  Networks: ``odd_even`` (odd-even
transposition, ``n`` layers, any ``n``) and ``bitonic`` (``log2 N (log2 N +
1) / 2`` layers; an ``n`` that is not a power of two is padded with wires
that hold +infinity, compared by hard swaps only and dropped at the end).
The matrices follow diffsort's layout (github.com/Felix-Petersen/diffsort);
the code is written here.
"""

from __future__ import annotations

import math
from functools import lru_cache

NETWORKS = ("odd_even", "bitonic")
DISTRIBUTIONS = ("logistic", "logistic_phi", "cauchy")


@lru_cache(maxsize=64)
def sorting_network(kind: str, n: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The comparator layers ``((lo, hi), ...)`` of network ``kind`` on ``n``
    wires (``bitonic``: on ``n`` rounded up to a power of two)."""
    if n < 1:
        raise ValueError(f"a sorting network needs at least one wire, not {n}")
    if kind == "odd_even":
        return tuple(tuple((i, i + 1) for i in range(layer % 2, n - 1, 2)) for layer in range(n))
    if kind == "bitonic":
        size = 1 << max(0, math.ceil(math.log2(n)))
        layers = []
        k = 2
        while k <= size:
            j = k // 2
            while j >= 1:
                layer = []
                for i in range(size):
                    partner = i ^ j
                    if partner > i:
                        # blocks with bit k set sort descending, so merges see bitonic input
                        layer.append((i, partner) if i & k == 0 else (partner, i))
                layers.append(tuple(layer))
                j //= 2
            k *= 2
        return tuple(layers)
    raise ValueError(f"unknown sorting network {kind!r}; known: {', '.join(NETWORKS)}")


def swap_probability(diff, steepness: float, distribution: str, art_lambda: float = 0.25):
    """``alpha = f(b - a)``: the relaxed probability that a comparator keeps
    ``a`` on its lower wire."""
    import torch

    if distribution == "logistic":
        return torch.sigmoid(steepness * diff)
    if distribution == "logistic_phi":
        return torch.sigmoid(steepness * diff / (diff.abs() + 1e-10) ** art_lambda)
    if distribution == "cauchy":
        return torch.atan(steepness * diff) / math.pi + 0.5
    raise ValueError(f"unknown swap distribution {distribution!r}; known: "
                     f"{', '.join(DISTRIBUTIONS)}")


@lru_cache(maxsize=64)
def _partners(network: str, n: int) -> tuple[int, tuple[tuple[tuple[int, ...], tuple[int, ...]],
                                                         ...]]:
    """Per layer, each wire's partner (itself when it is not compared) and
    +1 on a comparator's lower wire, -1 on its upper one, 0 elsewhere."""
    layers = [layer for layer in sorting_network(network, n) if layer]
    size = max([n, *(hi + 1 for layer in layers for _, hi in layer),
                *(lo + 1 for layer in layers for lo, _ in layer)])
    out = []
    for layer in layers:
        partner, sign = list(range(size)), [0] * size
        for lo, hi in layer:
            partner[lo], partner[hi], sign[lo], sign[hi] = hi, lo, 1, -1
        out.append((tuple(partner), tuple(sign)))
    return size, tuple(out)


def relaxed_sort(x, network: str = "odd_even", steepness: float = 10.0,
                 distribution: str = "cauchy"):
    """Sort the rows of ``x`` ``(B, n)`` ascending through the relaxed network.

    Returns ``(sorted values (B, n), P (B, n, n))`` with ``P[b, i, j]`` the
    relaxed probability that ``x[b, i]`` lands at position ``j``; ``sorted =
    (x[:, None, :] @ P)[:, 0]``.

    Both wires of a comparator get the same ``alpha`` and the same update
    ``v <- alpha v + (1 - alpha) v_partner`` (the lower wire's ``a`` is its own
    value, the upper wire's ``b`` too), so a layer is one gather of each
    wire's partner; a wire outside every comparator is its own partner."""
    import torch

    b, n = x.shape
    size, layers = _partners(network, n)
    values = torch.zeros(b, size, dtype=x.dtype, device=x.device)
    values[:, :n] = x
    perm = torch.eye(size, dtype=x.dtype, device=x.device).repeat(b, 1, 1)
    pad = torch.zeros(b, size, dtype=torch.bool, device=x.device)
    pad[:, n:] = True
    for partner_list, sign_list in layers:
        partner = torch.tensor(partner_list, dtype=torch.long, device=x.device)
        sign = torch.tensor(sign_list, dtype=x.dtype, device=x.device)
        other = values[:, partner]
        # b - a seen from either wire of a comparator (0 on a wire left alone)
        alpha = swap_probability(sign * (other - values), steepness, distribution)
        if size > n:
            lower = sign >= 0
            pad_other = pad[:, partner]
            pad_lo = torch.where(lower, pad, pad_other)
            pad_hi = torch.where(lower, pad_other, pad)
            # a padding wire is +infinity: it always goes up, by a hard swap
            hard = (~pad_lo | pad_hi).to(x.dtype)
            alpha = torch.where(pad_lo | pad_hi, hard, alpha)
            pad = torch.where(lower, pad_lo & pad_hi, pad_lo | pad_hi)
        values = alpha * values + (1 - alpha) * other
        w = alpha[:, None, :]
        perm = w * perm + (1 - w) * perm[:, :, partner]
    return values[:, :n], perm[:, :n, :n]
