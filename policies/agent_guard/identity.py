"""Identity: every agent runs as its own service account with least privilege, and no grant
widens what an identity (or a member outside the organisation) can do.

Unknown values (see helpers). Two inferences hold for every rule here: an unknown service
account email (or ``serviceAccount:`` member) is an account this update creates, never a
Google-managed default account (see ``default_account_kind``); an unknown role is a custom
role this update creates (``projects/<project>/roles/<id>``), never a basic or predefined
role, whose names are fixed and known at plan time. Where a verdict depends on more than
that (is an unknown member from an allowed domain? is an unknown role an admin role?), the
rule reports that it cannot judge."""

from __future__ import annotations

import re

from helpers import (
    AGENT_ENGINE,
    BASIC_ROLES,
    CLOUD_RUN,
    CLOUD_RUN_JOB,
    CLOUD_RUN_V1,
    GKE_CLUSTER,
    GKE_NODE_POOL,
    KNOWN_MEMBER,
    KNOWN_ROLE,
    SERVICE_ACCOUNT_KEY,
    UNKNOWN,
    cannot_judge,
    default_account_kind,
    get,
    grants,
    iam_scope,
    iam_target,
    is_service_account,
    member_domain,
    member_text,
    readable_grants,
    role_text,
)
from pulumi_policy import (
    PolicyComplianceFramework,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
)

CHECKOV = "Checkov"


# --- dedicated-service-account ----------------------------------------------------------


_GKE_MODES = (("enableAutopilot", "enable_autopilot"), ("removeDefaultNodePool", "remove_default_node_pool"))


def _workload_identity(resource_type: str, props: object) -> tuple[str, object, str] | None:
    """(the field that names the identity, its value, who runs the workload when it is unset).
    For a GKE cluster whose mode (``enable_autopilot``, ``remove_default_node_pool``) is
    unknown, the field is that switch and the value UNKNOWN with no fallback (``""``)."""
    compute = "the Compute Engine default service account"
    if resource_type == CLOUD_RUN:
        return "template.service_account", get(props, "template", "serviceAccount"), compute
    if resource_type == CLOUD_RUN_JOB:
        return "template.template.service_account", get(props, "template", "template", "serviceAccount"), compute
    if resource_type == CLOUD_RUN_V1:
        return "template.spec.service_account_name", get(props, "template", "spec", "serviceAccountName"), compute
    if resource_type == AGENT_ENGINE:
        return (
            "spec.service_account",
            get(props, "spec", "serviceAccount"),
            "the Vertex AI Reasoning Engine service agent shared by every agent in the project",
        )
    if resource_type == GKE_NODE_POOL:
        return "node_config.service_account", get(props, "nodeConfig", "serviceAccount"), compute
    if resource_type == GKE_CLUSTER:
        for switch, field in _GKE_MODES:
            if get(props, switch) is UNKNOWN:
                return field, UNKNOWN, ""
        if get(props, "enableAutopilot") is True:
            return (
                "cluster_autoscaling.auto_provisioning_defaults.service_account",
                get(props, "clusterAutoscaling", "autoProvisioningDefaults", "serviceAccount"),
                compute,
            )
        if get(props, "removeDefaultNodePool") is True:
            return None
        return "node_config.service_account", get(props, "nodeConfig", "serviceAccount"), compute
    return None


def _dedicated_service_account(args: ResourceValidationArgs, report: ReportViolation) -> None:
    found = _workload_identity(args.resource_type, args.props)
    if found is None:
        return
    field, account, fallback = found
    if account is UNKNOWN:
        # Unknown: an account this update creates, so a dedicated one (helpers.default_account_kind).
        if not fallback:
            report(cannot_judge("which service account the cluster's nodes run as", field))
        return
    fix = "create a service account for this agent alone and set it (agentstage: AgentIdentity does this)."
    if not isinstance(account, str) or not account:
        report(f"{field} is not set, so the workload runs as {fallback}; {fix}")
        return
    kind = default_account_kind(account)
    if kind:
        report(f"{field} is {account}, the {kind} service account shared by the whole project; {fix}")


dedicated_service_account = ResourceValidationPolicy(
    name="dedicated-service-account",
    description="Checks that every Cloud Run service, Agent Engine and GKE workload runs as a dedicated service account, never a default Compute Engine or App Engine account.",
    validate=_dedicated_service_account,
    severity=Severity.CRITICAL,
    framework=PolicyComplianceFramework(name=CHECKOV, reference="CKV_GCP_46-48"),
    tags=["identity"],
    remediation_steps="Give each agent its own service account with only the roles it needs.",
)


# --- no-default-service-account-grants --------------------------------------------------


def _no_default_account_grants(args: ResourceValidationArgs, report: ReportViolation) -> None:
    scope = iam_scope(args.resource_type)
    if scope is None:
        return
    question = f"whether a default service account gets a role at {scope} level"
    for g in readable_grants(args.resource_type, args.props, report, question):
        kind = default_account_kind(g.member) if is_service_account(g.member) is True else None
        if kind:
            report(
                f"grants {role_text(g.role)} to {g.member}, the {kind} service account, at {scope} level: every "
                "workload that falls back to it inherits the role; grant the role to a dedicated service account "
                "instead."
            )


no_default_service_account_grants = ResourceValidationPolicy(
    name="no-default-service-account-grants",
    description="Checks that no project, folder or organization role is granted to a default Compute Engine or App Engine service account.",
    validate=_no_default_account_grants,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name=CHECKOV, reference="CKV_GCP_46-48"),
    tags=["identity", "iam"],
    remediation_steps="Remove the grant; grant the role to the workload's dedicated service account.",
)


# --- no-basic-roles ---------------------------------------------------------------------


def _no_basic_roles(args: ResourceValidationArgs, report: ReportViolation) -> None:
    scope = iam_scope(args.resource_type)
    if scope is None:
        return
    question = f"whether a basic role is granted at {scope} level"
    for g in readable_grants(args.resource_type, args.props, report, question):
        if g.role in BASIC_ROLES:
            report(
                f"grants the basic role {g.role} to {member_text(g.member)} at {scope} level, which reaches every "
                f"service in the {scope}; grant the predefined roles the member needs (e.g. roles/aiplatform.user) "
                "instead."
            )


no_basic_roles = ResourceValidationPolicy(
    name="no-basic-roles",
    description="Checks that the basic roles owner, editor and viewer are never granted at project, folder or organization level.",
    validate=_no_basic_roles,
    severity=Severity.CRITICAL,
    framework=PolicyComplianceFramework(name=CHECKOV, reference="CKV_GCP_115-117"),
    tags=["identity", "iam"],
    remediation_steps="Replace the basic role with predefined roles (agentstage: agents.<name>.roles).",
)


# --- no-project-impersonation-roles -----------------------------------------------------

_IMPERSONATION = ("roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator")


def _no_impersonation_roles(args: ResourceValidationArgs, report: ReportViolation) -> None:
    scope = iam_scope(args.resource_type)
    if scope is None:
        return
    question = f"whether an impersonation role is granted at {scope} level"
    for g in readable_grants(args.resource_type, args.props, report, question):
        if g.role in _IMPERSONATION:
            report(
                f"grants {g.role} to {member_text(g.member)} at {scope} level, which lets it act as every service "
                f"account in the {scope}; grant the role on the one service account it needs to use instead."
            )


no_project_impersonation_roles = ResourceValidationPolicy(
    name="no-project-impersonation-roles",
    description="Checks that iam.serviceAccountUser and iam.serviceAccountTokenCreator are granted on single service accounts, never at project, folder or organization level.",
    validate=_no_impersonation_roles,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name=CHECKOV, reference="CKV_GCP_41, CKV_GCP_49"),
    tags=["identity", "iam"],
    remediation_steps="Use gcp.serviceaccount.IAMMember on the service account instead of a project grant.",
)


# --- no-admin-roles-for-service-accounts ------------------------------------------------

_ADMIN = re.compile(r"(?i)admin$")


def _is_admin(role: object) -> object:
    return UNKNOWN if role is UNKNOWN else isinstance(role, str) and bool(_ADMIN.search(role.rsplit("/", 1)[-1]))


def _no_admin_roles(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """An unknown role may be a custom role named ...Admin, and an unknown member a group
    as well as a service account: either is judged only when the other already clears the
    grant (a known non-admin role, a known member that is no service account)."""
    target = iam_target(args.resource_type)
    question = f"whether a service account gets an admin role on the {target}"
    for g in readable_grants(args.resource_type, args.props, report, question):
        account, admin = is_service_account(g.member), _is_admin(g.role)
        if account is False or admin is False:
            continue
        if admin is UNKNOWN:
            about = f"whether the role granted to {member_text(g.member)} on the {target} is an admin role"
            report(cannot_judge(about, "role", fix=KNOWN_ROLE))
        elif account is UNKNOWN:
            about = f"whether the member granted the admin role {g.role} on the {target} is a service account"
            report(cannot_judge(about, g.field, fix=KNOWN_MEMBER))
        else:
            report(
                f"grants the admin role {g.role} to {g.member} on the {target}; a compromised agent could "
                "reconfigure or delete what it administers: grant a narrower role (e.g. a user, viewer or "
                "accessor role) instead."
            )


no_admin_roles_for_service_accounts = ResourceValidationPolicy(
    name="no-admin-roles-for-service-accounts",
    description="Checks that no service account is granted an admin role (a role whose name ends in admin or Admin).",
    validate=_no_admin_roles,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name=CHECKOV, reference="CKV_GCP_42"),
    tags=["identity", "iam"],
    remediation_steps="Grant the least-privileged predefined role that covers what the agent does.",
)


# --- no-service-account-keys ------------------------------------------------------------


def _no_keys(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """The resource type decides; an unknown account only leaves its name out of the message."""
    if args.resource_type == SERVICE_ACCOUNT_KEY:
        account = get(args.props, "serviceAccountId")
        who = f" for {account}" if isinstance(account, str) else ""
        report(
            f"creates a user-managed service account key{who}, a long-lived credential that can leak; remove it "
            "and let the workload use its attached service account (or Workload Identity Federation outside Google Cloud)."
        )


no_service_account_keys = ResourceValidationPolicy(
    name="no-service-account-keys",
    description="Checks that no user-managed service account key is created.",
    validate=_no_keys,
    severity=Severity.CRITICAL,
    framework=PolicyComplianceFramework(name=CHECKOV, reference="CKV2_GCP_3"),
    tags=["identity", "secrets"],
    remediation_steps="Delete the key resource; use attached service accounts or Workload Identity Federation.",
)


# --- secret-accessor-per-secret ---------------------------------------------------------

SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"


def _secret_accessor_per_secret(args: ResourceValidationArgs, report: ReportViolation) -> None:
    scope = iam_scope(args.resource_type)
    if scope is None:
        return
    question = f"whether {SECRET_ACCESSOR} is granted at {scope} level"
    for g in readable_grants(args.resource_type, args.props, report, question):
        if g.role == SECRET_ACCESSOR:
            report(
                f"grants {SECRET_ACCESSOR} to {member_text(g.member)} at {scope} level, which opens every secret in "
                f"the {scope}; grant it on each secret the agent reads (gcp.secretmanager.SecretIamMember) instead."
            )


secret_accessor_per_secret = ResourceValidationPolicy(
    name="secret-accessor-per-secret",
    description="Checks that secretmanager.secretAccessor is granted on individual secrets, never at project, folder or organization level.",
    validate=_secret_accessor_per_secret,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name="Google Cloud Secret Manager best practices", reference="least privilege"),
    tags=["identity", "secrets"],
    remediation_steps="Reference the secret in agents.<name>.secrets; agentstage grants access on that secret only.",
)


# --- allowed-member-domains -------------------------------------------------------------


#: A Kubernetes ServiceAccount of a GKE Workload Identity pool, as IAM names it
#: (https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity).
_WORKLOAD_POOL_MEMBER = re.compile(r"^[a-z][-a-z0-9.:]*\.svc\.id\.goog\[[a-z0-9][-a-z0-9]*/[a-z0-9][-a-z0-9.]*\]$")


def _allowed_member_domains(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """An unknown member has an unknown domain (an account this update creates is a Google
    Cloud service account, but a group it creates may be in any domain): not judged."""
    allowed = [d.lower() for d in args.get_config().get("domains") or []]
    if not allowed:
        return
    target = iam_target(args.resource_type)
    question = f"whether the members granted roles on the {target} are from allowed domains"
    for g in readable_grants(args.resource_type, args.props, report, question):
        if g.member is UNKNOWN:
            about = f"whether the member granted {role_text(g.role)} on the {target} is from an allowed domain"
            report(cannot_judge(about, g.field, fix=KNOWN_MEMBER))
            continue
        found = member_domain(g.member)
        if found is None:
            continue
        kind, domain = found
        if kind == "serviceAccount":
            # Google Cloud service accounts, and Workload Identity Federation for GKE members
            # (<project>.svc.id.goog[<namespace>/<ksa>]): identities of the project's own pool
            if domain.endswith(".gserviceaccount.com") or _WORKLOAD_POOL_MEMBER.match(domain):
                continue
        elif domain in allowed:
            continue
        report(
            f"grants {role_text(g.role)} on the {target} to {g.member}, whose domain {domain} is not allowed; "
            f"grant it to a member of {', '.join(allowed)} or add the domain to this policy's domains config."
        )


allowed_member_domains = ResourceValidationPolicy(
    name="allowed-member-domains",
    description="Checks that IAM members come only from the allowed domains of the policy config (service accounts must be Google Cloud service accounts).",
    validate=_allowed_member_domains,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(
        properties={
            "domains": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "Domains user:, group: and domain: members may come from. Empty: any domain.",
            }
        }
    ),
    framework=PolicyComplianceFramework(
        name="Google Cloud organization policy", reference="iam.allowedPolicyMemberDomains"
    ),
    tags=["identity", "iam"],
    remediation_steps="Grant roles to members of your organisation's domains only.",
)


# --- parameter-reader-own-parameter ----------------------------------------------------

#: Predefined Parameter Manager roles that read a parameter's payload (render, or get in the
#: default FULL view). Source: Parameter Manager "Access control with IAM",
#: https://cloud.google.com/secret-manager/parameter-manager/docs/access-control
PARAMETER_READ_ROLES = (
    "roles/parametermanager.admin",
    "roles/parametermanager.parameterAccessor",
    "roles/parametermanager.parameterViewer",
    "roles/parametermanager.parameterVersionManager",
)
#: A condition clause that names one parameter: ``.../parameters/<id>"`` or, after
#: ``resource.name.extract("/parameters/{x}/...")``, ``== "<id>"``.
_NAMES_ONE_PARAMETER = re.compile(r'/parameters/[A-Za-z0-9_-]+"|==\s*"[A-Za-z0-9_-]+"')


def _limited_to_parameters(expression: str) -> bool:
    """Whether every alternative of a condition names one parameter by ``resource.name``
    (Parameter Manager has no per-parameter IAM: a project grant limited by a condition on
    ``resource.name`` is how one parameter is shared; see components/flags.py)."""
    clauses = [c for c in expression.split("||") if c.strip()]
    return bool(clauses) and all("resource.name" in c and _NAMES_ONE_PARAMETER.search(c) for c in clauses)


def _parameter_reader_own_parameter(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Only service accounts (agent identities; an unknown member is an account this update
    creates) are judged: people reading flags are not what this rule is about."""
    scope = iam_scope(args.resource_type)
    if scope is None:
        return
    question = f"whether a Parameter Manager read role is granted at {scope} level"
    for g in readable_grants(args.resource_type, args.props, report, question):
        if g.role not in PARAMETER_READ_ROLES or is_service_account(g.member) is False:
            continue
        expression = get(args.props, "condition", "expression")
        if expression is UNKNOWN:
            about = f"whether the {g.role} grant to {member_text(g.member)} is limited to one parameter"
            report(cannot_judge(about, "condition.expression"))
            continue
        if isinstance(expression, str) and _limited_to_parameters(expression):
            continue
        report(
            f"grants {g.role} to {member_text(g.member)} at {scope} level without a condition that limits it to "
            f"one parameter, so the identity reads every parameter in the {scope} (other agents' flags too); add a "
            "condition on resource.name naming its own parameter, as AgentFlags does "
            '(resource.name.endsWith("/parameters/<id>")).'
        )


parameter_reader_own_parameter = ResourceValidationPolicy(
    name="parameter-reader-own-parameter",
    description="Checks that a service account granted a Parameter Manager read role at project, folder or organization level is limited by an IAM condition to named parameters.",
    validate=_parameter_reader_own_parameter,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(
        name="Google Cloud Parameter Manager access control", reference="least privilege"
    ),
    tags=["identity", "flags"],
    remediation_steps="Let AgentFlags grant the agent its own flags parameter; remove project-wide Parameter Manager roles.",
)


# --- spend-cap-enforcer-least-privilege ------------------------------------------------

#: The spend-cap enforcer's service account id: ``[<prefix>-]agentstage-caps-<environment>``
#: (components.spend_cap.ENFORCER_ACCOUNT; tests/test_spend_cap_policy.py keeps the two in step).
ENFORCER_ACCOUNT = "agentstage-caps"
_ENFORCER = re.compile(rf"^serviceAccount:(?:[a-z0-9-]+-)?{ENFORCER_ACCOUNT}-[a-z0-9-]+@")


def _enforcer_least_privilege(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """The enforcer acts on capped agents' services and flags; it must never be able to touch
    billing (disable it, move the project, change budgets) nor anything else in the project.
    Unknown members are not judged (no cannot-judge report either): the enforcer's email is
    computed from its account id and always known at plan time, so an unknown one is not it."""
    if iam_target(args.resource_type) == "billing":
        scope = "billing account"
    else:
        scope = iam_scope(args.resource_type)
    found = grants(args.resource_type, args.props)
    for g in found if isinstance(found, list) else []:
        if not (isinstance(g.member, str) and _ENFORCER.match(g.member)):
            continue
        role = role_text(g.role)
        if scope == "billing account" or (isinstance(g.role, str) and g.role.startswith("roles/billing.")):
            report(
                f"grants {role} to the spend-cap enforcer {g.member} on billing; the enforcer caps agents "
                "(traffic, instances, flags) and must never be able to change or disable billing: remove the grant."
            )
        elif scope is not None and not get(args.props, "condition", "expression"):
            report(
                f"grants {role} to the spend-cap enforcer {g.member} at {scope} level without a condition; it "
                "needs roles on the capped services, their identities and flags parameters only: grant on those "
                "resources (or limit the grant with a condition on resource.name)."
            )


spend_cap_enforcer_least_privilege = ResourceValidationPolicy(
    name="spend-cap-enforcer-least-privilege",
    description="Checks that the spend-cap enforcer's service account holds no billing role and no unconditioned project, folder or organization grant.",
    validate=_enforcer_least_privilege,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name="Google Cloud IAM", reference="least privilege"),
    tags=["identity", "cost"],
    remediation_steps="Let AgentSpendCaps grant the enforcer its roles; remove other grants to it.",
)


POLICIES = [
    dedicated_service_account,
    no_default_service_account_grants,
    no_basic_roles,
    no_project_impersonation_roles,
    no_admin_roles_for_service_accounts,
    no_service_account_keys,
    secret_accessor_per_secret,
    parameter_reader_own_parameter,
    allowed_member_domains,
    spend_cap_enforcer_least_privilege,
]
