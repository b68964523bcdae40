"""CloudRunAgent: one agent as a Cloud Run service, with canary traffic per its release."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi_gcp import cloudrunv2 as run

from components.contract import COMPONENT_TYPES
from components.errors import ComponentError
from components.flags import require_flags_env
from components.identity import AgentIdentity
from components.revision import revision_name, template_digest
from components.spec import AgentSpec, ProbeSpec, parse_secret_ref
from components.traffic import traffic_targets

__all__ = ["CloudRunAgent", "live_traffic", "release_env", "revision_template"]

INVOKER = "roles/run.invoker"
GEN1 = "EXECUTION_ENVIRONMENT_GEN1"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"


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


def live_traffic(
    statuses: Sequence[Mapping[str, Any]] | None, latest_ready_revision: str | None
) -> list[dict[str, Any]]:
    """The service's ``traffic_statuses`` (the traffic Cloud Run serves) as
    ``[{"revision", "percent", "tag"}]``: short revision names, a LATEST target resolved to
    ``latest_ready_revision``, no tag as None."""
    latest = (latest_ready_revision or "").rsplit("/", 1)[-1]
    out = []
    for status in statuses or []:
        revision = status.get("revision") or (latest if status.get("type") == LATEST else "")
        out.append(
            {
                "revision": revision.rsplit("/", 1)[-1],
                "percent": int(status.get("percent") or 0),
                "tag": status.get("tag") or None,
            }
        )
    return out


def _member_key(member: str) -> str:
    return member.replace(":", "-").replace("@", "-at-").replace(".", "-").lower()


def _probe(spec: AgentSpec, probe: ProbeSpec) -> dict[str, Any]:
    return {
        "http_get": {"path": spec.health_path, "port": spec.port},
        "initial_delay_seconds": probe.initial_delay_seconds,
        "period_seconds": probe.period_seconds,
        "timeout_seconds": probe.timeout_seconds,
        "failure_threshold": probe.failure_threshold,
    }


def revision_template(
    spec: AgentSpec, *, service_account: str, labels: Mapping[str, str], extra_env: Mapping[str, str]
) -> dict[str, Any]:
    """The revision template of ``spec`` as plain data (the pulumi-gcp ``template`` input,
    snake_case keys), without its revision name: what the template digest is taken of.

    CPU is allocated only during requests (``cpu_idle``) when the service may scale to zero
    and always with fractional CPU, which Cloud Run allows only that way and only in the first
    generation execution environment (Cloud Run docs, "Configure CPU limits for services":
    below 1 vCPU, request-based billing and the first generation execution environment are
    required). Minimum instances are not part of the template: they are set on the service
    (see :class:`CloudRunAgent`). ``vpc_access`` (Direct VPC egress) is present only with
    ``spec.vpc_egress``."""
    # feature flags are not env vars: the agent reads them from its flags parameter, whose name
    # (extra_env[FLAGS_ENV]) never changes, so a flag flip leaves the template and revision alone
    plain: dict[str, str] = {**release_env(spec), **extra_env, **spec.env}
    envs: list[dict[str, Any]] = [{"name": key, "value": plain[key]} for key in sorted(plain)]
    for key, ref in sorted(spec.secrets.items()):
        secret, version = parse_secret_ref(ref)
        envs.append({"name": key, "value_source": {"secret_key_ref": {"secret": secret, "version": version}}})
    container = {
        "name": "agent",
        "image": spec.release.image,
        "ports": {"container_port": spec.port, "name": "http1"},
        "envs": envs,
        "resources": {
            "limits": {"cpu": spec.resources.cpu, "memory": spec.resources.memory},
            "cpu_idle": spec.scaling.min_instances == 0 or spec.resources.fractional,
            "startup_cpu_boost": True,
        },
        "startup_probe": _probe(spec, spec.probes.startup),
        "liveness_probe": _probe(spec, spec.probes.liveness),
    }
    template: dict[str, Any] = {
        "service_account": service_account,
        "labels": dict(labels),
        "max_instance_request_concurrency": spec.scaling.concurrency,
        "scaling": {"max_instance_count": spec.scaling.max_instances},
        "containers": [container],
    }
    if spec.resources.fractional:
        template["execution_environment"] = GEN1
    if spec.vpc_egress is not None:
        # part of the template, so of the revision name: a new network or egress is a new revision
        # (Cloud Run sets VPC access per revision). Left out when unset, so the templates, and the
        # revision names, of agents without it stay what earlier releases planned.
        template["vpc_access"] = spec.vpc_egress.vpc_access()
    return template


class CloudRunAgent(pulumi.ComponentResource):
    """A Cloud Run (v2) service running ``spec.release`` as the agent's identity.

    The template's revision is named ``<service>-<version slug>-<template digest>``
    (:mod:`components.revision`): any change of the template yields a new revision name, the
    same template the same name. Traffic moves between named revisions only; the stable
    target is ``spec.stable_revision`` (recorded by the release flow) or, for a stable
    deployed by agentstage 0.1, ``<service>-<version slug>``.

    Scaling: ``max_instances`` caps each revision and, at the service level, all revisions
    together; ``min_instances`` is set at the service level, where Cloud Run divides it among
    the revisions that receive traffic, so a rolled-back candidate at 0% keeps no warm,
    billed instances.

    ``extra_env`` values must be plain strings: the revision name is a digest of the whole
    template and is known when the program runs. Invokers are granted on the service itself.

    Outputs: ``url`` (resolves only after the invoker grants and the identity's grants
    exist), ``service_name``, ``release_revision``, ``stable_revision`` (None without a
    canary), ``service_account_email``, ``live_traffic`` (the traffic the service serves,
    from its ``traffic_statuses``: :func:`live_traffic`). Plain attributes: ``revision`` and
    ``stable_revision_name`` (the same names, for other components of the program).
    """

    url: pulumi.Output[str]
    service_name: pulumi.Output[str]
    release_revision: pulumi.Output[str]
    stable_revision: pulumi.Output[str | None]
    service_account_email: pulumi.Output[str]
    live_traffic: pulumi.Output[list[dict[str, Any]]]

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
        extra_env: Mapping[str, str] | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["CloudRunAgent"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        extra = dict(extra_env or {})
        for key, value in extra.items():
            if not isinstance(value, str):
                raise ComponentError(
                    "CloudRunAgent",
                    name,
                    f"extra_env[{key!r}] is a {type(value).__name__}, not a string: the revision name is a digest of "
                    "the whole template, so every env value must be known when the program runs",
                )
        clash = sorted(set(extra) & (set(spec.env) | set(spec.secrets)))
        if clash:
            raise ComponentError(
                "CloudRunAgent", name, f"extra_env sets {clash[0]}, which the agent's env or secrets set too"
            )
        require_flags_env("CloudRunAgent", name, spec.features, extra)

        template = revision_template(spec, service_account=identity.email_address, labels=labels, extra_env=extra)
        self.revision = revision_name(service_name, spec.release.version, template_digest(template))
        self.stable_revision_name = spec.stable_revision_name(service_name)
        if self.stable_revision_name == self.revision:
            raise ComponentError(
                "CloudRunAgent",
                name,
                f"stable_revision {self.stable_revision_name!r} is the revision the release's template deploys; "
                "a canary needs two different revisions",
            )

        deployed = copy.deepcopy(template)
        deployed["revision"] = self.revision
        deployed["service_account"] = identity.email  # the same value, depending on the account
        if secret_env:
            for env in deployed["containers"][0]["envs"]:
                if env["name"] in spec.env:
                    env["value"] = pulumi.Output.secret(env["value"])
        traffic = traffic_targets(spec, self.revision, self.stable_revision_name)
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
            scaling=run.ServiceScalingArgs(
                min_instance_count=spec.scaling.min_instances,
                max_instance_count=spec.scaling.max_instances,
            ),
            template=deployed,
            traffics=[
                run.ServiceTrafficArgs(type=t.type, revision=t.revision, percent=t.percent, tag=t.tag) for t in traffic
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*identity.grants, *depends_on]),
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
        self.release_revision = pulumi.Output.from_input(self.revision)
        self.stable_revision = pulumi.Output.from_input(self.stable_revision_name)
        self.service_account_email = identity.email
        self.live_traffic = pulumi.Output.all(self.service.traffic_statuses, self.service.latest_ready_revision).apply(
            lambda values: live_traffic(values[0], values[1])
        )
        self.register_outputs(
            {
                "url": self.url,
                "service_name": self.service_name,
                "release_revision": self.release_revision,
                "stable_revision": self.stable_revision,
                "service_account_email": self.service_account_email,
                "live_traffic": self.live_traffic,
            }
        )
