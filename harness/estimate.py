"""Cost before launch: the training time of a plan's work items, estimated
from the ``time/train_s`` of earlier runs in the store.

What makes two runs' training times comparable is the task's to say: its
``cost_keys`` (dotted config keys or key prefixes, e.g. a model and an epoch
count; see ``register_tasks``).  A run's history is the finished runs (any
experiment of the store) with the same dataset and equal values of those
keys.  A run training alone is estimated by the median of unbatched history;
a group of n runs by n times the median per-run share of earlier batched runs
(``harness.group`` tag: their ``time/train_s`` is already the group's time
over its size), else by n times the unbatched median (an upper bound:
stacking is faster).  Runs without history are named, not guessed; a task
without ``cost_keys`` gets no estimate.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Estimate:
    """Seconds of training per work item and what had no history."""

    seconds: float = 0.0
    groups_s: list[float] = field(default_factory=list)
    alone_s: float = 0.0
    #: run names without history to estimate from
    unknown: list[str] = field(default_factory=list)
    #: groups estimated from unbatched history only (upper bounds)
    upper_bound_groups: int = 0
    #: the task's cost keys (empty: the task declares none, nothing is estimated)
    keys: tuple[str, ...] = ()
    task: str = ""


def _matches(key: str, keys: tuple[str, ...]) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in keys)


def signature(dataset: str, config: dict, keys: tuple[str, ...]) -> tuple:
    """What makes two runs' training times comparable: the dataset and the
    flattened config values under ``keys`` (as MLflow params, strings)."""
    from harness.tracking import flatten

    return dataset, tuple(sorted((k, v) for k, v in flatten(config).items()
                                 if _matches(k, keys)))


def history(uri: str | None, keys: tuple[str, ...]) -> dict[tuple, dict[str, list[float]]]:
    """signature -> {"alone": [train_s ...], "batched": [per-run share ...]}
    of the store's finished runs (sqlite is read directly: importing mlflow
    costs seconds and ``harness plan`` must stay fast; other stores give none)."""
    import os
    import sqlite3

    from harness.runstate import resolve_uri
    from harness.tracking import sqlite_path

    path = sqlite_path(resolve_uri(uri))
    out: dict = defaultdict(lambda: {"alone": [], "batched": []})
    if not keys or path is None or not os.path.exists(path):
        return out
    # LIKE's "_" matches any character: _matches filters exactly below
    where = " OR ".join("key = ? OR key LIKE ?" for _ in keys)
    args = [x for k in keys for x in (k, f"{k}.%")]
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute(
            """SELECT r.run_uuid, m.value, d.value, g.value FROM runs r
               JOIN latest_metrics m ON m.run_uuid = r.run_uuid AND m.key = 'time/train_s'
               JOIN tags d ON d.run_uuid = r.run_uuid AND d.key = 'harness.dataset'
               LEFT JOIN tags g ON g.run_uuid = r.run_uuid AND g.key = 'harness.group'
               WHERE r.lifecycle_stage = 'active' AND r.status = 'FINISHED'""").fetchall()
        params: dict = defaultdict(dict)
        for run, key, value in con.execute(
                f"SELECT run_uuid, key, value FROM params WHERE {where}", args):
            if _matches(key, keys):
                params[run][key] = value
    except sqlite3.Error:  # a store without MLflow's tables yet
        return out
    finally:
        con.close()
    for run, seconds, dataset, group in rows:
        sig = (dataset, tuple(sorted(params.get(run, {}).items())))
        out[sig]["batched" if group else "alone"].append(float(seconds))
    return out


def task_cost_keys(task: str, registry=None) -> tuple[str, ...]:
    """The ``cost_keys`` task ``task`` declares (empty when none)."""
    from harness.plugins import get_registry

    registry = registry or get_registry()
    return tuple(getattr(registry.get("tasks", task).factory(), "cost_keys", ()) or ())


def estimate(items: list, uri: str | None, registry=None) -> Estimate:
    """Estimate the training time of batch-mode ``items`` (lists of RunSpecs;
    one spec = a run alone; see ``harness.groups.Grouping.items``)."""
    if not items:
        return Estimate()
    task = items[0][0].task
    keys = task_cost_keys(task, registry)
    est = Estimate(keys=keys, task=task)
    hist = history(uri, keys) if keys else {}
    for item in items:
        spec = item[0]
        known = hist.get(signature(spec.dataset_label, spec.config, keys),
                         {"alone": [], "batched": []})
        if len(item) > 1 and known["batched"]:
            seconds = len(item) * statistics.median(known["batched"])
        elif known["alone"]:
            seconds = len(item) * statistics.median(known["alone"])
            est.upper_bound_groups += len(item) > 1
        else:
            est.unknown += [s.run_name for s in item]
            continue
        est.seconds += seconds
        if len(item) > 1:
            est.groups_s.append(seconds)
        else:
            est.alone_s += seconds
    return est


def describe(est: Estimate, n_runs: int) -> list[str]:
    """Lines for ``harness plan``."""
    if not n_runs:
        return ["estimated training time: 0 s (nothing to run)"]
    if not est.keys:
        return [f"estimated training time: unknown: task {est.task!r} declares no cost_keys "
                f"(what sets a run's training time)"]
    same = f"same dataset and {', '.join(est.keys)}"
    if est.unknown and len(est.unknown) == n_runs:
        return [f"estimated training time: unknown: no run in the store has the {same} as "
                f"any of these {n_runs}"]
    lines = [f"estimated training time: {est.seconds:.0f} s"
             + (f" ({len(est.groups_s)} groups {sum(est.groups_s):.0f} s, runs alone "
                f"{est.alone_s:.0f} s)" if est.groups_s else "")
             + (f"; {est.upper_bound_groups} group(s) from unbatched runs only (upper bound)"
                if est.upper_bound_groups else "")]
    if est.unknown:
        shown = ", ".join(est.unknown[:3])
        more = f" and {len(est.unknown) - 3} more" if len(est.unknown) > 3 else ""
        lines.append(f"no history for {len(est.unknown)} of {n_runs} runs ({same}): "
                     f"{shown}{more}")
    return lines
