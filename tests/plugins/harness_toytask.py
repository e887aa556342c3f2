"""A toy task family written outside plugins/, as a third party would: its
own data object, its own metric inputs and its own component kind.  The
proof that a new family needs no edit under harness/ (tests/test_core_generic.py).

The task fits a "smoother" (a component of the kind ``smoothers`` this
plugin adds) to a noisy 1-D signal and scores the result with metrics that
consume ``clean`` and ``estimate`` arrays, not labels and probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from harness import FromData, hookimpl, metric
from harness.data import RawDataset


@dataclass
class Signal:
    """The toy task's own data object."""

    clean: object
    noisy: object
    length: int


def sine(n: int = 64, periods: float = 2.0) -> RawDataset:
    """A clean sine wave of ``n`` points (unlabelled: y is None)."""
    import numpy as np

    x = np.sin(np.linspace(0, 2 * np.pi * periods, n))
    return RawDataset("sine", x, None, meta={"citation": "@misc{sine, title={A sine}}"})


def moving_average(length: Annotated[int, FromData], width: int = 3):
    """Moving average of ``width`` points (``length`` comes from the data)."""
    import numpy as np

    if width > length:
        raise ValueError("width exceeds the signal")
    kernel = np.ones(width) / width
    return lambda x: np.convolve(x, kernel, mode="same")


def identity_smoother(length: Annotated[int, FromData]):
    """No smoothing."""
    return lambda x: x


@metric(inputs=("clean", "estimate"), greater_is_better=False)
def squared_error():
    """Mean squared error of the estimate."""
    import numpy as np

    return lambda clean, estimate: float(np.mean((clean - estimate) ** 2))


@metric(inputs=("clean", "estimate"), greater_is_better=True)
def snr_db(floor: float = 1e-12):
    """Signal-to-noise ratio of the estimate in dB."""
    import numpy as np

    def snr(clean, estimate):
        return float(10 * np.log10(np.sum(clean ** 2) / max(np.sum((clean - estimate) ** 2),
                                                             floor)))

    return snr


class DenoiseSignal:
    """Toy task: smooth a noisy signal."""

    metric_inputs = ("clean", "estimate")

    def validate(self, config, check):
        """``smoother`` (a ``smoothers`` spec) and ``noise`` (a float)."""
        from harness import ConfigError

        unknown = set(config) - {"smoother", "noise"}
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError(key, config[key], "unknown key; keys: smoother, noise")
        name, params = check("smoothers", config.get("smoother", "identity"), "smoother")
        noise = config.get("noise", 0.1)
        if not isinstance(noise, (int, float)) or noise < 0:
            raise ConfigError("noise", noise, "noise must be a number >= 0")
        return {"smoother": {"name": name, **params}, "noise": float(noise)}

    def prepare(self, entry, seed, ctx):
        """The raw signal plus seeded noise (the config's noise level)."""
        import numpy as np

        raw = ctx.load_raw(entry)
        rng = np.random.default_rng(seed)
        clean = np.asarray(raw.X, dtype=float)
        return Signal(clean, clean + rng.normal(0, ctx.config["noise"], clean.shape), len(clean))

    def run(self, ctx):
        """Smooth and score."""
        from harness.metrics import compute_metrics

        data = ctx.data
        smooth = ctx.create("smoothers", ctx.config["smoother"], length=data.length)
        estimate = smooth(data.noisy)
        for epoch in range(2):  # a phase of its own, logged apart
            ctx.epoch_end(epoch, {"loss": float(((estimate - data.clean) ** 2).mean())},
                          phase="fit")
        self._figure(ctx, data, estimate)
        return compute_metrics(ctx.metrics(), {"clean": data.clean, "estimate": estimate})

    @staticmethod
    def _figure(ctx, data, estimate) -> None:
        """The task's own picture, which the report shows per method."""
        import os
        import tempfile

        import matplotlib.image as mpimg
        import numpy as np

        rows = np.stack([data.noisy, estimate, data.clean])
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "signal.png")
            mpimg.imsave(path, np.repeat(rows, 4, axis=0), cmap="gray")
            ctx.log_artifact(path, "report")


@hookimpl
def register_kinds(register):
    register("smoothers", "1-D signal smoothers for the toy task")


@hookimpl
def register_smoothers(register):
    register("moving_average", moving_average)
    register("identity", identity_smoother)


@hookimpl
def register_tasks(register):
    register("toy_signal", DenoiseSignal)


@hookimpl
def register_datasets(register):
    register("sine", sine)


@hookimpl
def register_metrics(register):
    register("squared_error", squared_error)
    register("snr_db", snr_db)
