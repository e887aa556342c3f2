"""Built-in executor ``local``: runs in this process, or in N worker processes.

An executor's ``map(fn, items)`` yields ``fn(item)`` per item as runs
complete; its ``slots`` says how many runs it trains at once on this machine
(the runner spreads them over the GPUs round-robin).  The factory's
parameters are ``harness run``'s flags (``--jobs``, ``--threads``).  For an
item whose worker died it yields ``harness.worker.Lost`` instead of raising,
so the runner can record and retry that one run while the others go on (a
``concurrent.futures`` pool breaks as a whole when one worker dies, and
cannot say which item it was running; this pool can).
"""

from __future__ import annotations

import os
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated

from pydantic import Field

from harness import hookimpl


def _exit_with_parent(alive) -> None:
    """Exit when the harness goes (its end of ``alive`` closes): a worker
    orphaned by ``kill -9`` must not keep training unseen."""

    def watch():
        try:
            alive.recv()
        except (EOFError, OSError):
            pass
        os._exit(75)

    threading.Thread(target=watch, name="harness-parent-watch", daemon=True).start()


def _worker_main(conn, alive, threads: int, env: dict, cwd: str) -> None:
    """A pool worker: run ``fn(item)`` for each task received, send results."""
    _exit_with_parent(alive)
    # a fork server child has the server's environment and directory, not ours
    os.environ.clear()
    os.environ.update(env)
    os.environ["HARNESS_TORCH_THREADS"] = str(threads)
    os.chdir(cwd)
    from harness.progress import outlive_the_reader

    outlive_the_reader()  # the parent's reader may go; the runs must not fail for it
    while True:
        try:
            fn, item = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", fn(item)))
        except KeyboardInterrupt:  # Ctrl-C reached the whole group; the run is recorded
            return
        except Exception as exc:  # fn itself broke (not the run: runs return outcomes)
            conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))


class _Worker:
    def __init__(self, ctx, threads: int):
        self.conn, child = ctx.Pipe()
        alive_r, self.alive = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_worker_main, name="harness-worker", daemon=False,
                                args=(child, alive_r, threads, dict(os.environ), os.getcwd()))
        self.proc.start()
        child.close()
        alive_r.close()
        self.item = None

    def close(self) -> None:
        """Close the pipes: an idle worker then exits, a busy one once its run ends."""
        for c in (self.conn, self.alive):
            c.close()


def _shutdown(workers: list[_Worker], grace: float) -> None:
    import time

    for w in workers:  # task pipe first: closing ``alive`` ends a worker at once
        w.conn.close()
    deadline = time.monotonic() + grace
    for w in workers:
        w.proc.join(max(0.0, deadline - time.monotonic()))
        w.alive.close()
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join()


def _death(exitcode) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker process died: killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"worker process died: exit status {exitcode}"


class LocalExecutor:
    """Runs in this process (jobs=1) or in ``jobs`` spawned worker processes,
    each reused for many runs (torch and MLflow are imported once per worker)."""

    name = "local"

    def __init__(self, jobs: int = 1, threads: int | None = None):
        self.jobs = jobs
        self.threads = threads or max(1, (os.cpu_count() or 1) // max(1, jobs))

    @property
    def slots(self) -> int:
        """Runs at once on this machine: one per job."""
        return self.jobs

    def in_process(self, items: list) -> bool:
        """Whether ``map`` calls ``fn`` here, in this process (one job, or one
        item, and no supervised child per call)."""
        return self.jobs <= 1 or len(items) <= 1

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """Yield ``fn(item)`` for each item, as runs complete (``Lost`` for an
        item whose worker process died)."""
        items = list(items)
        if self.jobs <= 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
        elif getattr(fn, "isolated", False):
            yield from self._threads(fn, items)
        else:
            yield from self._pool(fn, items)

    def _threads(self, fn: Callable, items: list) -> Iterator:
        """``fn`` starts a supervised child process per call (``fn.isolated``,
        set by the runner for limits and retries): threads suffice to drive
        ``jobs`` of them, and a second layer of worker processes would only
        add start-up time."""
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        before = os.environ.get("HARNESS_TORCH_THREADS")
        os.environ["HARNESS_TORCH_THREADS"] = str(self.threads)  # the children inherit it
        try:
            with ThreadPoolExecutor(self.jobs, thread_name_prefix="harness-run") as pool:
                futures = {pool.submit(fn, item) for item in items}
                try:
                    while futures:
                        done, futures = wait(futures, return_when=FIRST_COMPLETED)
                        for fut in done:
                            yield fut.result()
                finally:
                    for fut in futures:
                        fut.cancel()
        finally:
            if before is None:
                os.environ.pop("HARNESS_TORCH_THREADS", None)
            else:
                os.environ["HARNESS_TORCH_THREADS"] = before

    def _pool(self, fn: Callable, items: list) -> Iterator:
        from multiprocessing.connection import wait

        from harness.limits import mp_context
        from harness.worker import Lost

        # not fork: a forked worker would inherit torch threads and MLflow
        # sessions; the fork server (or spawn) starts clean, and has torch and
        # MLflow imported once instead of once per worker
        ctx = mp_context()
        queue = deque(items)
        workers = [_Worker(ctx, self.threads) for _ in range(min(self.jobs, len(items)))]

        def feed(w: _Worker) -> None:
            if queue:
                w.item = queue.popleft()
                w.conn.send((fn, w.item))

        try:
            for w in workers:
                feed(w)
            while any(w.item is not None for w in workers):
                busy = [w for w in workers if w.item is not None]
                ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
                for i, w in enumerate(workers):
                    if w.item is None or not ({w.conn, w.proc.sentinel} & ready):
                        continue
                    msg = None
                    if w.conn.poll(0):
                        try:
                            msg = w.conn.recv()
                        except (EOFError, OSError):
                            msg = None
                    if msg is None:  # died mid-run: report that item, replace the worker
                        w.proc.join()
                        lost, w.item = w.item, None
                        w.close()
                        yield Lost(lost, _death(w.proc.exitcode))
                        if queue:
                            workers[i] = _Worker(ctx, self.threads)
                            feed(workers[i])
                        continue
                    item, w.item = w.item, None
                    feed(w)
                    yield msg[1] if msg[0] == "ok" else Lost(item, msg[1], False)
        finally:
            # interrupted mid-suite: busy workers got the Ctrl-C too; give them a
            # moment to record their runs as interrupted before killing them
            _shutdown(workers, 5.0 if any(w.item is not None for w in workers) else 30.0)


def local(jobs: Annotated[int, Field(ge=1)] = 1,
          threads: Annotated[int, Field(ge=1)] | None = None):
    """Local: sequential in this process, or ``jobs`` worker processes.

    ``threads``: torch threads per worker (default: cores / jobs).  The
    bounds are checked with the flags, before anything runs."""
    return LocalExecutor(jobs, threads)


@hookimpl
def register_executors(register):
    register("local", local)
