"""NAS selectors: turn a searched supernet (or nothing) into one genotype.

Contract (see ``register_nas_selectors`` in ``harness.hookspecs``): a
selector has ``needs_supernet`` (bool) and ``select(job) -> genotype`` (a
tuple of op names, one per edge of ``job.space``), where ``job`` is a
:class:`SelectionJob`.  A selector may change the supernet (project edges,
fine-tune its weights); the task logs the selection's seconds as its cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from harness import hookimpl


@dataclass
class SelectionJob:
    """What the ``nas`` task hands a selector."""

    #: the :class:`~harness_plugins.nas.spaces.SearchSpace`
    space: Any
    #: the searched :class:`~harness_plugins.nas.supernet.Network`, or None
    #: when the search strategy trains none
    supernet: Any
    #: numpy Generator seeded from the run's seed
    rng: Any
    #: validation accuracy of the supernet as it stands (projections, mask)
    accuracy: Callable[[], float]
    #: ``fine_tune(epochs)`` trains the supernet's weights (alpha fixed)
    fine_tune: Callable[[int], None]
    #: ``log(values, step)`` records the selector's own metrics
    log: Callable[[dict, int], None]
    #: accuracy of the supernet as it stands on the alpha half of the train
    #: split (the data DARTS-PT scores its masks on); None without a supernet
    alpha_accuracy: Callable[[], float] | None = None
    #: ``search_epochs(epochs)``: that many epochs of the search strategy's own
    #: steps on the two halves (alpha keeps training, as in DARTS-PT's tuning)
    search_epochs: Callable[[int], None] | None = None
    #: ``start_tuning(lr_factor)``: a fresh weight SGD at ``lr_factor`` x the
    #: search lr, constant, for every later weight step (DARTS-PT: lr / 10)
    start_tuning: Callable[[float], None] | None = None


class Magnitude:
    """DARTS's selection: the op of largest alpha on every edge."""

    needs_supernet = True

    def select(self, job: SelectionJob) -> tuple[str, ...]:
        """argmax alpha per edge."""
        return job.supernet.argmax_genotype()


class Perturbation:
    """DARTS-PT: decide edges one at a time by the accuracy drop of masking each op."""

    needs_supernet = True

    def __init__(self, tune_epochs: int = 5, edge_order: str = "random",
                 tune_alpha: bool = True, tune_lr_factor: float | None = 0.1,
                 score_split: str = "train_alpha"):
        self.tune_epochs, self.edge_order = tune_epochs, edge_order
        self.tune_alpha, self.tune_lr_factor = tune_alpha, tune_lr_factor
        self.score_split = score_split

    def select(self, job: SelectionJob) -> tuple[str, ...]:
        """Pick an undecided edge, mask each of its ops in turn, keep (project
        to) the op whose masking lowers accuracy most (the first on ties),
        tune the supernet; repeat until every edge is decided."""
        net = job.supernet
        score = job.accuracy if self.score_split == "val" else job.alpha_accuracy
        tune = job.search_epochs if self.tune_alpha else job.fine_tune
        if score is None or tune is None:
            raise ValueError("perturbation: this selection job offers no alpha-half accuracy "
                             "or search epochs; use score_split: val and tune_alpha: false")
        undecided = [e for e in range(len(job.space.edges)) if e not in net.projected]
        if self.tune_epochs and self.tune_lr_factor is not None and len(undecided) > 1:
            job.start_tuning(self.tune_lr_factor)
        step = 0
        while undecided:
            pick = int(job.rng.integers(len(undecided))) if self.edge_order == "random" else 0
            edge = undecided.pop(pick)
            base = score()
            masked = []
            for k in range(len(job.space.ops)):
                with net.masked(edge, k):
                    masked.append(score())
            best = min(range(len(masked)), key=lambda k: (masked[k], k))
            net.projected[edge] = best
            job.log({"select/edge": edge, "select/op": best, "select/base_accuracy": base,
                     "select/drop": base - masked[best]}, step)
            step += 1
            if undecided and self.tune_epochs:
                tune(self.tune_epochs)
        return net.argmax_genotype()


class RandomArchitecture:
    """A uniformly drawn genotype: the baseline every NAS method must beat."""

    needs_supernet = False

    def select(self, job: SelectionJob) -> tuple[str, ...]:
        """One op per edge, uniformly and independently."""
        ops = job.space.ops
        return tuple(ops[int(job.rng.integers(len(ops)))] for _ in job.space.edges)


class Fixed:
    """A given genotype (a known cell as a reference row)."""

    needs_supernet = False

    def __init__(self, genotype: str | list[str]):
        self.genotype = genotype

    def select(self, job: SelectionJob) -> tuple[str, ...]:
        """The configured genotype, checked against the space."""
        return job.space.parse(self.genotype)


def magnitude() -> Magnitude:
    """Magnitude selection (DARTS, Liu et al., ICLR 2019): argmax alpha per edge."""
    return Magnitude()


def perturbation(tune_epochs: Annotated[int, Field(ge=0)] = 5,
                 edge_order: Literal["random", "fixed"] = "random",
                 tune_alpha: bool = True,
                 tune_lr_factor: Annotated[float, Field(gt=0)] | None = 0.1,
                 score_split: Literal["train_alpha", "val"] = "train_alpha") -> Perturbation:
    """DARTS-PT (Wang et al., ICLR 2021): per edge keep the op whose masking hurts most.

    Defaults are the official NAS-Bench-201 procedure (ruocwang/darts-pt):
    masks scored on the alpha half of the train split (``score_split``),
    ``tune_epochs`` = 5 epochs between decisions of the search strategy's own
    steps, so alpha keeps training (``tune_alpha``), with a fresh weight SGD
    at ``tune_lr_factor`` x the search lr.  ``score_split: val, tune_alpha:
    false, tune_lr_factor: null`` is the earlier harness procedure (validation
    split, alpha frozen, the search optimizer and its schedule kept)."""
    return Perturbation(tune_epochs, edge_order, tune_alpha, tune_lr_factor, score_split)


def random() -> RandomArchitecture:
    """Random architecture: one op per edge drawn uniformly (the NAS baseline)."""
    return RandomArchitecture()


def fixed(genotype: str | list[str]) -> Fixed:
    """A fixed genotype (list of ops or NAS-Bench-201 string), e.g. a known-good cell."""
    return Fixed(genotype)


@hookimpl
def register_nas_selectors(register):
    register("magnitude", magnitude)
    register("perturbation", perturbation)
    register("random", random)
    register("fixed", fixed)
