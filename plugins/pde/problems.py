"""PDE problems with known solutions (the ``pdes`` kind), in torch.

- ``poisson``: -Laplace(u) = f on [-1, 1]^d, u = g on the boundary, with
  the peaked solution u*(x) = exp(-k ||x||^2) (k = ``peak``): the residual
  concentrates around the origin, the setting adaptive sampling is for
  (Tang et al.'s adversarial adaptive sampling uses such peaked solutions
  in growing dimension).  f = (2 k d - 4 k^2 ||x||^2) u*.
- ``heat``: u_t = alpha Laplace_x(u) on [0, 1]^d x [0, 1] (time last), zero
  on the spatial faces, u(x, 0) = prod sin(pi x_i); the solution is
  exp(-alpha d pi^2 t) prod sin(pi x_i).
- ``nonlinear_poisson``: -Laplace(u) + u^3 = f on [-1, 1]^d with the same
  peaked solution (f = -Laplace(u*) + u*^3).  A nonlinear equation with a
  known solution; the AAS paper's own nonlinear example could not be
  checked here, so this is not claimed to be it.

Each problem draws boundary points uniformly over the faces where its
condition holds (every face; for ``heat`` the spatial faces and t = 0).
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

Dim = Annotated[int, Field(ge=1, le=50)]
Positive = Annotated[float, Field(gt=0, le=1e4)]


def laplacian(u, x, dims: int | None = None):
    """sum_i d^2 u / dx_i^2 over the first ``dims`` coordinates (all by
    default), with the graph kept for training; also returns the gradient."""
    import torch

    out = u(x)[:, 0]
    grad = torch.autograd.grad(out.sum(), x, create_graph=True)[0]
    total = torch.zeros_like(out)
    for i in range(dims if dims is not None else x.shape[1]):
        total = total + torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i]
    return total, grad, out


class BoxProblem:
    """A problem on a box with a Dirichlet-type condition on some faces."""

    name = "box"

    def __init__(self, low: list[float], high: list[float], faces: list[tuple[int, int]]):
        self.low, self.high = list(low), list(high)
        self.dim = len(low)
        #: (axis, 0 for the low side / 1 for the high side) where the condition holds
        self.faces = faces

    def uniform(self, n: int, generator):
        """``n`` points uniform in the box."""
        import torch

        low = torch.tensor(self.low)
        high = torch.tensor(self.high)
        return low + (high - low) * torch.rand(n, self.dim, generator=generator)

    def boundary(self, n: int, generator):
        """``n`` points uniform over the conditioned faces, and the solution there."""
        import torch

        x = self.uniform(n, generator)
        which = torch.randint(len(self.faces), (n,), generator=generator)
        for k, (axis, side) in enumerate(self.faces):
            rows = which == k
            x[rows, axis] = self.high[axis] if side else self.low[axis]
        return x, self.exact(x)

    def exact(self, x):
        """The solution at ``x`` (subclasses)."""
        raise NotImplementedError


def _peak(x, k: float):
    return (-k * (x ** 2).sum(1)).exp()


class Poisson(BoxProblem):
    """-Laplace(u) = f on [-1, 1]^d with the peaked solution exp(-k ||x||^2)."""

    name = "poisson"

    def __init__(self, dim: int = 2, peak: float = 10.0):
        super().__init__([-1.0] * dim, [1.0] * dim, [(a, s) for a in range(dim) for s in (0, 1)])
        self.peak = float(peak)

    def exact(self, x):
        """exp(-k ||x||^2)."""
        return _peak(x, self.peak)

    def source(self, x):
        """f = -Laplace(u*) = (2 k d - 4 k^2 ||x||^2) u*."""
        k, r2 = self.peak, (x ** 2).sum(1)
        return (2 * k * self.dim - 4 * k ** 2 * r2) * _peak(x, k)

    def residual(self, u, x):
        """-Laplace(u) - f."""
        lap, _, _ = laplacian(u, x)
        return -lap - self.source(x)


class NonlinearPoisson(Poisson):
    """-Laplace(u) + u^3 = f on [-1, 1]^d with the peaked solution."""

    name = "nonlinear_poisson"

    def source(self, x):
        """f = -Laplace(u*) + u*^3."""
        return super().source(x) + _peak(x, self.peak) ** 3

    def residual(self, u, x):
        """-Laplace(u) + u^3 - f."""
        lap, _, out = laplacian(u, x)
        return -lap + out ** 3 - self.source(x)


class Heat(BoxProblem):
    """u_t = alpha Laplace_x(u) on [0, 1]^d x [0, 1], time the last coordinate."""

    name = "heat"

    def __init__(self, dim: int = 1, alpha: float = 0.1):
        faces = [(a, s) for a in range(dim) for s in (0, 1)] + [(dim, 0)]
        super().__init__([0.0] * (dim + 1), [1.0] * (dim + 1), faces)
        self.spatial, self.alpha = dim, float(alpha)

    def exact(self, x):
        """exp(-alpha d pi^2 t) prod sin(pi x_i)."""
        space = (math.pi * x[:, :self.spatial]).sin().prod(1)
        return (-self.alpha * self.spatial * math.pi ** 2 * x[:, self.spatial]).exp() * space

    def residual(self, u, x):
        """u_t - alpha Laplace_x(u)."""
        lap, grad, _ = laplacian(u, x, dims=self.spatial)
        return grad[:, self.spatial] - self.alpha * lap


def poisson(dim: Dim = 2, peak: Positive = 10.0) -> Poisson:
    """-Laplace(u) = f on [-1, 1]^d, peaked solution exp(-peak ||x||^2)."""
    return Poisson(dim, peak)


def nonlinear_poisson(dim: Dim = 2, peak: Positive = 10.0) -> NonlinearPoisson:
    """-Laplace(u) + u^3 = f on [-1, 1]^d, peaked solution exp(-peak ||x||^2)."""
    return NonlinearPoisson(dim, peak)


def heat(dim: Dim = 1, alpha: Positive = 0.1) -> Heat:
    """Heat equation u_t = alpha Laplace(u) on [0, 1]^d x [0, 1], sine initial condition."""
    return Heat(dim, alpha)
