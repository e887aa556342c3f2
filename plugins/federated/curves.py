"""Global test accuracy per round, mean +- std over seeds, one panel per
dataset and a line per method, from the ``round/test_accuracy`` histories a
federated suite logged (the report's own ``curves.png`` draws ``val/accuracy``,
the validation split).  Also prints the mean test accuracy per method at a few
rounds, per partition strength, and FedLEx's mean guidance value.

    python -m harness_plugins.federated.curves SUITE_NAME TRACKING_URI OUT.png
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(suite: str, uri: str, out: str) -> None:
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from harness.report.plots import learning_curves, method_colors

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[suite])
    runs = runs[runs["tags.harness.status"] == "finished"]
    client = MlflowClient(uri)
    rows = []
    for _, r in runs.iterrows():
        for m in client.get_metric_history(r["run_id"], "round/test_accuracy"):
            rows.append((r["tags.harness.dataset"], r["tags.harness.method"], m.step + 1,
                         m.value))
    hist = pd.DataFrame(rows, columns=["dataset", "method", "step", "value"])
    datasets = sorted(hist["dataset"].unique())
    known = ("fedavg", "fedprox", "scaffold", "fedlex")
    methods = ([m for m in known if m in set(hist["method"])]
               + sorted(set(hist["method"]) - set(known)))
    learning_curves(hist, "round/test_accuracy", datasets, methods,
                    method_colors(methods), Path(out))
    hist["alpha"] = hist["dataset"].str.extract(r"dirichlet=([0-9.]+)")[0]
    last = int(hist["step"].max())
    at = hist[hist["step"].isin([5, 10, 20, last])]
    table = at.groupby(["alpha", "step", "method"])["value"].mean().unstack("method")
    print("Mean global test accuracy (round/test_accuracy) over datasets and seeds, by "
          "Dirichlet alpha and round:\n")
    print(table[methods].round(4).to_markdown())
    if "metrics.fedlex/guidance_mean" in runs:
        g = runs.dropna(subset=["metrics.fedlex/guidance_mean"])
        g = g.groupby(["tags.harness.dataset", "tags.harness.method"])[
            "metrics.fedlex/guidance_mean"].agg(["mean", "min", "max"]).round(4)
        print("\nFedLEx's mean guidance (fedlex/guidance_mean) over seeds:\n")
        print(g.to_markdown())


if __name__ == "__main__":
    main(*sys.argv[1:4])
