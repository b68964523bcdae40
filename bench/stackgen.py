"""Generate a stack config with N agents, modelled on the reference production stack.

Used by the benchmarks: ``write_project(dest, n)`` copies the reference program into
``dest`` and writes ``stacks/Pulumi.bench<n>.yaml`` with agents ``agent-000`` ... (every
third agent with a canary in flight, every agent with one secret and one invoker).

``runtimes`` mixes runtimes round-robin (``MIXED``: agent-000 on Cloud Run, agent-001 on Agent
Engine, agent-002 on a Vertex AI endpoint, agent-003 on GKE, ...), each agent in the shape of
``examples/runtimes`` (an Agent Engine deployment, a model with a version per release, an
existing cluster and Gateway), with the Cloud Run settings its runtime refuses removed. The
default, Cloud Run only, is the stack the recorded figures were measured on, unchanged; a mixed
stack is named ``bench<n>-mixed``.

    .venv/bin/python bench/stackgen.py DEST N [--mix]   # write a project, print its stack name"""

from __future__ import annotations

import argparse
import copy
import hashlib
import shutil
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
CLOUD_RUN = ("cloud-run",)
MIXED = ("cloud-run", "agent-engine", "vertex-endpoint", "gke")
#: Cloud Run settings of the template each runtime refuses (components/*_spec.py *CLOUD_RUN_ONLY).
#: The load balancer, its rate limit and the spend cap are Cloud Run only (load_balancer_spec,
#: spend_cap_spec).
_CLOUD_RUN_EDGE = ("load_balancer", "rate_limit", "spend_cap", "vpc_egress")
_REFUSED = {
    "agent-engine": ("scaling", "resources", "ingress", "stable_revision", *_CLOUD_RUN_EDGE),
    "vertex-endpoint": (
        "scaling",
        "resources",
        "ingress",
        "stable_revision",
        "env",
        "secrets",
        "features",
        *_CLOUD_RUN_EDGE,
    ),
    "gke": ("scaling", "resources", "ingress", "stable_revision", "invokers", "secrets", *_CLOUD_RUN_EDGE),
}


def _digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _runtime(agent: dict[str, Any], name: str, runtime: str) -> None:
    """Move a generated Cloud Run agent to ``runtime`` (shapes from examples/runtimes)."""
    if runtime == "cloud-run":
        return
    for key in _REFUSED[runtime]:
        agent.pop(key, None)
    agent["runtime"] = runtime
    if runtime == "agent-engine":
        agent["agent_engine"] = {"min_instances": 1, "max_instances": 4}
        if "stable" in agent:
            agent["agent_engine"]["stable_revision"] = str(7339876424152596480 + int(name[-3:]))
    elif runtime == "vertex-endpoint":
        agent["vertex_endpoint"] = {
            "model": f"projects/acme-agents-prod/locations/us-central1/models/{name}",
            "versions": {agent["release"]["version"]: "4", "1.3.2": "3"},
            "machine_type": "g2-standard-8",
            "accelerator_type": "NVIDIA_L4",
            "max_replicas": 4,
            "private_service_connect": True,
        }
    elif runtime == "gke":
        agent["gke"] = {
            "cluster": {"location": "us-central1", "name": "agents"},
            "gateway": {"name": "internal-gateway", "namespace": "gateways"},
            "egress": [{"cidr": "199.36.153.8/30", "ports": [443]}],
        }
    else:
        raise ValueError(f"unknown runtime {runtime!r}; one of {', '.join(MIXED)}")


def generate(n: int, runtimes: tuple[str, ...] = CLOUD_RUN) -> dict[str, Any]:
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
        _runtime(agent, name, runtimes[i % len(runtimes)])
        agents[name] = agent
    config["agent-platform:agents"] = agents
    return config


def write_project(dest: Path, n: int, runtimes: tuple[str, ...] = CLOUD_RUN) -> tuple[Path, str]:
    """A copy of the reference project with a generated stack; returns (dir, stack name)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, dest / name)
    stacks = dest / "stacks"
    if stacks.exists():
        shutil.rmtree(stacks)
    shutil.copytree(ROOT / "stacks", stacks)
    stack = f"bench{n}" if tuple(runtimes) == CLOUD_RUN else f"bench{n}-mixed"
    yaml = YAML()
    with (stacks / f"Pulumi.{stack}.yaml").open("w") as fh:
        yaml.dump({"config": generate(n, tuple(runtimes))}, fh)
    return dest, stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--mix", action="store_true", help="round-robin " + ", ".join(MIXED))
    args = parser.parse_args()
    print(write_project(args.dest, args.n, MIXED if args.mix else CLOUD_RUN)[1])


if __name__ == "__main__":
    main()
