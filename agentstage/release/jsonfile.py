"""Reading a JSON input file into a pydantic model, with one error message shape for every
file the release commands read (metrics, observed state): ``<what> <path>: <key>: <problem>``."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from agentstage.errors import BadInput
from agentstage.inputs import load_json, reported_as

__all__ = ["first_error", "load_model"]

M = TypeVar("M", bound=BaseModel)


def first_error(err: ValidationError) -> tuple[str, str]:
    """(dotted key, message) of the first problem pydantic found."""
    first = err.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return where, first["msg"].removeprefix("Value error, ")


def load_model(path: Path, model: type[M], what: str, error: type[BadInput]) -> M:
    """``model`` from the JSON file ``path``; any problem raises ``error`` naming ``what``."""
    with reported_as(error):
        raw = load_json(path, what)
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        where, msg = first_error(err)
        raise error(f"{what} {path}: {where}: {msg}") from None
