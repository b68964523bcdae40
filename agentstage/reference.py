"""Generate the stack config reference (docs/config.md) from the spec models themselves,
so the documentation cannot drift from what is validated.

    python -m agentstage.reference > docs/config.md
"""

from __future__ import annotations

import sys
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from agentstage.config import config_key
from components.spec import PlatformSpec


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    out: list[type[BaseModel]] = []
    for arg in get_args(tp):
        out.extend(_models_in(arg))
    return out


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    if origin is dict:
        return "map"
    if origin is list:
        return "list"
    args = [a for a in get_args(tp) if a is not type(None)]
    if args and origin is not None and str(origin).endswith("Literal"):
        return " \\| ".join(str(a) for a in get_args(tp))
    if args and len(args) == 1:
        return _type_name(args[0])
    return getattr(tp, "__name__", str(tp)).replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str, top: bool) -> list[tuple[str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        key = config_key(name) if top else f"{prefix}.{name}"
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        desc = desc.replace("<", "&lt;").replace(">", "&gt;")
        rows.append((key, _type_name(field.annotation), desc))
        origin = get_origin(field.annotation)
        for sub in _models_in(field.annotation):
            sub_prefix = f"{key}.<name>" if origin is dict else key
            rows.extend(_rows(sub, sub_prefix, False))
    return rows


def render() -> str:
    lines = [
        "# Stack config reference",
        "",
        "Generated from the spec models (`python -m agentstage.reference > docs/config.md`);",
        "a test keeps it in step with them. Unknown keys are errors. Keys under `gcp:` are the",
        "provider's own; every other key is in the project's namespace, `agent-platform:`.",
        "",
        "| key | type | meaning and default |",
        "|---|---|---|",
    ]
    for key, type_, desc in _rows(PlatformSpec, "", True):
        lines.append(f"| `{key}` | {type_} | {desc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
