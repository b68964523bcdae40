"""Cloud Run traffic for a release and an optional stable release (the canary mechanics).

- no stable: 100% to the release's named revision;
- stable + canary_percent p: stable's revision at 100-p, the release's at p tagged ``canary``;
- p = 100 is the watch: the release takes all traffic, and stable's revision stays in the
  block at 0%, so a rollback is one update of the traffic, tagged ``stable`` so its own URL
  (https://stable---<service host>) still reaches the previous release for comparison (Cloud
  Run docs, "Rollbacks, gradual rollouts, and traffic migration": a tag gives a revision a URL
  without sending it traffic);
- p = 0 is the rolled-back state: all traffic on stable, and the candidate leaves the
  traffic block, tag included. A revision that is tagged, or in the traffic block even at
  0%, counts as serving and keeps minimum instances warm and billed (Cloud Run docs,
  "Minimum instances": "Revisions and minimum instances"); off the block it scales to zero.
  Minimum instances are also set at the service level, where Cloud Run divides them among
  the revisions in the traffic split (see docs/release.md).

Targets always name revisions: LATEST would move with every template change.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.contract import CANARY_TAG, STABLE_TAG
from components.spec import AgentSpec

__all__ = ["TrafficTarget", "traffic_targets", "REVISION", "CANARY_TAG", "STABLE_TAG"]

REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


@dataclass(frozen=True)
class TrafficTarget:
    revision: str
    percent: int
    tag: str | None = None
    type: str = REVISION


def traffic_targets(spec: AgentSpec, release_revision: str, stable_revision: str | None) -> list[TrafficTarget]:
    """The traffic block of an agent whose template deploys ``release_revision``."""
    if spec.stable is None or stable_revision is None:
        return [TrafficTarget(release_revision, 100)]
    p = spec.canary_percent
    if p == 0:
        return [TrafficTarget(stable_revision, 100)]
    return [
        TrafficTarget(stable_revision, 100 - p, STABLE_TAG if p == 100 else None),
        TrafficTarget(release_revision, p, CANARY_TAG),
    ]
