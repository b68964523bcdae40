"""Release manifests and their content digest.

A manifest is the ``release`` block of one agent (``components.spec.ReleaseSpec``). Its digest
is the SHA-256 of its canonical JSON form (keys sorted, defaults filled in), so YAML layout,
quoting or key order never change it, and any change of content does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from components.spec import ReleaseSpec

__all__ = ["ReleaseSpec", "canonical", "digest", "manifest_of", "describe_difference"]


def manifest_of(data: Any) -> ReleaseSpec:
    """A validated manifest from a mapping (or a manifest)."""
    if isinstance(data, ReleaseSpec):
        return data
    return ReleaseSpec.model_validate(dict(data))


def canonical(manifest: ReleaseSpec | dict[str, Any]) -> dict[str, Any]:
    """The manifest as plain JSON data with every field present."""
    return manifest_of(manifest).model_dump(mode="json")


def digest(manifest: ReleaseSpec | dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``manifest``."""
    text = json.dumps(canonical(manifest), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def describe_difference(old: ReleaseSpec | dict[str, Any], new: ReleaseSpec | dict[str, Any]) -> list[str]:
    """Field names whose values differ between two manifests, e.g. ``["image", "tools"]``."""
    a, b = canonical(old), canonical(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
