"""What every spec model shares: the strict base model, the validation error that
carries its key path, and the label rules."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = [
    "SpecIssue",
    "StrictModel",
    "check_label_key",
    "check_label_value",
    "check_role",
    "refuse_cloud_run_keys",
    "refuse_section_of_other_runtime",
]

_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
#: A predefined role or a project's/organization's custom role (IAM role names).
_ROLE = re.compile(r"^(roles/[A-Za-z0-9_.]+|(projects|organizations)/[^/\s]+/roles/[A-Za-z0-9_.]+)$")


class SpecIssue(ValueError):
    """A validation failure. ``path`` is relative to the model that raised it (empty: the
    field being validated), ``value`` the offending value."""

    def __init__(
        self, message: str, *, path: tuple[str | int, ...] = (), value: Any = None, has_value: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.value = value
        self.has_value = has_value


class StrictModel(BaseModel):
    """Base of every spec: unknown keys are errors, values are never coerced across types
    (``true`` is not 1, ``"no"`` is not false, ``"5"`` is not 5: strict mode), and specs are
    immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_text(cls, v: Any) -> Any:
        """No string anywhere in a spec holds control characters or is huge: each ends up in a
        resource name, label, env var or API field that refuses them (or in a terminal)."""
        _check_text(v, ())
        return v


#: The longest string a spec value may be: twice the longest text a Google API field takes
#: from a spec (a Cloud Run env value, 32 KiB), so that field's own rule speaks first.
MAX_TEXT = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _check_text(v: Any, path: tuple[str | int, ...]) -> None:
    if isinstance(v, str):
        if len(v) > MAX_TEXT:
            raise SpecIssue(
                f"is {len(v):,} characters long; the longest value agentstage accepts is {MAX_TEXT:,}",
                path=path,
                value=f"<{len(v):,} characters>",
                has_value=True,
            )
        bad = _CONTROL.search(v)
        if bad:
            raise SpecIssue(
                f"holds the control character {bad.group()!r}; values are plain text",
                path=path,
                value=v[:60],
                has_value=True,
            )
    elif isinstance(v, dict):
        for key, item in v.items():
            _check_text(key, (*path, str(key)))
            _check_text(item, (*path, str(key)))
    elif isinstance(v, list):
        for i, item in enumerate(v):
            _check_text(item, (*path, i))


def check_label_key(key: str) -> bool:
    return bool(_LABEL_KEY.match(key))


def check_label_value(value: str) -> bool:
    return bool(_LABEL_VALUE.match(value))


def _first_change(value: Any, default: Any, path: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], Any]:
    """The path and value of the first field where ``value`` differs from ``default``."""
    if isinstance(value, StrictModel) and isinstance(default, StrictModel):
        for key in type(value).model_fields:
            if getattr(value, key) != getattr(default, key):
                return _first_change(getattr(value, key), getattr(default, key), (*path, key))
    return path, value


def refuse_cloud_run_keys(spec: Any, keys: dict[str, str], runtime: str) -> None:
    """Refuse an ``AgentSpec`` key of ``keys`` (Cloud Run-only key -> what to use instead) set to
    a non-default value on ``runtime``, naming the first sub-key that differs."""
    fields = type(spec).model_fields
    for key, instead in keys.items():
        value = getattr(spec, key)
        default = fields[key].get_default(call_default_factory=True)
        if value != default:
            path, shown = _first_change(value, default, (key,))
            raise SpecIssue(
                f"is a Cloud Run setting, and runtime {runtime} does not use it: {instead}; remove it",
                path=path,
                value=shown,
                has_value=True,
            )


def check_role(role: str, path: tuple[Any, ...]) -> None:
    """Refuse what is not an IAM role name, naming it at ``path`` of the list or mapping."""
    if not _ROLE.match(role):
        raise SpecIssue(
            "is not an IAM role; use roles/<name> or projects/<project>/roles/<name>",
            path=path,
            value=role,
            has_value=True,
        )


def refuse_section_of_other_runtime(spec: Any, key: str, runtime: str) -> None:
    """An agent whose runtime is not ``runtime`` must not set ``key``, that runtime's section."""
    section = getattr(spec, key)
    if spec.runtime != runtime and section is not None:
        raise SpecIssue(
            f"is set but runtime is {spec.runtime}; {key} configures runtime {runtime} only: "
            f"remove it, or set runtime: {runtime}",
            path=(key,),
            value=section.model_dump(exclude_defaults=True),
            has_value=True,
        )
