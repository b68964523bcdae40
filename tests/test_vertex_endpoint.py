"""The vertex-endpoint runtime: VertexEndpointSpec, VertexEndpointAgent under the offline engine
(its dynamic deployment planned without calling the provider), the policies on its resources,
and every refused spec value's message.

The stack is the reference production stack with research-agent moved to vertex-endpoint."""

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
from components.vertex_deployment import DEPLOYMENT_TYPE, deployed_model_id
from components.vertex_endpoint import endpoint_id

ENDPOINT = "gcp:vertex/aiEndpoint:AiEndpoint"
ENDPOINT_USER = "gcp:vertex/aiEndpointIamMember:AiEndpointIamMember"
AGENT = "research-agent"
KEY = f"agent-platform:agents.{AGENT}"
PROJECT, REGION = "acme-agents-prod", "us-central1"
MODEL = f"projects/{PROJECT}/locations/{REGION}/models/research"
STABLE_IMAGE = "us-docker.pkg.dev/acme-agents/agents/research-agent@sha256:" + "ab" * 32
KMS = f"projects/{PROJECT}/locations/{REGION}/keyRings/agents/cryptoKeys/research"
ENDPOINT_NAME = f"projects/{PROJECT}/locations/{REGION}/endpoints/{endpoint_id(PROJECT, REGION, AGENT)}"
SA = f"{AGENT}-production@{PROJECT}.iam.gserviceaccount.com"
CLOUD_RUN_ONLY = ("scaling", "resources", "ingress", "env", "secrets", "features", "health_path", "probes", "port")


def vertex_config() -> dict[str, Any]:
    cfg = load_stack("production")
    agent = cfg["agent-platform:agents"][AGENT]
    for key in CLOUD_RUN_ONLY:
        agent.pop(key, None)
    agent["runtime"] = "vertex-endpoint"
    agent["vertex_endpoint"] = {
        "model": MODEL,
        "versions": {"2.1.0": "4", "2.0.3": "3"},
        "machine_type": "g2-standard-8",
        "accelerator_type": "NVIDIA_L4",
        "min_replicas": 1,
        "max_replicas": 4,
        "private_service_connect": True,
    }
    return cfg


def agent(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg["agent-platform:agents"][AGENT]


def with_canary(cfg: dict[str, Any], percent: int | None = 5) -> dict[str, Any]:
    a = agent(cfg)
    a["stable"] = {**a["release"], "version": "2.0.3", "image": STABLE_IMAGE}
    if percent is not None:
        a.setdefault("rollout", {})["canary_percent"] = percent
    return cfg


def plan(tmp_path: Path, cfg: dict[str, Any], new_stack: bool = False) -> Plan:
    return run_plan(ROOT, "production", config_file=write_stack(tmp_path / "prod.yaml", cfg), new_stack=new_stack)


def deployment(p: Plan) -> dict[str, Any]:
    return p.find(DEPLOYMENT_TYPE, f"{AGENT}-deployment").inputs


def model(version: str, model_version: str) -> dict[str, Any]:
    return {
        "model": f"{MODEL}@{model_version}",
        "display_name": f"{AGENT}-{version.replace('.', '-')}",
        "machine_type": "g2-standard-8",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
        "min_replica_count": 1,
        "max_replica_count": 4,
        "service_account": SA,
    }


RELEASE_ID = deployed_model_id(ENDPOINT_NAME, model("2.1.0", "4"))
STABLE_ID = deployed_model_id(ENDPOINT_NAME, model("2.0.3", "3"))


# --- traffic ----------------------------------------------------------------------------------


def test_first_deploy_sends_all_traffic_to_the_release(tmp_path):
    d = deployment(plan(tmp_path, vertex_config()))
    assert d["endpoint"] == ENDPOINT_NAME
    assert d["traffic_split"] == {RELEASE_ID: 100}
    assert d["models"] == {RELEASE_ID: model("2.1.0", "4")}


def test_canary_at_5_percent_splits_between_stable_and_release(tmp_path):
    p = plan(tmp_path, with_canary(vertex_config()))
    d = deployment(p)
    assert d["traffic_split"] == {STABLE_ID: 95, RELEASE_ID: 5}
    assert d["models"] == {STABLE_ID: model("2.0.3", "3"), RELEASE_ID: model("2.1.0", "4")}
    assert p.outputs["traffic"][AGENT] == [
        {"revision": RELEASE_ID, "percent": 5, "tag": None},
        {"revision": STABLE_ID, "percent": 95, "tag": None},
    ]


def test_canary_at_100_percent_keeps_stable_deployed_at_0(tmp_path):
    d = deployment(plan(tmp_path, with_canary(vertex_config(), 100)))
    assert d["traffic_split"] == {STABLE_ID: 0, RELEASE_ID: 100}
    assert set(d["models"]) == {STABLE_ID, RELEASE_ID}


def test_rolled_back_undeploys_the_release(tmp_path):
    d = deployment(plan(tmp_path, with_canary(vertex_config(), 0)))
    assert d["traffic_split"] == {STABLE_ID: 100}
    assert set(d["models"]) == {STABLE_ID}


def test_endpoint_is_private_labelled_and_cmek_when_configured(tmp_path):
    cfg = vertex_config()
    agent(cfg)["vertex_endpoint"]["kms_key"] = KMS
    e = plan(tmp_path, cfg).find(ENDPOINT, f"{AGENT}-endpoint").inputs
    assert e["name"] == ENDPOINT_NAME.rsplit("/", 1)[-1]
    assert e["privateServiceConnectConfig"] == {"enablePrivateServiceConnect": True, "projectAllowlists": [PROJECT]}
    assert e["encryptionSpec"] == {"kmsKeyName": KMS}
    assert e["labels"]["agent"] == AGENT and e["labels"]["release"] == "2-1-0"


def test_new_stack_plans_without_calling_the_provider(tmp_path):
    p = plan(tmp_path, with_canary(vertex_config()), new_stack=True)
    assert deployment(p)["traffic_split"] == {STABLE_ID: 95, RELEASE_ID: 5}


def test_kms_key_in_another_region_is_refused(tmp_path):
    cfg = vertex_config()
    agent(cfg)["vertex_endpoint"]["kms_key"] = KMS.replace("us-central1", "europe-west4")
    with pytest.raises(ProgramError, match="vertex_endpoint.kms_key is in europe-west4, not in the endpoint's region"):
        plan(tmp_path, cfg)


# --- policies ---------------------------------------------------------------------------------


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


@pytest.fixture(scope="module")
def vertex_plan(tmp_path_factory) -> Plan:
    return plan(tmp_path_factory.mktemp("vertex"), with_canary(vertex_config()))


@pytest.mark.parametrize("new_stack", [False, True], ids=["existing", "new-stack"])
def test_vertex_stack_passes_the_production_policies(tmp_path, pack, new_stack):
    assert violations(pack, plan(tmp_path, with_canary(vertex_config()), new_stack=new_stack)) == []


def _mutated(p: Plan, type_: str, name: str, change) -> Plan:
    new = copy.deepcopy(p)
    r = new.find(type_, name)
    change(r.inputs)
    if r.outputs:
        change(r.outputs)
    return new


def test_public_member_on_the_endpoint(pack, vertex_plan):
    name = f"{AGENT}-invoker-serviceaccount-orchestrator-at-acme-agents-prod-iam-gserviceaccount-com"
    p = _mutated(vertex_plan, ENDPOINT_USER, name, lambda i: i.update(member="allUsers"))
    assert violations(pack, p) == [
        (
            "no-public-invoker",
            name,
            "grants roles/aiplatform.user to allUsers on the Vertex AI resource, so anyone on the internet can call "
            "it; remove the public member and grant the role to the calling service account or group.",
        )
    ]


def test_public_production_endpoint(pack, vertex_plan):
    p = _mutated(vertex_plan, ENDPOINT, f"{AGENT}-endpoint", lambda i: i.pop("privateServiceConnectConfig"))
    assert violations(pack, p) == [
        (
            "vertex-endpoint-private",
            f"{AGENT}-endpoint",
            "neither privateServiceConnectConfig.enablePrivateServiceConnect nor network is set, so the production "
            "endpoint is reachable on its public address; turn on Private Service Connect "
            "(agentstage: agents.<name>.vertex_endpoint.private_service_connect: true) or peer it with a VPC "
            "network (vertex_endpoint.network).",
        )
    ]
    peered = _mutated(p, ENDPOINT, f"{AGENT}-endpoint", lambda i: i.update(network="projects/123/global/networks/ai"))
    assert violations(pack, peered) == []


def test_split_not_100(pack, vertex_plan):
    p = _mutated(
        vertex_plan, DEPLOYMENT_TYPE, f"{AGENT}-deployment", lambda i: i["traffic_split"].update({STABLE_ID: 90})
    )
    assert violations(pack, p) == [
        (
            "vertex-traffic-split",
            f"{AGENT}-deployment",
            "traffic_split sums to 95%, not 100; Vertex AI requires the percentages of an endpoint's split to add up "
            "to 100 (agentstage: agents.<name>.rollout.canary_percent).",
        )
    ]


def test_split_names_a_model_not_deployed(pack, vertex_plan):
    def change(i: dict[str, Any]) -> None:
        i["traffic_split"] = {RELEASE_ID: 5, "1000000001": 95}

    p = _mutated(vertex_plan, DEPLOYMENT_TYPE, f"{AGENT}-deployment", change)
    assert violations(pack, p) == [
        (
            "vertex-traffic-split",
            f"{AGENT}-deployment",
            "traffic_split sends 95% to deployed model 1000000001, which this resource does not deploy; Vertex AI "
            "refuses a split naming a model the endpoint does not serve.",
        )
    ]


def test_cmek_required_by_the_policy_config(tmp_path, vertex_plan):
    config = load_stack_config(load_project(ROOT), "production")
    policy = {
        **json.loads((PACK_DIR / "config" / "production.json").read_text()),
        "vertex-endpoint-cmek": {"required": True},
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    with PolicyPackProcess(
        PACK_DIR, project="agent-platform", stack="production", config=config.values, secret_keys=config.secret_keys
    ) as strict:
        strict.configure(load_policy_config(tmp_path / "policy.json"))
        assert violations(strict, vertex_plan) == [
            (
                "vertex-endpoint-cmek",
                f"{AGENT}-endpoint",
                "encryptionSpec.kmsKeyName is not set, so the endpoint and its deployed models are encrypted with a "
                "Google-managed key; set it to a Cloud KMS key in the endpoint's region "
                "(agentstage: agents.<name>.vertex_endpoint.kms_key).",
            )
        ]
        with_key = _mutated(
            vertex_plan, ENDPOINT, f"{AGENT}-endpoint", lambda i: i.update(encryptionSpec={"kmsKeyName": KMS})
        )
        assert violations(strict, with_key) == []


# --- refused spec values ----------------------------------------------------------------------


def _set(*path: str, value: Any):
    def change(cfg: dict[str, Any]) -> None:
        target = agent(cfg)
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    return change


def _drop(*path: str):
    def change(cfg: dict[str, Any]) -> None:
        target = agent(cfg)
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


CLOUD_RUN_KEY = "is a Cloud Run setting, and runtime vertex-endpoint does not use it: "
BAD = [
    (
        _set("vertex_endpoint", "model", value="research"),
        'vertex_endpoint.model: "research" is not a Model Registry model; use '
        "projects/<project>/locations/<region>/models/<id> (the version is set per release in versions)",
    ),
    (
        _set("vertex_endpoint", "versions", value={"2.1.0": "v4"}),
        'vertex_endpoint.versions.2.1.0: "v4" is not a model version id; Model Registry version ids are numbers '
        "from 1 (quote them: '3')",
    ),
    (
        _set("vertex_endpoint", "versions", value={"2.0.3": "3"}),
        "vertex_endpoint.versions: [\"2.0.3\"] has no model version for the release release '2.1.0'; add 2.1.0: "
        "<model version id> to vertex_endpoint.versions",
    ),
    (
        _set("vertex_endpoint", "machine_type", value="N1 standard"),
        'vertex_endpoint.machine_type: "N1 standard" is not a Compute Engine machine type; use a name such as '
        "n1-standard-4 or g2-standard-8",
    ),
    (
        _set("vertex_endpoint", "accelerator_type", value="L4"),
        'vertex_endpoint.accelerator_type: "L4" is not a Vertex AI accelerator type; allowed: '
        "NVIDIA_TESLA_K80, NVIDIA_TESLA_P100, NVIDIA_TESLA_V100, NVIDIA_TESLA_P4, NVIDIA_TESLA_T4, "
        "NVIDIA_TESLA_A100, NVIDIA_A100_80GB, NVIDIA_L4, NVIDIA_H100_80GB, NVIDIA_H100_MEGA_80GB, "
        "NVIDIA_H200_141GB, NVIDIA_B200, NVIDIA_GB200, NVIDIA_RTX_PRO_6000, TPU_V2, TPU_V3, TPU_V4_POD, "
        "TPU_V5_LITEPOD",
    ),
    (
        _set("vertex_endpoint", "accelerator_count", value=3),
        "vertex_endpoint.accelerator_count: 3 is not an accelerator count; allowed: 1, 2, 4, 8, 16",
    ),
    (
        lambda cfg: (
            agent(cfg)["vertex_endpoint"].pop("accelerator_type"),
            agent(cfg)["vertex_endpoint"].update(accelerator_count=2),
        ),
        "vertex_endpoint.accelerator_count: 2 is set but accelerator_type is not; set accelerator_type, or remove "
        "accelerator_count",
    ),
    (
        _set("vertex_endpoint", "min_replicas", value=0),
        "vertex_endpoint.min_replicas: 0 is below 1; Vertex AI keeps at least 1 replica of a deployed model "
        "(min_replica_count >= 1)",
    ),
    (
        _set("vertex_endpoint", "max_replicas", value=0),
        "vertex_endpoint.max_replicas: 0 is below min_replicas (1); max_replicas must be >= min_replicas",
    ),
    (
        _set("vertex_endpoint", "network", value="default"),
        'vertex_endpoint.network: "default" is not a VPC network name; use '
        "projects/<project number>/global/networks/<name>",
    ),
    (
        _set("vertex_endpoint", "network", value="projects/123/global/networks/ai"),
        'vertex_endpoint.network: "projects/123/global/networks/ai" is set with private_service_connect: true; '
        "Vertex AI allows one of network (VPC peering) or Private Service Connect: remove one",
    ),
    (
        _set("vertex_endpoint", "kms_key", value="research-key"),
        'vertex_endpoint.kms_key: "research-key" is not a Cloud KMS key name; use '
        "projects/<project>/locations/<region>/keyRings/<ring>/cryptoKeys/<key>",
    ),
    (
        _drop("vertex_endpoint"),
        "vertex_endpoint: null is not set; runtime vertex-endpoint needs the model to serve: set "
        "vertex_endpoint.model and vertex_endpoint.versions",
    ),
    (
        _set("ingress", value="internal"),
        f'ingress: "internal" {CLOUD_RUN_KEY}set vertex_endpoint.private_service_connect or '
        "vertex_endpoint.network instead; remove it",
    ),
    (
        _set("scaling", "max_instances", value=4),
        f"scaling.max_instances: 4 {CLOUD_RUN_KEY}set vertex_endpoint.min_replicas and max_replicas instead; remove it",
    ),
    (
        _set("resources", "cpu", value="2"),
        f'resources.cpu: "2" {CLOUD_RUN_KEY}set vertex_endpoint.machine_type and the accelerator instead; remove it',
    ),
    (
        _set("env", value={"MAX_SOURCES": "8"}),
        f'env: {{"MAX_SOURCES": "8"}} {CLOUD_RUN_KEY}the model\'s serving container declares its env in the Model '
        "Registry; remove it",
    ),
    (
        lambda cfg: agent(with_canary(cfg)).update(stable_revision="research-agent-2-0-3"),
        f'stable_revision: "research-agent-2-0-3" {CLOUD_RUN_KEY}the stable model version is '
        "vertex_endpoint.versions[stable.version]; remove it",
    ),
]


@pytest.mark.parametrize("change, message", BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_vertex_values_are_refused_with_their_message(change, message):
    cfg = vertex_config()
    change(cfg)
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    assert err.value.issues == [f"{KEY}.{message}"]


def test_vertex_section_on_cloud_run_is_refused():
    cfg = vertex_config()
    cfg["agent-platform:agents"]["support-bot"]["vertex_endpoint"] = {"model": MODEL, "versions": {"1.4.0": "1"}}
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    assert err.value.issues == [
        "agent-platform:agents.support-bot.vertex_endpoint: "
        + json.dumps({"model": MODEL, "versions": {"1.4.0": "1"}})
        + " is set but runtime is cloud-run; vertex_endpoint configures runtime vertex-endpoint only: remove it, "
        "or set runtime: vertex-endpoint"
    ]


def test_stable_without_a_model_version_is_refused():
    cfg = with_canary(vertex_config())
    del agent(cfg)["vertex_endpoint"]["versions"]["2.0.3"]
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    assert err.value.issues == [
        f"{KEY}.vertex_endpoint.versions: [\"2.1.0\"] has no model version for the stable release '2.0.3'; add "
        "2.0.3: <model version id> to vertex_endpoint.versions"
    ]


# --- release.image is optional on vertex-endpoint only ----------------------------------------


def without_images(cfg: dict[str, Any]) -> dict[str, Any]:
    for release in ("release", "stable"):
        agent(cfg).get(release, {}).pop("image", None)
    return cfg


def test_an_endpoint_release_without_an_image_plans_the_same_deployment(tmp_path):
    """The model version is the release: leaving the image out changes no deployed model, id
    or split."""
    with_image = deployment(plan(tmp_path, with_canary(vertex_config())))
    cfg = without_images(with_canary(vertex_config()))
    assert "image" not in agent(cfg)["release"] and "image" not in agent(cfg)["stable"]
    assert deployment(plan(tmp_path, cfg)) == with_image
    assert with_image["traffic_split"] == {STABLE_ID: 95, RELEASE_ID: 5}


def test_the_manifest_digest_without_an_image_is_stable():
    from agentstage.release.manifest import digest

    release = {"version": "2.1.0", "model": "research", "tools": {"search": "2"}}
    assert digest(release) == digest({**release, "image": None}) == digest(dict(reversed(list(release.items()))))
    assert digest(release) != digest({**release, "version": "2.1.1"})


@pytest.mark.parametrize(
    "agent_name, which, message",
    [
        ("support-bot", "release", "runtime cloud-run runs the container image of the release"),
        ("research-agent", "stable", "runtime cloud-run runs the container image of the stable release"),
    ],
)
def test_other_runtimes_still_need_the_image(agent_name, which, message):
    cfg = load_stack("production")
    a = cfg["agent-platform:agents"][agent_name]
    if which == "stable":
        a["stable"] = {**a["release"], "version": "2.0.3"}
    del a[which]["image"]
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    assert err.value.issues == [
        f"agent-platform:agents.{agent_name}.{which}.image: null is not set; {message}: set it to "
        "<repo>/<image>@sha256:<64 hex> (only runtime vertex-endpoint, which serves a Model Registry model, "
        "does without)"
    ]


@pytest.mark.parametrize(
    "key, example", [("model", "projects/<p>/locations/<region>/models/<id>"), ("versions", "{1.0.0: '1'}")]
)
def test_an_endpoint_without_its_model_is_refused(key, example):
    cfg = without_images(vertex_config())
    del agent(cfg)["vertex_endpoint"][key]
    with pytest.raises(ConfigError) as err:
        platform_from_config(cfg)
    assert err.value.issues == [
        f"{KEY}.vertex_endpoint.{key}: null is not set; runtime vertex-endpoint serves the Model Registry model "
        f"version each release names, not release.image: set vertex_endpoint.{key}, e.g. {example}"
    ]


def test_the_release_flow_runs_an_endpoint_without_images(tmp_path, monkeypatch):
    """examples/runtimes with the vertex-endpoint agent's images left out: promote, rollout and
    rollback through the CLI move its split as with them."""
    import shutil

    from ruamel.yaml import YAML
    from typer.testing import CliRunner

    from agentstage.cli import app

    shutil.copytree(ROOT / "examples" / "runtimes", tmp_path / "demo")
    yaml = YAML()
    for stack in ("staging", "production"):
        path = tmp_path / "demo" / "stacks" / f"Pulumi.{stack}.yaml"
        doc = yaml.load(path.read_text())
        triage = doc["config"]["agent-platform:agents"]["triage-model"]
        assert triage["runtime"] == "vertex-endpoint"
        for release in ("release", "stable"):
            if release in triage:
                del triage[release]["image"]
        with path.open("w") as out:
            yaml.dump(doc, out)
    monkeypatch.chdir(tmp_path / "demo")
    evidence = " ".join(
        f"--eval evidence/eval-{a}.json"
        for a in ("support-bot-1.5.0", "research-agent-2.2.0", "triage-model-3.1.0", "summarizer-1.3.0")
    )
    runner = CliRunner()

    def run(command: str) -> str:
        result = runner.invoke(app, command.split(), catch_exceptions=False, terminal_width=200)
        assert result.exit_code == 0, f"{command}\n{result.output}"
        return " ".join(result.output.split())

    assert "triage-model 3.1.0 at 10%" in run(
        f"promote staging production {evidence} --load-test evidence/locust "
        "--observed-file evidence/observed-production.json"
    )
    triage = YAML(typ="safe").load((tmp_path / "demo" / "stacks" / "Pulumi.production.yaml").read_text())["config"][
        "agent-platform:agents"
    ]["triage-model"]
    assert triage["stable"] == {"version": "3.0.0", "model": "triage"}
    assert "image" not in triage["release"]
    out = run("rollout production --metrics-file evidence/metrics-healthy.json --skip-bake --assume-deployed")
    assert "triage-model-deployment: traffic_split" in out
    out = run("rollback production")
    assert "triage-model-deployment: models." in out
