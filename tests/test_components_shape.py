"""The components' shape: one type token table, ResourceError (never assert) on bad arguments,
one MonitoringContext for the monitoring components, and values known at plan time that still
depend on the resource they name."""

from __future__ import annotations

from typing import Any

import pytest

from agentstage.config import platform_from_config
from components.contract import COMPONENT_TYPES, SERVICE_ACCOUNT

# --- a program under the mock runtime, in-process ------------------------------------------


@pytest.fixture
def mock_runtime():
    import pulumi
    from pulumi.runtime import settings

    from agentstage.fixtures import FixtureMocks

    settings.set_root_resource(None)
    pulumi.runtime.set_mocks(FixtureMocks({"gcp:project": "acme-agents-prod"}), project="p", stack="s", preview=True)
    yield


def _value(output: Any) -> Any:
    from pulumi.runtime.sync_await import _sync_await

    return _sync_await(output.future())


def _known(output: Any) -> bool:
    from pulumi.runtime.sync_await import _sync_await

    return _sync_await(output.is_known())


def _resources(output: Any) -> set[Any]:
    from pulumi.runtime.sync_await import _sync_await

    return _sync_await(output.resources())


def test_every_component_uses_its_token_from_the_contract(prod):
    components = {r.type.rsplit("$", 1)[-1] for r in prod.resources if not r.custom and r.type != "pulumi:pulumi:Stack"}
    # runtimes the reference stacks do not use are held to it by their own tests (test_agent_engine),
    # and so are spend caps (test_spend_cap), the A2A registry (test_multi_agent) and the CI
    # deployer, which lives in a bootstrap project of its own (test_deployer)
    runtimes = {
        COMPONENT_TYPES[c]
        for c in (
            "AgentEngineAgent",
            "VertexEndpointAgent",
            "GkeAgent",
            "AgentSpendCaps",
            "AgentRegistry",
            "DeployerIdentity",
        )
        if c in COMPONENT_TYPES
    }
    assert components == set(COMPONENT_TYPES.values()) - runtimes
    for cls, token in COMPONENT_TYPES.items():
        assert token.startswith("agentstage:") and token.endswith(f":{cls}")


def test_identity_email_is_known_in_a_preview_and_depends_on_the_account(mock_runtime):
    from components import AgentIdentity

    identity = AgentIdentity("support-bot", project="acme-agents-prod", environment="production")
    assert identity.email_address == "support-bot-production@acme-agents-prod.iam.gserviceaccount.com"
    assert _known(identity.email) and _value(identity.email) == identity.email_address
    assert _value(identity.member) == f"serviceAccount:{identity.email_address}"
    assert identity.account in _resources(identity.email) and identity.account in _resources(identity.member)


def test_template_name_and_topic_id_are_known_and_depend_on_their_resource(mock_runtime, production):
    from components import AgentPlatform

    platform = AgentPlatform("platform", platform_from_config(production))
    guardrails = platform.guardrails
    assert guardrails is not None
    assert (
        _value(guardrails.template_name)
        == "projects/acme-agents-prod/locations/us-central1/templates/agentstage-production"
    )
    assert guardrails.template in _resources(guardrails.template_name)
    assert platform.budget is not None and platform.budget.topic is not None
    assert _value(platform.budget.topic_id) == "projects/acme-agents-prod/topics/agentstage-budget-production"
    assert platform.budget.topic in _resources(platform.budget.topic_id)


def test_bad_component_arguments_raise_component_errors(mock_runtime, production):
    import pulumi

    from components import AgentBudget, AgentIdentity, CloudRunAgent
    from components.errors import ComponentError
    from components.ops_spec import BudgetSpec

    spec = platform_from_config(production)
    with pytest.raises(
        ComponentError, match=r"^AgentBudget budget: spec.billing_account is not set \(budget.billing_account\)$"
    ):
        AgentBudget("budget", spec=BudgetSpec(), project="acme-agents-prod", environment="production", labels={})
    identity = AgentIdentity("support-bot", project="acme-agents-prod", environment="production")
    agent = spec.agents["support-bot"]
    common: dict[str, Any] = dict(
        spec=agent,
        service_name="support-bot",
        project="acme-agents-prod",
        region="us-central1",
        identity=identity,
        labels={},
    )
    with pytest.raises(
        ComponentError,
        match=(
            r"^CloudRunAgent a: extra_env\['SOME_URL'\] is a Output, not a string: the revision name is a digest of "
            r"the whole template, so every env value must be known when the program runs$"
        ),
    ):
        CloudRunAgent("a", extra_env={"SOME_URL": pulumi.Output.from_input("x")}, **common)
    with pytest.raises(
        ComponentError, match=r"^CloudRunAgent b: extra_env sets LOG_SAMPLE_RATE, which the agent's env"
    ):
        CloudRunAgent("b", extra_env={"LOG_SAMPLE_RATE": "1"}, **common)
    with pytest.raises(
        ComponentError,
        match=(
            r"^AgentIdentity Bad_Bot: cannot form a service account id from environment 'dev' and prefix '': "
            r"'Bad_Bot-dev' is not 6-30 lowercase letters"
        ),
    ):
        AgentIdentity("Bad_Bot", project="acme-agents-prod", environment="dev")
    assert issubclass(ComponentError, pulumi.RunError)  # the CLI prints it without a traceback


def test_monitoring_components_take_one_context(mock_runtime, production):
    """A team composes AgentAlerts, AgentSlos and AgentSignals from one MonitoringContext."""
    import pulumi

    from components import AgentAlerts, AgentSignals, AgentSlos, MonitoringContext
    from components.monitoring import RevisionRef
    from components.ops_spec import AlertsSpec
    from components.spec import ScalingSpec

    ctx = MonitoringContext(
        agent="triage",
        spec=AlertsSpec(log_metric_wait_minutes=0),
        service="triage-agent",
        project="acme-triage-dev",
        region="europe-west4",
        stack="dev",
        revisions=[RevisionRef("release", "triage-agent-0-9-1-abcdef12", "0.9.1")],
        channels=["projects/acme-triage-dev/notificationChannels/1"],
        labels={"team": "triage"},
    )
    alerts = AgentAlerts("triage", ctx, scaling=ScalingSpec(max_instances=4))
    slos = AgentSlos("triage", ctx)
    signals = AgentSignals("triage", ctx)
    assert sorted(alerts.policies) == ["errors", "latency", "memory", "saturation"]
    assert sorted(slos.policies) == ["fast-burn", "slow-burn"] and sorted(slos.slos) == ["availability", "latency"]
    assert signals.metrics_visible is None  # log_metric_wait_minutes: 0
    assert sorted(signals.policies) == ["guardrail-blocks", "tool-errors"]
    assert isinstance(alerts, pulumi.ComponentResource)


def test_no_account_email_is_read_from_the_provider(prod):
    """Nothing consumes the account's computed ``email`` output: every consumer has the value
    computed at plan time (the account's own inputs carry only its id)."""
    emails = {r.outputs["email"] for r in prod.by_type(SERVICE_ACCOUNT)}
    consumers = [r for r in prod.resources if r.custom and any(e in str(r.inputs) for e in emails)]
    assert consumers  # services and grants use the email ...
    for r in consumers:  # ... and each depends on the account it names
        assert any(d.endswith("-sa") for d in r.dependencies + sum(r.property_dependencies.values(), [])), r.urn
