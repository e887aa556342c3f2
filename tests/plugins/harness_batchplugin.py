"""Fixture plugin for the batched-engine tests: an MLP computing in float64,
so that a batched and an unbatched suite can be compared to 1e-6."""

from typing import Annotated

from harness import FromData, hookimpl


def mlp64(in_shape: Annotated[tuple, FromData], n_classes: Annotated[int, FromData],
          hidden: list[int] = (16,)):
    """The built-in mlp in float64 (inputs cast on entry)."""
    import torch

    from harness_plugins.classification.models import mlp

    class ToFloat64(torch.nn.Module):
        def forward(self, x):
            return x.double()

    return torch.nn.Sequential(ToFloat64(), mlp(in_shape, n_classes, hidden=hidden).double())


@hookimpl
def register_models(register):
    register("mlp64", mlp64)


class OutOfMemoryError(RuntimeError):
    """Named as torch.cuda's: harness matches the out-of-memory error by name."""


def small_memory(max_group: int = 2):
    """The classification task on a device that holds at most ``max_group`` runs."""
    from harness_plugins.classification.task import ClassificationTask

    class SmallMemory(ClassificationTask):
        def run_group(self, ctxs):
            if len(ctxs) > max_group:
                raise OutOfMemoryError(f"{len(ctxs)} runs do not fit")
            return super().run_group(ctxs)

    return SmallMemory()


@hookimpl
def register_tasks(register):
    register("small_memory", small_memory)
