"""Task ``pde``: a physics-informed network (PINN) trained on a PDE's residual.

A dataset entry is a problem and its fixed test set: ``pde: {problem:
{name: poisson, dim: 2}, n_test: 10000}`` (source ``pde``: ``n_test`` points
uniform in the problem's box, drawn from ``random_state``, and the exact
solution there).  A method is a network, a collocation sampler (the
``collocation_samplers`` kind) and a training budget.  One run:

1. ``u``: an MLP (``model.hidden``, tanh) from the box's coordinates to the
   solution, initialised from the run's init seed.
2. ``training.steps`` Adam steps on mean(residual^2) over the sampler's
   points plus ``boundary_weight`` x mean((u - g)^2) over fresh boundary
   points each step; the sampler is asked for points at step 0 and every
   ``resample_every`` steps.  Every ``eval_every`` steps (one "epoch" of the
   progress and the curves) ``val/relative_l2`` on the first 2,000 test
   points and ``train/loss``.
3. On the test set: ``relative_l2`` (||u - u*|| / ||u*||), ``max_error``,
   ``residual_variance`` (the variance of the residual over the test
   points, the spread adaptive samplers aim to flatten) and
   ``residual_mse``; ``time/train_s``.

Metric inputs: ``u_pred``, ``u_true`` (numpy, over the test set; ``u_true``
only where the solution is known), ``residual`` (numpy).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import ConfigError, Diverged
from harness.params import check_components, reject_boolean_numbers, validation_error

Spec = str | dict[str, Any]
INPUTS = ("u_pred", "u_true", "residual")


class Model(BaseModel):
    """The ``model:`` section: the PINN's MLP."""

    model_config = ConfigDict(extra="forbid")
    # each width bounded: [-3] and [10**30] planned and failed in torch at run time
    hidden: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(
        default_factory=lambda: [64, 64, 64], min_length=1)


class Training(BaseModel):
    """The ``training:`` section."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(default=2000, ge=1, le=10_000_000)
    lr: float = Field(default=1e-3, gt=0, le=10)
    collocation: int = Field(default=1000, ge=1, le=10_000_000)
    boundary: int = Field(default=200, ge=1, le=10_000_000)
    boundary_weight: float = Field(default=10.0, ge=0, le=1e6)
    resample_every: int = Field(default=100, ge=1, le=10_000_000)
    eval_every: int = Field(default=100, ge=1, le=10_000_000)


class PdeConfig(BaseModel):
    """The method config of the pde task."""

    model_config = ConfigDict(extra="forbid")
    model: Model = Model()
    sampler: Spec = "uniform"
    training: Training = Training()


SECTIONS = {(): PdeConfig, ("model",): Model, ("training",): Training}


def mlp(dim: int, hidden: list[int]):
    """tanh MLP from ``dim`` coordinates to one value."""
    import torch.nn as nn

    layers, width = [], dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 1))


class PdeTask:
    """Train a PINN on a PDE's residual with a collocation sampler; score it on the solution."""

    metric_inputs = INPUTS
    cost_keys = ("model", "sampler", "training")

    def validate(self, config: dict, check) -> dict:
        """Check the config and the sampler; eval/resample intervals fit the budget."""
        reject_boolean_numbers(PdeConfig, config)
        try:
            cfg = PdeConfig.model_validate(config).model_dump()
        except ValidationError as exc:
            raise validation_error(exc, config, SECTIONS, "the pde task") from None
        check_components(cfg, check, (("sampler", "collocation_samplers"),))
        tr = cfg["training"]
        if tr["eval_every"] > tr["steps"]:
            raise ConfigError("training.eval_every", tr["eval_every"],
                              f"more than training.steps ({tr['steps']}): nothing would be "
                              f"evaluated during training")
        return cfg

    def dataset_entry(self, options: dict, registry) -> dict:
        """A pde dataset entry takes no option but its label."""
        for key, value in options.items():
            raise ConfigError(key, value, f"the pde task applies no dataset option {key!r}; "
                              f"a dataset entry is the problem (source pde) and its label")
        return {}

    def prepare(self, entry: dict, seed: int, ctx):
        """The problem (built from the source's spec) and its test set."""
        raw = ctx.load_raw(entry)
        problem = ctx.create("pdes", raw.meta["problem"])
        return {"problem": problem, "X": raw.X, "u": raw.y}

    def run(self, ctx) -> dict[str, float]:
        """Train ``training.steps`` steps; evaluate on the test set."""
        import numpy as np
        import torch

        from harness.metrics import compute_metrics

        cfg, data = ctx.config, ctx.data
        tr, problem = cfg["training"], data["problem"]
        torch.manual_seed(ctx.seeds["init"])
        u = mlp(problem.dim, cfg["model"]["hidden"])
        sampler = ctx.create("collocation_samplers", cfg["sampler"])
        gen = torch.Generator().manual_seed(ctx.seeds["order"])
        opt = torch.optim.Adam(u.parameters(), lr=tr["lr"])
        X_test = torch.as_tensor(np.asarray(data["X"]), dtype=torch.float32)
        u_true = data["u"]
        check_x, check_u = X_test[:2000], None if u_true is None else u_true[:2000]

        def residual(x, grad: bool = False):
            if grad:
                return problem.residual(u, x)
            parts = []
            for i in range(0, len(x), 4096):
                xi = x[i:i + 4096].detach().requires_grad_(True)
                parts.append(problem.residual(u, xi).detach())
            return torch.cat(parts) if parts else x.new_zeros(0)

        ctx.expect_epochs(tr["steps"] // tr["eval_every"])
        start, running = time.perf_counter(), 0.0
        points = None
        for step in range(tr["steps"]):
            if step % tr["resample_every"] == 0:
                points = sampler.points(step, problem, residual, tr["collocation"], gen)
            x = points.detach().requires_grad_(True)
            xb, gb = problem.boundary(tr["boundary"], gen)
            loss = (problem.residual(u, x) ** 2).mean() + \
                tr["boundary_weight"] * ((u(xb)[:, 0] - gb) ** 2).mean()
            if not torch.isfinite(loss):
                raise Diverged(f"the PINN loss became {float(loss)} at step {step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss.detach())
            if (step + 1) % tr["eval_every"] == 0:
                values = {"train/loss": running / tr["eval_every"],
                          "train/collocation_points": float(len(points))}
                running = 0.0
                if check_u is not None:
                    with torch.no_grad():
                        pred = u(check_x)[:, 0].numpy()
                    values["val/relative_l2"] = relative_l2(pred, check_u)
                ctx.epoch_end((step + 1) // tr["eval_every"], values)
        train_s = time.perf_counter() - start
        with torch.no_grad():
            u_pred = torch.cat([u(X_test[i:i + 8192])[:, 0]
                                for i in range(0, len(X_test), 8192)]).numpy()
        offered = {"u_pred": u_pred, "residual": residual(X_test).numpy()}
        if u_true is not None:
            offered["u_true"] = np.asarray(u_true)
        out = compute_metrics(ctx.metrics(), offered)
        ctx.log_metrics({"time/train_s": train_s})
        return out


def relative_l2(pred, true) -> float:
    """||pred - true|| / ||true||."""
    import numpy as np

    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    return float(np.linalg.norm(pred - true) / max(np.linalg.norm(true), 1e-300))


def pde():
    """Physics-informed network on a PDE's residual, collocation points from a sampler."""
    return PdeTask()
