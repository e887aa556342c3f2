"""Which dataset entries of a suite are independent datasets.

Cross-dataset statistics (Friedman, Nemenyi, the Wilcoxon test over
datasets, the bootstrap of Elo) treat each dataset as an independent draw of
a problem.  Entries that are conditions of one dataset -- five sample sizes
drawn from one generator, four label-noise rates of one dataset -- are not:
counting them as five datasets makes the tests far too confident.

A suite says it with ``condition_of: NAME`` on the entries (``Suite.conditions``).
Entries that say nothing are conditions of one dataset when they share the
source and its parameters (they draw from one pool and differ only in what
the task does to it); any other entry is a dataset of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Groups:
    """Dataset label -> the independent dataset it belongs to."""

    of: dict[str, str] = field(default_factory=dict)
    #: group -> how it was found: "declared" (condition_of) or "same source"
    how: dict[str, str] = field(default_factory=dict)

    def group(self, label) -> str:
        """The independent dataset of ``label`` (itself when not grouped)."""
        return self.of.get(label, str(label))

    def shared(self, labels) -> dict[str, list]:
        """Groups holding more than one of ``labels``: group -> its labels."""
        out: dict[str, list] = {}
        for label in labels:
            out.setdefault(self.group(label), []).append(label)
        return {g: ls for g, ls in out.items() if len(ls) > 1}


def from_suite(suite, registry=None) -> Groups:
    """The groups of a validated suite: declared ``condition_of`` names, then
    entries that share source and parameters (named by the source's label of
    those parameters, e.g. ``bgmm-…``)."""
    from harness.plugins import get_registry
    from harness.suite import default_label

    sources = (registry or get_registry()).components("datasets")
    declared = suite.conditions or [None] * len(suite.datasets)
    groups = Groups()
    pools: dict[str, list[dict]] = {}
    for entry, name in zip(suite.datasets, declared):
        if name is not None:
            groups.of[entry["label"]] = name
            groups.how[name] = "declared"
        else:
            key = json.dumps([entry["source"], entry["params"]], sort_keys=True, default=str)
            pools.setdefault(key, []).append(entry)
    for entries in pools.values():
        if len(entries) < 2:
            continue
        first = entries[0]
        info = sources.get(first["source"])
        name = default_label(info, None, first) if info is not None else first["source"]
        name = name if name not in groups.how else f"{name} ({first['source']})"
        for entry in entries:
            groups.of[entry["label"]] = name
        groups.how[name] = "same source"
    return groups
