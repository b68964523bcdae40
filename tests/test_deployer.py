"""DeployerIdentity: the keyless CI deployer of one environment (offline engine, Pulumi mock
runtime): its resources, the attribute conditions that restrict federation to one repository
(and branch or CI environment), exactly the roles it lists, each needed by a resource type the
reference plans hold, the id rules of Google's IAM API, and the example project."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.config import ConfigError, platform_from_config
from agentstage.engine import Plan, run_plan
from components.deployer import DEPLOYER_ROLES, attribute_condition, grant_condition
from components.deployer_spec import DEFAULT_GRANTABLE_ROLES, CiRepositorySpec, DeployerSpec
from tests.conformance import discovery, translate
from tests.conformance.test_api_schemas import _all_options
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "deployer"
NS = "agent-deployer"
POOL = "gcp:iam/workloadIdentityPool:WorkloadIdentityPool"
PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
SA_MEMBER = "gcp:serviceaccount/iAMMember:IAMMember"
PROJECT_MEMBER = "gcp:projects/iAMMember:IAMMember"
BILLING_MEMBER = "gcp:billing/accountIamMember:AccountIamMember"
ACCOUNT = "gcp:serviceaccount/account:Account"
PROD_SA = "agentstage-deployer-production@acme-agents-prod.iam.gserviceaccount.com"
#: Types that make no Google API call, so need no role (tests/conformance/translate.py NOT_GOOGLE_APIS).
LOCAL = ("time:", "pulumi:providers:", "kubernetes:", "pulumi-python:dynamic/")


@pytest.fixture(scope="module")
def production_deployer() -> Plan:
    return run_plan(EXAMPLE, "production")


@pytest.fixture(scope="module")
def staging_deployer() -> Plan:
    return run_plan(EXAMPLE, "staging")


def by_name(plan: Plan, type_: str) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in plan.by_type(type_)}


# --- resources --------------------------------------------------------------------------------


def test_production_deployer_resources(production_deployer: Plan) -> None:
    plan = production_deployer
    [account] = plan.by_type(ACCOUNT)
    assert account.inputs["accountId"] == "agentstage-deployer-production"
    assert account.inputs["project"] == "acme-agents-prod"
    [pool] = plan.by_type(POOL)
    assert pool.inputs == {
        "workloadIdentityPoolId": "agentstage-production",
        "displayName": "agentstage CI (production)",
        "description": "CI pipelines that deploy production. Managed by agentstage.",
        "project": "acme-agents-prod",
    }
    providers = by_name(plan, PROVIDER)
    assert sorted(providers) == ["deployer-github", "deployer-gitlab"]
    github, gitlab = providers["deployer-github"], providers["deployer-gitlab"]
    assert (github["workloadIdentityPoolId"], github["workloadIdentityPoolProviderId"]) == (
        "agentstage-production",
        "github",
    )
    assert github["oidc"] == {"issuerUri": "https://token.actions.githubusercontent.com"}
    assert gitlab["oidc"] == {"issuerUri": "https://gitlab.com"}
    assert github["attributeMapping"] == {
        "google.subject": "assertion.sub",
        "attribute.repository": "assertion.repository",
        "attribute.ref": "assertion.ref",
    }
    assert gitlab["attributeMapping"]["attribute.repository"] == "assertion.project_path"
    assert len(plan.by_type(PROJECT_MEMBER)) == len([r for r in DEPLOYER_ROLES if r.scope != "billing-account"])
    assert len(plan.by_type(BILLING_MEMBER)) == 1 and len(plan.by_type(SA_MEMBER)) == 2
    assert len([r for r in plan.resources if r.custom]) == 1 + 1 + 2 + 2 + 15 + 1


def test_production_providers_accept_one_repository_on_main_in_the_production_environment(
    production_deployer: Plan,
) -> None:
    providers = by_name(production_deployer, PROVIDER)
    assert providers["deployer-github"]["attributeCondition"] == (
        "assertion.repository == 'acme/support-agents' && assertion.ref == 'refs/heads/main' "
        "&& assertion.environment == 'production'"
    )
    assert providers["deployer-gitlab"]["attributeCondition"] == (
        "assertion.project_path == 'acme/agents/support-agents' && assertion.ref_type == 'branch' "
        "&& assertion.ref == 'main' && assertion.environment == 'production'"
    )


def test_staging_providers_accept_any_branch_of_the_repository(staging_deployer: Plan) -> None:
    providers = by_name(staging_deployer, PROVIDER)
    assert providers["deployer-github"]["attributeCondition"] == "assertion.repository == 'acme/support-agents'"
    assert (
        providers["deployer-gitlab"]["attributeCondition"] == "assertion.project_path == 'acme/agents/support-agents'"
    )
    # the image build's roles, granted with their reasons through extra_roles
    extra = {g.inputs["role"] for g in staging_deployer.by_type(PROJECT_MEMBER)} - {r.role for r in DEPLOYER_ROLES}
    assert extra == {"roles/artifactregistry.writer", "roles/cloudbuild.builds.editor"}


def test_condition_for_a_branch_or_an_environment_alone() -> None:
    repo = CiRepositorySpec(repository="acme/app", branch="release/2")
    assert (
        attribute_condition("github", repo)
        == "assertion.repository == 'acme/app' && assertion.ref == 'refs/heads/release/2'"
    )
    repo = CiRepositorySpec(repository="acme/app", environment="prod eu")
    assert (
        attribute_condition("gitlab", repo)
        == "assertion.project_path == 'acme/app' && assertion.environment == 'prod eu'"
    )


def test_only_the_repositorys_principal_set_may_impersonate_the_account(production_deployer: Plan) -> None:
    account = production_deployer.find(ACCOUNT, "deployer-sa")
    grants = production_deployer.by_type(SA_MEMBER)
    pool = "projects/378835223860/locations/global/workloadIdentityPools/agentstage-production"
    assert sorted(g.inputs["member"] for g in grants) == [
        f"principalSet://iam.googleapis.com/{pool}/attribute.repository/acme/agents/support-agents",
        f"principalSet://iam.googleapis.com/{pool}/attribute.repository/acme/support-agents",
    ]
    for grant in grants:
        assert grant.inputs["role"] == "roles/iam.workloadIdentityUser"
        assert grant.inputs["serviceAccountId"] == f"projects/acme-agents-prod/serviceAccounts/{PROD_SA}"
        assert account.urn in grant.dependencies  # granted once the account exists
    assert production_deployer.outputs["workload_identity_providers"] == {
        "github": f"{pool}/providers/github",
        "gitlab": f"{pool}/providers/gitlab",
    }
    assert production_deployer.outputs["service_account"] == PROD_SA
    assert production_deployer.outputs["quota_project"] == "acme-agents-prod"


# --- roles ------------------------------------------------------------------------------------


def test_exactly_the_listed_roles_are_granted_where_listed(production_deployer: Plan) -> None:
    project_roles = {g.inputs["role"]: g.inputs for g in production_deployer.by_type(PROJECT_MEMBER)}
    listed = {r.role for r in DEPLOYER_ROLES if r.scope in ("project", "quota-project")}
    assert set(project_roles) == listed
    for grant in project_roles.values():
        assert grant["member"] == f"serviceAccount:{PROD_SA}" and grant["project"] == "acme-agents-prod"
    [billing] = production_deployer.by_type(BILLING_MEMBER)
    assert billing.inputs == {
        "billingAccountId": "012345-6789AB-CDEF01",
        "role": "roles/billing.costsManager",
        "member": f"serviceAccount:{PROD_SA}",
    }
    admin = project_roles["roles/resourcemanager.projectIamAdmin"]
    assert admin["condition"]["expression"] == (
        "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly(["
        + ", ".join(f"'{r}'" for r in DEFAULT_GRANTABLE_ROLES)
        + "])"
    )
    assert all("condition" not in g for role, g in project_roles.items() if role != admin["role"])
    assert len({r.role for r in DEPLOYER_ROLES}) == len(DEPLOYER_ROLES)  # no role listed twice
    assert all(r.purpose.strip() and r.types for r in DEPLOYER_ROLES)


@pytest.fixture(scope="module")
def reference_plans(tmp_path_factory: pytest.TempPathFactory) -> list[Plan]:
    """The plans `pulumi up` of the platform runs: both reference stacks, and production with
    every optional feature on (load balancer, spend-cap enforcer, Pub/Sub channels...)."""
    return [run_plan(ROOT, "production"), run_plan(ROOT, "staging"), _all_options(tmp_path_factory)]


def test_every_planned_resource_type_is_covered_by_a_listed_role(reference_plans: list[Plan]) -> None:
    covered = {t for r in DEPLOYER_ROLES for t in r.types}
    planned = {r.type for plan in reference_plans for r in plan.resources if r.custom and not r.type.startswith(LOCAL)}
    assert sorted(planned - covered) == []
    # and no role is there for a type the platform never plans
    for role in DEPLOYER_ROLES:
        assert set(role.types) & planned, f"{role.role} covers nothing the platform plans"


def test_the_deployer_may_grant_every_role_the_platform_grants(reference_plans: list[Plan]) -> None:
    granted = {r.inputs["role"] for plan in reference_plans for r in plan.by_type(PROJECT_MEMBER)}
    assert granted <= set(DEFAULT_GRANTABLE_ROLES)
    assert grant_condition(["roles/a.b"]) == (
        "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly(['roles/a.b'])"
    )


def test_extra_roles_and_grantable_roles_and_a_quota_project(tmp_path: Path) -> None:
    stack = _stack("production")
    stack[f"{NS}:extra_roles"] = {"roles/aiplatform.admin": "deploys the Agent Engine agents"}
    stack[f"{NS}:grantable_roles"] = ["roles/aiplatform.user", "roles/bigquery.dataViewer"]
    stack[f"{NS}:quota_project"] = "acme-billing-quota"
    plan = _plan(tmp_path, "production", stack)
    roles = {g.inputs["role"]: g.inputs for g in plan.by_type(PROJECT_MEMBER)}
    assert roles["roles/aiplatform.admin"]["project"] == "acme-agents-prod"
    assert roles["roles/serviceusage.serviceUsageConsumer"]["project"] == "acme-billing-quota"
    assert roles["roles/resourcemanager.projectIamAdmin"]["condition"]["expression"].endswith(
        "hasOnly(['roles/aiplatform.user', 'roles/bigquery.dataViewer'])"
    )
    assert plan.outputs["quota_project"] == "acme-billing-quota"


def test_no_billing_account_no_billing_grant_outside_production(tmp_path: Path) -> None:
    stack = _stack("staging")
    del stack[f"{NS}:billing_account"]
    del stack[f"{NS}:gitlab"]
    plan = _plan(tmp_path, "staging", stack)
    assert plan.by_type(BILLING_MEMBER) == []
    assert [p.name for p in plan.by_type(PROVIDER)] == ["deployer-github"]


# --- the example project ------------------------------------------------------------------------


def test_first_preview_knows_the_principal_set(tmp_path: Path) -> None:
    plan = run_plan(EXAMPLE, "production", new_stack=True)
    members = [g.inputs["member"] for g in plan.by_type(SA_MEMBER)]
    assert all(m.startswith("principalSet://iam.googleapis.com/projects/") for m in members), members


runner = CliRunner(env={"COLUMNS": "250"})


def test_the_example_passes_the_policy_pack_with_its_own_policy_config() -> None:
    for stack in ("staging", "production"):
        for new in ([], ["--new-stack"]):
            result = runner.invoke(
                app,
                [
                    "check",
                    stack,
                    *new,
                    "-C",
                    str(EXAMPLE),
                    "--policy-config",
                    str(EXAMPLE / "policy" / f"{stack}.json"),
                ],
                catch_exceptions=False,
            )
            assert result.exit_code == 0, result.output


def test_the_agent_rules_the_example_disables_are_exactly_those_a_deployer_breaks() -> None:
    result = runner.invoke(app, ["check", "production", "-C", str(EXAMPLE), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 1
    fired = {v["policy"] for v in json.loads(result.output)["violations"]}
    config = json.loads((EXAMPLE / "policy" / "production.json").read_text())
    assert fired == {k for k, v in config.items() if v == "disabled"}


# --- Google's rules ---------------------------------------------------------------------------


def test_the_id_rule_is_the_one_the_iam_api_documents() -> None:
    # iam.v1.json: the create methods' workloadIdentityPoolId / workloadIdentityPoolProviderId
    doc = discovery.document("iam.v1")
    pools = doc["resources"]["projects"]["resources"]["locations"]["resources"]["workloadIdentityPools"]
    for method, param in (
        (pools["methods"]["create"], "workloadIdentityPoolId"),
        (pools["resources"]["providers"]["methods"]["create"], "workloadIdentityPoolProviderId"),
    ):
        text = method["parameters"][param]["description"]
        assert "4-32 characters" in text and "[a-z0-9-]" in text and "`gcp-` is reserved" in text


def test_provider_and_pool_requests_conform_to_iam_v1(production_deployer: Plan) -> None:
    for type_, schema in ((POOL, "WorkloadIdentityPool"), (PROVIDER, "WorkloadIdentityPoolProvider")):
        for resource in production_deployer.by_type(type_):
            [request] = translate.to_requests(resource)
            assert (request.api, request.schema) == ("iam.v1", schema)
            assert discovery.validate("iam.v1", schema, request.body) == []
    [provider] = translate.to_requests(production_deployer.by_type(PROVIDER)[0])
    body = copy.deepcopy(provider.body)
    assert "workloadIdentityPoolProviderId" not in body and body["oidc"]["issuerUri"].startswith("https://")
    body["oidc"]["issuer"] = body["oidc"].pop("issuerUri")
    assert discovery.validate("iam.v1", "WorkloadIdentityPoolProvider", body) == [
        "$.oidc: Additional properties are not allowed ('issuer' was unexpected)"
    ]
    [billing] = translate.to_requests(production_deployer.by_type(BILLING_MEMBER)[0])
    assert (billing.api, billing.body) == (
        "cloudbilling.v1",
        {"role": "roles/billing.costsManager", "members": [f"serviceAccount:{PROD_SA}"]},
    )
    assert discovery.validate("cloudbilling.v1", "Binding", billing.body) == []


# --- bad input ----------------------------------------------------------------------------------


def _stack(name: str) -> dict[str, Any]:
    from ruamel.yaml import YAML

    with (EXAMPLE / "stacks" / f"Pulumi.{name}.yaml").open() as fh:
        return YAML(typ="safe", pure=True).load(fh)["config"]


def _plan(tmp_path: Path, stack: str, config: dict[str, Any]) -> Plan:
    from tests.conftest import write_stack

    return run_plan(EXAMPLE, stack, config_file=write_stack(tmp_path / f"{stack}.yaml", config))


def _errors(**changes: Any) -> list[str]:
    config = _stack("production")
    for key, value in changes.items():
        if value is None:
            config.pop(f"{NS}:{key}", None)
        else:
            config[f"{NS}:{key}"] = value
    with pytest.raises(ConfigError) as err:
        platform_from_config(config, DeployerSpec, namespace=NS)
    return err.value.issues


@pytest.mark.parametrize("pool", ["gcp-agents", "abc", "Agents-prod", "a" * 33, "agents_prod"])
def test_pool_ids_follow_googles_rule(pool: str) -> None:
    assert _errors(pool_id=pool) == [
        f"{NS}:pool_id: {json.dumps(pool)} is not a workload identity pool id; use 4-32 lowercase letters, digits or '-', "
        "not starting with 'gcp-' (reserved by Google)"
    ]


def test_valid_pool_ids_at_the_limits() -> None:
    for pool in ("abcd", "a" * 32, "0-ci"):
        spec = platform_from_config({**_stack("production"), f"{NS}:pool_id": pool}, DeployerSpec, namespace=NS)
        assert spec.workload_pool_id == pool


def test_production_must_name_a_branch_or_an_environment() -> None:
    assert _errors(github={"repository": "acme/support-agents"}) == [
        f'{NS}:github.repository: "acme/support-agents" may deploy production from any branch; set branch '
        "(e.g. main) or environment (e.g. production), so a pull request's pipeline cannot deploy production"
    ]


def test_production_needs_the_billing_account() -> None:
    assert _errors(billing_account=None) == [
        f"{NS}:billing_account: null is not set; production stacks must have a billing budget, which the deployer "
        "can only create with roles/billing.costsManager on the billing account: set it (e.g. 012345-6789AB-CDEF01)"
    ]


def test_a_repository_is_required() -> None:
    assert _errors(github=None, gitlab=None) == [
        f"{NS}: sets neither github nor gitlab; name the repository whose pipelines may deploy"
    ]


@pytest.mark.parametrize("repository", ["acme", "acme/app' || true || '", "acme/app/sub"])
def test_repositories_that_cannot_be_written_into_a_condition_are_refused(repository: str) -> None:
    assert _errors(github={"repository": repository, "branch": "main"}) == [
        f"{NS}:github.repository: {json.dumps(repository)} is not a github repository; use owner/name (letters, digits, . _ -)"
    ]


def test_bad_branch_environment_issuer_and_reasonless_role() -> None:
    assert _errors(github={"repository": "acme/app", "branch": "refs/heads/main"}) == [
        f'{NS}:github.branch: "refs/heads/main" is not a branch name; use the short name (e.g. main), letters, '
        "digits and . _ / -"
    ]
    assert _errors(gitlab={"repository": "acme/app", "environment": "prod'"}) == [
        f'{NS}:gitlab.environment: "prod\'" is not a CI environment name; use letters, digits, spaces and _ . / - '
        "(at most 255)"
    ]
    assert _errors(gitlab={"repository": "acme/app", "branch": "main", "issuer_uri": "http://gitlab.acme.com"}) == [
        f'{NS}:gitlab.issuer_uri: "http://gitlab.acme.com" is not an OIDC issuer; it must be an https:// URL '
        "(Workload Identity Federation)"
    ]
    assert _errors(extra_roles={"roles/aiplatform.admin": " "}) == [
        f'{NS}:extra_roles.roles/aiplatform.admin: " " has no reason; say what the deployer needs the role for'
    ]


def test_an_extra_role_already_listed_is_refused(tmp_path: Path) -> None:
    from agentstage.engine import ProgramError

    stack = _stack("staging")
    stack[f"{NS}:extra_roles"] = {"roles/run.admin": "deploys Cloud Run"}
    with pytest.raises(ProgramError) as err:
        _plan(tmp_path, "staging", stack)
    assert (
        "DeployerIdentity deployer: extra_roles: roles/run.admin is granted already; remove it from extra_roles"
        in str(err.value)
    )
