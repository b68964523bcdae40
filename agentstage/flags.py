"""Feature flags in Parameter Manager: the contract between the stack, the agent and the
spend-cap enforcer.

Each agent of each environment has one JSON parameter holding its flags (``features:`` of the
stack config). Its full resource name reaches the agent as the env var :data:`FLAGS_ENV`, which
never changes; a flag change is a new parameter version (the version ``latest`` is the one in
force), so flipping a flag updates one resource and creates no new revision.

This module is imported by agents at run time: it must stay light (no Pulumi imports).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["FLAGS_ENV", "FLAGS_LOCATION", "parameter_id", "parameter_name", "render_flags"]

#: Env var carrying the flags parameter's resource name to the agent.
FLAGS_ENV = "AGENTSTAGE_FLAGS_PARAMETER"
#: Parameters are global (``projects/P/locations/global/parameters/ID``).
FLAGS_LOCATION = "global"


def parameter_id(service_name: str, environment: str) -> str:
    """The flags parameter's id for one agent (its physical service name) in one environment."""
    return f"{service_name}-{environment}-flags"


def parameter_name(project: str, service_name: str, environment: str) -> str:
    """The flags parameter's full resource name."""
    return f"projects/{project}/locations/{FLAGS_LOCATION}/parameters/{parameter_id(service_name, environment)}"


def render_flags(flags: Mapping[str, bool]) -> str:
    """A parameter version's payload: the flags as canonical JSON (sorted keys, no spaces), so
    the same flags always give the same bytes (and the same version id)."""
    return json.dumps({k: bool(v) for k, v in flags.items()}, sort_keys=True, separators=(",", ":"))
