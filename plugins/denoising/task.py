"""Task ``denoising``: low-light raw denoising with a noise model fit on dark frames.

One run, in the PNNP setting:

1. ``prepare`` splits the clean raw images of the dataset **by image** into
   train / validation / test (never by patch: no test image contributes a
   training patch).
2. The sensor gives calibration frames; the method's noise model is fit on
   them only (never on test images) and its dark frames are compared with
   the sensor's held-out dark frames (``noise_kl``, ``noise_quantile_l1``).
3. A learned denoiser trains on random clean patches of the train images
   with noise sampled from the noise model at the suite's amplification
   ratios (one drawn per patch), selecting the epoch with the best PSNR on
   validation images noised the same way.
4. It is tested on the sensor's real-noise pairs of the test images at each
   ratio, each noisy input first corrected as the noise model's method does
   (``noise.model_input``: PNNP subtracts its calibrated dark shading, ELD
   clips to [0, 1]): metrics per ratio (``x100/psnr``) and their mean
   (``psnr``).  Held-out dark frames are compared after the same shading
   correction.

Metric inputs: ``clean``, ``denoised``, ``noisy`` (lists of packed raw
``(4, h, w)`` arrays in [0, 1], one per test image, per ratio; ``noisy`` is
the sensor's input before the method's correction),
``dark_real``/``dark_generated`` (held-out and generated dark frames, DN)
and, where the sensor has held-out flat frames, ``flat_real``/
``flat_generated`` (flat-field frames minus their level, DN).
Each image metric is also logged per test image, ``unit/x100/psnr`` and
(mean over ratios) ``unit/psnr`` with step = the image's index in the
dataset, so a report compares methods paired on the same images.
A report image (noisy / denoised / clean of the first test image, sRGB) is
logged as the artifact ``report/denoised.png``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import ConfigError, hookimpl
from harness.params import check_components, reject_boolean_numbers

Spec = str | dict[str, Any]
IMAGE_INPUTS = ("clean", "denoised", "noisy")
#: Per-test-image values of the image metrics are logged under this prefix
#: with step = the image's index in the dataset (``harness.report.paired``).
UNIT = "unit/"
NOISE_INPUTS = ("dark_real", "dark_generated", "flat_real", "flat_generated")


class Training(BaseModel):
    """The ``training:`` section: patches, batches, optimiser and schedule."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(default=10, ge=1)
    patches_per_epoch: int = Field(default=256, ge=1)
    batch_size: int = Field(default=16, ge=1)
    optimizer: Spec = {"name": "adam", "lr": 1.0e-3}
    scheduler: Spec | None = None
    loss: Literal["l1", "l2"] = "l1"


class DenoisingConfig(BaseModel):
    """The method config of the denoising task."""

    model_config = ConfigDict(extra="forbid")
    sensor: Spec = "simulated"
    noise_model: Spec = "poisson_gaussian"
    denoiser: Spec = "unet"
    ratios: list[float] = Field(default_factory=lambda: [100.0, 250.0], min_length=1)
    patch: int = Field(default=32, ge=4)
    training: Training = Training()


@dataclass
class DenoisingData:
    """Clean packed raw images split by image (``names`` name them per split)."""

    train: list
    val: list
    test: list
    names: dict = field(default_factory=dict)
    #: split -> each image's index in the dataset (the same image, the same id
    #: under every seed): the step of its per-image metrics
    index: dict = field(default_factory=dict)


def _config_error(exc: ValidationError, config: dict) -> ConfigError:
    err = exc.errors()[0]
    loc = [p for p in err["loc"] if isinstance(p, int) or str(p).isidentifier()]
    if err["type"] == "extra_forbidden" and err["loc"]:
        # the unknown key itself, whatever its characters ('batch size', '<b>')
        loc = [*[p for p in err["loc"][:-1] if isinstance(p, int) or str(p).isidentifier()],
               err["loc"][-1]]
    value: Any = config
    for part in loc:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            value = None
            break
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        model = Training if loc[:-1] == ["training"] else DenoisingConfig
        msg = f"unknown key {loc[-1]!r}; keys: {', '.join(model.model_fields)}"
    return ConfigError(".".join(map(str, loc)), value, msg)


def _build(kind: str, spec: dict, path: str, **offered):
    """Build a component at validation, so a bad value in its constructor
    (a negative gain, a missing optional package) stops the suite."""
    from harness.plugins import get_registry

    try:
        return get_registry().create(kind, spec, path, **offered)
    except ConfigError as exc:
        if exc.path == path or exc.path.startswith(f"{path}."):
            raise
        # raised by the factory about one of its parameters
        raise ConfigError(f"{path}.{exc.path}" if exc.path else path, exc.value,
                          exc.message) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(path, spec, str(exc)) from None


class DenoisingTask:
    """Train a denoiser on noise from a model fit on dark frames; test on real-noise pairs."""

    metric_inputs = IMAGE_INPUTS + NOISE_INPUTS

    def validate(self, config: dict, check) -> dict:
        """Check the config, every component, the ratios and the patch size."""
        reject_boolean_numbers(DenoisingConfig, config)
        try:
            cfg = DenoisingConfig.model_validate(config).model_dump()
        except ValidationError as exc:
            raise _config_error(exc, config) from None
        check_components(cfg, check, (("sensor", "sensors"), ("noise_model", "noise_models"),
                                      ("denoiser", "denoisers"),
                                      ("training.optimizer", "optimizers"),
                                      ("training.scheduler", "schedulers")))
        for i, r in enumerate(cfg["ratios"]):
            if not r > 0:
                raise ConfigError(f"ratios.{i}", r, "an amplification ratio must be > 0")
        sensor = _build("sensors", cfg["sensor"], "sensor")
        size = getattr(sensor, "size", None)
        if size is not None and cfg["patch"] > size:
            raise ConfigError("patch", cfg["patch"], f"the patch is larger than the sensor's "
                              f"{size}x{size} frame (packed pixels)")
        _build("noise_models", cfg["noise_model"], "noise_model")
        _build("denoisers", cfg["denoiser"], "denoiser", in_channels=4)
        return cfg

    def dataset_entry(self, options: dict, registry) -> dict:
        """A dataset entry takes only ``split`` (fractions of the images):
        this task applies no dataset transform, so one is an error."""
        from harness_plugins.classification.entries import DEFAULT_SPLIT, check_split

        split = dict(DEFAULT_SPLIT)
        for key, value in options.items():
            if key != "split":
                raise ConfigError(key, value, f"the denoising task applies no dataset "
                                  f"transform or option {key!r}; its dataset keys: split "
                                  f"(fractions of the images), label")
            split = check_split(value)
        # an always-empty "transforms" keeps the run keys of the entries made
        # before tasks owned their dataset keys
        return {"transforms": [], "split": split}

    def prepare(self, entry: dict, seed: int, ctx) -> DenoisingData:
        """Split the dataset's images (not patches) into train/val/test by ``seed``."""
        raw = ctx.load_raw(entry)
        return split_images(raw.X, entry.get("split") or {}, seed,
                            raw.meta.get("names"), entry.get("label", raw.name))

    def run(self, ctx) -> dict[str, float]:
        """Fit the noise model, train the denoiser, test on the sensor's pairs."""
        import torch

        from harness.metrics import compute_metrics
        from harness_plugins.denoising.noise import model_input
        from harness_plugins.denoising.training import denoise, train_denoiser

        cfg = ctx.config
        data = ctx.data
        fns = ctx.metrics()
        sensor = ctx.create("sensors", cfg["sensor"])
        start = time.perf_counter()
        model = ctx.create("noise_models", cfg["noise_model"]).fit(sensor.calibration())
        fit_s = time.perf_counter() - start
        ctx.log_metrics({f"noise/{k}": float(v) for k, v in model.params().items()}
                        | {"time/noise_fit_s": fit_s})
        torch.manual_seed(ctx.seeds["init"])
        net = ctx.create("denoisers", cfg["denoiser"], in_channels=4).to(ctx.device)
        start = time.perf_counter()
        if getattr(net, "trainable", True):
            net = train_denoiser(ctx, net, model, data, sensor.white, cfg,
                                 getattr(sensor, "size", None))
        train_s = time.perf_counter() - start

        start = time.perf_counter()
        out: dict[str, float] = {}
        per_ratio: dict[str, list[float]] = {}
        ids = data.index.get("test") or list(range(len(data.test)))
        per_image: dict[str, list[list[float]]] = {}
        for k, ratio in enumerate(cfg["ratios"]):
            pairs = sensor.pairs(data.test, ratio, seed=ctx.seeds["split"] + k)
            noisy = [p[0] for p in pairs]
            clean = [p[1] for p in pairs]
            # the method's own input correction (PNNP's dark shading, ELD's clip)
            denoised = [denoise(net, model_input(model, x, ratio, sensor.white), ctx.device)
                        for x in noisy]
            values = compute_metrics(fns, {"clean": clean, "denoised": denoised, "noisy": noisy})
            for name, v in values.items():
                out[f"x{ratio:g}/{name}"] = v
                per_ratio.setdefault(name, []).append(v)
            for name, v in _log_per_image(ctx, fns, clean, denoised, noisy, ids,
                                          f"x{ratio:g}/").items():
                per_image.setdefault(name, []).append(v)
            if k == 0:
                _report_image(ctx, noisy[0], denoised[0], clean[0], ratio)
        out.update({name: sum(v) / len(v) for name, v in per_ratio.items()})
        for name, rows in per_image.items():  # the mean over ratios, as the run's metric
            for j, image in enumerate(ids):
                ctx.log_metrics({f"{UNIT}{name}": sum(r[j] for r in rows) / len(rows)}, image)
        real = sensor.heldout_dark()
        shading = model.dark_shading(*real.shape[2:])
        if shading is not None:  # compared as the method sees real frames
            real = real - shading[None]
        gen = torch.Generator().manual_seed(ctx.seeds["split"])
        with torch.no_grad():
            fake = model.sample(torch.zeros(real.shape), gen).cpu().numpy()
        noise = {"dark_real": real, "dark_generated": fake}
        if hasattr(sensor, "heldout_flat"):
            noise.update(_flat_inputs(model, sensor, gen))
        out.update(compute_metrics(fns, noise))
        ctx.log_metrics({"time/train_s": train_s, "time/eval_s": time.perf_counter() - start})
        return out


def _log_per_image(ctx, fns, clean, denoised, noisy, ids, prefix: str) -> dict:
    """Log each image metric per test image as ``unit/<prefix><name>`` at
    step = the image's id, so a report can pair methods on the same images
    (``harness.report.paired``); return name -> per-image values."""
    from harness.metrics import compute_metrics, metric_inputs

    image_fns = {n: f for n, f in fns.items() if set(metric_inputs(f)) <= set(IMAGE_INPUTS)}
    values: dict[str, list[float]] = {n: [] for n in image_fns}
    for c, d, x, image in zip(clean, denoised, noisy, ids):
        one = compute_metrics(image_fns, {"clean": [c], "denoised": [d], "noisy": [x]})
        ctx.log_metrics({f"{UNIT}{prefix}{n}": v for n, v in one.items()}, image)
        for n, v in one.items():
            values[n].append(v)
    return values


def _flat_inputs(model, sensor, generator) -> dict:
    """Lazy ``flat_real``/``flat_generated``: the sensor's held-out flat frames
    (shading-corrected as the method sees them) and the model's frames at the
    same level, both minus the level."""
    import torch

    from harness.metrics import lazy

    frames: dict = {}

    def both():
        if not frames:
            level, real = sensor.heldout_flat()
            shading = model.dark_shading(*real.shape[2:])
            if shading is not None:
                real = real - shading[None]
            with torch.no_grad():
                fake = model.sample(torch.full(real.shape, level), generator).cpu().numpy()
            frames.update(real=real - level, fake=fake - level)
        return frames

    return {"flat_real": lazy(lambda: both()["real"]),
            "flat_generated": lazy(lambda: both()["fake"])}


def split_images(images, split: dict, seed: int, names=None, label: str = "dataset"
                 ) -> DenoisingData:
    """Shuffle whole images by ``seed`` and cut val/test fractions (at least one
    image each, rounded), the rest is train."""
    import numpy as np

    from harness import UserError

    if not isinstance(images, (list, tuple)) or not all(
            getattr(x, "ndim", 0) == 3 and x.shape[0] == 4 for x in images):
        raise UserError(f"dataset {label!r} is not a list of packed raw images (4, h, w): the "
                        "denoising task needs a denoising source (photos, image_folder)")
    n = len(images)
    n_val = max(1, round(split.get("val", 0.2) * n))
    n_test = max(1, round(split.get("test", 0.2) * n))
    if n - n_val - n_test < 1:
        raise UserError(f"dataset {label!r} has {n} images: too few for one train, one "
                        f"validation and one test image")
    order = np.random.default_rng(seed).permutation(n)
    names = list(names) if names is not None else [f"image{i}" for i in range(n)]
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
             "train": order[n_test + n_val:]}
    return DenoisingData(**{k: [images[i] for i in idx] for k, idx in parts.items()},
                         names={k: [names[i] for i in idx] for k, idx in parts.items()},
                         index={k: [int(i) for i in idx] for k, idx in parts.items()})


def _report_image(ctx, noisy, denoised, clean, ratio: float) -> None:
    """noisy | denoised | clean of one test image in sRGB, as a PNG artifact."""
    import os
    import tempfile

    import numpy as np
    from matplotlib import image as mpimg

    from harness_plugins.denoising.isp import to_srgb

    panels = [to_srgb(x) for x in (noisy, denoised, clean)]
    gap = np.ones((panels[0].shape[0], 4, 3))
    row = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "denoised.png")
        mpimg.imsave(path, np.clip(row, 0, 1))
        ctx.log_artifact(path, "report")
    ctx.log_text(f"report/denoised.png: first test image at x{ratio:g}: noisy input | "
                 f"{ctx.spec.method} output | clean\n", "report/denoised.txt")


def denoising():
    """Low-light raw denoising: noise model fit on dark frames, denoiser tested on real pairs."""
    return DenoisingTask()


@hookimpl
def register_tasks(register):
    """The denoising task."""
    register("denoising", denoising)
