"""agentstage Pulumi components: what an agent needs in one environment."""

from components.cloud_run import CloudRunAgent
from components.identity import AgentIdentity
from components.platform import AgentPlatform
from components.spec import AgentSpec, PlatformSpec, ReleaseSpec, RolloutSpec

__all__ = ["AgentIdentity", "AgentPlatform", "AgentSpec", "CloudRunAgent", "PlatformSpec", "ReleaseSpec", "RolloutSpec"]
