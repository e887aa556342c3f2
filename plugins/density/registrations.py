"""What the unnormalized density models family registers: the
``density_estimation`` task, its data sources with a known density, its
metrics, and the components of its kinds (``energy_models``,
``density_objectives``).  Submodules are imported inside the hooks so that
``harness plugins`` / ``harness plan`` import no torch, scipy or numpy here."""

from __future__ import annotations

from harness import hookimpl


@hookimpl
def register_tasks(register):
    """The density_estimation task."""
    from harness_plugins.density.task import density_estimation

    register("density_estimation", density_estimation)


@hookimpl
def register_datasets(register):
    """Sources with a known density: the shifted Gaussian and the 2-D toys."""
    from harness_plugins.density.sources import shifted_gaussian, toy2d

    register("shifted_gaussian", shifted_gaussian)
    register("toy2d", toy2d)


@hookimpl
def register_metrics(register):
    """Test log-likelihood, its standard errors, the gap to the truth, parameter error (+ curve)."""
    from harness_plugins.density import metrics

    for name in ("log_likelihood", "log_likelihood_se", "log_z_se", "log_likelihood_gap",
                 "param_error", "param_error_auc"):
        register(name, getattr(metrics, name))


@hookimpl
def register_energy_models(register):
    """Gaussians with a closed-form normaliser and an MLP energy."""
    from harness_plugins.density.energies import diag_gaussian, gaussian_mean, mlp_energy

    register("gaussian_mean", gaussian_mean)
    register("diag_gaussian", diag_gaussian)
    register("mlp_energy", mlp_energy)


@hookimpl
def register_density_objectives(register):
    """Exact MLE, NCE and the compositional objective (Jiang et al. 2023)."""
    from harness_plugins.density.objectives import compositional, mle, nce

    register("mle", mle)
    register("nce", nce)
    register("compositional", compositional)
