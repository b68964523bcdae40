"""The stack config contract: every bad value fails with a message naming the key, the value
and what is allowed; unknown keys are errors; a bad config registers no resource."""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from agentstage.config import ConfigError, config_key, platform_from_config
from agentstage.engine import ProgramError, run_plan
from components.spec import PlatformSpec
from tests.conftest import write_stack

BOT = "agent-platform:agents.support-bot"


def bot(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg["agent-platform:agents"]["support-bot"]


def setter(*path: Any, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(cfg: dict[str, Any]) -> None:
        target = bot(cfg)
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


BAD_INPUTS = [
    (
        setter("release", "image", value="acme/bot:latest"),
        f'{BOT}.release.image: "acme/bot:latest" is not pinned by digest; use <repo>/<image>@sha256:<64 hex>',
    ),
    (
        setter("release", "image", value="us-docker.pkg.dev/acme/agents/bot@sha256:1234"),
        f'{BOT}.release.image: "us-docker.pkg.dev/acme/agents/bot@sha256:1234" is not pinned by digest; '
        "use <repo>/<image>@sha256:<64 hex>",
    ),
    (
        setter("release", "version", value="1.4.0 beta"),
        f'{BOT}.release.version: "1.4.0 beta" is not a usable release version; use letters, digits, '
        "'.', '-', '_' or '+', starting with a letter or digit (e.g. 1.4.0)",
    ),
    (
        setter("rollout", "canary_percent", value=150),
        f"{BOT}.rollout.canary_percent: 150 is not a percentage; allowed: 0..100",
    ),
    (
        setter("rollout", "canary_percent", value=-1),
        f"{BOT}.rollout.canary_percent: -1 is not a percentage; allowed: 0..100",
    ),
    (
        setter("rollout", "steps", value=[5, 50, 25, 100]),
        f"{BOT}.rollout.steps: [5, 50, 25, 100] is not strictly ascending; give ascending percentages ending at 100",
    ),
    (
        setter("rollout", "steps", value=[5, 50]),
        f"{BOT}.rollout.steps: [5, 50] does not end at 100; the last step must send all traffic to the release",
    ),
    (
        setter("scaling", "min_instances", value=30),
        f"{BOT}.scaling.max_instances: 20 is below min_instances (30); max_instances must be >= min_instances",
    ),
    (
        setter("scaling", "concurrency", value=2000),
        f"{BOT}.scaling.concurrency: 2000 is out of range; allowed: 1..1000",
    ),
    (setter("scaling", "concurrency", value=0), f"{BOT}.scaling.concurrency: 0 is out of range; allowed: 1..1000"),
    (
        setter("resources", "cpu", value="3"),
        f'{BOT}.resources.cpu: "3" is not a Cloud Run CPU limit; allowed: "1", "2", "4", "6", "8" or fractional '
        "80m..990m in steps of 10m",
    ),
    (
        setter("resources", "memory", value="64Gi"),
        f'{BOT}.resources.memory: "64Gi" is not a Cloud Run memory limit; allowed: 128Mi..32Gi, e.g. 512Mi, 2Gi',
    ),
    (
        setter("resources", "memory", value="16Gi"),
        f'{BOT}.resources.memory: "16Gi" needs at least 4 CPU on Cloud Run (cpu is "2"); raise cpu or lower memory',
    ),
    (
        setter("invokers", value=["frontend@acme.com"]),
        f'{BOT}.invokers[0]: "frontend@acme.com" is not an IAM member; use user:<email>, group:<email>, '
        "serviceAccount:<email>, domain:<domain>, principal://..., principalSet://..., allUsers or allAuthenticatedUsers",
    ),
    (
        setter("invokers", value=["user:ops@acme.com", "serviceAccount:not-an-email"]),
        f'{BOT}.invokers[1]: "serviceAccount:not-an-email" is not an IAM member; use user:<email>, group:<email>, '
        "serviceAccount:<email>, domain:<domain>, principal://..., principalSet://..., allUsers or allAuthenticatedUsers",
    ),
    (
        setter("secrets", value={"CRM_TOKEN": "crm token"}),
        f'{BOT}.secrets.CRM_TOKEN: "crm token" is not a Secret Manager reference; use <secret>[:<version>] with '
        "a secret id of letters, digits, '-' or '_' and a version that is a number or 'latest'",
    ),
    (
        setter("secrets", value={"CRM_TOKEN": "crm-token:newest"}),
        f'{BOT}.secrets.CRM_TOKEN: "crm-token:newest" is not a Secret Manager reference; use <secret>[:<version>] '
        "with a secret id of letters, digits, '-' or '_' and a version that is a number or 'latest'",
    ),
    (
        setter("stable", "version", value="1.4.0"),
        f'{BOT}.stable.version: "1.4.0" is the same version as release; stable must be a different, earlier '
        "release (remove stable when the release takes all traffic)",
    ),
    (
        setter("scaling", "max_instance", value=3),
        f"{BOT}.scaling.max_instance: unknown key; allowed: min_instances, max_instances, concurrency",
    ),
    (
        setter("runtime", value="gke"),
        f"{BOT}.gke: null is not set; runtime gke needs the cluster and the Gateway: set gke.cluster (or "
        "gke.context) and gke.gateway",
    ),
    (
        setter("runtime", value="lambda"),
        f'{BOT}.runtime: "lambda" is not allowed; allowed: cloud-run, agent-engine, vertex-endpoint or gke',
    ),
    (
        setter("ingress", value="public"),
        f'{BOT}.ingress: "public" is not an ingress setting; allowed: all, internal, internal-and-cloud-load-balancing',
    ),
    (setter("scaling", "max_instances", value="many"), f'{BOT}.scaling.max_instances: "many" is not a whole number'),
    (
        setter("env", "CRM_TOKEN", value="x"),
        f'{BOT}.env.CRM_TOKEN: "CRM_TOKEN" is set both in env and in secrets; keep it in secrets only',
    ),
    (
        setter("env", "PORT", value="9000"),
        f'{BOT}.env.PORT: "PORT" is reserved by Cloud Run; reserved: K_CONFIGURATION, K_REVISION, K_SERVICE, PORT',
    ),
    (
        setter("roles", value=["owner"]),
        f'{BOT}.roles[0]: "owner" is not an IAM role; use roles/<name> or projects/<project>/roles/<name>',
    ),
    (
        setter("rollout", "max_error_rate", value=2),
        f"{BOT}.rollout.max_error_rate: 2 is not a ratio; allowed: 0..1 (0.02 means 2%)",
    ),
]


@pytest.mark.parametrize(
    "mutate,message",
    BAD_INPUTS,
    ids=[m.split(": ")[0].removeprefix(BOT + ".") + f"-{i}" for i, (_, m) in enumerate(BAD_INPUTS)],
)
def test_bad_input_names_key_value_and_what_is_allowed(production, mutate, message):
    mutate(production)
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert err.value.issues == [message]


def test_missing_required_key(production):
    # (release.image has its own message now: it is optional on vertex-endpoint; see test_vertex_endpoint)
    del bot(production)["release"]["version"]
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert err.value.issues == [f"{BOT}.release.version: required key is missing"]


def test_unknown_top_level_key_is_an_error_not_ignored(production):
    production["agent-platform:agent"] = {}
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    allowed = sorted(config_key(f) for f in PlatformSpec.model_fields)
    assert "agent-platform:agents" in allowed and "gcp:project" in allowed
    assert err.value.issues == [f"agent-platform:agent: unknown key; allowed: {', '.join(allowed)}"]


def test_other_namespaces_are_not_ours(production):
    production["gcp:zone"] = "us-central1-a"
    assert platform_from_config(production).project == "acme-agents-prod"


def test_every_problem_is_reported_at_once(production):
    bot(production)["scaling"]["concurrency"] = 0
    bot(production)["ingress"] = "public"
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert sorted(err.value.issues) == [
        f'{BOT}.ingress: "public" is not an ingress setting; allowed: all, internal, internal-and-cloud-load-balancing',
        f"{BOT}.scaling.concurrency: 0 is out of range; allowed: 1..1000",
    ]


def test_platform_level_errors(production):
    production["agent-platform:labels"] = {"environment": "prod"}
    production["agent-platform:agents"]["Support_Bot"] = copy.deepcopy(bot(production))
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert err.value.issues == [
        'agent-platform:labels.environment: "environment" is set by agentstage itself; '
        "do not set environment, agent, release, managed-by"
    ]
    production["agent-platform:labels"] = {}
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert err.value.issues == [
        'agent-platform:agents.Support_Bot: "Support_Bot" is not an agent name; use a lowercase DNS label '
        "of at most 49 characters (letters, digits, '-'), starting with a letter"
    ]


def test_gcp_project_is_required_and_checked(production):
    production["gcp:project"] = "Acme Prod"
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert err.value.issues == [
        "gcp:project: \"Acme Prod\" is not a Google Cloud project id; use 6-30 lowercase letters, digits or '-', "
        "starting with a letter"
    ]
    del production["gcp:project"]
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert err.value.issues == ["gcp:project: required key is missing"]


def test_values_arrive_as_pulumi_passes_them(production):
    """The CLI hands structured config to the program as JSON text, numbers as strings."""
    import json

    raw = {k: v if isinstance(v, str) else json.dumps(v) for k, v in production.items()}
    spec = platform_from_config(raw)
    assert spec.agents["support-bot"].scaling.max_instances == 20
    assert spec.agents["support-bot"].canary_percent == 5


def test_defaults(production):
    agent = bot(production)
    for key in ("rollout", "scaling", "resources", "ingress", "invokers", "roles", "secrets", "env", "features"):
        agent.pop(key)
    spec = platform_from_config(production).agents["support-bot"]
    assert spec.canary_percent == 5  # first step when stable is set and canary_percent is not
    assert spec.rollout.steps == [5, 25, 50, 100]
    assert (spec.scaling.min_instances, spec.scaling.max_instances, spec.scaling.concurrency) == (0, 10, 80)
    assert (spec.resources.cpu, spec.resources.memory) == ("1", "512Mi")
    assert spec.ingress_value == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"


def test_bad_config_registers_no_resource(project, production):
    bot(production)["release"]["image"] = "acme/bot:latest"
    path = write_stack(project / "bad.yaml", production)
    with pytest.raises(ProgramError) as err:
        run_plan(project, "production", config_file=path)
    assert err.value.config_issues == [
        f'{BOT}.release.image: "acme/bot:latest" is not pinned by digest; use <repo>/<image>@sha256:<64 hex>'
    ]
    assert [r.type for r in err.value.resources] == ["pulumi:pulumi:Stack"]
