"""Stack file edits: comment-preserving, unrelated lines byte-identical, atomic replace; the
manifest digest and the ledger's version check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from agentstage.release import manifest
from agentstage.release.ledger import Ledger
from agentstage.release.stackfile import StackFile, StackFileError, atomic_write
from tests.conftest import ROOT

PROD = ROOT / "stacks" / "Pulumi.production.yaml"


def changed_lines(a: str, b: str) -> list[tuple[str, str]]:
    import difflib

    return [(op, line) for line in difflib.ndiff(a.splitlines(), b.splitlines()) for op in [line[:1]] if op in "+-"]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_round_trip_without_edits_is_byte_identical(stack):
    path = ROOT / "stacks" / f"Pulumi.{stack}.yaml"
    assert StackFile.load(path).dumps() == path.read_text()


def test_promotion_edit_touches_only_release_stable_and_canary(tmp_path):
    path = tmp_path / "Pulumi.production.yaml"
    original = PROD.read_text()
    path.write_text(original)
    sf = StackFile.load(path)
    sf.drop_stable("support-bot")
    sf.set_canary_percent("support-bot", None)
    sf.move_release_to_stable("support-bot")
    new = dict(sf.value("agents")["support-bot"]["release"], version="1.5.0")
    sf.set_release("support-bot", new)
    sf.set_canary_percent("support-bot", 5)
    text = sf.dumps()
    # everything outside support-bot's release/stable blocks is byte-identical, comments included
    assert text.splitlines()[0] == "# Production: support-bot 1.4.0 is a canary at 5% beside the stable 1.3.2."
    head = original[: original.index("      release:")]
    assert text.startswith(head)
    tail = original[original.index("      rollout:") :]
    assert text.endswith(tail)
    assert "        version: 1.5.0\n" in text and '        memory_schema: "3"\n' in text
    # stable is now the former release (1.4.0)
    stable = text[text.index("      stable:") : text.index("      rollout:")]
    assert "version: 1.4.0" in stable


def test_research_agent_gets_a_rollout_block_when_it_has_none(tmp_path):
    path = tmp_path / "Pulumi.staging.yaml"
    original = (ROOT / "stacks" / "Pulumi.staging.yaml").read_text()
    path.write_text(original)
    sf = StackFile.load(path)
    sf.move_release_to_stable("research-agent")
    sf.set_release("research-agent", dict(sf.value("agents")["research-agent"]["release"], version="2.2.0"))
    sf.set_canary_percent("research-agent", 5)
    text = sf.dumps()
    diff = changed_lines(original, text)
    assert ("+", "+       rollout:") in diff and ("+", "+         canary_percent: 5") in diff
    assert ("+", '+         memory_schema: "1"') in diff and ("+", "+       stable:") in diff
    assert all(op == "+" for op, _ in diff)  # nothing removed or rewritten


def test_bad_files_are_reported(tmp_path):
    with pytest.raises(StackFileError, match=r"^stack config file .*missing.yaml does not exist$"):
        StackFile.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("just: text\n")
    with pytest.raises(StackFileError, match=r"bad.yaml: expected a mapping with a 'config:' key$"):
        StackFile.load(tmp_path / "bad.yaml")
    (tmp_path / "noagents.yaml").write_text("config:\n  gcp:project: x\n")
    with pytest.raises(
        StackFileError,
        match=r"noagents.yaml: no agents mapping: looked for agent-platform:agents and "
        r"agents \(agent-platform is the project's name in Pulumi.yaml, its config namespace\); keys "
        r"found: gcp:project$",
    ):
        StackFile.load(tmp_path / "noagents.yaml").agent("support-bot")
    with pytest.raises(StackFileError, match=r"no agents mapping: looked for triage-team:agents and agents "):
        StackFile.load(tmp_path / "noagents.yaml", "triage-team").agents


def test_failure_between_temp_write_and_replace_leaves_the_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "Pulumi.production.yaml"
    path.write_text(PROD.read_text())
    sf = StackFile.load(path)
    sf.set_canary_percent("support-bot", 0)

    def boom(src, dst):
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk went away"):
        sf.save()
    assert path.read_text() == PROD.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pulumi.production.yaml"]  # temp file removed


WRITER = """
import sys
from pathlib import Path
from agentstage.release.stackfile import atomic_write
path = Path(sys.argv[1])
texts = [Path(sys.argv[2]).read_text(), Path(sys.argv[3]).read_text()]
print("ready", flush=True)
i = 0
while True:
    atomic_write(path, texts[i % 2])
    i += 1
"""


def test_a_writer_killed_mid_write_never_leaves_a_half_written_file(tmp_path):
    a = PROD.read_text()
    b = a.replace("canary_percent: 5", "canary_percent: 0") + "# padding\n" * 2000  # a bigger file: slower writes
    (tmp_path / "a.yaml").write_text(a)
    (tmp_path / "b.yaml").write_text(b)
    target = tmp_path / "stack" / "Pulumi.production.yaml"
    target.parent.mkdir()
    target.write_text(a)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout.readline().strip() == b"ready"
    seen = set()
    for _ in range(30):
        time.sleep(0.005)
        text = target.read_text()
        assert text in (a, b)
        seen.add(text == a)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_text() in (a, b)
    leftovers = [p.name for p in target.parent.iterdir() if p.name != target.name]
    assert all(name.startswith(".Pulumi.production.yaml.") for name in leftovers)  # at most a stray temp file


def test_atomic_write_keeps_the_file_mode(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("x: 1\n")
    path.chmod(0o600)
    atomic_write(path, "x: 2\n")
    assert path.read_text() == "x: 2\n" and (path.stat().st_mode & 0o777) == 0o600


def test_digest_ignores_layout_but_not_content():
    base = {"version": "1.4.0", "image": "us-docker.pkg.dev/a/b/c@sha256:" + "0" * 64, "tools": {"a": "1", "b": "2"}}
    same = {"tools": {"b": "2", "a": "1"}, "image": base["image"], "version": "1.4.0", "model": None}
    assert manifest.digest(base) == manifest.digest(same)
    other = dict(base, tools={"a": "1", "b": "3"})
    assert manifest.digest(base) != manifest.digest(other)
    assert manifest.describe_difference(base, other) == ["tools"]


def test_ledger_refuses_a_version_reused_with_other_contents(tmp_path):
    release = {"version": "1.4.0", "image": "us-docker.pkg.dev/a/b/c@sha256:" + "0" * 64}
    assert Ledger(tmp_path, "staging").record("bot", release)
    assert not Ledger(tmp_path, "staging").record("bot", release)  # already there
    assert Ledger(tmp_path, "production").conflict("bot", release) is None
    changed = dict(release, image="us-docker.pkg.dev/a/b/c@sha256:" + "1" * 64)
    conflict = Ledger(tmp_path, "production").conflict("bot", changed)
    assert conflict is not None and conflict.stack == "staging" and conflict.fields == ["image"]
    assert conflict.message().endswith(
        "(differs in: image); a version is never reused with different contents: give the new manifest a new version"
    )


HAND_WRITTEN = """---
# the production stack
config:
  gcp:project: acme-agents-prod
  agent-platform:agents:
    support-bot:
      release:
        version: 1.4.0
      stable:
        version: 1.3.2
      # how the canary walks
      rollout:
        canary_percent: 5
        steps:
        - 5
        - 100
      invokers:
          - serviceAccount:frontend@acme-agents-prod.iam.gserviceaccount.com
"""


def test_edits_keep_every_unrelated_byte_of_a_hand_written_file(tmp_path):
    """A document marker, a comment above the edited block and a list indented its own way
    survive: only the edited lines change."""
    path = tmp_path / "Pulumi.production.yaml"
    path.write_text(HAND_WRITTEN)
    f = StackFile.load(path)
    f.set_canary_percent("support-bot", 25)
    assert f.dumps() == HAND_WRITTEN.replace("canary_percent: 5", "canary_percent: 25")
    f = StackFile.load(path)
    f.drop_stable("support-bot")
    f.set_canary_percent("support-bot", None)
    assert f.dumps() == HAND_WRITTEN.replace("      stable:\n        version: 1.3.2\n", "").replace(
        "        canary_percent: 5\n", ""
    )
