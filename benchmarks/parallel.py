"""Wall time of a 24-run tiny suite: local sequential vs ``--jobs 2`` vs Ray.

Usage::

    python benchmarks/parallel.py                  # sequential, --jobs 2, ray, --timeout
    python benchmarks/parallel.py --modes seq,jobs2 --epochs 20
    python benchmarks/parallel.py --check-sqlite 8 # runs per key under --jobs 8

Each mode is a separate ``harness run`` process on a fresh sqlite store, so
the times include what a user waits for: start-up, worker start-up (Ray's
local cluster included), the runs and the closing leaderboard.  The
``--check-sqlite N`` mode runs the suite with ``--jobs N`` on a fresh sqlite
file and counts MLflow runs per run key (lost: keys without a FINISHED run;
duplicated: keys with more than one).
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

SUITE = """\
name: parallel
seeds: 6
datasets:
  - sklearn: iris
  - sklearn: wine
model: {{name: mlp, hidden: [8]}}
training: {{epochs: {epochs}, batch_size: 32, optimizer: {{name: adam, lr: 0.01}}}}
methods:
  ce: {{loss: cross_entropy}}
  focal: {{loss: {{name: focal, gamma: 2.0}}}}
metrics: [accuracy]
"""
MODES = {
    "seq": ("local, sequential (in-process)", []),
    "jobs2": ("local --jobs 2", ["--jobs", "2"]),
    "ray": ("ray, local cluster, 2 CPUs", ["--executor", "ray", "--executor-opt",
                                            "local_cpus=2"]),
    "timeout": ("local, --timeout 10m (a child per run)", ["--timeout", "10m"]),
    "jobs2-timeout": ("local --jobs 2 --timeout 10m", ["--jobs", "2", "--timeout", "10m"]),
}


def run(suite: Path, db: Path, args: list[str]) -> tuple[float, int]:
    """Wall seconds and exit status of one ``harness run``."""
    cmd = [sys.executable, "-m", "harness.cli", "run", str(suite),
           "--tracking-uri", f"sqlite:///{db}", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
    return seconds, proc.returncode


def runs_per_key(db: Path) -> tuple[int, int, int]:
    """(keys with a FINISHED run, keys without one, keys with more than one)."""
    con = sqlite3.connect(db)
    rows = con.execute(
        """SELECT k.value, r.status FROM runs r JOIN tags k ON k.run_uuid = r.run_uuid
           AND k.key = 'harness.run_key'""").fetchall() if db.exists() else []
    finished = Counter(key for key, status in rows if status == "FINISHED")
    return len(finished), 24 - len(finished), sum(1 for n in finished.values() if n > 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="seq,jobs2,ray,timeout",
                   help=f"comma-separated, from {', '.join(MODES)}")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--check-sqlite", type=int, metavar="JOBS",
                   help="instead: count runs per key under --jobs JOBS on fresh sqlite")
    args = p.parse_args()
    from tabulate import tabulate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        suite = tmp / "parallel.yaml"
        suite.write_text(SUITE.format(epochs=args.epochs))
        if args.check_sqlite:
            db = tmp / "check.db"
            seconds, code = run(suite, db, ["--jobs", str(args.check_sqlite)])
            ok, lost, dup = runs_per_key(db)
            print(tabulate([[f"--jobs {args.check_sqlite}", code, ok, lost, dup,
                             f"{seconds:.1f}"]],
                           headers=["mode", "exit", "finished keys", "lost", "duplicated",
                                    "wall s"]))
            return 0
        rows, base = [], None
        for mode in args.modes.split(","):
            label, extra = MODES[mode]
            seconds, code = run(suite, tmp / f"{mode}.db", extra)
            base = base or seconds
            ok, lost, dup = runs_per_key(tmp / f"{mode}.db")
            rows.append([label, f"{seconds:.1f}", f"{base / seconds:.2f}x",
                         f"{ok}/24" + (f" (exit {code})" if code else "")])
    print(f"24-run suite (2 datasets x 2 methods x 6 seeds, mlp [8], {args.epochs} epochs); "
          f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(tabulate(rows, headers=["executor", "wall s", "vs first", "finished"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
