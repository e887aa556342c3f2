"""Task ``nas``: search a cell, select an architecture, evaluate it.

Three phases per run, each logged apart:

- *search*: the search strategy (``search``, kind ``search_strategies``)
  trains the supernet of the space (``space``, kind ``search_spaces``), its
  weights on one half of the train split and alpha on the other, for
  ``search_training.epochs``; per epoch ``search/train/loss`` and the
  supernet's ``search/val/accuracy``; alpha per epoch as the artifact table
  ``nas/alphas.csv``.  Strategy ``none`` trains nothing.
- *select*: the selector (``selector``, kind ``nas_selectors``) turns the
  supernet (or nothing) into a genotype; the genotype is the param
  ``nas.genotype`` and the artifact ``nas/genotype.txt``.
- *evaluate*: the genotype's network is trained from scratch with the run's
  seeds by the shared classification trainer (``evaluate.loss``,
  ``evaluate.training``; epochs logged under ``evaluate/``), then scored on
  the test split (``test/<metric>``).

On spaces with at most ``AUTO_GROUND_TRUTH`` genotypes (``MAX_GROUND_TRUTH``
with ``ground_truth: true``) the ground truth
(every genotype trained with the evaluate budget and seeds, shared between
runs through MLflow) gives the metrics ``regret`` and ``arch_rank``.
Timings: ``time/search_s``, ``time/select_s``, ``time/evaluate_s``,
``time/ground_truth_s`` (0 when the table was reused) and ``time/train_s``,
the method's cost: search + select + the evaluate phase's training.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import ConfigError, hookimpl
from harness.params import check_components, reject_boolean_numbers
from harness_plugins.classification.entries import SplitAndTransforms
from harness_plugins.classification.task import Training, config_error

Spec = str | dict[str, Any]


class SearchTraining(BaseModel):
    """The search phase's budget (``search_training:``)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=10, ge=0)
    batch_size: int = Field(default=64, ge=1)
    eval_batch_size: int = Field(default=1024, ge=1)


class Evaluate(BaseModel):
    """How the selected architecture is trained from scratch (``evaluate:``)."""

    model_config = ConfigDict(extra="forbid")
    loss: Spec = "cross_entropy"
    training: Training = Training()


class PublishedTable(BaseModel):
    """NAS-Bench-201's published accuracies as the ground truth
    (``ground_truth: {nb201: PATH}``; :mod:`harness_plugins.nas.nb201_table`)."""

    model_config = ConfigDict(extra="forbid")
    #: the benchmark's .pth file (NAS-Bench-201-v1_0-e61699.pth or -v1_1-096897.pth)
    nb201: str
    dataset: Literal["cifar10-valid", "cifar10", "cifar100", "ImageNet16-120"] = "cifar10-valid"
    #: the benchmark's training schedule whose final accuracies are read
    epochs: Literal[200, 12] = 200


class NasConfig(BaseModel):
    """The method config of the ``nas`` task."""

    model_config = ConfigDict(extra="forbid")
    space: Spec = "tiny"
    search: Spec = "darts"
    selector: Spec = "magnitude"
    search_training: SearchTraining = SearchTraining()
    evaluate: Evaluate = Evaluate()
    #: auto: on spaces of at most AUTO_GROUND_TRUTH genotypes; true: required (at most
    #: MAX_GROUND_TRUTH); false: never;
    #: {nb201: PATH}: read from NAS-Bench-201's published table
    ground_truth: Literal["auto"] | bool | PublishedTable = "auto"
    #: train this many cells of the space (drawn once, the same for every
    #: seed) instead of all: regret and rank are then among those cells
    ground_truth_sample: int | None = Field(default=None, ge=3)


def _build(kind: str, spec: dict, path: str):
    """Build a validated component; a ValueError of its factory becomes a
    ConfigError at ``path``."""
    import harness

    try:
        return harness.create(kind, spec)
    except ValueError as exc:
        raise ConfigError(path, spec, str(exc)) from None


def _check_table_keys(table: Any) -> None:
    """A ``ground_truth:`` mapping checked as the published table alone: in
    the union with ``auto`` and booleans, pydantic's first error is the
    ``auto`` branch's (``ground_truth = {...}: Input should be 'auto'``),
    which names neither the key nor what it takes."""
    if not isinstance(table, dict):
        return
    try:
        PublishedTable.model_validate(table)
    except ValidationError as exc:
        from harness.errors import MISSING

        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else ""
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = (f"unknown key {key!r}; keys of ground_truth: "
                   f"{', '.join(PublishedTable.model_fields)}")
        raise ConfigError(f"ground_truth.{key}" if key else "ground_truth",
                          table.get(key, MISSING) if key else table, msg) from None


def _check_published(table: dict, space) -> None:
    """The published table's file exists and the space is NAS-Bench-201's cell."""
    import os

    path = os.path.expanduser(table["nb201"])
    if not os.path.isfile(path):
        raise ConfigError("ground_truth.nb201", table["nb201"],
                          f"no such file (from {os.getcwd()}); NAS-Bench-201's table is "
                          f"NAS-Bench-201-v1_1-096897.pth from the benchmark's release")
    if space.nodes != 4:
        raise ConfigError("ground_truth.nb201", table["nb201"],
                          f"space {space.name!r} has {space.nodes} nodes; NAS-Bench-201's "
                          f"table scores 4-node cells (space nb201)")


class NasTask(SplitAndTransforms):
    """Search, select, evaluate; regret and rank against the ground truth."""

    #: Classification's inputs plus the ground-truth values of small spaces.
    metric_inputs = ("labels", "probs", "logits", "model", "train_x", "train_y",
                     "train_labels", "train_probs", "regret", "arch_rank")

    def validate(self, config: dict, check) -> dict:
        """Check the config and components; reject a selector that needs a
        supernet after a search that trains none, a fixed genotype the space
        does not have, and ground truth forced on a space too large for it."""
        from harness_plugins.nas.ground_truth import MAX_GROUND_TRUTH

        _check_table_keys(config.get("ground_truth"))
        reject_boolean_numbers(NasConfig, config)
        try:
            cfg = NasConfig.model_validate(config).model_dump()
        except ValidationError as exc:
            raise config_error(exc, config, NasConfig) from None
        check_components(cfg, check, (("space", "search_spaces"),
                                      ("search", "search_strategies"),
                                      ("selector", "nas_selectors"), ("evaluate.loss", "losses"),
                                      ("evaluate.training.optimizer", "optimizers"),
                                      ("evaluate.training.scheduler", "schedulers")))
        space = _build("search_spaces", cfg["space"], "space")
        strategy = _build("search_strategies", cfg["search"], "search")
        selector = _build("nas_selectors", cfg["selector"], "selector")
        if selector.needs_supernet and not strategy.trains_supernet:
            raise ConfigError("selector", cfg["selector"]["name"],
                              f"selector {cfg['selector']['name']!r} needs a supernet, but search "
                              f"{cfg['search']['name']!r} trains none; use search darts, rarts "
                              f"or sd_darts, or selector random or fixed")
        if "genotype" in cfg["selector"]:
            try:
                space.parse(cfg["selector"]["genotype"])
            except ValueError as exc:
                raise ConfigError("selector.genotype", cfg["selector"]["genotype"],
                                  str(exc)) from None
        sample = cfg["ground_truth_sample"]
        if sample is not None and (isinstance(cfg["ground_truth"], dict)
                                   or cfg["ground_truth"] is False):
            raise ConfigError("ground_truth_sample", sample, "a sample of cells to train "
                              "applies to a trained ground truth (ground_truth: true or "
                              "auto), not to a published table or none")
        trained = space.size if sample is None else min(sample, space.size)
        if cfg["ground_truth"] is True and trained > MAX_GROUND_TRUTH:
            raise ConfigError("ground_truth", True, f"space {space.name!r} has {space.size} "
                              f"genotypes; ground truth trains at most {MAX_GROUND_TRUTH} "
                              f"(ground_truth_sample: N trains N of them)")
        if isinstance(cfg["ground_truth"], dict):
            _check_published(cfg["ground_truth"], space)
        # the classification task checks its batch size in its own validate,
        # which this task does not call
        batch = cfg["evaluate"]["training"]["batch_size"]
        if isinstance(batch, float) and not 0 < batch <= 1 or isinstance(batch, int) and batch < 1:
            raise ConfigError("evaluate.training.batch_size", batch, "an int batch size is >= 1; "
                              "a float is a fraction of the train split, in (0, 1]")
        from harness_plugins.classification.trainer import logged_every_epoch

        monitor = cfg["evaluate"]["training"]["early_stopping"]["monitor"]
        allowed = ["val/loss", *(f"val/{m}" for m in getattr(check, "metrics", [])
                                 if logged_every_epoch(m))]
        if monitor not in allowed:
            raise ConfigError("evaluate.training.early_stopping.monitor", monitor,
                              f"not a quantity logged every epoch; use one of {', '.join(allowed)}")
        return cfg

    def prepare(self, entry: dict, seed: int, ctx):
        """The classification preparation (images keep their (C, H, W) shape)."""
        from harness_plugins.classification.prepare import prepare_dataset

        # the supernet loop reads X_train as model inputs: image pixels as float
        return prepare_dataset(entry, seed, registry=ctx.registry, pixels="float")

    def run(self, ctx) -> dict[str, float]:
        """Search, select, evaluate; return the test metrics."""
        from harness.metrics import compute_metrics
        from harness_plugins.classification.task import test_metrics
        from harness_plugins.nas.ground_truth import regret_and_rank
        from harness_plugins.nas.phases import (
            cell_accuracy,
            evaluate,
            ground_truth_table,
            search,
            select,
        )

        cfg, data = ctx.config, ctx.data
        if len(data.in_shape) != 3:
            raise ConfigError("datasets", ctx.spec.dataset_label,
                              f"the nas task needs image data (C, H, W); this dataset has "
                              f"shape {tuple(data.in_shape)} (e.g. sklearn digits with "
                              f"as_image: true)")
        space = ctx.create("search_spaces", cfg["space"])
        fns = ctx.metrics()
        times = {}
        start = time.perf_counter()
        found = search(ctx, cfg, space, data)
        times["time/search_s"] = time.perf_counter() - start
        start = time.perf_counter()
        genotype = select(ctx, cfg, space, data, found)
        times["time/select_s"] = time.perf_counter() - start
        start = time.perf_counter()
        model, result = evaluate(ctx, cfg, space, data, genotype, fns)
        out = test_metrics(ctx, model, data, fns, cfg["evaluate"]["training"]["eval_batch_size"])
        times["time/evaluate_s"] = time.perf_counter() - start
        table, times["time/ground_truth_s"] = ground_truth_table(ctx, cfg, space, data)
        if table is not None:
            index = space.index(genotype)
            # a sampled table may lack the selected cell: score the model at hand
            own = cell_accuracy(model, data.X_test, data.y_test,
                                cfg["evaluate"]["training"]["eval_batch_size"], ctx.device
                                ) if math.isnan(table["test_accuracy"][index]) else None
            regret, rank = regret_and_rank(table["test_accuracy"], index, own)
            out.update(compute_metrics(fns, {"regret": regret, "arch_rank": rank}))
        # the method's cost (the leaderboard's time column): search, selection and
        # retraining, not the ground truth, which only scores it
        cost = times["time/search_s"] + times["time/select_s"] + result.train_s
        ctx.log_metrics({**times, "time/train_s": cost, "evaluate/best_epoch": result.best_epoch})
        return out


def nas():
    """Neural architecture search: search a cell, select a genotype, train and test it."""
    return NasTask()


@hookimpl
def register_tasks(register):
    register("nas", nas)
