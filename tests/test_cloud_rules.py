"""The Google Cloud rules the API schemas cannot express, each with the doc it comes from.

Two kinds: config rules (a stack config Google Cloud would refuse is rejected before any
resource exists, with a message naming the key) and plan rules (every plan the reference
stacks, the examples and a generated multi-agent stack produce obeys them). The field names,
types and enums of every request body are checked against the discovery documents in
``tests/conformance``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentstage.config import ConfigError, platform_from_config
from agentstage.engine import Plan, run_plan
from components.contract import ALERT_POLICY, BUDGET, CLOUD_RUN_SERVICE
from tests.conftest import ROOT, load_stack, plan_of

BOT = "agent-platform:agents.support-bot"

# Sources (cited by the rules below)
CPU = "https://cloud.google.com/run/docs/configuring/services/cpu"
MEMORY = "https://cloud.google.com/run/docs/configuring/services/memory-limits"
PROBES = "https://cloud.google.com/run/docs/configuring/healthchecks (GoogleCloudRunV2Probe, run v2 discovery)"
ENV = "https://cloud.google.com/run/docs/configuring/services/environment-variables"
CONTRACT = "https://cloud.google.com/run/docs/reference/container-contract"
LABELS = "https://cloud.google.com/resource-manager/docs/creating-managing-labels#requirements"
MODEL_ARMOR = "https://cloud.google.com/model-armor/locations"
MISSING_DATA = "monitoring v3 discovery: MetricThreshold.evaluationMissingData (duration >= 60 s)"
DURATION = "monitoring v3 discovery: MetricThreshold.duration (multiples of a minute)"
CONDITIONS = "monitoring v3 discovery: AlertPolicy.conditions (one to six)"
ALIGNMENT = "monitoring v3 discovery: Aggregation.alignmentPeriod (60 s .. 90000 s for alerting)"
DOCS = "monitoring v3 discovery: Documentation.content (8192 characters)"
REVISION = "Cloud Run Admin API v2: RevisionTemplate.revision (<service>- prefix, DNS label <= 63)"
TAG = "gcloud run: 'Combined traffic tag and service name cannot exceed 46 characters'"
BUDGET_CHANNELS = "billingbudgets v1: NotificationsRule.monitoringNotificationChannels (at most 5)"
MIN_INSTANCES = "https://cloud.google.com/run/docs/configuring/min-instances (revisions and minimum instances)"


def _bot(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg["agent-platform:agents"]["support-bot"]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation of the support-bot agent: ``path`` is dotted, a missing key is created."""

    def mutate(cfg: dict[str, Any]) -> None:
        target = _bot(cfg)
        *head, last = path.split(".")
        for key in head:
            target = target.setdefault(key, {})
        target[last] = value

    return mutate


def _top(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg[key] = value

    return mutate


def _all(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(cfg: dict[str, Any]) -> None:
        for m in mutations:
            m(cfg)

    return mutate


# (source, mutation, the exact message)
CONFIG_RULES = [
    (
        CPU,
        _all(_set("resources", {"cpu": "500m", "memory": "4Gi"}), _set("scaling.concurrency", 40)),
        f'{BOT}.resources.memory: "4Gi" is above the 1Gi Cloud Run allows with less than 1 CPU (cpu is "500m"); '
        "lower memory or raise cpu",
    ),
    (
        CPU,
        _all(_set("resources", {"cpu": "500m", "memory": "2Gi"}), _set("scaling.concurrency", 1)),
        f'{BOT}.resources.memory: "2Gi" is above the 1Gi Cloud Run allows with less than 1 CPU (cpu is "500m"); '
        "lower memory or raise cpu",
    ),
    (
        CPU,
        _all(_set("resources", {"cpu": "250m", "memory": "1Gi"}), _set("scaling.concurrency", 1)),
        f'{BOT}.resources.memory: "1Gi" is above the 512Mi Cloud Run allows with less than 0.5 CPU (cpu is "250m"); '
        "lower memory or raise cpu",
    ),
    (
        CPU,
        _all(_set("resources", {"cpu": "500m", "memory": "1Gi"}), _set("scaling.concurrency", 40)),
        f'{BOT}.scaling.concurrency: 40 must be 1 when resources.cpu is below 1 ("500m"): Cloud Run serves one '
        'request at a time on fractional CPU; set concurrency: 1, or cpu: "1" or more',
    ),
    (
        CPU,
        _set("resources.cpu", "505m"),
        f'{BOT}.resources.cpu: "505m" is not a Cloud Run CPU limit; allowed: "1", "2", "4", "6", "8" or fractional '
        "80m..990m in steps of 10m",
    ),
    (
        CPU,
        _set("resources.cpu", "50m"),
        f'{BOT}.resources.cpu: "50m" is not a Cloud Run CPU limit; allowed: "1", "2", "4", "6", "8" or fractional '
        "80m..990m in steps of 10m",
    ),
    (
        MEMORY,
        _set("resources", {"cpu": "4", "memory": "1Gi"}),
        f'{BOT}.resources.memory: "1Gi" is below the 2Gi Cloud Run requires with 4 CPU; raise memory or lower cpu',
    ),
    (
        PROBES,
        _set("probes", {"startup": {"period_seconds": 10, "failure_threshold": 30}}),
        f"{BOT}.probes.startup.failure_threshold: 30 x period_seconds (10) is 300 s; Cloud Run allows a startup "
        "probe at most 240 s: lower failure_threshold or period_seconds",
    ),
    (
        PROBES,
        _set("probes", {"liveness": {"period_seconds": 5, "timeout_seconds": 10}}),
        f"{BOT}.probes.liveness.timeout_seconds: 10 is longer than period_seconds (5); Cloud Run requires "
        "timeout_seconds <= period_seconds",
    ),
    (
        PROBES,
        _set("probes", {"startup": {"initial_delay_seconds": 300}}),
        f"{BOT}.probes.startup.initial_delay_seconds: 300 is out of Cloud Run's range; allowed: 0..240",
    ),
    (
        PROBES,
        _set("probes", {"liveness": {"period_seconds": 4000}}),
        f"{BOT}.probes.liveness.period_seconds: 4000 is out of Cloud Run's range; allowed: 1..3600",
    ),
    (
        CONTRACT,
        _set("env.K_REVISION", "x"),
        f'{BOT}.env.K_REVISION: "K_REVISION" is reserved by Cloud Run; reserved: K_CONFIGURATION, K_REVISION, '
        "K_SERVICE, PORT",
    ),
    (
        ENV,
        _set("env.BIG", "x" * 40000),
        f'{BOT}.env.BIG: "<40000 bytes>" is longer than the 32768 bytes Cloud Run allows in an env value',
    ),
    (
        ENV,
        _set("env", {f"V{i}": "1" for i in range(990)}),
        f'{BOT}.env: "<990 vars>" with secrets makes 991 env vars; Cloud Run allows 1000 per container '
        "and agentstage injects up to 16: keep at most 984",
    ),
    (
        LABELS,
        _top("agent-platform:labels", {f"l{i}": "x" for i in range(61)}),
        'agent-platform:labels: "<61 labels>" are too many: Google Cloud allows 64 labels per resource and agentstage '
        "sets 4 (environment, agent, release, managed-by): keep at most 60",
    ),
    (
        MODEL_ARMOR,
        _top("agent-platform:guardrails", {"model_armor": True, "location": "mars-north1"}),
        'agent-platform:guardrails.location: "mars-north1" is not a Model Armor location; allowed: us, eu, '
        "asia-northeast1, asia-northeast3, asia-south1, asia-southeast1, australia-southeast2, europe-southwest1, "
        "europe-west1, europe-west2, europe-west3, europe-west4, europe-west9, northamerica-northeast2, "
        "us-central1, us-east1, us-east4, us-west1",
    ),
    (
        MODEL_ARMOR,
        _top("gcp:region", "us-west2"),
        "agent-platform:guardrails.location: null is not set, and gcp:region us-west2 has no Model Armor; set it to "
        "a Model Armor location near the agents (us, eu, asia-northeast1, asia-northeast3, asia-south1, "
        "asia-southeast1, australia-southeast2, europe-southwest1, europe-west1, europe-west2, europe-west3, "
        "europe-west4, europe-west9, northamerica-northeast2, us-central1, us-east1, us-east4, us-west1), or turn "
        "guardrails.model_armor off",
    ),
    (
        TAG,
        lambda cfg: cfg["agent-platform:agents"].update(
            {"a-very-long-agent-name-for-the-canary-tag": copy.deepcopy(_bot(cfg) | {"stable_revision": None})}
        ),
        'agent-platform:agents.a-very-long-agent-name-for-the-canary-tag: "a-very-long-agent-name-for-the-canary-tag" '
        "has a canary (stable is set), and the canary traffic tag 'canary' with the service name "
        "'a-very-long-agent-name-for-the-canary-tag' makes 47 characters; Cloud Run allows 46: shorten the agent "
        "name or the prefix",
    ),
    (
        REVISION,
        _set("stable_revision", "research-agent-1-3-2"),
        f"{BOT}.stable_revision: \"research-agent-1-3-2\" does not name a revision of service 'support-bot': Cloud "
        "Run revision names are <service>-<suffix>, a lowercase DNS label of at most 63 characters",
    ),
    (
        REVISION,
        _all(_set("stable_revision", None), _set("stable.version", "1.3.2-" + "y" * 50)),
        f"{BOT}.stable.version: \"1.3.2-{'y' * 50}\" does not name a revision of service 'support-bot': Cloud Run "
        "revision names are <service>-<suffix>, a lowercase DNS label of at most 63 characters (the stable version "
        f"gives 'support-bot-1-3-2-{'y' * 50}'): shorten the version or set stable_revision to the deployed "
        "revision's name",
    ),
]


@pytest.mark.parametrize(
    "source,mutate,message",
    CONFIG_RULES,
    ids=[f"{i}-{m.split(':')[1].split('.')[-1][:30]}" for i, (_, _, m) in enumerate(CONFIG_RULES)],
)
def test_config_google_cloud_would_refuse_is_rejected(production, source, mutate, message):
    mutate(production)
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert err.value.issues == [message], source


# (mutation, the exact message): configs that would plan fine and collide at deploy time
COLLISIONS = [
    (
        _all(_set("stable_revision", None), _set("stable.version", "1-4-0")),
        f"{BOT}.stable.version: \"1-4-0\" names the same revision as release version '1.4.0' (both become '1-4-0' "
        "in a revision name); give stable its real, different version",
    ),
    *[
        (
            _set(f"{where}.{name}", value),
            f'{BOT}.{where}.{name}: "{name}" is reserved by agentstage, which sets MODEL_ARMOR_TEMPLATE, the AGENT_*, '
            "FEATURE_*, AGENTSTAGE_* variables and the tracing variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, "
            "OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, OTEL_EXPORTER_OTLP_ENDPOINT) itself; rename it (feature "
            "flags: agents.<name>.features; tracing: agent-platform:tracing)",
        )
        for where, value in (("env", "x"), ("secrets", "s:1"))
        for name in ("MODEL_ARMOR_TEMPLATE", "OTEL_SERVICE_NAME", "AGENT_RELEASE", "FEATURE_WEB_SEARCH_TOOL")
    ],
    (
        _set("stable_revision", "support-bot-1-3-2"),  # fine: recorded, same as 0.1's name
        None,
    ),
    (
        _set("stable.version", "1-4-0"),  # fine: the recorded revision is the stable target, no slug involved
        None,
    ),
    (
        _set("env.OTEL_EXPORTER_OTLP_HEADERS", "x"),  # the agent's own OTEL_* setting: agentstage does not set it
        None,
    ),
]


@pytest.mark.parametrize("mutate,message", COLLISIONS)
def test_names_that_would_collide_are_config_errors(production, mutate, message):
    mutate(production)
    if message is None:
        platform_from_config(production)
        return
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert err.value.issues == [message]


def test_stable_revision_and_canary_percent_need_stable(production):
    bot = _bot(production)
    del bot["stable"]
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert err.value.issues == [
        f'{BOT}.stable_revision: "support-bot-1-3-2" is set but stable is not; stable_revision names the revision '
        "of the stable release: remove it, or set stable"
    ]
    del bot["stable_revision"]
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert err.value.issues == [
        f"{BOT}.rollout.canary_percent: 5 is set but stable is not; canary_percent splits traffic between release "
        "and stable: remove it, or set stable"
    ]


def test_fractional_cpu_runs_gen1_with_cpu_only_during_requests(tmp_path, production):
    """Source: CPU (below 1 vCPU: request-based billing, first generation environment)."""
    _set("resources", {"cpu": "500m", "memory": "512Mi"})(production)
    _set("scaling.concurrency", 1)(production)
    plan = plan_of(tmp_path, production)
    template = next(r for r in plan.by_type(CLOUD_RUN_SERVICE) if r.inputs["name"] == "support-bot").inputs["template"]
    assert template["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN1"
    assert template["containers"][0]["resources"] == {
        "limits": {"cpu": "500m", "memory": "512Mi"},
        "cpuIdle": True,
        "startupCpuBoost": True,
    }
    assert template["maxInstanceRequestConcurrency"] == 1


# --- plan rules: every plan the project makes obeys them -------------------------------------


def _plans(tmp: Path) -> dict[str, Plan]:
    from bench.stackgen import write_project

    plans = {stack: run_plan(ROOT, stack) for stack in ("production", "staging")}
    gen_dir, gen_stack = write_project(tmp / "gen", 12)
    plans["generated-12"] = run_plan(gen_dir, gen_stack)
    plans["team-stack"] = run_plan(ROOT / "examples" / "team-stack", "production")
    return plans


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[str, Plan]:
    return _plans(tmp_path_factory.mktemp("plans"))


def _seconds(value: str) -> float:
    assert re.fullmatch(r"[0-9]+(\.[0-9]+)?s", value), value
    return float(value[:-1])


def test_alert_conditions_deploy(plans):
    """Sources: MISSING_DATA, DURATION, CONDITIONS, ALIGNMENT, DOCS."""
    checked = 0
    for name, plan in plans.items():
        for policy in plan.by_type(ALERT_POLICY):
            where = f"{name}: {policy.name}"
            assert 1 <= len(policy.inputs["conditions"]) <= 6, where
            assert len(policy.inputs["documentation"]["content"]) <= 8192, where
            for condition in policy.inputs["conditions"]:
                threshold = condition["conditionThreshold"]
                duration = _seconds(threshold["duration"])
                assert duration % 60 == 0, where
                if "evaluationMissingData" in threshold:
                    assert duration >= 60, f"{where}: evaluationMissingData with duration {duration}s"
                for agg in threshold.get("aggregations", []) + threshold.get("denominatorAggregations", []):
                    assert 60 <= _seconds(agg["alignmentPeriod"]) <= 90000, where
                checked += 1
    assert checked > 50


def test_log_based_alerts_wait_for_their_metrics(plans):
    """Source: the Monitoring API's 404 for a log-based metric created minutes ago ("could take up to
    10 minutes"): each signal alert depends on a Sleep that depends on the metrics."""
    plan = plans["production"]
    by_urn = {r.urn: r for r in plan.resources}
    for agent in ("support-bot", "research-agent"):
        for signal in ("tool-errors", "guardrail-blocks"):
            policy = plan.find(ALERT_POLICY, f"{agent}-{signal}")
            waits = [by_urn[u] for u in policy.dependencies if by_urn[u].type == "time:index/sleep:Sleep"]
            assert [w.inputs["createDuration"] for w in waits] == ["10m"], policy.name
            metrics = {by_urn[u].inputs["name"] for u in waits[0].dependencies}
            assert metrics == {f"agentstage/{agent}/{s}" for s in ("tool-errors", "guardrail-blocks", "tokens")}


def test_revision_names_and_scaling(plans):
    """Sources: REVISION, MIN_INSTANCES, TAG."""
    for name, plan in plans.items():
        for svc in plan.by_type(CLOUD_RUN_SERVICE):
            service = svc.inputs["name"]
            revisions = {svc.inputs["template"]["revision"]} | {t["revision"] for t in svc.inputs["traffics"]}
            for revision in revisions:
                assert revision.startswith(f"{service}-") and len(revision) <= 63, (name, revision)
                assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", revision), (name, revision)
            assert "minInstanceCount" not in svc.inputs["template"].get("scaling", {}), name
            assert sum(t["percent"] for t in svc.inputs["traffics"]) == 100, name
            for t in svc.inputs["traffics"]:
                if t.get("tag"):
                    assert len(t["tag"]) + len(service) <= 46, (name, service)
            assert len(svc.inputs["labels"]) <= 64 and len(svc.inputs["template"]["labels"]) <= 64
            names = [e["name"] for e in svc.inputs["template"]["containers"][0]["envs"]]
            assert len(names) == len(set(names)) and len(names) <= 1000, (name, service)


def test_the_saturation_alert_compares_all_revisions_with_the_service_cap(plans):
    plan = plans["production"]
    svc = next(r for r in plan.by_type(CLOUD_RUN_SERVICE) if r.inputs["name"] == "support-bot")
    cap = svc.inputs["scaling"]["maxInstanceCount"]
    condition = plan.find(ALERT_POLICY, "support-bot-saturation").inputs["conditions"][0]["conditionThreshold"]
    assert condition["aggregations"] == [
        {
            "alignmentPeriod": "60s",
            "perSeriesAligner": "ALIGN_MAX",
            "crossSeriesReducer": "REDUCE_SUM",
            "groupByFields": [],
        }
    ]
    assert condition["thresholdValue"] == 0.8 * cap


def test_budgets_notify_at_most_five_channels(tmp_path, production):
    """Source: BUDGET_CHANNELS."""
    production["agent-platform:alerts"]["notification_emails"] = [f"oncall{i}@acme.com" for i in range(7)]
    plan = plan_of(tmp_path, production)
    budget = plan.by_type(BUDGET)[0]
    assert len(budget.inputs["allUpdatesRule"]["monitoringNotificationChannels"]) == 5


def test_the_dashboard_itself_waits_for_the_metrics_it_charts(plans):
    plan = plans["production"]
    by_urn = {r.urn: r for r in plan.resources}
    dashboard = plan.by_type("gcp:monitoring/dashboard:Dashboard")[0]
    charted = {by_urn[u].inputs["name"] for u in dashboard.dependencies}
    assert charted == {
        f"agentstage/{a}/{s}"
        for a in ("support-bot", "research-agent")
        for s in ("tool-errors", "guardrail-blocks", "tokens")
    }
    assert json.loads(dashboard.inputs["dashboardJson"])["mosaicLayout"]["columns"] == 48


def test_reference_stacks_are_untouched_by_the_rules():
    for stack in ("production", "staging"):
        platform_from_config(load_stack(stack))
