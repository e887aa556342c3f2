"""``mode: per_batch``: a fixed generated fraction in every batch.

With ``mode: fixed`` the generated rows are simply more training rows: an
epoch is one pass over real and generated rows shuffled together, so a
batch holds any mix.  With ``per_batch`` an epoch is one pass over the real
rows, and every batch of ``batch_size`` rows holds ``round(batch_size / (1 +
ratio))`` of them plus generated rows drawn at random from the generated
pool (``ratio`` x train size rows, as in ``fixed``): the generated fraction
``ratio / (1 + ratio)`` of the deep-augmentation papers, and the same
number of optimisation steps per epoch as real-only training.

It works through the training-scheme protocol, so no trainer change is
needed: the glue replaces the run's ``training.optimizer`` by the spec
``augment_per_batch`` wrapping it (:func:`per_batch_config`), and trains
with a context whose ``create`` builds that spec itself
(:class:`PerBatchContext`): the wrapper is no registered optimizer, so
``harness list optimizers`` does not offer it and a suite cannot name it.
The wrapper delegates every call to the wrapped optimizer or scheme and
supplies the epoch order (``epoch_order``).  Schemes that order epochs
themselves (SAF's per-sample state does not, but a custom one might) cannot
be combined.
"""

from __future__ import annotations

import copy

from harness import UserError


class PerBatchMix:
    """Training-scheme wrapper: batches of real rows topped up with generated
    rows (indices ``n_real ..`` of the train split)."""

    def __init__(self, base, n_real: int, ratio: float, batch_size: int):
        from harness_plugins.classification.optimizers import as_scheme

        self.inner = as_scheme(base)
        if hasattr(self.inner, "epoch_order"):
            raise UserError(f"augment mode per_batch orders the batches itself; the optimizer "
                            f"{type(self.inner).__name__} orders epochs too: use mode fixed")
        self.n_real, self.ratio, self.batch_size = int(n_real), float(ratio), int(batch_size)

    @property
    def optimizer(self):
        """The wrapped scheme's torch optimizer (schedulers step it)."""
        return self.inner.optimizer

    def setup(self, model, loss_fn, info) -> None:
        """Set up the wrapped scheme; remember the generated pool's size."""
        self.n_generated = int(info.n_train) - self.n_real
        self.inner.setup(model, loss_fn, info)

    def step(self, batch) -> float:
        """The wrapped scheme's step."""
        return self.inner.step(batch)

    def epoch_order(self, epoch: int, generator):
        """Real rows in a fresh order, each batch topped up with random
        generated rows to the generated fraction ``ratio / (1 + ratio)``."""
        import torch

        real = torch.randperm(self.n_real, generator=generator)
        if self.n_generated <= 0:
            return real
        per_batch = max(1, round(self.batch_size / (1 + self.ratio)))
        parts = []
        for i in range(0, self.n_real, per_batch):
            chunk = real[i:i + per_batch]
            extra = (self.batch_size - len(chunk) if len(chunk) == per_batch
                     else min(self.batch_size - len(chunk), round(len(chunk) * self.ratio)))
            picks = torch.randint(self.n_generated, (extra,), generator=generator)
            parts += [chunk, self.n_real + picks]
        return torch.cat(parts)

    def __getattr__(self, name):
        # on_epoch_end, reset, restart_epoch ...: the wrapped scheme's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


#: The optimizer spec name of the wrapper (``per_batch_config``); only
#: ``PerBatchContext`` builds it.
SPEC_NAME = "augment_per_batch"


class PerBatchContext:
    """The run's context for training in mode per_batch: ``create`` builds
    the wrapper spec ``per_batch_config`` wrote (around the optimizer the
    registry builds); every other call and attribute is the run context's."""

    def __init__(self, ctx):
        self._ctx = ctx

    def create(self, kind: str, spec, **offered):
        """The wrapper for its spec, else the run context's ``create``."""
        if kind == "optimizers" and isinstance(spec, dict) and spec.get("name") == SPEC_NAME:
            return PerBatchMix(self._ctx.create("optimizers", spec["base"]), spec["n_real"],
                               spec["ratio"], spec["batch_size"])
        return self._ctx.create(kind, spec, **offered)

    def __getattr__(self, name):
        if name == "_ctx":
            raise AttributeError(name)
        return getattr(self._ctx, name)


def per_batch_config(config: dict, n_real: int, n_total: int, ratio: float) -> dict:
    """``config`` with its ``training.optimizer`` wrapped in ``augment_per_batch``
    (built by ``PerBatchContext``)."""
    from harness_plugins.classification.trainer import batch_size_of

    out = copy.deepcopy(config)
    tr = out["training"]
    tr["optimizer"] = {"name": SPEC_NAME, "base": tr["optimizer"], "n_real": n_real,
                       "ratio": ratio, "batch_size": batch_size_of(tr["batch_size"], n_total)}
    return out
