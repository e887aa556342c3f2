"""Image sources for denoising: bundled photographs and a user's folder.

Each returns a ``harness.data.RawDataset`` whose ``X`` is a list of clean
packed raw images ``(4, h, w)`` float32 in [0, 1] (sizes differ) and ``y`` is
``None``; ``meta["names"]`` names the images.  sRGB photographs become raw
through the inverse ISP (:mod:`harness_plugins.denoising.isp`).  ``size``
bounds the packed side: a larger photograph is downscaled (anti-aliased)
first, which also averages away its JPEG artefacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from harness import hookimpl
from harness.data import RawDataset

#: Colour photographs that ship inside scikit-image (no download) and
#: scikit-learn.  ``cat`` is ``chelsea`` again and ``colorwheel`` is synthetic.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
          "hubble_deep_field", "retina", "motorcycle", "china", "flower")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
RAW_SUFFIXES = (".npy", ".npz")


def _photo(name: str):
    """One bundled photograph as float sRGB ``(H, W, 3)`` in [0, 1]."""
    import numpy as np

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    elif name == "motorcycle":
        from skimage import data

        img = data.stereo_motorcycle()[0]
    else:
        from skimage import data

        img = getattr(data, name)()
    return np.asarray(img[..., :3], dtype=np.float64) / 255.0


def _fit_size(rgb, size: int):
    """Downscale sRGB so the packed side (half the pixel side) is at most ``size``."""
    from skimage.transform import rescale

    scale = 2 * size / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    return rescale(rgb, scale, channel_axis=-1, anti_aliasing=True)


def photos(size: Annotated[int, Field(ge=8)] = 128,
           names: list[str] | None = None) -> RawDataset:
    """Bundled photographs (scikit-image data, scikit-learn sample images) as clean packed raw.

    ``size``: largest packed side (photographs are downscaled to fit);
    ``names``: a subset of the bundled photographs (default: all ten)."""
    from harness_plugins.denoising.isp import to_raw

    chosen = list(names) if names is not None else list(PHOTOS)
    _check_photos({"size": size, "names": chosen})
    X = [to_raw(_fit_size(_photo(n), size)) for n in chosen]
    return RawDataset("photos", X, None, meta={"names": chosen})


def _check_photos(params: dict) -> None:
    from harness import ConfigError
    from harness.params import did_you_mean

    size = params.get("size", 128)
    if size < 8:
        raise ConfigError("size", size, "the packed image side must be at least 8 pixels")
    names = params.get("names")
    if names is not None:
        if not names:
            raise ConfigError("names", names, "no photographs chosen")
        for n in names:
            if n not in PHOTOS:
                raise ConfigError("names", n, f"not a bundled photograph{did_you_mean(n, PHOTOS)};"
                                  f" bundled: {', '.join(PHOTOS)}")


def _image_files(folder: Path) -> list[Path]:
    from harness import ConfigError

    if not folder.is_dir():
        raise ConfigError("path", str(folder), "image folder does not exist")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES + RAW_SUFFIXES)
    if not files:
        raise ConfigError("path", str(folder), "the folder has no images (PNG/JPEG, or .npy/.npz "
                          "raw arrays)")
    return files


def _load_raw_array(file: Path):
    """A ``.npy``/``.npz`` raw array: packed ``(4, h, w)`` or a Bayer mosaic ``(H, W)``,
    RGGB, already normalised to [0, 1] (black level subtracted, divided by the range)."""
    import numpy as np

    from harness import UserError
    from harness_plugins.denoising.isp import pack

    if file.suffix.lower() == ".npz":
        with np.load(file) as data:
            if not data.files:
                raise UserError(f"{file}: the .npz archive holds no array")
            arr = np.asarray(data[data.files[0]], dtype=np.float32)
    else:
        arr = np.asarray(np.load(file), dtype=np.float32)
    if arr.ndim == 2 and arr.shape[0] % 2 == 0 and arr.shape[1] % 2 == 0:
        arr = pack(arr)
    if arr.ndim != 3 or arr.shape[0] != 4:
        raise UserError(f"{file}: a raw array must be a Bayer mosaic (H, W) with even sides or "
                        f"packed (4, h, w); got shape {arr.shape}")
    if arr.min() < -0.01 or arr.max() > 1.01:
        raise UserError(f"{file}: raw values must be normalised to [0, 1]; found "
                        f"{arr.min():.3g}..{arr.max():.3g}")
    return np.clip(arr, 0.0, 1.0)


def image_folder(path: Path, size: Annotated[int, Field(ge=8)] = 128) -> RawDataset:
    """A flat folder of PNG/JPEG photographs (sRGB, inverse ISP) or .npy/.npz raw arrays in [0, 1].

    The denoising layout of the shared ``image_folder`` source
    (:mod:`harness_plugins.data.image_folder`), which calls this.

    A relative ``path`` is relative to the suite file's folder; ``size``
    bounds the packed side of photographs (raw arrays are used as they are)."""
    import numpy as np
    from skimage import io

    from harness_plugins.denoising.isp import to_raw

    folder = Path(path).expanduser()
    X, names = [], []
    for file in _image_files(folder):
        if file.suffix.lower() in RAW_SUFFIXES:
            X.append(_load_raw_array(file))
        else:
            img = np.asarray(io.imread(file), dtype=np.float64)
            img = img / (65535.0 if img.max() > 255 else 255.0)
            if img.ndim == 2:
                img = np.stack([img] * 3, axis=-1)
            X.append(to_raw(_fit_size(img[..., :3], size)))
        names.append(file.name)
    return RawDataset(folder.name, X, None, meta={"names": names})


photos.check = _check_photos
photos.label = lambda params: "photos"
image_folder.check = lambda params: _image_files(Path(params["path"]).expanduser()) and None
image_folder.label = lambda params: Path(str(params["path"])).name


@hookimpl
def register_datasets(register):
    """Image sources of the denoising task (``image_folder``, shared with
    classification, is registered by ``harness_plugins.data.image_folder``
    and reads a flat folder through :func:`image_folder` here)."""
    register("photos", photos)
