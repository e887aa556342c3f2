"""Which runs a report counts, and what the runs it expected are doing.

A suite file is reported as it is now: its current plan
(``harness.plan.expand_suite``) names the run keys that count.  Runs of the
same suite name whose run key the plan no longer has -- an earlier
configuration of a method, a dropped dataset -- are left out and counted
(``--include-stale`` pools them back in), so a report never shows a number
from a configuration the suite no longer has.  Every planned run is in one
state of ``harness status``'s vocabulary (``harness.runstate.status_column``:
done, diverged, running, failed, timeout, oom, interrupted, pending), so a
missing cell says why it is missing and the leaderboard says how complete it
is ("24 of 888 runs: partial").

A report of an MLflow experiment (no suite file) has no plan: every run in
the experiment counts, and the report says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from harness import runstate
from harness.status import DONE, PENDING, STATES


@dataclass
class Plan:
    """The run keys a report counts; labels when they come from a suite file."""

    #: run key -> (dataset label, method label, seed); None when only keys are known
    keys: dict[str, tuple[str, str, int] | None]
    #: where the keys come from, for the report's notes
    source: str = "the suite's plan"
    #: which datasets are conditions of one dataset (``conditions.Groups``; None: unknown)
    groups: object = None

    @property
    def total(self) -> int:
        """Number of planned runs."""
        return len(self.keys)

    @property
    def datasets(self) -> list[str]:
        """Planned dataset labels, in plan order."""
        return list(dict.fromkeys(v[0] for v in self.keys.values() if v))

    @property
    def methods(self) -> list[str]:
        """Planned method labels (sweep points included), in plan order."""
        return list(dict.fromkeys(v[1] for v in self.keys.values() if v))


def from_suite_file(path: str, registry=None) -> Plan:
    """The current plan of a suite file (validated as ``harness run`` would:
    a ``ConfigError`` names the file, key and value)."""
    from harness.plan import expand_suite
    from harness.report import conditions
    from harness.suite import load_suite

    suite = load_suite(path, registry)
    keys = {s.run_key: (s.dataset_label, s.method, s.seed) for s in expand_suite(suite)}
    return Plan(keys, f"the current plan of `{path}`", conditions.from_suite(suite, registry))


def from_run_keys(run_keys: Collection[str]) -> Plan:
    """A plan known only by its run keys (the end of ``harness run``)."""
    return Plan(dict.fromkeys(run_keys), "the suite's current plan")


@dataclass
class Scope:
    """What restricting the runs to a plan did, and where the plan stands."""

    plan: Plan | None
    #: kept runs whose run key the plan does not have
    n_stale: int = 0
    #: whether those runs were kept anyway (``--include-stale``)
    include_stale: bool = False
    #: planned runs per state (``status_column`` words)
    states: Counter = field(default_factory=Counter)
    #: (dataset, method) -> states of its planned runs
    cells: dict[tuple[str, str], Counter] = field(default_factory=dict)

    @property
    def n_done(self) -> int:
        """Planned runs with a result (finished or diverged)."""
        return self.states[DONE] + self.states[runstate.DIVERGED]

    def completeness(self) -> str | None:
        """``24 of 888 runs: partial``; None without a plan."""
        if self.plan is None:
            return None
        word = "complete" if self.n_done == self.plan.total else "partial"
        return f"{self.n_done} of {self.plan.total} runs: {word}"

    def notes(self, experiment: str) -> list[str]:
        """What the report counts, said once at the top of its notes."""
        if self.plan is None:
            return [f"Report of MLflow experiment `{experiment}`: every run in it counts, "
                    "whatever suite configuration produced it (a suite file reports only "
                    "the runs of its current plan)."]
        out = [f"Counted: the {self.plan.total} planned runs of {self.plan.source}"
               f" ({self.completeness()}; {state_summary(self.states)})."]
        if self.n_stale and self.include_stale:
            out.append(f"{self.n_stale} run(s) of earlier configurations included "
                       "(`--include-stale`): their numbers may come from settings the suite "
                       "no longer has.")
        elif self.n_stale:
            out.append(f"{self.n_stale} run(s) of earlier configurations ignored; "
                       "`--include-stale` to show them.")
        return out


def state_summary(states: Counter) -> str:
    """``30 done, 2 interrupted, 4 pending`` in ``harness status``'s column order."""
    parts = [f"{states[s]} {s}" for s in STATES if states[s]]
    parts += [f"{n} {s}" for s, n in sorted(states.items()) if s not in STATES and n]
    return ", ".join(parts) or "nothing planned"


def run_state(row) -> str:
    """The ``status_column`` word of one loaded run (a row of ``load_runs``)."""
    return runstate.status_column({"status": row.get("status"), "pid": row.get("pid"),
                                   "heartbeat": row.get("heartbeat"),
                                   "start": row.get("start_time")})


def restrict(runs, plan: Plan | None, include_stale: bool = False):
    """``(runs that count, Scope)``: without a plan every run counts; with
    one, runs whose key the plan lacks are dropped (counted in ``n_stale``)
    unless ``include_stale``, and every planned key gets its state (pending
    when no run has it)."""
    if plan is None:
        return runs, Scope(None)
    planned = runs["run_key"].isin(plan.keys)
    scope = Scope(plan, n_stale=int((~planned).sum()), include_stale=include_stale)
    by_key = {row["run_key"]: row for row in runs[planned].to_dict("records")}
    for key, label in plan.keys.items():
        row = by_key.get(key)
        state = run_state(row) if row is not None else PENDING
        scope.states[state] += 1
        if label is None and row is not None:
            label = (row["dataset"], row["method"], row["seed"])
        if label is not None:
            scope.cells.setdefault((label[0], label[1]), Counter())[state] += 1
    return (runs if include_stale else runs[planned]), scope


def cell_reasons(runs, scope: Scope) -> dict[tuple[str, str], str]:
    """(dataset, method) -> why it has fewer results than runs, e.g. ``2
    failed, 1 pending``: the planned runs' states, or (no plan) the statuses
    of the runs that did not finish."""
    if scope.plan is not None:
        counts = scope.cells
    else:
        counts = {}
        for row in runs.to_dict("records"):
            counts.setdefault((row["dataset"], row["method"]), Counter())[run_state(row)] += 1
    out = {}
    for cell, states in counts.items():
        bad = Counter({s: n for s, n in states.items() if s != DONE})
        if bad:
            out[cell] = state_summary(bad)
    return out
