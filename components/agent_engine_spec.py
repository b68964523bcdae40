"""AgentEngineSpec: the settings of an agent that runs on Vertex AI Agent Engine.

``agents.<name>.agent_engine`` of the stack config, read only with ``runtime: agent-engine``.
The limits are the ones the provider documents for ``gcp.vertex.AiReasoningEngine``
(pulumi-gcp 10.2.0, ``pulumi_gcp/vertex/_inputs.py``, ``AiReasoningEngineSpecDeploymentSpecArgs``
and ``AiReasoningEngineEncryptionSpecArgs``), which follow the ReasoningEngine REST resource:

- ``min_instances``: "Defaults to 1. Range: [0, 10]";
- ``max_instances``: "Defaults to 100. Range: [1, 1000]" (agentstage defaults to 10);
- ``container_concurrency``: "Recommended value: 2 * cpu + 1. Defaults to 9";
- ``resource_limits``: "The only supported values for CPU are '1', '2', '4', '6' and '8'"; "The only
  supported values for memory are '1Gi', '2Gi', ... '32 Gi'", and the Cloud Run CPU/memory
  combinations the provider points to (https://cloud.google.com/run/docs/configuring/memory-limits,
  https://cloud.google.com/run/docs/configuring/cpu): more than 4Gi needs 2 CPU, more than 8Gi 4,
  more than 16Gi 6, more than 24Gi 8; 4 CPU need at least 2Gi, 6 and 8 CPU at least 4Gi;
- ``encryption_spec.kms_key_name``: "projects/my-project/locations/my-region/keyRings/my-kr/cryptoKeys/my-key.
  The key needs to be in the same region as where the compute resource is created" (the region
  is checked by ``AgentEngineAgent``, which knows it).

Revisions (https://docs.cloud.google.com/gemini-enterprise-agent-platform/scale/runtime/manage-revisions-and-traffic):
"When you create an agent or update its versioned fields, an immutable revision of the agent is
created" (the deployment spec's env, secret env, instances, resource limits and concurrency are
versioned). Revision ids are assigned by Google, so unlike a Cloud Run revision the stable
release's revision cannot be named from its version: ``stable_revision`` is the id recorded from
the deployed engine's runtime revisions when the release became stable.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from components.specbase import SpecIssue, StrictModel, refuse_cloud_run_keys

__all__ = ["AgentEngineSpec", "check_runtime_settings", "CLOUD_RUN_ONLY", "AGENT_ENGINE"]

AGENT_ENGINE = "agent-engine"
CPU_VALUES = ("1", "2", "4", "6", "8")
MIN_INSTANCES_MAX = 10
MAX_INSTANCES_MAX = 1000
_MEMORY = re.compile(r"^([1-9][0-9]?)Gi$")
#: Minimum CPUs above each memory size (GiB), and minimum memory (GiB) for a CPU count (Cloud Run limits).
_CPU_FOR_MEMORY = ((24, 8), (16, 6), (8, 4), (4, 2))
_MEMORY_FOR_CPU = {4: 2, 6: 4, 8: 4}
_KMS_KEY = re.compile(
    r"^projects/[a-z][-a-z0-9.:]{4,61}[a-z0-9]/locations/(?P<location>[a-z0-9-]+)/keyRings/[A-Za-z0-9_-]{1,63}"
    r"/cryptoKeys/[A-Za-z0-9_-]{1,63}$"
)
_REVISION_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_KEYWORDS = ("LATEST", "PREVIOUS")


class AgentEngineSpec(StrictModel):
    """Deployment of one agent on Vertex AI Agent Engine (``runtime: agent-engine``)."""

    min_instances: int = Field(
        default=1, description="Instances kept running at all times, 0..10 (Agent Engine's range). Default: 1."
    )
    max_instances: int = Field(
        default=10,
        description="Most instances, 1..1000 and >= min_instances (Agent Engine's range). Default: 10.",
    )
    container_concurrency: int = Field(
        default=9,
        description="Concurrent requests per container, >= 1; Google recommends 2 x cpu + 1. Default: 9.",
    )
    cpu: str = Field(default="4", description='CPU per instance: "1", "2", "4", "6" or "8". Default: "4".')
    memory: str = Field(default="4Gi", description="Memory per instance, 1Gi..32Gi in whole Gi. Default: 4Gi.")
    kms_key: str | None = Field(
        default=None,
        description="Cloud KMS key (CMEK) that encrypts the engine: projects/<p>/locations/<region>/keyRings/<r>/"
        "cryptoKeys/<k>, in the stack's region. Default: none (Google-managed encryption).",
    )
    memory_bank: bool = Field(
        default=False,
        description="Turn on the engine's Memory Bank; release.memory_schema, when set, names its structured "
        "memory schema. Default: false.",
    )
    stable_revision: str | None = Field(
        default=None,
        description="Id of the runtime revision that serves `stable`, as Google assigned it (the last segment "
        "of its resource name): recorded by the release flow from the deployed engine. Required when stable "
        "is set. Default: none.",
    )

    @field_validator("min_instances")
    @classmethod
    def _min(cls, v: int) -> int:
        if not 0 <= v <= MIN_INSTANCES_MAX:
            raise SpecIssue(f"is out of Agent Engine's range; allowed: 0..{MIN_INSTANCES_MAX}")
        return v

    @field_validator("max_instances")
    @classmethod
    def _max(cls, v: int, info: Any) -> int:
        if not 1 <= v <= MAX_INSTANCES_MAX:
            raise SpecIssue(f"is out of Agent Engine's range; allowed: 1..{MAX_INSTANCES_MAX}")
        low = info.data.get("min_instances")
        if low is not None and v < low:
            raise SpecIssue(f"is below min_instances ({low}); max_instances must be >= min_instances")
        return v

    @field_validator("container_concurrency")
    @classmethod
    def _concurrency(cls, v: int) -> int:
        if v < 1:
            raise SpecIssue("is not a positive number of requests; Google recommends 2 x cpu + 1")
        return v

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if v not in CPU_VALUES:
            raise SpecIssue(f"is not an Agent Engine CPU limit; allowed: {', '.join(repr(c) for c in CPU_VALUES)}")
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str, info: Any) -> str:
        m = _MEMORY.match(v)
        if m is None or not 1 <= int(m.group(1)) <= 32:
            raise SpecIssue("is not an Agent Engine memory limit; allowed: 1Gi..32Gi in whole Gi, e.g. 4Gi")
        cpu = info.data.get("cpu")
        if cpu is None:
            return v
        gib, cpus = int(m.group(1)), int(cpu)
        for threshold, need in _CPU_FOR_MEMORY:
            if gib > threshold and cpus < need:
                raise SpecIssue(f'needs at least {need} CPU (cpu is "{cpu}"); raise cpu or lower memory')
        need_gib = _MEMORY_FOR_CPU.get(cpus)
        if need_gib and gib < need_gib:
            raise SpecIssue(f"is below the {need_gib}Gi required with {cpu} CPU; raise memory or lower cpu")
        return v

    @field_validator("kms_key")
    @classmethod
    def _kms_key(cls, v: str | None) -> str | None:
        if v is not None and not _KMS_KEY.match(v):
            raise SpecIssue(
                "is not a Cloud KMS key name; use projects/<project>/locations/<region>/keyRings/<ring>/cryptoKeys/<key>"
            )
        return v

    @field_validator("stable_revision")
    @classmethod
    def _stable_revision(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.upper() in _KEYWORDS:
            raise SpecIssue(
                "is a keyword that Agent Engine resolves when traffic is applied, not the stable revision; "
                "give the id of the revision that serves stable"
            )
        if not _REVISION_ID.match(v.rsplit("/", 1)[-1]) or ("/" in v and "/runtimeRevisions/" not in v):
            raise SpecIssue(
                "is not a runtime revision id; give the last segment of the revision's resource name "
                "(projects/.../reasoningEngines/<engine>/runtimeRevisions/<id>)"
            )
        return v.rsplit("/", 1)[-1]

    @property
    def kms_location(self) -> str | None:
        m = _KMS_KEY.match(self.kms_key or "")
        return m.group("location") if m else None


#: AgentSpec keys that only Cloud Run reads, and what to use on agent-engine instead.
CLOUD_RUN_ONLY: dict[str, str] = {
    "ingress": "Agent Engine is reached through the Vertex AI API and guarded by IAM (invokers)",
    "scaling": "set agent_engine.min_instances, max_instances and container_concurrency instead",
    "resources": "set agent_engine.cpu and agent_engine.memory instead",
    "probes": "Agent Engine checks its instances' health itself",
    "health_path": "Agent Engine checks its instances' health itself",
    "stable_revision": "record the stable runtime revision id in agent_engine.stable_revision instead",
}


def check_runtime_settings(spec: Any) -> None:
    """Refuse what does not apply to ``spec.runtime`` (``spec`` is an ``AgentSpec``): the
    ``agent_engine`` section off agent-engine, Cloud Run-only keys set to a non-default value
    on agent-engine, and a canary without the recorded stable revision id."""
    engine: AgentEngineSpec | None = spec.agent_engine
    if spec.runtime != AGENT_ENGINE:
        if engine is not None:
            first = next(iter(sorted(engine.model_fields_set)), None)
            raise SpecIssue(
                f"is set but runtime is {spec.runtime}; agent_engine configures runtime agent-engine only: "
                "remove it, or set runtime: agent-engine",
                path=("agent_engine",) + ((first,) if first else ()),
                value=getattr(engine, first) if first else {},
                has_value=True,
            )
        return
    refuse_cloud_run_keys(spec, CLOUD_RUN_ONLY, "agent-engine")
    recorded = engine.stable_revision if engine is not None else None
    if spec.stable is not None and recorded is None:
        raise SpecIssue(
            "is not set, and stable is: Agent Engine assigns revision ids itself, so the stable traffic target "
            "must be the id of the revision that serves stable, recorded from the deployed engine's runtime "
            "revisions (the release flow records it when a release becomes stable); set it, or remove stable",
            path=("agent_engine", "stable_revision"),
            value=None,
            has_value=True,
        )
    if spec.stable is None and recorded is not None:
        raise SpecIssue(
            "is set but stable is not; it names the revision of the stable release: remove it, or set stable",
            path=("agent_engine", "stable_revision"),
            value=recorded,
            has_value=True,
        )
