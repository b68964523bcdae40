"""AgentObservability: everything that watches one environment's agents, from its spec.

Composes, per environment, the :class:`~components.notifications.NotificationChannels` and
the :class:`~components.dashboard.AgentDashboard`, and per agent its
:class:`~components.alerts.AgentAlerts`, :class:`~components.slo.AgentSlos` and
:class:`~components.signals.AgentSignals`. Agents on Agent Engine, a Vertex AI endpoint or GKE get
their :class:`~components.alerts.AgentAlerts` from their runtime's own metrics; the SLOs,
log-based signals and dashboard rows read Cloud Run metrics and logs, so they are built for
Cloud Run agents only. :func:`tracing_env` gives the OpenTelemetry env
vars an instrumented agent expects.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from components.alerts import AgentAlerts
from components.contract import COMPONENT_TYPES
from components.dashboard import AgentDashboard, DashboardRow
from components.errors import ComponentError
from components.labels import agent_labels, platform_labels
from components.monitoring import MonitoringContext, RevisionRef, RuntimeTarget
from components.notifications import NotificationChannels
from components.signals import AgentSignals
from components.slo import AgentSlos
from components.spec import PlatformSpec

__all__ = ["AgentObservability", "MANAGED_RUNTIMES", "tracing_env"]

#: Runtimes whose agents are watched through their own metrics (a ``RuntimeTarget`` each).
MANAGED_RUNTIMES = ("agent-engine", "vertex-endpoint", "gke")


def tracing_env(spec: PlatformSpec, agent: str, service: str | None = None) -> dict[str, str]:
    """OpenTelemetry env vars of ``agent``: service name (the Cloud Run service: ``service``,
    default the platform's name for it), version (the release version) and environment as
    resource attributes, and a parent-based trace-id-ratio sampler at the environment's sample
    rate. Empty when tracing is off."""
    tracing = spec.tracing
    if not tracing.enabled:
        return {}
    release = spec.agents[agent].release
    rate = tracing.effective_sample_rate(spec.is_production)
    env = {
        "OTEL_SERVICE_NAME": service or spec.service_name(agent),
        "OTEL_RESOURCE_ATTRIBUTES": (
            f"service.version={release.version},deployment.environment.name={spec.environment},"
            f"service.namespace=agentstage,gcp.project_id={spec.project}"
        ),
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": f"{rate:g}",
    }
    if tracing.otlp_endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = tracing.otlp_endpoint
    return env


class AgentObservability(pulumi.ComponentResource):
    """Alerts, SLOs, agent signals, dashboard and notification channels of one environment.

    ``revisions``: agent -> its named revisions (the candidate the template deploys and,
    during a canary, the stable one), as the agent's ``CloudRunAgent`` names them.
    ``targets``: agent -> what the alerts of an agent on ``agent-engine``,
    ``vertex-endpoint`` or ``gke`` filter on; required for every such agent.

    With ``alerts.enabled: false`` only the notification channels are created (the budget
    still notifies them). ``channel_names`` and ``email_channel_names`` are lists of channel
    name outputs. Outputs: ``dashboard_id`` (None when disabled) and ``policies`` (agent ->
    alert policy names).
    """

    channel_names: list[pulumi.Output[str]]
    email_channel_names: list[pulumi.Output[str]]
    dashboard_id: pulumi.Output[str | None]
    policies: pulumi.Output[Mapping[str, Mapping[str, str]]]

    def __init__(
        self,
        name: str,
        spec: PlatformSpec,
        *,
        stack: str,
        revisions: Mapping[str, list[RevisionRef]],
        targets: Mapping[str, RuntimeTarget] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["AgentObservability"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        alerts = spec.alerts
        env_labels = platform_labels(spec.environment, spec.labels)
        self.channels = NotificationChannels(
            f"{name}-notify",
            spec=alerts,
            project=spec.project,
            environment=spec.environment,
            labels=env_labels,
            opts=child,
        )
        self.alerts: dict[str, AgentAlerts] = {}
        self.slos: dict[str, AgentSlos] = {}
        self.signals: dict[str, AgentSignals] = {}
        self.dashboard: AgentDashboard | None = None
        targets = dict(targets or {})
        for agent, aspec in sorted(spec.agents.items()):
            if aspec.runtime in MANAGED_RUNTIMES and (agent not in targets or targets[agent].runtime != aspec.runtime):
                raise ComponentError(
                    "AgentObservability",
                    name,
                    f"agent {agent} runs on {aspec.runtime} but has no {aspec.runtime} target",
                )
        if alerts.enabled:
            for agent, aspec in sorted(spec.agents.items()):
                if agent in targets:
                    target = targets[agent]
                    ctx = MonitoringContext(
                        agent=agent,
                        spec=alerts,
                        service=spec.service_name(agent),
                        project=spec.project,
                        region=spec.region,
                        stack=stack,
                        revisions=target.revisions,
                        channels=self.channels.names,
                        labels=agent_labels(spec.environment, agent, aspec.release.version, spec.labels),
                        target=target,
                    )
                    self.alerts[agent] = AgentAlerts(agent, ctx, scaling=aspec.scaling, opts=child)
                    continue
                ctx = MonitoringContext(
                    agent=agent,
                    spec=alerts,
                    service=spec.service_name(agent),
                    project=spec.project,
                    region=spec.region,
                    stack=stack,
                    revisions=revisions[agent],
                    channels=self.channels.names,
                    labels=agent_labels(spec.environment, agent, aspec.release.version, spec.labels),
                )
                self.alerts[agent] = AgentAlerts(agent, ctx, scaling=aspec.scaling, opts=child)
                self.slos[agent] = AgentSlos(agent, ctx, opts=child)
                self.signals[agent] = AgentSignals(agent, ctx, opts=child)
            self.dashboard = AgentDashboard(
                f"{name}-agents",
                alerts=alerts,
                project=spec.project,
                environment=spec.environment,
                rows=[
                    DashboardRow(a, spec.service_name(a), s.scaling.max_instances)
                    for a, s in spec.agents.items()
                    if a not in targets
                ],
                labels=env_labels,
                depends_on=[m for s in self.signals.values() for m in s.metrics.values()],
                opts=child,
            )
        self.channel_names = self.channels.names
        self.email_channel_names = self.channels.email_names
        self.dashboard_id = self.dashboard.dashboard_id if self.dashboard else pulumi.Output.from_input(None)
        self.policies = pulumi.Output.from_input(
            {
                agent: pulumi.Output.all(
                    self.alerts[agent].policy_names,
                    *[part[agent].policy_names for part in (self.slos, self.signals) if agent in part],
                ).apply(lambda parts: {k: v for part in parts for k, v in part.items()})
                for agent in self.alerts
            }
        )
        self.register_outputs(
            {
                "channel_names": self.channel_names,
                "email_channel_names": self.email_channel_names,
                "dashboard_id": self.dashboard_id,
                "policies": self.policies,
            }
        )
