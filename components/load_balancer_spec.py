"""Specs of an agent's external Application Load Balancer and its Cloud Armor rate limit.

Every limit below is one Google Cloud enforces; each cites where Google publishes it:

- the compute v1 discovery document shipped with google-api-python-client
  (``googleapiclient/discovery_cache/documents/compute.v1.json``): the ``enforceOnKey`` enum and
  the ``exceedAction`` statuses of ``SecurityPolicyRuleRateLimitOptions``;
- Cloud Armor's rate limiting overview (https://cloud.google.com/armor/docs/rate-limiting-overview,
  sections "Throttling traffic" and "Banning clients based on request rates"): the threshold
  intervals, the ban durations, the threshold counts per action and the deny statuses. The
  ``gcloud compute security-policies rules create`` reference lists none of these values (its
  flags take any integer), so it is not a source for them;
- Google-managed SSL certificates (https://cloud.google.com/load-balancing/docs/ssl-certificates/google-managed-certs):
  at most 100 domains per certificate, no wildcard domains.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from components.specbase import SpecIssue, StrictModel

__all__ = [
    "LoadBalancerSpec",
    "RateLimitSpec",
    "RATE_LIMIT_INTERVALS",
    "BAN_DURATIONS",
    "EXCEED_STATUSES",
    "API_KEY_HEADER",
    "check_load_balancer_settings",
]

#: Cloud Armor counts requests over one of these windows, in seconds: "interval_sec ... The value
#: must be 10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, or 3600 seconds", the same
#: list for throttle and rate_based_ban (https://cloud.google.com/armor/docs/rate-limiting-overview).
RATE_LIMIT_INTERVALS = (10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600)
#: How long a rate-based ban lasts after the interval, in seconds: "The ban_duration_sec value must
#: be 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, or 3600 seconds"
#: (https://cloud.google.com/armor/docs/rate-limiting-overview).
BAN_DURATIONS = (60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600)
#: The statuses ``exceedAction: deny(STATUS)`` allows (compute.v1.json,
#: SecurityPolicyRuleRateLimitOptions.exceedAction: "valid values for STATUS are 403, 404, 429, and 502";
#: the same four in https://cloud.google.com/armor/docs/rate-limiting-overview, which recommends 429).
EXCEED_STATUSES = (403, 404, 429, 502)
#: Most requests per interval a throttle rule may count, and a rate-based ban rule
#: (https://cloud.google.com/armor/docs/rate-limiting-overview: "The minimum value is 1 and the
#: maximum value is 1,000,000" for throttle; "The minimum value is 1 request and the maximum value
#: is 10,000 requests" for rate_based_ban).
MAX_REQUESTS = {"throttle": 1_000_000, "ban": 10_000}
#: The header ``key: api-key`` counts by.
API_KEY_HEADER = "x-api-key"
#: An HTTP field name is a token (RFC 9110, section 5.1 and 5.6.2).
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
#: A domain of a Google-managed certificate: a lowercase DNS name, no wildcard.
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
#: Domains one Google-managed SSL certificate may name.
MAX_DOMAINS = 100

#: ``key`` -> Cloud Armor ``enforceOnKey`` (compute.v1.json, SecurityPolicyRuleRateLimitOptions
#: enum: ALL, ASN, HTTP_COOKIE, HTTP_HEADER, HTTP_PATH, IP, REGION_CODE, SNI, TLS_JA3_FINGERPRINT,
#: TLS_JA4_FINGERPRINT, USER_IP, XFF_IP; agentstage offers four): who shares one request budget.
#: Without the header, an HTTP_HEADER key "defaults to ALL" (same enum's description, and
#: https://cloud.google.com/armor/docs/rate-limiting-overview).
KEYS = {"ip": "IP", "xff-ip": "XFF_IP", "all": "ALL", "api-key": "HTTP_HEADER"}


class LoadBalancerSpec(StrictModel):
    """The external Application Load Balancer in front of a Cloud Run agent: a global address,
    an HTTPS forwarding rule with a Google-managed certificate for ``domains``, a URL map, and
    a backend service whose serverless NEG points at the agent's service."""

    domains: list[str] = Field(
        description="Domains the Google-managed certificate covers and clients call, e.g. [support.acme.com]: "
        "1..100 lowercase DNS names, no wildcard. Their DNS A records must point at the load balancer's address "
        "before Google issues the certificate. Required."
    )

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        if not v:
            raise SpecIssue("is empty; give the domain clients call, e.g. [support.acme.com]")
        if len(v) > MAX_DOMAINS:
            raise SpecIssue(f"has {len(v)} domains; a Google-managed certificate covers at most {MAX_DOMAINS}")
        for i, domain in enumerate(v):
            if domain.startswith("*."):
                raise SpecIssue(
                    "is a wildcard domain; Google-managed certificates of a load balancer do not cover wildcards: "
                    "list each domain",
                    path=(i,),
                    value=domain,
                    has_value=True,
                )
            if not _DOMAIN.match(domain):
                raise SpecIssue(
                    "is not a domain name; use a lowercase DNS name such as support.acme.com",
                    path=(i,),
                    value=domain,
                    has_value=True,
                )
        if len(set(v)) != len(v):
            raise SpecIssue("lists a domain twice; list each domain once")
        return v


class RateLimitSpec(StrictModel):
    """A per-client rate limit that Cloud Armor enforces at the load balancer: each client (by
    ``key``) may send ``requests`` per ``interval_seconds``; past that, its requests get
    ``exceed_status`` (throttle), or all of them do for ``ban_seconds`` (ban)."""

    ACTIONS: ClassVar[dict[str, str]] = {"throttle": "throttle", "ban": "rate_based_ban"}

    requests: int = Field(
        description="Requests one client may send per interval: 1..1000000 with action throttle, 1..10000 with "
        "action ban. Required."
    )
    interval_seconds: int = Field(
        default=60,
        description=f"The window the requests are counted over, in seconds: one of "
        f"{', '.join(map(str, RATE_LIMIT_INTERVALS))}. Default: 60.",
    )
    key: str = Field(
        default="ip",
        description="Who one budget belongs to: ip (the client address), xff-ip (the first address of "
        f"X-Forwarded-For, for clients behind a proxy you run), api-key (the {API_KEY_HEADER} header), "
        "header:<name> (any request header), or all (one budget for every client). A request without the header "
        "counts against the shared all budget. Default: ip.",
    )
    action: Literal["throttle", "ban"] = Field(
        default="throttle",
        description="throttle: requests over the limit are refused, the rest pass; ban: a client over the limit is "
        "refused every request for ban_seconds. Default: throttle.",
    )
    ban_seconds: int | None = Field(
        default=None,
        description=f"How long a banned client is refused, with action ban only: one of "
        f"{', '.join(map(str, BAN_DURATIONS))}. Default: 600 with action ban.",
    )
    exceed_status: int = Field(
        default=429,
        description="HTTP status of a refused request: 429 (Too Many Requests), 403, 404 or 502. Default: 429.",
    )

    @field_validator("requests")
    @classmethod
    def _requests(cls, v: int) -> int:
        if v < 1:
            raise SpecIssue("is not a positive number of requests")
        return v

    @field_validator("interval_seconds")
    @classmethod
    def _interval(cls, v: int) -> int:
        if v not in RATE_LIMIT_INTERVALS:
            raise SpecIssue(
                "is not an interval Cloud Armor counts over; allowed: "
                f"{', '.join(map(str, RATE_LIMIT_INTERVALS))} seconds"
            )
        return v

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if v in KEYS:
            return v
        kind, sep, header = v.partition(":")
        if kind == "header" and sep:
            if not _HEADER.match(header):
                raise SpecIssue(
                    "does not name an HTTP header; use header:<name> with a header name of letters, digits and '-', "
                    "e.g. header:x-client-id"
                )
            return v
        raise SpecIssue(f"is not a rate limit key; allowed: {', '.join(KEYS)} or header:<name>")

    @field_validator("exceed_status")
    @classmethod
    def _status(cls, v: int) -> int:
        if v not in EXCEED_STATUSES:
            raise SpecIssue(
                f"is not a status Cloud Armor can deny with; allowed: {', '.join(map(str, EXCEED_STATUSES))} "
                "(429 tells clients to slow down)"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RateLimitSpec:
        most = MAX_REQUESTS[self.action]
        if self.requests > most:
            raise SpecIssue(
                f"is above the {most:,} requests Cloud Armor allows a {self.ACTIONS[self.action]} rule to count; "
                "lower it, or count over a shorter interval_seconds",
                path=("requests",),
                value=self.requests,
                has_value=True,
            )
        if self.ban_seconds is not None and self.action != "ban":
            raise SpecIssue(
                "is set but action is throttle; ban_seconds is how long a banned client is refused: set action: ban, "
                "or remove it",
                path=("ban_seconds",),
                value=self.ban_seconds,
                has_value=True,
            )
        if self.ban_seconds is not None and self.ban_seconds not in BAN_DURATIONS:
            raise SpecIssue(
                f"is not a ban duration Cloud Armor allows; allowed: {', '.join(map(str, BAN_DURATIONS))} seconds",
                path=("ban_seconds",),
                value=self.ban_seconds,
                has_value=True,
            )
        return self

    @property
    def cloud_armor_action(self) -> str:
        """The rule's ``action``: ``throttle`` or ``rate_based_ban``."""
        return self.ACTIONS[self.action]

    @property
    def enforce_on_key(self) -> tuple[str, str | None]:
        """(``enforceOnKey``, ``enforceOnKeyName``) of the rule."""
        if self.key == "api-key":
            return "HTTP_HEADER", API_KEY_HEADER
        if self.key.startswith("header:"):
            return "HTTP_HEADER", self.key.partition(":")[2]
        return KEYS[self.key], None

    @property
    def ban_duration(self) -> int | None:
        """Seconds a banned client is refused (ban only): ``ban_seconds``, default 600."""
        if self.action != "ban":
            return None
        return self.ban_seconds if self.ban_seconds is not None else 600

    @property
    def exceed_action(self) -> str:
        return f"deny({self.exceed_status})"


_LB_INGRESS = "internal-and-cloud-load-balancing"


def check_load_balancer_settings(spec: Any) -> None:
    """The ``load_balancer`` and ``rate_limit`` keys of an ``AgentSpec``: Cloud Run agents only,
    with the ingress that lets a load balancer (and only it, from outside) reach the service;
    a rate limit needs the load balancer Cloud Armor enforces it at."""
    lb, limit = spec.load_balancer, spec.rate_limit
    if spec.runtime != "cloud-run":
        for key, value, first in (("load_balancer", lb, "domains"), ("rate_limit", limit, "requests")):
            if value is not None:
                raise SpecIssue(
                    f"is a Cloud Run setting, and runtime {spec.runtime} does not use it: agentstage builds the load "
                    "balancer and its Cloud Armor rate limit in front of cloud-run agents; remove it",
                    path=(key, first),
                    value=getattr(value, first),
                    has_value=True,
                )
        return
    if lb is not None and spec.ingress != _LB_INGRESS:
        raise SpecIssue(
            f"lets clients past the load balancer: with load_balancer set, ingress must be {_LB_INGRESS}, or "
            "clients bypass the load balancer and its rate limit on the run.app URL; set it, or remove load_balancer",
            path=("ingress",),
            value=spec.ingress,
            has_value=True,
        )
    if limit is not None and lb is None:
        raise SpecIssue(
            "is set but load_balancer is not; Cloud Armor enforces the rate limit at the load balancer: set "
            "load_balancer.domains, or remove rate_limit",
            path=("rate_limit", "requests"),
            value=limit.requests,
            has_value=True,
        )
