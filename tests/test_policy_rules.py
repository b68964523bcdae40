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
from conftest import ROOT

from agentstage.engine import Plan, PlannedResource, load_project, load_stack_config, run_plan
from agentstage.policy import PACK_DIR, PolicyPackProcess, load_policy_config

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
                "trafficSplitManual": {
                    "targets": [
                        {"runtimeRevisionName": "r1", "percent": 90},
                        {"runtimeRevisionName": "r2", "percent": 10},
                    ]
                }
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
        {
            "displayName": "ranker",
            "location": "us-central1",
            "labels": {**LABELS, "agent": "ranker"},
            "trafficSplit": json.dumps({"1111": 95, "2222": 5}),
            "privateServiceConnectConfig": {"enablePrivateServiceConnect": True},
        },
    ),
    _extra(
        "gcp:projects/iAMBinding:IAMBinding",
        "log-viewers",
        {"project": "acme-agents-prod", "role": "roles/logging.viewer", "members": ["group:support-eng@acme.com"]},
    ),
    _extra(
        "gcp:projects/iAMPolicy:IAMPolicy",
        "sandbox-policy",
        {
            "project": "acme-agents-sandbox",
            "policyData": json.dumps(
                {"bindings": [{"role": "roles/aiplatform.user", "members": ["group:support-eng@acme.com"]}]}
            ),
        },
    ),
]


# --- fixtures ---------------------------------------------------------------------------


#: The extra agents' runtimes and the metrics their alerts read (components/monitoring.py).
_RUNTIME_ALERTS = {
    "planner": (
        "reasoning_engine/request_latencies",
        "reasoning_engine/request_count",
        "aiplatform.googleapis.com/ReasoningEngine",
    ),
    "ranker": (
        "prediction/online/prediction_latencies",
        "prediction/online/response_count",
        "aiplatform.googleapis.com/Endpoint",
    ),
}


def _runtime_alerts(plan: Plan) -> list[PlannedResource]:
    """Alert policies for the extra Agent Engine and endpoint agents: the reference stack's
    support-bot policies, relabelled and pointed at each runtime's own metrics."""
    out = []
    for agent, (latency, requests, resource) in _RUNTIME_ALERTS.items():
        for kind, metric in (("latency", latency), ("errors", requests)):
            source = plan.find(ALERT, f"support-bot-{kind}")
            inputs = json.loads(json.dumps(source.inputs).replace("support-bot", agent))
            inputs.setdefault("userLabels", {})["agent"] = agent
            condition = inputs["conditions"][0]
            condition["displayName"] = f"{agent} {kind} of {metric}"
            condition["conditionThreshold"]["filter"] = (
                f'metric.type = "aiplatform.googleapis.com/{metric}" AND resource.type = "{resource}"'
                + (' AND metric.label."response_code" = starts_with("5")' if kind == "errors" else "")
            )
            inputs["conditions"] = [condition]
            out.append(_extra(ALERT, f"{agent}-{kind}", inputs))
    return out


@pytest.fixture(scope="module")
def baseline() -> Plan:
    plan = run_plan(ROOT, STACK)
    plan.resources.extend(copy.deepcopy(EXTRAS))
    plan.resources.extend(_runtime_alerts(plan))
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
        (
            "no-public-invoker",
            name,
            f"grants roles/run.invoker to {member} on the Cloud Run service, so {who} can call it; remove the public "
            "member and grant the role to the calling service account or group.",
        )
    ]


def test_public_member_on_agent_engine(pack, baseline) -> None:
    plan = mutate(
        baseline,
        "gcp:vertex/aiReasoningEngineIamMember:AiReasoningEngineIamMember",
        "planner-engine-user",
        lambda i: i.update(member="allUsers"),
    )
    assert violations(pack, plan) == [
        (
            "no-public-invoker",
            "planner-engine-user",
            "grants roles/aiplatform.user to allUsers on the Vertex AI resource, so anyone on the internet can call it; "
            "remove the public member and grant the role to the calling service account or group.",
        )
    ]


def test_ingress_all(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i.update(ingress="INGRESS_TRAFFIC_ALL"))
    assert violations(pack, plan) == [
        (
            "cloud-run-ingress-restricted",
            "support-bot-service",
            "ingress is INGRESS_TRAFFIC_ALL: the service accepts requests from the whole internet; set ingress to "
            "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (behind a load balancer) or INGRESS_TRAFFIC_INTERNAL_ONLY, or list "
            "the service in this policy's allowAllTraffic config.",
        )
    ]


def test_missing_ingress_means_the_provider_default_all(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i.pop("ingress"))
    assert violations(pack, plan) == [
        (
            "cloud-run-ingress-restricted",
            "support-bot-service",
            "ingress is not set, so the provider default INGRESS_TRAFFIC_ALL applies: the service accepts requests from "
            "the whole internet; set ingress to INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (behind a load balancer) or "
            "INGRESS_TRAFFIC_INTERNAL_ONLY, or list the service in this policy's allowAllTraffic config.",
        )
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
        (
            "invoker-iam-enabled",
            "research-agent-service",
            "invokerIamDisabled is true: Cloud Run skips the invoker IAM check and anyone who can reach the service can "
            "call it; set invoker_iam_disabled to false and grant roles/run.invoker to the callers.",
        )
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
    plan = mutate(
        baseline, SERVICE, "support-bot-service", lambda i: container(i)["envs"].append({"name": name, "value": value})
    )
    assert violations(pack, plan) == [
        (
            "secrets-in-secret-manager",
            "support-bot-service",
            f"{name} is a plain environment variable of container agent that looks like a credential: {reason}; store "
            "the value in Secret Manager and reference it with a secret reference (agentstage: move it from env to "
            "secrets).",
        )
    ]


def test_credential_in_agent_engine_env(pack, baseline) -> None:
    plan = mutate(
        baseline,
        AGENT_ENGINE,
        "planner-engine",
        lambda i: i["spec"]["deploymentSpec"]["envs"].append({"name": "CRM_TOKEN", "value": "t0k3n"}),
    )
    assert violations(pack, plan) == [
        (
            "secrets-in-secret-manager",
            "planner-engine",
            "CRM_TOKEN is a plain environment variable of the deployment spec that looks like a credential: its name "
            "ends in _TOKEN; store the value in Secret Manager and reference it with a secret reference (agentstage: "
            "move it from env to secrets).",
        )
    ]


def test_secret_reference_is_not_a_plain_credential(pack, baseline) -> None:
    # The baseline already references CRM_TOKEN from Secret Manager; a second reference stays compliant.
    plan = mutate(
        baseline,
        SERVICE,
        "support-bot-service",
        lambda i: container(i)["envs"].append(
            {"name": "OTHER_TOKEN", "valueSource": {"secretKeyRef": {"secret": "other", "version": "1"}}}
        ),
    )
    assert violations(pack, plan) == []


def test_image_not_pinned_by_digest(pack, baseline) -> None:
    image = "us-docker.pkg.dev/acme-agents/agents/support-bot:1.4.0"
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: container(i).update(image=image))
    assert violations(pack, plan) == [
        (
            "image-pinned-by-digest",
            "support-bot-service",
            f"container agent runs image {image}, which is not pinned by digest, so what runs can change without a "
            "deployment; use <repository>/<image>@sha256:<digest>.",
        )
    ]


def test_no_model_armor_template(pack, baseline) -> None:
    plan = without(baseline, lambda r: r.type != "gcp:modelarmor/template:Template")
    assert violations(pack, plan) == [
        (
            "model-armor-guardrails",
            None,
            "the stack has no Model Armor template, so prompts and responses are not screened for prompt injection, "
            "jailbreaks or unsafe content; add one (agentstage: agent-platform:guardrails.model_armor: true).",
        )
    ]
    found, _, _ = pack.analyze(plan)
    assert found[0].enforcement == "mandatory" and found[0].urn is None


def test_model_armor_template_without_jailbreak_filter(pack, baseline) -> None:
    plan = mutate(
        baseline,
        "gcp:modelarmor/template:Template",
        "guardrails-template",
        lambda i: i["filterConfig"].pop("piAndJailbreakFilterSettings"),
    )
    assert violations(pack, plan) == [
        (
            "model-armor-guardrails",
            "guardrails-template",
            "the Model Armor template lacks prompt-injection and jailbreak filtering "
            "(filter_config.pi_and_jailbreak_filter_settings.filter_enforcement = ENABLED); enable them.",
        )
    ]


# --- identity ---------------------------------------------------------------------------

_FIX_SA = "create a service account for this agent alone and set it (agentstage: AgentIdentity does this)."


def test_cloud_run_without_service_account(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["template"].pop("serviceAccount"))
    assert violations(pack, plan) == [
        (
            "dedicated-service-account",
            "support-bot-service",
            f"template.service_account is not set, so the workload runs as the Compute Engine default service account; {_FIX_SA}",
        )
    ]


@pytest.mark.parametrize(
    "account, kind",
    [
        (DEFAULT_COMPUTE, "Compute Engine default"),
        ("acme-agents-prod@appspot.gserviceaccount.com", "App Engine default"),
    ],
)
def test_cloud_run_as_default_account(pack, baseline, account, kind) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["template"].update(serviceAccount=account))
    assert violations(pack, plan) == [
        (
            "dedicated-service-account",
            "support-bot-service",
            f"template.service_account is {account}, the {kind} service account shared by the whole project; {_FIX_SA}",
        )
    ]


def test_agent_engine_without_service_account(pack, baseline) -> None:
    plan = mutate(baseline, AGENT_ENGINE, "planner-engine", lambda i: i["spec"].pop("serviceAccount"))
    assert violations(pack, plan) == [
        (
            "dedicated-service-account",
            "planner-engine",
            "spec.service_account is not set, so the workload runs as the Vertex AI Reasoning Engine service agent "
            f"shared by every agent in the project; {_FIX_SA}",
        )
    ]


def test_gke_node_pool_without_service_account(pack, baseline) -> None:
    plan = mutate(
        baseline, "gcp:container/nodePool:NodePool", "agents-pool", lambda i: i["nodeConfig"].pop("serviceAccount")
    )
    assert violations(pack, plan) == [
        (
            "dedicated-service-account",
            "agents-pool",
            f"node_config.service_account is not set, so the workload runs as the Compute Engine default service account; {_FIX_SA}",
        )
    ]


def test_role_for_default_compute_account(pack, baseline) -> None:
    plan = mutate(
        baseline,
        PROJECT_MEMBER,
        "support-bot-role-logging-logWriter",
        lambda i: i.update(member=f"serviceAccount:{DEFAULT_COMPUTE}"),
    )
    assert violations(pack, plan) == [
        (
            "no-default-service-account-grants",
            "support-bot-role-logging-logWriter",
            f"grants roles/logging.logWriter to serviceAccount:{DEFAULT_COMPUTE}, the Compute Engine default service "
            "account, at project level: every workload that falls back to it inherits the role; grant the role to a "
            "dedicated service account instead.",
        )
    ]


def test_owner_role_on_project(pack, baseline) -> None:
    plan = mutate(baseline, PROJECT_MEMBER, "support-bot-role-aiplatform-user", lambda i: i.update(role="roles/owner"))
    assert violations(pack, plan) == [
        (
            "no-basic-roles",
            "support-bot-role-aiplatform-user",
            f"grants the basic role roles/owner to {SA} at project level, which reaches every service in the project; "
            "grant the predefined roles the member needs (e.g. roles/aiplatform.user) instead.",
        )
    ]


def test_editor_role_in_a_binding(pack, baseline) -> None:
    plan = mutate(
        baseline, "gcp:projects/iAMBinding:IAMBinding", "log-viewers", lambda i: i.update(role="roles/editor")
    )
    assert violations(pack, plan) == [
        (
            "no-basic-roles",
            "log-viewers",
            "grants the basic role roles/editor to group:support-eng@acme.com at project level, which reaches every "
            "service in the project; grant the predefined roles the member needs (e.g. roles/aiplatform.user) instead.",
        )
    ]


def test_viewer_role_in_a_policy(pack, baseline) -> None:
    policy = json.dumps({"bindings": [{"role": "roles/viewer", "members": ["group:support-eng@acme.com"]}]})
    plan = mutate(baseline, "gcp:projects/iAMPolicy:IAMPolicy", "sandbox-policy", lambda i: i.update(policyData=policy))
    assert [v[:2] for v in violations(pack, plan)] == [("no-basic-roles", "sandbox-policy")]


@pytest.mark.parametrize("role", ["roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator"])
def test_impersonation_role_on_project(pack, baseline, role) -> None:
    plan = mutate(baseline, PROJECT_MEMBER, "support-bot-role-aiplatform-user", lambda i: i.update(role=role))
    assert violations(pack, plan) == [
        (
            "no-project-impersonation-roles",
            "support-bot-role-aiplatform-user",
            f"grants {role} to {SA} at project level, which lets it act as every service account in the project; grant "
            "the role on the one service account it needs to use instead.",
        )
    ]


def test_admin_role_for_service_account(pack, baseline) -> None:
    plan = mutate(
        baseline, PROJECT_MEMBER, "support-bot-role-aiplatform-user", lambda i: i.update(role="roles/storage.admin")
    )
    assert violations(pack, plan) == [
        (
            "no-admin-roles-for-service-accounts",
            "support-bot-role-aiplatform-user",
            f"grants the admin role roles/storage.admin to {SA} on the project; a compromised agent could reconfigure "
            "or delete what it administers: grant a narrower role (e.g. a user, viewer or accessor role) instead.",
        )
    ]


def test_service_account_key(pack, baseline) -> None:
    key = _extra(
        "gcp:serviceaccount/key:Key",
        "support-bot-key",
        {"serviceAccountId": "support-bot-production@acme-agents-prod.iam.gserviceaccount.com"},
    )
    assert violations(pack, added(baseline, key)) == [
        (
            "no-service-account-keys",
            "support-bot-key",
            "creates a user-managed service account key for support-bot-production@acme-agents-prod.iam.gserviceaccount.com, "
            "a long-lived credential that can leak; remove it and let the workload use its attached service account "
            "(or Workload Identity Federation outside Google Cloud).",
        )
    ]


def test_secret_accessor_on_project(pack, baseline) -> None:
    plan = mutate(
        baseline,
        PROJECT_MEMBER,
        "support-bot-role-aiplatform-user",
        lambda i: i.update(role="roles/secretmanager.secretAccessor"),
    )
    assert violations(pack, plan) == [
        (
            "secret-accessor-per-secret",
            "support-bot-role-aiplatform-user",
            f"grants roles/secretmanager.secretAccessor to {SA} at project level, which opens every secret in the "
            "project; grant it on each secret the agent reads (gcp.secretmanager.SecretIamMember) instead.",
        )
    ]


def test_member_from_a_foreign_domain(pack, baseline) -> None:
    name = "support-bot-invoker-serviceaccount-frontend-at-acme-agents-prod-iam-gserviceaccount-com"
    plan = mutate(baseline, INVOKER, name, lambda i: i.update(member="user:eve@evil.example"))
    assert violations(pack, plan) == [
        (
            "allowed-member-domains",
            name,
            "grants roles/run.invoker on the Cloud Run service to user:eve@evil.example, whose domain evil.example is "
            "not allowed; grant it to a member of acme.com or add the domain to this policy's domains config.",
        )
    ]


# --- reliability ------------------------------------------------------------------------


def test_no_max_instances(pack, baseline) -> None:
    """Not reachable from stack config (max_instances defaults to 10), so a mutated resource."""

    def unbounded(i: dict[str, Any]) -> None:
        i["template"]["scaling"].pop("maxInstanceCount")
        i["scaling"].pop("maxInstanceCount")  # the service-level cap too

    plan = mutate(baseline, SERVICE, "support-bot-service", unbounded)
    assert violations(pack, plan) == [
        (
            "max-instances-capped",
            "support-bot-service",
            "template.scaling.max_instance_count is not set, so a traffic spike or a runaway agent loop scales it up "
            "to the regional quota; set a maximum of at most 100 instances (agentstage: agents.<name>.scaling.max_instances).",
        )
    ]


def test_max_instances_above_cap(pack, baseline) -> None:
    plan = mutate(
        baseline, AGENT_ENGINE, "planner-engine", lambda i: i["spec"]["deploymentSpec"].update(maxInstances=250)
    )
    assert violations(pack, plan) == [
        (
            "max-instances-capped",
            "planner-engine",
            "spec.deployment_spec.max_instances is 250, above the cap of 100; lower it, or raise this policy's "
            "maxInstances config if the load really needs it.",
        )
    ]


def test_production_service_scales_to_zero(pack, baseline) -> None:
    plan = mutate(
        baseline, SERVICE, "support-bot-service", lambda i: i["template"]["scaling"].update(minInstanceCount=0)
    )
    assert violations(pack, plan) == [
        (
            "min-instances-production",
            "support-bot-service",
            "template.scaling.min_instance_count is 0: a production agent then cold-starts on its first request after "
            "idling; keep at least 1 instance(s) warm (agentstage: agents.<name>.scaling.min_instances).",
        )
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
    [
        (["livenessProbe"], "no liveness probe; add HTTP liveness"),
        (["startupProbe", "livenessProbe"], "no startup and no liveness probe; add HTTP startup and liveness"),
    ],
)
def test_missing_health_probes(pack, baseline, probes, missing) -> None:
    plan = mutate(baseline, SERVICE, "research-agent-service", lambda i: [container(i).pop(p) for p in probes])
    assert violations(pack, plan) == [
        (
            "health-probes",
            "research-agent-service",
            f"container agent has {missing} probes on the agent's health path so Cloud Run routes traffic only to "
            "started instances and restarts stuck ones.",
        )
    ]


def test_deletion_protection_off(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i.update(deletionProtection=False))
    assert violations(pack, plan) == [
        (
            "deletion-protection",
            "support-bot-service",
            "deletion_protection is false, so one mistaken `pulumi destroy` or replacement takes the production agent "
            "down; set deletion_protection to true (the provider default).",
        )
    ]


def test_unset_deletion_protection_is_the_provider_default(pack, baseline) -> None:
    assert (
        violations(pack, mutate(baseline, SERVICE, "support-bot-service", lambda i: i.pop("deletionProtection"))) == []
    )


@pytest.mark.parametrize("alert, signal", [("support-bot-errors", "errors"), ("support-bot-latency", "latency")])
def test_agent_without_alert_policy(pack, baseline, alert, signal) -> None:
    plan = without(baseline, lambda r: not (r.type == ALERT and r.name == alert))
    assert violations(pack, plan) == [
        (
            "agent-alert-policies",
            "support-bot-service",
            f"the agent service support-bot has no alert policy with a notification channel on {signal}; add them so "
            "on-call hears about a slow or failing agent (agentstage: agent-platform:alerts).",
        )
    ]


def test_alert_policy_without_notification_channel(pack, baseline) -> None:
    plan = mutate(baseline, ALERT, "research-agent-latency", lambda i: i.pop("notificationChannels"))
    assert violations(pack, plan) == [
        (
            "agent-alert-policies",
            "research-agent-service",
            "the agent service research-agent has no alert policy with a notification channel on latency; add them so "
            "on-call hears about a slow or failing agent (agentstage: agent-platform:alerts).",
        ),
        (
            "alert-policy-actionable",
            "research-agent-latency",
            "[production] research-agent: p99 latency above 2000 ms has no notification channel, so its incidents open "
            "in the console and nobody is told; add one (agentstage: agent-platform:alerts.notification_emails, pubsub_topics or webhooks).",
        ),
    ]


# --- cost -------------------------------------------------------------------------------


def test_no_billing_budget(pack, baseline) -> None:
    plan = without(baseline, lambda r: r.type != "gcp:billing/budget:Budget")
    assert violations(pack, plan) == [
        (
            "billing-budget",
            None,
            "the stack has no billing budget, so nobody is warned before agent traffic or a runaway loop runs up the "
            "bill; add one with threshold rules (agentstage: agent-platform:budget).",
        )
    ]


def test_budget_without_thresholds(pack, baseline) -> None:
    plan = mutate(baseline, "gcp:billing/budget:Budget", "budget-budget", lambda i: i.pop("thresholdRules"))
    assert violations(pack, plan) == [
        (
            "billing-budget",
            "budget-budget",
            "the billing budget has no threshold rules, so it never alerts; add threshold_rules (e.g. 0.5, 0.9, 1.0).",
        ),
        (
            "budget-actual-threshold",
            "budget-budget",
            "the billing budget never warns before the money is spent: it has no actual-spend threshold; add a "
            "threshold rule on actual spend at or below 100% (agentstage: agent-platform:budget.thresholds, e.g. "
            "[0.5, 0.9, 1.0]).",
        ),
    ]


def test_cpu_above_cap(pack, baseline) -> None:
    plan = mutate(
        baseline, SERVICE, "support-bot-service", lambda i: container(i)["resources"]["limits"].update(cpu="8")
    )
    assert violations(pack, plan) == [
        (
            "instance-size-capped",
            "support-bot-service",
            "container agent asks for 8 CPU per instance, above the cap of 4; lower it (agentstage: "
            "agents.<name>.resources.cpu) or raise this policy's maxCpu config.",
        )
    ]


def test_memory_above_cap(pack, baseline) -> None:
    plan = mutate(
        baseline,
        AGENT_ENGINE,
        "planner-engine",
        lambda i: i["spec"]["deploymentSpec"]["resourceLimits"].update(memory="16Gi"),
    )
    assert violations(pack, plan) == [
        (
            "instance-size-capped",
            "planner-engine",
            "the deployment spec asks for 16Gi of memory per instance, above the cap of 8192Mi; lower it (agentstage: "
            "agents.<name>.resources.memory) or raise this policy's maxMemoryMiB config.",
        )
    ]


# --- release ----------------------------------------------------------------------------


def test_cloud_run_split_not_100(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["traffics"][0].update(percent=90))
    assert violations(pack, plan) == [
        (
            "traffic-split-sums-to-100",
            "support-bot-service",
            "traffics sends 90 + 5 = 95% of traffic; make the percentages add up to exactly 100.",
        )
    ]


def test_agent_engine_split_not_100(pack, baseline) -> None:
    plan = mutate(
        baseline,
        AGENT_ENGINE,
        "planner-engine",
        lambda i: i["trafficConfig"]["trafficSplitManual"]["targets"][1].update(percent=20),
    )
    assert violations(pack, plan) == [
        (
            "traffic-split-sums-to-100",
            "planner-engine",
            "traffic_config.traffic_split_manual.targets sends 90 + 20 = 110% of traffic; make the percentages add up "
            "to exactly 100.",
        )
    ]


def test_vertex_endpoint_split_not_100(pack, baseline) -> None:
    plan = mutate(
        baseline,
        "gcp:vertex/aiEndpoint:AiEndpoint",
        "ranker-endpoint",
        lambda i: i.update(trafficSplit=json.dumps({"1111": 95})),
    )
    assert violations(pack, plan) == [
        (
            "traffic-split-sums-to-100",
            "ranker-endpoint",
            "traffic_split sends 95 = 95% of traffic; make the percentages add up to exactly 100.",
        )
    ]


def test_latest_alongside_pinned_revision(pack, baseline) -> None:
    def latest(i: dict[str, Any]) -> None:
        i["traffics"][0] = {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 95}

    candidate = baseline.find(SERVICE, "support-bot-service").inputs["template"]["revision"]
    assert violations(pack, mutate(baseline, SERVICE, "support-bot-service", latest)) == [
        (
            "canary-named-revisions",
            "support-bot-service",
            f"traffic goes to LATEST (95%) alongside the pinned revision {candidate} (5%): LATEST moves with every "
            "template change, so the split shifts under the canary; route every target to a named revision "
            "(type TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION).",
        )
    ]


def test_revision_target_without_revision(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["traffics"][1].pop("revision"))
    assert violations(pack, plan) == [
        (
            "canary-named-revisions",
            "support-bot-service",
            "a revision traffic target (5%) names no revision; set its revision to the release's revision name "
            "(agentstage: <service>-<version>-<template digest>).",
        )
    ]


def test_agent_resource_without_release_label(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "research-agent-service", lambda i: i["labels"].pop("release"))
    assert violations(pack, plan) == [
        (
            "required-labels",
            "research-agent-service",
            "an agent's resource without the label(s) release; add them so cost, alerts and audits can tell which "
            "environment and release it belongs to (agentstage components set them on every labelable resource).",
        )
    ]


def test_shared_resource_without_environment_label(pack, baseline) -> None:
    plan = mutate(baseline, "gcp:pubsub/topic:Topic", "budget-topic", lambda i: i["labels"].pop("environment"))
    assert violations(pack, plan) == [
        (
            "required-labels",
            "budget-topic",
            "an environment-wide resource without the label(s) environment; add them so cost, alerts and audits can "
            "tell which environment and release it belongs to (agentstage components set them on every labelable "
            "resource).",
        )
    ]


# --- unknown values (a first preview of a new stack) -----------------------------------------
#
# During a preview, an input computed from an output of a resource being created is unknown.
# No rule may stop judging because of one: each judges with what is known where that decides,
# and otherwise reports that it cannot judge, naming the field. "[unknown]" in a plan reaches
# the pack as the unknown sentinel, as the Pulumi CLI sends it.

UNKNOWN = "[unknown]"
_MAKE_KNOWN = "compute it from inputs (stack config, names, ids) so that it is known at plan time"
_KNOWN_MEMBER = (
    "compute the member from inputs so that it is known at plan time (a service account's email is "
    "<account_id>@<project>.iam.gserviceaccount.com)"
)
_KNOWN_CHANNELS = (
    "pass the notification channels as a list with one element per channel (e.g. the names of the "
    "channel resources), so its length is known at plan time even while the names are not"
)
_CREATED = "unknown during this preview (computed from an output of a resource this update creates or changes)"


def not_judged(question: str, fields: str, fix: str = _MAKE_KNOWN, are: bool = False) -> str:
    return f"cannot judge {question}: {fields} {'are' if are else 'is'} {_CREATED}; {fix}."


def env_index(plan: Plan, name: str) -> int:
    envs = container(plan.find(SERVICE, "support-bot-service").inputs)["envs"]
    return [e["name"] for e in envs].index(name)


def set_env(name: str, **values: Any) -> Callable[[dict[str, Any]], None]:
    def change(inputs: dict[str, Any]) -> None:
        next(e for e in container(inputs)["envs"] if e["name"] == name).update(values)

    return change


@pytest.mark.parametrize(
    "type_, name, change",
    [
        (SERVICE, "support-bot-service", lambda i: i["template"].update(serviceAccount=UNKNOWN)),
        (AGENT_ENGINE, "planner-engine", lambda i: i["spec"].update(serviceAccount=UNKNOWN)),
        ("gcp:container/nodePool:NodePool", "agents-pool", lambda i: i["nodeConfig"].update(serviceAccount=UNKNOWN)),
    ],
    ids=["cloud-run", "agent-engine", "gke-node-pool"],
)
def test_unknown_service_account_is_one_this_update_creates(pack, baseline, type_, name, change) -> None:
    """Not a Google-managed default account: those exist before the stack, their emails are known."""
    assert violations(pack, mutate(baseline, type_, name, change)) == []


def test_unknown_member_domain_is_not_judged(pack, baseline) -> None:
    plan = mutate(baseline, PROJECT_MEMBER, "support-bot-role-aiplatform-user", lambda i: i.update(member=UNKNOWN))
    assert violations(pack, plan) == [
        (
            "allowed-member-domains",
            "support-bot-role-aiplatform-user",
            not_judged(
                "whether the member granted roles/aiplatform.user on the project is from an allowed domain",
                "member",
                _KNOWN_MEMBER,
            ),
        )
    ]


def test_basic_role_to_an_unknown_member_is_a_violation(pack, baseline) -> None:
    plan = mutate(
        baseline,
        PROJECT_MEMBER,
        "support-bot-role-aiplatform-user",
        lambda i: i.update(member=UNKNOWN, role="roles/owner"),
    )
    assert violations(pack, plan) == [
        (
            "no-basic-roles",
            "support-bot-role-aiplatform-user",
            "grants the basic role roles/owner to a member unknown during this preview at project level, which reaches "
            "every service in the project; grant the predefined roles the member needs (e.g. roles/aiplatform.user) "
            "instead.",
        ),
        (
            "allowed-member-domains",
            "support-bot-role-aiplatform-user",
            not_judged(
                "whether the member granted roles/owner on the project is from an allowed domain",
                "member",
                _KNOWN_MEMBER,
            ),
        ),
    ]


def test_unknown_role_is_a_custom_role_but_may_be_an_admin_one(pack, baseline) -> None:
    """Not basic, not an impersonation role, not secretAccessor (fixed names, known at plan
    time); whether a custom role is an admin role depends on its unknown name."""
    plan = mutate(baseline, PROJECT_MEMBER, "support-bot-role-aiplatform-user", lambda i: i.update(role=UNKNOWN))
    assert violations(pack, plan) == [
        (
            "no-admin-roles-for-service-accounts",
            "support-bot-role-aiplatform-user",
            not_judged(
                f"whether the role granted to {SA} on the project is an admin role",
                "role",
                "compute the role from inputs so that it is known at plan time (a custom role is "
                "projects/<project>/roles/<role_id>)",
            ),
        )
    ]


@pytest.mark.parametrize(
    "type_, name, field, change",
    [
        ("gcp:projects/iAMBinding:IAMBinding", "log-viewers", "members", lambda i: i.update(members=UNKNOWN)),
        ("gcp:projects/iAMPolicy:IAMPolicy", "sandbox-policy", "policy_data", lambda i: i.update(policyData=UNKNOWN)),
    ],
    ids=["binding-members", "policy-data"],
)
def test_unknown_grants_are_not_judged_by_any_iam_rule(pack, baseline, type_, name, field, change) -> None:
    questions = [
        ("no-basic-roles", "whether a basic role is granted at project level"),
        ("allowed-member-domains", "whether the members granted roles on the project are from allowed domains"),
        ("no-admin-roles-for-service-accounts", "whether a service account gets an admin role on the project"),
        ("no-default-service-account-grants", "whether a default service account gets a role at project level"),
        ("no-project-impersonation-roles", "whether an impersonation role is granted at project level"),
        ("parameter-reader-own-parameter", "whether a Parameter Manager read role is granted at project level"),
        ("secret-accessor-per-secret", "whether roles/secretmanager.secretAccessor is granted at project level"),
    ]
    assert violations(pack, mutate(baseline, type_, name, change)) == [
        (policy, name, not_judged(question, field, _KNOWN_MEMBER)) for policy, question in questions
    ]


def test_binding_with_one_unknown_member(pack, baseline) -> None:
    plan = mutate(baseline, "gcp:projects/iAMBinding:IAMBinding", "log-viewers", lambda i: i["members"].append(UNKNOWN))
    assert violations(pack, plan) == [
        (
            "allowed-member-domains",
            "log-viewers",
            not_judged(
                "whether the member granted roles/logging.viewer on the project is from an allowed domain",
                "members[1]",
                _KNOWN_MEMBER,
            ),
        )
    ]


def test_unknown_invoker_is_not_public(pack, baseline) -> None:
    """allUsers and allAuthenticatedUsers are fixed names, never computed from a resource."""
    name = "support-bot-invoker-serviceaccount-frontend-at-acme-agents-prod-iam-gserviceaccount-com"
    plan = mutate(baseline, INVOKER, name, lambda i: i.update(member=UNKNOWN))
    assert violations(pack, plan) == [
        (
            "allowed-member-domains",
            name,
            not_judged(
                "whether the member granted roles/run.invoker on the Cloud Run service is from an allowed domain",
                "member",
                _KNOWN_MEMBER,
            ),
        )
    ]


def test_public_invoker_with_an_unknown_role(pack, baseline) -> None:
    name = "support-bot-invoker-serviceaccount-frontend-at-acme-agents-prod-iam-gserviceaccount-com"
    plan = mutate(baseline, INVOKER, name, lambda i: i.update(member="allUsers", role=UNKNOWN))
    assert violations(pack, plan) == [
        (
            "no-public-invoker",
            name,
            "grants a role unknown during this preview to allUsers on the Cloud Run service, so anyone on the internet "
            "can call it; remove the public member and grant the role to the calling service account or group.",
        )
    ]


def test_unknown_members_of_an_invoker_binding(pack, baseline) -> None:
    binding = _extra(
        "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding",
        "support-bot-invokers",
        {"name": "support-bot", "role": "roles/run.invoker", "members": UNKNOWN},
    )
    questions = [
        ("no-public-invoker", "whether the Cloud Run service is open to allUsers or allAuthenticatedUsers"),
        (
            "allowed-member-domains",
            "whether the members granted roles on the Cloud Run service are from allowed domains",
        ),
        (
            "no-admin-roles-for-service-accounts",
            "whether a service account gets an admin role on the Cloud Run service",
        ),
    ]
    assert violations(pack, added(baseline, binding)) == [
        (policy, "support-bot-invokers", not_judged(question, "members", _KNOWN_MEMBER))
        for policy, question in questions
    ]


def test_admin_role_to_an_unknown_member(pack, baseline) -> None:
    """A group this update creates is as unknown as a service account."""
    plan = mutate(
        baseline,
        PROJECT_MEMBER,
        "support-bot-role-aiplatform-user",
        lambda i: i.update(member=UNKNOWN, role="roles/storage.admin"),
    )
    assert violations(pack, plan) == [
        (
            "allowed-member-domains",
            "support-bot-role-aiplatform-user",
            not_judged(
                "whether the member granted roles/storage.admin on the project is from an allowed domain",
                "member",
                _KNOWN_MEMBER,
            ),
        ),
        (
            "no-admin-roles-for-service-accounts",
            "support-bot-role-aiplatform-user",
            not_judged(
                "whether the member granted the admin role roles/storage.admin on the project is a service account",
                "member",
                _KNOWN_MEMBER,
            ),
        ),
    ]


def test_gke_cluster_of_unknown_mode(pack, baseline) -> None:
    cluster = copy.deepcopy(OTHER_WORKLOADS[0])
    cluster.inputs["enableAutopilot"] = UNKNOWN
    assert violations(pack, added(baseline, cluster)) == [
        (
            "dedicated-service-account",
            "agents",
            not_judged("which service account the cluster's nodes run as", "enable_autopilot"),
        )
    ]


def test_ingress_all_with_an_unknown_name_and_allowed_services(pack, baseline) -> None:
    """With allowAllTraffic listing names, only the unknown name could tell; the logical name is known."""
    config = load_policy_config(PACK_DIR / "config" / "production.json")
    plan = mutate(
        baseline, SERVICE, "support-bot-service", lambda i: i.update(ingress="INGRESS_TRAFFIC_ALL", name=UNKNOWN)
    )
    try:
        config["cloud-run-ingress-restricted"] = type(config["all"])(None, {"allowAllTraffic": ["support-bot"]})
        pack.configure(config)
        assert violations(pack, plan) == [
            (
                "cloud-run-ingress-restricted",
                "support-bot-service",
                not_judged(
                    "whether this policy's allowAllTraffic config allows the service to accept requests from "
                    "the whole internet",
                    "name",
                ),
            )
        ]
        config["cloud-run-ingress-restricted"] = type(config["all"])(None, {"allowAllTraffic": ["support-bot-service"]})
        pack.configure(config)
        assert violations(pack, plan) == []
    finally:
        pack.configure(load_policy_config(PACK_DIR / "config" / "production.json"))


def test_canary_first_step_of_an_unknown_agent(pack, baseline) -> None:
    """An agent of the stack config starts above the limit: which agent is it?"""
    config = load_policy_config(PACK_DIR / "config" / "production.json")
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: i["labels"].update(agent=UNKNOWN))
    try:
        config["canary-first-step"] = type(config["all"])(None, {"maxFirstStepPercent": 4})
        pack.configure(config)
        assert violations(pack, plan) == [
            (
                "canary-first-step",
                "research-agent-service",  # its label is known: judged
                "the first canary step of agent research-agent is 10% (agent-platform:agents.research-agent.rollout."
                "steps), above the 4% maximum; start the canary at 4% or less so a bad release reaches few users before "
                "its metrics are read.",
            ),
            (
                "canary-first-step",
                "support-bot-service",
                not_judged("which agent's canary steps apply and whether the first is at most 4%", "labels.agent"),
            ),
        ]
    finally:
        pack.configure(load_policy_config(PACK_DIR / "config" / "production.json"))


TEAM = ROOT / "examples" / "team-stack"


def _team_first_step_verdicts(tmp_path, first: int, policy: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    """``agentstage check`` of the team's production stack (namespace triage-team, not the
    platform's) whose agent starts its canary at ``first`` percent."""
    from ruamel.yaml import YAML

    from agentstage.policy import run_check
    from tests.conftest import write_stack

    config = YAML(typ="safe", pure=True).load((TEAM / "stacks" / "Pulumi.production.yaml").read_text())["config"]
    config["triage-team:agents"]["triage"]["rollout"]["steps"] = [first, 50, 100]
    stack_file = write_stack(tmp_path / "Pulumi.production-steps.yaml", config)
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({"all": "mandatory", "canary-first-step": policy}))
    report = run_check(TEAM, "production", config_file=stack_file, policy_config=policy_file)
    return [(v.policy, v.resource_name, v.message) for v in report.violations if v.policy == "canary-first-step"]


def test_canary_first_step_of_a_team_namespace(tmp_path) -> None:
    """A team's project keeps its agents under its own namespace; without configNamespace the
    rule finds them there."""
    assert _team_first_step_verdicts(tmp_path, 20, {"maxFirstStepPercent": 10}) == [
        (
            "canary-first-step",
            "triage-service",
            "the first canary step of agent triage is 20% (triage-team:agents.triage.rollout.steps), above the 10% "
            "maximum; start the canary at 10% or less so a bad release reaches few users before its metrics are read.",
        )
    ]
    assert _team_first_step_verdicts(tmp_path, 10, {"maxFirstStepPercent": 10}) == []


def test_canary_first_step_reads_only_the_configured_namespace(tmp_path) -> None:
    named = _team_first_step_verdicts(tmp_path, 20, {"configNamespace": "triage-team", "maxFirstStepPercent": 10})
    assert [message for _, _, message in named] == [
        "the first canary step of agent triage is 20% (triage-team:agents.triage.rollout.steps), above the 10% "
        "maximum; start the canary at 10% or less so a bad release reaches few users before its metrics are read."
    ]
    assert _team_first_step_verdicts(tmp_path, 20, {"configNamespace": "agent-platform"}) == []


def test_key_for_an_unknown_account(pack, baseline) -> None:
    key = _extra("gcp:serviceaccount/key:Key", "support-bot-key", {"serviceAccountId": UNKNOWN})
    assert violations(pack, added(baseline, key)) == [
        (
            "no-service-account-keys",
            "support-bot-key",
            "creates a user-managed service account key, a long-lived credential that can leak; remove it and let the "
            "workload use its attached service account (or Workload Identity Federation outside Google Cloud).",
        )
    ]


@pytest.mark.parametrize(
    "change, policy, message",
    [
        (
            lambda i: i.update(ingress=UNKNOWN),
            "cloud-run-ingress-restricted",
            not_judged("whether the service accepts requests from the whole internet", "ingress"),
        ),
        (
            lambda i: i.update(invokerIamDisabled=UNKNOWN),
            "invoker-iam-enabled",
            not_judged("whether Cloud Run checks the invoker's IAM role", "invoker_iam_disabled"),
        ),
        (
            lambda i: container(i).update(image=UNKNOWN),
            "image-pinned-by-digest",
            not_judged(
                "whether container agent runs an image pinned by digest",
                "template.containers[0].image",
                "compute the image reference from inputs so that it is known at plan time "
                "(<repository>/<image>@sha256:<digest>, with the digest the registry returned for the pushed "
                "image)",
            ),
        ),
        (
            lambda i: i["template"]["scaling"].update(maxInstanceCount=UNKNOWN),
            "max-instances-capped",
            not_judged(
                "whether the maximum instance count is within the cap of 100", "template.scaling.max_instance_count"
            ),
        ),
        (
            lambda i: i["template"]["scaling"].update(minInstanceCount=UNKNOWN),
            "min-instances-production",
            not_judged("whether at least 1 instance(s) stay warm", "template.scaling.min_instance_count"),
        ),
        (
            lambda i: container(i).update(livenessProbe=UNKNOWN),
            "health-probes",
            not_judged(
                "whether container agent has a startup and a liveness probe", "template.containers[0].liveness_probe"
            ),
        ),
        (
            lambda i: i.update(deletionProtection=UNKNOWN),
            "deletion-protection",
            not_judged("whether deletion protection is on", "deletion_protection"),
        ),
        (
            lambda i: container(i)["resources"]["limits"].update(cpu=UNKNOWN),
            "instance-size-capped",
            not_judged(
                "whether container agent stays within the caps of 4 CPU and 8192Mi per instance",
                "template.containers[0].resources.limits.cpu",
            ),
        ),
        (
            lambda i: i["traffics"][1].update(percent=UNKNOWN),
            "traffic-split-sums-to-100",
            not_judged("whether the traffic split adds up to 100%", "traffics[1].percent"),
        ),
        (
            lambda i: i["traffics"][0].update(type=UNKNOWN),
            "canary-named-revisions",
            not_judged("whether the traffic split mixes LATEST with a pinned revision", "traffics[0].type"),
        ),
        (
            lambda i: i["labels"].update(release=UNKNOWN),
            "required-labels",
            not_judged("whether an agent's resource carries the label(s) environment, release", "labels.release"),
        ),
        (
            lambda i: i.update(labels=UNKNOWN),
            "required-labels",
            not_judged("whether the resource carries the required labels", "labels"),
        ),
    ],
    ids=[
        "ingress",
        "invoker-iam",
        "image",
        "max-instances",
        "min-instances",
        "liveness-probe",
        "deletion-protection",
        "cpu",
        "traffic-percent",
        "traffic-type",
        "release-label",
        "labels",
    ],
)
def test_unknown_value_the_verdict_depends_on_is_not_judged(pack, baseline, change, policy, message) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", change)
    assert violations(pack, plan) == [(policy, "support-bot-service", message)]


@pytest.mark.parametrize(
    "change",
    [
        lambda i: i["traffics"][1].update(revision=UNKNOWN),  # set, to a computed name: a named revision
        lambda i: i["labels"].update(agent=UNKNOWN),  # every agent of the stack config starts its canary at <= 10%
        lambda i: container(i).update(startupProbe={"httpGet": {"path": UNKNOWN, "port": 8080}}),
    ],
    ids=["revision", "agent-label", "probe-path"],
)
def test_unknown_value_the_verdict_does_not_depend_on(pack, baseline, change) -> None:
    assert violations(pack, mutate(baseline, SERVICE, "support-bot-service", change)) == []


def test_production_rule_with_an_unknown_environment(pack, baseline) -> None:
    """Scaled to zero, but is it production? (At 1 instance it would pass either way.)"""
    plan = mutate(
        baseline,
        SERVICE,
        "support-bot-service",
        lambda i: (i["labels"].update(environment=UNKNOWN), i["template"]["scaling"].update(minInstanceCount=0)),
    )
    assert violations(pack, plan) == [
        (
            "min-instances-production",
            "support-bot-service",
            not_judged("whether the resource is in production", "labels.environment"),
        ),
        (
            "required-labels",
            "support-bot-service",
            not_judged("whether an agent's resource carries the label(s) environment, release", "labels.environment"),
        ),
    ]


def test_unknown_env_value_may_be_a_credential(pack, baseline) -> None:
    i = env_index(baseline, "LOG_SAMPLE_RATE")
    plan = mutate(baseline, SERVICE, "support-bot-service", set_env("LOG_SAMPLE_RATE", value=UNKNOWN))
    assert violations(pack, plan) == [
        (
            "secrets-in-secret-manager",
            "support-bot-service",
            not_judged(
                "whether LOG_SAMPLE_RATE of container agent holds a credential in plain text",
                f"template.containers[0].envs[{i}].value",
                "compute the value from inputs so that it is known at plan time, or, if it is a credential, "
                "reference it from Secret Manager (agentstage: secrets)",
            ),
        )
    ]


def test_credential_name_with_an_unknown_value_is_a_violation(pack, baseline) -> None:
    plan = mutate(
        baseline,
        SERVICE,
        "support-bot-service",
        lambda i: container(i)["envs"].append({"name": "OPENAI_KEY", "value": UNKNOWN}),
    )
    assert violations(pack, plan) == [
        (
            "secrets-in-secret-manager",
            "support-bot-service",
            "OPENAI_KEY is a plain environment variable of container agent that looks like a credential: its name ends "
            "in _KEY; store the value in Secret Manager and reference it with a secret reference (agentstage: move it "
            "from env to secrets).",
        )
    ]


def test_unknown_env_list_is_not_judged(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", lambda i: container(i).update(envs=UNKNOWN))
    assert violations(pack, plan) == [
        (
            "secrets-in-secret-manager",
            "support-bot-service",
            not_judged(
                "whether the environment of container agent holds a credential in plain text",
                "template.containers[0].envs",
                "compute the value from inputs so that it is known at plan time, or, if it is a credential, "
                "reference it from Secret Manager (agentstage: secrets)",
            ),
        )
    ]


def test_unknown_secret_reference_is_no_plain_value(pack, baseline) -> None:
    plan = mutate(baseline, SERVICE, "support-bot-service", set_env("CRM_TOKEN", valueSource=UNKNOWN))
    assert violations(pack, plan) == []


def test_model_armor_template_with_unknown_enforcement(pack, baseline) -> None:
    plan = mutate(
        baseline,
        "gcp:modelarmor/template:Template",
        "guardrails-template",
        lambda i: i["filterConfig"]["piAndJailbreakFilterSettings"].update(filterEnforcement=UNKNOWN),
    )
    assert violations(pack, plan) == [
        (
            "model-armor-guardrails",
            "guardrails-template",
            not_judged(
                "whether the Model Armor template filters prompt injection, jailbreaks and unsafe content",
                "filter_config.pi_and_jailbreak_filter_settings.filter_enforcement",
            ),
        )
    ]


def test_model_armor_filters_whose_contents_are_unknown_count(pack, baseline) -> None:
    plan = mutate(
        baseline,
        "gcp:modelarmor/template:Template",
        "guardrails-template",
        lambda i: i["filterConfig"]["raiSettings"].update(raiFilters=[UNKNOWN]),
    )
    assert violations(pack, plan) == []


def test_notification_channels_whose_names_are_unknown_count(pack, baseline) -> None:
    """A list with one element per channel has a known length even while the names are not."""
    plan = mutate(baseline, ALERT, "support-bot-latency", lambda i: i.update(notificationChannels=[UNKNOWN, UNKNOWN]))
    assert violations(pack, plan) == []


def test_unknown_list_of_notification_channels_is_not_judged(pack, baseline) -> None:
    plan = mutate(baseline, ALERT, "support-bot-latency", lambda i: i.update(notificationChannels=UNKNOWN))
    assert violations(pack, plan) == [
        (
            "agent-alert-policies",
            "support-bot-service",
            not_judged(
                "whether the agent service support-bot has an alert policy with a notification channel on latency",
                "notification_channels of alert policy support-bot-latency",
                _KNOWN_CHANNELS,
            ),
        ),
        (
            "alert-policy-actionable",
            "support-bot-latency",
            not_judged(
                "whether [production] support-bot: p99 latency above 2000 ms has a notification channel",
                "notification_channels",
                _KNOWN_CHANNELS,
            ),
        ),
    ]


def test_alert_policy_with_unknown_conditions(pack, baseline) -> None:
    plan = mutate(baseline, ALERT, "support-bot-latency", lambda i: i.update(conditions=UNKNOWN))
    assert violations(pack, plan) == [
        (
            "agent-alert-policies",
            "support-bot-service",
            not_judged(
                "whether the agent service support-bot has an alert policy with a notification channel on latency",
                "conditions of alert policy support-bot-latency",
                "compute them from inputs (stack config, names, ids) so that they are known at plan time",
            ),
        ),
    ]


def test_alert_policy_with_unknown_documentation(pack, baseline) -> None:
    plan = mutate(baseline, ALERT, "support-bot-latency", lambda i: i["documentation"].update(content=UNKNOWN))
    assert violations(pack, plan) == [
        (
            "alert-policy-actionable",
            "support-bot-latency",
            not_judged(
                "whether [production] support-bot: p99 latency above 2000 ms has documentation for on-call",
                "documentation.content",
            ),
        ),
    ]


def test_budget_with_unknown_threshold_rules(pack, baseline) -> None:
    plan = mutate(baseline, "gcp:billing/budget:Budget", "budget-budget", lambda i: i.update(thresholdRules=UNKNOWN))
    assert violations(pack, plan) == [
        (
            "billing-budget",
            "budget-budget",
            not_judged("whether the billing budget has threshold rules", "threshold_rules"),
        ),
        (
            "budget-actual-threshold",
            "budget-budget",
            not_judged("whether the billing budget warns before the money is spent", "threshold_rules"),
        ),
    ]


def test_budget_threshold_rules_judged_by_their_known_part(pack, baseline) -> None:
    rules = [
        {"thresholdPercent": UNKNOWN, "spendBasis": "CURRENT_SPEND"},
        {"thresholdPercent": 0.9, "spendBasis": UNKNOWN},
        {"thresholdPercent": 1.2, "spendBasis": UNKNOWN},
    ]
    plan = mutate(baseline, "gcp:billing/budget:Budget", "budget-budget", lambda i: i.update(thresholdRules=rules))
    assert violations(pack, plan) == [
        (
            "budget-actual-threshold",
            "budget-budget",
            not_judged(
                "whether the billing budget warns before the money is spent",
                "threshold_rules[0].threshold_percent and threshold_rules[1].spend_basis",
                are=True,
            ),
        ),
    ]
    known = [{"thresholdPercent": 1, "spendBasis": "CURRENT_SPEND"}, *rules]
    assert (
        violations(
            pack,
            mutate(baseline, "gcp:billing/budget:Budget", "budget-budget", lambda i: i.update(thresholdRules=known)),
        )
        == []
    )


def _unknown_leaves(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unknown_leaves(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unknown_leaves(v) for v in value]
    return UNKNOWN


def _unknown_list_elements(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unknown_list_elements(v) for k, v in value.items()}
    if isinstance(value, list):
        return [UNKNOWN] * len(value)
    return value


#: Workloads the rules read that neither the baseline nor EXTRAS has (for the test below).
OTHER_WORKLOADS = [
    _extra(
        "gcp:container/cluster:Cluster",
        "agents",
        {
            "enableAutopilot": False,
            "removeDefaultNodePool": False,
            "deletionProtection": True,
            "nodeConfig": {"serviceAccount": "gke-nodes@acme-agents-prod.iam.gserviceaccount.com"},
            "resourceLabels": {"environment": "production"},
        },
    ),
    _extra(
        "gcp:cloudrun/service:Service",
        "legacy",
        {
            "metadata": {"annotations": {"run.googleapis.com/ingress": "internal"}, "labels": LABELS},
            "template": {
                "metadata": {
                    "annotations": {"autoscaling.knative.dev/minScale": "1", "autoscaling.knative.dev/maxScale": "5"}
                },
                "spec": {
                    "serviceAccountName": "legacy@acme-agents-prod.iam.gserviceaccount.com",
                    "containers": [
                        {
                            "image": "us-docker.pkg.dev/acme/legacy@sha256:" + "0" * 64,
                            "envs": [{"name": "MODE", "value": "batch"}],
                            "startupProbe": {"httpGet": {"path": "/healthz"}},
                            "livenessProbe": {"httpGet": {"path": "/healthz"}},
                            "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
                        }
                    ],
                },
            },
            "traffics": [{"percent": 100, "revisionName": "legacy-00001", "latestRevision": False}],
        },
    ),
    _extra(
        "gcp:cloudrunv2/job:Job",
        "nightly",
        {
            "labels": LABELS,
            "template": {
                "template": {
                    "serviceAccount": "nightly@acme-agents-prod.iam.gserviceaccount.com",
                    "containers": [{"image": "us-docker.pkg.dev/acme/nightly@sha256:" + "0" * 64}],
                }
            },
        },
    ),
]


@pytest.mark.parametrize(
    "unknown",
    [_unknown_leaves, _unknown_list_elements, lambda inputs: dict.fromkeys(inputs, UNKNOWN)],
    ids=["every-leaf", "every-list-element", "every-input"],
)
def test_no_rule_stops_judging_on_unknown_values(pack, baseline, unknown) -> None:
    """Every rule runs to its verdict on any mix of unknown values: none leaves an unknown to
    the SDK (whose "can't run policy" note is advisory, however mandatory the policy) and none
    crashes. The default gcp provider is left as it is."""
    plan = copy.deepcopy(baseline)
    plan.resources.extend(copy.deepcopy(OTHER_WORKLOADS))
    assert violations(pack, plan) == [], "the other workloads are compliant while their values are known"
    for r in plan.resources:
        if r.custom:
            r.inputs = unknown(r.inputs)
            r.outputs = copy.deepcopy(r.inputs)
    found, _, _ = pack.analyze(plan)
    assert found, "unknown values the verdicts depend on are reported"
    assert {v.enforcement for v in found} == {"mandatory"}
    assert not [v.message for v in found if v.message.startswith("can't run policy")]


# --- protocol details -------------------------------------------------------------------


def test_analyze_sees_options_and_default_provider(pack, baseline) -> None:
    found, count, _ = pack.analyze(baseline)
    # every plan resource plus the default providers the CLI registers (gcp, and time for the Sleeps)
    assert count == len(baseline.resources) + 2 and found == []
