"""What the monitoring components share: the agent's monitoring context, its named revisions,
metric filters of each runtime, on-call documentation and the way an alert policy is built.

:class:`AgentAlerts`, :class:`AgentSlos` and :class:`AgentSignals` each take one
:class:`MonitoringContext` (which agent, service, project, stack, revisions, channels and
labels), built once per agent by :class:`~components.observability.AgentObservability`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp.monitoring import (
    AlertPolicyAlertStrategyArgs,
    AlertPolicyConditionArgs,
    AlertPolicyDocumentationArgs,
    AlertPolicyDocumentationLinkArgs,
)

from components.ops_spec import AlertsSpec
from components.spec import AgentSpec

__all__ = [
    "MonitoringContext",
    "RevisionRef",
    "agent_revisions",
    "run_filter",
    "engine_filter",
    "endpoint_filter",
    "RuntimeTarget",
    "runtime_targets",
    "RUNTIME_METRICS",
    "documentation",
    "alert_policy",
    "REQUEST_COUNT",
    "REQUEST_LATENCIES",
    "MEMORY_UTILIZATIONS",
    "INSTANCE_COUNT",
    "REVISION_LABEL",
    "ENGINE_RESOURCE",
    "ENGINE_REQUEST_COUNT",
    "ENGINE_REQUEST_LATENCIES",
    "ENGINE_ID_LABEL",
    "ENDPOINT_RESOURCE",
    "ENDPOINT_RESPONSE_COUNT",
    "ENDPOINT_LATENCIES",
    "ENDPOINT_ID_LABEL",
    "DEPLOYED_MODEL_LABEL",
    "GKE_LB_RESOURCE",
    "GKE_LB_REQUEST_COUNT",
    "GKE_LB_LATENCIES",
    "GKE_BACKEND_LABEL",
    "gke_lb_filter",
    "gateway_backend_pattern",
    "AUTO_CLOSE",
    "ALIGNMENT",
    "MIN_MISSING_DATA_DURATION",
]

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
MEMORY_UTILIZATIONS = "run.googleapis.com/container/memory/utilizations"
INSTANCE_COUNT = "run.googleapis.com/container/instance_count"
REVISION_LABEL = 'resource.label."revision_name"'

# Agent Engine (runtime ``agent-engine``): the built-in metrics of the monitored resource
# ``aiplatform.googleapis.com/ReasoningEngine`` (resource labels ``resource_container``,
# ``location`` and ``reasoning_engine_id``, the engine's numeric id). From the ``aiplatform``
# table of Google Cloud metrics (https://cloud.google.com/monitoring/api/metrics_gcp_a_b,
# read 2026-11; all BETA): ``reasoning_engine/request_count`` DELTA INT64 and
# ``reasoning_engine/request_latencies`` DELTA DISTRIBUTION in ms, both labelled ``type``,
# ``response_code`` and ``response_code_class`` (strings: the "Monitor an agent" page,
# https://cloud.google.com/agent-builder/agent-engine/manage/monitoring, shows
# ``"response_code": "200", "response_code_class": "2xx"``); ``reasoning_engine/cpu/allocation_time``
# and ``memory/allocation_time`` DELTA DOUBLE (``s{CPU}``, ``GiBy.s``). No label names a
# revision, so these metrics cannot tell a canary revision from the stable one, and no memory
# *utilization* metric exists (allocation time is GiB-seconds reserved, not a share of the
# limit), so ``alerts.memory_utilization`` has no metric on this runtime.
ENGINE_RESOURCE = "aiplatform.googleapis.com/ReasoningEngine"
ENGINE_REQUEST_COUNT = "aiplatform.googleapis.com/reasoning_engine/request_count"
ENGINE_REQUEST_LATENCIES = "aiplatform.googleapis.com/reasoning_engine/request_latencies"
ENGINE_ID_LABEL = 'resource.label."reasoning_engine_id"'

# Vertex AI online prediction (runtime ``vertex-endpoint``): metrics of the monitored resource
# ``aiplatform.googleapis.com/Endpoint`` (resource labels ``resource_container``, ``location``,
# ``endpoint_id``). From the ``aiplatform`` table of Google Cloud metrics
# (https://cloud.google.com/monitoring/api/metrics_gcp_a_b, read 2026-11; all BETA):
# ``prediction/online/response_count`` DELTA INT64 labelled ``deployed_model_id``,
# ``response_code`` (a string, described as "HTTP response code (1xx, 2xx, 3xx, 4xx, 5xx)"),
# ``spot``, ``model_display_name`` and ``endpoint_display_name``;
# ``prediction/online/prediction_latencies`` DELTA DISTRIBUTION in ms labelled
# ``deployed_model_id`` and ``latency_type`` (``overhead``, ``model`` or ``total``; "total" is
# always populated); ``prediction/online/memory/bytes_used`` GAUGE INT64 (bytes, not a share of
# the machine's memory), ``replicas`` GAUGE INT64, ``cpu/utilization`` GAUGE DOUBLE. Whether
# ``response_code`` holds the code (``"503"``) or its class (``"5xx"``) is not shown by any
# example read here: the 5xx filters match ``starts_with("5")``, right either way, but a 429 can
# only be told apart if it is the code. Memory is reported in bytes only, so
# ``alerts.memory_utilization`` (a share) has no metric on this runtime.
ENDPOINT_RESOURCE = "aiplatform.googleapis.com/Endpoint"
ENDPOINT_RESPONSE_COUNT = "aiplatform.googleapis.com/prediction/online/response_count"
ENDPOINT_LATENCIES = "aiplatform.googleapis.com/prediction/online/prediction_latencies"
ENDPOINT_ID_LABEL = 'resource.label."endpoint_id"'
DEPLOYED_MODEL_LABEL = 'metric.label."deployed_model_id"'

# GKE (runtime ``gke``): the agent's traffic enters through the GKE Gateway, which provisions an
# internal Application Load Balancer (regional, ``gke-l7-rilb`` class); its request metrics are
# the agent's request metrics. From the ``loadbalancing`` table of Google Cloud metrics
# (https://cloud.google.com/monitoring/api/metrics_gcp_i_o, read 2026-11; GA), on the monitored
# resource ``internal_http_lb_rule``: ``https/internal/request_count`` DELTA INT64 and
# ``https/internal/total_latencies`` DELTA DISTRIBUTION in ms, labelled ``protocol``,
# ``response_code`` (INT64), ``response_code_class`` ("(INT64) HTTP response code class: 200, 300,
# 400, 500 or 0 for none") and ``cache_result``; resource labels include ``url_map_name``,
# ``forwarding_rule_name``, ``backend_target_name`` ("name of the backend target or service") and
# ``backend_name`` (the backend group). The regional and cross-region internal balancers have the
# same metrics (https://cloud.google.com/load-balancing/docs/l7-internal/monitoring).
# The name the Gateway controller gives a Service's backend service is not documented; see
# :mod:`components.gke_spec` (``GATEWAY_NAME_ROOM``) for the shape these filters match and why
# the config keeps namespace, Service and port short enough that it is never cut.
# There is no memory utilization or instance-count metric on the load balancer, so
# ``memory_utilization`` and ``saturation`` have no alert on this runtime.
GKE_LB_RESOURCE = "internal_http_lb_rule"
GKE_LB_REQUEST_COUNT = "loadbalancing.googleapis.com/https/internal/request_count"
GKE_LB_LATENCIES = "loadbalancing.googleapis.com/https/internal/total_latencies"
GKE_BACKEND_LABEL = 'resource.label."backend_target_name"'

#: runtime -> (monitored resource type, metric types the alerts read). The alerts of a runtime
#: read its own metrics only.
RUNTIME_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cloud-run": ("cloud_run_revision", (REQUEST_COUNT, REQUEST_LATENCIES, MEMORY_UTILIZATIONS, INSTANCE_COUNT)),
    "agent-engine": (ENGINE_RESOURCE, (ENGINE_REQUEST_COUNT, ENGINE_REQUEST_LATENCIES)),
    "vertex-endpoint": (ENDPOINT_RESOURCE, (ENDPOINT_RESPONSE_COUNT, ENDPOINT_LATENCIES)),
    "gke": (GKE_LB_RESOURCE, (GKE_LB_REQUEST_COUNT, GKE_LB_LATENCIES)),
}

#: Incidents close by themselves this long after the condition stops being met.
AUTO_CLOSE = "1800s"
ALIGNMENT = "60s"
#: A condition that sets evaluationMissingData needs a duration of at least this (Monitoring
#: API v3, ``MetricThreshold.evaluationMissingData``: "...must have a non-zero duration";
#: the API refuses less than 60 s).
MIN_MISSING_DATA_DURATION = 60


@dataclass(frozen=True)
class RevisionRef:
    """A named revision of the agent and the role it plays: ``release`` (no canary), or
    ``candidate`` / ``stable`` during a canary."""

    role: str
    revision: str
    version: str


def agent_revisions(spec: AgentSpec, release_revision: str, stable_revision: str | None) -> list[RevisionRef]:
    """The named revisions an agent's traffic can reach: the release alone, or during a
    canary the ``candidate`` (the release) and ``stable``. Independent of the traffic split."""
    if spec.stable is None or stable_revision is None:
        return [RevisionRef("release", release_revision, spec.release.version)]
    return [
        RevisionRef("candidate", release_revision, spec.release.version),
        RevisionRef("stable", stable_revision, spec.stable.version),
    ]


@dataclass(frozen=True)
class RuntimeTarget:
    """What the alerts of an agent on a managed runtime filter on.

    ``runtime``: ``agent-engine``, ``vertex-endpoint`` or ``gke``; ``resource_id``: the value of the
    monitored resource's id label (the engine's numeric id, Google-assigned, so known only once
    the engine exists; the endpoint's id, derived at plan time; for GKE the agent's namespace);
    ``revisions``: the deployed models of an endpoint (their ids label its metrics) or the GKE
    tracks' Services (``<service>-stable`` / ``<service>-canary``); empty for an engine, whose
    revision ids are Google's and do not label its metrics. ``port``: the GKE Services' port."""

    runtime: str
    resource_id: pulumi.Input[str]
    revisions: Sequence[RevisionRef] = ()
    port: int | None = None


def runtime_targets(
    agents: Mapping[str, AgentSpec],
    engines: Mapping[str, Any],
    endpoints: Mapping[str, Any],
    gke_agents: Mapping[str, str] | None = None,
) -> dict[str, RuntimeTarget]:
    """The targets of the agents on Agent Engine (``AgentEngineAgent`` by agent: the id is the
    last segment of the engine's generated name, ``projects/<p>/locations/<l>/reasoningEngines/<id>``,
    pulumi-gcp ``AiReasoningEngine.name``) and on Vertex AI endpoints (``VertexEndpointAgent`` by
    agent: the id ends its plan-time resource name; one revision per deployed model) and on GKE
    (``gke_agents``: agent -> its service name; the namespace and port come from its spec, one
    revision per track's Service, as ``GkeAgent`` names them)."""
    out = {
        agent: RuntimeTarget(
            "agent-engine",
            eng.engine.name.apply(lambda n: n.rsplit("/", 1)[-1]),
            agent_revisions(
                agents[agent],
                "LATEST",
                agents[agent].agent_engine.stable_revision if agents[agent].agent_engine else None,
            ),
        )
        for agent, eng in engines.items()
    }
    for agent, ep in endpoints.items():
        out[agent] = RuntimeTarget(
            "vertex-endpoint",
            ep.endpoint_resource_name.rsplit("/", 1)[-1],
            agent_revisions(agents[agent], ep.release_id, ep.stable_id),
        )
    for agent, service in (gke_agents or {}).items():
        spec = agents[agent]
        assert spec.gke is not None
        stable = f"{service}-stable"
        out[agent] = RuntimeTarget(
            "gke",
            spec.gke.namespace or agent,
            agent_revisions(spec, f"{service}-canary" if spec.stable else stable, stable if spec.stable else None),
            port=spec.gke.service_port,
        )
    return out


@dataclass(frozen=True)
class MonitoringContext:
    """One agent as its monitoring sees it.

    ``channels`` is a list of notification channel names (each may be unknown in a first
    preview; the list's length is known)."""

    agent: str
    spec: AlertsSpec
    service: str
    project: str
    region: str
    stack: str
    revisions: Sequence[RevisionRef]
    channels: Sequence[pulumi.Input[str]]
    labels: Mapping[str, str] = field(default_factory=dict)
    #: None for Cloud Run; the managed runtime's target otherwise.
    target: RuntimeTarget | None = None

    @property
    def canary(self) -> RevisionRef | None:
        return next((r for r in self.revisions if r.role == "candidate"), None)


def run_filter(metric: str, service: str, *, revision: str | None = None, extra: Sequence[str] = ()) -> str:
    """A Monitoring filter on one Cloud Run service's ``metric`` (and one revision)."""
    parts = [
        f'metric.type = "{metric}"',
        'resource.type = "cloud_run_revision"',
        f'resource.label."service_name" = "{service}"',
    ]
    if revision:
        parts.append(f'{REVISION_LABEL} = "{revision}"')
    parts.extend(extra)
    return " AND ".join(parts)


def _managed_filter(metric: str, resource: str, id_label: str, resource_id: str, extra: Sequence[str]) -> str:
    parts = [f'metric.type = "{metric}"', f'resource.type = "{resource}"']
    if id_label:
        parts.append(f'{id_label} = "{resource_id}"')
    return " AND ".join([*parts, *extra])


def engine_filter(metric: str, engine_id: str, *, extra: Sequence[str] = ()) -> str:
    """A Monitoring filter on one Agent Engine's ``metric`` (``engine_id``: the numeric id)."""
    return _managed_filter(metric, ENGINE_RESOURCE, ENGINE_ID_LABEL, engine_id, extra)


def endpoint_filter(
    metric: str, endpoint_id: str, *, deployed_model: str | None = None, extra: Sequence[str] = ()
) -> str:
    """A Monitoring filter on one Vertex AI endpoint's ``metric`` (and one deployed model)."""
    more = [f'{DEPLOYED_MODEL_LABEL} = "{deployed_model}"'] if deployed_model else []
    return _managed_filter(metric, ENDPOINT_RESOURCE, ENDPOINT_ID_LABEL, endpoint_id, [*more, *extra])


def gateway_backend_pattern(namespace: str, services: Sequence[str], port: int) -> str:
    """The RE2 (and Python) pattern of the backend service names the GKE Gateway gives the
    Kubernetes ``services`` of ``namespace`` on ``port`` (Kubernetes names need no escaping)."""
    alt = services[0] if len(services) == 1 else "(" + "|".join(services) + ")"
    return f"gkegw1-[a-z0-9]+-{namespace}-{alt}-{port}-[a-z0-9]+"


def gke_lb_filter(metric: str, namespace: str, services: Sequence[str], port: int, *, extra: Sequence[str] = ()) -> str:
    """A Monitoring filter on the GKE Gateway load balancer's ``metric`` for the backend services
    of the Kubernetes ``services`` (in ``namespace``, on ``port``); see the source note above on
    the backend service name. The hashes around the names have no dash, so namespace ``x-ns``
    never passes for ``ns``."""
    backend = (
        f'{GKE_BACKEND_LABEL} = monitoring.regex.full_match("{gateway_backend_pattern(namespace, services, port)}")'
    )
    return _managed_filter(metric, GKE_LB_RESOURCE, "", "", [backend, *extra])


def documentation(
    ctx: MonitoringContext, *, title: str, means: str, steps: Sequence[str]
) -> AlertPolicyDocumentationArgs:
    """On-call documentation: what the alert means, first steps, and how to roll back."""
    lines = [f"## {title}", "", means, "", "### First steps", ""]
    lines += [f"{i}. {step}" for i, step in enumerate(steps, 1)]
    lines += ["", "### Roll back", ""]
    canary = ctx.canary
    if canary is not None:
        lines.append(
            f"A canary of {ctx.agent} {canary.version} (revision `{canary.revision}`) is in progress. "
            f"If the incident names that revision, send all traffic back to stable now:"
        )
    else:
        lines.append(f"No canary is in progress for {ctx.agent}; to return to a previous release, roll back its stack:")
    lines += ["", f"    agentstage rollback {ctx.stack} --apply", ""]
    runbook = ctx.spec.runbook_url
    if runbook:
        lines += [f"Runbook: {runbook}"]
    return AlertPolicyDocumentationArgs(
        subject=f"[{ctx.stack}] {title}"[:255],
        content="\n".join(lines).rstrip() + "\n",
        mime_type="text/markdown",
        links=[AlertPolicyDocumentationLinkArgs(display_name="Runbook", url=runbook)] if runbook else None,
    )


def alert_policy(
    ctx: MonitoringContext,
    resource_name: str,
    *,
    title: str,
    severity: str,
    conditions: Sequence[AlertPolicyConditionArgs],
    means: str,
    steps: Sequence[str],
    opts: pulumi.ResourceOptions,
) -> gcp.monitoring.AlertPolicy:
    """An alert policy of the agent: OR of ``conditions``, the environment's channels, on-call
    documentation, auto-close, the agent's labels."""
    return gcp.monitoring.AlertPolicy(
        resource_name,
        project=ctx.project,
        display_name=f"[{ctx.stack}] {title}",
        combiner="OR",
        conditions=list(conditions),
        severity=severity,
        notification_channels=list(ctx.channels),
        documentation=documentation(ctx, title=title, means=means, steps=steps),
        alert_strategy=AlertPolicyAlertStrategyArgs(auto_close=AUTO_CLOSE),
        user_labels=dict(ctx.labels),
        enabled=True,
        opts=opts,
    )
