"""Sensors: where calibration frames and real-noise test pairs come from.

The component kind ``sensors`` is declared in
``harness_plugins.denoising.hookspecs``.  A sensor object has

- ``white``: white level minus black level, in DN;
- ``calibration() -> Calibration``: the dark and flat frames noise models
  are fit on;
- ``heldout_dark() -> (M, 4, h, w)``: other dark frames, only for measuring
  how close a noise model's dark frames are to real ones;
- optional ``heldout_flat() -> (level, (M, 4, h, w))``: flat-field frames at
  a signal level (DN) outside the calibration's, for a noise-fidelity
  measure no model was fit on (shot and read noise together);
- ``pairs(clean, ratio, seed) -> list[(noisy, clean)]``: test pairs at an
  amplification ratio, packed raw in [0, 1].  A simulated sensor captures
  the given clean test images; a real camera's plugin would return its own
  captured pairs and ignore ``clean``.

``simulated`` is a parametric sensor with known truth whose noise is more
than Poisson-Gaussian: Tukey-lambda (heavy-tailed) read noise, row noise, a
per-pixel fixed pattern, per-channel bias and ADC quantisation.  Its
constants default to a high-gain low-light setting; its frames are fixed by
its own ``seed`` (a camera's calibration does not change between runs).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import Unbounded, hookimpl
from harness_plugins.denoising.noise import row_noise, shot, tukey_lambda


def simulated(gain: Annotated[float, Field(gt=0)] = 1.0,
              read_lambda: Annotated[float, Unbounded("a Tukey-lambda shape: any real")] = -0.15,
              read_scale: Annotated[float, Field(gt=0)] = 1.5,
              row_sigma: Annotated[float, Field(ge=0)] = 0.7,
              pattern_sigma: Annotated[float, Field(ge=0)] = 1.0,
              bias: Annotated[list[Annotated[float, Unbounded("an offset in DN: any real")]],
                              Field(min_length=4, max_length=4)] = (0.4, -0.3, 0.2, 0.5),
              black: Annotated[int, Field(ge=0)] = 512, white: Annotated[int, Field(ge=1)] = 16383,
              size: Annotated[int, Field(ge=1)] = 128, n_dark: Annotated[int, Field(ge=1)] = 16,
              n_heldout: Annotated[int, Field(ge=1)] = 8,
              flat_levels: Annotated[int, Field(ge=2)] = 6,
              seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 1234):
    """Simulated raw sensor with known noise: shot, Tukey-lambda read, row, fixed pattern, ADC.

    ``size``: packed frame side (images are cropped to it); ``n_dark`` dark
    frames for fitting, ``n_heldout`` for distribution distances,
    ``flat_levels`` flat-field pairs for the gain (two levels at least);
    ``bias``: the black-level offsets of R, G1, G2, B."""
    return SimulatedSensor(gain, read_lambda, read_scale, row_sigma, pattern_sigma,
                           list(bias), black, white, size, n_dark, n_heldout, flat_levels, seed)


class SimulatedSensor:
    """A parametric sensor; see :func:`simulated`."""

    def __init__(self, gain, read_lambda, read_scale, row_sigma, pattern_sigma, bias, black,
                 white, size, n_dark, n_heldout, flat_levels, seed):
        import torch

        self.gain, self.read_lambda, self.read_scale = gain, read_lambda, read_scale
        self.row_sigma, self.bias, self.black = row_sigma, bias, black
        self.white = float(white - black)
        self.size, self.n_dark, self.n_heldout = size, n_dark, n_heldout
        self.flat_levels, self.seed = flat_levels, seed
        g = torch.Generator().manual_seed(seed)
        self.pattern = torch.randn((4, size, size), generator=g) * pattern_sigma

    def sample(self, signal, generator, random_position: bool = False):
        """Raw DN above black for clean DN ``signal`` ``(B, 4, h, w)``, h, w <= size.

        The fixed pattern sits at the frame's top-left corner, or at a random
        position (``random_position``, for training on simulated patches)."""
        import torch

        b, _, h, w = signal.shape
        if h > self.size or w > self.size:
            raise ValueError(f"image {h}x{w} (packed) is larger than the sensor's "
                             f"{self.size}x{self.size} frame")
        dev = signal.device
        x = shot(signal, self.gain, generator)
        x = x + tukey_lambda(signal.shape, self.read_lambda, self.read_scale, generator, dev)
        x = x + row_noise(signal.shape, self.row_sigma, generator, dev)
        if random_position:
            ys = torch.randint(self.size - h + 1, (b,), generator=generator, device=dev)
            xs = torch.randint(self.size - w + 1, (b,), generator=generator, device=dev)
            pat = torch.stack([self.pattern[:, y:y + h, c:c + w]
                               for y, c in zip(ys.tolist(), xs.tolist())]).to(dev)
        else:
            pat = self.pattern[None, :, :h, :w].to(dev)
        x = x + pat + torch.tensor(self.bias, device=dev)[None, :, None, None]
        # the ADC: integer DN between the black and the white level
        return torch.round(x).clamp(-self.black, self.white)

    def _frames(self, signal_dn, n: int, seed: int):
        import torch

        g = torch.Generator().manual_seed(seed)
        signal = torch.full((n, 4, self.size, self.size), float(signal_dn))
        return self.sample(signal, g).numpy()

    def calibration(self):
        """Dark frames and flat-field pairs from 2 % to 40 % of the range."""
        import numpy as np

        from harness_plugins.denoising.calibration import Calibration

        dark = self._frames(0.0, self.n_dark, self.seed + 1)
        levels = np.linspace(0.02, 0.4, self.flat_levels) * self.white
        flat = np.stack([self._frames(lv, 2, self.seed + 10 + i) for i, lv in enumerate(levels)])
        return Calibration(dark=dark, flat=flat, white=self.white, truth=self)

    def heldout_dark(self):
        """Dark frames not in the calibration (another draw of the same sensor)."""
        return self._frames(0.0, self.n_heldout, self.seed + 2)

    def heldout_flat(self):
        """(level, frames): flat frames at 0.5 % of the range, a mid-tone of a
        x100 low-light image (calibration flats start at 2 %)."""
        level = round(0.005 * self.white)
        return float(level), self._frames(level, self.n_heldout, self.seed + 3)

    def pairs(self, clean, ratio: float, seed: int):
        """Capture each clean packed image (cropped to the frame) at ``ratio``."""
        import torch

        from harness_plugins.denoising.noise import low_light

        g = torch.Generator().manual_seed(seed)
        out = []
        for img in clean:
            c = torch.as_tensor(img[:, :self.size, :self.size], dtype=torch.float32)[None]
            sensor = _Positioned(self)
            noisy = low_light(c, sensor, ratio, self.white, g)
            out.append((noisy[0].numpy(), c[0].numpy()))
        return out


class _Positioned:
    """The sensor as a noise model with the fixed pattern at its true place."""

    def __init__(self, sensor: SimulatedSensor):
        self.sensor = sensor

    def sample(self, signal, generator):
        return self.sensor.sample(signal, generator, random_position=False)


@hookimpl
def register_sensors(register):
    """The simulated sensor with known truth."""
    register("simulated", simulated)
