"""PNNP's dark-shading correction and the flat-field noise metric (issue 23, item 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness_plugins.denoising.metrics import flat_noise_kl, histogram_kl, quantile_l1
from harness_plugins.denoising.noise import PoissonGaussian, model_input
from harness_plugins.denoising.pnnp import pnnp
from harness_plugins.denoising.sensor import simulated


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def sensor():
    return simulated(size=64, n_dark=16, n_heldout=4, pattern_sigma=1.5)


@pytest.fixture(scope="module")
def fitted(sensor):
    calib = sensor.calibration()
    return (pnnp(steps=200, seed=0).fit(calib),
            pnnp(steps=200, seed=0, dark_shading="add").fit(calib))


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_pnnp_subtracts_its_calibrated_dark_shading_from_the_real_input(sensor, fitted):
    subtract, add = fitted
    pattern = sensor.pattern.numpy()
    shading = subtract.dark_shading(64, 64)
    # the calibrated shading is the sensor's fixed pattern plus its black-level error
    assert _corr(shading, pattern) > 0.75  # 16 dark frames: the estimate is noisy
    assert np.allclose(shading.mean(axis=(1, 2)), sensor.bias, atol=0.15)
    assert add.dark_shading(64, 64) is None
    # a flat grey scene at x100: the test input keeps the pattern unless corrected
    clean = [np.full((4, 64, 64), 0.3, np.float32)]
    (noisy, _), = sensor.pairs(clean, 100.0, seed=1)
    raw_residual = noisy - 0.3
    fixed = model_input(subtract, noisy, 100.0, sensor.white) - 0.3
    kept = model_input(add, noisy, 100.0, sensor.white) - 0.3
    assert np.array_equal(kept, np.minimum(noisy, 1.0) - 0.3)
    # measured: 0.18 before the correction, 0.02 after
    assert _corr(raw_residual, pattern) > 0.12
    assert abs(_corr(fixed, pattern)) < 0.05
    # the black-level error (0.5 DN on B, x100 / white) is gone from the mean
    bias_b = sensor.bias[3] * 100.0 / sensor.white
    assert abs(raw_residual[3].mean() - bias_b) < 0.002
    assert abs(fixed[3].mean()) < 0.002


def test_pnnp_generated_noise_holds_no_shading_when_it_is_subtracted(sensor, fitted):
    subtract, add = fitted
    dark_sub = subtract.sample(torch.zeros(4, 4, 64, 64), _gen(1)).numpy()
    dark_add = add.sample(torch.zeros(4, 4, 64, 64), _gen(1)).numpy()
    # the same draws: the modes differ by exactly the shading (bias plus map crops)
    assert np.allclose((dark_add - dark_sub).mean(axis=(0, 2, 3)), sensor.bias, atol=0.15)
    assert np.allclose(dark_sub.mean(axis=(0, 2, 3)), 0.0, atol=0.15)
    # corrected real dark frames are what the subtract model must match
    real = sensor.heldout_dark()
    corrected = real - subtract.dark_shading(64, 64)[None]
    assert quantile_l1(corrected, dark_sub) < quantile_l1(corrected, dark_add)


def test_held_out_flat_frames_sit_outside_the_calibration_levels(sensor):
    level, frames = sensor.heldout_flat()
    assert level == round(0.005 * sensor.white) and frames.shape == (4, 4, 64, 64)
    calib_levels = sensor.calibration().flat.mean(axis=(1, 2, 3, 4))
    assert level < calib_levels.min() / 2
    assert abs(frames.mean() - level - np.mean(sensor.bias)) < 0.5


def test_flat_noise_kl_sees_the_gain_that_dark_frames_cannot(sensor):
    """Dark frames hold no shot noise, so a wrong gain K is invisible to the
    dark-frame distances and plain in the flat-field one."""
    level, real = sensor.heldout_flat()
    metric = flat_noise_kl()

    def flat_kl(gain):
        model = PoissonGaussian(gain=gain, sigma=2.0)
        fake = model.sample(torch.full(real.shape, level), _gen(2)).numpy()
        return metric(real - level, fake - level)

    def dark_kl(gain):
        model = PoissonGaussian(gain=gain, sigma=2.0)
        fake = model.sample(torch.zeros(real.shape), _gen(2)).numpy()
        return histogram_kl(sensor.heldout_dark(), fake)

    assert dark_kl(1.0) == pytest.approx(dark_kl(4.0))
    assert flat_kl(4.0) > 3 * flat_kl(sensor.gain)
