"""What every spec model shares: the strict base model, the validation error that
carries its key path, and the label rules."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["SpecIssue", "StrictModel", "check_label_key", "check_label_value"]

_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


class SpecIssue(ValueError):
    """A validation failure. ``path`` is relative to the model that raised it (empty: the
    field being validated), ``value`` the offending value."""

    def __init__(self, message: str, *, path: tuple[str | int, ...] = (), value: Any = None,
                 has_value: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.value = value
        self.has_value = has_value


class StrictModel(BaseModel):
    """Base of every spec: unknown keys are errors, values are not coerced across types
    (except numbers written as strings in YAML), and specs are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def check_label_key(key: str) -> bool:
    return bool(_LABEL_KEY.match(key))


def check_label_value(value: str) -> bool:
    return bool(_LABEL_VALUE.match(value))
