"""Security: who can reach an agent, how it gets its secrets, what code it runs, and the
guardrails in front of its model (prompt injection, jailbreaks, unsafe content).

Unknown values (see helpers): each rule says what it infers from one, or reports that it
cannot judge."""

from __future__ import annotations

import re

from helpers import (
    AGENT_ENGINE,
    CLOUD_RUN,
    CLOUD_RUN_JOB,
    CLOUD_RUN_V1,
    MODEL_ARMOR_TEMPLATE,
    PUBLIC_MEMBERS,
    UNKNOWN,
    EnvVar,
    cannot_judge,
    containers,
    containers_field,
    env_vars,
    get,
    has_items,
    iam_target,
    is_digest_pinned,
    readable_grants,
    role_text,
    shown,
)
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

CHECKOV = "Checkov"
GUIDANCE = "Google Cloud prototype-to-production guidance for AI agents"


# --- no-public-invoker ------------------------------------------------------------------

_PUBLIC_SCOPES = ("Cloud Run service", "Cloud Run job", "Vertex AI resource")
_WHO = {"allUsers": "anyone on the internet", "allAuthenticatedUsers": "any signed-in Google account"}


def _no_public_invoker(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """An unknown member is not public: allUsers and allAuthenticatedUsers are fixed names a
    program writes as they are, never values computed from another resource. A public
    member is a violation whatever the role, so an unknown role does not matter."""
    target = iam_target(args.resource_type)
    if target not in _PUBLIC_SCOPES:
        return
    question = f"whether the {target} is open to allUsers or allAuthenticatedUsers"
    for g in readable_grants(args.resource_type, args.props, report, question):
        if g.member in PUBLIC_MEMBERS:
            report(
                f"grants {role_text(g.role)} to {g.member} on the {target}, so "
                f"{_WHO[g.member]} can call it; remove the public member and grant the role to the calling service "
                "account or group.",
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


def _ingress(resource_type: str, props: object) -> tuple[str, object] | None:
    """(the field that sets the service's ingress, its value in v2 terms)."""
    if resource_type == CLOUD_RUN:
        return "ingress", get(props, "ingress")
    if resource_type == CLOUD_RUN_V1:
        raw = get(props, "metadata", "annotations", "run.googleapis.com/ingress")
        value = _V1_INGRESS.get(raw, raw) if isinstance(raw, str) else raw if raw is UNKNOWN else None
        return "metadata.annotations[run.googleapis.com/ingress]", value
    return None


def _allowed_all_traffic(args: ResourceValidationArgs) -> object:
    """Whether the policy config lets this service accept all traffic (True, False, or
    UNKNOWN when only its unknown ``name`` could tell)."""
    allowed = args.get_config().get("allowAllTraffic") or []
    if args.name in allowed:
        return True
    name = get(args.props, "name")
    if name is UNKNOWN:
        return UNKNOWN if allowed else False
    return name in allowed


def _ingress_restricted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    found = _ingress(args.resource_type, args.props)
    if found is None:
        return
    field, ingress = found
    if ingress not in (None, UNKNOWN, "INGRESS_TRAFFIC_ALL"):
        return
    allowed = _allowed_all_traffic(args)
    if allowed is True:
        return
    if ingress is UNKNOWN:
        report(cannot_judge("whether the service accepts requests from the whole internet", field))
        return
    if allowed is UNKNOWN:
        question = (
            "whether this policy's allowAllTraffic config allows the service to accept requests from the whole internet"
        )
        report(cannot_judge(question, "name"))
        return
    why = (
        "is not set, so the provider default INGRESS_TRAFFIC_ALL applies"
        if ingress is None
        else "is INGRESS_TRAFFIC_ALL"
    )
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
    disabled = get(args.props, "invokerIamDisabled")
    if disabled is UNKNOWN:
        report(cannot_judge("whether Cloud Run checks the invoker's IAM role", "invoker_iam_disabled"))
    elif disabled is True:
        report(
            "invokerIamDisabled is true: Cloud Run skips the invoker IAM check and anyone who can reach "
            "the service can call it; set invoker_iam_disabled to false and grant roles/run.invoker to the callers.",
        )


invoker_iam_enabled = ResourceValidationPolicy(
    name="invoker-iam-enabled",
    description="Checks that no Cloud Run service turns off the invoker IAM check (invoker_iam_disabled).",
    validate=_invoker_iam_enabled,
    severity=Severity.CRITICAL,
    # Checkov has no check for this setting (CKV_GCP_102 looks at v1 invoker grants only):
    # https://cloud.google.com/run/docs/securing/managing-access#invoker_check
    framework=PolicyComplianceFramework(name="Cloud Run", reference="Disabling the Invoker IAM check"),
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


def _credential_reason(name: object, value: object) -> str | None:
    m = _CREDENTIAL_NAME.search(name.upper()) if isinstance(name, str) else None
    if m:
        if m.group(1):
            return f"its name ends in _{m.group(1)}" if name.upper() != m.group(1) else f"its name is {m.group(1)}"
        return f"its name contains {m.group(0)}"
    if isinstance(value, str):
        for prefix, what in _CREDENTIAL_PREFIXES:
            if value.startswith(prefix):
                return f"its value starts with {prefix}, like {what}"
    return None


_KNOWN_ENV = (
    "compute the value from inputs so that it is known at plan time, or, if it is a credential, reference it "
    "from Secret Manager (agentstage: secrets)"
)


def _unknown_env(env: EnvVar, field: str) -> str:
    subject = "the environment" if env.name is UNKNOWN else env.name
    return cannot_judge(f"whether {subject} of {env.where} holds a credential in plain text", field, fix=_KNOWN_ENV)


def _secrets_in_secret_manager(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A credential-like name decides on its own; a value computed from another resource
    (an API key or a generated password) may be a credential, so an unknown value (or name)
    that the other does not already condemn cannot be judged. A reference (``value_source``)
    is no plain value, even when what it references is unknown."""
    allowed = set(args.get_config().get("allowedNames") or [])
    for env in env_vars(args.resource_type, args.props):
        if env.name in allowed:
            continue
        reason = _credential_reason(env.name, env.value)
        unknown = env.unknown_field()
        if reason:
            report(
                f"{shown(env.name, 'a variable whose name is unknown during this preview')} is a plain environment "
                f"variable of {env.where} that looks like a credential: {reason}; store the value in Secret Manager "
                "and reference it with a secret reference (agentstage: move it from env to secrets).",
            )
        elif unknown is not None:
            report(_unknown_env(env, unknown))


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


_KNOWN_IMAGE = (
    "compute the image reference from inputs so that it is known at plan time "
    "(<repository>/<image>@sha256:<digest>, with the digest the registry returned for the pushed image)"
)


def _image_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (CLOUD_RUN, CLOUD_RUN_JOB, CLOUD_RUN_V1):
        return
    found = containers(args.resource_type, args.props)
    if found is UNKNOWN:
        field = containers_field(args.resource_type)
        report(cannot_judge("whether the container images are pinned by digest", field, fix=_KNOWN_IMAGE))
        return
    for c in found:
        image = get(c.spec, "image")
        if image is UNKNOWN:
            question = f"whether container {c.name} runs an image pinned by digest"
            report(cannot_judge(question, f"{c.field}.image", fix=_KNOWN_IMAGE))
        elif isinstance(image, str) and not is_digest_pinned(image):
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


_PI_FIELD = "filter_config.pi_and_jailbreak_filter_settings.filter_enforcement"
_RAI_FIELD = "filter_config.rai_settings.rai_filters"


def _template_gaps(props: object) -> tuple[list[str], list[str]]:
    """(what the template lacks, the fields whose unknown values hide whether it lacks them).
    RAI filters whose contents are unknown still count: the list has entries."""
    gaps: list[str] = []
    unknown: list[str] = []
    pi = get(props, "filterConfig", "piAndJailbreakFilterSettings", "filterEnforcement")
    if pi is UNKNOWN:
        unknown.append(_PI_FIELD)
    elif pi != "ENABLED":
        gaps.append(f"prompt-injection and jailbreak filtering ({_PI_FIELD} = ENABLED)")
    rai = has_items(get(props, "filterConfig", "raiSettings", "raiFilters"))
    if rai is UNKNOWN:
        unknown.append(_RAI_FIELD)
    elif not rai:
        gaps.append(f"responsible-AI filters ({_RAI_FIELD})")
    return gaps, unknown


def model_armor_guardrails(args: StackValidationArgs, report: ReportViolation) -> None:
    """Mandatory in production (``AgentGuardrails`` creates the template from
    ``agent-platform:guardrails``); enforcement comes from the per-stack policy config.

    One complete template satisfies the stack. Without one, a template whose filters are
    unknown might be it: those are reported as not judged (the others' gaps would not
    decide the verdict); else every template's gaps are reported."""
    templates = [r for r in args.resources if r.resource_type == MODEL_ARMOR_TEMPLATE]
    if not templates:
        report(
            "the stack has no Model Armor template, so prompts and responses are not screened for prompt "
            "injection, jailbreaks or unsafe content; add one (agentstage: agent-platform:guardrails.model_armor: true).",
        )
        return
    checked = [(t, *_template_gaps(t.props)) for t in templates]
    if any(not gaps and not unknown for _, gaps, unknown in checked):
        return
    undecided = [(t, unknown) for t, gaps, unknown in checked if not gaps]
    question = "whether the Model Armor template filters prompt injection, jailbreaks and unsafe content"
    for t, unknown in undecided:
        report(cannot_judge(question, *unknown), t.urn)
    if undecided:
        return
    for t, gaps, _ in checked:
        report(f"the Model Armor template lacks {' and '.join(gaps)}; enable them.", t.urn)


model_armor_guardrails_policy = StackValidationPolicy(
    name="model-armor-guardrails",
    description="Checks that the stack has a Model Armor template with prompt-injection/jailbreak and responsible-AI filters.",
    validate=model_armor_guardrails,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="guardrails: prompt injection, jailbreak"),
    tags=["security", "guardrails"],
    remediation_steps="Enable agent-platform:guardrails.model_armor so the platform creates the template.",
)


# --- agent-engine-cmek ------------------------------------------------------------------


def _agent_engine_cmek(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Only when the policy config sets ``required``. An unknown key name is a key this update
    creates (a name computed from it), so it is set: not a violation."""
    if args.resource_type != AGENT_ENGINE or args.get_config().get("required") is not True:
        return
    key = get(args.props, "encryptionSpec", "kmsKeyName")
    if key is UNKNOWN:
        return
    if not isinstance(key, str) or not key:
        report(
            "encryption_spec.kms_key_name is not set, so the Agent Engine is encrypted with a Google-managed key; "
            "set it to a Cloud KMS key in the engine's region (agentstage: agents.<name>.agent_engine.kms_key)."
        )


agent_engine_cmek = ResourceValidationPolicy(
    name="agent-engine-cmek",
    description="Checks that every Agent Engine is encrypted with a customer-managed Cloud KMS key when the policy config requires it.",
    validate=_agent_engine_cmek,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(
        properties={
            "required": {
                "type": "boolean",
                "default": False,
                "description": "Require encryption_spec.kms_key_name (CMEK) on every Agent Engine.",
            }
        }
    ),
    framework=PolicyComplianceFramework(
        name="Google Cloud CMEK", reference="Vertex AI customer-managed encryption keys"
    ),
    tags=["security", "encryption"],
    remediation_steps="Set agents.<name>.agent_engine.kms_key to a Cloud KMS key in the stack's region.",
)


POLICIES = [
    no_public_invoker,
    cloud_run_ingress_restricted,
    invoker_iam_enabled,
    secrets_in_secret_manager,
    image_pinned_by_digest,
    model_armor_guardrails_policy,
    agent_engine_cmek,
]
