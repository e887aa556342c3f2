"""The component kinds of the unnormalized density models family, with their
contracts: ``energy_models`` (what is fit) and ``density_objectives`` (how it
is fit), declared through ``register_kinds`` as a third-party family would.

The ``density_estimation`` task builds one of each per run; see
``harness_plugins.density.task`` for the data, the noise distribution and
what is logged.
"""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_energy_models(register):
    """Register energy models p(x) = exp(-E(x)) / Z on R^d.

    ``factory(dim, **params)`` (``dim: Annotated[int, harness.FromData]``, the
    data's dimension) returns a ``torch.nn.Module`` with:

    - ``energy(x) -> Tensor (n,)``: E(x) for ``x`` float32 ``(n, dim)``;
    - ``log_normalizer() -> Tensor | None``: the exact log Z as a
      differentiable scalar where it is known in closed form (Gaussians),
      else ``None`` (the task then estimates it by importance sampling and
      the ``mle`` objective refuses the model at ``harness plan``);
    - ``known_normalizer: bool``: whether ``log_normalizer`` is not ``None``
      (read at validation, before any parameter exists);
    - ``estimate() -> dict[str, numpy.ndarray]``: the named parameters that
      a dataset's ground truth may hold (``{"mean": ...}``), for
      ``param_error``; ``{}`` when none is comparable;
    - ``fit_mle(X) -> bool`` (optional): set the exact maximum-likelihood
      parameters from the train rows ``X`` (numpy ``(n, dim)``) in closed
      form and return True; the ``mle`` objective then takes no step.
    """


@hookspec
def register_density_objectives(register):
    """Register estimators of an energy model: what a training step minimises.

    ``factory(**params)`` returns an object with:

    - ``needs_normalizer: bool``: the objective uses the exact log Z (MLE);
      suite validation rejects it with a model whose ``known_normalizer`` is
      false;
    - ``noise_ratio: float``: noise samples drawn per data row of a batch
      (0 for an objective that uses no noise);
    - ``setup(model) -> list[Tensor]``: extra trainable parameters (NCE's
      log Z), called once before training;
    - ``fit_closed_form(model, X) -> bool``: fit without steps where the
      objective and model allow it (MLE of a Gaussian); True ends training;
    - ``loss(model, x, noise, q) -> Tensor``: a scalar whose gradient is
      the objective's stochastic gradient at the batch ``x`` ``(b, dim)``
      with ``noise`` ``(m, dim)`` drawn from the noise distribution ``q``
      (``q.log_prob(rows) -> Tensor (n,)``;
      ``harness_plugins.density.evaluation.GaussianNoise``);
    - ``value() -> float``: the last step's objective estimate (logged as
      ``train/loss``; NaN/inf ends the run as diverged);
    - ``log_z() -> float | None``: the objective's own current estimate of
      log Z (NCE's parameter, the compositional moving average), logged per
      epoch as ``train/log_z`` where not ``None``.
    """


@hookimpl
def register_kinds(register):
    """The density family's kinds: energy_models, density_objectives."""
    register("energy_models", register_energy_models)
    register("density_objectives", register_density_objectives)
