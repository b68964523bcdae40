"""AgentPlatform: every agent of one environment, built from its PlatformSpec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from agentstage.flags import FLAGS_ENV, parameter_name
from components.agent_engine import AgentEngineAgent
from components.budget import AgentBudget
from components.cloud_run import CloudRunAgent
from components.contract import COMPONENT_TYPES, LABEL_AGENT, TEMPLATE_ENV
from components.flags import AgentFlags
from components.gke import GkeAgent
from components.guardrails import AgentGuardrails
from components.identity import AgentIdentity
from components.labels import agent_labels, platform_labels
from components.load_balancer import AgentLoadBalancer
from components.monitoring import agent_revisions, runtime_targets
from components.observability import AgentObservability, tracing_env
from components.registry import AgentRegistry, RegisteredAgent
from components.spec import PlatformSpec, parse_secret_ref
from components.spend_cap import AgentSpendCaps, CappedAgent
from components.vertex_endpoint import VertexEndpointAgent

__all__ = ["AgentPlatform", "FLAG_RUNTIMES"]

#: Runtimes whose agent reads feature flags at run time (a Vertex AI model endpoint serves a
#: model's own container and has no features: see endpoint_spec).
FLAG_RUNTIMES = ("cloud-run", "agent-engine", "gke")


@dataclass(frozen=True)
class _Runtime:
    """How the platform builds and reports an agent on one runtime, so one loop and one output
    builder serve every runtime. Each component exposes the same attributes (``url``,
    ``service_name``, ``release_revision``, ``stable_revision``, ``service_account_email``,
    ``live_traffic``); only these differences are per runtime."""

    component: type
    #: the keyword the component takes the agent's physical name as (a Cloud Run service or a
    #: Kubernetes object name vs a Vertex AI display name)
    name_kwarg: str
    #: which of the platform-wide inputs the component takes (not every runtime has env vars,
    #: deletion protection or a region)
    takes: frozenset[str]
    #: the runtime-specific entry of the ``agents`` output: (key, component attribute); none for
    #: Cloud Run, whose entries predate the ``runtime`` key and keep their shape
    extra: tuple[str, str] | None


_ALL_INPUTS = frozenset({"region", "deletion_protection", "secret_env", "extra_env"})

#: runtime -> how its agents are built; the order is the order of the ``agents`` and ``traffic``
#: outputs
_RUNTIMES: dict[str, _Runtime] = {
    "cloud-run": _Runtime(CloudRunAgent, "service_name", _ALL_INPUTS, None),
    "agent-engine": _Runtime(AgentEngineAgent, "display_name", _ALL_INPUTS, ("engine", "engine_id")),
    # a model endpoint serves the model's own container: VertexEndpointAgent takes no env vars
    # and no deletion protection
    "vertex-endpoint": _Runtime(
        VertexEndpointAgent, "display_name", frozenset({"region"}), ("endpoint", "endpoint_name")
    ),
    # GkeAgent runs on the cluster its spec names (no region) and takes no deletion protection
    "gke": _Runtime(GkeAgent, "service_name", frozenset({"extra_env"}), ("namespace", "namespace")),
}


def _agent_output(runtime: str, component: Any) -> dict[str, object]:
    """The ``agents`` output entry of one agent, from the attributes every runtime component
    exposes plus its runtime's own key."""
    extra = _RUNTIMES[runtime].extra
    tagged: dict[str, object] = {} if extra is None else {"runtime": runtime, extra[0]: getattr(component, extra[1])}
    return {
        "url": component.url,
        "service": component.service_name,
        **tagged,
        "release_revision": component.release_revision,
        "stable_revision": component.stable_revision,
        "service_account": component.service_account_email,
    }


class AgentPlatform(pulumi.ComponentResource):
    """One environment: per agent an ``AgentIdentity`` and the component of its runtime
    (``CloudRunAgent``, ``AgentEngineAgent``, ``VertexEndpointAgent`` or ``GkeAgent``); per
    environment the ``AgentGuardrails`` (Model Armor template, whose name and the OTEL_* env
    vars reach every agent), ``AgentObservability`` (alerts, SLOs, signals, dashboard,
    notification channels) and ``AgentBudget``, each from its section of the spec; with any
    agent's ``spend_cap``, ``AgentSpendCaps`` (per-agent budgets and the enforcer function).

    ``secret_env`` marks plain env values secret (set when the agents config holds
    ``secure:`` values). Outputs: ``agents`` (agent -> url, service, revisions, identity) and
    ``traffic`` (service name -> the traffic it serves, ``[{revision, percent, tag}]`` from its
    ``traffic_statuses``: what the release flow reads as observed state without credentials)
    and ``registry`` (agent -> A2A agent card; with any agent's ``calls`` or ``card``,
    ``AgentRegistry`` grants the A2A edges and publishes the cards).
    """

    agents: pulumi.Output[Mapping[str, Mapping[str, object]]]
    traffic: pulumi.Output[Mapping[str, list[Mapping[str, object]]]]
    registry: Mapping[str, Mapping[str, object]]

    def __init__(
        self,
        name: str,
        spec: PlatformSpec,
        *,
        secret_env: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["AgentPlatform"], name, None, opts)
        self.spec = spec
        self.identities: dict[str, AgentIdentity] = {}
        #: runtime -> agent -> its component; the per-runtime attributes below are views of it
        self.runtime_agents: dict[str, dict[str, Any]] = {runtime: {} for runtime in _RUNTIMES}
        self.services: dict[str, CloudRunAgent] = self.runtime_agents["cloud-run"]
        self.engines: dict[str, AgentEngineAgent] = self.runtime_agents["agent-engine"]
        self.endpoints: dict[str, VertexEndpointAgent] = self.runtime_agents["vertex-endpoint"]
        self.gke_agents: dict[str, GkeAgent] = self.runtime_agents["gke"]
        self.flags: dict[str, AgentFlags] = {}
        self.load_balancers: dict[str, AgentLoadBalancer] = {}
        env_labels = platform_labels(spec.environment, spec.labels)
        self.guardrails: AgentGuardrails | None = None
        if spec.guardrails.model_armor:
            self.guardrails = AgentGuardrails(
                "guardrails",
                spec=spec.guardrails,
                project=spec.project,
                location=spec.region,
                environment=spec.environment,
                production=spec.is_production,
                prefix=spec.prefix,
                labels=env_labels,
                opts=pulumi.ResourceOptions(parent=self),
            )
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
            extra_env = dict(tracing_env(spec, agent))
            waits: list[pulumi.Resource] = []
            if self.guardrails is not None:
                # the service waits for the grant, like for the identity's own grants, and for
                # the template whose name it receives
                identity.grants.append(self.guardrails.grant_user(agent, identity.member))
                extra_env[TEMPLATE_ENV] = self.guardrails.template_resource_name
                waits.append(self.guardrails.template)
            if aspec.runtime in FLAG_RUNTIMES:
                # every agent that can have flags gets its parameter (also with none yet), so a
                # first flag, like every later flip, is a new parameter version and no new revision
                flags = AgentFlags(
                    f"{agent}-flags",
                    flags=aspec.features,
                    service_name=spec.service_name(agent),
                    project=spec.project,
                    environment=spec.environment,
                    member=identity.member,
                    labels={**env_labels, LABEL_AGENT: agent},
                    opts=pulumi.ResourceOptions(parent=self),
                )
                self.flags[agent] = flags
                identity.grants.append(flags.grant)
                extra_env[FLAGS_ENV] = parameter_name(spec.project, spec.service_name(agent), spec.environment)
                waits.append(flags.version)
            runtime = _RUNTIMES[aspec.runtime]
            inputs = {
                "region": spec.region,
                "deletion_protection": spec.is_production,
                "secret_env": secret_env,
                "extra_env": extra_env,
            }
            self.runtime_agents[aspec.runtime][agent] = runtime.component(
                agent,
                spec=aspec,
                **{runtime.name_kwarg: spec.service_name(agent)},
                project=spec.project,
                identity=identity,
                labels=agent_labels(spec.environment, agent, aspec.release.version, spec.labels),
                **{key: value for key, value in inputs.items() if key in runtime.takes},
                depends_on=waits,
                opts=pulumi.ResourceOptions(parent=self),
            )
            if aspec.load_balancer is not None:
                # not the release label: a release must not touch the load balancer path
                self.load_balancers[agent] = AgentLoadBalancer(
                    agent,
                    spec=aspec,
                    service=self.services[agent].service,
                    service_name=spec.service_name(agent),
                    project=spec.project,
                    region=spec.region,
                    labels={**env_labels, LABEL_AGENT: agent},
                    opts=pulumi.ResourceOptions(parent=self),
                )
        revisions = {
            agent: agent_revisions(spec.agents[agent], svc.revision, svc.stable_revision_name)
            for agent, svc in self.services.items()
        }
        self.observability = AgentObservability(
            "observability",
            # Agent Engine, Vertex endpoint and GKE agents are watched through their own
            # metrics (targets); an agent on any other runtime has no alerts built yet.
            spec.model_copy(
                update={
                    "agents": {
                        a: s
                        for a, s in spec.agents.items()
                        if any(a in components for components in self.runtime_agents.values())
                    }
                }
            ),
            stack=pulumi.get_stack(),
            revisions=revisions,
            targets=runtime_targets(
                spec.agents, self.engines, self.endpoints, {a: spec.service_name(a) for a in self.gke_agents}
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.budget: AgentBudget | None = None
        if spec.budget.enabled:
            self.budget = AgentBudget(
                "budget",
                spec=spec.budget,
                project=spec.project,
                environment=spec.environment,
                prefix=spec.prefix,
                email_channels=self.observability.email_channel_names,
                labels=env_labels,
                opts=pulumi.ResourceOptions(parent=self),
            )
        # hard spend caps: the spec allows them on Cloud Run agents with a billing account only
        capped = {
            agent: CappedAgent(
                aspec.spend_cap,
                service=self.services[agent].service,
                service_name=spec.service_name(agent),
                identity_account=self.identities[agent].account,
            )
            for agent, aspec in sorted(spec.agents.items())
            if aspec.spend_cap is not None and agent in self.services
        }
        self.spend_caps: AgentSpendCaps | None = None
        if capped:
            self.spend_caps = AgentSpendCaps(
                "spend-caps",
                agents=capped,
                budget=spec.budget,
                project=spec.project,
                region=spec.region,
                environment=spec.environment,
                prefix=spec.prefix,
                email_channels=self.observability.email_channel_names,
                labels=env_labels,
                opts=pulumi.ResourceOptions(parent=self),
            )
        # A2A: the invoker edges of `calls` and the agent cards, only in stacks that use them
        self.agent_registry: AgentRegistry | None = None
        if any(a.calls or a.card is not None for a in spec.agents.values()):
            self.agent_registry = AgentRegistry(
                "registry",
                agents={
                    agent: RegisteredAgent(spec.agents[agent], svc.service, svc.url, self.identities[agent].member)
                    for agent, svc in self.services.items()
                },
                project=spec.project,
                region=spec.region,
                environment=spec.environment,
                prefix=spec.prefix,
                labels=env_labels,
                opts=pulumi.ResourceOptions(parent=self),
            )
        # plain data with only each card's URL an output, so a first preview shows the rest
        self.registry = self.agent_registry.documents if self.agent_registry is not None else {}
        self.agents = pulumi.Output.from_input(
            {
                agent: _agent_output(runtime, component)
                | (
                    {"load_balancer": {"url": lb.url, "ip_address": lb.ip_address}}
                    if (lb := self.load_balancers.get(agent)) is not None
                    else {}
                )
                for runtime, components in self.runtime_agents.items()
                for agent, component in components.items()
            }
        )
        self.traffic = pulumi.Output.from_input(
            {
                spec.service_name(agent): component.live_traffic
                for components in self.runtime_agents.values()
                for agent, component in components.items()
            }
        )
        self.register_outputs({"agents": self.agents, "traffic": self.traffic, "registry": self.registry})
