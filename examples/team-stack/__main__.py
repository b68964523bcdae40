"""The triage team runs one agent next to its existing infrastructure: it composes the
agentstage components itself instead of using the whole AgentPlatform, with its own service
name (``triage-agent``) and only the pieces it wants: the agent's identity and Cloud Run
service, its feature flags, Model Armor, alerts and a budget. Next to them, one resource of the
team's own: the Pub/Sub topic of incoming tickets, which the agent reads through its own pull
subscription, and on which no identity but the agent's is granted anything.

Its stack config has the platform's shape under the project's own namespace
(``triage-team:agents.triage``, ``triage-team:alerts``...), so the release tool (``agentstage
gate / promote / rollout / rollback / status -C examples/team-stack``) works on it: ``release``,
``stable``, ``stable_revision`` and ``rollout.canary_percent`` reach CloudRunAgent, which splits
the traffic exactly as the platform does."""

import pulumi
import pulumi_gcp as gcp

from agentstage.config import ConfigError, is_secret_key, load_platform
from agentstage.flags import FLAGS_ENV, parameter_name
from components import (
    AgentAlerts,
    AgentBudget,
    AgentGuardrails,
    AgentIdentity,
    CloudRunAgent,
    NotificationChannels,
    tracing_env,
)
from components.contract import LABEL_AGENT, TEMPLATE_ENV
from components.flags import AgentFlags
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

# Feature flags, as the platform builds them: a parameter the agent reads at run time, so
# `agentstage flags set staging --agent triage NAME=off` is a new parameter version, never a new
# revision. The parameter is named after the platform's service name for the agent (the agent's
# name, ``triage``): that is where `agentstage flags` looks for it.
flags = AgentFlags(
    f"{AGENT}-flags",
    flags=agent.features,
    service_name=spec.service_name(AGENT),
    project=spec.project,
    environment=spec.environment,
    member=identity.member,
    labels={**env_labels, LABEL_AGENT: AGENT},
)
identity.grants.append(flags.grant)
extra_env[FLAGS_ENV] = parameter_name(spec.project, spec.service_name(AGENT), spec.environment)
waits.append(flags.version)

# The team's own resource: the topic its ticket system publishes to, and the agent's pull
# subscription. Physical names follow the house rule {service}-{role}. The rules quoted below are
# the Pub/Sub v1 discovery document's (Topic.name, Subscription.*, ExpirationPolicy.ttl): a name
# starts with a letter, has 3..255 of [A-Za-z0-9-_.~+%] and does not start with "goog".
tickets = gcp.pubsub.Topic(
    "tickets",
    project=spec.project,
    name=f"{SERVICE}-tickets",
    labels=env_labels,
)
inbox = gcp.pubsub.Subscription(
    "tickets-inbox",
    project=spec.project,
    name=f"{SERVICE}-tickets-inbox",
    topic=tickets.id,  # projects/<project>/topics/<name>
    # the team's labels, not the agent's: labelled agent=..., agent-guard would ask for the release
    # label too, and every release would then update the subscription
    labels=env_labels,
    # the agent acknowledges a ticket once triaged; 60 s covers a model call and a tool call
    # (a custom deadline is 10..600 s)
    ack_deadline_seconds=60,
    message_retention_duration="604800s",  # 7 days: the API's default (allowed 10 minutes..31 days)
    # never expire ("if ttl is not set, the associated resource never expires"): by default an idle
    # subscription is deleted after 31 days, and with it the tickets published in the meantime
    expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
)
# Reading the topic is consuming its subscription: roles/pubsub.subscriber (pubsub.subscriptions.consume)
# on the agent's subscription, for the agent's identity only; nothing on the topic itself, and no
# project-level Pub/Sub role (roles: https://cloud.google.com/pubsub/docs/access-control#roles).
inbox_reader = gcp.pubsub.SubscriptionIAMMember(
    "tickets-inbox-subscriber",
    project=spec.project,
    subscription=inbox.name,
    role="roles/pubsub.subscriber",
    member=identity.member,
)
identity.grants.append(inbox_reader)  # the service waits until the agent may read its inbox
# a plain string: the revision name is a digest of the template, so every env value is known when
# the program runs (the service still waits for the subscription through the grant above)
extra_env["TICKETS_SUBSCRIPTION"] = f"projects/{spec.project}/subscriptions/{SERVICE}-tickets-inbox"
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
pulumi.export("tickets_topic", tickets.id)
pulumi.export("tickets_subscription", inbox.id)
