"""OpenML dataset sources: ``openml`` (a dataset id) and ``openml_task`` (a
task's predefined train/test split).

Everything goes through openml-python, so the user's openml configuration
(server, API key, cache directory, retry policy) applies unchanged.  On top of
openml's own cache this module keeps the parsed table, one parquet file per
(dataset, target), and each task split used, under

    <openml cache dir>/harness/datasets/<dataset id>/<target key>.parquet (+ .json)
    <openml cache dir>/harness/tasks/<task id>-r<repeat>-f<fold>.npz

(``openml.config.get_cache_directory()``, which is per server), so a second
load reads one file and never talks to the server.  A dataset that cannot be
fetched raises ``DatasetUnavailable`` with a one-line message
("openml dataset 1464 is unavailable: <reason>").
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated

from pydantic import Field

from harness import hookimpl
from harness.data import RawDataset
from harness.errors import DatasetUnavailable, UserError
from harness.params import did_you_mean

#: Bump when the layout of the harness cache files changes.
CACHE_FORMAT = 1
TARGET_COLUMN = "__harness_target__"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if any(s in text for s in ("NameResolutionError", "Max retries exceeded",
                               "Failed to establish a new connection")):
        # urllib3's retry chain is hundreds of characters of the same fact
        return f"cannot reach the OpenML server ({type(exc).__name__}; no network?)"
    return text if len(text) <= 300 else text[:297] + "..."


def _unavailable(what: str, ident: int, exc: BaseException) -> DatasetUnavailable:
    return DatasetUnavailable(f"openml {what} {ident} is unavailable: {_one_line(exc)}")


def _harness_cache() -> Path:
    import openml

    return Path(openml.config.get_cache_directory()) / "harness"


def _target_key(target: str | None) -> str:
    if target is None:
        return "default"
    # Column names may hold any character; keep the file name safe and unique
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", target)[:40]
    return f"{safe}-{hashlib.sha1(target.encode()).hexdigest()[:8]}"


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file so concurrent workers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_table_cache(dataset_id: int, target: str | None):
    import pandas as pd

    base = _harness_cache() / "datasets" / str(dataset_id) / _target_key(target)
    meta_file, data_file = base.with_suffix(".json"), base.with_suffix(".parquet")
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != CACHE_FORMAT:
            return None
        frame = pd.read_parquet(data_file)
    except Exception:  # missing, partial or foreign files: reload through openml
        return None
    y = frame.pop(TARGET_COLUMN)
    return frame, y, meta


def _write_table_cache(dataset_id: int, target: str | None, frame, y, meta: dict) -> None:
    base = _harness_cache() / "datasets" / str(dataset_id) / _target_key(target)
    table = frame.copy()
    table[TARGET_COLUMN] = y.to_numpy() if hasattr(y, "to_numpy") else y
    try:
        _atomic_write(base.with_suffix(".parquet"), lambda p: table.to_parquet(p, index=False))
        # The json marks the parquet file complete, so it is written last
        _atomic_write(base.with_suffix(".json"),
                      lambda p: Path(p).write_text(json.dumps({"format": CACHE_FORMAT, **meta})))
    except Exception:  # odd column types or a read-only cache: the cache is only a speed-up
        return


def load_table(dataset_id: int, target: str | None = None):
    """``(X DataFrame, y Series, meta)`` of an OpenML dataset, from the harness
    cache when present, else through ``openml.datasets.get_dataset``.

    ``meta`` has ``name``, ``target`` (resolved) and ``dataset_id``."""
    cached = _read_table_cache(dataset_id, target)
    if cached is not None:
        return cached
    import openml
    import pandas as pd

    try:
        dataset = openml.datasets.get_dataset(
            dataset_id, download_data=True, download_qualities=False,
            download_features_meta_data=False,
        )
        # target=None returns every column (minus row id and ignored ones),
        # so a wrong target name can be reported with the columns
        frame, *_ = dataset.get_data(dataset_format="dataframe")
    except Exception as exc:
        raise _unavailable("dataset", dataset_id, exc) from exc
    resolved = target or dataset.default_target_attribute
    columns = [str(c) for c in frame.columns]
    if not resolved or ("," in resolved and resolved not in columns):
        raise UserError(f"openml dataset {dataset_id} ({dataset.name}) has no single default "
                        f"target ({resolved!r}); set target to one of: {', '.join(columns[:30])}")
    if resolved not in frame.columns:
        raise UserError(f"openml dataset {dataset_id} ({dataset.name}) has no column "
                        f"{resolved!r}{did_you_mean(resolved, columns)}; "
                        f"columns: {', '.join(columns[:30])}")
    y = frame.pop(resolved)
    for col in frame.columns:
        # Sparse ARFF sets arrive as sparse columns, which parquet and sklearn dislike
        if isinstance(frame[col].dtype, pd.SparseDtype):
            frame[col] = frame[col].sparse.to_dense()
    meta = {"name": str(dataset.name), "target": resolved, "dataset_id": dataset_id}
    _write_table_cache(dataset_id, target, frame, y, meta)
    return frame, y, meta


def infer_image_shape(name: str, columns: list[str]) -> tuple[int, int, int] | None:
    """``(C, H, W)`` when a flat table is obviously an image set, else ``None``.

    Obvious means: columns ``pixel1..pixelN`` with N a square (MNIST-style
    sets, Fashion-MNIST, Kuzushiji-MNIST) -> ``(1, s, s)``; a CIFAR set with
    3072 columns -> ``(3, 32, 32)`` (OpenML stores its red, green and blue
    planes one after another)."""
    n = len(columns)
    if n and all(re.fullmatch(r"pixel\d+", str(c), re.IGNORECASE) for c in columns):
        side = int(round(n ** 0.5))
        if side * side == n:
            return (1, side, side)
    if "cifar" in name.lower() and n == 3 * 32 * 32:
        return (3, 32, 32)
    return None


def _to_raw(frame, y, meta: dict, shape: list[int] | None, name: str) -> RawDataset:
    import numpy as np

    image_shape = None
    if shape:
        image_shape = tuple(int(s) for s in shape)
        if len(image_shape) == 2:
            image_shape = (1, *image_shape)
        if len(image_shape) != 3 or int(np.prod(image_shape)) != frame.shape[1]:
            raise UserError(f"openml dataset {meta['dataset_id']}: shape {list(shape)} does not "
                            f"fit its {frame.shape[1]} features (give C, H, W or H, W)")
    else:
        image_shape = infer_image_shape(meta["name"], list(frame.columns))
    X = frame
    if image_shape is not None:
        try:
            X = frame.to_numpy(dtype=np.float32)
        except (TypeError, ValueError):
            raise UserError(f"openml dataset {meta['dataset_id']} has non-numeric features; "
                            f"it cannot be read as images of shape {image_shape}") from None
    labels = y.to_numpy() if hasattr(y, "to_numpy") else np.asarray(y)
    return RawDataset(name, X, labels, image_shape=image_shape,
                      meta={"openml_dataset_id": meta["dataset_id"], "target": meta["target"]})


#: C, H, W of flat image rows.
Shape = list[Annotated[int, Field(ge=1)]] | None


def openml_dataset(dataset_id: Annotated[int, Field(ge=1)], target: str | None = None,
                   shape: Shape = None) -> RawDataset:
    """An OpenML dataset by id (its default target unless `target`; `shape` C,H,W for flat images).

    Image sets whose columns make the layout obvious (``pixel1..pixelN``,
    CIFAR) are reshaped without ``shape``; other tables stay tabular."""
    frame, y, meta = load_table(dataset_id, target)
    return _to_raw(frame, y, meta, shape, meta["name"])


def _task_split(task_id: int, fold: int, repeat: int):
    """``(train_idx, test_idx, dataset_id, target)`` of one fold of a task."""
    import numpy as np

    file = _harness_cache() / "tasks" / f"{task_id}-r{repeat}-f{fold}.npz"
    try:
        with np.load(file, allow_pickle=False) as z:
            if int(z["format"]) == CACHE_FORMAT:
                return z["train"], z["test"], int(z["dataset_id"]), str(z["target"])
    except Exception:  # missing or unreadable: fetch the split through openml
        pass
    import openml

    try:
        task = openml.tasks.get_task(task_id, download_splits=True)
    except Exception as exc:
        raise _unavailable("task", task_id, exc) from exc
    if not isinstance(task, openml.tasks.OpenMLClassificationTask):
        raise UserError(f"openml task {task_id} is a {task.task_type} task; openml_task needs "
                        f"a supervised classification task")
    n_repeats, n_folds, _ = task.get_split_dimensions()
    if not (0 <= repeat < n_repeats and 0 <= fold < n_folds):
        raise UserError(f"openml task {task_id} has {n_repeats} repeat(s) of {n_folds} folds; "
                        f"repeat {repeat}, fold {fold} does not exist")
    target = str(task.target_name)
    train, test = task.get_train_test_split_indices(fold=fold, repeat=repeat)
    train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)

    def write(path: str) -> None:
        # A file object, because savez appends ".npz" to a path without it
        with open(path, "wb") as fh:
            np.savez_compressed(fh, format=CACHE_FORMAT, train=train, test=test,
                                dataset_id=task.dataset_id, target=np.str_(target))

    try:
        _atomic_write(file, write)
    except OSError:  # a read-only cache only costs speed
        pass
    return train, test, int(task.dataset_id), target


def openml_task(task_id: Annotated[int, Field(ge=1)], fold: Annotated[int, Field(ge=0)] = 0,
                repeat: Annotated[int, Field(ge=0)] = 0, shape: Shape = None) -> RawDataset:
    """An OpenML classification task: its dataset, target and the train/test split of one fold."""
    import numpy as np

    train, test, dataset_id, target = _task_split(task_id, fold, repeat)
    frame, y, meta = load_table(dataset_id, target)
    rows = np.concatenate([train, test])
    if len(rows) and (rows.min() < 0 or rows.max() >= len(frame)):
        raise UserError(f"openml task {task_id}: its split indexes rows beyond the "
                        f"{len(frame)} rows of dataset {dataset_id}")
    raw = _to_raw(frame, y, meta, shape, f"{meta['name']}-task{task_id}")
    raw.splits = (train, test)
    raw.meta.update(openml_task_id=task_id, fold=fold, repeat=repeat)
    return raw


@hookimpl
def register_datasets(register):
    """The OpenML dataset sources."""
    register("openml", openml_dataset)
    register("openml_task", openml_task)
