"""The component kinds of the denoising family, with their contracts:
``sensors``, ``noise_models`` and ``denoisers`` (declared through
``register_kinds``, as a third-party family would).

The ``denoising`` task feeds metrics ``clean``, ``denoised``, ``noisy``
(lists of packed raw images ``(4, h, w)`` in [0, 1], one per test pair) and
``dark_real``/``dark_generated`` (held-out dark frames and the noise model's
samples of them).
"""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_sensors(register):
    """Register sensors: sources of calibration frames and real-noise test
    pairs.  ``factory(**params)`` returns an object with ``white`` (white
    level minus black level, DN), ``calibration() -> Calibration`` (the dark
    and flat frames noise models are fit on), ``heldout_dark() -> (M, 4, h,
    w)`` (other dark frames, for judging generated ones), ``pairs(clean,
    ratio, seed) -> list[(noisy, clean)]`` (test pairs at an amplification
    ratio, packed raw in [0, 1]; a real camera's plugin returns its own
    captured pairs and ignores ``clean``) and optionally ``size`` (the frame
    side in packed pixels, which bounds the patch)."""


@hookspec
def register_noise_models(register):
    """Register sensor noise models for the ``denoising`` task.
    ``factory(**params)`` returns an object with ``fit(calibration) -> self``
    (a ``harness_plugins.denoising.calibration.Calibration``: dark frames,
    flat-field pairs, white level; never test images), ``sample(signal,
    generator) -> noisy`` (torch ``(B, 4, h, w)``, DN above the black level)
    and ``params() -> dict[str, float]`` (fitted values, logged as
    ``noise/<name>``)."""


@hookspec
def register_denoisers(register):
    """Register denoisers for the ``denoising`` task.  ``factory(in_channels:
    Annotated[int, FromData], **params)`` returns a ``torch.nn.Module`` mapping
    packed raw ``(B, in_channels, h, w)`` in [0, 1] to a denoised image of the
    same shape (any ``h``, ``w``).  A module with ``trainable = False``
    (``bm3d``, ``identity``) is applied as it is; others are trained."""


@hookimpl
def register_kinds(register):
    """The denoising family's kinds: sensors, noise_models, denoisers."""
    register("sensors", register_sensors)
    register("noise_models", register_noise_models)
    register("denoisers", register_denoisers)
