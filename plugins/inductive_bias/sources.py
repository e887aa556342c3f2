"""``teacher_task``: classification by a random linear teacher, of any input dimension.

x ~ N(0, I_d) and y = argmax_k (x W*)_k with W* ~ N(0, 1)^{d x K} drawn once
by ``random_state``: every task of the family is learnable without error by
a linear class, and the teacher itself (``meta["truth"]``) is a hypothesis
with zero test loss, so a class made of it needs 0 bits.  Growing ``d`` at a
fixed training budget makes the task harder for a hypothesis drawn at random
(the paper's "higher-dimensional tasks need more inductive bias").
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness.data import RawDataset


def teacher_task(d: Annotated[int, Field(ge=1, le=100_000)] = 8,
                 classes: Annotated[int, Field(ge=2, le=1000)] = 2,
                 n_samples: Annotated[int, Field(ge=10, le=10_000_000)] = 3000,
                 random_state: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0) -> RawDataset:
    """Gaussian inputs in d dimensions labelled by a random linear teacher (argmax of x W*)."""
    import numpy as np

    rng = np.random.default_rng(random_state)
    W = rng.standard_normal((d, classes))
    X = rng.standard_normal((n_samples, d))
    y = np.argmax(X @ W, 1)
    return RawDataset(f"teacher_d{d}", X, y,
                      meta={"truth": {"kind": "linear_teacher", "weights": W.tolist()},
                            "standardize": False})


def _label(params: dict) -> str:
    """``teacher_d8``, with the class count, size and state where not the default."""
    extra = [f"{k}={params[k]}" for k, default in (("classes", 2), ("n_samples", 3000),
                                                   ("random_state", 0))
             if params.get(k, default) != default]
    base = f"teacher_d{params.get('d', 8)}"
    return f"{base}({','.join(extra)})" if extra else base


teacher_task.label = _label
