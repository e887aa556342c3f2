"""What the PDE family registers: the ``pde`` task, its ``pde`` source, its
metrics, and the components of its kinds (``pdes``, ``collocation_samplers``).
Submodules are imported inside the hooks: ``harness plugins`` / ``harness
plan`` import no torch here."""

from __future__ import annotations

from harness import hookimpl


@hookimpl
def register_tasks(register):
    """The pde task."""
    from harness_plugins.pde.task import pde

    register("pde", pde)


@hookimpl
def register_datasets(register):
    """A PDE problem and its test set with the exact solution."""
    from harness_plugins.pde.sources import pde

    register("pde", pde)


@hookimpl
def register_metrics(register):
    """Relative L2 and max error against the solution; residual variance and MSE."""
    from harness_plugins.pde import metrics

    for name in ("relative_l2", "max_error", "residual_variance", "residual_mse"):
        register(name, getattr(metrics, name))


@hookimpl
def register_pdes(register):
    """Poisson (peaked solution), nonlinear Poisson, heat."""
    from harness_plugins.pde.problems import heat, nonlinear_poisson, poisson

    register("poisson", poisson)
    register("nonlinear_poisson", nonlinear_poisson)
    register("heat", heat)


@hookimpl
def register_collocation_samplers(register):
    """Uniform, residual-based adaptive refinement, adversarial adaptive sampling."""
    from harness_plugins.pde.samplers import aas, rar, uniform

    register("uniform", uniform)
    register("rar", rar)
    register("aas", aas)
