"""Values known at plan time that still depend on the resource they describe.

A name Google derives from inputs (a service account's email, a Model Armor template's or a
Pub/Sub topic's resource name) is computed here from those inputs, so it is known in a first
``pulumi preview`` and every policy can read it. It is still an output of the resource it
names: a consumer of the value depends on that resource and waits for it on ``pulumi up``,
exactly as if it had used the provider's own output. (cloud-foundation-fabric forms service
account emails the same way in ``modules/iam-service-account``.)
"""

from __future__ import annotations

import pulumi

__all__ = ["known_after"]


def known_after(resource: pulumi.Resource, value: str) -> pulumi.Output[str]:
    """``value`` as an output of ``resource``: known during preview (a resource's URN always
    is), and carrying the dependency on ``resource``."""
    return resource.urn.apply(lambda _: value)
