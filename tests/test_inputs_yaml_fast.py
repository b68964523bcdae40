"""The libyaml fast path of ``parse_yaml`` reads every document as the pure parser does.

``parse_yaml`` lets libyaml scan and parse a document (ruamel's YAML 1.2 resolver and
constructor still decide what it means) and asks the pure parser whenever that path fails or
meets something the two parsers read differently. The property: for any text, the result (the
data, or the exact error message) is the one the pure parser alone gives. The documents are
generated from config-like trees rendered in every style YAML has, with the characters and
scalars on which parsers are known to differ.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentstage import inputs
from agentstage.errors import BadInput

ROOT = Path(__file__).resolve().parent.parent


def _outcome(text: str) -> tuple[str, object]:
    try:
        return "data", inputs.parse_yaml(text, "stack config s.yaml", file="s.yaml")
    except BadInput as err:
        return "error", str(err)


def _pure(text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, object]:
    with monkeypatch.context() as m:
        m.setattr(inputs, "_libyaml", lambda: None)
        return _outcome(text)


def _same(a: object, b: object) -> bool:
    """Equal, with the same types and key order all the way down (1 is not 1.0 or True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)  # type: ignore[arg-type]
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


def _assert_as_pure(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, pure = _outcome(text), _pure(text, monkeypatch)
    assert fast[0] == pure[0], (text, fast, pure)
    assert _same(fast[1], pure[1]), (text, fast, pure)


# --- generated documents -----------------------------------------------------------------------

#: Scalars YAML 1.1 and 1.2 resolve differently, or that parsers split differently.
TRICKY = [
    "a", "secret:3", "x:y", "a b", "a #b", "a# b", "http://x:80/p", "-1", "+1", "1_000", "0o17", "017",
    "0x1F", "1:20", "1e3", "1.5e-3", ".inf", "-.Inf", ".NaN", "~", "null", "Null", "true", "True", "yes",
    "no", "on", "off", "y", "2001-12-14", "0.", "0", "-0", ".5", "0b101", "=", "<<", "é", "日本", "a\u00a0b",
    "a\\b", "a'b", 'a"b', "a,b", "a]b", "a}b", "?a", "-a", "%a", "!a", "&a", "*a", "@a", "`a", "|a", ">a",
    "a|b", "a: ", "::", "[x]", "{x: y}", "", " ", "a\tb", "a\u2028b", "a\x85b", "\ufeffa", "a\rb",
    "&a:b", "*a:", "*a :b", '"a":b', "'':0", "!!str,", "[!!str, a]", "a&b=c", "...",
]  # fmt: skip
ALPHABET = "ab1 :#-?,[]{}&*!|>'\"%@`\\\t\né\u2028\x85\ufeff\r."
ESCAPES = ["\\n", "\\t", "\\\\", '\\"', "\\/", "\\u00e9", "\\x41", "\\0", "\\e", "\\N", "\\_", "\\L", "\\P", "\\ "]

scalar_text = st.sampled_from(TRICKY) | st.text(alphabet=ALPHABET, max_size=6)
leaf = st.tuples(st.just("scalar"), scalar_text)
trees = st.recursive(
    leaf,
    lambda children: (
        st.tuples(st.just("seq"), st.lists(children, max_size=3))
        | st.tuples(st.just("map"), st.lists(st.tuples(scalar_text, children), max_size=3))
    ),
    max_leaves=12,
)


class _Renderer:
    """Writes a tree as YAML text, drawing each style choice from hypothesis."""

    def __init__(self, draw) -> None:
        self.draw = draw
        self.anchors: list[str] = []

    def scalar(self, text: str, indent: int, flow: bool) -> str:
        style = self.draw(
            st.sampled_from(["plain", "plain", "single", "double", "escapes", "tag", "block", "multiline"])
        )
        if style == "single":
            return "'" + text.replace("'", "''") + "'"
        if style == "double":
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if style == "escapes":
            return '"' + "".join(self.draw(st.lists(st.sampled_from([*ESCAPES, "a", " "]), max_size=4))) + '"'
        if style == "tag":
            tag = self.draw(st.sampled_from(["!!str", "!!int", "!!float", "!!bool", "!!null", "!", "!custom"]))
            return f"{tag} {text}"
        if style == "block" and not flow:
            header = self.draw(st.sampled_from(["|", "|-", "|+", ">", ">-", "|2", "|-#c"]))
            pad = " " * (indent + 2)
            lines = self.draw(st.lists(st.sampled_from(["text", "  more", "", " ", "# not a comment"]), min_size=1))
            return header + "\n" + "\n".join(pad + line for line in lines)
        if style == "multiline" and not flow:
            return f"{text or 'first'}\n{' ' * (indent + 2)}{self.draw(st.sampled_from(['next', 'k: v', '- d', '']))}"
        return text

    def node(self, tree, indent: int, flow: bool) -> str:
        kind, value = tree
        prefix = ""
        if self.anchors and self.draw(st.integers(0, 9)) == 0:
            return "*" + self.draw(st.sampled_from(self.anchors))
        if self.draw(st.integers(0, 9)) == 0:
            name = f"n{len(self.anchors)}"
            self.anchors.append(name)
            prefix = f"&{name} "
        if kind == "scalar":
            return prefix + self.scalar(value, indent, flow)
        if flow or not value or self.draw(st.integers(0, 3)) == 0:
            if kind == "seq":
                return prefix + "[" + ", ".join(self.node(item, indent, True) for item in value) + "]"
            pairs = ", ".join(f"{self.scalar(k, indent, True)}: {self.node(v, indent, True)}" for k, v in value)
            return prefix + "{" + pairs + "}"
        pad = " " * indent
        lines = [prefix.strip()] if prefix else []
        for item in value:
            lead = f"{pad}- " if kind == "seq" else f"{pad}{self.scalar(item[0], indent, True)}:"
            child = item if kind == "seq" else item[1]
            if child[0] != "scalar" and child[1] and self.draw(st.booleans()):
                lines.append(lead.rstrip() + self.draw(st.sampled_from(["", "  # c"])))
                lines.append(self.node(child, indent + 2, False))
            else:
                sep = "" if kind == "seq" else " "
                comment = self.draw(st.sampled_from(["", "", " # c", "  #c"]))
                lines.append(f"{lead}{sep}{self.node(child, indent + 2, False)}{comment}")
        return "\n".join(line for line in lines if line)


@st.composite
def documents(draw) -> str:
    body = _Renderer(draw).node(draw(trees), 0, False)
    head = draw(st.sampled_from(["", "", "---\n", "--- # doc\n", "# head\n", "%YAML 1.1\n---\n"]))
    tail = draw(st.sampled_from(["\n", "\n", "", "\n...\n", "\n...\n...\n", "\n\n", "\n# end\n"]))
    return head + body + tail


@settings(
    max_examples=int(os.environ.get("AGENTSTAGE_YAML_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=documents())
# Each a document libyaml reads differently from the pure parser, which the fast path must
# leave to it:
@example(text="! \n")  # a non-specific tag: libyaml does not mark the empty scalar implicit
@example(text="k: ! [a]\n")  # the same on a collection
@example(text="- >+\n  \n    \n  text\n")  # blank lines indented deeper than the text: refused
@example(text="k: |-#c\n  text\n")  # a comment glued to a block scalar header: refused
@example(text="k: a\tb\n")  # a tab
@example(text="k: a\u2028b\n")  # LINE SEPARATOR: a line break to libyaml
@example(text="k: a\x85b\n")  # NEXT LINE: the same
@example(text="%YAML 1.1\n---\nk: yes\n")  # a 1.1 document: `yes` is a boolean there
@example(text='["":]\n')  # a quoted key with its colon glued: libyaml reads a mapping
@example(text="- {'a':b}\n")  # the same in a flow mapping
@example(text="{A: secret:3}\n")  # `:` inside a flow scalar: YAML 1.2 only
@example(text="k: v")  # no final line break: marks differ
# found by a review's differential search, each read as data by libyaml and refused (or read
# otherwise) by the pure parser:
@example(text="k: &a:a\n")  # libyaml ends an anchor name at `:`, ruamel does not
@example(text="- &a x\n- *a:\n")  # the same for an alias
@example(text="- &x a\n- [*x :b]\n")  # a colon glued to the value after an alias key
@example(text="{a: !!str, b: 1}\n")  # the comma is part of the tag to the pure parser
@example(text="[!!str, 0x1]\n")
@example(text="k: a\n...\n...\n")  # a second document-end marker: a second document
@example(text="---\n...\n...\n")
@example(text="- &a x\n- *b\n")  # an undefined alias: the pure parser's message
def test_fast_path_reads_what_the_pure_parser_reads(text, monkeypatch):
    _assert_as_pure(text, monkeypatch)


# --- what the fast path is for -------------------------------------------------------------


def test_repository_yaml_takes_the_fast_path_and_reads_the_same(monkeypatch):
    files = sorted(p for p in ROOT.rglob("*.yaml") if ".venv" not in p.parts and "loadtest" not in p.parts)
    assert len(files) > 20
    taken: list[str] = []
    real = inputs._parse_with_libyaml

    def counting(text, source, libyaml):
        result = real(text, source, libyaml)
        taken.append(source)
        return result

    monkeypatch.setattr(inputs, "_parse_with_libyaml", counting)
    for path in files:
        text = path.read_text(encoding="utf-8")
        _assert_as_pure(text, monkeypatch)
    # Every stack file and Pulumi.yaml of the repository is read by libyaml (none holds a tab,
    # a block scalar or a directive); the comparison above found them the same.
    stack_files = [p for p in files if p.name.startswith("Pulumi.")]
    assert len(taken) >= len(stack_files) > 10


def test_errors_are_the_pure_parsers_words(monkeypatch):
    text = "config:\n  a: [1, 2\n  b: 3\n"
    fast, pure = _outcome(text), _pure(text, monkeypatch)
    assert fast == pure
    assert fast[1].startswith("stack config s.yaml: not valid YAML: while parsing a flow sequence")


def test_without_libyaml_the_pure_parser_reads_everything(monkeypatch):
    called: list[str] = []
    monkeypatch.setattr(inputs, "_parse_with_libyaml", lambda *a: called.append("fast"))
    monkeypatch.setattr(inputs, "_libyaml", lambda: None)
    assert inputs.parse_yaml("a: yes\nb: 0o17\n", "s") == {"a": "yes", "b": 15}
    assert called == []


def test_yaml_12_meanings_survive_the_fast_path():
    # libyaml on its own (PyYAML's resolver) reads these as YAML 1.1: yes -> True, 017 -> 15,
    # 1:20 -> 80; the Pulumi CLI and agentstage read YAML 1.2.
    data = inputs.parse_yaml("a: yes\nb: 017\nc: 1:20\nd: 0o17\ne: .inf\nf: ~\n", "s")
    assert data == {"a": "yes", "b": 17, "c": "1:20", "d": 15, "e": math.inf, "f": None}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!int a\n", "s: a (line 1): a is tagged !!int but is not an integer; write an integer or drop the tag"),
        (
            "a: !!int 1.5\n",
            "s: a (line 1): 1.5 is tagged !!int but is not an integer; write an integer or drop the tag",
        ),
        (
            "a:\n  b: [1, !!bool x]\n",
            "s: a.b[1] (line 2): x is tagged !!bool but is not true or false; write true or false or drop the tag",
        ),
        (
            "a: !!float 0x1F\n",
            "s: a (line 1): 0x1F is tagged !!float but is not a number; write a number or drop the tag",
        ),
    ],
)
def test_a_value_its_tag_does_not_fit_is_named_with_key_and_line(text, message, monkeypatch):
    # Both parsers: ruamel's constructor raised Python's bare ValueError/KeyError here.
    for outcome in (_outcome(text), _pure(text, monkeypatch)):
        assert outcome == ("error", message.replace("s: ", "stack config s.yaml: ", 1))
