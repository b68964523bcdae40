"""The reference agent platform: one AgentPlatform per stack, built from its stack config."""

import pulumi

from agentstage.config import NAMESPACE, is_secret_key, load_platform
from components import AgentPlatform

platform = AgentPlatform("platform", load_platform(), secret_env=is_secret_key(f"{NAMESPACE}:agents"))
pulumi.export("agents", platform.agents)
pulumi.export("traffic", platform.traffic)  # read by `agentstage` as observed state without Google credentials
