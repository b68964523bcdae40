"""Every agent_guard rule, through the Analyzer protocol: a compliant baseline passes, and one
mutated property produces exactly the expected violation.

The baseline is the offline plan of the reference production stack plus a few compliant
resources of types the reference platform does not create (Agent Engine, GKE, a Vertex AI
endpoint, IAM bindings and policies). One pack process serves the module: it is started as
the Pulumi CLI starts it and is driven with ``Analyze``/``AnalyzeStack`` by
:class:`agentstage.policy.PolicyPackProcess`; no rule function is called directly.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentstage.engine import Plan, PlannedResource, load_project, load_stack_config, run_plan
from agentstage.policy import PACK_DIR, PolicyPackProcess, load_policy_config

from conftest import ROOT

STACK = "production"
PROJECT = "agent-platform"
SERVICE = "gcp:cloudrunv2/service:Service"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
ALERT = "gcp:monitoring/alertPolicy:AlertPolicy"
AGENT_ENGINE = "gcp:vertex/aiReasoningEngine:AiReasoningEngine"
SA = "serviceAccount:support-bot-production@acme-agents-prod.iam.gserviceaccount.com"
DEFAULT_COMPUTE = "123456789012-compute@developer.gserviceaccount.com"
LABELS = {"environment": "production", "agent": "support-bot", "release": "1-4-0", "managed-by": "agentstage"}


def _extra(type_: str, name: str, inputs: dict[str, Any]) -> PlannedResource:
    """A compliant resource of a type the reference platform does not create."""
    return PlannedResource(
        urn=f"urn:pulumi:{STACK}::{PROJECT}::{type_}::{name}",
        type=type_,
        name=name,
        parent=f"urn:pulumi:{STACK}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{STACK}",
        custom=True,
        inputs=inputs,
        outputs=copy.deepcopy(inputs),
        options={"version": "10.2.0"},
    )


EXTRAS = [
    _extra(
        AGENT_ENGINE,
        "planner-engine",
        {
            "displayName": "planner",
            "region": "us-central1",
            "labels": {**LABELS, "agent": "planner"},
            "spec": {
                "serviceAccount": "planner-production@acme-agents-prod.iam.gserviceaccount.com",
                "deploymentSpec": {
                    "minInstances": 1,
                    "maxInstances": 10,
                    "resourceLimits": {"cpu": "2", "memory": "4Gi"},
                    "envs": [{"name": "LOG_LEVEL", "value": "info"}],
                    "secretEnvs": [{"name": "CRM_TOKEN", "secretRef": {"secret": "crm-token", "version": "3"}}],
                },
            },
            "trafficConfig": {
                "trafficSplitManual": {"targets": [{"runtimeRevisionName": "r1", "percent": 90}, {"runtimeRevisionName": "r2", "percent": 10}]}
            },
        },
    ),
    _extra(
        "gcp:vertex/aiReasoningEngineIamMember:AiReasoningEngineIamMember",
        "planner-engine-user",
        {"reasoningEngine": "planner", "role": "roles/aiplatform.user", "member": "group:support-eng@acme.com"},
    ),
    _extra(
        "gcp:container/nodePool:NodePool",
        "agents-pool",
        {"cluster": "agents", "nodeConfig": {"serviceAccount": "gke-nodes@acme-agents-prod.iam.gserviceaccount.com"}},
    ),
    _extra(
        "gcp:vertex/aiEndpoint:AiEndpoint",
        "ranker-endpoint",
        {"displayName": "ranker", "location": "us-central1", "labels": {**LABELS, "agent": "ranker"},
         "trafficSplit": json.dumps({"1111": 95, "2222": 5})},
    ),
    _extra(
        "gcp:projects/iAMBinding:IAMBinding",
        "log-viewers",
        {"project": "acme-agents-prod", "role": "roles/logging.viewer", "members": ["group:support-eng@acme.com"]},
    ),
    _extra(
        "gcp:projects/iAMPolicy:IAMPolicy",
        "sandbox-policy",
        {"project": "acme-agents-sandbox", "policyData": json.dumps(
            {"bindings": [{"role": "roles/aiplatform.user", "members": ["group:support-eng@acme.com"]}]})},
    ),
]


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline() -> Plan:
    plan = run_plan(ROOT, STACK)
    plan.resources.extend(copy.deepcopy(EXTRAS))
    return plan


@pytest.fixture(scope="module")
def pack() -> Iterator[PolicyPackProcess]:
    config = load_stack_config(load_project(ROOT), STACK)
    with PolicyPackProcess(
        PACK_DIR, project=PROJECT, stack=STACK, config=config.values, secret_keys=config.secret_keys
    ) as p:
        p.configure(load_policy_config(PACK_DIR / "config" / "production.json"))
        yield p


def violations(pack: PolicyPackProcess, plan: Plan) -> list[tuple[str, str | None, str]]:
    found, _, _ = pack.analyze(plan)
    return [(v.policy, v.resource_name, v.message) for v in found]


def mutate(plan: Plan, type_: str, name: str, change: Callable[[dict[str, Any]], None]) -> Plan:
    """A copy of ``plan`` with ``change`` applied to one resource's inputs and state."""
    new = copy.deepcopy(plan)
    r = new.find(type_, name)
    change(r.inputs)
    if r.outputs:
        change(r.outputs)
    return new


def without(plan: Plan, keep: Callable[[PlannedResource], bool]) -> Plan:
    new = copy.deepcopy(plan)
    new.resources = [r for r in new.resources if keep(r)]
    return new


def added(plan: Plan, resource: PlannedResource) -> Plan:
    new = copy.deepcopy(plan)
    new.resources.append(resource)
    return new


def container(inputs: dict[str, Any]) -> dict[str, Any]:
    return inputs["template"]["containers"][0]


def test_baseline_passes_every_rule(pack: PolicyPackProcess, baseline: Plan) -> None:
    assert violations(pack, baseline) == []
    assert {p.enforcement for p in pack.policies} == {"mandatory"}


# --- security ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "member, who",
    [("allUsers", "anyone on the internet"), ("allAuthenticatedUsers", "any signed-in Google account")],
)
def test_public_invoker_on_cloud_run(pack, baseline, member, who) -> None:
    name = "support-bot-invoker-serviceaccount-frontend-at-acme-agents-prod-iam-gserviceaccount-com"
    plan = mutate(baseline, INVOKER, name, lambda i: i.update(member=member))
    assert violations(pack, plan) == [
        ("no-public-invoker", name,
         f"grants roles/run.invoker to {member} on the Cloud Run service, so {who} can call it; remove the public "
         "member and grant the role to the calling service account or group.")
    ]


def test_public_member_on_agent_engine(pack, baseline) -> None:
    plan = mutate(baseline, "gcp:vertex/aiReasoningEngineIamMember:AiReasoningEngineIamMember", "planner-engine-user",
                  lambda i: i.update(member="allUsers"))
    assert violations(pack, plan) == [
        ("no-public-invoker", "planner-engine-user",
         "grants roles/aiplatform.user to allUsers on the Vertex AI resource, so anyone on the internet can call it; "
         "remove the public member and grant the role to the calling service account or group.")
    ]


def test_ingress_all(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i.update(ingress="INGRESS_TRAFFIC_ALL"))
    assert violations(pack, plan) == [
        ("cloud-run-ingress-restricted", "support-bot-service",
         "ingress is INGRESS_TRAFFIC_ALL: the service accepts requests from the whole internet; set ingress to "
         "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (behind a load balancer) or INGRESS_TRAFFIC_INTERNAL_ONLY, or list "
         "the service in this policy's allowAllTraffic config.")
    ]


def test_missing_ingress_means_the_provider_default_all(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i.pop("ingress"))
    assert violations(pack, plan) == [
        ("cloud-run-ingress-restricted", "support-bot-service",
         "ingress is not set, so the provider default INGRESS_TRAFFIC_ALL applies: the service accepts requests from "
         "the whole internet; set ingress to INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (behind a load balancer) or "
         "INGRESS_TRAFFIC_INTERNAL_ONLY, or list the service in this policy's allowAllTraffic config.")
    ]


def test_ingress_all_allowed_by_policy_config(pack, baseline) -> None:
    config = load_policy_config(PACK_DIR / "config" / "production.json")
    config["cloud-run-ingress-restricted"] = type(config["all"])(None, {"allowAllTraffic": ["support-bot"]})
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i.update(ingress="INGRESS_TRAFFIC_ALL"))
    try:
        pack.configure(config)
        assert violations(pack, plan) == []
    finally:
        pack.configure(load_policy_config(PACK_DIR / "config" / "production.json"))
    assert [v[0] for v in violations(pack, plan)] == ["cloud-run-ingress-restricted"]


def test_invoker_iam_disabled(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "research-agent-service", lambda i: i.update(invokerIamDisabled=True))
    assert violations(pack, plan) == [
        ("invoker-iam-enabled", "research-agent-service",
         "invokerIamDisabled is true: Cloud Run skips the invoker IAM check and anyone who can reach the service can "
         "call it; set invoker_iam_disabled to false and grant roles/run.invoker to the callers.")
    ]


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("CRM_API_TOKEN", "abc123", "its name ends in _TOKEN"),
        ("OPENAI_KEY", "x", "its name ends in _KEY"),
        ("DB_PASSWORD_FILE", "/run/pw", "its name contains PASSWORD"),
        ("UPSTREAM", "sk-proj-0123456789", "its value starts with sk-, like an API secret key"),
        ("MAPS", "AIzaSyA-0123456789", "its value starts with AIza, like a Google API key"),
        ("BOT", "xoxb-123-456", "its value starts with xox, like a Slack token"),
        ("GH", "ghp_0123456789abcdef", "its value starts with ghp_, like a GitHub token"),
        ("WEBHOOK_SECRET", "[secret]", "its name ends in _SECRET"),
    ],
)
def test_credential_in_plain_env(pack, baseline, name, value, reason) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service",
                  lambda i: container(i)["envs"].append({"name": name, "value": value}))
    assert violations(pack, plan) == [
        ("secrets-in-secret-manager", "support-bot-service",
         f"{name} is a plain environment variable of container agent that looks like a credential: {reason}; store "
         "the value in Secret Manager and reference it with a secret reference (agentstage: move it from env to "
         "secrets).")
    ]


def test_credential_in_agent_engine_env(pack, baseline) -> None:
    plan = mutate(baseline, AGENT_ENGINE, "planner-engine",
                  lambda i: i["spec"]["deploymentSpec"]["envs"].append({"name": "CRM_TOKEN", "value": "t0k3n"}))
    assert violations(pack, plan) == [
        ("secrets-in-secret-manager", "planner-engine",
         "CRM_TOKEN is a plain environment variable of the deployment spec that looks like a credential: its name "
         "ends in _TOKEN; store the value in Secret Manager and reference it with a secret reference (agentstage: "
         "move it from env to secrets).")
    ]


def test_secret_reference_is_not_a_plain_credential(pack, baseline) -> None:
    # The baseline already references CRM_TOKEN from Secret Manager; a second reference stays compliant.
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: container(i)["envs"].append(
        {"name": "OTHER_TOKEN", "valueSource": {"secretKeyRef": {"secret": "other", "version": "1"}}}))
    assert violations(pack, plan) == []


def test_image_not_pinned_by_digest(pack, baseline) -> None:
    image = "us-docker.pkg.dev/acme-agents/agents/support-bot:1.4.0"
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: container(i).update(image=image))
    assert violations(pack, plan) == [
        ("image-pinned-by-digest", "support-bot-service",
         f"container agent runs image {image}, which is not pinned by digest, so what runs can change without a "
         "deployment; use <repository>/<image>@sha256:<digest>.")
    ]


def test_no_model_armor_template(pack, baseline) -> None:
    plan = without(baseline, lambda r: r.type != "gcp:modelarmor/template:Template")
    assert violations(pack, plan) == [
        ("model-armor-guardrails", None,
         "the stack has no Model Armor template, so prompts and responses are not screened for prompt injection, "
         "jailbreaks or unsafe content; add one (agentstage: agent-platform:guardrails.model_armor: true).")
    ]
    found, _, _ = pack.analyze(plan)
    assert found[0].enforcement == "mandatory" and found[0].urn is None


def test_model_armor_template_without_jailbreak_filter(pack, baseline) -> None:
    plan = mutate(baseline, "gcp:modelarmor/template:Template", "guardrails-template",
                  lambda i: i["filterConfig"].pop("piAndJailbreakFilterSettings"))
    assert violations(pack, plan) == [
        ("model-armor-guardrails", "guardrails-template",
         "the Model Armor template lacks prompt-injection and jailbreak filtering "
         "(filter_config.pi_and_jailbreak_filter_settings.filter_enforcement = ENABLED); enable them.")
    ]


# --- identity ---------------------------------------------------------------------------

_FIX_SA = "create a service account for this agent alone and set it (agentstage: AgentIdentity does this)."


def test_cloud_run_without_service_account(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["template"].pop("serviceAccount"))
    assert violations(pack, plan) == [
        ("dedicated-service-account", "support-bot-service",
         f"template.service_account is not set, so the workload runs as the Compute Engine default service account; {_FIX_SA}")
    ]


@pytest.mark.parametrize(
    "account, kind",
    [(DEFAULT_COMPUTE, "Compute Engine default"), ("acme-agents-prod@appspot.gserviceaccount.com", "App Engine default")],
)
def test_cloud_run_as_default_account(pack, baseline, account, kind) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["template"].update(serviceAccount=account))
    assert violations(pack, plan) == [
        ("dedicated-service-account", "support-bot-service",
         f"template.service_account is {account}, the {kind} service account shared by the whole project; {_FIX_SA}")
    ]


def test_agent_engine_without_service_account(pack, baseline) -> None:
    plan = mutate(baseline, AGENT_ENGINE, "planner-engine", lambda i: i["spec"].pop("serviceAccount"))
    assert violations(pack, plan) == [
        ("dedicated-service-account", "planner-engine",
         "spec.service_account is not set, so the workload runs as the Vertex AI Reasoning Engine service agent "
         f"shared by every agent in the project; {_FIX_SA}")
    ]


def test_gke_node_pool_without_service_account(pack, baseline) -> None:
    plan = mutate(baseline, "gcp:container/nodePool:NodePool", "agents-pool", lambda i: i["nodeConfig"].pop("serviceAccount"))
    assert violations(pack, plan) == [
        ("dedicated-service-account", "agents-pool",
         f"node_config.service_account is not set, so the workload runs as the Compute Engine default service account; {_FIX_SA}")
    ]


def test_role_for_default_compute_account(pack, baseline) -> None:
    plan = mutate(baseline, PROJECT_MEMBER, "support-bot-role-logging-logWriter",
                  lambda i: i.update(member=f"serviceAccount:{DEFAULT_COMPUTE}"))
    assert violations(pack, plan) == [
        ("no-default-service-account-grants", "support-bot-role-logging-logWriter",
         f"grants roles/logging.logWriter to serviceAccount:{DEFAULT_COMPUTE}, the Compute Engine default service "
         "account, at project level: every workload that falls back to it inherits the role; grant the role to a "
         "dedicated service account instead.")
    ]


def test_owner_role_on_project(pack, baseline) -> None:
    plan = mutate(baseline, PROJECT_MEMBER, "support-bot-role-aiplatform-user", lambda i: i.update(role="roles/owner"))
    assert violations(pack, plan) == [
        ("no-basic-roles", "support-bot-role-aiplatform-user",
         f"grants the basic role roles/owner to {SA} at project level, which reaches every service in the project; "
         "grant the predefined roles the member needs (e.g. roles/aiplatform.user) instead.")
    ]


def test_editor_role_in_a_binding(pack, baseline) -> None:
    plan = mutate(baseline, "gcp:projects/iAMBinding:IAMBinding", "log-viewers", lambda i: i.update(role="roles/editor"))
    assert violations(pack, plan) == [
        ("no-basic-roles", "log-viewers",
         "grants the basic role roles/editor to group:support-eng@acme.com at project level, which reaches every "
         "service in the project; grant the predefined roles the member needs (e.g. roles/aiplatform.user) instead.")
    ]


def test_viewer_role_in_a_policy(pack, baseline) -> None:
    policy = json.dumps({"bindings": [{"role": "roles/viewer", "members": ["group:support-eng@acme.com"]}]})
    plan = mutate(baseline, "gcp:projects/iAMPolicy:IAMPolicy", "sandbox-policy", lambda i: i.update(policyData=policy))
    assert [v[:2] for v in violations(pack, plan)] == [("no-basic-roles", "sandbox-policy")]


@pytest.mark.parametrize("role", ["roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator"])
def test_impersonation_role_on_project(pack, baseline, role) -> None:
    plan = mutate(baseline, PROJECT_MEMBER, "support-bot-role-aiplatform-user", lambda i: i.update(role=role))
    assert violations(pack, plan) == [
        ("no-project-impersonation-roles", "support-bot-role-aiplatform-user",
         f"grants {role} to {SA} at project level, which lets it act as every service account in the project; grant "
         "the role on the one service account it needs to use instead.")
    ]


def test_admin_role_for_service_account(pack, baseline) -> None:
    plan = mutate(baseline, PROJECT_MEMBER, "support-bot-role-aiplatform-user", lambda i: i.update(role="roles/storage.admin"))
    assert violations(pack, plan) == [
        ("no-admin-roles-for-service-accounts", "support-bot-role-aiplatform-user",
         f"grants the admin role roles/storage.admin to {SA} on the project; a compromised agent could reconfigure "
         "or delete what it administers: grant a narrower role (e.g. a user, viewer or accessor role) instead.")
    ]


def test_service_account_key(pack, baseline) -> None:
    key = _extra("gcp:serviceaccount/key:Key", "support-bot-key",
                 {"serviceAccountId": "support-bot-production@acme-agents-prod.iam.gserviceaccount.com"})
    assert violations(pack, added(baseline, key)) == [
        ("no-service-account-keys", "support-bot-key",
         "creates a user-managed service account key for support-bot-production@acme-agents-prod.iam.gserviceaccount.com, "
         "a long-lived credential that can leak; remove it and let the workload use its attached service account "
         "(or Workload Identity Federation outside Google Cloud).")
    ]


def test_secret_accessor_on_project(pack, baseline) -> None:
    plan = mutate(baseline, PROJECT_MEMBER, "support-bot-role-aiplatform-user",
                  lambda i: i.update(role="roles/secretmanager.secretAccessor"))
    assert violations(pack, plan) == [
        ("secret-accessor-per-secret", "support-bot-role-aiplatform-user",
         f"grants roles/secretmanager.secretAccessor to {SA} at project level, which opens every secret in the "
         "project; grant it on each secret the agent reads (gcp.secretmanager.SecretIamMember) instead.")
    ]


def test_member_from_a_foreign_domain(pack, baseline) -> None:
    name = "support-bot-invoker-serviceaccount-frontend-at-acme-agents-prod-iam-gserviceaccount-com"
    plan = mutate(baseline, INVOKER, name, lambda i: i.update(member="user:eve@evil.example"))
    assert violations(pack, plan) == [
        ("allowed-member-domains", name,
         "grants roles/run.invoker on the Cloud Run service to user:eve@evil.example, whose domain evil.example is "
         "not allowed; grant it to a member of acme.com or add the domain to this policy's domains config.")
    ]


# --- reliability ------------------------------------------------------------------------


def test_no_max_instances(pack, baseline) -> None:
    """Not reachable from stack config (max_instances defaults to 10), so a mutated resource."""
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["template"]["scaling"].pop("maxInstanceCount"))
    assert violations(pack, plan) == [
        ("max-instances-capped", "support-bot-service",
         "template.scaling.max_instance_count is not set, so a traffic spike or a runaway agent loop scales it up "
         "to the regional quota; set a maximum of at most 100 instances (agentstage: agents.<name>.scaling.max_instances).")
    ]


def test_max_instances_above_cap(pack, baseline) -> None:
    plan = mutate(baseline, AGENT_ENGINE, "planner-engine", lambda i: i["spec"]["deploymentSpec"].update(maxInstances=250))
    assert violations(pack, plan) == [
        ("max-instances-capped", "planner-engine",
         "spec.deployment_spec.max_instances is 250, above the cap of 100; lower it, or raise this policy's "
         "maxInstances config if the load really needs it.")
    ]


def test_production_service_scales_to_zero(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["template"]["scaling"].update(minInstanceCount=0))
    assert violations(pack, plan) == [
        ("min-instances-production", "support-bot-service",
         "template.scaling.min_instance_count is 0: a production agent then cold-starts on its first request after "
         "idling; keep at least 1 instance(s) warm (agentstage: agents.<name>.scaling.min_instances).")
    ]


def test_staging_service_may_scale_to_zero(pack, baseline) -> None:
    def staging(i: dict[str, Any]) -> None:
        i["template"]["scaling"]["minInstanceCount"] = 0
        i["labels"]["environment"] = "staging"
        container(i).pop("livenessProbe")
        i["deletionProtection"] = False

    assert violations(pack, mutate(baseline, SERVICE, "support-bot-service", staging)) == []


@pytest.mark.parametrize(
    "probes, missing",
    [(["livenessProbe"], "no liveness probe; add HTTP liveness"),
     (["startupProbe", "livenessProbe"], "no startup and no liveness probe; add HTTP startup and liveness")],
)
def test_missing_health_probes(pack, baseline, probes, missing) -> None:
    plan = mutate(baseline, SERVICE, "research-agent-service", lambda i: [container(i).pop(p) for p in probes])
    assert violations(pack, plan) == [
        ("health-probes", "research-agent-service",
         f"container agent has {missing} probes on the agent's health path so Cloud Run routes traffic only to "
         "started instances and restarts stuck ones.")
    ]


def test_deletion_protection_off(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i.update(deletionProtection=False))
    assert violations(pack, plan) == [
        ("deletion-protection", "support-bot-service",
         "deletion_protection is false, so one mistaken `pulumi destroy` or replacement takes the production agent "
         "down; set deletion_protection to true (the provider default).")
    ]


def test_unset_deletion_protection_is_the_provider_default(pack, baseline) -> None:
    assert violations(pack, mutate(baseline, SERVICE, "support-bot-service", lambda i: i.pop("deletionProtection"))) == []


@pytest.mark.parametrize("alert, signal", [("support-bot-errors", "errors"), ("support-bot-latency", "latency")])
def test_agent_without_alert_policy(pack, baseline, alert, signal) -> None:
    plan = without(baseline, lambda r: not (r.type == ALERT and r.name == alert))
    assert violations(pack, plan) == [
        ("agent-alert-policies", "support-bot-service",
         f"the agent service support-bot has no alert policy with a notification channel on {signal}; add them so "
         "on-call hears about a slow or failing agent (agentstage: agent-platform:alerts).")
    ]


def test_alert_policy_without_notification_channel(pack, baseline) -> None:
    plan = mutate(baseline, ALERT, "research-agent-latency", lambda i: i.pop("notificationChannels"))
    assert violations(pack, plan) == [
        ("agent-alert-policies", "research-agent-service",
         "the agent service research-agent has no alert policy with a notification channel on latency; add them so "
         "on-call hears about a slow or failing agent (agentstage: agent-platform:alerts)."),
        ("alert-policy-actionable", "research-agent-latency",
         "[production] research-agent: p99 latency above 2000 ms has no notification channel, so its incidents open "
         "in the console and nobody is told; add one (agentstage: agent-platform:alerts.notification_emails, pubsub_topics or webhooks)."),
    ]


# --- cost -------------------------------------------------------------------------------


def test_no_billing_budget(pack, baseline) -> None:
    plan = without(baseline, lambda r: r.type != "gcp:billing/budget:Budget")
    assert violations(pack, plan) == [
        ("billing-budget", None,
         "the stack has no billing budget, so nobody is warned before agent traffic or a runaway loop runs up the "
         "bill; add one with threshold rules (agentstage: agent-platform:budget).")
    ]


def test_budget_without_thresholds(pack, baseline) -> None:
    plan = mutate(baseline, "gcp:billing/budget:Budget", "budget-budget", lambda i: i.pop("thresholdRules"))
    assert violations(pack, plan) == [
        ("billing-budget", "budget-budget",
         "the billing budget has no threshold rules, so it never alerts; add threshold_rules (e.g. 0.5, 0.9, 1.0)."),
        ("budget-actual-threshold", "budget-budget",
         "the billing budget never warns before the money is spent: it has no actual-spend threshold; add a "
         "threshold rule on actual spend at or below 100% (agentstage: agent-platform:budget.thresholds, e.g. "
         "[0.5, 0.9, 1.0])."),
    ]


def test_cpu_above_cap(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: container(i)["resources"]["limits"].update(cpu="8"))
    assert violations(pack, plan) == [
        ("instance-size-capped", "support-bot-service",
         "container agent asks for 8 CPU per instance, above the cap of 4; lower it (agentstage: "
         "agents.<name>.resources.cpu) or raise this policy's maxCpu config.")
    ]


def test_memory_above_cap(pack, baseline) -> None:
    plan = mutate(baseline, AGENT_ENGINE, "planner-engine",
                  lambda i: i["spec"]["deploymentSpec"]["resourceLimits"].update(memory="16Gi"))
    assert violations(pack, plan) == [
        ("instance-size-capped", "planner-engine",
         "the deployment spec asks for 16Gi of memory per instance, above the cap of 8192Mi; lower it (agentstage: "
         "agents.<name>.resources.memory) or raise this policy's maxMemoryMiB config.")
    ]


# --- release ----------------------------------------------------------------------------


def test_cloud_run_split_not_100(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["traffics"][0].update(percent=90))
    assert violations(pack, plan) == [
        ("traffic-split-sums-to-100", "support-bot-service",
         "traffics sends 90 + 5 = 95% of traffic; make the percentages add up to exactly 100.")
    ]


def test_agent_engine_split_not_100(pack, baseline) -> None:
    plan = mutate(baseline, AGENT_ENGINE, "planner-engine",
                  lambda i: i["trafficConfig"]["trafficSplitManual"]["targets"][1].update(percent=20))
    assert violations(pack, plan) == [
        ("traffic-split-sums-to-100", "planner-engine",
         "traffic_config.traffic_split_manual.targets sends 90 + 20 = 110% of traffic; make the percentages add up "
         "to exactly 100.")
    ]


def test_vertex_endpoint_split_not_100(pack, baseline) -> None:
    plan = mutate(baseline, "gcp:vertex/aiEndpoint:AiEndpoint", "ranker-endpoint",
                  lambda i: i.update(trafficSplit=json.dumps({"1111": 95})))
    assert violations(pack, plan) == [
        ("traffic-split-sums-to-100", "ranker-endpoint",
         "traffic_split sends 95 = 95% of traffic; make the percentages add up to exactly 100.")
    ]


def test_latest_alongside_pinned_revision(pack, baseline) -> None:
    def latest(i: dict[str, Any]) -> None:
        i["traffics"][0] = {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 95}

    assert violations(pack, mutate(baseline, SERVICE, "support-bot-service", latest)) == [
        ("canary-named-revisions", "support-bot-service",
         "traffic goes to LATEST (95%) alongside the pinned revision support-bot-1-4-0 (5%): LATEST moves with every "
         "template change, so the split shifts under the canary; route every target to a named revision "
         "(type TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION).")
    ]


def test_revision_target_without_revision(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["traffics"][1].pop("revision"))
    assert violations(pack, plan) == [
        ("canary-named-revisions", "support-bot-service",
         "a revision traffic target (5%) names no revision; set its revision to the release's revision name "
         "(<service>-<version>).")
    ]


def test_agent_resource_without_release_label(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "research-agent-service", lambda i: i["labels"].pop("release"))
    assert violations(pack, plan) == [
        ("required-labels", "research-agent-service",
         "an agent's resource without the label(s) release; add them so cost, alerts and audits can tell which "
         "environment and release it belongs to (agentstage components set them on every labelable resource).")
    ]


def test_shared_resource_without_environment_label(pack, baseline) -> None:
    plan = mutate(baseline, "gcp:pubsub/topic:Topic", "budget-topic", lambda i: i["labels"].pop("environment"))
    assert violations(pack, plan) == [
        ("required-labels", "budget-topic",
         "an environment-wide resource without the label(s) environment; add them so cost, alerts and audits can "
         "tell which environment and release it belongs to (agentstage components set them on every labelable "
         "resource).")
    ]


# --- protocol details -------------------------------------------------------------------


def test_unknown_value_is_reported_as_the_cli_does_during_preview(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["template"].update(serviceAccount="[unknown]"))
    found, _, _ = pack.analyze(plan)
    assert [(v.policy, v.enforcement, v.message) for v in found] == [
        ("dedicated-service-account", "advisory",
         "can't run policy 'dedicated-service-account' from policy pack 'agent_guard@v0.0.1' during preview: "
         "string value at .template.serviceAccount can't be known during preview")
    ]


def test_analyze_sees_options_and_default_provider(pack, baseline) -> None:
    found, count, _ = pack.analyze(baseline)
    # every plan resource plus the default gcp provider the CLI registers
    assert count == len(baseline.resources) + 1 and found == []
