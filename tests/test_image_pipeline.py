"""The uint8 image pipeline: statistics, augmentation on the device, prepared data, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness_plugins.classification.augment import ImagePipeline


def _pixels(n=6, c=3, h=5, w=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def test_statistics_are_the_train_splits_channel_mean_and_std():
    X = _pixels(n=9)
    pipe = ImagePipeline.fit(X, {"crop": 2, "flip": True})
    ref = X.astype(np.float64)
    assert np.allclose(pipe.mean, ref.mean(axis=(0, 2, 3)))
    assert np.allclose(pipe.std, ref.std(axis=(0, 2, 3)))
    assert (pipe.crop, pipe.flip, pipe.cutout) == (2, True, 0)
    with pytest.raises(ValueError, match="unknown augmentation keys"):
        ImagePipeline.fit(X, {"rotate": 10})


def test_no_augmentation_is_plain_normalisation():
    X = _pixels()
    pipe = ImagePipeline.fit(X, {})
    x = torch.as_tensor(X)
    out = pipe.train_batch(x, torch.Generator().manual_seed(0))
    mean = np.asarray(pipe.mean).reshape(1, -1, 1, 1)
    std = np.asarray(pipe.std).reshape(1, -1, 1, 1)
    assert torch.allclose(out, torch.as_tensor((X - mean) / std, dtype=torch.float32), atol=1e-5)
    assert torch.equal(pipe.eval_batch(x), torch.as_tensor(pipe.numpy_eval(X)))


def _windows(img_padded, h, w):
    """Every h x w window of a padded image."""
    H, W = img_padded.shape[-2:]
    return [img_padded[..., i:i + h, j:j + w] for i in range(H - h + 1) for j in range(W - w + 1)]


def test_random_crop_is_a_window_of_the_black_padded_image():
    X = _pixels(n=8)
    pipe = ImagePipeline.fit(X, {"crop": 2})
    out = pipe.train_batch(torch.as_tensor(X), torch.Generator().manual_seed(1)).numpy()
    black = [-m / s for m, s in zip(pipe.mean, pipe.std)]
    offsets = set()
    for k in range(len(X)):
        norm = pipe.numpy_eval(X[k:k + 1])[0]
        padded = np.stack([np.pad(norm[c], 2, constant_values=black[c]) for c in range(3)])
        hits = [i for i, win in enumerate(_windows(padded, 5, 7)) if np.allclose(win, out[k])]
        assert hits, f"image {k} is not a window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 1  # offsets are drawn per image


def test_flip_and_determinism_come_from_the_given_generator():
    X = _pixels(n=64, h=4, w=4)
    pipe = ImagePipeline.fit(X, {"flip": True})
    x = torch.as_tensor(X)
    a = pipe.train_batch(x, torch.Generator().manual_seed(3))
    b = pipe.train_batch(x, torch.Generator().manual_seed(3))
    c = pipe.train_batch(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = pipe.eval_batch(x)
    flipped = torch.tensor([torch.equal(a[i], plain[i].flip(2)) for i in range(64)])
    kept = torch.tensor([torch.equal(a[i], plain[i]) for i in range(64)])
    assert bool((flipped | kept).all()) and 16 < int(flipped.sum()) < 48


def test_cutout_zeroes_one_clipped_square_per_image():
    X = np.full((32, 1, 8, 8), 200, np.uint8)
    X[0] = 0  # the statistics must not make 200 normalise to 0
    pipe = ImagePipeline.fit(X, {"cutout": 4})
    out = pipe.train_batch(torch.as_tensor(X[1:]), torch.Generator().manual_seed(0))
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert bool((zeros >= 4).all()) and bool((zeros <= 16).all())  # clipped at the border
    assert int((zeros == 16).sum()) > 0


def test_float_batches_give_the_same_augmentation_as_uint8():
    X = _pixels(n=16)
    pipe = ImagePipeline.fit(X, {"crop": 3, "flip": True, "cutout": 2})
    a = pipe.train_batch(torch.as_tensor(X), torch.Generator().manual_seed(7))
    b = pipe.train_batch(torch.as_tensor(pipe.numpy_eval(X)), torch.Generator().manual_seed(7))
    assert torch.allclose(a, b, atol=1e-5)


def test_prepared_image_data_keeps_uint8_train_pixels():
    from harness_plugins.classification.prepare import ImageData, prepare_dataset

    entry = {"source": "synthetic_images",
             "params": {"n_train": 40, "n_test": 10, "size": 8, "n_classes": 4}}
    data = prepare_dataset(entry, 0)
    assert isinstance(data, ImageData)
    assert data.X_train.dtype == np.uint8 and data.X_train.shape == (32, 3, 8, 8)
    assert data.X_val.dtype == np.float32 and len(data.y_test) == 10  # the official test split
    assert np.allclose(data.pipeline.mean, data.X_train.astype(np.float64).mean(axis=(0, 2, 3)))
    assert np.allclose(data.inputs(data.X_train).mean(axis=(0, 2, 3)), 0, atol=1e-4)
    assert data.meta["pipeline"]["crop"] == 4 and data.in_shape == (3, 8, 8)
    again = prepare_dataset(entry, 0)
    assert np.array_equal(again.X_train, data.X_train)


def test_float_pixels_for_tasks_that_read_x_train_directly():
    from harness_plugins.classification.prepare import prepare_dataset

    entry = {"source": "synthetic_images",
             "params": {"n_train": 40, "n_test": 10, "size": 8, "n_classes": 4}}
    u8 = prepare_dataset(entry, 0)
    fl = prepare_dataset(entry, 0, pixels="float")
    assert fl.X_train.dtype == np.float32
    assert np.allclose(fl.X_train, u8.inputs(u8.X_train))
    assert np.array_equal(fl.X_test, u8.X_test)


def test_speed_options_off_leave_the_config_and_run_keys_as_they_were():
    from harness_plugins.classification.task import Training

    assert not {"amp", "channels_last", "compile"} & set(Training().model_dump())
    on = Training(amp="bf16", channels_last=True).model_dump()
    assert on["amp"] == "bf16" and on["channels_last"] is True and "compile" not in on


def test_bf16_and_channels_last_train_a_plain_step_on_cpu():
    from types import SimpleNamespace

    import torch.nn.functional as F

    from harness import ConfigError
    from harness_plugins.classification.optimizers import PlainScheme
    from harness_plugins.classification.precision import Precision
    from harness_plugins.classification.resnets import resnet18

    prec = Precision({"amp": "bf16", "channels_last": True}, "cpu")
    torch.manual_seed(0)
    model = prec.model(resnet18((3, 8, 8), 3, width=4))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    scheme = PlainScheme(lambda ps: torch.optim.SGD(ps, lr=0.1))
    scheme.setup(model, lambda logits, y, **_: F.cross_entropy(logits.float(), y),
                 SimpleNamespace())
    prec.check_scheme(scheme)
    x = prec.batch(torch.randn(4, 3, 8, 8))
    assert x.is_contiguous(memory_format=torch.channels_last)
    before = model[0].weight.detach().clone()
    loss = prec.step(scheme, {"x": x, "y": torch.tensor([0, 1, 2, 0])})
    assert np.isfinite(loss) and not torch.equal(before, model[0].weight)
    with pytest.raises(ConfigError, match="training.amp.*needs CUDA"):
        Precision({"amp": "fp16"}, "cpu")


def test_runs_with_speed_options_train_alone_in_batch_mode():
    from types import SimpleNamespace

    from harness.plugins import get_registry
    from harness_plugins.classification.batch_task import batch_key

    cfg = {"model": "mlp", "loss": "cross_entropy",
           "training": {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "amp": "bf16"}}
    key, why = batch_key(SimpleNamespace(config=cfg, dataset={}, metrics=[]), get_registry())
    assert key is None and "amp" in why


def _write_source(kind: str, root):
    """Tiny files in the official format of ``kind`` under ``root``; the dataset entry."""
    from test_image_sources import _png, write_cifar10, write_mnist

    if kind == "cifar10":
        write_cifar10(root / "cifar-10-batches-py", n_per_batch=6)
        return "cifar10: {root: data}"
    if kind in ("mnist", "fashion_mnist"):
        write_mnist(root / ("MNIST" if kind == "mnist" else "FashionMNIST") / "raw", n=24)
        return f"{kind}: {{root: data}}"
    if kind == "svhn":
        from scipy.io import savemat

        rng = np.random.default_rng(0)
        (root / "svhn").mkdir(parents=True)
        for name, n in (("train", 24), ("test", 8)):
            savemat(root / "svhn" / f"{name}_32x32.mat",
                    {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                     "y": rng.integers(1, 11, (n, 1))})
        return "svhn: {root: data}"
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        for i in range(12):
            _png(root / "imgs" / c / f"{i}.png", rng.integers(0, 256, (10, 12, 3), np.uint8))
    return "image_folder: {path: data/imgs, size: 8}"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cifar10", "mnist", "fashion_mnist", "svhn", "image_folder"])
def test_a_suite_on_official_files_trains_a_resnet_and_reports(kind, tmp_path, monkeypatch,
                                                               capsys):
    from harness.cli import main

    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "home"))
    entry = _write_source(kind, tmp_path / "data")
    suite = tmp_path / "s.yaml"
    suite.write_text(f"""name: img_{kind}
task: classification
seeds: 1
datasets:
  - {entry}
model: {{name: resnet18, width: 2}}
training: {{epochs: 1, batch_size: 8, optimizer: {{name: sgd, lr: 0.01}}}}
methods: {{ce: {{}}}}
metrics: [accuracy]
rank_by: accuracy
""")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["run", str(suite), "--tracking-uri", uri]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "1 finished" in out and "0 failed" in out
    assert main(["report", str(suite), "--tracking-uri", uri]) == 0


def test_a_wrong_root_exits_2_before_training(tmp_path, capsys):
    from harness.cli import main

    suite = tmp_path / "s.yaml"
    suite.write_text("""name: img_wrong
task: classification
seeds: 1
datasets:
  - cifar10: {root: nowhere}
model: resnet18
training: {epochs: 1}
methods: {ce: {}}
metrics: [accuracy]
""")
    assert main(["run", str(suite), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    err = capsys.readouterr().err
    assert "nowhere does not exist" in err and "harness datasets fetch cifar10" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "mlruns").exists()


def test_schemes_and_train_metrics_see_model_inputs_not_pixels():
    from harness_plugins.classification.prepare import prepare_dataset
    from harness_plugins.classification.trainer import SchemeInfo

    data = prepare_dataset({"source": "synthetic_images",
                            "params": {"n_train": 40, "n_test": 10, "size": 8}}, 0)
    X = torch.as_tensor(data.X_train)
    info = SchemeInfo(X, data.inputs, n_train=len(X))
    assert info.X_train.dtype == torch.float32 and info.n_train == len(X)
    assert torch.allclose(info.X_train, torch.as_tensor(data.inputs(data.X_train)))
    assert info.X_train is info.X_train  # converted once
    assert SchemeInfo(X, None).X_train is X  # tabular data: as it is
