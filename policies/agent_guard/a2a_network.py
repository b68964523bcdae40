"""A2A network path: an agent that may invoke an agent with internal ingress can reach it.

Cloud Run admits a request to a service with ingress ``INGRESS_TRAFFIC_INTERNAL_ONLY`` (or
``INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER``, at its run.app URL) from another Cloud Run service only
when the caller sends it into a VPC network (https://cloud.google.com/run/docs/securing/ingress,
setting "Internal"). A run.app URL resolves to public Google addresses, which Direct VPC egress
routes into the VPC only with egress ``ALL_TRAFFIC`` (run v2 ``VpcAccess.egress``:
``PRIVATE_RANGES_ONLY`` routes only private IP ranges; with it the call needs a private DNS zone for
run.app, https://cloud.google.com/run/docs/configuring/networking-best-practices, which a plan does
not show). Without that path the invoker grant lets through a call the network refuses.

The config rule (``agents.<caller>.vpc_egress``) refuses such a stack before it is planned; this rule
holds the same line for programs that compose the components themselves, and for
``pulumi preview --policy-pack``. Who calls whom is read from IAM as in :mod:`a2a`: a
``roles/run.invoker`` member that is one of the stack's service accounts, the caller being the Cloud
Run service whose revision template runs as that account.
"""

from __future__ import annotations

from typing import Any

from a2a import _agent_callers, _agent_emails, invoker_grants, service_names
from helpers import CLOUD_RUN, UNKNOWN, cannot_judge, get, items
from pulumi_policy import (
    PolicyComplianceFramework,
    PolicyResource,
    ReportViolation,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

#: Ingress settings under which a call from another Cloud Run service must come through a VPC.
INTERNAL_INGRESS = ("INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER")


def _routes_through_vpc(service: PolicyResource) -> Any:
    """Whether the service's revisions send all their traffic into a VPC network: True, False or
    UNKNOWN. Direct VPC egress (``networkInterfaces``) or a connector, with egress ALL_TRAFFIC."""
    access = get(service.props, "template", "vpcAccess")
    if access is UNKNOWN:
        return UNKNOWN
    if access is None:
        return False
    egress = get(access, "egress")
    interfaces = items(get(access, "networkInterfaces"))
    connector = get(access, "connector")
    if UNKNOWN in (egress, connector) or interfaces is UNKNOWN:
        return UNKNOWN
    return egress == "ALL_TRAFFIC" and (bool(interfaces) or bool(connector))


def _agent(service: PolicyResource) -> str:
    name = get(service.props, "name")
    return name if isinstance(name, str) else service.name


def agent_calls_through_vpc(args: StackValidationArgs, report: ReportViolation) -> None:
    """A Cloud Run service of the stack whose identity may invoke a Cloud Run service with internal
    ingress sends all its traffic through a VPC network (``template.vpcAccess`` with egress
    ``ALL_TRAFFIC``)."""
    emails = _agent_emails(args.resources)
    runs_as: dict[str, list[PolicyResource]] = {}
    for service in args.resources:
        if service.resource_type == CLOUD_RUN:
            account = get(service.props, "template", "serviceAccount")
            if isinstance(account, str):
                runs_as.setdefault(account, []).append(service)
    grants = invoker_grants(args.resources)  # once, not once per service
    for callee in args.resources:
        if callee.resource_type != CLOUD_RUN:
            continue
        callers, _ = _agent_callers(callee, grants.candidates(callee, service_names(callee)), emails)
        services = [s for email in callers for s in runs_as.get(email, []) if s.urn != callee.urn]
        if not services:
            continue  # no agent of the stack calls it: any ingress will do
        ingress = get(callee.props, "ingress")
        if ingress is UNKNOWN:
            report(cannot_judge(f"whether {_agent(callee)} admits its callers' calls", "ingress"), callee.urn)
            continue
        if ingress not in INTERNAL_INGRESS:
            continue
        for caller in services:
            routed = _routes_through_vpc(caller)
            if routed is True:
                continue
            if routed is UNKNOWN:
                report(
                    cannot_judge(f"whether {_agent(caller)} reaches {_agent(callee)}", "template.vpc_access"),
                    caller.urn,
                )
                continue
            report(
                f"the agent {_agent(caller)} may invoke {_agent(callee)}, whose ingress is {ingress}, but its "
                "revisions do not send all their traffic through a VPC network, so Cloud Run refuses its calls "
                "as external; set template.vpc_access with network interfaces and egress ALL_TRAFFIC (agentstage: "
                f"agents.{_agent(caller)}.vpc_egress with egress: all-traffic).",
                caller.urn,
            )


agent_calls_through_vpc_policy = StackValidationPolicy(
    name="agent-calls-through-vpc",
    description="Checks that an agent that may invoke an agent with internal ingress sends all its traffic through a "
    "VPC network, so that Cloud Run admits its calls.",
    validate=agent_calls_through_vpc,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name="Cloud Run", reference="Restrict network ingress (internal)"),
    tags=["a2a", "network"],
    remediation_steps="Set agents.<caller>.vpc_egress (network or subnetwork, egress: all-traffic) on every agent "
    "that calls an agent with ingress internal or internal-and-cloud-load-balancing.",
)


POLICIES = [agent_calls_through_vpc_policy]
