"""The ``nas`` task's phases: search, select, evaluate, and the ground truth.

Each takes the run context and the validated config; see
:mod:`harness_plugins.nas.task` for what each logs.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass
from typing import Any

#: Tag (``harness.shared.<name>``) of the shared ground-truth table.
GROUND_TRUTH = "nas_ground_truth"


@dataclass
class Searched:
    """The search phase's result, as the select phase needs it."""

    strategy: Any
    supernet: Any  # None when the strategy trains no supernet
    weight_data: tuple | None = None
    val_data: tuple | None = None
    generator: Any = None
    alpha_data: tuple | None = None


def _tensors(ctx, X, y):
    import torch

    return torch.as_tensor(X, device=ctx.device), torch.as_tensor(y, device=ctx.device)


def search(ctx, cfg: dict, space, data) -> Searched:
    """Train the supernet with the search strategy; log the loss, supernet
    validation accuracy and alpha per epoch (``search/`` and ``nas/alphas.csv``)."""
    import torch

    from harness_plugins.nas.loop import split_halves, supernet_accuracy, train_supernet

    strategy = ctx.create("search_strategies", cfg["search"])
    if not strategy.trains_supernet:
        return Searched(strategy, None)
    st = cfg["search_training"]
    torch.manual_seed(ctx.seeds["init"])
    net = space.build(data.in_shape, data.n_classes).to(ctx.device)
    X, y = _tensors(ctx, data.X_train, data.y_train)
    val = _tensors(ctx, data.X_val, data.y_val)
    w_idx, a_idx = (torch.as_tensor(i, device=ctx.device)
                    for i in split_halves(len(y), ctx.seeds["split"]))
    strategy.setup(net, st["epochs"])
    ctx.expect_epochs(st["epochs"], "search")
    gen = torch.Generator().manual_seed(ctx.seeds["order"])
    rows: list[list] = []

    def on_epoch(epoch: int, loss: float) -> None:
        acc = supernet_accuracy(net, *val, st["eval_batch_size"])
        ctx.epoch_end(epoch, {"train/loss": loss, "val/accuracy": acc}, phase="search")
        rows.extend(_alpha_rows(epoch, space, net))

    rows.extend(_alpha_rows(-1, space, net))  # the initial alpha, epoch -1
    train_supernet(strategy, net, (X[w_idx], y[w_idx]), (X[a_idx], y[a_idx]), st["epochs"],
                   st["batch_size"], gen, on_epoch)
    _log_table(ctx, "alphas.csv", ["epoch", "edge", "op", "alpha", "weight"], rows)
    return Searched(strategy, net, (X[w_idx], y[w_idx]), val, gen, (X[a_idx], y[a_idx]))


def _alpha_rows(epoch: int, space, net) -> list[list]:
    import torch

    alphas = net.alphas.detach().cpu()
    weights = torch.softmax(alphas, dim=-1)
    return [[epoch, f"{i}->{j}", op, float(alphas[e, k]), float(weights[e, k])]
            for e, (i, j) in enumerate(space.edges) for k, op in enumerate(space.ops)]


def _log_table(ctx, name: str, header: list[str], rows: list[list]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        ctx.log_artifact(path, "nas")


def select(ctx, cfg: dict, space, data, searched: Searched) -> tuple[str, ...]:
    """Run the selector; log the genotype (param and readable artifact) and
    the supernet's validation accuracy after selection."""
    import numpy as np

    from harness_plugins.nas.loop import fine_tune, supernet_accuracy, train_supernet
    from harness_plugins.nas.selectors import SelectionJob

    selector = ctx.create("nas_selectors", cfg["selector"])
    net, st = searched.supernet, cfg["search_training"]

    def accuracy() -> float:
        return supernet_accuracy(net, *searched.val_data, st["eval_batch_size"])

    def tune(epochs: int) -> None:
        fine_tune(searched.strategy, net, searched.weight_data, epochs, st["batch_size"],
                  searched.generator)

    def alpha_accuracy() -> float:
        return supernet_accuracy(net, *searched.alpha_data, st["eval_batch_size"])

    def search_epochs(epochs: int) -> None:
        train_supernet(searched.strategy, net, searched.weight_data, searched.alpha_data,
                       epochs, st["batch_size"], searched.generator, lambda epoch, loss: None)

    extra = {}
    if net is not None:
        extra = {"alpha_accuracy": alpha_accuracy, "search_epochs": search_epochs,
                 "start_tuning": searched.strategy.start_tuning}
    job = SelectionJob(space=space, supernet=net, rng=np.random.default_rng(ctx.seeds["order"]),
                       accuracy=accuracy, fine_tune=tune, log=ctx.log_metrics, **extra)
    genotype = space.parse(selector.select(job))
    if net is not None:
        ctx.log_metrics({"select/supernet_val_accuracy": accuracy()})
    ctx.log_params({"nas.genotype": space.format(genotype)})
    ctx.log_text(describe(space, genotype, net, cfg), "nas/genotype.txt")
    return genotype


def describe(space, genotype: tuple[str, ...], supernet, cfg: dict) -> str:
    """The genotype for people: its string, one line per node, and the
    final alpha weights when there was a supernet."""
    lines = [f"space: {space.name} ({space.nodes} nodes, {len(space.edges)} edges, "
             f"ops {', '.join(space.ops)}; {space.size} genotypes)",
             f"genotype: {space.format(genotype)}",
             f"search: {cfg['search']['name']}, selector: {cfg['selector']['name']}", ""]
    for j in range(1, space.nodes):
        terms = [f"{genotype[e]}(node {i})" for e, (i, jj) in enumerate(space.edges) if jj == j]
        lines.append(f"node {j} = " + " + ".join(terms))
    if supernet is not None:
        import torch

        weights = torch.softmax(supernet.alphas.detach().cpu(), dim=-1)
        lines += ["", "softmax(alpha) at the end of search:",
                  "edge  " + "  ".join(f"{op:>8}" for op in space.ops)]
        for e, (i, j) in enumerate(space.edges):
            lines.append(f"{i}->{j}  " + "  ".join(f"{float(w):8.3f}" for w in weights[e]))
    return "\n".join(lines) + "\n"


def evaluate(ctx, cfg: dict, space, data, genotype: tuple[str, ...], fns: dict):
    """Train the genotype's network from scratch (seeded by ``seeds["init"]``)
    with the shared trainer; epochs are logged under ``evaluate/``.
    Returns (model at the selected epoch, fit result)."""
    import torch

    from harness_plugins.classification.trainer import train_classifier

    torch.manual_seed(ctx.seeds["init"])
    model = space.build(data.in_shape, data.n_classes, genotype)
    config = {"loss": cfg["evaluate"]["loss"], "training": cfg["evaluate"]["training"]}
    model, _, result = train_classifier(ctx, config, data, fns, phase="evaluate", model=model)
    return model, result


class _Quiet:
    """The run context for ground-truth training: same seeds, device and
    components, nothing logged per epoch."""

    def __init__(self, ctx):
        self.seeds, self.device, self.create = ctx.seeds, ctx.device, ctx.create

    def epoch_end(self, epoch, values, phase="train") -> None:
        """Ground-truth epochs are not logged."""


def cell_accuracy(model, X, y, batch_size: int, device) -> float:
    """The argmax accuracy of a trained cell on ``X`` (a ground-truth entry)."""
    import torch

    from harness_plugins.classification.trainer import predict_logits

    logits = predict_logits(model, torch.as_tensor(X, device=device), batch_size)
    return float((logits.argmax(1).cpu().numpy() == y).mean())


def ground_truth_table(ctx, cfg: dict, space, data) -> tuple[dict | None, float]:
    """(table, seconds spent) or (None, 0) when the space gets no ground
    truth.  The table (``val_accuracy``, ``test_accuracy`` per genotype in
    index order) is built once per (space, dataset, evaluate budget, seeds,
    code) and shared through MLflow."""
    import time

    import numpy as np

    from harness.shared import code_identity, shared_arrays, shared_key
    from harness_plugins.nas.ground_truth import (
        AUTO_GROUND_TRUTH,
        MAX_GROUND_TRUTH,
        build_table,
        sampled_cells,
        val_test_agreement,
    )

    if isinstance(cfg["ground_truth"], dict):
        return published_table(ctx, cfg["ground_truth"], space)
    limit = MAX_GROUND_TRUTH if cfg["ground_truth"] is True else AUTO_GROUND_TRUTH
    cells = sampled_cells(space.size, cfg["ground_truth_sample"])
    if cfg["ground_truth"] is False or (space.size if cells is None else len(cells)) > limit:
        return None, 0.0
    fns = ctx.metrics()
    bs = cfg["evaluate"]["training"]["eval_batch_size"]
    quiet = _Quiet(ctx)
    dataset = {k: v for k, v in ctx.spec.dataset.items() if k != "base_dir"}
    key = shared_key(GROUND_TRUTH, cfg["space"], dataset, cfg["evaluate"], ctx.seeds,
                     code_identity(), cells)

    def train(genotype):
        model, _ = evaluate(quiet, cfg, space, data, genotype, fns)
        return (cell_accuracy(model, data.X_val, data.y_val, bs, ctx.device),
                cell_accuracy(model, data.X_test, data.y_test, bs, ctx.device))

    start = time.perf_counter()
    table, reused = shared_arrays(ctx, GROUND_TRUTH, key,
                                  lambda: build_table(space, train, cells=cells))
    seconds = 0.0 if reused else time.perf_counter() - start
    trained = table["test_accuracy"][~np.isnan(table["test_accuracy"])]
    ctx.log_metrics({"ground_truth/reused": float(reused),
                     "ground_truth/cells": float(len(trained)),
                     "ground_truth/best_test_accuracy": float(trained.max()),
                     "ground_truth/val_test_kendall": val_test_agreement(table)})
    return table, seconds


def published_table(ctx, table: dict, space) -> tuple[dict, float]:
    """(table, seconds spent) from NAS-Bench-201's file, read once per file,
    dataset, schedule and space and shared through MLflow like a trained one."""
    import os
    import time

    from harness import ConfigError
    from harness.shared import shared_arrays, shared_key
    from harness_plugins.nas.nb201_table import TableError, file_identity, load_file, read_table

    path = os.path.expanduser(table["nb201"])
    start = time.perf_counter()
    try:
        key = shared_key(GROUND_TRUTH, "nb201-table", file_identity(path), table["dataset"],
                         table["epochs"], list(space.ops))
        arrays, reused = shared_arrays(
            ctx, GROUND_TRUTH, key,
            lambda: read_table(load_file(path), space, table["dataset"], table["epochs"]))
    except (TableError, OSError) as exc:
        raise ConfigError("ground_truth.nb201", table["nb201"], str(exc)) from None
    seconds = 0.0 if reused else time.perf_counter() - start
    ctx.log_metrics({"ground_truth/reused": float(reused),
                     "ground_truth/best_test_accuracy": float(arrays["test_accuracy"].max())})
    return arrays, seconds
