"""The readiness gate is as strict as the checklist it implements: load tests bound to the
release by their manifest, health checks out of the figures, 10x the expected peak sustained,
every agent's cost summed against the budget, scores compared with stable's on the same
dataset, every number in range and every binding used, a measured rollback time, and each
gate run recorded in the ledger.

The items are checked with :func:`evaluate_gates` on ``examples/release`` where production runs
staging's candidates as canaries (support-bot 1.5.0 beside 1.4.0, research-agent 2.2.0 beside
2.1.0); the commands are checked through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.release import gates as gates_module
from agentstage.release.evidence import EvidenceError, read_eval, read_load_tests, read_locust, read_memory
from agentstage.release.gates import Evidence, GateItem, GateReport, evaluate_gates
from agentstage.release.ledger import Ledger
from agentstage.release.stackfile import StackFile, plain
from components.release_spec import GatesSpec
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "release"
EVIDENCE = EXAMPLE / "evidence"
DATA = ROOT / "tests" / "data" / "release"
T0 = 1777636800  # 2026-05-01T12:00:00Z
runner = CliRunner()


# --- helpers ----------------------------------------------------------------------------------


def as_canaries(project: Path, agents=("support-bot", "research-agent")) -> Path:
    """Production runs staging's release of each of ``agents`` at 5% beside its own."""
    prod = StackFile.load(project / "stacks" / "Pulumi.production.yaml")
    stg = StackFile.load(project / "stacks" / "Pulumi.staging.yaml")
    for agent in agents:
        prod.move_release_to_stable(agent)
        prod.set_release(agent, plain(stg.agent(agent)["release"]))
        prod.set_canary_percent(agent, 5)
    prod.save()
    return project


def copy_example(tmp: Path) -> Path:
    dest = tmp / "demo"
    shutil.copytree(EXAMPLE, dest)
    return dest


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """Read-only: examples/release with both candidates in flight in production."""
    return as_canaries(copy_example(tmp_path_factory.mktemp("gate")))


@pytest.fixture(scope="module")
def setup(demo):
    from agentstage.config import platform_from_config
    from agentstage.engine import load_project, load_stack_config, run_plan

    project = load_project(demo)
    spec = platform_from_config(load_stack_config(project, "production").values)
    budget = StackFile.load(project.stack_file("production")).value("budget")
    return project.dir, spec, budget, run_plan(demo, "production")


@pytest.fixture
def fast(monkeypatch):
    """Leave out the policy check and time a rollback as 0.5 s (the items under test are others)."""
    monkeypatch.setattr(gates_module, "_policy_items", lambda *a: [])
    monkeypatch.setattr(gates_module, "_time_rollback", lambda *a: (0.5, None))


def gate(
    setup, evidence: Evidence, candidates=("support-bot",), *, project_dir: Path | None = None, **gate_settings
) -> dict[tuple[str, str], GateItem]:
    directory, spec, budget, plan = setup
    if gate_settings:
        spec = spec.model_copy(update={"gates": GatesSpec(**{**spec.gates.model_dump(), **gate_settings})})
    report = evaluate_gates(
        project_dir=project_dir or directory,
        stack="production",
        spec=spec,
        raw_budget=budget,
        plan=plan,
        candidates=list(candidates),
        evidence=evidence,
    )
    return {(i.agent, i.name): i for i in report.items}


def evidence(
    *, evals=(f"{EVIDENCE}/eval-support-bot-1.5.0.json",), load=(EVIDENCE / "locust",), cost=None, memory=None
) -> Evidence:
    ev = Evidence(evals=[read_eval(str(e)) for e in evals], cost_per_request_usd=cost, memory=memory or {})
    for item in load:
        agent, path = item if isinstance(item, tuple) else (None, item)
        ev.load_tests.setdefault(agent, []).extend(read_load_tests(str(path)))
    return ev


MANIFEST = {
    "agent": "support-bot",
    "version": "1.5.0",
    "url": "https://support-bot-123.us-central1.run.app",
    "started": "2026-05-01T12:00:00Z",
    "ended": "2026-05-01T12:05:00Z",
}
STATS_HEADER = "Type,Name,Request Count,Failure Count,50%,95%,99%"
HISTORY_HEADER = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,Total Request Count,Total Failure Count"


def write_run(
    directory: Path,
    *,
    prefix: str = "run",
    rows=(("POST", "/chat", 1000, 5, 500, 900, 1200), ("GET", "/healthz", 100, 0, 5, 8, 10)),
    history=None,
    manifest=MANIFEST,
) -> Path:
    """A Locust --csv run: stats (the Aggregated row summing ``rows``), history rows
    (seconds after T0, users, requests/s, failures/s, total requests, total failures) and manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    total_n, total_f = sum(r[2] for r in rows), sum(r[3] for r in rows)
    lines = [STATS_HEADER] + [",".join(map(str, r)) for r in rows]
    lines.append(
        f",Aggregated,{total_n},{total_f},{max(r[4] for r in rows)},{max(r[5] for r in rows)},{max(r[6] for r in rows)}"
    )
    (directory / f"{prefix}_stats.csv").write_text("\n".join(lines) + "\n")
    if history is not None:
        hist = [HISTORY_HEADER] + [f"{T0 + t},{u},,Aggregated,{rps},{fps},{n},{f}" for t, u, rps, fps, n, f in history]
        (directory / f"{prefix}_stats_history.csv").write_text("\n".join(hist) + "\n")
    if manifest is not None:
        (directory / f"{prefix}_manifest.json").write_text(json.dumps(manifest))
    return directory / f"{prefix}_stats.csv"


def ramp(seconds: int, rps: float, *, step: int = 10, users: int = 20, failure_share: float = 0.0):
    """History rows of a steady run: ``rps`` requests/s for ``seconds``."""
    return [
        (t, users, rps, rps * failure_share, int(rps * t), int(rps * t * failure_share))
        for t in range(0, seconds + 1, step)
    ]


def cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)


# --- 1. load tests bound to agent and version ------------------------------------------------------


def test_a_load_test_without_a_manifest_fails_and_says_how_to_write_it(setup, fast, tmp_path):
    write_run(tmp_path / "locust", manifest=None, history=ramp(120, 50))
    item = gate(setup, evidence(load=[tmp_path / "locust"]))[("support-bot", "load test")]
    assert item.ok is False
    assert item.evidence == (
        'run_stats.csv has no manifest: write run_manifest.json beside it, {"agent": "support-bot", "version": '
        '"1.5.0", "url": "<the URL the run called>", "started": "<ISO 8601 UTC>", "ended": "<ISO 8601 UTC>"} '
        "(docs/release.md, load test manifest)"
    )
    assert item.threshold == "a run of support-bot 1.5.0 (its manifest)"
    # no figures of an unbound run are shown as evidence of this release
    assert ("support-bot", "load test p99") not in gate(setup, evidence(load=[tmp_path / "locust"]))


def test_one_agents_load_test_does_not_pass_another(setup, fast):
    research_run = EVIDENCE / "locust" / "research-agent_stats.csv"
    items = gate(setup, evidence(load=[("support-bot", research_run)]))
    assert items[("support-bot", "load test")].ok is False
    assert items[("support-bot", "load test")].evidence == (
        "research-agent_stats.csv is a run of research-agent 2.2.0 (research-agent_manifest.json), not of support-bot"
    )


def test_a_load_test_of_another_version_fails(setup, fast, tmp_path):
    write_run(tmp_path / "old", manifest={**MANIFEST, "version": "1.4.0"}, history=ramp(120, 50))
    item = gate(setup, evidence(load=[tmp_path / "old"]))[("support-bot", "load test")]
    assert (item.ok, item.evidence) == (
        False,
        "run_stats.csv is a run of support-bot 1.4.0 (run_manifest.json), not of 1.5.0",
    )


def test_a_directory_of_runs_gives_each_agent_its_own(setup, fast):
    items = gate(
        setup,
        evidence(
            evals=[
                f"{EVIDENCE}/eval-support-bot-1.5.0.json",
                f"research-agent@2.2.0={EVIDENCE}/vertex-research-agent-2.2.0.json",
            ]
        ),
        candidates=("research-agent", "support-bot"),
    )
    assert items[("support-bot", "load test")].evidence == (
        "support-bot_stats.csv: support-bot 1.5.0 at https://support-bot-123456789012.us-central1.run.app, "
        "2026-05-01T12:00:00Z to 2026-05-01T12:05:00Z (support-bot_manifest.json)"
    )
    assert items[("research-agent", "load test")].evidence.startswith(
        "research-agent_stats.csv: research-agent 2.2.0 at "
    )
    assert (
        items[("research-agent", "load test p99")].evidence == "1850 ms (research-agent_stats.csv, /healthz excluded)"
    )


def test_runs_none_of_which_is_the_agents_are_listed(setup, fast, tmp_path):
    write_run(tmp_path / "runs", prefix="a", manifest={**MANIFEST, "agent": "research-agent", "version": "2.2.0"})
    write_run(tmp_path / "runs", prefix="b", manifest=None)
    item = gate(setup, evidence(load=[tmp_path / "runs"]))[("support-bot", "load test")]
    assert item.evidence == (
        "none of the 2 runs given is of support-bot: a_stats.csv (research-agent 2.2.0); b_stats.csv (no manifest); a "
        'run\'s manifest is PREFIX_manifest.json beside its CSV files, {"agent": "support-bot", "version": "1.5.0", '
        '"url": "<the URL the run called>", "started": "<ISO 8601 UTC>", "ended": "<ISO 8601 UTC>"}'
    )


def test_two_runs_of_the_same_release_are_ambiguous(setup, fast, tmp_path):
    write_run(tmp_path / "runs", prefix="a")
    write_run(tmp_path / "runs", prefix="b")
    item = gate(setup, evidence(load=[tmp_path / "runs"]))[("support-bot", "load test")]
    assert (
        item.evidence
        == "2 runs of support-bot 1.5.0 given (a_stats.csv, b_stats.csv): give one, --load-test support-bot=PATH"
    )


def test_manifest_json_in_a_directory_of_one_run(tmp_path):
    write_run(tmp_path, manifest=None)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    assert read_locust(str(tmp_path)).manifest.agent == "support-bot"
    assert read_locust(str(tmp_path / "run_stats.csv")).manifest is None  # a file names its own PREFIX_manifest.json


@pytest.mark.parametrize(
    "change, message",
    [
        ({"agent": None}, "missing agent (needs agent, version, url, started, ended)"),
        ({"agent": "Support Bot"}, 'agent: "Support Bot" is not an agent name'),
        ({"version": 1.5}, 'version: 1.5 is not a release version (a string, e.g. "1.5.0")'),
        ({"url": "support-bot.internal"}, 'url: "support-bot.internal" is not the http(s) URL the run called'),
        (
            {"started": "2026-05-01T12:00:00"},
            "started: '2026-05-01T12:00:00' has no time zone; give ISO 8601 UTC, e.g. 2026-05-01T12:00:00Z",
        ),
        ({"ended": "yesterday"}, "ended: 'yesterday' is not a time; give ISO 8601 UTC, e.g. 2026-05-01T12:00:00Z"),
        ({"ended": "2026-05-01T11:00:00Z"}, "ended 2026-05-01T11:00:00Z is not after started 2026-05-01T12:00:00Z"),
        (
            {"phases": [{"name": "peak", "started": "2026-05-01T11:00:00Z", "ended": "2026-05-01T12:01:00Z"}]},
            "phases[0]: 2026-05-01T11:00:00Z to 2026-05-01T12:01:00Z is not a period within the run (2026-05-01T12:00:00Z "
            "to 2026-05-01T12:05:00Z)",
        ),
    ],
)
def test_bad_manifests_are_refused(tmp_path, change, message):
    manifest = {k: v for k, v in {**MANIFEST, **change}.items() if v is not None}
    write_run(tmp_path, manifest=manifest)
    with pytest.raises(EvidenceError) as err:
        read_load_tests(str(tmp_path))
    assert str(err.value) == f"load test manifest {tmp_path / 'run_manifest.json'}: {message}"


def test_a_manifest_of_another_run_is_refused(tmp_path):
    """The history's samples must lie within the manifest's started..ended."""
    write_run(tmp_path, history=[(3600, 10, 50, 0, 100, 0), (3660, 10, 50, 0, 3100, 0)])
    with pytest.raises(EvidenceError) as err:
        read_load_tests(str(tmp_path))
    assert str(err.value) == (
        f"load test {tmp_path / 'run_stats_history.csv'}: the run's samples span 2026-05-01T13:00:00Z to "
        "2026-05-01T13:01:00Z, outside its manifest's 2026-05-01T12:00:00Z to 2026-05-01T12:05:00Z (run_manifest.json); "
        "the manifest describes another run"
    )


# --- 2. health checks left out of the figures --------------------------------------------------------


def test_health_check_rows_do_not_dilute_errors_and_latency(setup, fast, tmp_path):
    """200 /healthz requests (fast, never failing) would bring 10/1000 failures to 10/1200 and
    the Aggregated p99 down; one endpoint left: its own figures are exact."""
    rows = (("POST", "/chat", 1000, 10, 800, 1900, 2400), ("GET", "/healthz", 200, 0, 5, 8, 10))
    path = write_run(tmp_path / "run", rows=rows, history=ramp(120, 50))
    # the Aggregated row as Locust writes it would have passed both gates
    text = path.read_text().replace(",Aggregated,1200,10,800,1900,2400", ",Aggregated,1200,10,700,1500,1990")
    path.write_text(text)
    run = read_locust(str(path))
    assert (run.error_rate, run.p99_ms) == (10 / 1200, 1990)
    items = gate(setup, evidence(load=[tmp_path / "run"]))
    assert (items[("support-bot", "load test errors")].ok, items[("support-bot", "load test errors")].evidence) == (
        False,
        "1.00% (10/1000 failed without 200 /healthz requests, 120 s, 20 users)",
    )
    assert (items[("support-bot", "load test p99")].ok, items[("support-bot", "load test p99")].evidence) == (
        False,
        "2400 ms (run_stats.csv, /healthz excluded)",
    )


def test_with_several_endpoints_left_the_percentiles_are_an_upper_bound(setup, fast, tmp_path):
    rows = (
        ("POST", "/chat", 1000, 0, 800, 1400, 1900),
        ("POST", "/search", 500, 0, 300, 700, 2100),
        ("GET", "/healthz?probe=1", 200, 0, 5, 8, 10),
    )
    write_run(tmp_path / "run", rows=rows, history=ramp(120, 50))
    items = gate(setup, evidence(load=[tmp_path / "run"]))
    item = items[("support-bot", "load test p99")]
    assert (item.ok, item.evidence) == (
        False,
        "<= 2100 ms (run_stats.csv, /healthz excluded: the highest p99 of 2 "
        "endpoints, an upper bound; the Aggregated row mixes in the health checks)",
    )
    assert items[("support-bot", "load test p95")].evidence.startswith("<= 1400 ms (run_stats.csv, /healthz excluded:")
    assert (
        items[("support-bot", "load test errors")].evidence
        == "0.00% (0/1500 failed without 200 /healthz requests, 120 s, 20 users)"
    )


def test_a_run_of_health_checks_only_fails(setup, fast, tmp_path):
    write_run(tmp_path / "run", rows=(("GET", "/healthz", 100, 0, 5, 8, 10),), history=ramp(120, 50))
    item = gate(setup, evidence(load=[tmp_path / "run"]))[("support-bot", "load test errors")]
    assert (item.ok, item.evidence) == (False, "no requests recorded besides /healthz")


def test_endpoint_rows_must_add_up_to_the_aggregated_row(tmp_path):
    path = write_run(tmp_path)
    path.write_text(path.read_text().replace(",Aggregated,1100,5,", ",Aggregated,1100,3,"))
    with pytest.raises(EvidenceError) as err:
        read_locust(str(path))
    assert str(err.value) == (
        f"load test {path}: the endpoint rows count 1100 requests and 5 failures, the Aggregated "
        "row 1100 and 3; is the file complete?"
    )


# --- 3. 10x the expected peak, from the run's own ramp ----------------------------------------------


def test_the_walkthrough_run_sustained_10x_the_expected_peak(setup, fast):
    item = gate(setup, evidence())[("support-bot", "load test 10x peak")]
    assert item.ok is True
    assert item.evidence == (
        ">= 39.1 req/s for 300 s with 10-60 users, 0.11% failed (Aggregated history x 90.8%, the "
        "share of requests other than /healthz)"
    )
    assert item.threshold == (
        ">= 3.86 req/s for 60 s, errors < 1.00% (10 x the expected peak 0.386 req/s: "
        "monthly_requests 250,000 / 30 days x peak_to_average 4)"
    )


def test_a_run_below_10x_the_peak_fails(setup, fast, tmp_path):
    write_run(tmp_path / "run", history=ramp(300, 3.5))  # x 1000/1100 without /healthz: 3.18 req/s < 3.86
    item = gate(setup, evidence(load=[tmp_path / "run"]))[("support-bot", "load test 10x peak")]
    assert (item.ok, item.evidence) == (
        False,
        "at most 3.18 req/s (Aggregated history x 90.9%, the share of requests other than /healthz), never 3.86",
    )


def test_a_peak_held_too_briefly_or_with_errors_fails(setup, fast, tmp_path):
    write_run(
        tmp_path / "brief",
        history=ramp(300, 2) + [(310, 50, 50, 0, 650, 0), (340, 50, 50, 0, 2150, 0)] + [(350, 50, 2, 0, 2170, 0)],
    )
    item = gate(setup, evidence(load=[tmp_path / "brief"]))[("support-bot", "load test 10x peak")]
    assert (item.ok, item.evidence) == (
        False,
        ">= 45.5 req/s for 30 s with 50 users, 0.00% failed (Aggregated history "
        "x 90.9%, the share of requests other than /healthz)",
    )
    write_run(
        tmp_path / "errors",
        history=ramp(120, 50, failure_share=0.05),
        rows=(("POST", "/chat", 6000, 300, 500, 900, 1200), ("GET", "/healthz", 600, 0, 5, 8, 10)),
    )
    item = gate(setup, evidence(load=[tmp_path / "errors"]))[("support-bot", "load test 10x peak")]
    assert item.ok is False and item.evidence.startswith(">= 45.5 req/s for 120 s with 20 users, 5.50% failed")


def test_per_endpoint_history_is_used_exactly(setup, fast, tmp_path):
    write_run(tmp_path / "run")
    hist = [HISTORY_HEADER]
    for t in range(0, 121, 10):
        hist += [
            f"{T0 + t},20,POST,/chat,40,0,{40 * t},0",
            f"{T0 + t},20,GET,/healthz,100,0,{100 * t},0",
            f"{T0 + t},20,,Aggregated,140,0,{140 * t},0",
        ]
    (tmp_path / "run" / "run_stats_history.csv").write_text("\n".join(hist) + "\n")
    item = gate(setup, evidence(load=[tmp_path / "run"]))[("support-bot", "load test 10x peak")]
    assert (item.ok, item.evidence) == (
        True,
        ">= 40 req/s for 120 s with 20 users, 0.00% failed (per-endpoint history, /healthz excluded)",
    )


def test_a_run_without_history_or_an_agent_without_a_peak_fails(setup, fast, tmp_path):
    write_run(tmp_path / "run")
    item = gate(setup, evidence(load=[tmp_path / "run"]))[("support-bot", "load test 10x peak")]
    assert (item.ok, item.evidence) == (
        False,
        "no run_stats_history.csv beside run_stats.csv: the run's ramp is unknown (Locust --csv writes it)",
    )
    item = gate(setup, evidence(), monthly_requests={})[("support-bot", "load test 10x peak")]
    assert (item.ok, item.evidence) == (
        False,
        "no expected peak: set agent-platform:gates.peak_requests_per_second."
        "support-bot or gates.monthly_requests.support-bot",
    )


def test_an_explicit_peak_and_multiple_override_the_derived_one(setup, fast):
    item = gate(
        setup,
        evidence(),
        peak_requests_per_second={"support-bot": 5.0},
        load_test={"peak_multiple": 8, "sustain_seconds": 600},
    )[("support-bot", "load test 8x peak")]
    assert item.threshold == (
        ">= 40 req/s for 600 s, errors < 1.00% (8 x the expected peak 5 req/s: "
        "gates.peak_requests_per_second.support-bot)"
    )
    assert item.ok is False  # 39.1 req/s


@pytest.mark.parametrize(
    "gates, message",
    [
        (
            {"peak_requests_per_second": {"support-bot": 0}},
            "agent-platform:gates.peak_requests_per_second.support-bot: 0.0 is not a request rate; give the expected peak "
            "requests per second, > 0",
        ),
        (
            {"peak_to_average": 0.5},
            "agent-platform:gates.peak_to_average: 0.5 is not a peak-to-average ratio; allowed: a finite number >= 1, e.g. 4",
        ),
        (
            {"load_test": {"peak_multiple": 0.5}},
            "agent-platform:gates.load_test.peak_multiple: 0.5 is not a multiple of the peak; allowed: a finite number >= 1, "
            "e.g. 10",
        ),
        (
            {"load_test": {"sustain_seconds": 0}},
            "agent-platform:gates.load_test.sustain_seconds: 0 is not a positive number of seconds",
        ),
        (
            {"max_eval_regression": -0.1},
            "agent-platform:gates.max_eval_regression: -0.1 is not an allowed regression; allowed: a finite score difference "
            ">= 0, e.g. 0.02",
        ),
        (
            {"max_rollback_seconds": 0},
            "agent-platform:gates.max_rollback_seconds: 0 is not a positive number of seconds",
        ),
        (
            {"eval": {"task_success": float("nan")}},
            "agent-platform:gates.eval.task_success: NaN is not a minimum score; give a finite score >= 0",
        ),
        (
            {"agents": {"support-bot": {"safety": float("-inf")}}},
            "agent-platform:gates.agents.support-bot.safety: -Infinity is not a minimum score; give a finite score >= 0",
        ),
    ],
)
def test_gate_settings_are_validated(production, gates, message):
    from agentstage.config import ConfigError, platform_from_config

    production["agent-platform:gates"] = gates
    with pytest.raises(ConfigError) as err:
        platform_from_config(production)
    assert err.value.issues == [message]


def test_the_expected_peak_is_derived_from_the_monthly_volume():
    gates = GatesSpec(monthly_requests={"a": 2_592_000}, peak_to_average=3, peak_requests_per_second={"b": 7.5})
    assert gates.expected_peak("a") == (3.0, "monthly_requests 2,592,000 / 30 days x peak_to_average 3")
    assert gates.expected_peak("b") == (7.5, "gates.peak_requests_per_second.b")
    assert gates.expected_peak("c") is None


# --- 4. the whole stack's cost against the budget ----------------------------------------------------


def test_cost_sums_every_agent_of_the_stack(setup, fast, tmp_path):
    stable_costs = tmp_path / "research-2.2.0.json"
    stable_costs.write_text(
        json.dumps(
            {
                "agent": "research-agent",
                "version": "2.2.0",
                "metrics": {"task_success": 0.9},
                "cost_per_request_usd": 0.012,
            }
        )
    )
    items = gate(setup, evidence(evals=[f"{EVIDENCE}/eval-support-bot-1.5.0.json", stable_costs]))
    item = items[("", "cost within budget")]
    # each fits the 1,500 budget alone (1,050 and 480); together they do not
    assert (item.ok, item.evidence) == (
        False,
        "1,530.00 USD/month, 2 of 2 agents: research-agent 2.2.0 0.012 x 40,000 = "
        "480.00 (research-2.2.0.json); support-bot 1.5.0 0.0042 x 250,000 = "
        "1,050.00 (eval-support-bot-1.5.0.json)",
    )
    assert item.threshold == "sum <= 1,500.00 USD/month (agent-platform:budget.monthly_amount)"
    assert item.data["total"] == pytest.approx(1530.0)


def test_agents_without_a_measured_cost_are_named(setup, fast):
    item = gate(setup, evidence())[("", "cost within budget")]
    assert (item.ok, item.evidence) == (
        True,
        "1,050.00 USD/month, 1 of 2 agents: support-bot 1.5.0 0.0042 x 250,000 = "
        "1,050.00 (eval-support-bot-1.5.0.json); not counted: research-agent 2.2.0 "
        "(no measured cost per request: give --eval research-agent@2.2.0=REPORT with "
        "cost_per_request_usd)",
    )


def test_a_cost_measured_by_an_earlier_gate_counts_from_the_ledger(setup, fast, tmp_path):
    Ledger(tmp_path, "production").append(
        {
            "time": "2026-05-01T10:00:00Z",
            "agent": "research-agent",
            "action": "promote",
            "release": "2.2.0",
            "gates": [
                {
                    "name": "cost within budget",
                    "ok": True,
                    "agent": "",
                    "data": {
                        "agents": {
                            "research-agent": {"version": "2.2.0", "cost_per_request_usd": 0.011, "measured": True}
                        }
                    },
                }
            ],
        }
    )
    item = gate(setup, evidence(), project_dir=tmp_path)[("", "cost within budget")]
    assert (item.ok, item.evidence) == (
        True,
        "1,490.00 USD/month, 2 of 2 agents: research-agent 2.2.0 0.011 x 40,000 = "
        "440.00 (ledger: promote 2026-05-01T10:00:00Z); support-bot 1.5.0 0.0042 x "
        "250,000 = 1,050.00 (eval-support-bot-1.5.0.json)",
    )


def test_one_cost_per_request_cannot_stand_for_several_agents(setup, fast):
    items = gate(setup, evidence(cost=0.001), candidates=("research-agent", "support-bot"))
    assert items[("", "cost within budget")].evidence.startswith(
        "--cost-per-request gives one figure for several agents released together: put cost_per_request_usd in "
        "each agent's evaluation report; no cost per request of research-agent 2.2.0 (cost_per_request_usd in its "
        "evaluation report, or --cost-per-request) ("
    )


# --- 5. scores against the stable release's on the same dataset ---------------------------------------


def stable_report(tmp_path: Path, dataset="support-golden@8", **metrics) -> Path:
    path = tmp_path / "eval-support-bot-1.4.0.json"
    path.write_text(
        json.dumps(
            {
                "agent": "support-bot",
                "version": "1.4.0",
                "dataset": dataset,
                "metrics": {"task_success": 0.9, "groundedness": 0.87, "safety": 0.995, **metrics},
            }
        )
    )
    return path


def test_scores_are_compared_with_stables_on_the_same_dataset(setup, fast, tmp_path):
    items = gate(setup, evidence(evals=[f"{EVIDENCE}/eval-support-bot-1.5.0.json", stable_report(tmp_path)]))
    item = items[("support-bot", "eval task_success vs stable")]
    assert (item.ok, item.evidence, item.threshold) == (
        True,
        "0.91 vs stable 1.4.0 0.9 on support-golden@8 (+0.01)",
        ">= 0.88 (stable - 0.02)",
    )
    # 0.91 passes the absolute threshold (0.85) but fell 0.05 below stable's 0.96
    items = gate(
        setup, evidence(evals=[f"{EVIDENCE}/eval-support-bot-1.5.0.json", stable_report(tmp_path, task_success=0.96)])
    )
    assert items[("support-bot", "eval task_success")].ok is True
    item = items[("support-bot", "eval task_success vs stable")]
    assert (item.ok, item.evidence, item.threshold) == (
        False,
        "0.91 vs stable 1.4.0 0.96 on support-golden@8 (-0.05)",
        ">= 0.94 (stable - 0.02)",
    )
    assert (
        gate(
            setup,
            evidence(evals=[f"{EVIDENCE}/eval-support-bot-1.5.0.json", stable_report(tmp_path, task_success=0.96)]),
            max_eval_regression=0.05,
        )[("support-bot", "eval task_success vs stable")].ok
        is True
    )


def test_reports_on_different_dataset_versions_are_not_comparable(setup, fast, tmp_path):
    items = gate(
        setup, evidence(evals=[f"{EVIDENCE}/eval-support-bot-1.5.0.json", stable_report(tmp_path, "support-golden@7")])
    )
    item = items[("support-bot", "eval vs stable")]
    assert (item.ok, item.evidence) == (
        False,
        "not comparable: different dataset versions, support-golden@8 "
        "(eval-support-bot-1.5.0.json) and support-golden@7 "
        "(eval-support-bot-1.4.0.json, stable 1.4.0)",
    )
    path = stable_report(tmp_path)
    path.write_text(path.read_text().replace(', "dataset": "support-golden@8"', ""))
    item = gate(setup, evidence(evals=[f"{EVIDENCE}/eval-support-bot-1.5.0.json", path]))[
        ("support-bot", "eval vs stable")
    ]
    assert (item.ok, item.evidence) == (
        False,
        "not comparable: eval-support-bot-1.4.0.json does not state its dataset version",
    )


def test_without_a_stable_report_nothing_is_compared_and_it_says_so(setup, fast):
    item = gate(setup, evidence())[("support-bot", "eval vs stable")]
    assert (item.ok, item.evidence) == (
        None,
        "no report for stable 1.4.0 given (optional: --eval support-bot@1.4.0=FILE, on dataset support-golden@8)",
    )


# --- 6. every number in range, every binding used ---------------------------------------------------------


@pytest.mark.parametrize(
    "report, message",
    [
        ({"metrics": {"task_success": float("nan")}}, "NaN is not a JSON number; write a finite number"),
        ({"agent": 7, "metrics": {"task_success": 0.9}}, "agent: 7 is not a name (a non-empty string)"),
        ({"version": 1.5, "metrics": {"task_success": 0.9}}, "version: 1.5 is not a name (a non-empty string)"),
        (
            {"dataset": ["golden"], "metrics": {"task_success": 0.9}},
            'dataset: ["golden"] is not a name (a non-empty string)',
        ),
    ],
)
def test_eval_reports_name_things_with_strings_and_score_with_finite_numbers(tmp_path, report, message):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(report))
    with pytest.raises(EvidenceError) as err:
        read_eval(str(path))
    assert str(err.value) == f"evaluation report {path}: {message}"


@pytest.mark.parametrize(
    "row, message",
    [
        (",Aggregated,inf,0,1,2,3", "the Aggregated row: Request Count: 'inf' is not a whole number"),
        (",Aggregated,10.5,0,1,2,3", "the Aggregated row: Request Count: '10.5' is not a whole number"),
        (
            ",Aggregated,10,0,1,2,NaN",
            "the Aggregated row: 99%: 'NaN' is not a response time in ms (finite, not negative)",
        ),
        (
            ",Aggregated,10,0,1,-2,3",
            "the Aggregated row: 95%: '-2' is not a response time in ms (finite, not negative)",
        ),
        (
            "GET,/chat,-5,0,1,2,3\n,Aggregated,10,0,1,2,3",
            "row GET /chat counts -5 requests and 0 failures; failures must be between 0 and the requests",
        ),
    ],
)
def test_locust_numbers_must_be_finite_and_in_range(tmp_path, row, message):
    stats = tmp_path / "run_stats.csv"
    stats.write_text(f"{STATS_HEADER}\n{row}\n")
    with pytest.raises(EvidenceError) as err:
        read_locust(str(stats))
    assert str(err.value) == f"load test {stats}: {message}"


@pytest.mark.parametrize(
    "line, message",
    [
        (f"{T0},-3,,Aggregated,5,0,10,0", "User Count: -3 is negative"),
        ("soon,3,,Aggregated,5,0,10,0", "Timestamp: 'soon' is not a number"),
        (f"{T0},3,,Aggregated,inf,0,10,0", "Requests/s: 'inf' is not a request rate (finite, not negative)"),
        (f"{T0},3,,Aggregated,5,0,-10,0", "Total Request Count: -10 is negative"),
    ],
)
def test_locust_history_numbers_must_be_finite_and_in_range(tmp_path, line, message):
    write_run(tmp_path, manifest=None)
    (tmp_path / "run_stats_history.csv").write_text(f"{HISTORY_HEADER}\n{line}\n")
    with pytest.raises(EvidenceError) as err:
        read_locust(str(tmp_path))
    assert str(err.value) == f"load test {tmp_path / 'run_stats_history.csv'}: line 2: {message}"


@pytest.mark.parametrize(
    "content",
    [
        "timestamp,memory_bytes\n0,1\n0,2\n0,3\n",
        "timestamp,memory_bytes\n0,1\n60,2\ninf,3\n",
        "timestamp,memory_bytes\n120,1\n60,2\n180,3\n",
    ],
)
def test_memory_series_need_increasing_finite_timestamps(tmp_path, content):
    path = tmp_path / "memory.csv"
    path.write_text(content)
    with pytest.raises(EvidenceError) as err:
        read_memory(str(path))
    assert (
        str(err.value) == f"memory series {path}: timestamp must be finite and increasing (seconds, one point per time)"
    )


def test_evidence_for_an_agent_not_being_released_is_not_skipped_silently(setup, fast):
    ev = evidence(
        evals=[
            f"{EVIDENCE}/eval-support-bot-1.5.0.json",
            f"research-agent@2.0.0={EVIDENCE}/vertex-research-agent-2.2.0.json",
        ],
        load=[EVIDENCE / "locust", ("research-agent", EVIDENCE / "locust")],
        memory={"research-agent": read_memory(str(EVIDENCE / "memory.csv"))},
    )
    items = [i.evidence for i in gate_report(setup, ev).items if i.name == "evidence binding"]
    assert items == [
        "--load-test names agent 'research-agent', which is not being released (released: support-bot)",
        "--memory names agent 'research-agent', which is not being released (released: support-bot)",
        "--eval vertex-research-agent-2.2.0.json is for research-agent 2.0.0: research-agent is not being released "
        "and runs 2.2.0 (a report of the release it runs counts its cost)",
    ]


def test_a_manifest_naming_an_agent_the_stack_does_not_have_fails_the_binding(setup, fast, tmp_path):
    write_run(tmp_path / "runs", prefix="a")
    write_run(tmp_path / "runs", prefix="b", manifest={**MANIFEST, "agent": "suport-bot"})
    items = [
        i.evidence for i in gate_report(setup, evidence(load=[tmp_path / "runs"])).items if i.name == "evidence binding"
    ]
    assert items == [
        "load test b_stats.csv: its manifest (b_manifest.json) names agent 'suport-bot', which stack "
        "'production' does not have (agents: research-agent, support-bot)"
    ]


def test_a_report_of_an_unrelated_version_of_a_released_agent_fails_the_binding(setup, fast, tmp_path):
    other = tmp_path / "eval-1.4.9.json"
    other.write_text(json.dumps({"agent": "support-bot", "version": "1.4.9", "metrics": {"task_success": 0.9}}))
    items = [
        i.evidence
        for i in gate_report(setup, evidence(evals=[f"{EVIDENCE}/eval-support-bot-1.5.0.json", other])).items
        if i.name == "evidence binding"
    ]
    assert items == [
        "--eval eval-1.4.9.json is for support-bot 1.4.9, neither the release being gated (1.5.0) nor its "
        "stable (1.4.0)"
    ]


def test_an_unbound_memory_series_cannot_stand_for_several_agents(setup, fast):
    ev = evidence(memory={None: read_memory(str(EVIDENCE / "memory.csv"))})
    item = gate(setup, ev, candidates=("research-agent", "support-bot"))[("support-bot", "memory stable")]
    assert (item.ok, item.evidence) == (
        False,
        "a memory series given without an agent cannot stand for several agents "
        "released together: bind it, --memory support-bot=FILE",
    )


def gate_report(setup, ev: Evidence, candidates=("support-bot",)) -> GateReport:
    directory, spec, budget, plan = setup
    return evaluate_gates(
        project_dir=directory,
        stack="production",
        spec=spec,
        raw_budget=budget,
        plan=plan,
        candidates=list(candidates),
        evidence=ev,
    )


# --- 7. a measured rollback ---------------------------------------------------------------------------


class Ticks:
    """A timer that advances ``step`` seconds per reading."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_rollback_time_is_measured_offline_and_with_the_last_pulumi_up(setup, monkeypatch, tmp_path):
    monkeypatch.setattr(gates_module, "_policy_items", lambda *a: [])
    monkeypatch.setattr(gates_module, "TIMER", Ticks(2.0))
    directory = setup[0]
    item = gate(setup, evidence())[("support-bot", "rollback within 5 min")]
    assert (item.ok, item.evidence) == (
        True,
        "to stable 1.4.0 (revision support-bot-1-4-0): 2.0 s offline (edit, plan, "
        "diff: traffic of 1 service); no `pulumi up` of a rollback measured yet "
        "(ledger applied_seconds)",
    )
    assert item.threshold == "< 300 s to all traffic on stable (offline edit and plan + `pulumi up`)"
    # the ledger's last rollback took 299 s to apply: 301 s in all, over 5 min
    ledger_dir = tmp_path / "ledger"
    shutil.copytree(directory / "stacks", ledger_dir / "stacks")
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(directory / name, ledger_dir / name)
    Ledger(ledger_dir, "production").append(
        {"time": "2026-04-30T09:00:00Z", "agent": "research-agent", "action": "rollback", "applied_seconds": 299}
    )
    item = gate(setup, evidence(), project_dir=ledger_dir)[("support-bot", "rollback within 5 min")]
    assert (item.ok, item.evidence) == (
        False,
        "to stable 1.4.0 (revision support-bot-1-4-0): 2.0 s offline (edit, plan, "
        "diff: traffic of 1 service) + 299 s (the last rollback's `pulumi up`, "
        "2026-04-30T09:00:00Z) = 301.0 s",
    )
    Ledger(ledger_dir, "production").append(
        {"time": "2026-04-30T10:00:00Z", "agent": "research-agent", "action": "rollback", "applied_seconds": -1}
    )
    item = gate(setup, evidence(), project_dir=ledger_dir)[("support-bot", "rollback within 5 min")]
    assert (item.ok, item.evidence) == (
        False,
        "to stable 1.4.0 (revision support-bot-1-4-0): the ledger's rollback of "
        "2026-04-30T10:00:00Z has applied_seconds -1, not a duration in seconds",
    )


def test_the_rollback_is_planned_as_agentstage_rollback_plans_it(setup, monkeypatch):
    monkeypatch.setattr(gates_module, "_policy_items", lambda *a: [])
    items = gate(
        setup,
        evidence(
            evals=[
                f"{EVIDENCE}/eval-support-bot-1.5.0.json",
                f"research-agent@2.2.0={EVIDENCE}/vertex-research-agent-2.2.0.json",
            ]
        ),
        candidates=("research-agent", "support-bot"),
    )
    for agent in ("research-agent", "support-bot"):
        item = items[(agent, "rollback within 5 min")]
        assert item.ok is True and "traffic of 2 services" in item.evidence
        assert 0 < item.data["offline_seconds"] < 300


def test_a_release_without_stable_cannot_roll_back(setup, fast):
    directory, spec, budget, plan = setup
    agents = {**spec.agents, "support-bot": spec.agents["support-bot"].model_copy(update={"stable": None})}
    report = evaluate_gates(
        project_dir=directory,
        stack="production",
        spec=spec.model_copy(update={"agents": agents}),
        raw_budget=budget,
        plan=plan,
        candidates=["support-bot"],
        evidence=evidence(),
    )
    item = next(i for i in report.items if i.name == "rollback within 5 min")
    assert (item.ok, item.evidence) == (False, "no stable release: nothing to roll back to")


# --- 8. a gate run is recorded ------------------------------------------------------------------------


def test_gate_decisions_carry_verdict_and_items(monkeypatch):
    import datetime as dt

    from agentstage.commands import gate as cmd

    report = GateReport(
        "production",
        {"support-bot": "1.5.0"},
        [
            GateItem("eval safety", False, "0.95", ">= 0.99", "support-bot"),
            GateItem("budget present", True, "1 billing budget(s) in the plan", "a billing budget"),
            GateItem("eval safety", True, "0.99", ">= 0.99", "research-agent"),
        ],
        {"support-bot": {"stable": "1.4.0", "percent": 5}},
    )
    monkeypatch.setattr(cmd, "CLOCK", lambda: dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc))
    [decision] = cmd.gate_decisions(report, "staging")
    assert decision == {
        "time": "2026-05-01T12:00:00Z",
        "stack": "production",
        "agent": "support-bot",
        "action": "gate",
        "release": "1.5.0",
        "stable": "1.4.0",
        "percent": 5,
        "to_percent": 5,
        "verdict": "failed",
        "reason": "gate failed: 1 of 2 items: eval safety",
        "from_stack": "staging",
        "items": [
            {
                "name": "eval safety",
                "ok": False,
                "evidence": "0.95",
                "threshold": ">= 0.99",
                "agent": "support-bot",
                "data": {},
            },
            {
                "name": "budget present",
                "ok": True,
                "evidence": "1 billing budget(s) in the plan",
                "threshold": "a billing budget",
                "agent": "",
                "data": {},
            },
        ],
    }


def test_the_gate_command_records_one_decision_per_candidate(tmp_path, monkeypatch):
    demo = copy_example(tmp_path)
    monkeypatch.chdir(demo)
    result = cli(
        "gate",
        "production",
        "--from",
        "staging",
        "--agent",
        "support-bot",
        "--eval",
        "evidence/eval-support-bot-1.5.0.json",
        "--load-test",
        "evidence/locust",
    )
    assert result.exit_code == 0, result.output
    [passed] = Ledger(demo, "production").decisions()
    assert (passed["agent"], passed["action"], passed["release"], passed["verdict"]) == (
        "support-bot",
        "gate",
        "1.5.0",
        "passed",
    )
    assert passed["reason"] == f"gate passed ({len(passed['items'])} items)"
    cost = next(i for i in passed["items"] if i["name"] == "cost within budget")
    assert cost["data"]["agents"]["support-bot"]["cost_per_request_usd"] == 0.0042
    # both agents at once: the research agent's report has no cost, so the stack's cost item fails for both
    result = cli(
        "gate",
        "production",
        "--from",
        "staging",
        "--eval",
        "evidence/eval-support-bot-1.5.0.json",
        "--eval",
        "research-agent@2.2.0=evidence/vertex-research-agent-2.2.0.json",
        "--load-test",
        "evidence/locust",
    )
    assert result.exit_code == 1
    decisions = Ledger(demo, "production").decisions()[1:]
    assert [
        (d["agent"], d["action"], d["release"], d["verdict"], d["stable"], d["to_percent"], d["from_stack"])
        for d in decisions
    ] == [
        ("research-agent", "gate", "2.2.0", "failed", "2.1.0", 10, "staging"),
        ("support-bot", "gate", "1.5.0", "failed", "1.4.0", 5, "staging"),
    ]
    assert decisions[0]["reason"].endswith("items: cost within budget")
    assert {i["agent"] for i in decisions[0]["items"]} == {"", "research-agent"}
    # one gate run is one transaction: its decisions share an id, and no journal is left over
    assert decisions[0]["txn"] == decisions[1]["txn"] != passed["txn"]
    assert not (demo / ".agentstage" / "production" / "journal.json").exists()


def test_a_gate_run_refuses_while_the_stack_is_locked(tmp_path, monkeypatch):
    from agentstage.release.lock import stack_lock

    demo = copy_example(tmp_path)
    monkeypatch.chdir(demo)
    with stack_lock(demo, "production", "rollout"):
        result = cli(
            "gate",
            "production",
            "--from",
            "staging",
            "--agent",
            "support-bot",
            "--eval",
            "evidence/eval-support-bot-1.5.0.json",
            "--load-test",
            "evidence/locust",
        )
    assert result.exit_code == 1
    assert result.output.startswith("error: stack 'production' is locked by another agentstage run (rollout")
    assert result.output.rstrip().endswith("wait for it to finish, then run this again")
    assert Ledger(demo, "production").decisions() == []


# --- the command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cost-per-request", "nan"], "--cost-per-request: nan is not a finite number"),
        (["--cost-per-request", "inf"], "--cost-per-request: inf is not a finite number"),
        (
            [
                "--eval",
                f"{EVIDENCE}/eval-support-bot-1.5.0.json",
                "--eval",
                f"support-bot@1.5.0={EVIDENCE}/eval-support-bot-1.5.0.json",
            ],
            f"--eval: two reports for support-bot 1.5.0 ({EVIDENCE}/eval-support-bot-1.5.0.json, "
            f"{EVIDENCE}/eval-support-bot-1.5.0.json); give one",
        ),
        (
            ["--memory", f"{EVIDENCE}/memory.csv", "--memory", f"{EVIDENCE}/memory.csv"],
            "--memory: two series for the released agent; give one",
        ),
        (
            ["--load-test", f"support-bot@1.5.0={EVIDENCE}/locust"],
            f"--load-test support-bot@1.5.0={EVIDENCE}/locust: give AGENT=PATH; the version a run measured is its manifest's",
        ),
    ],
)
def test_bad_evidence_options_exit_2(project, args, message):
    result = cli("gate", "production", "-C", str(project), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
