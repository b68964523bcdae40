"""The policy `parameter-reader-own-parameter`, through the real pack process: an agent identity
may read its own flags parameter only (a Parameter Manager read role at project level needs a
condition naming parameters). The happy path is the reference plan; one mutation per test."""

from __future__ import annotations

import json

import pytest

from tests.test_policy_rules import (  # noqa: F401 - fixtures: the reference plan and the pack process
    PROJECT_MEMBER,
    SA,
    UNKNOWN,
    baseline,
    mutate,
    not_judged,
    pack,
    violations,
)

POLICY = "parameter-reader-own-parameter"
GRANT = "support-bot-flags-reader"


def _mine(found):
    return [v for v in found if v[0] == POLICY]


def test_the_reference_plan_grants_each_agent_its_own_parameter_only(pack, baseline):  # noqa: F811
    assert _mine(violations(pack, baseline)) == []


def test_a_grant_without_a_condition_opens_every_parameter(pack, baseline):  # noqa: F811
    plan = mutate(baseline, PROJECT_MEMBER, GRANT, lambda i: i.pop("condition"))
    assert _mine(violations(pack, plan)) == [
        (
            POLICY,
            GRANT,
            f"grants roles/parametermanager.parameterAccessor to {SA} at project level without a condition that "
            "limits it to one parameter, so the identity reads every parameter in the project (other agents' flags "
            "too); add a condition on resource.name naming its own parameter, as AgentFlags does "
            '(resource.name.endsWith("/parameters/<id>")).',
        )
    ]


@pytest.mark.parametrize(
    "expression",
    [
        'resource.name.startsWith("projects/acme-agents-prod/locations/global/parameters/")',
        'resource.name.endsWith("/parameters/support-bot-production-flags") || resource.type == "x"',
        'request.time < timestamp("2030-01-01T00:00:00Z")',
    ],
    ids=["every-parameter", "one-open-alternative", "not-about-the-resource"],
)
def test_a_condition_that_does_not_name_one_parameter_is_refused(pack, baseline, expression):  # noqa: F811
    plan = mutate(baseline, PROJECT_MEMBER, GRANT, lambda i: i["condition"].update(expression=expression))
    assert [v[1] for v in _mine(violations(pack, plan))] == [GRANT]


def test_the_viewer_role_reads_payloads_too(pack, baseline):  # noqa: F811
    plan = mutate(
        baseline,
        PROJECT_MEMBER,
        "support-bot-role-aiplatform-user",
        lambda i: i.update(role="roles/parametermanager.parameterViewer"),
    )
    assert [v[1] for v in _mine(violations(pack, plan))] == ["support-bot-role-aiplatform-user"]


def test_a_person_reading_parameters_is_not_this_rules_business(pack, baseline):  # noqa: F811
    plan = mutate(baseline, PROJECT_MEMBER, GRANT, lambda i: (i.pop("condition"), i.update(member="user:ana@acme.com")))
    assert _mine(violations(pack, plan)) == []


def test_an_unknown_condition_is_not_judged(pack, baseline):  # noqa: F811
    plan = mutate(baseline, PROJECT_MEMBER, GRANT, lambda i: i["condition"].update(expression=UNKNOWN))
    assert _mine(violations(pack, plan)) == [
        (
            POLICY,
            GRANT,
            not_judged(
                f"whether the roles/parametermanager.parameterAccessor grant to {SA} is limited to one parameter",
                "condition.expression",
            ),
        )
    ]


def test_check_fails_a_production_agent_given_project_wide_parameter_access(tmp_path):
    """Through `agentstage check`: `roles:` granting the accessor role on the whole project is
    exactly the mistake the conditioned grant of AgentFlags avoids."""
    from tests.test_policy_check_cli import invoke, risky

    path = risky(tmp_path, lambda a: a.update(roles=["roles/parametermanager.parameterAccessor"]))
    result = invoke("production", "--config-file", str(path), "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [(v["policy"], v["enforcement"], v["resource_name"]) for v in report["violations"]] == [
        (POLICY, "mandatory", "support-bot-role-parametermanager-parameterAccessor")
    ]
