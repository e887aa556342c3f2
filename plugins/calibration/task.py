"""Task ``calibration``: post-hoc calibrators on a shared classifier.

One classifier is trained per (training data, seed, classifier config) and
shared by every calibrator of the suite through ``harness.shared`` (an MLflow
artifact of its weights and logits), so calibrators are compared on identical
logits.  Entries whose train and validation splits are the same data (CIFAR-10
and each CIFAR-10-C corruption and severity: CIFAR-10's train split, another
test set) share it too: a later entry loads the weights and computes the
logits of its own test set.  Each
calibrator is fitted on validation logits and evaluated on the clean test set
(``test/<metric>``) and on corrupted copies at fixed severities
(``test/shift<s>/<metric>``), in- and out-of-distribution as in the
correctness-aware calibration paper.
"""

from __future__ import annotations

import os
import tempfile

from pydantic import BaseModel, ConfigDict, Field

from harness import ConfigError, hookimpl
from harness_plugins.classification.entries import SplitAndTransforms
from harness_plugins.classification.task import Config, validate_classifier_config

Spec = str | dict


class Shift(BaseModel):
    """Corrupted test sets: severities 1..5 of ``shift_corruptions``."""

    model_config = ConfigDict(extra="forbid")
    severities: list[int] = Field(default_factory=lambda: [1, 3, 5])


class CalibrationConfig(Config):
    """Classifier config plus the calibrator under test."""

    model_config = ConfigDict(extra="forbid")
    calibrator: Spec = "temperature"
    shift: Shift = Shift()


#: Array-name prefix of the classifier's weights in its shared artifact.
WEIGHT = "weight/"


def _identity(*arrays, extra: object = None) -> str:
    """A hash of ``arrays`` (dtype, shape and bytes) and ``extra``'s repr."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    h.update(repr(extra).encode())
    return h.hexdigest()[:16]


def training_identity(data) -> str:
    """What the classifier learns from: the train and validation splits (the
    latter selects and normalises), the image pipeline and the classes.  Two
    dataset entries with equal identities train the same classifier."""
    return _identity(data.X_train, data.y_train, data.X_val, data.y_val,
                     extra=(data.meta.get("pipeline"), [str(c) for c in data.classes]))


def _classifier_arrays(ctx, cfg: dict, data) -> dict:
    """Train the classifier; return its weights and the logits every
    calibrator needs."""
    import numpy as np

    from harness_plugins.classification.trainer import train_classifier

    model, _, result = train_classifier(ctx, cfg, data, {})
    state = getattr(model, "_orig_mod", model).state_dict()  # compiled: the module's own
    weights = {f"{WEIGHT}{k}": v.detach().cpu().numpy() for k, v in state.items()}
    return {**weights, **_logit_arrays(ctx, cfg, data, model, np.array(result.train_s))}


def _rebuilt(ctx, cfg: dict, data, arrays: dict):
    """The shared classifier from its stored weights, on the run's device."""
    import torch

    from harness_plugins.classification.models import spec_with_head
    from harness_plugins.classification.trainer import model_inputs

    loss_fn = ctx.create("losses", cfg["loss"])
    model = ctx.create("models", spec_with_head(cfg["model"], loss_fn, ctx.registry),
                       **model_inputs(data))
    model.load_state_dict({k[len(WEIGHT):]: torch.as_tensor(v) for k, v in arrays.items()
                           if k.startswith(WEIGHT)})
    return model.to(ctx.device)


def _logit_arrays(ctx, cfg: dict, data, model, train_s) -> dict:
    """The logits of the validation, test and shifted test sets (and their
    views), labels, ``train_s`` and the test set's identity."""
    import numpy as np
    import torch

    from harness_plugins.calibration.calibrators import make_views
    from harness_plugins.classification.trainer import predict_logits

    bs = cfg["training"]["eval_batch_size"]
    rng = np.random.default_rng(ctx.seeds["split"])

    def logits(X):
        return predict_logits(model, torch.as_tensor(X, device=ctx.device), bs).cpu().numpy()

    out = {"y_val": data.y_val, "y_test": data.y_test, "train_s": np.asarray(train_s),
           "test_identity": np.array(_identity(data.X_test, data.y_test))}
    sets = {"val": data.X_val, "test": data.X_test}
    for s in cfg["shift"]["severities"]:
        sets[f"shift{s}"] = _shifted(data.X_test, s, rng)
    for name, X in sets.items():
        out[f"{name}_logits"] = logits(X)
        for i, view in enumerate(make_views(X, rng)):
            out[f"{name}_view{i}"] = logits(np.asarray(view, dtype=np.float32))
    return out


def _shifted(X, severity: int, rng):
    """The test set at one severity.  Images get one corruption each (the
    kinds in equal shares, as CIFAR-10-C results are averaged over kinds),
    never all of them stacked on one image; tabular rows get feature noise."""
    import numpy as np

    from harness_plugins.calibration.calibrators import IMAGE_CORRUPTIONS, shift_corruptions

    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        return shift_corruptions(X, severity, rng).astype(np.float32)
    out = np.empty_like(X)
    for kind, idx in zip(IMAGE_CORRUPTIONS, np.array_split(np.arange(len(X)),
                                                           len(IMAGE_CORRUPTIONS))):
        out[idx] = shift_corruptions(X[idx], severity, rng, kind=kind)
    return out


def _views(arrays: dict, name: str) -> list:
    views, i = [], 0
    while f"{name}_view{i}" in arrays:
        views.append(arrays[f"{name}_view{i}"])
        i += 1
    return views


class CalibrationTask(SplitAndTransforms):
    """Fit a calibrator on validation logits of a shared classifier; measure
    calibration on the test set and on shifted test sets."""

    #: Calibration metrics see the calibrated test predictions only.
    metric_inputs = ("labels", "probs")
    #: What, with the dataset, sets a run's training time (``harness.estimate``).
    cost_keys = ("model", "training.epochs")

    def validate(self, config: dict, check) -> dict:
        """Check the classifier config and the calibrator spec."""
        cfg = validate_classifier_config(config, check, CalibrationConfig,
                                         (("calibrator", "calibrators"),))
        for s in cfg["shift"]["severities"]:
            if not 1 <= s <= 5:
                raise ConfigError("shift.severities", s, "severities are 1..5")
        return cfg

    def prepare(self, entry: dict, seed: int, ctx):
        """The classification preparation (``PreparedData``)."""
        from harness_plugins.classification.prepare import prepare_dataset

        return prepare_dataset(entry, seed, registry=ctx.registry)

    def run(self, ctx) -> dict[str, float]:
        """Reuse or train the classifier, calibrate, evaluate."""
        from harness.metrics import compute_metrics
        from harness.shared import code_identity, shared_arrays, shared_key

        cfg = ctx.config
        classifier = {k: cfg[k] for k in ("model", "loss", "training", "shift")}
        # code identity is part of the key: a changed classifier or corruption
        # must not be served from an artifact an older checkout wrote
        data = ctx.data
        key = shared_key(training_identity(data), ctx.spec.seeds, classifier, code_identity())
        arrays, reused = shared_arrays(ctx, "classifier", key,
                                       lambda: _classifier_arrays(ctx, cfg, data))
        if reused and str(arrays.get("test_identity")) != _identity(data.X_test, data.y_test):
            # trained for another entry on the same data: this entry's test set
            arrays = _logit_arrays(ctx, cfg, data, _rebuilt(ctx, cfg, data, arrays),
                                   arrays["train_s"])
        ctx.log_metrics({"classifier/reused": float(reused),
                         "time/train_s": 0.0 if reused else float(arrays["train_s"])})
        cal = ctx.create("calibrators", cfg["calibrator"])
        needs_views = getattr(cal, "needs_views", False)
        fit_kw = {"view_logits": _views(arrays, "val")} if needs_views else {}
        cal.fit(arrays["val_logits"], arrays["y_val"], **fit_kw)
        fns = ctx.metrics()
        out: dict[str, float] = {}
        for name in ["test", *(f"shift{s}" for s in cfg["shift"]["severities"])]:
            kw = {"view_logits": _views(arrays, name)} if needs_views else {}
            probs = cal.predict_proba(arrays[f"{name}_logits"], **kw)
            prefix = "" if name == "test" else f"{name}/"
            scores = compute_metrics(fns, {"labels": arrays["y_test"], "probs": probs})
            out.update({f"{prefix}{m}": v for m, v in scores.items()})
            if name == "test":
                self._diagram(ctx, probs, arrays["y_test"], cfg)
        return out

    @staticmethod
    def _diagram(ctx, probs, y, cfg) -> None:
        from harness_plugins.calibration.calibrators import reliability_diagram

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "reliability.png")
            reliability_diagram(probs, y, path, title=f"{ctx.spec.dataset_label} / "
                                f"{ctx.spec.method}")
            ctx.log_artifact(path)


def calibration():
    """Post-hoc calibration of a shared classifier, in- and out-of-distribution."""
    return CalibrationTask()


@hookimpl
def register_tasks(register):
    register("calibration", calibration)
