"""AgentDashboard: one Cloud Monitoring dashboard per environment, one row per agent.

Each row has a header and eight charts, every series split by revision
(``resource.label."revision_name"``) so stable and canary are side by side: requests/s, 5xx
ratio, latency p50/p95/p99, instances, memory utilization, tool-call errors, guardrail
blocks and tokens per model call. Thresholds of the alert policies are drawn on the charts.
The JSON depends only on service names and thresholds, never on traffic percentages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.contract import COMPONENT_TYPES
from components.monitoring import (
    INSTANCE_COUNT,
    MEMORY_UTILIZATIONS,
    REQUEST_COUNT,
    REQUEST_LATENCIES,
    REVISION_LABEL,
    run_filter,
)
from components.ops_spec import AlertsSpec
from components.signals import signal_metric_name

__all__ = ["AgentDashboard", "DashboardRow", "dashboard_json", "COLUMNS", "CHARTS"]

COLUMNS = 48
HEADER_HEIGHT = 2
CHART_HEIGHT = 14
#: The charts of a row, left to right.
CHARTS = ("requests", "errors", "latency", "instances", "memory", "tool-errors", "guardrail-blocks", "tokens")
CHART_WIDTH = COLUMNS // len(CHARTS)
BY_REVISION = "${resource.labels.revision_name}"


@dataclass(frozen=True)
class DashboardRow:
    """One agent's row: its name, Cloud Run service and max instances."""

    agent: str
    service: str
    max_instances: int


def _aggregation(aligner: str, reducer: str, period: str = "60s") -> dict[str, Any]:
    return {
        "alignmentPeriod": period,
        "perSeriesAligner": aligner,
        "crossSeriesReducer": reducer,
        "groupByFields": [REVISION_LABEL],
    }


def _series(filter_: str, aligner: str, reducer: str, legend: str, period: str = "60s") -> dict[str, Any]:
    return {
        "plotType": "LINE",
        "legendTemplate": legend,
        "targetAxis": "Y1",
        "timeSeriesQuery": {
            "timeSeriesFilter": {"filter": filter_, "aggregation": _aggregation(aligner, reducer, period)}
        },
    }


def _chart(title: str, data_sets: list[dict[str, Any]], *, unit: str, threshold: float | None = None) -> dict[str, Any]:
    chart: dict[str, Any] = {"dataSets": data_sets, "yAxis": {"label": unit, "scale": "LINEAR"}}
    if threshold is not None:
        chart["thresholds"] = [{"value": threshold, "label": "alert", "targetAxis": "Y1"}]
    return {"title": title, "xyChart": chart}


def _log_metric(service: str, signal: str) -> str:
    return (
        f'metric.type = "logging.googleapis.com/user/{signal_metric_name(service, signal)}" AND '
        f'resource.type = "cloud_run_revision"'
    )


def _row_widgets(row: DashboardRow, alerts: AlertsSpec) -> list[dict[str, Any]]:
    svc = row.service
    errors = {
        "plotType": "LINE",
        "legendTemplate": BY_REVISION,
        "targetAxis": "Y1",
        "timeSeriesQuery": {
            "timeSeriesFilterRatio": {
                "numerator": {
                    "filter": run_filter(REQUEST_COUNT, svc, extra=['metric.label."response_code_class" = "5xx"']),
                    "aggregation": _aggregation("ALIGN_RATE", "REDUCE_SUM"),
                },
                "denominator": {
                    "filter": run_filter(REQUEST_COUNT, svc),
                    "aggregation": _aggregation("ALIGN_RATE", "REDUCE_SUM"),
                },
            }
        },
    }
    latency = [
        _series(run_filter(REQUEST_LATENCIES, svc), "ALIGN_DELTA", f"REDUCE_PERCENTILE_{p}", f"p{p} {BY_REVISION}")
        for p in (50, 95, 99)
    ]
    return [
        _chart(
            "Requests/s by revision",
            [_series(run_filter(REQUEST_COUNT, svc), "ALIGN_RATE", "REDUCE_SUM", BY_REVISION)],
            unit="req/s",
        ),
        _chart("5xx ratio by revision", [errors], unit="ratio", threshold=alerts.error_rate),
        _chart("Latency p50/p95/p99 by revision (ms)", latency, unit="ms", threshold=alerts.latency_p99_ms),
        _chart(
            "Instances by revision",
            [_series(run_filter(INSTANCE_COUNT, svc), "ALIGN_MAX", "REDUCE_SUM", BY_REVISION)],
            unit="instances",
            threshold=row.max_instances,
        ),
        _chart(
            "Memory utilization p99 by revision",
            [_series(run_filter(MEMORY_UTILIZATIONS, svc), "ALIGN_DELTA", "REDUCE_PERCENTILE_99", BY_REVISION)],
            unit="ratio",
            threshold=alerts.memory_utilization,
        ),
        _chart(
            "Tool-call errors / 5 min by revision",
            [_series(_log_metric(svc, "tool-errors"), "ALIGN_DELTA", "REDUCE_SUM", BY_REVISION, "300s")],
            unit="errors",
            threshold=alerts.tool_errors_per_5m,
        ),
        _chart(
            "Guardrail blocks / 5 min by revision",
            [_series(_log_metric(svc, "guardrail-blocks"), "ALIGN_DELTA", "REDUCE_SUM", BY_REVISION, "300s")],
            unit="blocks",
            threshold=alerts.guardrail_blocks_per_5m,
        ),
        _chart(
            "Tokens per model call p95 by revision",
            [_series(_log_metric(svc, "tokens"), "ALIGN_DELTA", "REDUCE_PERCENTILE_95", BY_REVISION)],
            unit="tokens",
        ),
    ]


def dashboard_json(
    *, environment: str, rows: Sequence[DashboardRow], alerts: AlertsSpec, labels: Mapping[str, str]
) -> str:
    """The dashboard as the Monitoring API's JSON: a mosaic layout, one row per agent in
    name order (stable JSON: keys sorted, so an unchanged config diffs as unchanged)."""
    tiles: list[dict[str, Any]] = []
    y = 0
    for row in sorted(rows, key=lambda r: r.agent):
        tiles.append(
            {
                "xPos": 0,
                "yPos": y,
                "width": COLUMNS,
                "height": HEADER_HEIGHT,
                "widget": {
                    "title": f"{row.agent} ({row.service})",
                    "text": {
                        "content": f"Agent **{row.agent}**, Cloud Run service `{row.service}`: "
                        "every series is split by revision (stable beside canary).",
                        "format": "MARKDOWN",
                    },
                },
            }
        )
        for i, widget in enumerate(_row_widgets(row, alerts)):
            tiles.append(
                {
                    "xPos": i * CHART_WIDTH,
                    "yPos": y + HEADER_HEIGHT,
                    "width": CHART_WIDTH,
                    "height": CHART_HEIGHT,
                    "widget": widget,
                }
            )
        y += HEADER_HEIGHT + CHART_HEIGHT
    body = {
        "displayName": f"agentstage agents ({environment})",
        "labels": dict(sorted(labels.items())),
        "mosaicLayout": {"columns": COLUMNS, "tiles": tiles},
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


class AgentDashboard(pulumi.ComponentResource):
    """The environment's dashboard (see the module docstring). ``depends_on``: resources the
    dashboard resource itself waits for (the log-based metrics its charts read; a dependency
    of the component would not reach its child). Output: ``dashboard_id``."""

    dashboard_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        alerts: AlertsSpec,
        project: str,
        environment: str,
        rows: Sequence[DashboardRow],
        labels: Mapping[str, str],
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["AgentDashboard"], name, None, opts)
        self.dashboard = gcp.monitoring.Dashboard(
            f"{name}-dashboard",
            project=project,
            dashboard_json=dashboard_json(environment=environment, rows=rows, alerts=alerts, labels=labels),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
        self.dashboard_id = self.dashboard.id
        self.register_outputs({"dashboard_id": self.dashboard_id})
