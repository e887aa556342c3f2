"""Run state: what a run key's MLflow runs mean, defined once.

The planner (``harness run``/``plan``), ``harness status``, the tracking
reader and the reports all answer the same questions from MLflow: which
status words exist, which ones count as a result or as a failure, whether a
RUNNING run is still alive, which of several runs of one run key speaks for
it, and where the tracking store is.  The answers live here so that the
commands cannot disagree.

Rules:

- Status words (tag ``harness.status``): ``finished`` and ``diverged`` are
  results (``DONE``); ``failed``, ``timeout`` and ``oom`` are failures
  (``FAILED``: rerun only with ``--rerun-failed``); ``interrupted`` is redone
  by the next ``harness run``; ``running`` is a run in progress (or left by a
  dead process: ``is_stale``).
- A status word this version does not know (written by a newer harness, or by
  hand) counts as ``interrupted``: the run did not end in a state this version
  can interpret, so it is redone, and ``harness status`` and the reports show
  it in the ``interrupted`` column.  A run without a ``harness.status`` tag
  gets one from its MLflow status (``from_mlflow``).
- A failure whose cause was the input (tag ``harness.failure_kind=input``: a
  missing file, a bad column, a value the data rejects) is planned again
  without ``--rerun-failed``: fixing the input fixes it, and the method was
  never tried.
- One run per run key: the newest run wins, except that a newer run without
  a result never replaces one with a result (``prefer``), so a ``--force``
  rerun that is interrupted does not hide the finished run before it.
- How a run ended is judged in one place, ``judge``: the exception that
  ended it (or None) -> status word, failure kind (tag
  ``harness.failure_kind``) and whether ``--retries`` may try it again in the
  same ``harness run``.  The run lifecycle (``harness.worker``), the
  supervisor of ``--timeout``/``--memory-limit`` (``harness.limits``) and the
  runner all go through it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

FINISHED, DIVERGED, FAILED_, TIMEOUT, OOM = "finished", "diverged", "failed", "timeout", "oom"
INTERRUPTED, RUNNING = "interrupted", "running"
#: ``harness status``/report column of a run key never run.
PENDING = "pending"
#: Every status word harness writes, in display order.
STATUSES = (FINISHED, DIVERGED, FAILED_, TIMEOUT, OOM, INTERRUPTED, RUNNING)
#: Statuses that count as a result (a diverged run is the method's outcome).
DONE = frozenset({FINISHED, DIVERGED})
#: Statuses rerun only with ``--rerun-failed``.
FAILED = frozenset({FAILED_, TIMEOUT, OOM})
#: harness status -> MLflow run status (what ``set_terminated`` gets).
MLFLOW_STATUS = {FINISHED: "FINISHED", DIVERGED: "FINISHED", FAILED_: "FAILED",
                 TIMEOUT: "FAILED", OOM: "FAILED", INTERRUPTED: "KILLED"}
#: MLflow run status -> harness status, for a run without a harness.status tag
#: (e.g. a worker killed before it could tag the run).
_FROM_MLFLOW = {"FINISHED": FINISHED, "FAILED": FAILED_, "KILLED": INTERRUPTED,
                "RUNNING": RUNNING, "SCHEDULED": RUNNING}
#: Tag holding a failed run's failure kind (one of the ``*_FAILURE`` words).
FAILURE_KIND_TAG = "harness.failure_kind"
#: ``harness.failure_kind`` of a failure caused by the input, not the method:
#: planned again without ``--rerun-failed`` (fixing the input fixes it).
INPUT_FAILURE = "input"
#: The dataset could not be fetched (``DatasetUnavailable``): a dataset's
#: failure, said once per dataset, retried only with ``--rerun-failed`` (an
#: offline machine must not add a failed run at every ``harness run``).
UNAVAILABLE_FAILURE = "unavailable"
#: The machine's fault (CUDA/NCCL error, tracking store unreachable, a worker
#: that died): ``--retries`` tries the run again.
INFRASTRUCTURE_FAILURE = "infrastructure"
#: Stopped by ``--timeout`` or ``--memory-limit``.
LIMIT_FAILURE = "limit"
#: The method's own error.
METHOD_FAILURE = "method"
#: A RUNNING run whose heartbeat is older than this is stale (its process is
#: presumed gone) even when its host cannot be checked.
STALE_AFTER_S = float(os.environ.get("HARNESS_STALE_AFTER_S", 600))
#: MLflow's own default store, in the working directory.
DEFAULT_URI = "sqlite:///mlflow.db"


def resolve_uri(uri: str | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def normalize(status: str | None, mlflow_status: str | None = None) -> str:
    """The status word of one run: its ``harness.status`` tag (lower case),
    else one derived from its MLflow status; unknown words are
    ``interrupted``.  The tag wins over MLflow's status: it is written with
    the run's last metrics, and a process that dies between that write and
    MLflow's ``set_terminated`` leaves a finished run marked RUNNING."""
    word = (status or "").strip().lower() or _FROM_MLFLOW.get((mlflow_status or "").upper(),
                                                              RUNNING)
    return word if word in STATUSES else INTERRUPTED


def prefer(kept: str | None, newer: str) -> bool:
    """Whether a newer run with status ``newer`` speaks for its run key
    instead of the one kept so far (status ``kept``; None: none yet)."""
    return kept is None or newer in DONE or kept not in DONE


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): the kill(0) answer stands
        return True


def local_pid(info: dict) -> int | None:
    """The pid of ``harness.pid`` (``host:pid``) when it is on this host."""
    host, _, pid = (info.get("pid") or "").rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def is_stale(info: dict, now: float | None = None, stale_after: float | None = None) -> bool:
    """Whether a RUNNING run was left by a process that is gone: its
    ``harness.pid`` is on this host and not alive, or its heartbeat is older
    than ``stale_after`` seconds (``STALE_AFTER_S``: other hosts cannot be
    asked, and a frozen process is as good as dead)."""
    pid = local_pid(info)
    if pid is not None and not pid_alive(pid):
        return True
    try:
        beat = float(info.get("heartbeat") or 0)
    except ValueError:
        beat = 0.0
    if not beat and info.get("start"):
        beat = float(info["start"]) / 1000
    limit = STALE_AFTER_S if stale_after is None else stale_after
    return (now or time.time()) - beat > limit


#: Messages of errors that come from the machine, not from a method's code.
_INFRA_MESSAGES = ("CUDA error", "CUBLAS_STATUS", "CUDNN_STATUS", "NCCL error",
                   "cudaErrorLaunchFailure", "uncorrectable ECC", "database is locked",
                   "unable to open database file", "Max retries exceeded",
                   "Connection refused", "Connection reset", "API request to")
_INFRA_TYPES = ("ConnectionError", "ConnectTimeout", "ReadTimeout", "MaxRetryError",
                "NewConnectionError", "ProtocolError", "RemoteDisconnected", "WorkerLost",
                "WriterError")


@dataclass(frozen=True)
class Verdict:
    """How a run ended, as ``judge`` decides it."""

    #: The status word (tag ``harness.status``).
    status: str
    #: One of the ``*_FAILURE`` words for a failure, else "".
    failure_kind: str = ""
    #: The one-line error (tag ``harness.error``), "" when it finished.
    error: str = ""
    #: ``--retries`` may try it again in this ``harness run`` (a fresh process).
    retryable: bool = False
    #: Class name of the exception that ended it.
    error_type: str = ""

    @property
    def tags(self) -> dict[str, str]:
        """The tags that record the verdict beside the status (failure kind)."""
        return {FAILURE_KIND_TAG: self.failure_kind} if self.failure_kind else {}


def one_line(exc: BaseException) -> str:
    """``ExceptionType: message`` on one line (tag ``harness.error``)."""
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def is_infrastructure_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is the machine's
    fault -- a CUDA/NCCL failure, a lost connection to the tracking server, a
    locked database, a worker that died -- rather than an error in a method's
    code."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = {c.__name__ for c in type(exc).__mro__}
        if names & set(_INFRA_TYPES) or any(m in str(exc) for m in _INFRA_MESSAGES):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def is_oom(exc: BaseException) -> bool:
    """``MemoryError`` (an address-space or ``--memory-limit`` cap) or
    ``torch.cuda.OutOfMemoryError`` (matched by name: torch stays unimported)."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


def judge(exc: BaseException | None) -> Verdict:
    """The verdict on a run that ended with ``exc`` (None: it returned its
    metrics).  The one place that maps an ending to a status:

    - None -> ``finished``; ``harness.Diverged`` -> ``diverged`` (a result);
    - ``KeyboardInterrupt`` -> ``interrupted`` (the next run redoes it);
    - ``harness.errors.WorkerLost`` (its process died) -> ``interrupted``,
      retryable;
    - ``harness.errors.TimedOut`` -> ``timeout``; a memory error (the
      ``--memory-limit`` supervisor's ``MemoryLimitExceeded``, ``MemoryError``,
      CUDA out of memory) -> ``oom``;
    - ``harness.UserError`` -> ``failed``, kind ``input`` (planned again
      without ``--rerun-failed``); ``DatasetUnavailable`` -> ``failed``, kind
      ``unavailable``; an infrastructure error -> ``failed``, retryable;
      anything else -> ``failed``, kind ``method``.
    """
    from harness import errors

    if exc is None:
        return Verdict(FINISHED)
    kind = type(exc).__name__
    if isinstance(exc, errors.Diverged):
        return Verdict(DIVERGED, error=str(exc) or "loss became NaN/inf", error_type=kind)
    if isinstance(exc, KeyboardInterrupt):
        return Verdict(INTERRUPTED, error="interrupted by the user (Ctrl-C)", error_type=kind)
    if isinstance(exc, errors.WorkerLost):
        return Verdict(INTERRUPTED, INFRASTRUCTURE_FAILURE, str(exc), True, kind)
    if isinstance(exc, errors.TimedOut):
        return Verdict(TIMEOUT, LIMIT_FAILURE, str(exc), False, kind)
    if isinstance(exc, errors.MemoryLimitExceeded):
        return Verdict(OOM, LIMIT_FAILURE, str(exc), False, kind)
    if is_oom(exc):
        return Verdict(OOM, METHOD_FAILURE, one_line(exc), False, kind)
    if isinstance(exc, errors.UserError):
        return Verdict(FAILED_, INPUT_FAILURE, one_line(exc), False, kind)
    if isinstance(exc, errors.DatasetUnavailable):
        return Verdict(FAILED_, UNAVAILABLE_FAILURE, one_line(exc), False, kind)
    if is_infrastructure_error(exc):
        return Verdict(FAILED_, INFRASTRUCTURE_FAILURE, one_line(exc), True, kind)
    return Verdict(FAILED_, METHOD_FAILURE, one_line(exc), False, kind)


def is_input_failure(info: dict) -> bool:
    """A failed run whose cause was its input (``harness.failure_kind=input``)."""
    return info.get("status") in FAILED and info.get("failure_kind") == INPUT_FAILURE


#: What ``harness run`` does with a run key (``plan_state``).
TODO, STALE, DONE_STATE, FAILED_STATE = "todo", "stale", "done", "failed"


def plan_state(info: dict | None, now: float | None = None, *, force: bool = False,
               rerun_failed: bool = False) -> str:
    """What ``harness run`` does with a run key whose kept run is ``info``
    (``existing_runs``; None: never run): ``todo``, ``stale`` (todo, after
    closing the run a dead process left RUNNING), ``running`` (live in
    another process: never started twice, not even with ``force``), ``done``
    or ``failed`` (kept until ``--rerun-failed``)."""
    status = normalize(info.get("status")) if info else None
    if status == RUNNING:
        return STALE if is_stale(info, now) else RUNNING
    if force or status is None or status == INTERRUPTED:
        return TODO
    if status in DONE:
        return DONE_STATE
    if rerun_failed or is_input_failure(info):
        return TODO
    return FAILED_STATE


def status_column(info: dict | None, now: float | None = None) -> str:
    """The ``harness status`` column of a run key: ``done`` for finished,
    ``pending`` for never run, ``interrupted`` for a run left RUNNING by a
    dead process, else the status word."""
    if not info:
        return PENDING
    status = normalize(info.get("status"))
    if status == RUNNING:
        return INTERRUPTED if is_stale(info, now) else RUNNING
    return DONE_STATE if status == FINISHED else status


def display_uri(uri: str) -> str:
    """The tracking URI without the producing machine's directories, for
    published reports: ``sqlite:///home/me/x/mlflow.db`` -> ``sqlite:///mlflow.db``
    (scheme and file name), a server URL without credentials."""
    from urllib.parse import urlsplit, urlunsplit

    scheme, sep, rest = uri.partition("://")
    if not sep:  # a bare path (a file store)
        return os.path.basename(uri.rstrip("/\\")) or uri
    if scheme in ("sqlite", "file") or scheme.startswith(("sqlite+", "file+")):
        name = os.path.basename(rest.rstrip("/\\"))
        return f"{scheme}:///{name}" if name else f"{scheme}://"
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
