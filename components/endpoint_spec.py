"""VertexEndpointSpec: the settings of an agent served as a model on a Vertex AI endpoint.

``agents.<name>.vertex_endpoint`` of the stack config, required with ``runtime: vertex-endpoint``
and refused with any other runtime. Google's limits, with their sources:

- ``min_replicas``: ``DedicatedResources.min_replica_count`` "must be greater than or equal
  to 1" (Vertex AI API reference, ``DedicatedResources``,
  https://cloud.google.com/vertex-ai/docs/reference/rest/v1/DedicatedResources);
  ``max_replicas`` >= ``min_replicas``;
- ``accelerator_type``: the ``AcceleratorType`` enum of ``google.cloud.aiplatform.v1``
  (``MachineSpec.accelerator_type``; google-cloud-aiplatform ``aiplatform_v1/types/accelerator_type.py``);
  ``accelerator_count`` only with a type;
- ``network`` and ``private_service_connect``: "Only one of the fields, network or
  enable_private_service_connect, can be set" (pulumi-gcp 10.2.0 ``vertex/ai_endpoint.py``,
  ``AiEndpointArgs.network``), network as ``projects/<project number>/global/networks/<name>``;
- ``kms_key``: ``encryption_spec.kms_key_name``, "projects/my-project/locations/my-region/
  keyRings/my-kr/cryptoKeys/my-key. The key needs to be in the same region as where the compute
  resource is created" (``AiEndpointEncryptionSpecArgs``; the region is checked by
  ``VertexEndpointAgent``, which knows it);
- model versions: a Model Registry model is ``projects/<p>/locations/<l>/models/<id>`` and a
  version ``<model>@<version id>`` (https://cloud.google.com/vertex-ai/docs/model-registry/versioning).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from components.specbase import SpecIssue, StrictModel, refuse_cloud_run_keys, refuse_section_of_other_runtime

__all__ = [
    "VertexEndpointSpec",
    "check_vertex_settings",
    "VERTEX_ENDPOINT",
    "ACCELERATOR_TYPES",
    "VERTEX_CLOUD_RUN_ONLY",
    "check_release_image",
]

VERTEX_ENDPOINT = "vertex-endpoint"
#: ``google.cloud.aiplatform.v1.AcceleratorType`` (google-cloud-aiplatform 2.7.0), without
#: ACCELERATOR_TYPE_UNSPECIFIED.
ACCELERATOR_TYPES = (
    "NVIDIA_TESLA_K80",
    "NVIDIA_TESLA_P100",
    "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P4",
    "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB",
    "NVIDIA_L4",
    "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB",
    "NVIDIA_B200",
    "NVIDIA_GB200",
    "NVIDIA_RTX_PRO_6000",
    "TPU_V2",
    "TPU_V3",
    "TPU_V4_POD",
    "TPU_V5_LITEPOD",
)
ACCELERATOR_COUNTS = (1, 2, 4, 8, 16)
_MODEL = re.compile(
    r"^projects/[a-z0-9][-a-z0-9.:]*[a-z0-9]/locations/(?P<location>[a-z0-9-]+)/models/[A-Za-z0-9_-]{1,128}$"
)
_MODEL_VERSION = re.compile(r"^[1-9][0-9]{0,9}$")
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9]+(-[a-z0-9]+)*$")
_NETWORK = re.compile(r"^projects/[0-9]+/global/networks/[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_KMS_KEY = re.compile(
    r"^projects/[a-z][-a-z0-9.:]{4,61}[a-z0-9]/locations/(?P<location>[a-z0-9-]+)/keyRings/[A-Za-z0-9_-]{1,63}"
    r"/cryptoKeys/[A-Za-z0-9_-]{1,63}$"
)


class VertexEndpointSpec(StrictModel):
    """One agent as a model deployed to a Vertex AI endpoint (``runtime: vertex-endpoint``)."""

    model: str = Field(
        description="Model Registry model the endpoint serves: projects/<p>/locations/<region>/models/<id>. Required."
    )
    versions: dict[str, str] = Field(
        description="Release version -> model version id in the registry (e.g. {1.4.0: '3'}): the model version "
        "each release deploys; release (and stable, when set) must be listed. Required."
    )
    machine_type: str = Field(
        default="n1-standard-4", description="Machine type of each replica, e.g. g2-standard-8. Default: n1-standard-4."
    )
    accelerator_type: str | None = Field(
        default=None, description="Accelerator of each replica, e.g. NVIDIA_L4. Default: none."
    )
    accelerator_count: int | None = Field(
        default=None, description="Accelerators per replica: 1, 2, 4, 8 or 16; with accelerator_type only. Default: 1."
    )
    min_replicas: int = Field(default=1, description="Replicas always running, >= 1 (Vertex AI's minimum). Default: 1.")
    max_replicas: int = Field(default=2, description="Most replicas, >= min_replicas. Default: 2.")
    private_service_connect: bool = Field(
        default=False,
        description="Expose the endpoint through Private Service Connect only (no public endpoint). Default: false; "
        "production requires it or network.",
    )
    network: str | None = Field(
        default=None,
        description="VPC network the endpoint peers with (a private endpoint): projects/<project number>/global/"
        "networks/<name>; not with private_service_connect. Default: none.",
    )
    kms_key: str | None = Field(
        default=None,
        description="Cloud KMS key (CMEK) of the endpoint: projects/<p>/locations/<region>/keyRings/<r>/cryptoKeys/<k>, "
        "in the stack's region. Default: none (Google-managed encryption).",
    )

    @model_validator(mode="before")
    @classmethod
    def _what_it_serves(cls, data: Any) -> Any:
        """The model and its versions are what an endpoint release runs (there is no image to
        fall back on): say so rather than only that a key is missing."""
        if isinstance(data, dict):
            for key, example in (
                ("model", "projects/<p>/locations/<region>/models/<id>"),
                ("versions", "{1.0.0: '1'}"),
            ):
                if key not in data:
                    raise SpecIssue(
                        f"is not set; runtime vertex-endpoint serves the Model Registry model version each release "
                        f"names, not release.image: set vertex_endpoint.{key}, e.g. {example}",
                        path=(key,),
                        value=None,
                        has_value=True,
                    )
        return data

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        if not _MODEL.match(v):
            raise SpecIssue(
                "is not a Model Registry model; use projects/<project>/locations/<region>/models/<id> "
                "(the version is set per release in versions)"
            )
        return v

    @field_validator("versions")
    @classmethod
    def _versions(cls, v: dict[str, str]) -> dict[str, str]:
        for release, version in v.items():
            if not _MODEL_VERSION.match(version):
                raise SpecIssue(
                    "is not a model version id; Model Registry version ids are numbers from 1 (quote them: '3')",
                    path=(release,),
                    value=version,
                    has_value=True,
                )
        return v

    @field_validator("machine_type")
    @classmethod
    def _machine_type(cls, v: str) -> str:
        if not _MACHINE_TYPE.match(v):
            raise SpecIssue("is not a Compute Engine machine type; use a name such as n1-standard-4 or g2-standard-8")
        return v

    @field_validator("accelerator_type")
    @classmethod
    def _accelerator_type(cls, v: str | None) -> str | None:
        if v is not None and v not in ACCELERATOR_TYPES:
            raise SpecIssue(f"is not a Vertex AI accelerator type; allowed: {', '.join(ACCELERATOR_TYPES)}")
        return v

    @field_validator("accelerator_count")
    @classmethod
    def _accelerator_count(cls, v: int | None) -> int | None:
        if v is not None and v not in ACCELERATOR_COUNTS:
            raise SpecIssue(f"is not an accelerator count; allowed: {', '.join(map(str, ACCELERATOR_COUNTS))}")
        return v

    @field_validator("min_replicas")
    @classmethod
    def _min(cls, v: int) -> int:
        if v < 1:
            raise SpecIssue(
                "is below 1; Vertex AI keeps at least 1 replica of a deployed model (min_replica_count >= 1)"
            )
        return v

    @field_validator("max_replicas")
    @classmethod
    def _max(cls, v: int, info: Any) -> int:
        low = info.data.get("min_replicas")
        if low is not None and v < low:
            raise SpecIssue(f"is below min_replicas ({low}); max_replicas must be >= min_replicas")
        return v

    @field_validator("network")
    @classmethod
    def _network(cls, v: str | None) -> str | None:
        if v is not None and not _NETWORK.match(v):
            raise SpecIssue("is not a VPC network name; use projects/<project number>/global/networks/<name>")
        return v

    @field_validator("kms_key")
    @classmethod
    def _kms_key(cls, v: str | None) -> str | None:
        if v is not None and not _KMS_KEY.match(v):
            raise SpecIssue(
                "is not a Cloud KMS key name; use projects/<project>/locations/<region>/keyRings/<ring>/cryptoKeys/<key>"
            )
        return v

    @model_validator(mode="after")
    def _combinations(self) -> VertexEndpointSpec:
        if self.accelerator_count is not None and self.accelerator_type is None:
            raise SpecIssue(
                "is set but accelerator_type is not; set accelerator_type, or remove accelerator_count",
                path=("accelerator_count",),
                value=self.accelerator_count,
                has_value=True,
            )
        if self.network is not None and self.private_service_connect:
            raise SpecIssue(
                "is set with private_service_connect: true; Vertex AI allows one of network (VPC peering) or "
                "Private Service Connect: remove one",
                path=("network",),
                value=self.network,
                has_value=True,
            )
        return self

    @property
    def private(self) -> bool:
        """The endpoint has no public address: PSC or a peered network."""
        return self.private_service_connect or self.network is not None

    @property
    def model_location(self) -> str:
        m = _MODEL.match(self.model)
        return m.group("location") if m else ""

    @property
    def kms_location(self) -> str | None:
        m = _KMS_KEY.match(self.kms_key or "")
        return m.group("location") if m else None

    def model_version(self, release: str) -> str:
        """``<model>@<version id>`` of ``release`` (a release version listed in ``versions``)."""
        return f"{self.model}@{self.versions[release]}"


#: AgentSpec keys that only Cloud Run reads, and what to use on vertex-endpoint instead.
VERTEX_CLOUD_RUN_ONLY: dict[str, str] = {
    "ingress": "set vertex_endpoint.private_service_connect or vertex_endpoint.network instead",
    "scaling": "set vertex_endpoint.min_replicas and max_replicas instead",
    "resources": "set vertex_endpoint.machine_type and the accelerator instead",
    "probes": "the model's serving container declares its health route in the Model Registry",
    "health_path": "the model's serving container declares its health route in the Model Registry",
    "port": "the model's serving container declares its port in the Model Registry",
    "stable_revision": "the stable model version is vertex_endpoint.versions[stable.version]",
    "env": "the model's serving container declares its env in the Model Registry",
    "secrets": "the model's serving container declares its env in the Model Registry",
    "features": "the model's serving container declares its env in the Model Registry",
}


def check_vertex_settings(spec: Any) -> None:
    """Refuse what does not apply to ``spec.runtime`` (``spec`` is an ``AgentSpec``): the
    ``vertex_endpoint`` section off vertex-endpoint; on vertex-endpoint a missing section,
    Cloud Run-only keys set to a non-default value, and a release or stable without a model
    version."""
    vertex: VertexEndpointSpec | None = spec.vertex_endpoint
    if spec.runtime != VERTEX_ENDPOINT:
        refuse_section_of_other_runtime(spec, "vertex_endpoint", VERTEX_ENDPOINT)
        return
    if vertex is None:
        raise SpecIssue(
            "is not set; runtime vertex-endpoint needs the model to serve: set vertex_endpoint.model and "
            "vertex_endpoint.versions",
            path=("vertex_endpoint",),
            value=None,
            has_value=True,
        )
    refuse_cloud_run_keys(spec, VERTEX_CLOUD_RUN_ONLY, "vertex-endpoint")
    for which, release in (("release", spec.release), ("stable", spec.stable)):
        if release is not None and release.version not in vertex.versions:
            raise SpecIssue(
                f"has no model version for the {which} release {release.version!r}; add "
                f"{release.version}: <model version id> to vertex_endpoint.versions",
                path=("vertex_endpoint", "versions"),
                value=sorted(vertex.versions),
                has_value=True,
            )


def check_release_image(spec: Any) -> None:
    """Require the container image of the release (and of the stable) on every runtime that runs
    it: Cloud Run, Agent Engine and GKE start ``release.image``. A Vertex AI endpoint serves a
    Model Registry model, whose serving container the registry records with the model version
    (``Model.container_spec``, https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models),
    so there the image may be left out: the release is ``vertex_endpoint.versions[release.version]``."""
    if spec.runtime == VERTEX_ENDPOINT:
        return
    for which, release, what in (("release", spec.release, "release"), ("stable", spec.stable, "stable release")):
        if release is not None and release.image is None:
            raise SpecIssue(
                f"is not set; runtime {spec.runtime} runs the container image of the {what}: set it to "
                "<repo>/<image>@sha256:<64 hex> (only runtime vertex-endpoint, which serves a Model Registry "
                "model, does without)",
                path=(which, "image"),
                value=None,
                has_value=True,
            )
