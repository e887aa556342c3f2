"""``RunOptions``: everything ``harness run`` can be told, in one value.

The command line builds one from its flags and ``harness.run_suite`` from its
keyword arguments; both hand it to ``harness.runner.execute_suite``, so a
suite run from Python batches, retries, limits and reports exactly as one
run from the shell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from harness.errors import UserError


@dataclass
class RunOptions:
    """Options of one ``harness run``.

    ``executor`` is an executor name (``local``, ``ray``, ``slurm``, a
    plugin's), a ``{"name": ..., **params}`` spec, or a built executor;
    ``executor_params`` are the named executor's options (``{"jobs": 2}``).
    ``timeout`` (seconds) and ``memory_limit`` (bytes) supervise each work
    item in a child process of its own; ``retries`` retries runs that failed
    on the infrastructure.  ``batch`` (on by default; implied by
    ``max_group``) trains the runs a task can train together without changing
    their numbers as one group, whichever runs share it (``harness.groups``);
    ``batch_all`` (``--batch``) also groups the runs whose numbers a group
    changes within float rounding (a cnn: its stacked convolutions round
    differently).  On a system without POSIX pipes the default trains every
    run alone.  ``report``: build the
    leaderboard and log the suite's report when runs finished.  ``quiet``:
    no epoch progress lines (``harness.progress``)."""

    tracking_uri: str | None = None
    only: str | None = None
    force: bool = False
    rerun_failed: bool = False
    device: str = "auto"
    executor: Any = "local"
    executor_params: dict[str, Any] = field(default_factory=dict)
    blocked: tuple[str, ...] = ()
    timeout: float | None = None
    memory_limit: int | None = None
    retries: int = 0
    batch: bool = True
    batch_all: bool = False
    max_group: int | None = None
    report: bool = True
    quiet: bool = False

    def __post_init__(self):
        asked = self.batch_all or self.max_group is not None
        if self.max_group is not None and self.max_group < 1:
            raise UserError(f"max_group must be at least 1, got {self.max_group}")
        if asked:
            self.batch = True
        elif os.name != "posix":  # the default needs the store writer's pipe
            self.batch = False
        if self.retries < 0:
            raise UserError(f"retries must be at least 0, got {self.retries}")
        for name in ("timeout", "memory_limit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"{name} must be positive, got {value}")
        if self.batch and os.name != "posix":
            raise UserError("batch mode needs a POSIX system: its MLflow writes go through a "
                            "store-writer process fed by a pipe (harness/storewriter.py)")
        self.blocked = tuple(self.blocked)

    @property
    def uri(self) -> str:
        """The tracking URI (``harness.runstate.resolve_uri``)."""
        from harness.runstate import resolve_uri

        return resolve_uri(self.tracking_uri)

    @property
    def limits(self):
        """The ``harness.limits.Limits`` of each work item; ``retries``
        isolates items too (a retried run needs a fresh process: after a
        worker death or a sticky CUDA error the old one is gone or unusable)."""
        from harness.limits import Limits

        return Limits(self.timeout, self.memory_limit, isolate=self.retries > 0)
