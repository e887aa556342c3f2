"""Image dataset sources in their published formats: CIFAR-10/100, MNIST,
Fashion-MNIST, SVHN, CIFAR-10-C/100-C, ImageFolder, and generated images.

Each factory returns a ``harness.data.RawDataset`` with ``X`` the train and
test images as one ``uint8`` array ``(N, C, H, W)``, ``splits`` the official
train/test positions (the official test split stays the test split; the
task carves validation out of train), and ``meta["augment"]`` the
augmentation the task's pipeline applies to training batches
(:mod:`harness_plugins.classification.augment`): random crop with
``crop`` pixels of zero padding, horizontal ``flip``, ``cutout`` squares.

``root`` (relative to the suite file) is the folder holding the unpacked
archive as torchvision lays it out (``cifar-10-batches-py/``,
``MNIST/raw/``), or that unpacked folder itself; without it, the data
directory (``$HARNESS_DATA``, else ``~/.cache/harness/data``).  A file
missing under a given ``root`` stops the suite at validation (exit 2),
naming the files and the ``harness datasets fetch`` command; a file missing
from the data directory fails the runs on that dataset at once
(``DatasetUnavailable``, same message), so a suite still plans on a machine
without the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from harness import hookimpl
from harness.data import RawDataset
from harness.errors import ConfigError, DatasetUnavailable
from harness_plugins.data.fetch import Resource, data_home, fetcher

Pad = Annotated[int, Field(ge=0, le=64)]
Cut = Annotated[int, Field(ge=0, le=256)]
Severity = Annotated[int, Field(ge=1, le=5)]

CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
               "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
               "elastic_transform", "pixelate", "jpeg_compression", "speckle_noise",
               "gaussian_blur", "spatter", "saturate")
Corruption = Literal["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur",
                     "glass_blur", "motion_blur", "zoom_blur", "snow", "frost", "fog",
                     "brightness", "contrast", "elastic_transform", "pixelate",
                     "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate"]

CITATIONS = {
    "cifar": "@techreport{krizhevsky2009learning, title={Learning Multiple Layers of Features "
             "from Tiny Images}, author={Krizhevsky, Alex}, institution={University of "
             "Toronto}, year={2009}}",
    "mnist": "@article{lecun1998gradient, title={Gradient-based learning applied to document "
             "recognition}, author={LeCun, Yann and Bottou, L{\\'e}on and Bengio, Yoshua and "
             "Haffner, Patrick}, journal={Proceedings of the IEEE}, volume={86}, number={11}, "
             "pages={2278--2324}, year={1998}}",
    "fashion_mnist": "@article{xiao2017fashion, title={Fashion-MNIST: a Novel Image Dataset "
                     "for Benchmarking Machine Learning Algorithms}, author={Xiao, Han and "
                     "Rasul, Kashif and Vollgraf, Roland}, journal={arXiv:1708.07747}, "
                     "year={2017}}",
    "svhn": "@inproceedings{netzer2011reading, title={Reading Digits in Natural Images with "
            "Unsupervised Feature Learning}, author={Netzer, Yuval and Wang, Tao and Coates, "
            "Adam and Bissacco, Alessandro and Wu, Bo and Ng, Andrew Y.}, booktitle={NIPS "
            "Workshop on Deep Learning and Unsupervised Feature Learning}, year={2011}}",
    "cifar_c": "@inproceedings{hendrycks2019benchmarking, title={Benchmarking Neural Network "
               "Robustness to Common Corruptions and Perturbations}, author={Hendrycks, Dan "
               "and Dietterich, Thomas}, booktitle={ICLR}, year={2019}}",
}


@dataclass(frozen=True)
class Layout:
    """Where a dataset's files sit under a data root: ``folder`` (torchvision's
    name) holding ``files``; ``gz_ok`` accepts ``name.gz`` for ``name``."""

    name: str
    folder: str
    files: tuple[str, ...]
    gz_ok: bool = False

    def _has(self, folder: Path, f: str) -> bool:
        try:
            return (folder / f).is_file() or (self.gz_ok and (folder / f"{f}.gz").is_file())
        except OSError:  # a path the system refuses (name too long): not there
            return False

    def find(self, root: Path) -> Path | None:
        """The folder holding every file: ``root/folder`` or ``root`` itself."""
        for cand in (root / self.folder, root):
            if all(self._has(cand, f) for f in self.files):
                return cand
        return None

    def locate(self, root: Path | None) -> Path:
        """:meth:`find` or a ``ConfigError`` on ``root`` naming what is missing."""
        base = Path(root).expanduser() if root is not None else data_home()
        found = self.find(base)
        if found is not None:
            return found
        where = base / self.folder
        present = where if where.is_dir() else base
        missing = [f for f in self.files if not self._has(present, f)]
        fetch = f"harness datasets fetch {self.name}" + (f" --root {base}" if root else "")
        why = (f"{base} does not exist" if not base.exists() else
               f"{present} lacks {', '.join(missing)}")
        msg = (f"{self.name}: {why}; expected {', '.join(self.files)} in {where} (or in "
               f"the root itself); `{fetch}` downloads them")
        if root is None:
            # the data directory may be filled later (or on the worker): the
            # runs fail at once with this line, planning still works offline
            raise DatasetUnavailable(msg)
        raise ConfigError("root", str(root), msg)


def _augment(crop: int, flip: bool, cutout: int) -> dict:
    return {"crop": int(crop), "flip": bool(flip), "cutout": int(cutout)}


def _official(name: str, X_train, y_train, X_test, y_test, class_names, augment: dict,
              citation: str, **meta) -> RawDataset:
    """Train and test stacked, with the official split as ``splits``."""
    import numpy as np

    X = np.concatenate([X_train, X_test])
    y = np.concatenate([y_train, y_test])
    n = len(X_train)
    splits = (np.arange(n), np.arange(n, len(X)))
    info = {"augment": augment, "citation": citation, "pixels": "uint8", **meta}
    if class_names:
        info["target_names"] = list(class_names)
    return RawDataset(name, X, y, image_shape=tuple(X.shape[1:]), splits=splits, meta=info)


CIFAR10 = Layout("cifar10", "cifar-10-batches-py",
                 tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",))
CIFAR100 = Layout("cifar100", "cifar-100-python", ("train", "test"))
MNIST = Layout("mnist", "MNIST/raw", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                      "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
               gz_ok=True)
FASHION = Layout("fashion_mnist", "FashionMNIST/raw", MNIST.files, gz_ok=True)
SVHN = Layout("svhn", "svhn", ("train_32x32.mat", "test_32x32.mat"))
CIFAR10_C = Layout("cifar10_c", "CIFAR-10-C", ("labels.npy",))
CIFAR100_C = Layout("cifar100_c", "CIFAR-100-C", ("labels.npy",))


def cifar10(root: Path | None = None, crop: Pad = 4, flip: bool = True,
            cutout: Cut = 0) -> RawDataset:
    """CIFAR-10 (Krizhevsky 2009) from the python batches: 50000 train, 10000 test, 3x32x32.

    ``crop``/``flip``/``cutout``: training augmentation (standard: pad 4,
    random crop, flip; cutout 16 as DeVries & Taylor 2017)."""
    from harness_plugins.data.image_formats import read_cifar

    parts = read_cifar(CIFAR10.locate(root), 10)
    return _official("cifar10", *parts, _augment(crop, flip, cutout), CITATIONS["cifar"])


def cifar100(root: Path | None = None, labels: Literal["fine", "coarse"] = "fine",
             crop: Pad = 4, flip: bool = True, cutout: Cut = 0) -> RawDataset:
    """CIFAR-100 (Krizhevsky 2009): 100 fine or 20 coarse classes, 50000 train, 10000 test."""
    from harness_plugins.data.image_formats import read_cifar

    parts = read_cifar(CIFAR100.locate(root), 100, labels)
    return _official("cifar100" if labels == "fine" else "cifar100-coarse", *parts,
                     _augment(crop, flip, cutout), CITATIONS["cifar"])


def _idx_source(layout: Layout, root, crop, flip, cutout, citation, names) -> RawDataset:
    from harness_plugins.data.image_formats import read_mnist

    return _official(layout.name, *read_mnist(layout.locate(root)), names,
                     _augment(crop, flip, cutout), citation)


def mnist(root: Path | None = None, crop: Pad = 0, flip: bool = False,
          cutout: Cut = 0) -> RawDataset:
    """MNIST digits (LeCun et al. 1998) from the idx files (gzipped or not): 60000/10000, 1x28x28.

    No augmentation by default."""
    return _idx_source(MNIST, root, crop, flip, cutout, CITATIONS["mnist"],
                       [str(i) for i in range(10)])


def fashion_mnist(root: Path | None = None, crop: Pad = 0, flip: bool = False,
                  cutout: Cut = 0) -> RawDataset:
    """Fashion-MNIST (Xiao et al. 2017) from the idx files: 60000/10000, 1x28x28, 10 garments."""
    return _idx_source(FASHION, root, crop, flip, cutout, CITATIONS["fashion_mnist"],
                       ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                        "Shirt", "Sneaker", "Bag", "Ankle boot"])


def svhn(root: Path | None = None, crop: Pad = 4, flip: bool = False,
         cutout: Cut = 0) -> RawDataset:
    """SVHN cropped digits (Netzer et al. 2011) from train_32x32.mat, test_32x32.mat (10 -> 0).

    Random crop, no flip by default (digits are not mirror-symmetric)."""
    from harness_plugins.data.image_formats import read_svhn

    folder = SVHN.locate(root)
    X_train, y_train = read_svhn(folder / "train_32x32.mat")
    X_test, y_test = read_svhn(folder / "test_32x32.mat")
    return _official("svhn", X_train, y_train, X_test, y_test, [str(i) for i in range(10)],
                     _augment(crop, flip, cutout), CITATIONS["svhn"])


def _corrupted(which: int, root, corruption: str, severity: int, crop, flip, cutout):
    from harness_plugins.data.image_formats import read_cifar, read_corrupted

    clean, shifted = (CIFAR10, CIFAR10_C) if which == 10 else (CIFAR100, CIFAR100_C)
    folder = shifted.locate(root)
    _check_corruption(folder, corruption)
    X_train, y_train, _, _, names = read_cifar(clean.locate(root), which)
    X_test, y_test = read_corrupted(folder, corruption, severity)
    return _official(f"{shifted.name}-{corruption}-{severity}", X_train, y_train, X_test,
                     y_test, names, _augment(crop, flip, cutout), CITATIONS["cifar_c"],
                     corruption=corruption, severity=severity)


def _check_corruption(folder: Path, corruption: str) -> None:
    if not (folder / f"{corruption}.npy").is_file():
        raise ConfigError("corruption", corruption, f"{folder} has no {corruption}.npy")


def cifar10_c(root: Path | None = None, corruption: Corruption = "gaussian_noise",
              severity: Severity = 3, crop: Pad = 4, flip: bool = True,
              cutout: Cut = 0) -> RawDataset:
    """CIFAR-10-C (Hendrycks & Dietterich 2019): CIFAR-10 train; one corruption, severity as test.

    ``root`` holds both ``cifar-10-batches-py/`` and ``CIFAR-10-C/``."""
    return _corrupted(10, root, corruption, severity, crop, flip, cutout)


def cifar100_c(root: Path | None = None, corruption: Corruption = "gaussian_noise",
               severity: Severity = 3, crop: Pad = 4, flip: bool = True,
               cutout: Cut = 0) -> RawDataset:
    """CIFAR-100-C (Hendrycks & Dietterich 2019): CIFAR-100 train; one corruption, severity as test.

    ``root`` holds both ``cifar-100-python/`` and ``CIFAR-100-C/``."""
    return _corrupted(100, root, corruption, severity, crop, flip, cutout)


def corrupted_test(which: int, root: Path | None, corruption: str, severity: int):
    """``(X uint8 (N, 3, 32, 32), y)`` of one CIFAR-C corruption and severity,
    for a task that evaluates a trained model on it (a shift)."""
    from harness_plugins.data.image_formats import read_corrupted

    folder = (CIFAR10_C if which == 10 else CIFAR100_C).locate(root)
    _check_corruption(folder, corruption)
    return read_corrupted(folder, corruption, severity)


def synthetic_images(n_train: Annotated[int, Field(ge=2)] = 512,
                     n_test: Annotated[int, Field(ge=1)] = 256,
                     n_classes: Annotated[int, Field(ge=2, le=256)] = 10,
                     size: Annotated[int, Field(ge=4, le=512)] = 32,
                     channels: Literal[1, 3] = 3,
                     noise: Annotated[float, Field(ge=0)] = 40.0,
                     random_state: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0,
                     crop: Pad = 4, flip: bool = True, cutout: Cut = 0) -> RawDataset:
    """Generated uint8 images (class templates, shifted, plus noise) with CIFAR's layout, offline.

    Each class is a smooth random colour pattern; a sample is its class's
    pattern shifted by up to size/8 pixels plus Gaussian pixel noise of
    ``noise`` grey levels.  Fixed by ``random_state``: only the split varies
    with the run seed.  For tests, CI and benchmarks without the real data."""
    import numpy as np

    rng = np.random.default_rng(random_state)
    coarse = rng.normal(size=(n_classes, channels, 4, 4))
    # smooth templates: a 4x4 grid upsampled to size x size (bilinear via np.interp twice)
    grid = np.linspace(0, 3, size)
    lo = np.floor(grid).astype(int).clip(0, 2)
    w = (grid - lo)[None, None]
    rows = coarse[:, :, lo] * (1 - w[..., None]) + coarse[:, :, lo + 1] * w[..., None]
    templates = rows[..., lo] * (1 - w[:, :, None]) + rows[..., lo + 1] * w[:, :, None]
    templates = 128 + 60 * templates / templates.std()
    n = n_train + n_test
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    shift = max(1, size // 8)
    dy, dx = rng.integers(-shift, shift + 1, size=(2, n))
    X = np.empty((n, channels, size, size), dtype=np.uint8)
    for i in range(n):
        img = np.roll(templates[y[i]], (dy[i], dx[i]), axis=(1, 2))
        img = img + rng.normal(0, noise, size=img.shape)
        X[i] = np.clip(np.rint(img), 0, 255)
    return _official("synthetic_images", X[:n_train], y[:n_train], X[n_train:], y[n_train:],
                     [f"class{k}" for k in range(n_classes)], _augment(crop, flip, cutout), "")


def _layout_check(layout: Layout):
    """A given ``root`` must hold the files (exit 2 at validation); without
    one the data directory is checked when a run loads the data."""
    def check(params):
        if params.get("root") is not None:
            layout.locate(params["root"])
    return check


def _corrupted_check(which: int):
    def check(params):
        root = params.get("root")
        if root is None:
            return
        folder = (CIFAR10_C if which == 10 else CIFAR100_C).locate(root)
        (CIFAR10 if which == 10 else CIFAR100).locate(Path(root).expanduser())
        _check_corruption(folder, params.get("corruption", "gaussian_noise"))
    return check


def _cifar_done(layout: Layout):
    return lambda root: layout.find(root) is not None


_TORONTO = "https://www.cs.toronto.edu/~kriz/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_SVHN = "http://ufldl.stanford.edu/housenumbers/"
#: The published archives and their published MD5 checksums.
RESOURCES = {
    "cifar10": [Resource(_TORONTO + "cifar-10-python.tar.gz",
                         "c58f30108f718f92721af3b95e74349a", unpack=True)],
    "cifar100": [Resource(_TORONTO + "cifar-100-python.tar.gz",
                          "eb9058c3a382ffc7106e4002c42a8d85", unpack=True)],
    "mnist": [Resource(_MNIST + f, md5, "MNIST/raw") for f, md5 in (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"))],
    "fashion_mnist": [Resource(_FASHION + f, md5, "FashionMNIST/raw") for f, md5 in (
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"))],
    "svhn": [Resource(_SVHN + "train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373", "svhn"),
             Resource(_SVHN + "test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3", "svhn")],
    "cifar10_c": [Resource("https://zenodo.org/records/2535967/files/CIFAR-10-C.tar",
                           "56bf5dcef84df0e2308c6dcbcbbd8499", unpack=True)],
    "cifar100_c": [Resource("https://zenodo.org/records/3555552/files/CIFAR-100-C.tar",
                            "11f0ed0f1191edbf9fa23466ae6021d3", unpack=True)],
}

_SOURCES = {"cifar10": (cifar10, CIFAR10), "cifar100": (cifar100, CIFAR100),
            "mnist": (mnist, MNIST), "fashion_mnist": (fashion_mnist, FASHION),
            "svhn": (svhn, SVHN), "cifar10_c": (cifar10_c, CIFAR10_C),
            "cifar100_c": (cifar100_c, CIFAR100_C)}
for _name, (_factory, _layout) in _SOURCES.items():
    _factory.check = (_corrupted_check(10 if _name == "cifar10_c" else 100)
                      if _name.endswith("_c") else _layout_check(_layout))
    _factory.fetch = fetcher(_name, RESOURCES[_name], _cifar_done(_layout))
    _factory.label = (lambda n: lambda params: n)(_name)
cifar10_c.label = lambda p: (f"cifar10_c-{p.get('corruption', 'gaussian_noise')}-"
                             f"{p.get('severity', 3)}")
cifar100_c.label = lambda p: (f"cifar100_c-{p.get('corruption', 'gaussian_noise')}-"
                              f"{p.get('severity', 3)}")
cifar100.label = lambda p: "cifar100" + ("-coarse" if p.get("labels") == "coarse" else "")
# a corruption set's train and validation rows are the clean set's: split
# them as the clean entry does, so a task can share what it trains on them
cifar10_c.split_label = lambda p: "cifar10"
cifar100_c.split_label = lambda p: "cifar100"
synthetic_images.label = lambda p: "synthetic_images"


@hookimpl
def register_datasets(register):
    """Image benchmarks in their published formats (and generated images)."""
    for name, (factory, _) in _SOURCES.items():
        register(name, factory)
    register("synthetic_images", synthetic_images)
    from harness_plugins.data.image_folder import image_folder

    register("image_folder", image_folder)
