"""What the rules share: resource type tokens and readers for the shapes they inspect.

The analyzer sees a resource's *inputs*, before the provider fills in its defaults, so a
reader returns ``None`` for a missing field and each rule decides what the provider default
means (a Cloud Run service without ``ingress`` accepts all traffic). Values arrive as the
pack SDK hands them over: mappings and sequences (read-only proxies, not ``dict``/``list``)
and numbers as floats.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# --- resource types ---------------------------------------------------------------------

CLOUD_RUN = "gcp:cloudrunv2/service:Service"
CLOUD_RUN_JOB = "gcp:cloudrunv2/job:Job"
CLOUD_RUN_V1 = "gcp:cloudrun/service:Service"
AGENT_ENGINE = "gcp:vertex/aiReasoningEngine:AiReasoningEngine"
VERTEX_ENDPOINT = "gcp:vertex/aiEndpoint:AiEndpoint"
GKE_CLUSTER = "gcp:container/cluster:Cluster"
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
SERVICE_ACCOUNT_KEY = "gcp:serviceaccount/key:Key"
ALERT_POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
BUDGET = "gcp:billing/budget:Budget"
MODEL_ARMOR_TEMPLATE = "gcp:modelarmor/template:Template"

#: Where a resource keeps its labels (resources not listed here have none).
LABEL_FIELDS: dict[str, tuple[str, ...]] = {
    CLOUD_RUN: ("labels",),
    CLOUD_RUN_JOB: ("labels",),
    CLOUD_RUN_V1: ("metadata", "labels"),
    AGENT_ENGINE: ("labels",),
    VERTEX_ENDPOINT: ("labels",),
    GKE_CLUSTER: ("resourceLabels",),
    ALERT_POLICY: ("userLabels",),
    "gcp:monitoring/notificationChannel:NotificationChannel": ("userLabels",),
    MODEL_ARMOR_TEMPLATE: ("labels",),
    "gcp:secretmanager/secret:Secret": ("labels",),
    "gcp:storage/bucket:Bucket": ("labels",),
    "gcp:pubsub/topic:Topic": ("labels",),
    "gcp:pubsub/subscription:Subscription": ("labels",),
    "gcp:artifactregistry/repository:Repository": ("labels",),
    "gcp:bigquery/dataset:Dataset": ("labels",),
    "gcp:compute/instance:Instance": ("labels",),
}

PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
BASIC_ROLES = ("roles/owner", "roles/editor", "roles/viewer")

_DIGEST_IMAGE = re.compile(r"@sha256:[0-9a-f]{64}$")
_DEFAULT_COMPUTE = re.compile(r"^[0-9]+-compute@developer\.gserviceaccount\.com$")
_APP_ENGINE = re.compile(r"^[a-z][-a-z0-9.:]*@appspot\.gserviceaccount\.com$")


# --- reading inputs ---------------------------------------------------------------------


def is_map(value: Any) -> bool:
    return isinstance(value, Mapping)


def is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def get(value: Any, *path: str | int) -> Any:
    """``value[path[0]][path[1]]...``, or None as soon as a step is missing."""
    for step in path:
        if isinstance(step, int):
            if not is_list(value) or not -len(value) <= step < len(value):
                return None
            value = value[step]
        else:
            if not is_map(value) or step not in value:
                return None
            value = value[step]
    return value


def items(value: Any) -> list[Any]:
    """A list input as a list (a single object, as some inputs allow, becomes one item)."""
    if value is None:
        return []
    if is_list(value):
        return list(value)
    return [value]


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def fmt(value: float) -> str:
    """``20.0`` -> ``20``, ``0.5`` -> ``0.5``."""
    return str(int(value)) if float(value).is_integer() else str(value)


# --- workloads --------------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    name: str
    spec: Mapping[str, Any]


def containers(resource_type: str, props: Mapping[str, Any]) -> list[Container]:
    """The containers of a Cloud Run service or job (v2 or v1)."""
    if resource_type == CLOUD_RUN:
        found = items(get(props, "template", "containers"))
    elif resource_type == CLOUD_RUN_JOB:
        found = items(get(props, "template", "template", "containers"))
    elif resource_type == CLOUD_RUN_V1:
        found = items(get(props, "template", "spec", "containers"))
    else:
        return []
    return [Container(str(get(c, "name") or f"#{i}"), c) for i, c in enumerate(found) if is_map(c)]


@dataclass(frozen=True)
class EnvVar:
    where: str  # "container agent" or "the deployment spec"
    name: str
    value: Any  # the plain value, or None when it comes from a reference


def env_vars(resource_type: str, props: Mapping[str, Any]) -> Iterator[EnvVar]:
    """Every plain (non-reference) environment variable a workload sets."""
    for c in containers(resource_type, props):
        for env in items(get(c.spec, "envs")):
            if get(env, "valueSource") is not None or get(env, "valueFrom") is not None:
                continue
            yield EnvVar(f"container {c.name}", str(get(env, "name")), get(env, "value"))
    if resource_type == AGENT_ENGINE:
        for env in items(get(props, "spec", "deploymentSpec", "envs")):
            yield EnvVar("the deployment spec", str(get(env, "name")), get(env, "value"))


def is_digest_pinned(image: str) -> bool:
    return bool(_DIGEST_IMAGE.search(image))


def default_account_kind(email: str) -> str | None:
    """``"Compute Engine default"`` / ``"App Engine default"`` for a default service account."""
    email = email.removeprefix("serviceAccount:")
    if _DEFAULT_COMPUTE.match(email):
        return "Compute Engine default"
    if _APP_ENGINE.match(email):
        return "App Engine default"
    return None


# --- IAM --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    role: str
    member: str


_IAM_CLASS = re.compile(r"(?i)iam(member|binding|policy)$")
_SCOPES = {
    "projects": "project",
    "folder": "folder",
    "organizations": "organization",
}


def is_iam(resource_type: str) -> bool:
    parts = resource_type.split(":")
    return len(parts) == 3 and bool(_IAM_CLASS.search(parts[2])) and "AuditConfig" not in parts[2]


def iam_scope(resource_type: str) -> str | None:
    """``project``/``folder``/``organization`` for grants on a resource hierarchy node."""
    if not is_iam(resource_type):
        return None
    module = resource_type.split(":")[1].split("/")[0]
    return _SCOPES.get(module)


def iam_target(resource_type: str) -> str:
    """What an IAM resource grants on: ``Cloud Run service``, ``project``, ``secret``..."""
    module, _, cls = resource_type.split(":")[1].partition("/")
    scope = _SCOPES.get(module)
    if scope:
        return scope
    if module == "cloudrunv2" and cls.startswith("job"):
        return "Cloud Run job"
    if module in ("cloudrunv2", "cloudrun"):
        return "Cloud Run service"
    if module == "vertex":
        return "Vertex AI resource"
    if module == "serviceaccount":
        return "service account"
    if module == "secretmanager":
        return "secret"
    return module


def grants(resource_type: str, props: Mapping[str, Any]) -> list[Grant]:
    """The (role, member) pairs an IAM member, binding or policy resource grants."""
    if not is_iam(resource_type):
        return []
    role = get(props, "role")
    if isinstance(get(props, "member"), str) and isinstance(role, str):
        return [Grant(role, props["member"])]
    if is_list(get(props, "members")) and isinstance(role, str):
        return [Grant(role, str(m)) for m in props["members"]]
    policy = get(props, "policyData")
    if isinstance(policy, str):
        try:
            data = json.loads(policy)
        except ValueError:
            return []
        return [
            Grant(str(b.get("role")), str(m))
            for b in data.get("bindings") or []
            if isinstance(b, dict)
            for m in b.get("members") or []
        ]
    return []


def member_domain(member: str) -> tuple[str, str] | None:
    """``("user", "acme.com")`` for ``user:ana@acme.com``; None for allUsers, principals..."""
    kind, sep, rest = member.partition(":")
    if not sep:
        return None
    kind = kind.removeprefix("deleted:")
    if kind in ("user", "group", "serviceAccount"):
        return kind, rest.rpartition("@")[2].split("?")[0].lower()
    if kind == "domain":
        return kind, rest.lower()
    return None


# --- labels and environments ------------------------------------------------------------


def labels(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The resource's labels ({} when it sets none); None when it cannot carry labels."""
    path = LABEL_FIELDS.get(resource_type)
    if path is None:
        return None
    found = get(props, *path)
    return found if is_map(found) else {}


def is_production(resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """A resource is in production when its ``environment`` label is one of the policy's
    ``productionEnvironments`` (default: ``production``)."""
    envs = config.get("productionEnvironments") or ["production"]
    env = get(labels(resource_type, props) or {}, "environment")
    return env in envs


def resource_label(resource_type: str, props: Mapping[str, Any]) -> str:
    """How a message names a resource: its ``name`` input, else its type's class."""
    name = get(props, "name")
    return str(name) if isinstance(name, str) and name else resource_type.rsplit(":", 1)[-1]
