"""The classification family's data preparation: from a suite's dataset entry
to training-ready arrays (tabular rows or images, integer labels).

``prepare_dataset(entry, split_seed)`` runs, in this order:

1. load the ``RawDataset`` from its source plugin through the core's
   ``harness.data.load_raw`` (cached per process);
2. encode features as a float array (tabular: categorical and text columns
   become category codes; the vocabulary is metadata, not a fitted statistic)
   and labels as ``0..K-1`` in sorted order of the original values (rows
   without a label are dropped);
3. ``"full"``-stage transforms, in suite order;
4. split: stratified train/val/test by ``split_seed``, or the source's
   predefined train/test split (an OpenML task) with val carved out of its
   train part, stratified;
5. ``"train"``/``"trainval"``-stage transforms, in suite order;
6. preprocessing fit on the train split only: tabular data is imputed
   (median; most frequent for categorical columns), categorical columns are
   one-hot encoded (unknown categories -> all zeros) and numeric ones
   standardised (not where the source's metadata says ``standardize:
   False``, as ``bgmm`` does); float images ``(N, C, H, W)`` are
   standardised per channel;
   uint8 images (the image sources') keep their pixels in ``X_train`` and
   get an ``ImagePipeline`` (channel statistics of the train split and the
   source's augmentation, :mod:`harness_plugins.classification.augment`),
   which normalises ``X_val``/``X_test`` now and each training batch on the
   run's device (``ImageData.augment``);
7. float32 features (uint8 train pixels) and int64 labels in a
   ``PreparedData`` (``ImageData`` for uint8 images).

Every random choice derives from ``split_seed`` (transforms get a numpy
Generator seeded from the seed, the transform's position and the split part),
so the same entry and seed give identical arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.data import RawDataset, build_component, load_raw
from harness.errors import UserError


@dataclass
class PreparedData:
    """Float32 feature arrays and int64 labels per split, ready for training.

    ``X_*`` have shape ``(N, *in_shape)``; labels are in ``0..n_classes-1``;
    ``y_train``/``y_val`` may carry injected label noise, ``y_test`` never
    does.  ``classes`` are the original label values in code order.
    ``y_train_clean``/``y_val_clean`` are the labels before train/val
    transforms changed them (label noise), aligned row by row with
    ``y_train``/``y_val``; ``None`` when no label was changed."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list
    in_shape: tuple[int, ...]
    meta: dict = field(default_factory=dict)
    y_train_clean: np.ndarray | None = None
    y_val_clean: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def class_counts(self) -> list[int]:
        """Training-set count of each class (after transforms)."""
        import numpy as np

        return np.bincount(self.y_train, minlength=self.n_classes).tolist()


@dataclass
class ImageData(PreparedData):
    """Prepared uint8 images: ``X_train`` stays ``uint8`` ``(N, C, H, W)`` (a
    quarter of float32's memory, on the run's device as is), ``X_val`` and
    ``X_test`` are normalised float32.  The training loop passes every
    training batch through :meth:`augment`; code that feeds ``X_train`` to a
    model by other paths converts it with :meth:`inputs`."""

    pipeline: Any = None

    def augment(self, x, generator):
        """A training batch (uint8 tensor on the run's device) cropped, flipped,
        normalised and cut out as the source asked, drawing from ``generator``."""
        return self.pipeline.train_batch(x, generator)

    def inputs(self, x):
        """Model inputs of train-split rows without augmentation: normalised float32
        (tensor in, tensor out; numpy in, numpy out)."""
        if isinstance(x, np.ndarray):
            return self.pipeline.numpy_eval(x) if x.dtype == np.uint8 else x
        return self.pipeline.eval_batch(x)


STAGES = ("full", "train", "trainval")


def _label_key(value) -> tuple:
    # Numbers (and numeric text such as OpenML's "1".."10") sort by value
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def encode_labels(y) -> tuple[np.ndarray, list, np.ndarray]:
    """``(codes, classes, labelled)``: int64 codes of the labelled rows, the
    class values in code order (sorted), and the mask of labelled rows."""
    import pandas as pd

    values = pd.Series(np.asarray(y, dtype=object))
    labelled = ~values.isna().to_numpy()
    present = values[labelled]
    classes = sorted(pd.unique(present), key=_label_key)
    codes = pd.Categorical(present, categories=classes).codes.astype(np.int64)
    classes = [c.item() if isinstance(c, np.generic) else c for c in classes]
    return codes, classes, labelled


def encode_features(raw: RawDataset) -> tuple[np.ndarray, list[int] | None]:
    """``(X, categorical)``: a float array and the indices of its categorical
    columns; ``categorical`` is ``None`` for image data ``(N, C, H, W)``."""
    import pandas as pd

    X = raw.X
    if raw.image_shape is not None or (isinstance(X, np.ndarray) and X.ndim >= 3):
        arr = np.array(X.to_numpy() if isinstance(X, pd.DataFrame) else X, dtype=np.float32)
        shape = tuple(raw.image_shape) if raw.image_shape else arr.shape[1:]
        if len(shape) == 2:
            shape = (1, *shape)
        return arr.reshape(len(arr), *shape), None
    if not isinstance(X, pd.DataFrame):
        try:
            return np.array(X, dtype=np.float64).reshape(len(X), -1), []
        except (TypeError, ValueError):
            X = pd.DataFrame(np.asarray(X, dtype=object))
    columns, categorical = [], []
    for j, name in enumerate(X.columns):
        col = X[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            columns.append(col.to_numpy(dtype=np.float64, na_value=np.nan))
        else:
            codes, _ = pd.factorize(col, sort=True)
            columns.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
            categorical.append(j)
    arr = np.column_stack(columns) if columns else np.zeros((len(X), 0))
    return arr, categorical


def _stratified_split(idx: np.ndarray, y: np.ndarray, size, seed: int):
    """``(rest, part)`` with ``part`` of ``size`` (fraction or count), stratified
    when every class has at least two rows, else plain random."""
    from sklearn.model_selection import train_test_split

    if not size or len(idx) < 2:
        return idx, idx[:0]
    try:
        return tuple(train_test_split(idx, test_size=size, stratify=y, random_state=seed))
    except ValueError:  # a class too small to stratify (or more classes than test rows)
        return tuple(train_test_split(idx, test_size=size, random_state=seed))


def _rng(seed: int, position: int, part: int) -> np.random.Generator:
    return np.random.default_rng([abs(int(seed)), position, part])


def _apply(transform, X, y, rng):
    X, y = transform.apply(X, y, rng)
    return np.asarray(X), np.asarray(y, dtype=np.int64)


def fit_preprocessing(X_train: np.ndarray, categorical: list[int] | None):
    """A function mapping raw feature arrays to model inputs, fit on ``X_train``."""
    if categorical is None:
        axes = (0, *range(2, X_train.ndim))
        mean = X_train.mean(axis=axes, dtype=np.float64, keepdims=True)
        std = X_train.std(axis=axes, dtype=np.float64, keepdims=True)
        std[~(std > 0)] = 1.0
        return lambda X: ((X - mean) / std).astype(np.float32)
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [j for j in range(X_train.shape[1]) if j not in set(categorical)]
    parts = []
    # keep_empty_features: a column empty in one split must not change in_shape
    if numeric:
        parts.append(("num", make_pipeline(SimpleImputer(strategy="median",
                                                         keep_empty_features=True),
                                           StandardScaler()), numeric))
    if categorical:
        parts.append(("cat", make_pipeline(
            SimpleImputer(strategy="most_frequent", keep_empty_features=True),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False)), categorical))
    if not parts:
        raise UserError("the dataset has no feature columns")
    pipe = ColumnTransformer(parts, sparse_threshold=0).fit(X_train)
    width = len(pipe.get_feature_names_out())

    def transform(X: np.ndarray) -> np.ndarray:
        # sklearn rejects empty inputs; an empty split still needs its width
        return pipe.transform(X).astype(np.float32) if len(X) else np.zeros((0, width), np.float32)

    return transform


def _track_clean(clean, y_before, y_after):
    """Clean labels aligned with ``y_after``, or ``None`` once rows cannot be matched."""
    if clean is None:
        return None
    if len(y_after) == len(y_before):
        return clean
    # Rows were dropped: alignment survives only while no label differs yet
    return y_after.copy() if np.array_equal(clean, y_before) else None


def _make_transforms(entry: dict, registry) -> list[tuple[int, Any]]:
    """``(suite position, transform)`` pairs, full-stage ones first."""
    transforms = []
    for pos, (name, tparams) in enumerate(entry.get("transforms") or []):
        t = build_component(registry, "transforms", name, tparams or {}, f"dataset.{name}")
        if getattr(t, "stage", None) not in STAGES:
            raise TypeError(f"transform {name!r} has stage {getattr(t, 'stage', None)!r}; "
                            f"expected one of {', '.join(STAGES)}")
        transforms.append((pos, t))
    return ([pt for pt in transforms if pt[1].stage == "full"]
            + [pt for pt in transforms if pt[1].stage != "full"])


def _split_parts(X, y, splits, split: dict, full: list, seed: int):
    """Full-stage transforms, then ``(train, val, test)`` as ``(X, y)`` pairs."""
    if splits is None:
        for pos, t in full:
            X, y = _apply(t, X, y, _rng(seed, pos, 0))
        pool, test = _stratified_split(np.arange(len(y)), y, split["test"], seed)
        val_size = split["val"]
        if isinstance(val_size, float) and isinstance(split["test"], float):
            val_size = val_size / (1.0 - split["test"])  # a fraction of the whole dataset
        (X_pool, y_pool), (X_test, y_test) = (X[pool], y[pool]), (X[test], y[test])
    else:
        # Full transforms run on each predefined part, keeping the task's split intact
        (X_pool, y_pool), (X_test, y_test) = ((X[s], y[s]) for s in splits)
        for pos, t in full:
            X_pool, y_pool = _apply(t, X_pool, y_pool, _rng(seed, pos, 0))
            X_test, y_test = _apply(t, X_test, y_test, _rng(seed, pos, 1))
        val_size = split["val"]  # a fraction of the task's train part
    train, val = _stratified_split(np.arange(len(y_pool)), y_pool, val_size, seed)
    return (X_pool[train], y_pool[train]), (X_pool[val], y_pool[val]), (X_test, y_test)


def prepare_dataset(entry: dict, split_seed: int, *, registry=None,
                    pixels: str = "uint8") -> PreparedData:
    """Load, transform, split and preprocess one normalised dataset entry.

    ``entry``: ``{"source", "params", "transforms": [[name, params], ...],
    "split": {"val", "test"}, "label"}`` as the suite loader produces it.
    Same entry and ``split_seed`` give identical arrays.  ``pixels="float"``
    gives uint8 image sources a normalised float32 ``X_train`` too (for a
    task whose training reads ``X_train`` without ``ImageData.augment``;
    ``augment`` still works on it, with the same numbers)."""
    if pixels not in ("uint8", "float"):
        raise ValueError(f"pixels is 'uint8' or 'float', not {pixels!r}")
    if registry is None:
        from harness.plugins import get_registry

        registry = get_registry()
    source, params = entry["source"], dict(entry.get("params") or {})
    split = {"val": 0.2, "test": 0.2, **(entry.get("split") or {})}
    seed = abs(int(split_seed)) % 2**32
    raw = load_raw(source, params, registry, entry.get("base_dir"))

    uint8_images = is_uint8_images(raw)
    X, categorical = (np.asarray(raw.X), None) if uint8_images else encode_features(raw)
    y, classes, labelled = encode_labels(raw.y)
    if len(y) == 0:
        raise UserError(f"dataset {raw.name!r} has no labelled rows")
    splits = raw.splits
    if not labelled.all():
        X = X[labelled]
        if splits is not None:
            new_pos = np.cumsum(labelled) - 1
            splits = tuple(new_pos[s[labelled[s]]] for s in splits)

    ordered = _make_transforms(entry, registry)
    # In run order, so a train transform sees the classes full transforms made
    for _, t in ordered:
        if hasattr(t, "bind_classes"):
            classes = list(t.bind_classes(list(classes)))
    full = [pt for pt in ordered if pt[1].stage == "full"]
    (X_train, y_train), (X_val, y_val), (X_test, y_test) = _split_parts(
        X, y, splits, split, full, seed)

    clean_train, clean_val = y_train.copy(), y_val.copy()
    for pos, t in ordered[len(full):]:
        before = y_train
        X_train, y_train = _apply(t, X_train, y_train, _rng(seed, pos, 0))
        clean_train = _track_clean(clean_train, before, y_train)
        if t.stage == "trainval":
            before = y_val
            X_val, y_val = _apply(t, X_val, y_val, _rng(seed, pos, 1))
            clean_val = _track_clean(clean_val, before, y_val)
    if len(y_train) == 0:
        raise UserError(f"dataset {entry.get('label') or raw.name!r} has no training rows "
                        f"left after its split and transforms")

    pipeline = None
    if uint8_images:
        from harness_plugins.classification.augment import ImagePipeline

        pipeline = ImagePipeline.fit(X_train, raw.meta.get("augment"))
        X_val, X_test = pipeline.numpy_eval(X_val), pipeline.numpy_eval(X_test)
        if pixels == "float":
            X_train = pipeline.numpy_eval(X_train)
    elif raw.meta.get("standardize", True) is False:
        # a simulation whose analysis needs its features as drawn (bgmm)
        X_train, X_val, X_test = (np.asarray(a, np.float32) for a in (X_train, X_val, X_test))
    else:
        prep = fit_preprocessing(X_train, categorical)
        X_train, X_val, X_test = prep(X_train), prep(X_val), prep(X_test)
    changed_train = clean_train is not None and not np.array_equal(clean_train, y_train)
    changed_val = clean_val is not None and not np.array_equal(clean_val, y_val)
    meta = {
        **raw.meta,
        "source": source,
        "dataset_name": raw.name,
        "n_train": int(len(y_train)),
        "n_val": int(len(y_val)),
        "n_test": int(len(y_test)),
        "split": "predefined" if splits is not None else "stratified",
        "transforms": [repr(t) for _, t in ordered],
    }
    if changed_train:
        meta["noise_rate_train"] = float(np.mean(clean_train != y_train))
    kind, extra = PreparedData, {}
    if pipeline is not None:
        kind, extra = ImageData, {"pipeline": pipeline}
        meta["pipeline"] = pipeline.describe()
    return kind(
        name=str(entry.get("label") or raw.name),
        X_train=np.ascontiguousarray(X_train), y_train=y_train.astype(np.int64),
        X_val=np.ascontiguousarray(X_val), y_val=y_val.astype(np.int64),
        X_test=np.ascontiguousarray(X_test), y_test=y_test.astype(np.int64),
        classes=classes, in_shape=tuple(X_train.shape[1:]), meta=meta,
        y_train_clean=clean_train if changed_train else None,
        y_val_clean=clean_val if changed_val else None, **extra,
    )


def is_uint8_images(raw: RawDataset) -> bool:
    """Whether a source gave uint8 images ``(N, C, H, W)``: they keep their
    pixels through the split and get the device pipeline (``ImageData``)."""
    X = raw.X
    return (isinstance(X, np.ndarray) and X.dtype == np.uint8 and X.ndim == 4
            and raw.image_shape is not None)
