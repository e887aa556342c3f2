"""Check, for every finished run of a suite, that robust accuracy is at most clean
accuracy (and worst-class robust at most worst-class clean): a run where an attack
*raises* accuracy has a broken attack or evaluation.

    python -m harness_plugins.robustness.check suites/robustness.yaml \\
        --tracking-uri sqlite:////tmp/robustness/mlflow.db --out reports/robustness

prints one line per checked pair of columns and writes ``robust_check.csv`` (one row
per run and pair) to ``--out``; exits 1 when a run breaks the inequality or no run
has both columns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: (robust column prefix, the clean column it may not exceed)
PAIRS = (("test/robust_accuracy", "test/accuracy"),
         ("test/worst_class_robust_accuracy", "test/worst_class_accuracy"))


def check_runs(runs):
    """A frame with one row per finished run and (robust, clean) column pair:
    ``dataset, method, seed, robust_metric, robust, clean, ok``."""
    import pandas as pd

    done = runs[runs["status"] == "finished"] if "status" in runs else runs
    rows = []
    for prefix, clean in PAIRS:
        for col in [c for c in done.columns if c == prefix or c.startswith(prefix + ":")]:
            if clean not in done:
                continue
            part = done[["dataset", "method", "seed", col, clean]].dropna()
            for _, r in part.iterrows():
                rows.append({"dataset": r["dataset"], "method": r["method"], "seed": r["seed"],
                             "robust_metric": col, "robust": float(r[col]),
                             "clean": float(r[clean]),
                             "ok": float(r[col]) <= float(r[clean]) + 1e-12})
    return pd.DataFrame(rows, columns=["dataset", "method", "seed", "robust_metric", "robust",
                                       "clean", "ok"])


def main(argv: list[str] | None = None) -> int:
    """Load the suite's runs, check them, print a summary, write the CSV."""
    from harness.report import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--out", default=None, help="folder for robust_check.csv")
    args = ap.parse_args(argv)
    info = load.resolve_source(args.suite)
    runs = load.load_runs(info.name, load.resolve_tracking_uri(args.tracking_uri)).runs
    table = check_runs(runs)
    if table.empty:
        print(f"{info.name}: no finished run has a robust and a clean accuracy")
        return 1
    for metric, part in table.groupby("robust_metric", sort=False):
        bad = part[~part["ok"]]
        print(f"{metric}: {len(part) - len(bad)} of {len(part)} runs have it <= the clean value"
              + ("" if bad.empty else "; violated by " + ", ".join(
                  f"{r.dataset}/{r.method}/{r.seed}" for r in bad.itertuples())))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(args.out) / "robust_check.csv", index=False)
    return 0 if bool(table["ok"].all()) else 1


if __name__ == "__main__":
    sys.exit(main())
