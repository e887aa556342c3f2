"""GroCo: group ordering constraints through a differentiable sorting network
(Shvetsova, Petersen, Kukleva, Schiele, Kuehne; "Learning by Sorting:
Self-supervised Learning with Group Ordering Constraints", ICCV 2023).

For each anchor (each view of each sample in turn) the loss builds a
pre-ordered group of similarities: its ``topk_neg`` most similar negatives
(the other samples of the anchor's own view), ascending, then its positives
(the other views of the sample; one with two views), ascending.  The target
order puts every positive above every negative.  The relaxed sorting
network (:mod:`harness_plugins.representation.sorting`) gives the relaxed
permutation ``P``; the probability that input ``i`` lands among the top
``n_pos`` positions (the positives' ranks) is ``sum_{j >= k} P[i, j]``, and
the loss is the binary cross-entropy of these group memberships against the
target (1 for positives, 0 for negatives), averaged with the same for the
negatives' ranks, as in the authors' code (github.com/ninatu/
learning_by_sorting, ``losses/groco.py``; read, not copied).  As there,
similarities to the positives and negatives are taken with ``stop_grad``
(only the anchor gets a gradient) by default, the network is ``odd_even``
with the ``cauchy`` relaxation at steepness 1, and ``topk_neg = 10``.

With ``topk_neg = 1`` and one positive the network is one comparator and the
loss is ``-log f(s_pos - s_hardest_neg)`` per anchor, averaged.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import FromData


def _groco_module():
    import torch
    import torch.nn.functional as F

    from harness_plugins.representation.sorting import relaxed_sort

    class GroCo(torch.nn.Module):
        """Group ordering constraints on (hardest negatives, positive) groups."""

        def __init__(self, topk_neg: int, steepness: float, network: str, distribution: str,
                     stop_grad: bool):
            super().__init__()
            self.topk_neg, self.steepness = topk_neg, steepness
            self.network, self.distribution, self.stop_grad = network, distribution, stop_grad
            #: a batch must hold topk_neg negatives besides the anchor
            self.min_batch = topk_neg + 1

        def _anchor_loss(self, anchor, other):
            b, k = len(anchor), self.topk_neg
            if b - 1 < k:
                from harness import UserError

                raise UserError(f"groco needs batches of at least topk_neg + 1 = {k + 1} "
                                f"samples, got {b}")
            keep = (lambda t: t.detach()) if self.stop_grad else (lambda t: t)
            pos = (anchor * keep(other)).sum(1, keepdim=True)
            neg = anchor @ keep(anchor).T
            neg = neg.masked_fill(torch.eye(b, dtype=torch.bool, device=anchor.device),
                                  float("-inf"))
            neg = neg.topk(k, dim=1).values.flip(1)  # ascending
            sims = torch.cat([neg, pos], dim=1)
            _, perm = relaxed_sort(sims, self.network, self.steepness, self.distribution)
            to_neg = perm[:, :, :k].sum(2).clamp(0, 1)
            to_pos = perm[:, :, k:].sum(2).clamp(0, 1)
            is_pos = torch.zeros_like(to_pos)
            is_pos[:, k:] = 1
            return (F.binary_cross_entropy(to_pos, is_pos)
                    + F.binary_cross_entropy(to_neg, 1 - is_pos)) / 2

        def forward(self, z1, z2, index):
            a, b = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
            return (self._anchor_loss(a, b) + self._anchor_loss(b, a)) / 2

    return GroCo


def groco(n_samples: Annotated[int, FromData], topk_neg: Annotated[int, Field(ge=1)] = 10,
          steepness: Annotated[float, Field(gt=0)] = 1.0,
          network: Literal["odd_even", "bitonic"] = "odd_even",
          distribution: Literal["cauchy", "logistic", "logistic_phi"] = "cauchy",
          stop_grad: bool = True):
    """GroCo: positives sorted above the hardest negatives by a differentiable sorting network.

    Shvetsova et al., ICCV 2023; ``topk_neg`` hardest negatives per anchor,
    relaxed swaps ``f(steepness * (b - a))`` of ``distribution``."""
    return _groco_module()(topk_neg, steepness, network, distribution, stop_grad)
