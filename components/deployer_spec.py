"""Typed spec of a CI deployer identity (:class:`components.deployer.DeployerIdentity`).

A deployer is what a CI pipeline becomes when it runs ``pulumi up`` on one environment: a
service account it impersonates through Workload Identity Federation, with no key. This spec
says which repository (and, in production, which branch or CI environment) may become it.
It is read by a bootstrap project of its own (``examples/deployer``), not by the platform's
stack config, because the identity that deploys a stack cannot be created by that stack.

Every validator raises :class:`SpecIssue` with a message that completes ``<key>: <value> ...``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from components.contract import PRODUCTION
from components.ops_spec import billing_account_id
from components.specbase import SpecIssue, StrictModel, check_role

__all__ = [
    "CiRepositorySpec",
    "DeployerSpec",
    "DEFAULT_GRANTABLE_ROLES",
    "check_pool_id",
]

# Workload identity pool and provider ids. iam v1 discovery document (google-api-python-client
# googleapiclient/discovery_cache/documents/iam.v1.json), parameters workloadIdentityPoolId and
# workloadIdentityPoolProviderId of the create methods: "4-32 characters, and may contain the
# characters [a-z0-9-]. The prefix `gcp-` is reserved for use by Google, and may not be specified."
_POOL_ID = re.compile(r"^[a-z0-9-]{4,32}$")
_RESERVED_PREFIX = "gcp-"

# GitHub: "owner/name"; owners are letters, digits and single hyphens, repository names letters,
# digits, '.', '_' and '-'. GitLab: "group[/subgroup...]/project" path segments. Neither may hold a
# quote or a backslash: the value is written into a CEL string literal of the attribute condition.
_GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_GITLAB_PROJECT = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+$")
# A branch (git check-ref-format, narrowed to what a CEL literal can hold without escaping) and a CI
# environment name (GitHub: up to 255 characters; GitLab: letters, digits, spaces, - _ / . { } $).
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")
_CI_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _./-]{0,254}$")
_ENVIRONMENT = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_PROJECT = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
# Oidc.issuerUri (iam.v1.json): "Must be an HTTPS endpoint."
_HTTPS = re.compile(r"^https://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[A-Za-z0-9._~/-]*)?$")

#: The project roles the platform grants its own identities (components.identity BASELINE_ROLES,
#: Model Armor's user role, the flags reader, and the spend-cap enforcer's flags writer). The
#: deployer may grant these and no other: its ``projectIamAdmin`` binding carries a condition
#: naming them (tests/test_deployer.py checks the reference plans grant nothing else).
DEFAULT_GRANTABLE_ROLES = (
    "roles/logging.logWriter",
    "roles/cloudtrace.agent",
    "roles/monitoring.metricWriter",
    "roles/aiplatform.user",
    "roles/modelarmor.user",
    "roles/parametermanager.parameterAccessor",
    "roles/parametermanager.parameterVersionAdder",
)


def check_pool_id(value: str, what: str) -> str:
    """``value`` if it is a valid workload identity pool or provider id (``what`` names which);
    else a :class:`SpecIssue` with Google's rule."""
    if not _POOL_ID.match(value) or value.startswith(_RESERVED_PREFIX):
        raise SpecIssue(
            f"is not a {what} id; use 4-32 lowercase letters, digits or '-', not starting with 'gcp-' "
            "(reserved by Google)",
            value=value,
            has_value=True,
        )
    return value


class CiRepositorySpec(StrictModel):
    """The one repository of one CI service whose pipelines may deploy the environment."""

    repository: str = Field(
        description="The repository: owner/name on GitHub, group[/subgroup]/project on GitLab. Required."
    )
    branch: str | None = Field(
        default=None,
        description="Only pipelines of this branch (e.g. main) may deploy. Default: null (any branch). "
        "Production requires branch or environment.",
    )
    environment: str | None = Field(
        default=None,
        description="Only jobs bound to this CI environment (GitHub `environment:`, GitLab `environment:`) "
        "may deploy; its protection rules (required reviewers) then guard the credentials. Default: null.",
    )
    issuer_uri: str | None = Field(
        default=None,
        description="The OIDC issuer (a self-managed GitLab's https URL). Default: null "
        "(https://token.actions.githubusercontent.com for GitHub, https://gitlab.com for GitLab).",
    )

    @field_validator("branch")
    @classmethod
    def _branch(cls, v: str | None) -> str | None:
        if v is not None and (not _BRANCH.match(v) or v.startswith("refs/") or ".." in v):
            raise SpecIssue("is not a branch name; use the short name (e.g. main), letters, digits and . _ / -")
        return v

    @field_validator("environment")
    @classmethod
    def _environment(cls, v: str | None) -> str | None:
        if v is not None and not _CI_ENVIRONMENT.match(v):
            raise SpecIssue("is not a CI environment name; use letters, digits, spaces and _ . / - (at most 255)")
        return v

    @field_validator("issuer_uri")
    @classmethod
    def _issuer(cls, v: str | None) -> str | None:
        if v is not None and not _HTTPS.match(v):
            raise SpecIssue("is not an OIDC issuer; it must be an https:// URL (Workload Identity Federation)")
        return v


class DeployerSpec(StrictModel):
    """Who may deploy one environment, and where its quota and budget permissions live."""

    project: str = Field(description="The environment's Google Cloud project id (gcp:project). Required.")
    environment: str = Field(
        description="The environment this deployer deploys (staging, production...). Required. "
        "'production' requires a branch or CI environment restriction and a billing account."
    )
    github: CiRepositorySpec | None = Field(
        default=None, description="The GitHub repository whose Actions may deploy. Default: null."
    )
    gitlab: CiRepositorySpec | None = Field(
        default=None, description="The GitLab project whose pipelines may deploy. Default: null."
    )
    pool_id: str | None = Field(
        default=None, description="Workload identity pool id. Default: null (agentstage-<environment>)."
    )
    billing_account: str | None = Field(
        default=None,
        description="The billing account of the environment's budget: the deployer gets roles/billing.costsManager "
        "on it. Default: null (no budget permission). Required in production, whose stack must have a budget.",
    )
    quota_project: str | None = Field(
        default=None,
        description="The project the Budget API bills its quota to (gcp:billingProject of the deployed stack): "
        "the deployer gets serviceusage.services.use on it. Default: null (the environment's project).",
    )
    grantable_roles: list[str] = Field(
        default_factory=lambda: list(DEFAULT_GRANTABLE_ROLES),
        description="The only project roles the deployer may grant (to the agents' identities): add the roles "
        "your agents' `roles:` lists name. Default: the roles agentstage grants its own identities.",
    )
    extra_roles: dict[str, str] = Field(
        default_factory=dict,
        description="More project roles for the deployer, each with the reason it needs it (e.g. "
        "roles/aiplatform.admin: deploys Agent Engine agents). Default: {}.",
    )

    @field_validator("project", "quota_project")
    @classmethod
    def _project(cls, v: str | None) -> str | None:
        if v is not None and not _PROJECT.match(v):
            raise SpecIssue(
                "is not a Google Cloud project id; use 6-30 lowercase letters, digits or '-', starting with a letter"
            )
        return v

    @field_validator("environment")
    @classmethod
    def _env(cls, v: str) -> str:
        if not _ENVIRONMENT.match(v):
            raise SpecIssue(
                "is not an environment name; use 1-20 lowercase letters, digits or '-', starting with a letter"
            )
        return v

    @field_validator("pool_id")
    @classmethod
    def _pool(cls, v: str | None) -> str | None:
        return None if v is None else check_pool_id(v, "workload identity pool")

    @field_validator("billing_account", mode="before")
    @classmethod
    def _account(cls, v: Any) -> Any:
        return billing_account_id(v)

    @field_validator("grantable_roles")
    @classmethod
    def _grantable(cls, v: list[str]) -> list[str]:
        for i, role in enumerate(v):
            check_role(role, (i,))
        return v

    @field_validator("extra_roles")
    @classmethod
    def _extra(cls, v: dict[str, str]) -> dict[str, str]:
        for role, reason in v.items():
            check_role(role, (role,))
            if not reason.strip():
                raise SpecIssue(
                    "has no reason; say what the deployer needs the role for",
                    path=(role,),
                    value=reason,
                    has_value=True,
                )
        return v

    @model_validator(mode="after")
    def _whole(self) -> DeployerSpec:
        if self.github is None and self.gitlab is None:
            raise SpecIssue("sets neither github nor gitlab; name the repository whose pipelines may deploy", path=())
        for name, repo in (("github", self.github), ("gitlab", self.gitlab)):
            pattern = _GITHUB_REPOSITORY if name == "github" else _GITLAB_PROJECT
            if repo is not None and not pattern.match(repo.repository):
                form = "owner/name" if name == "github" else "group[/subgroup]/project"
                raise SpecIssue(
                    f"is not a {name} repository; use {form} (letters, digits, . _ -)",
                    path=(name, "repository"),
                    value=repo.repository,
                    has_value=True,
                )
        if self.environment == PRODUCTION:
            for name, repo in (("github", self.github), ("gitlab", self.gitlab)):
                if repo is not None and repo.branch is None and repo.environment is None:
                    raise SpecIssue(
                        "may deploy production from any branch; set branch (e.g. main) or environment "
                        "(e.g. production), so a pull request's pipeline cannot deploy production",
                        path=(name, "repository"),
                        value=repo.repository,
                        has_value=True,
                    )
            if self.billing_account is None:
                raise SpecIssue(
                    "is not set; production stacks must have a billing budget, which the deployer can only create "
                    "with roles/billing.costsManager on the billing account: set it (e.g. 012345-6789AB-CDEF01)",
                    path=("billing_account",),
                    value=None,
                    has_value=True,
                )
        return self

    @property
    def workload_pool_id(self) -> str:
        """The pool id: ``pool_id``, or ``agentstage-<environment>``."""
        return self.pool_id or f"agentstage-{self.environment}"
