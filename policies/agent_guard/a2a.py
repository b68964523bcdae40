"""A2A: agents that other agents call. A production agent that another agent of the stack may
invoke is discoverable: it has an A2A agent card in the stack's registry, so its callers find
its URL, version, skills and the authentication it requires there rather than in hard-coded
config (A2A protocol, "Agent Discovery").

Who calls whom is read from IAM, which is what actually lets a call through: a Cloud Run
``ServiceIamMember`` (or ``ServiceIamBinding``) with ``roles/run.invoker`` on the service whose
member is ``serviceAccount:<email>`` of a service account this stack creates (an agent's
identity: ``<account_id>@<project>.iam.gserviceaccount.com``, the email Google gives a
user-managed service account). The card is a Cloud Storage object named
``<agent>/.well-known/agent-card.json`` (the A2A well-known path under the agent's name, the
``agent`` label of its service), as agentstage's ``AgentRegistry`` publishes it.

Unknown values (see helpers): during a first preview the service name an IAM member refers to
may be unknown; the rule then follows the member resource's property dependencies. An unknown
member is not an agent identity of the stack (agentstage computes their emails from inputs, so
they are known at plan time). An unknown role or service name of an agent identity's grant, or
an unknown object name, that decides the verdict is reported as not judged.
"""

from __future__ import annotations

from typing import Any

from helpers import (
    CLOUD_RUN,
    LABEL_AGENT,
    PRODUCTION_ENVIRONMENTS,
    UNKNOWN,
    RefIndex,
    cannot_judge,
    environment_unknown,
    get,
    is_production,
    items,
    label,
)
from pulumi_policy import (
    PolicyComplianceFramework,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

SERVICE_ACCOUNT = "gcp:serviceaccount/account:Account"
RUN_INVOKER_MEMBER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
RUN_INVOKER_BINDING = "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding"
BUCKET_OBJECT = "gcp:storage/bucketObject:BucketObject"
INVOKER = "roles/run.invoker"
#: Where A2A clients find an agent's card, relative to its base URL.
CARD_PATH = ".well-known/agent-card.json"


def _agent_emails(resources: list[PolicyResource]) -> set[str]:
    """The emails of the service accounts this stack creates (known account id and project)."""
    out = set()
    for r in resources:
        if r.resource_type != SERVICE_ACCOUNT:
            continue
        account, project = get(r.props, "accountId"), get(r.props, "project")
        if isinstance(account, str) and isinstance(project, str):
            out.add(f"{account}@{project}.iam.gserviceaccount.com")
    return out


def _names_service(member: PolicyResource, service: PolicyResource) -> Any:
    """Whether the IAM resource ``member`` is on ``service``: True, False or UNKNOWN."""
    if any(d.urn == service.urn for d in member.property_dependencies.get("name") or []):
        return True
    value = get(member.props, "name")
    if value is UNKNOWN:
        return UNKNOWN
    return isinstance(value, str) and any(
        value == n or value.endswith(f"/services/{n}") for n in service_names(service)
    )


def service_names(service: PolicyResource) -> list[str]:
    """How an IAM member may name the Cloud Run service: its name input and its logical name."""
    name = get(service.props, "name")
    return [n for n in (name if isinstance(name, str) else None, service.name) if n]


def _members(r: PolicyResource) -> list[Any]:
    if r.resource_type == RUN_INVOKER_MEMBER:
        return [get(r.props, "member")]
    found = items(get(r.props, "members"))
    return [UNKNOWN] if found is UNKNOWN else list(found)


def invoker_grants(resources: list[PolicyResource]) -> RefIndex:
    """The Cloud Run invoker members and bindings of the stack (what :func:`_agent_callers`
    reads), indexed by the service they name: ``grants.candidates(service,
    service_names(service))`` are those that may be on ``service``, in stack order."""
    return RefIndex(
        [r for r in resources if r.resource_type in (RUN_INVOKER_MEMBER, RUN_INVOKER_BINDING)],
        "name",
        lambda r: [get(r.props, "name")],
        separator="/services/",
    )


def _agent_callers(
    service: PolicyResource, resources: list[PolicyResource], emails: set[str]
) -> tuple[list[str], list[str]]:
    """The agent identities that may invoke ``service`` and the IAM resources whose unknown
    values leave that open."""
    callers: list[str] = []
    open_: list[str] = []
    for r in resources:
        if r.resource_type not in (RUN_INVOKER_MEMBER, RUN_INVOKER_BINDING):
            continue
        role = get(r.props, "role")
        if role is not UNKNOWN and role != INVOKER:
            continue
        on = _names_service(r, service)
        if on is False:
            continue
        for member in _members(r):
            # an unknown member is none of the stack's agent identities: their emails are known
            # at plan time (computed from account id and project), unlike, say, a frontend's
            # identity taken from another stack's output
            if isinstance(member, str) and member.startswith("serviceAccount:") and member[15:] in emails:
                if on is True and role is not UNKNOWN:
                    callers.append(member[15:])
                else:
                    open_.append(r.name)
    return sorted(set(callers)), sorted(set(open_))


def _has_card(agent: str, resources: list[PolicyResource]) -> Any:
    found: list[Any] = []
    for r in resources:
        if r.resource_type != BUCKET_OBJECT:
            continue
        name = get(r.props, "name")
        found.append(UNKNOWN if name is UNKNOWN else name == f"{agent}/{CARD_PATH}")
    if any(f is True for f in found):
        return True
    return UNKNOWN if any(f is UNKNOWN for f in found) else False


def a2a_agent_card(args: StackValidationArgs, report: ReportViolation) -> None:
    """Mandatory in production (``AgentRegistry`` publishes the cards from
    ``agents.<name>.card``); enforcement comes from the per-stack policy config.

    A production Cloud Run service that an agent identity of this stack may invoke (a
    ``roles/run.invoker`` member that is one of the stack's service accounts: agentstage grants
    those from ``agents.<caller>.calls``, or they are listed in ``invokers``) must have its
    card object ``<agent>/.well-known/agent-card.json``."""
    config = args.get_config()
    emails = _agent_emails(args.resources)
    # The helpers look at invoker grants and bucket objects only: select those once, not once
    # per service (a stack of 1,000 agents has 40,000 resources).
    grants = invoker_grants(args.resources)
    objects = [r for r in args.resources if r.resource_type == BUCKET_OBJECT]
    for service in args.resources:
        if service.resource_type != CLOUD_RUN:
            continue
        production = is_production(CLOUD_RUN, service.props, config)
        if production is False:
            continue
        callers, open_ = _agent_callers(service, grants.candidates(service, service_names(service)), emails)
        if not callers and not open_:
            continue
        agent = label(CLOUD_RUN, service.props, LABEL_AGENT)
        if not isinstance(agent, str) or not agent:
            agent = service.name
        card = _has_card(agent, objects)
        if card is True:
            continue
        if production is UNKNOWN:
            report(environment_unknown(CLOUD_RUN), service.urn)
        elif not callers:
            question = f"whether another agent may invoke the production agent {agent}"
            report(cannot_judge(question, *(f"the role or service of {name}" for name in open_)), service.urn)
        elif card is UNKNOWN:
            report(cannot_judge(f"whether the agent {agent} has a card", "the names of the card objects"), service.urn)
        else:
            report(
                f"the production agent {agent} is called by other agents ({', '.join(callers)}) but has no A2A agent "
                f"card in the registry ({agent}/{CARD_PATH}), so its callers cannot discover its URL, version, skills "
                f"or how to authenticate; publish one (agentstage: agents.{agent}.card).",
                service.urn,
            )


a2a_agent_card_policy = StackValidationPolicy(
    name="a2a-agent-card",
    description="Checks that every production agent that other agents of the stack may invoke has an A2A agent card in the agent registry.",
    validate=a2a_agent_card,
    severity=Severity.MEDIUM,
    config_schema=PolicyConfigSchema(properties=dict(PRODUCTION_ENVIRONMENTS)),
    framework=PolicyComplianceFramework(name="A2A protocol", reference="Agent Discovery (agent cards)"),
    tags=["a2a", "discovery"],
    remediation_steps="Set agents.<name>.card (description and skills) for every agent that another agent calls.",
)


POLICIES = [a2a_agent_card_policy]
