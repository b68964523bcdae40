"""AgentIdentity: one dedicated service account per agent per environment."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp

__all__ = ["AgentIdentity", "BASELINE_ROLES", "account_id"]

#: What every agent needs: write logs, traces and metrics, and call Vertex AI models.
BASELINE_ROLES = (
    "roles/logging.logWriter",
    "roles/cloudtrace.agent",
    "roles/monitoring.metricWriter",
    "roles/aiplatform.user",
)
SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"


def account_id(agent: str, environment: str, prefix: str = "") -> str:
    """Deterministic service account id ``[<prefix>-]<agent>-<environment>`` fitted to the
    6-30 character limit: a long id keeps its head and ends in a 6-hex hash of the full name,
    so it stays unique and stable without a random suffix."""
    full = "-".join(p for p in (prefix, agent, environment) if p)
    if len(full) > 30:
        digest = hashlib.sha256(full.encode()).hexdigest()[:6]
        full = f"{full[:23].rstrip('-')}-{digest}"
    if len(full) < 6:
        full = f"{full}-agent"
    assert re.fullmatch(r"[a-z]([-a-z0-9]{4,28})[a-z0-9]", full), full
    return full


def _role_key(role: str) -> str:
    return role.rsplit("/", 1)[-1].replace(".", "-")


class AgentIdentity(pulumi.ComponentResource):
    """A dedicated service account with least privilege: the baseline roles, the extra
    ``roles`` granted additively at project level, and ``secretAccessor`` on each referenced
    secret only, never project-wide.

    Outputs: ``email``, ``member`` (``serviceAccount:<email>``) and ``grants`` (every IAM
    member resource, for consumers that must wait for the identity to be usable)."""

    email: pulumi.Output[str]
    member: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        project: str,
        environment: str,
        prefix: str = "",
        roles: Sequence[str] = (),
        secrets: Sequence[str] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("agentstage:identity:AgentIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.account = gcp.serviceaccount.Account(
            f"{name}-sa",
            account_id=account_id(name, environment, prefix),
            display_name=f"{name} agent ({environment})",
            description=f"Runtime identity of the {name} agent in {environment}. Managed by agentstage.",
            project=project,
            opts=child,
        )
        self.email = self.account.email
        self.member = self.account.email.apply(lambda e: f"serviceAccount:{e}")
        self.grants: list[pulumi.CustomResource] = []
        for role in dict.fromkeys([*BASELINE_ROLES, *roles]):
            self.grants.append(
                gcp.projects.IAMMember(
                    f"{name}-role-{_role_key(role)}", project=project, role=role, member=self.member, opts=child
                )
            )
        for secret in sorted(set(secrets)):
            self.grants.append(
                gcp.secretmanager.SecretIamMember(
                    f"{name}-secret-{secret}",
                    project=project,
                    secret_id=secret,
                    role=SECRET_ACCESSOR,
                    member=self.member,
                    opts=child,
                )
            )
        self.register_outputs({"email": self.email, "member": self.member})
