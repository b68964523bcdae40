"""The stack config contract: Pulumi config values -> a validated ``PlatformSpec``.

The schema is ``components.spec.PlatformSpec`` itself; this module maps Pulumi config keys
onto it and turns pydantic errors into messages that name the full config key, the bad value
and what is allowed, e.g.::

    agent-platform:agents.support-bot.release.image: "acme/bot:latest" is not pinned by digest; ...

The keys live in a config namespace: Pulumi's default namespace of a project is its name in
``Pulumi.yaml`` (``agent-platform`` for the reference platform, ``triage-team`` for
``examples/team-stack``). Every function here takes the ``namespace`` (default: the reference
platform's).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

import pulumi
from pydantic import BaseModel, ValidationError

from agentstage.errors import BadInput
from components.spec import PlatformSpec, SpecIssue

__all__ = ["NAMESPACE", "ConfigError", "platform_from_config", "load_platform", "load_model", "config_key"]

#: The reference platform's Pulumi project name, and so the config namespace of its keys (the
#: default of every ``namespace`` argument; another project's namespace is its own name).
NAMESPACE = "agent-platform"

#: Spec fields read from another provider's namespace.
_FOREIGN_KEYS = {"project": "gcp:project", "region": "gcp:region"}


class ConfigError(BadInput, pulumi.RunError):
    """The stack config is invalid. ``issues`` holds one message per problem.

    A ``RunError``: the Pulumi CLI prints it without a traceback."""

    def __init__(self, issues: list[str]) -> None:
        self.issues = issues
        BadInput.__init__(self, "invalid stack config:", details=issues)

    def __str__(self) -> str:
        return "invalid stack config:\n  " + "\n  ".join(self.issues)


def config_key(field: str, namespace: str = NAMESPACE) -> str:
    """The Pulumi config key of a top-level spec field."""
    return _FOREIGN_KEYS.get(field, f"{namespace}:{field}")


def _field_of(key: str, namespace: str) -> str | None:
    for field, foreign in _FOREIGN_KEYS.items():
        if key == foreign:
            return field
    if key.startswith(namespace + ":"):
        return key[len(namespace) + 1 :]
    return None


def _decode(value: Any) -> Any:
    """Pulumi hands structured config to programs as JSON text; decode it."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def platform_from_config(
    values: Mapping[str, Any], model: type[BaseModel] = PlatformSpec, *, namespace: str = NAMESPACE
) -> Any:
    """Validate Pulumi config ``values`` (full keys -> values, objects as JSON text or
    already decoded) into ``model``, the spec fields being the keys of ``namespace``. Keys of
    other namespaces (``gcp:zone``...) are ignored; unknown keys of ``namespace`` are errors.
    Raises :class:`ConfigError`."""
    data: dict[str, Any] = {}
    issues: list[str] = []
    allowed = [config_key(f, namespace) for f in model.model_fields]
    for key, value in values.items():
        field = _field_of(key, namespace)
        if field is None:
            problem = foreign_key_issue(key, namespace)
            if problem:
                issues.append(problem)
            continue
        if field not in model.model_fields:
            if key.startswith(namespace + ":"):
                issues.append(f"{key}: unknown key; allowed: {', '.join(sorted(allowed))}")
            continue
        data[field] = _decode(value)
    if issues:
        raise ConfigError(issues)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err, model, namespace=namespace)) from None


#: Config namespaces a stack of the platform may hold besides its project's own: the Google
#: provider's, Pulumi's own (``pulumi:tags``, ``pulumi:disable-default-providers``) and the
#: Kubernetes provider's (GKE agents).
OTHER_NAMESPACES = ("gcp", "pulumi", "kubernetes")


@functools.lru_cache(maxsize=1)
def gcp_config_keys() -> frozenset[str]:
    """The config keys the installed Google provider declares (``pulumi_gcp/config/vars.py``:
    one ``__config__.get('<key>')`` per key), read from its source without importing it."""
    spec = importlib.util.find_spec("pulumi_gcp.config.vars")
    if spec is None or not spec.origin:  # pragma: no cover - pulumi-gcp is a dependency
        return frozenset()
    text = Path(spec.origin).read_text(encoding="utf-8")
    return frozenset(re.findall(r"__config__\.get\w*\('([A-Za-z0-9_]+)'", text))


def foreign_key_issue(key: str, namespace: str) -> str | None:
    """What is wrong with a config key outside the platform's fields, if anything: a
    namespace that is none this stack reads (a typo such as ``agent-platfrom:``) or a ``gcp:``
    key the provider does not declare (``gcp:regoin``)."""
    ns, sep, name = key.partition(":")
    known = (namespace, *OTHER_NAMESPACES)
    if not sep or ns not in known:
        close = difflib.get_close_matches(ns, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}:{name}?" if close else ""
        return f"{key}: {ns}: is not a config namespace this stack reads ({', '.join(known)}){hint}"
    if ns == "gcp":
        keys = gcp_config_keys()
        if keys and name not in keys:
            close = difflib.get_close_matches(name, sorted(keys), n=1, cutoff=0.6)
            hint = f"; did you mean gcp:{close[0]}?" if close else ""
            return f"{key}: is not a config key of the Google provider (pulumi-gcp){hint}"
    return None


def load_platform(model: type[BaseModel] = PlatformSpec, *, namespace: str = NAMESPACE) -> Any:
    """Read the running Pulumi program's stack config and validate it (the keys of
    ``namespace``; a project other than the reference platform passes its own,
    ``pulumi.get_project()``). In a real ``pulumi up`` the language host has put every config
    value in the runtime's map; under the offline engine the same map is set from the stack file."""
    values = dict(pulumi.runtime.get_config_env())
    values.update(pulumi.runtime.config.CONFIG.get())
    return platform_from_config(values, model, namespace=namespace)


def load_model(model: type[BaseModel], key: str) -> Any:
    """Read one structured config key of the running program (``<namespace>:<name>``, or a
    bare name in the project's namespace) and validate it into ``model``, with the same
    messages as the platform config. For teams composing the components in their own stack."""
    full = key if ":" in key else f"{pulumi.get_project()}:{key}"
    values = dict(pulumi.runtime.get_config_env())
    values.update(pulumi.runtime.config.CONFIG.get())
    if full not in values:
        raise ConfigError([f"{full}: required key is missing"])
    try:
        return model.model_validate(_decode(values[full]))
    except ValidationError as err:
        raise ConfigError(format_errors(err, model, key=full)) from None


def is_secret_key(key: str) -> bool:
    return pulumi.runtime.is_config_secret(key)


# --- error formatting ----------------------------------------------------------------------


def _path(loc: tuple[Any, ...], key: str | None = None, namespace: str = NAMESPACE) -> str:
    if key is not None:
        head, rest = key, list(loc)
        out = head
    else:
        head, *rest = loc
        out = config_key(str(head), namespace)
    for part in rest:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


#: How much of a bad value a message shows (a message quotes the value, not a megabyte of it).
SHOWN_VALUE_MAX = 200


def _value(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > SHOWN_VALUE_MAX:
        return f"{text[:SHOWN_VALUE_MAX]}... ({len(text):,} characters)"
    return text


def _model_at(model: Any, loc: tuple[Any, ...]) -> Any:
    """The pydantic model class that holds the last element of ``loc``."""
    current = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        else:
            current = _container_item(current)
        current = _unwrap_optional(current)
    return current


def _unwrap_optional(tp: Any) -> Any:
    args = [a for a in get_args(tp) if a is not type(None)]
    if args and get_origin(tp) is not None and get_origin(tp) not in (dict, list) and len(args) == 1:
        return args[0]
    return tp


def _container_item(tp: Any) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin is list and args:
        return args[0]
    return None


_TYPE_WORDS = {
    "int_parsing": "is not a whole number",
    "int_type": "is not a whole number",
    "int_from_float": "is not a whole number",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "bool_parsing": "is not true or false",
    "bool_type": "is not true or false",
    "string_type": "is not a string",
    "dict_type": "is not a mapping",
    "list_type": "is not a list",
    "model_type": "is not a mapping",
    "model_attributes_type": "is not a mapping",
}


def format_errors(
    err: ValidationError, model: type[BaseModel] = PlatformSpec, key: str | None = None, *, namespace: str = NAMESPACE
) -> list[str]:
    """One message per pydantic error: ``<full key>: <value> <what is wrong; what is allowed>``.

    ``key``: the config key the whole model was read from (default: the model is the
    config ``namespace`` itself, each field its own key)."""
    messages: list[str] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        kind = e["type"]
        issue = (e.get("ctx") or {}).get("error")
        if isinstance(issue, SpecIssue):
            full = loc + issue.path
            value = issue.value if issue.has_value else e.get("input")
            if not full:
                messages.append(f"{key or namespace}: {issue.message}")
                continue
            messages.append(f"{_path(full, key, namespace)}: {_value(value)} {issue.message}")
            continue
        if not loc and key is None:
            messages.append(f"{namespace}: {e['msg']}")
            continue
        where = _path(loc, key, namespace)
        if kind == "missing":
            messages.append(f"{where}: required key is missing")
        elif kind == "extra_forbidden":
            owner = _model_at(model, loc)
            allowed = (
                ", ".join(owner.model_fields) if isinstance(owner, type) and issubclass(owner, BaseModel) else "none"
            )
            messages.append(f"{where}: unknown key; allowed: {allowed}")
        elif kind == "literal_error":
            expected = (e.get("ctx") or {}).get("expected", "")
            messages.append(
                f"{where}: {_value(e.get('input'))} is not allowed; allowed: {expected.replace(chr(39), '')}"
            )
        elif kind in _TYPE_WORDS:
            messages.append(f"{where}: {_value(e.get('input'))} {_TYPE_WORDS[kind]}")
        else:
            messages.append(f"{where}: {_value(e.get('input'))} is invalid: {e['msg'][0].lower()}{e['msg'][1:]}")
    return messages
