"""AgentSlos: request-based availability and latency SLOs of one agent, with burn-rate alerts.

The Cloud Run service is registered in Service Monitoring as a ``GenericService`` of basic
type ``CLOUD_RUN`` (id ``agentstage-<service>``), so the console shows its SLOs next to the
service. Two SLOs over a rolling window:

- ``availability``: share of requests that are not 5xx (``request_count`` by ``response_code_class``);
- ``latency``: share of requests faster than ``slo.latency_ms`` (``request_latencies`` cut).

Burn-rate alerts (Google SRE workbook style): ``<agent>-slo-fast-burn`` when the error
budget burns ``fast_burn_rate`` x too fast over one hour (page), ``<agent>-slo-slow-burn``
at ``slow_burn_rate`` x over six hours (ticket).
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp.monitoring import (
    AlertPolicyConditionArgs,
    GenericServiceBasicServiceArgs,
    SloRequestBasedSliArgs,
    SloRequestBasedSliDistributionCutArgs,
    SloRequestBasedSliDistributionCutRangeArgs,
    SloRequestBasedSliGoodTotalRatioArgs,
)
from pulumi_gcp.monitoring import (
    AlertPolicyConditionConditionThresholdArgs as Threshold,
)
from pulumi_gcp.monitoring import (
    AlertPolicyConditionConditionThresholdTriggerArgs as Trigger,
)

from components.contract import COMPONENT_TYPES
from components.monitoring import REQUEST_COUNT, REQUEST_LATENCIES, MonitoringContext, alert_policy, run_filter

__all__ = ["AgentSlos", "slo_service_id", "slo_name", "burn_rate_filter", "BURN_WINDOWS"]

#: burn-rate alert -> (lookback window, severity)
BURN_WINDOWS = {"fast-burn": ("3600s", "CRITICAL"), "slow-burn": ("21600s", "WARNING")}


def slo_service_id(service: str) -> str:
    return f"agentstage-{service}"


def slo_name(project: str, service: str, slo_id: str) -> str:
    return f"projects/{project}/services/{slo_service_id(service)}/serviceLevelObjectives/{slo_id}"


def burn_rate_filter(name: str, window: str) -> str:
    return f'select_slo_burn_rate("{name}", "{window}")'


class AgentSlos(pulumi.ComponentResource):
    """The SLOs of one agent and their burn-rate alerts (see the module docstring).

    Outputs: ``slo_names`` (``availability``/``latency`` -> SLO resource name) and
    ``policy_names`` (``fast-burn``/``slow-burn`` -> alert policy name).
    """

    slo_names: pulumi.Output[Mapping[str, str]]
    policy_names: pulumi.Output[Mapping[str, str]]

    def __init__(self, name: str, ctx: MonitoringContext, *, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPES["AgentSlos"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec, service, project, stack, labels = ctx.spec, ctx.service, ctx.project, ctx.stack, ctx.labels
        slo = spec.slo
        self.service = gcp.monitoring.GenericService(
            f"{name}-slo-service",
            project=project,
            service_id=slo_service_id(service),
            display_name=f"{service} agent ({stack})",
            basic_service=GenericServiceBasicServiceArgs(
                service_type="CLOUD_RUN", service_labels={"service_name": service, "location": ctx.region}
            ),
            user_labels=dict(labels),
            opts=child,
        )
        latency_ms = spec.slo_latency_ms
        self.slos = {
            "availability": gcp.monitoring.Slo(
                f"{name}-slo-availability",
                project=project,
                service=self.service.service_id,
                slo_id="availability",
                display_name=f"{service}: {slo.availability:.2%} of requests succeed ({slo.window_days}d)",
                goal=slo.availability,
                rolling_period_days=slo.window_days,
                request_based_sli=SloRequestBasedSliArgs(
                    good_total_ratio=SloRequestBasedSliGoodTotalRatioArgs(
                        total_service_filter=run_filter(REQUEST_COUNT, service),
                        bad_service_filter=run_filter(
                            REQUEST_COUNT, service, extra=['metric.label."response_code_class" = "5xx"']
                        ),
                    )
                ),
                user_labels=dict(labels),
                opts=child,
            ),
            "latency": gcp.monitoring.Slo(
                f"{name}-slo-latency",
                project=project,
                service=self.service.service_id,
                slo_id="latency",
                display_name=f"{service}: {slo.latency_goal:.2%} of requests under {latency_ms} ms ({slo.window_days}d)",
                goal=slo.latency_goal,
                rolling_period_days=slo.window_days,
                request_based_sli=SloRequestBasedSliArgs(
                    distribution_cut=SloRequestBasedSliDistributionCutArgs(
                        distribution_filter=run_filter(REQUEST_LATENCIES, service),
                        range=SloRequestBasedSliDistributionCutRangeArgs(max=latency_ms),
                    )
                ),
                user_labels=dict(labels),
                opts=child,
            ),
        }
        self.policies: dict[str, gcp.monitoring.AlertPolicy] = {}
        rates = {"fast-burn": slo.fast_burn_rate, "slow-burn": slo.slow_burn_rate}
        for key, (window, severity) in BURN_WINDOWS.items():
            rate = rates[key]
            hours = int(window[:-1]) // 3600
            title = f"{name}: SLO error budget burning {rate:g}x too fast ({hours}h)"
            self.policies[key] = alert_policy(
                ctx,
                f"{name}-slo-{key}",
                title=title,
                severity=severity,
                conditions=[
                    AlertPolicyConditionArgs(
                        display_name=f"{service} {slo_id} SLO burn rate > {rate:g} over {hours}h",
                        condition_threshold=Threshold(
                            filter=burn_rate_filter(slo_name(project, service, slo_id), window),
                            comparison="COMPARISON_GT",
                            threshold_value=rate,
                            duration="0s",
                            trigger=Trigger(count=1),
                        ),
                    )
                    for slo_id in self.slos
                ],
                means=f"At the error rate of the last {hours} hours, {service} would spend its "
                f"{slo.window_days}-day error budget {rate:g} times over "
                f"(availability goal {slo.availability:.2%}, latency goal {slo.latency_goal:.2%} under {latency_ms} ms).",
                steps=[
                    "Open the service's SLO page in Cloud Monitoring: which SLO burns, since when.",
                    "Match the start with the release timeline (`agentstage status`) and the canary steps.",
                    "A fast burn during a canary step is a reason to roll back first and investigate after.",
                ],
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.slos.values())),
            )
        self.slo_names = pulumi.Output.from_input({k: s.name for k, s in self.slos.items()})
        self.policy_names = pulumi.Output.from_input({k: p.name for k, p in self.policies.items()})
        self.register_outputs({"slo_names": self.slo_names, "policy_names": self.policy_names})
