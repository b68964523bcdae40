"""CloudRunAgent and AgentIdentity under the mock runtime (through the offline engine)."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest

from agentstage.engine import Plan
from components.identity import BASELINE_ROLES, account_id
from tests.conftest import plan_of

SERVICE = "gcp:cloudrunv2/service:Service"
REV = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


def service(plan: Plan, agent: str = "support-bot") -> dict[str, Any]:
    return plan.find(SERVICE, f"{agent}-service").inputs


def digestless(value: Any) -> Any:
    """``support-bot-1-4-0-93457a87`` -> ``support-bot-1-4-0-<digest>`` anywhere in ``value``: the
    digest of the template is asserted in test_revision_identity, the rest of the name here."""
    if isinstance(value, dict):
        return {k: digestless(v) for k, v in value.items()}
    if isinstance(value, list):
        return [digestless(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"-[0-9a-f]{8}$", "-<digest>", value)
    return value


def bot(cfg):
    return cfg["agent-platform:agents"]["support-bot"]


# --- canary states -----------------------------------------------------------------------


def test_single_release_takes_all_traffic_on_its_named_revision(project, staging):
    svc = digestless(service(plan_of(project, staging, "staging")))
    assert svc["template"]["revision"] == "support-bot-1-4-0-<digest>"
    assert svc["traffics"] == [{"type": REV, "revision": "support-bot-1-4-0-<digest>", "percent": 100}]


def test_canary_in_flight_splits_between_two_named_revisions(project, production):
    svc = digestless(service(plan_of(project, production)))
    assert svc["template"]["revision"] == "support-bot-1-4-0-<digest>"
    assert svc["template"]["containers"][0]["image"] == bot(production)["release"]["image"]
    assert svc["traffics"] == [
        {"type": REV, "revision": "support-bot-1-3-2", "percent": 95},
        {"type": REV, "revision": "support-bot-1-4-0-<digest>", "percent": 5, "tag": "canary"},
    ]


def test_canary_percent_defaults_to_first_step(project, production):
    del bot(production)["rollout"]["canary_percent"]
    bot(production)["rollout"]["steps"] = [10, 100]
    svc = digestless(service(plan_of(project, production)))
    assert [(t["revision"], t["percent"]) for t in svc["traffics"]] == [
        ("support-bot-1-3-2", 90),
        ("support-bot-1-4-0-<digest>", 10),
    ]


def test_promoted_drops_stable_and_keeps_the_revision(project, production):
    canary = service(plan_of(project, production))
    del bot(production)["stable"]
    del bot(production)["stable_revision"]
    del bot(production)["rollout"]["canary_percent"]
    promoted = service(plan_of(project, production))
    assert promoted["template"] == canary["template"]  # no new revision
    assert promoted["traffics"] == [{"type": REV, "revision": canary["template"]["revision"], "percent": 100}]


def test_rolled_back_sends_everything_to_stable_and_drops_the_candidate(project, production):
    canary = service(plan_of(project, production))
    bot(production)["rollout"]["canary_percent"] = 0
    rolled_back = service(plan_of(project, production))
    assert rolled_back["template"] == canary["template"]  # the template is not reverted
    # off the traffic block and untagged, the candidate keeps no warm instances (docs/release.md)
    assert rolled_back["traffics"] == [{"type": REV, "revision": "support-bot-1-3-2", "percent": 100}]


def test_full_canary_step_with_stable_still_set(project, production):
    """The watch: the previous revision stays in the block at 0% (a rollback is one update),
    tagged so its own URL still reaches it."""
    bot(production)["rollout"]["canary_percent"] = 100
    plan = plan_of(project, production)
    svc = digestless(service(plan))
    assert [(t["revision"], t["percent"], t.get("tag")) for t in svc["traffics"]] == [
        ("support-bot-1-3-2", 0, "stable"),
        ("support-bot-1-4-0-<digest>", 100, "canary"),
    ]
    # the stack output the release tool reads as the live split when the API cannot be asked
    assert [(t["revision"], t["percent"], t["tag"]) for t in plan.outputs["traffic"]["support-bot"]] == [
        ("support-bot-1-3-2", 0, "stable"),
        (service(plan)["template"]["revision"], 100, "canary"),
    ]


def test_the_traffic_tags_are_cloud_run_tags():
    """Tags are DNS labels: lowercase letters, digits and dashes, starting with a letter (Cloud
    Run docs, "Rollbacks, gradual rollouts, and traffic migration"; compute v1
    NetworkEndpointGroupCloudRun.tag: "1-63 characters long, and comply with RFC1035"). The
    spec checks the canary tag with the service name against Cloud Run's 46 characters
    (TAG_AND_SERVICE_MAX), which covers the stable tag only while it is no longer."""
    import re

    from components.contract import CANARY_TAG, STABLE_TAG

    for tag in (CANARY_TAG, STABLE_TAG):
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", tag), tag
    assert len(STABLE_TAG) <= len(CANARY_TAG) and STABLE_TAG != CANARY_TAG


def test_prefix_names_service_and_revisions(project, production):
    production["agent-platform:prefix"] = "acme"
    bot(production)["stable_revision"] = "acme-support-bot-1-3-2"
    plan = plan_of(project, production)
    svc = digestless(service(plan))
    assert svc["name"] == "acme-support-bot"
    assert svc["template"]["revision"] == "acme-support-bot-1-4-0-<digest>"
    assert {t["revision"] for t in svc["traffics"]} == {"acme-support-bot-1-3-2", "acme-support-bot-1-4-0-<digest>"}
    assert plan.outputs["agents"]["support-bot"]["url"].startswith("https://acme-support-bot-")


# --- the service ---------------------------------------------------------------------------


def test_service_settings_follow_the_spec(project, production):
    svc = service(plan_of(project, production))
    tmpl = svc["template"]
    container = tmpl["containers"][0]
    assert svc["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    assert svc["deletionProtection"] is True  # production
    assert svc["invokerIamDisabled"] is False
    assert svc["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 20}  # service level: see traffic.py
    assert tmpl["scaling"] == {"maxInstanceCount": 20}
    assert tmpl["maxInstanceRequestConcurrency"] == 40
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    envs = {e["name"]: e for e in container["envs"]}
    assert envs["LOG_SAMPLE_RATE"] == {"name": "LOG_SAMPLE_RATE", "value": "0.1"}
    # flags are read from the agent's parameter, whose name never changes (docs/flags.md)
    assert "FEATURE_WEB_SEARCH_TOOL" not in envs
    assert envs["AGENTSTAGE_FLAGS_PARAMETER"]["value"] == (
        "projects/acme-agents-prod/locations/global/parameters/support-bot-production-flags"
    )
    assert envs["AGENT_RELEASE"]["value"] == "1.4.0"
    assert envs["AGENT_MODEL"]["value"] == "gemini-2.5-flash"
    assert envs["CRM_TOKEN"] == {
        "name": "CRM_TOKEN",
        "valueSource": {"secretKeyRef": {"secret": "crm-token", "version": "latest"}},
    }


def test_staging_is_not_deletion_protected_and_ingress_maps(project, staging):
    plan = plan_of(project, staging, "staging")
    assert service(plan)["deletionProtection"] is False
    assert service(plan, "research-agent")["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"


def test_invokers_are_granted_on_the_service_only(project, production):
    bot(production)["invokers"].append("group:support-eng@acme.com")
    plan = plan_of(project, production)
    grants = [
        r for r in plan.by_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember") if r.name.startswith("support-bot")
    ]
    assert sorted((g.inputs["name"], g.inputs["role"], g.inputs["member"]) for g in grants) == [
        ("support-bot", "roles/run.invoker", "group:support-eng@acme.com"),
        ("support-bot", "roles/run.invoker", "serviceAccount:frontend@acme-agents-prod.iam.gserviceaccount.com"),
    ]
    assert not [
        r for r in plan.resources if r.inputs.get("role") == "roles/run.invoker" and r.type.startswith("gcp:projects")
    ]


# --- identity ------------------------------------------------------------------------------


def test_each_agent_runs_as_its_own_dedicated_account(project, production):
    plan = plan_of(project, production)
    accounts = {r.name: r for r in plan.by_type("gcp:serviceaccount/account:Account")}
    assert {a.inputs["accountId"] for a in accounts.values()} == {"support-bot-production", "research-agent-production"}
    assert (
        service(plan)["template"]["serviceAccount"] == "support-bot-production@acme-agents-prod.iam.gserviceaccount.com"
    )
    assert service(plan, "research-agent")["template"]["serviceAccount"] == (
        "research-agent-production@acme-agents-prod.iam.gserviceaccount.com"
    )


def test_project_grants_are_additive_baseline_plus_extra_roles(project, production):
    bot(production)["roles"] = ["roles/aiplatform.user", "roles/bigquery.dataViewer"]
    plan = plan_of(project, production)
    member = "serviceAccount:support-bot-production@acme-agents-prod.iam.gserviceaccount.com"
    project_grants = [
        r.inputs for r in plan.by_type("gcp:projects/iAMMember:IAMMember") if r.inputs["member"] == member
    ]
    guardrails = ["roles/modelarmor.user"]  # Model Armor has no template-level IAM in the provider
    flags = ["roles/parametermanager.parameterAccessor"]  # conditioned on its own parameter (test_flags)
    assert sorted(g["role"] for g in project_grants) == sorted(
        [*BASELINE_ROLES, *guardrails, *flags, "roles/bigquery.dataViewer"]
    )
    assert {g["project"] for g in project_grants} == {"acme-agents-prod"}
    # additive members only: never an authoritative binding or policy on the project
    assert not [r for r in plan.resources if r.type.startswith("gcp:projects/") and not r.type.endswith("IAMMember")]


def test_secret_access_is_granted_per_secret_never_project_wide(project, production):
    bot(production)["secrets"]["KB_KEY"] = "kb-key:4"
    plan = plan_of(project, production)
    member = "serviceAccount:support-bot-production@acme-agents-prod.iam.gserviceaccount.com"
    per_secret = [
        r.inputs
        for r in plan.by_type("gcp:secretmanager/secretIamMember:SecretIamMember")
        if r.inputs["member"] == member
    ]
    assert sorted(g["secretId"] for g in per_secret) == ["crm-token", "kb-key"]
    assert {g["role"] for g in per_secret} == {"roles/secretmanager.secretAccessor"}
    assert not [
        r
        for r in plan.by_type("gcp:projects/iAMMember:IAMMember")
        if r.inputs["role"] == "roles/secretmanager.secretAccessor"
    ]


@pytest.mark.parametrize(
    "agent,env,prefix,expected",
    [
        ("support-bot", "production", "", "support-bot-production"),
        ("qa", "dev", "", "qa-dev"),
        ("a", "b", "", "a-b-agent"),
        ("customer-support-escalation-bot", "production", "", None),
    ],
)
def test_account_ids_are_deterministic_and_within_limits(agent, env, prefix, expected):
    got = account_id(agent, env, prefix)
    assert got == account_id(agent, env, prefix)
    assert re.fullmatch(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", got)
    if expected:
        assert got == expected
    else:
        assert got.startswith("customer-support-escala") and len(got) == 30
        assert got != account_id(agent, "staging", prefix)


def test_service_waits_for_the_identity_grants(project, production):
    plan = plan_of(project, production)
    svc = plan.find(SERVICE, "support-bot-service")
    grants = {
        r.urn
        for r in plan.resources
        if r.type in ("gcp:projects/iAMMember:IAMMember", "gcp:secretmanager/secretIamMember:SecretIamMember")
        and r.name.startswith("support-bot-")
    }
    assert len(grants) == 6  # with the reader grant of its flags parameter
    assert grants <= set(svc.dependencies)
    url = plan.outputs["agents"]["support-bot"]["url"]
    assert re.fullmatch(r"https://support-bot-\d{12}\.us-central1\.run\.app", url)


def test_url_resolves_only_after_invoker_and_identity_grants_exist(production):
    """The url Output carries every grant as a dependency: a consumer of it waits for them."""
    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.sync_await import _sync_await

    from agentstage.config import platform_from_config
    from agentstage.fixtures import FixtureMocks
    from components import AgentPlatform

    settings.set_root_resource(None)
    pulumi.runtime.set_mocks(FixtureMocks({"gcp:project": "acme-agents-prod"}), project="p", stack="s", preview=False)
    platform = AgentPlatform("platform", platform_from_config(production))
    agent = platform.services["support-bot"]
    deps = _sync_await(agent.url.resources())
    expected = {agent.service, *agent.invokers.values(), *platform.identities["support-bot"].grants}
    assert expected <= deps
    assert _sync_await(agent.url.future()).startswith("https://support-bot-")


# --- labels -------------------------------------------------------------------------------


def _labelable(type_token: str) -> str | None:
    """The labels property of a pulumi-gcp resource type, read from the SDK class itself."""
    _, module_path, cls = type_token.split(":")
    module = importlib.import_module("pulumi_gcp." + module_path.split("/")[0])
    klass = getattr(module, cls)
    # user_labels first: on monitoring resources `labels` is channel configuration
    for prop, wire in (("user_labels", "userLabels"), ("labels", "labels")):
        if isinstance(getattr(klass, prop, None), property):
            return wire
    return None


def test_every_labelable_child_carries_the_labels(project, production):
    plan = plan_of(project, production)
    checked = 0
    for r in plan.resources:
        if not r.custom or not r.type.startswith("gcp:"):  # time:index/sleep:Sleep carries no labels
            continue
        wire = _labelable(r.type)
        if wire is None:
            continue
        labels = r.inputs.get(wire) or {}
        assert labels.get("environment") == "production", r.urn
        assert labels.get("managed-by") == "agentstage", r.urn
        assert labels.get("team") == "support" and labels.get("cost-center") == "cc-042", r.urn
        if r.type == SERVICE:
            agent = r.name.removesuffix("-service")
            assert labels["agent"] == agent
            assert labels["release"] == {"support-bot": "1-4-0", "research-agent": "2-1-0"}[agent]
            assert r.inputs["template"]["labels"] == labels
        checked += 1
    assert checked >= 2
