"""agentstage Pulumi components: what an agent needs in one environment.

The names below are imported on first use (PEP 562), so a light module of the package
(``components.contract``, ``components.revision``, the specs) does not pull in the Pulumi
SDK and pulumi-gcp for a caller that only needs it: the CLI imports those while the offline
engine runs the program, with the cycle collector paused.
"""

from __future__ import annotations

import importlib
from typing import Any

#: name -> the module that defines it
_EXPORTS = {
    "AgentIdentity": "identity",
    "DeployerIdentity": "deployer",
    "DeployerSpec": "deployer_spec",
    "AgentPlatform": "platform",
    "CloudRunAgent": "cloud_run",
    "AgentSpec": "spec",
    "PlatformSpec": "spec",
    "ReleaseSpec": "spec",
    "RolloutSpec": "spec",
    "AlertsSpec": "ops_spec",
    "BudgetSpec": "ops_spec",
    "GuardrailsSpec": "ops_spec",
    "SloSpec": "ops_spec",
    "TracingSpec": "ops_spec",
    "AgentAlerts": "alerts",
    "AgentBudget": "budget",
    "AgentDashboard": "dashboard",
    "AgentGuardrails": "guardrails",
    "NotificationChannels": "notifications",
    "AgentObservability": "observability",
    "tracing_env": "observability",
    "AgentSignals": "signals",
    "AgentSlos": "slo",
    "MonitoringContext": "monitoring",
    "AgentRegistry": "registry",
    "RegisteredAgent": "registry",
    "AgentCardSpec": "registry_spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'components' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"components.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
