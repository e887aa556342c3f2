"""``ctgan`` and ``tvae``: the tabular generators of the ``ctgan`` package
(Xu et al. 2019), an optional extra (``pip install 'harness-bench[ctgan]'``).

The package is not a dependency: it pins ``pandas<3`` through ``rdt``, which
would downgrade the pandas harness runs on.  Without it both augmenters are
still registered (``harness list augmenters`` shows them) and a run that
uses one fails at once with the install command.

Both are fit on a frame of the feature columns plus the label as a discrete
column.  ``ctgan`` samples each class through its conditional vector
(``condition_column``); ``tvae`` has no conditional sampler, so rows are
drawn unconditionally and kept per generated label until each class has
its count (at most ``max_rounds`` draws, then the run fails naming the
class).  Their random state is set from the run's generator with the
package's ``set_random_state`` before fitting and before sampling, which
also keeps the global numpy and torch states untouched.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import UserError, hookimpl
from harness_plugins.augmentation.augmenters import Augmenter, Count, Mode, Ratio, draw_seed

INSTALL = "pip install 'harness-bench[ctgan]'"
LABEL = "__label__"


def _require(name: str):
    try:
        import ctgan
    except ImportError:
        raise UserError(f"augmenter {name!r} needs the optional ctgan package: {INSTALL}"
                        ) from None
    return ctgan


class CTGANFamily(Augmenter):
    """Wraps ``ctgan.CTGAN`` or ``ctgan.TVAE``; see the module docstring."""

    min_per_class = 2
    max_rounds = 20

    def __init__(self, name: str, ratio: float, mode: Mode, epochs: int, batch_size: int):
        self.name = name
        super().__init__(ratio, mode)
        _require(name)  # fail when the run builds the augmenter, before any fitting
        if epochs < 1 or batch_size < 2:
            raise ValueError(f"{name}: epochs must be >= 1 and batch_size >= 2")
        # CTGAN's pac=10 needs batch sizes divisible by 10
        self.epochs, self.batch_size = int(epochs), int(batch_size) // 10 * 10 or 10

    def _frame(self, X, y):
        import pandas as pd

        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
        frame[LABEL] = [str(int(c)) for c in y]
        return frame

    def _fit(self, X, y, rng) -> None:
        ctgan = _require(self.name)
        cls = ctgan.CTGAN if self.name == "ctgan" else ctgan.TVAE
        batch = max(10, min(self.batch_size, len(X) // 10 * 10))
        self.model = cls(epochs=self.epochs, batch_size=batch,
                         enable_gpu=str(self.device).startswith("cuda"))
        self.model.set_random_state(draw_seed(rng))
        self.model.fit(self._frame(X, y), discrete_columns=[LABEL])

    def _draw(self, n: int, c: int):
        if self.name == "ctgan":
            return self.model.sample(n, condition_column=LABEL, condition_value=str(c))
        return self.model.sample(n)

    def _sample(self, n_per_class, rng):
        import numpy as np

        self.model.set_random_state(draw_seed(rng))
        Xs, ys = [], []
        for c, n in n_per_class.items():
            kept = []
            for _ in range(self.max_rounds):
                frame = self._draw(max(n, 100), c)
                kept.append(frame[frame[LABEL].astype(str) == str(c)])
                if sum(len(k) for k in kept) >= n:
                    break
            rows = np.concatenate([k.drop(columns=LABEL).to_numpy(np.float64)
                                   for k in kept])[:n]
            if len(rows) < n:
                raise UserError(f"augmenter {self.name!r} generated {len(rows)} of {n} "
                                f"rows of class {c} in {self.max_rounds} draws")
            Xs.append(rows)
            ys.append(np.full(n, c))
        return np.concatenate(Xs), np.concatenate(ys)


def ctgan(ratio: Ratio = 1.0, mode: Mode = "fixed", epochs: Count = 300,
          batch_size: Annotated[int, Field(ge=2)] = 500) -> CTGANFamily:
    """CTGAN (Xu et al. 2019), conditional tabular GAN; needs the optional ctgan package."""
    return CTGANFamily("ctgan", ratio, mode, epochs, batch_size)


def tvae(ratio: Ratio = 1.0, mode: Mode = "fixed", epochs: Count = 300,
         batch_size: Annotated[int, Field(ge=2)] = 500) -> CTGANFamily:
    """TVAE (Xu et al. 2019), tabular VAE from the ctgan package (optional extra)."""
    return CTGANFamily("tvae", ratio, mode, epochs, batch_size)


@hookimpl
def register_augmenters(register):
    """The ctgan package's generators (optional extra)."""
    register("ctgan", ctgan)
    register("tvae", tvae)
