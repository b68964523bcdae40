"""The triage team runs one agent next to its existing infrastructure: it composes
AgentIdentity and CloudRunAgent itself instead of using the whole AgentPlatform."""

import pulumi

from agentstage.config import load_model
from components import AgentIdentity, CloudRunAgent
from components.labels import agent_labels
from components.spec import AgentSpec, parse_secret_ref

gcp = pulumi.Config("gcp")
project, region = gcp.require("project"), gcp.get("region") or "europe-west4"
environment = pulumi.get_stack()

spec = load_model(AgentSpec, "agent")  # validated like agent-platform:agents.<name>
identity = AgentIdentity(
    "triage",
    project=project,
    environment=environment,
    roles=spec.roles,
    secrets=[parse_secret_ref(ref)[0] for ref in spec.secrets.values()],
)
agent = CloudRunAgent(
    "triage",
    spec=spec,
    service_name="triage-agent",
    project=project,
    region=region,
    identity=identity,
    labels=agent_labels(environment, "triage", spec.release.version, {"team": "triage"}),
    deletion_protection=environment == "prod",
)

pulumi.export("url", agent.url)
pulumi.export("revision", agent.release_revision)
