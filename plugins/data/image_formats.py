"""Readers of the published on-disk formats of the image benchmarks, no torchvision.

Every reader returns ``uint8`` arrays ``(N, C, H, W)`` and ``int64`` labels;
errors are ``harness.UserError`` naming the file.  The formats:

- CIFAR-10/100, python version (Krizhevsky, *Learning Multiple Layers of
  Features from Tiny Images*, 2009): pickled dicts with ``data`` (N x 3072
  uint8, channel-major rows) and ``labels`` / ``fine_labels`` /
  ``coarse_labels``; ``batches.meta`` / ``meta`` name the classes;
- MNIST / Fashion-MNIST idx files (LeCun et al. 1998; Xiao et al. 2017):
  big-endian magic ``0x0000 08 D`` (unsigned bytes, D dimensions), D int32
  sizes, then the bytes; gzipped or not;
- SVHN cropped digits (Netzer et al. 2011): MATLAB files with ``X``
  ``(32, 32, 3, N)`` and ``y`` ``(N, 1)`` where the digit 0 is labelled 10;
- CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich, ICLR 2019): one
  ``<corruption>.npy`` ``(50000, 32, 32, 3)`` per corruption, severities 1..5
  in blocks of 10000, and ``labels.npy``.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from harness.errors import UserError

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
#: idx file stems of the MNIST layout, (images, labels) per split
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _unpickle(file: Path) -> dict:
    try:
        with open(file, "rb") as f:
            out = pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise UserError(f"{file}: not a CIFAR python batch ({exc})") from None
    if not isinstance(out, dict):
        raise UserError(f"{file}: not a CIFAR python batch (a {type(out).__name__})")
    return out


def _cifar_rows(file: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(file)
    if "data" not in batch or label_key not in batch:
        raise UserError(f"{file}: a CIFAR batch needs keys 'data' and {label_key!r}; "
                        f"found {', '.join(map(str, batch))}")
    data = np.asarray(batch["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{file}: 'data' must be N x 3072 bytes; got shape {data.shape}")
    return data.reshape(-1, 3, 32, 32), np.asarray(batch[label_key], dtype=np.int64)


def read_cifar(folder: Path, which: int, labels: str = "fine"):
    """``(X_train, y_train, X_test, y_test, class_names)`` of an unpacked
    ``cifar-10-batches-py`` (``which=10``) or ``cifar-100-python`` (100,
    ``labels`` fine or coarse) folder."""
    if which == 10:
        parts = [_cifar_rows(folder / f, "labels") for f in CIFAR10_TRAIN]
        X_train = np.concatenate([p[0] for p in parts])
        y_train = np.concatenate([p[1] for p in parts])
        X_test, y_test = _cifar_rows(folder / "test_batch", "labels")
        meta, names_key = folder / "batches.meta", "label_names"
    else:
        key = f"{labels}_labels"
        X_train, y_train = _cifar_rows(folder / "train", key)
        X_test, y_test = _cifar_rows(folder / "test", key)
        meta, names_key = folder / "meta", f"{labels}_label_names"
    names = None
    if meta.is_file():
        names = [str(n) for n in _unpickle(meta).get(names_key, [])] or None
    return X_train, y_train, X_test, y_test, names


def read_idx(file: Path) -> np.ndarray:
    """An idx-ubyte array (``.gz`` or not), with its stored shape."""
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"{file}: cannot read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{file}: not an idx file of unsigned bytes (magic "
                        f"{raw[:4].hex() or 'missing'}, expected 000008xx)")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise UserError(f"{file}: the header says shape {shape} ({int(np.prod(shape))} bytes) "
                        f"but {body.size} bytes follow (truncated download?)")
    return body.reshape(shape)


def idx_path(folder: Path, stem: str) -> Path:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists (the plain one first)."""
    plain = folder / stem
    return plain if plain.is_file() else folder / f"{stem}.gz"


def read_mnist(folder: Path):
    """``(X_train, y_train, X_test, y_test)`` from the four idx files of ``folder``."""
    out = []
    for split in ("train", "test"):
        images, labels = (read_idx(idx_path(folder, s)) for s in IDX_FILES[split])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"{idx_path(folder, IDX_FILES[split][0])}: {len(images)} images of "
                            f"shape {images.shape[1:]} but {len(labels)} labels")
        out += [images[:, None], labels.astype(np.int64)]
    return tuple(out)


def read_svhn(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels (0..9; the file's 10 is the digit 0) of one SVHN ``.mat`` file."""
    from scipy.io import loadmat

    try:
        mat = loadmat(file)
    except Exception as exc:  # scipy raises several types for a damaged file
        raise UserError(f"{file}: not a MATLAB file SciPy can read ({exc})") from None
    if "X" not in mat or "y" not in mat:
        raise UserError(f"{file}: an SVHN file holds arrays 'X' and 'y'")
    X = np.asarray(mat["X"], dtype=np.uint8)
    if X.ndim != 4 or X.shape[2] != 3:
        raise UserError(f"{file}: 'X' must be (32, 32, 3, N); got {X.shape}")
    y = np.asarray(mat["y"], dtype=np.int64).reshape(-1) % 10
    return np.ascontiguousarray(X.transpose(3, 2, 0, 1)), y


def read_corrupted(folder: Path, corruption: str, severity: int):
    """Images ``(10000, 3, 32, 32)`` and labels of one corruption at one severity
    (rows ``(severity - 1) * n .. severity * n`` of the published arrays)."""
    file, labels_file = folder / f"{corruption}.npy", folder / "labels.npy"
    try:
        X = np.load(file, mmap_mode="r")
        y = np.load(labels_file)
    except (OSError, ValueError) as exc:
        raise UserError(f"{file}: cannot read the corruption array ({exc})") from None
    if X.ndim != 4 or X.shape[-1] != 3 or len(X) % 5 or len(y) != len(X):
        raise UserError(f"{file}: expected (5n, H, W, 3) images and as many labels in "
                        f"{labels_file.name}; got {X.shape} and {y.shape}")
    n = len(X) // 5
    block = slice((severity - 1) * n, severity * n)
    return (np.ascontiguousarray(np.asarray(X[block], dtype=np.uint8).transpose(0, 3, 1, 2)),
            np.asarray(y[block], dtype=np.int64))


#: Suffixes Pillow decodes that image-folder datasets use.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def class_folders(folder: Path) -> list[Path]:
    """The class subfolders of an ImageFolder layout, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def folder_images(folder: Path) -> list[tuple[Path, int]]:
    """``(file, class index)`` of every image under the class subfolders (recursive),
    classes and files in sorted order."""
    out = []
    for k, sub in enumerate(class_folders(folder)):
        out += [(p, k) for p in sorted(sub.rglob("*"))
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return out


def decode_image(file: Path, size: int | None, mode: str) -> np.ndarray:
    """One image as uint8 ``(C, H, W)`` in Pillow ``mode`` (``RGB`` or ``L``),
    resized to ``size`` x ``size`` (bilinear, antialiased) when given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as img:
            img = img.convert(mode)
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"{file}: Pillow cannot decode this image ({exc})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
