"""Specs of the agent registry: whom an agent calls over A2A, and what its A2A agent card says.

The card's fields follow the A2A protocol 1.0 ``AgentCard`` message (the ``a2a-sdk`` package's
``a2a.types.AgentCard``): ``name``, ``description``, ``version``, ``supported_interfaces``,
``capabilities``, ``default_input_modes``, ``default_output_modes`` and ``skills`` are REQUIRED
there, and a skill's ``id``, ``name``, ``description`` and ``tags`` (field behaviours in the
SDK's ``a2a.proto``). The name, version and URL are not asked for: the card's name is the agent
name, its version the release version, its URL the agent's service URL.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from components.specbase import SpecIssue, StrictModel

__all__ = ["A2A_BINDINGS", "AgentCardSpec", "SkillSpec", "check_agent_calls", "check_calls"]

#: The A2A protocol bindings an agent on Cloud Run may serve (a2a-sdk
#: ``a2a.utils.constants.TransportProtocol``). gRPC is left out: agentstage names the
#: container port ``http1``, and Cloud Run passes gRPC only to a port named ``h2c``.
A2A_BINDINGS = ("JSONRPC", "HTTP+JSON")

#: A2A asks only for a string unique within the card (AgentSkill.id); agentstage keeps skill ids
#: to a lowercase slug so they compare and route the same everywhere (its own rule, not Google's).
_SKILL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
#: A media type as RFC 6838 names them (type/subtype), which is what A2A's input and output
#: modes hold.
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


class SkillSpec(StrictModel):
    """One skill the agent offers on its A2A card (``AgentSkill``)."""

    id: str = Field(
        description="Skill id, unique within the card: lowercase letters, digits, '.', '_' or '-', at most 63 "
        "characters. Required."
    )
    name: str = Field(description="Human-readable skill name. Required.")
    description: str = Field(description="What the skill does, for the agents that route to it. Required.")
    tags: list[str] = Field(description="Keywords a caller can route on; at least one. Required.")
    examples: list[str] = Field(default_factory=list, description="Example requests. Default: [].")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _SKILL_ID.match(v):
            raise SpecIssue(
                "is not a skill id; use lowercase letters, digits, '.', '_' or '-', starting with a letter or "
                "digit, at most 63 characters"
            )
        return v

    @field_validator("name", "description")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise SpecIssue("is empty; A2A requires it on every skill")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        if not v or any(not t.strip() for t in v):
            raise SpecIssue("is empty; A2A requires at least one non-empty tag per skill")
        return v


class AgentCardSpec(StrictModel):
    """What the agent's A2A agent card says beyond what agentstage derives (its name is the agent
    name, its version the release version, its URL the service URL, its security scheme
    Google-signed ID tokens, which Cloud Run checks for the invoker role)."""

    description: str = Field(description="What the agent does, for the agents that discover it. Required.")
    skills: list[SkillSpec] = Field(description="The skills it offers; at least one, ids unique. Required.")
    streaming: bool = Field(default=False, description="Whether it streams responses (SSE). Default: false.")
    protocol: Literal["JSONRPC", "HTTP+JSON"] = Field(
        default="JSONRPC",
        description="The A2A protocol binding it serves at its URL: JSONRPC | HTTP+JSON. Default: JSONRPC.",
    )
    input_modes: list[str] = Field(
        default_factory=lambda: ["text/plain"],
        description="Media types it accepts, at least one. Default: [text/plain].",
    )
    output_modes: list[str] = Field(
        default_factory=lambda: ["text/plain"],
        description="Media types it answers with, at least one. Default: [text/plain].",
    )

    @field_validator("description")
    @classmethod
    def _description(cls, v: str) -> str:
        if not v.strip():
            raise SpecIssue("is empty; A2A requires a description on every agent card")
        return v

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, v: Any) -> Any:
        if v not in A2A_BINDINGS:
            raise SpecIssue(
                f"is not an A2A protocol binding agentstage serves on Cloud Run; allowed: {', '.join(A2A_BINDINGS)}"
            )
        return v

    @field_validator("input_modes", "output_modes")
    @classmethod
    def _modes(cls, v: list[str]) -> list[str]:
        if not v:
            raise SpecIssue("is empty; A2A requires at least one media type, e.g. text/plain")
        for i, mode in enumerate(v):
            if not _MEDIA_TYPE.match(mode):
                raise SpecIssue(
                    "is not a media type; use type/subtype, e.g. text/plain", path=(i,), value=mode, has_value=True
                )
        return v

    @field_validator("skills")
    @classmethod
    def _skills(cls, v: list[SkillSpec]) -> list[SkillSpec]:
        if not v:
            raise SpecIssue("is empty; A2A requires at least one skill on an agent card")
        seen: set[str] = set()
        for i, skill in enumerate(v):
            if skill.id in seen:
                raise SpecIssue(
                    "is the id of an earlier skill; skill ids must be unique within a card",
                    path=(i, "id"),
                    value=skill.id,
                    has_value=True,
                )
            seen.add(skill.id)
        return v


def check_agent_calls(agent_spec: Any) -> None:
    """The per-agent rules of ``calls`` and ``card`` (the stack-wide ones: :func:`check_calls`)."""
    calls = agent_spec.calls
    for i, callee in enumerate(calls):
        if callee in calls[:i]:
            raise SpecIssue(
                "is listed twice; name each agent it calls once", path=("calls", i), value=callee, has_value=True
            )
    if agent_spec.card is not None and agent_spec.runtime != "cloud-run":
        raise SpecIssue(
            f"is set, and this agent runs on {agent_spec.runtime}; the registry publishes cards of cloud-run "
            "agents only (the card's URL is the Cloud Run service's): remove it",
            path=("card",),
            value="<card>",
            has_value=True,
        )


def check_calls(platform: Any) -> None:
    """Every ``calls`` entry names another cloud-run agent of the stack: the caller's identity is
    granted ``roles/run.invoker`` on that agent's Cloud Run service, so a name that is not one
    would grant nothing (or everything, were it guessed)."""
    agents = platform.agents
    for agent, spec in agents.items():
        for i, callee in enumerate(spec.calls):
            where = ("agents", agent, "calls", i)
            if callee == agent:
                raise SpecIssue(
                    "is the agent itself; an agent does not call itself over A2A: remove it",
                    path=where,
                    value=callee,
                    has_value=True,
                )
            if callee not in agents:
                raise SpecIssue(
                    f"is not an agent of this stack (agents: {', '.join(sorted(agents))}): fix the name or remove it",
                    path=where,
                    value=callee,
                    has_value=True,
                )
            if agents[callee].runtime != "cloud-run":
                raise SpecIssue(
                    f"runs on {agents[callee].runtime}; A2A calls are granted on Cloud Run services only "
                    "(roles/run.invoker on the callee's service): call a cloud-run agent",
                    path=where,
                    value=callee,
                    has_value=True,
                )
