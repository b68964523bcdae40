"""Strict, bounded reading of every file a user hands agentstage: stack configs and
``Pulumi.yaml`` (YAML), policy configs, evaluation reports, metrics, ledgers (JSON), load-test
CSVs (text).

One place decides what a readable input is, so every command refuses the same things with the
same words (each a :class:`~agentstage.errors.BadInput` naming the file, and the key when there
is one):

- **Size**: at most :data:`MAX_BYTES` per file (a stack config of 1,000 agents is about 3 MB).
- **Encoding**: UTF-8 (a UTF-8 byte-order mark is allowed); UTF-16/32 and other encodings are
  named, with the byte offset of the first bad byte.
- **YAML**: plain YAML 1.2 data only, as the Pulumi CLI reads config: mappings with string keys,
  sequences, strings, numbers, booleans and null. A date (``version: 2026-01-01``), ``!!binary``,
  ``!!set``, ``!!omap``, a custom tag, a non-string key (``true:``, ``null:``, ``1:``) or a
  complex key is an error naming the key and line, with a hint to quote it. Anchors and aliases
  are allowed, but the document they expand to is bounded (:data:`MAX_NODES`) — a "billion laughs"
  file is refused in milliseconds instead of growing to gigabytes — and so is nesting
  (:data:`MAX_DEPTH`). Duplicate keys are errors. ruamel.yaml's pure parser decides what a
  document means; libyaml scans and parses it first when the document holds nothing the two
  parsers read differently (:func:`parse_yaml`), about four times faster overall.
- **JSON**: standard JSON only: ``NaN``/``Infinity`` are refused, duplicate keys are errors
  (``json`` silently keeps the last), nesting is bounded.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentstage.errors import BadInput

__all__ = [
    "MAX_BYTES",
    "MAX_NODES",
    "MAX_DEPTH",
    "read_text",
    "decode",
    "parse_yaml",
    "load_yaml",
    "check_yaml_node",
    "parse_json",
    "load_json",
    "key_path",
    "text_stream",
    "reported_as",
]

MAX_BYTES = 32 * 1024 * 1024
#: Scalars, mappings and sequences a YAML document may expand to once aliases are followed.
MAX_NODES = 2_000_000
MAX_DEPTH = 64

_BOMS = [
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
]


def read_text(path: str | os.PathLike[str], what: str = "file", *, max_bytes: int = MAX_BYTES) -> str:
    """The text of ``path`` (a ``what``: "stack config", "policy config"...), UTF-8 decoded."""
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{what} {p} does not exist", file=str(p))
    if p.is_dir():
        raise BadInput(f"{what} {p} is a directory, not a file", file=str(p))
    try:
        with p.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as err:
        raise BadInput(f"{what} {p}: cannot read it: {err.strerror or err}", file=str(p)) from None
    if len(data) > max_bytes:
        raise BadInput(
            f"{what} {p} is larger than {max_bytes // (1024 * 1024)} MiB; agentstage reads files up to that size",
            file=str(p),
        )
    return decode(data, f"{what} {p}", file=str(p))


def decode(data: bytes, source: str, *, file: str | None = None) -> str:
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise BadInput(f"{source} is {name} text; save it as UTF-8", file=file)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        hint = " (it looks like UTF-16 without a byte-order mark)" if b"\x00" in data[:64] else ""
        raise BadInput(
            f"{source} is not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} cannot be "
            f"decoded{hint}; save it as UTF-8",
            file=file,
        ) from None
    if "\x00" in text:
        raise BadInput(
            f"{source} holds a NUL character at offset {text.index(chr(0))}; it is not a text file", file=file
        )
    return text


# --- YAML ------------------------------------------------------------------------------------

_PLAIN = {"str", "int", "float", "bool", "null", "map", "seq"}
_HINTS = {
    "timestamp": 'is read as a date; quote it ("{v}") or write the value you mean',
    "binary": "is tagged !!binary; config values are text: write the value as a string",
    "set": "is a !!set; write a list (- item) or a mapping",
    "omap": "is an !!omap; write a plain mapping",
    "pairs": "is a !!pairs list; write a plain mapping",
}


def key_path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the document)"


def _tag(node: Any) -> str:
    tag = getattr(node.tag, "value", node.tag) or ""
    return tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else tag


def _where(source: str, node: Any, parts: list[str | int]) -> str:
    line = getattr(getattr(node, "start_mark", None), "line", None)
    return f"{source}: {key_path(parts)}" + (f" (line {line + 1})" if line is not None else "")


def check_yaml_node(root: Any, source: str, *, file: str | None = None) -> None:
    """Refuse what plain config data cannot be (see the module doc) in a composed YAML node
    graph, before anything is built from it."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    def where(node: Any, parts: list[str | int]) -> str:
        return _where(source, node, parts)

    sizes: dict[int, int] = {}
    total = 0
    # iterative walk: (node, key path, depth); each distinct node is checked once, its
    # expanded size (aliases followed) counted from the memo
    stack: list[tuple[Any, list[str | int], int, bool]] = [(root, [], 0, False)]
    while stack:
        node, parts, depth, done = stack.pop()
        if done:
            size = 1
            if isinstance(node, MappingNode):
                size += sum(sizes[id(k)] + sizes[id(v)] for k, v in node.value)
            elif isinstance(node, SequenceNode):
                size += sum(sizes[id(v)] for v in node.value)
            sizes[id(node)] = size
            continue
        if id(node) in sizes:
            continue
        if depth > MAX_DEPTH:
            raise BadInput(f"{where(node, parts[:3])}...: nested more than {MAX_DEPTH} levels deep", file=file)
        tag = _tag(node)
        if tag == "merge":
            sizes[id(node)] = 1
            continue
        if tag not in _PLAIN:
            value = node.value if isinstance(node, ScalarNode) else ""
            hint = _HINTS.get(
                tag,
                "has the tag {tag}; only plain YAML values (strings, numbers, true/false, null, "
                "lists and mappings) are config",
            ).format(v=value, tag=getattr(node.tag, "value", node.tag))
            raise BadInput(
                f"{where(node, parts)}: {value + ' ' if value else ''}{hint}", file=file, key=key_path(parts)
            )
        stack.append((node, parts, depth, True))
        if isinstance(node, MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                if _tag(key) == "merge":
                    sizes[id(key)] = 1
                    stack.append((value, parts, depth + 1, False))
                    continue
                if not isinstance(key, ScalarNode):
                    raise BadInput(
                        f"{where(key, parts)}: a key is a {'list' if isinstance(key, SequenceNode) else 'mapping'}"
                        "; keys must be plain strings",
                        file=file,
                        key=key_path(parts),
                    )
                if _tag(key) != "str":
                    shown = key.value
                    raise BadInput(
                        f"{where(key, [*parts, shown])}: the key {shown} is read as a {_KIND.get(_tag(key), _tag(key))}, "
                        f'not a string; quote it ("{shown}")',
                        file=file,
                        key=key_path([*parts, shown]),
                    )
                if key.value in seen:
                    raise BadInput(
                        f"{where(key, [*parts, key.value])}: the key {key.value} appears twice in one "
                        f"mapping (also line {seen[key.value] + 1}); keep one",
                        file=file,
                        key=key_path([*parts, key.value]),
                    )
                seen[key.value] = key.start_mark.line
                sizes[id(key)] = 1
                stack.append((value, [*parts, key.value], depth + 1, False))
        elif isinstance(node, SequenceNode):
            for i, value in enumerate(node.value):
                stack.append((value, [*parts, i], depth + 1, False))
    total = sizes.get(id(root), 0)
    if total > MAX_NODES:
        raise BadInput(
            f"{source}: expands to {total:,} values once its aliases (*name) are followed, more than the "
            f"{MAX_NODES:,} agentstage reads; write the values out or use fewer aliases",
            file=file,
        )


_KIND = {"bool": "boolean", "null": "null value", "int": "number", "float": "number"}


_FLOW_TOKENS = re.compile(r"""[\[\]{}]|"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|(?:^|(?<=\s))#[^\n]*""", re.M)


def _flow_depth_ok(text: str) -> bool:
    """False when flow collections (``[``, ``{``) nest deeper than :data:`MAX_DEPTH`: the YAML
    parser takes seconds to fail on thousands of levels, this scan milliseconds."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return True
    depth = 0
    for m in _FLOW_TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif c in "]}":
            depth = max(depth - 1, 0)
    return True


def _compose(yaml: Any, text: str, source: str, file: str | None) -> Any:
    from ruamel.yaml.error import YAMLError

    if not _flow_depth_ok(text):
        raise BadInput(f"{source}: nested more than {MAX_DEPTH} levels deep", file=file)
    try:
        return yaml.compose(text)
    except RecursionError:
        raise BadInput(f"{source}: nested too deeply to read", file=file) from None
    except YAMLError as err:
        raise BadInput(f"{source}: not valid YAML: {err}", file=file) from None


class _NotForLibyaml(Exception):
    """The document holds something whose events libyaml and the pure parser disagree on."""


#: Text the fast path leaves to the pure parser, where libyaml and ruamel's pure parser read
#: the same characters differently (each found by a differential search; the pure parser
#: refuses most of these documents, libyaml reads them as data):
_NOT_FOR_LIBYAML = re.compile(
    r"[\t\r\x85\u2028\u2029\ufeff]"  # tabs, carriage returns, the Unicode line breaks, a BOM
    r"|^%"  # a directive (%YAML 1.1 changes what scalars mean)
    r"|[&*][A-Za-z0-9_-]+[^A-Za-z0-9_\-\s,\[\]{}]"  # an anchor or alias name libyaml ends early (&a:b)
    r"""|(["'\]}]|\*[A-Za-z0-9_-]+) *:\S"""  # a colon glued to a quoted or flow key (["a":b])
    r"|![^\s\[\]{}]*,",  # a comma after a tag ([!!str, a]: part of the tag to the pure parser)
    re.M,
)
#: A document-end marker; libyaml skips a second one, the pure parser reads another document.
_DOCUMENT_END = re.compile(r"^\.\.\.(?=[ \n]|$)", re.M)


def _for_libyaml(text: str) -> bool:
    """Whether the fast path may read ``text`` (what it does not vouch for, the pure parser
    reads); a document not ending in a line break goes to the pure parser too (marks differ)."""
    return (
        text.endswith("\n")
        and not _NOT_FOR_LIBYAML.search(text)
        and len(_DOCUMENT_END.findall(text)) < 2
        and _flow_depth_ok(text)
    )


def _libyaml() -> Any:
    """PyYAML's binding to libyaml (the C parser), or None when this PyYAML has none."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML comes with the Pulumi SDK
        return None
    return yaml if getattr(yaml, "__with_libyaml__", False) else None


#: In an open mapping's frame: no key read yet, the next node is a key.
_NO_KEY = object()


def _compose_with_libyaml(text: str, libyaml: Any, resolver: Any) -> Any:
    """The node graph ruamel's composer builds for ``text``, from libyaml's events.

    libyaml only scans and parses (the pure parser's slowest part); every implicit tag is
    still resolved by ruamel's YAML 1.2 resolver, and the nodes are ruamel's. Anything
    libyaml reads differently, and anything the pure parser would warn about or refuse at
    this stage, raises :class:`_NotForLibyaml`."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
    from ruamel.yaml.reader import Reader

    if Reader.NON_PRINTABLE.search(text):
        raise _NotForLibyaml("a character YAML does not allow")  # the pure reader words it
    y = libyaml
    anchors: dict[str, Any] = {}
    root: Any = None
    documents = 0
    #: open collections: [node, the key read and waiting for its value (or _NO_KEY)]
    stack: list[list[Any]] = []
    for event in y.parse(text, Loader=y.CSafeLoader):
        kind = type(event)
        if kind is y.ScalarEvent or kind is y.MappingStartEvent or kind is y.SequenceStartEvent:
            tag = event.tag  # `!` (non-specific) stays: check_yaml_node refuses it, the pure parser reads it
            if kind is y.ScalarEvent:
                if event.style in ("|", ">"):
                    # libyaml accepts leading blank lines indented deeper than the text, and
                    # a comment glued to the header (`|-#c`); the pure parser refuses both
                    raise _NotForLibyaml("a block scalar")
                if tag is None:
                    tag = resolver.resolve(ScalarNode, event.value, event.implicit)
                node = ScalarNode(
                    tag, event.value, event.start_mark, event.end_mark, style=event.style or None, anchor=event.anchor
                )
            else:
                cls = MappingNode if kind is y.MappingStartEvent else SequenceNode
                if tag is None:
                    tag = resolver.resolve(cls, None, event.implicit)
                node = cls(tag, [], event.start_mark, None, flow_style=event.flow_style, anchor=event.anchor)
            if event.anchor is not None:
                if event.anchor in anchors:
                    raise _NotForLibyaml("a reused anchor")  # the pure composer warns
                anchors[event.anchor] = node
        elif kind is y.AliasEvent:
            if event.anchor not in anchors:
                raise _NotForLibyaml("an undefined alias")
            node = anchors[event.anchor]
        elif kind is y.MappingEndEvent or kind is y.SequenceEndEvent:
            stack.pop()[0].end_mark = event.end_mark
            continue
        elif kind is y.DocumentStartEvent:
            documents += 1
            if documents > 1 or event.version or event.tags:
                raise _NotForLibyaml("a second document, or a directive")
            continue
        else:  # stream start and end, document end
            continue
        if not stack:
            root = node
        else:
            top = stack[-1]
            if type(top[0]) is SequenceNode:
                top[0].value.append(node)
            elif top[1] is _NO_KEY:
                top[1] = node
            else:
                top[0].value.append((top[1], node))
                top[1] = _NO_KEY
        if kind is y.MappingStartEvent or kind is y.SequenceStartEvent:
            stack.append([node, _NO_KEY])
    return root


def _parse_with_libyaml(text: str, source: str, libyaml: Any) -> Any:
    """:func:`parse_yaml`'s result, the document scanned and parsed by libyaml; raises on
    anything it does not vouch for, and the caller then asks the pure parser."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    node = _compose_with_libyaml(text, libyaml, yaml.resolver)
    if node is None:
        return None
    check_yaml_node(node, source)
    return _construct(yaml, node, source, None)


def parse_yaml(text: str, source: str, *, file: str | None = None) -> Any:
    """Plain data from YAML ``text`` (``source`` names it in errors)."""
    from ruamel.yaml import YAML

    # ruamel's parser decides what a document means: YAML 1.2, like the Pulumi CLI. libyaml
    # (through PyYAML, which the Pulumi SDK requires) scans and parses it when the document
    # holds nothing the two read differently; when that path fails in any way, the pure parser
    # reads the document again and words the error. tests/test_inputs_yaml_fast.py compares the
    # two on generated documents.
    libyaml = _libyaml()
    if libyaml is not None and _for_libyaml(text):
        try:
            return _parse_with_libyaml(text, source, libyaml)
        except Exception:  # whatever it is, the pure parser decides and words it
            pass
    # The pure parser: what the fast path does not vouch for, and every error.
    yaml = YAML(typ="safe", pure=True)
    node = _compose(yaml, text, source, file)
    if node is None:
        return None
    check_yaml_node(node, source, file=file)
    return _construct(yaml, node, source, file)


def _construct(yaml: Any, node: Any, source: str, file: str | None) -> Any:
    """The data of a checked node graph."""
    from ruamel.yaml.error import YAMLError

    try:
        return yaml.constructor.construct_document(node)
    except RecursionError:
        raise BadInput(f"{source}: nested too deeply to read", file=file) from None
    except YAMLError as err:
        raise BadInput(f"{source}: not valid YAML: {err}", file=file) from None
    except (ValueError, LookupError, TypeError, ArithmeticError):
        # an explicit tag the value does not fit (`!!int a`, `!!bool x`): ruamel's
        # constructor fails with Python's own error, which names neither key nor line
        raise _misfit_tag(yaml.constructor, node, source, file) from None


def _misfit_tag(constructor: Any, root: Any, source: str, file: str | None) -> BadInput:
    """The error for the first scalar whose explicit tag its value does not fit."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    seen: set[int] = set()
    stack: list[tuple[Any, list[str | int]]] = [(root, [])]
    while stack:
        node, parts = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            try:
                constructor.yaml_constructors[node.tag](constructor, node)
            except (ValueError, LookupError, TypeError, ArithmeticError):
                kind = {"int": "an integer", "bool": "true or false"}.get(_tag(node), "a number")
                shown = node.value or '""'
                return BadInput(
                    f"{_where(source, node, parts)}: {shown} is tagged !!{_tag(node)} but is not {kind}; "
                    f"write {kind} or drop the tag",
                    file=file,
                    key=key_path(parts),
                )
        elif isinstance(node, MappingNode):
            stack.extend((v, [*parts, str(k.value)]) for k, v in reversed(node.value))
        elif isinstance(node, SequenceNode):
            stack.extend((v, [*parts, i]) for i, v in reversed(list(enumerate(node.value))))
    return BadInput(f"{source}: not valid YAML: a value does not fit its tag", file=file)


def load_yaml(path: str | os.PathLike[str], what: str = "file") -> Any:
    return parse_yaml(read_text(path, what), f"{what} {path}", file=str(path))


# --- JSON ------------------------------------------------------------------------------------


def _pairs(source: str, file: str | None):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise BadInput(
                    f"{source}: the key {json.dumps(key)} appears twice in one object; keep one", file=file, key=key
                )
            out[key] = value
        return out

    return hook


def _constant(source: str, file: str | None):
    def refuse(name: str) -> Any:
        raise BadInput(f"{source}: {name} is not a JSON number; write a finite number", file=file)

    return refuse


def parse_json(text: str, source: str, *, file: str | None = None) -> Any:
    """Data from JSON ``text``: duplicate keys and NaN/Infinity refused, nesting bounded."""
    try:
        return json.loads(text, object_pairs_hook=_pairs(source, file), parse_constant=_constant(source, file))
    except RecursionError:
        raise BadInput(f"{source}: nested too deeply to read", file=file) from None
    except json.JSONDecodeError as err:
        raise BadInput(
            f"{source}: not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})", file=file
        ) from None


def load_json(path: str | os.PathLike[str], what: str = "file") -> Any:
    return parse_json(read_text(path, what), f"{what} {path}", file=str(path))


def text_stream(path: str | os.PathLike[str], what: str = "file") -> io.StringIO:
    """A text file as a stream (what ``csv`` readers take), read under the same rules."""
    return io.StringIO(read_text(path, what), newline="")


@contextmanager
def reported_as(error: type[BadInput]) -> Iterator[None]:
    """Re-raise the readers' errors as ``error`` (a module's own :class:`BadInput` subclass,
    which its callers catch), keeping the message, file and key."""
    try:
        yield
    except BadInput as err:
        if isinstance(err, error):
            raise
        new = error(err.message)
        new.file, new.key = err.file, err.key
        raise new from None
