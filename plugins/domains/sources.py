"""Dataset sources with a domain per sample: rotated digits, coloured digits,
and one image folder per domain (PACS / OfficeHome layout).

Every source returns a ``harness.data.RawDataset`` whose ``X`` is float32
images ``(N, C, H, W)`` in [0, 1], ``y`` integer labels, and whose ``meta``
holds ``domains`` (each sample's domain index), ``domain_names``, and the
selection of the entry: ``target`` (the held-out domains) and ``sources``
(the training domains).  The selection is a parameter of the source:

- ``target``: the held-out domain (or a list of them); left out, the entry
  stands for one dataset per domain (leave-one-domain-out, as DomainBed:
  one run per held-out domain, each its own row of the report);
- ``sources``: the training domains; left out, every domain not held out.

A domain named that the source does not have, a domain both held out and
trained on, or a selection that leaves no source domain stops the suite at
validation, naming the key and the value.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from harness.data import RawDataset
from harness.errors import ConfigError
from harness.params import Unbounded

#: The RotatedMNIST angles (Ghifary et al. 2015; DomainBed).
ANGLES = (0, 15, 30, 45, 60, 75)
#: ColoredMNIST's colour-flip probability per domain (Arjovsky et al. 2019; DomainBed).
FLIPS = (0.1, 0.2, 0.9)

#: A domain's name as a suite writes it: a number names an angle or a domain
#: index, checked against the source's domains at plan time, not by range.
Domain = Annotated[str | int | float, Unbounded("a domain's name: checked against the "
                                                "source's domains")]
Selection = Domain | list[Domain] | None
Fraction = Annotated[float, Field(ge=0, le=1)]
#: A rotation in degrees: any angle is a rotation.
Angle = Annotated[float, Unbounded("a rotation in degrees: any angle")]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


def domain_name(value: Any) -> str:
    """The name of a domain as a suite writes it: ``30``, ``30.0`` and ``"30"`` are ``"30"``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _as_list(value: Selection) -> list[str]:
    if value is None:
        return []
    return [domain_name(v) for v in (value if isinstance(value, list) else [value])]


def select_domains(names: list[str], target: Selection, sources: Selection
                   ) -> tuple[list[str], list[str]]:
    """``(targets, sources)`` checked against the domain ``names``; a
    ``ConfigError`` names ``target`` or ``sources`` and the bad value."""
    if len(set(names)) != len(names):
        raise ConfigError("", names, "domain names must be distinct")
    for key, value in (("target", target), ("sources", sources)):
        unknown = [v for v in _as_list(value) if v not in names]
        if unknown:
            raise ConfigError(key, value, f"unknown domain {unknown[0]!r}; the domains are "
                              f"{', '.join(names)}")
    targets = _as_list(target)
    if not targets:
        raise ConfigError("target", target, "name the held-out domain (or leave target out "
                          "for one dataset per domain)")
    chosen = _as_list(sources) if sources is not None else [n for n in names
                                                            if n not in targets]
    both = [n for n in chosen if n in targets]
    if both:
        raise ConfigError("sources", sources, f"domain {both[0]!r} is both held out "
                          f"(target) and a source domain")
    if not chosen:
        raise ConfigError("target" if sources is None else "sources",
                          target if sources is None else sources,
                          f"this holds out every domain ({', '.join(names)}): at least one "
                          f"source domain must remain to train on")
    return targets, chosen


def leave_one_out(names: list[str], params: dict) -> list[dict] | None:
    """The ``expand`` of a domain source: without ``target``, one parameter
    mapping per domain not among ``sources`` (each held out in turn)."""
    if params.get("target") is not None:
        return None
    trained = set(_as_list(params.get("sources")))
    return [{**params, "target": n} for n in names if n not in trained]


def selection_label(name: str, params: dict) -> str:
    """``rotated_digits@30``; ``@30+45`` for several held-out domains; the
    source domains follow ``~`` when the entry names them."""
    label = f"{name}@{'+'.join(_as_list(params.get('target'))) or 'all'}"
    if params.get("sources") is not None:
        label += "~" + "+".join(_as_list(params.get("sources")))
    return label


def rotate(images, degrees: float):
    """Images ``(N, C, H, W)`` rotated counter-clockwise by ``degrees`` about
    their centre (bilinear, zeros outside), as torchvision's ``rotate``:
    90 degrees is ``torch.rot90(images, 1, (-2, -1))``."""
    import torch
    import torch.nn.functional as F

    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    if degrees % 90 == 0:  # exact quarter turns: cos(pi/2) is 6e-17 in floating point
        c, s = float(round(c)), float(round(s))
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=images.dtype,
                         device=images.device).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def _base_images(base: str, root: Path | None):
    """``(X float32 (N, 1, H, W) in [0, 1], y int64)`` of scikit-learn's digits or MNIST."""
    import numpy as np

    if base == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images[:, None] / 16.0).astype(np.float32), d.target.astype(np.int64)
    from harness_plugins.data.images import mnist

    raw = mnist(root=root)
    return (raw.X.astype(np.float32) / 255.0), np.asarray(raw.y, dtype=np.int64)


def _split_domains(n: int, k: int, seed: int, per_domain: int | None):
    """Each sample's domain: a fixed shuffle dealt round-robin over ``k``
    domains (DomainBed's ``images[i::k]``), ``per_domain`` samples at most each."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    keep, domains = [], []
    for i in range(k):
        part = order[i::k][:per_domain]
        keep.append(part)
        domains.append(np.full(len(part), i, dtype=np.int64))
    return np.concatenate(keep), np.concatenate(domains)


def _raw(name: str, X, y, domains, names: list[str], target, sources, classes,
         citation: str = "") -> RawDataset:
    targets, chosen = select_domains(names, target, sources)
    meta = {"domains": domains, "domain_names": names, "target": targets, "sources": chosen,
            "target_names": classes}
    if citation:
        meta["citation"] = citation
    return RawDataset(name, X, y, image_shape=tuple(X.shape[1:]), meta=meta)


def rotated_digits(base: Literal["digits", "mnist"] = "digits",
                   angles: list[Angle] = ANGLES, target: Selection = None,
                   sources: Selection = None, root: Path | None = None,
                   per_domain: Annotated[int, Field(ge=2)] | None = None,
                   seed: Seed = 0) -> RawDataset:
    """Rotated digits (RotatedMNIST protocol): each domain a disjoint share of the images, rotated.

    ``base``: scikit-learn's 8x8 digits (bundled) or MNIST 28x28 (the image
    source, from ``root`` or the data directory).  The images are shuffled
    with ``seed`` and dealt round-robin over the ``angles`` (degrees,
    counter-clockwise, rotated in torch), ``per_domain`` images at most each.
    ``target``/``sources``: the held-out and training domains (angles)."""
    import numpy as np
    import torch

    X, y = _base_images(base, root)
    names = [domain_name(a) for a in angles]
    keep, domains = _split_domains(len(X), len(angles), seed, per_domain)
    X, y = X[keep], y[keep]
    out = np.empty_like(X)
    for i, a in enumerate(angles):
        rows = domains == i
        out[rows] = rotate(torch.from_numpy(X[rows]), float(a)).numpy()
    return _raw(f"rotated_{base}", out, y, domains, names, target, sources,
                [str(k) for k in range(10)])


def colored_digits(base: Literal["digits", "mnist"] = "digits",
                   flips: list[Fraction] = FLIPS, label_noise: Fraction = 0.25,
                   target: Selection = None, sources: Selection = None,
                   root: Path | None = None,
                   per_domain: Annotated[int, Field(ge=2)] | None = None,
                   seed: Seed = 0) -> RawDataset:
    """Coloured digits (ColoredMNIST protocol): colour predicts the label, differently per domain.

    Binary label ``digit < 5``, flipped with probability ``label_noise``; the
    colour (red or green channel of a 2-channel image) is the label flipped
    with the domain's probability in ``flips`` (one domain per value, named
    by it: ``0.1``, ``0.2``, ``0.9``), so the colour is 90% / 80% / 10%
    predictive where the shape is 75%.  Images dealt over the domains as in
    ``rotated_digits``; every draw from ``seed``."""
    import numpy as np

    X, digits = _base_images(base, root)
    names = [domain_name(f) for f in flips]
    keep, domains = _split_domains(len(X), len(flips), seed, per_domain)
    X, digits = X[keep], digits[keep]
    rng = np.random.default_rng(seed + 1)
    y = (digits < 5).astype(np.int64) ^ (rng.random(len(X)) < label_noise)
    flip = rng.random(len(X)) < np.asarray(flips, dtype=np.float64)[domains]
    colour = y ^ flip
    out = np.repeat(X, 2, axis=1)
    out[np.arange(len(X)), 1 - colour] = 0.0  # the digit is drawn in channel `colour`
    return _raw(f"colored_{base}", out.astype(np.float32), y.astype(np.int64), domains,
                names, target, sources, ["digit>=5", "digit<5"])


def _domain_folders(path: Path, domains: list[str] | None) -> list[str]:
    """The domain subfolders of ``path`` (each with class subfolders), or ``domains``."""
    from harness_plugins.data.image_formats import class_folders

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ConfigError("path", str(path), "folder does not exist")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and class_folders(p))
    if domains is None:
        if len(found) < 2:
            raise ConfigError("path", str(path), f"a domain folder holds one subfolder per "
                              f"domain, each with class subfolders; found {len(found)}")
        return found
    missing = [d for d in domains if d not in found]
    if missing:
        raise ConfigError("domains", domains, f"{missing[0]!r} is not a domain folder of "
                          f"{folder} (found: {', '.join(found) or 'none'})")
    return list(domains)


def domain_folders(path: Path, domains: list[str] | None = None,
                   target: Selection = None, sources: Selection = None,
                   size: Annotated[int, Field(ge=4, le=1024)] | None = 32,
                   grayscale: bool = False) -> RawDataset:
    """One image folder per domain (PACS / OfficeHome layout: ``path/<domain>/<class>/*.png``).

    Each domain folder is read by the data family's ``image_folder`` source
    (decoded once, cached); classes are matched by folder name across
    domains.  ``domains``: the domain folders to use (default: every
    subfolder with class subfolders); ``size`` resizes to size x size."""
    import numpy as np

    from harness_plugins.data.image_folder import image_folder

    folder = Path(path).expanduser()
    names = _domain_folders(folder, domains)
    parts = [image_folder(folder / n, size=size, grayscale=grayscale) for n in names]
    classes = sorted({c for p in parts for c in p.meta["target_names"]})
    X = np.concatenate([p.X for p in parts]).astype(np.float32) / 255.0
    y = np.concatenate([[classes.index(p.meta["target_names"][k]) for k in p.y]
                        for p in parts]).astype(np.int64)
    doms = np.concatenate([np.full(len(p.X), i, dtype=np.int64) for i, p in enumerate(parts)])
    return _raw(folder.name, X, y, doms, names, target, sources, classes)


def _angle_names(params: dict) -> list[str]:
    names = [domain_name(a) for a in params.get("angles", ANGLES)]
    if len(names) < 2:
        raise ConfigError("angles", params.get("angles"), "at least two domains (angles)")
    return names


def _flip_names(params: dict) -> list[str]:
    names = [domain_name(f) for f in params.get("flips", FLIPS)]
    if len(names) < 2:
        raise ConfigError("flips", params.get("flips"), "at least two domains (flips)")
    return names


def _folder_names(params: dict) -> list[str]:
    # the core's ``expand`` gets the path as written, not resolved against the
    # suite's folder; ``domains`` spares the listing
    if params.get("domains") is not None:
        return [str(d) for d in params["domains"]]
    try:
        return _domain_folders(Path(str(params["path"])), None)
    except ConfigError as exc:
        raise ConfigError("domains", None, f"{exc.message}: name the domain folders with "
                          f"'domains:' or give an absolute path") from None


def _with_selection(factory, name_of, names_of) -> None:
    """Give a domain source its ``expand`` (leave-one-domain-out), ``check``
    (the selection) and ``label``."""

    def check(params: dict) -> None:
        names = (_domain_folders(Path(params["path"]), params.get("domains"))
                 if factory is domain_folders else names_of(params))
        select_domains(names, params.get("target"), params.get("sources"))

    factory.expand = lambda params: leave_one_out(names_of(params), params)
    factory.check = check
    factory.label = lambda params: selection_label(name_of(params), params)


_with_selection(rotated_digits, lambda p: f"rotated_{p.get('base', 'digits')}", _angle_names)
_with_selection(colored_digits, lambda p: f"colored_{p.get('base', 'digits')}", _flip_names)
_with_selection(domain_folders, lambda p: Path(str(p["path"])).name, _folder_names)
