"""A command reads its stack config several times (``check``: for the pack, the program and the
size warning); the engine parses the same bytes once, and never hands out a stale or shared
result."""

from __future__ import annotations

import pytest

from agentstage import engine
from agentstage.engine import EngineError, load_project, load_stack_config
from tests.conftest import ROOT


@pytest.fixture
def project(tmp_path):
    for name in ("Pulumi.yaml", "__main__.py"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / "stacks").mkdir()
    return load_project(tmp_path)


@pytest.fixture
def parses(monkeypatch):
    calls: list[str] = []
    real = engine._read_yaml

    def counting(path, what):
        calls.append(str(path))
        return real(path, what)

    monkeypatch.setattr(engine, "_read_yaml", counting)
    return calls


def test_the_same_bytes_are_parsed_once_and_each_caller_gets_its_own_copy(project, parses):
    stack = project.stack_file("dev")
    stack.write_text("config:\n  gcp:project: acme-dev\n  token:\n    secure: v1:abc\n")
    first = load_stack_config(project, "dev")
    second = load_stack_config(project, "dev")
    assert parses == [str(stack)]
    assert first == second
    first.values["gcp:project"] = "changed"
    first.secret_keys.clear()
    third = load_stack_config(project, "dev")
    assert third.values["gcp:project"] == "acme-dev"
    assert third.secret_keys == [f"{project.name}:token"]


def test_a_changed_file_is_read_again_even_at_the_same_size_and_time(project, parses):
    stack = project.stack_file("dev")
    stack.write_text("config:\n  gcp:project: acme-aaa\n")
    assert load_stack_config(project, "dev").values["gcp:project"] == "acme-aaa"
    stack.write_text("config:\n  gcp:project: acme-bbb\n")
    assert load_stack_config(project, "dev").values["gcp:project"] == "acme-bbb"
    assert len(parses) == 2


def test_another_stack_or_config_file_is_not_taken_for_the_last_one(project, tmp_path):
    text = "config:\n  gcp:project: acme-dev\n"
    project.stack_file("dev").write_text(text)
    project.stack_file("prod").write_text(text)
    assert load_stack_config(project, "dev").path == project.stack_file("dev")
    assert load_stack_config(project, "prod").path == project.stack_file("prod")
    other = tmp_path / "other.yaml"
    other.write_text(text)
    assert load_stack_config(project, "prod", other).path == other


def test_a_bad_file_fails_every_time(project):
    stack = project.stack_file("dev")
    stack.write_text("")
    for _ in range(2):
        with pytest.raises(EngineError) as err:
            load_stack_config(project, "dev")
        assert err.value.message == f"{stack} is empty; a stack config is a mapping with a config: key"
