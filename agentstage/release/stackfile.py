"""Comment-preserving edits of ``Pulumi.<stack>.yaml``, written atomically.

The stack file is the source of truth: the release flow changes only the keys it must
(``release``, ``stable``, ``stable_revision``, ``rollout.canary_percent`` of one agent, under
``<namespace>:agents.<agent>``, the namespace being the project's name) through a ruamel.yaml
round trip, so comments, quoting, flow lists and every unrelated line stay byte-identical.
A write goes to a temporary file in the same directory, is fsynced, and replaces the stack
file with ``os.replace``: a reader (or a run killed mid-write) sees the old file or the new
one, never half of one.
"""

from __future__ import annotations

import difflib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from agentstage.config import NAMESPACE
from agentstage.errors import BadInput
from agentstage.inputs import parse_yaml, read_text, reported_as

__all__ = ["StackFileError", "StackFile", "atomic_write", "MANIFEST_KEYS", "plain"]

#: Manifest keys in the order they are written.
MANIFEST_KEYS = ("version", "image", "model", "prompts", "tools", "memory_schema", "eval_dataset")


class StackFileError(BadInput):
    """The stack file cannot be read or does not have the expected shape."""


def plain(node: Any) -> Any:
    """A ruamel node as plain Python data (dicts, lists, scalars)."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (same-directory temp file, fsync, os.replace)."""
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StackFile:
    """A stack config file loaded for round-trip editing.

    ``namespace``: the config namespace of the project's keys, Pulumi's default for a project
    being its name in ``Pulumi.yaml`` (default: the reference platform's, ``agent-platform``).
    A key may also be written without it (``agents:``), as the Pulumi CLI allows."""

    def __init__(self, path: Path, text: str, namespace: str = NAMESPACE) -> None:
        self.path = Path(path)
        self.namespace = namespace
        self.original = text
        with reported_as(StackFileError):
            parse_yaml(text, f"stack config {path}", file=str(path))  # plain config data only
        try:
            _, indent, offset = load_yaml_guess_indent(text)
        except YAMLError as err:
            raise StackFileError(f"{path}: not valid YAML: {err}") from None
        self._yaml = YAML()
        self._yaml.preserve_quotes = True
        self._yaml.width = 4096
        self._yaml.indent(mapping=2, sequence=indent or 2, offset=offset or 0)
        self.doc = self._yaml.load(text)
        if not isinstance(self.doc, dict) or not isinstance(self.doc.get("config"), dict):
            raise StackFileError(f"{path}: expected a mapping with a 'config:' key")
        #: how ruamel writes the unedited file: the edits are what differs from this
        self._baseline = self._dump()

    @classmethod
    def load(cls, path: Path, namespace: str = NAMESPACE) -> StackFile:
        path = Path(path)
        with reported_as(StackFileError):
            text = read_text(path, "stack config file")
        return cls(path, text, namespace)

    # --- reading ---------------------------------------------------------------------------

    @property
    def config(self) -> CommentedMap:
        return self.doc["config"]

    def _key(self, name: str) -> str:
        full = f"{self.namespace}:{name}"
        return name if name in self.config and full not in self.config else full

    def value(self, name: str, default: Any = None) -> Any:
        """Plain value of ``<namespace>:<name>``."""
        return plain(self.config.get(self._key(name), default))

    @property
    def agents(self) -> CommentedMap:
        agents = self.config.get(self._key("agents"))
        if not isinstance(agents, dict):
            raise StackFileError(f"{self.path}: no agents mapping: {self.looked_for('agents')}")
        return agents

    def looked_for(self, name: str) -> str:
        """The keys a missing ``name`` was looked for under, and the keys the file has."""
        found = ", ".join(str(k) for k in self.config) or "none"
        return (
            f"looked for {self.namespace}:{name} and {name} ({self.namespace} is the project's name in "
            f"Pulumi.yaml, its config namespace); keys found: {found}"
        )

    def agent(self, name: str) -> CommentedMap:
        node = self.agents.get(name)
        if not isinstance(node, dict):
            raise StackFileError(f"{self.path}: no agent {name!r} under {self.namespace}:agents")
        return node

    # --- editing ---------------------------------------------------------------------------

    def set_release(self, agent: str, manifest: dict[str, Any]) -> None:
        """Replace the agent's ``release`` with ``manifest`` (plain data)."""
        self._put(self.agent(agent), "release", _manifest_node(manifest), after=None)

    def move_release_to_stable(self, agent: str) -> None:
        """``stable`` becomes the current ``release`` node (comments and layout kept)."""
        node = self.agent(agent)
        self._put(node, "stable", node["release"], after="release")

    def drop_stable(self, agent: str) -> None:
        """No stable release any more: ``stable`` and its ``stable_revision`` go."""
        node = self.agent(agent)
        for key in ("stable", "stable_revision"):
            if key in node:
                del node[key]
        engine = node.get("agent_engine")
        if isinstance(engine, dict) and "stable_revision" in engine:
            del engine["stable_revision"]

    def set_engine_stable_revision(self, agent: str, revision: str) -> None:
        """Record the id of the Agent Engine revision that serves ``stable``
        (``agent_engine.stable_revision``)."""
        node = self.agent(agent)
        engine = node.get("agent_engine")
        if not isinstance(engine, dict):
            engine = CommentedMap()
            self._put(node, "agent_engine", engine, after=None)
        self._put(engine, "stable_revision", revision, after=None)

    def set_stable_revision(self, agent: str, revision: str) -> None:
        """Record the name of the revision that serves ``stable`` (after ``stable``)."""
        self._put(self.agent(agent), "stable_revision", revision, after="stable")

    def set_canary_percent(self, agent: str, percent: int | None) -> None:
        """Set ``rollout.canary_percent`` (None removes it)."""
        node = self.agent(agent)
        rollout = node.get("rollout")
        if percent is None:
            if isinstance(rollout, dict) and "canary_percent" in rollout:
                del rollout["canary_percent"]
            return
        if not isinstance(rollout, dict):
            rollout = CommentedMap()
            self._put(node, "rollout", rollout, after="stable" if "stable" in node else "release")
        if "canary_percent" in rollout:
            rollout["canary_percent"] = percent
        else:
            rollout.insert(0, "canary_percent", percent)

    def set_feature(self, agent: str, name: str, enabled: bool) -> None:
        """Set the feature flag ``features.<name>`` of ``agent`` (``features`` is added after
        ``env`` when the agent has none yet)."""
        node = self.agent(agent)
        features = node.get("features")
        if not isinstance(features, dict):
            features = CommentedMap()
            self._put(node, "features", features, after="env")
        features[name] = enabled

    @staticmethod
    def _put(node: CommentedMap, key: str, value: Any, *, after: str | None) -> None:
        if key in node:
            node[key] = value
            return
        keys = list(node.keys())
        pos = keys.index(after) + 1 if after in keys else len(keys)
        node.insert(pos, key, value)

    # --- writing ---------------------------------------------------------------------------

    def _dump(self) -> str:
        out = io.StringIO()
        self._yaml.dump(self.doc, out)
        return out.getvalue()

    def dumps(self) -> str:
        """The edited file: the original text with only the edited lines changed (ruamel's
        own output differs from a hand-written file in a document marker, list indentation,
        where comments attach; see :func:`carry_over`)."""
        return carry_over(self.original, self._baseline, self._dump())

    @property
    def changed(self) -> bool:
        return self.dumps() != self.original

    def save(self) -> str:
        """Write the edited file atomically; return the text written."""
        text = self.dumps()
        atomic_write(self.path, text)
        return text


def _is_comment(line: str) -> bool:
    return line.strip().startswith("#")


def carry_over(original: str, baseline: str, edited: str) -> str:
    """Apply to ``original`` the line edits that turn ``baseline`` (ruamel's rendering of
    the unedited file) into ``edited``, so every line the edit did not touch stays
    byte-identical: a leading ``---``, the file's own list indentation, blank lines. A comment
    that ends a deleted block (ruamel attaches the comment above the next key to the block
    before it) stays. When an edited line has no counterpart in the original (ruamel
    rewrote that region), the whole of ``edited`` is returned."""
    if edited == baseline:
        return original
    orig, base, new = (t.splitlines(keepends=True) for t in (original, baseline, edited))
    where: dict[int, int] = {}  # baseline line -> original line, for identical lines
    for a, b, n in difflib.SequenceMatcher(None, orig, base, autojunk=False).get_matching_blocks():
        for k in range(n):
            where[b + k] = a + k
    patches: list[tuple[int, int, list[str]]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, base, new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if i1 < i2:
            span = [where.get(i) for i in range(i1, i2)]
            if None in span or span != list(range(span[0], span[0] + len(span))):  # type: ignore[operator]
                return edited
            start, end = span[0], span[-1] + 1  # type: ignore[operator]
        elif i1 in where:
            start = end = where[i1]
        elif i1 - 1 in where:
            start = end = where[i1 - 1] + 1
        else:
            return edited
        lines = new[j1:j2]
        if tag == "delete":  # keep the comments the deleted block ends with
            kept = end
            while kept > start and _is_comment(orig[kept - 1]):
                kept -= 1
            lines = orig[kept:end]
        patches.append((start, end, lines))
    for start, end, lines in sorted(patches, reverse=True):
        orig[start:end] = lines
    return "".join(orig)


_RESOLVER = VersionedResolver()


def _scalar(value: Any) -> Any:
    """Strings YAML would read as another type ("3", "true") get the double quotes the stacks use."""
    if isinstance(value, str) and _RESOLVER.resolve(ScalarNode, value, (True, False)) != "tag:yaml.org,2002:str":
        return DoubleQuotedScalarString(value)
    return value


def _manifest_node(manifest: dict[str, Any]) -> CommentedMap:
    node = CommentedMap()
    for key in MANIFEST_KEYS:
        if manifest.get(key) is not None:
            value = manifest[key]
            if isinstance(value, dict):
                node[key] = CommentedMap((k, _scalar(v)) for k, v in value.items())
            else:
                node[key] = value if key == "version" else _scalar(value)
    for key, value in manifest.items():  # keys this version does not know stay, for the validator to judge
        if key not in node and value is not None:
            node[key] = value
    return node
