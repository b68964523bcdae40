"""AgentPlatform: every agent of one environment, built from its PlatformSpec."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from components.cloud_run import CloudRunAgent
from components.identity import AgentIdentity
from components.labels import agent_labels
from components.spec import PlatformSpec, parse_secret_ref

__all__ = ["AgentPlatform"]


class AgentPlatform(pulumi.ComponentResource):
    """One environment: per agent an ``AgentIdentity`` and a ``CloudRunAgent``.

    ``secret_env`` marks plain env values secret (set when the agents config holds
    ``secure:`` values). Outputs: ``agents`` (agent -> url, service, revisions, identity).
    """

    agents: pulumi.Output[Mapping[str, Mapping[str, object]]]

    def __init__(
        self,
        name: str,
        spec: PlatformSpec,
        *,
        secret_env: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("agentstage:platform:AgentPlatform", name, None, opts)
        self.spec = spec
        self.identities: dict[str, AgentIdentity] = {}
        self.services: dict[str, CloudRunAgent] = {}
        for agent, aspec in sorted(spec.agents.items()):
            identity = AgentIdentity(
                agent,
                project=spec.project,
                environment=spec.environment,
                prefix=spec.prefix,
                roles=aspec.roles,
                secrets=[parse_secret_ref(ref)[0] for ref in aspec.secrets.values()],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.identities[agent] = identity
            self.services[agent] = CloudRunAgent(
                agent,
                spec=aspec,
                service_name=spec.service_name(agent),
                project=spec.project,
                region=spec.region,
                identity=identity,
                labels=agent_labels(spec.environment, agent, aspec.release.version, spec.labels),
                deletion_protection=spec.is_production,
                secret_env=secret_env,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.agents = pulumi.Output.from_input(
            {
                agent: {
                    "url": svc.url,
                    "service": svc.service_name,
                    "release_revision": svc.release_revision,
                    "stable_revision": svc.stable_revision,
                    "service_account": svc.service_account_email,
                }
                for agent, svc in self.services.items()
            }
        )
        self.register_outputs({"agents": self.agents})
