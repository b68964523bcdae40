"""Shared fixtures: a throwaway copy of the reference project and config builders."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.fixture
def production() -> dict[str, Any]:
    return copy.deepcopy(load_stack("production"))


@pytest.fixture
def staging() -> dict[str, Any]:
    return copy.deepcopy(load_stack("staging"))
