"""CloudRunAgent: one agent as a Cloud Run service, with canary traffic per its release."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp import cloudrunv2 as run

from components.identity import AgentIdentity
from components.spec import AgentSpec, feature_env, parse_secret_ref, revision_name
from components.traffic import traffic_targets

__all__ = ["CloudRunAgent", "release_env"]

INVOKER = "roles/run.invoker"


def release_env(spec: AgentSpec) -> dict[str, str]:
    """Env vars that tell the agent which release it runs."""
    r = spec.release
    env = {"AGENT_RELEASE": r.version}
    if r.model:
        env["AGENT_MODEL"] = r.model
    if r.prompts:
        env["AGENT_PROMPTS_DIGEST"] = r.prompts
    if r.memory_schema:
        env["AGENT_MEMORY_SCHEMA"] = r.memory_schema
    return env


def _member_key(member: str) -> str:
    return member.replace(":", "-").replace("@", "-at-").replace(".", "-").lower()


class CloudRunAgent(pulumi.ComponentResource):
    """A Cloud Run (v2) service running ``spec.release`` as the agent's identity.

    The template's revision is named from the release (``<service>-<version slug>``), so a
    release is deployed once and traffic moves between named revisions only. Invokers are
    granted on the service itself. Outputs: ``url`` (resolves only after the invoker grants
    and the identity's grants exist), ``service_name``, ``release_revision``,
    ``stable_revision`` (None without a canary), ``service_account_email``.
    """

    url: pulumi.Output[str]
    service_name: pulumi.Output[str]
    release_revision: pulumi.Output[str]
    stable_revision: pulumi.Output[str | None]
    service_account_email: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        spec: AgentSpec,
        service_name: str,
        project: str,
        region: str,
        identity: AgentIdentity,
        labels: Mapping[str, str],
        deletion_protection: bool = False,
        secret_env: bool = False,
        extra_env: Mapping[str, pulumi.Input[str]] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("agentstage:cloudrun:CloudRunAgent", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        envs: list[run.ServiceTemplateContainerEnvArgs] = []
        plain: dict[str, pulumi.Input[str]] = {**release_env(spec), **(extra_env or {})}
        for key, value in sorted(spec.env.items()):
            plain[key] = pulumi.Output.secret(value) if secret_env else value
        for feature, enabled in sorted(spec.features.items()):
            plain[feature_env(feature)] = "true" if enabled else "false"
        for key in sorted(plain):
            envs.append(run.ServiceTemplateContainerEnvArgs(name=key, value=plain[key]))
        for key, ref in sorted(spec.secrets.items()):
            secret, version = parse_secret_ref(ref)
            envs.append(
                run.ServiceTemplateContainerEnvArgs(
                    name=key,
                    value_source=run.ServiceTemplateContainerEnvValueSourceArgs(
                        secret_key_ref=run.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(
                            secret=secret, version=version
                        )
                    ),
                )
            )

        probe = dict(path=spec.health_path, port=spec.port)
        container = run.ServiceTemplateContainerArgs(
            name="agent",
            image=spec.release.image,
            ports=run.ServiceTemplateContainerPortsArgs(container_port=spec.port, name="http1"),
            envs=envs,
            resources=run.ServiceTemplateContainerResourcesArgs(
                limits={"cpu": spec.resources.cpu, "memory": spec.resources.memory},
                cpu_idle=spec.scaling.min_instances == 0,
                startup_cpu_boost=True,
            ),
            startup_probe=run.ServiceTemplateContainerStartupProbeArgs(
                http_get=run.ServiceTemplateContainerStartupProbeHttpGetArgs(**probe),
                initial_delay_seconds=0,
                period_seconds=5,
                timeout_seconds=3,
                failure_threshold=24,
            ),
            liveness_probe=run.ServiceTemplateContainerLivenessProbeArgs(
                http_get=run.ServiceTemplateContainerLivenessProbeHttpGetArgs(**probe),
                period_seconds=15,
                timeout_seconds=5,
                failure_threshold=3,
            ),
        )
        traffic = traffic_targets(service_name, spec)
        self.service = run.Service(
            f"{name}-service",
            name=service_name,
            project=project,
            location=region,
            description=f"{name} agent. Managed by agentstage.",
            ingress=spec.ingress_value,
            invoker_iam_disabled=False,
            deletion_protection=deletion_protection,
            labels=dict(labels),
            template=run.ServiceTemplateArgs(
                revision=revision_name(service_name, spec.release.version),
                service_account=identity.email,
                labels=dict(labels),
                max_instance_request_concurrency=spec.scaling.concurrency,
                scaling=run.ServiceTemplateScalingArgs(
                    min_instance_count=spec.scaling.min_instances,
                    max_instance_count=spec.scaling.max_instances,
                ),
                containers=[container],
            ),
            traffics=[
                run.ServiceTrafficArgs(type=t.type, revision=t.revision, percent=t.percent, tag=t.tag)
                for t in traffic
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=identity.grants),
        )
        self.invokers: dict[str, run.ServiceIamMember] = {}
        for member in spec.invokers:
            self.invokers[member] = run.ServiceIamMember(
                f"{name}-invoker-{_member_key(member)}",
                project=project,
                location=region,
                name=self.service.name,
                role=INVOKER,
                member=member,
                opts=child,
            )

        ready = [self.service.uri]
        ready += [m.id for m in self.invokers.values()]
        ready += [g.id for g in identity.grants]
        self.url = pulumi.Output.all(*ready).apply(lambda values: values[0])
        self.service_name = self.service.name
        self.release_revision = pulumi.Output.from_input(revision_name(service_name, spec.release.version))
        self.stable_revision = pulumi.Output.from_input(
            revision_name(service_name, spec.stable.version) if spec.stable else None
        )
        self.service_account_email = identity.email
        self.register_outputs(
            {
                "url": self.url,
                "service_name": self.service_name,
                "release_revision": self.release_revision,
                "stable_revision": self.stable_revision,
                "service_account_email": self.service_account_email,
            }
        )
