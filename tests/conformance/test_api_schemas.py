"""Every resource the project plans is a request the Google API accepts.

Each plan (the reference stacks, every example's stacks, a generated multi-agent stack, the
production stack with every optional feature on, and production as a first preview of a new
stack) is run under the offline engine; every custom resource is translated into the request
body the provider sends (:mod:`.translate`) and validated against the API's discovery
document (:mod:`.discovery`). A type without a translation, or an input field the
translation does not know, fails here until it is mapped and checked.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agentstage.engine import Plan, PlannedResource, load_project, run_plan
from bench.stackgen import write_project

from . import discovery, translate
from .translate import ApiRequest, TranslationError

ROOT = Path(__file__).resolve().parents[2]


# --- the plans --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanSource:
    """A plan to check: ``build`` runs the offline engine (given a temp dir factory)."""

    id: str
    build: Callable[[pytest.TempPathFactory], Plan]


def _example_sources() -> list[PlanSource]:
    """Each stack of each example project under ``examples/``."""
    sources = []
    for manifest in sorted((ROOT / "examples").glob("*/Pulumi.yaml")):
        project = load_project(manifest.parent)
        for stack_file in sorted(project.stack_config_dir.glob("Pulumi.*.yaml")):
            stack = stack_file.name[len("Pulumi.") : -len(".yaml")]
            sources.append(
                PlanSource(
                    f"examples/{project.dir.name}:{stack}",
                    lambda _, d=project.dir, s=stack: run_plan(d, s),
                )
            )
    return sources


def _generated(tmp: pytest.TempPathFactory) -> Plan:
    project, stack = write_project(tmp.mktemp("generated") / "project", 5)
    return run_plan(project, stack)


def _all_options(tmp: pytest.TempPathFactory) -> Plan:
    """Production with the optional features on that add resources or fields: Pub/Sub and
    webhook channels (a topic IAM member), a runbook link, a budget label filter and an amount
    with cents, a secret env value, an OTLP endpoint, non-default guardrails, spend caps on both agents."""
    yaml = YAML(typ="safe", pure=True)
    with (ROOT / "stacks" / "Pulumi.production.yaml").open() as fh:
        config: dict[str, Any] = yaml.load(fh)["config"]
    config["agent-platform:alerts"].update(
        pubsub_topics=["projects/acme-agents-prod/topics/oncall"],
        webhooks=["https://hooks.example.com/alerts?token=abc123"],
        runbook_url="https://runbooks.example.com/agents",
    )
    config["agent-platform:budget"].update(label_filter={"team": "support"}, monthly_amount=1234.56)
    config["agent-platform:agents"]["support-bot"]["env"]["PARTNER_KEY"] = {"secure": "v1:c2VjcmV0"}
    config.setdefault("agent-platform:tracing", {})["otlp_endpoint"] = "https://otel.example.com:4317"
    config["agent-platform:guardrails"].update(
        enforcement="inspect-only", sensitive_data=False, jailbreak_confidence="high"
    )
    research = config["agent-platform:agents"]["research-agent"]
    research["resources"] = {"cpu": "500m", "memory": "1Gi"}
    research["scaling"]["concurrency"] = 1
    research["probes"] = {
        "startup": {"initial_delay_seconds": 5, "period_seconds": 10, "failure_threshold": 20},
        "liveness": {"period_seconds": 30, "timeout_seconds": 10},
    }
    # hard spend caps: the per-agent budgets and the enforcer (topic, bucket, archive, function, IAM)
    config["agent-platform:agents"]["support-bot"]["spend_cap"] = {"monthly_amount": 300, "action": "canary-to-zero"}
    research["spend_cap"] = {"monthly_amount": 200.5, "threshold": 0.9, "action": "flags-off", "flags": ["citations"]}
    path = tmp.mktemp("all-options") / "Pulumi.production.yaml"
    with path.open("w") as fh:
        YAML().dump({"config": config}, fh)
    return run_plan(ROOT, "production", config_file=path)


SOURCES = [
    PlanSource("production", lambda _: run_plan(ROOT, "production")),
    PlanSource("staging", lambda _: run_plan(ROOT, "staging")),
    *_example_sources(),
    PlanSource("generated:5-agents", _generated),
    PlanSource("production+all-options", _all_options),
    # a first preview: computed outputs are "[unknown]" (see discovery's module docstring)
    PlanSource("production:new-stack", lambda _: run_plan(ROOT, "production", new_stack=True)),
]


@dataclass
class Conformance:
    """A plan's requests and what is wrong with them."""

    plan: Plan
    requests: list[ApiRequest] = field(default_factory=list)
    #: translation errors and validation errors, each naming the resource
    errors: list[str] = field(default_factory=list)
    #: the resource types whose every resource was translated and validated
    covered: set[str] = field(default_factory=set)


def check_plan(plan: Plan) -> Conformance:
    result = Conformance(plan)
    failed: set[str] = set()
    for resource in plan.resources:
        if translate.skip_reason(resource) is not None:
            continue
        try:
            requests = translate.to_requests(resource)
        except TranslationError as err:
            result.errors.append(f"{err} (resource {resource.name})")
            failed.add(resource.type)
            continue
        result.requests += requests
        result.covered.add(resource.type)
        for request in requests:
            problems = discovery.validate(request.api, request.schema, request.body)
            result.errors += [f"{request.what}: {problem}" for problem in problems]
    result.covered -= failed
    return result


@pytest.fixture(scope="module", params=SOURCES, ids=[s.id for s in SOURCES])
def conformance(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Conformance:
    return check_plan(request.param.build(tmp_path_factory))


def test_every_request_conforms_to_its_api(conformance: Conformance) -> None:
    assert conformance.requests
    errors = conformance.errors
    assert not errors, f"{len(errors)} conformance errors:\n" + "\n".join(errors)


def test_every_resource_type_is_translated(conformance: Conformance) -> None:
    planned = {r.type for r in conformance.plan.resources if translate.skip_reason(r) is None}
    missing = sorted(planned - conformance.covered)
    assert conformance.covered == planned, f"types without a (complete) translation: {missing}"


# --- the documents -----------------------------------------------------------------------------

#: The APIs the project's resources (and the runtimes it plans next: Agent Engine, Vertex
#: endpoints, feature flags in Parameter Manager) are checked against.
APIS = [
    "run.v2",
    "monitoring.v3",
    "monitoring.v1",
    "logging.v2",
    "billingbudgets.v1",
    "iam.v1",
    "cloudresourcemanager.v1",
    "secretmanager.v1",
    "pubsub.v1",
    "aiplatform.v1",
    "parametermanager.v1",
    "compute.v1",
    "cloudbilling.v1",
]


@pytest.mark.parametrize("api", APIS)
def test_the_discovery_document_ships_with_the_client(api: str) -> None:
    name, version = api.split(".")
    doc = discovery.document(api)
    assert (doc["name"], doc["version"]) == (name, version)


def test_model_armor_is_checked_against_the_sdk_until_a_document_ships() -> None:
    # When google-api-python-client ships modelarmor.v1, drop it from discovery.SDK_SCHEMAS.
    with pytest.raises(KeyError):
        discovery.document("modelarmor.v1")
    assert ("modelarmor.v1", "Template") in discovery.SDK_SCHEMAS


# --- the validator catches what it should -------------------------------------------------------


@pytest.fixture(scope="module")
def bodies(prod: Plan) -> dict[str, dict[str, Any]]:
    """A translated request body of each type of the production plan (a fresh copy per use)."""
    out: dict[str, dict[str, Any]] = {}
    for resource in prod.resources:
        if translate.skip_reason(resource) is None and resource.type not in out:
            out[resource.type] = translate.to_requests(resource)[0].body
    return out


def body(bodies: dict[str, dict[str, Any]], type_: str) -> dict[str, Any]:
    return copy.deepcopy(bodies[type_])


SERVICE = "gcp:cloudrunv2/service:Service"
ALERT_POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
BUDGET = "gcp:billing/budget:Budget"
TEMPLATE = "gcp:modelarmor/template:Template"


def test_valid_bodies_have_no_errors(bodies: dict[str, dict[str, Any]]) -> None:
    for type_ in (SERVICE, ALERT_POLICY, BUDGET, TEMPLATE):
        translation = translate.TRANSLATIONS[type_]
        assert discovery.validate(translation.api, translation.schema, body(bodies, type_)) == []


def test_unknown_field_in_cloud_run_template(bodies: dict[str, dict[str, Any]]) -> None:
    service = body(bodies, SERVICE)
    service["template"]["containerConcurrency"] = 40  # the run v1 (Knative) name
    assert discovery.validate("run.v2", "GoogleCloudRunV2Service", service) == [
        "$.template: Additional properties are not allowed ('containerConcurrency' was unexpected)"
    ]


def test_bad_enum_in_alert_policy_condition(bodies: dict[str, dict[str, Any]]) -> None:
    policy = body(bodies, ALERT_POLICY)
    policy["conditions"][0]["conditionThreshold"]["aggregations"][0]["perSeriesAligner"] = "ALIGN_WRONG"
    aligners = discovery.enum_values("monitoring.v3", "Aggregation", "perSeriesAligner")
    assert "ALIGN_RATE" in aligners
    assert discovery.validate("monitoring.v3", "AlertPolicy", policy) == [
        f"$.conditions[0].conditionThreshold.aggregations[0].perSeriesAligner: 'ALIGN_WRONG' is not one of {aligners!r}"
    ]


def test_malformed_duration(bodies: dict[str, dict[str, Any]]) -> None:
    policy = body(bodies, ALERT_POLICY)
    policy["conditions"][0]["conditionThreshold"]["duration"] = "5m"
    assert discovery.validate("monitoring.v3", "AlertPolicy", policy) == [
        "$.conditions[0].conditionThreshold.duration: '5m' is not a 'google-duration'"
    ]


def test_output_only_field(bodies: dict[str, dict[str, Any]]) -> None:
    service = body(bodies, SERVICE)
    service["uri"] = "https://support-bot-abc123-uc.a.run.app"
    assert discovery.validate("run.v2", "GoogleCloudRunV2Service", service) == [
        "$.uri: is output only (set by the API); a request must not send it"
    ]


def test_unknown_and_secret_values_pass_where_a_string_is_allowed(bodies: dict[str, dict[str, Any]]) -> None:
    policy = body(bodies, ALERT_POLICY)
    threshold = policy["conditions"][0]["conditionThreshold"]
    threshold["duration"] = "[unknown]"  # a google-duration
    threshold["aggregations"][0]["perSeriesAligner"] = "[unknown]"  # an enum
    policy["notificationChannels"] = ["[unknown]"]
    assert discovery.validate("monitoring.v3", "AlertPolicy", policy) == []

    service = body(bodies, SERVICE)
    service["template"]["containers"][0]["env"][0]["value"] = "[secret]"
    service["template"]["maxInstanceRequestConcurrency"] = "[unknown]"  # an integer: not a string
    assert discovery.validate("run.v2", "GoogleCloudRunV2Service", service) == [
        "$.template.maxInstanceRequestConcurrency: '[unknown]' is not of type 'integer'"
    ]


def test_int64_is_an_integer_or_a_decimal_string(bodies: dict[str, dict[str, Any]]) -> None:
    budget = body(bodies, BUDGET)
    budget["amount"]["specifiedAmount"]["units"] = 1500
    assert discovery.validate("billingbudgets.v1", "GoogleCloudBillingBudgetsV1Budget", budget) == []
    budget["amount"]["specifiedAmount"]["units"] = "1500.50"
    assert discovery.validate("billingbudgets.v1", "GoogleCloudBillingBudgetsV1Budget", budget) == [
        "$.amount.specifiedAmount.units: '1500.50' is not a 'int64'"
    ]


def test_model_armor_enums_come_from_the_sdk_docstrings(bodies: dict[str, dict[str, Any]]) -> None:
    template = body(bodies, TEMPLATE)
    template["filterConfig"]["piAndJailbreakFilterSettings"]["confidenceLevel"] = "VERY_HIGH"
    template["templateMetadata"]["enforcementType"] = "BLOCK"
    # pulumi_gcp/modelarmor/_inputs.py: TemplateFilterConfigPiAndJailbreakFilterSettingsArgs
    # and TemplateTemplateMetadataArgs, "Possible values:" in the field docstrings
    assert discovery.validate("modelarmor.v1", "Template", template) == [
        "$.filterConfig.piAndJailbreakFilterSettings.confidenceLevel: "
        "'VERY_HIGH' is not one of ['LOW_AND_ABOVE', 'MEDIUM_AND_ABOVE', 'HIGH']",
        "$.templateMetadata.enforcementType: 'BLOCK' is not one of ['INSPECT_ONLY', 'INSPECT_AND_BLOCK']",
    ]


# --- the translation --------------------------------------------------------------------------


def _resource(type_: str, inputs: dict[str, Any], *, custom: bool = True) -> PlannedResource:
    urn = f"urn:pulumi:test::test::{type_}::r"
    return PlannedResource(urn=urn, type=type_, name="r", parent=None, custom=custom, inputs=inputs)


def test_translation_maps_pulumi_inputs_to_api_fields(prod: Plan) -> None:
    service = translate.to_requests(prod.by_type(SERVICE)[0])[0].body
    container = service["template"]["containers"][0]
    assert container["ports"] == [{"containerPort": 8080, "name": "http1"}]
    assert {"env", "ports"} <= container.keys() and "envs" not in container
    assert service["traffic"] and "traffics" not in service
    assert not {"name", "project", "location", "deletionProtection"} & service.keys()

    slo = translate.to_requests(prod.by_type("gcp:monitoring/slo:Slo")[0])[0].body
    assert slo["rollingPeriod"] == "2419200s"  # 28 days
    assert "requestBased" in slo["serviceLevelIndicator"]

    budget_inputs = {
        "billingAccount": "012345-6789AB-CDEF01",
        "budgetFilter": {"labels": {"team": "support"}},
        "allUpdatesRule": {"pubsubTopic": "projects/p/topics/t"},
    }
    assert translate.to_requests(_resource(BUDGET, budget_inputs))[0].body == {
        "budgetFilter": {"labels": {"team": ["support"]}},
        "notificationsRule": {"pubsubTopic": "projects/p/topics/t"},
    }

    publisher = {
        "project": "p",
        "topic": "projects/p/topics/t",
        "role": "roles/pubsub.publisher",
        "member": "user:a@b.c",
    }
    member = translate.to_requests(_resource("gcp:pubsub/topicIAMMember:TopicIAMMember", publisher))[0]
    assert (member.api, member.schema, member.body) == (
        "pubsub.v1",
        "Binding",
        {"role": "roles/pubsub.publisher", "members": ["user:a@b.c"]},
    )


def test_an_input_field_without_translation_fails(prod: Plan) -> None:
    inputs = copy.deepcopy(prod.by_type(SERVICE)[0].inputs)
    inputs["template"]["containers"][0]["gpuType"] = "nvidia-l4"
    with pytest.raises(TranslationError) as err:
        translate.to_requests(_resource(SERVICE, inputs))
    assert str(err.value) == (
        "gcp:cloudrunv2/service:Service: input template.containers[0].gpuType has no translation to an API field; "
        "map it in tests/conformance/translate.py "
        "(sources: pulumi_gcp/cloudrunv2/service.py, cloudrunv2/Service.yaml; the API reference)"
    )


def test_a_type_without_translation_fails() -> None:
    with pytest.raises(TranslationError) as err:
        translate.to_requests(_resource("gcp:bigquery/dataset:Dataset", {"datasetId": "d"}))
    assert str(err.value) == (
        "gcp:bigquery/dataset:Dataset: no translation to a Google API request; add one to TRANSLATIONS in "
        "tests/conformance/translate.py (or to NOT_GOOGLE_APIS if it makes no Google API request)"
    )


def test_resources_that_make_no_google_api_request_are_skipped_by_name() -> None:
    assert translate.skip_reason(_resource("agentstage:platform:AgentPlatform", {}, custom=False))
    assert translate.skip_reason(_resource("pulumi:providers:gcp", {}))
    assert translate.skip_reason(_resource("time:index/sleep:Sleep", {"createDuration": "30s"}))
    assert translate.skip_reason(_resource(SERVICE, {})) is None
