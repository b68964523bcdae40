"""Hard spend caps: the spend_cap spec (exact messages for bad input) and AgentSpendCaps under the
Pulumi mock runtime (offline engine): one budget per capped agent filtered to its label, one
enforcer per environment with its trigger, source archive and config, and an identity whose
grants are exactly what its actions need."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from typing import Any

import pytest

from agentstage.config import ConfigError, platform_from_config
from agentstage.enforcer.config import parse_caps
from agentstage.enforcer.package import REQUIREMENTS, source_digest, source_files
from agentstage.engine import Plan
from agentstage.fixtures import project_number
from components.spend_cap import (
    cap_display_name,
    enforcer_bucket_name,
    enforcer_function_id,
)
from tests.conftest import load_stack, plan_of

BUDGET = "gcp:billing/budget:Budget"
TOPIC = "gcp:pubsub/topic:Topic"
FUNCTION = "gcp:cloudfunctionsv2/function:Function"
BUCKET = "gcp:storage/bucket:Bucket"
OBJECT = "gcp:storage/bucketObject:BucketObject"
ACCOUNT = "gcp:serviceaccount/account:Account"
ENFORCER = "serviceAccount:agentstage-caps-production@acme-agents-prod.iam.gserviceaccount.com"
AGENTS = "agent-platform:agents"
KEY = f"{AGENTS}.support-bot.spend_cap"


def capped(**caps: dict[str, Any]) -> dict[str, Any]:
    cfg = copy.deepcopy(load_stack("production"))
    for agent, cap in caps.items():
        cfg[AGENTS][agent]["spend_cap"] = cap
    return cfg


CANARY = {"monthly_amount": 300, "action": "canary-to-zero"}
FLAGS_OFF = {"monthly_amount": 200.5, "threshold": 0.9, "action": "flags-off", "flags": ["citations"]}


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> Plan:
    return plan_of(tmp_path_factory.mktemp("caps"), capped(**{"support-bot": CANARY, "research-agent": FLAGS_OFF}))


def grants_of(plan: Plan, member: str) -> list[tuple[str, str, str, str | None]]:
    """(resource type, role, the resource granted on, condition expression) of every IAM member
    resource whose member is ``member``."""
    out = []
    for r in plan.resources:
        if r.inputs.get("member") != member:
            continue
        scope = r.inputs.get("name") or r.inputs.get("serviceAccountId") or r.inputs.get("project")
        out.append((r.type, r.inputs["role"], scope, (r.inputs.get("condition") or {}).get("expression")))
    return sorted(out)


# --- the budgets -------------------------------------------------------------------------------


def test_each_capped_agent_has_a_budget_on_its_own_label_and_project(plan):
    budgets = {b.name: b.inputs for b in plan.by_type(BUDGET)}
    assert set(budgets) == {"budget-budget", "support-bot-spend-cap", "research-agent-spend-cap"}
    support = budgets["support-bot-spend-cap"]
    assert support["displayName"] == "agentstage cap support-bot (production)"
    assert support["billingAccount"] == "012345-6789AB-CDEF01"
    assert support["amount"] == {"specifiedAmount": {"currencyCode": "USD", "units": "300"}}
    assert support["budgetFilter"] == {
        "projects": [f"projects/{project_number('acme-agents-prod')}"],
        "labels": {"agent": "support-bot"},
        "calendarPeriod": "MONTH",
        "creditTypesTreatment": "INCLUDE_ALL_CREDITS",
    }
    assert support["thresholdRules"] == [{"thresholdPercent": 1, "spendBasis": "CURRENT_SPEND"}]
    rule = support["allUpdatesRule"]
    assert rule["pubsubTopic"] == "projects/acme-agents-prod/topics/agentstage-spend-caps-production"
    assert rule["schemaVersion"] == "1.0"
    research = budgets["research-agent-spend-cap"]
    assert research["budgetFilter"]["labels"] == {"agent": "research-agent"}
    assert research["amount"]["specifiedAmount"] == {"currencyCode": "USD", "units": "200", "nanos": 500000000}
    assert research["thresholdRules"] == [{"thresholdPercent": 0.9, "spendBasis": "CURRENT_SPEND"}]
    # the environment's budget is unchanged: it still watches the whole project
    assert "labels" not in budgets["budget-budget"]["budgetFilter"]


def test_the_agent_label_the_budget_filters_on_is_on_the_agents_service(plan):
    [service] = [s for s in plan.by_type("gcp:cloudrunv2/service:Service") if s.inputs["name"] == "support-bot"]
    assert service.inputs["labels"]["agent"] == "support-bot"


# --- the enforcer ------------------------------------------------------------------------------


def test_one_enforcer_function_triggered_by_the_caps_topic(plan):
    [topic] = [t for t in plan.by_type(TOPIC) if t.name == "spend-caps-topic"]
    assert topic.inputs["name"] == "agentstage-spend-caps-production"
    [function] = plan.by_type(FUNCTION)
    f = function.inputs
    assert f["name"] == "agentstage-caps-production" and f["location"] == "us-central1"
    assert f["buildConfig"]["runtime"] == "python312" and f["buildConfig"]["entryPoint"] == "on_budget"
    assert f["eventTrigger"] == {
        "triggerRegion": "us-central1",
        "eventType": "google.cloud.pubsub.topic.v1.messagePublished",
        "pubsubTopic": "projects/acme-agents-prod/topics/agentstage-spend-caps-production",
        "retryPolicy": "RETRY_POLICY_RETRY",
        "serviceAccountEmail": ENFORCER.removeprefix("serviceAccount:"),
    }
    service = f["serviceConfig"]
    assert service["serviceAccountEmail"] == ENFORCER.removeprefix("serviceAccount:")
    assert service["ingressSettings"] == "ALLOW_INTERNAL_ONLY"
    assert (service["maxInstanceCount"], service["maxInstanceRequestConcurrency"]) == (1, 1)
    assert topic.urn in function.dependencies


def test_the_enforcer_config_names_each_cap_and_its_budget(plan):
    [function] = plan.by_type(FUNCTION)
    caps = {
        c.agent: c
        for c in parse_caps(function.inputs["serviceConfig"]["environmentVariables"]["AGENTSTAGE_SPEND_CAPS"])
    }
    budgets = {b.name: b.outputs["name"] for b in plan.by_type(BUDGET)}
    support, research = caps["support-bot"], caps["research-agent"]
    assert support.action == "canary-to-zero" and support.threshold == 1.0
    assert support.service == "projects/acme-agents-prod/locations/us-central1/services/support-bot"
    assert support.display_name == "agentstage cap support-bot (production)"
    assert support.budget == budgets["support-bot-spend-cap"]
    assert (research.action, research.flags, research.threshold) == ("flags-off", ("citations",), 0.9)
    assert research.parameter == "projects/acme-agents-prod/locations/global/parameters/research-agent-production-flags"
    for budget in plan.by_type(BUDGET):
        if budget.name.endswith("-spend-cap"):
            assert budget.urn in function.dependencies


def test_the_source_archive_is_the_enforcer_package_named_by_its_digest(plan):
    [bucket] = plan.by_type(BUCKET)
    assert bucket.inputs["name"] == "acme-agents-prod-agentstage-caps-production"
    assert bucket.inputs["uniformBucketLevelAccess"] is True and bucket.inputs["publicAccessPrevention"] == "enforced"
    [archive] = plan.by_type(OBJECT)
    files = source_files()
    assert archive.inputs["name"] == f"enforcer-{source_digest(files)[:16]}.zip"
    assert archive.inputs["bucket"] == bucket.inputs["name"]
    [function] = plan.by_type(FUNCTION)
    assert function.inputs["buildConfig"]["source"] == {
        "storageSource": {"bucket": bucket.inputs["name"], "object": archive.inputs["name"]}
    }
    assets = archive.inputs["source"]["assets"]
    assert {path: asset["text"] for path, asset in assets.items()} == files
    assert files["requirements.txt"].split() == list(REQUIREMENTS)
    assert "from agentstage.enforcer.main import on_budget" in files["main.py"]


def test_the_enforcer_identity_holds_exactly_what_its_actions_need(plan):
    [account] = [a for a in plan.by_type(ACCOUNT) if a.name == "spend-caps-enforcer-sa"]
    assert account.inputs["accountId"] == "agentstage-caps-production"
    condition = (
        'resource.name.endsWith("/locations/global/parameters/research-agent-production-flags") || '
        'resource.name.extract("/locations/global/parameters/{parameter}/versions/") == '
        '"research-agent-production-flags"'
    )
    assert grants_of(plan, ENFORCER) == [
        # canary-to-zero on support-bot: its service, and actAs its identity only
        ("gcp:cloudrunv2/serviceIamMember:ServiceIamMember", "roles/run.developer", "support-bot", None),
        # Eventarc invokes the function as the enforcer
        ("gcp:cloudrunv2/serviceIamMember:ServiceIamMember", "roles/run.invoker", "agentstage-caps-production", None),
        # flags-off on research-agent: its flags parameter only (a condition on the project grant)
        ("gcp:projects/iAMMember:IAMMember", "roles/parametermanager.parameterAccessor", "acme-agents-prod", condition),
        ("gcp:projects/iAMMember:IAMMember", "roles/parametermanager.parameterVersionAdder", "acme-agents-prod", condition),
        (
            "gcp:serviceaccount/iAMMember:IAMMember",
            "roles/iam.serviceAccountUser",
            "projects/acme-agents-prod/serviceAccounts/support-bot-production@acme-agents-prod.iam.gserviceaccount.com",
            None,
        ),
    ]  # fmt: skip
    assert not any("billing" in role for _, role, _, _ in grants_of(plan, ENFORCER))


def test_cap_instances_grants_the_service_and_no_flags(tmp_path):
    cap = {"monthly_amount": 80, "action": "cap-instances", "max_instances": 2}
    plan = plan_of(tmp_path, capped(**{"research-agent": cap}))
    roles = [(role, scope) for _, role, scope, _ in grants_of(plan, ENFORCER)]
    assert ("roles/run.developer", "research-agent") in roles
    assert not any(role.startswith("roles/parametermanager.") for role, _ in roles)
    assert ("roles/run.developer", "support-bot") not in roles
    [function] = plan.by_type(FUNCTION)
    [cap_config] = parse_caps(function.inputs["serviceConfig"]["environmentVariables"]["AGENTSTAGE_SPEND_CAPS"])
    assert (cap_config.agent, cap_config.max_instances) == ("research-agent", 2)


def test_without_spend_caps_there_is_no_enforcer(prod):
    for type_ in (FUNCTION, BUCKET, OBJECT):
        assert prod.by_type(type_) == []
    assert [b.name for b in prod.by_type(BUDGET)] == ["budget-budget"]


def test_the_component_has_its_token_and_owns_every_child(plan):
    [component] = [r for r in plan.resources if r.type == "agentstage:spendcap:AgentSpendCaps"]
    children = [r for r in plan.resources if r.parent == component.urn]
    assert sorted(r.name for r in children) == [
        "research-agent-spend-cap",
        "research-agent-spend-cap-flags-read",
        "research-agent-spend-cap-flags-write",
        "spend-caps-archive",
        "spend-caps-enforcer",
        "spend-caps-enforcer-sa",
        "spend-caps-invoker",
        "spend-caps-source",
        "spend-caps-topic",
        "support-bot-spend-cap",
        "support-bot-spend-cap-act-as",
        "support-bot-spend-cap-run",
    ]


# --- names -------------------------------------------------------------------------------------


def test_names_fit_the_google_rules():
    # Budget display name: at most 60 characters
    long = cap_display_name("a" * 49, "production")
    assert len(long) == 60 and long.startswith("agentstage cap aaaa")
    # function ids: 4-63 characters of a-z and '-' only
    assert enforcer_function_id("staging", "team") == "team-agentstage-caps-staging"
    digits = enforcer_function_id("stage2")
    assert digits.startswith("agentstage-caps-") and set(digits) <= set("abcdefghijklmnopqrstuvwxyz-")
    assert digits == enforcer_function_id("stage2") != enforcer_function_id("stage3")
    # bucket names: at most 63 characters
    bucket = enforcer_bucket_name("a-very-long-project-id-30-chr", "pre-production-eu", "team-a")
    assert len(bucket) == 63 and bucket.startswith("a-very-long-project-id-30-chr-team-a-agentstage")


# --- bad input -----------------------------------------------------------------------------------


def issues(cfg: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    return err.value.issues


@pytest.mark.parametrize(
    ("cap", "message"),
    [
        ({"monthly_amount": 300}, f"{KEY}.action: required key is missing"),
        ({"monthly_amount": 0, "action": "canary-to-zero"}, f"{KEY}.monthly_amount: 0 is not a positive amount"),
        ({"monthly_amount": 300, "action": "disable-billing"},
         f'{KEY}.action: "disable-billing" is not allowed; allowed: canary-to-zero, cap-instances or flags-off'),
        ({"monthly_amount": 300, "action": "cap-instances"},
         f"{KEY}.max_instances: null is not set; action cap-instances needs the instance count to cap the service at"),
        ({"monthly_amount": 300, "action": "canary-to-zero", "max_instances": 3},
         f"{KEY}.max_instances: 3 is set but action is canary-to-zero; max_instances is only for cap-instances: "
         "remove it"),
        ({"monthly_amount": 300, "action": "cap-instances", "max_instances": 0},
         f"{KEY}.max_instances: 0 is out of range; allowed: 1..1000"),
        ({"monthly_amount": 300, "action": "flags-off"},
         f"{KEY}.flags: [] is empty; action flags-off needs the feature flags to turn off (names from the agent's "
         "features)"),
        ({"monthly_amount": 300, "action": "flags-off", "flags": ["nope"]},
         f'{KEY}.flags[0]: "nope" is not a feature flag of this agent (features: web_search_tool); declare it under '
         "features, or fix the name"),
        ({"monthly_amount": 300, "action": "flags-off", "flags": ["web_search_tool", "web_search_tool"]},
         f'{KEY}.flags[1]: "web_search_tool" is listed twice; list each flag once'),
        ({"monthly_amount": 300, "action": "canary-to-zero", "flags": ["web_search_tool"]},
         f'{KEY}.flags: ["web_search_tool"] is set but action is canary-to-zero; flags is only for flags-off: '
         "remove it"),
        ({"monthly_amount": 300, "action": "canary-to-zero", "threshold": 0},
         f"{KEY}.threshold: 0 is out of range; allowed: 0.01..10 (a share of monthly_amount: 1.0 means 100%)"),
        ({"monthly_amount": 300, "action": "canary-to-zero", "currency": "usd"},
         f'{KEY}.currency: "usd" is not a currency code; use three uppercase letters, e.g. USD or EUR'),
        ({"monthly_amount": 300, "action": "canary-to-zero", "extra": 1},
         f"{KEY}.extra: unknown key; allowed: monthly_amount, currency, threshold, action, max_instances, flags"),
    ],
)  # fmt: skip
def test_bad_spend_caps_name_the_key_the_value_and_what_is_allowed(cap, message):
    assert issues(capped(**{"support-bot": cap})) == [message]


def test_a_spend_cap_needs_the_billing_account():
    cfg = copy.deepcopy(load_stack("staging"))
    cfg.pop("agent-platform:budget", None)
    agent = sorted(cfg[AGENTS])[0]
    cfg[AGENTS][agent]["spend_cap"] = {"monthly_amount": 50, "action": "canary-to-zero"}
    assert issues(cfg) == [
        f'{AGENTS}.{agent}.spend_cap: {{"monthly_amount": 50.0, "action": "canary-to-zero"}} is set, but '
        "budget.billing_account is not; a spend cap is a billing budget on the account that pays for the project: "
        "set budget.billing_account (and budget.monthly_amount)"
    ]


def test_a_spend_cap_is_for_cloud_run_agents():
    cfg = capped(**{"research-agent": {"monthly_amount": 50, "action": "canary-to-zero"}})
    agent = cfg[AGENTS]["research-agent"]
    for key in ("scaling", "resources", "ingress"):
        agent.pop(key)
    agent["runtime"] = "agent-engine"
    agent["agent_engine"] = {"min_instances": 1, "max_instances": 8, "cpu": "2", "memory": "4Gi"}
    assert issues(cfg) == [
        f'{AGENTS}.research-agent.spend_cap: {{"monthly_amount": 50.0, "action": "canary-to-zero"}} is set, but '
        "runtime is agent-engine; the spend-cap enforcer acts on Cloud Run services only: remove spend_cap, or use "
        "budget.label_filter to watch this agent's spend"
    ]


def test_the_archive_unpacks_to_a_zip_the_function_can_build(tmp_path):
    """What Pulumi uploads is a zip of these files: main.py and requirements.txt at its root."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in source_files().items():
            archive.writestr(path, text)
    names = zipfile.ZipFile(io.BytesIO(buffer.getvalue())).namelist()
    assert {"main.py", "requirements.txt", "agentstage/enforcer/main.py", "agentstage/flags.py"} <= set(names)
    assert json.loads(json.dumps(source_files())) == source_files()


def test_the_docs_snippet_is_a_valid_spend_cap():
    from ruamel.yaml import YAML

    from tests.conftest import ROOT

    text = (ROOT / "docs" / "spend-caps.md").read_text()
    snippet = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    documented = YAML(typ="safe", pure=True).load(snippet)["config"]
    agent = documented[AGENTS]["support-bot"]
    cfg = capped(**{"support-bot": agent["spend_cap"]})
    cfg[AGENTS]["support-bot"]["features"] = agent["features"]
    cfg["agent-platform:budget"].update(documented["agent-platform:budget"])
    spec = platform_from_config(cfg)
    cap = spec.agents["support-bot"].spend_cap
    assert cap is not None and (cap.monthly_amount, cap.action, cap.threshold) == (300, "canary-to-zero", 1.0)


def test_the_archive_holds_every_enforcer_module():
    from tests.conftest import ROOT

    package = ROOT / "agentstage" / "enforcer"
    modules = {f"agentstage/enforcer/{p.name}" for p in package.glob("*.py") if p.name != "package.py"}
    assert modules <= set(source_files())
