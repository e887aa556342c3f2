"""Exceptions shared by the core and plugins."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """A mistake in user input: the CLI prints it as one line and exits 2."""


class ConfigError(UserError):
    """A bad value in a suite or component spec.

    ``path`` is the key path (``methods.focal.loss.gamma``); ``file`` and
    ``line`` are filled in by the suite loader when known.
    """

    def __init__(self, path: str, value: Any, message: str, *, file: str | None = None,
                 line: int | None = None):
        self.path = path
        self.value = value
        self.message = message
        self.file = file
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        # no file: a component spec given in Python or on the command line
        where = f"{self.file}{'' if self.line is None else f':{self.line}'}: " if self.file else ""
        if not self.path:  # the file as a whole (not found, not YAML), or a bare value
            value = "" if self.value is _MISSING else f"{_shown(self.value)}: "
            return f"{where}{value}{self.message}"
        value = "" if self.value is _MISSING else f" = {_shown(self.value)}"
        return f"{where}{_one_line(self.path)}{value}: {self.message}"


def _one_line(path: str) -> str:
    """A key path as written, with control characters escaped (a YAML key may
    hold a newline; the error stays one line)."""
    if path.isprintable():
        return path
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)


#: Characters of a bad value an error line shows (a huge list stays one readable line).
SHOWN_CHARS = 120


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS - 20]}... ({len(text)} characters)"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
MISSING: Any = _MISSING


class Diverged(Exception):
    """Raised by a task when training diverges (NaN or inf loss); the run is
    recorded with status ``diverged`` instead of failing."""


class DatasetUnavailable(RuntimeError):
    """A dataset source could not fetch its data (no network, server down,
    access denied).  The message is one line.  A process remembers the
    failure, so the other runs on that dataset fail at once instead of
    waiting for the same network timeouts again."""


class TimedOut(Exception):
    """A run (or the work item it trained in) ran past ``--timeout``; raised
    by nobody, built by the supervisor that killed it to record the run."""


class MemoryLimitExceeded(MemoryError):
    """A run's process grew past ``--memory-limit`` and was killed by its
    supervisor (recorded ``oom``)."""


class WorkerLost(Exception):
    """The process training a run died (killed, a segfault, the OOM killer,
    a node lost): the run is recorded ``interrupted`` and ``--retries`` may
    try it again."""


class NotRecorded(ConnectionError):
    """The tracking store did not take a run's end (the store writer or the
    server went away): an infrastructure failure, retried by ``--retries``."""
