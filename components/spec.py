"""Typed specs of the components: the single source of truth for their inputs.

The stack config schema (``agentstage.config``) is composed of these same models, so a
value is checked once, with one message, whether it comes from ``Pulumi.<stack>.yaml`` or
from a team's own program that builds a component directly.

Every validator raises :class:`SpecIssue` (a ``ValueError``) whose message completes the
sentence ``<key>: <value> ...`` and says what is allowed.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from components.agent_engine_spec import AgentEngineSpec, check_runtime_settings
from components.contract import (
    BASE_LABEL_KEYS,
    CANARY_TAG,
    PRODUCTION,
    RESERVED_ENV_PREFIXES,
    TEMPLATE_ENV,
    TRACING_ENV,
)
from components.endpoint_spec import VertexEndpointSpec, check_release_image, check_vertex_settings
from components.gke_spec import GkeSpec, check_gateway_names, check_gke_settings
from components.load_balancer_spec import LoadBalancerSpec, RateLimitSpec, check_load_balancer_settings
from components.network_spec import VpcEgressSpec, check_call_paths, check_vpc_egress
from components.ops_spec import MODEL_ARMOR_LOCATIONS, AlertsSpec, BudgetSpec, GuardrailsSpec, TracingSpec
from components.registry_spec import AgentCardSpec, check_agent_calls, check_calls
from components.release_spec import AnalysisSpec, GatesSpec
from components.revision import REVISION_NAME_MAX, legacy_revision_name, version_slug
from components.specbase import SpecIssue, StrictModel, check_label_key, check_label_value, check_role
from components.spend_cap_spec import SpendCapSpec, check_agent_spend_cap, check_platform_spend_caps

__all__ = [
    "SpecIssue",
    "StrictModel",
    "ReleaseSpec",
    "RolloutSpec",
    "ScalingSpec",
    "ResourcesSpec",
    "AgentSpec",
    "INGRESS_VALUES",
    "RUNTIMES",
    "SUPPORTED_RUNTIMES",
    "ProbeSpec",
    "ProbesSpec",
    "version_slug",
    "parse_secret_ref",
    "cpu_count",
    "memory_mib",
]


# --- names --------------------------------------------------------------------------------

_DIGEST_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+)"
    r"(?::[\w][\w.-]{0,127})?@sha256:[0-9a-f]{64}$"
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EMAIL = re.compile(r"^[^@\s:]+@[^@\s:]+\.[^@\s:]+$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,63}$")
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_SECRET_VERSION = re.compile(r"^(latest|[1-9][0-9]*)$")

#: Cloud Run limits the service name to 49 characters (the revision name to 63: see
#: components.revision).
SERVICE_NAME_MAX = 49

#: The regions where Cloud Run runs services, tier 1 and tier 2 pricing
#: (https://cloud.google.com/run/docs/locations, read 2026-11).
CLOUD_RUN_REGIONS = frozenset(
    {
        "asia-east1",
        "asia-northeast1",
        "asia-northeast2",
        "europe-north1",
        "europe-southwest1",
        "europe-west1",
        "europe-west4",
        "europe-west8",
        "europe-west9",
        "me-west1",
        "us-central1",
        "us-east1",
        "us-east4",
        "us-east5",
        "us-south1",
        "us-west1",
        "africa-south1",
        "asia-east2",
        "asia-northeast3",
        "asia-southeast1",
        "asia-southeast2",
        "asia-south1",
        "asia-south2",
        "australia-southeast1",
        "australia-southeast2",
        "europe-central2",
        "europe-west10",
        "europe-west12",
        "europe-west2",
        "europe-west3",
        "europe-west6",
        "me-central1",
        "me-central2",
        "northamerica-northeast1",
        "northamerica-northeast2",
        "southamerica-east1",
        "southamerica-west1",
        "us-west2",
        "us-west3",
        "us-west4",
    }
)

#: Environment variables Cloud Run sets itself and rejects in a container spec.
RESERVED_ENV = frozenset({"PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION"})
#: Cloud Run: at most 1000 env vars per container, each value at most 32768 bytes.
MAX_ENV = 1000
MAX_ENV_VALUE_BYTES = 32768
#: Cloud Run: a traffic tag and the service name together at most 46 characters.
TAG_AND_SERVICE_MAX = 46
#: Most env vars agentstage injects itself (release identity, tracing, Model Armor template,
#: the feature flags parameter).
INJECTED_ENV_MAX = 16
#: Labels one resource may carry (Google Cloud labels limit), and so what user labels may add
#: to the base labels agentstage sets on every agent resource.
MAX_LABELS = 64

INGRESS_VALUES: dict[str, str] = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
RUNTIMES = ("cloud-run", "agent-engine", "vertex-endpoint", "gke")
#: Runtimes this release builds. The others are part of the config contract but are
#: rejected with a clear message rather than silently deploying nothing.
SUPPORTED_RUNTIMES = ("cloud-run", "agent-engine", "vertex-endpoint", "gke")


def parse_secret_ref(ref: str) -> tuple[str, str]:
    """``name[:version]`` -> ``(name, version)``; version defaults to ``latest``."""
    name, _, version = ref.partition(":")
    return name, version or "latest"


def _check_member(member: str) -> str:
    if member in ("allUsers", "allAuthenticatedUsers"):
        return member
    kind, sep, rest = member.partition(":")
    if sep and kind in ("user", "group", "serviceAccount") and _EMAIL.match(rest):
        return member
    if sep and kind == "domain" and _DOMAIN.match(rest):
        return member
    if member.startswith(("principal://", "principalSet://")):
        return member
    raise SpecIssue(
        "is not an IAM member; use user:<email>, group:<email>, serviceAccount:<email>, "
        "domain:<domain>, principal://..., principalSet://..., allUsers or allAuthenticatedUsers"
    )


# --- release ------------------------------------------------------------------------------


class ReleaseSpec(StrictModel):
    """An immutable release manifest: everything that defines what the agent runs."""

    version: str = Field(
        description="Release version, e.g. 1.4.0. Required. Part of the Cloud Run revision name "
        "(<service>-<version slug>-<template digest>), so it must map to a DNS label (letters, digits, '.', '-', "
        "'_', '+')."
    )
    image: str | None = Field(
        default=None,
        description="Container image pinned by digest: <repo>/<image>@sha256:<64 hex>. Required on every runtime but "
        "vertex-endpoint, whose serving container the Model Registry records with the model. Default: none.",
    )
    model: str | None = Field(default=None, description="Model the agent calls, e.g. gemini-2.5-flash. Default: none.")
    prompts: str | None = Field(
        default=None, description="Digest of the prompt bundle, sha256:<64 hex>. Default: none."
    )
    tools: dict[str, str] = Field(default_factory=dict, description="Tool name -> tool version. Default: {}.")
    memory_schema: str | None = Field(default=None, description="Memory schema version. Default: none.")
    eval_dataset: str | None = Field(
        default=None, description="Evaluation dataset and version, e.g. support-golden@7. Default: none."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if isinstance(v, float):
            raise SpecIssue(
                "is a number, not a version: YAML reads an unquoted 1.10 as the number 1.1; quote the version, "
                'e.g. version: "1.10"'
            )
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str) or not _VERSION.match(v) or not version_slug(v):
            raise SpecIssue(
                "is not a usable release version; use letters, digits, '.', '-', '_' or '+', "
                "starting with a letter or digit (e.g. 1.4.0)"
            )
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and not _DIGEST_IMAGE.match(v):
            raise SpecIssue("is not pinned by digest; use <repo>/<image>@sha256:<64 hex>")
        return v

    @field_validator("prompts")
    @classmethod
    def _prompts(cls, v: str | None) -> str | None:
        if v is not None and not _DIGEST.match(v):
            raise SpecIssue("is not a content digest; use sha256:<64 hex>")
        return v

    @field_validator("memory_schema", mode="before")
    @classmethod
    def _memory_schema(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @property
    def slug(self) -> str:
        return version_slug(self.version)


class RolloutSpec(StrictModel):
    """How a candidate release replaces the stable one."""

    canary_percent: int | None = Field(
        default=None,
        description="Percent of traffic sent to `release` while `stable` is set, 0..100. "
        "Default: the first of `steps`. 0 means rolled back: all traffic on stable, the candidate off the "
        "traffic block (no tag, no warm instances).",
    )
    steps: list[int] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        description="Canary steps in percent, strictly ascending, each 1..100, ending at 100. Default: [5, 25, 50, 100].",
    )
    bake_minutes: int = Field(
        default=10, description="Minutes each step bakes before it may advance, 1..1440. Default: 10."
    )
    max_error_rate: float = Field(
        default=0.02, description="Abort when the canary's 5xx ratio exceeds this, 0..1. Default: 0.02."
    )
    max_latency_p99_ms: int = Field(
        default=2000, description="Abort when the canary's p99 latency exceeds this, in ms. Default: 2000."
    )
    analysis: AnalysisSpec = Field(
        default_factory=AnalysisSpec,
        description="Canary-vs-stable analysis settings (sample sizes, significance). Default: see AnalysisSpec.",
    )

    @field_validator("canary_percent")
    @classmethod
    def _percent(cls, v: int | None) -> int | None:
        if v is not None and not 0 <= v <= 100:
            raise SpecIssue("is not a percentage; allowed: 0..100")
        return v

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if not v:
            raise SpecIssue("is empty; give ascending percentages ending at 100, e.g. [5, 25, 50, 100]")
        if any(not 1 <= s <= 100 for s in v):
            raise SpecIssue("has a step outside 1..100; give ascending percentages ending at 100")
        if any(b <= a for a, b in zip(v, v[1:])):
            raise SpecIssue("is not strictly ascending; give ascending percentages ending at 100")
        if v[-1] != 100:
            raise SpecIssue("does not end at 100; the last step must send all traffic to the release")
        return v

    @field_validator("bake_minutes")
    @classmethod
    def _bake(cls, v: int) -> int:
        if not 1 <= v <= 1440:
            raise SpecIssue("is out of range; allowed: 1..1440 minutes")
        return v

    @field_validator("max_error_rate")
    @classmethod
    def _error_rate(cls, v: float) -> float:
        if not 0 <= v <= 1:
            raise SpecIssue("is not a ratio; allowed: 0..1 (0.02 means 2%)")
        return v

    @field_validator("max_latency_p99_ms")
    @classmethod
    def _latency(cls, v: int) -> int:
        if v <= 0:
            raise SpecIssue("is not a positive number of milliseconds")
        return v


class ScalingSpec(StrictModel):
    """Instance scaling of one agent service."""

    min_instances: int = Field(default=0, description="Minimum instances kept warm, >= 0. Default: 0.")
    max_instances: int = Field(default=10, description="Maximum instances, 1..1000 and >= min_instances. Default: 10.")
    concurrency: int = Field(default=80, description="Maximum concurrent requests per instance, 1..1000. Default: 80.")

    @field_validator("min_instances")
    @classmethod
    def _min(cls, v: int) -> int:
        if v < 0:
            raise SpecIssue("is negative; allowed: 0 or more")
        return v

    @field_validator("max_instances")
    @classmethod
    def _max(cls, v: int, info: Any) -> int:
        if not 1 <= v <= 1000:
            raise SpecIssue("is out of range; allowed: 1..1000")
        low = info.data.get("min_instances")
        if low is not None and v < low:
            raise SpecIssue(f"is below min_instances ({low}); max_instances must be >= min_instances")
        return v

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, v: int) -> int:
        if not 1 <= v <= 1000:
            raise SpecIssue("is out of range; allowed: 1..1000")
        return v


_CPU_WHOLE = ("1", "2", "4", "6", "8")
_CPU_MILLI = re.compile(r"^([0-9]+)m$")
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Mi|Gi|M|G)$")
_MEM_UNIT = {"Mi": 1, "Gi": 1024, "M": 1000 / 1048576 * 1000, "G": 1e9 / 1048576}
#: Minimum CPUs for a memory limit above each threshold (MiB), per Cloud Run's limits.
_CPU_FOR_MEMORY = ((24 * 1024, 8), (16 * 1024, 6), (8 * 1024, 4), (4 * 1024, 2))
#: Minimum memory (MiB) for a CPU count, per Cloud Run's limits.
_MEMORY_FOR_CPU = {4: 2048, 6: 4096, 8: 4096}
#: Most memory (MiB) with fractional CPU: below 0.5 vCPU, and below 1 vCPU.
_MEMORY_FOR_FRACTION = ((0.5, 512), (1.0, 1024))


def cpu_count(cpu: str) -> float:
    """``"2"`` -> 2.0, ``"500m"`` -> 0.5."""
    return int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


def memory_mib(memory: str) -> float:
    """``"4Gi"`` -> 4096.0 (MiB). Raises ValueError when ``memory`` is not a quantity."""
    m = _MEMORY.match(memory)
    if m is None:
        raise ValueError(f"{memory!r} is not a memory quantity such as 512Mi or 4Gi")
    return float(m.group(1)) * _MEM_UNIT[m.group(2)]


class ResourcesSpec(StrictModel):
    """CPU and memory limits of one instance (Cloud Run limits: see docs/config.md)."""

    cpu: str = Field(
        default="1",
        description="CPU limit: 1, 2, 4, 6 or 8, or fractional 80m..990m in steps of 10m. Fractional CPU "
        "(below 1) means Cloud Run allocates CPU only during requests, serves one request at a "
        'time (scaling.concurrency 1) and allows at most 1Gi (512Mi below 500m). Default: "1".',
    )
    memory: str = Field(default="512Mi", description="Memory limit, 128Mi..32Gi (e.g. 512Mi, 4Gi). Default: 512Mi.")

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        milli = _CPU_MILLI.match(v) if isinstance(v, str) else None
        if milli is not None and int(milli.group(1)) == 1000:
            return v  # 1000m is 1 CPU
        ok = isinstance(v, str) and (
            v in _CPU_WHOLE
            or (milli is not None and 80 <= int(milli.group(1)) < 1000 and int(milli.group(1)) % 10 == 0)
        )
        if not ok:
            raise SpecIssue(
                'is not a Cloud Run CPU limit; allowed: "1", "2", "4", "6", "8" or fractional 80m..990m in steps of 10m'
            )
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str, info: Any) -> str:
        if not _MEMORY.match(v) or not 128 <= memory_mib(v) <= 32 * 1024:
            raise SpecIssue("is not a Cloud Run memory limit; allowed: 128Mi..32Gi, e.g. 512Mi, 2Gi")
        cpu = info.data.get("cpu")
        if cpu is None:
            return v
        mib, cpus = memory_mib(v), cpu_count(cpu)
        for threshold, need in _CPU_FOR_MEMORY:
            if mib > threshold and cpus < need:
                raise SpecIssue(f'needs at least {need} CPU on Cloud Run (cpu is "{cpu}"); raise cpu or lower memory')
        need_mem = _MEMORY_FOR_CPU.get(int(cpus)) if cpus == int(cpus) else None
        if need_mem and mib < need_mem:
            raise SpecIssue(
                f"is below the {need_mem // 1024}Gi Cloud Run requires with {cpu} CPU; raise memory or lower cpu"
            )
        for below, most in _MEMORY_FOR_FRACTION:
            if cpus < below and mib > most:
                shown = f"{most}Mi" if most < 1024 else "1Gi"
                raise SpecIssue(
                    f'is above the {shown} Cloud Run allows with less than {below:g} CPU (cpu is "{cpu}"); '
                    "lower memory or raise cpu"
                )
        return v

    @property
    def fractional(self) -> bool:
        """CPU below 1: Cloud Run then allocates CPU only during requests, one at a time."""
        return cpu_count(self.cpu) < 1


class ProbeSpec(StrictModel):
    """An HTTP probe on the agent's ``health_path``. Cloud Run's limits per kind are
    ``LIMITS`` (seconds) and ``timeout_seconds`` may not exceed ``period_seconds``."""

    #: field -> (least, most)
    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {}
    initial_delay_seconds: int = Field(default=0, description="Seconds before the first probe. Default: 0.")
    period_seconds: int = Field(default=10, description="Seconds between probes. Default: see the probe kind.")
    timeout_seconds: int = Field(
        default=1, description="Seconds a probe may take, <= period_seconds. Default: see the probe kind."
    )
    failure_threshold: int = Field(
        default=3, description="Failed probes in a row before giving up. Default: see the probe kind."
    )

    @model_validator(mode="after")
    def _limits(self) -> ProbeSpec:
        for key, (low, high) in self.LIMITS.items():
            value = getattr(self, key)
            if not low <= value <= high:
                raise SpecIssue(
                    f"is out of Cloud Run's range; allowed: {low}..{high}", path=(key,), value=value, has_value=True
                )
        if self.timeout_seconds > self.period_seconds:
            raise SpecIssue(
                f"is longer than period_seconds ({self.period_seconds}); Cloud Run requires timeout_seconds <= "
                "period_seconds",
                path=("timeout_seconds",),
                value=self.timeout_seconds,
                has_value=True,
            )
        return self


class StartupProbeSpec(ProbeSpec):
    """The startup probe: Cloud Run routes no traffic to an instance before it passes. Cloud
    Run gives an instance at most 240 s to start (failure_threshold x period_seconds)."""

    #: Most seconds failure_threshold x period_seconds may cover.
    WINDOW: ClassVar[int] = 240

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "initial_delay_seconds": (0, 240),
        "period_seconds": (1, 240),
        "timeout_seconds": (1, 240),
        "failure_threshold": (1, 240),
    }
    period_seconds: int = Field(default=5, description="Seconds between probes, 1..240. Default: 5.")
    timeout_seconds: int = Field(
        default=3, description="Seconds a probe may take, 1..240, <= period_seconds. Default: 3."
    )
    failure_threshold: int = Field(
        default=24,
        description="Failed probes before the instance is replaced, 1..240; failure_threshold x period_seconds "
        "<= 240. Default: 24 (2 minutes).",
    )

    @model_validator(mode="after")
    def _window(self) -> StartupProbeSpec:
        window = self.failure_threshold * self.period_seconds
        if window > self.WINDOW:
            raise SpecIssue(
                f"x period_seconds ({self.period_seconds}) is {window} s; Cloud Run allows a startup probe at most "
                f"{self.WINDOW} s: lower failure_threshold or period_seconds",
                path=("failure_threshold",),
                value=self.failure_threshold,
                has_value=True,
            )
        return self


class LivenessProbeSpec(ProbeSpec):
    """The liveness probe: Cloud Run restarts an instance that fails it."""

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {
        "initial_delay_seconds": (0, 3600),
        "period_seconds": (1, 3600),
        "timeout_seconds": (1, 3600),
        "failure_threshold": (1, 1000),
    }
    period_seconds: int = Field(default=15, description="Seconds between probes, 1..3600. Default: 15.")
    timeout_seconds: int = Field(
        default=5, description="Seconds a probe may take, 1..3600, <= period_seconds. Default: 5."
    )
    failure_threshold: int = Field(default=3, description="Failed probes before a restart, 1..1000. Default: 3.")


class ProbesSpec(StrictModel):
    """Health probes of the agent container (both HTTP GET on ``health_path``)."""

    startup: StartupProbeSpec = Field(
        default_factory=StartupProbeSpec, description="Startup probe. Default: every 5 s, 3 s timeout, 24 tries."
    )
    liveness: LivenessProbeSpec = Field(
        default_factory=LivenessProbeSpec, description="Liveness probe. Default: every 15 s, 5 s timeout, 3 tries."
    )


class AgentSpec(StrictModel):
    """One agent in one environment."""

    runtime: Literal["cloud-run", "agent-engine", "vertex-endpoint", "gke"] = Field(
        default="cloud-run",
        description="Where the agent runs: cloud-run | agent-engine | vertex-endpoint | gke. Default: cloud-run.",
    )
    agent_engine: AgentEngineSpec | None = Field(
        default=None,
        description="Agent Engine settings, with runtime agent-engine only (see AgentEngineSpec). Default: none "
        "(the AgentEngineSpec defaults).",
    )
    vertex_endpoint: VertexEndpointSpec | None = Field(
        default=None,
        description="Vertex AI endpoint settings (model, versions, machine, replicas, privacy, CMEK), required with "
        "runtime vertex-endpoint and only there (see VertexEndpointSpec). Default: none.",
    )
    gke: GkeSpec | None = Field(
        default=None,
        description="GKE settings (cluster, namespace, replicas, resources, probes, disruption budget, egress, "
        "Gateway), required with runtime gke and only there (see GkeSpec). Default: none.",
    )
    release: ReleaseSpec = Field(description="The release the service template runs. Required.")
    stable: ReleaseSpec | None = Field(
        default=None,
        description="The release that keeps the rest of the traffic during a canary. Default: none (the release takes 100%).",
    )
    stable_revision: str | None = Field(
        default=None,
        description="Name of the Cloud Run revision that serves `stable`, as deployed: written by the release "
        "flow when a release becomes stable, so the stable traffic target keeps naming the revision that exists "
        "after shared config changes the template. Default: <service>-<stable version slug>, the name "
        "agentstage 0.1 gave revisions.",
    )
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="Canary settings. Default: see RolloutSpec.")
    scaling: ScalingSpec = Field(
        default_factory=ScalingSpec, description="Scaling. Default: 0..10 instances, concurrency 80."
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Limits. Default: 1 CPU, 512Mi.")
    ingress: str = Field(
        default="internal-and-cloud-load-balancing",
        description="all | internal | internal-and-cloud-load-balancing. Default: internal-and-cloud-load-balancing.",
    )
    invokers: list[str] = Field(
        default_factory=list, description="IAM members allowed to invoke the service. Default: []."
    )
    roles: list[str] = Field(
        default_factory=list, description="Extra project roles for the agent identity. Default: []."
    )
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Env var -> Secret Manager secret[:version] (version default: latest). Default: {}.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Plain env vars (never credentials). Default: {}.")
    features: dict[str, bool] = Field(
        default_factory=dict,
        description=(
            "Feature flags (name: true|false), kept in the agent's Parameter Manager parameter "
            "<service>-<environment>-flags and read at run time (its name is the env var AGENTSTAGE_FLAGS_PARAMETER): "
            "changing one creates a new parameter version and no new revision. Default: {}."
        ),
    )
    spend_cap: SpendCapSpec | None = Field(
        default=None,
        description="Hard monthly spend cap: the agent's own budget and what the enforcer does past it "
        "(see SpendCapSpec; needs budget.billing_account). Default: none.",
    )
    port: int = Field(default=8080, description="Container port the agent listens on, 1..65535. Default: 8080.")
    health_path: str = Field(
        default="/healthz", description="HTTP path of the startup and liveness probes. Default: /healthz."
    )
    probes: ProbesSpec = Field(default_factory=ProbesSpec, description="Probe timing. Default: see ProbesSpec.")
    load_balancer: LoadBalancerSpec | None = Field(
        default=None,
        description="An external Application Load Balancer in front of the agent (serverless NEG, backend service, "
        "URL map, managed certificate, HTTPS forwarding rule), cloud-run agents with ingress "
        "internal-and-cloud-load-balancing only (see LoadBalancerSpec). Default: none.",
    )
    rate_limit: RateLimitSpec | None = Field(
        default=None,
        description="A per-client Cloud Armor rate limit on the load balancer (throttle or ban, keyed by IP, header "
        "or API key; see RateLimitSpec); needs load_balancer. Production agents behind a load balancer need one "
        "(policy agent-rate-limit). Default: none.",
    )
    calls: list[str] = Field(
        default_factory=list,
        description="Agents of this stack it calls over A2A (cloud-run agents, not itself): its identity gets "
        "roles/run.invoker on exactly their Cloud Run services. Default: [] (calls none).",
    )
    card: AgentCardSpec | None = Field(
        default=None,
        description="Its A2A agent card in the stack's agent registry (description, skills, streaming; see "
        "AgentCardSpec), cloud-run agents only. Production agents that other agents call need one (policy "
        "a2a-agent-card). Default: none (no card published).",
    )
    vpc_egress: VpcEgressSpec | None = Field(
        default=None,
        description="Direct VPC egress of its Cloud Run revisions (network, subnetwork, egress, network_tags; see "
        "VpcEgressSpec), cloud-run agents only. An agent that calls an agent with ingress internal or "
        "internal-and-cloud-load-balancing needs it with egress: all-traffic, or Cloud Run refuses the call as "
        "external. Default: none (no VPC; outbound traffic leaves directly).",
    )

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 1 <= v <= 65535:
            raise SpecIssue("is not a TCP port; allowed: 1..65535")
        return v

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, v: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", v):
            raise SpecIssue("is not an HTTP path; use an absolute path such as /healthz")
        return v

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, v: str) -> str:
        if v not in SUPPORTED_RUNTIMES:
            raise SpecIssue(
                f"is not available in this version of agentstage; available: {', '.join(SUPPORTED_RUNTIMES)}"
            )
        return v

    @field_validator("ingress")
    @classmethod
    def _ingress(cls, v: str) -> str:
        if v not in INGRESS_VALUES:
            raise SpecIssue(f"is not an ingress setting; allowed: {', '.join(INGRESS_VALUES)}")
        return v

    @field_validator("invokers")
    @classmethod
    def _invokers(cls, v: list[str]) -> list[str]:
        for i, member in enumerate(v):
            try:
                _check_member(member)
            except SpecIssue as issue:
                raise SpecIssue(issue.message, path=(i,), value=member, has_value=True) from None
        return v

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: list[str]) -> list[str]:
        for i, role in enumerate(v):
            check_role(role, (i,))
        return v

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, v: dict[str, str]) -> dict[str, str]:
        for name, ref in v.items():
            _check_env_name(name, "secrets")
            secret, _, version = ref.partition(":")
            if not _SECRET_ID.match(secret) or (version and not _SECRET_VERSION.match(version)):
                raise SpecIssue(
                    "is not a Secret Manager reference; use <secret>[:<version>] with a secret id of "
                    "letters, digits, '-' or '_' and a version that is a number or 'latest'",
                    path=(name,),
                    value=ref,
                    has_value=True,
                )
        return v

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for name, value in v.items():
            _check_env_name(name, "env")
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise SpecIssue(
                    "is not a plain value; env values are strings (quote them in YAML)",
                    path=(name,),
                    value=value,
                    has_value=True,
                )
            if len(str(value).encode()) > MAX_ENV_VALUE_BYTES:
                raise SpecIssue(
                    f"is longer than the {MAX_ENV_VALUE_BYTES} bytes Cloud Run allows in an env value",
                    path=(name,),
                    value=f"<{len(str(value).encode())} bytes>",
                    has_value=True,
                )
            out[name] = str(value)
        return out

    @field_validator("features")
    @classmethod
    def _features(cls, v: dict[str, bool]) -> dict[str, bool]:
        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise SpecIssue(
                    "is not a feature flag name; use lowercase letters, digits and '_'",
                    path=(name,),
                    value=name,
                    has_value=True,
                )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AgentSpec:
        overlap = sorted(set(self.env) & set(self.secrets))
        if overlap:
            raise SpecIssue(
                "is set both in env and in secrets; keep it in secrets only",
                path=("env", overlap[0]),
                value=overlap[0],
                has_value=True,
            )
        if self.stable is not None and self.stable.version == self.release.version:
            raise SpecIssue(
                "is the same version as release; stable must be a different, earlier release "
                "(remove stable when the release takes all traffic)",
                path=("stable", "version"),
                value=self.stable.version,
                has_value=True,
            )
        if self.stable is not None and self.stable_revision is None and self.stable.slug == self.release.slug:
            raise SpecIssue(
                f"names the same revision as release version {self.release.version!r} (both become "
                f"{self.release.slug!r} in a revision name); give stable its real, different version",
                path=("stable", "version"),
                value=self.stable.version,
                has_value=True,
            )
        if self.stable_revision is not None and self.stable is None:
            raise SpecIssue(
                "is set but stable is not; stable_revision names the revision of the stable release: "
                "remove it, or set stable",
                path=("stable_revision",),
                value=self.stable_revision,
                has_value=True,
            )
        if self.rollout.canary_percent is not None and self.stable is None:
            raise SpecIssue(
                "is set but stable is not; canary_percent splits traffic between release and stable: "
                "remove it, or set stable",
                path=("rollout", "canary_percent"),
                value=self.rollout.canary_percent,
                has_value=True,
            )
        check_release_image(self)
        check_runtime_settings(self)
        check_vertex_settings(self)
        check_gke_settings(self)
        check_load_balancer_settings(self)
        check_agent_spend_cap(self)
        check_agent_calls(self)
        check_vpc_egress(self)
        self._cloud_run_limits()
        return self

    def _cloud_run_limits(self) -> None:
        """The combinations Cloud Run refuses (docs/config.md cites each rule)."""
        # feature flags are not env vars (they live in Parameter Manager): they do not count
        count = len(self.env) + len(self.secrets)
        if count > MAX_ENV - INJECTED_ENV_MAX:
            raise SpecIssue(
                f"with secrets makes {count} env vars; Cloud Run allows {MAX_ENV} per container and "
                f"agentstage injects up to {INJECTED_ENV_MAX}: keep at most {MAX_ENV - INJECTED_ENV_MAX}",
                path=("env",),
                value=f"<{len(self.env)} vars>",
                has_value=True,
            )
        if self.resources.fractional and self.scaling.concurrency != 1:
            raise SpecIssue(
                f'must be 1 when resources.cpu is below 1 ("{self.resources.cpu}"): Cloud Run serves one request '
                'at a time on fractional CPU; set concurrency: 1, or cpu: "1" or more',
                path=("scaling", "concurrency"),
                value=self.scaling.concurrency,
                has_value=True,
            )

    @property
    def canary_percent(self) -> int:
        """Traffic percent to the release while stable is set (default: the first step)."""
        if self.rollout.canary_percent is not None:
            return self.rollout.canary_percent
        return self.rollout.steps[0]

    @property
    def ingress_value(self) -> str:
        return INGRESS_VALUES[self.ingress]

    def stable_revision_name(self, service: str) -> str | None:
        """The revision serving ``stable``: the recorded ``stable_revision``, else the name
        agentstage 0.1 gave it (``<service>-<version slug>``); None without a stable."""
        if self.stable is None:
            return None
        return self.stable_revision or legacy_revision_name(service, self.stable.version)


def _check_env_name(name: str, where: str) -> None:
    if not _ENV_NAME.match(name):
        raise SpecIssue(
            "is not an environment variable name; use letters, digits and '_', not starting with a digit",
            path=(name,),
            value=name,
            has_value=True,
        )
    if name in RESERVED_ENV:
        raise SpecIssue(
            f"is reserved by Cloud Run; reserved: {', '.join(sorted(RESERVED_ENV))}",
            path=(name,),
            value=name,
            has_value=True,
        )
    if name == TEMPLATE_ENV or name in TRACING_ENV or name.startswith(RESERVED_ENV_PREFIXES):
        raise SpecIssue(
            f"is reserved by agentstage, which sets {TEMPLATE_ENV}, the "
            f"{', '.join(p + '*' for p in RESERVED_ENV_PREFIXES)} variables and the tracing variables "
            f"({', '.join(TRACING_ENV)}) itself; rename it "
            "(feature flags: agents.<name>.features; tracing: agent-platform:tracing)",
            path=(name,),
            value=name,
            has_value=True,
        )


def check_dns_label(name: str, limit: int) -> bool:
    return len(name) <= limit and bool(_DNS_LABEL.match(name))


# The operations specs build on SpecIssue/StrictModel above, so they are imported here, not
# at the top (``components/__init__`` imports this module first).


class PlatformSpec(StrictModel):
    """Everything one environment of the platform runs (the ``AgentPlatform`` input)."""

    project: str = Field(description="Google Cloud project id (gcp:project). Required.")
    region: str = Field(default="us-central1", description="Region of the services (gcp:region). Default: us-central1.")
    environment: str = Field(
        description='Environment name, a lowercase DNS label (e.g. staging). "production" turns on '
        "deletion protection and the strict policy set. Required."
    )
    prefix: str = Field(
        default="",
        description="Prefix of physical names: services are <prefix>-<agent>. Default: none "
        "(use it when environments share a project).",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every labelable resource. Default: {}."
    )
    agents: dict[str, AgentSpec] = Field(description="Agent name -> agent. At least one. Required.")
    alerts: AlertsSpec = Field(
        default_factory=AlertsSpec,
        description="Alert policies, notification channels, SLOs, agent signals, dashboard. Default: see AlertsSpec.",
    )
    budget: BudgetSpec = Field(
        default_factory=BudgetSpec,
        description="Billing budget. Default: none; production requires budget.billing_account.",
    )
    guardrails: GuardrailsSpec = Field(
        default_factory=GuardrailsSpec, description="Model Armor guardrails. Default: on (see GuardrailsSpec)."
    )
    tracing: TracingSpec = Field(
        default_factory=TracingSpec, description="OpenTelemetry env vars. Default: on (see TracingSpec)."
    )
    gates: GatesSpec = Field(
        default_factory=GatesSpec,
        description="Release readiness gates read by `agentstage gate` and `promote`. Default: see GatesSpec.",
    )

    @field_validator("project")
    @classmethod
    def _project(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", v):
            raise SpecIssue(
                "is not a Google Cloud project id; use 6-30 lowercase letters, digits or '-', starting with a letter"
            )
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z]+-[a-z]+[0-9]+", v):
            raise SpecIssue("is not a Google Cloud region; use a name like us-central1 or europe-west4")
        if v not in CLOUD_RUN_REGIONS:
            close = difflib.get_close_matches(v, sorted(CLOUD_RUN_REGIONS), n=1, cutoff=0.8)
            raise SpecIssue(
                "is not a region where Cloud Run runs services (https://cloud.google.com/run/docs/locations)"
                + (f"; did you mean {close[0]}?" if close else f"; use one of {', '.join(sorted(CLOUD_RUN_REGIONS))}")
            )
        return v

    @field_validator("environment", mode="before")
    @classmethod
    def _environment(cls, v: Any) -> Any:
        if not isinstance(v, str) or not check_dns_label(v, 20):
            raise SpecIssue(
                "is not an environment name; use a lowercase DNS label of at most 20 characters, e.g. staging"
            )
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and not check_dns_label(v, 20):
            raise SpecIssue(
                "is not a name prefix; use a lowercase DNS label of at most 20 characters, or leave it empty"
            )
        return v

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[str, str] = {}
        for key, value in v.items():
            if key in BASE_LABEL_KEYS:
                raise SpecIssue(
                    f"is set by agentstage itself; do not set {', '.join(BASE_LABEL_KEYS)}",
                    path=(key,),
                    value=key,
                    has_value=True,
                )
            if not check_label_key(str(key)):
                raise SpecIssue(
                    "is not a label key; use up to 63 lowercase letters, digits, '_' or '-', starting with a letter",
                    path=(key,),
                    value=key,
                    has_value=True,
                )
            value = str(value).lower() if isinstance(value, bool) else str(value)
            if not check_label_value(value):
                raise SpecIssue(
                    "is not a label value; use up to 63 lowercase letters, digits, '_' or '-'",
                    path=(key,),
                    value=value,
                    has_value=True,
                )
            out[key] = value
        room = MAX_LABELS - len(BASE_LABEL_KEYS)
        if len(out) > room:
            raise SpecIssue(
                f"are too many: Google Cloud allows {MAX_LABELS} labels per resource and agentstage sets "
                f"{len(BASE_LABEL_KEYS)} ({', '.join(BASE_LABEL_KEYS)}): keep at most {room}",
                value=f"<{len(out)} labels>",
                has_value=True,
            )
        return out

    @field_validator("agents")
    @classmethod
    def _agents(cls, v: dict[str, AgentSpec]) -> dict[str, AgentSpec]:
        if not v:
            raise SpecIssue("has no agents; define at least one agent under it (agents.<name>)")
        return v

    @model_validator(mode="after")
    def _names(self) -> PlatformSpec:
        for agent, spec in self.agents.items():
            if not check_dns_label(agent, SERVICE_NAME_MAX):
                raise SpecIssue(
                    f"is not an agent name; use a lowercase DNS label of at most {SERVICE_NAME_MAX} characters "
                    "(letters, digits, '-'), starting with a letter",
                    path=("agents", agent),
                    value=agent,
                    has_value=True,
                )
            service = self.service_name(agent)
            if len(service) > SERVICE_NAME_MAX:
                raise SpecIssue(
                    f"gives the Cloud Run service name {service!r} of {len(service)} characters; "
                    f"the limit is {SERVICE_NAME_MAX}: shorten the agent name or the prefix",
                    path=("agents", agent),
                    value=agent,
                    has_value=True,
                )
            if spec.stable is None or spec.runtime != "cloud-run":
                continue
            if len(CANARY_TAG) + len(service) > TAG_AND_SERVICE_MAX:
                raise SpecIssue(
                    f"has a canary (stable is set), and the canary traffic tag {CANARY_TAG!r} with the service name "
                    f"{service!r} makes {len(CANARY_TAG) + len(service)} characters; Cloud Run allows "
                    f"{TAG_AND_SERVICE_MAX}: shorten the agent name or the prefix",
                    path=("agents", agent),
                    value=agent,
                    has_value=True,
                )
            revision = self.stable_revision(agent)
            field = "stable_revision" if spec.stable_revision is not None else "stable"
            if not (revision.startswith(f"{service}-") and check_dns_label(revision, REVISION_NAME_MAX)):
                raise SpecIssue(
                    f"does not name a revision of service {service!r}: Cloud Run revision names are "
                    f"<service>-<suffix>, a lowercase DNS label of at most {REVISION_NAME_MAX} characters"
                    + (
                        ""
                        if spec.stable_revision is not None
                        else f" (the stable version gives {revision!r}): "
                        "shorten the version or set stable_revision to the deployed revision's name"
                    ),
                    path=("agents", agent, field) + (() if spec.stable_revision is not None else ("version",)),
                    value=spec.stable_revision if spec.stable_revision is not None else spec.stable.version,
                    has_value=True,
                )
        return self

    @model_validator(mode="after")
    def _gated_agents(self) -> PlatformSpec:
        for field in ("agents", "monthly_requests", "peak_requests_per_second"):
            for agent in getattr(self.gates, field):
                if agent not in self.agents:
                    raise SpecIssue(
                        f"is not an agent of this stack (agents: {', '.join(sorted(self.agents))}); a gate for "
                        "an agent that is not here gates nothing: fix the name or remove it",
                        path=("gates", field, agent),
                        value=agent,
                        has_value=True,
                    )
        return self

    @model_validator(mode="after")
    def _gateway_names(self) -> PlatformSpec:
        for agent, spec in self.agents.items():
            check_gateway_names(agent, spec, self.service_name(agent))
        return self

    @model_validator(mode="after")
    def _a2a_calls(self) -> PlatformSpec:
        check_calls(self)
        check_call_paths(self)
        return self

    @model_validator(mode="after")
    def _spend_caps(self) -> PlatformSpec:
        check_platform_spend_caps(self)
        return self

    @model_validator(mode="after")
    def _operations(self) -> PlatformSpec:
        if (
            self.guardrails.model_armor
            and self.guardrails.location is None
            and self.region not in MODEL_ARMOR_LOCATIONS
        ):
            raise SpecIssue(
                f"is not set, and gcp:region {self.region} has no Model Armor; set it to a Model Armor location "
                f"near the agents ({', '.join(MODEL_ARMOR_LOCATIONS)}), or turn guardrails.model_armor off",
                path=("guardrails", "location"),
                value=None,
                has_value=True,
            )
        if self.is_production and self.budget.billing_account is None:
            raise SpecIssue(
                "is not set; production requires a billing budget: set it to the billing account id "
                "that pays for the project (e.g. 012345-6789AB-CDEF01), with budget.monthly_amount",
                path=("budget", "billing_account"),
                value=None,
                has_value=True,
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.environment == PRODUCTION

    def stable_revision(self, agent: str) -> str | None:
        """The revision that serves ``agent``'s stable release: the recorded
        ``stable_revision``, else the name agentstage 0.1 gave it; None without a stable."""
        return self.agents[agent].stable_revision_name(self.service_name(agent))

    def service_name(self, agent: str) -> str:
        """Physical Cloud Run service name of ``agent``: ``[<prefix>-]<agent>``."""
        return f"{self.prefix}-{agent}" if self.prefix else agent
