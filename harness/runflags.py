"""``harness run``'s flags: executor options, device and number checks.

Executors declare their own flags: every parameter of a registered executor
factory is a ``--<param>`` option (``executor_options``; pytest's
``addoption`` and llm's ``register_commands`` are the models), so the CLI
knows no executor by name.  ``executor_from_args`` builds the chosen executor
once from those flags and ``--executor-opt``; every value the user can get
wrong is a ``UserError`` naming the flag (one line, exit status 2).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from harness.errors import UserError

#: Options of ``harness run`` itself; an executor parameter of the same name
#: is reachable through ``--executor-opt`` only.
_RUN_OPTIONS = {"tracking_uri", "only", "force", "rerun_failed", "device", "executor",
                "executor_opt", "timeout", "memory_limit", "retries", "help", "batch",
                "max_group", "quiet"}


@dataclass
class ExecutorOption:
    """One ``harness run`` flag generated from executor factory parameters."""

    name: str  # the factory parameter
    executors: list[str]  # executors that take it
    types: list[str]  # their type hints, as ``harness list`` shows them

    @property
    def flag(self) -> str:
        """``gpus_per_run`` -> ``--gpus-per-run``."""
        return "--" + self.name.replace("_", "-")


def executor_options(registry) -> dict[str, ExecutorOption]:
    """The flags the registered executors declare: each parameter of an
    executor factory becomes ``--<param>`` (one flag for a name that several
    executors share), except the names ``harness run`` uses itself.  The CLI
    knows no executor by name: a plugin's executor gets its flags the same way."""
    out: dict[str, ExecutorOption] = {}
    for name, info in sorted(registry.components("executors").items()):
        for param in info.params:
            if param.name in _RUN_OPTIONS:
                continue
            opt = out.setdefault(param.name, ExecutorOption(param.name, [], []))
            opt.executors.append(name)
            described = param.describe().partition(": ")[2].partition(" = ")[0]
            if described and described not in opt.types:
                opt.types.append(described)
    return out


def executor_from_args(args, reg):
    """Build the executor once from ``--executor``, the flags its factory
    declares and ``--executor-opt KEY=VALUE``; an option it does not take, or
    a value it rejects, is one line and exit 2."""
    import yaml

    from harness.errors import ConfigError
    from harness.runner import build_executor

    options = executor_options(reg)
    params, flags = {}, {}  # flags: option -> how the user spelled it
    for opt in options.values():
        value = getattr(args, f"x_{opt.name}", None)
        if value is not None:
            params[opt.name], flags[opt.name] = yaml.safe_load(value), f"{opt.flag} {value}"
    for opt in args.executor_opt or []:
        key, sep, value = opt.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--executor-opt {opt}: expected KEY=VALUE")
        params[key.strip()] = yaml.safe_load(value) if value.strip() else None
        flags[key.strip()] = f"--executor-opt {opt}"
    try:
        info = reg.get("executors", args.executor, "--executor")
        known = [p.name for p in info.params]
        for key in params:
            if key not in known and not info.var_kw:
                takers = options[key].executors if key in options else []
                hint = f" (an option of {', '.join(takers)})" if takers else ""
                raise UserError(f"{flags[key]}: executor {args.executor!r} has no option "
                                f"{key!r}{hint}; its options: {', '.join(known) or 'none'}")
        return build_executor(reg, args.executor, params)
    except ConfigError as exc:
        key = exc.path.rpartition(".")[2]
        raise UserError(f"{flags.get(key) or '--executor ' + args.executor}: "
                        f"{exc.message}") from None


def check_device(device: str) -> str:
    """``--device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and
    present on this machine.  torch is imported only for ``cuda``/``mps``."""
    import re

    if device not in ("auto", "cpu") and not re.fullmatch(r"cuda(?::\d+)?|mps", device):
        raise UserError(f"--device {device}: unknown device; use auto, cpu, cuda, cuda:N "
                        "or mps")
    why = missing_device(device)
    if why is not None:
        raise UserError(f"--device {device}: {why}; use --device cpu or auto")
    return device


def missing_device(device: str) -> str | None:
    """Why a well-formed ``device`` is not on this machine, or None when it is
    (``auto`` and ``cpu`` always are).  torch is imported only for
    ``cuda``/``mps``."""
    if device in ("auto", "cpu"):
        return None
    import torch

    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        return None if mps and mps.is_available() else "this torch has no MPS (Apple GPU) support"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} has no CUDA (a CPU build, or no GPU/driver)"
    n = torch.cuda.device_count()
    if ":" in device and int(device.split(":", 1)[1]) >= n:
        return f"this machine has {n} CUDA device(s) (cuda:0 to cuda:{n - 1})"
    return None


def check_suite_device(suite, device: str) -> None:
    """A suite's ``device:``, used when ``--device`` is ``auto``, must be on
    this machine (``ConfigError`` at the key): without it every run failed on
    its first tensor."""
    why = missing_device(suite.device) if device == "auto" else None
    if why is None:
        return
    why += "; `harness run --device cpu` runs the suite here"
    if suite.source is None:
        raise UserError(f"device {suite.device!r}: {why}")
    raise suite.source.error(("device",), suite.device, why)


def limit_type(name: str):
    """An argparse type from ``harness.limits.<name>`` (bad value: exit 2)."""

    def parse(text: str):
        from harness import limits

        try:
            return getattr(limits, name)(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name
    return parse


def number_type(kind: type, low: float, inclusive: bool = True):
    """An argparse type: a ``kind`` number at least ``low`` (above it when
    not ``inclusive``)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(
                f"must be {'at least' if inclusive else 'greater than'} {low}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse
