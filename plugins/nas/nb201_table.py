"""NAS-Bench-201's published accuracies as the ground truth of the ``nb201`` space.

NAS-Bench-201 (Dong & Yang, ICLR 2020) trained all 15,625 cells of its space
and published the results as one file, ``NAS-Bench-201-v1_0-e61699.pth`` or
``NAS-Bench-201-v1_1-096897.pth``: a ``torch.save`` of plain dicts,

- ``meta_archs``: the cells' strings in the benchmark's own op names
  (``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``);
- ``arch2infos[i]``: ``{"less": results of the 12-epoch schedule,
  "full": results of the 200-epoch schedule}``, each with ``all_results``
  keyed by ``(dataset, seed)`` and ``dataset_seed[dataset]``: the seeds
  trained; a result holds ``epochs`` and ``eval_acc1es["<set>@<epoch>"]``
  (top-1 accuracy in percent).

The benchmark's API (``nas_201_api``) is not needed: the file is read with
``torch.load(weights_only=True)``, which unpickles plain containers only.  An
accuracy is the mean over the seeds trained, after the last epoch, as the
API's ``get_metrics(dataset, set)`` returns it.  Which evaluation sets are
"validation" and "test" follows the API's naming: ``cifar10-valid`` trains on
half of CIFAR-10's training set and reports ``x-valid`` and ``ori-test``;
``cifar10`` trains on all of it and reports ``ori-test`` only (no validation
accuracy: NaN); ``cifar100`` and ``ImageNet16-120`` report ``x-valid`` and
``x-test``.
"""

from __future__ import annotations

import os

#: The benchmark's op names -> this package's (:data:`spaces.OP_NAMES`).
NB201_OPS = {"none": "none", "skip_connect": "skip", "nor_conv_1x1": "conv1x1",
             "nor_conv_3x3": "conv3x3", "avg_pool_3x3": "avgpool3"}
#: (validation set, test set) per training dataset; None: not evaluated.
EVAL_SETS = {"cifar10-valid": ("x-valid", "ori-test"), "cifar10": (None, "ori-test"),
             "cifar100": ("x-valid", "x-test"), "ImageNet16-120": ("x-valid", "x-test")}
#: Training schedules the file holds: epochs -> its key in ``arch2infos[i]``.
SCHEDULES = {200: "full", 12: "less"}


class TableError(ValueError):
    """The file is not a NAS-Bench-201 table, or lacks what was asked of it."""


def load_file(path: str) -> dict:
    """The benchmark file's dict (``TableError`` when it is not one)."""
    import pickle

    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise TableError(f"cannot read it as a NAS-Bench-201 .pth file: "
                         f"{str(exc).splitlines()[0][:200]}") from None
    _check_layout(data)
    return data


def _check_layout(data) -> None:
    if not isinstance(data, dict) or not {"meta_archs", "arch2infos"} <= set(data):
        raise TableError("not a NAS-Bench-201 file: it has no 'meta_archs' and 'arch2infos' "
                         "(NATS-Bench's directories of .pickle.pbz2 files are another format)")


def _accuracy(result: dict, eval_set: str) -> float:
    last = int(result["epochs"]) - 1
    return float(result["eval_acc1es"][f"{eval_set}@{last}"]) / 100.0


def cell_accuracies(info: dict, dataset: str) -> tuple[float, float]:
    """(validation, test) accuracy of one cell's results (one schedule),
    averaged over the seeds trained, as fractions."""
    import math

    val_set, test_set = EVAL_SETS[dataset]
    seeds = info.get("dataset_seed", {}).get(dataset)
    if not seeds:
        raise TableError(f"cell {info.get('arch_str', '?')!r} has no results on {dataset!r}")
    results = [info["all_results"][(dataset, seed)] for seed in seeds]
    val = (sum(_accuracy(r, val_set) for r in results) / len(results)
           if val_set else math.nan)
    return val, sum(_accuracy(r, test_set) for r in results) / len(results)


def nb201_genotype(arch: str, nodes: int = 4) -> tuple[str, ...]:
    """The benchmark's cell string as a genotype of this package's op names."""
    from harness_plugins.nas.spaces import parse_nb201

    ops = parse_nb201(arch, nodes)
    unknown = [op for op in ops if op not in NB201_OPS]
    if unknown:
        raise TableError(f"cell {arch!r} has op {unknown[0]!r}, not one of NAS-Bench-201's")
    return tuple(NB201_OPS[op] for op in ops)


def read_table(data: dict, space, dataset: str = "cifar10-valid", epochs: int = 200) -> dict:
    """``{"val_accuracy", "test_accuracy"}`` per genotype of ``space`` in its
    :meth:`~harness_plugins.nas.spaces.SearchSpace.index` order, from the
    benchmark dict ``data`` (cells of ops outside ``space`` are skipped)."""
    import numpy as np

    _check_layout(data)
    if dataset not in EVAL_SETS:
        raise TableError(f"dataset {dataset!r} is not one of {', '.join(EVAL_SETS)}")
    if epochs not in SCHEDULES:
        raise TableError(f"epochs {epochs} is not a schedule of the benchmark (200 or 12)")
    if space.nodes != 4:
        raise TableError(f"space {space.name!r} has {space.nodes} nodes; NAS-Bench-201's "
                         f"cells have 4")
    val = np.full(space.size, np.nan)
    test = np.full(space.size, np.nan)
    infos = data["arch2infos"]
    for i, arch in enumerate(data["meta_archs"]):
        genotype = nb201_genotype(arch)
        if any(op not in space.ops for op in genotype):
            continue
        if i not in infos:
            raise TableError(f"cell {i} ({arch}) is in 'meta_archs' but not in 'arch2infos'")
        schedule = infos[i].get(SCHEDULES[epochs])
        if schedule is None:
            raise TableError(f"cell {i} has no {epochs}-epoch results")
        index = space.index(genotype)
        val[index], test[index] = cell_accuracies(schedule, dataset)
    missing = int(np.isnan(test).sum())
    if missing:
        raise TableError(f"{missing} of the space's {space.size} cells are not in the file")
    return {"val_accuracy": val, "test_accuracy": test}


def file_identity(path: str) -> dict:
    """What names a benchmark file in a shared-table key: its name, size and
    modification time (hashing gigabytes per run would cost more than reading)."""
    stat = os.stat(path)
    return {"file": os.path.basename(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
