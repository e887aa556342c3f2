"""The store writer: a child process that does a training process's MLflow writes.

In batch mode one process trains a whole group, and each of its runs logs a
few hundred per-epoch metrics.  MLflow's SQLAlchemy store spends ~0.2 ms of
Python per metric row, and importing mlflow costs ~1.5 s: for a group of 40
small runs that is more time than the training.  ``StoreWriter`` moves both
off the training process: a separate interpreter (its own core, no GIL shared
with training) owns the runs' ``harness.tracking.MlflowRunLogger``s, and the
training process sends it calls through a pipe (``RemoteRunLogger``) without
importing mlflow at all.

Ordering and durability: the writer applies calls in the order they were
sent.  A run's end (status tag, terminated) is written after everything sent
for it, and ``RemoteRunLogger.wait`` returns only once that end is in the
store, so a run the harness reports finished is FINISHED in MLflow with all
its metrics.  If the training process dies, the writer reads the end of the
pipe, writes what it had received and exits; runs that did not end stay
RUNNING with the training process's ``harness.pid`` and resume finds them
stale.  The writer starts in its own session, so Ctrl-C reaches only the
training process, which ends its runs ``interrupted`` through the writer.
"""

from __future__ import annotations

import atexit
import itertools
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from typing import Any

#: Metric rows a ``RemoteRunLogger`` keeps before sending them to the writer.
SEND_ROWS = 30
#: Rows the writer collects for a run before writing them while the run is
#: still training (fewer, bigger transactions; the end writes the rest).
WRITE_ROWS = 60

#: Requests the writer answers with a report function: it has mlflow (and,
#: warmed while the runs trained, the report's modules) imported already.
REPORTS = {"leaderboard": "harness.report.console_leaderboard",
           "suite_report": "harness.report.log_suite_report"}

#: What those requests import (``module:function``: also call it), warmed by
#: ``StoreWriter.warm_reports``.
REPORT_MODULES = ("pandas", "scipy.stats", "tabulate", "matplotlib.figure",
                  "matplotlib.backends.backend_agg", "harness.report",
                  "harness.report.load", "harness.report.analysis", "harness.report.figures",
                  "harness.report.render", "harness.report:warm_up")

_WRITERS: dict[tuple[int, str | None], StoreWriter] = {}


class WriterError(RuntimeError):
    """The store writer failed to write a run (the message is its error)."""


class StoreWriter:
    """A store-writer child process for one tracking URI (see the module
    docstring).  Thread-safe; ``close()`` waits until everything sent is written."""

    def __init__(self, uri: str | None):
        from multiprocessing.connection import Connection

        from harness.runstate import resolve_uri

        # resolved here: the child's environment could differ by the time it reads it
        self.uri = uri = resolve_uri(uri)
        from_parent, to_child = os.pipe()
        from_child, to_parent = os.pipe()
        # the child imports harness exactly as this process does
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from harness.storewriter import serve; "
             "serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])",
             str(from_parent), str(to_parent), uri],
            pass_fds=(from_parent, to_parent), env=env, start_new_session=True,
            stdin=subprocess.DEVNULL)
        os.close(from_parent)
        os.close(to_parent)
        self._out = Connection(to_child, readable=False)
        self._in = Connection(from_child, writable=False)
        # a sender thread writes the pipe: a write blocks while the writer is
        # busy (importing mlflow, say), and training must not wait for it
        self._outgoing: queue.SimpleQueue = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_loop, name="harness-store-sender",
                                        daemon=True)
        self._sender.start()
        self._ids = itertools.count(1)
        self._replies: dict[int, Future] = {}
        self._pid = os.getpid()
        self._closed = False
        self._dead = False
        self._reader = threading.Thread(target=self._read, name="harness-store-writer",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                req, ok, value = self._in.recv()
            except (EOFError, OSError):
                break
            future = self._replies.pop(req, None)
            if future is not None:
                future.set_result(value) if ok else future.set_exception(WriterError(value))
        # the writer is gone: nothing still waiting, or asked later, is answered
        self._dead = True
        for req in list(self._replies):
            future = self._replies.pop(req, None)
            if future is not None and not future.done():
                future.set_exception(self._exited())

    def _exited(self) -> WriterError:
        return WriterError(f"the store writer exited (status {self._proc.wait()})")

    def _send_loop(self) -> None:
        while True:
            message = self._outgoing.get()
            if message is None:
                break
            try:
                self._out.send(message)
            except OSError:  # the writer died: its runs end stale, said by wait()
                break
        try:
            self._out.close()  # the writer reads the end of its input and exits
        except OSError:
            pass

    def send(self, *message: Any) -> None:
        """Queue one message for the writer (does not wait)."""
        self._outgoing.put(message)

    @property
    def pid(self) -> int:
        """The writer process's id."""
        return self._proc.pid

    def new_id(self) -> int:
        """A fresh request id (also how a run is named in later messages)."""
        return next(self._ids)

    def request(self, *message: Any) -> Future:
        """Queue a message whose reply the returned future resolves to."""
        future: Future = Future()
        req = self.new_id()
        self._replies[req] = future
        if self._dead:  # checked after registering: the reader's sweep may have missed it
            self._replies.pop(req, None)
            future.set_exception(self._exited())
            return future
        self.send(message[0], req, *message[1:])
        return future

    def prepare(self, experiment: str) -> Future:
        """``harness.tracking.prepare_store`` in the writer (the experiment id)."""
        return self.request("prepare", experiment)

    def warm_reports(self) -> None:
        """Have the writer import the report's modules whenever it is idle."""
        self.send("warm", REPORT_MODULES)

    def close(self) -> int:
        """Wait for every message sent to be written; stop the writer."""
        if self._closed or self._pid != os.getpid():
            return 0
        self._closed = True
        self._outgoing.put(None)
        self._sender.join()
        code = self._proc.wait()
        self._reader.join(timeout=5)
        return code


def writer_for(uri: str | None) -> StoreWriter:
    """This process's store writer for ``uri``, started on first use."""
    key = (os.getpid(), uri)
    writer = _WRITERS.get(key)
    if writer is None or writer._closed:
        writer = _WRITERS[key] = StoreWriter(uri)
    return writer


def close_writers() -> None:
    """Wait for this process's writers to write everything and stop them."""
    for key in [k for k in _WRITERS if k[0] == os.getpid()]:
        _WRITERS.pop(key).close()


def _forget_parent_writers() -> None:
    # a forked worker must not hold its parent's pipe open: the parent's
    # writer would then never see the end of its input if the parent died
    for key in [k for k in _WRITERS if k[0] != os.getpid()]:
        writer = _WRITERS.pop(key)
        for conn in (writer._out, writer._in):
            try:
                conn.close()
            except OSError:
                pass


atexit.register(close_writers)
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_parent_writers)


class RemoteRunLogger:
    """A ``harness.runlog.RunLogger`` living in the store writer: the same
    methods, each a message; metric rows are sent ``SEND_ROWS`` at a time.  ``end`` only
    queues the run's end: ``wait()`` returns ``(run_id, error)`` once it is
    written (``error``: why the writer could not record the run, else "")."""

    def __init__(self, writer: StoreWriter, spec, provenance: dict[str, str],
                 extra_tags: dict[str, Any] | None = None):
        from harness.tracking import environment_tags

        self._writer = writer
        self._rows: list[tuple] = []
        # the training process's pid: resume tells a live run from a dead one by it
        tags = {"harness.pid": f"{socket.gethostname()}:{os.getpid()}", **(extra_tags or {})}
        # the run's id in later messages: calls queue before the run exists
        self._id = writer.new_id()
        writer.send("open", self._id, spec.to_dict(), provenance, tags, environment_tags())
        self._ended: Future | None = None

    def _call(self, name: str, *args: Any) -> None:
        self._writer.send("call", self._id, name, args)

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        """Buffer metrics; sent in chunks of ``SEND_ROWS``."""
        ts = int(time.time() * 1000)
        self._rows.extend((k, float(v), ts, step) for k, v in values.items())
        if len(self._rows) >= SEND_ROWS:
            self.flush()

    def flush(self) -> None:
        """Send the buffered metric rows (the writer decides when to write them)."""
        if self._rows:
            rows, self._rows = self._rows, []
            self._call("log_metric_rows", rows)

    def flush_due(self) -> bool:
        """Never: rows go to the writer by size, and it writes them."""
        return False

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags on the run."""
        self._call("set_tags", {k: str(v) for k, v in tags.items()})

    def log_params(self, params: dict[str, Any]) -> None:
        """Log extra params."""
        self._call("log_params", params)

    def log_text(self, text: str, name: str) -> None:
        """Store ``text`` as an artifact file ``name``."""
        self._call("log_text", text, name)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """Store a copy of a file or directory as an artifact (the caller's
        file may be gone before the writer gets to it)."""
        spool = tempfile.mkdtemp(prefix="harness-artifact-")
        copy = os.path.join(spool, os.path.basename(os.path.normpath(path)))
        (shutil.copytree if os.path.isdir(path) else shutil.copy2)(path, copy)
        self._call("log_spooled_artifact", copy, artifact_path, spool)

    def find_shared(self, name: str, key: str) -> dict | None:
        """Ask the writer for arrays another run shared (waits for the answer)."""
        return self._ask("find_shared", name, key)

    def store_shared(self, name: str, key: str, arrays: dict) -> None:
        """Store shared arrays with this run (waits until they are written, so
        a later run finds them)."""
        self._ask("store_shared", name, key, arrays)

    def _ask(self, name: str, *args: Any) -> Any:
        self.flush()
        return self._writer.request("ask", self._id, name, args).result()

    def end(self, status: str, error: str = "") -> None:
        """Queue the run's end: buffered metrics, status, terminated."""
        self.flush()
        self._ended = self._writer.request("end", self._id, status, error)

    def wait(self, timeout: float | None = None) -> tuple[str | None, str]:
        """``(run_id, error)`` once the run's end is written; ``run_id`` is
        None when the run could not be created."""
        try:
            return self._ended.result(timeout)
        except WriterError as exc:
            return None, str(exc)

    @property
    def writer_pid(self) -> int:
        """The store writer's process id (a supervisor waits for it to exit
        before it records a killed run: the writer may still be creating it)."""
        return self._writer.pid

    @property
    def run_id(self) -> str | None:
        """The MLflow run id once the run has ended (None before)."""
        if self._ended is None or not self._ended.done():
            return None
        return self.wait()[0]


def serve(read_fd: int, write_fd: int, uri: str) -> None:
    """The writer's main loop (``StoreWriter`` starts it in a child process)."""
    import importlib
    from multiprocessing.connection import Connection, wait

    from harness.plan import RunSpec
    from harness.runstate import FAILED_, one_line
    from harness.tracking import MlflowRunLogger, prepare_store

    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    loggers: dict[int, MlflowRunLogger] = {}
    errors: dict[int, str] = {}  # open request id -> why the run cannot be written
    warm: list[str] = []  # modules to import when idle

    def reply(req: int, ok: bool, value: Any) -> None:
        try:
            outbox.send((req, ok, value))
        except OSError:  # the training process is gone; keep writing
            pass

    def fail(run: int, exc: BaseException) -> None:
        errors.setdefault(run, one_line(exc))

    def answer(req: int, fn, *args, **kwargs) -> None:
        try:
            reply(req, True, fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - said to the caller
            reply(req, False, one_line(exc))

    def handle(message: tuple) -> None:
        op = message[0]
        if op == "warm":
            warm.extend(message[1])
        elif op in REPORTS:
            module, name = REPORTS[op].rsplit(".", 1)
            _, req, args, kwargs = message
            answer(req, getattr(importlib.import_module(module), name), *args, **kwargs)
        elif op == "prepare":
            answer(message[1], prepare_store, uri, message[2])
        elif op == "open":
            _, req, spec, provenance, tags, environment = message
            try:
                loggers[req] = MlflowRunLogger(uri, RunSpec.from_dict(spec), provenance, tags,
                                         environment=environment)
            except Exception as exc:  # noqa: BLE001 - the run's end says it
                fail(req, exc)
        elif op == "call":
            _, run, name, args = message
            if run in loggers and run not in errors:
                try:
                    getattr(loggers[run], name)(*args)
                except Exception as exc:  # noqa: BLE001 - the run's end says it
                    fail(run, exc)
        elif op == "ask":  # a call whose answer the training process waits for
            _, req, run, name, args = message
            if run not in loggers:
                reply(req, False, errors.get(run, "the run was never created"))
            else:
                answer(req, getattr(loggers[run], name), *args)
        elif op == "end":
            _, req, run, status, error = message
            logger = loggers.pop(run, None)
            if logger is None:
                reply(req, True, (None, errors.pop(run, "the run was never created")))
                return
            failed = errors.pop(run, "")
            try:
                # a run whose metrics or artifacts could not all be written
                # is not a result
                logger.end(FAILED_ if failed else status,
                           f"recording the run failed: {failed}" if failed else error)
                reply(req, True, (logger.run_id, failed))
            except Exception as exc:  # noqa: BLE001
                reply(req, True, (logger.run_id, f"{type(exc).__name__}: {exc}"))

    while True:
        if not inbox.poll(0):
            # idle: write the fullest buffer, so little is left for the runs' ends
            due = [lg for lg in loggers.values() if lg.pending() >= WRITE_ROWS
                   or lg.flush_due()]
            if due:
                max(due, key=MlflowRunLogger.pending).flush()
                continue
            if warm:  # nothing to write: import (or call) what a later request needs
                module, _, call = warm.pop(0).partition(":")
                try:
                    loaded = importlib.import_module(module)
                    if call:
                        getattr(loaded, call)()
                except Exception:  # noqa: BLE001 - the request itself will say it
                    pass
                continue
            wait([inbox], timeout=1.0)
            continue
        try:
            message = inbox.recv()
        except (EOFError, OSError):
            break
        handle(message)
    # the training process closed the pipe (done, or died): keep what was
    # sent; runs that never ended stay RUNNING and are found stale by resume
    for logger in loggers.values():
        try:
            logger.flush()
            logger.stop_heartbeat()
        except Exception:  # noqa: BLE001 - nothing left to tell
            pass
    # every write is committed; the interpreter's shutdown (mlflow's and
    # matplotlib's exit handlers) would only make the training process wait
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
