"""Arrays shared between runs of a suite, stored in MLflow.

Some tasks need an expensive intermediate that several runs have in common:
the calibration task trains one classifier per (dataset, seed) and every
calibrator reuses its logits.  The first run that needs it builds it and logs
it as an artifact with the tag ``harness.shared.<name>`` = key; later runs —
in any process or on any machine that sees the same tracking store — find it
by that tag and download it.  MLflow stays the single source of truth.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable


def shared_key(*parts) -> str:
    """A stable hash of JSON-able ``parts`` (configs, seeds)."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def code_identity() -> str:
    """harness version and git commit (empty outside a checkout)."""
    from harness import __version__
    from harness.tracking import git_commit

    return f"{__version__}+{git_commit()}"


def shared_arrays(ctx, name: str, key: str, build: Callable[[], dict]) -> tuple[dict, bool]:
    """Return (arrays, reused).  ``build()`` -> ``{name: numpy array}`` runs
    only when no run of this experiment holds ``key`` (looked up and stored
    through the run's logger, ``harness.runlog.RunLogger``, in this process
    or through the store writer alike)."""
    found = ctx.logger.find_shared(name, key)
    if found is not None:
        return found, True
    arrays = build()
    ctx.logger.store_shared(name, key, arrays)
    return arrays, False
