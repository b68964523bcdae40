"""``agentstage loadtest`` end to end: the real CLI in a subprocess (Locust and gevent never load
into pytest's process) against the local agent server (tests/agent_server.py), which slows down
with concurrency, leaks, and crashes or hangs past its limit; the gate reading the run; memory
from a local gRPC Cloud Monitoring server; the candidate's URL from a local Cloud Run Admin API."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3, run_v2
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from google.cloud.monitoring_v3.types import ListTimeSeriesRequest, ListTimeSeriesResponse

from agentstage.ops import cost as cost_model
from agentstage.ops.loadtest import (
    LoadTestError,
    memory_finding,
    memory_of_run,
    memory_over_run,
    parse_phases,
    parse_step_users,
    read_requests,
    resolve_target,
    tag_url,
)
from agentstage.release.evidence import read_load_tests
from agentstage.release.metrics import MEMORY_UTILIZATIONS, MonitoringSource
from tests.conftest import ROOT, load_stack, write_stack
from tests.run_fake import FakeServices, serve

STAGING_URL = "https://support-bot-123456789012.us-central1.run.app"


def _env(**extra: str) -> dict[str, str]:
    """No Google credentials and no Pulumi CLI reach the command (google-auth looks at
    GOOGLE_APPLICATION_CREDENTIALS, gcloud's config dir and, unless NO_GCE_CHECK, the metadata
    server)."""
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
    env.update(NO_GCE_CHECK="true", CLOUDSDK_CONFIG="/nonexistent-gcloud-config", PATH=str(Path(sys.executable).parent))
    env.update(extra)
    return env


def agentstage(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentstage.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=_env(),
    )


@contextlib.contextmanager
def agent_server(*args: str) -> Iterator[str]:
    """tests/agent_server.py as a process on a free port; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.agent_server", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, f"agent server did not start: {line!r}"
        yield match.group()
    finally:
        proc.terminate()
        proc.wait(10)


def server_state(url: str) -> dict:
    with urllib.request.urlopen(url + "/_memory", timeout=5) as resp:
        return json.load(resp)


# --- one run that finds everything: latency growth, memory growth, where errors start ---------

#: The agent under test: 5 ms + 10 ms per request in flight; past 30 in flight, every other
#: request a 500 and the rest hang 3 s (the client gives up at 1 s); 64 KiB kept per answer.
BROKEN = ("--base-ms", "5", "--per-request-ms", "10", "--limit", "30", "--hang-s", "3", "--leak-kib", "64")
STEPS = "5,20,65"  # 5 and 25 concurrent within the limit, 45 past it


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The project (staging with an expected peak of 1 req/s, sustained 1 s), the run's output
    prefix, its stdout, findings, and the agent's memory sampled every 0.2 s while it ran."""
    base = tmp_path_factory.mktemp("loadtest")
    project = base / "project"
    project.mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        (project / name).write_text((ROOT / name).read_text())
    config = load_stack("staging")
    config["agent-platform:gates"] = {
        "peak_requests_per_second": {"support-bot": 1},
        "load_test": {"sustain_seconds": 1},
        "monthly_requests": {"support-bot": 250_000},
    }
    (project / "stacks").mkdir()
    write_stack(project / "stacks" / "Pulumi.staging.yaml", config)
    (project / "stacks" / "Pulumi.production.yaml").write_text((ROOT / "stacks" / "Pulumi.production.yaml").read_text())
    prefix = base / "out" / "sb"
    samples: list[tuple[float, int]] = []
    with agent_server(*BROKEN) as url:
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    samples.append((time.time(), server_state(url)["leaked_bytes"]))
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = agentstage(
            "loadtest", "staging", "-C", str(project), "--agent", "support-bot", "--url", url,
            "--rate", "20", "--duration", "5", "--step-users", STEPS, "--step-duration", "1.5",
            "--timeout", "1", "--csv", str(prefix),
        )  # fmt: skip
        stop.set()
        sampler.join()
    found = json.loads(prefix.with_name("sb_findings.json").read_text()) if result.returncode in (0, 1) else None
    return {"project": project, "prefix": prefix, "result": result, "findings": found, "samples": samples, "url": url}


def test_the_run_succeeds_and_writes_locust_csvs_manifest_findings_and_report(run):
    assert run["result"].returncode == 0, run["result"].stderr
    names = sorted(p.name for p in run["prefix"].parent.iterdir())
    assert names == [
        "sb_exceptions.csv",
        "sb_failures.csv",
        "sb_findings.json",
        "sb_manifest.json",
        "sb_report.html",
        "sb_stats.csv",
        "sb_stats_history.csv",
        "sb_step_exceptions.csv",
        "sb_step_failures.csv",
        "sb_step_stats.csv",
        "sb_step_stats_history.csv",
    ]


def test_step_phase_finds_where_errors_start_and_counts_timeouts_apart_from_errors(run):
    f = run["findings"]
    steps = f["phases"]["step"]["steps"]
    assert [s["users"] for s in steps] == [5, 25, 45]
    assert [s["ok"] for s in steps] == [True, True, False]
    broke = steps[-1]
    assert broke["timeouts"] > 0 and broke["errors"] > 0  # hung requests and 500s, told apart
    assert broke["error_ratio"] == pytest.approx((broke["timeouts"] + broke["errors"]) / broke["requests"])
    cap = f["capacity"]
    assert cap["max_sustainable_users"] == 25
    assert cap["max_sustainable_rps"] == pytest.approx(max(s["rps"] for s in steps[:2]))
    assert cap["errors_start_at_users"] == 45
    assert cap["configured_concurrency"] == 5 * 40  # staging support-bot: max_instances x concurrency
    assert cap["errors_at_start"] == {
        "timeouts": broke["timeouts"],
        "errors": broke["errors"],
        "requests": broke["requests"],
    }
    # the failures file names them as Locust saw them
    failures = run["prefix"].with_name("sb_step_failures.csv").read_text()
    assert "LocustBadStatusCode(code=500)" in failures and "timed out" in failures
    out = run["result"].stdout
    assert f"errors start at 45 concurrent ({broke['timeouts']} timeouts, {broke['errors']} errors)" in out, out


def test_latency_grows_with_concurrency(run):
    steps = run["findings"]["phases"]["step"]["steps"]
    # 5 ms + 10 ms per request in flight: 25 concurrent answer several times slower than 5
    assert steps[1]["p50"] > 2 * steps[0]["p50"]
    assert run["findings"]["capacity"]["p95_growth"] == pytest.approx(steps[1]["p95"] / steps[0]["p95"])
    assert run["findings"]["capacity"]["p95_growth"] > 2


def test_steady_phase_holds_the_rate_and_passes_the_stack_limits(run):
    steady = run["findings"]["phases"]["steady"]
    assert steady["requests"] >= 0.8 * 20 * 5
    assert steady["failures"] == 0
    assert steady["p99"] is not None and steady["p99"] < 2000
    assert [(c["name"], c["ok"]) for c in run["findings"]["checks"]] == [("steady p99", True), ("steady errors", True)]


def test_gate_reads_the_steady_run_through_its_manifest(run):
    prefix = run["prefix"]
    runs = read_load_tests(str(prefix))
    assert len(runs) == 1
    (r,) = runs
    steady = run["findings"]["phases"]["steady"]
    assert (r.requests, r.failures) == (steady["requests"], steady["failures"])
    m = r.manifest
    assert (m.agent, m.version, m.url) == ("support-bot", "1.4.0", run["url"])
    assert [(p.name, p.users) for p in m.phases] == [("steady", 20)]
    # the directory holds the step run too, without a manifest: still one run of the release
    assert sorted((x.name, x.manifest is not None) for x in read_load_tests(str(prefix.parent))) == [
        ("sb_stats.csv", True),
        ("sb_step_stats.csv", False),
    ]

    gate = agentstage("gate", "staging", "-C", str(run["project"]), "--load-test", str(prefix.parent), "--agent",
                      "support-bot", "--json")  # fmt: skip
    assert gate.returncode == 1, gate.stderr  # no evaluation report was given: other gates fail
    items = {i["name"]: i for i in json.loads(gate.stdout)["items"] if i["agent"] == "support-bot"}
    assert items["load test"]["ok"] is True
    assert items["load test"]["evidence"].startswith(f"sb_stats.csv: support-bot 1.4.0 at {run['url']}, ")
    assert items["load test errors"]["ok"] is True
    assert items["load test errors"]["evidence"].startswith(f"0.00% (0/{steady['requests']} failed, ")
    assert items["load test p99"]["ok"] is True
    assert items["load test 10x peak"]["ok"] is True, items["load test 10x peak"]


def test_report_charts_latency_percentiles_and_failures_over_the_run(run):
    html = run["prefix"].with_name("sb_report.html").read_text()
    assert "<script" not in html and not re.search(r"\b(src|href)=", html)  # self-contained: nothing fetched
    for series in ("p50", "p95", "p99", "rps", "errors_per_s", "timeouts_per_s"):
        match = re.search(rf'<polyline data-series="{series}"[^>]* points="([^"]*)"', html)
        assert match, series
        assert len(match.group(1).split()) >= 5, series  # one point per second of the run
    assert html.count('<tr class="ok">') == 2 and html.count('<tr class="bad">') == 1


def test_cost_per_request_follows_the_model_of_the_measured_steady_phase(run):
    f = run["findings"]
    steady = f["phases"]["steady"]
    expected = cost_model.project(
        cpu=1.0,
        memory_gib=2.0,
        concurrency=40,
        min_instances=0,
        request_based=True,
        rps=steady["rps"],
        mean_latency_s=steady["mean_ms"] / 1000,
        monthly_requests=250_000,
    )
    assert f["cost"]["usd_per_request"] == pytest.approx(expected["usd_per_request"])
    assert f["cost"]["monthly_usd"] == pytest.approx(250_000 * expected["usd_per_request"])
    # the requests in flight share one instance of 1 vCPU and 2 GiB (concurrency 40): each pays its
    # latency x the instance's price / the requests sharing it, + the request fee
    per_second = 1 * 0.000024 + 2 * 0.0000025
    in_flight = steady["rps"] * steady["mean_ms"] / 1000
    assert in_flight < 40
    assert expected["usd_per_request"] == pytest.approx(
        steady["mean_ms"] / 1000 / max(1.0, in_flight) * per_second + 0.4e-6
    )
    assert "requests/month: $" in run["result"].stdout


def test_memory_is_not_available_without_credentials_but_grows_in_cloud_monitoring(run, monitoring):
    f = run["findings"]
    assert f["memory"] == {
        "available": False,
        "reason": "not available (no Google credentials to read Cloud Monitoring)",
    }
    assert "memory: not available (no Google credentials to read Cloud Monitoring)" in run["result"].stdout

    # the same agent's memory, served by Cloud Monitoring as a share of the 2 GiB limit
    fake, client = monitoring
    limit = 2 * 1024**3
    resident = 200 * 1024**2
    # one point per second, the highest sample of the second (Cloud Monitoring aligns per period)
    per_second: dict[int, int] = {}
    for t, leaked in run["samples"]:
        per_second[int(t)] = max(per_second.get(int(t), 0), leaked)
    fake.memory = [(t, (resident + leaked) / limit) for t, leaked in per_second.items()]
    source = MonitoringSource("acme-agents-staging", "us-central1", client=client)
    target = resolve_target(run["project"], "staging", "support-bot", run["url"])
    finding = memory_of_run(
        target, run["project"], run["samples"][0][0], run["samples"][-1][0], source=source, credentials=True
    )
    # the candidate revision the stack's plan deploys (<service>-<version slug>-<template digest>)
    revision = finding["revision"]
    assert re.fullmatch(r"support-bot-1-4-0-[0-9a-f]{8}", revision), revision
    memory_request = [r for r in fake.requests if MEMORY_UTILIZATIONS in r.filter][0]
    assert f'resource.labels.revision_name = one_of("{revision}")' in memory_request.filter
    assert 'resource.labels.service_name = "support-bot"' in memory_request.filter
    assert [p["t"] for p in finding["points"]] == sorted(per_second)
    # the reading itself, for any revision
    start = dt.datetime.fromtimestamp(run["samples"][0][0] - 1, dt.timezone.utc)
    end = dt.datetime.fromtimestamp(run["samples"][-1][0] + 1, dt.timezone.utc)
    points = memory_over_run(source, "support-bot", "support-bot-1-4-0-abc", start, end, limit)
    assert points == [(p["t"], p["bytes"]) for p in finding["points"]]
    assert memory_finding(points, limit) == {k: v for k, v in finding.items() if k != "revision"}
    seconds = sorted(per_second)
    leaked = per_second[seconds[-1]] - per_second[seconds[0]]
    assert leaked > 0
    assert finding["growth_bytes"] == pytest.approx(leaked, rel=1e-6)
    assert finding["bytes_per_hour"] > 0 and finding["hours_to_limit"] > 0


class FakeMemory:
    """Serves ListTimeSeries: the memory utilization points it is given, for any revision the
    filter names; no requests or latencies."""

    def __init__(self) -> None:
        self.memory: list[tuple[float, float]] = []
        self.requests: list[ListTimeSeriesRequest] = []

    def list_time_series(self, request: ListTimeSeriesRequest, context: grpc.ServicerContext) -> ListTimeSeriesResponse:
        self.requests.append(request)
        if MEMORY_UTILIZATIONS not in request.filter:
            return ListTimeSeriesResponse()
        revision = re.search(r'revision_name = one_of\("([^"]+)"\)', request.filter).group(1)
        points = []
        for t, share in sorted(self.memory, reverse=True):  # newest first, as Cloud Monitoring answers
            at = dt.datetime.fromtimestamp(t, dt.timezone.utc)
            points.append(
                monitoring_v3.Point(
                    interval=monitoring_v3.TimeInterval(end_time=at, start_time=at),
                    value=monitoring_v3.TypedValue(double_value=share),
                )
            )
        series = monitoring_v3.TimeSeries(
            metric={"type": MEMORY_UTILIZATIONS},
            resource={"type": "cloud_run_revision", "labels": {"revision_name": revision}},
            points=points,
        )
        return ListTimeSeriesResponse(time_series=[series])


@pytest.fixture(scope="module")
def monitoring():
    fake = FakeMemory()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "google.monitoring.v3.MetricService",
                {
                    "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                        fake.list_time_series,
                        request_deserializer=ListTimeSeriesRequest.deserialize,
                        response_serializer=ListTimeSeriesResponse.serialize,
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    client = monitoring_v3.MetricServiceClient(
        transport=MetricServiceGrpcTransport(channel=channel, credentials=AnonymousCredentials())
    )
    yield fake, client
    server.stop(0)


# --- identity tokens, failing thresholds -----------------------------------------------------


def test_identity_token_is_sent_and_a_failing_agent_fails_the_command(tmp_path):
    """Also Locust's distributed mode (--processes 2): the workers send, the master counts."""
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.test-token.sig\n")
    # every request past 0 in flight: half 500s, half hang past the timeout
    with agent_server("--limit", "0", "--hang-s", "1") as url:
        result = agentstage(
            "loadtest", "staging", "--agent", "support-bot", "--url", url, "--phases", "steady", "--rate", "10",
            "--duration", "2", "--timeout", "0.3", "--token-file", str(token), "--csv", str(tmp_path / "out" / "sb"),
            "--processes", "2", "--json",
        )  # fmt: skip
        seen = server_state(url)["authorizations"]
    assert result.returncode == 1, result.stderr
    assert seen and set(seen) == {"Bearer eyJhbGciOiJSUzI1NiJ9.test-token.sig"}
    found = json.loads(result.stdout)
    assert found["notes"][0] == f"identity token from {token}"
    steady = found["phases"]["steady"]
    assert steady["requests"] >= 10
    assert steady["failures"] == steady["requests"] == steady["timeouts"] + steady["errors"]
    assert steady["timeouts"] > 0 and steady["errors"] > 0
    assert [(c["name"], c["ok"]) for c in found["checks"]] == [("steady p99", True), ("steady errors", False)]
    assert "capacity" in found and found["capacity"] is None


# --- bad input ---------------------------------------------------------------------------------


def test_without_a_url_it_says_to_pass_one():
    result = agentstage("loadtest", "staging", "--agent", "support-bot")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: no URL for the candidate of support-bot in stack 'staging': no Google credentials to read the Cloud "
        "Run Admin API, and no Pulumi CLI to read the stack outputs; pass --url URL (the candidate's `canary` tag "
        "URL, e.g. https://canary---support-bot-123456789012.us-central1.run.app)"
    )


def test_unknown_agent_and_bad_options_are_refused_before_any_load():
    result = agentstage("loadtest", "staging", "--agent", "nobody", "--url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: --agent: stack 'staging' has no agent 'nobody' (agents: research-agent, support-bot)"
    )
    result = agentstage("loadtest", "staging", "--agent", "support-bot", "--url", "ftp://x", "--phases", "steady")
    assert result.stderr.strip() == "error: --url: 'ftp://x' is not an http(s) URL"
    result = agentstage("loadtest", "staging", "--agent", "support-bot", "--step-users", "10,x,100")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --step-users: '10,x,100' is not START,STEP,MAX (three whole numbers of concurrent users, e.g. "
        "100,100,1000)"
    )


def test_input_file_errors_name_the_line(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text('{"prompt": "hi"}\n\n{"prompt": 3}\n')
    result = agentstage("loadtest", "staging", "--agent", "support-bot", "--input", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: input {path}: line 3: prompt: 3 is not a prompt (a non-empty string)"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "hi"', "not valid JSON: Expecting ',' delimiter (column 16)"),
        ("[1, 2]", 'expected a JSON object, {"prompt": ...} or {"method", "path", "headers"?, "body"?}, got a list'),
        ('{"prompt": "hi", "method": "GET"}', "has both a prompt and a recorded request (method); give one per line"),
        (
            '{"method": "GET", "path": "/", "query": "x"}',
            "unknown key 'query'; a line is {\"prompt\": ...} or a recorded request with method, path, headers "
            "(optional) and body (optional)",
        ),
        ('{"path": "/"}', "a recorded request needs method"),
        (
            '{"method": "FETCH", "path": "/"}',
            'method: "FETCH" is not an HTTP method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)',
        ),
        (
            '{"method": "GET", "path": "https://x/"}',
            "path: \"https://x/\" is not a request path (it starts with '/', no spaces; the host is the URL under test)",
        ),
        (
            '{"method": "GET", "path": "/", "headers": {"X": 1}}',
            "headers must be an object of header name -> string value",
        ),
        (
            '{"method": "GET", "path": "/", "headers": {"Authorization": "Bearer old"}}',
            "headers: a recorded Authorization header is not replayed; the load test sends its own identity token "
            "(--id-token, --token-file)",
        ),
        ('{"method": "POST", "path": "/", "body": NaN}', "NaN is not a JSON number"),
    ],
)
def test_each_bad_line_gets_its_message(tmp_path, line, message):
    path = tmp_path / "requests.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(LoadTestError) as err:
        read_requests(path)
    assert err.value.message == f"input {path}: line 2: {message}"


def test_input_file_requests_prompts_and_recorded(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text(
        '{"prompt": "Where is my order?", "session": "s1"}\n'
        '{"method": "post", "path": "/v1/chat?stream=false", "headers": {"X-Tenant": "acme"}, "body": {"q": 1}}\n'
        '{"method": "GET", "path": "/healthz"}\n'
    )
    got = read_requests(path, "/ask")
    assert [(r.method, r.path, r.name, r.body) for r in got] == [
        ("POST", "/ask", "POST /ask", '{"prompt": "Where is my order?", "session": "s1"}'),
        ("POST", "/v1/chat?stream=false", "POST /v1/chat", '{"q": 1}'),
        ("GET", "/healthz", "GET /healthz", None),
    ]
    assert got[1].headers == {"X-Tenant": "acme", "Content-Type": "application/json"}
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n \n")
    with pytest.raises(LoadTestError, match=r"^input .*empty.jsonl: no requests \(the file has no non-blank lines\)$"):
        read_requests(empty)


def test_phase_and_step_options():
    assert parse_phases("step,steady") == ["steady", "step"]
    assert parse_step_users("100,100,1000") == (100, 100, 1000)
    with pytest.raises(LoadTestError) as err:
        parse_phases("ramp")
    assert err.value.message == "--phases: 'ramp' is not a list of phases; allowed: steady, step or steady,step"
    with pytest.raises(LoadTestError) as err:
        parse_step_users("10,5,1")
    assert err.value.message == "--step-users: '10,5,1': START and STEP must be at least 1 and MAX at least START"


# --- the candidate's URL -----------------------------------------------------------------------


def test_candidate_url_is_the_canary_tag_from_cloud_run_or_the_service_without_a_stable():
    fake = FakeServices()
    prod = "projects/acme-agents-prod/locations/us-central1/services/support-bot"
    staging = "projects/acme-agents-staging/locations/us-central1/services/support-bot"
    fake.services[prod] = run_v2.Service(
        name=prod,
        uri="https://support-bot-1.us-central1.run.app",
        traffic_statuses=[
            run_v2.TrafficTargetStatus(revision="support-bot-1-3-2", percent=95),
            run_v2.TrafficTargetStatus(
                revision="support-bot-1-4-0-abc",
                percent=5,
                tag="canary",
                uri="https://canary---support-bot-1.a.run.app",
            ),
        ],
    )
    fake.services[staging] = run_v2.Service(name=staging, uri=STAGING_URL)
    with serve(fake) as server:
        client = server.client()
        target = resolve_target(ROOT, "production", "support-bot", None, run_client=client)
        assert (target.url, target.version, target.source) == (
            "https://canary---support-bot-1.a.run.app",
            "1.4.0",
            "Cloud Run Admin API",
        )
        assert resolve_target(ROOT, "staging", "support-bot", None, run_client=client).url == STAGING_URL
    assert ("GetService", prod) in fake.calls


def test_tag_url_prefixes_the_host():
    assert tag_url(STAGING_URL, "canary") == "https://canary---support-bot-123456789012.us-central1.run.app"


def test_importing_the_cli_loads_neither_locust_nor_gevent():
    code = "import sys, agentstage.cli; print(sorted(m for m in ('locust', 'gevent') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_identity_token_modes_without_google_credentials(tmp_path, monkeypatch):
    from agentstage.errors import Failed
    from agentstage.ops.loadtest import identity_token

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    assert identity_token("http://127.0.0.1:8080", None, None) == (
        None,
        "no identity token (a plain http URL: a local agent)",
    )
    assert identity_token(STAGING_URL, False, None) == (None, "no identity token (--no-id-token)")
    assert identity_token(STAGING_URL, None, None) == (
        None,
        "no identity token (no Google credentials); a private service answers 403: pass --token-file with a token "
        "(gcloud auth print-identity-token)",
    )
    with pytest.raises(Failed) as err:
        identity_token(STAGING_URL, True, None)
    assert err.value.message == (
        f"--id-token: no Google credentials to mint an identity token for {STAGING_URL}; pass --token-file"
    )
    blank = tmp_path / "token"
    blank.write_text("two words\n")
    with pytest.raises(LoadTestError) as bad:
        identity_token(STAGING_URL, None, blank)
    assert bad.value.message == f"token file {blank}: expected one token (no spaces or line breaks)"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@contextlib.contextmanager
def token_endpoint() -> Iterator[tuple[str, list[dict]]]:
    """A local OAuth 2.0 token endpoint answering the JWT-bearer grant a service account makes
    for an identity token (google-auth's ``id_token_jwt_grant``: a form POST with ``assertion``,
    answered with ``{"id_token": ...}``); records each assertion's claims."""
    import http.server
    import urllib.parse

    claims: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server interface
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            assertion = form["assertion"][0].split(".")[1]
            claims.append(json.loads(base64.urlsafe_b64decode(assertion + "=" * (-len(assertion) % 4))))
            now = int(time.time())
            token = ".".join(
                [_b64({"alg": "RS256", "typ": "JWT"}), _b64({"aud": claims[-1]["target_audience"], "exp": now + 3600,
                                                             "iat": now}), "c2ln"]
            )  # fmt: skip
            body = json.dumps({"id_token": token}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token", claims
    finally:
        server.shutdown()


def test_identity_token_is_minted_with_a_service_account_for_the_url_origin(tmp_path, monkeypatch):
    """The real google-auth path (fetch_id_token with a service account key) against a local token
    endpoint: the token is for the URL's origin and is what the command sends."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from agentstage.ops.loadtest import identity_token

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with token_endpoint() as (token_uri, claims):
        sa = tmp_path / "sa.json"
        sa.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "acme-agents-staging",
                    "private_key_id": "k1",
                    "private_key": pem,
                    "client_email": "loadtest@acme-agents-staging.iam.gserviceaccount.com",
                    "client_id": "1",
                    "token_uri": token_uri,
                }
            )
        )
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(sa))
        token, note = identity_token(STAGING_URL + "/", None, None)
    assert [c["target_audience"] for c in claims] == [STAGING_URL]
    assert claims[0]["iss"] == "loadtest@acme-agents-staging.iam.gserviceaccount.com"
    assert token is not None and token.count(".") == 2
    assert note == f"identity token for {STAGING_URL} (Google credentials)"


def test_the_docs_walkthrough_uses_options_the_command_has():
    import typer.main

    from agentstage.cli import app

    command = typer.main.get_command(app).commands["loadtest"]  # type: ignore[attr-defined]
    known = {opt for p in command.params for opt in [*p.opts, *p.secondary_opts]}
    text = (ROOT / "docs" / "loadtest.md").read_text()
    walkthrough = text[text.index("## Walkthrough") :]
    calls = re.findall(r"agentstage loadtest (.*?)(?<!\\)\n", walkthrough.replace("\\\n", " "))
    assert calls
    used = {o for call in calls for o in re.findall(r"(?<!\S)(--[a-z-]+)", call)}
    assert used and used <= known, used - known
    documented = set(re.findall(r"`(--[a-z-]+)", text))
    # besides its own: the gate's --load-test, Locust's and the local agent server's options
    others = {"--load-test", "--csv-full-history"}
    others |= {"--port", "--base-ms", "--per-request-ms", "--limit", "--hang-s", "--leak-kib"}
    assert documented <= known | others, documented - known - others


def test_instance_based_billing_costs_the_instances_all_month():
    """min_instances > 0 with whole CPUs: CPU always allocated, every instance billed all month at
    the instance-based price, no request fee."""
    out = cost_model.project(
        cpu=2.0,
        memory_gib=4.0,
        concurrency=40,
        min_instances=1,
        request_based=False,
        rps=100.0,
        mean_latency_s=0.5,
        monthly_requests=250_000,
    )
    per_second = 2 * 0.000018 + 4 * 0.000002
    assert out["billing"] == "instance-based"
    # 250,000 a month is 0.1 request/s: one instance (the minimum) is enough, all month
    assert out["instances_all_month"] == 1
    assert out["monthly_usd"] == pytest.approx(per_second * 30 * 24 * 3600)
    # at the tested 100 requests/s, 50 in flight keep 2 instances busy
    assert out["model_usd_per_request"] == pytest.approx(2 * per_second / 100)
    given = cost_model.project(
        cpu=2.0, memory_gib=4.0, concurrency=40, min_instances=1, request_based=False, rps=100.0,
        mean_latency_s=0.5, monthly_requests=250_000, cost_per_request=0.004,
    )  # fmt: skip
    assert (given["source"], given["monthly_usd"]) == ("--cost-per-request", pytest.approx(1000.0))
