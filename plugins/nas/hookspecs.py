"""The component kinds of the NAS family, with their contracts: cell
``search_spaces``, ``search_strategies`` (how supernet weights and
architecture weights train) and ``nas_selectors`` (declared through
``register_kinds``, as a third-party family would).

The ``nas`` task feeds metrics the classification task's inputs of the
selected architecture (``labels``, ``probs``, ... see
``harness_plugins.classification.hookspecs``) and ``regret``/``arch_rank``
when the space's ground truth is known.
"""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_search_spaces(register):
    """Register NAS cell search spaces.  ``factory(**params)`` returns a
    space (see ``harness_plugins.nas.spaces.SearchSpace``) with ``ops`` (the
    candidate operation names), ``edges`` (``(from, to)`` node pairs of the
    cell, in genotype order), ``size`` (number of architectures),
    ``parse(genotype) -> tuple[str, ...]`` (a list of op names or
    NAS-Bench-201's string; raise ``ValueError`` for a bad one),
    ``format(genotype) -> str``, ``all_genotypes()``, ``index(genotype)`` and
    ``build(in_shape, n_classes, genotype=None) -> torch.nn.Module`` (the
    supernet when ``genotype`` is None, else the one architecture)."""


@hookspec
def register_search_strategies(register):
    """Register NAS search strategies.  ``factory(**params)`` returns an
    object with ``trains_supernet`` (bool; ``False`` skips the search phase)
    and, when it trains one, ``setup(supernet, epochs)``, ``step(weight_batch,
    alpha_batch) -> float`` (one search step on an ``(x, y)`` batch of each
    half of the train split; returns the weight loss, NaN/inf ends the run as
    diverged), ``tune_step(batch) -> float`` (a weights-only step, alphas
    fixed, used by selectors' fine-tuning), ``start_tuning(lr_factor)`` (a
    fresh weight optimizer at ``lr_factor`` x the search lr for every later
    weight step: DARTS-PT's selection phase) and ``epoch_end(epoch)``."""


@hookspec
def register_nas_selectors(register):
    """Register NAS selectors: turn a searched supernet (or nothing) into one
    architecture for the ``nas`` task.

    ``factory(**params)`` returns an object with ``needs_supernet`` (bool;
    suite validation rejects such a selector after a search strategy that
    trains no supernet) and ``select(job) -> genotype``, a sequence of op
    names, one per edge of ``job.space``.  ``job`` is a
    ``harness_plugins.nas.selectors.SelectionJob``: ``space`` (the search
    space: ``ops``, ``edges``, ``parse``, ``format``), ``supernet`` (the
    trained ``harness_plugins.nas.supernet.Network`` with ``alphas``,
    ``projected``, ``masked(edge, op)``, ``argmax_genotype()``; None without
    one), ``rng`` (numpy Generator from the run's seed), ``accuracy()`` (the
    supernet's validation accuracy as it stands), ``fine_tune(epochs)``
    (trains its weights, alpha fixed), ``log(values, step)`` and, with a
    supernet, ``alpha_accuracy()`` (accuracy on the alpha half of the train
    split), ``search_epochs(epochs)`` (more of the strategy's own search
    steps) and ``start_tuning(lr_factor)``.  A selector may project edges and
    fine-tune; the task times it as ``time/select_s``.
    """


@hookimpl
def register_kinds(register):
    """The NAS family's kinds: search_spaces, search_strategies, nas_selectors."""
    register("search_spaces", register_search_spaces)
    register("search_strategies", register_search_strategies)
    register("nas_selectors", register_nas_selectors)
