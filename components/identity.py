"""AgentIdentity: one dedicated service account per agent per environment."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp

from components.contract import COMPONENT_TYPES
from components.errors import ComponentError
from components.known import known_after

__all__ = ["AgentIdentity", "BASELINE_ROLES", "account_id", "account_email"]

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
    if not re.fullmatch(r"[a-z]([-a-z0-9]{4,28})[a-z0-9]", full):
        raise ComponentError(
            "AgentIdentity",
            agent,
            f"cannot form a service account id from environment {environment!r} and prefix {prefix!r}: "
            f"{full!r} is not 6-30 lowercase letters, digits or '-' starting with a letter",
        )
    return full


def account_email(account: str, project: str) -> str:
    """The email Google gives a user-managed service account: ``<id>@<project>.iam.gserviceaccount.com``."""
    return f"{account}@{project}.iam.gserviceaccount.com"


def _role_key(role: str) -> str:
    return role.rsplit("/", 1)[-1].replace(".", "-")


class AgentIdentity(pulumi.ComponentResource):
    """A dedicated service account with least privilege: the baseline roles, the extra
    ``roles`` granted additively at project level, and ``secretAccessor`` on each referenced
    secret only, never project-wide.

    The email is computed from the deterministic account id and the project, as Google forms
    it, so it is known in a first preview (every policy can read it) while still depending on
    the account resource. ``email_address`` is the same value as a plain string, for what
    must be known when the program runs (the revision digest of a service that runs as it).

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
        super().__init__(COMPONENT_TYPES["AgentIdentity"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = account_id(name, environment, prefix)
        self.email_address = account_email(account, project)
        self.account = gcp.serviceaccount.Account(
            f"{name}-sa",
            account_id=account,
            display_name=f"{name} agent ({environment})",
            description=f"Runtime identity of the {name} agent in {environment}. Managed by agentstage.",
            project=project,
            opts=child,
        )
        self.email = known_after(self.account, self.email_address)
        self.member = known_after(self.account, f"serviceAccount:{self.email_address}")
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
