"""Alerts of agents on Agent Engine and on Vertex AI endpoints, from each runtime's own
metrics: the exact filters and aggregations, their conformance to Cloud Monitoring's filter
rules and to the monitoring.v3 AlertPolicy schema, and agent-alert-policies catching a missing
alert on each runtime (through the unmodified policy pack, as the Pulumi CLI runs it)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from agentstage.engine import Plan, load_project, load_stack_config, run_plan
from agentstage.policy import PACK_DIR, PolicyPackProcess, load_policy_config
from tests.conformance.test_api_schemas import check_plan
from tests.conftest import ROOT, load_stack, write_stack
from tests.test_vertex_endpoint import vertex_config as _vertex_config
from tests.test_vertex_endpoint import with_canary as _vertex_canary

POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
ENGINE = "gcp:vertex/aiReasoningEngine:AiReasoningEngine"
ENDPOINT = "gcp:vertex/aiEndpoint:AiEndpoint"
AGENT = "research-agent"

# --- Cloud Monitoring's filter rules and the metrics' descriptors ------------------------------
# Filter syntax (https://cloud.google.com/monitoring/api/v3/filters): ``<selector> = <value>``
# comparisons joined by AND; selectors ``metric.type``, ``resource.type``, ``metric.label.<key>``,
# ``resource.label.<key>`` (a key may be quoted); a value is a string or a value-matching
# function such as ``starts_with("...")``.
_TERM = re.compile(
    r'^(?P<sel>metric\.type|resource\.type|(?P<kind>metric|resource)\.label\."(?P<key>[a-z_]+)")'
    r' = (?P<val>"[^"]*"|starts_with\("[^"]*"\))$'
)
#: Monitored resource -> its labels (metrics_gcp_a_b "aiplatform"; monitored resource list).
RESOURCES = {
    "aiplatform.googleapis.com/ReasoningEngine": {"resource_container", "location", "reasoning_engine_id"},
    "aiplatform.googleapis.com/Endpoint": {"resource_container", "location", "endpoint_id"},
}
#: Metric type -> (monitored resource, kind, value type, metric labels), as components/monitoring.py cites them.
METRICS = {
    "aiplatform.googleapis.com/reasoning_engine/request_count": (
        "aiplatform.googleapis.com/ReasoningEngine",
        "DELTA",
        "INT64",
        {"response_code"},
    ),
    "aiplatform.googleapis.com/reasoning_engine/request_latencies": (
        "aiplatform.googleapis.com/ReasoningEngine",
        "DELTA",
        "DISTRIBUTION",
        set(),
    ),
    "aiplatform.googleapis.com/prediction/online/response_count": (
        "aiplatform.googleapis.com/Endpoint",
        "DELTA",
        "INT64",
        {"deployed_model_id", "response_code"},
    ),
    "aiplatform.googleapis.com/prediction/online/prediction_latencies": (
        "aiplatform.googleapis.com/Endpoint",
        "DELTA",
        "DISTRIBUTION",
        {"deployed_model_id", "latency_type"},
    ),
}


def filter_problems(filter_: str, aggregation: dict[str, Any]) -> list[str]:
    """What is wrong with a threshold condition's filter and aggregation under the rules above."""
    problems, terms = [], {}
    for term in filter_.split(" AND "):
        m = _TERM.match(term)
        if not m:
            problems.append(f"not a filter comparison: {term!r}")
            continue
        terms.setdefault(m["sel"], []).append(m)
    metric = terms.get("metric.type", [None])[0]
    if metric is None or metric["val"].strip('"') not in METRICS:
        return [*problems, f"no documented metric.type in {filter_!r}"]
    resource, kind, value_type, metric_labels = METRICS[metric["val"].strip('"')]
    if [r["val"] for r in terms.get("resource.type", [])] != [f'"{resource}"']:
        problems.append(f"resource.type is not {resource}")
    for sel, found in terms.items():
        for m in found:
            if m["kind"] == "resource" and m["key"] not in RESOURCES[resource]:
                problems.append(f"{resource} has no label {m['key']}")
            if m["kind"] == "metric" and m["key"] not in metric_labels:
                problems.append(f"{metric['val']} has no label {m['key']}")
    for field in aggregation.get("groupByFields", []):
        kind_, _, key = field.partition(".label.")
        key = key.strip('"')
        if key not in (metric_labels if kind_ == "metric" else RESOURCES[resource]):
            problems.append(f"cannot group by {field}")
    aligner, reducer = aggregation["perSeriesAligner"], aggregation["crossSeriesReducer"]
    # Aggregation (monitoring.v3): ALIGN_RATE needs a DELTA or CUMULATIVE numeric metric; a
    # percentile across series of ALIGN_DELTA-aligned values needs a DISTRIBUTION.
    if aligner == "ALIGN_RATE" and (kind not in ("DELTA", "CUMULATIVE") or value_type not in ("INT64", "DOUBLE")):
        problems.append(f"ALIGN_RATE on a {kind} {value_type}")
    if reducer.startswith("REDUCE_PERCENTILE_") and value_type != "DISTRIBUTION":
        problems.append(f"{reducer} on a {value_type}")
    return problems


# --- plans ----------------------------------------------------------------------------------


def _plan(tmp: Path, cfg: dict[str, Any], new_stack: bool = False) -> Plan:
    return run_plan(ROOT, "production", config_file=write_stack(tmp / "prod.yaml", cfg), new_stack=new_stack)


def engine_config() -> dict[str, Any]:
    cfg = load_stack("production")
    a = cfg["agent-platform:agents"][AGENT]
    for key in ("scaling", "resources", "ingress"):
        a.pop(key)
    a["runtime"] = "agent-engine"
    a["agent_engine"] = {"min_instances": 1, "max_instances": 8, "cpu": "2", "memory": "4Gi"}
    return cfg


def vertex_config(canary: bool = True) -> dict[str, Any]:
    """The vertex-endpoint stack of tests/test_vertex_endpoint.py (a canary at 5% by default)."""
    cfg = _vertex_config()
    return _vertex_canary(cfg) if canary else cfg


@pytest.fixture(scope="module")
def engine_plan(tmp_path_factory) -> Plan:
    return _plan(tmp_path_factory.mktemp("engine"), engine_config())


@pytest.fixture(scope="module")
def vertex_plan(tmp_path_factory) -> Plan:
    return _plan(tmp_path_factory.mktemp("vertex"), vertex_config())


def conditions(plan: Plan, name: str) -> list[dict[str, Any]]:
    return plan.find(POLICY, name).inputs["conditions"]


def agg(aligner: str, reducer: str, group: list[str]) -> list[dict[str, Any]]:
    return [
        {"alignmentPeriod": "60s", "perSeriesAligner": aligner, "crossSeriesReducer": reducer, "groupByFields": group}
    ]


# --- agent-engine ---------------------------------------------------------------------------


def engine_id(plan: Plan) -> str:
    return plan.find(ENGINE, f"{AGENT}-engine").outputs["name"].rsplit("/", 1)[-1]


def test_engine_errors_are_the_5xx_ratio_of_its_request_count(engine_plan):
    ident = engine_id(engine_plan)
    base = (
        'metric.type = "aiplatform.googleapis.com/reasoning_engine/request_count" AND '
        f'resource.type = "aiplatform.googleapis.com/ReasoningEngine" AND resource.label."reasoning_engine_id" = "{ident}"'
    )
    [cond] = conditions(engine_plan, f"{AGENT}-errors")
    assert cond["displayName"] == f"{AGENT} 5xx ratio of reasoning_engine/request_count > 0.01"
    t = cond["conditionThreshold"]
    assert t["filter"] == base + ' AND metric.label."response_code" = starts_with("5")'
    assert t["denominatorFilter"] == base
    assert t["aggregations"] == t["denominatorAggregations"] == agg("ALIGN_RATE", "REDUCE_SUM", [])
    assert (t["comparison"], t["thresholdValue"], t["duration"]) == ("COMPARISON_GT", 0.01, "300s")
    assert engine_plan.find(POLICY, f"{AGENT}-errors").inputs["severity"] == "CRITICAL"


def test_engine_latency_is_the_p99_of_its_request_latencies(engine_plan):
    [cond] = conditions(engine_plan, f"{AGENT}-latency")
    t = cond["conditionThreshold"]
    assert t["filter"] == (
        'metric.type = "aiplatform.googleapis.com/reasoning_engine/request_latencies" AND '
        'resource.type = "aiplatform.googleapis.com/ReasoningEngine" AND '
        f'resource.label."reasoning_engine_id" = "{engine_id(engine_plan)}"'
    )
    assert t["aggregations"] == agg("ALIGN_DELTA", "REDUCE_PERCENTILE_99", [])
    assert (t["thresholdValue"], t["duration"]) == (2000, "300s")


def test_engine_has_no_memory_saturation_slo_or_signal_alerts(engine_plan):
    mine = sorted(r.name for r in engine_plan.by_type(POLICY) if r.inputs["userLabels"]["agent"] == AGENT)
    assert mine == [f"{AGENT}-errors", f"{AGENT}-latency"]
    # the Cloud Run agent keeps all of its policies
    assert len([r for r in engine_plan.by_type(POLICY) if r.inputs["userLabels"]["agent"] == "support-bot"]) == 8


# --- vertex-endpoint ------------------------------------------------------------------------


def test_endpoint_errors_per_endpoint_and_per_deployed_model(vertex_plan):
    ep = vertex_plan.find(ENDPOINT, f"{AGENT}-endpoint").inputs["name"]
    base = (
        'metric.type = "aiplatform.googleapis.com/prediction/online/response_count" AND '
        f'resource.type = "aiplatform.googleapis.com/Endpoint" AND resource.label."endpoint_id" = "{ep}"'
    )
    five = ' AND metric.label."response_code" = starts_with("5")'
    conds = conditions(vertex_plan, f"{AGENT}-errors")
    models = [re.search(r'"deployed_model_id" = "(\d+)"', c["conditionThreshold"]["filter"]) for c in conds]
    assert models[0] is None and models[1] and models[2]
    release, stable = models[1][1], models[2][1]
    assert [c["displayName"] for c in conds] == [
        f"{AGENT} 5xx ratio of prediction/online/response_count > 0.01",
        f"{release} (candidate 2.1.0) 5xx ratio of prediction/online/response_count > 0.01",
        f"{stable} (stable 2.0.3) 5xx ratio of prediction/online/response_count > 0.01",
    ]
    for c, model, group in zip(
        conds, (None, release, stable), ([], ['metric.label."deployed_model_id"'], ['metric.label."deployed_model_id"'])
    ):
        t = c["conditionThreshold"]
        sel = f' AND metric.label."deployed_model_id" = "{model}"' if model else ""
        assert t["filter"] == base + sel + five
        assert t["denominatorFilter"] == base + sel
        assert t["aggregations"] == t["denominatorAggregations"] == agg("ALIGN_RATE", "REDUCE_SUM", group)
        assert (t["thresholdValue"], t["duration"]) == (0.01, "300s")


def test_endpoint_latency_is_the_p99_of_total_prediction_latency(vertex_plan):
    ep = vertex_plan.find(ENDPOINT, f"{AGENT}-endpoint").inputs["name"]
    conds = [c["conditionThreshold"] for c in conditions(vertex_plan, f"{AGENT}-latency")]
    assert conds[0]["filter"] == (
        'metric.type = "aiplatform.googleapis.com/prediction/online/prediction_latencies" AND '
        f'resource.type = "aiplatform.googleapis.com/Endpoint" AND resource.label."endpoint_id" = "{ep}" AND '
        'metric.label."latency_type" = "total"'
    )
    assert conds[0]["aggregations"] == agg("ALIGN_DELTA", "REDUCE_PERCENTILE_99", [])
    assert [c["aggregations"][0]["groupByFields"] for c in conds] == [[], *[['metric.label."deployed_model_id"']] * 2]
    assert {(c["thresholdValue"], c["duration"]) for c in conds} == {(2000, "300s")}


def test_config_thresholds_reach_managed_runtime_conditions(tmp_path):
    cfg = vertex_config(canary=False)
    cfg["agent-platform:alerts"].update(error_rate=0.05, latency_p99_ms=1500, duration_minutes=10)
    p = _plan(tmp_path, cfg)
    for role, value in (("errors", 0.05), ("latency", 1500)):
        assert {
            (c["conditionThreshold"]["thresholdValue"], c["conditionThreshold"]["duration"])
            for c in conditions(p, f"{AGENT}-{role}")
        } == {(value, "600s")}


# --- filter rules and API conformance ---------------------------------------------------------


@pytest.mark.parametrize("which", ["engine_plan", "vertex_plan"])
def test_managed_runtime_filters_follow_monitoring_filter_rules(which, request):
    plan: Plan = request.getfixturevalue(which)
    checked = 0
    for r in plan.by_type(POLICY):
        if r.inputs["userLabels"]["agent"] != AGENT:
            continue
        for c in r.inputs["conditions"]:
            t = c["conditionThreshold"]
            assert filter_problems(t["filter"], t["aggregations"][0]) == [], r.name
            if "denominatorFilter" in t:
                assert filter_problems(t["denominatorFilter"], t["denominatorAggregations"][0]) == [], r.name
            checked += 1
    assert checked >= 2


def test_the_filter_checker_catches_wrong_metrics_labels_and_aligners():
    ok = 'metric.type = "aiplatform.googleapis.com/reasoning_engine/request_latencies" AND resource.type = "aiplatform.googleapis.com/ReasoningEngine"'
    p99 = agg("ALIGN_DELTA", "REDUCE_PERCENTILE_99", [])[0]
    assert filter_problems(ok, p99) == []
    assert filter_problems(ok.replace("ReasoningEngine", "Endpoint"), p99) == [
        "resource.type is not aiplatform.googleapis.com/ReasoningEngine"
    ]
    assert filter_problems(ok + ' AND metric.label."deployed_model_id" = "1"', p99) == [
        '"aiplatform.googleapis.com/reasoning_engine/request_latencies" has no label deployed_model_id'
    ]
    count = ok.replace("request_latencies", "request_count")
    assert filter_problems(count, p99) == ["REDUCE_PERCENTILE_99 on a INT64"]
    assert filter_problems(ok + " AND response_code = 5", p99) == ["not a filter comparison: 'response_code = 5'"]


@pytest.mark.parametrize("which", ["engine_plan", "vertex_plan"])
def test_managed_runtime_plans_conform_to_the_monitoring_api(which, request):
    plan = copy.deepcopy(request.getfixturevalue(which))
    plan.resources = plan.by_type(POLICY)
    result = check_plan(plan)
    assert result.covered == {POLICY}
    assert result.errors == []


# --- agent-alert-policies -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pack():
    config = load_stack_config(load_project(ROOT), "production")
    with PolicyPackProcess(
        PACK_DIR, project="agent-platform", stack="production", config=config.values, secret_keys=config.secret_keys
    ) as p:
        p.configure(load_policy_config(PACK_DIR / "config" / "production.json"))
        yield p


def alert_violations(pack: PolicyPackProcess, plan: Plan) -> list[tuple[str | None, str]]:
    found, _, _ = pack.analyze(plan)
    return [(v.resource_name, v.message) for v in found if v.policy == "agent-alert-policies"]


def without(plan: Plan, *names: str) -> Plan:
    out = copy.deepcopy(plan)
    out.resources = [r for r in out.resources if not (r.type == POLICY and r.name in names)]
    return out


@pytest.mark.parametrize("new_stack", [False, True], ids=["existing", "new-stack"])
def test_engine_and_vertex_stacks_pass_agent_alert_policies(pack, tmp_path, new_stack):
    for sub, cfg in (("e", engine_config()), ("v", vertex_config())):
        (tmp_path / sub).mkdir()
        assert alert_violations(pack, _plan(tmp_path / sub, cfg, new_stack)) == [], sub


@pytest.mark.parametrize(
    "which,resource,missing,signal",
    [
        ("engine_plan", f"{AGENT}-engine", "latency", "latency"),
        ("engine_plan", f"{AGENT}-engine", "errors", "errors"),
        ("vertex_plan", f"{AGENT}-endpoint", "latency", "latency"),
        ("vertex_plan", f"{AGENT}-endpoint", "errors", "errors"),
    ],
)
def test_a_missing_runtime_alert_is_a_violation(pack, request, which, resource, missing, signal):
    plan = without(request.getfixturevalue(which), f"{AGENT}-{missing}")
    assert alert_violations(pack, plan) == [
        (
            resource,
            f"the agent service {AGENT} has no alert policy with a notification channel on {signal}; add them so "
            "on-call hears about a slow or failing agent (agentstage: agent-platform:alerts).",
        )
    ]


def test_a_cloud_run_alert_does_not_cover_an_engine(pack, engine_plan):
    """An alert on Cloud Run's request_latencies labelled with the engine's agent is no latency
    alert of the engine: each runtime is judged on its own metrics."""
    plan = without(engine_plan, f"{AGENT}-latency")
    fake = copy.deepcopy(plan.find(POLICY, "support-bot-latency"))
    fake.name, fake.urn = f"{AGENT}-fake", fake.urn.replace("support-bot-latency", f"{AGENT}-fake")
    fake.inputs["userLabels"] = {**fake.inputs["userLabels"], "agent": AGENT}
    plan.resources.append(fake)
    [(resource, message)] = alert_violations(pack, plan)
    assert resource == f"{AGENT}-engine" and "on latency;" in message


# --- gke ------------------------------------------------------------------------------------
# A GKE agent's alerts read its Gateway's internal Application Load Balancer (components/monitoring.py
# cites the metrics and says what is not confirmed), on the backend services of its track Services.

ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"


@pytest.fixture(scope="module")
def gke_plan(tmp_path_factory) -> Plan:
    from tests.test_gke import gke_config, with_canary

    return _plan(tmp_path_factory.mktemp("gke"), with_canary(gke_config()))


def _gke_backend(alt: str) -> str:
    return (
        'resource.type = "internal_http_lb_rule" AND resource.label."backend_target_name" = '
        f'monitoring.regex.full_match("gkegw1-[a-z0-9]+-research-{alt}-80-[a-z0-9]+")'
    )


GKE_TRACKS = [
    (AGENT, f"({AGENT}-canary|{AGENT}-stable)"),
    (f"{AGENT}-canary (candidate 2.1.0)", f"{AGENT}-canary"),
    (f"{AGENT}-stable (stable 2.0.3)", f"{AGENT}-stable"),
]


def test_gke_errors_are_the_5xx_ratio_of_the_gateway_lb_request_count(gke_plan):
    conds = conditions(gke_plan, f"{AGENT}-errors")
    assert [c["displayName"] for c in conds] == [
        f"{who} 5xx ratio of https/internal/request_count > 0.01" for who, _ in GKE_TRACKS
    ]
    for c, (_, alt) in zip(conds, GKE_TRACKS):
        t = c["conditionThreshold"]
        base = f'metric.type = "loadbalancing.googleapis.com/https/internal/request_count" AND {_gke_backend(alt)}'
        assert t["filter"] == base + ' AND metric.label."response_code_class" = 500'
        assert t["denominatorFilter"] == base
        assert t["aggregations"] == t["denominatorAggregations"] == agg("ALIGN_RATE", "REDUCE_SUM", [])
        assert (t["comparison"], t["thresholdValue"], t["duration"]) == ("COMPARISON_GT", 0.01, "300s")
    assert gke_plan.find(POLICY, f"{AGENT}-errors").inputs["severity"] == "CRITICAL"


def test_gke_latency_is_the_p99_of_the_gateway_lb_total_latencies(gke_plan):
    conds = conditions(gke_plan, f"{AGENT}-latency")
    assert [c["displayName"] for c in conds] == [
        f"{who} p99 of https/internal/total_latencies > 2000 ms" for who, _ in GKE_TRACKS
    ]
    for c, (_, alt) in zip(conds, GKE_TRACKS):
        t = c["conditionThreshold"]
        assert t["filter"] == (
            f'metric.type = "loadbalancing.googleapis.com/https/internal/total_latencies" AND {_gke_backend(alt)}'
        )
        assert "denominatorFilter" not in t
        assert t["aggregations"] == agg("ALIGN_DELTA", "REDUCE_PERCENTILE_99", [])
        assert (t["thresholdValue"], t["duration"]) == (2000, "300s")


def test_gke_has_only_error_and_latency_alerts_and_cloud_run_keeps_its_own(gke_plan):
    mine = sorted(r.name for r in gke_plan.by_type(POLICY) if r.inputs["userLabels"]["agent"] == AGENT)
    assert mine == [f"{AGENT}-errors", f"{AGENT}-latency"]
    assert len([r for r in gke_plan.by_type(POLICY) if r.inputs["userLabels"]["agent"] == "support-bot"]) == 8


def test_gke_alert_plan_conforms_to_the_monitoring_api(gke_plan):
    plan = copy.deepcopy(gke_plan)
    plan.resources = plan.by_type(POLICY)
    result = check_plan(plan)
    assert result.errors == []


def test_gke_stack_passes_agent_alert_policies(pack, gke_plan):
    assert alert_violations(pack, gke_plan) == []


@pytest.mark.parametrize("missing", ["latency", "errors"])
def test_a_missing_gke_alert_is_a_violation(pack, gke_plan, missing):
    plan = without(gke_plan, f"{AGENT}-{missing}")
    assert gke_plan.find(ROUTE, f"{AGENT}-route") is not None
    assert alert_violations(pack, plan) == [
        (
            f"{AGENT}-route",
            f"the agent service {AGENT} has no alert policy with a notification channel on {missing}; add them so "
            "on-call hears about a slow or failing agent (agentstage: agent-platform:alerts).",
        )
    ]


def test_a_cloud_run_alert_does_not_cover_a_gke_agent(pack, gke_plan):
    plan = without(gke_plan, f"{AGENT}-latency")
    fake = copy.deepcopy(plan.find(POLICY, "support-bot-latency"))
    fake.name, fake.urn = f"{AGENT}-fake", fake.urn.replace("support-bot-latency", f"{AGENT}-fake")
    fake.inputs["userLabels"] = {**fake.inputs["userLabels"], "agent": AGENT}
    plan.resources.append(fake)
    [(resource, message)] = alert_violations(pack, plan)
    assert resource == f"{AGENT}-route" and "on latency;" in message
