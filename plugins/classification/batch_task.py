"""The classification task's side of batch mode (``harness.groups``).

``batch_key(spec)`` groups runs that share dataset entry, model, epochs,
batch size, early stopping and the loss and optimizer by name (and their
boolean switches, such as Nesterov); they may differ in seed (split, init,
order), numeric hyperparameters (lr, weight decay, betas, momentum, focal's
gamma ...) and scheduler.  It is called at plan time, so it never loads
data: it builds the loss and optimizer objects and the model on a stand-in
shape (dropout makes a run train alone).  A model whose stacked forward is
not the plain batched matmul of an MLP (``batched.inexact_reason``: a cnn,
batch norm) gets its key with a reason: its float32 numbers in a group are
not those it has alone, so ``harness run`` trains it alone unless asked
(``--batch``).

``run_group(task, ctxs)`` re-checks at run time what planning cannot see
(data shapes, the model's dropout and whether its stacked numbers are its
own alone, e.g. ``auto`` building a cnn for image data, the torch optimizer
class),
trains each compatible set of runs with ``batched.train_group`` and every
other run alone with ``task.run``; the test split is evaluated per run
exactly as ``task.run`` does.
"""

from __future__ import annotations

import json
import time
from typing import Any


def _spec_name(spec: Any) -> str:
    return spec["name"] if isinstance(spec, dict) else str(spec)


def _switches(spec: Any) -> dict:
    """The non-numeric parameters of a component spec (they select code paths
    that must be equal in a group; numbers may differ per run)."""
    if not isinstance(spec, dict):
        return {}
    return {k: v for k, v in spec.items() if k != "name" and not _numeric(v)}


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, (list, tuple)) and all(_numeric(v) for v in value)


def batch_key(spec, registry) -> tuple[str | None, str]:
    """(key, "") for a run that may train with others of the same key, else
    (None, why it trains alone)."""
    from harness_plugins.classification.batched import component_reason

    cfg = spec.config
    tr = cfg["training"]
    from harness_plugins.classification.precision import is_off

    if not is_off(tr):
        return None, "amp, channels_last and compile apply to a run trained alone"
    loss_name, opt_name = _spec_name(cfg["loss"]), _spec_name(tr["optimizer"])
    for kind, name, component in (("losses", loss_name, cfg["loss"]),
                                  ("optimizers", opt_name, tr["optimizer"])):
        try:
            obj = registry.create(kind, component, kind)
        except Exception as exc:  # the run itself will report it
            return None, f"{kind[:-1]} `{name}` could not be built: {exc}"
        reason = component_reason(kind, name, obj)
        if reason:
            return None, reason
    reason, inexact = _model_reason_at_plan_time(cfg["model"], registry)
    if reason:
        return None, reason
    dataset = {k: v for k, v in spec.dataset.items() if k not in ("label",)}
    key = {"dataset": dataset, "model": cfg["model"], "epochs": tr["epochs"],
           "batch_size": tr["batch_size"], "early_stopping": tr.get("early_stopping"),
           "select_best": tr.get("select_best", True),
           "eval_batch_size": tr.get("eval_batch_size"),
           "device": getattr(spec, "device", "auto"), "metrics": list(spec.metrics),
           "loss": [loss_name, _switches(cfg["loss"])],
           "optimizer": [opt_name, _switches(tr["optimizer"])],
           "rest": {k: v for k, v in cfg.items() if k not in ("model", "loss", "training")}}
    return json.dumps(key, sort_keys=True, default=str), inexact or ""


#: Stand-in data shapes for building a model at plan time (no data yet):
#: tabular first, then a small image.
_PLAN_SHAPES = ((4,), (1, 8, 8))


#: (registry id, model spec) -> (reason, inexact): a plan builds each model spec once.
_PLAN_REASONS: dict[tuple[int, str], tuple[str | None, str | None]] = {}


def _model_reason_at_plan_time(model_spec, registry) -> tuple[str | None, str | None]:
    """Why the model cannot be stacked (dropout, ``batchable = False``), and
    why its stacked numbers are not a run's alone (``batched.inexact_reason``:
    a model that goes through ``vmap``), judged on the first stand-in shape it
    builds for; the real data is checked again when the group runs."""
    key = (id(registry), json.dumps(model_spec, sort_keys=True, default=str))
    if key not in _PLAN_REASONS:
        _PLAN_REASONS[key] = _build_and_judge(model_spec, registry)
    return _PLAN_REASONS[key]


def _build_and_judge(model_spec, registry) -> tuple[str | None, str | None]:
    from harness_plugins.classification.batched import inexact_reason, model_reason

    for shape in _PLAN_SHAPES:
        try:
            model = registry.create("models", model_spec, "model", in_shape=shape, n_classes=2)
        except Exception:  # noqa: BLE001 - not this kind of data: try the next shape
            continue
        name = _spec_name(model_spec)
        reason, inexact = model_reason(model), inexact_reason(model)
        return (f"model `{name}`: {reason}" if reason else None,
                f"model `{name}`: {inexact}" if inexact else None)
    return None, None


def _runtime_signature(ctx, data) -> tuple[tuple | None, str]:
    """What must be equal between stacked runs once the data exists (shapes,
    parameter shapes, optimizer class and switches), or why this run cannot
    be stacked."""
    import torch

    from harness_plugins.classification.batched import component_reason, model_reason
    from harness_plugins.classification.batched_optim import probe, signature
    from harness_plugins.classification.models import spec_with_head
    from harness_plugins.classification.trainer import model_inputs

    cfg = ctx.config
    loss = ctx.create("losses", cfg["loss"])
    torch.manual_seed(ctx.seeds["init"])
    model = ctx.create("models", spec_with_head(cfg["model"], loss, ctx.registry),
                       **model_inputs(data))
    reason = model_reason(model) or _inexact_at_run_time(model)
    if reason:
        return None, reason
    opt_obj = ctx.create("optimizers", cfg["training"]["optimizer"])
    reason = (component_reason("losses", _spec_name(cfg["loss"]), loss)
              or component_reason("optimizers", _spec_name(cfg["training"]["optimizer"]),
                                  opt_obj))
    if reason:
        return None, reason
    opt, reason = probe(opt_obj)
    if opt is None:
        return None, reason
    shapes = tuple(tuple(p.shape) for p in model.parameters())
    arrays = tuple((a.shape, str(a.dtype)) for a in (data.X_train, data.X_val))
    return (shapes, arrays, len(data.y_train), data.n_classes, signature(opt)), ""


#: The prepared splits of the dataset entry this process trained last, by
#: split seed: runs of one seed share their split, and the groups of one
#: dataset (one per loss or optimizer) follow each other in plan order, so
#: each split is prepared once per process.  Only one entry is kept: memory
#: stays one dataset's splits.
_PREPARED: dict[str, Any] = {}


def _prepared(ctx):
    """``ctx``'s prepared data (``task.prepare`` depends only on the dataset
    entry, split seed and registry), from ``_PREPARED`` when this process has it."""
    entry = json.dumps([id(ctx.registry), ctx.spec.dataset], sort_keys=True, default=str)
    key = f"{entry}\0{ctx.seeds['split']}"
    if key not in _PREPARED:
        if not any(k.startswith(f"{entry}\0") for k in _PREPARED):
            _PREPARED.clear()
        _PREPARED[key] = ctx.data
    return _PREPARED[key]


def _inexact_at_run_time(model) -> str | None:
    """``batched.inexact_reason`` unless ``--batch`` asked to stack such
    runs too (``harness.groups.INEXACT_ENV``): the plan judged the model on a
    stand-in shape, the real data may make it another (``auto`` on images)."""
    import os

    from harness.groups import INEXACT_ENV
    from harness_plugins.classification.batched import inexact_reason

    return None if os.environ.get(INEXACT_ENV) == "1" else inexact_reason(model)


def _alone(task, ctx) -> dict | BaseException:
    import random

    import numpy as np
    import torch

    # as the core seeds a run before ``task.run``: the run's numbers are its own
    seed = ctx.seeds["init"]
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    try:
        return task.run(ctx)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # recorded per run by the core
        return exc


def run_group(task, ctxs: list) -> list[dict | BaseException]:
    """Train ``ctxs`` (runs with one batch key) together where they stack,
    alone otherwise; per run its test metrics or the exception that ended it."""
    from harness_plugins.classification.batched import train_group
    from harness_plugins.classification.task import test_metrics

    results: list[Any] = [None] * len(ctxs)
    sets: dict[tuple, list[int]] = {}
    datas: dict[int, Any] = {}
    for i, ctx in enumerate(ctxs):
        try:
            datas[i] = _prepared(ctx)
            sig, _ = _runtime_signature(ctx, datas[i])
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # e.g. a dataset that cannot be fetched
            results[i] = exc
            continue
        if sig is None:
            results[i] = _alone(task, ctx)
        else:
            sets.setdefault(sig, []).append(i)
    fns = ctxs[0].metrics() if sets else {}
    for members in sets.values():
        if len(members) == 1:
            results[members[0]] = _alone(task, ctxs[members[0]])
            continue
        trained = train_group([ctxs[i] for i in members], [datas[i] for i in members], fns)
        for i, out in zip(members, trained):
            if isinstance(out, BaseException):
                results[i] = out
                continue
            model, fit = out
            ctx = ctxs[i]
            start = time.perf_counter()
            try:
                results[i] = test_metrics(ctx, model, datas[i], fns,
                                          ctx.config["training"]["eval_batch_size"])
            except Exception as exc:  # a metric that fails on this run's predictions
                results[i] = exc
                continue
            ctx.log_metrics({"time/train_s": fit.train_s,
                             "time/eval_s": time.perf_counter() - start,
                             "train/best_epoch": fit.best_epoch})
    return results
