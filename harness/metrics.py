"""How a metric declares what it consumes and which way is better.

A metric factory is decorated with :func:`metric`::

    @harness.metric(inputs=("labels", "probs"), greater_is_better=True)
    def accuracy():
        return lambda labels, probs: float((probs.argmax(1) == labels).mean())

The declaration lives on the factory, so the registry can reject a metric
without a direction at registration, suite validation can reject a metric the
task cannot feed (before any run), and runs can log each metric's direction as
a tag that reports read without importing plugins.  The callable the factory
returns is called positionally with the task's values of ``inputs``, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Tag prefix of a run's metric directions: ``harness.direction.<name>`` =
#: max | min | none (a metric that is shown but never ranked).
DIRECTION_TAG = "harness.direction."


def metric(inputs: tuple[str, ...], *, greater_is_better: bool | None
           ) -> Callable[[Callable], Callable]:
    """Declare a metric factory's inputs and direction (a decorator).

    :param inputs: names of the values the metric is called with, in order;
        a task documents the names it offers (``metric_inputs``).  Required:
        the core assumes no task's inputs.
    :param greater_is_better: the direction reports rank by; ``None`` for a
        value that neither extreme makes better (a signed error whose best
        value is 0, a coverage whose best value is the nominal level): it is
        logged and shown, but a suite cannot ``rank_by`` it, early stopping
        cannot monitor it and reports refuse to rank by it."""
    if isinstance(inputs, str) or not all(isinstance(i, str) for i in inputs):
        raise TypeError("inputs must be a tuple of input names, e.g. ('labels', 'probs')")
    if greater_is_better is not None and not isinstance(greater_is_better, bool):
        raise TypeError("greater_is_better must be True, False or None")
    inputs = tuple(inputs)

    def mark(factory: Callable) -> Callable:
        factory.inputs = inputs
        factory.greater_is_better = greater_is_better
        return factory

    return mark


def has_direction(factory: Callable) -> bool:
    """Whether a metric factory (or its callable) declared a direction to
    rank by (``greater_is_better`` True or False, not None)."""
    return isinstance(getattr(factory, "greater_is_better", None), bool)


def direction_tag(factory: Callable) -> str:
    """The ``harness.direction.*`` tag value of a metric factory: ``max``,
    ``min`` or ``none``."""
    better = getattr(factory, "greater_is_better", True)
    return "none" if better is None else "max" if better else "min"


#: A direction tag's value -> the word listings and reports show.
DIRECTION_WORDS = {"max": "higher", "min": "lower", "none": "none"}


def better_word(factory: Callable) -> str:
    """``higher``, ``lower`` or ``none``: which values of a metric are better,
    as ``harness list metrics`` shows it."""
    return DIRECTION_WORDS[direction_tag(factory)]


def metric_inputs(factory: Callable) -> tuple[str, ...]:
    """The inputs a metric factory (or the callable it built) declared with
    ``@harness.metric``; ``TypeError`` when it declared none."""
    inputs = getattr(factory, "inputs", None)
    if inputs is None:
        raise TypeError(f"metric {getattr(factory, '__name__', factory)!r} declares no inputs: "
                        f"decorate its factory with @harness.metric(inputs=..., "
                        f"greater_is_better=...)")
    return tuple(inputs)


def metric_label(name: str, params: dict[str, Any]) -> str:
    """The logged name of a parameterised metric: ``ece`` with ``bins=25`` is
    ``ece:bins-25``.  MLflow metric names allow only letters, digits and
    ``_ - . : /`` and spaces, so brackets and ``=`` cannot be used."""
    if not params:
        return name
    parts = []
    for key, value in params.items():
        text = "".join(c if c.isalnum() or c in "_-." else "_" for c in _label_text(value))
        parts.append(f"{key}-{text}")
    return ":".join([name, *parts])


def _label_text(value: Any) -> str:
    """A parameter value in a metric's label: a nested component spec as its
    name and its parameters (``{name: pgd, eps: 0.3}`` -> ``pgd_eps-0.3``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict) and "name" in value:
        rest = [f"{k}-{_label_text(v)}" for k, v in value.items() if k != "name"]
        return "_".join([str(value["name"]), *rest])
    return str(value)


def compute_metrics(fns: dict[str, Callable], offered: dict[str, Any]) -> dict[str, float]:
    """Call each metric whose inputs are all in ``offered``; return name -> value.

    ``offered`` values may be callables taking no argument: they are computed
    on first use only, so a task can offer expensive inputs (the model's
    predictions on the train split) without paying for them when no metric
    asks."""
    cache: dict[str, Any] = {}

    def value(key: str) -> Any:
        if key not in cache:
            v = offered[key]
            cache[key] = v() if callable(v) and getattr(v, "lazy_input", False) else v
        return cache[key]

    out = {}
    for name, fn in fns.items():
        needed = metric_inputs(fn)
        if all(k in offered for k in needed):
            out[name] = float(fn(*[value(k) for k in needed]))
    return out


def lazy(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Mark a zero-argument callable as a lazily computed metric input."""
    fn.lazy_input = True
    return fn
