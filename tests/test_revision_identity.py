"""Revision identity: a revision name is the release plus a digest of the whole template, so a
template change is a new revision (never Cloud Run's 409) and the stable target keeps naming
the revision that exists. Also: a rolled-back candidate keeps no warm instances."""

from __future__ import annotations

import re
from typing import Any

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from components.contract import CLOUD_RUN_SERVICE
from components.revision import REVISION_NAME_MAX, legacy_revision_name, revision_name, template_digest
from tests.conftest import ROOT, plan_of, write_stack

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def services(plan: Any) -> dict[str, dict[str, Any]]:
    return {r.inputs["name"]: r.inputs for r in plan.by_type(CLOUD_RUN_SERVICE)}


def template_revision(plan: Any, service: str) -> str:
    return services(plan)[service]["template"]["revision"]


def traffic(plan: Any, service: str) -> list[tuple[str, int, str | None]]:
    return [(t["revision"], t["percent"], t.get("tag")) for t in services(plan)[service]["traffics"]]


def test_revision_name_is_release_and_template_digest(prod):
    svc = services(prod)["support-bot"]
    name = svc["template"]["revision"]
    assert re.fullmatch(r"support-bot-1-4-0-[0-9a-f]{8}", name)
    assert traffic(prod, "support-bot") == [("support-bot-1-3-2", 95, None), (name, 5, "canary")]
    assert re.fullmatch(r"research-agent-2-1-0-[0-9a-f]{8}", template_revision(prod, "research-agent"))


def test_the_same_config_gives_the_same_names(prod, tmp_path, production):
    again = plan_of(tmp_path, production)
    for service in ("support-bot", "research-agent"):
        assert template_revision(again, service) == template_revision(prod, service)


CHANGES = {
    "shared label": lambda c: c["agent-platform:labels"].update(team="support-2"),
    "tracing rate": lambda c: c["agent-platform:tracing"].update(sample_rate=0.5),
    "scaling": lambda c: [a["scaling"].update(concurrency=10) for a in c["agent-platform:agents"].values()],
    "guardrails location": lambda c: c["agent-platform:guardrails"].update(location="us"),
    "probe timing": lambda c: [
        a.update(probes={"liveness": {"period_seconds": 30}}) for a in c["agent-platform:agents"].values()
    ],
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_template_change_is_a_new_revision_and_stable_stays(prod, tmp_path, production, change):
    CHANGES[change](production)
    changed = plan_of(tmp_path, production)
    for service in ("support-bot", "research-agent"):
        before, after = template_revision(prod, service), template_revision(changed, service)
        assert after != before, f"{change}: {service} keeps {before} with a different template (a 409 on deploy)"
        assert after.rsplit("-", 1)[0] == before.rsplit("-", 1)[0]  # same release, new digest
    new = template_revision(changed, "support-bot")
    assert traffic(changed, "support-bot") == [("support-bot-1-3-2", 95, None), (new, 5, "canary")]


def test_a_traffic_change_keeps_the_revision(prod, tmp_path, production):
    production["agent-platform:agents"]["support-bot"]["rollout"]["canary_percent"] = 50
    moved = plan_of(tmp_path, production)
    assert template_revision(moved, "support-bot") == template_revision(prod, "support-bot")


def test_recorded_stable_revision_is_the_stable_target(tmp_path, production):
    production["agent-platform:agents"]["support-bot"]["stable_revision"] = "support-bot-1-3-2-0badcafe"
    plan = plan_of(tmp_path, production)
    assert traffic(plan, "support-bot")[0] == ("support-bot-1-3-2-0badcafe", 95, None)
    out = plan.outputs["agents"]["support-bot"]
    assert out["stable_revision"] == "support-bot-1-3-2-0badcafe"
    assert out["release_revision"] == template_revision(plan, "support-bot")


def test_unrecorded_stable_is_the_name_agentstage_0_1_gave_it(tmp_path, production):
    del production["agent-platform:agents"]["support-bot"]["stable_revision"]
    plan = plan_of(tmp_path, production)
    assert traffic(plan, "support-bot")[0] == ("support-bot-1-3-2", 95, None)
    assert legacy_revision_name("support-bot", "1.3.2") == "support-bot-1-3-2"


def test_alerts_watch_the_revisions_the_service_routes_to(prod):
    errors = prod.find("gcp:monitoring/alertPolicy:AlertPolicy", "support-bot-errors").inputs
    candidate = template_revision(prod, "support-bot")
    filters = [c["conditionThreshold"]["filter"] for c in errors["conditions"]]
    assert any(f'"{candidate}"' in f for f in filters) and any('"support-bot-1-3-2"' in f for f in filters)


@pytest.mark.parametrize(
    "service,version",
    [
        ("a" * 49, "1.4.0"),
        ("a" * 49, "2026.11.21-rc.1+build.77"),
        ("support-bot", "1.4.0-" + "x" * 80),
        ("s" * 40, "v"),
    ],
)
def test_long_names_fit_cloud_runs_limit_and_keep_the_digest(service, version):
    digest = template_digest({"containers": [{"image": version}]})
    name = revision_name(service, version, digest)
    assert len(name) <= REVISION_NAME_MAX and DNS_LABEL.match(name)
    assert name.startswith(f"{service}-") and name.endswith(f"-{digest}")


def test_a_long_release_version_is_accepted_and_shortened(tmp_path, production):
    version = "1.4.0-" + "x" * 50
    production["agent-platform:agents"]["support-bot"]["release"]["version"] = version
    name = template_revision(plan_of(tmp_path, production), "support-bot")
    assert len(name) == REVISION_NAME_MAX and name.startswith("support-bot-1-4-0-xxx")


def test_digest_ignores_key_order_and_the_revision_itself():
    a = {"labels": {"a": "1", "b": "2"}, "containers": [{"image": "x"}], "revision": "s-1"}
    b = {"containers": [{"image": "x"}], "labels": {"b": "2", "a": "1"}, "revision": "s-2"}
    assert template_digest(a) == template_digest(b)
    assert template_digest(a) != template_digest({**a, "labels": {"a": "1", "b": "3"}})


def test_preview_shows_the_new_revision_and_the_unchanged_stable_target(tmp_path, production):
    runner = CliRunner(env={"COLUMNS": "250"})
    before = runner.invoke(app, ["preview", "production", "-C", str(ROOT)], terminal_width=200).output
    production["agent-platform:labels"]["team"] = "support-2"
    path = write_stack(tmp_path / "changed.yaml", production)
    after = runner.invoke(
        app, ["preview", "production", "-C", str(ROOT), "--config-file", str(path)], terminal_width=200
    ).output

    def rows(text: str) -> list[str]:
        lines = [" ".join(line.replace("│", " ").split()) for line in text.splitlines()]
        return [line for line in lines if line.startswith("support-bot support-bot-")]

    old, new = rows(before), rows(after)
    assert old[0] == new[0] == "support-bot support-bot-1-3-2 95% stable, must exist"
    assert re.fullmatch(r"support-bot support-bot-1-4-0-[0-9a-f]{8} 5% canary this template", new[1])
    assert new[1] != old[1]


# --- a rolled-back candidate keeps no warm, billed instances ------------------------------------


def test_min_instances_are_set_on_the_service_not_the_revision(prod):
    svc = services(prod)["support-bot"]
    assert svc["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 20}
    assert "minInstanceCount" not in svc["template"]["scaling"]
    assert svc["template"]["scaling"] == {"maxInstanceCount": 20}


def test_rolled_back_candidate_leaves_the_traffic_block_and_keeps_no_warm_instances(prod, tmp_path, production):
    production["agent-platform:agents"]["support-bot"]["rollout"]["canary_percent"] = 0
    plan = plan_of(tmp_path, production)
    candidate = template_revision(plan, "support-bot")
    assert candidate == template_revision(prod, "support-bot")  # no new revision: a traffic change only
    # Neither tagged nor in the traffic block: Cloud Run scales the candidate to zero, and the
    # service-level minimum instances go to the revisions in the split (docs/release.md).
    assert traffic(plan, "support-bot") == [("support-bot-1-3-2", 100, None)]
    assert services(plan)["support-bot"]["scaling"]["minInstanceCount"] == 1
    assert "minInstanceCount" not in services(plan)["support-bot"]["template"]["scaling"]
