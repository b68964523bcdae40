"""Generate a stack config with N agents, modelled on the reference production stack.

Used by the benchmarks: ``write_project(dest, n)`` copies the reference program into
``dest`` and writes ``stacks/Pulumi.bench<n>.yaml`` with agents ``agent-000`` ... (every
third agent with a canary in flight, every agent with one secret and one invoker)."""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent


def _digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def generate(n: int) -> dict[str, Any]:
    with (ROOT / "stacks" / "Pulumi.production.yaml").open() as fh:
        config = YAML(typ="safe", pure=True).load(fh)["config"]
    template = config["agent-platform:agents"]["support-bot"]
    agents = {}
    for i in range(n):
        name = f"agent-{i:03d}"
        agent = copy.deepcopy(template)
        agent["release"]["image"] = f"us-docker.pkg.dev/acme/agents/{name}@sha256:{_digest(name + 'r')}"
        agent["stable"]["image"] = f"us-docker.pkg.dev/acme/agents/{name}@sha256:{_digest(name + 's')}"
        agent["secrets"] = {"API_TOKEN": f"{name}-token:latest"}
        agent["stable_revision"] = f"{name}-1-3-2"
        if i % 3:
            del agent["stable"]
            del agent["stable_revision"]
            del agent["rollout"]["canary_percent"]
        agents[name] = agent
    config["agent-platform:agents"] = agents
    return config


def write_project(dest: Path, n: int) -> tuple[Path, str]:
    """A copy of the reference project with a generated stack; returns (dir, stack name)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, dest / name)
    stacks = dest / "stacks"
    if stacks.exists():
        shutil.rmtree(stacks)
    shutil.copytree(ROOT / "stacks", stacks)
    stack = f"bench{n}"
    yaml = YAML()
    with (stacks / f"Pulumi.{stack}.yaml").open("w") as fh:
        yaml.dump({"config": generate(n)}, fh)
    return dest, stack
