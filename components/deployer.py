"""DeployerIdentity: the keyless identity a CI pipeline deploys one environment with.

Per environment (its own project): a service account, a workload identity pool with one OIDC
provider per CI service (GitHub Actions, GitLab CI), each provider accepting tokens of one
repository only (and in production of one branch or CI environment), the account's
``roles/iam.workloadIdentityUser`` granted to that repository's principal set only, and the
roles ``pulumi up`` of the platform needs on the project: no more, each listed below with what
it is for and the resource types it lets the deployer create (tests/test_deployer.py checks
that every type the reference plans hold is covered, and that no role is granted twice).

The pipeline exchanges its OIDC token for a federated token, then impersonates the account:
no service account key exists anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.contract import (
    ALERT_POLICY,
    BUDGET,
    CLOUD_RUN_INVOKER,
    CLOUD_RUN_SERVICE,
    COMPONENT_TYPES,
    LOG_METRIC,
    MODEL_ARMOR_TEMPLATE,
    NOTIFICATION_CHANNEL,
    SERVICE_ACCOUNT,
)
from components.deployer_spec import CiRepositorySpec, DeployerSpec, check_pool_id
from components.errors import ComponentError
from components.identity import account_email, account_id
from components.known import known_after

__all__ = [
    "DeployerIdentity",
    "DeployerRole",
    "DEPLOYER_ROLES",
    "ISSUERS",
    "attribute_condition",
    "attribute_mapping",
    "grant_condition",
    "principal_set",
]

PROJECT_IAM_MEMBER = "gcp:projects/iAMMember:IAMMember"
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"


@dataclass(frozen=True)
class DeployerRole:
    """One role of the deployer: where it is granted, why, and the planned resource types
    ``pulumi up`` cannot create, update or delete without it."""

    role: str
    scope: str  #: "project", "quota-project" or "billing-account"
    purpose: str
    types: tuple[str, ...]


#: The roles ``pulumi up`` of the platform needs, one by one (permissions as named in Google's
#: IAM roles reference, https://cloud.google.com/iam/docs/roles-permissions).
DEPLOYER_ROLES: tuple[DeployerRole, ...] = (
    DeployerRole(
        "roles/run.admin",
        "project",
        "Create and update the agents' Cloud Run services (and the spend-cap enforcer's function service), "
        "and set who may invoke them: run.services.setIamPolicy, which roles/run.developer lacks. The pipeline's "
        "load test and evaluation call the candidate's tag URL with it too (run.routes.invoke).",
        (CLOUD_RUN_SERVICE, CLOUD_RUN_INVOKER),
    ),
    DeployerRole(
        "roles/iam.serviceAccountAdmin",
        "project",
        "Create the agents' and the enforcer's service accounts, and grant the enforcer actAs on an agent "
        "account (iam.serviceAccounts.create, iam.serviceAccounts.setIamPolicy).",
        (SERVICE_ACCOUNT, "gcp:serviceaccount/iAMMember:IAMMember"),
    ),
    DeployerRole(
        "roles/iam.serviceAccountUser",
        "project",
        "Deploy services and functions that run as those accounts (iam.serviceAccounts.actAs). Project-wide "
        "because the accounts are created by the same update; serviceAccountAdmin could grant it per account anyway.",
        (CLOUD_RUN_SERVICE, "gcp:cloudfunctionsv2/function:Function"),
    ),
    DeployerRole(
        "roles/resourcemanager.projectIamAdmin",
        "project",
        "Grant the agents' identities their project roles (additive IAM members). Conditioned: the deployer may "
        "only add or remove the grantable roles (iam.googleapis.com/modifiedGrantsByRole), never owner or its own.",
        (PROJECT_IAM_MEMBER,),
    ),
    DeployerRole(
        "roles/secretmanager.admin",
        "project",
        "Grant each agent secretAccessor on the secrets it references: secretmanager.secrets.setIamPolicy is in "
        "no narrower predefined role. The deployer never reads a secret's value through the stack.",
        ("gcp:secretmanager/secretIamMember:SecretIamMember",),
    ),
    DeployerRole(
        "roles/monitoring.editor",
        "project",
        "Alert policies, notification channels, the agents' monitoring services and SLOs, and the dashboard; "
        "`agentstage rollout` reads the canary's metrics with it (monitoring.timeSeries.list).",
        (
            ALERT_POLICY,
            NOTIFICATION_CHANNEL,
            "gcp:monitoring/genericService:GenericService",
            "gcp:monitoring/slo:Slo",
            "gcp:monitoring/dashboard:Dashboard",
        ),
    ),
    DeployerRole(
        "roles/logging.configWriter",
        "project",
        "The agents' log-based signal metrics (logging.logMetrics.create/update).",
        (LOG_METRIC,),
    ),
    DeployerRole(
        "roles/pubsub.admin",
        "project",
        "The budget's notification topic and its publisher grants (pubsub.topics.setIamPolicy, which "
        "roles/pubsub.editor lacks); the Budget API also checks it when a budget names the topic.",
        ("gcp:pubsub/topic:Topic", "gcp:pubsub/topicIAMMember:TopicIAMMember"),
    ),
    DeployerRole(
        "roles/parametermanager.admin",
        "project",
        "The agents' feature-flag parameters and their versions.",
        ("gcp:parametermanager/parameter:Parameter", "gcp:parametermanager/parameterVersion:ParameterVersion"),
    ),
    DeployerRole(
        "roles/modelarmor.admin",
        "project",
        "The environment's Model Armor template (modelarmor.templates.create/update).",
        (MODEL_ARMOR_TEMPLATE,),
    ),
    DeployerRole(
        "roles/compute.loadBalancerAdmin",
        "project",
        "The rate-limited external Application Load Balancer: serverless NEG, backend service, URL map, "
        "HTTPS proxy, managed certificate, global address and forwarding rule.",
        (
            "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup",
            "gcp:compute/backendService:BackendService",
            "gcp:compute/uRLMap:URLMap",
            "gcp:compute/targetHttpsProxy:TargetHttpsProxy",
            "gcp:compute/managedSslCertificate:ManagedSslCertificate",
            "gcp:compute/globalAddress:GlobalAddress",
            "gcp:compute/globalForwardingRule:GlobalForwardingRule",
        ),
    ),
    DeployerRole(
        "roles/compute.securityAdmin",
        "project",
        "The Cloud Armor security policy with the agents' throttle and ban rules "
        "(compute.securityPolicies.create/update, not in loadBalancerAdmin).",
        ("gcp:compute/securityPolicy:SecurityPolicy",),
    ),
    DeployerRole(
        "roles/storage.admin",
        "project",
        "The spend-cap enforcer's source bucket and archive object.",
        ("gcp:storage/bucket:Bucket", "gcp:storage/bucketObject:BucketObject"),
    ),
    DeployerRole(
        "roles/cloudfunctions.developer",
        "project",
        "The spend-cap enforcer function (cloudfunctions.functions.create/update).",
        ("gcp:cloudfunctionsv2/function:Function",),
    ),
    DeployerRole(
        "roles/serviceusage.serviceUsageConsumer",
        "quota-project",
        "The Budget API bills its quota to the stack's gcp:billingProject when gcp:userProjectOverride is on: "
        "that needs serviceusage.services.use there.",
        (BUDGET,),
    ),
    DeployerRole(
        "roles/billing.costsManager",
        "billing-account",
        "Create and update the environment's budget (billing.budgets.create/update are billing-account "
        "permissions; costsManager is the narrowest predefined role with them).",
        (BUDGET,),
    ),
)

#: The OIDC issuers of the CI services, and the claims each maps: ``google.subject`` (required for
#: OIDC providers: iam.v1.json WorkloadIdentityPoolProvider.attributeMapping), the repository under
#: one attribute name for both, so one principal-set form serves either, and the ref.
ISSUERS = {
    "github": "https://token.actions.githubusercontent.com",
    "gitlab": "https://gitlab.com",
}
_CLAIMS = {
    # GitHub Actions OIDC token claims: sub, repository (owner/name), ref (refs/heads/<branch>), environment.
    "github": {"repository": "repository", "ref": "ref"},
    # GitLab CI id_tokens claims: sub, project_path (group/project), ref (<branch>), ref_type, environment.
    "gitlab": {"repository": "project_path", "ref": "ref"},
}


def attribute_mapping(ci: str) -> dict[str, str]:
    """The provider's attribute mapping for ``ci`` ("github" or "gitlab")."""
    claims = _CLAIMS[ci]
    return {
        "google.subject": "assertion.sub",
        "attribute.repository": f"assertion.{claims['repository']}",
        "attribute.ref": f"assertion.{claims['ref']}",
    }


def attribute_condition(ci: str, repo: CiRepositorySpec) -> str:
    """The CEL condition a token must meet: the repository, and the branch or CI environment when
    set. GitHub and GitLab are multi-tenant issuers: without a condition any of their repositories
    could federate (iam.v1.json, WorkloadIdentityPoolProvider.attributeCondition)."""
    claims = _CLAIMS[ci]
    terms = [f"assertion.{claims['repository']} == '{repo.repository}'"]
    if repo.branch is not None:
        if ci == "github":
            terms.append(f"assertion.ref == 'refs/heads/{repo.branch}'")
        else:
            terms += ["assertion.ref_type == 'branch'", f"assertion.ref == '{repo.branch}'"]
    if repo.environment is not None:
        terms.append(f"assertion.environment == '{repo.environment}'")
    return " && ".join(terms)


def principal_set(project_number: str, pool_id: str, repository: str) -> str:
    """Every identity of ``repository`` federated through the pool (iam.v1.json attributeMapping:
    ``principalSet://iam.googleapis.com/projects/{project}/locations/{location}/workloadIdentityPools/
    {pool}/attribute.{custom_attribute}/{value}``)."""
    return (
        f"principalSet://iam.googleapis.com/projects/{project_number}/locations/global/"
        f"workloadIdentityPools/{pool_id}/attribute.repository/{repository}"
    )


def grant_condition(roles: list[str] | tuple[str, ...]) -> str:
    """The IAM condition that lets a projectIamAdmin grant or revoke only ``roles``
    (https://cloud.google.com/iam/docs/setting-limits-on-granting-roles)."""
    quoted = ", ".join(f"'{r}'" for r in roles)
    return f"api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([{quoted}])"


def _role_key(role: str) -> str:
    return role.rsplit("/", 1)[-1].replace(".", "-")


class DeployerIdentity(pulumi.ComponentResource):
    """The CI deployer of one environment: account, pool, providers, the federation grant and
    the deploy roles. Outputs: ``email``, ``member``, ``pool_name``, ``providers`` (CI service ->
    provider resource name, the value of google-github-actions/auth's
    ``workload_identity_provider`` and of GitLab's token audience) and ``quota_project``."""

    email: pulumi.Output[str]
    member: pulumi.Output[str]
    pool_name: pulumi.Output[str]
    providers: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, spec: DeployerSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPES["DeployerIdentity"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        project, env, pool_id = spec.project, spec.environment, spec.workload_pool_id
        self.quota_project = spec.quota_project or project

        account = account_id("deployer", env, "agentstage")
        self.email_address = account_email(account, project)
        self.account = gcp.serviceaccount.Account(
            f"{name}-sa",
            account_id=account,
            display_name=f"CI deployer ({env})",
            description=f"Impersonated by CI pipelines through Workload Identity Federation to deploy {env}. "
            "Managed by agentstage.",
            project=project,
            opts=child,
        )
        self.email = known_after(self.account, self.email_address)
        self.member = known_after(self.account, f"serviceAccount:{self.email_address}")

        self.pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            workload_identity_pool_id=pool_id,
            display_name=f"agentstage CI ({env})"[:32],  # WorkloadIdentityPool.displayName: at most 32 characters
            description=f"CI pipelines that deploy {env}. Managed by agentstage.",
            project=project,
            opts=child,
        )
        number = gcp.organizations.get_project_output(project_id=project).number
        self.pool_name = pulumi.Output.all(self.pool.urn, number).apply(
            lambda v: f"projects/{v[1]}/locations/global/workloadIdentityPools/{pool_id}"
        )

        provider_names: dict[str, pulumi.Output[str]] = {}
        self.grants: list[pulumi.CustomResource] = []
        repositories: dict[str, None] = {}
        for ci, repo in (("github", spec.github), ("gitlab", spec.gitlab)):
            if repo is None:
                continue
            provider_id = check_pool_id(ci, "workload identity pool provider")
            provider = gcp.iam.WorkloadIdentityPoolProvider(
                f"{name}-{ci}",
                workload_identity_pool_id=pool_id,
                workload_identity_pool_provider_id=provider_id,
                display_name=f"{ci} deployer ({env})"[:32],  # at most 32 characters
                description=f"{ci} pipelines of {repo.repository} that may deploy {env}. Managed by agentstage.",
                attribute_mapping=attribute_mapping(ci),
                attribute_condition=attribute_condition(ci, repo),
                oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=repo.issuer_uri or ISSUERS[ci]),
                project=project,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.pool]),
            )
            provider_names[ci] = pulumi.Output.all(provider.urn, self.pool_name).apply(
                lambda v, p=provider_id: f"{v[1]}/providers/{p}"
            )
            repositories[repo.repository] = None

        # The federation grant: only the repository's principal set may impersonate the account.
        for repository in repositories:
            self.grants.append(
                gcp.serviceaccount.IAMMember(
                    f"{name}-wif-{repository.replace('/', '-').lower()}",
                    service_account_id=known_after(
                        self.account, f"projects/{project}/serviceAccounts/{self.email_address}"
                    ),
                    role=WORKLOAD_IDENTITY_USER,
                    member=pulumi.Output.all(self.pool.urn, number).apply(
                        lambda v, r=repository: principal_set(v[1], pool_id, r)
                    ),
                    opts=child,
                )
            )

        listed = {r.role for r in DEPLOYER_ROLES}
        for role in spec.extra_roles:
            if role in listed:
                raise ComponentError(
                    "DeployerIdentity", name, f"extra_roles: {role} is granted already; remove it from extra_roles"
                )
        roles = [r for r in DEPLOYER_ROLES if r.scope != "billing-account" or spec.billing_account]
        roles += [DeployerRole(role, "project", reason, ()) for role, reason in spec.extra_roles.items()]
        self.roles = tuple(roles)
        for role in roles:
            if role.scope == "billing-account":
                self.grants.append(
                    gcp.billing.AccountIamMember(
                        f"{name}-role-{_role_key(role.role)}",
                        billing_account_id=spec.billing_account,
                        role=role.role,
                        member=self.member,
                        opts=child,
                    )
                )
                continue
            condition = None
            if role.role == "roles/resourcemanager.projectIamAdmin":
                condition = gcp.projects.IAMMemberConditionArgs(
                    title="agentstage grantable roles",
                    description="Only the roles the platform grants its agents' identities.",
                    expression=grant_condition(spec.grantable_roles),
                )
            self.grants.append(
                gcp.projects.IAMMember(
                    f"{name}-role-{_role_key(role.role)}",
                    project=self.quota_project if role.scope == "quota-project" else project,
                    role=role.role,
                    member=self.member,
                    condition=condition,
                    opts=child,
                )
            )
        self.providers = (
            pulumi.Output.all(**provider_names).apply(dict) if provider_names else pulumi.Output.from_input({})
        )
        self.register_outputs(
            {
                "email": self.email,
                "member": self.member,
                "pool_name": self.pool_name,
                "providers": self.providers,
                "quota_project": self.quota_project,
            }
        )
