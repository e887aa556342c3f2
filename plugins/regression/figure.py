"""Risk vs bag size per method, from a finished aggregate-responses suite.

``harness report`` ranks methods; it has no figure with a swept parameter on
the x axis, so this module draws the paper's figure shape from the store:
one panel per (dataset, epsilon), the mean test risk (``test/mse`` on
individual responses, +- its standard error over seeds) against the bag
size, one line per aggregate loss, and its asymptotic risk
(``theory.interpolating_risk``, dashed) where the runs logged it.  It also writes the
table it plots (``risk_vs_bag_size.csv``) and the bag size of the lowest
mean risk per (dataset, method, epsilon) (``optimal_bag_size.csv``)::

    python -m harness_plugins.regression.figure suites/aggregate_responses.yaml \\
        --tracking-uri sqlite:////tmp/regression/mlflow.db --out reports/aggregate_responses
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

COLUMNS = {"params.aggregation.bag_size": "bag_size", "params.aggregation.epsilon": "epsilon",
           "params.aggregation.loss.name": "loss", "params.aggregation.loss.rho": "rho",
           "tags.harness.dataset": "dataset", "metrics.test/mse": "mse",
           "metrics.test/population_risk": "population_risk",
           "metrics.test/asymptotic_risk": "asymptotic_risk",
           "metrics.test/optimal_bag_size": "theory_optimal_k"}


def load(suite_name: str, uri: str):
    """One row per finished run: dataset, loss (with rho), epsilon, bag size, risks."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[suite_name], max_results=100_000,
                              filter_string="tags.`harness.status` = 'finished'")
    for col in COLUMNS:
        if col not in runs:
            runs[col] = None
    df = runs[list(COLUMNS)].rename(columns=COLUMNS)
    df["bag_size"] = df["bag_size"].astype(int)
    df["epsilon"] = df["epsilon"].map(lambda v: "none" if v in (None, "None") else f"{float(v):g}")
    df["method"] = [f"interpolating(rho={float(r):g})" if name == "interpolating" else name
                    for name, r in zip(df["loss"], df["rho"])]
    for col in ("mse", "population_risk", "asymptotic_risk", "theory_optimal_k"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def summarise(df):
    """Mean and standard error over seeds per (dataset, method, epsilon, bag size)."""
    keys = ["dataset", "method", "epsilon", "bag_size"]
    g = df.groupby(keys)
    out = g.agg(seeds=("mse", "count"), mse=("mse", "mean"), mse_sd=("mse", "std"),
                population_risk=("population_risk", "mean"),
                asymptotic_risk=("asymptotic_risk", "mean"),
                theory_optimal_k=("theory_optimal_k", "mean")).reset_index()
    out["mse_se"] = out["mse_sd"] / out["seeds"].map(math.sqrt)
    return out.drop(columns="mse_sd").sort_values(keys)


def optimal(table):
    """The bag size of the lowest mean test risk per (dataset, method, epsilon),
    beside the one the asymptotic risk makes optimal (linear-Gaussian data;
    searched over 1..256, computed at the run's epsilon and bag size 1's rho)."""
    idx = table.groupby(["dataset", "method", "epsilon"])["mse"].idxmin()
    best = table.loc[idx, ["dataset", "method", "epsilon", "bag_size", "mse", "mse_se"]]
    theory = table[table["bag_size"] > 1].groupby(["dataset", "method", "epsilon"])[
        "theory_optimal_k"].first().rename("theory_optimal_k")
    return best.join(theory, on=["dataset", "method", "epsilon"])


def draw(table, path: Path) -> Path:
    """The figure: a panel per (dataset, epsilon); lines per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted(table["dataset"].unique())
    epsilons = sorted(table["epsilon"].unique(),
                      key=lambda e: (e != "none", -float(e) if e != "none" else 0.0))
    fig, axes = plt.subplots(len(datasets), len(epsilons), squeeze=False,
                             figsize=(4.2 * len(epsilons), 3.2 * len(datasets)))
    for i, ds in enumerate(datasets):
        for j, eps in enumerate(epsilons):
            ax = axes[i][j]
            part = table[(table["dataset"] == ds) & (table["epsilon"] == eps)]
            for method, rows in part.groupby("method"):
                line = ax.errorbar(rows["bag_size"], rows["mse"], yerr=rows["mse_se"],
                                   marker="o", ms=3, capsize=2, label=method)
                theory = rows.dropna(subset=["asymptotic_risk"])
                if len(theory):
                    ax.plot(theory["bag_size"], theory["asymptotic_risk"], "--", lw=1,
                            color=line[0].get_color(), label=f"{method}: asymptotic")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{ds[:40]}\nepsilon = {eps}", fontsize=8)
            ax.set_xlabel("bag size k")
            if j == 0:
                ax.set_ylabel("test risk (mse, individual responses)")
            ax.tick_params(labelsize=7)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    """Write the figure and its tables for one suite."""
    from harness.suite import load_suite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite")
    ap.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = load(load_suite(args.suite).name, args.tracking_uri)
    if df.empty:
        print("no finished runs of this suite in the store")
        return 1
    table = summarise(df)
    table.to_csv(out / "risk_vs_bag_size.csv", index=False, float_format="%.6g")
    best = optimal(table)
    best.to_csv(out / "optimal_bag_size.csv", index=False, float_format="%.6g")
    draw(table, out / "risk_vs_bag_size.png")
    print(best.to_string(index=False))
    print(f"wrote {out / 'risk_vs_bag_size.png'}, risk_vs_bag_size.csv, optimal_bag_size.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
