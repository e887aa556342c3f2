"""The component kinds of the PDE family (the ``pde`` task): ``pdes``, the
problems, and ``collocation_samplers``, where a physics-informed network
puts its residual points.  Declared through ``register_kinds`` as a
third-party family would."""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_pdes(register):
    """Register PDE problems.  ``factory(**params)`` returns an object with:

    - ``dim`` (int): the number of input coordinates (time is the last one
      for a time-dependent problem); ``low``, ``high``: lists of ``dim``
      floats, the box the problem lives on;
    - ``residual(u, x) -> (N,)`` tensor: the PDE's residual of the network
      ``u`` (``(N, dim) -> (N, 1)``) at points ``x`` (``x.requires_grad``
      is set by the caller; derivatives through ``torch.autograd.grad``
      with ``create_graph=True``);
    - ``boundary(n, generator) -> (x, g)``: ``n`` points on the faces where
      a condition holds and its values there (Dirichlet data, the initial
      condition of a time-dependent problem);
    - ``exact(x) -> (N,)`` tensor: the solution, or ``None`` when it is not
      known (the task then reports residuals only).
    """


@hookspec
def register_collocation_samplers(register):
    """Register collocation samplers.  ``factory(**params)`` returns an object
    with ``points(step, problem, residual, n, generator) -> (M, dim)``
    tensor: the residual points training uses from ``step`` until the next
    call (the task calls it at step 0 and every ``resample_every`` steps).
    ``residual(x) -> (N,)`` evaluates the current network's residual at
    ``x`` (detached); a sampler may keep state between calls (a growing set,
    a generative model of its own)."""


@hookimpl
def register_kinds(register):
    """The PDE family's kinds: pdes, collocation_samplers."""
    register("pdes", register_pdes)
    register("collocation_samplers", register_collocation_samplers)
