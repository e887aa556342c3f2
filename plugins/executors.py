"""Built-in executors: where runs execute."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from harness import hookimpl


class LocalExecutor:
    """Runs in this process (jobs=1) or in ``jobs`` spawned worker processes."""

    def __init__(self, jobs: int = 1):
        self.jobs = jobs

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """Yield ``fn(item)`` for each item, as runs complete."""
        items = list(items)
        if self.jobs <= 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
            return
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: a forked worker would inherit torch threads and MLflow sessions.
        pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=mp.get_context("spawn"))
        try:
            futures = [pool.submit(fn, item) for item in items]
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def local(jobs: int = 1):
    """Local executor: sequential in-process, or ``jobs`` worker processes."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    return LocalExecutor(jobs)


@hookimpl
def register_executors(register):
    register("local", local)
