"""agentstage Pulumi components: what an agent needs in one environment."""

from components.cloud_run import CloudRunAgent
from components.identity import AgentIdentity
from components.platform import AgentPlatform
from components.spec import AgentSpec, PlatformSpec, ReleaseSpec, RolloutSpec
from components.ops_spec import AlertsSpec, BudgetSpec, GuardrailsSpec, SloSpec, TracingSpec
from components.alerts import AgentAlerts
from components.budget import AgentBudget
from components.dashboard import AgentDashboard
from components.guardrails import AgentGuardrails
from components.notifications import NotificationChannels
from components.observability import AgentObservability, tracing_env
from components.signals import AgentSignals
from components.slo import AgentSlos
from components.monitoring import MonitoringContext

__all__ = ["AgentIdentity", "AgentPlatform", "AgentSpec", "CloudRunAgent", "PlatformSpec", "ReleaseSpec", "RolloutSpec"]
__all__ += [
    "AgentAlerts", "AgentBudget", "AgentDashboard", "AgentGuardrails", "AgentObservability", "AgentSignals",
    "AgentSlos", "AlertsSpec", "BudgetSpec", "GuardrailsSpec", "MonitoringContext", "NotificationChannels", "SloSpec",
    "TracingSpec",
    "tracing_env",
]
