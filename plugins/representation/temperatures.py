"""The distribution of learned per-sample temperatures (iSogCLR), by class frequency.

iSogCLR's claim (Qiu et al., ICML 2023) is that samples with frequent
semantics learn large temperatures and samples with rare semantics small
ones.  With labels as the semantics, a run whose loss learns temperatures
reports:

- ``tau/q05`` ... ``tau/q95``, ``tau/mean`` (metrics, step 0): quantiles of
  all training samples' temperatures;
- ``tau/class<k>`` : the median temperature of class ``k``'s training samples
  (step = ``k``), next to ``tau/count<k>``, its training count;
- the metric ``tau_frequency_correlation`` (``test/``): Spearman's rank
  correlation between a class's training count and its median temperature
  (positive: the paper's direction; NaN when all classes are equally
  frequent);
- artifacts ``report/temperatures.csv`` (sample id, label, temperature) and
  ``report/temperatures.png`` (per-class box plots, classes ordered by count).
"""

from __future__ import annotations

import harness

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def class_medians(temperatures, labels):
    """``(classes, training counts, median temperature per class)`` as numpy arrays."""
    import numpy as np

    tau, y = np.asarray(temperatures, float), np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    medians = np.array([np.median(tau[y == c]) for c in classes])
    return classes, counts, medians


def frequency_correlation(temperatures, labels) -> float:
    """Spearman correlation of class training count with class median temperature."""
    import math

    import numpy as np
    from scipy.stats import spearmanr

    _, counts, medians = class_medians(temperatures, labels)
    if len(counts) < 3 or np.ptp(counts) == 0 or np.ptp(medians) == 0:
        return math.nan
    return float(spearmanr(counts, medians).statistic)


@harness.metric(inputs=("temperatures", "train_labels"), greater_is_better=True)
def tau_frequency_correlation():
    """Spearman correlation of a class's train count with its median learned temperature."""
    return lambda temperatures, labels: frequency_correlation(temperatures, labels)


def report_temperatures(ctx, temperatures, labels) -> None:
    """Log the quantiles, per-class medians, a CSV and a box-plot artifact."""
    import os
    import tempfile

    import numpy as np

    tau = np.asarray(temperatures, float)
    qs = np.quantile(tau, QUANTILES)
    values = {f"tau/q{int(round(q * 100)):02d}": float(v) for q, v in zip(QUANTILES, qs)}
    values["tau/mean"] = float(tau.mean())
    ctx.log_metrics(values)
    classes, counts, medians = class_medians(tau, labels)
    for c, n, m in zip(classes, counts, medians):
        ctx.log_metrics({"tau/class_median": float(m), "tau/class_count": float(n)}, int(c))
    rows = ["sample,label,tau"] + [f"{i},{int(y)},{t:.6g}" for i, (y, t)
                                  in enumerate(zip(labels, tau))]
    ctx.log_text("\n".join(rows) + "\n", "report/temperatures.csv")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "temperatures.png")
        plot_by_class(tau, np.asarray(labels), path,
                      title=f"{ctx.spec.dataset_label} / {ctx.spec.method}")
        ctx.log_artifact(path, "report")


def plot_by_class(tau, labels, path: str, title: str = "") -> None:
    """Box plots of the temperatures per class, classes ordered by training count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes, counts, _ = class_medians(tau, labels)
    order = counts.argsort()[::-1]
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(classes), 3.2))
    ax.boxplot([tau[labels == classes[i]] for i in order], showfliers=False)
    ax.set_xticks(range(1, len(order) + 1),
                  [f"{classes[i]}\n({counts[i]})" for i in order], fontsize=7)
    ax.set_xlabel("class (train count), most frequent first")
    ax.set_ylabel("learned temperature")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
