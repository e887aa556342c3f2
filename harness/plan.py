"""Planning: expand a suite into fully resolved runs with stable keys.

A ``RunSpec`` is everything one run needs.  Its run key is a hash of the
resolved config plus the suite name, so a run is recognised across
invocations (resume) no matter the order of the suite's entries.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import asdict, dataclass, field

from harness.suite import Suite, set_dotted


def derive_seed(seed: int, *axis: object) -> int:
    """A 31-bit seed for one axis (``"split"`` and the dataset's identity,
    ``"init"``, ``"order"``) of a run's seed.  Hash-derived, so adding a
    method or a dataset never shifts another run's seeds."""
    text = json.dumps([seed, *map(str, axis)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


@dataclass
class RunSpec:
    """One (dataset, method, sweep point, seed) run, fully resolved.

    ``seeds`` holds the per-axis seeds: ``split`` (depends on the dataset's
    content, not its display label, and the seed, so every method sees the
    same split), ``init`` and ``order``
    (model initialisation and batch order, shared by methods for paired
    comparisons)."""

    suite: str
    task: str
    dataset: dict
    method: str
    point: dict
    seed: int
    config: dict
    metrics: list[str]
    rank_by: str
    seeds: dict = field(default_factory=dict)
    run_key: str = ""
    #: [kind, name] of every registered component the config uses (provenance).
    components: list = field(default_factory=list)
    #: The suite's ``device:`` (auto, cpu, cuda, cuda:N, mps).
    device: str = "auto"
    #: Logged metric name -> component spec (``metrics`` holds the names).
    metric_specs: dict = field(default_factory=dict)

    @property
    def dataset_label(self) -> str:
        """The dataset's display name."""
        return self.dataset["label"]

    def metric_components(self) -> dict[str, dict]:
        """Logged metric name -> normalised component spec ``{"name": ..}``
        (specs made before metrics took parameters list names only)."""
        return self.metric_specs or {m: {"name": m} for m in self.metrics}

    @property
    def run_name(self) -> str:
        """MLflow run name: ``dataset/method/seed``."""
        return f"{self.dataset_label}/{self.method}/{self.seed}"

    def to_dict(self) -> dict:
        """Plain data (for config.yaml and worker processes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        """Inverse of ``to_dict``."""
        return cls(**data)


#: Marks the run key of a dataset written with its own ``label:``: until
#: harness 0.1.0+bf193e0 such a dataset's split seed came from that label,
#: so a store made before then holds runs on another split.  The marker
#: gives those runs new keys (they are trained again, never mixed with runs
#: on the content-derived split); entries without a label keep their keys.
SPLIT_FROM_CONTENT = "content"


def run_key(suite: str, task: str, dataset: dict, method: str, config: dict, seed: int,
            split: str | None = None) -> str:
    """Stable hash of what determines a run's numbers (metrics to compute and
    display labels excluded, so adding a metric does not invalidate runs);
    ``split``: ``SPLIT_FROM_CONTENT`` for a dataset with a ``label:`` of its own."""
    ds = {k: v for k, v in dataset.items() if k not in ("label", "base_dir")}
    content = {"suite": suite, "task": task, "dataset": ds, "method": method,
               "config": config, "seed": seed}
    if split is not None:
        content["split"] = split
    blob = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def split_identity(dataset: dict, content_label: str | None) -> str:
    """What a dataset's split seed derives from: the label the entry's
    content gives (``harness.suite.default_label``; the label an entry
    without ``label:`` shows, so such entries keep the seeds they always
    had), else the content itself.  Never the ``label:`` a suite writes: the
    run key leaves that out, so a renamed dataset keeps its finished runs
    and must keep its split."""
    if content_label is not None:
        return content_label
    return json.dumps({k: v for k, v in dataset.items() if k not in ("label", "base_dir")},
                      sort_keys=True, default=str)


def method_label(name: str, point: dict) -> str:
    """``focal`` plus a sweep point -> ``focal[loss.gamma=2.0]``."""
    if not point:
        return name
    return name + "[" + ",".join(f"{k}={v}" for k, v in point.items()) + "]"


def expand_suite(suite: Suite, only: str | None = None) -> list[RunSpec]:
    """datasets x methods x sweep points x seeds -> RunSpecs, in that order.

    ``only`` is a glob matched against ``dataset/method/seed`` run names."""
    runs: list[RunSpec] = []
    for i, dataset in enumerate(suite.datasets):
        identity = split_identity(dataset, suite.content_labels[i] if suite.content_labels
                                  else None)
        relabelled = SPLIT_FROM_CONTENT if dataset.get("label") != identity else None
        # an entry sharing another dataset's train rows splits them alike
        shared = suite.split_labels[i] if suite.split_labels else identity
        for method in suite.methods:
            for point in method.points:
                config = method.config
                for key, value in point.items():
                    config = set_dotted(config, key, value)
                label = method_label(method.name, point)
                for seed in suite.seeds:
                    spec = RunSpec(
                        suite=suite.name, task=suite.task, dataset=dataset, method=label,
                        point=point, seed=seed, config=config, metrics=list(suite.metrics),
                        rank_by=suite.rank_by, components=method.components,
                        device=suite.device, metric_specs=dict(suite.metric_specs),
                        seeds={
                            "split": derive_seed(seed, "split", shared),
                            "init": derive_seed(seed, "init"),
                            "order": derive_seed(seed, "order"),
                        },
                    )
                    spec.run_key = run_key(suite.name, suite.task, dataset, label, config, seed,
                                           relabelled)
                    if only and not fnmatch.fnmatch(spec.run_name, only):
                        continue
                    runs.append(spec)
    return runs
