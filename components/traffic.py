"""Cloud Run traffic for a release and an optional stable release (the canary mechanics).

- no stable: 100% to the release's named revision;
- stable + canary_percent p: stable's revision at 100-p, the release's at p tagged ``canary``;
- p = 0 is the rolled-back state: all traffic on stable, the candidate keeps its tagged 0%
  revision (and URL) for debugging.

Targets always name revisions: LATEST would move with every template change.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.spec import AgentSpec, revision_name

REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
CANARY_TAG = "canary"


@dataclass(frozen=True)
class TrafficTarget:
    revision: str
    percent: int
    tag: str | None = None
    type: str = REVISION


def traffic_targets(service: str, spec: AgentSpec) -> list[TrafficTarget]:
    release = revision_name(service, spec.release.version)
    if spec.stable is None:
        return [TrafficTarget(release, 100)]
    p = spec.canary_percent
    return [
        TrafficTarget(revision_name(service, spec.stable.version), 100 - p),
        TrafficTarget(release, p, CANARY_TAG),
    ]
