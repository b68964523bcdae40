"""Rules for agents served from a Vertex AI endpoint (``runtime: vertex-endpoint``).

In one module beside the areas because they read two resource types that only this runtime
creates: ``gcp:vertex/aiEndpoint:AiEndpoint`` and agentstage's dynamic resource of the models
deployed to it and its traffic split (``components/vertex_deployment.py``). Public IAM on an
endpoint is ``no-public-invoker`` (security.py), which covers every Vertex AI IAM resource.

- ``vertex-endpoint-private`` (security): a production endpoint has no public address:
  Private Service Connect (``privateServiceConnectConfig.enablePrivateServiceConnect``) or a
  peered VPC ``network`` (pulumi-gcp 10.2.0 ``vertex/ai_endpoint.py``);
- ``vertex-endpoint-cmek`` (security): ``encryptionSpec.kmsKeyName`` set, when the policy
  config requires it;
- ``vertex-traffic-split`` (release): the split sums to 100 and names only models it deploys
  (Vertex AI ``Endpoint.traffic_split``: "The traffic percentage values must add up to 100";
  https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints).
"""

from __future__ import annotations

from helpers import (
    PRODUCTION_ENVIRONMENTS,
    UNKNOWN,
    VERTEX_ENDPOINT,
    cannot_judge,
    environment_unknown,
    fmt,
    get,
    is_map,
    is_production,
    number,
)
from pulumi_policy import (
    PolicyComplianceFramework,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
)

#: The dynamic resource of components/vertex_deployment.py (``DEPLOYMENT_TYPE`` there).
VERTEX_DEPLOYMENT = "pulumi-python:dynamic/agentstage:VertexModelDeployment"
GUIDANCE = "Google Cloud prototype-to-production guidance for AI agents"
# --- vertex-endpoint-private ----------------------------------------------------------------


def _endpoint_private(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != VERTEX_ENDPOINT:
        return
    production = is_production(args.resource_type, args.props, args.get_config())
    if production is False:
        return
    if production is UNKNOWN:
        report(environment_unknown(args.resource_type))
        return
    psc = get(args.props, "privateServiceConnectConfig", "enablePrivateServiceConnect")
    network = get(args.props, "network")
    if psc is True or (isinstance(network, str) and network):
        return
    if psc is UNKNOWN or network is UNKNOWN:
        report(
            cannot_judge(
                "whether the endpoint is private",
                "privateServiceConnectConfig.enablePrivateServiceConnect",
                "network",
            )
        )
        return
    report(
        "neither privateServiceConnectConfig.enablePrivateServiceConnect nor network is set, so the production "
        "endpoint is reachable on its public address; turn on Private Service Connect "
        "(agentstage: agents.<name>.vertex_endpoint.private_service_connect: true) or peer it with a VPC network "
        "(vertex_endpoint.network)."
    )


vertex_endpoint_private = ResourceValidationPolicy(
    name="vertex-endpoint-private",
    description="Checks that production Vertex AI endpoints are private: Private Service Connect or a peered VPC network.",
    validate=_endpoint_private,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(properties=dict(PRODUCTION_ENVIRONMENTS)),
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="network isolation"),
    tags=["security", "network"],
    remediation_steps="Set agents.<name>.vertex_endpoint.private_service_connect: true (or network) in production.",
)


# --- vertex-endpoint-cmek -------------------------------------------------------------------


def _endpoint_cmek(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Only when the policy config sets ``required``; an unknown key name is a key this update
    creates, so it is set."""
    if args.resource_type != VERTEX_ENDPOINT or args.get_config().get("required") is not True:
        return
    key = get(args.props, "encryptionSpec", "kmsKeyName")
    if key is UNKNOWN:
        return
    if not isinstance(key, str) or not key:
        report(
            "encryptionSpec.kmsKeyName is not set, so the endpoint and its deployed models are encrypted with a "
            "Google-managed key; set it to a Cloud KMS key in the endpoint's region "
            "(agentstage: agents.<name>.vertex_endpoint.kms_key)."
        )


vertex_endpoint_cmek = ResourceValidationPolicy(
    name="vertex-endpoint-cmek",
    description="Checks that every Vertex AI endpoint is encrypted with a customer-managed Cloud KMS key when the "
    "policy config requires it.",
    validate=_endpoint_cmek,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(
        properties={
            "required": {
                "type": "boolean",
                "default": False,
                "description": "Require encryptionSpec.kmsKeyName (CMEK) on every Vertex AI endpoint.",
            }
        }
    ),
    framework=PolicyComplianceFramework(
        name="Google Cloud CMEK", reference="Vertex AI customer-managed encryption keys"
    ),
    tags=["security", "encryption"],
    remediation_steps="Set agents.<name>.vertex_endpoint.kms_key to a Cloud KMS key in the stack's region.",
)


# --- vertex-traffic-split -------------------------------------------------------------------


def _traffic_split(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != VERTEX_DEPLOYMENT:
        return
    split = get(args.props, "traffic_split")
    models = get(args.props, "models")
    if split is UNKNOWN or models is UNKNOWN:
        report(cannot_judge("whether the endpoint's traffic split sums to 100", "traffic_split", "models"))
        return
    if not is_map(split) or not is_map(models):
        report("traffic_split or models is not a map of deployed-model id -> value; agentstage builds both.")
        return
    total = 0.0
    for key in split:
        value = number(split[key])
        if value is UNKNOWN or value is None:
            report(cannot_judge(f"the percent of deployed model {key}", f"traffic_split.{key}"))
            return
        if key not in models:
            report(
                f"traffic_split sends {fmt(value)}% to deployed model {key}, which this resource does not deploy; "
                "Vertex AI refuses a split naming a model the endpoint does not serve."
            )
        total += value
    if models and total != 100:
        report(
            f"traffic_split sums to {fmt(total)}%, not 100; Vertex AI requires the percentages of an endpoint's "
            "split to add up to 100 (agentstage: agents.<name>.rollout.canary_percent)."
        )


vertex_traffic_split = ResourceValidationPolicy(
    name="vertex-traffic-split",
    description="Checks that a Vertex AI endpoint's traffic split sums to 100 and names only the models deployed to it.",
    validate=_traffic_split,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="canary releases"),
    tags=["release", "traffic"],
    remediation_steps="Let agentstage build the split from agents.<name>.rollout; do not edit it by hand.",
)


POLICIES = [vertex_endpoint_private, vertex_endpoint_cmek, vertex_traffic_split]
