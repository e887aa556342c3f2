"""Image sources read tiny files written here in each dataset's published format."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from harness import ConfigError, UserError
from harness_plugins.data import images
from harness_plugins.data.image_folder import image_folder


def write_cifar10(folder, n_per_batch=4, seed=0):
    """A ``cifar-10-batches-py`` folder: 5 train batches, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        batches[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return batches


def write_cifar100(folder, n=6, seed=1):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "test"):
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "fine_labels": list(range(n)), "coarse_labels": [0, 1] * (n // 2)}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)],
                     "coarse_label_names": [f"g{i}" for i in range(20)]}, f)


def write_idx(file, arr: np.ndarray, gz: bool):
    body = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}i", *arr.shape)
    body += arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(file, "wb").write(body)


def write_mnist(folder, n=5, gz=True, seed=2):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix in ("train", "t10k"):
        X = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", X, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y, gz)
        out[prefix] = (X, y)
    return out


def test_cifar10_reads_the_python_batches_in_torchvision_layout(tmp_path):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py")
    raw = images.cifar10(root=tmp_path)
    assert raw.X.dtype == np.uint8 and raw.X.shape == (24, 3, 32, 32)
    train, test = raw.splits
    assert len(train) == 20 and len(test) == 4
    # row layout: 1024 red, 1024 green, 1024 blue values, each row-major
    first = batches["data_batch_1"][0][0]
    assert np.array_equal(raw.X[0, 1, 0, :], first[1024:1056])
    assert np.array_equal(raw.X[test[0], 2].ravel(), batches["test_batch"][0][0][2048:])
    assert raw.y[test].tolist() == batches["test_batch"][1]
    assert raw.meta["target_names"][3] == "c3"
    assert raw.meta["augment"] == {"crop": 4, "flip": True, "cutout": 0}
    # the unpacked folder itself works as root too
    assert images.cifar10(root=tmp_path / "cifar-10-batches-py").X.shape == raw.X.shape


def test_cifar100_fine_and_coarse_labels(tmp_path):
    write_cifar100(tmp_path / "cifar-100-python")
    fine = images.cifar100(root=tmp_path)
    coarse = images.cifar100(root=tmp_path, labels="coarse")
    assert fine.y[:6].tolist() == [0, 1, 2, 3, 4, 5]
    assert coarse.y[:6].tolist() == [0, 1, 0, 1, 0, 1]
    assert coarse.meta["target_names"][:2] == ["g0", "g1"]


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files_gzipped_or_not(tmp_path, gz):
    written = write_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    raw = images.mnist(root=tmp_path)
    assert raw.X.shape == (10, 1, 28, 28) and raw.image_shape == (1, 28, 28)
    assert np.array_equal(raw.X[7, 0], written["t10k"][0][2])
    assert raw.y[:5].tolist() == written["train"][1].tolist()
    assert raw.meta["augment"]["flip"] is False


def test_fashion_mnist_layout_and_truncated_file(tmp_path):
    folder = tmp_path / "FashionMNIST" / "raw"
    write_mnist(folder, gz=False)
    assert images.fashion_mnist(root=tmp_path).meta["target_names"][9] == "Ankle boot"
    data = (folder / "t10k-images-idx3-ubyte").read_bytes()
    (folder / "t10k-images-idx3-ubyte").write_bytes(data[:-10])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte: the header says"):
        images.fashion_mnist(root=tmp_path)


def test_svhn_mat_files_map_label_10_to_0(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(3)
    folder = tmp_path / "svhn"
    folder.mkdir()
    X = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    savemat(folder / "train_32x32.mat", {"X": X, "y": np.array([[10], [1], [2], [10]])})
    savemat(folder / "test_32x32.mat", {"X": X[..., :2], "y": np.array([[3], [10]])})
    raw = images.svhn(root=tmp_path)
    assert raw.y.tolist() == [0, 1, 2, 0, 3, 0]
    assert raw.X.shape == (6, 3, 32, 32)
    assert np.array_equal(raw.X[1, 2], X[:, :, 2, 1])  # (H, W, C, N) -> (N, C, H, W)


def test_cifar10_c_takes_one_severity_block_as_test(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    # 5 severities x 3 images; the value of each image is its severity
    X = np.repeat(np.arange(1, 6, dtype=np.uint8), 3)[:, None, None, None] * np.ones(
        (1, 32, 32, 3), np.uint8)
    np.save(folder / "fog.npy", X)
    np.save(folder / "labels.npy", np.tile([4, 5, 6], 5))
    raw = images.cifar10_c(root=tmp_path, corruption="fog", severity=4)
    test = raw.splits[1]
    assert len(test) == 3 and (raw.X[test] == 4).all()
    assert raw.y[test].tolist() == [4, 5, 6]
    assert images.cifar10_c.label({"corruption": "fog", "severity": 4}) == "cifar10_c-fog-4"
    with pytest.raises(ConfigError, match="no snow.npy"):
        images.cifar10_c.check({"root": tmp_path, "corruption": "snow"})


def test_missing_root_names_expected_files_and_the_fetch_command(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
    with pytest.raises(ConfigError) as err:
        images.cifar10.check({"root": tmp_path})
    msg = str(err.value)
    assert "cifar-10-batches-py lacks data_batch_2, data_batch_3, data_batch_4, data_batch_5, " \
        "test_batch;" in msg
    assert f"harness datasets fetch cifar10 --root {tmp_path}" in msg
    with pytest.raises(ConfigError, match="does not exist"):
        images.mnist.check({"root": tmp_path / "nowhere"})


def test_missing_data_directory_fails_the_runs_not_the_plan(tmp_path, monkeypatch):
    from harness.errors import DatasetUnavailable

    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "empty"))
    assert images.cifar10.check({}) is None  # a suite without root still plans
    with pytest.raises(DatasetUnavailable, match="harness datasets fetch cifar10`"):
        images.cifar10()


def test_data_home_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    write_mnist(tmp_path / "MNIST" / "raw")
    assert images.data_home() == tmp_path
    assert images.mnist().X.shape[0] == 10


def _png(file, rgb):
    from PIL import Image

    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(file)


def test_image_folder_class_layout_decodes_caches_and_resizes(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    rng = np.random.default_rng(5)
    pix = {n: rng.integers(0, 256, (6, 6, 3), dtype=np.uint8) for n in ("a1", "a2", "b1")}
    _png(tmp_path / "imgs" / "cat" / "a1.png", pix["a1"])
    _png(tmp_path / "imgs" / "cat" / "a2.png", pix["a2"])
    _png(tmp_path / "imgs" / "dog" / "b1.png", pix["b1"])
    raw = image_folder(tmp_path / "imgs")
    assert raw.y.tolist() == [0, 0, 1] and raw.meta["target_names"] == ["cat", "dog"]
    assert np.array_equal(raw.X[2], pix["b1"].transpose(2, 0, 1))
    assert len(list((tmp_path / "data" / "cache").glob("*.npz"))) == 1
    assert image_folder(tmp_path / "imgs", size=4, grayscale=True).X.shape == (3, 1, 4, 4)
    _png(tmp_path / "imgs" / "dog" / "b2.png", rng.integers(0, 256, (9, 6, 3), dtype=np.uint8))
    with pytest.raises(ConfigError, match="b2.png is 6x9 .* set size"):
        image_folder(tmp_path / "imgs")


def test_image_folder_errors_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no images in its class subfolders"):
        image_folder.check({"path": tmp_path / "imgs"})
    (tmp_path / "imgs" / "cat" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(UserError, match="broken.png: Pillow cannot decode"):
        image_folder.check({"path": tmp_path / "imgs"})


def test_image_folder_test_path_maps_classes_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    img = np.zeros((4, 4, 3), np.uint8)
    for c in ("a", "b", "c"):
        _png(tmp_path / "train" / c / "x.png", img)
    _png(tmp_path / "test" / "c" / "y.png", img)  # the test folder has only class c
    raw = image_folder(tmp_path / "train", test_path=tmp_path / "test")
    assert raw.y[raw.splits[1]].tolist() == [2]


def test_image_folder_flat_layout_still_serves_denoising(tmp_path):
    _png(tmp_path / "a.png", np.full((20, 30, 3), 128, np.uint8))
    raw = image_folder(tmp_path, size=8)
    assert raw.y is None and raw.X[0].shape[0] == 4  # packed raw for the denoising task


def test_synthetic_images_are_fixed_by_random_state():
    a = images.synthetic_images(n_train=20, n_test=10, size=16)
    b = images.synthetic_images(n_train=20, n_test=10, size=16)
    assert a.X.dtype == np.uint8 and a.X.shape == (30, 3, 16, 16)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, images.synthetic_images(n_train=20, n_test=10, size=16,
                                                           random_state=1).X)
