"""The agent_guard policy pack: builds the PolicyPack from the rules of each area.

Enforcement comes from the policy config (config/<stack>.json beside this file): every
policy is advisory unless the config says otherwise."""

import a2a
import a2a_network
import cost
import edge
import gke
import identity
import release
import reliability
import security
import vertex
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    name="agent_guard",
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=[
        *security.POLICIES,
        *edge.POLICIES,
        *identity.POLICIES,
        *reliability.POLICIES,
        *cost.POLICIES,
        *release.POLICIES,
        *vertex.POLICIES,
        *gke.POLICIES,
        *a2a.POLICIES,
        *a2a_network.POLICIES,
    ],
)
