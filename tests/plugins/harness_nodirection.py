"""A plugin registering a metric that does not say which way is better."""

from harness import hookimpl


def undirected():
    """A metric without greater_is_better."""
    return lambda labels, probs: 0.0


@hookimpl
def register_metrics(register):
    register("undirected", undirected)
