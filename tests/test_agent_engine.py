"""The agent-engine runtime: AgentEngineSpec, AgentEngineAgent under the mock runtime (through
the offline engine), the policies on its resources, and every refused spec value's message.

The stack is the reference production stack with research-agent moved to agent-engine."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, load_stack, write_stack

from agentstage.config import ConfigError, platform_from_config
from agentstage.engine import Plan, ProgramError, load_project, load_stack_config, run_plan
from agentstage.policy import PACK_DIR, PolicyPackProcess, load_policy_config

ENGINE = "gcp:vertex/aiReasoningEngine:AiReasoningEngine"
ENGINE_USER = "gcp:vertex/aiReasoningEngineIamMember:AiReasoningEngineIamMember"
AGENT = "research-agent"
KEY = f"agent-platform:agents.{AGENT}"
STABLE_IMAGE = "us-docker.pkg.dev/acme-agents/agents/research-agent@sha256:" + "ab" * 32
KMS = "projects/acme-agents-prod/locations/us-central1/keyRings/agents/cryptoKeys/research"


def engine_config() -> dict[str, Any]:
    cfg = load_stack("production")
    agent = cfg["agent-platform:agents"][AGENT]
    for key in ("scaling", "resources", "ingress"):
        agent.pop(key)
    agent["runtime"] = "agent-engine"
    agent["agent_engine"] = {"min_instances": 1, "max_instances": 8, "cpu": "2", "memory": "4Gi"}
    return cfg


def agent(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg["agent-platform:agents"][AGENT]


def with_canary(cfg: dict[str, Any], percent: int | None = 5) -> dict[str, Any]:
    a = agent(cfg)
    a["stable"] = {**a["release"], "version": "2.0.3", "image": STABLE_IMAGE}
    a["agent_engine"]["stable_revision"] = "7339876424152596480"
    if percent is not None:
        a.setdefault("rollout", {})["canary_percent"] = percent
    return cfg


def plan(tmp_path: Path, cfg: dict[str, Any], new_stack: bool = False) -> Plan:
    return run_plan(ROOT, "production", config_file=write_stack(tmp_path / "prod.yaml", cfg), new_stack=new_stack)


def engine(p: Plan) -> dict[str, Any]:
    return p.find(ENGINE, f"{AGENT}-engine").inputs


# --- traffic ------------------------------------------------------------------------------


def test_first_deploy_sends_all_traffic_to_the_latest_revision(tmp_path):
    p = plan(tmp_path, engine_config())
    assert engine(p)["trafficConfig"] == {"trafficSplitAlwaysLatest": {}}
    assert p.outputs["traffic"][AGENT] == [{"revision": "LATEST", "percent": 100, "tag": None}]


def test_canary_at_5_percent_splits_between_the_recorded_stable_and_latest(tmp_path):
    p = plan(tmp_path, with_canary(engine_config(), 5))
    assert engine(p)["trafficConfig"] == {
        "trafficSplitManual": {
            "targets": [
                {"runtimeRevisionName": "7339876424152596480", "percent": 95},
                {"runtimeRevisionName": "LATEST", "percent": 5},
            ]
        }
    }
    assert p.outputs["traffic"][AGENT] == [
        {"revision": "7339876424152596480", "percent": 95, "tag": None},
        {"revision": "LATEST", "percent": 5, "tag": None},
    ]
    assert p.outputs["agents"][AGENT]["stable_revision"] == "7339876424152596480"


def test_canary_at_100_percent_leaves_stable_out(tmp_path):
    p = plan(tmp_path, with_canary(engine_config(), 100))
    assert engine(p)["trafficConfig"] == {
        "trafficSplitManual": {"targets": [{"runtimeRevisionName": "LATEST", "percent": 100}]}
    }


def test_rolled_back_sends_everything_to_stable(tmp_path):
    p = plan(tmp_path, with_canary(engine_config(), 0))
    assert engine(p)["trafficConfig"] == {
        "trafficSplitManual": {"targets": [{"runtimeRevisionName": "7339876424152596480", "percent": 100}]}
    }


# --- the engine and its identity ------------------------------------------------------------


def test_engine_runs_the_release_image_as_the_agents_own_account(tmp_path):
    cfg = engine_config()
    p = plan(tmp_path, cfg)
    e = engine(p)
    email = "research-agent-production@acme-agents-prod.iam.gserviceaccount.com"
    assert e["spec"]["serviceAccount"] == email
    assert e["spec"]["containerSpec"] == {"imageUri": agent(cfg)["release"]["image"], "port": 8080}
    d = e["spec"]["deploymentSpec"]
    assert (d["minInstances"], d["maxInstances"], d["containerConcurrency"]) == (1, 8, 9)
    assert d["resourceLimits"] == {"cpu": "2", "memory": "4Gi"}
    assert d["secretEnvs"] == [{"name": "SEARCH_API_KEY", "secretRef": {"secret": "search-api-key", "version": "3"}}]
    envs = {env["name"]: env["value"] for env in d["envs"]}
    assert envs["AGENT_RELEASE"] == "2.1.0" and envs["MAX_SOURCES"] == "8" and "FEATURE_CITATIONS" not in envs
    # the flags are read at run time from the agent's parameter (docs/flags.md)
    assert envs["AGENTSTAGE_FLAGS_PARAMETER"] == (
        "projects/acme-agents-prod/locations/global/parameters/research-agent-production-flags"
    )
    assert e["labels"]["agent"] == AGENT and e["labels"]["release"] == "2-1-0"
    assert e["deletionPolicy"] == "PREVENT"
    assert "encryptionSpec" not in e and "contextSpec" not in e
    sa = p.find("gcp:serviceaccount/account:Account", f"{AGENT}-sa")
    assert f"{AGENT}-sa" in [Path(u).name.rsplit("::", 1)[-1] for u in p.find(ENGINE, f"{AGENT}-engine").dependencies]
    assert sa.inputs["accountId"] == "research-agent-production"
    assert p.outputs["agents"][AGENT]["service_account"] == email
    assert p.outputs["agents"][AGENT]["runtime"] == "agent-engine"
    assert p.find("agentstage:agentengine:AgentEngineAgent", AGENT).parent.endswith("AgentPlatform::platform")
    # invokers may query the engine, on the engine only
    user = p.find(ENGINE_USER, f"{AGENT}-user-serviceaccount-orchestrator-at-acme-agents-prod-iam-gserviceaccount-com")
    assert user.inputs["role"] == "roles/aiplatform.user"
    assert user.inputs["member"] == "serviceAccount:orchestrator@acme-agents-prod.iam.gserviceaccount.com"
    # the Reasoning Engine service agent reads the secret env values
    grant = p.find("gcp:secretmanager/secretIamMember:SecretIamMember", f"{AGENT}-engine-secret-search-api-key")
    assert grant.inputs["member"].startswith("serviceAccount:service-")
    assert grant.inputs["member"].endswith("@gcp-sa-aiplatform-re.iam.gserviceaccount.com")
    # no Cloud Run service for it; the Cloud Run agent is unchanged
    assert not [r for r in p.resources if r.type == "gcp:cloudrunv2/service:Service" and r.name.startswith(AGENT)]
    assert p.find("gcp:cloudrunv2/service:Service", "support-bot-service")


def test_cmek_and_memory_bank(tmp_path):
    cfg = engine_config()
    agent(cfg)["agent_engine"].update(kms_key=KMS, memory_bank=True)
    e = engine(plan(tmp_path, cfg))
    assert e["encryptionSpec"] == {"kmsKeyName": KMS}
    assert e["contextSpec"] == {
        "memoryBankConfig": {"structuredMemoryConfigs": [{"schemaConfigs": [{"id": "schema-1"}]}]}
    }


def test_cmek_key_in_another_region_is_refused(tmp_path):
    cfg = engine_config()
    agent(cfg)["agent_engine"]["kms_key"] = KMS.replace("us-central1", "europe-west4")
    with pytest.raises(ProgramError) as err:
        plan(tmp_path, cfg)
    assert (
        "agent_engine.kms_key is in europe-west4, but the engine runs in us-central1; Agent Engine requires the key "
        "in the engine's region (pulumi-gcp AiReasoningEngineEncryptionSpec)"
    ) in str(err.value)


# --- preview and check, offline -------------------------------------------------------------


@pytest.fixture(scope="module")
def pack():
    config = load_stack_config(load_project(ROOT), "production")
    with PolicyPackProcess(
        PACK_DIR, project="agent-platform", stack="production", config=config.values, secret_keys=config.secret_keys
    ) as p:
        p.configure(load_policy_config(PACK_DIR / "config" / "production.json"))
        yield p


def violations(pack: PolicyPackProcess, p: Plan) -> list[tuple[str, str | None, str]]:
    found, _, _ = pack.analyze(p)
    return [(v.policy, v.resource_name, v.message) for v in found]


@pytest.mark.parametrize("new_stack", [False, True], ids=["existing", "new-stack"])
@pytest.mark.parametrize("canary", [False, True], ids=["first-deploy", "canary"])
def test_engine_stack_passes_the_production_policies(tmp_path, pack, new_stack, canary):
    cfg = with_canary(engine_config()) if canary else engine_config()
    assert violations(pack, plan(tmp_path, cfg, new_stack=new_stack)) == []


def test_preview_and_check_cli(tmp_path):
    from typer.testing import CliRunner

    from agentstage.cli import app

    config = write_stack(tmp_path / "prod.yaml", with_canary(engine_config()))
    runner = CliRunner()
    out = runner.invoke(app, ["preview", "production", "-C", str(ROOT), "--config-file", str(config), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["outputs"]["traffic"][AGENT][1] == {"revision": "LATEST", "percent": 5, "tag": None}
    for extra in ([], ["--new-stack"]):
        out = runner.invoke(app, ["check", "production", "-C", str(ROOT), "--config-file", str(config), *extra])
        assert out.exit_code == 0, out.output


def _mutated(p: Plan, type_: str, name: str, change) -> Plan:
    new = copy.deepcopy(p)
    r = new.find(type_, name)
    change(r.inputs)
    if r.outputs:
        change(r.outputs)
    return new


@pytest.fixture(scope="module")
def engine_plan(tmp_path_factory) -> Plan:
    return plan(tmp_path_factory.mktemp("engine"), with_canary(engine_config()))


def test_public_member_on_the_engine(pack, engine_plan):
    name = f"{AGENT}-user-serviceaccount-orchestrator-at-acme-agents-prod-iam-gserviceaccount-com"
    p = _mutated(engine_plan, ENGINE_USER, name, lambda i: i.update(member="allAuthenticatedUsers"))
    assert violations(pack, p) == [
        (
            "no-public-invoker",
            name,
            "grants roles/aiplatform.user to allAuthenticatedUsers on the Vertex AI resource, so any signed-in Google "
            "account can call it; remove the public member and grant the role to the calling service account or group.",
        )
    ]


def test_engine_as_the_default_compute_account(pack, engine_plan):
    account = "123456789012-compute@developer.gserviceaccount.com"
    p = _mutated(engine_plan, ENGINE, f"{AGENT}-engine", lambda i: i["spec"].update(serviceAccount=account))
    assert violations(pack, p) == [
        (
            "dedicated-service-account",
            f"{AGENT}-engine",
            f"spec.service_account is {account}, the Compute Engine default service account shared by the whole "
            "project; create a service account for this agent alone and set it (agentstage: AgentIdentity does this).",
        )
    ]


def test_engine_split_not_100(pack, engine_plan):
    def change(i: dict[str, Any]) -> None:
        i["trafficConfig"]["trafficSplitManual"]["targets"][0]["percent"] = 90

    p = _mutated(engine_plan, ENGINE, f"{AGENT}-engine", change)
    assert violations(pack, p) == [
        (
            "traffic-split-sums-to-100",
            f"{AGENT}-engine",
            "traffic_config.traffic_split_manual.targets sends 90 + 5 = 95% of traffic; make the percentages add up "
            "to exactly 100.",
        )
    ]


def test_cmek_required_by_the_policy_config(tmp_path, engine_plan):
    config = load_stack_config(load_project(ROOT), "production")
    policy = {
        **json.loads((PACK_DIR / "config" / "production.json").read_text()),
        "agent-engine-cmek": {"required": True},
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    with PolicyPackProcess(
        PACK_DIR, project="agent-platform", stack="production", config=config.values, secret_keys=config.secret_keys
    ) as strict:
        strict.configure(load_policy_config(tmp_path / "policy.json"))
        assert violations(strict, engine_plan) == [
            (
                "agent-engine-cmek",
                f"{AGENT}-engine",
                "encryption_spec.kms_key_name is not set, so the Agent Engine is encrypted with a Google-managed key; "
                "set it to a Cloud KMS key in the engine's region (agentstage: agents.<name>.agent_engine.kms_key).",
            )
        ]
        with_key = _mutated(
            engine_plan, ENGINE, f"{AGENT}-engine", lambda i: i.update(encryptionSpec={"kmsKeyName": KMS})
        )
        assert violations(strict, with_key) == []


# --- refused spec values ---------------------------------------------------------------------


def _set(*path: str, value: Any):
    def change(cfg: dict[str, Any]) -> None:
        target = agent(cfg)
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    return change


def _drop_stable_revision(cfg: dict[str, Any]) -> None:
    with_canary(cfg)
    del agent(cfg)["agent_engine"]["stable_revision"]


CLOUD_RUN_KEY = "is a Cloud Run setting, and runtime agent-engine does not use it: "
BAD = [
    (
        _set("agent_engine", "min_instances", value=11),
        "agent_engine.min_instances: 11 is out of Agent Engine's range; allowed: 0..10",
    ),
    (
        _set("agent_engine", "max_instances", value=1001),
        "agent_engine.max_instances: 1001 is out of Agent Engine's range; allowed: 1..1000",
    ),
    (
        _set("agent_engine", "max_instances", value=0),
        "agent_engine.max_instances: 0 is out of Agent Engine's range; allowed: 1..1000",
    ),
    (
        lambda cfg: agent(cfg)["agent_engine"].update(min_instances=5, max_instances=3),
        "agent_engine.max_instances: 3 is below min_instances (5); max_instances must be >= min_instances",
    ),
    (
        _set("agent_engine", "container_concurrency", value=0),
        "agent_engine.container_concurrency: 0 is not a positive number of requests; Google recommends 2 x cpu + 1",
    ),
    (
        _set("agent_engine", "cpu", value="3"),
        "agent_engine.cpu: \"3\" is not an Agent Engine CPU limit; allowed: '1', '2', '4', '6', '8'",
    ),
    (
        _set("agent_engine", "memory", value="512Mi"),
        'agent_engine.memory: "512Mi" is not an Agent Engine memory limit; allowed: 1Gi..32Gi in whole Gi, e.g. 4Gi',
    ),
    (
        _set("agent_engine", "memory", value="33Gi"),
        'agent_engine.memory: "33Gi" is not an Agent Engine memory limit; allowed: 1Gi..32Gi in whole Gi, e.g. 4Gi',
    ),
    (
        _set("agent_engine", "memory", value="16Gi"),
        'agent_engine.memory: "16Gi" needs at least 4 CPU (cpu is "2"); raise cpu or lower memory',
    ),
    (
        lambda cfg: agent(cfg)["agent_engine"].update(cpu="8", memory="2Gi"),
        'agent_engine.memory: "2Gi" is below the 4Gi required with 8 CPU; raise memory or lower cpu',
    ),
    (
        _set("agent_engine", "kms_key", value="research-key"),
        'agent_engine.kms_key: "research-key" is not a Cloud KMS key name; use '
        "projects/<project>/locations/<region>/keyRings/<ring>/cryptoKeys/<key>",
    ),
    (
        lambda cfg: (with_canary(cfg), agent(cfg)["agent_engine"].update(stable_revision="LATEST")),
        'agent_engine.stable_revision: "LATEST" is a keyword that Agent Engine resolves when traffic is applied, '
        "not the stable revision; give the id of the revision that serves stable",
    ),
    (
        lambda cfg: (with_canary(cfg), agent(cfg)["agent_engine"].update(stable_revision="rev 1")),
        'agent_engine.stable_revision: "rev 1" is not a runtime revision id; give the last segment of the '
        "revision's resource name (projects/.../reasoningEngines/<engine>/runtimeRevisions/<id>)",
    ),
    (
        _drop_stable_revision,
        "agent_engine.stable_revision: null is not set, and stable is: Agent Engine assigns revision ids itself, so "
        "the stable traffic target must be the id of the revision that serves stable, recorded from the deployed "
        "engine's runtime revisions (the release flow records it when a release becomes stable); set it, or remove "
        "stable",
    ),
    (
        _set("agent_engine", "stable_revision", value="7339876424152596480"),
        'agent_engine.stable_revision: "7339876424152596480" is set but stable is not; it names the revision of '
        "the stable release: remove it, or set stable",
    ),
    (
        _set("ingress", value="all"),
        'ingress: "all" '
        + CLOUD_RUN_KEY
        + "Agent Engine is reached through the Vertex AI API and guarded by IAM (invokers); remove it",
    ),
    (
        _set("scaling", "min_instances", value=2),
        "scaling.min_instances: 2 "
        + CLOUD_RUN_KEY
        + "set agent_engine.min_instances, max_instances and container_concurrency instead; remove it",
    ),
    (
        _set("resources", "memory", value="2Gi"),
        'resources.memory: "2Gi" ' + CLOUD_RUN_KEY + "set agent_engine.cpu and agent_engine.memory instead; remove it",
    ),
    (
        _set("probes", "liveness", "period_seconds", value=30),
        "probes.liveness.period_seconds: 30 "
        + CLOUD_RUN_KEY
        + "Agent Engine checks its instances' health itself; remove it",
    ),
    (
        _set("health_path", value="/ready"),
        'health_path: "/ready" ' + CLOUD_RUN_KEY + "Agent Engine checks its instances' health itself; remove it",
    ),
    (
        lambda cfg: (with_canary(cfg), agent(cfg).update(stable_revision="research-agent-2-0-3")),
        'stable_revision: "research-agent-2-0-3" '
        + CLOUD_RUN_KEY
        + "record the stable runtime revision id in agent_engine.stable_revision instead; remove it",
    ),
    (
        lambda cfg: cfg["agent-platform:agents"]["support-bot"].update(agent_engine={"min_instances": 1}),
        "min_instances: 1 is set but runtime is cloud-run; agent_engine configures runtime agent-engine only: "
        "remove it, or set "
        "runtime: agent-engine",
    ),
]


@pytest.mark.parametrize("change, message", BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_engine_values_are_refused_with_their_message(change, message):
    cfg = engine_config()
    change(cfg)
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    prefix = "agent-platform:agents.support-bot.agent_engine." if "is set but runtime" in message else f"{KEY}."
    assert err.value.issues == [prefix + message]


def test_defaults_of_cloud_run_keys_are_accepted_on_agent_engine():
    cfg = engine_config()
    agent(cfg).update(
        ingress="internal-and-cloud-load-balancing", health_path="/healthz", scaling={"max_instances": 10}
    )
    assert platform_from_config(cfg).agents[AGENT].runtime == "agent-engine"


# --- release flow, offline -------------------------------------------------------------------


@pytest.fixture
def engine_project(project: Path) -> Path:
    write_stack(project / "stacks" / "Pulumi.production.yaml", with_canary(engine_config()))
    return project


def test_rollback_moves_only_the_engine_traffic(engine_project):
    from agentstage.release import flow

    change = flow.rollback(engine_project, "production", [AGENT])
    assert change.diff.updates == {
        next(u for u in change.diff.updates if u.endswith(f"::{AGENT}-engine")): [
            "trafficConfig.trafficSplitManual.targets"
        ]
    }
    assert agent(load_stack_from(engine_project))["rollout"]["canary_percent"] == 0


def test_rollout_of_an_engine_canary_reads_the_engine_traffic(engine_project):
    """Issue 11: rollout works on agent-engine (it used to refuse: no Cloud Run service)."""
    import datetime as dt

    from agentstage.release import flow
    from agentstage.release.metrics import MetricsError

    class NoMetrics:
        name = "none"

        def now(self):
            return dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)

        def fetch(self, *args, **kwargs):
            raise MetricsError("no metrics offline")

    change = flow.rollout_once(engine_project, "production", NoMetrics(), agents=[AGENT], assume_deployed=True)
    (result,) = change.analyses
    assert result.window["canary_revision"] == "LATEST" and result.verdict == "hold"


def load_stack_from(project: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load((project / "stacks" / "Pulumi.production.yaml").read_text())["config"]
