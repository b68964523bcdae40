"""Direct VPC egress (agents.<name>.vpc_egress) and the rule that makes an A2A call to an internal agent
reachable: Cloud Run treats a call from another Cloud Run service as internal only when it comes
through a VPC network, and a call to a run.app URL goes through the VPC only with all-traffic egress
(components/network_spec.py cites Google's pages).

The multi-agent example is planned offline (its orchestrator has the egress), its request bodies are
validated against the run v2 discovery document, the policy pack passes through the CLI, bad configs
are refused with their exact message, and the egress is part of the revision's identity."""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.engine import ProgramError, run_plan
from agentstage.policy import run_check
from components.cloud_run import revision_template
from components.network_spec import VPC_EGRESS_VALUES
from components.revision import template_digest
from components.spec import AgentSpec
from tests.conformance import discovery, translate
from tests.conftest import ROOT, write_stack
from tests.test_docs_snippets import fresh_clone, session

EXAMPLE = ROOT / "examples" / "multi-agent"
SERVICE = "gcp:cloudrunv2/service:Service"
EXAMPLE_EGRESS = {
    "networkInterfaces": [{"network": "travel-agents", "subnetwork": "travel-agents-us-central1"}],
    "egress": "ALL_TRAFFIC",
}
runner = CliRunner()


def config_of(stack: str) -> dict:
    return YAML(typ="safe", pure=True).load((EXAMPLE / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]


def template(plan, agent: str) -> dict:
    return plan.find(SERVICE, f"{agent}-service").inputs["template"]


@pytest.fixture(scope="module")
def plans():
    return {stack: run_plan(EXAMPLE, stack) for stack in ("staging", "production")}


@pytest.fixture
def example(tmp_path: Path) -> Path:
    dest = tmp_path / "multi-agent"
    shutil.copytree(EXAMPLE, dest)
    return dest


def plan_with(project: Path, mutate, stack: str = "staging"):
    config = copy.deepcopy(config_of(stack))
    mutate(config["agent-platform:agents"])
    return run_plan(project, stack, config_file=write_stack(project / f"{stack}-vpc.yaml", config))


def issues(project: Path, mutate) -> list[str]:
    with pytest.raises(ProgramError) as err:
        plan_with(project, mutate)
    return err.value.config_issues


# --- the plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_orchestrator_sends_all_traffic_through_the_vpc_and_the_specialists_set_none(plans, stack):
    plan = plans[stack]
    assert template(plan, "trip-planner")["vpcAccess"] == EXAMPLE_EGRESS
    for agent in ("flight-search", "hotel-search"):
        assert "vpcAccess" not in template(plan, agent)
        assert plan.find(SERVICE, f"{agent}-service").inputs["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"


def test_network_tags_and_a_shared_vpc_subnetwork_reach_the_template(example):
    subnet = "projects/acme-net-host/regions/us-central1/subnetworks/agents"
    plan = plan_with(
        example,
        lambda a: a["trip-planner"].update(
            vpc_egress={"subnetwork": subnet, "egress": "all-traffic", "network_tags": ["a2a-caller", "travel"]}
        ),
    )
    assert template(plan, "trip-planner")["vpcAccess"] == {
        "networkInterfaces": [{"subnetwork": subnet, "tags": ["a2a-caller", "travel"]}],
        "egress": "ALL_TRAFFIC",
    }


def test_private_ranges_only_is_sent_explicitly_when_no_internal_agent_is_called(example):
    """Without calls to an internal agent any egress is allowed; the plan names Cloud Run's default
    rather than leaving it implicit."""
    plan = plan_with(example, lambda a: a["hotel-search"].update(vpc_egress={"network": "travel-agents"}))
    assert template(plan, "hotel-search")["vpcAccess"] == {
        "networkInterfaces": [{"network": "travel-agents"}],
        "egress": "PRIVATE_RANGES_ONLY",
    }


def test_a_caller_of_public_agents_needs_no_egress(example):
    def public_callees(agents):
        agents["trip-planner"].pop("vpc_egress")
        for agent in ("flight-search", "hotel-search"):
            agents[agent]["ingress"] = "all"

    plan = plan_with(example, public_callees)
    assert "vpcAccess" not in template(plan, "trip-planner")


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_service_requests_are_valid_run_v2_bodies(plans, stack):
    resource = plans[stack].find(SERVICE, "trip-planner-service")
    [request] = translate.to_requests(resource)
    assert request.body["template"]["vpcAccess"] == EXAMPLE_EGRESS
    assert discovery.validate(request.api, request.schema, request.body) == []
    # the schema does check the field: a value outside the enum is reported
    request.body["template"]["vpcAccess"]["egress"] = "ALL"
    assert discovery.validate(request.api, request.schema, request.body)


def test_the_egress_values_are_the_run_v2_enum():
    enum = discovery.enum_values("run.v2", "GoogleCloudRunV2VpcAccess", "egress")
    assert sorted(VPC_EGRESS_VALUES.values()) == sorted(set(enum) - {"VPC_EGRESS_UNSPECIFIED"})


@pytest.mark.parametrize("stack", ["staging", "production"])
@pytest.mark.parametrize("new_stack", [False, True], ids=["deployed", "new-stack"])
def test_agentstage_check_passes_on_the_example(stack, new_stack):
    args = ["check", stack, "-C", str(EXAMPLE)] + (["--new-stack"] if new_stack else [])
    result = runner.invoke(app, args, catch_exceptions=False, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "0 violations" in result.output


# --- the policy: the same line for programs that compose the components ---------------------------

POLICY = "agent-calls-through-vpc"


def _check_without_route(plans, change) -> list:
    """The production plan with its Cloud Run services' properties changed by ``change`` (service
    name -> properties), through the pack: as a team program that builds the services itself would
    plan them, past the config rule."""
    plan = copy.deepcopy(plans["production"])
    plan.resources = [dataclasses.replace(r, wire_inputs=None, wire_outputs=None) for r in plan.resources]
    for props in ("inputs", "outputs"):  # Analyze reads the inputs, AnalyzeStack the state
        change({r.name: getattr(r, props) for r in plan.by_type(SERVICE)})
    report = run_check(EXAMPLE, "production", plan=plan)
    return [v for v in report.violations if v.policy == POLICY]


def _public(services):
    services["trip-planner-service"]["template"].pop("vpcAccess")
    for agent in ("flight-search", "hotel-search"):
        services[f"{agent}-service"]["ingress"] = "INGRESS_TRAFFIC_ALL"


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["trip-planner-service"]["template"].pop("vpcAccess"),
        lambda s: s["trip-planner-service"]["template"]["vpcAccess"].update(egress="PRIVATE_RANGES_ONLY"),
        lambda s: s["trip-planner-service"]["template"]["vpcAccess"].update(networkInterfaces=[]),
    ],
    ids=["no-vpc-access", "private-ranges", "no-interface"],
)
def test_the_policy_refuses_a_caller_whose_calls_would_be_refused(plans, change):
    found = _check_without_route(plans, change)
    message = (
        "the agent trip-planner may invoke {callee}, whose ingress is INGRESS_TRAFFIC_INTERNAL_ONLY, but its revisions "
        "do not send all their traffic through a VPC network, so Cloud Run refuses its calls as external; set "
        "template.vpc_access with network interfaces and egress ALL_TRAFFIC (agentstage: agents.trip-planner.vpc_egress "
        "with egress: all-traffic)."
    )
    assert [(v.resource_name, v.mandatory, v.message) for v in found] == [
        ("trip-planner-service", True, message.format(callee="flight-search")),
        ("trip-planner-service", True, message.format(callee="hotel-search")),
    ]


def test_the_policy_passes_callees_with_public_ingress_and_the_example(plans):
    assert _check_without_route(plans, _public) == []
    assert _check_without_route(plans, lambda s: None) == []


# --- revision identity ---------------------------------------------------------------------------


def test_changing_the_egress_is_a_new_revision_of_that_agent_only(plans, example):
    before = plans["staging"]
    after = plan_with(example, lambda a: a["trip-planner"]["vpc_egress"].update(network_tags=["a2a-caller"]))
    old, new = template(before, "trip-planner")["revision"], template(after, "trip-planner")["revision"]
    assert old != new and old.startswith("trip-planner-1-3-0-") and new.startswith("trip-planner-1-3-0-")
    for agent in ("flight-search", "hotel-search"):
        assert template(after, agent)["revision"] == template(before, agent)["revision"]
    # the traffic follows the template's revision, never LATEST
    traffic = after.find(SERVICE, "trip-planner-service").inputs["traffics"]
    assert [(t["revision"], t["percent"]) for t in traffic] == [(new, 100)]


def test_the_same_egress_gives_the_same_revision(plans, example):
    again = plan_with(example, lambda a: None)
    assert template(again, "trip-planner")["revision"] == template(plans["staging"], "trip-planner")["revision"]


def test_an_agent_without_egress_keeps_the_revision_it_had():
    """An absent vpc_egress adds nothing to the template, so stacks planned before the key existed
    keep their revision names (a new name would deploy a new revision for nothing); with it, the
    template differs by ``vpc_access`` alone."""
    raw = config_of("staging")["agent-platform:agents"]["trip-planner"]
    with_egress = AgentSpec.model_validate(raw)
    without = AgentSpec.model_validate({k: v for k, v in raw.items() if k != "vpc_egress"})
    args = {"service_account": "sa@p.iam.gserviceaccount.com", "labels": {"team": "travel"}, "extra_env": {}}
    plain, routed = revision_template(without, **args), revision_template(with_egress, **args)
    assert "vpc_access" not in plain
    assert routed["vpc_access"] == {
        "network_interfaces": [{"network": "travel-agents", "subnetwork": "travel-agents-us-central1"}],
        "egress": "ALL_TRAFFIC",
    }
    assert {k: v for k, v in routed.items() if k != "vpc_access"} == plain
    assert template_digest(routed) != template_digest(plain)


# --- bad input -----------------------------------------------------------------------------------

NO_EGRESS = (
    'agent-platform:agents.trip-planner.calls[0]: "flight-search" has ingress {ingress}: Cloud Run admits a call '
    "from another Cloud Run service only when it comes through a VPC network, and trip-planner has no VPC egress, "
    "so the call would be refused; set agents.trip-planner.vpc_egress with a network or subnetwork (Private Google "
    "Access on) and egress: all-traffic"
)


def _lb_callee(agents):
    agents["trip-planner"].pop("vpc_egress")
    agents["flight-search"]["ingress"] = "internal-and-cloud-load-balancing"


@pytest.mark.parametrize(
    "mutate, issue",
    [
        (lambda a: a["trip-planner"].pop("vpc_egress"), NO_EGRESS.format(ingress="internal")),
        (_lb_callee, NO_EGRESS.format(ingress="internal-and-cloud-load-balancing")),
        (
            lambda a: a["trip-planner"]["vpc_egress"].update(egress="private-ranges-only"),
            'agent-platform:agents.trip-planner.vpc_egress.egress: "private-ranges-only" sends only private IP '
            "ranges through the VPC, and trip-planner calls flight-search (ingress internal) at its run.app URL, a "
            "public Google address: the call would leave outside the VPC and be refused as external; set egress: "
            "all-traffic",
        ),
        (
            lambda a: a["trip-planner"]["vpc_egress"].pop("egress"),
            'agent-platform:agents.trip-planner.vpc_egress.egress: "private-ranges-only" sends only private IP '
            "ranges through the VPC, and trip-planner calls flight-search (ingress internal) at its run.app URL, a "
            "public Google address: the call would leave outside the VPC and be refused as external; set egress: "
            "all-traffic",
        ),
        (
            lambda a: a["trip-planner"]["vpc_egress"].update(egress="ALL_TRAFFIC"),
            'agent-platform:agents.trip-planner.vpc_egress.egress: "ALL_TRAFFIC" is not a VPC egress setting; '
            "allowed: all-traffic, private-ranges-only",
        ),
        (
            lambda a: a["trip-planner"]["vpc_egress"].update(network="Travel_Agents"),
            'agent-platform:agents.trip-planner.vpc_egress.network: "Travel_Agents" is not a VPC network; use a name '
            "of 1-63 lowercase letters, digits or '-' starting with a letter, or projects/<project>/global/networks/"
            "<name>",
        ),
        (
            lambda a: a["trip-planner"]["vpc_egress"].update(subnetwork="regions/us-central1/subnetworks/x"),
            'agent-platform:agents.trip-planner.vpc_egress.subnetwork: "regions/us-central1/subnetworks/x" is not a '
            "VPC subnetwork; use a name of 1-63 lowercase letters, digits or '-' starting with a letter, or "
            "projects/<project>/regions/<region>/subnetworks/<name>",
        ),
        (
            lambda a: a["trip-planner"].update(vpc_egress={"egress": "all-traffic"}),
            "agent-platform:agents.trip-planner.vpc_egress.network: null is not set, and neither is subnetwork; "
            "Cloud Run needs at least one to place the instances in a VPC: set network, subnetwork or both",
        ),
        (
            lambda a: a["trip-planner"]["vpc_egress"].update(
                subnetwork="projects/acme-net-host/regions/europe-west1/subnetworks/agents"
            ),
            "agent-platform:agents.trip-planner.vpc_egress.subnetwork: "
            '"projects/acme-net-host/regions/europe-west1/subnetworks/agents" is in region europe-west1, and the '
            "agent's service runs in us-central1; Direct VPC egress takes addresses from a subnet in the service's "
            "region: use a subnetwork there",
        ),
        (
            lambda a: a["trip-planner"]["vpc_egress"].update(network_tags=["a2a", "A2A Caller"]),
            'agent-platform:agents.trip-planner.vpc_egress.network_tags[1]: "A2A Caller" is not a network tag; use '
            "1-63 lowercase letters, digits or '-', starting with a letter",
        ),
        (
            lambda a: a["trip-planner"]["vpc_egress"].update(network_tags=["a2a", "a2a"]),
            'agent-platform:agents.trip-planner.vpc_egress.network_tags[1]: "a2a" is listed twice; name each tag once',
        ),
        (
            lambda a: (
                a["hotel-search"].update(runtime="agent-engine", vpc_egress={"network": "travel-agents"}),
                a["hotel-search"].pop("ingress"),
                a["hotel-search"].pop("card"),
            ),
            'agent-platform:agents.hotel-search.vpc_egress.egress: "private-ranges-only" is a Cloud Run setting, and '
            "runtime agent-engine does not use it: Direct VPC egress is set on a Cloud Run revision; remove it",
        ),
    ],
    ids=[
        "no-egress",
        "lb-callee",
        "private-ranges",
        "default-egress",
        "api-spelling",
        "network",
        "subnetwork",
        "neither",
        "region",
        "tag",
        "tag-twice",
        "runtime",
    ],
)
def test_bad_egress_is_refused_with_what_to_set(example, mutate, issue):
    assert issues(example, mutate) == [issue]


def test_the_cli_prints_the_rule_and_exits_2(example):
    config = config_of("staging")
    config["agent-platform:agents"]["trip-planner"].pop("vpc_egress")
    write_stack(example / "stacks" / "Pulumi.staging.yaml", config)
    result = runner.invoke(app, ["check", "staging", "-C", str(example)], terminal_width=400)
    assert result.exit_code == 2
    assert "trip-planner has no VPC egress" in " ".join(result.output.split())


# --- the page ------------------------------------------------------------------------------------


def test_the_page_walkthrough_runs_from_a_fresh_clone(tmp_path):
    """docs/vpc-egress.md's commands, run as docs/walkthrough.md's are (one bash session in a copy of
    the repository), print what the page says they print."""
    script, prints = session(ROOT / "docs" / "vpc-egress.md")
    assert script.count("### ") >= 5 and len(prints) == 4
    clone = fresh_clone(tmp_path / "agentstage")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTEST", "COV_"))}
    env.update(COLUMNS="200", TERM="dumb", NO_COLOR="1", PATH=f"{clone / '.venv' / 'bin'}:{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    flat = " ".join(out.split())
    assert [line for line in prints if " ".join(line.split()) not in flat] == [], out[-6000:]


def test_the_policy_reads_iam_so_an_identity_in_invokers_is_a_caller_too(example):
    """The config rule follows `calls`; the policy follows the invoker grants, so another agent's
    identity listed in `invokers` needs the network path as well."""
    config = config_of("production")
    agents = config["agent-platform:agents"]
    agents["hotel-search"]["invokers"] = [
        "serviceAccount:flight-search-production@acme-travel-prod.iam.gserviceaccount.com"
    ]
    report = run_check(example, "production", config_file=write_stack(example / "inv.yaml", config))
    assert [(v.policy, v.resource_name, v.enforcement) for v in report.violations] == [
        (POLICY, "flight-search-service", "mandatory")
    ]
    assert report.violations[0].message.startswith(
        "the agent flight-search may invoke hotel-search, whose ingress is INGRESS_TRAFFIC_INTERNAL_ONLY"
    )
