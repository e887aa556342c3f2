"""Fixture plugin for the core tests: losses that fail or diverge on purpose."""

from harness import hookimpl


def boom(message: str = "boom"):
    """A loss that raises, to test failure recording."""

    def loss(logits, targets, **extras):
        raise RuntimeError(message)

    return loss


def nan_loss():
    """A loss that returns NaN, to test divergence handling."""

    def loss(logits, targets, **extras):
        return (logits.sum() * float("nan"))

    return loss


def per_sample():
    """A loss that forgets to average over the batch."""
    import torch.nn.functional as F

    def loss(logits, targets, **extras):
        return F.cross_entropy(logits, targets, reduction="none")

    return loss


@hookimpl
def register_losses(register):
    register("boom", boom)
    register("nan_loss", nan_loss)
    register("per_sample", per_sample)


@hookimpl
def before_run(spec):
    """Simulate Ctrl-C during the run named by HARNESS_TEST_INTERRUPT_RUN."""
    import os

    if os.environ.get("HARNESS_TEST_INTERRUPT_RUN") == spec.run_name:
        raise KeyboardInterrupt


#: how often the `offline` dataset tried to fetch (tests read it)
FETCHES = []


def offline(name: str = "x"):
    """A dataset whose download always fails, like OpenML without network."""
    from harness.errors import DatasetUnavailable

    FETCHES.append(name)
    raise DatasetUnavailable(f"offline dataset {name} is unavailable: no network")


@hookimpl
def register_datasets(register):
    register("offline", offline)


# -- scale-out and fault-tolerance fixtures ------------------------------------


def sleep(seconds: float = 60.0):
    """Cross-entropy that first sleeps ``seconds`` (once per run): a slow run,
    for timeouts and kill -9 tests."""
    import time

    import torch.nn.functional as F

    state = {"slept": False}

    def loss(logits, targets, **extras):
        if not state["slept"]:
            state["slept"] = True
            time.sleep(seconds)
        return F.cross_entropy(logits, targets)

    return loss


def hog(mb: int = 1024, hold_s: float = 60.0):
    """A loss that allocates and touches ``mb`` MiB in 64 MiB steps, then
    holds it for ``hold_s`` seconds: memory-limit tests."""
    import time

    def loss(logits, targets, **extras):
        chunks = []
        for _ in range(max(1, mb // 64)):
            chunks.append(bytearray(64 * 2**20))  # bytearray is zero-filled: pages touched
            time.sleep(0.02)
        time.sleep(hold_s)
        raise RuntimeError("hog was not stopped by the memory limit")

    return loss


def out_of_memory():
    """A loss that raises MemoryError, as an allocation past a limit does."""

    def loss(logits, targets, **extras):
        raise MemoryError("simulated: cannot allocate")

    return loss


def flaky(marker: str):
    """A loss that fails like a GPU does (a CUDA error) the first time, i.e.
    while ``marker`` does not exist, and is cross-entropy afterwards."""
    import os

    import torch.nn.functional as F

    def loss(logits, targets, **extras):
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("CUDA error: unspecified launch failure")
        return F.cross_entropy(logits, targets)

    return loss


@hookimpl(specname="register_losses")
def register_fault_losses(register):
    register("sleep", sleep)
    register("hog", hog)
    register("out_of_memory", out_of_memory)
    register("flaky", flaky)


@hookimpl(specname="before_run")
def faults_before_run(spec):
    """HARNESS_TEST_KILL_ONCE=run_name@marker_file: SIGKILL this process on
    the first attempt of that run (a worker that dies).
    HARNESS_TEST_SLOW_RUN=run_name:seconds: sleep before that run trains.
    HARNESS_TEST_CUDA_ERROR_ONCE=run_name@marker_file: raise a CUDA error
    (an infrastructure failure) on the first attempt of that run."""
    import os
    import signal
    import time

    name, _, marker = os.environ.get("HARNESS_TEST_KILL_ONCE", "").partition("@")
    if name == spec.run_name and marker and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    name, _, marker = os.environ.get("HARNESS_TEST_CUDA_ERROR_ONCE", "").partition("@")
    if name == spec.run_name and marker and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("CUDA error: unspecified launch failure")
    name, _, seconds = os.environ.get("HARNESS_TEST_SLOW_RUN", "").rpartition(":")
    if name == spec.run_name:
        time.sleep(float(seconds))
