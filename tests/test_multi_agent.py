"""examples/multi-agent: an orchestrator calling two specialists over A2A, and the agent registry.

The example is planned offline (also as a first preview of a new stack) and checked by the policy
pack; the invoker edges, identities, ingress and cards are asserted value by value; the cards are
served from a local HTTP server at their bucket paths and read back with the a2a-sdk's own card
resolver, as an A2A client discovers them; `agentstage registry` is run through the CLI; and a
promotion shows the card's version following the release."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import threading
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.diff import diff_plans
from agentstage.engine import ProgramError, run_plan
from agentstage.policy import run_check
from agentstage.registry import read_registry, uploaded_text
from tests.conftest import ROOT, write_stack

EXAMPLE = ROOT / "examples" / "multi-agent"
SERVICE = "gcp:cloudrunv2/service:Service"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
BUCKET = "gcp:storage/bucket:Bucket"
OBJECT = "gcp:storage/bucketObject:BucketObject"
READER = "gcp:storage/bucketIAMMember:BucketIAMMember"
AGENTS = ("flight-search", "hotel-search", "trip-planner")
PROJECTS = {"staging": "acme-travel-staging", "production": "acme-travel-prod"}
VERSIONS = {
    "staging": {"trip-planner": "1.3.0", "flight-search": "2.0.1", "hotel-search": "1.1.0"},
    "production": {"trip-planner": "1.2.0", "flight-search": "2.0.1", "hotel-search": "1.1.0"},
}
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)


def config_of(stack: str) -> dict:
    return YAML(typ="safe", pure=True).load((EXAMPLE / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]


def email(agent: str, stack: str) -> str:
    return f"{agent}-{stack}@{PROJECTS[stack]}.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def plans():
    return {stack: run_plan(EXAMPLE, stack) for stack in ("staging", "production")}


@pytest.fixture
def copy_of_example(tmp_path: Path) -> Path:
    dest = tmp_path / "multi-agent"
    shutil.copytree(EXAMPLE, dest)
    return dest


def published(resource) -> str:
    """The text a card object uploads (pulumi-gcp keeps ``content`` secret: the plan shows
    ``[secret]``, the request carries the value)."""
    assert resource.inputs["content"] == "[secret]"
    text = uploaded_text(resource)
    assert text is not None
    return text


# --- the plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_inventory_identities_and_exactly_the_invoker_edges(plans, stack):
    plan = plans[stack]
    inventory = Counter(r.type for r in plan.resources if r.custom)
    assert {t: inventory[t] for t in (SERVICE, INVOKER, BUCKET, OBJECT, READER)} == {
        SERVICE: 3,
        INVOKER: 3,  # two A2A edges and the frontend group on the orchestrator
        BUCKET: 1,
        OBJECT: 3,
        READER: 1,
    }
    assert inventory["gcp:serviceaccount/account:Account"] == 3
    assert sum(inventory.values()) == 88
    # each agent runs as its own identity
    for agent in AGENTS:
        svc = plan.find(SERVICE, f"{agent}-service").inputs
        assert svc["template"]["serviceAccount"] == email(agent, stack)
        assert svc["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY" and svc["invokerIamDisabled"] is False
    edges = sorted((r.inputs["member"], r.inputs["name"], r.inputs["role"]) for r in plan.by_type(INVOKER))
    assert edges == [
        ("group:travel-frontend@acme.com", "trip-planner", "roles/run.invoker"),
        (f"serviceAccount:{email('trip-planner', stack)}", "flight-search", "roles/run.invoker"),
        (f"serviceAccount:{email('trip-planner', stack)}", "hotel-search", "roles/run.invoker"),
    ]
    # nothing public, nothing project-wide: no invoker role at project level, no allUsers anywhere
    assert not [r for r in plan.resources if r.inputs.get("role") == "roles/run.invoker" and r.type != INVOKER]
    assert "allUsers" not in json.dumps([r.inputs for r in plan.resources])
    assert "allAuthenticatedUsers" not in json.dumps([r.inputs for r in plan.resources])


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_registry_bucket_is_private_and_read_by_the_caller_only(plans, stack):
    plan = plans[stack]
    (bucket,) = plan.by_type(BUCKET)
    name = f"{PROJECTS[stack]}-agent-cards-{stack}"
    assert bucket.inputs["name"] == name
    assert bucket.inputs["uniformBucketLevelAccess"] is True and bucket.inputs["publicAccessPrevention"] == "enforced"
    ((reader),) = plan.by_type(READER)
    assert (reader.inputs["bucket"], reader.inputs["role"], reader.inputs["member"]) == (
        name,
        "roles/storage.objectViewer",
        f"serviceAccount:{email('trip-planner', stack)}",
    )
    objects = {r.inputs["name"]: r.inputs for r in plan.by_type(OBJECT)}
    assert sorted(objects) == [f"{a}/.well-known/agent-card.json" for a in AGENTS]
    for agent in AGENTS:
        obj = objects[f"{agent}/.well-known/agent-card.json"]
        assert obj["bucket"] == name and obj["contentType"] == "application/json"
        assert obj["cacheControl"] == "no-cache"
        assert obj["metadata"]["a2a-card-version"] == VERSIONS[stack][agent]
    assert plan.outputs["registry_bucket"] == name
    assert plan.outputs["card_urls"] == {a: f"https://storage.googleapis.com/{name}/{a}" for a in AGENTS}


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_each_card_is_an_a2a_card_of_its_release(plans, stack):
    from a2a.client.card_resolver import parse_agent_card
    from a2a.utils.proto_utils import validate_proto_required_fields

    plan = plans[stack]
    registry = plan.outputs["registry"]
    assert sorted(registry) == list(AGENTS)
    objects = {r.inputs["name"].split("/")[0]: r for r in plan.by_type(OBJECT)}
    for agent in AGENTS:
        url = plan.find(SERVICE, f"{agent}-service").outputs["uri"]
        card = registry[agent]
        assert json.loads(published(objects[agent])) == card  # the bucket serves the stack output's card
        parsed = parse_agent_card(copy.deepcopy(card))
        validate_proto_required_fields(parsed)  # every field A2A marks REQUIRED is there
        assert (parsed.name, parsed.version) == (agent, VERSIONS[stack][agent])
        (interface,) = parsed.supported_interfaces
        assert (interface.url, interface.protocol_binding, interface.protocol_version) == (url, "JSONRPC", "1.0")
        scheme = parsed.security_schemes["google-id-token"].open_id_connect_security_scheme
        assert scheme.open_id_connect_url == "https://accounts.google.com/.well-known/openid-configuration"
        assert list(parsed.security_requirements[0].schemes) == ["google-id-token"]
        assert list(parsed.default_input_modes) == ["text/plain"] == list(parsed.default_output_modes)
    planner = parse_agent_card(copy.deepcopy(registry["trip-planner"]))
    assert planner.capabilities.streaming is True
    assert [(s.id, s.name, list(s.tags), list(s.examples)) for s in planner.skills] == [
        ("plan-trip", "Plan a trip", ["travel", "itinerary"], ["Plan 3 days in Lisbon in May under 1500 EUR"])
    ]
    hotels = parse_agent_card(copy.deepcopy(registry["hotel-search"]))
    assert [s.id for s in hotels.skills] == ["search-hotels", "hotel-details"]
    assert hotels.capabilities.streaming is False


def test_a_first_preview_knows_every_card_field_but_the_url():
    plan = run_plan(EXAMPLE, "production", new_stack=True)
    registry = plan.outputs["registry"]
    for agent in AGENTS:
        card = registry[agent]
        assert card["supportedInterfaces"][0]["url"] == "[unknown]"
        assert (card["name"], card["version"]) == (agent, VERSIONS["production"][agent])
    edges = sorted((r.inputs["member"], r.inputs["name"]) for r in plan.by_type(INVOKER))
    assert edges[1] == (f"serviceAccount:{email('trip-planner', 'production')}", "flight-search")


def test_cards_are_discovered_by_the_a2a_card_resolver_at_their_bucket_path(plans, tmp_path):
    """Serve each planned card object at ``/<bucket>/<object name>`` (Cloud Storage's path-style
    URL) and resolve it with the a2a-sdk's A2ACardResolver from the card URL the stack exports:
    the resolver appends /.well-known/agent-card.json to that base URL, as for any agent."""
    import httpx
    from a2a.client.card_resolver import A2ACardResolver

    plan = plans["production"]
    bucket = plan.outputs["registry_bucket"]
    for obj in plan.by_type(OBJECT):
        path = tmp_path / bucket / obj.inputs["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(published(obj))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:

        async def resolve(agent: str):
            base = plan.outputs["card_urls"][agent].replace(
                "https://storage.googleapis.com", f"http://127.0.0.1:{server.server_address[1]}"
            )
            async with httpx.AsyncClient() as client:
                return await A2ACardResolver(client, base).get_agent_card()

        for agent in AGENTS:
            card = asyncio.run(resolve(agent))
            assert (card.name, card.version) == (agent, VERSIONS["production"][agent])
            assert card.supported_interfaces[0].url == plan.find(SERVICE, f"{agent}-service").outputs["uri"]
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


# --- the policy pack -----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
@pytest.mark.parametrize("new_stack", [False, True])
def test_the_example_passes_the_policy_pack(stack, new_stack):
    report = run_check(EXAMPLE, stack, new_stack=new_stack)
    assert [(v.policy, v.message) for v in report.violations] == []
    assert "a2a-agent-card" in {p.name for p in report.policies}


def _without_card(stack: str, agent: str) -> dict:
    config = config_of(stack)
    del config["agent-platform:agents"][agent]["card"]
    return config


@pytest.mark.parametrize("new_stack", [False, True])
def test_a_production_agent_called_by_another_needs_a_card(copy_of_example, new_stack):
    stack_file = write_stack(copy_of_example / "no-card.yaml", _without_card("production", "flight-search"))
    report = run_check(copy_of_example, "production", config_file=stack_file, new_stack=new_stack)
    assert [(v.policy, v.resource_name, v.enforcement, v.message) for v in report.violations] == [
        (
            "a2a-agent-card",
            "flight-search-service",
            "mandatory",
            "the production agent flight-search is called by other agents "
            "(trip-planner-production@acme-travel-prod.iam.gserviceaccount.com) but has no A2A agent card in the "
            "registry (flight-search/.well-known/agent-card.json), so its callers cannot discover its URL, version, "
            "skills or how to authenticate; publish one (agentstage: agents.flight-search.card).",
        )
    ]


def test_an_agent_invoked_through_invokers_counts_as_called(copy_of_example):
    """The rule reads IAM, not `calls`: another agent's identity in `invokers` is a caller too."""
    config = _without_card("production", "hotel-search")
    agents = config["agent-platform:agents"]
    agents["trip-planner"]["calls"] = ["flight-search"]
    agents["hotel-search"]["invokers"] = [f"serviceAccount:{email('flight-search', 'production')}"]
    # and a network path for that call (policy agent-calls-through-vpc; tests/test_vpc_egress.py)
    agents["flight-search"]["vpc_egress"] = {"network": "travel-agents", "egress": "all-traffic"}
    report = run_check(copy_of_example, "production", config_file=write_stack(copy_of_example / "inv.yaml", config))
    assert [(v.policy, v.resource_name) for v in report.violations] == [("a2a-agent-card", "hotel-search-service")]
    assert "called by other agents (flight-search-production@" in report.violations[0].message


def test_an_agent_nobody_calls_and_a_staging_agent_need_no_card(copy_of_example):
    """The rule is about production agents that other agents call: the orchestrator (only a group
    invokes it) and a staging specialist pass without a card."""
    config = _without_card("production", "trip-planner")
    report = run_check(copy_of_example, "production", config_file=write_stack(copy_of_example / "a.yaml", config))
    assert [v.policy for v in report.violations] == []
    staging = write_stack(copy_of_example / "b.yaml", _without_card("staging", "hotel-search"))
    report = run_check(copy_of_example, "staging", config_file=staging)
    assert [v.policy for v in report.violations] == []


# --- config errors -------------------------------------------------------------------------------


def _issues(project: Path, mutate) -> list[str]:
    config = config_of("staging")
    mutate(config["agent-platform:agents"])
    for agent in config["agent-platform:agents"].values():
        if agent.get("ingress", "") is None:
            del agent["ingress"]
    with pytest.raises(ProgramError) as err:
        run_plan(project, "staging", config_file=write_stack(project / "bad.yaml", config))
    return err.value.config_issues


@pytest.mark.parametrize(
    "mutate, issue",
    [
        (
            lambda a: a["trip-planner"].update(calls=["flight-search", "car-rental"]),
            'agent-platform:agents.trip-planner.calls[1]: "car-rental" is not an agent of this stack (agents: '
            "flight-search, hotel-search, trip-planner): fix the name or remove it",
        ),
        (
            lambda a: a["trip-planner"].update(calls=["trip-planner"]),
            'agent-platform:agents.trip-planner.calls[0]: "trip-planner" is the agent itself; an agent does not call '
            "itself over A2A: remove it",
        ),
        (
            lambda a: a["trip-planner"].update(calls=["hotel-search", "hotel-search"]),
            'agent-platform:agents.trip-planner.calls[1]: "hotel-search" is listed twice; name each agent it calls once',
        ),
        (
            lambda a: a["hotel-search"]["card"]["skills"].append(dict(a["hotel-search"]["card"]["skills"][0])),
            'agent-platform:agents.hotel-search.card.skills[2].id: "search-hotels" is the id of an earlier skill; '
            "skill ids must be unique within a card",
        ),
        (
            lambda a: a["flight-search"]["card"]["skills"][0].update(tags=[]),
            "agent-platform:agents.flight-search.card.skills[0].tags: [] is empty; A2A requires at least one "
            "non-empty tag per skill",
        ),
        (
            lambda a: a["flight-search"]["card"].update(skills=[]),
            "agent-platform:agents.flight-search.card.skills: [] is empty; A2A requires at least one skill on an "
            "agent card",
        ),
        (
            lambda a: a["flight-search"]["card"]["skills"][0].update(id="Search Flights"),
            'agent-platform:agents.flight-search.card.skills[0].id: "Search Flights" is not a skill id; use lowercase '
            "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 characters",
        ),
        (
            lambda a: a["flight-search"]["card"].update(protocol="GRPC"),
            'agent-platform:agents.flight-search.card.protocol: "GRPC" is not an A2A protocol binding agentstage '
            "serves on Cloud Run; allowed: JSONRPC, HTTP+JSON",
        ),
        (
            lambda a: a["flight-search"]["card"].update(input_modes=["text"]),
            'agent-platform:agents.flight-search.card.input_modes[0]: "text" is not a media type; use type/subtype, '
            "e.g. text/plain",
        ),
        (
            lambda a: a["flight-search"]["card"].update(description=" "),
            'agent-platform:agents.flight-search.card.description: " " is empty; A2A requires a description on every '
            "agent card",
        ),
        (
            lambda a: a["hotel-search"].update(runtime="agent-engine", ingress=None),
            'agent-platform:agents.hotel-search.card: "<card>" is set, and this agent runs on agent-engine; the '
            "registry publishes cards of cloud-run agents only (the card's URL is the Cloud Run service's): remove it",
        ),
        (
            lambda a: (a["hotel-search"].update(runtime="agent-engine", ingress=None), a["hotel-search"].pop("card")),
            'agent-platform:agents.trip-planner.calls[1]: "hotel-search" runs on agent-engine; A2A calls are granted '
            "on Cloud Run services only (roles/run.invoker on the callee's service): call a cloud-run agent",
        ),
    ],
    ids=[
        "unknown",
        "self",
        "twice",
        "skill-ids",
        "tags",
        "no-skills",
        "skill-id",
        "grpc",
        "media-type",
        "desc",
        "card-runtime",
        "callee-runtime",
    ],
)
def test_bad_calls_and_cards_are_refused_with_the_key(copy_of_example, mutate, issue):
    assert _issues(copy_of_example, mutate) == [issue]


# --- agentstage registry -----------------------------------------------------------------------


def test_registry_prints_every_card_and_its_callers():
    result = cli("registry", "production", "-C", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.output.splitlines()]
    assert lines[0] == "Agent registry of stack production: 3 cards, bucket acme-travel-prod-agent-cards-production"
    url = run_plan(EXAMPLE, "production").find(SERVICE, "flight-search-service").outputs["uri"]
    block = lines[lines.index(f"flight-search  2.0.1  {url}") :][:4]
    assert block[1:] == [
        "  Finds and compares flights between two airports.",
        "  skill search-flights: Search flights [flights, search]",
        "  called by: trip-planner",
    ]
    planner = lines[lines.index(next(line for line in lines if line.startswith("trip-planner  1.2.0  https://"))) :]
    assert planner[3:5] == ["  called by: no agent", "  calls: flight-search, hotel-search"]
    assert lines[-1] == "registry valid: 3 cards checked"


def test_registry_json_and_unknown_urls_before_deploy():
    result = cli("registry", "staging", "-C", str(EXAMPLE), "--json", "--new-stack")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["stack"], data["valid"], data["problems"]) == ("staging", True, [])
    rows = {a["agent"]: a for a in data["agents"]}
    assert sorted(rows) == list(AGENTS)
    assert {
        a: (r["version"], r["release"], r["url"], r["skills"], r["callers"], r["calls"]) for a, r in rows.items()
    } == {
        "flight-search": ("2.0.1", "2.0.1", None, ["search-flights"], ["trip-planner"], []),
        "hotel-search": ("1.1.0", "1.1.0", None, ["search-hotels", "hotel-details"], ["trip-planner"], []),
        "trip-planner": ("1.3.0", "1.3.0", None, ["plan-trip"], [], ["flight-search", "hotel-search"]),
    }
    text = cli("registry", "staging", "-C", str(EXAMPLE), "--new-stack")
    assert "trip-planner  1.3.0  (known after deploy)" in text.output


def test_registry_fails_on_a_called_agent_without_card(copy_of_example):
    stack_file = write_stack(copy_of_example / "no-card.yaml", _without_card("production", "hotel-search"))
    result = cli("registry", "production", "-C", str(copy_of_example), "--config-file", str(stack_file))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert "hotel-search  no card" in lines
    assert lines[-2:] == [
        "invalid: hotel-search: is called by trip-planner but has no card in the registry; publish one "
        "(agents.hotel-search.card)",
        "registry INVALID: 1 problem",
    ]
    as_json = cli("registry", "production", "-C", str(copy_of_example), "--config-file", str(stack_file), "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.output)["valid"] is False


def test_registry_refuses_a_bad_stack_name():
    result = cli("registry", "../production", "-C", str(EXAMPLE))
    assert result.exit_code == 2
    assert "stack name '../production' is not a Pulumi stack name" in result.output


def test_the_validator_catches_cards_a_program_got_wrong(plans):
    """Cards published by any program are checked: version != release, duplicate skill ids, a
    missing REQUIRED field, a name that is not the agent's."""
    plan = copy.deepcopy(plans["production"])
    cards = plan.outputs["registry"]
    cards["flight-search"]["version"] = "2.0.0"
    cards["hotel-search"]["skills"][1]["id"] = "search-hotels"
    cards["trip-planner"]["description"] = ""
    cards["trip-planner"]["name"] = "planner"
    reg = read_registry(plan)
    assert reg.valid is False
    assert reg.all_problems == [
        *(
            f"{agent}: the card published in the bucket differs from the stack output 'registry'"
            for agent in ("flight-search", "hotel-search", "trip-planner")
        ),
        "flight-search: the card's version is '2.0.0' but the agent runs release '2.0.1'; the card must describe the "
        "release it serves (derive it from release.version)",
        "hotel-search: skill id 'search-hotels' appears more than once; skill ids must be unique",
        "trip-planner: the card's required field description is missing or empty",
        "trip-planner: the card's name is 'planner'; it must be the agent's name, 'trip-planner'",
    ]


# --- the release flow keeps the card's version ----------------------------------------------------


def test_promotion_moves_the_card_to_the_promoted_release(copy_of_example):
    before = run_plan(copy_of_example, "production")
    evidence = copy_of_example / "evidence"
    result = cli(
        "promote",
        "staging",
        "production",
        "-C",
        str(copy_of_example),
        "--eval",
        str(evidence / "eval-trip-planner-1.3.0.json"),
        "--load-test",
        str(evidence / "locust"),
    )
    assert result.exit_code == 0, result.output
    assert "promoted staging -> production: trip-planner 1.3.0 at 5%" in result.output
    after = run_plan(copy_of_example, "production")
    assert after.outputs["registry"]["trip-planner"]["version"] == "1.3.0"
    assert before.outputs["registry"]["trip-planner"]["version"] == "1.2.0"
    card = after.find(OBJECT, "trip-planner-card")
    assert card.inputs["metadata"]["a2a-card-version"] == "1.3.0"
    assert json.loads(published(card))["version"] == "1.3.0"
    # the promotion's diff shows the card change (its content is secret; its metadata is not)
    changed = {urn.rsplit("::", 1)[-1]: paths for urn, paths in diff_plans(before, after).updates.items()}
    assert changed["trip-planner-card"] == ["metadata.a2a-card-sha256", "metadata.a2a-card-version"]
    assert "flight-search-card" not in changed and "hotel-search-card" not in changed
    # and the registry of the promoted stack is valid: the card describes the release it runs
    result = cli("registry", "production", "-C", str(copy_of_example), "--json")
    assert result.exit_code == 0, result.output
    rows = {a["agent"]: a for a in json.loads(result.output)["agents"]}
    assert (rows["trip-planner"]["version"], rows["trip-planner"]["release"]) == ("1.3.0", "1.3.0")


# --- the component on its own ---------------------------------------------------------------------


@pytest.fixture
def mock_runtime():
    import pulumi
    from pulumi.runtime import settings

    from agentstage.fixtures import FixtureMocks

    settings.set_root_resource(None)
    pulumi.runtime.set_mocks(FixtureMocks({"gcp:project": "acme-travel-prod"}), project="p", stack="s", preview=True)
    yield


def _registered(agent: str, spec):
    """A RegisteredAgent as a team's own program builds one: its service and its identity's member."""
    from pulumi_gcp import cloudrunv2 as run

    from components import RegisteredAgent

    service = run.Service(
        f"{agent}-service",
        name=agent,
        location="us-central1",
        template={"containers": [{"image": spec.release.image}]},
    )
    member = f"serviceAccount:{agent}@acme-travel-prod.iam.gserviceaccount.com"
    return RegisteredAgent(spec, service, service.uri, member)


def test_a_team_program_can_use_the_registry_and_it_refuses_an_unknown_callee(mock_runtime):
    from components import AgentRegistry, AgentSpec
    from components.errors import ComponentError

    agents = config_of("production")["agent-platform:agents"]
    planner = AgentSpec.model_validate(agents["trip-planner"])
    flights = AgentSpec.model_validate(agents["flight-search"])
    with pytest.raises(ComponentError) as err:
        AgentRegistry(
            "registry",
            agents={"trip-planner": _registered("trip-planner", planner)},
            project="acme-travel-prod",
            region="us-central1",
            environment="production",
        )
    assert str(err.value) == (
        "AgentRegistry registry: trip-planner calls 'flight-search', which is not another agent of this registry "
        "(trip-planner)"
    )
    registry = AgentRegistry(
        "registry2",
        agents={
            "trip-planner": _registered("trip-planner", planner.model_copy(update={"calls": ["flight-search"]})),
            "flight-search": _registered("flight-search", flights),
        },
        project="acme-travel-prod",
        region="us-central1",
        environment="production",
    )
    assert sorted(registry.edges) == [("trip-planner", "flight-search")]
    assert sorted(registry.cards) == ["flight-search", "trip-planner"] and list(registry.readers) == ["trip-planner"]


def test_the_bucket_name_fits_cloud_storage_rules():
    from components.registry import registry_bucket_name

    assert registry_bucket_name("acme-travel-prod", "production") == "acme-travel-prod-agent-cards-production"
    long = registry_bucket_name("a-very-long-project-id-123456", "production-eu", "platform-team-one")
    # 80 characters in full: the head and a digest of the full name, at most 63, stable
    assert long == "a-very-long-project-id-123456-platform-team-one-agent-cae629d0"
    assert len(long) <= 63 and long == registry_bucket_name(
        "a-very-long-project-id-123456", "production-eu", "platform-team-one"
    )


def test_the_registry_reads_the_card_objects_of_a_program_that_exports_no_registry(plans):
    """A team's program may publish the cards without the `registry` output: the objects' uploads
    are read (their content is secret in the plan, the request carries it); a first preview has
    none yet."""
    plan = copy.deepcopy(plans["production"])
    del plan.outputs["registry"]
    reg = read_registry(plan)
    assert reg.valid and sorted(reg.cards) == list(AGENTS)
    assert reg.agents["hotel-search"].card == plans["production"].outputs["registry"]["hotel-search"]
    first = run_plan(EXAMPLE, "production", new_stack=True)
    del first.outputs["registry"]
    assert read_registry(first).cards == {}
