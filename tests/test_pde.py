"""The pde task: problems whose exact solutions zero their residuals, boundary
data, the flow's density, RAR's refinement, AAS moving mass toward a
residual peak, plan-time errors, and PINNs whose error falls with training
for every sampler."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch

from harness.cli import main
from harness_plugins.pde.flow import box_flow
from harness_plugins.pde.problems import heat, nonlinear_poisson, poisson
from harness_plugins.pde.samplers import AAS, RAR


class Exact(torch.nn.Module):
    """The problem's own solution as a network (N, dim) -> (N, 1)."""

    def __init__(self, problem):
        super().__init__()
        self.problem = problem

    def forward(self, x):
        return self.problem.exact(x)[:, None]


@pytest.mark.parametrize("problem", [poisson(2, 10.0), poisson(5, 3.0),
                                     nonlinear_poisson(3, 5.0), heat(1, 0.1), heat(2, 0.3)],
                         ids=lambda p: f"{p.name}-{p.dim}")
def test_exact_solution_zeroes_the_residual(problem):
    gen = torch.Generator().manual_seed(0)
    x = problem.uniform(256, gen).double().requires_grad_(True)
    r = problem.residual(Exact(problem), x)
    assert r.abs().max() < 1e-9
    # a wrong solution does not (the check can fail)
    wrong = torch.nn.Module()
    wrong.forward = lambda x: (problem.exact(x) + 0.1 * x[:, 0] ** 2)[:, None]
    assert problem.residual(wrong, x).abs().max() > 1e-3


def test_poisson_source_by_hand():
    p = poisson(2, 10.0)
    x = torch.tensor([[0.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    # f = (2 k d - 4 k^2 r^2) exp(-k r^2): 40 at the origin; (40 - 100) e^-2.5 at r = 0.5
    assert torch.allclose(p.source(x), torch.tensor([40.0, -60 * math.exp(-2.5)],
                                                    dtype=torch.float64))


def test_boundary_points_lie_on_the_conditioned_faces():
    gen = torch.Generator().manual_seed(1)
    p = poisson(3, 10.0)
    x, g = p.boundary(500, gen)
    on_face = ((x.abs() - 1).abs() < 1e-7).any(1)
    assert on_face.all() and torch.allclose(g, p.exact(x))
    h = heat(2, 0.1)
    x, g = h.boundary(600, gen)
    spatial = ((x[:, :2] < 1e-7) | (x[:, :2] > 1 - 1e-7)).any(1)
    initial = x[:, 2] < 1e-7
    assert (spatial | initial).all() and initial.any() and spatial.any()
    assert not (x[:, 2] > 1 - 1e-7).any()  # no condition at the final time
    assert torch.allclose(g[spatial], torch.zeros(int(spatial.sum())), atol=1e-6)
    sines = (math.pi * x[initial, :2]).sin().prod(1)
    assert torch.allclose(g[initial], sines, atol=1e-6)


def test_untrained_flow_is_logit_normal_on_the_box():
    torch.manual_seed(0)
    flow = box_flow([0.0], [2.0])
    x, log_q = flow.sample(5, torch.Generator().manual_seed(0))
    unit = x[:, 0] / 2
    h = torch.log(unit / (1 - unit))
    # z = h (identity start): log N(h) - log(s (1 - s)) - log 2
    want = -0.5 * h ** 2 - 0.5 * math.log(2 * math.pi) - torch.log(unit * (1 - unit)) - math.log(2)
    assert torch.allclose(log_q, want, atol=1e-5)


class Line:
    """A 1-D problem stand-in: the box [0, 1] and its uniform draws."""

    low, high, dim = [0.0], [1.0], 1

    def uniform(self, n, generator):
        return torch.rand(n, 1, generator=generator)


def peaked(x, grad=False):
    """A residual with a peak at 0.7 (independent of any network)."""
    r = torch.exp(-50 * (x[:, 0] - 0.7) ** 2)
    return r if grad else r.detach()


def test_aas_moves_mass_toward_the_residual_peak():
    gen = torch.Generator().manual_seed(3)
    sampler = AAS(beta=1.0, flow_steps=200, flow_lr=0.05, uniform_fraction=0.0)
    x = sampler.points(0, Line(), peaked, 2000, gen)
    near = ((x[:, 0] - 0.7).abs() < 0.1).float().mean()
    uniform = Line().uniform(2000, gen)
    assert near > 2 * 0.2  # uniform puts 0.2 of its mass there
    assert peaked(x).pow(2).mean() > 2 * peaked(uniform).pow(2).mean()
    # the uniform share is honoured
    mixed = AAS(flow_steps=1, uniform_fraction=0.5).points(0, Line(), peaked, 100, gen)
    assert len(mixed) == 100


def test_rar_adds_the_worst_candidates():
    gen = torch.Generator().manual_seed(4)
    sampler = RAR(candidates=400, add=20)
    first = sampler.points(0, Line(), peaked, 100, gen)
    second = sampler.points(100, Line(), peaked, 100, gen)
    assert len(first) == 100 and len(second) == 120 and torch.equal(second[:100], first)
    added = second[100:, 0]
    assert ((added - 0.7).abs() < 0.1).all()


SUITE = """\
name: pde-t
task: pde
seeds: 1
datasets:
  - pde: {problem: {name: poisson, dim: 2, peak: 5}, n_test: 1000}
model: {hidden: [16, 16]}
training: {steps: 200, collocation: 200, boundary: 80, eval_every: 50, resample_every: 50,
           lr: 0.005}
methods:
  uniform: {}
  rar: {sampler: {name: rar, candidates: 500, add: 20}}
  aas: {sampler: {name: aas, flow_steps: 10, batch: 128}}
metrics: [relative_l2, max_error, residual_variance, residual_mse]
rank_by: relative_l2
"""


@pytest.mark.parametrize("old, new, words", [
    ("name: poisson,", "name: poison,", ["pde.problem.name", "poison", "did you mean 'poisson'"]),
    ("dim: 2,", "dim: 0,", ["pde.problem.dim", "greater than or equal to 1"]),
    ("eval_every: 50,", "eval_every: 500,", ["training.eval_every", "500",
                                            "more than training.steps"]),
    ("model: {hidden: [16, 16]}", "model: {hidden: [16, 16]}\ndomains: [a]",
     ["domains", "unknown key"]),
    ("n_test: 1000}", "n_test: 1000}\n    split: {test: 0.2}", ["split", "no dataset option"]),
    ("add: 20}", "add: 0}", ["add", "greater than or equal to 1"]),
    # found by fuzzing: a width below 1 (or absurdly large) planned and failed in torch
    ("hidden: [16, 16]", "hidden: [16, -3]",
     ["model.hidden[1] = -3:", "greater than or equal to 1"]),
    ("hidden: [16, 16]", "hidden: [1000000000000000000000000000000]",
     ["model.hidden[0] = 10000000000", "less than or equal to 100000"]),
])
def test_bad_input_stops_at_plan(tmp_path, capsys, old, new, words):
    assert old in SUITE
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent(SUITE.replace(old, new)))
    assert main(["plan", str(suite), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)


@pytest.mark.slow
def test_pinn_error_falls_with_training_for_every_sampler(tmp_path, tracking_uri, capsys):
    import mlflow
    from mlflow.tracking import MlflowClient

    suite = tmp_path / "s.yaml"
    suite.write_text(SUITE)
    assert main(["run", str(suite), "-q"]) == 0, capsys.readouterr().err
    df = mlflow.search_runs(experiment_names=["pde-t"])
    df = df[df["tags.harness.run_key"].notna()].set_index("tags.harness.method")
    assert sorted(df.index) == ["aas", "rar", "uniform"]
    assert df.iloc[0]["tags.harness.dataset"] == "poisson(dim=2,peak=5)[n_test=1000]"
    client = MlflowClient(tracking_uri)
    for method, row in df.iterrows():
        curve = [m.value for m in sorted(client.get_metric_history(row["run_id"],
                                                                    "val/relative_l2"),
                                         key=lambda m: m.step)]
        assert len(curve) == 4, method
        assert curve[-1] < curve[0], (method, curve)
        assert row["metrics.test/relative_l2"] < 0.5, method
        assert np.isfinite(row["metrics.test/residual_variance"])
    # RAR's set grew by 20 points per resampling after the first: 200 + 3 x 20
    rar = client.get_metric_history(df.loc["rar", "run_id"], "train/collocation_points")
    assert max(m.value for m in rar) == 260
