"""GkeSpec: the settings of an agent that runs on an existing GKE cluster (``runtime: gke``).

``agents.<name>.gke`` of the stack config, required with ``runtime: gke`` and refused on the
other runtimes. The rules checked here, with their sources (read 2026-11):

- namespace, Gateway and Kubernetes object names: RFC 1123 DNS labels, "contain at most 63
  characters, contain only lowercase alphanumeric characters or '-', start with an alphanumeric
  character, end with an alphanumeric character"
  (https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#dns-label-names);
- quantities (``requests``/``limits``): the Kubernetes ``Quantity`` serialization format,
  ``<signedNumber><suffix>`` with binary (Ki, Mi, Gi, Ti, Pi, Ei), decimal (m, "", k, M, G, T,
  P, E) or exponent suffixes
  (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/); "requests
  cannot exceed limits" (https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/);
- probes: ``periodSeconds`` "Minimum value is 1", ``timeoutSeconds`` "Minimum value is 1",
  ``failureThreshold`` "Minimum value is 1", ``initialDelaySeconds`` >= 0
  (https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#Probe);
- HorizontalPodAutoscaler ``autoscaling/v2``: ``minReplicas`` >= 1 (0 needs the alpha
  ``HPAScaleToZero`` gate), ``maxReplicas`` "cannot be less than minReplicas", target average
  CPU utilization a percentage of the requests (so CPU requests are required)
  (https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/horizontal-pod-autoscaler-v2/);
- PodDisruptionBudget ``minAvailable``: while it is not below the replicas, "no voluntary
  evictions" happen, so a node drain never completes
  (https://kubernetes.io/docs/tasks/run-application/configure-pdb/#think-about-how-your-application-reacts-to-disruptions);
- NetworkPolicy egress ``ipBlock.cidr`` "a string representing the IPBlock Valid examples are
  "192.168.1.0/24" or "2001:db8::/64"" and ports 1..65535
  (https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1/);
- GKE cluster names: "must start with a letter and end with an alphanumeric character, and be
  no longer than 40 characters", lowercase letters, digits and hyphens
  (https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters#Cluster);
- the backend service the GKE Gateway controller makes for a Service: its name is not documented
  by Google. Every name seen in public Gateway deployments has the shape
  ``gkegw1-<4>-<namespace>-<service>-<port>-<12>`` cut to 63 characters (a Compute Engine name's
  limit), parts of the namespace and Service name dropped when they do not fit; Google's own
  reference architecture matches ``-<namespace>-<service>-<port>-`` in it
  (GoogleCloudPlatform/accelerated-platforms, platforms/gke/base/use-cases/inference-ref-arch/
  terraform/comfyui/gateway.tf). The alerts and the canary judge match the whole shape
  (:func:`components.monitoring.gateway_backend_pattern`), so namespace, Service name and port
  together must fit in the 36 characters the fixed parts leave (:data:`GATEWAY_NAME_ROOM`).
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Any

from pydantic import Field, field_validator, model_validator

from components.specbase import SpecIssue, StrictModel, refuse_cloud_run_keys, refuse_section_of_other_runtime

__all__ = [
    "GKE",
    "GkeSpec",
    "GkeClusterRef",
    "GatewayRef",
    "GkeResources",
    "GkeProbe",
    "GkeProbes",
    "EgressRule",
    "GKE_CLOUD_RUN_ONLY",
    "check_gke_settings",
    "check_gateway_names",
    "GATEWAY_NAME_ROOM",
    "STABLE",
    "CANARY",
    "track_service",
    "quantity_value",
    "is_dns1123_label",
]

GKE = "gke"
DNS1123_LABEL_MAX = 63
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CLUSTER = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
_PROJECT = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_LOCATION = re.compile(r"^[a-z]+-[a-z]+[0-9]+(-[a-z])?$")
# Kubernetes Quantity (apimachinery resource/quantity.go): sign, digits, fraction, suffix.
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9)}
_DECIMAL |= {"T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}


def is_dns1123_label(name: str) -> bool:
    """An RFC 1123 DNS label as Kubernetes checks it (at most 63 characters)."""
    return len(name) <= DNS1123_LABEL_MAX and bool(_DNS1123_LABEL.match(name))


def quantity_value(quantity: str) -> Decimal:
    """``"500m"`` -> 0.5, ``"1Gi"`` -> 1073741824. Raises ValueError when not a quantity."""
    m = _QUANTITY.match(quantity)
    if m is None:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity")
    num, suffix = Decimal(m.group("num")), m.group("suffix") or ""
    if suffix in _BINARY:
        return num * _BINARY[suffix]
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return num * Decimal(10) ** int(suffix[1:])
    return num * _DECIMAL[suffix]


def _label(v: str, what: str) -> str:
    if not is_dns1123_label(v):
        raise SpecIssue(
            f"is not a {what}; use an RFC 1123 DNS label: at most {DNS1123_LABEL_MAX} lowercase letters, digits "
            "and '-', starting and ending with a letter or digit"
        )
    return v


class GkeClusterRef(StrictModel):
    """The existing GKE cluster the agent is deployed to."""

    project: str | None = Field(
        default=None, description="Project of the cluster. Default: the stack's project (gcp:project)."
    )
    location: str = Field(description="Region or zone of the cluster (e.g. us-central1). Required.")
    name: str = Field(description="Cluster name. Required.")

    @field_validator("project")
    @classmethod
    def _project(cls, v: str | None) -> str | None:
        if v is not None and not _PROJECT.match(v):
            raise SpecIssue("is not a Google Cloud project id; use 6..30 lowercase letters, digits and '-'")
        return v

    @field_validator("location")
    @classmethod
    def _location(cls, v: str) -> str:
        if not _LOCATION.match(v):
            raise SpecIssue("is not a Google Cloud region or zone; use e.g. us-central1 or us-central1-a")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _CLUSTER.match(v):
            raise SpecIssue(
                "is not a GKE cluster name; use at most 40 lowercase letters, digits and '-', starting with a "
                "letter and ending with a letter or digit"
            )
        return v


class GatewayRef(StrictModel):
    """The Gateway (Gateway API) the agent's HTTPRoute attaches to; it exists already."""

    name: str = Field(description="Gateway name. Required.")
    namespace: str = Field(description="Namespace of the Gateway. Required.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _label(v, "Gateway name")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return _label(v, "namespace name")


class GkeResources(StrictModel):
    """Container requests and limits (Kubernetes quantities)."""

    cpu_request: str = Field(default="500m", description="CPU request, e.g. 500m or 1. Default: 500m.")
    memory_request: str = Field(default="512Mi", description="Memory request, e.g. 512Mi. Default: 512Mi.")
    cpu_limit: str | None = Field(
        default=None, description="CPU limit, >= cpu_request. Default: none (no CPU throttling)."
    )
    memory_limit: str = Field(default="512Mi", description="Memory limit, >= memory_request. Default: 512Mi.")

    @field_validator("cpu_request", "memory_request", "cpu_limit", "memory_limit", mode="before")
    @classmethod
    def _quantity(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or not _QUANTITY.match(v) or quantity_value(v) <= 0:
            raise SpecIssue(
                "is not a positive Kubernetes quantity; use e.g. 250m or 1 for CPU, 512Mi or 2Gi for memory"
            )
        return v

    @model_validator(mode="after")
    def _requests_within_limits(self) -> GkeResources:
        pairs = (
            ("cpu_limit", self.cpu_request, self.cpu_limit),
            ("memory_limit", self.memory_request, self.memory_limit),
        )
        for key, request, limit in pairs:
            if limit is not None and quantity_value(limit) < quantity_value(request):
                raise SpecIssue(
                    f"is below the request ({request}); Kubernetes refuses requests above limits: raise the limit "
                    "or lower the request",
                    path=(key,),
                    value=limit,
                    has_value=True,
                )
        return self


class GkeProbe(StrictModel):
    """An HTTP GET probe on the agent's ``health_path`` and container port."""

    initial_delay_seconds: int = Field(default=0, description="Seconds before the first probe, >= 0. Default: 0.")
    period_seconds: int = Field(default=10, description="Seconds between probes, >= 1. Default: 10.")
    timeout_seconds: int = Field(default=2, description="Seconds a probe may take, >= 1. Default: 2.")
    failure_threshold: int = Field(default=3, description="Failures in a row before acting, >= 1. Default: 3.")

    @model_validator(mode="after")
    def _ranges(self) -> GkeProbe:
        for key, low in (("initial_delay_seconds", 0), ("period_seconds", 1), ("timeout_seconds", 1)):
            if getattr(self, key) < low:
                raise SpecIssue(
                    f"is below Kubernetes' minimum {low}", path=(key,), value=getattr(self, key), has_value=True
                )
        if self.failure_threshold < 1:
            raise SpecIssue(
                "is below Kubernetes' minimum 1",
                path=("failure_threshold",),
                value=self.failure_threshold,
                has_value=True,
            )
        return self


class GkeProbes(StrictModel):
    """Startup, readiness and liveness probes of the agent container."""

    startup: GkeProbe = Field(
        default_factory=lambda: GkeProbe(period_seconds=5, failure_threshold=24),
        description="Startup probe. Default: every 5 s, 24 tries (2 minutes).",
    )
    readiness: GkeProbe = Field(default_factory=GkeProbe, description="Readiness probe. Default: every 10 s, 3 tries.")
    liveness: GkeProbe = Field(
        default_factory=lambda: GkeProbe(period_seconds=15, timeout_seconds=5),
        description="Liveness probe. Default: every 15 s, 5 s timeout, 3 tries.",
    )


class EgressRule(StrictModel):
    """Destinations the agent pods may open connections to (besides DNS)."""

    cidr: str = Field(description="Destination IP block, e.g. 10.0.0.0/8 or 199.36.153.8/30. Required.")
    ports: list[int] = Field(default_factory=list, description="TCP ports, 1..65535. Default: [] (every port).")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            ipaddress.ip_network(v, strict=True)
        except ValueError:
            raise SpecIssue("is not a CIDR block with its host bits zero; use e.g. 10.0.0.0/8") from None
        if "/" not in v:
            raise SpecIssue("has no prefix length; use e.g. 10.0.0.1/32")
        return v

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        for port in v:
            if not 1 <= port <= 65535:
                raise SpecIssue(f"holds {port}, which is not a TCP port; allowed: 1..65535")
        return v


class GkeSpec(StrictModel):
    """Deployment of one agent on an existing GKE cluster (``runtime: gke``)."""

    cluster: GkeClusterRef | None = Field(
        default=None,
        description="The cluster, by project/location/name; its endpoint and CA are read from GKE. Exactly one "
        "of cluster and context. Default: none.",
    )
    context: str | None = Field(
        default=None,
        description="A kubeconfig context (the kubeconfig of kubernetes:kubeconfig or KUBECONFIG). Exactly one "
        "of cluster and context. Default: none.",
    )
    namespace: str | None = Field(
        default=None,
        description="Namespace of the agent's objects; with the longer track Service name (<service>-canary) and service_port at most 36 characters (the GKE Gateway's backend service names). Default: the agent name.",
    )
    min_replicas: int = Field(default=2, description="Fewest pods of the serving track, >= 1. Default: 2.")
    max_replicas: int = Field(default=10, description="Most pods of a track, >= min_replicas. Default: 10.")
    target_cpu_utilization: int = Field(
        default=70, description="Average CPU use (% of the request) the autoscaler aims for, 1..100. Default: 70."
    )
    resources: GkeResources = Field(
        default_factory=GkeResources, description="Requests and limits. Default: 500m CPU, 512Mi memory."
    )
    service_port: int = Field(
        default=80, description="Port of each track's Service (it forwards to the container port). Default: 80."
    )
    probes: GkeProbes = Field(default_factory=GkeProbes, description="Probes. Default: see GkeProbes.")
    pdb_min_available: int = Field(
        default=1,
        description="Pods a PodDisruptionBudget keeps during voluntary disruptions, < min_replicas. Default: 1.",
    )
    egress: list[EgressRule] = Field(
        default_factory=list,
        description="Allowed egress besides DNS (default deny): [{cidr, ports}]. Default: [] (DNS only).",
    )
    gateway: GatewayRef = Field(description="The Gateway the agent's HTTPRoute attaches to. Required.")

    @field_validator("context")
    @classmethod
    def _context(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise SpecIssue("is empty; give the name of a context of the kubeconfig")
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        return v if v is None else _label(v, "namespace name")

    @field_validator("min_replicas")
    @classmethod
    def _min(cls, v: int) -> int:
        if v < 1:
            raise SpecIssue("is below 1; a HorizontalPodAutoscaler keeps at least 1 pod (0 is an alpha feature)")
        return v

    @field_validator("max_replicas")
    @classmethod
    def _max(cls, v: int, info: Any) -> int:
        low = info.data.get("min_replicas")
        if low is not None and v < low:
            raise SpecIssue(f"is below min_replicas ({low}); max_replicas must be >= min_replicas")
        return v

    @field_validator("target_cpu_utilization")
    @classmethod
    def _cpu(cls, v: int) -> int:
        if not 1 <= v <= 100:
            raise SpecIssue("is not a percentage of the CPU request; allowed: 1..100")
        return v

    @field_validator("service_port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 1 <= v <= 65535:
            raise SpecIssue("is not a TCP port; allowed: 1..65535")
        return v

    @model_validator(mode="after")
    def _target_and_budget(self) -> GkeSpec:
        if (self.cluster is None) == (self.context is None):
            raise SpecIssue(
                "and context are both set; give one: the cluster by project/location/name, or a kubeconfig context"
                if self.cluster is not None
                else "is not set, and neither is context; give the cluster (location, name) or a kubeconfig context",
                path=("cluster",),
                value=self.cluster.model_dump(exclude_none=True) if self.cluster else None,
                has_value=True,
            )
        if self.pdb_min_available >= self.min_replicas or self.pdb_min_available < 0:
            raise SpecIssue(
                f"is not below min_replicas ({self.min_replicas}); a PodDisruptionBudget that keeps every pod "
                "blocks node drains and upgrades: lower it or raise min_replicas",
                path=("pdb_min_available",),
                value=self.pdb_min_available,
                has_value=True,
            )
        return self


#: The two tracks of a GKE agent, each a Deployment and a Service named :func:`track_service`.
STABLE, CANARY = "stable", "canary"


def track_service(service_name: str, track: str) -> str:
    """The name of a track's Deployment and Service (the "revision" the release flow routes to)."""
    return f"{service_name}-{track}"


#: Characters a Gateway backend service name leaves for ``<namespace><service><port>``: 63 less
#: ``gkegw1-`` (7), a 4-character hash and its dash (5), three dashes around the port and the
#: trailing 12-character hash (15); see the module docstring.
GATEWAY_NAME_ROOM = 36


def check_gateway_names(agent: str, spec: Any, service_name: str) -> None:
    """Refuse a GKE agent whose track Services' names would be cut in the Gateway's backend
    service name: its alerts and canary metrics would then match no series, silently."""
    gke: GkeSpec | None = spec.gke
    if spec.runtime != GKE or gke is None:
        return
    namespace = gke.namespace or agent
    longest = max((track_service(service_name, t) for t in (CANARY, STABLE)), key=len)
    size = len(namespace) + len(longest) + len(str(gke.service_port))
    if size > GATEWAY_NAME_ROOM:
        start = (
            f"with the Service {longest} and port {gke.service_port} makes {size} characters"
            if gke.namespace is not None
            else f"is not set, so the namespace is the agent's name ({namespace}); with the Service {longest} "
            f"and port {gke.service_port} that makes {size} characters"
        )
        raise SpecIssue(
            f"{start}: the GKE Gateway names a Service's backend service "
            "gkegw1-<hash>-<namespace>-<service>-<port>-<hash> in at most 63 characters, which leaves "
            f"{GATEWAY_NAME_ROOM} for those three, and cuts a longer one, so the agent's alerts and canary "
            "metrics would match no series: set a shorter gke.namespace (or shorten the agent name or the prefix)",
            path=("agents", agent, "gke", "namespace"),
            value=gke.namespace,
            has_value=True,
        )


#: AgentSpec keys that only Cloud Run reads, and what to use on gke instead.
GKE_CLOUD_RUN_ONLY: dict[str, str] = {
    "ingress": "the agent is reached through gke.gateway (an HTTPRoute on that Gateway)",
    "scaling": "set gke.min_replicas, max_replicas and target_cpu_utilization instead",
    "resources": "set gke.resources (requests and limits) instead",
    "probes": "set gke.probes instead",
    "stable_revision": "the stable release runs in the agent's stable Deployment, named by agentstage",
    "invokers": "callers reach the agent through gke.gateway and the NetworkPolicy; IAM invokers do not apply "
    "(put IAP on the Gateway to authenticate callers)",
    "secrets": "read the secrets with the Secret Manager API as the agent's Workload Identity (roles granted "
    "with `roles`); secret env vars are not wired on gke yet",
}


def check_gke_settings(spec: Any) -> None:
    """Refuse what does not apply to ``spec.runtime`` (``spec`` is an ``AgentSpec``): the ``gke``
    section off gke; on gke a missing section and Cloud Run-only keys set to a non-default value."""
    gke: GkeSpec | None = spec.gke
    if spec.runtime != GKE:
        refuse_section_of_other_runtime(spec, "gke", GKE)
        return
    if gke is None:
        raise SpecIssue(
            "is not set; runtime gke needs the cluster and the Gateway: set gke.cluster (or gke.context) and "
            "gke.gateway",
            path=("gke",),
            value=None,
            has_value=True,
        )
    refuse_cloud_run_keys(spec, GKE_CLOUD_RUN_ONLY, "gke")
