"""Noise models, the simulated sensor and the ISP of the denoising family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness_plugins.denoising import isp
from harness_plugins.denoising.calibration import Calibration, photon_transfer_gain
from harness_plugins.denoising.noise import (
    ELD,
    PoissonGaussian,
    low_light,
    noise_std,
    quantisation,
    row_noise,
)
from harness_plugins.denoising.pnnp import pnnp
from harness_plugins.denoising.sensor import simulated


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_poisson_gaussian_variance_is_k_signal_plus_sigma2():
    model = PoissonGaussian(gain=2.0, sigma=3.0)
    for level in (0.0, 50.0, 400.0):
        x = model.sample(torch.full((200_000,), level), _gen(1))
        expected = 2.0 * level + 9.0
        assert float(x.mean()) == pytest.approx(level, abs=0.1)
        assert float(x.var()) == pytest.approx(expected, rel=0.03)


def test_row_noise_is_constant_along_each_raw_row():
    field = row_noise((2, 4, 6, 5), 1.0, _gen(), "cpu")
    for frame in field.numpy():
        bayer = isp.unpack(frame)
        assert np.allclose(bayer, bayer[:, :1])           # constant along every raw row
        assert np.ptp(bayer[:, 0]) > 0                    # but differs between rows
    # ELD with only row noise (no read noise, no signal) keeps rows constant up to the ADC step
    model = ELD()
    model.read_scale, model.row_sigma = 0.0, 2.0
    x = model.sample(torch.zeros(1, 4, 8, 8), _gen(2))[0].numpy()
    bayer = isp.unpack(x)
    assert np.all(np.ptp(bayer, axis=1) <= 1.0)
    assert np.ptp(bayer[:, 0]) > 1.0


def test_quantisation_error_within_half_a_step():
    q = quantisation((100_000,), _gen(), "cpu")
    assert float(q.abs().max()) <= 0.5
    assert float(q.var()) == pytest.approx(1 / 12, rel=0.03)
    sensor = simulated(size=16, read_scale=0.0, row_sigma=0.0, pattern_sigma=0.0,
                       bias=[0.0] * 4, gain=1e-8)  # shot std 1e-3 DN
    signal = torch.rand(2, 4, 16, 16) * 100
    out = sensor.sample(signal, _gen())
    assert torch.equal(out, torch.round(out))
    assert float((out - signal).abs().max()) <= 0.5 + 5e-3


def test_inverse_then_forward_isp_returns_the_srgb_image():
    rng = np.random.default_rng(0)
    # constant over 2x2 cells, so the half-resolution forward ISP sees every colour exactly
    cells = rng.uniform(0.05, 0.8, size=(8, 10, 3))
    rgb = np.repeat(np.repeat(cells, 2, axis=0), 2, axis=1)
    raw = isp.to_raw(rgb)
    assert raw.shape == (4, 8, 10) and raw.dtype == np.float32
    assert np.allclose(isp.to_srgb(raw), cells, atol=2e-3)
    assert np.allclose(isp.process(isp.unprocess(rgb)), rgb, atol=1e-6)
    assert np.array_equal(isp.unpack(isp.pack(isp.mosaic(rgb))), isp.mosaic(rgb))


def test_low_light_scales_down_adds_noise_and_scales_back():
    class Noiseless:
        def sample(self, signal, generator):
            return torch.round(signal)

    clean = torch.full((1, 4, 2, 2), 0.5)
    out = low_light(clean, Noiseless(), ratio=100.0, white=1000.0, generator=_gen())
    assert torch.allclose(out, torch.full_like(out, 0.5))   # 0.5*1000/100 = 5 DN, back to 0.5
    out = low_light(clean, Noiseless(), ratio=300.0, white=1000.0, generator=_gen())
    assert torch.allclose(out, torch.full_like(out, 0.6))    # 1.67 DN rounds to 2 DN: 2*300/1000


def _pg_calibration(gain, sigma, size=64):
    model = PoissonGaussian(gain=gain, sigma=sigma)
    dark = model.sample(torch.zeros(16, 4, size, size), _gen(3)).numpy()
    levels = np.linspace(50, 2000, 6)
    flat = np.stack([model.sample(torch.full((2, 4, size, size), float(v)), _gen(10 + i)).numpy()
                     for i, v in enumerate(levels)])
    return Calibration(dark=dark, flat=flat, white=16000.0)


def test_photon_transfer_recovers_the_gain():
    calib = _pg_calibration(gain=2.5, sigma=2.0)
    assert photon_transfer_gain(calib.dark, calib.flat) == pytest.approx(2.5, rel=0.05)


def test_pnnp_fit_on_poisson_gaussian_frames_recovers_k_and_sigma():
    model = pnnp(steps=200, seed=0).fit(_pg_calibration(gain=2.0, sigma=3.0))
    fitted = model.params()
    assert fitted["K"] == pytest.approx(2.0, rel=0.10)
    assert fitted["sigma"] == pytest.approx(3.0, rel=0.10)
    # no fixed pattern and no row noise in Poisson-Gaussian frames: both found (nearly) absent
    assert fitted["pattern_sigma"] < 0.3 and fitted["row_sigma"] < 0.3
    assert noise_std(model) == pytest.approx(3.0, rel=0.10)


def test_simulated_sensor_is_more_than_poisson_gaussian():
    sensor = simulated(size=32, n_dark=8)
    calib = sensor.calibration()
    assert calib.dark.shape == (8, 4, 32, 32) and calib.flat.shape == (6, 2, 4, 32, 32)
    assert np.array_equal(calib.dark, np.round(calib.dark))
    # the fixed pattern: the temporal mean of dark frames correlates with the true pattern
    # (pattern std 1 against ~3 DN temporal noise / sqrt(8) frames: r about 0.7)
    mean = calib.dark.mean(axis=0) - np.asarray(sensor.bias)[:, None, None]
    assert np.corrcoef(mean.ravel(), sensor.pattern.numpy().ravel())[0, 1] > 0.55
    assert photon_transfer_gain(calib.dark, calib.flat) == pytest.approx(sensor.gain, rel=0.1)
    # same sensor, same frames; held-out frames differ
    assert np.array_equal(simulated(size=32, n_dark=8).calibration().dark, calib.dark)
    assert not np.array_equal(sensor.heldout_dark()[:1], calib.dark[:1])


def test_eld_fit_on_sensor_recovers_its_read_shape():
    sensor = simulated(size=48, n_dark=8, pattern_sigma=0.0, read_lambda=-0.15, read_scale=2.0)
    model = ELD().fit(sensor.calibration())
    p = model.params()
    assert p["lambda"] < 0                          # heavier tails than logistic, like the truth
    assert p["row_sigma"] == pytest.approx(0.7, rel=0.25)
    assert p["K"] == pytest.approx(1.0, rel=0.1)


def test_pnnp_dark_frames_are_closer_to_the_sensor_than_poisson_gaussian():
    from harness_plugins.denoising.metrics import quantile_l1

    sensor = simulated(size=64, n_dark=8, n_heldout=4)
    calib, real = sensor.calibration(), sensor.heldout_dark()

    def distance(model):
        fake = model.fit(calib).sample(torch.zeros(real.shape), _gen(5)).numpy()
        shading = model.dark_shading(*real.shape[2:])
        # real frames as the method sees them (PNNP subtracts its dark shading)
        return quantile_l1(real if shading is None else real - shading[None], fake)

    pg = distance(PoissonGaussian())
    # a Gaussian of the right variance misses the heavy tails, rows and fixed pattern
    assert distance(pnnp(seed=0, dark_shading="add")) < pg / 2
    assert distance(pnnp(seed=0)) < pg / 2


def test_eld_gain_sampling_varies_the_noise_level_per_image():
    def per_image_var(model):
        x = model.sample(torch.full((64, 4, 16, 16), 100.0), _gen(6))
        return x.var(dim=(1, 2, 3))

    fixed, sampled = ELD(), ELD(gain_spread=3.0)
    for m in (fixed, sampled):
        m.gain, m.read_scale, m.row_sigma = 1.0, 1.0, 0.5
    v = per_image_var(fixed)
    assert float(v.max() / v.min()) < 1.5        # one gain: sampling noise only
    v = per_image_var(sampled)
    # K drawn log-uniformly in [1/3, 3]: shot variance K * 100 spans about 9x
    assert float(v.max() / v.min()) > 4


def test_eld_read_and_row_sigmas_follow_their_own_slopes_in_k():
    """ELD's released camera parameters: log sigma linear in log K with slopes
    about 0.46 (read) and 0.53 (row), not 1 for both."""
    model = ELD(gain_spread=4.0)
    model.gain = 2.0
    gain = torch.tensor([2.0, 2.0 * np.e, 2.0 / np.e ** 2]).reshape(3, 1, 1, 1)
    read, row = model.level_scales(gain, _gen())
    assert np.allclose(read.flatten().numpy(), [1.0, np.e ** 0.462, np.e ** (-2 * 0.462)],
                       rtol=1e-5)
    assert np.allclose(row.flatten().numpy(), [1.0, np.e ** 0.528, np.e ** (-2 * 0.528)],
                       rtol=1e-5)
    # slope 1 for both stays available
    old = ELD(gain_spread=4.0, read_slope=1.0, row_slope=1.0)
    old.gain = 2.0
    read, row = old.level_scales(gain, _gen())
    assert np.allclose(read.flatten().numpy(), [1.0, np.e, np.e ** -2], rtol=1e-5)


def test_eld_read_and_row_residuals_are_drawn_independently():
    from harness_plugins.denoising.noise import eld

    model = eld(gain_spread=2.0, sigma_jitter=0.26, row_jitter=0.29)
    model.gain = 1.0
    read, row = model.level_scales(torch.ones(20000, 1, 1, 1), _gen(4))
    lr, lw = torch.log(read).flatten().numpy(), torch.log(row).flatten().numpy()
    assert lr.std() == pytest.approx(0.26, rel=0.05)
    assert lw.std() == pytest.approx(0.29, rel=0.05)
    assert abs(np.corrcoef(lr, lw)[0, 1]) < 0.05
    # row_jitter defaults to sigma_jitter
    assert eld(sigma_jitter=0.1).row_jitter == 0.1


def test_eld_clips_its_inputs_to_zero_and_one_as_eld_does():
    from harness_plugins.denoising.noise import eld, model_input

    model = ELD()
    model.gain, model.read_scale, model.row_sigma = 1.0, 3.0, 0.0
    dark = torch.zeros(2, 4, 16, 16)
    out = low_light(dark, model, ratio=100.0, white=1000.0, generator=_gen())
    assert float(out.min()) == 0.0 and float(out.max()) <= 1.0
    unclipped = eld(clip=False)
    unclipped.gain, unclipped.read_scale, unclipped.row_sigma = 1.0, 3.0, 0.0
    assert float(low_light(dark, unclipped, 100.0, 1000.0, _gen()).min()) < 0
    # the sensor's test input goes through the same clip
    noisy = np.array([-0.3, 0.2, 1.0], np.float32).reshape(1, 1, 3).repeat(4, 0)
    assert model_input(model, noisy, 100.0, 1000.0).min() == 0.0
    assert model_input(PoissonGaussian(), noisy, 100.0, 1000.0).min() == pytest.approx(-0.3)
