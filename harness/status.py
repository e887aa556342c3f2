"""``harness status``: where a suite stands, read from MLflow.

Counts per method: done, diverged, running, failed, timeout, oom,
interrupted (incl. runs left RUNNING by a dead process), pending (never
started); then the failures, one row per (status, error) with its count.
Reads MLflow the same way ``harness plan`` does (the sqlite fast path when it
can), so it is cheap enough to refresh every few seconds with ``--watch``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from harness.runstate import (
    DIVERGED,
    FAILED,
    FAILED_,
    INTERRUPTED,
    OOM,
    PENDING,
    RUNNING,
    TIMEOUT,
    status_column,
)
from harness.runstate import DONE_STATE as DONE

#: Columns, in display order (``harness.runstate.status_column``'s words).
STATES = (DONE, DIVERGED, RUNNING, FAILED_, TIMEOUT, OOM, INTERRUPTED, PENDING)
#: The error shown for a run left RUNNING by a process that is gone.
DIED = "process died while running"
_STYLE = {DONE: "green", DIVERGED: "yellow", RUNNING: "cyan", FAILED_: "red",
          TIMEOUT: "red", OOM: "red", INTERRUPTED: "magenta", PENDING: "dim"}


@dataclass
class SuiteStatus:
    """Counts per method and state, and the failures (run name, state, error)."""

    suite: str
    uri: str
    methods: dict[str, Counter] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    when: float = 0.0

    @property
    def total(self) -> Counter:
        """Counts over all methods."""
        out: Counter = Counter()
        for c in self.methods.values():
            out.update(c)
        return out

    def as_dict(self) -> dict:
        """JSON-ready view (``harness status --json``)."""
        return {"suite": self.suite, "tracking_uri": self.uri,
                "methods": {m: {s: c[s] for s in STATES} for m, c in self.methods.items()},
                "total": {s: self.total[s] for s in STATES},
                "failures": [{"run": r, "status": s, "error": e} for r, s, e in self.failures]}


def state_of(info: dict | None, now: float | None = None) -> str:
    """The column of the run that speaks for one run key (None: pending);
    the rules are ``harness.runstate``'s."""
    return status_column(info, now)


def collect(suite_file: str, uri: str | None = None, *, only: str | None = None,
            registry=None) -> SuiteStatus:
    """Read the suite's runs from MLflow and count them per method and state."""
    from harness.plan import expand_suite
    from harness.runstate import resolve_uri
    from harness.suite import load_suite
    from harness.tracking import existing_runs

    uri = resolve_uri(uri)
    suite = load_suite(suite_file, registry)
    runs = expand_suite(suite, only)
    existing = existing_runs(uri, suite.name)
    now = time.time()
    out = SuiteStatus(suite.name, uri, when=now)
    for spec in runs:
        info = existing.get(spec.run_key)
        state = state_of(info, now)
        out.methods.setdefault(spec.method, Counter())[state] += 1
        if (state in FAILED or state == INTERRUPTED) and info:
            error = info.get("error") or (DIED if info["status"] == RUNNING else "")
            out.failures.append((spec.run_name, state, error))
    return out


def render(status: SuiteStatus):
    """A rich renderable: the counts table, then the failures."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"{status.suite}  ({status.uri}, "
                             f"{time.strftime('%H:%M:%S', time.localtime(status.when))})"),
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    # names are Text, not markup: rich would read focal[loss.gamma=1.0] as a
    # style tag and print "focal"; and a name is never folded over two lines
    table.add_column("method", no_wrap=True)
    for s in STATES:
        table.add_column(s, justify="right", style=_STYLE[s], min_width=len(s), no_wrap=True)
    for method, counts in status.methods.items():
        table.add_row(Text(str(method)), *[str(counts[s]) if counts[s] else "." for s in STATES])
    total = status.total
    table.add_row(Text("total", style="bold"), *[str(total[s]) for s in STATES],
                  end_section=True)
    parts = [table]
    if status.failures:
        # a dataset that cannot be loaded fails every run on it the same way:
        # one row per (status, error), not hundreds of identical rows
        fails = Table(title="failures (--json lists every run)", box=box.SIMPLE_HEAD)
        fails.add_column("runs", justify="right", no_wrap=True)
        fails.add_column("status", no_wrap=True)
        fails.add_column("error", overflow="fold", min_width=40)
        fails.add_column("e.g.", overflow="fold", max_width=60)
        for (state, error), runs in group_failures(status.failures).items():
            example = runs[0] + (f" (+{len(runs) - 1})" if len(runs) > 1 else "")
            fails.add_row(str(len(runs)), Text(state, style=_STYLE[state]), Text(error),
                          Text(example))
        parts.append(fails)
    return Group(*parts)


def group_failures(failures: list[tuple[str, str, str]]) -> dict[tuple[str, str], list[str]]:
    """``(status, error) -> run names``, most frequent first."""
    groups: dict[tuple[str, str], list[str]] = {}
    for run, state, error in failures:
        groups.setdefault((state, error), []).append(run)
    return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))


def needed_width(status: SuiteStatus) -> int:
    """Columns the counts table needs with every method name on one line."""
    name = max([len("method"), len("total"), *(len(str(m)) for m in status.methods)])
    return name + sum(len(s) + 2 for s in STATES) + 2


def show(suite_file: str, uri: str | None = None, *, only: str | None = None,
         watch: bool = False, interval: float = 2.0, as_json: bool = False,
         registry=None, console=None) -> int:
    """Print the status once (or as JSON), or refresh it in place every
    ``interval`` seconds until Ctrl-C (``watch``).  Returns the exit status:
    1 when some run failed, timed out or ran out of memory, else 0."""
    import json

    from rich.console import Console

    status = collect(suite_file, uri, only=only, registry=registry)
    console = console or Console()
    if console.width < needed_width(status):
        # rich fits a table to the console (80 columns in a pipe) by cutting
        # names and dropping columns; a wider line is the lesser evil
        console = Console(width=needed_width(status), file=console.file)
    if as_json:
        print(json.dumps(status.as_dict(), indent=2))
    elif not watch:
        console.print(render(status))
    elif not console.is_terminal:
        # a log file or pipe keeps no live region (rich would print only at
        # the end): one table per refresh, each under its time
        try:
            while True:
                console.print(time.strftime("%Y-%m-%d %H:%M:%S"), render(status))
                console.file.flush()
                time.sleep(interval)
                status = collect(suite_file, uri, only=only, registry=registry)
        except KeyboardInterrupt:
            pass
    else:
        from rich.live import Live

        try:
            with Live(render(status), console=console, refresh_per_second=4) as live:
                while True:
                    time.sleep(interval)
                    status = collect(suite_file, uri, only=only, registry=registry)
                    live.update(render(status))
        except KeyboardInterrupt:
            pass
    total = status.total
    return 1 if sum(total[s] for s in FAILED) else 0
