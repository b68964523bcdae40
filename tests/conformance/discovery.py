"""Google API request schemas, as JSON Schemas, to validate request bodies against.

Two sources:

- the discovery documents shipped inside google-api-python-client
  (``googleapiclient/discovery_cache/documents/<api>.<version>.json``), the APIs' own
  description of every message: :func:`validate` converts the named schema (and the schemas
  it references) to a JSON Schema and validates with :mod:`jsonschema`;
- for an API without a shipped document (Model Armor), the pulumi-gcp SDK's input classes:
  their fields and, from their docstrings, the allowed values of enum fields (see
  :data:`SDK_SCHEMAS`).

Rules the conversion adds to a discovery schema:

- an object that declares ``properties`` accepts no other field (``additionalProperties:
  false``); a map (``additionalProperties``) checks its values; an object with neither is free;
- ``enum`` values are enforced;
- formats: ``google-duration`` (``^-?[0-9]+(\\.[0-9]{1,9})?s$``), ``google-datetime``
  (RFC 3339), ``int64``/``uint64`` (an integer or a decimal string, as proto3 JSON allows),
  ``int32``/``uint32`` (an integer in range), ``double``/``float`` (a number);
- a field the API documents as output only (its description starts with "Output only", or it
  is marked ``readOnly``) must not be sent: it is reported as an error.

Unknown and secret values: a plan carries ``[unknown]`` where a value is computed by the
provider (unknown in a first preview) and ``[secret]`` where a value is secret. Both are
accepted wherever a string is allowed, whatever its enum or format: the real value is not
known offline. They are rejected where the API wants a number, a boolean, an object or a list.
"""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import json
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import googleapiclient
from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators

__all__ = [
    "DOCUMENTS",
    "PLACEHOLDERS",
    "SDK_SCHEMAS",
    "document",
    "enum_values",
    "json_schema",
    "validate",
]

#: Where google-api-python-client keeps its discovery documents.
DOCUMENTS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
#: Values of a plan that stand for a string the offline engine cannot know.
PLACEHOLDERS = frozenset({"[unknown]", "[secret]"})

DURATION = re.compile(r"^-?[0-9]+(\.[0-9]{1,9})?s$")
DATETIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
INT64 = re.compile(r"^-?[0-9]+$")
UINT64 = re.compile(r"^[0-9]+$")
_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_OUTPUT_ONLY = re.compile(r"^\s*\[?output only", re.IGNORECASE)


# --- formats and the validator ----------------------------------------------------------------

FORMATS = FormatChecker(formats=())


def _string_format(pattern: re.Pattern[str]) -> Callable[[object], bool]:
    def check(instance: object) -> bool:
        if not isinstance(instance, str) or instance in PLACEHOLDERS:
            return True  # a wrong type is reported by "type"
        return pattern.match(instance) is not None

    return check


def _integer_format(name: str, pattern: re.Pattern[str]) -> Callable[[object], bool]:
    low, high = _INT_RANGES[name]

    def check(instance: object) -> bool:
        if isinstance(instance, str):
            if instance in PLACEHOLDERS:
                return True
            if pattern.match(instance) is None:
                return False
            instance = int(instance)
        if isinstance(instance, int) and not isinstance(instance, bool):
            return low <= instance <= high
        return True

    return check


FORMATS.checks("google-duration")(_string_format(DURATION))
FORMATS.checks("google-datetime")(_string_format(DATETIME))
FORMATS.checks("int64")(_integer_format("int64", INT64))
FORMATS.checks("uint64")(_integer_format("uint64", UINT64))

_BASE_ENUM = Draft202012Validator.VALIDATORS["enum"]


def _enum(validator: Any, enums: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    """The standard ``enum`` keyword, except that a placeholder string passes."""
    if isinstance(instance, str) and instance in PLACEHOLDERS:
        return
    yield from _BASE_ENUM(validator, enums, instance, schema)


def _output_only(validator: Any, value: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    """``outputOnly: true`` (added by the conversion): the field must not be in a request."""
    if value:
        yield ValidationError("is output only (set by the API); a request must not send it")


Validator = validators.extend(Draft202012Validator, {"enum": _enum, "outputOnly": _output_only})


# --- discovery documents ----------------------------------------------------------------------


@lru_cache(maxsize=None)
def document(api: str) -> dict[str, Any]:
    """The discovery document of ``api`` (``<name>.<version>``, e.g. ``run.v2``)."""
    path = DOCUMENTS / f"{api}.json"
    if not path.is_file():
        raise KeyError(f"google-api-python-client ships no discovery document {path.name}")
    with path.open() as fh:
        return json.load(fh)


def enum_values(api: str, schema: str, field: str) -> list[str]:
    """The values the document allows for ``schema.field`` (a string or a list of strings)."""
    prop = document(api)["schemas"][schema]["properties"][field]
    return list(prop.get("enum") or prop["items"]["enum"])


def _is_output_only(node: Mapping[str, Any]) -> bool:
    return bool(node.get("readOnly")) or bool(_OUTPUT_ONLY.match(node.get("description") or ""))


def _convert(node: Mapping[str, Any], refs: set[str]) -> dict[str, Any]:
    """One discovery schema node as a JSON Schema; ``refs`` collects the ids it references."""
    if "$ref" in node:
        refs.add(node["$ref"])
        return {"$ref": f"#/$defs/{node['$ref']}"}
    kind = node.get("type")
    fmt = node.get("format")
    out: dict[str, Any]
    if kind == "object":
        out = {"type": "object"}
        if "properties" in node:
            out["properties"] = {
                name: {"outputOnly": True} if _is_output_only(prop) else _convert(prop, refs)
                for name, prop in node["properties"].items()
            }
            out["additionalProperties"] = False
        elif "additionalProperties" in node:
            out["additionalProperties"] = _convert(node["additionalProperties"], refs)
    elif kind == "array":
        out = {"type": "array"}
        if "items" in node:
            out["items"] = _convert(node["items"], refs)
    elif kind == "string" and fmt in ("int64", "uint64"):
        # proto3 JSON: 64-bit integers are decimal strings, and parsers accept numbers too
        out = {"type": ["integer", "string"], "format": fmt}
    elif kind == "string":
        out = {"type": "string"}
        if fmt in ("google-duration", "google-datetime"):
            out["format"] = fmt
    elif kind == "integer":
        out = {"type": "integer"}
        if fmt in _INT_RANGES:
            out["minimum"], out["maximum"] = _INT_RANGES[fmt]
    elif kind == "number":
        out = {"type": "number"}  # double and float
    elif kind == "boolean":
        out = {"type": "boolean"}
    elif kind == "any" or kind is None:
        out = {}
    else:
        raise ValueError(f"discovery type {kind!r} is not supported")
    if "enum" in node:
        out["enum"] = list(node["enum"])
    return out


@lru_cache(maxsize=None)
def json_schema(api: str, schema: str) -> dict[str, Any]:
    """The JSON Schema of ``schema`` in ``api``'s document, with every schema it reaches."""
    if (api, schema) in SDK_SCHEMAS:
        return _sdk_schema(api, schema)
    schemas = document(api)["schemas"]
    if schema not in schemas:
        raise KeyError(f"{api} has no schema {schema!r}")
    defs: dict[str, Any] = {}
    pending = [schema]
    while pending:
        name = pending.pop()
        if name in defs:
            continue
        refs: set[str] = set()
        defs[name] = _convert(schemas[name], refs)
        pending.extend(refs - defs.keys())
    return {"$ref": f"#/$defs/{schema}", "$defs": defs}


@lru_cache(maxsize=None)
def _validator(api: str, schema: str) -> Any:
    return Validator(json_schema(api, schema), format_checker=FORMATS)


def _json_path(error: ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate(api: str, schema: str, body: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``body`` as ``api``'s ``schema``: one ``<JSON path>: <problem>``
    per error, in path order; empty when the API accepts it."""
    errors = _validator(api, schema).iter_errors(body)
    found = sorted(errors, key=lambda e: ([(isinstance(p, int), p) for p in e.absolute_path], e.message))
    return [f"{_json_path(e)}: {e.message}" for e in found]


# --- schemas from the pulumi-gcp SDK, for APIs without a shipped discovery document -----------

#: Request bodies checked against pulumi-gcp's input classes instead of a discovery document:
#: (api, schema) -> (SDK module, body field -> input class name, or None for a map of strings).
#: Model Armor: the fields of the create request are those of ``Template`` in the provider's
#: resource definition (magic-modules ``mmv1/products/modelarmor/Template.yaml``: no field is
#: renamed), so the SDK's ``TemplateFilterConfigArgs`` and ``TemplateTemplateMetadataArgs``
#: (``pulumi_gcp/modelarmor/_inputs.py``) describe the body; their docstrings list the values
#: of each enum ("Possible values: ...").
SDK_SCHEMAS: dict[tuple[str, str], tuple[str, dict[str, str | None]]] = {
    ("modelarmor.v1", "Template"): (
        "pulumi_gcp.modelarmor",
        {
            "labels": None,
            "filterConfig": "TemplateFilterConfigArgs",
            "templateMetadata": "TemplateTemplateMetadataArgs",
        },
    ),
}

_POSSIBLE_VALUES = re.compile(r"Possible values:\s*\n((?:[ \t]*[A-Z][A-Z0-9_]*[ \t]*(?:\n|$))+)")


def _documented_enum(doc: str | None) -> list[str] | None:
    """The values listed under "Possible values:" in a pulumi-gcp docstring."""
    match = _POSSIBLE_VALUES.search(inspect.cleandoc(doc or ""))
    return match.group(1).split() if match else None


def _input_type(annotation: Any) -> Any:
    """``T`` out of ``pulumi.Input[Optional[T]]`` (``Union[T, None, Awaitable[..], Output[T]]``)."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else (annotation,)
    kept = [
        a
        for a in args
        if a is not type(None)
        and typing.get_origin(a) is not collections.abc.Awaitable
        and not (isinstance(a, typing.ForwardRef) and a.__forward_arg__.startswith("Output"))
    ]
    if len(kept) != 1:
        raise ValueError(f"cannot read the input type of {annotation!r}")
    return kept[0]


def _sdk_type(annotation: Any, enum: list[str] | None, defs: dict[str, Any], module: Any) -> dict[str, Any]:
    t = _input_type(annotation)
    origin = typing.get_origin(t)
    if isinstance(t, typing.ForwardRef):
        name = t.__forward_arg__
        if name not in defs:
            defs[name] = {}  # placeholder: the class may refer to itself
            defs[name] = _sdk_class(getattr(module, name), defs, module)
        return {"$ref": f"#/$defs/{name}"}
    if origin is collections.abc.Sequence:
        return {"type": "array", "items": _sdk_type(typing.get_args(t)[0], enum, defs, module)}
    if origin is collections.abc.Mapping:
        return {"type": "object", "additionalProperties": _sdk_type(typing.get_args(t)[1], None, defs, module)}
    scalar = {str: "string", int: "integer", float: "number", bool: "boolean"}.get(t)
    if scalar is None:
        raise ValueError(f"cannot convert the input type {t!r}")
    out: dict[str, Any] = {"type": scalar}
    if enum and scalar == "string":
        out["enum"] = enum
    return out


def _sdk_class(cls: type, defs: dict[str, Any], module: Any) -> dict[str, Any]:
    """A pulumi-gcp ``...Args`` input class as a closed JSON Schema object (camelCase names)."""
    properties: dict[str, Any] = {}
    for attr in vars(cls).values():
        if not isinstance(attr, property) or attr.fget is None:
            continue
        name = getattr(attr.fget, "_pulumi_name", attr.fget.__name__)
        annotation = attr.fget.__annotations__["return"]
        properties[name] = _sdk_type(annotation, _documented_enum(attr.fget.__doc__), defs, module)
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _sdk_schema(api: str, schema: str) -> dict[str, Any]:
    module_name, fields = SDK_SCHEMAS[(api, schema)]
    module = importlib.import_module(module_name)
    defs: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for field, class_name in fields.items():
        if class_name is None:
            properties[field] = {"type": "object", "additionalProperties": {"type": "string"}}
        else:
            properties[field] = _sdk_type(typing.ForwardRef(class_name), None, defs, module)
    root = {"type": "object", "properties": properties, "additionalProperties": False}
    return {**root, "$defs": defs}
