"""Spec of an agent's Direct VPC egress, and the rule that makes an A2A call reachable.

Why it exists: Cloud Run admits a request to a service with ``ingress: internal`` (or
``internal-and-cloud-load-balancing``) from another Cloud Run service only when the caller sends
it into a VPC network: "Requests to Cloud Run from Cloud Run ... must go to the VPC network to be
considered internal. To route requests to the VPC network, use Direct VPC egress or a Serverless
VPC Access connector and enable Private Google Access on the subnet" (Cloud Run, "Restrict network
ingress for Cloud Run", https://cloud.google.com/run/docs/securing/ingress, setting "Internal").
Without it the callee answers the orchestrator's calls with 404/403, however the invoker IAM
grants are set.

Which egress routes such a call: the callee's URL is ``https://<service>-<hash>.<region>.run.app``,
which resolves to public Google addresses. ``PRIVATE_RANGES_ONLY`` sends only private IP ranges
into the VPC (run v2 discovery document, ``GoogleCloudRunV2VpcAccess.egress``: "Only private IP
ranges are routed through the VPC connector"), so the call would leave the normal way and count
as external, unless a private DNS zone maps ``run.app`` to the Private Google Access ranges
199.36.153.8/30 or 199.36.153.4/30 (Cloud Run, "Networking best practices",
https://cloud.google.com/run/docs/configuring/networking-best-practices). agentstage cannot see
DNS zones, so it requires ``ALL_TRAFFIC`` for a caller of an internal agent: that route needs no
DNS set-up, only Private Google Access on the subnet (same page).

Values and their sources:

- ``egress``: the enum of ``GoogleCloudRunV2VpcAccess.egress`` in the run v2 discovery document
  shipped with google-api-python-client (``ALL_TRAFFIC``, ``PRIVATE_RANGES_ONLY``; unset means
  ``PRIVATE_RANGES_ONLY``), the values pulumi-gcp's ``ServiceTemplateVpcAccessArgs.egress`` lists;
- ``network``, ``subnetwork``: "At least one of network or subnetwork must be specified ... If
  network is not specified, it will be looked up from the subnetwork ... If subnetwork is not
  specified, the subnetwork with the same name with the network will be used"
  (``GoogleCloudRunV2NetworkInterface``, same document); a name follows Compute Engine's rule for
  ``Network.name`` and ``Subnetwork.name`` (compute v1 discovery document: 1-63 characters,
  ``[a-z]([-a-z0-9]*[a-z0-9])?``), a Shared VPC one is the full resource name in the host project;
- ``network_tags``: Compute Engine ``Tags.items`` (compute v1 discovery document: "Each tag must
  be 1-63 characters long, and comply with RFC1035").
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.specbase import SpecIssue, StrictModel

__all__ = ["INTERNAL_INGRESS", "VPC_EGRESS_VALUES", "VpcEgressSpec", "check_call_paths", "check_vpc_egress"]

#: ``vpc_egress.egress`` -> the run v2 ``VpcAccess.egress`` enum value.
VPC_EGRESS_VALUES: dict[str, str] = {"all-traffic": "ALL_TRAFFIC", "private-ranges-only": "PRIVATE_RANGES_ONLY"}
#: Ingress settings under which Cloud Run treats a call from another Cloud Run service as external
#: unless it comes through a VPC network (https://cloud.google.com/run/docs/securing/ingress).
INTERNAL_INGRESS = ("internal", "internal-and-cloud-load-balancing")

#: A Compute Engine resource name (compute v1 ``Network.name``, ``Subnetwork.name``, ``Tags.items``).
_NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_PROJECT = r"[a-z][-a-z0-9]{4,28}[a-z0-9]"
_NETWORK = re.compile(rf"^(?:{_NAME}|projects/{_PROJECT}/global/networks/{_NAME})$")
_SUBNETWORK = re.compile(
    rf"^(?:{_NAME}|projects/{_PROJECT}/regions/(?P<region>[a-z]+-[a-z]+[0-9]+)/subnetworks/{_NAME})$"
)
_TAG = re.compile(rf"^{_NAME}$")


class VpcEgressSpec(StrictModel):
    """Direct VPC egress of a Cloud Run agent (the revision template's ``vpc_access``): its
    instances get addresses in a VPC subnet and send their outbound traffic through it."""

    network: str | None = Field(
        default=None,
        description="VPC network: a name (e.g. agents-vpc) or, for Shared VPC, "
        "projects/<host project>/global/networks/<name>. Default: the subnetwork's network.",
    )
    subnetwork: str | None = Field(
        default=None,
        description="Subnet in the stack's region the instances take addresses from: a name or "
        "projects/<host project>/regions/<region>/subnetworks/<name>. Give network, subnetwork or both. "
        "Default: the subnet named like the network.",
    )
    egress: Literal["all-traffic", "private-ranges-only"] = Field(
        default="private-ranges-only",
        description="What goes through the VPC: all-traffic | private-ranges-only. An agent that calls an "
        "agent with ingress internal or internal-and-cloud-load-balancing needs all-traffic. "
        "Default: private-ranges-only (Cloud Run's default).",
    )
    network_tags: list[str] = Field(
        default_factory=list,
        description="Network tags of the instances, for firewall rules (lowercase names, 1-63 characters). "
        "Default: [].",
    )

    @field_validator("network")
    @classmethod
    def _network(cls, v: str | None) -> str | None:
        if v is not None and not _NETWORK.match(v):
            raise SpecIssue(
                "is not a VPC network; use a name of 1-63 lowercase letters, digits or '-' starting with a letter, "
                "or projects/<project>/global/networks/<name>"
            )
        return v

    @field_validator("subnetwork")
    @classmethod
    def _subnetwork(cls, v: str | None) -> str | None:
        if v is not None and not _SUBNETWORK.match(v):
            raise SpecIssue(
                "is not a VPC subnetwork; use a name of 1-63 lowercase letters, digits or '-' starting with a "
                "letter, or projects/<project>/regions/<region>/subnetworks/<name>"
            )
        return v

    @field_validator("egress", mode="before")
    @classmethod
    def _egress(cls, v: Any) -> Any:
        if v not in VPC_EGRESS_VALUES:
            raise SpecIssue(f"is not a VPC egress setting; allowed: {', '.join(VPC_EGRESS_VALUES)}")
        return v

    @field_validator("network_tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        for i, tag in enumerate(v):
            if not _TAG.match(tag):
                raise SpecIssue(
                    "is not a network tag; use 1-63 lowercase letters, digits or '-', starting with a letter",
                    path=(i,),
                    value=tag,
                    has_value=True,
                )
            if tag in v[:i]:
                raise SpecIssue("is listed twice; name each tag once", path=(i,), value=tag, has_value=True)
        return v

    @model_validator(mode="after")
    def _where(self) -> VpcEgressSpec:
        if self.network is None and self.subnetwork is None:
            raise SpecIssue(
                "is not set, and neither is subnetwork; Cloud Run needs at least one to place the instances in a "
                "VPC: set network, subnetwork or both",
                path=("network",),
                value=None,
                has_value=True,
            )
        return self

    @property
    def egress_value(self) -> str:
        """The run v2 ``VpcAccess.egress`` value."""
        return VPC_EGRESS_VALUES[self.egress]

    @property
    def region(self) -> str | None:
        """The region a full subnetwork name names (None for a bare name: the service's region)."""
        m = _SUBNETWORK.match(self.subnetwork or "")
        return m.group("region") if m else None

    def vpc_access(self) -> dict[str, Any]:
        """The revision template's ``vpc_access`` (pulumi-gcp ``ServiceTemplateVpcAccessArgs``,
        snake_case keys). Egress is always sent, so the plan says what Cloud Run would default to."""
        interface: dict[str, Any] = {}
        if self.network is not None:
            interface["network"] = self.network
        if self.subnetwork is not None:
            interface["subnetwork"] = self.subnetwork
        if self.network_tags:
            interface["tags"] = list(self.network_tags)
        return {"network_interfaces": [interface], "egress": self.egress_value}


def check_vpc_egress(agent_spec: Any) -> None:
    """``vpc_egress`` is a Cloud Run revision setting: refused on the other runtimes."""
    if agent_spec.vpc_egress is not None and agent_spec.runtime != "cloud-run":
        raise SpecIssue(
            f"is a Cloud Run setting, and runtime {agent_spec.runtime} does not use it: Direct VPC egress is set "
            "on a Cloud Run revision; remove it",
            path=("vpc_egress", "egress"),
            value=agent_spec.vpc_egress.egress,
            has_value=True,
        )


def check_call_paths(platform: Any) -> None:
    """Every A2A call to an agent with internal ingress can reach it: the caller sends all its
    traffic through a VPC subnet of the stack's region (see the module docstring for Google's
    rules). Runs after :func:`components.registry_spec.check_calls`, so every callee exists."""
    for agent, spec in platform.agents.items():
        egress = spec.vpc_egress
        if egress is not None and egress.region is not None and egress.region != platform.region:
            raise SpecIssue(
                f"is in region {egress.region}, and the agent's service runs in {platform.region}; Direct VPC "
                "egress takes addresses from a subnet in the service's region: use a subnetwork there",
                path=("agents", agent, "vpc_egress", "subnetwork"),
                value=egress.subnetwork,
                has_value=True,
            )
        for i, callee in enumerate(spec.calls):
            ingress = platform.agents[callee].ingress
            if ingress not in INTERNAL_INGRESS:
                continue
            if egress is None:
                raise SpecIssue(
                    f"has ingress {ingress}: Cloud Run admits a call from another Cloud Run service only when it "
                    f"comes through a VPC network, and {agent} has no VPC egress, so the call would be refused; set "
                    f"agents.{agent}.vpc_egress with a network or subnetwork (Private Google Access on) and "
                    "egress: all-traffic",
                    path=("agents", agent, "calls", i),
                    value=callee,
                    has_value=True,
                )
            if egress.egress != "all-traffic":
                raise SpecIssue(
                    f"sends only private IP ranges through the VPC, and {agent} calls {callee} (ingress {ingress}) "
                    "at its run.app URL, a public Google address: the call would leave outside the VPC and be "
                    "refused as external; set egress: all-traffic",
                    path=("agents", agent, "vpc_egress", "egress"),
                    value=egress.egress,
                    has_value=True,
                )
