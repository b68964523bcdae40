"""What the monitoring components share: the agent's monitoring context, its named revisions,
Cloud Run metric filters, on-call documentation and the way an alert policy is built.

:class:`AgentAlerts`, :class:`AgentSlos` and :class:`AgentSignals` each take one
:class:`MonitoringContext` (which agent, service, project, stack, revisions, channels and
labels), built once per agent by :class:`~components.observability.AgentObservability`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    "documentation",
    "alert_policy",
    "REQUEST_COUNT",
    "REQUEST_LATENCIES",
    "MEMORY_UTILIZATIONS",
    "INSTANCE_COUNT",
    "REVISION_LABEL",
    "AUTO_CLOSE",
    "ALIGNMENT",
    "MIN_MISSING_DATA_DURATION",
]

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
MEMORY_UTILIZATIONS = "run.googleapis.com/container/memory/utilizations"
INSTANCE_COUNT = "run.googleapis.com/container/instance_count"
REVISION_LABEL = 'resource.label."revision_name"'
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
