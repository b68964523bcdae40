"""Shared fixtures: a throwaway copy of the reference project and config builders."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent

# Nothing here may reach Google: google-auth would probe the GCE metadata server when it looks
# for credentials (the observed-state fallback does); this documented switch turns that off.
os.environ["NO_GCE_CHECK"] = "true"
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)


def load_stack(name: str) -> dict[str, Any]:
    """The ``config:`` map of a reference stack, as plain data."""
    with (ROOT / "stacks" / f"Pulumi.{name}.yaml").open() as fh:
        return YAML(typ="safe", pure=True).load(fh)["config"]


def write_stack(path: Path, config: dict[str, Any]) -> Path:
    yaml = YAML()
    yaml.default_flow_style = False
    with path.open("w") as fh:
        yaml.dump({"config": config}, fh)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the reference Pulumi project (program + stacks) in a temp dir."""
    dest = tmp_path / "project"
    dest.mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "stacks", dest / "stacks")
    return dest


def plan_of(directory: Path, config: dict[str, Any], stack: str = "production", project: Path = ROOT):
    """The offline plan of ``project`` for ``stack`` with ``config`` as its stack file."""
    from agentstage.engine import run_plan

    return run_plan(project, stack, config_file=write_stack(directory / f"{stack}-test.yaml", config))


@pytest.fixture(scope="module")
def prod():
    """The plan of the reference production stack (shared by a module's tests: read only)."""
    from agentstage.engine import run_plan

    return run_plan(ROOT, "production")


@pytest.fixture(scope="module")
def stage():
    """The plan of the reference staging stack (shared by a module's tests: read only)."""
    from agentstage.engine import run_plan

    return run_plan(ROOT, "staging")


@pytest.fixture
def production() -> dict[str, Any]:
    return copy.deepcopy(load_stack("production"))


@pytest.fixture
def staging() -> dict[str, Any]:
    return copy.deepcopy(load_stack("staging"))


@pytest.fixture(scope="module")
def logging_server():
    """The local Cloud Logging server of tests/logging_fake.py on 127.0.0.1: (fake, port)."""
    from tests.logging_fake import FakeLogging, serve

    fake = FakeLogging()
    srv, port = serve(fake)
    yield fake, port
    srv.stop(0)
