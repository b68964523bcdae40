"""AgentEngineAgent: one agent as a Vertex AI Agent Engine (``gcp.vertex.AiReasoningEngine``).

Sources (read 2026-11):

- pulumi-gcp 10.2.0, ``pulumi_gcp/vertex/ai_reasoning_engine.py`` and the ``AiReasoningEngine*Args``
  of ``pulumi_gcp/vertex/_inputs.py``: ``spec.container_spec.image_uri`` (+ ``port``),
  ``spec.service_account``, ``spec.deployment_spec`` (``envs``, ``secret_envs``, ``min_instances``,
  ``max_instances``, ``container_concurrency``, ``resource_limits``), ``encryption_spec.kms_key_name``,
  ``context_spec.memory_bank_config``, ``traffic_config`` (``traffic_split_always_latest`` or
  ``traffic_split_manual.targets[{runtime_revision_name, percent}]``, "The sum of percentages must
  equal to 100"; a target "Accepts revision IDs, short names (e.g. ``rev-1``), or keywords such as
  ``LATEST`` and ``PREVIOUS``", keywords "resolve at apply time to the concrete underlying revision ID
  and remain pinned until ``traffic_config`` is updated");
- "Manage revisions and traffic"
  (https://docs.cloud.google.com/gemini-enterprise-agent-platform/scale/runtime/manage-revisions-and-traffic):
  updating a versioned field (deployment spec env, secret env, instances, limits, concurrency...)
  creates an immutable revision; revisions and traffic splitting are in the v1beta1 API.

Canary design. Revision ids are assigned by Google, so the program cannot name the candidate's
revision before it exists (Cloud Run lets agentstage name it). The release is therefore always
the engine's *latest* revision: a new release changes ``AGENT_RELEASE`` (a versioned env var), so
each release creates one. The stable release is named by the id recorded from the observed
engine when it became stable (``agent_engine.stable_revision``):

- no stable (first deploy, or promoted): ``traffic_split_always_latest``;
- stable + canary_percent p (1..100): manual ``[{stable id, 100-p}, {LATEST, p}]`` (a 0% stable
  target is left out);
- p = 0 (rolled back): manual ``[{stable id, 100}]``.

Caveat (provider doc above): ``LATEST`` in a manual split is pinned to the revision it resolved to
when the split was applied; any later change of a versioned field creates a newer revision that
gets no traffic until ``traffic_config`` changes again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import vertex

from components.agent_engine_spec import AgentEngineSpec
from components.cloud_run import release_env
from components.contract import COMPONENT_TYPES
from components.errors import ComponentError
from components.flags import require_flags_env
from components.identity import AgentIdentity
from components.spec import AgentSpec, parse_secret_ref

__all__ = ["AgentEngineAgent", "LATEST", "QUERY_ROLE", "engine_traffic", "live_engine_traffic", "engine_spec"]

#: Lets a member query the engine (the role the provider's examples and Vertex AI's access
#: control grant for using Vertex AI resources); granted on the engine only, never project-wide.
QUERY_ROLE = "roles/aiplatform.user"
LATEST = "LATEST"
#: The Vertex AI Reasoning Engine service agent, which reads secret env values ("add 'Secret
#: Manager Secret Accessor' role ... to AI Platform Reasoning Engine service Agent", provider doc
#: of ``secret_envs``).
SERVICE_AGENT = "serviceAccount:service-{number}@gcp-sa-aiplatform-re.iam.gserviceaccount.com"


def engine_spec(spec: AgentSpec) -> AgentEngineSpec:
    """The agent's Agent Engine settings (the defaults when the section is absent)."""
    return spec.agent_engine if spec.agent_engine is not None else AgentEngineSpec()


def engine_traffic(spec: AgentSpec) -> dict[str, Any]:
    """The ``traffic_config`` of ``spec`` as plain data (snake_case, as the provider takes it)."""
    stable = engine_spec(spec).stable_revision
    if spec.stable is None or stable is None:
        return {"traffic_split_always_latest": {}}
    p = spec.canary_percent
    targets = []
    if p < 100:
        targets.append({"runtime_revision_name": stable, "percent": 100 - p})
    if p > 0:
        targets.append({"runtime_revision_name": LATEST, "percent": p})
    return {"traffic_split_manual": {"targets": targets}}


def live_engine_traffic(config: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The engine's ``traffic_config`` output as ``[{"revision", "percent", "tag"}]`` (the shape
    ``CloudRunAgent.live_traffic`` has): always-latest is ``LATEST`` at 100%."""
    config = config or {}
    manual = config.get("traffic_split_manual") or config.get("trafficSplitManual")
    if manual:
        return [
            {
                "revision": str(t.get("runtime_revision_name") or t.get("runtimeRevisionName") or ""),
                "percent": int(t.get("percent") or 0),
                "tag": None,
            }
            for t in manual.get("targets") or []
        ]
    return [{"revision": LATEST, "percent": 100, "tag": None}]


def _member_key(member: str) -> str:
    return member.replace(":", "-").replace("@", "-at-").replace(".", "-").lower()


class AgentEngineAgent(pulumi.ComponentResource):
    """A Vertex AI Agent Engine running ``spec.release``'s container image (by digest) as the
    agent's dedicated service account, with its env, secret env, scaling, CMEK, Memory Bank
    and canary traffic (see the module docstring); each invoker is granted ``QUERY_ROLE`` on
    the engine itself.

    Outputs: ``url`` (the engine's API URL, resolving only after the invoker grants and the
    identity's grants exist), ``service_name`` (the display name), ``engine_id`` (the resource
    id, ``projects/<p>/locations/<r>/reasoningEngines/<n>``), ``release_revision`` (``LATEST``:
    the id is Google's), ``stable_revision`` (the recorded id, None without a canary),
    ``service_account_email``, ``live_traffic`` (from the engine's ``traffic_config``).
    """

    url: pulumi.Output[str]
    service_name: pulumi.Output[str]
    engine_id: pulumi.Output[str]
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
        deletion_protection: bool = False,
        secret_env: bool = False,
        extra_env: Mapping[str, pulumi.Input[str]] | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["AgentEngineAgent"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        engine = engine_spec(spec)
        extra = dict(extra_env or {})
        clash = sorted(set(extra) & (set(spec.env) | set(spec.secrets)))
        if clash:
            raise ComponentError(
                "AgentEngineAgent", name, f"extra_env sets {clash[0]}, which the agent's env or secrets set too"
            )
        if engine.kms_key is not None and engine.kms_location != region:
            raise ComponentError(
                "AgentEngineAgent",
                name,
                f"agent_engine.kms_key is in {engine.kms_location}, but the engine runs in {region}; Agent Engine "
                "requires the key in the engine's region (pulumi-gcp AiReasoningEngineEncryptionSpec)",
            )

        require_flags_env("AgentEngineAgent", name, spec.features, extra)
        plain: dict[str, pulumi.Input[str]] = {**release_env(spec), **extra, **spec.env}
        envs = [
            vertex.AiReasoningEngineSpecDeploymentSpecEnvArgs(
                name=key,
                value=pulumi.Output.secret(plain[key]) if secret_env and key in spec.env else plain[key],
            )
            for key in sorted(plain)
        ]
        secret_envs = []
        for key, ref in sorted(spec.secrets.items()):
            secret, version = parse_secret_ref(ref)
            secret_envs.append(
                vertex.AiReasoningEngineSpecDeploymentSpecSecretEnvArgs(
                    name=key,
                    secret_ref=vertex.AiReasoningEngineSpecDeploymentSpecSecretEnvSecretRefArgs(
                        secret=secret, version=version
                    ),
                )
            )

        # The Reasoning Engine service agent reads the secret env values: it needs the accessor
        # role on each referenced secret (and on nothing else).
        self.secret_grants: list[pulumi.CustomResource] = []
        if spec.secrets:
            number = gcp.organizations.get_project_output(project_id=project).number
            agent_member = number.apply(lambda n: SERVICE_AGENT.format(number=n))
            for secret in sorted({parse_secret_ref(ref)[0] for ref in spec.secrets.values()}):
                self.secret_grants.append(
                    gcp.secretmanager.SecretIamMember(
                        f"{name}-engine-secret-{secret}",
                        project=project,
                        secret_id=secret,
                        role="roles/secretmanager.secretAccessor",
                        member=agent_member,
                        opts=child,
                    )
                )

        context_spec = None
        if engine.memory_bank:
            structured = None
            if spec.release.memory_schema:
                structured = [
                    vertex.AiReasoningEngineContextSpecMemoryBankConfigStructuredMemoryConfigArgs(
                        schema_configs=[
                            vertex.AiReasoningEngineContextSpecMemoryBankConfigStructuredMemoryConfigSchemaConfigArgs(
                                id=f"schema-{spec.release.memory_schema}"
                            )
                        ]
                    )
                ]
            context_spec = vertex.AiReasoningEngineContextSpecArgs(
                memory_bank_config=vertex.AiReasoningEngineContextSpecMemoryBankConfigArgs(
                    structured_memory_configs=structured
                )
            )

        traffic = engine_traffic(spec)
        if "traffic_split_manual" in traffic:
            traffic_args = vertex.AiReasoningEngineTrafficConfigArgs(
                traffic_split_manual=vertex.AiReasoningEngineTrafficConfigTrafficSplitManualArgs(
                    targets=[
                        vertex.AiReasoningEngineTrafficConfigTrafficSplitManualTargetArgs(**t)
                        for t in traffic["traffic_split_manual"]["targets"]
                    ]
                )
            )
        else:
            traffic_args = vertex.AiReasoningEngineTrafficConfigArgs(
                traffic_split_always_latest=vertex.AiReasoningEngineTrafficConfigTrafficSplitAlwaysLatestArgs()
            )

        self.engine = vertex.AiReasoningEngine(
            f"{name}-engine",
            display_name=display_name,
            description=f"{name} agent. Managed by agentstage.",
            project=project,
            region=region,
            labels=dict(labels),
            spec=vertex.AiReasoningEngineSpecArgs(
                service_account=identity.email,
                container_spec=vertex.AiReasoningEngineSpecContainerSpecArgs(
                    image_uri=spec.release.image, port=spec.port
                ),
                deployment_spec=vertex.AiReasoningEngineSpecDeploymentSpecArgs(
                    envs=envs,
                    secret_envs=secret_envs or None,
                    min_instances=engine.min_instances,
                    max_instances=engine.max_instances,
                    container_concurrency=engine.container_concurrency,
                    resource_limits={"cpu": engine.cpu, "memory": engine.memory},
                ),
            ),
            encryption_spec=(
                vertex.AiReasoningEngineEncryptionSpecArgs(kms_key_name=engine.kms_key) if engine.kms_key else None
            ),
            context_spec=context_spec,
            traffic_config=traffic_args,
            deletion_policy="PREVENT" if deletion_protection else None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*identity.grants, *self.secret_grants, *depends_on]),
        )
        self.invokers: dict[str, vertex.AiReasoningEngineIamMember] = {}
        for member in spec.invokers:
            self.invokers[member] = vertex.AiReasoningEngineIamMember(
                f"{name}-user-{_member_key(member)}",
                project=project,
                region=region,
                reasoning_engine=self.engine.name,
                role=QUERY_ROLE,
                member=member,
                opts=child,
            )

        ready: list[pulumi.Input[Any]] = [self.engine.url]
        ready += [m.id for m in self.invokers.values()]
        ready += [g.id for g in identity.grants]
        self.url = pulumi.Output.all(*ready).apply(lambda values: values[0])
        self.service_name = pulumi.Output.from_input(display_name)
        self.engine_id = self.engine.id
        self.release_revision = pulumi.Output.from_input(LATEST)
        self.stable_revision = pulumi.Output.from_input(engine.stable_revision if spec.stable else None)
        self.service_account_email = identity.email
        self.live_traffic = self.engine.traffic_config.apply(lambda config: live_engine_traffic(_plain(config)))
        self.register_outputs(
            {
                "url": self.url,
                "service_name": self.service_name,
                "engine_id": self.engine_id,
                "release_revision": self.release_revision,
                "stable_revision": self.stable_revision,
                "service_account_email": self.service_account_email,
                "live_traffic": self.live_traffic,
            }
        )


def _plain(value: Any) -> Any:
    """A provider output object (``AiReasoningEngineTrafficConfig``) or dict as plain data."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dict__"):
        return {k.lstrip("_"): _plain(v) for k, v in vars(value).items()}
    return value
