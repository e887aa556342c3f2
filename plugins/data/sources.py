"""Local dataset sources: bundled scikit-learn sets, synthetic data, CSV files.

Each factory returns a ``harness.data.RawDataset``; label encoding, the split
and preprocessing happen later, in the task's preparation
(``harness_plugins.classification.prepare``).  numpy, pandas and scikit-learn
are imported inside the factories so ``harness plugins`` starts fast.  The
OpenML sources live in ``openml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from harness import hookimpl
from harness.data import RawDataset
from harness.errors import UserError
from harness.params import did_you_mean

SKLEARN_SETS = ("breast_cancer", "wine", "iris", "digits")


def sklearn(name: Literal["breast_cancer", "wine", "iris", "digits"],
            as_image: bool = False) -> RawDataset:
    """Bundled scikit-learn datasets (breast_cancer, wine, iris, digits; as_image: digits 1x8x8).

    Labels are sklearn's integer targets (names in ``meta["target_names"]``);
    ``as_image`` gives digits as ``(N, 1, 8, 8)`` intensities in [0, 1]."""
    import numpy as np
    import pandas as pd
    from sklearn import datasets

    if name not in SKLEARN_SETS:
        raise UserError(f"unknown sklearn dataset {name!r}{did_you_mean(name, SKLEARN_SETS)}; "
                        f"known: {', '.join(SKLEARN_SETS)}")
    bunch = getattr(datasets, f"load_{name}")()
    meta = {"target_names": [str(t) for t in bunch.target_names]}
    if as_image:
        if name != "digits":
            raise UserError(f"sklearn dataset {name!r} is not an image set; as_image needs digits")
        # Pixel intensities are 0..16 in this set
        X = (bunch.data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
        return RawDataset(name, X, np.asarray(bunch.target), image_shape=(1, 8, 8), meta=meta)
    names = getattr(bunch, "feature_names", None)
    columns = ([str(f) for f in names] if names is not None and len(names)
               else [f"x{i}" for i in range(bunch.data.shape[1])])
    X = pd.DataFrame(bunch.data, columns=columns)
    return RawDataset(name, X, np.asarray(bunch.target), meta=meta)


def synthetic(n_samples: Annotated[int, Field(ge=1)] = 1000,
              n_features: Annotated[int, Field(ge=1)] = 20,
              n_informative: Annotated[int, Field(ge=1)] | None = None,
              n_redundant: Annotated[int, Field(ge=0)] = 0,
              n_classes: Annotated[int, Field(ge=2)] = 2,
              weights: list[Annotated[float, Field(ge=0, le=1)]] | None = None,
              class_sep: Annotated[float, Field(ge=0)] = 1.0,
              flip_y: Annotated[float, Field(ge=0, le=1)] = 0.0,
              random_state: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0) -> RawDataset:
    """Gaussian-cluster classification data (sklearn make_classification), fixed by random_state.

    ``n_informative`` defaults to half the features (at least enough for
    ``n_classes`` clusters).  The data does not depend on the run seed, so
    every seed sees the same dataset and only the split varies."""
    import math

    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    if n_informative is None:
        n_informative = min(n_features, max(n_features // 2, math.ceil(math.log2(2 * n_classes))))
    try:
        X, y = make_classification(
            n_samples=n_samples, n_features=n_features, n_informative=n_informative,
            n_redundant=n_redundant, n_classes=n_classes, weights=weights,
            class_sep=class_sep, flip_y=flip_y, random_state=random_state,
        )
    except ValueError as exc:
        # sklearn's messages are clear but do not say which dataset they come from
        raise UserError(f"synthetic dataset: {exc}") from None
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(n_features)])
    return RawDataset("synthetic", X, np.asarray(y), meta={"weights": weights})


def csv(path: Path, target: str, sep: str = ",") -> RawDataset:
    """A CSV file with a header row; `target` names the label column, the others are features.

    A relative ``path`` is relative to the suite file's folder."""
    import pandas as pd

    file = Path(path).expanduser()
    _csv_header(file, target, sep)
    try:
        frame = pd.read_csv(file, sep=sep)
    except Exception as exc:  # parser errors name neither the file nor the dataset
        reason = " ".join(str(exc).split())
        raise UserError(f"csv dataset: cannot read {str(path)!r}: {reason}") from None
    y = frame.pop(target).to_numpy()
    return RawDataset(file.stem, frame, y, meta={"file": file.name})


def _csv_header(file: Path, target: str, sep: str) -> None:
    """Cheap checks of a csv dataset: the file exists and its header names
    ``target`` (``ConfigError`` on the ``path``/``target`` parameter)."""
    import pandas as pd

    from harness.errors import ConfigError

    if not file.is_file():
        raise ConfigError("path", str(file), "csv file does not exist")
    try:
        columns = [str(c) for c in pd.read_csv(file, sep=sep, nrows=0).columns]
    except Exception as exc:
        raise ConfigError("path", str(file), f"cannot read the csv header: "
                          f"{' '.join(str(exc).split())}") from None
    if target not in columns:
        shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
        hint = " (is sep right?)" if len(columns) == 1 else ""
        raise ConfigError("target", target, f"{file.name} has no column {target!r}"
                          f"{did_you_mean(target, columns)}; columns: {shown}{hint}")


csv.check = lambda params: _csv_header(Path(params["path"]), params["target"],
                                       params.get("sep", ","))
csv.label = lambda params: Path(str(params["path"])).stem
sklearn.label = lambda params: str(params["name"]) + ("-img" if params.get("as_image") else "")


def _sklearn_catalog() -> list[dict]:
    """The bundled sets, one row each (``harness datasets sklearn``): they
    ship with scikit-learn and load in milliseconds, so the numbers are read
    from the data, not written down."""
    import numpy as np
    from sklearn import datasets

    rows = []
    for name in SKLEARN_SETS:
        bunch = getattr(datasets, f"load_{name}")()
        counts = np.bincount(bunch.target)
        rows.append({"name": name, "n": int(bunch.data.shape[0]),
                     "features": int(bunch.data.shape[1]), "classes": len(counts),
                     "min_class": int(counts.min()),
                     "imbalance_ratio": float(counts.max() / counts.min()),
                     "as_image": "1x8x8" if name == "digits" else ""})
    return rows


sklearn.catalog = _sklearn_catalog


@hookimpl
def register_datasets(register):
    """The bundled, synthetic and CSV dataset sources."""
    register("sklearn", sklearn)
    register("synthetic", synthetic)
    register("csv", csv)
