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


@hookimpl
def register_losses(register):
    register("boom", boom)
    register("nan_loss", nan_loss)


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
