"""Dataset transforms: one_vs_rest, imbalance, label_noise, subsample.

A transform is an object with ``stage`` and ``apply(X, y, rng) -> (X, y)``
working on numpy arrays with labels ``0..K-1`` (see ``register_transforms`` in
``harness.hookspecs``).  ``harness_plugins.classification.prepare`` runs every ``"full"`` transform
before the split, then the ``"train"``/``"trainval"`` ones in suite order.

Transforms may also define ``bind_classes(classes) -> classes``: the pipeline
calls it once, before ``apply``, with the original class values in code order.
A transform that needs K (the number of classes, which one split may not show
in full) remembers it; one that changes the label set (``one_vs_rest``)
returns the new class values.

numpy is imported inside methods so ``harness plugins`` starts fast.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import Unbounded, hookimpl


def resolve_class(value, classes: list) -> int:
    """Code of the class named ``value``: an original label value first (also
    compared as text, since YAML ``2`` may name the OpenML label ``"2"``), else
    an index into ``classes``."""
    for i, c in enumerate(classes):
        if c == value or str(c) == str(value):
            return i
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
        return value
    shown = ", ".join(repr(c) for c in classes[:20]) + (", ..." if len(classes) > 20 else "")
    raise ValueError(f"class {value!r} is neither a label value nor a class index; "
                     f"classes: {shown}")


def _n_classes(bound: int | None, y) -> int:
    # A split may lack the highest class, so the bound K wins over y.max()
    return bound if bound is not None else int(y.max()) + 1 if len(y) else 0


class OneVsRest:
    """Binary relabelling: the ``positive`` class becomes 1, all others 0."""

    stage = "full"

    def __init__(self, positive: int | str):
        self.positive = positive
        self._code: int | None = None

    def bind_classes(self, classes: list) -> list:
        self._code = resolve_class(self.positive, classes)
        return ["rest", classes[self._code]]

    def apply(self, X, y, rng):
        import numpy as np

        code = self._code if self._code is not None else int(self.positive)
        return X, (np.asarray(y) == code).astype(np.int64)

    def __repr__(self) -> str:
        return f"OneVsRest(positive={self.positive!r})"


class Imbalance:
    """Keep a per-class fraction of the training rows (val and test untouched).

    ``exp`` profile (long-tailed, as in LDAM/CIFAR-LT): class ``k`` of K keeps
    ``fraction ** (k / (K - 1))`` of its rows, so class 0 keeps all and class
    K-1 keeps ``fraction``.  ``step`` profile: classes ``k >= K // 2`` keep
    ``fraction``, the others all.  For two classes both profiles keep all of
    class 0 and ``fraction`` of class 1, the positive class (choose it with
    ``one_vs_rest``).  Every class keeps at least one row."""

    stage = "train"

    def __init__(self, fraction: float, profile: str = "exp"):
        self.fraction = fraction
        self.profile = profile
        self._k: int | None = None

    def bind_classes(self, classes: list) -> list:
        self._k = len(classes)
        return classes

    def keep_fractions(self, k: int) -> list[float]:
        """Fraction of rows each of ``k`` classes keeps."""
        if k < 2:
            return [1.0] * k
        if self.profile == "step":
            return [1.0 if c < k // 2 else self.fraction for c in range(k)]
        return [self.fraction ** (c / (k - 1)) for c in range(k)]

    def apply(self, X, y, rng):
        import numpy as np

        y = np.asarray(y)
        keep = []
        for c, frac in enumerate(self.keep_fractions(_n_classes(self._k, y))):
            rows = np.flatnonzero(y == c)
            if len(rows):
                n_keep = max(1, int(round(frac * len(rows))))
                keep.append(rng.permutation(rows)[:n_keep])
        # Sorted so row order (and anything order-dependent downstream) is kept
        idx = np.sort(np.concatenate(keep)) if keep else np.arange(0)
        return X[idx], y[idx]

    def __repr__(self) -> str:
        return f"Imbalance(fraction={self.fraction!r}, profile={self.profile!r})"


class LabelNoise:
    """Corrupt exactly ``round(rate * n)`` labels of each split it sees.

    ``uniform``: the chosen labels are redrawn uniformly from all K classes
    (so about ``rate * (K-1)/K`` of labels actually change); ``pair``: each
    chosen label becomes ``(y + 1) mod K`` (exactly ``rate`` change)."""

    stage = "trainval"

    def __init__(self, rate: float, kind: str = "uniform"):
        self.rate = rate
        self.kind = kind
        self._k: int | None = None

    def bind_classes(self, classes: list) -> list:
        self._k = len(classes)
        return classes

    def apply(self, X, y, rng):
        import numpy as np

        y = np.array(y, dtype=np.int64, copy=True)
        k = _n_classes(self._k, y)
        m = int(round(self.rate * len(y)))
        if m == 0 or k < 2:
            return X, y
        idx = rng.choice(len(y), size=m, replace=False)
        if self.kind == "pair":
            y[idx] = (y[idx] + 1) % k
        else:
            y[idx] = rng.integers(0, k, size=m)
        return X, y

    def __repr__(self) -> str:
        return f"LabelNoise(rate={self.rate!r}, kind={self.kind!r})"


class Subsample:
    """Keep ``n`` rows (or a ``fraction``), stratified by class."""

    stage = "full"

    def __init__(self, n: int | None = None, fraction: float | None = None):
        if (n is None) == (fraction is None):
            raise ValueError("subsample needs exactly one of n and fraction")
        self.n = n
        self.fraction = fraction

    def apply(self, X, y, rng):
        import numpy as np

        y = np.asarray(y)
        total = len(y)
        m = self.n if self.n is not None else int(round(self.fraction * total))
        if m >= total:
            return X, y
        counts = np.bincount(y) if total else np.zeros(0, dtype=int)
        quota = counts * m / total
        alloc = np.floor(quota).astype(int)
        # Largest remainders get the rows left over, so the total is exactly m
        order = np.argsort(-(quota - alloc), kind="stable")
        alloc[order[: m - alloc.sum()]] += 1
        # A class that is present keeps a row while rows can be taken from big ones
        for c in np.flatnonzero((alloc == 0) & (counts > 0)):
            donor = int(np.argmax(alloc))
            if alloc[donor] > 1:
                alloc[donor] -= 1
                alloc[c] = 1
        keep = [rng.permutation(np.flatnonzero(y == c))[:a] for c, a in enumerate(alloc) if a]
        idx = np.sort(np.concatenate(keep)) if keep else np.arange(0)
        return X[idx], y[idx]

    def __repr__(self) -> str:
        return f"Subsample(n={self.n!r}, fraction={self.fraction!r})"


def one_vs_rest(positive: Annotated[int, Unbounded("a label value or class index")]
                | str) -> OneVsRest:
    """Binary task: the positive class (a label value, else a class index) vs the rest."""
    return OneVsRest(positive)


def imbalance(fraction: Annotated[float, Field(gt=0, le=1)],
              profile: Literal["exp", "step"] = "exp") -> Imbalance:
    """Make TRAIN imbalanced: keep `fraction` of class 1 (binary); exp (long-tail) or step profile.

    See ``Imbalance`` for the multi-class profiles; val and test keep the
    original class balance."""
    return Imbalance(fraction, profile)


def label_noise(rate: Annotated[float, Field(ge=0, le=1)],
                kind: Literal["uniform", "pair"] = "uniform") -> LabelNoise:
    """Corrupt a `rate` of train and val labels (uniform redraw or pair y+1 mod K); test clean."""
    return LabelNoise(rate, kind)


def subsample(n: Annotated[int, Field(ge=1)] | None = None,
              fraction: Annotated[float, Field(gt=0, le=1)] | None = None) -> Subsample:
    """Keep n rows or a fraction of the dataset, stratified by class (before the split)."""
    return Subsample(n, fraction)


@hookimpl
def register_transforms(register):
    """The built-in dataset transforms."""
    register("one_vs_rest", one_vs_rest)
    register("imbalance", imbalance)
    register("label_noise", label_noise)
    register("subsample", subsample)
