"""Three agents on the reference platform: trip-planner calls flight-search and hotel-search over
A2A (agents.<name>.calls), and every agent publishes its A2A agent card (agents.<name>.card).

AgentPlatform grants each call edge (roles/run.invoker of the caller's identity on the callee's
service) and publishes the registry; this program exports it for A2A clients and for
`agentstage registry` (docs/registry.md)."""

import pulumi

from agentstage.config import NAMESPACE, is_secret_key, load_platform
from components import AgentPlatform

platform = AgentPlatform("platform", load_platform(), secret_env=is_secret_key(f"{NAMESPACE}:agents"))
pulumi.export("agents", platform.agents)
pulumi.export("traffic", platform.traffic)
pulumi.export("registry", platform.registry)
if platform.agent_registry is not None:
    pulumi.export("registry_bucket", platform.agent_registry.bucket_name)
    pulumi.export("card_urls", platform.agent_registry.card_urls)
