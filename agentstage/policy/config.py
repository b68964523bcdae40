"""Policy pack config: the ``--policy-pack-config`` JSON file, read and reconciled the way
the Pulumi CLI does it.

The file maps a policy name (or ``all``) to an enforcement level, or to an object with an
optional ``enforcementLevel`` and the policy's properties::

    {"all": "mandatory", "billing-budget": "advisory", "max-instances-capped": {"maxInstances": 50}}

Reconciling starts from each policy's schema defaults and default enforcement level, applies
``all``, then each policy's own entry, and validates every policy's properties against its
JSON schema. agentstage is stricter than the CLI in two ways that only ever turn a silent
no-op into an error: an entry for a policy the pack does not have, and a property the
policy's schema does not declare, are both rejected (a typo must not switch a rule off).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentstage.errors import BadInput

__all__ = ["ENFORCEMENT_LEVELS", "PolicyConfigError", "PolicySetting", "load_policy_config", "reconcile"]

ENFORCEMENT_LEVELS = ("advisory", "mandatory", "remediate", "disabled")


class PolicyConfigError(BadInput):
    """The policy config file is unreadable or does not fit the pack. ``issues`` holds one
    message per problem."""

    def __init__(self, message: str, issues: Sequence[str] = ()) -> None:
        super().__init__(message + (":" if issues else ""), details=issues)
        self.issues = list(issues)

    def __str__(self) -> str:
        return self.message + "".join(f"\n  {i}" for i in self.issues)


@dataclass
class PolicySetting:
    """One policy's entry of a policy config: enforcement level and properties."""

    enforcement: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


def _enforcement(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise PolicyConfigError(
            f"parsing enforcement level for {key!r}: {json.dumps(value)} is not a valid enforcement level; must be a string"
        )
    if value not in ENFORCEMENT_LEVELS:
        raise PolicyConfigError(
            f"parsing enforcement level for {key!r}: {value!r} is not a valid enforcement level; "
            f"allowed: {', '.join(ENFORCEMENT_LEVELS)}"
        )
    return value


def parse_policy_config(data: Any, source: str = "policy config") -> dict[str, PolicySetting]:
    """Parse the JSON value of a policy config file."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise PolicyConfigError(f"{source}: expected a JSON object mapping policy names to settings")
    out: dict[str, PolicySetting] = {}
    for key, value in data.items():
        if isinstance(value, str):
            out[key] = PolicySetting(_enforcement(value, key))
        elif isinstance(value, Mapping):
            props = dict(value)
            level = _enforcement(props.pop("enforcementLevel"), key) if "enforcementLevel" in props else None
            if level is None and not props:
                continue
            out[key] = PolicySetting(level, props)
        else:
            raise PolicyConfigError(
                f"{source}: parsing {key!r}: {json.dumps(value)} is not a valid value; must be a string or object"
            )
    return out


def load_policy_config(path: str | Path) -> dict[str, PolicySetting]:
    """Read a policy config file (empty content means no config, as with the CLI)."""
    from agentstage.inputs import parse_json, read_text, reported_as

    with reported_as(PolicyConfigError):
        text = read_text(path, "policy config")
        if not text.strip():
            return {}
        data = parse_json(text, f"policy config {path}", file=str(path))
    try:
        return parse_policy_config(data, f"policy config {path}")
    except PolicyConfigError as err:
        if str(err).startswith("policy config"):
            raise
        raise PolicyConfigError(f"policy config {path}: {err}") from None


def reconcile(
    policies: Sequence[Any],
    config: Mapping[str, PolicySetting],
    *,
    source: str = "policy config",
) -> dict[str, PolicySetting]:
    """The config each policy runs with: schema defaults, then the pack's default
    enforcement, then ``all``, then the policy's own entry; validated against each policy's
    JSON schema. ``policies`` are :class:`~agentstage.policy.report.PolicyInfo`."""
    import jsonschema

    names = {p.name for p in policies}
    unknown = sorted(k for k in config if k != "all" and k not in names)
    if unknown:
        raise PolicyConfigError(
            f"{source} names policies the pack does not have",
            [f"{k}: unknown policy; policies: {', '.join(sorted(names))}" for k in unknown],
        )
    result: dict[str, PolicySetting] = {}
    for p in policies:
        props = {k: v["default"] for k, v in (p.config_schema.get("properties") or {}).items() if "default" in v}
        result[p.name] = PolicySetting(p.enforcement, props)
    everyone = config.get("all")
    if everyone is not None and everyone.properties:
        owners = {
            k: sorted(p.name for p in policies if k in (p.config_schema.get("properties") or {}))
            for k in everyone.properties
        }
        raise PolicyConfigError(
            f'{source}: "all" sets properties, which the policy config does not apply to every policy (only '
            "an enforcement level)",
            [
                f"all: {k}: move it under the policy that declares it"
                + (f" ({', '.join(owners[k])})" if owners[k] else " (no policy of this pack declares it)")
                for k in sorted(everyone.properties)
            ],
        )
    if everyone is not None and everyone.enforcement:
        for setting in result.values():
            setting.enforcement = everyone.enforcement
    for name, given in config.items():
        if name == "all":
            continue
        if given.enforcement:
            result[name].enforcement = given.enforcement
        result[name].properties.update(given.properties)

    issues: list[str] = []
    for p in policies:
        declared = dict(p.config_schema.get("properties") or {})
        props = result[p.name].properties
        for key in sorted(set(props) - set(declared)):
            allowed = ", ".join(sorted(declared)) or "none"
            issues.append(f"{p.name}: {key}: unknown property; properties of this policy: {allowed}")
        if not declared:
            continue
        schema: dict[str, Any] = {"type": "object", "properties": declared}
        if p.config_schema.get("required"):
            schema["required"] = list(p.config_schema["required"])
        validator = jsonschema.Draft7Validator(schema)
        for error in sorted(validator.iter_errors(props), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(s) for s in error.absolute_path)
            issues.append(f"{p.name}: {where + ': ' if where else ''}{error.message}")
    if issues:
        raise PolicyConfigError(f"{source} is invalid", issues)
    return result
