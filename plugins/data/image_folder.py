"""The ``image_folder`` source: one folder of images for every task that reads images.

Two layouts, told apart by the folder itself:

- **class subfolders** (``path/<class>/*.png``, the ImageNet/Tiny-ImageNet
  layout): labelled ``uint8`` images ``(N, C, size, size)`` for
  classification, decoded once with Pillow and cached as an ``.npz`` in the
  data directory, keyed by the folder's file list (names, sizes, modification
  times) and the decoding options; ``test_path`` (same class names) gives an
  official test split;
- **files directly in the folder**: unlabelled photographs or raw arrays for
  the denoising task (:func:`harness_plugins.denoising.sources.image_folder`:
  packed raw through an inverse ISP).

A folder with no images, a class name of ``test_path`` unknown to ``path``,
or an image Pillow cannot decode stops the suite at validation
(``check`` decodes the folder once, filling the cache the runs then read).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

from pydantic import Field

from harness.data import RawDataset
from harness.errors import ConfigError

Pad = Annotated[int, Field(ge=0, le=64)]
Cut = Annotated[int, Field(ge=0, le=256)]


def _has_classes(folder: Path) -> bool:
    from harness_plugins.data.image_formats import class_folders

    return folder.is_dir() and bool(class_folders(folder))


def _decoded(folder: Path, size: int | None, grayscale: bool, key: str):
    """``(X uint8 (N, C, H, W), y, class names)`` of a class-subfolder layout, from the
    cache when its file list is unchanged."""
    import numpy as np

    from harness_plugins.data.image_formats import class_folders, decode_image, folder_images
    from harness_plugins.data.images import data_home

    if not folder.is_dir():
        raise ConfigError(key, str(folder), "image folder does not exist")
    names = [p.name for p in class_folders(folder)]
    files = folder_images(folder)
    if not files:
        raise ConfigError(key, str(folder), "the folder has no images in its class subfolders "
                          f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
    listing = [(str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns, k)
               for f, k in files]
    digest = hashlib.sha256(json.dumps([str(folder.resolve()), listing, size, grayscale])
                            .encode()).hexdigest()[:24]
    cache = data_home() / "cache" / f"image_folder-{digest}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as z:
                return z["X"], z["y"], names
        except (OSError, ValueError, KeyError):
            cache.unlink(missing_ok=True)  # a damaged cache is rebuilt
    mode = "L" if grayscale else "RGB"
    first = decode_image(files[0][0], size, mode)
    X = np.empty((len(files), *first.shape), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        img = first if i == 0 else decode_image(f, size, mode)
        if img.shape != first.shape:
            raise ConfigError("size", size, f"{f} is {img.shape[2]}x{img.shape[1]} but "
                              f"{files[0][0].name} is {first.shape[2]}x{first.shape[1]}: "
                              f"set size to resize every image to size x size")
        X[i] = img
    y = np.array([k for _, k in files], dtype=np.int64)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        part = cache.with_name(cache.name + ".part.npz")
        np.savez(part, X=X, y=y)
        part.replace(cache)
    except OSError:  # a read-only data directory: decode again next time
        pass
    return X, y, names


def image_folder(path: Path, test_path: Path | None = None,
                 size: Annotated[int, Field(ge=4, le=4096)] | None = None,
                 grayscale: bool = False, crop: Pad = 0, flip: bool = True,
                 cutout: Cut = 0) -> RawDataset:
    """A folder of images: class subfolders -> labelled uint8 images; flat -> denoising photographs.

    Class layout: ``size`` resizes every image to size x size (None: all must
    share one size), ``grayscale`` decodes to one channel, ``test_path`` a
    test folder with the same classes (else the task splits ``path``);
    ``crop``/``flip``/``cutout`` the training augmentation.  Flat layout
    (denoising): PNG/JPEG photographs or .npy/.npz raw arrays, ``size``
    bounding the packed side (default 128)."""
    import numpy as np

    folder = Path(path).expanduser()
    if not _has_classes(folder):
        from harness_plugins.denoising import sources

        return sources.image_folder(folder, size=128 if size is None else size)
    X, y, names = _decoded(folder, size, grayscale, "path")
    meta = {"augment": {"crop": crop, "flip": flip, "cutout": cutout}, "pixels": "uint8",
            "target_names": names}
    splits = None
    if test_path is not None:
        X_test, y_test, test_names = _decoded(Path(test_path).expanduser(), size, grayscale,
                                              "test_path")
        unknown = sorted(set(test_names) - set(names))
        if unknown:
            raise ConfigError("test_path", str(test_path), f"classes {', '.join(unknown[:5])} "
                              f"are not class folders of {folder}")
        if X_test.shape[1:] != X.shape[1:]:
            raise ConfigError("size", size, f"test images are {X_test.shape[1:]}, train "
                              f"images {X.shape[1:]}: set size")
        y_test = np.array([names.index(test_names[k]) for k in y_test], dtype=np.int64)
        splits = (np.arange(len(X)), np.arange(len(X), len(X) + len(X_test)))
        X, y = np.concatenate([X, X_test]), np.concatenate([y, y_test])
    return RawDataset(folder.name, X, y, image_shape=tuple(X.shape[1:]), splits=splits,
                      meta=meta)


def _check(params: dict) -> None:
    folder = Path(params["path"]).expanduser()
    if not _has_classes(folder):
        from harness_plugins.denoising import sources

        sources.image_folder.check({"path": folder})
        return
    size, gray = params.get("size"), params.get("grayscale", False)
    _decoded(folder, size, gray, "path")
    if params.get("test_path") is not None:
        _decoded(Path(params["test_path"]).expanduser(), size, gray, "test_path")


image_folder.check = _check
image_folder.label = lambda params: Path(str(params["path"])).name
