"""The triage team runs one agent next to its existing infrastructure: it composes the
agentstage components itself instead of using the whole AgentPlatform, with its own service
name (``triage-agent``) and only the pieces it wants: the agent's identity and Cloud Run
service, Model Armor, alerts and a budget.

Its stack config has the platform's shape under the project's own namespace
(``triage-team:agents.triage``, ``triage-team:alerts``...), so the release tool (``agentstage
gate / promote / rollout / rollback / status -C examples/team-stack``) works on it: ``release``,
``stable``, ``stable_revision`` and ``rollout.canary_percent`` reach CloudRunAgent, which splits
the traffic exactly as the platform does."""

import pulumi

from agentstage.config import ConfigError, is_secret_key, load_platform
from components import (
    AgentAlerts,
    AgentBudget,
    AgentGuardrails,
    AgentIdentity,
    CloudRunAgent,
    NotificationChannels,
    tracing_env,
)
from components.contract import TEMPLATE_ENV
from components.labels import agent_labels, platform_labels
from components.monitoring import MonitoringContext, agent_revisions
from components.spec import parse_secret_ref

AGENT, SERVICE = "triage", "triage-agent"
NAMESPACE = pulumi.get_project()  # triage-team: Pulumi's default config namespace

spec = load_platform(namespace=NAMESPACE)
if set(spec.agents) != {AGENT}:
    raise ConfigError(
        [f"{NAMESPACE}:agents: this program deploys the agent {AGENT!r} alone; found {', '.join(sorted(spec.agents))}"]
    )
agent = spec.agents[AGENT]
env_labels = platform_labels(spec.environment, spec.labels)
labels = agent_labels(spec.environment, AGENT, agent.release.version, spec.labels)

identity = AgentIdentity(
    AGENT,
    project=spec.project,
    environment=spec.environment,
    roles=agent.roles,
    secrets=[parse_secret_ref(ref)[0] for ref in agent.secrets.values()],
)
extra_env = tracing_env(spec, AGENT, service=SERVICE)
waits: list[pulumi.Resource] = []
if spec.guardrails.model_armor:
    guardrails = AgentGuardrails(
        "guardrails",
        spec=spec.guardrails,
        project=spec.project,
        location=spec.region,
        environment=spec.environment,
        production=spec.is_production,
        labels=env_labels,
    )
    identity.grants.append(guardrails.grant_user(AGENT, identity.member))
    extra_env[TEMPLATE_ENV] = guardrails.template_resource_name
    waits.append(guardrails.template)
service = CloudRunAgent(
    AGENT,
    spec=agent,  # release, stable, stable_revision, rollout.canary_percent: the canary traffic split
    service_name=SERVICE,
    project=spec.project,
    region=spec.region,
    identity=identity,
    labels=labels,  # the `agent` label is how the release tool finds the service in the plan
    deletion_protection=spec.is_production,
    secret_env=is_secret_key(f"{NAMESPACE}:agents"),
    extra_env=extra_env,
    depends_on=waits,
)

channels = NotificationChannels(
    "notify", spec=spec.alerts, project=spec.project, environment=spec.environment, labels=env_labels
)
if spec.alerts.enabled:
    AgentAlerts(
        AGENT,
        MonitoringContext(
            agent=AGENT,
            spec=spec.alerts,
            service=SERVICE,
            project=spec.project,
            region=spec.region,
            stack=pulumi.get_stack(),
            revisions=agent_revisions(agent, service.revision, service.stable_revision_name),
            channels=channels.names,
            labels=labels,
        ),
        scaling=agent.scaling,
    )
if spec.budget.enabled:
    AgentBudget(
        "budget",
        spec=spec.budget,
        project=spec.project,
        environment=spec.environment,
        email_channels=channels.email_names,
        labels=env_labels,
    )

pulumi.export("url", service.url)
pulumi.export("revision", service.release_revision)
pulumi.export("stable_revision", service.stable_revision)
# the live split, read by `agentstage rollout`/`status` as observed state without Google credentials
pulumi.export("traffic", {SERVICE: service.live_traffic})
