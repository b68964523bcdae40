"""Security: who can reach an agent, how it gets its secrets, what code it runs, and the
guardrails in front of its model (prompt injection, jailbreaks, unsafe content)."""

from __future__ import annotations

import re

from pulumi_policy import (
    PolicyComplianceFramework,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from helpers import (
    CLOUD_RUN,
    CLOUD_RUN_JOB,
    CLOUD_RUN_V1,
    MODEL_ARMOR_TEMPLATE,
    PUBLIC_MEMBERS,
    containers,
    env_vars,
    get,
    grants,
    iam_target,
    is_digest_pinned,
    items,
)

CHECKOV = "Checkov"
GUIDANCE = "Google Cloud prototype-to-production guidance for AI agents"


# --- no-public-invoker ------------------------------------------------------------------

_PUBLIC_SCOPES = ("Cloud Run service", "Cloud Run job", "Vertex AI resource")
_WHO = {"allUsers": "anyone on the internet", "allAuthenticatedUsers": "any signed-in Google account"}


def _no_public_invoker(args: ResourceValidationArgs, report: ReportViolation) -> None:
    target = iam_target(args.resource_type)
    if target not in _PUBLIC_SCOPES:
        return
    for g in grants(args.resource_type, args.props):
        if g.member in PUBLIC_MEMBERS:
            report(
                f"grants {g.role} to {g.member} on the {target}, so {_WHO[g.member]} can call it; "
                "remove the public member and grant the role to the calling service account or group.",
            )


no_public_invoker = ResourceValidationPolicy(
    name="no-public-invoker",
    description="Checks that no Cloud Run service or Vertex AI / Agent Engine resource grants a role to allUsers or allAuthenticatedUsers.",
    validate=_no_public_invoker,
    severity=Severity.CRITICAL,
    framework=PolicyComplianceFramework(name=CHECKOV, reference="CKV_GCP_102"),
    tags=["security", "iam"],
    remediation_steps="Grant roles/run.invoker (or the Vertex AI role) to named service accounts or groups only; "
    "in agentstage list them under agents.<name>.invokers.",
)


# --- cloud-run-ingress-restricted -------------------------------------------------------

_V1_INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}


def _ingress_restricted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == CLOUD_RUN:
        ingress = get(args.props, "ingress")
    elif args.resource_type == CLOUD_RUN_V1:
        raw = get(args.props, "metadata", "annotations", "run.googleapis.com/ingress")
        ingress = _V1_INGRESS.get(raw, raw) if isinstance(raw, str) else None
    else:
        return
    if ingress not in (None, "INGRESS_TRAFFIC_ALL"):
        return
    name = get(args.props, "name")
    allowed = args.get_config().get("allowAllTraffic") or []
    if name in allowed or args.name in allowed:
        return
    why = "is not set, so the provider default INGRESS_TRAFFIC_ALL applies" if ingress is None else "is INGRESS_TRAFFIC_ALL"
    report(
        f"ingress {why}: the service accepts requests from the whole internet; set ingress to "
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (behind a load balancer) or INGRESS_TRAFFIC_INTERNAL_ONLY, "
        "or list the service in this policy's allowAllTraffic config."
    )


cloud_run_ingress_restricted = ResourceValidationPolicy(
    name="cloud-run-ingress-restricted",
    description="Checks that Cloud Run services do not accept traffic from the whole internet (ingress INGRESS_TRAFFIC_ALL, the provider default) unless the policy config allows it.",
    validate=_ingress_restricted,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(
        properties={
            "allowAllTraffic": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "Cloud Run service names (or logical resource names) allowed to use INGRESS_TRAFFIC_ALL.",
            }
        }
    ),
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="network isolation"),
    tags=["security", "network"],
    remediation_steps="Set ingress to internal-and-cloud-load-balancing or internal (agentstage: agents.<name>.ingress).",
)


# --- invoker-iam-enabled ----------------------------------------------------------------


def _invoker_iam_enabled(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLOUD_RUN:
        return
    if get(args.props, "invokerIamDisabled") is True:
        report(
            "invokerIamDisabled is true: Cloud Run skips the invoker IAM check and anyone who can reach "
            "the service can call it; set invoker_iam_disabled to false and grant roles/run.invoker to the callers.",
        )


invoker_iam_enabled = ResourceValidationPolicy(
    name="invoker-iam-enabled",
    description="Checks that no Cloud Run service turns off the invoker IAM check (invoker_iam_disabled).",
    validate=_invoker_iam_enabled,
    severity=Severity.CRITICAL,
    framework=PolicyComplianceFramework(name=CHECKOV, reference="CKV_GCP_102"),
    tags=["security", "iam"],
    remediation_steps="Leave invoker_iam_disabled unset or false.",
)


# --- secrets-in-secret-manager ----------------------------------------------------------

_CREDENTIAL_NAME = re.compile(r"(?:^|_)(KEY|TOKEN|SECRET)$|PASSWORD|PASSWD")
_CREDENTIAL_PREFIXES = (
    ("sk-", "an API secret key"),
    ("AIza", "a Google API key"),
    ("ghp_", "a GitHub token"),
    ("gho_", "a GitHub token"),
    ("ghs_", "a GitHub token"),
    ("github_pat_", "a GitHub token"),
    ("glpat-", "a GitLab token"),
    ("xox", "a Slack token"),
    ("AKIA", "an AWS access key"),
    ("ya29.", "a Google OAuth access token"),
    ("-----BEGIN", "a private key"),
)


def _credential_reason(name: str, value: object) -> str | None:
    m = _CREDENTIAL_NAME.search(name.upper())
    if m:
        if m.group(1):
            return f"its name ends in _{m.group(1)}" if name.upper() != m.group(1) else f"its name is {m.group(1)}"
        return f"its name contains {m.group(0)}"
    if isinstance(value, str):
        for prefix, what in _CREDENTIAL_PREFIXES:
            if value.startswith(prefix):
                return f"its value starts with {prefix}, like {what}"
    return None


def _secrets_in_secret_manager(args: ResourceValidationArgs, report: ReportViolation) -> None:
    allowed = set(args.get_config().get("allowedNames") or [])
    for env in env_vars(args.resource_type, args.props):
        if env.name in allowed:
            continue
        reason = _credential_reason(env.name, env.value)
        if reason:
            report(
                f"{env.name} is a plain environment variable of {env.where} that looks like a credential: "
                f"{reason}; store the value in Secret Manager and reference it with a secret reference "
                "(agentstage: move it from env to secrets).",
            )


secrets_in_secret_manager = ResourceValidationPolicy(
    name="secrets-in-secret-manager",
    description="Checks that credentials reach agents only as Secret Manager references, never as plain environment variables.",
    validate=_secrets_in_secret_manager,
    severity=Severity.CRITICAL,
    config_schema=PolicyConfigSchema(
        properties={
            "allowedNames": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "Environment variable names that look like credentials but are not (e.g. CACHE_KEY).",
            }
        }
    ),
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="data leakage: secrets"),
    tags=["security", "secrets"],
    remediation_steps="Create a Secret Manager secret and reference it: agents.<name>.secrets: {NAME: secret[:version]}.",
)


# --- image-pinned-by-digest -------------------------------------------------------------


def _image_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (CLOUD_RUN, CLOUD_RUN_JOB, CLOUD_RUN_V1):
        return
    for c in containers(args.resource_type, args.props):
        image = get(c.spec, "image")
        if isinstance(image, str) and not is_digest_pinned(image):
            report(
                f"container {c.name} runs image {image}, which is not pinned by digest, so what runs can change "
                "without a deployment; use <repository>/<image>@sha256:<digest>.",
            )


image_pinned_by_digest = ResourceValidationPolicy(
    name="image-pinned-by-digest",
    description="Checks that every container image is pinned by digest (@sha256:...), never by a movable tag.",
    validate=_image_pinned,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="immutable releases"),
    tags=["security", "supply-chain"],
    remediation_steps="Build, push, then deploy the image by the digest the registry returned.",
)


# --- model-armor-guardrails (stack) -----------------------------------------------------


def _template_gaps(props: object) -> list[str]:
    gaps = []
    pi = get(props, "filterConfig", "piAndJailbreakFilterSettings", "filterEnforcement")
    if pi != "ENABLED":
        gaps.append("prompt-injection and jailbreak filtering (filter_config.pi_and_jailbreak_filter_settings.filter_enforcement = ENABLED)")
    if not items(get(props, "filterConfig", "raiSettings", "raiFilters")):
        gaps.append("responsible-AI filters (filter_config.rai_settings.rai_filters)")
    return gaps


def model_armor_guardrails(args: StackValidationArgs, report: ReportViolation) -> None:
    """Mandatory in production (``AgentGuardrails`` creates the template from
    ``agent-platform:guardrails``); enforcement comes from the per-stack policy config."""
    templates = [r for r in args.resources if r.resource_type == MODEL_ARMOR_TEMPLATE]
    if not templates:
        report(
            "the stack has no Model Armor template, so prompts and responses are not screened for prompt "
            "injection, jailbreaks or unsafe content; add one (agentstage: agent-platform:guardrails.model_armor: true).",
        )
        return
    complete = [t for t in templates if not _template_gaps(t.props)]
    if complete:
        return
    for t in templates:
        report(f"the Model Armor template lacks {' and '.join(_template_gaps(t.props))}; enable them.", t.urn)


model_armor_guardrails_policy = StackValidationPolicy(
    name="model-armor-guardrails",
    description="Checks that the stack has a Model Armor template with prompt-injection/jailbreak and responsible-AI filters.",
    validate=model_armor_guardrails,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="guardrails: prompt injection, jailbreak"),
    tags=["security", "guardrails"],
    remediation_steps="Enable agent-platform:guardrails.model_armor so the platform creates the template.",
)


POLICIES = [
    no_public_invoker,
    cloud_run_ingress_restricted,
    invoker_iam_enabled,
    secrets_in_secret_manager,
    image_pinned_by_digest,
    model_armor_guardrails_policy,
]
