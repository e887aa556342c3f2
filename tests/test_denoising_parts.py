"""Metrics, denoisers, sources and the image split of the denoising family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import ConfigError, UserError
from harness_plugins.denoising import denoisers, metrics, sources
from harness_plugins.denoising.task import split_images
from harness_plugins.denoising.training import sample_patches


def test_psnr_is_inf_for_identical_images_and_the_closed_form_otherwise():
    img = np.random.default_rng(0).random((4, 8, 8))
    assert metrics.psnr_value(img, img) == float("inf")
    # MSE 0.01 on a range of 1: 10 log10(1 / 0.01) = 20 dB
    assert metrics.psnr_value(np.zeros((4, 8, 8)), np.full((4, 8, 8), 0.1)) == pytest.approx(20.0)
    # the metric averages per-image PSNRs: 20 dB and 40 dB (MSE 1e-4) give 30
    fn = metrics.psnr()
    clean = [np.zeros((4, 4, 4)), np.zeros((4, 6, 6))]
    assert fn(clean, [np.full((4, 4, 4), 0.1), np.full((4, 6, 6), 0.01)]) == pytest.approx(30.0)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    clean = rng.random((4, 32, 24))
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)
    expected = structural_similarity(clean, noisy, channel_axis=0, data_range=1.0)
    assert metrics.ssim_value(clean, noisy) == pytest.approx(expected)
    assert metrics.ssim_value(clean, clean) == pytest.approx(1.0)
    assert metrics.ssim()([clean], [noisy]) == pytest.approx(expected)


def test_noise_distances():
    rng = np.random.default_rng(2)
    real = rng.normal(0, 3, 50_000)
    assert metrics.quantile_l1(real, real) == 0.0
    assert metrics.quantile_l1(real, real + 1.0) == pytest.approx(1.0)
    assert metrics.histogram_kl(real, real) == pytest.approx(0.0, abs=1e-9)
    near = metrics.histogram_kl(real, rng.normal(0, 3, 50_000))
    far = metrics.histogram_kl(real, rng.normal(0, 1, 50_000))
    assert near < 0.01 < far
    # 1 DN bins centred on whole DN: integer ADC output against continuous samples of the
    # same law is not a difference (bins between integers would make it look like one)
    assert metrics.histogram_kl(np.round(real), rng.normal(0, 3, 50_000)) < 0.01
    assert metrics.noise_kl.greater_is_better is False
    assert metrics.noise_kl.inputs == ("dark_real", "dark_generated")


@pytest.mark.parametrize("name,params", [("unet", {"width": 4, "depth": 2}),
                                         ("unet", {"width": 4, "depth": 3, "residual": True}),
                                         ("dncnn", {"depth": 3, "width": 8})])
def test_learned_denoisers_keep_the_shape_of_odd_sized_images(name, params):
    torch.manual_seed(0)
    net = getattr(denoisers, name)(4, **params)
    assert net.trainable and sum(p.numel() for p in net.parameters()) > 0
    x = torch.rand(2, 4, 17, 22)
    assert net(x).shape == x.shape
    tiny = torch.rand(1, 4, 3, 5)  # smaller than the padding a depth-3 U-Net adds
    assert net(tiny).shape == tiny.shape


def test_identity_returns_its_input_and_bm3d_names_its_extra(monkeypatch):
    x = torch.rand(1, 4, 8, 8)
    net = denoisers.identity(4)
    assert not net.trainable and torch.equal(net(x), x)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bm3d" else real(name, *a))
    with pytest.raises(UserError, match=r"harness-bench\[denoise\]"):
        denoisers.bm3d(4)(x)


def test_bm3d_reduces_gaussian_noise():
    pytest.importorskip("bm3d")
    rng = np.random.default_rng(3)
    clean = np.tile(np.linspace(0.2, 0.8, 32), (1, 32, 1)).astype(np.float32)
    noisy = clean + rng.normal(0, 0.05, clean.shape).astype(np.float32)
    out = denoisers.bm3d(1, sigma=0.05)(torch.as_tensor(noisy)[None])[0].numpy()
    assert metrics.psnr_value(clean, out) > metrics.psnr_value(clean, noisy) + 5


def test_split_is_by_image_and_no_test_image_gives_a_training_patch():
    # image i is filled with the value i, so a patch tells which image it came from
    images = [np.full((4, 20, 24), float(i), dtype=np.float32) for i in range(10)]
    data = split_images(images, {"val": 0.1, "test": 0.3}, seed=5)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 1, 3)
    ids = {k: {int(x[0, 0, 0]) for x in getattr(data, k)} for k in ("train", "val", "test")}
    assert set().union(*ids.values()) == set(range(10))
    assert not (ids["train"] & ids["test"]) and not (ids["train"] & ids["val"])
    patches = sample_patches(data.train, 500, 8, np.random.default_rng(0))
    assert {int(v) for v in np.unique(patches)} == ids["train"]
    # another seed, another split of the same images
    other = split_images(images, {"val": 0.1, "test": 0.3}, seed=6)
    assert {int(x[0, 0, 0]) for x in other.test} != ids["test"]


def test_split_and_patches_reject_what_cannot_work():
    with pytest.raises(UserError, match="too few"):
        split_images([np.zeros((4, 8, 8))] * 2, {}, 0)
    with pytest.raises(UserError, match="not a list of packed raw images"):
        split_images(np.zeros((5, 3)), {}, 0)
    with pytest.raises(UserError, match="patch 16 is larger than a training image"):
        sample_patches([np.zeros((4, 8, 30))], 1, 16, np.random.default_rng(0))


def test_photos_are_clean_packed_raw():
    raw = sources.photos(size=16, names=["astronaut", "china"])
    assert raw.y is None and raw.meta["names"] == ["astronaut", "china"]
    assert [x.shape for x in raw.X] == [(4, 16, 16), (4, 10, 16)]
    assert all(x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1 for x in raw.X)
    with pytest.raises(ConfigError, match="did you mean 'astronaut'"):
        sources.photos(names=["astronot"])


def test_image_folder_reads_photographs_and_raw_arrays(tmp_path):
    from skimage import io

    rgb = (np.random.default_rng(4).random((20, 30, 3)) * 255).astype(np.uint8)
    io.imsave(tmp_path / "a.png", rgb)
    np.save(tmp_path / "b.npy", np.full((4, 6, 8), 0.5, dtype=np.float32))
    np.savez(tmp_path / "c.npz", raw=np.full((12, 10), 0.25, dtype=np.float32))
    (tmp_path / "notes.txt").write_text("not an image")
    raw = sources.image_folder(tmp_path)
    assert raw.meta["names"] == ["a.png", "b.npy", "c.npz"]
    assert [x.shape for x in raw.X] == [(4, 10, 15), (4, 6, 8), (4, 6, 5)]
    assert raw.X[2].max() == pytest.approx(0.25)
    np.save(tmp_path / "d.npy", np.full((4, 6, 8), 300.0))
    with pytest.raises(UserError, match="normalised to"):
        sources.image_folder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no images"):
        sources.image_folder.check({"path": empty})
