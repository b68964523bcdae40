"""Evidence readers: eval report adapters (agentstage JSON, Vertex AI), Locust --csv, memory
series and metrics files, with the exact message for bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.release.evidence import EvidenceError, read_eval, read_locust, read_memory
from agentstage.release.metrics import FileSource, MetricsError
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "release"


def test_plain_report():
    r = read_eval(str(DATA / "eval-support-bot-1.5.0.json"))
    assert (r.format, r.agent, r.version, r.dataset) == ("agentstage", "support-bot", "1.5.0", "support-golden@8")
    assert r.metrics == {"task_success": 0.91, "groundedness": 0.88, "safety": 0.995}
    assert r.cost_per_request_usd == 0.0042


def test_vertex_summary_mapping_bound_on_the_command_line():
    r = read_eval(f"support-bot@1.5.0={DATA / 'vertex-summary.json'}")
    assert (r.format, r.agent, r.version, r.examples) == ("vertex-ai", "support-bot", "1.5.0", 240)
    assert r.metrics == {"task_success": 0.91, "groundedness": 0.88, "safety": 0.995}


def test_vertex_aggregated_list():
    r = read_eval(f"support-bot={DATA / 'vertex-aggregated.json'}")
    assert r.metrics == {"task_success": 0.91, "groundedness": 0.87, "safety": 0.99}
    assert (r.agent, r.version) == ("support-bot", None)


def test_binding_must_match_the_report():
    with pytest.raises(
        EvidenceError, match=r"^evaluation report .*eval-support-bot-1.5.0.json is for version 1.5.0, not 1.6.0$"
    ):
        read_eval(f"support-bot@1.6.0={DATA / 'eval-support-bot-1.5.0.json'}")


@pytest.mark.parametrize(
    "content, message",
    [
        ("[]", "expected a JSON object"),
        (
            '{"scores": {}}',
            "neither an agentstage report (a 'metrics' object), Vertex AI evaluation output (a 'summary_metrics' "
            "object or list) nor an ADK eval set result (an 'eval_case_results' list)",
        ),
        ('{"metrics": {}}', "'metrics' must be a non-empty object of metric -> score"),
        ('{"metrics": {"safety": "high"}}', 'metrics.safety: "high" is not a number'),
        ('{"summary_metrics": {"row_count": 3}}', "summary_metrics has no mean scores"),
        ('{"summary_metrics": [{"metric": "x"}]}', "summary_metrics[0] needs 'metric_name' and 'mean_score'"),
        ("{", "not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
    ],
)
def test_bad_eval_reports(tmp_path, content, message):
    path = tmp_path / "report.json"
    path.write_text(content)
    with pytest.raises(EvidenceError) as err:
        read_eval(str(path))
    assert str(err.value) == f"evaluation report {path}: {message}"


def test_missing_report():
    with pytest.raises(EvidenceError, match=r"^evaluation report /nonexistent.json does not exist$"):
        read_eval("/nonexistent.json")


def test_locust_stats_and_history():
    lt = read_locust(str(DATA / "locust-ok" / "run"))  # the --csv prefix
    assert (lt.requests, lt.failures, lt.p50_ms, lt.p95_ms, lt.p99_ms) == (13040, 12, 600, 1150, 1620)
    assert lt.error_rate == pytest.approx(12 / 13040)
    assert (lt.duration_s, lt.peak_users, lt.history_points) == (300, 60, 6)
    assert read_locust(str(DATA / "locust-ok")).p99_ms == 1620  # the directory
    assert read_locust(str(DATA / "locust-ok" / "run_stats.csv")).requests == 13040


def test_locust_errors(tmp_path):
    with pytest.raises(
        EvidenceError,
        match=r"^load test .*nothing: no Locust stats file \(give PREFIX_stats.csv, the --csv PREFIX or its directory\)$",
    ):
        read_locust(str(tmp_path / "nothing"))
    (tmp_path / "x_stats.csv").write_text("Type,Name,Request Count\nGET,/,3\n")
    with pytest.raises(EvidenceError, match=r"x_stats.csv: no 'Aggregated' row; is this Locust --csv output\?$"):
        read_locust(str(tmp_path / "x_stats.csv"))


def test_memory_series(tmp_path):
    assert len(read_memory(str(DATA / "memory-flat.csv"))) == 13
    (tmp_path / "m.csv").write_text("t,bytes\n1,2\n")
    with pytest.raises(EvidenceError, match=r"m.csv: expected the columns timestamp,memory_bytes$"):
        read_memory(str(tmp_path / "m.csv"))


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"revisions": {"r": {"requests": [1, 2], "errors": [0]}}},
            "revisions.r: errors has 1 values; requests has 2 (one value per interval)",
        ),
        (
            {"revisions": {"r": {"requests": [1], "errors": [2]}}},
            "revisions.r: interval 0: 2 errors and 429s but only 1 requests",
        ),
        (
            {"revisions": {"r": {"requests": [1], "errors": [0], "latency_p99_ms": [5]}}},
            "revisions.r: latency_p99_ms is no longer read: a mean of one-minute p99s is not a p99; give latency_ms, the "
            "request-latency bucket counts of each minute (see docs/release.md)",
        ),
        (
            {"latency_bounds_ms": [1, 2], "revisions": {"r": {"requests": [1], "errors": [0], "latency_ms": [[1, 0]]}}},
            "(top level): revisions.r.latency_ms[0] has 2 bucket counts; 3 expected (one per bound, plus the overflow)",
        ),
        (
            {"revisions": {"r": {"requests": [float("nan")], "errors": [0]}}},
            "NaN is not a JSON number; write a finite number",
        ),
        ({"series": {}}, "revisions: Field required"),
    ],
)
def test_bad_metrics_files(tmp_path, data, message):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    with pytest.raises(MetricsError) as err:
        FileSource(path)
    assert str(err.value) == f"metrics file {path}: {message}"


def test_rollout_with_a_bad_metrics_file_exits_2(project, tmp_path):
    path = tmp_path / "m.json"
    path.write_text("{}")
    result = CliRunner().invoke(app, ["rollout", "production", "-C", str(project), "--metrics-file", str(path)])
    assert result.exit_code == 2
    assert "m.json: revisions: Field required" in "".join(result.output.split("\n"))


def test_gate_with_a_missing_eval_file_exits_2(project):
    result = CliRunner().invoke(app, ["gate", "production", "-C", str(project), "--eval", "/nonexistent.json"])
    assert result.exit_code == 2
    assert "evaluation report /nonexistent.json does not exist" in result.output


def test_a_metrics_file_from_the_future_is_refused(tmp_path):
    """An ``end`` ahead of the clock would let the bake time pass before it has."""
    import datetime as dt

    now = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    path = tmp_path / "m.json"
    data = {"end": "2026-05-01T13:00:00Z", "revisions": {"r": {"requests": [1], "errors": [0]}}}
    path.write_text(json.dumps(data))
    with pytest.raises(MetricsError) as err:
        FileSource(path, clock=lambda: now).now()
    assert str(err.value) == (
        f"metrics file {path}: end 2026-05-01T13:00:00+00:00 is in the future (now 2026-05-01T12:00:00+00:00); "
        "give the time the last interval really ended, or leave end out to replay the file as of now"
    )
    data["end"] = "2026-05-01T12:00:30Z"  # within clock skew
    path.write_text(json.dumps(data))
    assert FileSource(path, clock=lambda: now).now() == dt.datetime(2026, 5, 1, 12, 0, 30, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    "report, message",
    [
        ({"metrics": {"task_success": float("inf")}}, "Infinity is not a JSON number; write a finite number"),
        ({"metrics": {"task_success": -0.2}}, "metrics.task_success: -0.2 is negative"),
        (
            {"metrics": {"task_success": 0.9}, "examples": 0},
            "examples: 0 is not a number of examples (a whole number, at least 1)",
        ),
        ({"metrics": {"task_success": 0.9}, "cost_per_request_usd": -1}, "cost_per_request_usd: -1 is negative"),
        (
            {"summary_metrics": {"row_count": 0, "safety/mean": 1.0}},
            "summary_metrics.row_count: 0 is not a number of examples (a whole number, at least 1)",
        ),
    ],
)
def test_eval_reports_with_impossible_numbers_are_refused(tmp_path, report, message):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(report))  # json writes inf as Infinity, as a careless exporter would
    with pytest.raises(EvidenceError) as err:
        read_eval(str(path))
    assert str(err.value) == f"evaluation report {path}: {message}"


@pytest.mark.parametrize("requests, failures", [("-5", "0"), ("0", "0"), ("10", "-1"), ("10", "11")])
def test_locust_runs_with_impossible_counts_are_refused(tmp_path, requests, failures):
    stats = tmp_path / "run_stats.csv"
    stats.write_text(
        f"Type,Name,Request Count,Failure Count,50%,95%,99%\n,Aggregated,{requests},{failures},100,200,300\n"
    )
    with pytest.raises(EvidenceError) as err:
        read_locust(str(stats))
    assert str(err.value) == (
        f"load test {stats}: the Aggregated row counts {requests} requests and {failures} failures; a run needs "
        "requests, and failures between 0 and the requests"
    )


def test_an_all_zero_memory_series_is_refused(tmp_path):
    path = tmp_path / "memory.csv"
    path.write_text("timestamp,memory_bytes\n0,0\n60,0\n120,0\n")
    with pytest.raises(EvidenceError) as err:
        read_memory(str(path))
    assert str(err.value) == (
        f"memory series {path}: memory_bytes must be finite, not negative, and not all zero (an empty measurement "
        "proves nothing about a leak)"
    )


def test_a_metrics_file_names_a_release_without_its_digest_only_when_unambiguous(tmp_path):
    import datetime as dt

    now = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    path = tmp_path / "m.json"
    one = {"requests": [10], "errors": [0]}
    path.write_text(json.dumps({"revisions": {"svc-1-4-0": one, "svc-1-3-2": one}}))
    source = FileSource(path, clock=lambda: now)
    window = (now - dt.timedelta(minutes=5), now)
    assert set(source.fetch("svc", ["svc-1-4-0-93457a87", "svc-1-3-2"], *window)) == {"svc-1-4-0-93457a87", "svc-1-3-2"}
    # two revisions that shorten to the same name: neither borrows the other's series
    assert set(source.fetch("svc", ["svc-1-4-0-93457a87", "svc-1-4-0-0badcafe"], *window)) == set()
    # a requested revision that is itself the short name keeps its own series only
    assert set(source.fetch("svc", ["svc-1-3-2-abcdef12", "svc-1-3-2"], *window)) == {"svc-1-3-2"}
