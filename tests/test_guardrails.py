"""AgentGuardrails: the Model Armor template's filter settings per environment, the agents'
user grant and the template name handed to each agent (offline engine, mock runtime)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentstage.config import ConfigError, platform_from_config
from agentstage.engine import Plan
from tests.conftest import load_stack, plan_of

TEMPLATE = "gcp:modelarmor/template:Template"
SERVICE = "gcp:cloudrunv2/service:Service"
IAM = "gcp:projects/iAMMember:IAMMember"
RAI = ("SEXUALLY_EXPLICIT", "HATE_SPEECH", "HARASSMENT", "DANGEROUS")


def template(plan: Plan) -> dict[str, Any]:
    [t] = plan.by_type(TEMPLATE)
    return t.inputs


def env_of(plan: Plan, agent: str) -> dict[str, str]:
    svc = plan.find(SERVICE, f"{agent}-service").inputs
    return {e["name"]: e.get("value") for e in svc["template"]["containers"][0]["envs"]}


def test_production_template_is_strict_on_every_filter(prod):
    t = template(prod)
    assert (t["templateId"], t["location"], t["project"]) == (
        "agentstage-production",
        "us-central1",
        "acme-agents-prod",
    )
    f = t["filterConfig"]
    assert f["piAndJailbreakFilterSettings"] == {"filterEnforcement": "ENABLED", "confidenceLevel": "LOW_AND_ABOVE"}
    assert f["raiSettings"]["raiFilters"] == [{"filterType": k, "confidenceLevel": "MEDIUM_AND_ABOVE"} for k in RAI]
    assert f["maliciousUriFilterSettings"] == {"filterEnforcement": "ENABLED"}
    assert f["sdpSettings"] == {"basicConfig": {"filterEnforcement": "ENABLED"}}
    assert t["templateMetadata"] == {
        "enforcementType": "INSPECT_AND_BLOCK",
        "logSanitizeOperations": True,
        "logTemplateOperations": True,
    }
    assert t["labels"] == {
        "team": "support",
        "cost-center": "cc-042",
        "environment": "production",
        "managed-by": "agentstage",
    }


def test_staging_defaults_are_less_strict(stage):
    f = template(stage)["filterConfig"]
    assert f["piAndJailbreakFilterSettings"]["confidenceLevel"] == "MEDIUM_AND_ABOVE"
    assert {r["confidenceLevel"] for r in f["raiSettings"]["raiFilters"]} == {"HIGH"}
    assert template(stage)["templateId"] == "agentstage-staging"


def test_confidence_levels_filters_and_location_are_configurable(tmp_path):
    cfg = copy.deepcopy(load_stack("production"))
    cfg["agent-platform:guardrails"].update(
        jailbreak_confidence="high",
        rai_confidence="low-and-above",
        malicious_urls=False,
        sensitive_data=False,
        enforcement="inspect-only",
        location="us",
    )
    t = template(plan_of(tmp_path, cfg))
    f = t["filterConfig"]
    assert f["piAndJailbreakFilterSettings"]["confidenceLevel"] == "HIGH"
    assert {r["confidenceLevel"] for r in f["raiSettings"]["raiFilters"]} == {"LOW_AND_ABOVE"}
    assert f["maliciousUriFilterSettings"] == {"filterEnforcement": "DISABLED"}
    assert f["sdpSettings"] == {"basicConfig": {"filterEnforcement": "DISABLED"}}
    assert (t["templateMetadata"]["enforcementType"], t["location"]) == ("INSPECT_ONLY", "us")


def test_each_agent_may_use_the_template_and_receives_its_name(prod):
    [tmpl] = prod.by_type(TEMPLATE)
    name = "projects/acme-agents-prod/locations/us-central1/templates/agentstage-production"
    assert tmpl.outputs["name"] == name
    for agent in ("support-bot", "research-agent"):
        member = f"serviceAccount:{agent}-production@acme-agents-prod.iam.gserviceaccount.com"
        grant = prod.find(IAM, f"guardrails-user-{agent}")
        assert (grant.inputs["role"], grant.inputs["member"], grant.inputs["project"]) == (
            "roles/modelarmor.user",
            member,
            "acme-agents-prod",
        )
        assert env_of(prod, agent)["MODEL_ARMOR_TEMPLATE"] == name
        service = prod.find(SERVICE, f"{agent}-service")
        assert grant.urn in service.dependencies and tmpl.urn in service.dependencies


def test_guardrails_off_removes_template_grant_and_env(tmp_path):
    cfg = copy.deepcopy(load_stack("production"))
    cfg["agent-platform:guardrails"] = {"model_armor": False}
    plan = plan_of(tmp_path, cfg)
    assert plan.by_type(TEMPLATE) == []
    assert not [r for r in plan.by_type(IAM) if r.inputs["role"] == "roles/modelarmor.user"]
    assert "MODEL_ARMOR_TEMPLATE" not in env_of(plan, "support-bot")


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"jailbreak_confidence": "paranoid"},
            'agent-platform:guardrails.jailbreak_confidence: "paranoid" is not allowed; allowed: low-and-above, medium-and-above or high',
        ),
        (
            {"enforcement": "block"},
            'agent-platform:guardrails.enforcement: "block" is not allowed; allowed: inspect-and-block or inspect-only',
        ),
        (
            {"location": "Mars"},
            'agent-platform:guardrails.location: "Mars" is not a Model Armor location; allowed: us, eu, asia-northeast1, '
            "asia-northeast3, asia-south1, asia-southeast1, australia-southeast2, europe-southwest1, europe-west1, "
            "europe-west2, europe-west3, europe-west4, europe-west9, northamerica-northeast2, us-central1, us-east1, "
            "us-east4, us-west1",
        ),
        ({"model_armor": "maybe"}, 'agent-platform:guardrails.model_armor: "maybe" is not true or false'),
    ],
)
def test_bad_guardrails_config_is_rejected_with_the_key(change, message):
    cfg = copy.deepcopy(load_stack("production"))
    cfg["agent-platform:guardrails"].update(change)
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    assert err.value.issues == [message]
