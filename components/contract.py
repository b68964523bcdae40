"""The names the components, the CLI and the agent_guard pack all depend on, in one place.

The policy pack runs in its own process and must stay a self-contained CrossGuard pack, so
``policies/agent_guard/helpers.py`` keeps its own copy of the pack-relevant names; the test
``tests/test_contract.py`` keeps the two in step. Change a name here and that test names
every place that must follow.
"""

from __future__ import annotations

__all__ = [
    "NAMESPACE",
    "MANAGED_BY",
    "LABEL_ENVIRONMENT",
    "LABEL_AGENT",
    "LABEL_RELEASE",
    "LABEL_MANAGED_BY",
    "BASE_LABEL_KEYS",
    "PRODUCTION",
    "COMPONENT_TYPES",
    "CLOUD_RUN_SERVICE",
    "CLOUD_RUN_INVOKER",
    "SERVICE_ACCOUNT",
    "ALERT_POLICY",
    "NOTIFICATION_CHANNEL",
    "BUDGET",
    "MODEL_ARMOR_TEMPLATE",
    "LOG_METRIC",
    "TEMPLATE_ENV",
    "RESERVED_ENV_PREFIXES",
    "TRACING_ENV",
    "CANARY_TAG",
    "STABLE_TAG",
]

#: The Pulumi project name of the reference platform, and so the namespace of its config keys.
NAMESPACE = "agent-platform"

#: The value of the ``managed-by`` label on everything agentstage creates.
MANAGED_BY = "agentstage"

LABEL_ENVIRONMENT = "environment"
LABEL_AGENT = "agent"
LABEL_RELEASE = "release"
LABEL_MANAGED_BY = "managed-by"
#: Label keys the platform sets itself; user labels may not override them.
BASE_LABEL_KEYS = (LABEL_ENVIRONMENT, LABEL_AGENT, LABEL_RELEASE, LABEL_MANAGED_BY)

#: The environment name that turns on the strict policy set and deletion protection.
PRODUCTION = "production"

#: Component type tokens (``agentstage:<module>:<Class>``).
COMPONENT_TYPES = {
    "AgentPlatform": "agentstage:platform:AgentPlatform",
    "AgentIdentity": "agentstage:identity:AgentIdentity",
    "CloudRunAgent": "agentstage:cloudrun:CloudRunAgent",
    "VertexEndpointAgent": "agentstage:vertexendpoint:VertexEndpointAgent",
    "AgentEngineAgent": "agentstage:agentengine:AgentEngineAgent",
    "GkeAgent": "agentstage:gke:GkeAgent",
    "AgentGuardrails": "agentstage:guardrails:AgentGuardrails",
    "AgentObservability": "agentstage:observability:AgentObservability",
    "NotificationChannels": "agentstage:notifications:NotificationChannels",
    "AgentAlerts": "agentstage:alerts:AgentAlerts",
    "AgentSlos": "agentstage:slo:AgentSlos",
    "AgentSignals": "agentstage:signals:AgentSignals",
    "AgentDashboard": "agentstage:dashboard:AgentDashboard",
    "AgentBudget": "agentstage:budget:AgentBudget",
    "AgentFlags": "agentstage:flags:AgentFlags",
    "AgentLoadBalancer": "agentstage:loadbalancer:AgentLoadBalancer",
    "AgentSpendCaps": "agentstage:spendcap:AgentSpendCaps",
    "AgentRegistry": "agentstage:registry:AgentRegistry",
    "DeployerIdentity": "agentstage:deployer:DeployerIdentity",
}

# Resource type tokens of pulumi-gcp that agentstage reads back from plans.
CLOUD_RUN_SERVICE = "gcp:cloudrunv2/service:Service"
CLOUD_RUN_INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
SERVICE_ACCOUNT = "gcp:serviceaccount/account:Account"
ALERT_POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
NOTIFICATION_CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
BUDGET = "gcp:billing/budget:Budget"
MODEL_ARMOR_TEMPLATE = "gcp:modelarmor/template:Template"
LOG_METRIC = "gcp:logging/metric:Metric"

#: The env var through which each agent receives its Model Armor template's resource name.
TEMPLATE_ENV = "MODEL_ARMOR_TEMPLATE"
#: Env var name prefixes agentstage injects itself (release identity; AGENTSTAGE_FLAGS_PARAMETER,
#: where the agent reads its feature flags; FEATURE_*, the flag env vars of earlier versions,
#: kept reserved so an old flag name never becomes a user variable): a user env var or secret
#: with one of them could collide with one agentstage sets now or in a later version.
RESERVED_ENV_PREFIXES = ("AGENT_", "FEATURE_", "AGENTSTAGE_")
#: The OpenTelemetry variables agentstage sets (agent-platform:tracing). Other OTEL_* names
#: (OTEL_EXPORTER_OTLP_HEADERS, OTEL_LOG_LEVEL...) are the agent's own to set.
TRACING_ENV = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

#: The traffic tag of a canary candidate (its own URL: https://canary---<service host>).
CANARY_TAG = "canary"
#: The traffic tag of the previous (stable) revision while a release at 100% is watched: it
#: stays in the traffic block at 0% so a rollback is one update, and the tag gives it its own
#: URL (https://stable---<service host>) so a person on call can compare the two releases.
#: Cloud Run tags are DNS labels, lowercase letters, digits and dashes (Cloud Run docs,
#: "Rollbacks, gradual rollouts, and traffic migration": tagged revision URLs), and a tag with
#: the service name is at most 46 characters (components.spec.TAG_AND_SERVICE_MAX, checked
#: with CANARY_TAG, which is as long).
STABLE_TAG = "stable"


def signal_metric_name(service: str, signal: str) -> str:
    """Name of an agent signal's log-based metric: ``agentstage/<service>/<signal>``; its
    Monitoring type is ``logging.googleapis.com/user/<name>``."""
    return f"agentstage/{service}/{signal}"
