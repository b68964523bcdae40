"""AgentAlerts: Cloud Monitoring alert policies on one agent's runtime metrics.

Cloud Run (runtime ``cloud-run``): four policies per agent, each with documentation for the on-call and the environment's
notification channels:

- ``<agent>-errors``      5xx ratio of ``run.googleapis.com/request_count`` above ``error_rate``;
- ``<agent>-latency``     p99 of ``run.googleapis.com/request_latencies`` above ``latency_p99_ms``;
- ``<agent>-memory``      p99 of ``container/memory/utilizations`` above ``memory_utilization``;
- ``<agent>-saturation``  instances of all revisions above ``saturation`` x ``max_instances``,
  the service-level cap (``scaling.maxInstanceCount``) on their sum.

Canary-aware: the error and latency policies have a service-wide condition plus one
condition per named revision (the candidate and, during a canary, the stable one), so a bad
canary at 5% of traffic opens its own incident instead of being averaged away. Conditions
name revisions, never traffic percentages: a rollback (a traffic change) leaves every alert
policy untouched.

Managed runtimes read their own metrics (see :mod:`components.monitoring` for the metric lists
and their sources), with the same ``alerts`` thresholds:

- ``agent-engine``: ``<agent>-errors`` (5xx ratio of ``reasoning_engine/request_count`` by
  ``response_code``) and ``<agent>-latency`` (p99 of ``reasoning_engine/request_latencies``),
  engine-wide: the engine's revision ids are Google's and do not label its metrics;
- ``vertex-endpoint``: ``<agent>-errors`` (5xx ratio of ``prediction/online/response_count``)
  and ``<agent>-latency`` (p99 of the ``total`` ``prediction/online/prediction_latencies``),
  endpoint-wide plus one condition per deployed model (``deployed_model_id``), canary-aware
  like Cloud Run's revisions.

- ``gke``: ``<agent>-errors`` (5xx ratio of the Gateway load balancer's
  ``https/internal/request_count`` by ``response_code_class``) and ``<agent>-latency`` (p99 of
  ``https/internal/total_latencies``), on the backend services of the agent's track Services:
  both tracks together plus one condition per track (``<service>-stable``, ``<service>-canary``),
  canary-aware like Cloud Run's revisions.

Thresholds without a metric there: ``memory_utilization`` on both (Agent Engine reports memory
allocation time, Vertex AI memory bytes used: neither is a share of the limit) and
``saturation`` on both (its ``max_instances`` is a Cloud Run scaling setting); neither on GKE
(the load balancer reports requests, not pods' memory or replicas).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pulumi
import pulumi_gcp as gcp
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
    AlertPolicyConditionConditionThresholdDenominatorAggregationArgs as DenominatorAggregation,
)
from pulumi_gcp.monitoring import (
    AlertPolicyConditionConditionThresholdTriggerArgs as Trigger,
)

from components.contract import COMPONENT_TYPES
from components.monitoring import (
    ALIGNMENT,
    DEPLOYED_MODEL_LABEL,
    ENDPOINT_LATENCIES,
    ENDPOINT_RESPONSE_COUNT,
    ENGINE_REQUEST_COUNT,
    ENGINE_REQUEST_LATENCIES,
    GKE_LB_LATENCIES,
    GKE_LB_REQUEST_COUNT,
    INSTANCE_COUNT,
    MEMORY_UTILIZATIONS,
    REQUEST_COUNT,
    REQUEST_LATENCIES,
    REVISION_LABEL,
    MonitoringContext,
    RevisionRef,
    alert_policy,
    endpoint_filter,
    engine_filter,
    gke_lb_filter,
    run_filter,
)
from components.spec import ScalingSpec

__all__ = ["AgentAlerts"]


def _seconds(minutes: int) -> str:
    return f"{minutes * 60}s"


#: A 5xx response code on the managed runtimes (strings: Agent Engine's ``"503"``, Vertex AI's code
#: or class, per components.monitoring; Monitoring filter syntax,
#: https://cloud.google.com/monitoring/api/v3/filters: "starts_with").
CODE_5XX = 'metric.label."response_code" = starts_with("5")'
#: The end-to-end latency of a Vertex AI prediction (``latency_type``: overhead, model or total).
TOTAL_LATENCY = 'metric.label."latency_type" = "total"'
#: A 5xx response of the GKE Gateway's load balancer (``response_code_class``: INT64, 200, 300,
#: 400, 500 or 0; https://cloud.google.com/monitoring/api/metrics_gcp_i_o).
CLASS_5XX = 'metric.label."response_code_class" = 500'


def _ratio_condition(
    title: str, numerator: pulumi.Input[str], denominator: pulumi.Input[str], group: list[str], rate: float, d: int
) -> AlertPolicyConditionArgs:
    agg = {"alignment_period": ALIGNMENT, "per_series_aligner": "ALIGN_RATE", "cross_series_reducer": "REDUCE_SUM"}
    return AlertPolicyConditionArgs(
        display_name=title,
        condition_threshold=Threshold(
            filter=numerator,
            denominator_filter=denominator,
            aggregations=[Aggregation(**agg, group_by_fields=group)],
            denominator_aggregations=[DenominatorAggregation(**agg, group_by_fields=group)],
            comparison="COMPARISON_GT",
            threshold_value=rate,
            duration=_seconds(d),
            trigger=Trigger(count=1),
            evaluation_missing_data="EVALUATION_MISSING_DATA_INACTIVE",
        ),
    )


def _p99_condition(
    title: str, filter_: pulumi.Input[str], group: list[str], ms: int, d: int
) -> AlertPolicyConditionArgs:
    return AlertPolicyConditionArgs(
        display_name=title,
        condition_threshold=Threshold(
            filter=filter_,
            aggregations=[
                Aggregation(
                    alignment_period=ALIGNMENT,
                    per_series_aligner="ALIGN_DELTA",
                    cross_series_reducer="REDUCE_PERCENTILE_99",
                    group_by_fields=group,
                )
            ],
            comparison="COMPARISON_GT",
            threshold_value=ms,
            duration=_seconds(d),
            trigger=Trigger(count=1),
            evaluation_missing_data="EVALUATION_MISSING_DATA_INACTIVE",
        ),
    )


def _managed_conditions(
    ctx: MonitoringContext,
) -> tuple[list[AlertPolicyConditionArgs], list[AlertPolicyConditionArgs]]:
    """(error conditions, latency conditions) of an agent on a managed runtime. Condition
    titles name the metric they read, so a reader (and agent-alert-policies, in a first preview
    where the engine id in the filter is still unknown) can tell what each watches."""
    target, spec, service, d = ctx.target, ctx.spec, ctx.service, ctx.spec.duration_minutes
    assert target is not None
    rate, ms = spec.error_rate, spec.latency_p99_ms
    if target.runtime == "agent-engine":
        ident = pulumi.Output.from_input(target.resource_id)
        errors = [
            _ratio_condition(
                f"{service} 5xx ratio of reasoning_engine/request_count > {rate:g}",
                ident.apply(lambda i: engine_filter(ENGINE_REQUEST_COUNT, i, extra=[CODE_5XX])),
                ident.apply(lambda i: engine_filter(ENGINE_REQUEST_COUNT, i)),
                [],
                rate,
                d,
            )
        ]
        latency = [
            _p99_condition(
                f"{service} p99 of reasoning_engine/request_latencies > {ms} ms",
                ident.apply(lambda i: engine_filter(ENGINE_REQUEST_LATENCIES, i)),
                [],
                ms,
                d,
            )
        ]
        return errors, latency
    if target.runtime == "gke":
        return _gke_conditions(ctx)
    endpoint = target.resource_id
    assert isinstance(endpoint, str), "a Vertex AI endpoint's id is derived at plan time"
    models: list[RevisionRef | None] = [None, *target.revisions]

    def who(r: RevisionRef | None) -> str:
        return service if r is None else f"{r.revision} ({r.role} {r.version})"

    def group(r: RevisionRef | None) -> list[str]:
        return [DEPLOYED_MODEL_LABEL] if r else []

    def model(r: RevisionRef | None) -> str | None:
        return r.revision if r else None

    errors = [
        _ratio_condition(
            f"{who(r)} 5xx ratio of prediction/online/response_count > {rate:g}",
            endpoint_filter(ENDPOINT_RESPONSE_COUNT, endpoint, deployed_model=model(r), extra=[CODE_5XX]),
            endpoint_filter(ENDPOINT_RESPONSE_COUNT, endpoint, deployed_model=model(r)),
            group(r),
            rate,
            d,
        )
        for r in models
    ]
    latency = [
        _p99_condition(
            f"{who(r)} p99 of prediction/online/prediction_latencies > {ms} ms",
            endpoint_filter(ENDPOINT_LATENCIES, endpoint, deployed_model=model(r), extra=[TOTAL_LATENCY]),
            group(r),
            ms,
            d,
        )
        for r in models
    ]
    return errors, latency


def _gke_conditions(
    ctx: MonitoringContext,
) -> tuple[list[AlertPolicyConditionArgs], list[AlertPolicyConditionArgs]]:
    """(error conditions, latency conditions) of a GKE agent: both tracks' Services together,
    then one condition per track (the backend service of each Service)."""
    target, spec, service, d = ctx.target, ctx.spec, ctx.service, ctx.spec.duration_minutes
    assert target is not None and target.port is not None
    namespace = target.resource_id
    assert isinstance(namespace, str), "a GKE agent's namespace is known at plan time"
    rate, ms, port = spec.error_rate, spec.latency_p99_ms, target.port
    tracks: list[RevisionRef | None] = [None, *target.revisions]
    every = [r.revision for r in target.revisions]

    def who(r: RevisionRef | None) -> str:
        return service if r is None else f"{r.revision} ({r.role} {r.version})"

    def services(r: RevisionRef | None) -> list[str]:
        return every if r is None else [r.revision]

    errors = [
        _ratio_condition(
            f"{who(r)} 5xx ratio of https/internal/request_count > {rate:g}",
            gke_lb_filter(GKE_LB_REQUEST_COUNT, namespace, services(r), port, extra=[CLASS_5XX]),
            gke_lb_filter(GKE_LB_REQUEST_COUNT, namespace, services(r), port),
            [],
            rate,
            d,
        )
        for r in tracks
    ]
    latency = [
        _p99_condition(
            f"{who(r)} p99 of https/internal/total_latencies > {ms} ms",
            gke_lb_filter(GKE_LB_LATENCIES, namespace, services(r), port),
            [],
            ms,
            d,
        )
        for r in tracks
    ]
    return errors, latency


class AgentAlerts(pulumi.ComponentResource):
    """The alert policies of one agent (see the module docstring).

    Outputs: ``policy_names`` (role -> alert policy resource name).
    """

    policy_names: pulumi.Output[Mapping[str, str]]

    def __init__(
        self,
        name: str,
        ctx: MonitoringContext,
        *,
        scaling: ScalingSpec,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["AgentAlerts"], name, None, opts)
        spec, service, revisions = ctx.spec, ctx.service, ctx.revisions
        child = pulumi.ResourceOptions(parent=self)
        self.policies: dict[str, gcp.monitoring.AlertPolicy] = {}
        d = spec.duration_minutes

        def policy(role: str, **kw: object) -> None:
            self.policies[role] = alert_policy(ctx, f"{name}-{role}", opts=child, **kw)  # type: ignore[arg-type]

        if ctx.target is not None:
            self._managed(name, ctx, policy)
            self.policy_names = pulumi.Output.from_input({k: p.name for k, p in self.policies.items()})
            self.register_outputs({"policy_names": self.policy_names})
            return

        # 5xx ratio: service-wide and per revision.
        def error_condition(title: str, revision: str | None) -> AlertPolicyConditionArgs:
            group = [REVISION_LABEL] if revision else []
            return AlertPolicyConditionArgs(
                display_name=title,
                condition_threshold=Threshold(
                    filter=run_filter(
                        REQUEST_COUNT, service, revision=revision, extra=['metric.label."response_code_class" = "5xx"']
                    ),
                    denominator_filter=run_filter(REQUEST_COUNT, service, revision=revision),
                    aggregations=[
                        Aggregation(
                            alignment_period=ALIGNMENT,
                            per_series_aligner="ALIGN_RATE",
                            cross_series_reducer="REDUCE_SUM",
                            group_by_fields=group,
                        )
                    ],
                    denominator_aggregations=[
                        DenominatorAggregation(
                            alignment_period=ALIGNMENT,
                            per_series_aligner="ALIGN_RATE",
                            cross_series_reducer="REDUCE_SUM",
                            group_by_fields=group,
                        )
                    ],
                    comparison="COMPARISON_GT",
                    threshold_value=spec.error_rate,
                    duration=_seconds(d),
                    trigger=Trigger(count=1),
                    evaluation_missing_data="EVALUATION_MISSING_DATA_INACTIVE",
                ),
            )

        policy(
            "errors",
            title=f"{name}: 5xx ratio above {spec.error_rate * 100:g}%",
            severity="CRITICAL",
            conditions=[error_condition(f"{service} 5xx ratio > {spec.error_rate:g}", None)]
            + [
                error_condition(f"{r.revision} ({r.role} {r.version}) 5xx ratio > {spec.error_rate:g}", r.revision)
                for r in revisions
            ],
            means=f"More than {spec.error_rate:.2%} of the requests to {service} failed with a 5xx status "
            f"for {d} minutes, across the service or on one of its revisions.",
            steps=[
                "Open the incident: it names the service or the revision whose ratio crossed the threshold.",
                f'Read the agent\'s error logs: `resource.type="cloud_run_revision" '
                f'resource.labels.service_name="{service}" severity>=ERROR`.',
                "Check the tool-call error and model signals on the environment dashboard.",
            ],
        )

        # p99 latency: service-wide and per revision.
        def latency_condition(title: str, revision: str | None) -> AlertPolicyConditionArgs:
            return AlertPolicyConditionArgs(
                display_name=title,
                condition_threshold=Threshold(
                    filter=run_filter(REQUEST_LATENCIES, service, revision=revision),
                    aggregations=[
                        Aggregation(
                            alignment_period=ALIGNMENT,
                            per_series_aligner="ALIGN_DELTA",
                            cross_series_reducer="REDUCE_PERCENTILE_99",
                            group_by_fields=[REVISION_LABEL] if revision else [],
                        )
                    ],
                    comparison="COMPARISON_GT",
                    threshold_value=spec.latency_p99_ms,
                    duration=_seconds(d),
                    trigger=Trigger(count=1),
                    evaluation_missing_data="EVALUATION_MISSING_DATA_INACTIVE",
                ),
            )

        policy(
            "latency",
            title=f"{name}: p99 latency above {spec.latency_p99_ms} ms",
            severity="ERROR",
            conditions=[latency_condition(f"{service} p99 latency > {spec.latency_p99_ms} ms", None)]
            + [
                latency_condition(
                    f"{r.revision} ({r.role} {r.version}) p99 latency > {spec.latency_p99_ms} ms", r.revision
                )
                for r in revisions
            ],
            means=f"The 99th percentile of request latency of {service} stayed above {spec.latency_p99_ms} ms "
            f"for {d} minutes.",
            steps=[
                "Check whether the model or a tool is slow: the dashboard splits latency by revision.",
                "Check instance count against max_instances (saturation) and CPU throttling.",
                "If only the candidate revision is slow, roll back (below).",
            ],
        )

        # Memory: p99 utilization per revision.
        policy(
            "memory",
            title=f"{name}: memory utilization above {spec.memory_utilization:.0%}",
            severity="WARNING",
            conditions=[
                AlertPolicyConditionArgs(
                    display_name=f"{service} p99 memory utilization > {spec.memory_utilization:.0%} (per revision)",
                    condition_threshold=Threshold(
                        filter=run_filter(MEMORY_UTILIZATIONS, service),
                        aggregations=[
                            Aggregation(
                                alignment_period=ALIGNMENT,
                                per_series_aligner="ALIGN_DELTA",
                                cross_series_reducer="REDUCE_PERCENTILE_99",
                                group_by_fields=[REVISION_LABEL],
                            )
                        ],
                        comparison="COMPARISON_GT",
                        threshold_value=spec.memory_utilization,
                        duration=_seconds(2 * d),
                        trigger=Trigger(count=1),
                    ),
                )
            ],
            means=f"Containers of {service} used more than {spec.memory_utilization:.0%} of their memory limit "
            f"for {2 * d} minutes; out-of-memory restarts drop in-flight conversations.",
            steps=[
                "Check for a memory leak in the revision named by the incident (growing conversation state, caches).",
                "Raise resources.memory in the stack config or lower scaling.concurrency, in a new release.",
            ],
        )

        # Saturation: the instances of every revision together against the service-level cap
        # (the service's scaling.maxInstanceCount caps their sum; during a canary each revision
        # alone stays well below it, so per-revision caps would be the wrong quantity).
        if scaling.max_instances > scaling.min_instances:
            limit = round(spec.saturation * scaling.max_instances, 2)
            policy(
                "saturation",
                title=f"{name}: instances above {limit:g} of max {scaling.max_instances}",
                severity="WARNING",
                conditions=[
                    AlertPolicyConditionArgs(
                        display_name=f"{service} instances (all revisions) > {limit:g} "
                        f"(service max_instances {scaling.max_instances})",
                        condition_threshold=Threshold(
                            filter=run_filter(INSTANCE_COUNT, service),
                            aggregations=[
                                Aggregation(
                                    alignment_period=ALIGNMENT,
                                    per_series_aligner="ALIGN_MAX",
                                    cross_series_reducer="REDUCE_SUM",
                                    group_by_fields=[],
                                )
                            ],
                            comparison="COMPARISON_GT",
                            threshold_value=limit,
                            duration=_seconds(2 * d),
                            trigger=Trigger(count=1),
                        ),
                    )
                ],
                means=f"{service} ran more than {limit:g} instances across its revisions (the service allows "
                f"{scaling.max_instances} in all) for {2 * d} minutes: close to the cap, new requests queue and "
                "then fail with 429/503.",
                steps=[
                    "Check request rate and latency: a slow dependency makes requests pile up.",
                    "Raise scaling.max_instances (and the quota) or scaling.concurrency if the load is legitimate.",
                ],
            )

        self.policy_names = pulumi.Output.from_input({k: p.name for k, p in self.policies.items()})
        self.register_outputs({"policy_names": self.policy_names})

    @staticmethod
    def _managed(name: str, ctx: MonitoringContext, policy: Callable[..., None]) -> None:
        """The error and latency policies of an agent on a managed runtime (module docstring)."""
        spec, service, d = ctx.spec, ctx.service, ctx.spec.duration_minutes
        assert ctx.target is not None
        runtime = ctx.target.runtime
        engine = runtime == "agent-engine"
        errors, latency = _managed_conditions(ctx)
        if engine:
            logs = (
                '`resource.type="aiplatform.googleapis.com/ReasoningEngine" '
                'resource.labels.reasoning_engine_id="<id>" severity>=ERROR` (the id ends the engine\'s name)'
            )
        elif runtime == "gke":
            logs = (
                f'`resource.type="k8s_container" resource.labels.namespace_name="{ctx.target.resource_id}" '
                "severity>=ERROR`"
            )
        else:
            logs = (
                f'`resource.type="aiplatform.googleapis.com/Endpoint" '
                f'resource.labels.endpoint_id="{ctx.target.resource_id}" severity>=ERROR`'
            )
        what = {"agent-engine": "Agent Engine", "gke": "GKE agent"}.get(runtime, "Vertex AI endpoint")
        where = {"agent-engine": ".", "gke": ", across its tracks or on one of them."}.get(
            runtime, ", across the endpoint or on one of its deployed models."
        )
        policy(
            "errors",
            title=f"{name}: 5xx ratio above {spec.error_rate * 100:g}%",
            severity="CRITICAL",
            conditions=errors,
            means=f"More than {spec.error_rate:.2%} of the requests to the {what} {service} failed with a 5xx "
            f"status for {d} minutes" + where,
            steps=[
                "Open the incident: it names the condition whose ratio crossed the threshold.",
                f"Read the agent's error logs: {logs}.",
                "Check the model and tool dependencies the agent calls.",
            ],
        )
        policy(
            "latency",
            title=f"{name}: p99 latency above {spec.latency_p99_ms} ms",
            severity="ERROR",
            conditions=latency,
            means=f"The 99th percentile of request latency of the {what} {service} stayed above "
            f"{spec.latency_p99_ms} ms for {d} minutes.",
            steps=[
                "Check whether the model or a tool is slow.",
                "Check the replicas or instances against the runtime's maximum.",
                "If only the canary is slow, roll back (below).",
            ],
        )
