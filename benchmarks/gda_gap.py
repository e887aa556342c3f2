"""The GDA simulation's figure: generalisation gap against gamma, one curve
per m_S, from the MLflow runs of ``suites/gda_simulation.yaml``.

    harness run suites/gda_simulation.yaml --tracking-uri sqlite:///gda.db
    python benchmarks/gda_gap.py --tracking-uri sqlite:///gda.db [--out gda_gap.png]

Prints, per classifier (the suite's method before its sweep point), tables
of the mean over seeds of the 0-1 gap (``test/generalization_gap``), the NLL
gap (``test/nll_generalization_gap``, when logged) and ``test/accuracy``
for each m_S (dataset label ``bgmm/m<m_S>``, m_S as the suite counts it) and
gamma (``augment.ratio``); then, per m_S, the paired comparison of gamma 0
with the largest gamma (every seed has the same real rows at every gamma):
mean difference, its 95% interval and the Wilcoxon signed-rank p-value.
Draws gap vs gamma (symlog x axis, gamma = 0 included), one line per m_S,
with 95% intervals of the mean (1.96 standard errors) as error bars, one
panel per classifier and gap.
"""

from __future__ import annotations

import argparse
import re


def load(tracking_uri: str, experiment: str):
    """Finished runs as a frame: classifier, m_S, gamma, seed, gap, nll_gap, accuracy."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(experiment_names=[experiment], max_results=100000)
    runs = runs[runs.get("tags.harness.status") == "finished"]
    rows = []
    for _, r in runs.iterrows():
        m = re.search(r"m(\d+)$", str(r["tags.harness.dataset"]))
        if m is None:
            continue
        rows.append({"classifier": str(r["tags.harness.method"]).split("[")[0],
                     "m_S": int(m.group(1)), "gamma": float(r["params.augment.ratio"]),
                     "seed": int(r["tags.harness.seed"]),
                     "gap": r["metrics.test/generalization_gap"],
                     "nll_gap": r.get("metrics.test/nll_generalization_gap", float("nan")),
                     "accuracy": r["metrics.test/accuracy"]})
    return pd.DataFrame(rows)


GAPS = (("gap", "0-1 generalisation gap"), ("nll_gap", "NLL generalisation gap"))


def tables(frame) -> str:
    """Means over seeds of both gaps and accuracy per (classifier, m_S, gamma),
    and the paired gamma-0 vs largest-gamma comparison per m_S."""
    from scipy.stats import wilcoxon

    fmt = lambda v: f"{v:.4f}"  # noqa: E731
    out = []
    for clf, part in frame.groupby("classifier"):
        n = part.groupby(["m_S", "gamma"])["seed"].count()
        out.append(f"{clf}: {n.min()}-{n.max()} seeds per cell")
        for col, title in (*GAPS, ("accuracy", "test accuracy")):
            if part[col].isna().all():
                continue
            table = part.groupby(["m_S", "gamma"])[col].mean().unstack("gamma")
            out.append(f"{clf}: {title} (mean over seeds), rows m_S, columns gamma\n"
                       f"{table.to_string(float_format=fmt)}\n")
        top = part["gamma"].max()
        for col, title in GAPS:
            if part[col].isna().all():
                continue
            lines = [f"{clf}: {title}, gamma 0 minus gamma {top:g}, paired over seeds",
                     "m_S   n   mean diff   95% interval        Wilcoxon p"]
            for m_s, rows in part.groupby("m_S"):
                wide = rows.pivot_table(index="seed", columns="gamma", values=col)
                if 0.0 not in wide or top not in wide:
                    continue
                diff = (wide[0.0] - wide[top]).dropna()
                if len(diff) < 2:
                    continue
                half = 1.96 * diff.std(ddof=1) / len(diff) ** 0.5
                p = wilcoxon(diff).pvalue if (diff != 0).any() else 1.0
                lines.append(f"{m_s:<5} {len(diff):<3} {diff.mean():+.4f}    "
                             f"[{diff.mean() - half:+.4f}, {diff.mean() + half:+.4f}]  {p:.2g}")
            out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def plot(frame, path: str) -> None:
    """Gap vs gamma, one line per m_S (mean and its 95% interval), one row per
    gap and one column per classifier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classifiers = sorted(frame["classifier"].unique())
    gaps = [(col, title) for col, title in GAPS if not frame[col].isna().all()]
    fig, axes = plt.subplots(len(gaps), len(classifiers),
                             figsize=(5 * len(classifiers), 4 * len(gaps)), squeeze=False)
    for row, (col, title) in enumerate(gaps):
        for ax, clf in zip(axes[row], classifiers):
            part = frame[frame["classifier"] == clf]
            for m_s, curve in part.groupby("m_S"):
                stats = curve.groupby("gamma")[col].agg(["mean", "std", "count"])
                half = (1.96 * stats["std"] / stats["count"] ** 0.5).fillna(0.0)
                ax.errorbar(stats.index, stats["mean"], yerr=half, marker="o",
                            capsize=2, label=f"m_S = {m_s}")
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xlabel("gamma (generated / real)")
            ax.set_title(f"{clf}: {title}")
            ax.grid(alpha=0.3)
        axes[row][0].set_ylabel(f"{title} (mean, 95% interval)")
    axes[0][-1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="gda_simulation")
    parser.add_argument("--out", default="gda_gap.png", help="plot file ('' for none)")
    args = parser.parse_args()
    frame = load(args.tracking_uri, args.experiment)
    if frame.empty:
        raise SystemExit(f"no finished runs of experiment {args.experiment!r} "
                         f"at {args.tracking_uri}")
    print(tables(frame))
    if args.out:
        plot(frame, args.out)
        print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
