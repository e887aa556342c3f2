"""Dataset sources of the ``mi_estimation`` task: distributions, not data.

Each returns a ``harness.data.RawDataset`` whose ``X`` is a
``harness_plugins.mutual_information.distributions.PairDistribution`` (the
task draws ``n_samples`` rows from it with the run's seed) and whose
``meta["true_mi"]`` is its MI in nats.  ``mi`` sets the MI directly (the
per-pair correlation follows), ``rho`` the per-pair correlation: give one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from harness import ConfigError
from harness.data import RawDataset

Transform = Literal["none", "cube", "halfcube", "asinh", "wiggle", "rotation"]
Dim = Annotated[int, Field(ge=1, le=64)]
MI = Annotated[float, Field(ge=0, le=50)]
Rho = Annotated[float, Field(gt=-1, lt=1)]


def _one_of(params: dict) -> None:
    """Exactly one of ``mi`` and ``rho``; the bounds are the signature's."""
    if (params.get("mi") is None) == (params.get("rho") is None):
        raise ConfigError("mi", params.get("mi"), "give exactly one of 'mi' (nats, the "
                          "distribution's MI) and 'rho' (the per-pair correlation, in (-1, 1))")
    rho = params.get("rho")
    if rho is not None and not -1 < rho < 1:
        raise ConfigError("rho", rho, "a correlation must lie strictly between -1 and 1")


def _rhos(dim: int, mi: float | None, rho: float | None, gaussian_part: float | None = None):
    from harness_plugins.mutual_information.distributions import rho_for_mi

    if rho is None:
        rho = rho_for_mi(mi if gaussian_part is None else gaussian_part, dim)
    return [float(rho)] * dim


def _label(family: str, params: dict) -> str:
    parts = [family, f"d{params.get('dim', 1)}"]
    if params.get("mi") is not None:
        parts.append(f"mi{params['mi']}")
    if params.get("rho") is not None:
        parts.append(f"rho{params['rho']}")
    for key, short in (("dof", "nu"), ("shift", "shift")):
        if params.get(key) is not None:
            parts.append(f"{short}{params[key]}")
    if params.get("transform", "none") != "none":
        parts.append(params["transform"])
    return "-".join(parts)


def _dataset(name: str, dist) -> RawDataset:
    return RawDataset(name, dist, None, meta={"true_mi": dist.true_mi,
                                              "true_mi_se": dist.true_mi_se})


def mi_gaussian(dim: Dim = 1, mi: MI | None = None, rho: Rho | None = None,
                transform: Transform = "none") -> RawDataset:
    """``dim`` correlated Gaussian pairs, MI = -dim/2 log(1 - rho^2), optionally mapped."""
    from harness_plugins.mutual_information.distributions import PairDistribution

    _one_of({"mi": mi, "rho": rho})
    dist = PairDistribution("gaussian", _rhos(dim, mi, rho), transform=transform)
    return _dataset(_label("gaussian", {"dim": dim, "mi": mi, "rho": rho,
                                        "transform": transform}), dist)


def _check_student(params: dict) -> None:
    from harness_plugins.mutual_information.distributions import student_correction

    _one_of(params)
    mi, dof, dim = params.get("mi"), params.get("dof", 3.0), params.get("dim", 1)
    if mi is not None and dof is not None and dof > 0:
        floor = student_correction(dof, dim, dim)
        if mi < floor:
            raise ConfigError("mi", mi, f"a Student-t with dof {dof} and dim {dim} has MI "
                              f"at least {floor:.4f} nats (at rho = 0); give mi >= that or rho")


def mi_student(dim: Dim = 1, mi: MI | None = None, rho: Rho | None = None,
               dof: Annotated[float, Field(gt=0, le=1000)] = 3.0,
               transform: Transform = "none") -> RawDataset:
    """Multivariate Student-t pairs (heavy tails): Gaussian MI plus a dof term; ``mi``: total."""
    from harness_plugins.mutual_information.distributions import (
        PairDistribution,
        student_correction,
    )

    _check_student({"dim": dim, "mi": mi, "rho": rho, "dof": dof})
    part = None if mi is None else mi - student_correction(dof, dim, dim)
    dist = PairDistribution("student", _rhos(dim, mi, rho, part), dof=dof, transform=transform)
    return _dataset(_label("student", {"dim": dim, "mi": mi, "rho": rho, "dof": dof,
                                       "transform": transform}), dist)


def _check_mixture(params: dict) -> None:
    rho = params.get("rho")
    if rho is None or not -1 < rho < 1:
        raise ConfigError("rho", rho, "a correlation must lie strictly between -1 and 1")


def mi_mixture(rho: Rho, dim: Dim = 1, shift: Annotated[float, Field(ge=0, le=100)] = 1.0,
               transform: Transform = "none") -> RawDataset:
    """Two Gaussian components (correlation +-rho, means +-shift); MI by Monte Carlo."""
    from harness_plugins.mutual_information.distributions import PairDistribution

    dist = PairDistribution("mixture", [float(rho)] * dim, shift=shift, transform=transform)
    return _dataset(_label("mixture", {"dim": dim, "rho": rho, "shift": shift,
                                       "transform": transform}), dist)


mi_gaussian.check = _one_of
mi_gaussian.label = lambda params: _label("gaussian", params)
mi_student.check = _check_student
mi_student.label = lambda params: _label("student", {"dof": 3.0, **params})
mi_mixture.check = _check_mixture
mi_mixture.label = lambda params: _label("mixture", {"shift": 1.0, **params})
