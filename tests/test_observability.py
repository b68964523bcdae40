"""Alerts, SLOs, agent signals, dashboard, notification channels and tracing env, asserted
property by property on plans of the reference stacks (offline engine, Pulumi mock runtime)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.config import ConfigError, platform_from_config
from agentstage.diff import diff_plans
from agentstage.engine import Plan
from components.dashboard import CHART_WIDTH, CHARTS, COLUMNS
from tests.conftest import ROOT, load_stack, plan_of

POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
CHANNEL = "gcp:monitoring/notificationChannel:NotificationChannel"
METRIC = "gcp:logging/metric:Metric"
SLO = "gcp:monitoring/slo:Slo"
SERVICE = "gcp:cloudrunv2/service:Service"
REV = 'resource.label."revision_name"'


def svc_filter(metric: str, service: str) -> str:
    return f'metric.type = "{metric}" AND resource.type = "cloud_run_revision" AND resource.label."service_name" = "{service}"'


def rev(revision: str) -> str:
    return f' AND {REV} = "{revision}"'


FIVE_XX = ' AND metric.label."response_code_class" = "5xx"'
COUNT, LATENCY = "run.googleapis.com/request_count", "run.googleapis.com/request_latencies"
MEMORY, INSTANCES = "run.googleapis.com/container/memory/utilizations", "run.googleapis.com/container/instance_count"


def policy(plan: Plan, name: str) -> dict[str, Any]:
    return plan.find(POLICY, name).inputs


def threshold(condition: dict[str, Any]) -> dict[str, Any]:
    return condition["conditionThreshold"]


def prod_config() -> dict[str, Any]:
    return copy.deepcopy(load_stack("production"))


def revision_of(plan: Plan, agent: str) -> str:
    """The revision the agent's template deploys (``<service>-<version>-<template digest>``)."""
    return plan.find(SERVICE, f"{agent}-service").inputs["template"]["revision"]


# --- alert conditions -----------------------------------------------------------------------


def test_error_ratio_is_alerted_service_wide_and_per_revision_of_the_canary(prod):
    p = policy(prod, "support-bot-errors")
    cand = revision_of(prod, "support-bot")
    assert p["combiner"] == "OR" and p["severity"] == "CRITICAL"
    assert [c["displayName"] for c in p["conditions"]] == [
        "support-bot 5xx ratio > 0.01",
        f"{cand} (candidate 1.4.0) 5xx ratio > 0.01",
        "support-bot-1-3-2 (stable 1.3.2) 5xx ratio > 0.01",
    ]
    whole, candidate, stable = (threshold(c) for c in p["conditions"])
    assert whole["filter"] == svc_filter(COUNT, "support-bot") + FIVE_XX
    assert whole["denominatorFilter"] == svc_filter(COUNT, "support-bot")
    assert candidate["filter"] == svc_filter(COUNT, "support-bot") + rev(cand) + FIVE_XX
    assert candidate["denominatorFilter"] == svc_filter(COUNT, "support-bot") + rev(cand)
    assert stable["filter"] == svc_filter(COUNT, "support-bot") + rev("support-bot-1-3-2") + FIVE_XX
    for cond, group in ((whole, []), (candidate, [REV]), (stable, [REV])):
        for key in ("aggregations", "denominatorAggregations"):
            assert cond[key] == [
                {
                    "alignmentPeriod": "60s",
                    "perSeriesAligner": "ALIGN_RATE",
                    "crossSeriesReducer": "REDUCE_SUM",
                    "groupByFields": group,
                }
            ]
        assert (cond["comparison"], cond["thresholdValue"], cond["duration"]) == ("COMPARISON_GT", 0.01, "300s")
        assert cond["trigger"] == {"count": 1}


def test_latency_p99_is_alerted_service_wide_and_per_revision(prod):
    p = policy(prod, "support-bot-latency")
    assert p["severity"] == "ERROR"
    conds = [threshold(c) for c in p["conditions"]]
    assert [c["filter"] for c in conds] == [
        svc_filter(LATENCY, "support-bot"),
        svc_filter(LATENCY, "support-bot") + rev(revision_of(prod, "support-bot")),
        svc_filter(LATENCY, "support-bot") + rev("support-bot-1-3-2"),
    ]
    for cond, group in zip(conds, ([], [REV], [REV])):
        assert cond["aggregations"] == [
            {
                "alignmentPeriod": "60s",
                "perSeriesAligner": "ALIGN_DELTA",
                "crossSeriesReducer": "REDUCE_PERCENTILE_99",
                "groupByFields": group,
            }
        ]
        assert (cond["comparison"], cond["thresholdValue"], cond["duration"]) == ("COMPARISON_GT", 2000, "300s")


def test_an_agent_without_canary_has_one_revision_condition(prod):
    conds = [threshold(c) for c in policy(prod, "research-agent-errors")["conditions"]]
    assert [c["filter"] for c in conds] == [
        svc_filter(COUNT, "research-agent") + FIVE_XX,
        svc_filter(COUNT, "research-agent") + rev(revision_of(prod, "research-agent")) + FIVE_XX,
    ]
    doc = policy(prod, "research-agent-errors")["documentation"]["content"]
    assert "No canary is in progress for research-agent" in doc


def test_memory_is_alerted_per_revision_over_a_longer_window(prod):
    p = policy(prod, "support-bot-memory")
    [cond] = [threshold(c) for c in p["conditions"]]
    assert p["severity"] == "WARNING"
    assert cond["filter"] == svc_filter(MEMORY, "support-bot")
    assert cond["aggregations"] == [
        {
            "alignmentPeriod": "60s",
            "perSeriesAligner": "ALIGN_DELTA",
            "crossSeriesReducer": "REDUCE_PERCENTILE_99",
            "groupByFields": [REV],
        }
    ]
    assert (cond["comparison"], cond["thresholdValue"], cond["duration"]) == ("COMPARISON_GT", 0.8, "600s")


def test_saturation_threshold_is_a_share_of_max_instances(prod):
    for agent, limit in (("support-bot", 16), ("research-agent", 6.4)):
        p = policy(prod, f"{agent}-saturation")
        [cond] = [threshold(c) for c in p["conditions"]]
        assert cond["filter"] == svc_filter(INSTANCES, agent)
        assert cond["aggregations"] == [
            {
                "alignmentPeriod": "60s",
                "perSeriesAligner": "ALIGN_MAX",
                "crossSeriesReducer": "REDUCE_SUM",
                "groupByFields": [],
            }
        ]
        assert (cond["comparison"], cond["thresholdValue"], cond["duration"]) == ("COMPARISON_GT", limit, "600s")


def test_config_thresholds_reach_every_condition(tmp_path):
    cfg = prod_config()
    cfg["agent-platform:alerts"].update(
        error_rate=0.05, latency_p99_ms=1500, memory_utilization=0.9, saturation=0.5, duration_minutes=10
    )
    bot = cfg["agent-platform:agents"]["support-bot"]
    bot["scaling"]["max_instances"] = 10
    plan = plan_of(tmp_path, cfg)
    values = {
        role: {
            (threshold(c)["thresholdValue"], threshold(c)["duration"])
            for c in policy(plan, f"support-bot-{role}")["conditions"]
        }
        for role in ("errors", "latency", "memory", "saturation")
    }
    assert values == {
        "errors": {(0.05, "600s")},
        "latency": {(1500, "600s")},
        "memory": {(0.9, "1200s")},
        "saturation": {(5, "1200s")},
    }


def test_no_saturation_alert_for_a_fixed_size_agent(tmp_path):
    cfg = prod_config()
    cfg["agent-platform:agents"]["research-agent"]["scaling"].update(min_instances=8, max_instances=8)
    names = {r.name for r in plan_of(tmp_path, cfg).by_type(POLICY)}
    assert "support-bot-saturation" in names and "research-agent-saturation" not in names


def test_every_alert_policy_notifies_documents_and_carries_labels(prod):
    channels = [r.outputs["name"] for r in prod.by_type(CHANNEL)]
    assert channels == [prod.find(CHANNEL, "observability-notify-email-oncall-at-acme-com").outputs["name"]]
    policies = prod.by_type(POLICY)
    assert len(policies) == 16
    for r in policies:
        p = r.inputs
        assert p["notificationChannels"] == channels, r.name
        assert p["severity"] in ("CRITICAL", "ERROR", "WARNING")
        doc = p["documentation"]
        assert doc["mimeType"] == "text/markdown" and doc["subject"].startswith("[production] ")
        assert "### First steps" in doc["content"] and "agentstage rollback production --apply" in doc["content"]
        agent = r.name.split("-")[0] + "-" + r.name.split("-")[1]
        assert p["userLabels"]["agent"] == agent and p["userLabels"]["environment"] == "production"
        assert p["userLabels"]["team"] == "support" and p["userLabels"]["managed-by"] == "agentstage"
        assert p["displayName"].startswith(f"[production] {agent}: ")
        assert p["alertStrategy"] == {"autoClose": "1800s"}
    doc = policy(prod, "support-bot-latency")["documentation"]["content"]
    assert f"A canary of support-bot 1.4.0 (revision `{revision_of(prod, 'support-bot')}`) is in progress" in doc


def test_runbook_url_is_linked_from_the_documentation(tmp_path):
    cfg = prod_config()
    cfg["agent-platform:alerts"]["runbook_url"] = "https://runbooks.acme.com/agents"
    doc = policy(plan_of(tmp_path, cfg), "support-bot-errors")["documentation"]
    assert doc["links"] == [{"displayName": "Runbook", "url": "https://runbooks.acme.com/agents"}]
    assert doc["content"].endswith("Runbook: https://runbooks.acme.com/agents\n")


# --- rollback and promote ----------------------------------------------------------------------


def test_rollback_changes_exactly_the_service_traffic(prod, tmp_path):
    cfg = prod_config()
    cfg["agent-platform:agents"]["support-bot"]["rollout"]["canary_percent"] = 0
    diff = diff_plans(prod, plan_of(tmp_path, cfg))
    assert not diff.creates and not diff.deletes
    assert list(diff.updates) == [prod.find(SERVICE, "support-bot-service").urn]
    # 100% to stable; the candidate leaves the traffic block (no tag, no warm instances)
    assert diff.updates[prod.find(SERVICE, "support-bot-service").urn] == ["traffics"]


def test_promote_drops_the_stable_revision_conditions(tmp_path):
    cfg = prod_config()
    bot = cfg["agent-platform:agents"]["support-bot"]
    del bot["stable"], bot["stable_revision"], bot["rollout"]["canary_percent"]
    plan = plan_of(tmp_path, cfg)
    p = policy(plan, "support-bot-errors")
    assert [c["displayName"] for c in p["conditions"]] == [
        "support-bot 5xx ratio > 0.01",
        f"{revision_of(plan, 'support-bot')} (release 1.4.0) 5xx ratio > 0.01",
    ]


# --- agent signals -------------------------------------------------------------------------------


def test_signal_metrics_read_the_agents_structured_logs(prod):
    base = 'resource.type="cloud_run_revision" AND resource.labels.service_name="support-bot" AND '
    tool = prod.find(METRIC, "support-bot-tool-errors-metric").inputs
    assert tool["name"] == "agentstage/support-bot/tool-errors"
    assert tool["filter"] == base + 'jsonPayload.event="tool_call" AND jsonPayload.outcome="error"'
    assert tool["labelExtractors"] == {"tool": "EXTRACT(jsonPayload.tool)"}
    assert (tool["metricDescriptor"]["metricKind"], tool["metricDescriptor"]["valueType"]) == ("DELTA", "INT64")
    blocks = prod.find(METRIC, "support-bot-guardrail-blocks-metric").inputs
    assert blocks["filter"] == base + 'jsonPayload.event="guardrail" AND jsonPayload.verdict="blocked"'
    assert blocks["labelExtractors"] == {"stage": "EXTRACT(jsonPayload.stage)"}
    tokens = prod.find(METRIC, "support-bot-tokens-metric").inputs
    assert tokens["filter"] == base + 'jsonPayload.event="model_call" AND jsonPayload.total_tokens>0'
    assert tokens["valueExtractor"] == "EXTRACT(jsonPayload.total_tokens)"
    assert tokens["metricDescriptor"]["valueType"] == "DISTRIBUTION"
    assert tokens["bucketOptions"]["exponentialBuckets"] == {"numFiniteBuckets": 20, "growthFactor": 2, "scale": 16}
    assert len(prod.by_type(METRIC)) == 6


def test_signal_alerts_count_per_revision_and_wait_for_their_metric(prod):
    for signal, limit, severity in (("tool-errors", 10, "ERROR"), ("guardrail-blocks", 20, "WARNING")):
        r = prod.find(POLICY, f"support-bot-{signal}")
        [cond] = [threshold(c) for c in r.inputs["conditions"]]
        assert cond["filter"] == svc_filter(
            f"logging.googleapis.com/user/agentstage/support-bot/{signal}", "support-bot"
        )
        assert cond["aggregations"] == [
            {
                "alignmentPeriod": "300s",
                "perSeriesAligner": "ALIGN_DELTA",
                "crossSeriesReducer": "REDUCE_SUM",
                "groupByFields": [REV],
            }
        ]
        assert (cond["comparison"], cond["thresholdValue"]) == ("COMPARISON_GT", limit)
        assert r.inputs["severity"] == severity
        assert prod.find(METRIC, f"support-bot-{signal}-metric").urn in r.dependencies


# --- SLOs -----------------------------------------------------------------------------------------


def test_slos_are_request_based_on_the_cloud_run_service(prod):
    svc = prod.find("gcp:monitoring/genericService:GenericService", "support-bot-slo-service").inputs
    assert svc["serviceId"] == "agentstage-support-bot"
    assert svc["basicService"] == {
        "serviceType": "CLOUD_RUN",
        "serviceLabels": {"service_name": "support-bot", "location": "us-central1"},
    }
    avail = prod.find(SLO, "support-bot-slo-availability").inputs
    assert (avail["sloId"], avail["goal"], avail["rollingPeriodDays"], avail["service"]) == (
        "availability",
        0.995,
        28,
        "agentstage-support-bot",
    )
    assert avail["requestBasedSli"]["goodTotalRatio"] == {
        "totalServiceFilter": svc_filter(COUNT, "support-bot"),
        "badServiceFilter": svc_filter(COUNT, "support-bot") + FIVE_XX,
    }
    latency = prod.find(SLO, "support-bot-slo-latency").inputs
    assert (latency["sloId"], latency["goal"]) == ("latency", 0.99)
    assert latency["requestBasedSli"]["distributionCut"] == {
        "distributionFilter": svc_filter(LATENCY, "support-bot"),
        "range": {"max": 2000},
    }
    assert latency["userLabels"]["agent"] == "support-bot"


def test_slo_goals_come_from_config(tmp_path):
    cfg = prod_config()
    cfg["agent-platform:alerts"]["slo"] = {
        "availability": 0.999,
        "latency_ms": 800,
        "latency_goal": 0.95,
        "window_days": 7,
    }
    plan = plan_of(tmp_path, cfg)
    avail, latency = (
        plan.find(SLO, "research-agent-slo-availability").inputs,
        plan.find(SLO, "research-agent-slo-latency").inputs,
    )
    assert (avail["goal"], avail["rollingPeriodDays"]) == (0.999, 7)
    assert (latency["goal"], latency["requestBasedSli"]["distributionCut"]["range"]) == (0.95, {"max": 800})


def test_burn_rate_alerts_watch_both_slos(prod):
    for key, window, rate, severity in (("fast-burn", "3600s", 10, "CRITICAL"), ("slow-burn", "21600s", 2, "WARNING")):
        r = prod.find(POLICY, f"support-bot-slo-{key}")
        assert r.inputs["severity"] == severity
        filters = [threshold(c)["filter"] for c in r.inputs["conditions"]]
        assert filters == [
            f'select_slo_burn_rate("projects/acme-agents-prod/services/agentstage-support-bot/serviceLevelObjectives/{slo}", "{window}")'
            for slo in ("availability", "latency")
        ]
        assert {threshold(c)["thresholdValue"] for c in r.inputs["conditions"]} == {rate}
        assert prod.find(SLO, "support-bot-slo-availability").urn in r.dependencies


# --- dashboard ---------------------------------------------------------------------------------------


def _dashboard(plan: Plan) -> dict[str, Any]:
    [board] = plan.by_type("gcp:monitoring/dashboard:Dashboard")
    return json.loads(board.inputs["dashboardJson"])


def _filters(widget: dict[str, Any]) -> list[str]:
    out = []
    for ds in widget.get("xyChart", {}).get("dataSets", []):
        q = ds["timeSeriesQuery"]
        if "timeSeriesFilter" in q:
            out.append(q["timeSeriesFilter"])
        else:
            out += [q["timeSeriesFilterRatio"]["numerator"], q["timeSeriesFilterRatio"]["denominator"]]
    return out


def test_dashboard_has_one_row_per_agent_split_by_revision(prod):
    board = _dashboard(prod)
    assert board["displayName"] == "agentstage agents (production)"
    assert board["labels"]["environment"] == "production"
    layout = board["mosaicLayout"]
    assert layout["columns"] == COLUMNS
    rows: dict[int, list[dict[str, Any]]] = {}
    for tile in layout["tiles"]:
        assert 0 <= tile["xPos"] and tile["xPos"] + tile["width"] <= COLUMNS
        rows.setdefault(tile["yPos"], []).append(tile)
    headers = [t for t in layout["tiles"] if "text" in t["widget"]]
    assert [h["widget"]["title"] for h in headers] == ["research-agent (research-agent)", "support-bot (support-bot)"]
    chart_rows = [tiles for tiles in rows.values() if "text" not in tiles[0]["widget"]]
    assert len(chart_rows) == 2
    for tiles, agent in zip(chart_rows, ("research-agent", "support-bot")):
        assert len(tiles) == len(CHARTS) and {t["width"] for t in tiles} == {CHART_WIDTH}
        assert sorted(t["xPos"] for t in tiles) == [i * CHART_WIDTH for i in range(len(CHARTS))]
        filters = [f for t in tiles for f in _filters(t["widget"])]
        assert len(filters) == 11  # requests, 5xx num+den, 3 latency percentiles, instances, memory, 3 signals
        for f in filters:
            assert f"/{agent}/" in f["filter"] or f'"service_name" = "{agent}"' in f["filter"]
            assert f["aggregation"]["groupByFields"] == [REV]
    latency = next(t for t in chart_rows[1] if t["widget"]["title"].startswith("Latency"))
    reducers = [
        ds["timeSeriesQuery"]["timeSeriesFilter"]["aggregation"]["crossSeriesReducer"]
        for ds in latency["widget"]["xyChart"]["dataSets"]
    ]
    assert reducers == ["REDUCE_PERCENTILE_50", "REDUCE_PERCENTILE_95", "REDUCE_PERCENTILE_99"]
    assert latency["widget"]["xyChart"]["thresholds"][0]["value"] == 2000


def test_dashboard_json_does_not_depend_on_the_traffic_split(prod, tmp_path):
    cfg = prod_config()
    cfg["agent-platform:agents"]["support-bot"]["rollout"]["canary_percent"] = 50
    assert _dashboard(plan_of(tmp_path, cfg)) == _dashboard(prod)


# --- notification channels ------------------------------------------------------------------------


def test_channels_from_config_are_keyed_by_target(tmp_path):
    cfg = prod_config()
    cfg["agent-platform:alerts"].update(
        notification_emails=["oncall@acme.com", "ml-team@acme.com"],
        pubsub_topics=["projects/acme-ops/topics/agent-alerts"],
        webhooks=["https://hooks.acme.com/agents?token=abc"],
    )
    plan = plan_of(tmp_path, cfg)
    channels = {r.name: r.inputs for r in plan.by_type(CHANNEL)}
    assert {n: (c["type"], c["labels"]) for n, c in channels.items()} == {
        "observability-notify-email-oncall-at-acme-com": ("email", {"email_address": "oncall@acme.com"}),
        "observability-notify-email-ml-team-at-acme-com": ("email", {"email_address": "ml-team@acme.com"}),
        "observability-notify-pubsub-acme-ops-topics-agent-alerts": (
            "pubsub",
            {"topic": "projects/acme-ops/topics/agent-alerts"},
        ),
        "observability-notify-webhook-hooks-acme-com-agents-token-abc": (
            "webhook_tokenauth",
            {"url": "https://hooks.acme.com/agents?token=abc"},
        ),
    }
    for c in channels.values():
        assert c["userLabels"] == {
            "team": "support",
            "cost-center": "cc-042",
            "environment": "production",
            "managed-by": "agentstage",
        }
    [grant] = plan.by_type("gcp:pubsub/topicIAMMember:TopicIAMMember")
    assert (grant.inputs["topic"], grant.inputs["role"], grant.inputs["project"]) == (
        "projects/acme-ops/topics/agent-alerts",
        "roles/pubsub.publisher",
        "acme-ops",
    )
    assert grant.inputs["member"].endswith("@gcp-sa-monitoring-notification.iam.gserviceaccount.com")
    assert len(policy(plan, "support-bot-errors")["notificationChannels"]) == 4


def test_alerts_disabled_keeps_only_the_channels(tmp_path):
    cfg = prod_config()
    cfg["agent-platform:alerts"]["enabled"] = False
    plan = plan_of(tmp_path, cfg)
    for type_ in (POLICY, SLO, METRIC, "gcp:monitoring/dashboard:Dashboard"):
        assert plan.by_type(type_) == [], type_
    assert len(plan.by_type(CHANNEL)) == 1


# --- tracing --------------------------------------------------------------------------------------


def _env(plan: Plan, agent: str) -> dict[str, str]:
    svc = plan.find(SERVICE, f"{agent}-service").inputs
    return {e["name"]: e.get("value") for e in svc["template"]["containers"][0]["envs"]}


def test_tracing_env_names_service_version_and_samples_10_percent_in_production(prod, stage):
    env = _env(prod, "support-bot")
    assert env["OTEL_SERVICE_NAME"] == "support-bot"
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == (
        "service.version=1.4.0,deployment.environment.name=production,service.namespace=agentstage,"
        "gcp.project_id=acme-agents-prod"
    )
    assert (env["OTEL_TRACES_SAMPLER"], env["OTEL_TRACES_SAMPLER_ARG"]) == ("parentbased_traceidratio", "0.1")
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    assert _env(stage, "research-agent")["OTEL_TRACES_SAMPLER_ARG"] == "1"


def test_tracing_config_and_user_env_that_would_collide(tmp_path):
    cfg = prod_config()
    cfg["agent-platform:tracing"] = {"sample_rate": 0.25, "otlp_endpoint": "https://otel.acme.com"}
    plan = plan_of(tmp_path, cfg)
    env = _env(plan, "research-agent")
    assert (env["OTEL_TRACES_SAMPLER_ARG"], env["OTEL_EXPORTER_OTLP_ENDPOINT"]) == ("0.25", "https://otel.acme.com")
    assert env["OTEL_SERVICE_NAME"] == "research-agent"
    # a user env var named like one agentstage injects would be a duplicate env name: refused
    cfg["agent-platform:agents"]["research-agent"]["env"]["OTEL_SERVICE_NAME"] = "research"
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    assert err.value.issues == [
        'agent-platform:agents.research-agent.env.OTEL_SERVICE_NAME: "OTEL_SERVICE_NAME" is reserved by agentstage, '
        "which sets MODEL_ARMOR_TEMPLATE, the AGENT_*, FEATURE_*, AGENTSTAGE_* variables and the tracing variables "
        "(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, "
        "OTEL_EXPORTER_OTLP_ENDPOINT) itself; rename it (feature flags: agents.<name>.features; tracing: "
        "agent-platform:tracing)"
    ]
    del cfg["agent-platform:agents"]["research-agent"]["env"]["OTEL_SERVICE_NAME"]
    cfg["agent-platform:tracing"] = {"enabled": False}
    assert not [k for k in _env(plan_of(tmp_path, cfg), "support-bot") if k.startswith("OTEL_")]


# --- preview and config errors ------------------------------------------------------------------


def test_preview_production_shows_alerts_dashboard_slos_budget_and_model_armor():
    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        app, ["preview", "production", "-C", str(ROOT)], terminal_width=250
    )
    assert result.exit_code == 0, result.output
    rows = [line.replace("│", " ").split() for line in result.output.splitlines()]
    for type_, name in (
        ("AlertPolicy", "support-bot-errors"),
        ("AlertPolicy", "research-agent-latency"),
        ("AlertPolicy", "support-bot-slo-fast-burn"),
        ("Dashboard", "observability-agents-dashboard"),
        ("Slo", "research-agent-slo-availability"),
        ("Budget", "budget-budget"),
        ("Template", "guardrails-template"),
        ("Metric", "support-bot-tokens-metric"),
    ):
        assert [r for r in rows if name in r and any(cell.endswith(type_) for cell in r)], (type_, name)
    assert "roles/modelarmor.user" in result.output


@pytest.mark.parametrize(
    "section,change,message",
    [
        (
            "alerts",
            {"notification_emails": ["oncall@acme.com", "nope"]},
            'agent-platform:alerts.notification_emails[1]: "nope" is not an email address',
        ),
        (
            "alerts",
            {"notification_emails": ["oncall@acme.com", "oncall@acme.com"]},
            'agent-platform:alerts.notification_emails[1]: "oncall@acme.com" is listed twice; list each address once',
        ),
        (
            "alerts",
            {"error_rate": 1.5},
            "agent-platform:alerts.error_rate: 1.5 is not a ratio; allowed: greater than 0 and at most 1 (0.01 means 1%)",
        ),
        (
            "alerts",
            {"duration_minutes": 0},
            "agent-platform:alerts.duration_minutes: 0 is out of range; allowed: 1..60 minutes",
        ),
        (
            "alerts",
            {"slo": {"availability": 1.0}},
            "agent-platform:alerts.slo.availability: 1.0 is not a usable SLO goal; allowed: 0.9..0.9999 (0.995 means 99.5%)",
        ),
        (
            "alerts",
            {"slo": {"fast_burn_rate": 1}},
            "agent-platform:alerts.slo.fast_burn_rate: 1 is not a burn rate above 1; 1 means the budget lasts exactly the window",
        ),
        (
            "alerts",
            {"pubsub_topics": ["my-topic"]},
            'agent-platform:alerts.pubsub_topics[0]: "my-topic" is not a Pub/Sub topic; use projects/<project>/topics/<topic>',
        ),
        (
            "alerts",
            {"webhooks": ["http://hooks.acme.com"]},
            'agent-platform:alerts.webhooks[0]: "http://hooks.acme.com" is not an https URL',
        ),
        (
            "alerts",
            {"latency_p99": 5},
            "agent-platform:alerts.latency_p99: unknown key; allowed: enabled, notification_emails, pubsub_topics, webhooks, "
            "latency_p99_ms, error_rate, memory_utilization, saturation, duration_minutes, tool_errors_per_5m, "
            "guardrail_blocks_per_5m, runbook_url, log_metric_wait_minutes, slo",
        ),
        (
            "tracing",
            {"sample_rate": 2},
            "agent-platform:tracing.sample_rate: 2 is not a sampling ratio; allowed: 0..1 (0.1 means 10% of traces)",
        ),
    ],
)
def test_bad_observability_config_is_rejected_with_the_key(section, change, message):
    cfg = prod_config()
    cfg.setdefault(f"agent-platform:{section}", {}).update(change)
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    assert err.value.issues == [message]


def test_docs_stack_snippet_is_a_valid_production_stack():
    import re

    from ruamel.yaml import YAML

    text = (ROOT / "docs" / "observability.md").read_text()
    [snippet] = [s for s in re.findall(r"```yaml\n(.*?)```", text, re.S) if s.startswith("config:")]
    spec = platform_from_config(YAML(typ="safe", pure=True).load(snippet)["config"])
    assert spec.is_production and spec.budget.monthly_amount == 1500
    assert spec.alerts.notification_emails == ["oncall@acme.com"] and spec.tracing.effective_sample_rate(True) == 0.1
