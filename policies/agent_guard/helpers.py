"""What the rules share: resource type tokens and readers for the shapes they inspect.

The analyzer sees a resource's *inputs*, before the provider fills in its defaults, so a
reader returns ``None`` for a missing field and each rule decides what the provider default
means (a Cloud Run service without ``ingress`` accepts all traffic). Values arrive as the
pack SDK hands them over: mappings and sequences (read-only proxies, not ``dict``/``list``)
and numbers as floats.

**Unknown values.** During a preview, a value computed from an output of a resource the
update creates (or changes) is unknown. The SDK's proxies raise ``UnknownValueError`` when a
rule touches one, and the SDK then turns the whole rule into an advisory "can't run policy"
note: a mandatory policy would silently stop judging. The readers here never raise: they
return :data:`UNKNOWN` in place of an unknown value (:func:`get`, :func:`items`, which keeps
a list's length and marks its unknown elements), and every rule decides what an unknown
means for it: judge with the known part where that decides the verdict, else report
:func:`cannot_judge`. :data:`UNKNOWN` has no truth value (``if value:`` raises), so a rule
cannot mistake it for a missing or empty value by accident.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

# --- resource types ---------------------------------------------------------------------

# --- the agentstage contract (kept in step with components/contract.py by tests/test_contract.py)

#: The stack config namespace of the reference platform's keys.
NAMESPACE = "agent-platform"
#: The labels agentstage components set on every labelable resource.
LABEL_ENVIRONMENT = "environment"
LABEL_AGENT = "agent"
LABEL_RELEASE = "release"
LABEL_MANAGED_BY = "managed-by"
#: The environment name that marks production by default.
PRODUCTION = "production"

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


# --- unknown values ---------------------------------------------------------------------


class Unknown:
    """The type of :data:`UNKNOWN`: a value that cannot be known during this preview."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        raise TypeError("an unknown value has no truth value: compare it with `is UNKNOWN` first")

    def __repr__(self) -> str:
        return "UNKNOWN"


#: A value that is unknown during this preview (see the module docstring).
UNKNOWN: Final = Unknown()

_SENTINELS = frozenset(
    {
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_STRING_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_OBJECT_VALUE,
    }
)

#: How a message tells the user to make a value known before the update runs.
MAKE_KNOWN = "compute it from inputs (stack config, names, ids) so that it is known at plan time"


def cannot_judge(question: str, *fields: str, fix: str = MAKE_KNOWN) -> str:
    """The violation message of a rule whose verdict depends on values that are unknown
    during this preview: what it cannot judge, which fields, why they are unknown, how to
    make them known."""
    what = f"{fields[0]} is" if len(fields) == 1 else f"{', '.join(fields[:-1])} and {fields[-1]} are"
    return (
        f"cannot judge {question}: {what} unknown during this preview (computed from an output of a resource "
        f"this update creates or changes); {fix}."
    )


def shown(value: Any, unknown: str = "[unknown]") -> str:
    """``value`` for a message, with ``unknown`` in place of an unknown value."""
    return unknown if value is UNKNOWN else str(value)


# --- reading inputs ---------------------------------------------------------------------


def is_map(value: Any) -> bool:
    return isinstance(value, Mapping)


def is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def known(value: Any) -> Any:
    """``value``, or :data:`UNKNOWN` when it is an unknown sentinel."""
    return UNKNOWN if isinstance(value, str) and value in _SENTINELS else value


def _step(value: Any, step: str | int) -> Any:
    """``value[step]``: None when missing, :data:`UNKNOWN` when unknown."""
    if isinstance(step, int):
        if not is_list(value) or not -len(value) <= step < len(value):
            return None
    elif not is_map(value):
        return None
    try:
        return known(value[step])
    except UnknownValueError:
        return UNKNOWN
    except KeyError:
        return None


def get(value: Any, *path: str | int) -> Any:
    """``value[path[0]][path[1]]...``: None as soon as a step is missing, :data:`UNKNOWN` as
    soon as a step is unknown (what lies below an unknown value is unknown too)."""
    value = known(value)
    for step in path:
        if value is UNKNOWN:
            return UNKNOWN
        value = _step(value, step)
    return value


def items(value: Any) -> list[Any] | Unknown:
    """A list input as a list (a single object, as some inputs allow, becomes one item).
    An unknown list is :data:`UNKNOWN` (its length is unknown too); a known list keeps its
    length, with :data:`UNKNOWN` for each unknown element."""
    value = known(value)
    if value is None:
        return []
    if value is UNKNOWN:
        return UNKNOWN
    if is_list(value):
        return [_step(value, i) for i in range(len(value))]
    return [value]


def has_items(value: Any) -> bool | Unknown:
    """Whether a list input has at least one element (known even when the elements are not)."""
    found = items(value)
    return UNKNOWN if found is UNKNOWN else bool(found)


def number(value: Any) -> float | None | Unknown:
    """A number input as a float (None when unset or unreadable, :data:`UNKNOWN` when unknown)."""
    value = known(value)
    if value is UNKNOWN:
        return UNKNOWN
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

#: Where each workload type keeps its containers.
_CONTAINERS: dict[str, tuple[str, ...]] = {
    CLOUD_RUN: ("template", "containers"),
    CLOUD_RUN_JOB: ("template", "template", "containers"),
    CLOUD_RUN_V1: ("template", "spec", "containers"),
}


@dataclass(frozen=True)
class Container:
    name: str
    #: The container's inputs, or :data:`UNKNOWN` for an unknown element of the list.
    spec: Any
    #: Where it is, for messages: ``template.containers[0]``.
    field: str


def containers_field(resource_type: str) -> str:
    """The field that lists a workload's containers: ``template.containers``."""
    return ".".join(_CONTAINERS.get(resource_type, ()))


def containers(resource_type: str, props: Mapping[str, Any]) -> list[Container] | Unknown:
    """The containers of a Cloud Run service or job (v2 or v1); :data:`UNKNOWN` when the
    list itself is unknown."""
    path = _CONTAINERS.get(resource_type)
    if path is None:
        return []
    found = items(get(props, *path))
    if found is UNKNOWN:
        return UNKNOWN
    field = containers_field(resource_type)
    out = []
    for i, c in enumerate(found):
        if c is UNKNOWN or is_map(c):
            name = get(c, "name")
            out.append(Container(name if isinstance(name, str) and name else f"#{i}", c, f"{field}[{i}]"))
    return out


@dataclass(frozen=True)
class EnvVar:
    where: str  # "container agent" or "the deployment spec"
    #: The variable's name and plain value (None when it comes from a reference); either
    #: may be :data:`UNKNOWN`, and both are when the entry, or the whole list, is unknown.
    name: Any
    value: Any
    #: Where it is, for messages: ``template.containers[0].envs[6]`` (or the list's field
    #: when the list is unknown).
    field: str

    def unknown_field(self) -> str | None:
        """The field that is unknown (``...envs[6].value``), or None when both are known."""
        if self.name is UNKNOWN and self.value is UNKNOWN:
            return self.field
        if self.name is UNKNOWN:
            return f"{self.field}.name"
        if self.value is UNKNOWN:
            return f"{self.field}.value"
        return None


def _env_entries(where: str, field: str, envs: Any, references: tuple[str, ...]) -> Iterator[EnvVar]:
    found = items(envs)
    if found is UNKNOWN:
        yield EnvVar(where, UNKNOWN, UNKNOWN, field)
        return
    for i, env in enumerate(found):
        if env is UNKNOWN:
            yield EnvVar(where, UNKNOWN, UNKNOWN, f"{field}[{i}]")
        elif all(get(env, key) is None for key in references):  # a reference (even an unknown one) is no plain value
            name = get(env, "name")
            yield EnvVar(where, name if name is UNKNOWN else str(name), get(env, "value"), f"{field}[{i}]")


def env_vars(resource_type: str, props: Mapping[str, Any]) -> Iterator[EnvVar]:
    """Every plain (non-reference) environment variable a workload sets."""
    found = containers(resource_type, props)
    if found is UNKNOWN:
        yield EnvVar("the containers", UNKNOWN, UNKNOWN, containers_field(resource_type))
    else:
        for c in found:
            where = f"container {c.name}"
            yield from _env_entries(where, f"{c.field}.envs", get(c.spec, "envs"), ("valueSource", "valueFrom"))
    if resource_type == AGENT_ENGINE:
        envs = get(props, "spec", "deploymentSpec", "envs")
        yield from _env_entries("the deployment spec", "spec.deployment_spec.envs", envs, ())


def is_digest_pinned(image: str) -> bool:
    return bool(_DIGEST_IMAGE.search(image))


def default_account_kind(email: str) -> str | None:
    """``"Compute Engine default"`` / ``"App Engine default"`` for a default service account.

    An unknown email is not a default account: it is computed from a resource this update
    creates (or changes), while the Google-managed default accounts exist before the stack
    does, so their emails are known at plan time (the Compute Engine default account's is
    ``<project number>-compute@developer.gserviceaccount.com``; ``getProject`` answers
    during a preview)."""
    if email is UNKNOWN:
        return None
    email = email.removeprefix("serviceAccount:")
    if _DEFAULT_COMPUTE.match(email):
        return "Compute Engine default"
    if _APP_ENGINE.match(email):
        return "App Engine default"
    return None


# --- IAM --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    #: Either may be :data:`UNKNOWN`.
    role: Any
    member: Any
    #: The field that names the member, for messages: ``member``, ``members[1]``.
    field: str = "member"


@dataclass(frozen=True)
class UnknownGrants:
    """The grants of an IAM resource cannot be read: ``field`` (its members or its policy
    data) is unknown during this preview."""

    field: str


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


def _is_text(value: Any) -> bool:
    return value is UNKNOWN or isinstance(value, str)


def grants(resource_type: str, props: Mapping[str, Any]) -> list[Grant] | UnknownGrants:
    """The (role, member) pairs an IAM member, binding or policy resource grants. A role or
    member may be :data:`UNKNOWN`; :class:`UnknownGrants` when the members list or the
    policy data is unknown as a whole (how many grants, to whom, is unknown)."""
    if not is_iam(resource_type):
        return []
    role = get(props, "role")
    member = get(props, "member")
    if _is_text(member) and _is_text(role):
        return [Grant(role, member)]
    members = get(props, "members")
    if members is not None and _is_text(role):
        found = items(members)
        if found is UNKNOWN:
            return UnknownGrants("members")
        return [Grant(role, _text(m), f"members[{i}]") for i, m in enumerate(found)]
    policy = get(props, "policyData")
    if policy is UNKNOWN:
        return UnknownGrants("policy_data")
    if isinstance(policy, str):
        return _policy_grants(policy)
    return []


def _text(value: Any) -> Any:
    return value if value is UNKNOWN else str(value)


def _policy_grants(policy: str) -> list[Grant]:
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


#: How to make an IAM member known at plan time.
KNOWN_MEMBER = (
    "compute the member from inputs so that it is known at plan time (a service account's email is "
    "<account_id>@<project>.iam.gserviceaccount.com)"
)


#: How to make an IAM role known at plan time.
KNOWN_ROLE = (
    "compute the role from inputs so that it is known at plan time (a custom role is "
    "projects/<project>/roles/<role_id>)"
)


def readable_grants(
    resource_type: str, props: Mapping[str, Any], report: Callable[[str], None], question: str
) -> list[Grant]:
    """The resource's grants; when its members or policy data are unknown as a whole, the
    rule's cannot-judge violation (``question``) is reported and there is nothing to read."""
    found = grants(resource_type, props)
    if isinstance(found, UnknownGrants):
        report(cannot_judge(question, found.field, fix=KNOWN_MEMBER))
        return []
    return found


def role_text(role: Any) -> str:
    """A granted role for a message."""
    return shown(role, "a role unknown during this preview")


def member_text(member: Any) -> str:
    """A granted member for a message."""
    return shown(member, "a member unknown during this preview")


def is_service_account(member: Any) -> bool | Unknown:
    """Whether an IAM member is a service account (``serviceAccount:...``)."""
    return UNKNOWN if member is UNKNOWN else isinstance(member, str) and member.startswith("serviceAccount:")


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


def labels(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | Unknown | None:
    """The resource's labels ({} when it sets none, :data:`UNKNOWN` when the whole map is
    unknown); None when it cannot carry labels."""
    path = LABEL_FIELDS.get(resource_type)
    if path is None:
        return None
    found = get(props, *path)
    if found is UNKNOWN:
        return UNKNOWN
    return found if is_map(found) else {}


def labels_field(resource_type: str) -> str:
    """The field of a resource's labels: ``labels``, ``user_labels``..."""
    return ".".join(_snake(step) for step in LABEL_FIELDS.get(resource_type, ("labels",)))


def label(resource_type: str, props: Mapping[str, Any], key: str) -> Any:
    """One label's value: None when unset, :data:`UNKNOWN` when it (or the map) is unknown."""
    found = labels(resource_type, props)
    return None if found is None else get(found, key)


#: The config schema property of every policy that judges production resources only (read by
#: :func:`is_production`).
PRODUCTION_ENVIRONMENTS: Final = {
    "productionEnvironments": {
        "type": "array",
        "items": {"type": "string"},
        "default": [PRODUCTION],
        "description": "Values of the environment label that mark a resource as production.",
    }
}


def is_production(resource_type: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> bool | Unknown:
    """A resource is in production when its ``environment`` label is one of the policy's
    ``productionEnvironments`` (default: ``production``); :data:`UNKNOWN` when the label is."""
    envs = config.get("productionEnvironments") or [PRODUCTION]
    env = label(resource_type, props, LABEL_ENVIRONMENT)
    return UNKNOWN if env is UNKNOWN else env in envs


def environment_unknown(resource_type: str) -> str:
    """The cannot-judge message of a production-only rule whose resource's ``environment``
    label is unknown."""
    return cannot_judge("whether the resource is in production", f"{labels_field(resource_type)}.environment")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


class RefIndex:
    """Which of ``resources`` may name a target through their input ``prop``, found without
    asking each of them: stack policies that ask, for every service of the stack, which NEGs,
    backends or IAM members name it would otherwise be quadratic in the number of agents.

    A resource names a target when ``prop`` was computed from it (a property dependency), when
    a value of ``prop`` is unknown (it may), or when a known string value is one of the target's
    names or ends in ``separator`` + one of them. :meth:`candidates` returns, in stack order,
    every resource for which one of these may hold: the policy then asks each candidate as it
    asked every resource, and the others would have answered no. ``values(r)`` gives the
    values of ``prop`` (a list, or UNKNOWN)."""

    def __init__(self, resources: Sequence[Any], prop: str, values: Callable[[Any], Any], separator: str = "/") -> None:
        self.resources = list(resources)
        self.by_dependency: dict[str, list[int]] = {}
        self.by_name: dict[str, list[int]] = {}
        self.unknown: list[int] = []
        for i, r in enumerate(self.resources):
            for d in r.property_dependencies.get(prop) or []:
                self.by_dependency.setdefault(d.urn, []).append(i)
            found = values(r)
            if found is UNKNOWN or any(v is UNKNOWN for v in found):
                self.unknown.append(i)
                continue
            for v in found:
                if not isinstance(v, str):
                    continue
                keys = {v}
                at = v.find(separator)
                while at != -1:
                    keys.add(v[at + len(separator) :])
                    at = v.find(separator, at + 1)
                for key in keys:
                    self.by_name.setdefault(key, []).append(i)

    def indices(self, target: Any, names: Sequence[str]) -> set[int]:
        """The positions of the resources that may name ``target``, whose names are ``names``."""
        found = set(self.unknown)
        found.update(self.by_dependency.get(target.urn, ()))
        for name in names:
            found.update(self.by_name.get(name, ()))
        return found

    def candidates(self, target: Any, names: Sequence[str]) -> list[Any]:
        """The resources that may name ``target``, in stack order."""
        return [self.resources[i] for i in sorted(self.indices(target, names))]
