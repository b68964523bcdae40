"""components/contract.py and the agent_guard pack's own copy of the names they share stay in
step: the pack must stay a self-contained CrossGuard pack, so it cannot import the components."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from components import contract
from components.labels import agent_labels, platform_labels
from tests.conftest import ROOT

PACK = ROOT / "policies" / "agent_guard"


def _pack_helpers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("agent_guard_helpers", PACK / "helpers.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_pack_uses_the_components_names():
    helpers = _pack_helpers()
    pairs = {
        "NAMESPACE": contract.NAMESPACE,
        "LABEL_ENVIRONMENT": contract.LABEL_ENVIRONMENT,
        "LABEL_AGENT": contract.LABEL_AGENT,
        "LABEL_RELEASE": contract.LABEL_RELEASE,
        "LABEL_MANAGED_BY": contract.LABEL_MANAGED_BY,
        "PRODUCTION": contract.PRODUCTION,
        "CLOUD_RUN": contract.CLOUD_RUN_SERVICE,
        "ALERT_POLICY": contract.ALERT_POLICY,
        "BUDGET": contract.BUDGET,
        "MODEL_ARMOR_TEMPLATE": contract.MODEL_ARMOR_TEMPLATE,
    }
    drift = {
        name: (getattr(helpers, name, None), ours)
        for name, ours in pairs.items()
        if getattr(helpers, name, None) != ours
    }
    assert not drift, f"policies/agent_guard/helpers.py has drifted from components/contract.py: {drift}"


def test_the_labels_the_components_set_are_the_ones_the_pack_reads():
    helpers = _pack_helpers()
    labels = agent_labels("production", "support-bot", "1.4.0", {"team": "support"})
    assert labels[helpers.LABEL_ENVIRONMENT] == helpers.PRODUCTION
    assert labels[helpers.LABEL_AGENT] == "support-bot" and labels[helpers.LABEL_RELEASE] == "1-4-0"
    assert set(contract.BASE_LABEL_KEYS) <= set(labels)
    assert set(platform_labels("staging", {})) == {contract.LABEL_ENVIRONMENT, contract.LABEL_MANAGED_BY}


def test_the_reserved_tracing_names_are_the_ones_agentstage_sets():
    from agentstage.config import platform_from_config
    from components.observability import tracing_env
    from tests.conftest import load_stack

    config = load_stack("production")
    config["agent-platform:tracing"] = {"otlp_endpoint": "https://otel.acme.com"}
    assert set(tracing_env(platform_from_config(config), "support-bot")) == set(contract.TRACING_ENV)


def test_the_pack_defaults_name_the_platform_labels():
    """What the pack's policy config schema documents as defaults (GetAnalyzerInfo)."""
    from agentstage.policy.reference import pack_policies

    schemas = {p.name: p.config_schema for p in pack_policies()}
    # no default namespace: unset, canary-first-step reads every <namespace>:agents key of the stack
    assert "default" not in schemas["canary-first-step"]["properties"]["configNamespace"]
    assert schemas["required-labels"]["properties"]["requiredLabels"]["default"] == [
        contract.LABEL_ENVIRONMENT,
        contract.LABEL_RELEASE,
    ]
    assert schemas["min-instances-production"]["properties"]["productionEnvironments"]["default"] == [
        contract.PRODUCTION
    ]
