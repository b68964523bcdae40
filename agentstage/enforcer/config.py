"""What the enforcer enforces: one entry per capped agent, handed over by the component as JSON
in the env var :data:`CONFIG_ENV` (written by ``components.spend_cap``, read here).

Shape: ``{"caps": [{"agent", "display_name", "budget", "service", "threshold", "action",
"max_instances", "flags", "parameter"}]}``. ``budget`` is the budget's resource name
(``billingAccounts/<account>/budgets/<id>``, known once the budget exists; null before), and
``display_name`` the name agentstage gave it: a notification belongs to an entry when both
match (the display name alone while the id is unknown).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentstage.enforcer.notification import BudgetNotification

__all__ = ["CONFIG_ENV", "ACTIONS", "Cap", "ConfigError", "load_caps", "parse_caps", "find_cap"]

CONFIG_ENV = "AGENTSTAGE_SPEND_CAPS"
ACTIONS = ("canary-to-zero", "cap-instances", "flags-off")


class ConfigError(ValueError):
    """The enforcer's configuration is unusable: the function refuses to start."""


@dataclass(frozen=True)
class Cap:
    """One agent's cap: its budget, its Cloud Run service, and what to do past ``threshold``."""

    agent: str
    display_name: str
    service: str  #: projects/<project>/locations/<region>/services/<name>
    threshold: float
    action: str
    budget: str | None = None
    max_instances: int | None = None
    flags: tuple[str, ...] = field(default_factory=tuple)
    parameter: str | None = None  #: the agent's flags parameter (flags-off)

    def matches(self, note: BudgetNotification) -> bool:
        if note.display_name != self.display_name:
            return False
        return self.budget is None or self.budget == note.budget


def _cap(entry: Any, i: int) -> Cap:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"caps[{i}] is not an object")
    missing = [k for k in ("agent", "display_name", "service", "threshold", "action") if entry.get(k) is None]
    if missing:
        raise ConfigError(f"caps[{i}] lacks {', '.join(missing)}")
    action = entry["action"]
    if action not in ACTIONS:
        raise ConfigError(f"caps[{i}].action is {action!r}; allowed: {', '.join(ACTIONS)}")
    if action == "cap-instances" and not isinstance(entry.get("max_instances"), int):
        raise ConfigError(f"caps[{i}] (cap-instances) lacks max_instances")
    if action == "flags-off" and not (entry.get("flags") and entry.get("parameter")):
        raise ConfigError(f"caps[{i}] (flags-off) lacks flags or parameter")
    return Cap(
        agent=str(entry["agent"]),
        display_name=str(entry["display_name"]),
        service=str(entry["service"]),
        threshold=float(entry["threshold"]),
        action=action,
        budget=entry.get("budget") or None,
        max_instances=entry.get("max_instances"),
        flags=tuple(entry.get("flags") or ()),
        parameter=entry.get("parameter") or None,
    )


def parse_caps(text: str) -> list[Cap]:
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"{CONFIG_ENV} is not JSON ({err})") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("caps"), list):
        raise ConfigError(f'{CONFIG_ENV} is not an object with a "caps" list')
    return [_cap(entry, i) for i, entry in enumerate(data["caps"])]


def load_caps(environ: Mapping[str, str] = os.environ) -> list[Cap]:
    text = environ.get(CONFIG_ENV)
    if not text:
        raise ConfigError(f"{CONFIG_ENV} is not set; the component sets it to the capped agents")
    return parse_caps(text)


def find_cap(caps: list[Cap], note: BudgetNotification) -> Cap | None:
    """The cap a notification belongs to (None: another budget, not the enforcer's business)."""
    return next((cap for cap in caps if cap.matches(note)), None)
