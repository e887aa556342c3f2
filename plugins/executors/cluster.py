"""Cluster executors: ``ray`` (one Ray task per run) and ``slurm`` (submitit
job arrays).  Ray and submitit are imported inside the factories and
executors, so ``harness plugins`` works without them installed.

Both yield ``fn(item)`` as runs complete and ``harness.worker.Lost`` for a
run whose worker, job or node died; the runner owns retries (Ray's own task
retries are switched off so ``harness.attempt`` counts every attempt).  Their
``slots`` is 1: Ray and SLURM give each run its GPUs themselves, so the
runner must not spread runs over this machine's GPUs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any

from pydantic import Field

from harness import ConfigError, hookimpl


def _threaded(fn: Callable, item: Any, threads: int):
    """Run ``fn(item)`` with ``threads`` torch threads (what the run was given)."""
    os.environ["HARNESS_TORCH_THREADS"] = str(threads)
    return fn(item)


class RayExecutor:
    """One Ray task per run, with ``num_cpus``/``num_gpus`` resources."""

    name = "ray"
    #: Ray assigns each task its GPUs (``num_gpus``).
    slots = 1

    def __init__(self, address: str | None, cpus_per_run: float, gpus_per_run: float,
                 max_parallel: int, local_cpus: int | None):
        self.address = address
        self.cpus = cpus_per_run
        self.gpus = gpus_per_run
        self.max_parallel = max_parallel
        self.local_cpus = local_cpus

    def _connect(self) -> bool:
        """Connect (or start a local Ray); True when this call started Ray."""
        import ray

        if ray.is_initialized():
            return False
        address = self.address or os.environ.get("RAY_ADDRESS") or "auto"
        if address in ("auto", "local"):
            try:
                if address == "auto":
                    ray.init(address="auto", log_to_driver=False)
                    return True
            except ConnectionError:  # no running cluster: start one on this machine
                pass
            ray.init(num_cpus=self.local_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        return True

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """Submit runs as Ray tasks (at most ``max_parallel`` at a time) and
        yield their outcomes as they complete."""
        import ray
        from ray.exceptions import RayTaskError

        from harness.worker import Lost

        items = list(items)
        started = self._connect()
        task = ray.remote(_threaded).options(num_cpus=self.cpus, num_gpus=self.gpus,
                                             max_retries=0, retry_exceptions=False)
        threads = max(1, int(self.cpus))
        fn_ref = ray.put(fn)
        queue, running = list(reversed(items)), {}
        try:
            while queue or running:
                while queue and (not self.max_parallel or len(running) < self.max_parallel):
                    item = queue.pop()
                    running[task.remote(fn_ref, item, threads)] = item
                ready, _ = ray.wait(list(running), num_returns=1)
                item = running.pop(ready[0])
                try:
                    yield ray.get(ready[0])
                except RayTaskError as exc:  # fn raised: a bug, not the machine
                    yield Lost(item, str(exc).strip().splitlines()[-1], False)
                except ray.exceptions.RayError as exc:  # worker crashed, node died, ...
                    yield Lost(item, f"ray: {type(exc).__name__}: "
                                     f"{str(exc).strip().splitlines()[0][:300]}")
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


def ray(address: str | None = None, cpus_per_run: Annotated[float, Field(gt=0)] = 1,
        gpus_per_run: Annotated[float, Field(ge=0)] = 0,
        max_parallel: Annotated[int, Field(ge=0)] = 0,
        local_cpus: Annotated[int, Field(ge=1)] | None = None):
    """Ray: one task per run, on a cluster, the running one or a local one.

    ``address``: a cluster; ``auto`` or none: the running cluster, else a
    local Ray with ``local_cpus`` CPUs.  ``cpus_per_run``/``gpus_per_run``:
    the Ray resources of each task; ``max_parallel``: tasks in flight (0: all)."""
    return RayExecutor(address, cpus_per_run, gpus_per_run, max_parallel, local_cpus)


class SlurmExecutor:
    """SLURM through submitit: one job array, one array task per run."""

    name = "slurm"
    #: SLURM gives each job its GPUs.
    slots = 1

    def __init__(self, folder: str, cluster: str | None, parameters: dict, poll_s: float):
        self.folder = folder
        self.cluster = cluster
        self.parameters = parameters
        self.poll_s = poll_s

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """Submit the runs as one array and yield outcomes as jobs end."""
        import submitit
        from submitit.core.utils import FailedJobError, UncompletedJobError

        from harness.worker import Lost

        items = list(items)
        if not items:
            return
        ex = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        ex.update_parameters(**self.parameters)
        threads = max(1, int(self.parameters.get("cpus_per_task", 1)))
        with ex.batch():
            jobs = [ex.submit(_threaded, fn, item, threads) for item in items]
        running = dict(zip(jobs, items))
        try:
            while running:
                done = [j for j in running if j.done()]
                if not done:
                    time.sleep(self.poll_s)
                for job in done:
                    item = running.pop(job)
                    try:
                        yield job.result()
                    except UncompletedJobError as exc:  # killed, preempted, node failure
                        yield Lost(item, f"slurm job {job.job_id} died: "
                                         f"{str(exc).strip().splitlines()[0][:300]}")
                    except FailedJobError as exc:
                        yield Lost(item, f"slurm job {job.job_id} failed: "
                                         f"{str(exc).strip().splitlines()[-1][:300]}", False)
        finally:
            for job in running:
                job.cancel(check=False)


def slurm(partition: str | None = None, gpus_per_run: Annotated[int, Field(ge=0)] = 0,
          cpus_per_run: Annotated[int, Field(ge=1)] = 1,
          max_parallel: Annotated[int, Field(ge=0)] = 0,
          mem_gb: Annotated[float, Field(gt=0)] | None = None,
          timeout_min: Annotated[int, Field(ge=1)] = 24 * 60,
          folder: str = "submitit/%j", cluster: str | None = None,
          poll_s: Annotated[float, Field(gt=0)] = 1.0,
          **slurm_options):
    """SLURM through submitit: one job array, one array task per run.

    ``max_parallel``: array parallelism; ``timeout_min``: each job's time
    limit; ``folder``: submitit's logs and pickles (on a shared disk);
    ``cluster``: ``local`` runs the jobs on this machine (submitit's local
    executor), none detects SLURM; ``slurm_*`` options pass through to
    submitit (e.g. ``slurm_account``)."""
    import submitit

    valid = submitit.SlurmExecutor._valid_parameters()
    for key, value in slurm_options.items():
        if not key.startswith("slurm_") or key[6:] not in valid:
            raise ConfigError(f"executor.{key}", value, f"unknown option {key!r} of executor "
                              "'slurm'; options: partition, gpus_per_run, cpus_per_run, "
                              "max_parallel, mem_gb, timeout_min, folder, cluster, poll_s, "
                              "slurm_<any sbatch parameter submitit knows>")
    params = {"timeout_min": int(timeout_min), "gpus_per_node": gpus_per_run,
              "cpus_per_task": cpus_per_run, "name": "harness", "mem_gb": mem_gb,
              "slurm_partition": partition, **slurm_options}
    if max_parallel:
        params["slurm_array_parallelism"] = max_parallel
    return SlurmExecutor(folder, cluster, {k: v for k, v in params.items() if v is not None},
                         poll_s)


@hookimpl
def register_executors(register):
    register("ray", ray)
    register("slurm", slurm)
