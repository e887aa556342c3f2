"""What the mutual-information estimation family registers: the
``mi_estimation`` task, its distribution sources and metrics, and the
``mi_estimators`` (KSG, binning, MINE, InfoNCE, NWJ, MIST).

The modules imported here import numpy, scipy and torch only inside
functions, so ``harness plugins`` and ``harness plan`` stay fast.
"""

from __future__ import annotations

from harness import hookimpl


@hookimpl
def register_tasks(register):
    from harness_plugins.mutual_information.task import mi_estimation

    register("mi_estimation", mi_estimation)


@hookimpl
def register_datasets(register):
    from harness_plugins.mutual_information import sources

    register("mi_gaussian", sources.mi_gaussian)
    register("mi_student", sources.mi_student)
    register("mi_mixture", sources.mi_mixture)


@hookimpl
def register_metrics(register):
    from harness_plugins.mutual_information import metrics

    for fn in (metrics.abs_error, metrics.rel_error, metrics.bias, metrics.coverage,
               metrics.interval_width):
        register(fn.__name__, fn)


@hookimpl
def register_mi_estimators(register):
    from harness_plugins.mutual_information import classic, mist, neural

    register("ksg", classic.ksg)
    register("binning", classic.binning)
    register("mine", neural.mine)
    register("infonce", neural.infonce)
    register("nwj", neural.nwj)
    register("mist", mist.mist)
