"""AgentAlerts: Cloud Monitoring alert policies on one agent's Cloud Run metrics.

Four policies per agent, each with documentation for the on-call and the environment's
notification channels:

- ``<agent>-errors``      5xx ratio of ``run.googleapis.com/request_count`` above ``error_rate``;
- ``<agent>-latency``     p99 of ``run.googleapis.com/request_latencies`` above ``latency_p99_ms``;
- ``<agent>-memory``      p99 of ``container/memory/utilizations`` above ``memory_utilization``;
- ``<agent>-saturation``  instances above ``saturation`` x ``max_instances``.

Canary-aware: the error and latency policies have a service-wide condition plus one
condition per named revision (the candidate and, during a canary, the stable one), so a bad
canary at 5% of traffic opens its own incident instead of being averaged away. Conditions
name revisions, never traffic percentages: a rollback (a traffic change) leaves every alert
policy untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp.monitoring import (
    AlertPolicyAlertStrategyArgs,
    AlertPolicyConditionArgs,
    AlertPolicyConditionConditionThresholdAggregationArgs as Aggregation,
    AlertPolicyConditionConditionThresholdArgs as Threshold,
    AlertPolicyConditionConditionThresholdDenominatorAggregationArgs as DenominatorAggregation,
    AlertPolicyConditionConditionThresholdTriggerArgs as Trigger,
    AlertPolicyDocumentationArgs,
    AlertPolicyDocumentationLinkArgs,
)

from components.ops_spec import AlertsSpec
from components.spec import AgentSpec, ScalingSpec, revision_name

__all__ = [
    "AgentAlerts",
    "RevisionRef",
    "agent_revisions",
    "canary_of",
    "run_filter",
    "REQUEST_COUNT",
    "REQUEST_LATENCIES",
    "MEMORY_UTILIZATIONS",
    "INSTANCE_COUNT",
    "REVISION_LABEL",
    "documentation",
]

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
MEMORY_UTILIZATIONS = "run.googleapis.com/container/memory/utilizations"
INSTANCE_COUNT = "run.googleapis.com/container/instance_count"
REVISION_LABEL = 'resource.label."revision_name"'
#: Incidents close by themselves this long after the condition stops being met.
AUTO_CLOSE = "1800s"
ALIGNMENT = "60s"


@dataclass(frozen=True)
class RevisionRef:
    """A named revision of the agent and the role it plays: ``release`` (no canary), or
    ``candidate`` / ``stable`` during a canary."""

    role: str
    revision: str
    version: str


def agent_revisions(service: str, spec: AgentSpec) -> list[RevisionRef]:
    """The named revisions an agent's traffic can reach: the release alone, or during a
    canary the ``candidate`` (the release) and ``stable``. Independent of the traffic split."""
    if spec.stable is None:
        return [RevisionRef("release", revision_name(service, spec.release.version), spec.release.version)]
    return [
        RevisionRef("candidate", revision_name(service, spec.release.version), spec.release.version),
        RevisionRef("stable", revision_name(service, spec.stable.version), spec.stable.version),
    ]


def canary_of(revisions: Sequence[RevisionRef]) -> RevisionRef | None:
    return next((r for r in revisions if r.role == "candidate"), None)


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


def _seconds(minutes: int) -> str:
    return f"{minutes * 60}s"


def documentation(
    *,
    title: str,
    means: str,
    steps: Sequence[str],
    agent: str,
    stack: str,
    canary: RevisionRef | None,
    runbook_url: str | None,
) -> AlertPolicyDocumentationArgs:
    """On-call documentation: what the alert means, first steps, and how to roll back."""
    lines = [f"## {title}", "", means, "", "### First steps", ""]
    lines += [f"{i}. {step}" for i, step in enumerate(steps, 1)]
    lines += ["", "### Roll back", ""]
    if canary is not None:
        lines.append(
            f"A canary of {agent} {canary.version} (revision `{canary.revision}`) is in progress. "
            f"If the incident names that revision, send all traffic back to stable now:"
        )
    else:
        lines.append(f"No canary is in progress for {agent}; to return to a previous release, roll back its stack:")
    lines += ["", f"    agentstage rollback {stack} --apply", ""]
    if runbook_url:
        lines += [f"Runbook: {runbook_url}"]
    return AlertPolicyDocumentationArgs(
        subject=f"[{stack}] {title}"[:255],
        content="\n".join(lines).rstrip() + "\n",
        mime_type="text/markdown",
        links=[AlertPolicyDocumentationLinkArgs(display_name="Runbook", url=runbook_url)] if runbook_url else None,
    )


class AgentAlerts(pulumi.ComponentResource):
    """The alert policies of one agent (see the module docstring).

    ``revisions`` are the agent's named revisions: the candidate (the release the template
    runs) and, during a canary, the stable one. Outputs: ``policy_names`` (role -> alert
    policy resource name).
    """

    policy_names: pulumi.Output[Mapping[str, str]]

    def __init__(
        self,
        name: str,
        *,
        spec: AlertsSpec,
        service: str,
        project: str,
        stack: str,
        scaling: ScalingSpec,
        revisions: Sequence[RevisionRef],
        channels: pulumi.Input[Sequence[str]],
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("agentstage:alerts:AgentAlerts", name, None, opts)
        self.spec = spec
        self._name = name
        self._project = project
        self._channels = channels
        self._labels = dict(labels)
        self._service = service
        self._stack = stack
        self._canary = canary_of(revisions)
        self.policies: dict[str, gcp.monitoring.AlertPolicy] = {}
        d = spec.duration_minutes

        # 5xx ratio: service-wide and per revision.
        def error_condition(title: str, revision: str | None) -> AlertPolicyConditionArgs:
            group = [REVISION_LABEL] if revision else []
            return AlertPolicyConditionArgs(
                display_name=title,
                condition_threshold=Threshold(
                    filter=run_filter(REQUEST_COUNT, service, revision=revision,
                                      extra=['metric.label."response_code_class" = "5xx"']),
                    denominator_filter=run_filter(REQUEST_COUNT, service, revision=revision),
                    aggregations=[Aggregation(alignment_period=ALIGNMENT, per_series_aligner="ALIGN_RATE",
                                              cross_series_reducer="REDUCE_SUM", group_by_fields=group)],
                    denominator_aggregations=[DenominatorAggregation(
                        alignment_period=ALIGNMENT, per_series_aligner="ALIGN_RATE",
                        cross_series_reducer="REDUCE_SUM", group_by_fields=group)],
                    comparison="COMPARISON_GT",
                    threshold_value=spec.error_rate,
                    duration=_seconds(d),
                    trigger=Trigger(count=1),
                    evaluation_missing_data="EVALUATION_MISSING_DATA_INACTIVE",
                ),
            )

        self._policy(
            "errors",
            title=f"{name}: 5xx ratio above {spec.error_rate * 100:g}%",
            severity="CRITICAL",
            conditions=[error_condition(f"{service} 5xx ratio > {spec.error_rate:g}", None)]
            + [error_condition(f"{r.revision} ({r.role} {r.version}) 5xx ratio > {spec.error_rate:g}", r.revision)
               for r in revisions],
            means=f"More than {spec.error_rate:.2%} of the requests to {service} failed with a 5xx status "
            f"for {d} minutes, across the service or on one of its revisions.",
            steps=[
                "Open the incident: it names the service or the revision whose ratio crossed the threshold.",
                f"Read the agent's error logs: `resource.type=\"cloud_run_revision\" "
                f"resource.labels.service_name=\"{service}\" severity>=ERROR`.",
                "Check the tool-call error and model signals on the environment dashboard.",
            ],
        )

        # p99 latency: service-wide and per revision.
        def latency_condition(title: str, revision: str | None) -> AlertPolicyConditionArgs:
            return AlertPolicyConditionArgs(
                display_name=title,
                condition_threshold=Threshold(
                    filter=run_filter(REQUEST_LATENCIES, service, revision=revision),
                    aggregations=[Aggregation(alignment_period=ALIGNMENT, per_series_aligner="ALIGN_DELTA",
                                              cross_series_reducer="REDUCE_PERCENTILE_99",
                                              group_by_fields=[REVISION_LABEL] if revision else [])],
                    comparison="COMPARISON_GT",
                    threshold_value=spec.latency_p99_ms,
                    duration=_seconds(d),
                    trigger=Trigger(count=1),
                    evaluation_missing_data="EVALUATION_MISSING_DATA_INACTIVE",
                ),
            )

        self._policy(
            "latency",
            title=f"{name}: p99 latency above {spec.latency_p99_ms} ms",
            severity="ERROR",
            conditions=[latency_condition(f"{service} p99 latency > {spec.latency_p99_ms} ms", None)]
            + [latency_condition(f"{r.revision} ({r.role} {r.version}) p99 latency > {spec.latency_p99_ms} ms",
                                 r.revision) for r in revisions],
            means=f"The 99th percentile of request latency of {service} stayed above {spec.latency_p99_ms} ms "
            f"for {d} minutes.",
            steps=[
                "Check whether the model or a tool is slow: the dashboard splits latency by revision.",
                "Check instance count against max_instances (saturation) and CPU throttling.",
                "If only the candidate revision is slow, roll back (below).",
            ],
        )

        # Memory: p99 utilization per revision.
        self._policy(
            "memory",
            title=f"{name}: memory utilization above {spec.memory_utilization:.0%}",
            severity="WARNING",
            conditions=[AlertPolicyConditionArgs(
                display_name=f"{service} p99 memory utilization > {spec.memory_utilization:.0%} (per revision)",
                condition_threshold=Threshold(
                    filter=run_filter(MEMORY_UTILIZATIONS, service),
                    aggregations=[Aggregation(alignment_period=ALIGNMENT, per_series_aligner="ALIGN_DELTA",
                                              cross_series_reducer="REDUCE_PERCENTILE_99",
                                              group_by_fields=[REVISION_LABEL])],
                    comparison="COMPARISON_GT",
                    threshold_value=spec.memory_utilization,
                    duration=_seconds(2 * d),
                    trigger=Trigger(count=1),
                ),
            )],
            means=f"Containers of {service} used more than {spec.memory_utilization:.0%} of their memory limit "
            f"for {2 * d} minutes; out-of-memory restarts drop in-flight conversations.",
            steps=[
                "Check for a memory leak in the revision named by the incident (growing conversation state, caches).",
                "Raise resources.memory in the stack config or lower scaling.concurrency, in a new release.",
            ],
        )

        # Saturation: instances close to max_instances.
        if scaling.max_instances > scaling.min_instances:
            limit = round(spec.saturation * scaling.max_instances, 2)
            self._policy(
                "saturation",
                title=f"{name}: instances above {limit:g} of max {scaling.max_instances}",
                severity="WARNING",
                conditions=[AlertPolicyConditionArgs(
                    display_name=f"{service} instances > {limit:g} (max_instances {scaling.max_instances})",
                    condition_threshold=Threshold(
                        filter=run_filter(INSTANCE_COUNT, service),
                        aggregations=[Aggregation(alignment_period=ALIGNMENT, per_series_aligner="ALIGN_MAX",
                                                  cross_series_reducer="REDUCE_SUM", group_by_fields=[])],
                        comparison="COMPARISON_GT",
                        threshold_value=limit,
                        duration=_seconds(2 * d),
                        trigger=Trigger(count=1),
                    ),
                )],
                means=f"{service} ran more than {limit:g} instances (max_instances is {scaling.max_instances}) for "
                f"{2 * d} minutes: close to the cap, new requests queue and then fail with 429/503.",
                steps=[
                    "Check request rate and latency: a slow dependency makes requests pile up.",
                    "Raise scaling.max_instances (and the quota) or scaling.concurrency if the load is legitimate.",
                ],
            )

        self.policy_names = pulumi.Output.from_input({k: p.name for k, p in self.policies.items()})
        self.register_outputs({"policy_names": self.policy_names})

    def _policy(
        self,
        role: str,
        *,
        title: str,
        severity: str,
        conditions: list[AlertPolicyConditionArgs],
        means: str,
        steps: Sequence[str],
    ) -> None:
        self.policies[role] = gcp.monitoring.AlertPolicy(
            f"{self._name}-{role}",
            project=self._project,
            display_name=f"[{self._stack}] {title}",
            combiner="OR",
            conditions=conditions,
            severity=severity,
            notification_channels=self._channels,
            documentation=documentation(
                title=title, means=means, steps=steps, agent=self._name, stack=self._stack,
                canary=self._canary, runbook_url=self.spec.runbook_url,
            ),
            alert_strategy=AlertPolicyAlertStrategyArgs(auto_close=AUTO_CLOSE),
            user_labels=self._labels,
            enabled=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
