"""The incident commands (errors, inspect, replay, changes) through the real CLI, with the real
google-cloud-logging client against the local Logging server of tests/logging_fake.py
(ListLogEntries over gRPC on 127.0.0.1, the library's own messages): the filters and paging
sent, the grouping, the ordering, the replayed request, and the changes recorded by the real
release commands."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess

import grpc
import pytest
from typer.testing import CliRunner

from agentstage.cli import app
from agentstage.ops.logs import ENDPOINT_ENV, log_target, normalise
from agentstage.ops.replay import TOKEN_ENV, LoggedRequest, replay, tag_url, target_url
from tests.conftest import ROOT
from tests.logging_fake import (
    CANARY_REV,
    PROJECT,
    STABLE_REV,
    URL,
    DemoAgent,
    entry,
    sample_incident,
    serve_agent,
)

EXAMPLE = ROOT / "examples" / "incident"
runner = CliRunner()
OK_TRACE = "c" * 32
FIRST_TIMEOUT_TRACE = "a0000000" + "0" * 24
RESOURCE = (
    'resource.type = "cloud_run_revision" AND resource.labels.service_name = "support-bot" '
    'AND resource.labels.location = "us-central1"'
)


@pytest.fixture
def fake(logging_server, monkeypatch):
    fake, port = logging_server
    fake.requests.clear()
    fake.fail = None
    fake.stalls = 0
    fake.entries = sample_incident(dt.datetime.now(dt.timezone.utc))
    monkeypatch.setenv(ENDPOINT_ENV, f"127.0.0.1:{port}")
    monkeypatch.setenv("COLUMNS", "250")  # rich's width: whole rows in the text the tests read
    return fake


@pytest.fixture(scope="module")
def agent():
    httpd = serve_agent()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)
    assert result.exit_code == code, result.output
    return result.output


def run_json(*args: str, code: int = 0):
    return json.loads(run(*args, "--json", code=code))


def err_of(*args: str, code: int) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False, terminal_width=400)
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


# --- errors ------------------------------------------------------------------------------------


def test_errors_sends_the_agents_failing_filter_and_groups_by_error_and_revision(fake):
    out = run_json("errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot")
    (request,) = fake.requests
    assert list(request.resource_names) == [f"projects/{PROJECT}"]
    assert request.order_by == "timestamp desc" and request.page_size == 1000
    since = dt.datetime.fromisoformat(out["since"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.timezone.utc) - since) - dt.timedelta(hours=1)) < dt.timedelta(seconds=30)
    assert request.filter == (
        f'{RESOURCE} AND timestamp >= "{out["since"]}" AND (severity >= ERROR OR httpRequest.status >= 500)'
    )
    assert out["entries"] == 27 and out["truncated"] is False
    groups = [(g["error"], g["revision"], g["count"]) for g in out["groups"]]
    assert groups == [
        ("HTTP 504 POST /chat", CANARY_REV, 12),
        ("crm-lookup timed out after <n>s for order <n>", CANARY_REV, 12),
        ("<n> Resource exhausted: gemini-2.5-flash quota, retry in <n>s", STABLE_REV, 3),
    ]
    timeouts = out["groups"][0]
    assert timeouts["statuses"] == {"504": 12}
    newest = "a000000b" + "0" * 23 + "1"
    assert timeouts["example"]["trace"] == newest
    assert timeouts["example"]["request"] == {
        "method": "POST",
        "url": f"{URL}?session=9011",
        "status": 504,
        "latency_ms": 30011.0,
    }
    assert [t["link"] for t in timeouts["traces"]][0] == (
        f"https://console.cloud.google.com/traces/list?project={PROJECT}&tid={newest}"
    )
    assert len(timeouts["traces"]) == 3
    # first and last seen span the twelve timeouts, 4 minutes apart
    first = dt.datetime.fromisoformat(timeouts["first_seen"].replace("Z", "+00:00"))
    last = dt.datetime.fromisoformat(timeouts["last_seen"].replace("Z", "+00:00"))
    assert last - first == dt.timedelta(minutes=44)


def test_errors_since_narrows_the_window(fake):
    out = run_json("errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--since", "20m")
    # timeouts at 50, 46, ... 6 minutes ago: 18, 14, 10, 6 are inside; the quota errors at 20 and 25 are not (20m
    # ago is a few ms before the window starts)
    assert [(g["error"], g["count"]) for g in out["groups"]][:2] == [
        ("HTTP 504 POST /chat", 4),
        ("crm-lookup timed out after <n>s for order <n>", 4),
    ]


def test_errors_pages_through_and_stops_at_the_limit(fake):
    now = dt.datetime.now(dt.timezone.utc)
    fake.entries = [
        entry(
            PROJECT,
            "support-bot",
            CANARY_REV,
            now - dt.timedelta(seconds=i),
            insert_id=f"e{i}",
            severity="ERROR",
            trace=f"{i:032x}",
            text=f"upstream reset after {i} ms",
        )
        for i in range(2500)
    ]
    out = run_json("errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot")
    assert [r.page_token for r in fake.requests] == ["", "1000", "2000"]
    assert out["entries"] == 2500 and out["groups"][0]["count"] == 2500
    assert out["groups"][0]["error"] == "upstream reset after <n> ms"
    fake.requests.clear()
    out = run_json("errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--limit", "1500")
    assert [r.page_token for r in fake.requests] == ["", "1000"]
    assert out["entries"] == 1500 and out["truncated"] is True
    # newest first: the 1,500 read are the newest (0 to 1,499 s old)
    first, last = (dt.datetime.fromisoformat(out["groups"][0][k][:-1]) for k in ("first_seen", "last_seen"))
    assert (last - first).total_seconds() == 1499
    fake.requests.clear()
    run_json("errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--limit", "10")
    assert [r.page_size for r in fake.requests] == [10]


def test_an_empty_page_with_a_token_is_not_the_end(fake):
    fake.stalls = 1
    out = run_json("errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot")
    assert [r.page_token for r in fake.requests] == ["", "0"]
    assert out["entries"] == 27


def test_errors_table_shows_groups_and_trace_links(fake):
    out = run("errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot")
    assert "support-bot in production: 27 failing entries since" in out
    assert "crm-lookup timed out after <n>s for order <n>" in out
    assert f"#3 https://console.cloud.google.com/traces/list?project={PROJECT}&tid=b0000002" in out


def test_errors_without_failures_says_so(fake):
    fake.entries = []
    out = run("errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot")
    assert "no failing requests of support-bot in production since" in out


def test_a_refusal_of_the_api_is_reported(fake):
    fake.fail = grpc.StatusCode.PERMISSION_DENIED
    msg = err_of("errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot", code=1)
    assert f"error: Cloud Logging, project {PROJECT}: The caller does not have permission" in msg


@pytest.mark.parametrize(
    "since, message",
    [
        (
            "yesterday",
            "error: --since 'yesterday' is neither a duration (e.g. 30m, 1h, 2d, 1h30m) nor an RFC 3339 "
            "time (e.g. 2026-05-01T12:00:00Z)",
        ),
        ("0m", "error: --since '0m': give a window between 1s and 3650d"),
        ("2026-05-01T12:00:00", "error: --since '2026-05-01T12:00:00': give the time zone (e.g. a trailing Z for UTC)"),
        ("2999-01-01T00:00:00Z", "error: --since '2999-01-01T00:00:00Z' is in the future"),
    ],
)
def test_bad_since_is_refused(fake, since, message):
    assert message in err_of(
        "errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--since", since, code=2
    )
    assert fake.requests == []


def test_unknown_agent_is_refused(fake):
    msg = err_of("errors", "production", "-C", str(EXAMPLE), "--agent", "nobody", code=2)
    assert "error: agent 'nobody' is not in the stack; agents: support-bot" in msg


def test_agent_engine_logs_are_refused_with_the_reason(fake):
    msg = err_of("errors", "production", "-C", str(ROOT / "examples" / "runtimes"), "--agent", "research-agent", code=2)
    assert (
        "error: agent 'research-agent' runs on agent-engine: the incident commands read the logs of cloud-run and "
        "gke agents only (its logs are under aiplatform.googleapis.com/ReasoningEngine, keyed by the engine id "
        "Google assigns, which the stack config does not hold); use the Logs Explorer of project acme-agents-prod"
    ) in msg


def test_gke_agents_are_read_from_their_containers():
    from agentstage.commands.incident import _platform

    _, spec = _platform(ROOT / "examples" / "runtimes", "production")
    target = log_target(spec, "summarizer")
    assert target.resource_filter == (
        'resource.type = "k8s_container" AND resource.labels.namespace_name = "summarizer" '
        'AND resource.labels.container_name = "agent" AND resource.labels.cluster_name = "agents" '
        'AND resource.labels.location = "us-central1"'
    )


@pytest.mark.parametrize(
    "message, shape",
    [
        ("timeout after 30.2s for order 81723", "timeout after <n>s for order <n>"),
        ("session 3f2a9c1e-1111-2222-3333-444455556666 lost", "session <id> lost"),
        ("bad digest deadbeef12 at 0x7ffde4a1", "bad digest <hex> at <hex>"),
        ("HTTP 502 GET /orders/81723/items", "HTTP 502 GET /orders/<n>/items"),
        (
            "model gemini-2.5-flash on support-bot-1-4-0 failed\nTraceback ...",
            "model gemini-2.5-flash on support-bot-1-4-0 failed",
        ),
    ],
)
def test_normalise_strips_what_varies_per_request(message, shape):
    assert normalise(message) == shape


# --- inspect -----------------------------------------------------------------------------------


def test_inspect_by_trace_lists_the_requests_entries_in_time_order(fake):
    out = run_json(
        "inspect", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", FIRST_TIMEOUT_TRACE
    )
    (request,) = fake.requests
    assert request.order_by == "timestamp asc"
    assert request.filter.startswith(RESOURCE + ' AND timestamp >= "')
    assert request.filter.endswith(
        f' AND (trace = "projects/{PROJECT}/traces/{FIRST_TIMEOUT_TRACE}" OR trace = "{FIRST_TIMEOUT_TRACE}")'
    )
    assert out["trace"] == FIRST_TIMEOUT_TRACE
    assert out["link"] == f"https://console.cloud.google.com/traces/list?project={PROJECT}&tid={FIRST_TIMEOUT_TRACE}"
    assert [(e["insert_id"], e["log"], e["severity"]) for e in out["entries"]] == [
        ("app0000", "run.googleapis.com/stdout", "ERROR"),
        ("req0000", "run.googleapis.com/requests", "ERROR"),
    ]
    assert out["entries"][0]["message"] == "crm-lookup timed out after 29.5s for order 81723"
    assert out["entries"][1]["request"]["status"] == 504


def test_inspect_by_insert_id_finds_the_trace_first(fake):
    out = run_json("inspect", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", "app0003")
    lookup, listing = fake.requests
    assert lookup.filter.endswith(' AND insertId = "app0003"') and lookup.page_size == 1
    assert out["trace"] == "a0000003" + "0" * 23 + "3"
    assert [e["insert_id"] for e in out["entries"]] == ["app0003", "req0003"]
    text = run("inspect", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", "app0003")
    assert "POST https://support-bot-5qv3k2x7ra-uc.a.run.app/chat?session=9003 -> 504 in 30003.0 ms" in text


@pytest.mark.parametrize(
    "given",
    [
        f"{FIRST_TIMEOUT_TRACE.upper()}/123;o=1",
        f"00-{FIRST_TIMEOUT_TRACE}-00f067aa0ba902b7-01",
        f"projects/{PROJECT}/traces/{FIRST_TIMEOUT_TRACE}",
    ],
)
def test_inspect_accepts_the_trace_header_forms(fake, given):
    out = run_json("inspect", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", given)
    assert out["trace"] == FIRST_TIMEOUT_TRACE and len(out["entries"]) == 2
    assert len(fake.requests) == 1  # no insertId lookup


def test_inspect_unknown_request_says_what_to_give(fake):
    msg = err_of("inspect", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", "nope", code=1)
    assert "error: no log entry with insertId 'nope' for agent support-bot since " in msg
    assert "give the request's trace id (as `agentstage errors` prints it) or a longer --since" in msg
    msg = err_of("inspect", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", "d" * 32, code=1)
    assert f"error: no log entries of agent support-bot with trace {'d' * 32} since " in msg
    msg = err_of("inspect", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", 'a"b', code=2)
    assert "error: --request 'a\"b' is neither a trace id (32 hexadecimal digits) nor a log entry's insertId" in msg


# --- replay ------------------------------------------------------------------------------------


def test_replay_resends_the_logged_request_with_a_token_and_shows_both_answers(fake, agent, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "token-for-test")
    DemoAgent.received.clear()
    out = run_json(
        "replay", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", OK_TRACE, "--url", agent
    )
    (received,) = DemoAgent.received
    assert received["path"] == "/chat"
    assert json.loads(received["body"]) == {"session": "s-42", "prompt": "Where is my order 81723?", "max_results": 3}
    assert re.search(rb'"max_results": 3[,}]', received["body"])  # the Struct's double sent as the logged integer
    headers = {k.lower(): v for k, v in received["headers"].items()}
    assert headers["authorization"] == "Bearer token-for-test"
    assert headers["content-type"] == "application/json"
    assert out["url"] == f"{agent}/chat" and out["method"] == "POST" and out["trace"] == OK_TRACE
    assert out["logged"] == {
        "status": 200,
        "latency_ms": 812.0,
        "body": {"answer": "Your order ships today.", "tools": ["crm-lookup"]},
    }
    assert out["replayed"]["status"] == 200 and out["replayed"]["latency_ms"] > 0
    assert out["same_status"] is True
    assert '-  "answer": "Your order ships today.",' in out["diff"]
    assert '+  "answer": "Your order ships tomorrow.",' in out["diff"]
    assert '+  "echo": "Where is my order 81723?",' in out["diff"]
    text = run(
        "replay", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", OK_TRACE, "--url", agent
    )
    assert f"replayed POST {agent}/chat (trace {OK_TRACE})" in text
    assert re.search(r"logged\s+│\s+200\s+│\s+812 ms", text), text


def test_replay_takes_the_token_from_the_provider(agent):
    DemoAgent.received.clear()
    logged = LoggedRequest(OK_TRACE, "POST", "/chat", {"x-session": "s-1"}, {"prompt": "hi"}, None, "ok-app")
    seen = []
    result = replay(logged, agent, token_for=lambda url: seen.append(url) or "minted")
    assert seen == [agent]
    headers = {k.lower(): v for k, v in DemoAgent.received[0]["headers"].items()}
    assert headers["authorization"] == "Bearer minted" and headers["x-session"] == "s-1"
    assert result.logged is None and result.new.body["echo"] == "hi" and result.diff == []


def test_replay_refuses_a_request_whose_payload_was_not_logged(fake, agent):
    msg = err_of(
        "replay",
        "production",
        "-C",
        str(EXAMPLE),
        "--agent",
        "support-bot",
        "--request",
        FIRST_TIMEOUT_TRACE,
        "--url",
        agent,
        code=1,
    )
    assert (
        f"error: request {FIRST_TIMEOUT_TRACE} of agent 'support-bot' has no logged payload: none of its 2 log "
        "entries holds jsonPayload.agentstage_request, so it cannot be replayed (the agent may sample payloads, "
        "or the entry is past its retention)"
    ) in msg


def test_replay_refuses_an_agent_that_does_not_log_payloads(fake, agent, tmp_path):
    demo = tmp_path / "demo"
    shutil.copytree(EXAMPLE, demo)
    stack = demo / "stacks" / "Pulumi.production.yaml"
    stack.write_text(stack.read_text().replace('        LOG_REQUEST_PAYLOADS: "true"\n', ""))
    msg = err_of(
        "replay", "production", "-C", str(demo), "--agent", "support-bot", "--request", OK_TRACE, "--url", agent, code=1
    )
    assert (
        "error: agent 'support-bot' does not log request payloads, so its requests cannot be replayed: set "
        'agents.support-bot.env.LOG_REQUEST_PAYLOADS: "true" and log each request under '
        "jsonPayload.agentstage_request (docs/incidents.md, the logging contract)"
    ) in msg
    assert fake.requests == []


def test_replay_bad_options_are_refused(fake):
    msg = err_of(
        "replay",
        "production",
        "-C",
        str(EXAMPLE),
        "--agent",
        "support-bot",
        "--request",
        OK_TRACE,
        "--to",
        "blue",
        code=2,
    )
    assert "error: --to 'blue': use canary or stable (or --url)" in msg
    msg = err_of(
        "replay",
        "production",
        "-C",
        str(EXAMPLE),
        "--agent",
        "support-bot",
        "--request",
        OK_TRACE,
        "--url",
        "ftp://x",
        code=2,
    )
    assert "error: --url 'ftp://x': give an http:// or https:// URL" in msg


def test_replay_targets_the_canary_tag_url_or_the_service_url():
    from agentstage.commands.incident import _platform
    from agentstage.errors import Failed

    _, spec = _platform(EXAMPLE, "production")
    service = "https://support-bot-5qv3k2x7ra-uc.a.run.app"
    assert target_url(spec, "support-bot", "canary", lambda: service) == (
        "https://canary---support-bot-5qv3k2x7ra-uc.a.run.app"
    )
    with pytest.raises(Failed) as err:
        target_url(spec, "support-bot", "stable", lambda: service)
    assert err.value.message == (
        "agent 'support-bot' has a canary at 5%: its service URL serves both releases and the stable revision has "
        "no URL of its own; give --url (or roll back first)"
    )
    assert tag_url("https://support-bot-5qv3k2x7ra-uc.a.run.app/", "canary").startswith("https://canary---")
    with pytest.raises(Exception) as bad:
        tag_url("https://bot.example.com", "canary")
    assert "https://bot.example.com is not a Cloud Run service URL (*.run.app)" in str(bad.value)


# --- changes -----------------------------------------------------------------------------------


def _git(cwd, *args):
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ops",
        "GIT_AUTHOR_EMAIL": "ops@example.com",
        "GIT_COMMITTER_NAME": "Ops",
        "GIT_COMMITTER_EMAIL": "ops@example.com",
    }
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, env=env)


def test_changes_lists_what_the_release_commands_recorded_newest_first(tmp_path, monkeypatch):
    demo = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "release", demo)
    _git(demo, "init", "-q")
    _git(demo, "add", "-A")
    _git(demo, "commit", "-q", "-m", "initial stacks")
    monkeypatch.chdir(demo)
    monkeypatch.setenv("COLUMNS", "250")
    run(
        "promote",
        "staging",
        "production",
        "--agent",
        "support-bot",
        "--eval",
        "evidence/eval-support-bot-1.5.0.json",
        "--load-test",
        "evidence/locust",
    )
    _git(demo, "commit", "-q", "-am", "promote support-bot 1.5.0")
    run("rollback", "production")
    out = run_json("changes", "production")
    kinds = [(c["kind"], c["agent"]) for c in out["changes"]]
    # newest: the rollback and the stack file edit it left uncommitted
    assert set(kinds[:2]) == {("rollback", "support-bot"), ("config", None)}
    by_kind = {}
    for c in out["changes"]:
        by_kind.setdefault(c["kind"], []).append(c)
    assert by_kind["rollback"][0]["summary"].startswith("rollback 1.5.0 -> 0%, all traffic to 1.4.0")
    assert by_kind["promote"][0]["summary"] == "promoted 1.5.0 from staging at 5% (stable 1.4.0)"
    assert {c["details"]["version"] for c in by_kind["release"] if c["agent"] == "support-bot"} == {"1.4.0", "1.5.0"}
    config = [c["summary"] for c in by_kind["config"]]
    assert "Pulumi.production.yaml: uncommitted edits" in config
    assert any(s.startswith("Pulumi.production.yaml: promote support-bot 1.5.0 (") for s in config)
    assert any(s.startswith("Pulumi.production.yaml: initial stacks (") for s in config)
    edits = next(c for c in by_kind["config"] if c["source"] == "working tree")["details"]["lines"]
    assert edits == ["-        canary_percent: 5", "+        canary_percent: 0"]
    times = [c["time"] for c in out["changes"]]
    assert times == sorted(times, reverse=True)
    # --agent keeps that agent's changes and the stack-wide ones
    only = run_json("changes", "production", "--agent", "research-agent")
    assert {c["agent"] for c in only["changes"]} <= {"research-agent", None}
    assert not any(c["kind"] in ("promote", "rollback") for c in only["changes"])
    text = run("changes", "production")
    assert "promoted 1.5.0 from staging at 5% (stable 1.4.0)" in text


def test_changes_outside_git_notes_it_and_window_filters(tmp_path, monkeypatch):
    demo = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "release", demo)
    monkeypatch.chdir(demo)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    out = run_json("changes", "production")
    assert out["changes"] == []
    assert out["notes"] == [f"config history skipped: {demo} is not in a git repository (or git is not installed)"]
    msg = err_of("changes", "production", "--agent", "nobody", code=2)
    assert "error: agent 'nobody' is not in the stack; agents: research-agent, support-bot" in msg


def test_flag_changes_recorded_by_flags_set_are_shown(tmp_path, monkeypatch):
    demo = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "release", demo)
    monkeypatch.chdir(demo)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    run("flags", "set", "production", "--agent", "support-bot", "web_search_tool=on")
    (change,) = run_json("changes", "production", "--agent", "support-bot")["changes"]
    assert change["kind"] == "flags" and change["agent"] == "support-bot"
    assert change["summary"].startswith("flags web_search_tool off -> on (parameter version ")
    assert change["details"]["reason"] == "web_search_tool=on (set by the operator)"


def test_inspect_matches_entries_with_the_bare_trace_id(fake):
    """The agent's line carries the bare trace id, the request log the trace's resource name."""
    out = run_json("inspect", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", OK_TRACE)
    assert [e["insert_id"] for e in out["entries"]] == ["ok-app", "ok-req"]
    assert "ok-app" in {e.insert_id for e in fake.entries if e.trace == OK_TRACE}


def test_the_requests_sent_are_ones_the_logging_api_accepts(fake):
    """Checked against the logging.v2 discovery document: the request's fields, the two orders
    it permits, the severity name and the LogEntry fields the filters compare."""
    from tests.conformance.discovery import document

    doc = document("logging.v2")["schemas"]
    run_json("errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot")
    run_json("inspect", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", "app0001")
    request_fields = set(doc["ListLogEntriesRequest"]["properties"])
    order_doc = doc["ListLogEntriesRequest"]["properties"]["orderBy"]["description"]
    for request in fake.requests:
        sent = {f.json_name for f, _ in request.ListFields()}
        assert sent <= request_fields, sent - request_fields
        assert f'"{request.order_by}"' in order_doc
        assert request.page_size >= 1
        # "The maximum length of a filter is 20,000 characters"; parents as projects/[PROJECT_ID]
        assert len(request.filter) <= 20_000
        assert list(request.resource_names) == [f"projects/{PROJECT}"]
    assert "ERROR" in doc["LogEntry"]["properties"]["severity"]["enum"]
    entry_fields = doc["LogEntry"]["properties"]
    for field in ("resource", "timestamp", "severity", "httpRequest", "trace", "insertId"):
        assert field in entry_fields
    assert {"type", "labels"} <= set(doc["MonitoredResource"]["properties"])
    assert doc["HttpRequest"]["properties"]["status"]["type"] == "integer"
    # the trace ids inspect accepts are the ones Cloud Trace defines
    span = document("cloudtrace.v2")["schemas"]["Span"]["properties"]["name"]["description"]
    assert "it is a 32-character hexadecimal encoding of a 16-byte array" in span


def test_a_local_agent_gets_no_token_unless_one_is_given(fake, agent, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    DemoAgent.received.clear()
    run_json(
        "replay", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", OK_TRACE, "--url", agent
    )
    assert "authorization" not in {k.lower() for k in DemoAgent.received[0]["headers"]}


WALKTHROUGH = [
    "-m tests.logging_fake --demo --port 8085 --agent-port 8086",
    "agentstage errors production -C examples/incident --agent support-bot",
    "agentstage inspect production -C examples/incident --agent support-bot --request a000000b000000000000000000000001",
    "agentstage inspect production -C examples/incident --agent support-bot --request app0003",
    "agentstage replay production -C examples/incident --agent support-bot --request "
    "cccccccccccccccccccccccccccccccc --url http://127.0.0.1:8086",
    "agentstage rollback production -C /tmp/incident",
    "agentstage flags set production -C /tmp/incident --agent support-bot web_search_tool=on",
    "agentstage changes production -C /tmp/incident",
]


def test_docs_show_the_walkthrough_the_tests_run():
    """docs/incidents.md shows these commands; the tests above run each of them (on the same
    sample incident, the same example and the same kind of copy)."""
    docs = " ".join((ROOT / "docs" / "incidents.md").read_text().split())
    for command in WALKTHROUGH:
        assert command in docs, command


def test_walkthrough_changes_on_a_copy_of_the_example(tmp_path, monkeypatch):
    demo = tmp_path / "incident"
    shutil.copytree(EXAMPLE, demo)
    _git(demo, "init", "-q")
    _git(demo, "add", "-A")
    _git(demo, "commit", "-q", "-m", "production before the incident")
    monkeypatch.setenv("COLUMNS", "250")
    run("rollback", "production", "-C", str(demo))
    run("flags", "set", "production", "-C", str(demo), "--agent", "support-bot", "web_search_tool=on")
    out = run_json("changes", "production", "-C", str(demo))
    kinds = [c["kind"] for c in out["changes"]]
    assert kinds[0] == "flags" and "rollback" in kinds and kinds.count("config") == 2
    edits = next(c for c in out["changes"] if c["source"] == "working tree")["details"]["lines"]
    assert "+        canary_percent: 0" in edits and "+        web_search_tool: true" in edits


def test_replay_without_url_needs_the_stack_outputs(fake, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no Pulumi CLI
    msg = err_of(
        "replay",
        "production",
        "-C",
        str(EXAMPLE),
        "--agent",
        "support-bot",
        "--request",
        OK_TRACE,
        "--to",
        "canary",
        code=1,
    )
    assert (
        "error: the URL of support-bot comes from the stack outputs of the last `pulumi up` "
        "(agents.support-bot.url), read with the Pulumi CLI, which is not installed "
        "(https://www.pulumi.com/docs/install/); give --url"
    ) in msg


def test_gke_revision_is_the_tracks_deployment():
    from agentstage.commands.incident import _platform
    from agentstage.ops.logs import revision_of

    _, spec = _platform(ROOT / "examples" / "runtimes", "production")
    target = log_target(spec, "summarizer")
    e = entry(PROJECT, "x", "x", dt.datetime.now(dt.timezone.utc), insert_id="k1", text="boom")
    e.resource.type = "k8s_container"
    e.resource.labels.clear()
    e.resource.labels.update({"pod_name": "summarizer-canary-7d9f8b6c5-x2x7k", "namespace_name": "summarizer"})
    assert revision_of(e, target) == "summarizer-canary"


def test_replay_names_what_is_wrong_in_a_malformed_logged_request(fake, agent):
    bad = "e" * 32
    now = dt.datetime.now(dt.timezone.utc)
    fake.entries = fake.entries + [
        entry(
            PROJECT,
            "support-bot",
            CANARY_REV,
            now,
            insert_id="bad-app",
            trace=bad,
            payload={"agentstage_request": {"method": "POST", "path": "chat", "headers": {"x": 1}}},
        )
    ]
    msg = err_of(
        "replay", "production", "-C", str(EXAMPLE), "--agent", "support-bot", "--request", bad, "--url", agent, code=1
    )
    assert (
        f"error: the logged request bad-app of trace {bad} cannot be replayed: jsonPayload.agentstage_request "
        "path 'chat' is not an absolute path (e.g. /chat); has no body; headers is not an object of strings "
        "(docs/incidents.md, the logging contract)"
    ) in msg


def test_the_incident_example_is_a_valid_production_stack(monkeypatch):
    """examples/incident passes the production policy pack, so the walkthrough starts from a stack
    a team could deploy."""
    monkeypatch.setenv("COLUMNS", "250")
    out = run("check", "production", "-C", str(EXAMPLE))
    assert "0 violations (0 mandatory, 0 advisory)" in out


def test_without_credentials_errors_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud application-default credentials file
    monkeypatch.setenv("NO_GCE_CHECK", "true")  # google-auth's switch: no metadata server probe
    msg = err_of("errors", "production", "-C", str(EXAMPLE), "--agent", "support-bot", code=1)
    assert (
        "error: no Google credentials to read Cloud Logging: run `gcloud auth application-default login` "
        "(the account needs roles/logging.viewer), or set AGENTSTAGE_LOGGING_ENDPOINT to a local server"
    ) in msg
