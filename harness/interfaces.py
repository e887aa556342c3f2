"""Typed interfaces of the objects the core drives: tasks and executors.

The contracts are documented with their hooks (``register_tasks``,
``register_executors`` in ``harness.hookspecs``); these protocols are the
same contracts as types, for type checkers and for the core's own
``isinstance`` checks (``runtime_checkable``: the methods' presence, not
their signatures).  The logger a run writes through is
``harness.runlog.RunLogger``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Task(Protocol):
    """What ``register_tasks`` factories return (optional members:
    ``dataset_entry``, ``dataset_label``, ``prepare``, ``cost_keys``)."""

    metric_inputs: tuple[str, ...]

    def validate(self, config: dict, check: Callable) -> dict:
        """Normalise and check one method's merged config."""

    def run(self, ctx: Any) -> dict[str, float]:
        """Train and evaluate one run (``ctx``: ``harness.context.RunContext``)."""


@runtime_checkable
class BatchTask(Task, Protocol):
    """A task with a batch mode (``harness.groups``)."""

    def batch_key(self, spec: Any) -> tuple[str | None, str]:
        """Runs with equal keys may train together; ``(None, why)`` otherwise."""

    def run_group(self, ctxs: list) -> list[dict | BaseException]:
        """Train a group: per run, its test metrics or the exception that ended it."""


@runtime_checkable
class Executor(Protocol):
    """What ``register_executors`` factories return (optional attributes:
    ``name``, ``slots``)."""

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """Call ``fn(item)`` for each ``harness.worker.WorkItem`` anywhere;
        yield each result (or ``harness.worker.Lost``) as it completes."""
