"""The GDA simulation's figure: generalisation gap against gamma, one curve
per m_S, from the MLflow runs of ``suites/gda_simulation.yaml``.

    harness run suites/gda_simulation.yaml --tracking-uri sqlite:///gda.db
    python benchmarks/gda_gap.py --tracking-uri sqlite:///gda.db [--out gda_gap.png]

Prints, per classifier (the suite's method before its sweep point), a table
of mean +- std over seeds of ``test/generalization_gap`` and
``test/accuracy`` for each m_S (dataset label ``bgmm/m<m_S>``) and gamma
(``augment.ratio``), and draws gap vs gamma (symlog x axis, gamma = 0
included) with one line per m_S and one panel per classifier.
"""

from __future__ import annotations

import argparse
import re


def load(tracking_uri: str, experiment: str):
    """Finished runs as a frame: classifier, m_S, gamma, seed, gap, accuracy."""
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
                     "accuracy": r["metrics.test/accuracy"]})
    return pd.DataFrame(rows)


def tables(frame) -> str:
    """Mean +- std of gap and accuracy per (classifier, m_S, gamma)."""
    out = []
    for clf, part in frame.groupby("classifier"):
        stats = part.groupby(["m_S", "gamma"]).agg(
            gap=("gap", "mean"), gap_std=("gap", "std"), acc=("accuracy", "mean"),
            n=("seed", "count"))
        gap = stats["gap"].unstack("gamma")
        acc = stats["acc"].unstack("gamma")
        out.append(f"{clf}: generalisation gap (mean over seeds), rows m_S, columns gamma\n"
                   f"{gap.to_string(float_format=lambda v: f'{v:.4f}')}\n")
        out.append(f"{clf}: test accuracy\n{acc.to_string(float_format=lambda v: f'{v:.4f}')}\n")
    return "\n".join(out)


def plot(frame, path: str) -> None:
    """Gap vs gamma, one line per m_S (mean +- std), one panel per classifier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classifiers = sorted(frame["classifier"].unique())
    fig, axes = plt.subplots(1, len(classifiers), figsize=(5 * len(classifiers), 4),
                             squeeze=False, sharey=True)
    for ax, clf in zip(axes[0], classifiers):
        part = frame[frame["classifier"] == clf]
        for m_s, curve in part.groupby("m_S"):
            stats = curve.groupby("gamma")["gap"].agg(["mean", "std"]).fillna(0.0)
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"], marker="o",
                        capsize=2, label=f"m_S = {m_s}")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("gamma (generated / real per class)")
        ax.set_title(clf)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("|train 0-1 loss - test 0-1 loss|")
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
