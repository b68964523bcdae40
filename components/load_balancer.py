"""AgentLoadBalancer: the external Application Load Balancer path in front of one Cloud Run
agent, with its Cloud Armor rate limit.

The path, client to agent: a global address and an HTTPS forwarding rule on port 443, a
target HTTPS proxy with a Google-managed certificate for the agent's domains, a URL map, a
global backend service (``EXTERNAL_MANAGED``, request logging on) that carries the Cloud Armor
security policy, and a serverless network endpoint group that points at the Cloud Run service.
The service's ingress is ``internal-and-cloud-load-balancing``, so from the internet this path
is the only way in, and the rate limit cannot be bypassed on the ``run.app`` URL.

Google's shapes, per resource: compute v1 ``RegionNetworkEndpointGroup`` (``networkEndpointType:
SERVERLESS``, ``cloudRun.service``), ``BackendService``, ``UrlMap``, ``SslCertificate`` (type
``MANAGED``), ``TargetHttpsProxy``, ``Address``, ``ForwardingRule`` and ``SecurityPolicy``
(``googleapiclient/discovery_cache/documents/compute.v1.json``; tests/conformance validates each
planned request against it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import pulumi
from pulumi_gcp import cloudrunv2 as run
from pulumi_gcp import compute

from components.contract import COMPONENT_TYPES
from components.errors import ComponentError
from components.spec import AgentSpec

__all__ = ["AgentLoadBalancer", "DEFAULT_RULE_PRIORITY", "RATE_LIMIT_PRIORITY", "security_policy_rules"]

#: The default rule of a security policy has the lowest priority there is (compute.v1.json,
#: SecurityPolicyRule.priority: "between 0 and 2147483647 ... 2147483647 is the lowest
#: priority"); Cloud Armor requires one.
DEFAULT_RULE_PRIORITY = 2147483647
#: The rate-based rule, by action: evaluated before the default rule, with room for rules a team
#: adds first. Cloud Armor refuses to turn a rate_based_ban rule into a throttle rule, though it
#: allows the reverse ("When you configure a rule with a rate-based ban action, you can't change it
#: to a throttle action later. However, ... with a throttle action, you can change it to a
#: rate-based ban action later", https://cloud.google.com/armor/docs/rate-limiting-overview), so
#: each action has its own priority: switching actions either way replaces the rule (the provider
#: removes one priority and adds the other) instead of patching it.
RATE_LIMIT_PRIORITY = {"throttle": 1000, "rate_based_ban": 1001}
#: Every client address (the basic match ``SRC_IPS_V1`` with ``srcIpRanges: ["*"]``).
_EVERY_CLIENT = {"versioned_expr": "SRC_IPS_V1", "config": {"src_ip_ranges": ["*"]}}
#: Compute resource names: RFC 1035 labels of at most 63 characters.
NAME_MAX = 63


def security_policy_rules(spec: AgentSpec) -> list[dict[str, object]]:
    """The security policy's rules as pulumi-gcp input data: the rate-based rule from
    ``spec.rate_limit`` (none without one) and the default rule, which lets every request the
    rules above let through reach the agent."""
    rules: list[dict[str, object]] = []
    limit = spec.rate_limit
    if limit is not None:
        key, key_name = limit.enforce_on_key
        options: dict[str, object] = {
            "conform_action": "allow",
            "exceed_action": limit.exceed_action,
            "enforce_on_key": key,
            "rate_limit_threshold": {"count": limit.requests, "interval_sec": limit.interval_seconds},
        }
        if key_name is not None:
            options["enforce_on_key_name"] = key_name
        if limit.ban_duration is not None:
            options["ban_duration_sec"] = limit.ban_duration
        per = f"{limit.requests} requests per {limit.interval_seconds} s per {limit.key}"
        rules.append(
            {
                "priority": RATE_LIMIT_PRIORITY[limit.cloud_armor_action],
                "action": limit.cloud_armor_action,
                "description": f"agentstage rate limit: {per}, then {limit.exceed_action}",
                "match": _EVERY_CLIENT,
                "rate_limit_options": options,
            }
        )
    rules.append(
        {
            "priority": DEFAULT_RULE_PRIORITY,
            "action": "allow",
            "description": "default rule: allow what the rules above let through",
            "match": _EVERY_CLIENT,
        }
    )
    return rules


def _cert_name(service_name: str, domains: list[str]) -> str:
    """A managed certificate's domains cannot change in place: a new set of domains is a new
    certificate, named by a digest of the domains, so it is created (and the proxy moved to it)
    before the old one is deleted, and the same domains always give the same name."""
    digest = hashlib.sha256("\n".join(domains).encode()).hexdigest()[:8]
    return f"{service_name}-cert-{digest}"


class AgentLoadBalancer(pulumi.ComponentResource):
    """The external Application Load Balancer of one Cloud Run agent (``spec.load_balancer``),
    with a Cloud Armor security policy when ``spec.rate_limit`` is set.

    Children, named ``<agent>-<role>`` (physical names ``<service>-<role>``): ``-neg`` (the
    serverless NEG on the service), ``-armor`` (the security policy: the rate-based rule, then
    the default rule), ``-backend`` (the backend service), ``-urlmap``, ``-cert`` (the managed
    certificate), ``-https-proxy``, ``-ip`` (the global address) and ``-https`` (the forwarding
    rule on 443).

    Outputs: ``url`` (``https://<first domain>``, resolves once the forwarding rule exists),
    ``ip_address`` (the address to point the domains' DNS A records at), ``security_policy``
    (the security policy's self link, or None without a rate limit).
    """

    url: pulumi.Output[str]
    ip_address: pulumi.Output[str]
    security_policy: pulumi.Output[str | None]

    def __init__(
        self,
        name: str,
        *,
        spec: AgentSpec,
        service: run.Service,
        service_name: str,
        project: str,
        region: str,
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["AgentLoadBalancer"], name, None, opts)
        lb = spec.load_balancer
        if lb is None:
            raise ComponentError(
                "AgentLoadBalancer", name, "spec.load_balancer is not set (agents.<name>.load_balancer)"
            )
        cert_name = _cert_name(service_name, lb.domains)
        if len(cert_name) > NAME_MAX:
            raise ComponentError(
                "AgentLoadBalancer",
                name,
                f"the certificate name {cert_name!r} is longer than {NAME_MAX} characters; shorten the service name",
            )
        child = pulumi.ResourceOptions(parent=self)
        what = f"{name} agent. Managed by agentstage."

        self.neg = compute.RegionNetworkEndpointGroup(
            f"{name}-neg",
            name=f"{service_name}-neg",
            project=project,
            region=region,
            description=what,
            network_endpoint_type="SERVERLESS",
            cloud_run={"service": service.name},
            opts=child,
        )
        self.armor: compute.SecurityPolicy | None = None
        if spec.rate_limit is not None:
            self.armor = compute.SecurityPolicy(
                f"{name}-armor",
                name=f"{service_name}-armor",
                project=project,
                description=f"{name} agent: per-client rate limit. Managed by agentstage.",
                type="CLOUD_ARMOR",
                labels=dict(labels),
                rules=security_policy_rules(spec),
                opts=child,
            )
        # A backend service with a serverless NEG takes no health checks, no timeout_sec ("Timeout
        # sec is not supported for a backend service with Serverless network endpoint groups"; the
        # timeout is a fixed 60 minutes) and no balancing mode (RATE, UTILIZATION, CONNECTION "have
        # no effect"), and the NEG has no port (compute.v1.json, BackendService.portName: "no
        # meaning if the backends are NEGs"): none is set here
        # (https://cloud.google.com/load-balancing/docs/negs/serverless-neg-concepts, "Limitations
        # with backend services"). That page sets no protocol rule; Google's gcloud example for a
        # serverless NEG backend leaves --protocol at its default
        # (https://cloud.google.com/load-balancing/docs/https/setting-up-https-serverless, classic LB):
        # HTTPS is one of BackendService.protocol's values (compute.v1.json); that a serverless NEG
        # needs it (or any one protocol) is unconfirmed in Google's docs.
        self.backend = compute.BackendService(
            f"{name}-backend",
            name=f"{service_name}-backend",
            project=project,
            description=what,
            load_balancing_scheme="EXTERNAL_MANAGED",
            protocol="HTTPS",
            backends=[{"group": self.neg.id}],
            security_policy=self.armor.self_link if self.armor is not None else None,
            # every request, with the Cloud Armor verdict (enforcedSecurityPolicy), in Cloud Logging
            log_config={"enable": True, "sample_rate": 1.0},
            opts=child,
        )
        self.url_map = compute.URLMap(
            f"{name}-urlmap",
            name=f"{service_name}-urlmap",
            project=project,
            description=what,
            default_service=self.backend.id,
            opts=child,
        )
        self.certificate = compute.ManagedSslCertificate(
            f"{name}-cert",
            name=cert_name,
            project=project,
            description=what,
            type="MANAGED",
            managed={"domains": list(lb.domains)},
            opts=child,
        )
        self.proxy = compute.TargetHttpsProxy(
            f"{name}-https-proxy",
            name=f"{service_name}-https-proxy",
            project=project,
            description=what,
            url_map=self.url_map.id,
            ssl_certificates=[self.certificate.id],
            opts=child,
        )
        self.address = compute.GlobalAddress(
            f"{name}-ip",
            name=f"{service_name}-ip",
            project=project,
            description=what,
            address_type="EXTERNAL",
            ip_version="IPV4",
            labels=dict(labels),
            opts=child,
        )
        self.forwarding_rule = compute.GlobalForwardingRule(
            f"{name}-https",
            name=f"{service_name}-https",
            project=project,
            description=what,
            load_balancing_scheme="EXTERNAL_MANAGED",
            ip_protocol="TCP",
            port_range="443",
            ip_address=self.address.id,
            target=self.proxy.id,
            labels=dict(labels),
            opts=child,
        )

        domain = lb.domains[0]
        self.url = self.forwarding_rule.id.apply(lambda _: f"https://{domain}")
        self.ip_address = self.address.address
        self.security_policy = self.armor.self_link if self.armor is not None else pulumi.Output.from_input(None)
        self.register_outputs({"url": self.url, "ip_address": self.ip_address, "security_policy": self.security_policy})
