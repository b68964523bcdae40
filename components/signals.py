"""AgentSignals: log-based metrics from an agent's structured logs, and their alerts.

What "model confidence and cost per request" look like in production: the agent writes one
JSON log line per event (Cloud Run sends stdout JSON to Cloud Logging as ``jsonPayload``),
and Cloud Logging turns them into metrics:

==========================  ===========================================================  =====================
metric (``<agent>-...``)     log lines counted                                            alert
==========================  ===========================================================  =====================
``tool-errors``             ``{"event": "tool_call", "tool": "crm-lookup", "outcome": "error"}``   > tool_errors_per_5m
``guardrail-blocks``        ``{"event": "guardrail", "verdict": "blocked", "stage": "prompt"}``    > guardrail_blocks_per_5m
``tokens``                  ``{"event": "model_call", "model": "...", "total_tokens": 1234}``      none (dashboard, budget)
==========================  ===========================================================  =====================

Log-based metrics carry the log entry's monitored resource, so every signal can be split and
alerted per revision: a candidate whose new prompt bundle breaks a tool alerts on its own.

A new log-based metric takes minutes to become visible to Cloud Monitoring, and an alert
policy on it created before then is refused (404 "Cannot find metric(s) ... could take up to
10 minutes"); ``depends_on`` alone does not wait for that. So the alert policies wait for a
``Sleep`` of ``alerts.log_metric_wait_minutes`` (default 10) that starts when the agent's
metrics are created (pulumiverse-time). It delays only the first ``pulumi up`` of an agent;
later updates find it done. The trigger is the set of metric names, so a renamed metric waits
again.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_gcp as gcp
import pulumiverse_time as time
from pulumi_gcp.logging import (
    MetricBucketOptionsArgs,
    MetricBucketOptionsExponentialBucketsArgs,
    MetricMetricDescriptorArgs,
    MetricMetricDescriptorLabelArgs,
)
from pulumi_gcp.monitoring import (
    AlertPolicyConditionArgs,
)
from pulumi_gcp.monitoring import (
    AlertPolicyConditionConditionThresholdAggregationArgs as Aggregation,
)
from pulumi_gcp.monitoring import (
    AlertPolicyConditionConditionThresholdArgs as Threshold,
)
from pulumi_gcp.monitoring import (
    AlertPolicyConditionConditionThresholdTriggerArgs as Trigger,
)

from components.contract import COMPONENT_TYPES, signal_metric_name
from components.monitoring import MIN_MISSING_DATA_DURATION, REVISION_LABEL, MonitoringContext, alert_policy

__all__ = ["AgentSignals", "signal_metric_name", "log_filter", "SIGNALS"]

#: signal -> (log condition on jsonPayload, description)
SIGNALS: dict[str, tuple[str, str]] = {
    "tool-errors": (
        'jsonPayload.event="tool_call" AND jsonPayload.outcome="error"',
        "Tool calls of the agent that failed, by tool.",
    ),
    "guardrail-blocks": (
        'jsonPayload.event="guardrail" AND jsonPayload.verdict="blocked"',
        "Prompts and responses blocked by Model Armor, by stage (prompt or response).",
    ),
    "tokens": (
        'jsonPayload.event="model_call" AND jsonPayload.total_tokens>0',
        "Model tokens per model call, by model: the cost of a request.",
    ),
}


def log_filter(service: str, signal: str) -> str:
    """The Cloud Logging filter of a signal: the service's logs and the event's fields."""
    condition, _ = SIGNALS[signal]
    return f'resource.type="cloud_run_revision" AND resource.labels.service_name="{service}" AND {condition}'


class AgentSignals(pulumi.ComponentResource):
    """Three log-based metrics of one agent (see the module docstring) and alert policies on
    tool-call errors and guardrail blocks, evaluated per revision.

    Outputs: ``metric_types`` (signal -> Monitoring metric type) and ``policy_names``.
    """

    metric_types: pulumi.Output[Mapping[str, str]]
    policy_names: pulumi.Output[Mapping[str, str]]

    def __init__(self, name: str, ctx: MonitoringContext, *, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPES["AgentSignals"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec, service, project = ctx.spec, ctx.service, ctx.project
        self.metrics: dict[str, gcp.logging.Metric] = {}
        for signal, (_, description) in SIGNALS.items():
            if signal == "tokens":
                descriptor = MetricMetricDescriptorArgs(
                    metric_kind="DELTA",
                    value_type="DISTRIBUTION",
                    unit="1",
                    display_name=f"{service} tokens per model call",
                    labels=[
                        MetricMetricDescriptorLabelArgs(key="model", value_type="STRING", description="Model called")
                    ],
                )
                extra = dict(
                    value_extractor="EXTRACT(jsonPayload.total_tokens)",
                    label_extractors={"model": "EXTRACT(jsonPayload.model)"},
                    bucket_options=MetricBucketOptionsArgs(
                        exponential_buckets=MetricBucketOptionsExponentialBucketsArgs(
                            num_finite_buckets=20, growth_factor=2, scale=16
                        )
                    ),
                )
            else:
                key = "tool" if signal == "tool-errors" else "stage"
                descriptor = MetricMetricDescriptorArgs(
                    metric_kind="DELTA",
                    value_type="INT64",
                    unit="1",
                    display_name=f"{service} {signal.replace('-', ' ')}",
                    labels=[MetricMetricDescriptorLabelArgs(key=key, value_type="STRING")],
                )
                extra = dict(label_extractors={key: f"EXTRACT(jsonPayload.{key})"})
            self.metrics[signal] = gcp.logging.Metric(
                f"{name}-{signal}-metric",
                project=project,
                name=signal_metric_name(service, signal),
                description=f"{description} Managed by agentstage.",
                filter=log_filter(service, signal),
                metric_descriptor=descriptor,
                opts=child,
                **extra,
            )
        self.metric_types = pulumi.Output.all(*[m.id for m in self.metrics.values()]).apply(
            lambda _: {s: f"logging.googleapis.com/user/{signal_metric_name(service, s)}" for s in SIGNALS}
        )

        self.policies: dict[str, gcp.monitoring.AlertPolicy] = {}
        # the alert policies name their metrics: create them once Monitoring can see the metrics
        wait: list[pulumi.Resource] = list(self.metrics.values())
        self.metrics_visible: time.Sleep | None = None
        if spec.log_metric_wait_minutes:
            self.metrics_visible = time.Sleep(
                f"{name}-log-metrics-visible",
                create_duration=f"{spec.log_metric_wait_minutes}m",
                triggers={s: signal_metric_name(service, s) for s in SIGNALS},
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.metrics.values())),
            )
            wait.append(self.metrics_visible)
        checks = {
            "tool-errors": (
                spec.tool_errors_per_5m,
                "ERROR",
                "tool-call errors",
                f"{service} logged more than {spec.tool_errors_per_5m} failed tool calls in 5 minutes on one revision.",
                [
                    "The incident names the revision; the metric's `tool` label names the failing tool.",
                    "Check the tool's backend and credentials (Secret Manager versions) and the release's tool versions.",
                    "Disable the tool with a feature flag if it is optional, or roll back a candidate that broke it.",
                ],
            ),
            "guardrail-blocks": (
                spec.guardrail_blocks_per_5m,
                "WARNING",
                "guardrail blocks",
                f"Model Armor blocked more than {spec.guardrail_blocks_per_5m} prompts or responses of {service} "
                "in 5 minutes on one revision: an attack, or a prompt change that trips the filters.",
                [
                    "Read the blocked requests in the sanitize-operation logs of the Model Armor template.",
                    "If the blocks started with a candidate revision, its prompt bundle is the first suspect.",
                ],
            ),
        }
        for signal, (threshold, severity, what, means, steps) in checks.items():
            metric_type = f"logging.googleapis.com/user/{signal_metric_name(service, signal)}"
            self.policies[signal] = alert_policy(
                ctx,
                f"{name}-{signal}",
                title=f"{name}: {what} above {threshold} in 5 minutes",
                severity=severity,
                conditions=[
                    AlertPolicyConditionArgs(
                        display_name=f"{service} {what} > {threshold} / 5 min (per revision)",
                        condition_threshold=Threshold(
                            filter=f'metric.type = "{metric_type}" AND resource.type = "cloud_run_revision" AND '
                            f'resource.label."service_name" = "{service}"',
                            aggregations=[
                                Aggregation(
                                    alignment_period="300s",
                                    per_series_aligner="ALIGN_DELTA",
                                    cross_series_reducer="REDUCE_SUM",
                                    group_by_fields=[REVISION_LABEL],
                                )
                            ],
                            comparison="COMPARISON_GT",
                            threshold_value=threshold,
                            # with evaluationMissingData, Monitoring requires a non-zero duration (>= 60 s)
                            duration=f"{MIN_MISSING_DATA_DURATION}s",
                            trigger=Trigger(count=1),
                            # no log lines means no errors: close the incident rather than hold it open
                            evaluation_missing_data="EVALUATION_MISSING_DATA_INACTIVE",
                        ),
                    )
                ],
                means=means,
                steps=steps,
                opts=pulumi.ResourceOptions(parent=self, depends_on=wait),
            )
        self.policy_names = pulumi.Output.from_input({k: p.name for k, p in self.policies.items()})
        self.register_outputs({"metric_types": self.metric_types, "policy_names": self.policy_names})
