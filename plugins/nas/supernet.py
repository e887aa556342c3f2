"""The cell network: a supernet with mixed ops and architecture weights
alpha, or the discrete network of one genotype.

Macro structure (NAS-Bench-201's): a 3x3 conv stem, ``stages`` stages of
``cells`` cells with a residual reduction (half resolution, double channels)
between stages, then BN-ReLU, global average pooling and a linear classifier.
All cells share one alpha of shape ``(edges, ops)`` (one cell type, as in
NAS-Bench-201).

The supernet's edge weights are ``softmax(alpha)`` per edge, except on edges
a selector has *projected* to one op (DARTS-PT), which carry that op alone,
and for ops *masked* during a perturbation test, whose weight is zero (not
renormalised, as in DARTS-PT).  Imported lazily (needs torch).
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from harness_plugins.nas.ops import ResidualReduction, build_op


class Cell(nn.Module):
    """One cell: every edge holds its candidate ops (supernet) or one op."""

    def __init__(self, edges, ops_per_edge: list[tuple[str, ...]], channels: int,
                 affine: bool):
        super().__init__()
        self.edges = tuple(edges)
        self.nodes = max(j for _, j in self.edges) + 1
        self.mixed = nn.ModuleList(
            nn.ModuleList(build_op(op, channels, affine) for op in ops) for ops in ops_per_edge)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None,
                active: list[list[bool]] | None = None) -> torch.Tensor:
        """``weights`` (edges, ops) mixes the ops of each edge; without it each
        edge applies its single op.  Ops whose ``active`` flag is false (zero
        weight) are not computed."""
        states = [x]
        incoming: list[list[int]] = [[] for _ in range(self.nodes)]
        for e, (_, j) in enumerate(self.edges):
            incoming[j].append(e)
        for j in range(1, self.nodes):
            total = 0
            for e in incoming[j]:
                src = states[self.edges[e][0]]
                ops = self.mixed[e]
                if weights is None:
                    total = total + ops[0](src)
                    continue
                for k, op in enumerate(ops):
                    if active is None or active[e][k]:
                        total = total + weights[e, k] * op(src)
            if not torch.is_tensor(total):  # every op of every incoming edge masked
                total = torch.zeros_like(x)
            states.append(total)
        return states[-1]


class Network(nn.Module):
    """Supernet of ``space`` (``genotype=None``) or the network of one genotype."""

    def __init__(self, space, in_shape: tuple[int, ...], n_classes: int, genotype=None):
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"NAS cells need image data (C, H, W); this dataset has shape "
                             f"{tuple(in_shape)} (use an image source, e.g. sklearn digits "
                             f"with as_image: true)")
        self.space = space
        self.in_shape = tuple(in_shape)
        self.n_classes = n_classes
        self.genotype = None if genotype is None else tuple(genotype)
        supernet = genotype is None
        ops_per_edge = ([tuple(space.ops)] * len(space.edges) if supernet
                        else [(op,) for op in self.genotype])
        c = space.channels
        self.stem = nn.Sequential(nn.Conv2d(in_shape[0], c, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c))
        body: list[nn.Module] = []
        for stage in range(space.stages):
            if stage:
                body.append(ResidualReduction(c, 2 * c))
                c *= 2
            body += [Cell(space.edges, ops_per_edge, c, affine=not supernet)
                     for _ in range(space.cells)]
        self.body = nn.ModuleList(body)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(c, n_classes))
        if supernet:
            self.alphas = nn.Parameter(1e-3 * torch.randn(len(space.edges), len(space.ops)))
            self.projected: dict[int, int] = {}
            self._masked: tuple[int, int] | None = None

    @property
    def is_supernet(self) -> bool:
        """True for the mixed-op supernet."""
        return self.genotype is None

    def arch_parameters(self) -> list[nn.Parameter]:
        """The architecture weights (alpha)."""
        return [self.alphas] if self.is_supernet else []

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except alpha."""
        return [p for name, p in self.named_parameters() if name != "alphas"]

    def edge_weights(self) -> torch.Tensor:
        """(edges, ops) mixing weights: softmax(alpha), projected edges one-hot,
        the masked op zero."""
        w = torch.softmax(self.alphas, dim=-1)
        if self.projected or self._masked is not None:
            keep = torch.ones_like(w)
            fixed = torch.zeros_like(w)
            rows = torch.zeros(w.shape[0], 1, dtype=torch.bool, device=w.device)
            for e, k in self.projected.items():
                rows[e] = True
                fixed[e, k] = 1.0
            w = torch.where(rows, fixed, w)
            if self._masked is not None:
                keep[self._masked] = 0.0
            w = w * keep
        return w

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Logits; a supernet mixes with ``weights`` (default :meth:`edge_weights`)."""
        active = None
        if self.is_supernet:
            weights = self.edge_weights() if weights is None else weights
            active = (weights.detach() != 0).tolist()
        out = self.stem(x)
        for block in self.body:
            out = block(out, weights, active) if isinstance(block, Cell) else block(out)
        return self.head(out)

    @contextlib.contextmanager
    def masked(self, edge: int, op: int):
        """Within the block, op ``op`` of ``edge`` carries weight zero."""
        previous, self._masked = self._masked, (edge, op)
        try:
            yield self
        finally:
            self._masked = previous

    def argmax_genotype(self) -> tuple[str, ...]:
        """Op of largest alpha per edge (projected edges: their op)."""
        best = self.alphas.detach().argmax(dim=-1).tolist()
        for e, k in self.projected.items():
            best[e] = k
        return tuple(self.space.ops[k] for k in best)


def derive(supernet: Network, genotype) -> Network:
    """The discrete network of ``genotype`` carrying the supernet's weights
    for the chosen ops (and its stem, reductions and head)."""
    space = supernet.space
    genotype = tuple(genotype)
    net = Network(space, supernet.in_shape, supernet.n_classes, genotype)
    chosen = [space.ops.index(op) for op in genotype]
    state = {}
    for key, value in supernet.state_dict().items():
        if key == "alphas":
            continue
        parts = key.split(".")
        if parts[0] == "body" and parts[2] == "mixed":
            edge, op = int(parts[3]), int(parts[4])
            if op != chosen[edge]:
                continue
            parts[4] = "0"
        state[".".join(parts)] = value
    # the discrete net's BN is affine; at its initial (1, 0) it equals the supernet's
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith((".weight", ".bias")) for k in missing):
        raise RuntimeError(f"derive: state mismatch (missing {missing}, unexpected {unexpected})")
    return net


def clone_supernet(supernet: Network) -> Network:
    """A copy of the supernet's weights sharing its alpha (RARTS's second copy)."""
    twin = copy.deepcopy(supernet)
    twin.alphas = supernet.alphas
    return twin
