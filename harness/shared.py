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
import os
import tempfile
from collections.abc import Callable

ARTIFACT_DIR = "shared"


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
    only when no finished-or-running run of this experiment holds ``key``."""
    import numpy as np
    from mlflow.entities import RunTag

    # MLflow draws a tqdm bar per download; in a suite that is noise
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logger = ctx._logger
    tag = f"harness.shared.{name}"
    found = logger.client.search_runs(
        [logger.exp_id], filter_string=f"tags.`{tag}` = '{key}'", max_results=5,
        order_by=["attributes.start_time ASC"])
    for run in found:
        if run.info.run_id == logger.run_id:
            continue
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = logger.client.download_artifacts(
                    run.info.run_id, f"{ARTIFACT_DIR}/{name}.npz", tmp)
                with np.load(path) as data:
                    return {k: data[k] for k in data.files}, True
        except Exception:  # artifact missing (that run died first): try the next
            continue
    arrays = build()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{name}.npz")
        np.savez_compressed(path, **arrays)
        logger.client.log_artifact(logger.run_id, path, ARTIFACT_DIR)
    logger.client.log_batch(logger.run_id, tags=[RunTag(tag, key)])
    return arrays, False
