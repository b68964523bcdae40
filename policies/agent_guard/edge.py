"""Edge: what stands between the internet and an agent. A production agent that clients reach
through a load balancer is rate limited there by Cloud Armor, per client, so one client (or one
runaway loop) cannot exhaust its instances, its model quota or its budget.

The chain the rule follows, from the agent out: the Cloud Run service, a serverless network
endpoint group whose ``cloudRun.service`` names it, a backend service with that group among its
``backends``, and that backend service's ``securityPolicy``: a Cloud Armor security policy
with a ``throttle`` or ``rate_based_ban`` rule (compute v1 ``SecurityPolicyRule.action``, with
``rateLimitOptions``).

Unknown values (see helpers): during a first preview the ids and self links that link the
chain are unknown; the rule then follows the resources' property dependencies (the resources
an input was computed from, which the engine knows whatever their values), as the Pulumi CLI
sends them. What neither a known value nor a dependency decides is reported as not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
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

SERVERLESS_NEG = "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup"
BACKEND_SERVICE = "gcp:compute/backendService:BackendService"
SECURITY_POLICY = "gcp:compute/securityPolicy:SecurityPolicy"
#: Cloud Run ingress that admits traffic from (external) Application Load Balancers.
LB_INGRESS = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
#: The rule actions that limit each client's rate (compute.v1.json, SecurityPolicyRule.action).
RATE_ACTIONS = ("throttle", "rate_based_ban")


def _names(r: PolicyResource) -> list[str]:
    """How other resources may name ``r``: its ``name`` input and its logical name."""
    name = get(r.props, "name")
    return [n for n in (name if isinstance(name, str) else None, r.name) if n]


def _refers(r: PolicyResource, prop: str, value: Any, target: PolicyResource) -> Any:
    """Whether ``r``'s input ``prop`` (whose value, or one element of it, is ``value``) names
    ``target``: True when ``prop`` was computed from ``target`` (a property dependency) or its
    known value is ``target``'s name, id or self link; UNKNOWN when the value is unknown."""
    if any(d.urn == target.urn for d in r.property_dependencies.get(prop) or []):
        return True
    if value is UNKNOWN:
        return UNKNOWN
    if not isinstance(value, str):
        return False
    return any(value == n or value.endswith(f"/{n}") for n in _names(target))


def _any(values: list[Any]) -> Any:
    """True if one is True, else UNKNOWN if one is UNKNOWN, else False."""
    if any(v is True for v in values):
        return True
    return UNKNOWN if any(v is UNKNOWN for v in values) else False


def _both(a: Any, b: Any) -> Any:
    """False if either is False, True if both are True, else UNKNOWN."""
    if a is False or b is False:
        return False
    return True if a is True and b is True else UNKNOWN


def _serves(backend: PolicyResource, neg: PolicyResource) -> Any:
    groups = items(get(backend.props, "backends"))
    if groups is UNKNOWN:
        return _refers(backend, "backends", UNKNOWN, neg)
    return _any([_refers(backend, "backends", get(g, "group"), neg) for g in groups])


def _rate_rule(policy: PolicyResource) -> tuple[Any, list[str]]:
    """Whether the security policy has an enforced rate-based rule (True, False or UNKNOWN),
    and the fields whose unknown values leave it open."""
    rules = items(get(policy.props, "rules"))
    if rules is UNKNOWN:
        return UNKNOWN, ["rules"]
    found: list[Any] = []
    unknown: list[str] = []
    for i, rule in enumerate(rules):
        action = get(rule, "action")
        preview = get(rule, "preview")
        threshold = get(rule, "rateLimitOptions", "rateLimitThreshold", "count")
        if UNKNOWN in (action, preview, threshold):
            unknown.append(f"rules[{i}]")
            found.append(UNKNOWN)
        else:
            found.append(action in RATE_ACTIONS and preview is not True and threshold is not None)
    return _any(found), unknown


def _agent(service: PolicyResource) -> str:
    agent = label(CLOUD_RUN, service.props, LABEL_AGENT)
    return agent if isinstance(agent, str) and agent else "<name>"


Finding = tuple[str, str]  # (message, urn)


def _backend_findings(
    backend: PolicyResource, service: PolicyResource, policies: list[PolicyResource]
) -> list[Finding]:
    """What keeps ``backend`` from rate limiting the clients of ``service``."""
    where = f"the backend service {backend.name}, which serves the production agent service {_names(service)[0]}"
    fix = f"(agentstage: agents.{_agent(service)}.rate_limit)"
    value = get(backend.props, "securityPolicy")
    attached = [p for p in policies if _refers(backend, "securityPolicy", value, p) is True]
    if not attached:
        if value is UNKNOWN:
            return [(cannot_judge(f"whether {where}, has a rate limit", "security_policy"), backend.urn)]
        if not value:
            message = (
                f"{where}, has no Cloud Armor security policy, so every client may send as many requests as it "
                f"likes; attach a security policy with a throttle or rate_based_ban rule {fix}."
            )
        else:
            message = (
                f"{where}, uses the security policy {value}, which this stack does not create, so its rate limit "
                f"cannot be checked; create the security policy with a throttle or rate_based_ban rule here {fix}."
            )
        return [(message, backend.urn)]
    findings: list[Finding] = []
    for policy in attached:
        limited, unknown = _rate_rule(policy)
        if limited is UNKNOWN:
            question = f"whether the security policy {policy.name} of {where}, rate limits clients"
            findings.append((cannot_judge(question, *unknown), policy.urn))
        elif limited is False:
            message = (
                f"the security policy {policy.name} of {where}, has no enforced throttle or rate_based_ban rule "
                "(with rate_limit_options, not in preview), so every client may send as many requests as it "
                f"likes; add one {fix}."
            )
            findings.append((message, policy.urn))
    return findings


def _neg_service(neg: PolicyResource) -> list[Any]:
    return [get(neg.props, "cloudRun", "service")]


def _backend_groups(backend: PolicyResource) -> Any:
    groups = items(get(backend.props, "backends"))
    return groups if groups is UNKNOWN else [get(g, "group") for g in groups]


@dataclass(frozen=True)
class _Edge:
    """The stack's serverless NEGs, backend services and security policies, selected and
    indexed once for all its services: which NEGs may name a service, which backends may name
    a NEG (see :class:`RefIndex`; without it the rule is quadratic in the agents)."""

    negs: RefIndex
    backends: RefIndex
    policies: list[PolicyResource]

    @staticmethod
    def of(resources: list[PolicyResource]) -> _Edge:
        return _Edge(
            RefIndex([r for r in resources if r.resource_type == SERVERLESS_NEG], "cloudRun", _neg_service),
            RefIndex([r for r in resources if r.resource_type == BACKEND_SERVICE], "backends", _backend_groups),
            [r for r in resources if r.resource_type == SECURITY_POLICY],
        )


def _findings(service: PolicyResource, edge: _Edge) -> list[Finding]:
    """What keeps the clients of ``service``, reached through a load balancer, from being rate
    limited: empty when every backend service of the stack that serves it (through a serverless
    NEG) carries a security policy with an enforced rate-based rule.

    Only the NEGs that may name the service, and the backends that may name one of those, are
    asked: for every other one the answer is False, which decides nothing below."""
    policies = edge.policies
    mine = [
        (n, _refers(n, "cloudRun", _neg_service(n)[0], service)) for n in edge.negs.candidates(service, _names(service))
    ]
    # A NEG that does not serve the service (m is False) makes _both False whatever the backend.
    near: set[int] = set()
    for n, m in mine:
        if m is not False:
            near |= edge.backends.indices(n, _names(n))
    backends = [edge.backends.resources[i] for i in sorted(near)]
    serving = [(b, _any([_both(m, _serves(b, n)) for n, m in mine if m is not False])) for b in backends]
    certain = [b for b, s in serving if s is True]
    if certain:
        return [f for b in certain for f in _backend_findings(b, service, policies)]
    maybe = [b for b, s in serving if s is UNKNOWN] + [n for n, m in mine if m is UNKNOWN]
    name = _names(service)[0]
    if maybe:
        question = f"which backend service serves the production agent service {name}"
        return [(cannot_judge(question, *(f"the references of {r.name}" for r in maybe)), service.urn)]
    message = (
        f"the production agent service {name} is reached through a load balancer (ingress {LB_INGRESS}), but no "
        "backend service of this stack serves it, so no per-client rate limit can be checked; build the load "
        f"balancer here with a Cloud Armor rate limit (agentstage: agents.{_agent(service)}.load_balancer and "
        "rate_limit)."
    )
    return [(message, service.urn)]


def agent_rate_limit(args: StackValidationArgs, report: ReportViolation) -> None:
    """Mandatory in production (``AgentLoadBalancer`` builds the chain from
    ``agents.<name>.load_balancer`` and ``rate_limit``); enforcement comes from the per-stack
    policy config.

    A production Cloud Run service with ingress ``INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER`` is
    reached from the internet through a load balancer only. Every backend service that serves
    it (through a serverless NEG) must carry a security policy with an enforced rate-based
    rule; a service that no backend of this stack serves cannot be checked and is reported.

    An unknown ingress or ``environment`` label matters only when the service is not rate
    limited: a rate-limited service passes whatever they turn out to be."""
    config = args.get_config()
    edge = _Edge.of(args.resources)
    for service in args.resources:
        if service.resource_type != CLOUD_RUN:
            continue
        ingress = get(service.props, "ingress")
        if ingress is not UNKNOWN and ingress != LB_INGRESS:
            continue
        production = is_production(CLOUD_RUN, service.props, config)
        if production is False:
            continue
        findings = _findings(service, edge)
        if not findings:
            continue
        if production is UNKNOWN:
            report(environment_unknown(CLOUD_RUN), service.urn)
        elif ingress is UNKNOWN:
            question = "whether the production agent service is reached through a load balancer"
            report(cannot_judge(question, "ingress"), service.urn)
        else:
            for message, urn in findings:
                report(message, urn)


agent_rate_limit_policy = StackValidationPolicy(
    name="agent-rate-limit",
    description="Checks that every production agent reached through a load balancer is rate limited per client by a Cloud Armor throttle or rate-based ban rule on its backend service.",
    validate=agent_rate_limit,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(properties=dict(PRODUCTION_ENVIRONMENTS)),
    framework=PolicyComplianceFramework(
        name="Google Cloud Armor rate limiting", reference="throttle and rate-based ban rules"
    ),
    tags=["security", "rate-limit"],
    remediation_steps="Set agents.<name>.load_balancer and agents.<name>.rate_limit.",
)


POLICIES = [agent_rate_limit_policy]
