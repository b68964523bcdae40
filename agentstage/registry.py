"""The agent registry of a planned stack: every published A2A agent card, who may call each
agent, and what makes the registry invalid.

Read from the plan, not from the stack config, so it judges what the program publishes (a
team's own program as much as ``AgentPlatform``): the cards are the stack output ``registry``
(agent -> card) or, without it, the Cloud Storage objects ``<agent>/.well-known/agent-card.json``;
an agent's release is the ``AGENT_RELEASE`` its Cloud Run service's template runs; who may call
it is the ``roles/run.invoker`` members of its service that are identities of the stack's agents.

Each card is parsed and checked by the a2a-sdk itself (``parse_agent_card``, which A2A clients
use on a fetched card, and ``validate_proto_required_fields``: the fields the A2A protocol marks
REQUIRED), then against the stack: its name is the agent's, its version the release the agent
runs, its skill ids are unique, and every agent of the call graph is one with a card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from components.contract import CLOUD_RUN_INVOKER, CLOUD_RUN_SERVICE, LABEL_AGENT

__all__ = ["AgentEntry", "Registry", "read_registry", "uploaded_text", "UNKNOWN", "CARD_SUFFIX"]

#: How the offline engine shows a value unknown until the resources exist (a first preview).
UNKNOWN = "[unknown]"
#: How the offline engine shows a secret value: pulumi-gcp marks a bucket object's ``content``
#: sensitive, so the plan never shows the published text (the stack output shows the card).
SECRET = "[secret]"
#: The card object of agent A is ``A/<CARD_SUFFIX>``: the A2A well-known path under its name.
CARD_SUFFIX = ".well-known/agent-card.json"
BUCKET_OBJECT = "gcp:storage/bucketObject:BucketObject"
INVOKER = "roles/run.invoker"
RELEASE_ENV = "AGENT_RELEASE"


@dataclass
class AgentEntry:
    """One agent of the registry: its card (None: it publishes none) and what the stack says."""

    agent: str
    card: dict[str, Any] | None
    release: str | None  #: the version its service's template runs (None: no Cloud Run service)
    callers: list[str] = field(default_factory=list)  #: agents whose identity may invoke it
    callees: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def url(self) -> str | None:
        """The card's first interface URL; None while unknown (before the service exists)."""
        interfaces = (self.card if isinstance(self.card, dict) else {}).get("supportedInterfaces") or []
        url = interfaces[0].get("url") if interfaces and isinstance(interfaces[0], dict) else None
        return None if url in (None, "", UNKNOWN) else str(url)

    def to_json(self) -> dict[str, Any]:
        card = self.card if isinstance(self.card, dict) else {}
        return {
            "agent": self.agent,
            "has_card": self.card is not None,
            "version": card.get("version"),
            "release": self.release,
            "url": self.url,
            "skills": [s.get("id") for s in card.get("skills") or [] if isinstance(s, dict)],
            "callers": self.callers,
            "calls": self.callees,
            "valid": not self.problems,
            "problems": self.problems,
            "card": self.card,
        }


@dataclass
class Registry:
    stack: str
    bucket: str | None
    agents: dict[str, AgentEntry]
    problems: list[str] = field(default_factory=list)  #: problems of no single agent

    @property
    def all_problems(self) -> list[str]:
        return [*self.problems, *(p for e in self.agents.values() for p in e.problems)]

    @property
    def valid(self) -> bool:
        return not self.all_problems

    @property
    def cards(self) -> dict[str, AgentEntry]:
        return {a: e for a, e in self.agents.items() if e.card is not None}

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "bucket": self.bucket,
            "valid": self.valid,
            "problems": self.all_problems,
            "agents": [e.to_json() for _, e in sorted(self.agents.items())],
        }


def _release(service: Any) -> str | None:
    for container in (service.inputs.get("template") or {}).get("containers") or []:
        for env in container.get("envs") or []:
            if env.get("name") == RELEASE_ENV and isinstance(env.get("value"), str):
                return env["value"]
    return None


def uploaded_text(obj: Any) -> str | None:
    """The text a card object uploads, None while unknown. pulumi-gcp marks ``content``
    sensitive, so the plan shows it as a secret; the request the program sent (the wire Struct)
    carries the value inside the secret wrapper, and a card holds nothing secret."""
    content = obj.inputs.get("content")
    if content not in (SECRET, UNKNOWN, None):
        return str(content)
    wire = getattr(obj, "wire_inputs", None)
    if content != SECRET or wire is None or "content" not in wire.fields:
        return None
    value = wire.fields["content"]
    if value.HasField("struct_value") and "value" in value.struct_value.fields:
        value = value.struct_value.fields["value"]
    from pulumi.runtime.rpc import UNKNOWN as WIRE_UNKNOWN

    if not value.HasField("string_value") or value.string_value == WIRE_UNKNOWN:
        return None
    return value.string_value


def _published_cards(plan: Any) -> tuple[dict[str, Any], str | None, list[str]]:
    """agent -> card (a dict, or the raw text when it is not JSON), the bucket, and problems."""
    objects = {
        str(r.inputs.get("name"))[: -len(CARD_SUFFIX) - 1]: r
        for r in plan.by_type(BUCKET_OBJECT)
        if str(r.inputs.get("name", "")).endswith(f"/{CARD_SUFFIX}")
    }
    buckets = sorted({str(r.inputs.get("bucket")) for r in objects.values()})
    bucket = buckets[0] if len(buckets) == 1 and buckets[0] != UNKNOWN else None
    problems: list[str] = []
    output = plan.outputs.get("registry")
    cards: dict[str, Any] = {}
    if isinstance(output, dict):
        cards = dict(output)
    elif output not in (None, UNKNOWN):
        problems.append(f"the stack output 'registry' is not a map of agent -> card: {str(output)[:80]}")
    for agent, obj in sorted(objects.items()):
        content = uploaded_text(obj)
        if content is None or content == UNKNOWN:
            continue  # unknown before the service exists (it holds the URL)
        try:
            published = json.loads(content)
        except (TypeError, ValueError):
            published = content
        if agent not in cards:
            cards[agent] = published
        elif cards[agent] != published and isinstance(published, dict):
            problems.append(f"{agent}: the card published in the bucket differs from the stack output 'registry'")
    for agent in sorted(set(cards) - set(objects)):
        if objects:
            problems.append(f"{agent}: has a card in the stack output 'registry' but no object {agent}/{CARD_SUFFIX}")
    return cards, bucket, problems


def _check_card(agent: str, card: Any, release: str | None) -> list[str]:
    """The problems of one card: A2A's own parsing and REQUIRED fields, then the stack's rules."""
    from a2a.client.card_resolver import parse_agent_card
    from a2a.utils.errors import InvalidParamsError
    from a2a.utils.proto_utils import validate_proto_required_fields
    from google.protobuf.json_format import ParseError

    if not isinstance(card, dict):
        return [f"{agent}: the card is not a JSON object"]
    problems = []
    try:
        parsed = parse_agent_card(json.loads(json.dumps(card)))
    except ParseError as err:
        return [f"{agent}: the card is not an A2A agent card: {err}"]
    try:
        validate_proto_required_fields(parsed)
    except InvalidParamsError as err:
        for item in (err.data or {}).get("errors") or []:
            problems.append(f"{agent}: the card's required field {item['field']} is missing or empty")
    if parsed.name and parsed.name != agent:
        problems.append(f"{agent}: the card's name is {parsed.name!r}; it must be the agent's name, {agent!r}")
    if release is None:
        problems.append(f"{agent}: has a card but no Cloud Run service labelled {LABEL_AGENT}={agent} in this stack")
    elif parsed.version and parsed.version != release:
        problems.append(
            f"{agent}: the card's version is {parsed.version!r} but the agent runs release {release!r}; the card must "
            "describe the release it serves (derive it from release.version)"
        )
    seen: set[str] = set()
    for skill in parsed.skills:
        if skill.id in seen:
            problems.append(f"{agent}: skill id {skill.id!r} appears more than once; skill ids must be unique")
        seen.add(skill.id)
    return problems


def read_registry(plan: Any) -> Registry:
    """The registry of ``plan``, checked (see the module docstring)."""
    services = {}
    for svc in plan.by_type(CLOUD_RUN_SERVICE):
        agent = (svc.inputs.get("labels") or {}).get(LABEL_AGENT) or svc.name
        services[str(agent)] = svc
    by_email = {str((svc.inputs.get("template") or {}).get("serviceAccount")): agent for agent, svc in services.items()}
    by_service = {str(svc.inputs.get("name")): agent for agent, svc in services.items()}
    cards, bucket, problems = _published_cards(plan)
    entries = {agent: AgentEntry(agent, cards.get(agent), _release(svc)) for agent, svc in services.items()}
    for agent in cards:
        entries.setdefault(agent, AgentEntry(agent, cards[agent], None))
    for member in plan.by_type(CLOUD_RUN_INVOKER):
        if member.inputs.get("role") != INVOKER:
            continue
        who = str(member.inputs.get("member") or "")
        caller = by_email.get(who.removeprefix("serviceAccount:")) if who.startswith("serviceAccount:") else None
        if caller is None:
            continue  # not an agent of this stack (a user, a group, a frontend's identity)
        callee = by_service.get(str(member.inputs.get("name")))
        if callee is None:
            problems.append(
                f"{caller}: may invoke the service {member.inputs.get('name')}, which is no agent of this stack"
            )
            continue
        entries[callee].callers.append(caller)
        entries[caller].callees.append(callee)
    for entry in entries.values():
        entry.callers.sort()
        entry.callees.sort()
    for agent, entry in sorted(entries.items()):
        if entry.card is not None:
            entry.problems += _check_card(agent, entry.card, entry.release)
        elif entry.callers and cards:
            entry.problems.append(
                f"{agent}: is called by {', '.join(entry.callers)} but has no card in the registry; "
                f"publish one (agents.{agent}.card)"
            )
    return Registry(str(plan.stack), bucket, entries, problems)
