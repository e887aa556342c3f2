"""The ``harness`` command line.

Imports stay inside the command functions so ``harness --help``,
``harness plugins`` and ``harness plan`` start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from harness.errors import UserError
from harness.options import RunOptions
from harness.runflags import (
    ExecutorOption,
    check_device,
    check_suite_device,
    executor_from_args,
    executor_options,
    limit_type,
    number_type,
)

__all__ = ["build_parser", "check_device", "main"]


def _blocked(args) -> set[str]:
    out = set()
    for item in args.plugin_opts or []:
        if not item.startswith("no:"):
            raise UserError(f"-p {item}: only '-p no:NAME' (block a plugin) is supported")
        out.add(item[3:])
    return out


def _registry(args):
    from harness.plugins import get_registry

    if getattr(args, "registry", None) is None:
        args.registry = get_registry(_blocked(args) or None)
    return args.registry


def cmd_plugins(args) -> int:
    """List installed plugins with their distribution and hooks."""
    from tabulate import tabulate

    from harness.plugins import make_plugin_manager

    # tolerant: a broken plugin is listed (marked), not fatal, so the others show
    pm = make_plugin_manager(_blocked(args) or None, strict=False)
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda x: str(x[0])):
        if plugin is None:
            continue
        dist, version = pm.harness_dists.get(name, (None, None))
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        rows.append([name, dist or "-", version or "-", ", ".join(hooks)])
    for name, (dist, _module, message) in sorted(pm.harness_broken.items()):
        rows.append([name, dist or "-", "-", f"BROKEN: {message}"])
    if args.json:
        print(json.dumps([dict(zip(["name", "distribution", "version", "hooks"],
                                   [r[0], r[1], r[2], r[3].split(", ")])) for r in rows], indent=2))
    else:
        print(tabulate(rows, headers=["plugin", "distribution", "version", "hooks"],
                       maxcolwidths=[None, None, None, 80]))
    return 1 if pm.harness_broken else 0


def cmd_list(args) -> int:
    """List the components of one kind (or of every kind)."""
    from tabulate import tabulate

    reg = _registry(args)
    kinds = [args.kind] if args.kind else sorted(reg.kinds())
    infos = [info for kind in kinds
             for _, info in sorted(reg.components(kind).items(), key=lambda kv: str(kv[0]))]
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return 0
    if args.kind == "metrics":  # which way is better decides every ranking
        from harness.metrics import better_word

        lead, headers = (lambda i: [i.name, better_word(i.factory)]), ["metric", "better"]
    else:
        lead, headers = (lambda i: [i.kind, i.name]), ["kind", "name"]
    rows = [[*lead(i), ", ".join(p.describe() for p in i.params), i.description, i.provenance]
            for i in infos]
    print(tabulate(rows, headers=[*headers, "parameters", "description", "from"],
                   maxcolwidths=[None, None, 40, 60, None]))
    return 0


def cmd_datasets(args) -> int:
    """Print the catalog of a dataset source (the sets it offers), when it has one;
    ``datasets fetch NAME`` downloads a source's data instead."""
    from tabulate import tabulate

    if args.source == "fetch":
        return cmd_fetch(args)
    if args.name is not None:
        raise UserError(f"unexpected argument {args.name!r}: `harness datasets SOURCE` "
                        f"lists a catalog, `harness datasets fetch SOURCE` downloads")
    info = _registry(args).get("datasets", args.source)
    catalog = getattr(info.factory, "catalog", None)
    if catalog is None:
        raise UserError(f"dataset source {args.source!r} has no catalog of sets")
    rows = catalog()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(tabulate(rows, headers="keys", floatfmt=".2f"))
    return 0


def cmd_fetch(args) -> int:
    """Download a dataset source's published files through its factory's
    ``fetch(root, progress)`` (checksum, unpack, idempotent; the source knows
    its URLs and default folder, the core none)."""
    from pathlib import Path

    if args.name is None:
        raise UserError("`harness datasets fetch` needs a dataset source name, e.g. "
                        "`harness datasets fetch cifar10 --root DIR`")
    info = _registry(args).get("datasets", args.name)
    fetch = getattr(info.factory, "fetch", None)
    if fetch is None:
        raise UserError(f"dataset source {args.name!r} has nothing to fetch (no fetch())")
    # None: the source's own default data folder
    root = Path(args.root).expanduser() if args.root else None
    shown = []  # a progress line was drawn on the terminal: end it

    def progress(label: str, done: int, total: int | None) -> None:
        if sys.stderr.isatty():
            of = f" of {total / 2**20:.1f}" if total else ""
            print(f"\r{label}: {done / 2**20:.1f}{of} MiB", end="", file=sys.stderr, flush=True)
            shown.append(True)

    try:
        message = fetch(root, progress)
    finally:
        if shown:
            print(file=sys.stderr)
    print(message)
    return 0


def input_retries(plan) -> list[str]:
    """Run keys planned again because their last run failed on its input."""
    from harness.runstate import is_input_failure

    return [s.run_key for s in plan.todo if is_input_failure(plan.existing.get(s.run_key, {}))]


def plan_states(plan) -> dict[str, str]:
    """run key -> ``harness plan``'s state column: what ``harness run`` does
    with the run, in the status words of ``harness status`` and the report
    (``run (interrupted)`` for a run whose process died)."""
    import time

    from harness import runstate

    inputs = set(input_retries(plan))
    now = time.time()
    state = {}
    for s in plan.todo:
        column = runstate.status_column(plan.existing.get(s.run_key), now)
        why = "failed on its input" if s.run_key in inputs else column
        state[s.run_key] = "run" if column == runstate.PENDING else f"run ({why})"
    for s in plan.done:
        state[s.run_key] = runstate.status_column(plan.existing.get(s.run_key), now)
    for s in plan.failed:
        column = runstate.status_column(plan.existing.get(s.run_key), now)
        state[s.run_key] = f"{column} (use --rerun-failed)"
    for s in plan.running:
        state[s.run_key] = runstate.RUNNING
    return state


def cmd_plan(args) -> int:
    """Show the expanded runs of a suite and which are already done."""
    from tabulate import tabulate

    from harness.runner import make_plan

    reg = _registry(args)
    plan = make_plan(args.suite, args.tracking_uri, only=args.only, force=args.force,
                     rerun_failed=args.rerun_failed, registry=reg)
    state = plan_states(plan)
    rows = [[s.dataset_label, s.method, s.seed, s.run_key, state[s.run_key]] for s in plan.runs]
    if args.json:
        print(json.dumps([s.to_dict() | {"state": state[s.run_key]} for s in plan.runs], indent=2))
        return 0
    print(tabulate(rows, headers=["dataset", "method", "seed", "run key", "state"]))
    print(f"\n{len(plan.runs)} runs: {len(plan.todo)} to run, {len(plan.done)} done, "
          f"{len(plan.failed)} failed earlier")
    options = batch_options(args)
    if args.groups or args.batch or args.max_group is not None:
        from harness.estimate import describe as describe_cost
        from harness.estimate import estimate
        from harness.groups import describe, group_runs

        if not options.batch:
            print("\nbatch mode off (--no-batch): every run trains alone")
            return 0
        grouping = group_runs(plan.todo, reg, args.max_group, inexact=options.batch_all)
        print("\nbatch mode:")
        for line in describe(grouping) + describe_cost(estimate(grouping.items, args.tracking_uri),
                                                       len(plan.todo)):
            print(f"  {line}")
    return 0


def batch_options(args) -> RunOptions:
    """The batch flags of ``run``/``plan`` (``--no-batch``, ``--batch``,
    ``--max-group``) as ``RunOptions``; contradicting ones are a UserError."""
    if args.no_batch and (args.batch or args.max_group is not None):
        raise UserError("--no-batch trains every run alone: it cannot go with "
                        + ("--batch" if args.batch else "--max-group"))
    return RunOptions(batch=not args.no_batch, batch_all=args.batch, max_group=args.max_group)


def run_options(args, reg) -> RunOptions:
    """``harness run``'s flags as ``harness.options.RunOptions``."""
    batch = batch_options(args)
    return RunOptions(tracking_uri=args.tracking_uri, only=args.only, force=args.force,
                      rerun_failed=args.rerun_failed, device=check_device(args.device),
                      executor=executor_from_args(args, reg), blocked=tuple(_blocked(args)),
                      timeout=args.timeout, memory_limit=args.memory_limit,
                      retries=args.retries, batch=batch.batch, batch_all=batch.batch_all,
                      max_group=args.max_group, quiet=args.quiet)


def cmd_run(args) -> int:
    """Run a suite (resuming), then print the summary and the leaderboard."""
    from rich.console import Console

    from harness import runstate
    from harness.progress import outlive_the_reader
    from harness.runner import make_plan
    from harness.session import run_suite_plan

    outlive_the_reader()
    reg = _registry(args)
    options = run_options(args, reg)
    uri = options.uri
    plan = make_plan(args.suite, uri, only=args.only, force=args.force,
                     rerun_failed=args.rerun_failed, registry=reg)
    if plan.todo:
        check_suite_device(plan.suite, options.device)
    running = f", {len(plan.running)} running in another process (not started twice)" \
        if plan.running else ""
    retried = len(input_retries(plan))
    if retried:
        running += f", {retried} of those to run failed earlier on their input"
    print(f"suite {plan.suite.name}: {len(plan.runs)} runs, {len(plan.todo)} to run, "
          f"{len(plan.done)} already done (skipped), {len(plan.failed)} failed earlier"
          f"{' (use --rerun-failed)' if plan.failed else ''}{running}; tracking {uri}",
          flush=True)
    if not plan.todo:
        print("nothing to train: every run is already done" if not plan.running else
              "nothing to train here: the remaining runs are running elsewhere")
    try:
        summary = run_suite_plan(plan, options, registry=reg, console=Console(stderr=True))
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are kept; run the same command again to resume",
              file=sys.stderr)
        return 130
    for label, why in sorted(summary.unavailable.items()):
        print(f"unavailable: {label}: {why}")
    for label, why in sorted(summary.input_errors.items()):
        print(f"input error: {label}: {why} (fix it and run again: these runs are retried "
              "without --rerun-failed)")
    counts = summary.counts
    extra = "".join(f", {counts[s]} {s}" for s in (runstate.TIMEOUT, runstate.OOM,
                                                  runstate.INTERRUPTED) if counts.get(s))
    print(f"done: {counts.get(runstate.FINISHED, 0)} finished, "
          f"{counts.get(runstate.DIVERGED, 0)} diverged, {counts.get('skipped', 0)} skipped, "
          f"{summary.failed} failed{extra}"
          f"{f', {len(plan.running)} running elsewhere' if plan.running else ''}")
    if summary.leaderboard is not None:
        print(summary.leaderboard, flush=True)
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0 if summary.ok else 1


def cmd_status(args) -> int:
    """Show done / running / failed / pending runs per method, from MLflow."""
    from harness.status import show

    return show(args.suite, args.tracking_uri, only=args.only, watch=args.watch,
                interval=args.interval, as_json=args.json, registry=_registry(args))


def cmd_report(args) -> int:
    """Build a report directory from MLflow runs."""
    from harness.report import build_report

    if not args.suite and not args.experiment:
        raise UserError("harness report needs a suite file (harness report suites/x.yaml), a "
                        "suite name or --experiment NAME")
    out = build_report(args.suite, experiment=args.experiment, tracking_uri=args.tracking_uri,
                       metric=args.metric, formats=args.format.split(","), out=args.out,
                       baseline=args.baseline, compare=args.compare or [],
                       include_stale=args.include_stale,
                       registry=_registry(args) if args.suite else None)
    print(f"report written to {out}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are ``UserError``s: one line, ``error: <why> (see
    harness run --help)``, exit status 2, like every other input mistake."""

    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def build_parser(executor_opts: dict[str, ExecutorOption] | None = None
                 ) -> argparse.ArgumentParser:
    """The argument parser of ``harness``; ``executor_opts``
    (``executor_options``) adds the flags the executors declare to ``run``."""
    p = _Parser(prog="harness", description="Benchmark harness for training "
                "methods: suites in YAML, plugins via pluggy, runs in MLflow.")
    p.add_argument("-p", dest="plugin_opts", action="append", metavar="no:NAME",
                   help="block plugin NAME (repeatable)")
    sub = p.add_subparsers(dest="command", required=True)

    def suite_cmd(name, fn, help_):
        # no abbreviations: executor plugins add flags, and "--max" must not
        # change meaning when one does
        sp = sub.add_parser(name, help=help_, allow_abbrev=False)
        sp.add_argument("suite", help="suite YAML file")
        sp.add_argument("--tracking-uri", help="MLflow tracking URI (default: "
                        "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
        sp.add_argument("--only", metavar="GLOB", help="only runs whose dataset/method/seed "
                        "matches GLOB")
        sp.add_argument("--force", action="store_true", help="rerun finished runs too")
        sp.add_argument("--rerun-failed", action="store_true", help="rerun failed runs")
        sp.add_argument("--no-batch", dest="no_batch", action="store_true",
                        help="train every run alone (by default the runs that differ only "
                        "in seed and numeric hyperparameters train together when that "
                        "leaves their numbers unchanged)")
        sp.add_argument("--batch", action="store_true", help="also train together the runs "
                        "whose float32 numbers a group changes within rounding (cnn)")
        sp.add_argument("--max-group", type=number_type(int, 1), metavar="N",
                        help="at most N runs per group")
        sp.set_defaults(fn=fn)
        return sp

    run = suite_cmd("run", cmd_run, "run a suite (skips runs already finished)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    run.add_argument("-q", "--quiet", action="store_true", help="no epoch progress lines "
                     "(runs longer than a few seconds show their epoch, rate and time left)")
    ex = run.add_argument_group("executors", "where runs execute; the options below are the "
                                "parameters of the executors' factories (harness list "
                                "executors), each valid for the executors named")
    ex.add_argument("--executor", default="local", help="local (default), ray, slurm, or a "
                    "plugin's")
    ex.add_argument("--executor-opt", action="append", metavar="KEY=VALUE",
                    help="any executor option, e.g. local_cpus=4, slurm_account=abc "
                    "(repeatable)")
    for opt in (executor_opts or {}).values():
        ex.add_argument(opt.flag, dest=f"x_{opt.name}", metavar=opt.name.upper(),
                        help=f"{', '.join(opt.executors)}"
                        + (f" ({' | '.join(opt.types)})" if opt.types else ""))
    lim = run.add_argument_group("limits", "each run then gets its own supervised process")
    lim.add_argument("--timeout", type=limit_type("parse_duration"), metavar="DURATION",
                     help="per run, e.g. 90s, 30m, 2h (killed: status timeout)")
    lim.add_argument("--memory-limit", type=limit_type("parse_memory"), metavar="SIZE",
                     help="RSS cap per run, e.g. 500M, 8G (killed: status oom)")
    lim.add_argument("--retries", type=number_type(int, 0), default=0, metavar="N",
                     help="retry infrastructure failures (worker died, CUDA error, tracking "
                     "unreachable) up to N times; method errors are not retried")
    plan = suite_cmd("plan", cmd_plan, "dry run: the expanded runs and their state")
    plan.add_argument("--json", action="store_true", help="print the runs as JSON: each "
                      "resolved run spec with its state")
    plan.add_argument("--groups", action="store_true", help="also show the work items "
                      "`harness run` makes with these flags: the groups and why the other "
                      "runs train alone (builds the models: imports torch)")

    sp = sub.add_parser("status", help="done / running / failed / pending runs per method")
    sp.add_argument("suite", help="suite YAML file")
    sp.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    sp.add_argument("--only", metavar="GLOB", help="only runs whose dataset/method/seed "
                    "matches GLOB")
    sp.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    sp.add_argument("--interval", type=number_type(float, 0, inclusive=False), default=2.0,
                    help="seconds between refreshes")
    sp.add_argument("--json", action="store_true", help="print the counts and failures as "
                    "JSON")
    sp.set_defaults(fn=cmd_status)

    sp = sub.add_parser("plugins", help="installed plugins")
    sp.add_argument("--json", action="store_true", help="print the plugins as JSON")
    sp.set_defaults(fn=cmd_plugins)
    sp = sub.add_parser("list", help="registered components of one kind")
    sp.add_argument("kind", nargs="?", help="losses, datasets, metrics, ... (default: all)")
    sp.add_argument("--json", action="store_true", help="print the components as JSON")
    sp.set_defaults(fn=cmd_list)
    sp = sub.add_parser("datasets", help="the sets a dataset source offers (e.g. keel); "
                        "`datasets fetch NAME [--root DIR]` downloads a source's data")
    sp.add_argument("source", help="a dataset source with a catalog, or `fetch`")
    sp.add_argument("name", nargs="?", help="with fetch: the dataset source to download")
    sp.add_argument("--root", help="with fetch: the data folder (default: $HARNESS_DATA or "
                    "~/.cache/harness/data)")
    sp.add_argument("--json", action="store_true", help="print the catalog as JSON")
    sp.set_defaults(fn=cmd_datasets)

    sp = sub.add_parser("report", help="leaderboards from MLflow runs")
    sp.add_argument("suite", nargs="?", help="suite YAML file")
    sp.add_argument("--experiment", help="MLflow experiment (instead of a suite file)")
    sp.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    sp.add_argument("--metric", help="primary metric (default: the suite's rank_by)")
    sp.add_argument("--format", default="md,html,latex,csv",
                    help="comma-separated, any of: md, html, latex, csv (default: all four)")
    sp.add_argument("--out", help="output directory (default reports/<suite>)")
    sp.add_argument("--include-stale", action="store_true",
                    help="also count runs whose run key the suite file's current plan no "
                         "longer has (earlier configurations)")
    sp.add_argument("--baseline", help="reference method for wins/ties/losses")
    sp.add_argument("--compare", action="append", metavar="SUITE",
                    help="another suite to compare on shared datasets (repeatable)")
    sp.set_defaults(fn=cmd_report)
    return p


def _command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option
    or the value of ``-p``)."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "-p":
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; for ``run`` the registry is loaded first (once, with
    ``-p no:NAME`` applied) so the executors' flags exist."""
    pre = _Parser(prog="harness", add_help=False)
    pre.add_argument("-p", dest="plugin_opts", action="append")
    known, _ = pre.parse_known_args(argv)
    registry = _registry(known) if _command(argv) == "run" else None
    args = build_parser(executor_options(registry) if registry else None).parse_args(argv)
    args.registry = registry
    return args


def _quiet_libraries() -> None:
    """MLflow and alembic log INFO lines (``Creating initial MLflow database
    tables...``) that would open the output of every command."""
    import logging

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``harness`` console script: a mistake in the input
    is one line on stderr and exit status 2; a closed pipe (``harness plan
    ... | head``) ends quietly with status 141, as a program killed by SIGPIPE."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _quiet_libraries()
    try:
        args = _parse(argv)
        return args.fn(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away: drop what is still buffered instead of
        # failing again at interpreter exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def console_main() -> None:
    """The ``harness`` console script: ``main``, then an exit that skips the
    interpreter's teardown of torch, mlflow and pandas (0.4-1.5 s of freeing
    modules nothing reads again).  Threads that keep the process alive and
    ``atexit`` handlers (multiprocessing's, logging's) run first; stdout and
    stderr are flushed."""
    code = main()
    exit_now(code)


def exit_now(code: int | None) -> None:
    """End the process with ``code`` as ``sys.exit`` would (None is 0),
    without tearing its modules down."""
    import atexit
    import threading

    # The interpreter's own first step at exit: threading's exit hooks (they
    # stop concurrent.futures' idle workers, such as MLflow's artifact
    # threads), then a join of every non-daemon thread.  Joining those
    # workers without the hooks waited forever.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    else:  # an interpreter without the hook: join what can end by itself
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed pipe or closed stream: nothing to lose
            pass
    os._exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    console_main()
