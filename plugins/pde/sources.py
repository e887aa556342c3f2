"""The ``pde`` dataset source: a problem of the ``pdes`` kind and its fixed
test set (points uniform in the problem's box, the exact solution there)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import Component
from harness.data import RawDataset


def pde(problem: Annotated[str | dict, Component("pdes")] = "poisson",
        n_test: Annotated[int, Field(ge=10, le=10_000_000)] = 10_000,
        random_state: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0) -> RawDataset:
    """A PDE problem and ``n_test`` test points with its exact solution (y None if unknown)."""
    import torch

    import harness

    built = harness.create("pdes", problem)
    gen = torch.Generator().manual_seed(random_state)
    X = built.uniform(n_test, gen)
    exact = built.exact(X)
    spec = problem if isinstance(problem, dict) else {"name": problem}
    return RawDataset(problem_label(spec), X.numpy(), None if exact is None else exact.numpy(),
                      meta={"problem": spec})


def problem_label(spec: dict) -> str:
    """``poisson(dim=2,peak=10)``: the problem's name and parameters."""
    def text(v):
        return f"{v:g}" if isinstance(v, float) else str(v)

    params = ",".join(f"{k}={text(v)}" for k, v in sorted(spec.items()) if k != "name")
    return f"{spec.get('name', 'pde')}({params})" if params else str(spec.get("name", "pde"))


def _label(params: dict) -> str:
    spec = params.get("problem", "poisson")
    label = problem_label(spec if isinstance(spec, dict) else {"name": spec})
    extra = [f"{k}={params[k]}" for k in ("n_test", "random_state")
             if k in params and params[k] != {"n_test": 10_000, "random_state": 0}[k]]
    return label + (f"[{','.join(extra)}]" if extra else "")


def _check(params: dict) -> None:
    """The problem names a registered pde with valid parameters (at plan time)."""
    from harness.plugins import get_registry

    get_registry().check("pdes", params.get("problem", "poisson"), "problem")


pde.label = _label
pde.check = _check
