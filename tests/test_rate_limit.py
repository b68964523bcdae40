"""Rate limits: the load balancer path and Cloud Armor security policy of AgentLoadBalancer (under
the offline engine, Pulumi's mock runtime), the config rules Cloud Armor publishes, the
agent-rate-limit policy through the pack process, the planned requests against the compute v1
discovery document, and `agentstage check` / `preview` on the reference production stack.

The stack is the reference production stack: support-bot is behind a load balancer with a rate
limit (600 requests per 60 s per client IP, then 429); research-agent (ingress internal) has none.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import ROOT, load_stack, plan_of, write_stack
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.config import ConfigError, platform_from_config
from agentstage.engine import Plan, PlannedResource, load_project, load_stack_config, run_plan
from agentstage.policy import PACK_DIR, PolicyPackProcess, load_policy_config
from tests.conformance import discovery, translate
from tests.conformance.test_api_schemas import check_plan

AGENT = "support-bot"
KEY = f"agent-platform:agents.{AGENT}"
PROJECT = "acme-agents-prod"
SERVICE = "gcp:cloudrunv2/service:Service"
NEG = "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup"
BACKEND = "gcp:compute/backendService:BackendService"
ARMOR = "gcp:compute/securityPolicy:SecurityPolicy"
URL_MAP = "gcp:compute/uRLMap:URLMap"
CERT = "gcp:compute/managedSslCertificate:ManagedSslCertificate"
PROXY = "gcp:compute/targetHttpsProxy:TargetHttpsProxy"
ADDRESS = "gcp:compute/globalAddress:GlobalAddress"
FORWARDING_RULE = "gcp:compute/globalForwardingRule:GlobalForwardingRule"
LB_TYPES = (NEG, BACKEND, ARMOR, URL_MAP, CERT, PROXY, ADDRESS, FORWARDING_RULE)
GLOBAL = f"projects/{PROJECT}/global"
SELF_LINK = "https://www.googleapis.com/compute/v1/"
EVERY_CLIENT = {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}
DEFAULT_RULE = {
    "priority": 2147483647,
    "action": "allow",
    "description": "default rule: allow what the rules above let through",
    "match": EVERY_CLIENT,
}

runner = CliRunner(env={"COLUMNS": "250"})


def agent(cfg: dict[str, Any], name: str = AGENT) -> dict[str, Any]:
    return cfg["agent-platform:agents"][name]


def production_with(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(load_stack("production"))
    change(agent(cfg))
    return cfg


def load_balancer_only(plan: Plan) -> Plan:
    """The plan's load balancer resources (the rest is other components' to conform)."""
    lb = copy.deepcopy(plan)
    lb.resources = [r for r in plan.resources if r.type in LB_TYPES]
    return lb


def without_rate_limit(a: dict[str, Any]) -> None:
    a.pop("rate_limit")


def without_load_balancer(a: dict[str, Any]) -> None:
    a.pop("rate_limit")
    a.pop("load_balancer")


# --- the component ----------------------------------------------------------------------------


def test_the_load_balancer_path_reaches_the_service(prod: Plan) -> None:
    neg = prod.find(NEG, f"{AGENT}-neg")
    assert neg.inputs["networkEndpointType"] == "SERVERLESS"
    assert neg.inputs["cloudRun"] == {"service": prod.find(SERVICE, f"{AGENT}-service").inputs["name"]}
    assert neg.inputs["region"] == "us-central1" and neg.inputs["name"] == f"{AGENT}-neg"
    neg_id = f"projects/{PROJECT}/regions/us-central1/networkEndpointGroups/{AGENT}-neg"

    backend = prod.find(BACKEND, f"{AGENT}-backend").inputs
    assert backend["backends"] == [{"group": neg_id}]
    assert backend["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    assert backend["securityPolicy"] == f"{SELF_LINK}{GLOBAL}/securityPolicies/{AGENT}-armor"
    assert backend["logConfig"] == {"enable": True, "sampleRate": 1}

    assert prod.find(URL_MAP, f"{AGENT}-urlmap").inputs["defaultService"] == f"{GLOBAL}/backendServices/{AGENT}-backend"
    cert = prod.find(CERT, f"{AGENT}-cert").inputs
    assert cert["type"] == "MANAGED" and cert["managed"] == {"domains": ["support.acme.com"]}
    proxy = prod.find(PROXY, f"{AGENT}-https-proxy").inputs
    assert proxy["urlMap"] == f"{GLOBAL}/urlMaps/{AGENT}-urlmap"
    assert proxy["sslCertificates"] == [f"{GLOBAL}/sslCertificates/{cert['name']}"]
    rule = prod.find(FORWARDING_RULE, f"{AGENT}-https").inputs
    assert (rule["portRange"], rule["ipProtocol"], rule["loadBalancingScheme"]) == ("443", "TCP", "EXTERNAL_MANAGED")
    assert rule["target"] == f"{GLOBAL}/targetHttpsProxies/{AGENT}-https-proxy"
    assert rule["ipAddress"] == f"{GLOBAL}/addresses/{AGENT}-ip"
    assert rule["labels"] == {
        "team": "support",
        "cost-center": "cc-042",
        "environment": "production",
        "managed-by": "agentstage",
        "agent": AGENT,
    }
    # every child belongs to the agent's AgentLoadBalancer component
    parents = {r.parent.rsplit("::", 1)[-1] for r in prod.resources if r.type in LB_TYPES}
    assert parents == {AGENT}


def test_the_security_policy_throttles_each_client_ip(prod: Plan) -> None:
    armor = prod.find(ARMOR, f"{AGENT}-armor").inputs
    assert armor["type"] == "CLOUD_ARMOR" and armor["name"] == f"{AGENT}-armor"
    assert armor["rules"] == [
        {
            "priority": 1000,
            "action": "throttle",
            "description": "agentstage rate limit: 600 requests per 60 s per ip, then deny(429)",
            "match": EVERY_CLIENT,
            "rateLimitOptions": {
                "conformAction": "allow",
                "exceedAction": "deny(429)",
                "enforceOnKey": "IP",
                "rateLimitThreshold": {"count": 600, "intervalSec": 60},
            },
        },
        DEFAULT_RULE,
    ]


def test_only_agents_with_a_load_balancer_get_one(prod: Plan) -> None:
    assert sorted(r.name for r in prod.resources if r.type in LB_TYPES) == sorted(
        f"{AGENT}-{role}" for role in ("neg", "armor", "backend", "urlmap", "cert", "https-proxy", "ip", "https")
    )
    assert "load_balancer" not in prod.outputs["agents"]["research-agent"]


def test_the_agent_outputs_its_load_balancer_url_and_address(prod: Plan) -> None:
    assert prod.outputs["agents"][AGENT]["load_balancer"] == {
        "url": "https://support.acme.com",
        "ip_address": prod.find(ADDRESS, f"{AGENT}-ip").outputs["address"],
    }
    assert prod.outputs["agents"][AGENT]["load_balancer"]["ip_address"].startswith("203.0.113.")


@pytest.mark.parametrize(
    ("rate_limit", "options", "action"),
    [
        (
            {"requests": 100, "interval_seconds": 10, "key": "api-key", "action": "ban"},
            {
                "conformAction": "allow",
                "exceedAction": "deny(429)",
                "enforceOnKey": "HTTP_HEADER",
                "enforceOnKeyName": "x-api-key",
                "banDurationSec": 600,
                "rateLimitThreshold": {"count": 100, "intervalSec": 10},
            },
            "rate_based_ban",
        ),
        (
            {"requests": 50, "key": "header:x-client-id", "action": "ban", "ban_seconds": 3600, "exceed_status": 403},
            {
                "conformAction": "allow",
                "exceedAction": "deny(403)",
                "enforceOnKey": "HTTP_HEADER",
                "enforceOnKeyName": "x-client-id",
                "banDurationSec": 3600,
                "rateLimitThreshold": {"count": 50, "intervalSec": 60},
            },
            "rate_based_ban",
        ),
        (
            {"requests": 1_000_000, "interval_seconds": 3600, "key": "xff-ip"},
            {
                "conformAction": "allow",
                "exceedAction": "deny(429)",
                "enforceOnKey": "XFF_IP",
                "rateLimitThreshold": {"count": 1_000_000, "intervalSec": 3600},
            },
            "throttle",
        ),
    ],
    ids=["ban-by-api-key", "ban-by-header", "throttle-by-forwarded-ip"],
)
def test_keys_and_actions_become_the_rule(tmp_path, rate_limit, options, action) -> None:
    plan = plan_of(tmp_path, production_with(lambda a: a.update(rate_limit=rate_limit)))
    rule = plan.find(ARMOR, f"{AGENT}-armor").inputs["rules"][0]
    assert (rule["action"], rule["rateLimitOptions"]) == (action, options)
    # a ban rule cannot become a throttle rule in place: each action has its own priority
    assert rule["priority"] == {"throttle": 1000, "rate_based_ban": 1001}[action]
    conformance = check_plan(load_balancer_only(plan))
    assert conformance.errors == [] and ARMOR in conformance.covered


def test_a_load_balancer_without_rate_limit_has_no_security_policy(tmp_path) -> None:
    plan = plan_of(tmp_path, production_with(without_rate_limit))
    assert plan.by_type(ARMOR) == []
    assert "securityPolicy" not in plan.find(BACKEND, f"{AGENT}-backend").inputs
    assert len([r for r in plan.resources if r.type in LB_TYPES]) == 7


def test_new_domains_make_a_new_certificate_and_the_same_domains_the_same(tmp_path, prod: Plan) -> None:
    name = prod.find(CERT, f"{AGENT}-cert").inputs["name"]
    assert name.startswith(f"{AGENT}-cert-") and len(name) == len(AGENT) + len("-cert-") + 8
    again = plan_of(tmp_path, production_with(lambda a: None))
    assert again.find(CERT, f"{AGENT}-cert").inputs["name"] == name
    more = plan_of(tmp_path, production_with(lambda a: a["load_balancer"]["domains"].append("help.acme.com")))
    other = more.find(CERT, f"{AGENT}-cert").inputs
    assert other["name"] != name and other["managed"] == {"domains": ["support.acme.com", "help.acme.com"]}


# --- the config: Cloud Armor's published rules, exact messages ------------------------------


def _set(**rate_limit: Any) -> Callable[[dict[str, Any]], None]:
    return lambda a: a["rate_limit"].update(rate_limit)


BAD = [
    (
        _set(interval_seconds=45),
        f"{KEY}.rate_limit.interval_seconds: 45 is not an interval Cloud Armor counts over; allowed: 10, 30, 60, 120, "
        "180, 240, 300, 600, 900, 1200, 1800, 2700, 3600 seconds",
    ),
    (
        _set(key="cookie"),
        f'{KEY}.rate_limit.key: "cookie" is not a rate limit key; allowed: ip, xff-ip, all, api-key or header:<name>',
    ),
    (
        _set(key="header:x client"),
        f'{KEY}.rate_limit.key: "header:x client" does not name an HTTP header; use header:<name> with a header '
        "name of letters, digits and '-', e.g. header:x-client-id",
    ),
    (
        _set(exceed_status=503),
        f"{KEY}.rate_limit.exceed_status: 503 is not a status Cloud Armor can deny with; allowed: 403, 404, 429, 502 "
        "(429 tells clients to slow down)",
    ),
    (
        _set(action="block"),
        f'{KEY}.rate_limit.action: "block" is not allowed; allowed: throttle or ban',
    ),
    (
        _set(ban_seconds=600),
        f"{KEY}.rate_limit.ban_seconds: 600 is set but action is throttle; ban_seconds is how long a banned client "
        "is refused: set action: ban, or remove it",
    ),
    (
        _set(action="ban", ban_seconds=30),
        f"{KEY}.rate_limit.ban_seconds: 30 is not a ban duration Cloud Armor allows; allowed: 60, 120, 180, 240, 300, "
        "600, 900, 1200, 1800, 2700, 3600 seconds",
    ),
    (
        _set(action="ban", requests=20000),
        f"{KEY}.rate_limit.requests: 20000 is above the 10,000 requests Cloud Armor allows a rate_based_ban rule to "
        "count; lower it, or count over a shorter interval_seconds",
    ),
    (
        _set(requests=1_000_001),
        f"{KEY}.rate_limit.requests: 1000001 is above the 1,000,000 requests Cloud Armor allows a throttle rule to "
        "count; lower it, or count over a shorter interval_seconds",
    ),
    (_set(requests=0), f"{KEY}.rate_limit.requests: 0 is not a positive number of requests"),
    (
        lambda a: a["rate_limit"].pop("requests"),
        f"{KEY}.rate_limit.requests: required key is missing",
    ),
    (
        lambda a: a.update(ingress="all"),
        f'{KEY}.ingress: "all" lets clients past the load balancer: with load_balancer set, ingress must be '
        "internal-and-cloud-load-balancing, or clients bypass the load balancer and its rate limit on the run.app "
        "URL; set it, or remove load_balancer",
    ),
    (
        lambda a: a.pop("load_balancer"),
        f"{KEY}.rate_limit.requests: 600 is set but load_balancer is not; Cloud Armor enforces the rate limit at the "
        "load balancer: set load_balancer.domains, or remove rate_limit",
    ),
    (
        lambda a: a["load_balancer"].update(domains=[]),
        f"{KEY}.load_balancer.domains: [] is empty; give the domain clients call, e.g. [support.acme.com]",
    ),
    (
        lambda a: a["load_balancer"].update(domains=["*.acme.com"]),
        f'{KEY}.load_balancer.domains[0]: "*.acme.com" is a wildcard domain; Google-managed certificates of a load '
        "balancer do not cover wildcards: list each domain",
    ),
    (
        lambda a: a["load_balancer"].update(domains=["Support.Acme.com"]),
        f'{KEY}.load_balancer.domains[0]: "Support.Acme.com" is not a domain name; use a lowercase DNS name such as '
        "support.acme.com",
    ),
    (
        lambda a: a["load_balancer"].update(domains=[f"d{i}.acme.com" for i in range(101)]),
        f"{KEY}.load_balancer.domains: [...] has 101 domains; a Google-managed certificate covers at most 100",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m.split(":", 2)[1].split(" ")[0] for _, m in BAD])
def test_bad_config_is_refused_with_what_is_allowed(change, message) -> None:
    with pytest.raises(ConfigError) as err:
        platform_from_config(production_with(change))
    issues = err.value.issues
    if "[...]" in message:
        head, tail = message.split("[...]")
        assert len(issues) == 1 and issues[0].startswith(head) and issues[0].endswith(tail)
    else:
        assert issues == [message]


def test_load_balancer_is_for_cloud_run_agents_only() -> None:
    cfg = copy.deepcopy(load_stack("production"))
    research = agent(cfg, "research-agent")
    for key in ("scaling", "resources", "ingress", "invokers", "secrets"):
        research.pop(key)
    research.update(runtime="agent-engine", load_balancer={"domains": ["research.acme.com"]})
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    assert err.value.issues == [
        'agent-platform:agents.research-agent.load_balancer.domains: ["research.acme.com"] is a Cloud Run setting, '
        "and runtime agent-engine does not use it: agentstage builds the load balancer and its Cloud Armor rate "
        "limit in front of cloud-run agents; remove it"
    ]


def test_cloud_armor_values_are_those_of_the_compute_discovery_document() -> None:
    from components.load_balancer_spec import EXCEED_STATUSES, KEYS

    enum = discovery.enum_values("compute.v1", "SecurityPolicyRuleRateLimitOptions", "enforceOnKey")
    assert set(KEYS.values()) <= set(enum)
    text = discovery.document("compute.v1")["schemas"]["SecurityPolicyRuleRateLimitOptions"]["properties"]
    assert "403, 404, 429, and 502" in text["exceedAction"]["description"]
    assert EXCEED_STATUSES == (403, 404, 429, 502)
    rule = discovery.document("compute.v1")["schemas"]["SecurityPolicyRule"]["properties"]["action"]["description"]
    assert "throttle" in rule and "rate_based_ban" in rule


# --- conformance: the planned requests are what the compute API accepts ---------------------


def test_every_load_balancer_request_conforms_to_compute_v1(prod: Plan) -> None:
    conformance = check_plan(load_balancer_only(prod))
    assert conformance.errors == []
    assert conformance.covered == set(LB_TYPES)
    assert {(r.api, r.schema) for r in conformance.requests} == {
        ("compute.v1", s)
        for s in (
            "NetworkEndpointGroup",
            "SecurityPolicy",
            "BackendService",
            "UrlMap",
            "SslCertificate",
            "TargetHttpsProxy",
            "Address",
            "ForwardingRule",
        )
    }


def test_the_validator_refuses_what_cloud_armor_refuses(prod: Plan) -> None:
    armor = translate.to_requests(prod.find(ARMOR, f"{AGENT}-armor"))[0]
    body = copy.deepcopy(armor.body)
    body["rules"][0]["rateLimitOptions"]["enforceOnKey"] = "API_KEY"
    assert discovery.validate("compute.v1", "SecurityPolicy", body) == [
        f"$.rules[0].rateLimitOptions.enforceOnKey: 'API_KEY' is not one of "
        f"{discovery.enum_values('compute.v1', 'SecurityPolicyRuleRateLimitOptions', 'enforceOnKey')}"
    ]
    backend = prod.find(BACKEND, f"{AGENT}-backend")
    body = translate.to_requests(backend)[0].body
    assert "securityPolicy" not in body  # output only: attached with setSecurityPolicy
    body["securityPolicy"] = backend.inputs["securityPolicy"]
    assert discovery.validate("compute.v1", "BackendService", body) == [
        "$.securityPolicy: is output only (set by the API); a request must not send it"
    ]


# --- the agent-rate-limit policy, through the pack process ------------------------------------


@pytest.fixture(scope="module")
def pack() -> Iterator[PolicyPackProcess]:
    config = load_stack_config(load_project(ROOT), "production")
    with PolicyPackProcess(
        PACK_DIR, project="agent-platform", stack="production", config=config.values, secret_keys=config.secret_keys
    ) as p:
        p.configure(load_policy_config(PACK_DIR / "config" / "production.json"))
        yield p


def rate_limit_violations(pack: PolicyPackProcess, plan: Plan) -> list[tuple[str | None, str, str]]:
    found, _, _ = pack.analyze(plan)
    return [(v.resource_name, v.enforcement, v.message) for v in found if v.policy == "agent-rate-limit"]


def mutate(plan: Plan, type_: str, name: str, change: Callable[[PlannedResource], None]) -> Plan:
    new = copy.deepcopy(plan)
    change(new.find(type_, name))
    return new


def _inputs(change: Callable[[dict[str, Any]], None]) -> Callable[[PlannedResource], None]:
    def apply(r: PlannedResource) -> None:
        change(r.inputs)
        if r.outputs:
            change(r.outputs)

    return apply


SERVES = "the backend service support-bot-backend, which serves the production agent service support-bot"


def test_the_production_stack_passes(pack, prod) -> None:
    assert rate_limit_violations(pack, prod) == []


def test_a_first_preview_passes_by_following_property_dependencies(pack) -> None:
    plan = run_plan(ROOT, "production", new_stack=True)
    backend = plan.find(BACKEND, f"{AGENT}-backend")
    assert backend.inputs["securityPolicy"] == "[unknown]"  # judged by what it was computed from
    assert rate_limit_violations(pack, plan) == []


def test_backend_without_security_policy(pack, prod) -> None:
    def detach(r: PlannedResource) -> None:
        _inputs(lambda i: i.pop("securityPolicy"))(r)
        r.property_dependencies.pop("securityPolicy")

    plan = mutate(prod, BACKEND, f"{AGENT}-backend", detach)
    assert rate_limit_violations(pack, plan) == [
        (
            "support-bot-backend",
            "mandatory",
            f"{SERVES}, has no Cloud Armor security policy, so every client may send as many requests as it likes; "
            "attach a security policy with a throttle or rate_based_ban rule (agentstage: agents.support-bot.rate_limit).",
        )
    ]


@pytest.mark.parametrize(
    "change",
    [
        lambda rule: (rule.update(action="allow"), rule.pop("rateLimitOptions")),
        lambda rule: rule.update(preview=True),
    ],
    ids=["allow-rule", "rule-in-preview"],
)
def test_security_policy_without_an_enforced_rate_rule(pack, prod, change) -> None:
    plan = mutate(prod, ARMOR, f"{AGENT}-armor", _inputs(lambda i: change(i["rules"][0])))
    assert rate_limit_violations(pack, plan) == [
        (
            "support-bot-armor",
            "mandatory",
            f"the security policy support-bot-armor of {SERVES}, has no enforced throttle or rate_based_ban rule "
            "(with rate_limit_options, not in preview), so every client may send as many requests as it likes; add one "
            "(agentstage: agents.support-bot.rate_limit).",
        )
    ]


def test_a_rate_based_ban_passes(pack, prod) -> None:
    def ban(i: dict[str, Any]) -> None:
        i["rules"][0]["action"] = "rate_based_ban"
        i["rules"][0]["rateLimitOptions"]["banDurationSec"] = 600

    assert rate_limit_violations(pack, mutate(prod, ARMOR, f"{AGENT}-armor", _inputs(ban))) == []


def test_security_policy_this_stack_does_not_create(pack, prod) -> None:
    other = f"{SELF_LINK}{GLOBAL}/securityPolicies/shared-edge"

    def elsewhere(r: PlannedResource) -> None:
        _inputs(lambda i: i.update(securityPolicy=other))(r)
        r.property_dependencies.pop("securityPolicy")

    assert rate_limit_violations(pack, mutate(prod, BACKEND, f"{AGENT}-backend", elsewhere)) == [
        (
            "support-bot-backend",
            "mandatory",
            f"{SERVES}, uses the security policy {other}, which this stack does not create, so its rate limit cannot "
            "be checked; create the security policy with a throttle or rate_based_ban rule here (agentstage: "
            "agents.support-bot.rate_limit).",
        )
    ]


def test_an_unknown_security_policy_without_dependencies_is_not_judged(pack, prod) -> None:
    def unknown(r: PlannedResource) -> None:
        _inputs(lambda i: i.update(securityPolicy="[unknown]"))(r)
        r.property_dependencies.pop("securityPolicy")

    assert rate_limit_violations(pack, mutate(prod, BACKEND, f"{AGENT}-backend", unknown)) == [
        (
            "support-bot-backend",
            "mandatory",
            f"cannot judge whether {SERVES}, has a rate limit: security_policy is unknown during this preview "
            "(computed from an output of a resource this update creates or changes); compute it from inputs (stack "
            "config, names, ids) so that it is known at plan time.",
        )
    ]


def test_an_agent_behind_a_load_balancer_this_stack_does_not_build(pack, tmp_path) -> None:
    plan = plan_of(tmp_path, production_with(without_load_balancer))
    assert rate_limit_violations(pack, plan) == [
        (
            "support-bot-service",
            "mandatory",
            "the production agent service support-bot is reached through a load balancer (ingress "
            "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER), but no backend service of this stack serves it, so no per-client "
            "rate limit can be checked; build the load balancer here with a Cloud Armor rate limit (agentstage: "
            "agents.support-bot.load_balancer and rate_limit).",
        )
    ]


def test_only_production_agents_behind_a_load_balancer_are_held_to_it(pack, tmp_path) -> None:
    plan = plan_of(tmp_path, production_with(without_load_balancer))
    staging = mutate(plan, SERVICE, f"{AGENT}-service", _inputs(lambda i: i["labels"].update(environment="staging")))
    assert rate_limit_violations(pack, staging) == []
    internal = mutate(
        plan, SERVICE, f"{AGENT}-service", _inputs(lambda i: i.update(ingress="INGRESS_TRAFFIC_INTERNAL_ONLY"))
    )
    assert rate_limit_violations(pack, internal) == []


def test_unknown_ingress_or_environment_matter_only_without_a_rate_limit(pack, prod, tmp_path) -> None:
    def unknown(field: str) -> Callable[[dict[str, Any]], None]:
        return lambda i: i.update(ingress="[unknown]") if field == "ingress" else i.update(labels="[unknown]")

    for field in ("ingress", "labels"):
        limited = mutate(prod, SERVICE, f"{AGENT}-service", _inputs(unknown(field)))
        assert rate_limit_violations(pack, limited) == []
    bare = plan_of(tmp_path, production_with(without_load_balancer))
    assert rate_limit_violations(pack, mutate(bare, SERVICE, f"{AGENT}-service", _inputs(unknown("ingress")))) == [
        (
            "support-bot-service",
            "mandatory",
            "cannot judge whether the production agent service is reached through a load balancer: ingress is unknown "
            "during this preview (computed from an output of a resource this update creates or changes); compute it "
            "from inputs (stack config, names, ids) so that it is known at plan time.",
        )
    ]
    assert rate_limit_violations(pack, mutate(bare, SERVICE, f"{AGENT}-service", _inputs(unknown("labels")))) == [
        (
            "support-bot-service",
            "mandatory",
            "cannot judge whether the resource is in production: labels.environment is unknown during this preview "
            "(computed from an output of a resource this update creates or changes); compute it from inputs (stack "
            "config, names, ids) so that it is known at plan time.",
        )
    ]


# --- the CLI ----------------------------------------------------------------------------------


def test_check_fails_when_the_rate_limit_is_removed(tmp_path) -> None:
    path = write_stack(tmp_path / "Pulumi.production-no-limit.yaml", production_with(without_rate_limit))
    result = runner.invoke(
        app, ["check", "production", "--config-file", str(path), "-C", str(ROOT), "--format", "json"]
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [(v["policy"], v["enforcement"], v["resource_name"]) for v in report["violations"]] == [
        ("agent-rate-limit", "mandatory", "support-bot-backend")
    ]


def test_preview_shows_the_rate_limit() -> None:
    result = runner.invoke(app, ["preview", "production", "-C", str(ROOT)], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "Rate limits (Cloud Armor, on each agent's load balancer)" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "support-bot-armor" in line and "throttle" in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == [
        "support-bot-armor",
        "throttle",
        "600 requests / 60 s",
        "IP",
        "deny(429)",
    ]
