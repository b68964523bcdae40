"""Scenarios of the release flow on a copy of the reference project: a canary walked from 5% to
100% on healthy metrics, canaries rolled back on errors and on latency, promotion behind the
gates; config, ledger and plan diffs asserted at each step, and `status` after each."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.diff import diff_plans
from agentstage.engine import run_plan
from agentstage.release import flow
from agentstage.release.gates import Evidence
from agentstage.release.ledger import Ledger
from agentstage.release.lock import LockBusy, stack_lock
from agentstage.release.metrics import FileSource
from agentstage.release.stackfile import StackFile
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "release"
T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
SERVICE = "gcp:cloudrunv2/service:Service"
runner = CliRunner()


class Clock:
    def __init__(self, t: dt.datetime = T0) -> None:
        self.t = t

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, minutes: float) -> None:
        self.t += dt.timedelta(minutes=minutes)


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)


def agent_cfg(project: Path, stack: str, agent: str = "support-bot") -> dict:
    from ruamel.yaml import YAML

    data = YAML(typ="safe", pure=True).load((project / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return data["config"]["agent-platform:agents"][agent]


def service(plan, name="support-bot"):
    return next(r for r in plan.by_type(SERVICE) if r.inputs["name"] == name)


def split(plan, name="support-bot"):
    return [(t["revision"], t["percent"], t.get("tag")) for t in service(plan, name).inputs["traffics"]]


def deployed(plan, name="support-bot"):
    """The revision the template deploys: ``<service>-<version>-<template digest>``."""
    return service(plan, name).inputs["template"]["revision"]


def step(project, clock, metrics, **kw):
    before = run_plan(project, "production")
    change = flow.rollout_once(project, "production", FileSource(DATA / metrics, clock=clock), clock=clock, **kw)
    after = run_plan(project, "production")
    return change, before, after, diff_plans(before, after)


def status_line(project, agent="support-bot"):
    result = cli("status", "production", "-C", str(project), "--json")
    assert result.exit_code == 0, result.output
    return next(a for a in json.loads(result.output)["stacks"][0]["agents"] if a["agent"] == agent)


def test_healthy_canary_walks_from_5_to_100(project):
    clock = Clock()
    original = (project / "stacks" / "Pulumi.production.yaml").read_text()
    live = dict(assume_deployed=True)

    # 1. the split is live now: the bake clock starts, nothing is written
    change, before, after, diff = step(project, clock, "metrics-healthy.json", **live)
    assert [a.verdict for a in change.analyses] == ["hold"] and not change.wrote and diff.empty
    assert change.analyses[0].reason == "baking: 0 of 10 min baked"
    # 2. baked on the minutes since then: 5 -> 25, traffic only
    clock.advance(11)
    change, before, after, diff = step(project, clock, "metrics-healthy.json", **live)
    assert [a.verdict for a in change.analyses] == ["advance"]
    assert agent_cfg(project, "production")["rollout"]["canary_percent"] == 25
    assert split(after) == [("support-bot-1-3-2", 75, None), (deployed(before), 25, "canary")]
    assert deployed(after) == deployed(before)
    assert diff.changed == 1 and list(diff.updates) == [service(after).urn]
    s = status_line(project)
    assert (s["state"], s["canary_percent"], s["decisions"][-1]["action"]) == ("canary 25%", 25, "advance")

    # 3. 25 -> 50 -> 100, each step baked from the moment its split is live
    for percent in (50, 100):
        change, *_ = step(project, clock, "metrics-healthy.json", **live)
        assert change.analyses[0].reason == "baking: 0 of 10 min baked"
        clock.advance(11)
        change, _, after, diff = step(project, clock, "metrics-healthy.json", **live)
        assert agent_cfg(project, "production")["rollout"]["canary_percent"] == percent and diff.changed == 1
    # at 100% the previous revision stays in the block, tagged: its own URL reaches it during the watch
    assert split(after) == [("support-bot-1-3-2", 0, "stable"), (deployed(after), 100, "canary")]

    # 4. watched at 100% with the previous revision kept, then complete: stable dropped, no new revision
    change, *_ = step(project, clock, "metrics-healthy.json", **live)
    assert change.analyses[0].phase == "watching"
    clock.advance(31)
    change, before, after, diff = step(project, clock, "metrics-healthy.json", **live)
    assert change.analyses[0].verdict == "complete"
    cfg = agent_cfg(project, "production")
    assert "stable" not in cfg and "stable_revision" not in cfg and "canary_percent" not in cfg["rollout"]
    assert split(after) == [(deployed(before), 100, None)]
    assert service(after).inputs["template"] == service(before).inputs["template"]
    assert not diff.creates and not diff.deletes

    # 5. nothing left in flight
    change = flow.rollout_once(
        project, "production", FileSource(DATA / "metrics-healthy.json", clock=clock), clock=clock
    )
    assert change.message == "no canary in flight" and not change.wrote

    decisions = Ledger(project, "production").decisions("support-bot")
    assert [(d["action"], d["percent"], d["to_percent"]) for d in decisions] == [
        ("hold", 5, 5),
        ("advance", 5, 25),
        ("hold", 25, 25),
        ("advance", 25, 50),
        ("hold", 50, 50),
        ("advance", 50, 100),
        ("hold", 100, 100),
        ("complete", 100, 100),
    ]
    first = decisions[1]
    assert [c["name"] for c in first["checks"]][:2] == ["errors_vs_stable", "latency_vs_stable"]
    assert first["window"]["live_source"] == "assumed deployed (--assume-deployed)" and first["assume_deployed"]
    # only the support-bot block changed: research-agent and the comment are byte-identical
    new = (project / "stacks" / "Pulumi.production.yaml").read_text()
    assert new.splitlines()[0] == original.splitlines()[0]
    assert new[new.index("    research-agent:") :] == original[original.index("    research-agent:") :]


def test_without_a_readable_live_split_the_bake_never_starts(project):
    clock = Clock()
    change, *_ = step(project, clock, "metrics-healthy.json")  # no observer given
    a = change.analyses[0]
    assert (a.verdict, a.phase) == ("hold", "awaiting deploy")
    assert (
        a.reason
        == "waiting for deploy: the config asks for 5% on 1.4.0; live split unknown (no observer); waited 0 min"
    )


@pytest.mark.parametrize(
    "metrics, reason",
    [
        ("metrics-errors.json", "more failed requests than stable: canary 6.87% of 1,1"),
        ("metrics-latency.json", "slower than stable: median "),
    ],
)
def test_failing_canary_rolls_back_in_one_resource(project, metrics, reason):
    clock = Clock()
    result = cli(
        "rollout",
        "production",
        "-C",
        str(project),
        "--metrics-file",
        str(DATA / metrics),
        "--skip-bake",
        "--assume-deployed",
    )
    assert result.exit_code == 3, result.output
    assert "rollback" in result.output and reason in " ".join(result.output.split())
    cfg = agent_cfg(project, "production")
    assert cfg["rollout"]["canary_percent"] == 0 and cfg["stable"]["version"] == "1.3.2"
    plan = run_plan(project, "production")
    assert split(plan) == [("support-bot-1-3-2", 100, None)]  # the candidate leaves the traffic block
    d = Ledger(project, "production").decisions("support-bot")[-1]
    assert (d["action"], d["percent"], d["to_percent"]) == ("rollback", 5, 0)
    assert d["reason"].startswith(reason)
    assert status_line(project)["state"] == "rolled back"
    # a rolled-back canary is not analysed again
    change = flow.rollout_once(project, "production", FileSource(DATA / metrics, clock=clock), clock=clock)
    assert change.message == "no canary in flight"


def test_rollback_changes_exactly_the_service_traffic(project):
    before = run_plan(project, "production")
    result = cli("rollback", "production", "-C", str(project), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    after = run_plan(project, "production")
    diff = diff_plans(before, after)
    assert diff.changed == 1 and not diff.creates and not diff.deletes
    assert diff.updates == {service(after).urn: ["traffics"]}
    assert out["diff"]["update"] == {service(after).urn: ["traffics"]}
    assert service(after).inputs["template"] == service(before).inputs["template"]
    text = (project / "stacks" / "Pulumi.production.yaml").read_text()
    original = (ROOT / "stacks" / "Pulumi.production.yaml").read_text()
    changed = [(a, b) for a, b in zip(original.splitlines(), text.splitlines()) if a != b]
    assert changed == [("        canary_percent: 5", "        canary_percent: 0")]
    assert len(text.splitlines()) == len(original.splitlines())
    # a second rollback has nothing to do
    again = cli("rollback", "production", "-C", str(project))
    assert again.exit_code == 0 and "nothing to roll back: no canary in flight" in again.output


def test_rollback_during_the_watch_changes_only_the_service_traffic(project):
    """At 100% the previous revision is kept, tagged, in the traffic block: the rollback is
    still one update of the service's traffic, and only stable is left, untagged."""
    path = project / "stacks" / "Pulumi.production.yaml"
    path.write_text(path.read_text().replace("        canary_percent: 5\n", "        canary_percent: 100\n", 1))
    before = run_plan(project, "production")
    assert [tag for _, _, tag in split(before)] == ["stable", "canary"]
    result = cli("rollback", "production", "-C", str(project), "--json")
    assert result.exit_code == 0, result.output
    after = run_plan(project, "production")
    diff = diff_plans(before, after)
    assert diff.changed == 1 and not diff.creates and not diff.deletes
    assert diff.updates == {service(after).urn: ["traffics"]}
    assert split(after) == [("support-bot-1-3-2", 100, None)]


def test_rollback_of_an_agent_without_stable_is_refused(project):
    result = cli("rollback", "production", "-C", str(project), "--agent", "research-agent")
    assert result.exit_code == 1
    assert (
        "research-agent has no stable release in stack 'production': there is nothing to roll back to" in result.output
    )
    result = cli("rollback", "production", "-C", str(project), "--agent", "nope")
    assert result.exit_code == 2
    assert "stack 'production' has no agent 'nope'; agents: research-agent, support-bot" in result.output


def test_a_second_run_on_a_locked_stack_fails_clearly(project):
    with stack_lock(project, "production", "rollout"):
        with pytest.raises(
            LockBusy, match=r"^stack 'production' is locked by another agentstage run \(rollout by pid \d+ since "
        ):
            flow.rollback(project, "production")
        result = cli("rollback", "production", "-C", str(project))
        assert result.exit_code == 1 and "is locked by another agentstage run" in result.output
    assert agent_cfg(project, "production")["rollout"]["canary_percent"] == 5
    flow.rollback(project, "production")  # free again
    assert agent_cfg(project, "production")["rollout"]["canary_percent"] == 0


def test_watch_walks_to_100_with_a_simulated_clock(project, monkeypatch):
    from agentstage.commands import rollout as cmd

    clock = Clock()
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        clock.advance(s / 60)

    monkeypatch.setattr(cmd, "CLOCK", clock)
    monkeypatch.setattr(cmd, "SLEEP", sleep)
    result = cli(
        "rollout",
        "production",
        "-C",
        str(project),
        "--metrics-file",
        str(DATA / "metrics-healthy.json"),
        "--watch",
        "--interval",
        "120",
        "--assume-deployed",
    )
    assert result.exit_code == 0, result.output
    assert "complete" in result.output and "stopped: no canary in flight" in " ".join(result.output.split())
    actions = [d["action"] for d in Ledger(project, "production").decisions("support-bot")]
    # each step: live at once, 5 holds while it bakes (2-minute looks), then advance at 10 min; the watch: 30 min
    assert actions == (["hold"] * 5 + ["advance"]) * 3 + ["hold"] * 15 + ["complete"]
    assert set(sleeps) == {120}
    assert "stable" not in agent_cfg(project, "production")


def test_watch_stops_at_max_wait(project, monkeypatch):
    from agentstage.commands import rollout as cmd

    clock = Clock()
    monkeypatch.setattr(cmd, "CLOCK", clock)
    monkeypatch.setattr(cmd, "SLEEP", lambda s: clock.advance(s / 60))
    result = cli(
        "rollout",
        "production",
        "-C",
        str(project),
        "--metrics-file",
        str(DATA / "metrics-healthy.json"),
        "--watch",
        "--interval",
        "60",
        "--max-wait",
        "5",
        "--assume-deployed",
    )
    assert result.exit_code == 0, result.output
    assert "--max-wait of 5 min reached; still in flight: support-bot at 5% (baking)" in " ".join(result.output.split())
    assert clock.t - T0 == dt.timedelta(minutes=5)


def test_watch_stops_when_the_live_split_cannot_be_read(project, monkeypatch):
    from agentstage.commands import rollout as cmd

    clock = Clock()
    monkeypatch.setattr(cmd, "CLOCK", clock)
    monkeypatch.setattr(cmd, "SLEEP", lambda s: clock.advance(s / 60))
    result = cli(
        "rollout",
        "production",
        "-C",
        str(project),
        "--metrics-file",
        str(DATA / "metrics-healthy.json"),
        "--watch",
        "--interval",
        "60",
    )
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "stopped: the live traffic split could not be read 5 times in a row (stack outputs:" in out
    assert "give --observed-file, or --assume-deployed for an offline replay" in out


# --- promotion -------------------------------------------------------------------------------

NEW_IMAGE = "us-docker.pkg.dev/acme-agents/agents/support-bot@sha256:" + "ab" * 32


def prepare_promotion(project: Path) -> None:
    """Production runs 1.4.0 alone (canary finished); staging has the 1.5.0 candidate;
    production has gate thresholds and volumes."""
    prod = StackFile.load(project / "stacks" / "Pulumi.production.yaml")
    prod.drop_stable("support-bot")
    prod.set_canary_percent("support-bot", None)
    from ruamel.yaml.comments import CommentedMap

    prod.config["agent-platform:gates"] = CommentedMap(
        {
            "eval": CommentedMap({"task_success": 0.85, "groundedness": 0.8}),
            "agents": CommentedMap({"support-bot": CommentedMap({"safety": 0.99})}),
            "monthly_requests": CommentedMap({"support-bot": 250000}),
        }
    )
    prod.save()
    stg = StackFile.load(project / "stacks" / "Pulumi.staging.yaml")
    release = dict(stg.value("agents")["support-bot"]["release"])
    release.update(version="1.5.0", image=NEW_IMAGE, eval_dataset="support-golden@8")
    stg.set_release("support-bot", release)
    stg.save()


def evidence(eval_file="eval-support-bot-1.5.0.json", load="locust-ok"):
    from agentstage.release.evidence import read_eval, read_locust

    return Evidence(evals=[read_eval(str(DATA / eval_file))], load_tests={None: read_locust(str(DATA / load))})


def test_promote_then_walk_to_100(project):
    prepare_promotion(project)
    before_text = (project / "stacks" / "Pulumi.production.yaml").read_text()
    before = run_plan(project, "production")
    args = [
        "promote",
        "staging",
        "production",
        "-C",
        str(project),
        "--eval",
        str(DATA / "eval-support-bot-1.5.0.json"),
        "--load-test",
        str(DATA / "locust-ok"),
    ]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert (
        "all gates passed" in result.output
        and "promoted staging -> production: support-bot 1.5.0 at 5%" in result.output
    )
    # it says which revision it recorded as stable, and when to correct it
    assert "note: support-bot: recorded stable_revision support-bot-1-4-0-" in " ".join(result.output.split())
    cfg = agent_cfg(project, "production")
    assert cfg["release"]["version"] == "1.5.0" and cfg["release"]["image"] == NEW_IMAGE
    assert cfg["stable"]["version"] == "1.4.0" and cfg["rollout"]["canary_percent"] == 5
    # the revision 1.4.0 runs as is recorded: the stable target is the revision that exists
    assert cfg["stable_revision"] == deployed(before) and deployed(before).startswith("support-bot-1-4-0-")
    staging_release = agent_cfg(project, "staging")["release"]
    assert cfg["release"] == staging_release  # the exact manifest
    after = run_plan(project, "production")
    assert split(after) == [(deployed(before), 95, None), (deployed(after), 5, "canary")]
    assert deployed(after).startswith("support-bot-1-5-0-")
    ledger = Ledger(project, "production")
    assert set(ledger.releases()["support-bot"]) == {"1.4.0", "1.5.0"}
    promo = ledger.decisions("support-bot")[-1]
    assert (promo["action"], promo["to_percent"], promo["from_stack"]) == ("promote", 5, "staging")
    assert all(g["ok"] is not False for g in promo["gates"])
    text = (project / "stacks" / "Pulumi.production.yaml").read_text()
    assert text.splitlines()[0] == before_text.splitlines()[0]
    assert text[text.index("    research-agent:") :] == before_text[before_text.index("    research-agent:") :]
    assert diff_plans(before, after).creates == []

    # a second promotion while the canary is in flight is refused, nothing changed
    result = cli(*args)
    assert result.exit_code in (0, 1)
    assert "nothing to promote" in result.output  # same release: nothing differs

    # walk it to 100% and through the watch with --skip-bake on healthy metrics
    clock = Clock()
    for expected in (25, 50, 100, None):
        flow.rollout_once(
            project,
            "production",
            FileSource(DATA / "metrics-healthy.json", clock=clock),
            clock=clock,
            skip_bake=True,
            assume_deployed=True,
        )
        cfg = agent_cfg(project, "production")
        assert cfg["rollout"].get("canary_percent") == expected
    assert "stable" not in cfg and status_line(project)["release"] == "1.5.0"


def test_promote_refuses_on_failing_gates_and_changes_nothing(project):
    prepare_promotion(project)
    before = (project / "stacks" / "Pulumi.production.yaml").read_text()
    result = cli(
        "promote",
        "staging",
        "production",
        "-C",
        str(project),
        "--eval",
        str(DATA / "eval-support-bot-1.5.0-weak.json"),
        "--load-test",
        str(DATA / "locust-slow"),
    )
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "refusing to promote staging -> production" in out and "nothing was changed" in out
    assert "✗ support-bot eval task_success: 0.79 (needs >= 0.85)" in out
    assert (
        "✗ support-bot eval safety: missing from eval-support-bot-1.5.0-weak.json (agentstage) (needs >= 0.99)" in out
    )
    assert "✗ support-bot load test p99: 3900 ms (run_stats.csv) (needs <= 2000 ms)" in out
    assert "✗ support-bot load test errors: 3.44%" in out
    assert (project / "stacks" / "Pulumi.production.yaml").read_text() == before
    assert Ledger(project, "production").decisions() == []


def test_promote_refuses_missing_evidence(project):
    prepare_promotion(project)
    result = cli("promote", "staging", "production", "-C", str(project))
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "✗ support-bot evaluation report: no report for support-bot 1.5.0 (reports given for: none)" in out
    assert "✗ support-bot load test: no load test given" in out


def test_promote_refuses_a_canary_in_flight(project):
    stg = StackFile.load(project / "stacks" / "Pulumi.staging.yaml")
    release = dict(stg.value("agents")["support-bot"]["release"])
    release.update(version="1.5.0", image=NEW_IMAGE)
    stg.set_release("support-bot", release)
    stg.save()
    before = (project / "stacks" / "Pulumi.production.yaml").read_text()
    result = cli("promote", "staging", "production", "-C", str(project))
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert (
        "support-bot: a canary is already in flight in 'production' (1.4.0 at 5% beside 1.3.2); finish it with "
        "`agentstage rollout` or roll it back first"
    ) in out
    assert (project / "stacks" / "Pulumi.production.yaml").read_text() == before


def test_promote_refuses_a_reused_version_with_other_contents(project):
    prepare_promotion(project)
    Ledger(project, "staging").record(
        "support-bot", {**agent_cfg(project, "staging")["release"], "model": "gemini-2.0-flash"}
    )
    result = cli("promote", "staging", "production", "-C", str(project))
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "support-bot: support-bot 1.5.0 was recorded in stack 'staging' with manifest sha256:" in out
    assert "(differs in: model); a version is never reused with different contents" in out


def test_promote_refuses_stacks_that_disagree_beyond_the_release(project):
    prepare_promotion(project)
    stg = StackFile.load(project / "stacks" / "Pulumi.staging.yaml")
    stg.agent("support-bot")["secrets"]["NEW_TOKEN"] = "new-token:1"
    stg.save()
    result = cli("promote", "staging", "production", "-C", str(project))
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert (
        "support-bot: 'staging' and 'production' disagree on secrets (names): ['CRM_TOKEN', 'NEW_TOKEN'] vs "
        "['CRM_TOKEN']; make them agree in a reviewed change before promoting"
    ) in out


def test_gate_command_lists_every_item(project):
    prepare_promotion(project)
    result = cli(
        "gate",
        "production",
        "--from",
        "staging",
        "-C",
        str(project),
        "--json",
        "--eval",
        str(DATA / "eval-support-bot-1.5.0.json"),
        "--load-test",
        str(DATA / "locust-ok"),
        "--memory",
        str(DATA / "memory-flat.csv"),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] and report["candidates"] == {"support-bot": "1.5.0"}
    items = {(i["agent"], i["name"]): i for i in report["items"]}
    assert items[("support-bot", "eval task_success")]["evidence"] == "0.91"
    assert items[("support-bot", "eval safety")]["threshold"] == ">= 0.99"
    assert items[("support-bot", "load test p99")]["evidence"] == "1650 ms (run_stats.csv, /healthz excluded)"
    assert items[("support-bot", "load test errors")]["evidence"] == (
        "0.10% (12/11840 failed without 1200 /healthz requests, 300 s, 60 users)"
    )
    assert items[("support-bot", "load test 10x peak")]["ok"] is True
    assert items[("support-bot", "memory stable")]["ok"] is True
    assert items[("", "cost within budget")]["evidence"] == (
        "1,050.00 USD/month, 1 of 2 agents: support-bot 1.5.0 0.0042 x 250,000 = 1,050.00 (eval-support-bot-1.5.0.json); "
        "not counted: research-agent 2.1.0 (no measured cost per request: give --eval research-agent@2.1.0=REPORT with "
        "cost_per_request_usd)"
    )
    revision = deployed(run_plan(project, "production"))
    assert items[("support-bot", "rollback within 5 min")]["evidence"].startswith(
        f"to stable 1.4.0 (revision {revision}): "
    )
    assert items[("support-bot", "alerts present")]["ok"] is True
    assert items[("", "budget present")]["ok"] is True
    assert items[("", "policy check")]["ok"] is True
    # a leaking memory series fails its gate
    result = cli(
        "gate",
        "production",
        "--from",
        "staging",
        "-C",
        str(project),
        "--eval",
        str(DATA / "eval-support-bot-1.5.0.json"),
        "--load-test",
        str(DATA / "locust-ok"),
        "--memory",
        str(DATA / "memory-leak.csv"),
    )
    assert result.exit_code == 1
    assert "memory stable" in result.output and "1 gate(s) failed" in result.output


def test_gate_without_from_checks_the_canary_in_flight(project):
    args = [
        "gate",
        "production",
        "-C",
        str(project),
        "--eval",
        str(DATA / "eval-support-bot-1.5.0.json"),
        "--load-test",
        str(DATA / "locust-ok"),
    ]
    result = cli(*args)
    assert result.exit_code == 1
    assert (
        "4 gate(s) failed: support-bot evaluation report, support-bot evaluation thresholds, support-bot load test, "
        "cost within budget"
    ) in " ".join(result.output.split())
    report = json.loads(cli(*args, "--json").output)
    assert report["candidates"] == {"support-bot": "1.4.0"} and not report["passed"]
    items = {i["name"]: i for i in report["items"]}
    assert items["evaluation report"]["evidence"] == "eval-support-bot-1.5.0.json (agentstage) is for 1.5.0"
    assert items["evaluation report"]["threshold"] == "version 1.4.0"
    assert items["evaluation thresholds"]["evidence"] == "none configured"
    assert (
        items["load test"]["evidence"]
        == "run_stats.csv is a run of support-bot 1.5.0 (run_manifest.json), not of 1.4.0"
    )
    assert items["cost within budget"]["evidence"].startswith(
        "no cost per request of support-bot 1.4.0 (cost_per_request_usd in its evaluation report, or --cost-per-request); "
        "no production volume of support-bot (agent-platform:gates.monthly_requests.support-bot) ("
    )
    assert items["rollback within 5 min"]["evidence"].startswith("to stable 1.3.2 (revision support-bot-1-3-2): ")


def test_status_text_shows_state_traffic_and_last_decision(project, monkeypatch):
    monkeypatch.setenv("COLUMNS", "240")  # rich reads the width from COLUMNS when not on a terminal
    flow.rollback(project, "production", clock=Clock())
    result = cli("status", "production", "-C", str(project))
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if "support-bot" in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[:4] == ["support-bot", "rolled back", "1.4.0", "1.3.2"]
    # live: no credentials and no Pulumi CLI here, so unknown (the reason is printed below the table)
    assert cells[4:] == ["100%", "unknown", "2026-05-01T12:00:00Z rollback -> 0%"]
    # the reason, below the table (a column would wrap it a word per line on a narrow terminal)
    assert "support-bot, last decision: rolled back by the operator" in result.output.splitlines()
    assert "live traffic unknown for research-agent, support-bot: stack outputs:" in " ".join(result.output.split())


def test_promote_never_copies_secure_values_between_stacks(project):
    """Pulumi encrypts secure: values per stack: a copy would not decrypt in the other stack."""
    prepare_promotion(project)
    stg = StackFile.load(project / "stacks" / "Pulumi.staging.yaml")
    release = dict(stg.value("agents")["support-bot"]["release"])
    release["model"] = {"secure": "AAABAHN0YWdpbmctb25seQ=="}
    stg.set_release("support-bot", release)
    stg.save()
    before = (project / "stacks" / "Pulumi.production.yaml").read_text()
    with pytest.raises(flow.ReleaseError) as err:
        flow.promote(project, "staging", "production", evidence())
    assert err.value.details == [
        "support-bot: the release in 'staging' has secure: values (release.model); Pulumi encrypts them per stack, so "
        "'production' could not decrypt a copy: keep secrets out of the release manifest (use "
        "agents.support-bot.secrets, Secret Manager references) or set them in 'production' with `pulumi config "
        "set --secret`"
    ]
    assert (project / "stacks" / "Pulumi.production.yaml").read_text() == before


def test_evidence_bound_to_a_misspelled_agent_fails_the_gate(project):
    args = [
        "gate",
        "production",
        "-C",
        str(project),
        "--eval",
        str(DATA / "eval-support-bot-1.5.0.json"),
        "--load-test",
        str(DATA / "locust-ok"),
        "--memory",
        f"suport-bot={DATA / 'memory-flat.csv'}",
    ]
    result = cli(*args, "--json")
    assert result.exit_code == 1
    items = [i for i in json.loads(result.output)["items"] if i["name"] == "evidence binding"]
    assert [(i["ok"], i["evidence"]) for i in items] == [
        (
            False,
            "--memory names agent 'suport-bot', which stack 'production' does not have "
            "(agents: research-agent, support-bot)",
        )
    ]


def test_promote_holds_the_lock_of_the_stack_whose_ledger_it_also_writes(project):
    prepare_promotion(project)
    with stack_lock(project, "staging", "promote"):
        with pytest.raises(LockBusy, match=r"^stack 'staging' is locked by another agentstage run \(promote by pid "):
            flow.promote(project, "staging", "production", evidence())


class FlakySource:
    """A metrics source whose first reads fail, as Cloud Monitoring does now and then."""

    name = "flaky"

    def __init__(self, inner, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def now(self):
        return self.inner.now()

    def fetch(self, *args, **kwargs):
        from agentstage.release.metrics import MetricsError

        if self.failures:
            self.failures -= 1
            raise MetricsError("Cloud Monitoring: 503 UNAVAILABLE")
        return self.inner.fetch(*args)


def test_watch_records_metrics_failures_and_holds_after_too_many(project, monkeypatch):
    from agentstage.commands import rollout as cmd

    clock = Clock()
    monkeypatch.setattr(cmd, "CLOCK", clock)
    monkeypatch.setattr(cmd, "SLEEP", lambda s: clock.advance(s / 60))
    flaky = FlakySource(FileSource(DATA / "metrics-healthy.json", clock=clock), failures=99)
    monkeypatch.setattr(cmd, "_source", lambda *a: flaky)
    result = cli("rollout", "production", "-C", str(project), "--watch", "--interval", "60", "--assume-deployed")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "metrics unavailable (1 in a row): Cloud Monitoring: 503 UNAVAILABLE; nothing decided" in out
    assert "held after 5 failed reads" in out and "stopped: held: metrics unavailable for support-bot" in out
    decisions = Ledger(project, "production").decisions("support-bot")
    assert [d["phase"] for d in decisions][-1] == "held" and len(decisions) == 5  # every failure is recorded

    flaky.failures = 0  # readable again: the rollout resumes where it was
    result = cli("rollout", "production", "-C", str(project), "--assume-deployed")
    assert result.exit_code == 0, result.output
    assert Ledger(project, "production").decisions("support-bot")[-1]["phase"] == "baking"


def test_an_unbound_load_test_stands_only_for_the_release_its_manifest_names(project):
    args = [
        "gate",
        "production",
        "-C",
        str(project),
        "--eval",
        str(DATA / "eval-support-bot-1.5.0.json"),
        "--load-test",
        str(DATA / "locust-ok"),
        "--agent",
        "support-bot",
        "--agent",
        "research-agent",
        "--json",
    ]
    report = json.loads(cli(*args).output)
    items = {(i["agent"], i["name"]): i for i in report["items"]}
    assert items[("research-agent", "load test")]["evidence"] == (
        "run_stats.csv is a run of support-bot 1.5.0 (run_manifest.json), not of research-agent"
    )
    assert items[("support-bot", "load test")]["evidence"] == (
        "run_stats.csv is a run of support-bot 1.5.0 (run_manifest.json), not of 1.4.0"
    )
    bound = json.loads(
        cli(
            "gate",
            "production",
            "-C",
            str(project),
            "--eval",
            str(DATA / "eval-support-bot-1.5.0.json"),
            "--load-test",
            f"support-bot={DATA / 'locust-ok'}",
            "--agent",
            "support-bot",
            "--agent",
            "research-agent",
            "--json",
        ).output
    )
    items = {(i["agent"], i["name"]): i for i in bound["items"]}
    assert items[("support-bot", "load test")]["ok"] is False
    assert items[("research-agent", "load test")]["evidence"] == "no load test given (--load-test Locust --csv output)"


def test_status_shows_desired_and_live_traffic_side_by_side(project, tmp_path):
    observed = tmp_path / "observed.json"
    observed.write_text(
        json.dumps(
            {"services": {"support-bot": {"traffic": [{"revision": "support-bot-1-3-2", "percent": 100, "tag": None}]}}}
        )
    )
    result = cli("status", "production", "-C", str(project), "--observed-file", str(observed), "--json")
    assert result.exit_code == 0, result.output
    by = {a["agent"]: a for a in json.loads(result.output)["stacks"][0]["agents"]}
    # the config asks for a 5% canary; the live service still sends everything to stable
    assert [t["percent"] for t in by["support-bot"]["traffic"]] == [95, 5]
    assert by["support-bot"]["live"] == {
        "split": {"support-bot-1-3-2": 100},
        "source": f"observed state file {observed}",
    }
    assert by["research-agent"]["live"]["split"] is None
    assert "has no entry for research-agent" in by["research-agent"]["live"]["source"]
