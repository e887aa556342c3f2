"""Dataset containers shared by dataset plugins and tasks.

Dataset plugins return a ``RawDataset``; the core turns it into a
``PreparedData`` (encoded labels, transforms, stratified split, preprocessing
fit on train only) that tasks train on.  See ``harness.prepare``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported lazily: plugin modules import this one at start-up
    import numpy as np


@dataclass
class RawDataset:
    """What a dataset plugin returns.

    ``X``: a pandas DataFrame (tabular; categorical columns as category/object
    dtype) or a float numpy array ``(N, *shape)``.  ``y``: labels of any
    hashable type.  ``image_shape``: ``(C, H, W)`` for image data, whose rows
    of ``X`` may be flat.  ``splits``: predefined ``(train_idx, test_idx)``
    (an OpenML task's split), else ``None`` for a seeded stratified split.
    """

    name: str
    X: Any
    y: np.ndarray
    image_shape: tuple[int, ...] | None = None
    splits: tuple[np.ndarray, np.ndarray] | None = None
    meta: dict = field(default_factory=dict)


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
