"""Epoch progress of the runs training in this process.

A run that trains for more than a few seconds shows where it is: its phase,
epoch (of how many, when the task said), the rate and the time left.  The
run lifecycle feeds ``EPOCHS`` from ``RunContext.epoch_end``; what it shows
depends on where the process runs:

- the harness process itself on a terminal (``--jobs 1``): one updating line
  under the runs' bar (``live``, set by the runner's progress display);
- elsewhere (a log file, CI, a worker process of ``--jobs N``): one plain
  line on stderr per epoch, at most one every ``MIN_GAP_S`` seconds per
  process, prefixed by the process id in workers, so each worker is one
  stream of lines;
- nothing with ``harness run -q`` (``HARNESS_PROGRESS=off``, inherited by
  workers) or for runs shorter than ``QUIET_S`` seconds.

A group (batch mode) is reported once, by its first run, with its size.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

#: ``off`` silences epoch progress (``harness run -q``); workers inherit it.
MODE_ENV = "HARNESS_PROGRESS"
#: A run shows no progress during its first seconds (most runs are short).
QUIET_S = 5.0
#: Plain lines: at most one every this many seconds per process.
MIN_GAP_S = 2.0


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class EpochProgress:
    """Progress of the run (or group) training in this process."""

    def __init__(self):
        #: ``live(text)`` replaces plain lines (the runner's updating display).
        self.live: Callable[[str], None] | None = None
        #: A prefix for plain lines (a worker's name).
        self.prefix = ""
        self._name = ""
        self._started = 0.0
        self._phase: str | None = None
        self._phase_start = 0.0
        self._phase_first = 0
        self._totals: dict[str, int] = {}
        self._last_line = 0.0

    def begin(self, run_name: str, group: int = 1) -> None:
        """A run (or a group of ``group`` runs led by ``run_name``) starts."""
        self._name = run_name if group == 1 else f"{run_name} (+{group - 1} in its group)"
        self._started = time.monotonic()
        self._phase, self._totals, self._last_line = None, {}, 0.0

    def expect(self, run_name: str, phase: str, epochs: int) -> None:
        """The run will train ``epochs`` epochs in ``phase``."""
        if self._name.startswith(run_name):
            self._totals[phase] = int(epochs)

    def epoch(self, run_name: str, phase: str, epoch: int) -> None:
        """``run_name`` ended ``epoch`` (from 0) of ``phase``."""
        if not self._name.startswith(run_name) or os.environ.get(MODE_ENV) == "off":
            return
        now = time.monotonic()
        if phase != self._phase:
            self._phase, self._phase_start, self._phase_first = phase, now, epoch
            return
        if now - self._started < QUIET_S:
            return
        done = epoch - self._phase_first
        rate = done / max(now - self._phase_start, 1e-9)
        total = self._totals.get(phase)
        text = f"{self._name} {phase} epoch {epoch + 1}" + (f"/{total}" if total else "")
        text += f" ({rate:.2g} epochs/s"
        if total and rate > 0:
            text += f", ~{_clock((total - epoch - 1) / rate)} left"
        text += ")"
        if self.live is not None:
            self.live(text)
            return
        if now - self._last_line < MIN_GAP_S:
            return
        self._last_line = now
        print(f"{self.prefix}{text}", file=sys.stderr, flush=True)

    def end(self) -> None:
        """The run or group ended: the live line is cleared."""
        self._name = ""
        if self.live is not None:
            self.live("")


#: This process's reporter.
EPOCHS = EpochProgress()


class _ReaderSafe:
    """A text stream whose writes survive its reader going away: on a broken
    pipe the file descriptor is pointed at /dev/null and writing goes on."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)
        try:  # what is still buffered goes to /dev/null now
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def outlive_the_reader() -> None:
    """Keep training when the reader of stdout/stderr goes away (``harness run
    | head``, a closed ssh pipe): output is a view of the runs, so a broken
    pipe silences it instead of failing the run that was printing."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _ReaderSafe):
            setattr(sys, name, _ReaderSafe(stream))
