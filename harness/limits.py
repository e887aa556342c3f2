"""Hard limits: one work item in its own supervised child process.

``--timeout`` and ``--memory-limit`` cannot be enforced from inside a run (a
training loop stuck in C code never checks a clock), so ``run_isolated``
starts a work item (one run, or a batch-mode group) in a child process and
supervises it: past the deadline, or past the RSS cap, the child is killed
and the supervisor records every run of the item that had not ended with the
verdict of ``harness.runstate.judge`` (``timeout``, ``oom``) -- the child
reports each run as it opens and as it ends, through a pipe.  A child that
dies on its own (``kill -9``, a segfault, the OOM killer) leaves its open runs
``interrupted`` and ``retryable``, which is what ``--retries`` acts on.  The
limits apply to the item as a whole: a group of eight shares one deadline.

The memory cap watches RSS (the run's process and its children) rather than
setting ``RLIMIT_AS``: torch and CUDA reserve gigabytes of address space they
never touch, so an address-space cap kills healthy GPU runs.  A
``MemoryError`` or ``torch.cuda.OutOfMemoryError`` raised inside the run is
recorded ``oom`` by the worker itself.

Children come from a fork server that has imported torch and MLflow once, so a
child starts in milliseconds instead of seconds (``spawn`` where there is no
fork server, or with ``HARNESS_START_METHOD=spawn``).  The fork server is a
fresh process, not a fork of a parent holding threads or MLflow sessions.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass

#: Modules the fork server imports once for every child it forks: what every
#: run needs (torch's optimizers pull in torch._dynamo; MLflow's stores pull in
#: SQLAlchemy and alembic), so a child's first run does not spend seconds on
#: imports.  A module missing here is imported by the child as usual.
PRELOAD = ["torch", "torch._dynamo", "torch.optim", "mlflow.tracking", "mlflow.entities",
           "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.tracking.rest_store",
           "sklearn.metrics", "yaml", "harness.worker", "harness.tracking", "harness.plugins",
           "harness.data"]
#: Seconds between checks of the child's pipe, clock and memory.
POLL_S = 0.05
#: How long a supervisor waits for a killed child's store writer to finish.
WRITER_WAIT_S = 60.0
_UNITS_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_UNITS_B = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


@dataclass(frozen=True)
class Limits:
    """Per-run limits; ``isolate`` (implied by any limit) runs each run in a
    supervised child process even without limits (``--retries``)."""

    timeout_s: float | None = None
    memory_bytes: int | None = None
    isolate: bool = False

    def __post_init__(self):
        if self.timeout_s or self.memory_bytes:
            object.__setattr__(self, "isolate", True)


def parse_duration(text: str | float) -> float:
    """``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"``, ``"1d"`` or plain seconds -> seconds."""
    s = str(text).strip().lower()
    parts = re.findall(r"(\d+(?:\.\d*)?)\s*([smhd]?)", s)
    if not parts or re.sub(r"(\d+(?:\.\d*)?)\s*([smhd]?)", "", s).strip():
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h or seconds)")
    if len(parts) > 1 and not all(unit for _, unit in parts):
        raise ValueError(f"not a duration: {text!r} (give every part a unit: 1h30m)")
    seconds = sum(float(n) * _UNITS_S[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return seconds


def parse_memory(text: str | int) -> int:
    """``"8G"``, ``"500M"``, ``"1.5GiB"``, ``"512k"`` or plain bytes -> bytes
    (binary units: 1G = 1024**3)."""
    m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?", str(text).strip().lower())
    if not m:
        raise ValueError(f"not a memory size: {text!r} (use e.g. 500M, 8G or bytes)")
    size = int(float(m.group(1)) * _UNITS_B[m.group(2)])
    if size <= 0:
        raise ValueError(f"memory size must be positive: {text!r}")
    return size


def format_duration(seconds: float) -> str:
    """``5400`` -> ``1h30m``; ``2.5`` -> ``2.5s``."""
    if seconds < 60:
        return f"{seconds:g}s"
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v)


def mp_context():
    """The multiprocessing context for run processes: the preloaded fork
    server where there is one, else spawn (``HARNESS_START_METHOD`` overrides)."""
    import multiprocessing as mp

    method = os.environ.get("HARNESS_START_METHOD") or (
        "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def rss_bytes(pid: int, exclude: set | frozenset = frozenset()) -> int | None:
    """Resident memory of ``pid`` and its descendants (None: cannot tell),
    leaving out the processes in ``exclude`` and theirs (a run's store
    writer: harness's own bookkeeping, not the run's memory)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            proc = psutil.Process(pid)
            kids = proc.children(recursive=True)
            left_out = set(exclude) | {k.pid for e in kids if e.pid in exclude
                                       for k in e.children(recursive=True)}
            return sum(p.memory_info().rss for p in [proc, *kids] if p.pid not in left_out)
        except psutil.Error:
            return 0
    total, page = 0, os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    left_out = set(exclude) | {k for e in exclude for k in _children(e)}
    for p in [pid, *(c for c in _children(pid) if c not in left_out)]:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
        except OSError:
            if p == pid and not os.path.exists("/proc"):
                return None
    return total


def _exit_with_parent(conn) -> None:
    """End this process when the supervisor goes (its end of the pipe closes),
    so a ``kill -9`` of the harness leaves no run training unseen."""

    def watch():
        try:
            while True:
                conn.recv()
        except (EOFError, OSError):
            os._exit(75)

    threading.Thread(target=watch, name="harness-parent-watch", daemon=True).start()


def _child(conn, item, uri, blocked, executor, env, cwd) -> None:
    # a fork server child has the server's environment and directory, not ours
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    _exit_with_parent(conn)
    from harness.worker import execute_item

    try:
        execute_item(item, uri, blocked, executor=executor,
                     started=lambda *opened: conn.send(("started", opened)),
                     ended=lambda outcome: conn.send(("outcome", outcome)))
    except KeyboardInterrupt:  # already recorded as interrupted
        os._exit(130)
    conn.send(("done", None))


def _died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"run process died: killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"run process died: signal {-exitcode}"
    return f"run process died: exit status {exitcode}"


def _record(uri, spec, run_id, pid, verdict, attempt, executor) -> None:
    """Record what the supervisor saw in the child's MLflow run (found by the
    id it reported, else by run key and pid), or in a new run if it died
    before creating one, so ``harness status`` shows the failure."""
    from harness.tracking import MlflowRunLogger, close_run, find_run

    run_id = run_id or find_run(uri, spec.suite, spec.run_key, f"{socket.gethostname()}:{pid}")
    if not run_id:
        run_id = MlflowRunLogger(uri, spec, {"harness.attempt": str(attempt),
                                             "harness.executor": executor}).run_id
    close_run(uri, run_id, verdict.status, verdict.error, tags=verdict.tags)


def _wait_for_writers(pids: set, limit_s: float = WRITER_WAIT_S) -> None:
    """Wait until the store writers of a killed child have written what it
    sent and exited (they notice the child's end of the pipe close): the runs
    the supervisor is about to record may not exist before that."""
    from harness.runstate import pid_alive

    deadline = time.monotonic() + limit_s
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(POLL_S)


def run_isolated(item, uri: str | None, blocked: tuple[str, ...] = (), *,
                 executor: str = "local", limits: Limits | None = None) -> list:
    """Run a ``harness.worker.WorkItem`` in a supervised child process under
    ``limits``; return one ``harness.worker.Outcome`` per run (``timeout`` /
    ``oom`` for the runs that had not ended when it was killed for a limit;
    ``interrupted`` and ``retryable`` when the child died)."""
    from harness import errors, runstate
    from harness.plan import RunSpec
    from harness.worker import outcome

    limits = limits or Limits()
    specs = [RunSpec.from_dict(d) for d in item.specs]
    ctx = mp_context()
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=_child, name=f"harness {specs[0].run_name}",
                       args=(child_conn, item, uri, tuple(blocked), executor,
                             dict(os.environ), os.getcwd()))
    proc.start()  # returns once the child exists (a new fork server preloads first)
    start = time.monotonic()
    child_conn.close()
    run_ids: dict[str, str | None] = {}
    writers: set = set()  # store writers of the child's runs (batch mode)
    results: dict = {}
    done, killed = False, None
    try:
        while not done and killed is None:
            if conn.poll(POLL_S):
                try:
                    kind, value = conn.recv()
                except EOFError:  # the child is gone
                    break
                if kind == "started":
                    key, run_ids[key], writer = value
                    writers.add(writer)
                elif kind == "outcome":
                    results[value.run_key] = value
                else:
                    done = True
                continue
            if not proc.is_alive():
                if conn.poll(0):  # it sent something just before exiting
                    continue
                break
            if limits.timeout_s and time.monotonic() - start > limits.timeout_s:
                killed = errors.TimedOut(f"timed out after {format_duration(limits.timeout_s)} "
                                         "(--timeout)")
            elif limits.memory_bytes:
                rss = rss_bytes(proc.pid, writers) or 0
                if rss > limits.memory_bytes:
                    killed = errors.MemoryLimitExceeded(
                        f"memory limit exceeded: RSS {rss / 2**20:.0f} MiB > "
                        f"{limits.memory_bytes / 2**20:.0f} MiB (--memory-limit)")
    except KeyboardInterrupt:  # the child got the Ctrl-C too: let it record that
        proc.join(5)
        raise
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        conn.close()
    verdict = runstate.judge(killed or errors.WorkerLost(_died(proc.exitcode)))
    seconds = time.monotonic() - start
    if len(results) < len(specs):
        _wait_for_writers(writers - {None})
    out = []
    for spec in specs:
        if spec.run_key in results:
            out.append(results[spec.run_key])
            continue
        mine = verdict
        try:
            _record(uri, spec, run_ids.get(spec.run_key), proc.pid, verdict, item.attempt,
                    executor)
        except Exception as exc:  # noqa: BLE001 - tracking is down too: stale later
            mine = dataclasses.replace(
                verdict, retryable=True,
                error=f"{verdict.error} (not recorded: {runstate.one_line(exc)})")
        out.append(outcome(spec, mine, seconds=seconds, attempt=item.attempt,
                           run_id=run_ids.get(spec.run_key)))
    return out
