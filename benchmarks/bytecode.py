"""Compile the checkout's bytecode before a benchmark times fresh processes.

An installed package ships (or writes on first import) its ``.pyc`` files; a
checkout run with ``PYTHONDONTWRITEBYTECODE=1`` set, as some sandboxes and
CI images do, compiles every changed module again in every process (~0.1 s
for ``harness plugins`` here), which a user never pays.
"""

from __future__ import annotations

import compileall
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compile_checkout() -> None:
    """Write current ``__pycache__`` files for ``harness/`` and ``plugins/``."""
    before = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    import sys

    was = sys.dont_write_bytecode
    sys.dont_write_bytecode = False
    try:
        for package in ("harness", "plugins"):
            compileall.compile_dir(ROOT / package, quiet=1)
    finally:
        sys.dont_write_bytecode = was
        if before is not None:
            os.environ["PYTHONDONTWRITEBYTECODE"] = before
