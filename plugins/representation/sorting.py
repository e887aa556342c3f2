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


def relaxed_sort(x, network: str = "odd_even", steepness: float = 10.0,
                 distribution: str = "cauchy"):
    """Sort the rows of ``x`` ``(B, n)`` ascending through the relaxed network.

    Returns ``(sorted values (B, n), P (B, n, n))`` with ``P[b, i, j]`` the
    relaxed probability that ``x[b, i]`` lands at position ``j``, so
    ``sorted ~= x[:, None, :] @ P`` (exact: ``sorted = (x[:, None, :] @
    P)[:, 0]``)."""
    import torch

    b, n = x.shape
    layers = sorting_network(network, n)
    size = max((max(hi, lo) for layer in layers for lo, hi in layer), default=0) + 1
    size = max(size, n)
    values = torch.zeros(b, size, dtype=x.dtype, device=x.device)
    values[:, :n] = x
    perm = torch.eye(size, dtype=x.dtype, device=x.device).repeat(b, 1, 1)
    pad = torch.zeros(b, size, dtype=torch.bool, device=x.device)
    pad[:, n:] = True
    for layer in layers:
        if not layer:  # odd-even on two wires: the second layer compares nothing
            continue
        lo = torch.tensor([c[0] for c in layer], dtype=torch.long, device=x.device)
        hi = torch.tensor([c[1] for c in layer], dtype=torch.long, device=x.device)
        a, c = values[:, lo], values[:, hi]
        alpha = swap_probability(c - a, steepness, distribution)
        if size > n:
            pad_a, pad_c = pad[:, lo], pad[:, hi]
            # a padding wire is +infinity: it always goes up, by a hard swap
            hard = (~pad_a | pad_c).to(x.dtype)
            alpha = torch.where(pad_a | pad_c, hard, alpha)
            pad = pad.clone()
            pad[:, lo], pad[:, hi] = pad_a & pad_c, pad_a | pad_c
        new_values = values.clone()
        new_values[:, lo] = alpha * a + (1 - alpha) * c
        new_values[:, hi] = (1 - alpha) * a + alpha * c
        values = new_values
        pa, pc = perm[:, :, lo], perm[:, :, hi]
        w = alpha[:, None, :]
        new_perm = perm.clone()
        new_perm[:, :, lo] = w * pa + (1 - w) * pc
        new_perm[:, :, hi] = (1 - w) * pa + w * pc
        perm = new_perm
    return values[:, :n], perm[:, :n, :n]
