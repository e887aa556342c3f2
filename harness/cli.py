"""The ``harness`` command line.

Imports stay inside the command functions so ``harness --help``,
``harness plugins`` and ``harness plan`` start fast.
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.errors import UserError


def _blocked(args) -> set[str]:
    out = set()
    for item in args.plugin_opts or []:
        if not item.startswith("no:"):
            raise UserError(f"-p {item}: only '-p no:NAME' (block a plugin) is supported")
        out.add(item[3:])
    return out


def _registry(args):
    from harness.plugins import get_registry

    return get_registry(_blocked(args) or None)


def cmd_plugins(args) -> int:
    """List installed plugins with their distribution and hooks."""
    from tabulate import tabulate

    reg = _registry(args)
    rows = []
    for name, plugin in sorted(reg.pm.list_name_plugin(), key=lambda x: str(x[0])):
        if plugin is None:
            continue
        dist, version = reg.pm.harness_dists.get(name, (None, None))
        hooks = sorted(h.name for h in reg.pm.get_hookcallers(plugin) or [])
        rows.append([name, dist or "-", version or "-", ", ".join(hooks)])
    if args.json:
        print(json.dumps([dict(zip(["name", "distribution", "version", "hooks"],
                                   [r[0], r[1], r[2], r[3].split(", ")])) for r in rows], indent=2))
    else:
        print(tabulate(rows, headers=["plugin", "distribution", "version", "hooks"]))
    return 0


def cmd_list(args) -> int:
    """List the components of one kind (or of every kind)."""
    from tabulate import tabulate

    reg = _registry(args)
    kinds = [args.kind] if args.kind else reg.kinds()
    infos = [info for kind in kinds for info in reg.components(kind).values()]
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return 0
    rows = [[i.kind, i.name, ", ".join(p.describe() for p in i.params), i.description,
             i.provenance] for i in infos]
    print(tabulate(rows, headers=["kind", "name", "parameters", "description", "from"],
                   maxcolwidths=[None, None, 40, 60, None]))
    return 0


def cmd_datasets(args) -> int:
    """Print the catalog of a dataset source (the sets it offers), when it has one."""
    from tabulate import tabulate

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


def cmd_plan(args) -> int:
    """Show the expanded runs of a suite and which are already done."""
    from tabulate import tabulate

    from harness.runner import make_plan

    reg = _registry(args)
    plan = make_plan(args.suite, args.tracking_uri, only=args.only, force=args.force,
                     rerun_failed=args.rerun_failed, registry=reg)
    state = {s.run_key: "run" for s in plan.todo}
    state.update({s.run_key: "done" for s in plan.done})
    state.update({s.run_key: "failed (use --rerun-failed)" for s in plan.failed})
    state.update({s.run_key: "running" for s in plan.running})
    rows = [[s.dataset_label, s.method, s.seed, s.run_key, state[s.run_key]] for s in plan.runs]
    if args.json:
        print(json.dumps([s.to_dict() | {"state": state[s.run_key]} for s in plan.runs], indent=2))
        return 0
    print(tabulate(rows, headers=["dataset", "method", "seed", "run key", "state"]))
    print(f"\n{len(plan.runs)} runs: {len(plan.todo)} to run, {len(plan.done)} done, "
          f"{len(plan.failed)} failed earlier")
    return 0


#: Named run flags that become executor options (flag dest -> option name).
EXECUTOR_FLAGS = {"jobs": "jobs", "address": "address", "partition": "partition",
                  "gpus_per_run": "gpus_per_run", "cpus_per_run": "cpus_per_run",
                  "max_parallel": "max_parallel"}


def _executor(args, reg):
    """Build the executor from ``--executor``, its named flags and
    ``--executor-opt KEY=VALUE``; an option it does not take is exit 2."""
    import yaml

    from harness.errors import ConfigError
    from harness.runner import build_executor

    params, flags = {}, {}
    for dest, key in EXECUTOR_FLAGS.items():
        if getattr(args, dest, None) is not None:
            params[key], flags[key] = getattr(args, dest), "--" + dest.replace("_", "-")
    for opt in args.executor_opt or []:
        key, sep, value = opt.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--executor-opt {opt}: expected KEY=VALUE")
        params[key.strip()] = yaml.safe_load(value) if value.strip() else None
        flags[key.strip()] = f"--executor-opt {key.strip()}"
    if args.executor == "local" and "jobs" not in params:
        params["jobs"] = 1
    try:
        info = reg.get("executors", args.executor, "--executor")
        known = [p.name for p in info.params]
        for key in params:
            if key not in known and not info.var_kw:
                raise UserError(f"{flags.get(key, key)}: executor {args.executor!r} has no "
                                f"option {key!r}; its options: {', '.join(known) or 'none'}")
        return build_executor(reg, args.executor, params)
    except ConfigError as exc:
        flag = flags.get(exc.path.rpartition(".")[2]) or f"--executor {args.executor}"
        raise UserError(f"{flag}: {exc.message}") from None


def cmd_run(args) -> int:
    """Run a suite (resuming), then print the summary and the leaderboard."""
    from rich.console import Console

    from harness.limits import Limits
    from harness.runner import make_plan, run_plan
    from harness.tracking import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    reg = _registry(args)
    executor = _executor(args, reg)
    limits = Limits(args.timeout, args.memory_limit)
    console = Console(stderr=True)
    plan = make_plan(args.suite, uri, only=args.only, force=args.force,
                     rerun_failed=args.rerun_failed, registry=reg)
    running = f", {len(plan.running)} running in another process (not started twice)" \
        if plan.running else ""
    print(f"suite {plan.suite.name}: {len(plan.runs)} runs, {len(plan.todo)} to run, "
          f"{len(plan.done)} already done (skipped), {len(plan.failed)} failed earlier"
          f"{' (use --rerun-failed)' if plan.failed else ''}{running}; tracking {uri}",
          flush=True)
    if not plan.todo:
        print("nothing to train: every run is already done" if not plan.running else
              "nothing to train here: the remaining runs are running elsewhere")
    try:
        counts = run_plan(plan, uri, jobs=args.jobs or 1, device=args.device,
                          executor=executor, blocked=tuple(_blocked(args)),
                          console=console, registry=reg, limits=limits, retries=args.retries)
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are kept; run the same command again to resume",
              file=sys.stderr)
        return 130
    for label, why in sorted(plan.unavailable.items()):
        print(f"unavailable: {label}: {why}")
    failed = sum(counts[s] for s in ("failed", "timeout", "oom")) + len(plan.failed)
    extra = "".join(f", {counts[s]} {s}" for s in ("timeout", "oom", "interrupted") if counts[s])
    print(f"done: {counts['finished']} finished, {counts['diverged']} diverged, "
          f"{counts['skipped']} skipped, {failed} failed{extra}"
          f"{f', {len(plan.running)} running elsewhere' if plan.running else ''}")
    if counts["finished"] + counts["diverged"] + counts["skipped"]:
        _leaderboard(plan.suite, uri, counts)
    return 1 if failed or counts["interrupted"] else 0


def cmd_status(args) -> int:
    """Show done / running / failed / pending runs per method, from MLflow."""
    from harness.status import show

    return show(args.suite, args.tracking_uri, only=args.only, watch=args.watch,
                interval=args.interval, as_json=args.json, registry=_registry(args))


def _leaderboard(suite, uri: str, counts) -> None:
    """Print the leaderboard; log the full report to a suite-level MLflow run."""
    import tempfile

    from harness.report import build_report, console_leaderboard
    from harness.tracking import log_suite_run

    print(console_leaderboard(suite.name, tracking_uri=uri, metric=suite.rank_by))
    if not counts["finished"] + counts["diverged"]:
        return  # nothing new: the last suite run already holds this report
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out = build_report(suite.file, tracking_uri=uri, out=tmp)
        except Exception as exc:  # a report problem must not hide the finished runs
            print(f"warning: report not built: {type(exc).__name__}: {exc}", file=sys.stderr)
            return
        log_suite_run(uri, suite.name, str(out), dict(counts))


def cmd_report(args) -> int:
    """Build a report directory from MLflow runs."""
    from harness.report import build_report

    out = build_report(args.suite, experiment=args.experiment, tracking_uri=args.tracking_uri,
                       metric=args.metric, formats=args.format.split(","), out=args.out,
                       baseline=args.baseline, compare=args.compare or [])
    print(f"report written to {out}")
    return 0


def _parsed(name: str):
    """An argparse type from ``harness.limits.<name>`` (bad value: exit 2)."""

    def parse(text: str):
        from harness import limits

        try:
            return getattr(limits, name)(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``harness``."""
    p = argparse.ArgumentParser(prog="harness", description="Benchmark harness for training "
                                "methods: suites in YAML, plugins via pluggy, runs in MLflow.")
    p.add_argument("-p", dest="plugin_opts", action="append", metavar="no:NAME",
                   help="block plugin NAME (repeatable)")
    sub = p.add_subparsers(dest="command", required=True)

    def suite_cmd(name, fn, help_):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("suite", help="suite YAML file")
        sp.add_argument("--tracking-uri", help="MLflow tracking URI (default: "
                        "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
        sp.add_argument("--only", metavar="GLOB", help="only runs whose dataset/method/seed "
                        "matches GLOB")
        sp.add_argument("--force", action="store_true", help="rerun finished runs too")
        sp.add_argument("--rerun-failed", action="store_true", help="rerun failed runs")
        sp.set_defaults(fn=fn)
        return sp

    run = suite_cmd("run", cmd_run, "run a suite (skips runs already finished)")
    run.add_argument("--jobs", type=int, help="local worker processes (default 1)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    ex = run.add_argument_group("executors", "where runs execute; each option must be one the "
                                "executor takes (harness list executors)")
    ex.add_argument("--executor", default="local", help="local (default), ray, slurm, or a "
                    "plugin's")
    ex.add_argument("--executor-opt", action="append", metavar="KEY=VALUE",
                    help="any executor option, e.g. local_cpus=4, slurm_account=abc "
                    "(repeatable)")
    ex.add_argument("--address", help="ray: cluster address (auto: the running cluster, "
                    "else a local one)")
    ex.add_argument("--partition", help="slurm: partition")
    ex.add_argument("--gpus-per-run", type=float, help="ray/slurm: GPUs per run")
    ex.add_argument("--cpus-per-run", type=float, help="ray/slurm: CPUs per run")
    ex.add_argument("--max-parallel", type=int, help="ray/slurm: runs at once")
    lim = run.add_argument_group("limits", "each run then gets its own supervised process")
    lim.add_argument("--timeout", type=_parsed("parse_duration"), metavar="DURATION",
                     help="per run, e.g. 90s, 30m, 2h (killed: status timeout)")
    lim.add_argument("--memory-limit", type=_parsed("parse_memory"), metavar="SIZE",
                     help="RSS cap per run, e.g. 500M, 8G (killed: status oom)")
    lim.add_argument("--retries", type=int, default=0, metavar="N",
                     help="retry infrastructure failures (worker died, CUDA error, tracking "
                     "unreachable) up to N times; method errors are not retried")
    plan = suite_cmd("plan", cmd_plan, "dry run: the expanded runs and their state")
    plan.add_argument("--json", action="store_true")

    sp = sub.add_parser("status", help="done / running / failed / pending runs per method")
    sp.add_argument("suite", help="suite YAML file")
    sp.add_argument("--tracking-uri")
    sp.add_argument("--only", metavar="GLOB")
    sp.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    sp.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_status)

    sp = sub.add_parser("plugins", help="installed plugins")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_plugins)
    sp = sub.add_parser("list", help="registered components of one kind")
    sp.add_argument("kind", nargs="?", help="losses, datasets, metrics, ... (default: all)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_list)
    sp = sub.add_parser("datasets", help="the sets a dataset source offers (e.g. keel)")
    sp.add_argument("source", help="a dataset source with a catalog")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(fn=cmd_datasets)

    sp = sub.add_parser("report", help="leaderboards from MLflow runs")
    sp.add_argument("suite", nargs="?", help="suite YAML file")
    sp.add_argument("--experiment", help="MLflow experiment (instead of a suite file)")
    sp.add_argument("--tracking-uri")
    sp.add_argument("--metric", help="primary metric (default: the suite's rank_by)")
    sp.add_argument("--format", default="md,html,latex,csv")
    sp.add_argument("--out", help="output directory (default reports/<suite>)")
    sp.add_argument("--baseline", help="reference method for wins/ties/losses")
    sp.add_argument("--compare", action="append", metavar="SUITE",
                    help="another suite to compare on shared datasets (repeatable)")
    sp.set_defaults(fn=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``harness`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
