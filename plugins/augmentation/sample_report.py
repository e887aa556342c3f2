"""The generated samples' quality and cost per (dataset, method), from the
``augment/*`` metrics an augmentation suite logged: the report's tables rank
downstream test metrics only, so this prints the sample side as a markdown
table (mean ± std over seeds of ``augment/c2st``, ``augment/mmd``,
``augment/samples_per_s`` and ``augment/fit_s``; finished runs of the
experiment that carry a run key, real-data-only runs left out).

    python -m harness_plugins.augmentation.sample_report EXPERIMENT TRACKING_URI > quality.md
"""

from __future__ import annotations

import sys

COLUMNS = {"augment/c2st": "c2st", "augment/mmd": "mmd",
           "augment/samples_per_s": "samples/s", "augment/fit_s": "fit s"}


def quality_table(experiment: str, uri: str) -> str:
    """The markdown table (see the module docstring)."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(uri)
    df = mlflow.search_runs(experiment_names=[experiment])
    df = df[(df["tags.harness.status"] == "finished") & df["tags.harness.run_key"].notna()]
    cols = [f"metrics.{k}" for k in COLUMNS if f"metrics.{k}" in df.columns]
    df = df.dropna(subset=cols[:1])  # runs without an augmenter log no augment/*
    rows = []
    for (dataset, method), part in df.groupby(["tags.harness.dataset", "tags.harness.method"]):
        row = {"dataset": dataset, "method": method}
        for col in cols:
            values = part[col].dropna()
            row[COLUMNS[col.removeprefix("metrics.")]] = (
                f"{values.mean():.4g} ± {values.std():.2g} ({len(values)})")
        rows.append(row)
    return ("**Generated samples against the validation split (augment/*), mean ± std over "
            "seeds**\n\n" + pd.DataFrame(rows).to_markdown(index=False) + "\n")


if __name__ == "__main__":
    print(quality_table(sys.argv[1], sys.argv[2]), end="")
