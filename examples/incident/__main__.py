"""The reference agent platform program, for the incident walkthrough (docs/incidents.md)."""

import pulumi

from agentstage.config import NAMESPACE, is_secret_key, load_platform
from components import AgentPlatform

platform = AgentPlatform("platform", load_platform(), secret_env=is_secret_key(f"{NAMESPACE}:agents"))
pulumi.export("agents", platform.agents)
