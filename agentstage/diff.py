"""Diff two offline plans into create / update (which properties) / delete, by URN."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentstage.engine import Plan

__all__ = ["PlanDiff", "diff_plans", "changed_paths"]


@dataclass
class PlanDiff:
    creates: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    #: URN -> changed property paths (``traffics[0].percent``, ``template.revision``...)
    updates: dict[str, list[str]] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        """Number of resources created, deleted or updated."""
        return len(self.creates) + len(self.deletes) + len(self.updates)

    @property
    def empty(self) -> bool:
        return self.changed == 0

    def to_json(self) -> dict[str, Any]:
        return {"create": self.creates, "delete": self.deletes, "update": self.updates}


def changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Property paths whose values differ between ``old`` and ``new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                out.append(path)
            else:
                out.extend(changed_paths(old[key], new[key], path))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out.extend(changed_paths(a, b, f"{prefix}[{i}]"))
        return out
    return [] if old == new else [prefix or "(value)"]


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    """What applying ``new`` over ``old`` would do. Component resources have no inputs of
    their own; only custom resources are compared."""
    before = {r.urn: r for r in old.resources if r.custom}
    after = {r.urn: r for r in new.resources if r.custom}
    diff = PlanDiff()
    diff.creates = [u for u in after if u not in before]
    diff.deletes = [u for u in before if u not in after]
    for urn in after.keys() & before.keys():
        paths = changed_paths(before[urn].inputs, after[urn].inputs)
        if paths:
            diff.updates[urn] = paths
    diff.updates = dict(sorted(diff.updates.items()))
    return diff
