"""Where each runtime keeps an agent's traffic: one small adapter per runtime.

The release flow moves traffic the same way on every runtime: it edits the stack file, plans,
and checks that the diff touches only the traffic of the agents it meant to. What differs is
the resource that carries the traffic and how its revisions are named:

- ``cloud-run``: the agent's ``gcp:cloudrunv2/service:Service`` (``traffics``); revisions are
  named by agentstage (``template.revision``), so the candidate and the stable are known at
  plan time;
- ``agent-engine``: the agent's ``gcp:vertex/aiReasoningEngine:AiReasoningEngine``
  (``trafficConfig``); the candidate is the engine's latest revision (``LATEST``: Google
  assigns the ids), the stable the id recorded in ``agent_engine.stable_revision``
  (components.agent_engine);
- ``vertex-endpoint``: the agent's ``VertexModelDeployment`` (``traffic_split``, and
  ``models``: a rollback or a completed canary undeploys a model, never adds or changes one);
  revisions are deployed-model ids derived from the endpoint and the model
  (components.vertex_endpoint, components.vertex_deployment);
- ``gke``: the agent's Gateway API ``HTTPRoute`` (``spec.rules[].backendRefs[].weight``);
  revisions are the tracks' Deployments (and Services), named by agentstage
  ``<service>-stable`` and ``<service>-canary`` (components.gke): the candidate is the canary
  track while a stable is set, else the stable track. A rollback moves the weights only (the
  canary Deployment's ``spec.replicas`` and its autoscaler are not part of the traffic: see
  :meth:`Gke.wrong_paths`).

Every resource is found by the labels the components put on it (``agent: <agent>``,
``managed-by: agentstage``), whatever name the program gave it; the deployment of an endpoint
by the endpoint's resource name; Kubernetes objects by their ``metadata.labels``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from components.contract import CLOUD_RUN_SERVICE, LABEL_AGENT, LABEL_MANAGED_BY, MANAGED_BY
from components.spec import AgentSpec, PlatformSpec

__all__ = [
    "AGENT_ENGINE",
    "VERTEX_ENDPOINT",
    "HTTPROUTE",
    "LATEST",
    "TrafficTarget",
    "Runtime",
    "RUNTIMES",
    "runtime_of",
    "traffic_targets",
    "DuplicateResource",
]

AGENT_ENGINE = "gcp:vertex/aiReasoningEngine:AiReasoningEngine"
VERTEX_ENDPOINT = "gcp:vertex/aiEndpoint:AiEndpoint"
HTTPROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
#: The keyword an engine's manual split names its newest revision by.
LATEST = "LATEST"


class DuplicateResource(Exception):
    """Two resources of one runtime carry the same agent label in a plan."""


@dataclass(frozen=True)
class TrafficTarget:
    """An agent's traffic-bearing resource in a plan."""

    agent: str
    runtime: str
    #: What carries the traffic, in the words of the runtime ("Cloud Run service"...).
    kind: str
    urn: str
    #: The name an observer reads: the Cloud Run service's name, the engine's or the endpoint's
    #: display name (the observed state file's key).
    name: str
    #: The revision the release runs as (``LATEST`` on an engine).
    candidate: str
    #: The revision of ``stable``, when the stack has one and it is known.
    stable: str | None


def _labels(r: Any) -> dict[str, Any]:
    """A resource's labels: ``labels`` on Google resources, ``metadata.labels`` on Kubernetes objects."""
    if r.type.startswith("kubernetes:"):
        return (r.inputs.get("metadata") or {}).get("labels") or {}
    return r.inputs.get("labels") or {}


def _labelled(plan: Any, type_: str, agents: set[str], kind: str, noun: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in plan.by_type(type_):
        labels = _labels(r)
        agent = labels.get(LABEL_AGENT)
        if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or agent not in agents:
            continue
        if agent in out:
            first, second = (x.inputs.get("name") or _k8s_name(x) or x.name for x in (out[agent], r))
            raise DuplicateResource(
                f"two {kind}s carry the label {LABEL_AGENT}={agent} in the plan of stack {plan.stack!r}: "
                f"{first} and {second}; an agent has one {noun}"
            )
        out[agent] = r
    return out


class Runtime:
    """One runtime's way of finding an agent's traffic and judging a diff of it."""

    runtime = ""
    kind = ""
    #: The component that deploys it, named in the refusal when it is missing.
    component = ""

    def find(self, plan: Any, spec: PlatformSpec, agents: Iterable[str]) -> dict[str, TrafficTarget]:
        raise NotImplementedError

    def wrong_paths(self, paths: list[str], after: Any) -> list[str]:
        """The changed property paths of the traffic resource that are not traffic (``after``:
        the resource in the new plan)."""
        return [p for p in paths if not p.startswith(self.traffic_paths)]

    traffic_paths: tuple[str, ...] = ()


class CloudRun(Runtime):
    runtime, kind, component = "cloud-run", "Cloud Run service", "CloudRunAgent"
    traffic_paths = ("traffics",)

    def find(self, plan: Any, spec: PlatformSpec, agents: Iterable[str]) -> dict[str, TrafficTarget]:
        out = {}
        for agent, r in _labelled(plan, CLOUD_RUN_SERVICE, set(agents), self.kind, "service").items():
            name = r.inputs.get("name")
            revision = (r.inputs.get("template") or {}).get("revision")
            a = spec.agents[agent]
            out[agent] = TrafficTarget(
                agent,
                self.runtime,
                self.kind,
                r.urn,
                name,
                revision if isinstance(revision, str) else "",
                a.stable_revision_name(name) if a.stable is not None else None,
            )
        return out


class AgentEngine(Runtime):
    runtime, kind, component = "agent-engine", "Agent Engine", "AgentEngineAgent"
    traffic_paths = ("trafficConfig",)

    def find(self, plan: Any, spec: PlatformSpec, agents: Iterable[str]) -> dict[str, TrafficTarget]:
        from components.agent_engine import engine_spec

        out = {}
        for agent, r in _labelled(plan, AGENT_ENGINE, set(agents), self.kind, "engine").items():
            a = spec.agents[agent]
            stable = engine_spec(a).stable_revision if a.stable is not None else None
            name = r.inputs.get("displayName") or spec.service_name(agent)
            out[agent] = TrafficTarget(agent, self.runtime, self.kind, r.urn, name, LATEST, stable)
        return out


class VertexEndpoint(Runtime):
    runtime, kind, component = "vertex-endpoint", "Vertex AI endpoint deployment", "VertexEndpointAgent"
    traffic_paths = ("traffic_split",)

    def find(self, plan: Any, spec: PlatformSpec, agents: Iterable[str]) -> dict[str, TrafficTarget]:
        from components.vertex_deployment import DEPLOYMENT_TYPE

        deployments = {r.inputs.get("endpoint"): r for r in plan.by_type(DEPLOYMENT_TYPE)}
        out = {}
        for agent, r in _labelled(plan, VERTEX_ENDPOINT, set(agents), "Vertex AI endpoint", "endpoint").items():
            i = r.inputs
            resource = f"projects/{i.get('project')}/locations/{i.get('location') or i.get('region')}/endpoints/{i.get('name')}"
            deployment = deployments.get(resource)
            if deployment is None:
                continue
            a = spec.agents[agent]
            display = i.get("displayName") or spec.service_name(agent)
            models = deployment.inputs.get("models") or {}
            account = next((m.get("service_account") for m in models.values() if isinstance(m, dict)), "")
            stable = _model_id(a, a.stable.version, resource, display, account) if a.stable is not None else None
            candidate = _model_id(a, a.release.version, resource, display, account)
            out[agent] = TrafficTarget(agent, self.runtime, self.kind, deployment.urn, display, candidate, stable)
        return out

    def wrong_paths(self, paths: list[str], after: Any) -> list[str]:
        """Traffic, and undeploying a model (``models.<id>`` gone from the new plan); never a
        model deployed or changed."""
        kept = set((after.inputs.get("models") or {}) if after is not None else ())
        wrong = []
        for p in paths:
            if p.startswith(self.traffic_paths):
                continue
            head, _, rest = p.partition(".")
            if head == "models" and rest and "." not in rest and rest not in kept:
                continue
            wrong.append(p)
        return wrong


def _k8s_name(r: Any) -> str | None:
    return (r.inputs.get("metadata") or {}).get("name")


class Gke(Runtime):
    runtime, kind, component = "gke", "Gateway API HTTPRoute", "GkeAgent"
    traffic_paths = ("spec.rules",)

    def find(self, plan: Any, spec: PlatformSpec, agents: Iterable[str]) -> dict[str, TrafficTarget]:
        from components.gke_spec import CANARY, STABLE, track_service

        out = {}
        for agent, r in _labelled(plan, HTTPROUTE, set(agents), "HTTPRoute", "route").items():
            name = _k8s_name(r) or spec.service_name(agent)
            a = spec.agents[agent]
            stable = track_service(name, STABLE) if a.stable is not None else None
            candidate = track_service(name, CANARY if a.stable is not None else STABLE)
            out[agent] = TrafficTarget(agent, self.runtime, self.kind, r.urn, name, candidate, stable)
        return out

    def wrong_paths(self, paths: list[str], after: Any) -> list[str]:
        """The weights of the route's backendRefs only: not its matches, parents or backends."""
        return [p for p in paths if not _is_weight(p)]


_WEIGHT = re.compile(r"spec\.rules\[\d+\]\.backendRefs\[\d+\]\.weight")


def _is_weight(path: str) -> bool:
    return _WEIGHT.fullmatch(path) is not None


def _model_id(spec: AgentSpec, version: str, endpoint: str, display: str, account: Any) -> str:
    from components.revision import version_slug
    from components.vertex_deployment import deployed_model_id
    from components.vertex_endpoint import deployed_model

    model = deployed_model(
        spec.vertex_endpoint,
        version,
        display_name=f"{display}-{version_slug(version)}",
        service_account=account if isinstance(account, str) else "",
    )
    return deployed_model_id(endpoint, model)


RUNTIMES: dict[str, Runtime] = {r.runtime: r for r in (CloudRun(), AgentEngine(), VertexEndpoint(), Gke())}


def runtime_of(spec: AgentSpec) -> Runtime:
    """The adapter of ``spec.runtime`` (Cloud Run for a runtime without one)."""
    return RUNTIMES.get(spec.runtime, RUNTIMES["cloud-run"])


def traffic_targets(plan: Any, spec: PlatformSpec, agents: Iterable[str] | None = None) -> dict[str, TrafficTarget]:
    """Agent -> its traffic-bearing resource in ``plan`` (agents without one are left out)."""
    wanted = list(spec.agents if agents is None else agents)
    by_runtime: dict[str, list[str]] = {}
    for a in wanted:
        if a in spec.agents:
            by_runtime.setdefault(runtime_of(spec.agents[a]).runtime, []).append(a)
    out: dict[str, TrafficTarget] = {}
    for runtime, names in by_runtime.items():
        out.update(RUNTIMES[runtime].find(plan, spec, names))
    return out
