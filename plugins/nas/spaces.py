"""Search spaces (the component kind ``search_spaces``, declared in
``harness_plugins.nas.hookspecs``).

A search space is a cell: a DAG of ``nodes`` feature maps where node 0 is the
cell input, every earlier node feeds every later node through one edge, and
the last node is the output.  An architecture (a *genotype*) names one
operation per edge.  The macro network around the cells (stem, stages of
``cells`` cells with residual reductions between them, head) is
NAS-Bench-201's; see :class:`harness_plugins.nas.supernet.Network`.

Genotypes are written as a list of op names in edge order or as
NAS-Bench-201's string, ``|conv3x3~0|+|skip~0|conv1x1~1|+|...|`` (the ops into
node 1, then node 2, ...; ``~i`` names the source node).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from harness import Component, FromData, hookimpl

#: The operation vocabulary (NAS-Bench-201's); :mod:`.ops` builds each.
OP_NAMES: tuple[str, ...] = ("none", "skip", "conv1x1", "conv3x3", "avgpool3")

Genotype = tuple[str, ...]


@dataclass(frozen=True)
class SearchSpace:
    """A cell space: its operations, edges and the macro network's sizes."""

    name: str
    ops: tuple[str, ...]
    nodes: int
    channels: int
    cells: int
    stages: int
    #: (source, target) pairs when the cell is not the full DAG
    edge_list: tuple[tuple[int, int], ...] | None = None

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """(source, target) node pairs, ordered by target then source (every
        earlier node into every later one unless the space lists its edges)."""
        if self.edge_list is not None:
            return self.edge_list
        return tuple((i, j) for j in range(1, self.nodes) for i in range(j))

    @property
    def size(self) -> int:
        """Number of distinct genotypes."""
        return len(self.ops) ** len(self.edges)

    def parse(self, genotype) -> Genotype:
        """A genotype (list of op names or NAS-Bench-201 string) checked
        against this space; ``ValueError`` says what does not fit."""
        if isinstance(genotype, str):
            ops = parse_nb201(genotype, self.nodes, self.edges)
        elif isinstance(genotype, (list, tuple)):
            ops = tuple(str(op) for op in genotype)
        else:
            raise ValueError(f"a genotype is a list of op names or a NAS-Bench-201 string, "
                             f"not {type(genotype).__name__}")
        if len(ops) != len(self.edges):
            raise ValueError(f"genotype has {len(ops)} edges; space {self.name!r} has "
                             f"{len(self.edges)} ({self.nodes} nodes)")
        for op in ops:
            if op not in self.ops:
                raise ValueError(f"operation {op!r} is not in space {self.name!r}; "
                                 f"ops: {', '.join(self.ops)}")
        return ops

    def format(self, genotype: Genotype) -> str:
        """NAS-Bench-201 string of ``genotype``."""
        parts, ops = [], iter(genotype)
        for j in range(1, self.nodes):
            sources = [i for i, jj in self.edges if jj == j]
            parts.append("|" + "|".join(f"{next(ops)}~{i}" for i in sources) + "|")
        return "+".join(parts)

    def all_genotypes(self) -> list[Genotype]:
        """Every genotype, in :meth:`index` order."""
        return list(itertools.product(self.ops, repeat=len(self.edges)))

    def index(self, genotype: Genotype) -> int:
        """Position of ``genotype`` in :meth:`all_genotypes`."""
        out = 0
        for op in genotype:
            out = out * len(self.ops) + self.ops.index(op)
        return out

    def build(self, in_shape: tuple[int, ...], n_classes: int, genotype: Genotype | None = None):
        """The supernet (``genotype=None``) or the discrete network of ``genotype``."""
        from harness_plugins.nas.supernet import Network

        return Network(self, tuple(in_shape), n_classes, genotype)


def parse_nb201(text: str, nodes: int,
                edges: tuple[tuple[int, int], ...] | None = None) -> Genotype:
    """The ops of a NAS-Bench-201 cell string, in edge order; ``edges``
    (default: every earlier node into every later one) says which sources
    each node's items must name, in order."""
    if edges is None:
        edges = tuple((i, j) for j in range(1, nodes) for i in range(j))
    nodes_text = text.strip().split("+")
    if len(nodes_text) != nodes - 1:
        raise ValueError(f"genotype has {len(nodes_text) + 1} nodes; the space has {nodes}")
    ops = []
    for j, node in enumerate(nodes_text, start=1):
        sources = [i for i, jj in edges if jj == j]
        items = [s for s in node.strip().strip("|").split("|") if s]
        for k, item in enumerate(items):
            op, sep, src = item.partition("~")
            if not sep or not src.isdigit():
                raise ValueError(f"bad genotype item {item!r}: expected 'op~source'")
            if k < len(sources) and int(src) != sources[k]:
                raise ValueError(f"bad genotype item {item!r}: node {j}'s edge {k} must come "
                                 f"from node {sources[k]}")
            ops.append(op)
        if len(items) != len(sources):
            raise ValueError(f"genotype node {j} has {len(items)} inputs; it needs "
                             f"{len(sources)}")
    return tuple(ops)


def _check(name: str, ops, nodes: int, channels: int, cells: int, stages: int,
           edges=None) -> SearchSpace:
    ops = tuple(ops)
    unknown = [op for op in ops if op not in OP_NAMES]
    if unknown:
        raise ValueError(f"unknown operation {unknown[0]!r}; known: {', '.join(OP_NAMES)}")
    if len(set(ops)) != len(ops) or not ops:
        raise ValueError(f"ops must be distinct and non-empty, got {list(ops)}")
    return SearchSpace(name, ops, nodes, channels, cells, stages, edges)


#: Channels of the first stage, cells per stage, stages: at least one.
Count = Annotated[int, Field(ge=1)]


def nb201(channels: Count = 16, cells: Count = 5, stages: Count = 3,
          ops: list[str] = OP_NAMES) -> SearchSpace:
    """NAS-Bench-201 cell (Dong & Yang, ICLR 2020): 4 nodes, 6 edges, 5 ops."""
    return _check("nb201", ops, 4, channels, cells, stages)


def tiny(channels: Count = 8, cells: Count = 1, stages: Count = 2,
         # bounded before the space lists its edges: 10**30 nodes hung planning,
         # and past 5 nodes two ops already exceed the 4096 genotypes below
         nodes: Annotated[int, Field(ge=2, le=16)] = 3,
         ops: list[str] = ("skip", "conv3x3", "avgpool3")) -> SearchSpace:
    """A space small enough to train every member (3 ops on 3 edges = 27 cells by default)."""
    space = _check("tiny", ops, nodes, channels, cells, stages)
    if space.size > 4096:
        raise ValueError(f"tiny space has {space.size} genotypes ({len(space.ops)} ops ^ "
                         f"{len(space.edges)} edges); keep it small enough to train them all")
    return space


#: The ``skip_trap`` cell: a chain 0 -> 1 -> 2 -> 3 with a shortcut 0 -> 3.
SKIP_TRAP_EDGES = ((0, 1), (1, 2), (2, 3), (0, 3))


def skip_trap(channels: Count = 8, cells: Count = 1, stages: Count = 2,
              ops: list[str] = OP_NAMES) -> SearchSpace:
    """A space where DARTS's known failure can show: NAS-Bench-201's five ops
    (none and skip among them) on a 4-edge cell, a 3-op chain with a
    shortcut from the input to the output, 5^4 = 625 cells.  A supernet whose
    alpha drifts to the parameter-free ops (skip on the chain, the
    "skip-connection collapse") selects a cell with no convolution, which the
    ground truth ranks far down; every cell can be trained (``ground_truth:
    true``; 625 cells)."""
    return _check("skip_trap", ops, 4, channels, cells, stages, SKIP_TRAP_EDGES)


def nas_cell(in_shape: Annotated[tuple, FromData], n_classes: Annotated[int, FromData],
             genotype: str | list[str],
             space: Annotated[str | dict, Component("search_spaces")] = "nb201"):
    """The network of one cell genotype of a NAS space (e.g. a nas run's nas.genotype)."""
    import harness

    built = harness.create("search_spaces", space)
    return built.build(tuple(in_shape), n_classes, built.parse(genotype))


@hookimpl
def register_search_spaces(register):
    register("nb201", nb201)
    register("tiny", tiny)
    register("skip_trap", skip_trap)


@hookimpl
def register_models(register):
    register("nas_cell", nas_cell)
