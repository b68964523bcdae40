"""VertexEndpointAgent: one agent as a model on a Vertex AI endpoint, canary as the split.

The endpoint is ``gcp.vertex.AiEndpoint`` (pulumi-gcp 10.2.0 ``vertex/ai_endpoint.py``):
private through Private Service Connect (``private_service_connect_config``) or a peered
``network`` when configured, CMEK (``encryption_spec.kms_key_name``) when configured, the
agent's labels. Its numeric id is derived from the project, region and display name ("The
name must be numeric with no leading zeros and can be at most 10 digits"), so its resource
name is known at plan time.

The models on it are one :class:`components.vertex_deployment.VertexModelDeployment`: the
release's model version and, during a canary, the stable's, each a deployed model whose id
:func:`~components.vertex_deployment.deployed_model_id` derives; the canary is the endpoint's
traffic split, keyed by those ids (Vertex AI ``Endpoint.traffic_split``: "A map from a
DeployedModel's ID to the percentage of this Endpoint's traffic that should be forwarded to
that DeployedModel"; https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints):

- no stable (first deploy, or promoted): ``{release: 100}``;
- stable + canary_percent p in 1..99: ``{stable: 100-p, release: p}``;
- p = 100: ``{stable: 0, release: 100}`` (stable stays deployed until it is removed);
- p = 0 (rolled back): ``{stable: 100}``, the release undeployed (no idle replicas billed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi_gcp import vertex

from components.contract import COMPONENT_TYPES
from components.endpoint_spec import VertexEndpointSpec
from components.errors import ComponentError
from components.identity import AgentIdentity
from components.known import known_after
from components.revision import version_slug
from components.spec import AgentSpec
from components.vertex_deployment import VertexDeploymentProvider, VertexModelDeployment, deployed_model_id

__all__ = ["VertexEndpointAgent", "QUERY_ROLE", "endpoint_id", "endpoint_traffic", "deployed_model"]

#: Lets a member call the endpoint (predict); granted on the endpoint only.
QUERY_ROLE = "roles/aiplatform.user"


def endpoint_id(project: str, region: str, display_name: str) -> str:
    """A 10-digit endpoint id, no leading zero, from the project, region and display name."""
    digest = hashlib.sha256(f"{project}/{region}/{display_name}".encode()).hexdigest()
    return str(10**9 + int(digest, 16) % (9 * 10**9))


def deployed_model(
    vspec: VertexEndpointSpec, version: str, *, display_name: str, service_account: str
) -> dict[str, Any]:
    """The deployment of release ``version`` (the provider's ``models`` entry)."""
    model: dict[str, Any] = {
        "model": vspec.model_version(version),
        "display_name": display_name,
        "machine_type": vspec.machine_type,
        "min_replica_count": vspec.min_replicas,
        "max_replica_count": vspec.max_replicas,
        "service_account": service_account,
    }
    if vspec.accelerator_type:
        model["accelerator_type"] = vspec.accelerator_type
        model["accelerator_count"] = vspec.accelerator_count or 1
    return model


def endpoint_traffic(spec: AgentSpec, release_id: str, stable_id: str | None) -> dict[str, int]:
    """The endpoint's traffic split (deployed-model id -> percent) for ``spec``'s canary."""
    if spec.stable is None or stable_id is None:
        return {release_id: 100}
    p = spec.canary_percent
    if p == 0:
        return {stable_id: 100}
    return {stable_id: 100 - p, release_id: p}


class VertexEndpointAgent(pulumi.ComponentResource):
    """A Vertex AI endpoint serving ``spec.release``'s model version (and ``spec.stable``'s
    during a canary) as the agent's identity; invokers get ``roles/aiplatform.user`` on the
    endpoint.

    Outputs: ``url`` (the predict URL; resolves after the deployment, the invoker grants and
    the identity's grants), ``service_name`` (the endpoint's display name), ``endpoint_name``
    (its resource name), ``release_revision`` / ``stable_revision`` (the deployed-model ids),
    ``service_account_email``, ``live_traffic`` (``[{revision, percent, tag}]`` from the split
    the endpoint serves). Plain attributes: ``traffic_split`` (the planned split)."""

    url: pulumi.Output[str]
    service_name: pulumi.Output[str]
    endpoint_name: pulumi.Output[str]
    release_revision: pulumi.Output[str]
    stable_revision: pulumi.Output[str | None]
    service_account_email: pulumi.Output[str]
    live_traffic: pulumi.Output[list[dict[str, Any]]]

    def __init__(
        self,
        name: str,
        *,
        spec: AgentSpec,
        display_name: str,
        project: str,
        region: str,
        identity: AgentIdentity,
        labels: Mapping[str, str],
        provider: VertexDeploymentProvider | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["VertexEndpointAgent"], name, None, opts)
        vspec = spec.vertex_endpoint
        if vspec is None:
            raise ComponentError("VertexEndpointAgent", name, "spec.vertex_endpoint is not set")
        for what, location in (
            ("vertex_endpoint.model", vspec.model_location),
            ("vertex_endpoint.kms_key", vspec.kms_location),
        ):
            if location is not None and location != region:
                raise ComponentError(
                    "VertexEndpointAgent",
                    name,
                    f"{what} is in {location}, not in the endpoint's region {region}: Vertex AI deploys models and "
                    "uses keys of the endpoint's region only",
                )
        child = pulumi.ResourceOptions(parent=self)
        ident = endpoint_id(project, region, display_name)
        resource_name = f"projects/{project}/locations/{region}/endpoints/{ident}"
        args: dict[str, Any] = {}
        if vspec.private_service_connect:
            args["private_service_connect_config"] = vertex.AiEndpointPrivateServiceConnectConfigArgs(
                enable_private_service_connect=True, project_allowlists=[project]
            )
        if vspec.network is not None:
            args["network"] = vspec.network
        if vspec.kms_key is not None:
            args["encryption_spec"] = vertex.AiEndpointEncryptionSpecArgs(kms_key_name=vspec.kms_key)
        self.endpoint = vertex.AiEndpoint(
            f"{name}-endpoint",
            name=ident,
            display_name=display_name,
            description=f"{name} agent. Managed by agentstage.",
            project=project,
            location=region,
            region=region,
            labels=dict(labels),
            opts=child,
            **args,
        )
        self.endpoint_resource_name = resource_name

        models: dict[str, dict[str, Any]] = {}
        sa = identity.email_address
        release_model = deployed_model(
            vspec,
            spec.release.version,
            display_name=f"{display_name}-{version_slug(spec.release.version)}",
            service_account=sa,
        )
        self.release_id = deployed_model_id(resource_name, release_model)
        self.stable_id: str | None = None
        if spec.stable is not None:
            stable_model = deployed_model(
                vspec,
                spec.stable.version,
                display_name=f"{display_name}-{version_slug(spec.stable.version)}",
                service_account=sa,
            )
            self.stable_id = deployed_model_id(resource_name, stable_model)
            models[self.stable_id] = stable_model
        self.traffic_split = endpoint_traffic(spec, self.release_id, self.stable_id)
        if self.release_id in self.traffic_split:
            models[self.release_id] = release_model
        # the deployed models run as the identity: its email is passed as an output of the account
        wired = {i: {**m, "service_account": identity.email} for i, m in models.items()}
        self.deployment = VertexModelDeployment(
            f"{name}-deployment",
            endpoint=known_after(self.endpoint, resource_name),
            models=wired,
            traffic_split=self.traffic_split,
            provider=provider,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*identity.grants, *depends_on]),
        )
        self.invokers: dict[str, vertex.AiEndpointIamMember] = {}
        for member in spec.invokers:
            key = member.replace(":", "-").replace("@", "-at-").replace(".", "-").lower()
            self.invokers[member] = vertex.AiEndpointIamMember(
                f"{name}-invoker-{key}",
                project=project,
                location=region,
                endpoint=self.endpoint.name,
                role=QUERY_ROLE,
                member=member,
                opts=child,
            )

        predict = f"https://{region}-aiplatform.googleapis.com/v1/{resource_name}:predict"
        ready: list[Any] = [self.deployment.urn]
        ready += [m.id for m in self.invokers.values()]
        ready += [g.id for g in identity.grants]
        self.url = pulumi.Output.all(*ready).apply(lambda _: predict)
        self.service_name = pulumi.Output.from_input(display_name)
        self.endpoint_name = known_after(self.endpoint, resource_name)
        self.release_revision = pulumi.Output.from_input(self.release_id)
        self.stable_revision = pulumi.Output.from_input(self.stable_id)
        self.service_account_email = identity.email
        self.live_traffic = self.deployment.live_traffic_split.apply(_live)
        self.register_outputs(
            {
                "url": self.url,
                "service_name": self.service_name,
                "endpoint_name": self.endpoint_name,
                "release_revision": self.release_revision,
                "stable_revision": self.stable_revision,
                "service_account_email": self.service_account_email,
                "live_traffic": self.live_traffic,
            }
        )


def _live(split: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [{"revision": k, "percent": int(v), "tag": None} for k, v in sorted((split or {}).items())]
