"""AgentRegistry: who may call whom over A2A, and the agent card of every agent that publishes one.

An A2A client discovers an agent by fetching its agent card, a JSON document at
``<base URL>/.well-known/agent-card.json`` (A2A protocol, "Agent Discovery"; the path is the
a2a-sdk's ``AGENT_CARD_WELL_KNOWN_PATH``). The registry publishes each card as an object of one
Cloud Storage bucket per environment, ``<agent>/.well-known/agent-card.json``, so the base URL
of an agent's card is ``https://storage.googleapis.com/<bucket>/<agent>`` and the a2a-sdk's own
``A2ACardResolver`` reads it as it reads any agent's. Why a bucket and not the agent serving its
own card: the card names the agent's URL, which Cloud Run assigns on creation (an output), while
every value of a revision template must be known when the program runs (its name is a digest of
the template); and a registry in one place lets an orchestrator list the agents it may route to
without calling each of them. The cards are also the stack output ``registry``.

Cards are built with the a2a-sdk's own types (``a2a.types.AgentCard``...) and serialised by the
SDK's own ``agent_card_to_dict``, the function its server uses to serve a card.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import cloudrunv2 as run

from components.contract import COMPONENT_TYPES
from components.errors import ComponentError
from components.registry_spec import AgentCardSpec
from components.spec import AgentSpec

__all__ = [
    "AgentRegistry",
    "CARD_PATH",
    "GOOGLE_ID_TOKEN",
    "REGISTRY_READER",
    "RegisteredAgent",
    "build_card",
    "card_dict",
    "card_digest",
    "card_object_name",
    "registry_bucket_name",
]

INVOKER = "roles/run.invoker"
#: Read the cards, nothing else (storage.objects.get, storage.objects.list).
REGISTRY_READER = "roles/storage.objectViewer"
#: Where A2A clients look for an agent's card, relative to its base URL (a2a-sdk
#: ``a2a.utils.constants.AGENT_CARD_WELL_KNOWN_PATH``, without its leading '/').
CARD_PATH = ".well-known/agent-card.json"
#: The card's security scheme name. Cloud Run's IAM check admits a request that carries a
#: Google-signed OpenID Connect ID token whose audience is the service URL, from an identity with
#: roles/run.invoker (Cloud Run docs, "Authenticating service-to-service"): an OpenID Connect
#: scheme with Google's discovery document.
GOOGLE_ID_TOKEN = "google-id-token"
GOOGLE_OIDC_DISCOVERY = "https://accounts.google.com/.well-known/openid-configuration"
#: The A2A protocol version the cards declare (a2a-sdk ``PROTOCOL_VERSION_CURRENT``).
PROTOCOL_VERSION = "1.0"
#: Custom metadata of a card object (Cloud Storage ``Object.metadata``): the card's version and
#: the sha256 of the card with its URL left out.
CARD_VERSION_KEY = "a2a-card-version"
CARD_DIGEST_KEY = "a2a-card-sha256"
#: Stands for the service URL while the SDK serialises a card; replaced by the URL output.
_URL_MARK = "https://agentstage-service-url.invalid"

#: Cloud Storage bucket names: 3-63 lowercase letters, digits, '-', '_' or '.', starting and
#: ending with a letter or digit, not containing "google" (cloud.google.com/storage/docs/buckets,
#: "Bucket naming requirements").
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$")


def card_object_name(agent: str) -> str:
    """The card's object in the registry bucket: ``<agent>/.well-known/agent-card.json``."""
    return f"{agent}/{CARD_PATH}"


def registry_bucket_name(project: str, environment: str, prefix: str = "") -> str:
    """``<project>-[<prefix>-]agent-cards-<environment>`` (bucket names are global: the project
    id makes it unique), shortened with a digest past 63 characters."""
    name = "-".join(p for p in (project, prefix, "agent-cards", environment) if p)
    if len(name) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-_.')}-{digest}"
    if not _BUCKET.match(name) or "google" in name:
        raise ComponentError("AgentRegistry", environment, f"cannot form a bucket name: {name!r}")
    return name


def build_card(agent: str, card: AgentCardSpec, version: str, url: str) -> Any:
    """The A2A ``AgentCard`` of ``agent`` (a2a-sdk type): its name, the card spec's description,
    skills and capabilities, ``version`` (the release it runs) and one interface at ``url``."""
    from a2a.types import (
        AgentCapabilities,
        AgentCard,
        AgentInterface,
        AgentSkill,
        OpenIdConnectSecurityScheme,
        SecurityRequirement,
        SecurityScheme,
        StringList,
    )

    return AgentCard(
        name=agent,
        description=card.description,
        version=version,
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding=card.protocol, protocol_version=PROTOCOL_VERSION)
        ],
        capabilities=AgentCapabilities(streaming=card.streaming),
        security_schemes={
            GOOGLE_ID_TOKEN: SecurityScheme(
                open_id_connect_security_scheme=OpenIdConnectSecurityScheme(
                    description="A Google-signed ID token whose audience is the agent's URL, of an identity "
                    "granted roles/run.invoker on the agent's Cloud Run service.",
                    open_id_connect_url=GOOGLE_OIDC_DISCOVERY,
                )
            )
        },
        security_requirements=[SecurityRequirement(schemes={GOOGLE_ID_TOKEN: StringList(list=[])})],
        default_input_modes=list(card.input_modes),
        default_output_modes=list(card.output_modes),
        skills=[
            AgentSkill(id=s.id, name=s.name, description=s.description, tags=s.tags, examples=s.examples)
            for s in card.skills
        ],
    )


def card_dict(card: Any) -> dict[str, Any]:
    """``card`` as the JSON object the a2a-sdk's server serves at the well-known path."""
    from a2a.server.request_handlers.response_helpers import agent_card_to_dict

    return agent_card_to_dict(card)


def card_digest(plain: dict[str, Any]) -> str:
    """sha256 of a card's JSON as serialised with the URL mark (its URL left out, an output):
    what changes whenever anything but the URL does."""
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def _with_url(value: Any, url: Any) -> Any:
    """``value`` with every occurrence of the URL mark replaced by ``url`` (an output or a string)."""
    if value == _URL_MARK:
        return url
    if isinstance(value, dict):
        return {k: _with_url(v, url) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_url(v, url) for v in value]
    return value


@dataclass(frozen=True)
class RegisteredAgent:
    """What the registry needs of one agent: its spec (``calls``, ``card``, ``release``), its
    Cloud Run service resource, its URL (an output) and its identity's IAM member."""

    spec: AgentSpec
    service: run.Service
    url: pulumi.Input[str]
    member: pulumi.Input[str]


class AgentRegistry(pulumi.ComponentResource):
    """The A2A edges and agent cards of one environment.

    Per ``calls`` edge, the caller's identity is granted ``roles/run.invoker`` on the callee's
    Cloud Run service (a ``ServiceIamMember``: additive, on that service only, never
    project-wide). With any agent's ``card``, a private bucket (uniform bucket-level access,
    public access prevention enforced) holds each card at ``<agent>/.well-known/agent-card.json``,
    readable (``roles/storage.objectViewer`` on the bucket) by the identities of the agents
    that call others: the ones that discover.

    A card's version is its agent's ``release.version``, so promoting a release changes the
    card with it; its URL is the agent's service URL.

    Outputs: ``registry`` (agent -> card, the JSON object served; its URL unknown until the
    service exists), ``bucket_name`` (None without cards) and ``card_urls`` (agent -> the base
    URL an A2A client resolves the card from). ``documents`` holds the same cards as plain
    data with only the URL an output: exported as it is, a first preview shows every field of
    every card but the URL (``registry``, one output, is unknown as a whole until then).
    """

    registry: pulumi.Output[Mapping[str, Any]]
    bucket_name: pulumi.Output[str | None]
    card_urls: pulumi.Output[Mapping[str, str]]

    def __init__(
        self,
        name: str,
        *,
        agents: Mapping[str, RegisteredAgent],
        project: str,
        region: str,
        environment: str,
        prefix: str = "",
        labels: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["AgentRegistry"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        for caller, agent in sorted(agents.items()):
            for callee in agent.spec.calls:
                if callee not in agents or callee == caller:
                    raise ComponentError(
                        "AgentRegistry",
                        name,
                        f"{caller} calls {callee!r}, which is not another agent of this registry "
                        f"({', '.join(sorted(agents))})",
                    )
        self.edges: dict[tuple[str, str], run.ServiceIamMember] = {}
        for caller, agent in sorted(agents.items()):
            for callee in sorted(agent.spec.calls):
                self.edges[(caller, callee)] = run.ServiceIamMember(
                    f"{callee}-a2a-from-{caller}",
                    project=project,
                    location=region,
                    name=agents[callee].service.name,
                    role=INVOKER,
                    member=agent.member,
                    opts=child,
                )

        carded = {a: r for a, r in sorted(agents.items()) if r.spec.card is not None}
        self.bucket: gcp.storage.Bucket | None = None
        self.cards: dict[str, gcp.storage.BucketObject] = {}
        self.readers: dict[str, gcp.storage.BucketIAMMember] = {}
        documents: dict[str, Any] = {}
        digests: dict[str, str] = {}
        for agent, reg in carded.items():
            assert reg.spec.card is not None
            plain = card_dict(build_card(agent, reg.spec.card, reg.spec.release.version, _URL_MARK))
            digests[agent] = card_digest(plain)
            documents[agent] = _with_url(plain, reg.url)
        if carded:
            bucket = registry_bucket_name(project, environment, prefix)
            self.bucket = gcp.storage.Bucket(
                f"{name}-cards",
                project=project,
                name=bucket,
                location=region.upper(),
                uniform_bucket_level_access=True,
                public_access_prevention="enforced",
                labels=dict(labels or {}),
                opts=child,
            )
            for agent in carded:
                self.cards[agent] = gcp.storage.BucketObject(
                    f"{agent}-card",
                    bucket=self.bucket.name,
                    name=card_object_name(agent),
                    content=pulumi.Output.from_input(documents[agent]).apply(
                        lambda doc: json.dumps(doc, indent=2, sort_keys=False) + "\n"
                    ),
                    content_type="application/json",
                    # pulumi-gcp keeps `content` secret, so a plan diff cannot show a card change:
                    # its version and a digest of the card (URL aside) are shown here instead
                    metadata={
                        CARD_VERSION_KEY: carded[agent].spec.release.version,
                        CARD_DIGEST_KEY: digests[agent],
                    },
                    # a new release changes the card: clients must not keep the old version
                    cache_control="no-cache",
                    opts=child,
                )
            for caller, agent in sorted(agents.items()):
                if agent.spec.calls:
                    self.readers[caller] = gcp.storage.BucketIAMMember(
                        f"{name}-reader-{caller}",
                        bucket=self.bucket.name,
                        role=REGISTRY_READER,
                        member=agent.member,
                        opts=child,
                    )
            self.bucket_name = self.bucket.name
            self.card_urls = pulumi.Output.from_input(
                {agent: f"https://storage.googleapis.com/{bucket}/{agent}" for agent in carded}
            )
        else:
            self.bucket_name = pulumi.Output.from_input(None)
            self.card_urls = pulumi.Output.from_input({})
        self.documents: dict[str, Any] = documents
        self.registry = pulumi.Output.from_input(documents)
        self.register_outputs({"registry": self.registry, "bucket_name": self.bucket_name, "card_urls": self.card_urls})
