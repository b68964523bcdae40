"""Issue 11: promote, rollout, rollback and status on every runtime. The mixed stack of
examples/runtimes (one agent each on cloud-run, agent-engine, vertex-endpoint and gke) run through
the CLI on a copy, and the observers of Agent Engine and Vertex AI endpoints read with the real
client library from local REST servers on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.release.observed import AgentEngineObserver, ObservedError, VertexEndpointObserver
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "runtimes"
runner = CliRunner()
EVIDENCE = (
    "--eval evidence/eval-support-bot-1.5.0.json --eval evidence/eval-research-agent-2.2.0.json "
    "--eval evidence/eval-triage-model-3.1.0.json --eval evidence/eval-summarizer-1.3.0.json "
    "--load-test evidence/locust"
)
PROMOTE = f"promote staging production {EVIDENCE} --observed-file evidence/observed-production.json"
ROLLOUT = "rollout production --metrics-file evidence/metrics-healthy.json --skip-bake --assume-deployed"
ENGINE_ID = "7339876424152596480"
PROJECT, REGION = "acme-agents-prod", "us-central1"


def run(command: str, code: int = 0) -> str:
    result = runner.invoke(app, command.split(), catch_exceptions=False, terminal_width=200)
    assert result.exit_code == code, f"{command}\n{result.output}"
    return result.output if "--json" in command else " ".join(result.output.split())


@pytest.fixture
def demo(tmp_path, monkeypatch):
    shutil.copytree(EXAMPLE, tmp_path / "demo")
    monkeypatch.chdir(tmp_path / "demo")
    return tmp_path / "demo"


def agents(demo) -> dict:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load((demo / "stacks" / "Pulumi.production.yaml").read_text())["config"][
        "agent-platform:agents"
    ]


def status() -> dict:
    return {a["agent"]: a for a in json.loads(run("status production --json"))["stacks"][0]["agents"]}


def test_readme_shows_the_commands():
    readme = " ".join((ROOT / "README.md").read_text().replace("\\\n", " ").split())
    for command in (PROMOTE, ROLLOUT, "rollback production", "status production"):
        assert f"agentstage {command}" in readme, command


def test_mixed_stack_promotes_rolls_out_rolls_back_and_shows_status(demo):
    out = run(PROMOTE)
    assert (
        "research-agent 2.2.0 at 10%, summarizer 1.3.0 at 10%, support-bot 1.5.0 at 5%, triage-model 3.1.0 at 10%"
        in " ".join(out.split())
    )
    a = agents(demo)
    assert a["research-agent"]["agent_engine"]["stable_revision"] == ENGINE_ID  # read from observed state
    assert a["support-bot"]["stable_revision"].startswith("support-bot-1-4-0-")
    assert "stable_revision" not in a["triage-model"]  # deployed-model ids are derived
    assert "stable_revision" not in a["summarizer"]  # the tracks are the Services <agent>-stable/-canary
    assert [a[n]["stable"]["version"] for n in sorted(a)] == ["2.1.0", "1.2.0", "1.4.0", "3.0.0"]

    before = status()
    assert {n: s["runtime"] for n, s in before.items()} == {
        "research-agent": "agent-engine",
        "summarizer": "gke",
        "support-bot": "cloud-run",
        "triage-model": "vertex-endpoint",
    }
    assert before["research-agent"]["traffic"] == [
        {"revision": ENGINE_ID, "percent": 90, "tag": None},
        {"revision": "LATEST", "percent": 10, "tag": None},
    ]
    endpoint = before["triage-model"]
    assert [t["percent"] for t in endpoint["traffic"]] == [90, 10]
    assert endpoint["traffic"][1]["revision"] == endpoint["revision"] and endpoint["revision"].isdigit()

    assert before["summarizer"]["traffic"] == [
        {"revision": "summarizer-stable", "percent": 90, "tag": None},
        {"revision": "summarizer-canary", "percent": 10, "tag": None},
    ]

    out = run(ROLLOUT)
    assert "4 to update" in out
    for resource in (
        "research-agent-engine: trafficConfig",
        "support-bot-service: traffics",
        "summarizer-route: spec.rules[0].backendRefs[0].weight",
        "triage-model-deployment: traffic_split",
    ):
        assert resource in out
    a = agents(demo)
    assert [a[n]["rollout"]["canary_percent"] for n in sorted(a)] == [100, 50, 50, 100]

    out = run("rollback production")
    assert "plan diff: 0 to create, 4 to update, 0 to delete" in out
    assert "research-agent-engine: trafficConfig.trafficSplitManual.targets[0].runtimeRevisionName" in out
    assert "support-bot-service: traffics" in out
    # GKE: the HTTPRoute's backendRef weights only, no other resource of the agent
    route = "summarizer-route: spec.rules[0].backendRefs[0].weight, spec.rules[0].backendRefs[1].weight"
    assert route in out
    assert [w for w in out.split() if w.startswith("summarizer-")] == ["summarizer-route:"]
    assert f"triage-model-deployment: models.{endpoint['revision']}, traffic_split" in out  # the release undeployed
    after = status()
    assert {n: (s["state"], s["canary_percent"]) for n, s in after.items()} == {n: ("rolled back", 0) for n in after}
    assert after["research-agent"]["traffic"] == [{"revision": ENGINE_ID, "percent": 100, "tag": None}]
    assert after["summarizer"]["traffic"] == [{"revision": "summarizer-stable", "percent": 100, "tag": None}]
    assert after["triage-model"]["traffic"] == [
        {"revision": endpoint["traffic"][0]["revision"], "percent": 100, "tag": None}
    ]
    live = json.loads(run("status production --json --observed-file evidence/observed-production.json"))
    seen = {x["agent"]: x["live"] for x in live["stacks"][0]["agents"]}
    assert seen["research-agent"]["split"] == {ENGINE_ID: 100}
    assert seen["summarizer"]["split"] == {"summarizer-stable": 100}


def test_promoting_an_engine_without_observed_state_is_refused(demo, monkeypatch):
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(*args, **kwargs):
        raise DefaultCredentialsError("none")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    out = " ".join(run(f"promote staging production {EVIDENCE}", 1).split())
    assert "research-agent: runs on Agent Engine, whose revision ids Google assigns" in out
    assert "no observed state file (--observed-file) and no Google credentials" in out
    assert agents(demo)["research-agent"].get("stable") is None


def test_rollout_observes_each_runtime_from_the_observed_state_file(demo):
    run(PROMOTE)
    observed = {
        "services": {
            "support-bot": {"traffic": [{"revision": agents(demo)["support-bot"]["stable_revision"], "percent": 100}]},
            "research-agent": {"traffic": [{"revision": ENGINE_ID, "percent": 100}], "latest": ENGINE_ID},
            "triage-model": {"traffic": [{"revision": "1", "percent": 100}]},
        }
    }
    (demo / "observed.json").write_text(json.dumps(observed))
    out = run(
        "rollout production --metrics-file evidence/metrics-healthy.json --skip-bake --observed-file observed.json"
    )
    assert "wrote" not in out  # nothing deployed yet: every canary waits for its deploy


# --- observers, with the real client library against local servers -----------------------------


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_vertex_endpoint_observer_reads_the_split_and_deployed_models():
    pytest.importorskip("google.cloud.aiplatform_v1")
    from google.auth.credentials import AnonymousCredentials

    from components.vertex_endpoint import endpoint_id
    from tests.vertex_fake import FakeVertex, serve

    fake = FakeVertex()
    name = f"projects/{PROJECT}/locations/{REGION}/endpoints/{endpoint_id(PROJECT, REGION, 'triage-model')}"
    fake.add_endpoint(name)
    fake.endpoints[name]["deployedModels"] = [{"id": "5232032217"}, {"id": "4750493303"}]
    fake.endpoints[name]["trafficSplit"] = {"5232032217": 90, "4750493303": 10}
    server, url = serve(fake)
    try:
        obs = VertexEndpointObserver(PROJECT, REGION, api_endpoint=url, credentials=AnonymousCredentials())
        seen = obs.observe("triage-model")
        assert seen.split() == {"5232032217": 90, "4750493303": 10}
        assert seen.matches({"5232032217": 90, "4750493303": 10}) and seen.source.endswith(f"({name})")
        fake.endpoints[name]["trafficSplit"] = {"5232032217": 90, "999": 10}
        seen = obs.observe("triage-model")
        assert seen.ready == {"5232032217": True, "999": False} and not seen.matches({"5232032217": 90, "999": 10})
        with pytest.raises(ObservedError, match="endpoint other .* does not exist yet"):
            obs.observe("other")
    finally:
        server.shutdown()
    down = VertexEndpointObserver(PROJECT, REGION, api_endpoint=closed_port(), credentials=AnonymousCredentials())
    with pytest.raises(ObservedError, match="Vertex AI: cannot read endpoint triage-model"):
        down.observe("triage-model")


def test_agent_engine_observer_reads_traffic_and_revisions():
    pytest.importorskip("google.cloud.aiplatform_v1beta1")
    from google.auth.credentials import AnonymousCredentials

    from tests.engine_fake import FakeEngines, serve

    fake = FakeEngines()
    engine = f"projects/{PROJECT}/locations/{REGION}/reasoningEngines/42"
    manual = {
        "trafficSplitManual": {
            "targets": [
                {"runtimeRevisionName": ENGINE_ID, "percent": 90},
                {"runtimeRevisionName": "LATEST", "percent": 10},
            ]
        }
    }
    revisions = [
        (ENGINE_ID, "ACTIVE", "2026-11-01T00:00:00Z"),
        ("8000000000000000000", "ACTIVE", "2026-11-02T00:00:00Z"),
    ]
    fake.add(engine, "research-agent", manual, revisions)
    server, url = serve(fake)
    try:
        obs = AgentEngineObserver(PROJECT, REGION, api_endpoint=url, credentials=AnonymousCredentials())
        seen = obs.observe("research-agent")
        assert seen.split() == {ENGINE_ID: 90, "8000000000000000000": 10} and seen.latest == "8000000000000000000"
        assert seen.matches({ENGINE_ID: 90, "LATEST": 10})  # LATEST is the newest revision
        fake.add(engine, "research-agent", {"trafficSplitAlwaysLatest": {}}, revisions[:1])
        seen = obs.observe("research-agent")
        assert seen.split() == {ENGINE_ID: 100} and seen.ready == {ENGINE_ID: True}
        fake.add(engine, "research-agent", manual, [(ENGINE_ID, "ARCHIVED", "2026-11-01T00:00:00Z")])
        seen = obs.observe("research-agent")
        assert seen.ready == {ENGINE_ID: False} and "no active one" not in seen.message
        with pytest.raises(ObservedError, match="no engine with display name other"):
            obs.observe("other")
        with pytest.raises(ObservedError, match="does not exist yet"):
            obs.observe(f"projects/{PROJECT}/locations/{REGION}/reasoningEngines/404")
    finally:
        server.shutdown()
    down = AgentEngineObserver(PROJECT, REGION, api_endpoint=closed_port(), credentials=AnonymousCredentials())
    with pytest.raises(ObservedError, match="Agent Engine: cannot read engine research-agent"):
        down.observe("research-agent")


# --- gke: the HTTPRoute adapter (the example has no GKE agent yet: see README "Other runtimes") ---


def test_gke_adapter_finds_the_httproute_and_its_tracks(tmp_path):
    from agentstage.config import platform_from_config
    from agentstage.diff import diff_plans
    from agentstage.release.observed import GkeRouteObserver
    from agentstage.release.runtimes import RUNTIMES, traffic_targets
    from tests.test_gke import AGENT, ROUTE, gke_config, plan, with_canary

    cfg = with_canary(gke_config(), 5)
    spec = platform_from_config(cfg, namespace="agent-platform")
    at5 = plan(tmp_path, cfg)
    target = traffic_targets(at5, spec, [AGENT])[AGENT]
    assert (target.runtime, target.name, target.candidate, target.stable) == (
        "gke",
        AGENT,
        f"{AGENT}-canary",
        f"{AGENT}-stable",
    )
    assert target.urn == at5.find(ROUTE, f"{AGENT}-route").urn
    cfg["agent-platform:agents"][AGENT]["rollout"]["canary_percent"] = 50
    at50 = plan(tmp_path, cfg)
    diff = diff_plans(at5, at50)
    assert list(diff.updates) == [target.urn] and not diff.creates and not diff.deletes
    assert RUNTIMES["gke"].wrong_paths(diff.updates[target.urn], None) == []
    assert RUNTIMES["gke"].wrong_paths(["spec.parentRefs[0].name"], None) == ["spec.parentRefs[0].name"]
    with pytest.raises(ObservedError, match=r"not read here .*\(--observed-file\)"):
        GkeRouteObserver().observe(AGENT)
