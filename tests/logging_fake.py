"""A local Cloud Logging server: ``google.logging.v2.LoggingServiceV2/ListLogEntries`` over plain
gRPC on 127.0.0.1, with the messages of ``google-cloud-logging`` itself, for the tests of the
incident commands and the offline walkthrough of docs/incidents.md.

It holds log entries and answers ListLogEntries as the API does for the filters agentstage
sends: the comparisons ``resource.type``, ``resource.labels.<key>``, ``trace``, ``insertId``,
``logName`` (=), ``resource.labels.<key> = ("a" OR "b")``, ``timestamp >=`` and ``<``, a trace given in both its forms ``(trace =
"projects/P/traces/ID" OR trace = "ID")``, the failing-request clause ``(severity >= ERROR OR
httpRequest.status >= 500)`` and the canary judge's failed-request clause ``(httpRequest.status
>= 500 OR httpRequest.status = 429)``, joined by AND; anything else is INVALID_ARGUMENT, as an unparsable filter is. Ordering
(``timestamp asc|desc``), paging (``page_size`` at most 1000, ``next_page_token``) and the
``resource_names`` project are honoured. Every request is recorded.

Run it for the walkthrough::

    python -m tests.logging_fake --demo --port 8085 --agent-port 8086

``--demo`` loads a sample incident of examples/incident (support-bot's canary failing on
timeouts); ``--agent-port`` also serves a small agent on 127.0.0.1 that answers ``POST /chat``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.cloud.logging_v2.types import ListLogEntriesRequest, ListLogEntriesResponse, LogEntry
from google.logging.type import log_severity_pb2
from google.protobuf import struct_pb2

SERVICE = "google.logging.v2.LoggingServiceV2"
MAX_PAGE = 1000
RAW_ENTRY = LogEntry.pb()
RAW_RESPONSE = ListLogEntriesResponse.pb()
RAW_REQUEST = ListLogEntriesRequest.pb()

_CLAUSE = re.compile(
    r'^(resource\.type|resource\.labels\.[a-z_]+|trace|insertId|logName|timestamp) (=|>=|<) "((?:[^"\\]|\\.)*)"$'
)
_FAILING = "(severity >= ERROR OR httpRequest.status >= 500)"
#: the failed requests the canary judge reads (agentstage.release.requestlogs)
_FAILED_REQUEST = "(httpRequest.status >= 500 OR httpRequest.status = 429)"
#: ``field = ("a" OR "b")``: any of the values
_ANY_OF = re.compile(r'^(resource\.labels\.[a-z_]+) = \(("(?:[^"\\]|\\.)*"(?: OR "(?:[^"\\]|\\.)*")+)\)$')
_TRACE_EITHER = re.compile(r'^\(trace = "((?:[^"\\]|\\.)*)" OR trace = "((?:[^"\\]|\\.)*)"\)$')


class BadFilter(ValueError):
    pass


def _split_and(text: str) -> list[str]:
    """Top-level ``AND`` operands (outside quotes and parentheses)."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and text.startswith(" AND ", i):
            parts.append(text[start:i])
            start = i + 5
            i += 4
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _ns_of(text: str) -> int:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def compile_filter(text: str):
    """A predicate over raw LogEntry messages for the filter forms agentstage sends."""
    tests = []
    for clause in _split_and(text):
        either = _TRACE_EITHER.match(clause)
        if either:  # (trace = "projects/P/traces/ID" OR trace = "ID")
            values = {v.replace('\\"', '"') for v in either.groups()}
            tests.append(lambda e, values=values: e.trace in values)
            continue
        if clause == _FAILING:
            tests.append(
                lambda e: (
                    e.severity >= log_severity_pb2.ERROR
                    or (e.HasField("http_request") and e.http_request.status >= 500)
                )
            )
            continue
        any_of = _ANY_OF.match(clause)
        if any_of:
            key = any_of.group(1).rsplit(".", 1)[1]
            values = {v.replace('\\"', '"') for v in re.findall(r'"((?:[^"\\]|\\.)*)"', any_of.group(2))}
            tests.append(lambda e, k=key, values=values: e.resource.labels.get(k) in values)
            continue
        if clause == _FAILED_REQUEST:
            tests.append(
                lambda e: e.HasField("http_request") and (e.http_request.status >= 500 or e.http_request.status == 429)
            )
            continue
        m = _CLAUSE.match(clause)
        if not m:
            raise BadFilter(f"unsupported filter clause: {clause}")
        field, op, value = m.group(1), m.group(2), m.group(3).replace('\\"', '"').replace("\\\\", "\\")
        if field == "timestamp":
            ns = _ns_of(value)
            if op == ">=":
                tests.append(lambda e, ns=ns: e.timestamp.seconds * 1_000_000_000 + e.timestamp.nanos >= ns)
            else:
                tests.append(lambda e, ns=ns: e.timestamp.seconds * 1_000_000_000 + e.timestamp.nanos < ns)
        elif op != "=":
            raise BadFilter(clause)
        elif field == "resource.type":
            tests.append(lambda e, v=value: e.resource.type == v)
        elif field.startswith("resource.labels."):
            key = field.rsplit(".", 1)[1]
            tests.append(lambda e, k=key, v=value: e.resource.labels.get(k) == v)
        elif field == "trace":
            tests.append(lambda e, v=value: e.trace == v)
        elif field == "logName":
            tests.append(lambda e, v=value: e.log_name == v)
        else:
            tests.append(lambda e, v=value: e.insert_id == v)
    return lambda e: all(t(e) for t in tests)


class FakeLogging:
    """Entries (raw ``google.logging.v2.LogEntry`` messages) and the requests received."""

    def __init__(self) -> None:
        self.entries: list[Any] = []
        self.requests: list[Any] = []
        self.fail: grpc.StatusCode | None = None
        self.lock = threading.Lock()
        self._cache: dict[Any, list[Any]] = {}
        #: first pages answered empty but with a next_page_token, as the API does when a search
        #: "did not have time to search all the possible log entries" (ListLogEntriesResponse)
        self.stalls = 0

    def list_log_entries(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.lock:
            self.requests.append(request)
        if self.fail is not None:
            context.abort(self.fail, "The caller does not have permission")
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"page_size must be at most {MAX_PAGE}")
        if self.stalls and not request.page_token:
            self.stalls -= 1
            return RAW_RESPONSE(entries=[], next_page_token="0")
        key = (tuple(request.resource_names), request.filter, request.order_by, id(self.entries), len(self.entries))
        chosen = self._cache.get(key)
        if chosen is None:
            try:
                match = compile_filter(request.filter)
            except BadFilter as err:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            projects = {name.split("/", 1)[1] for name in request.resource_names if name.startswith("projects/")}
            chosen = [e for e in self.entries if e.log_name.split("/")[1] in projects and match(e)]
            chosen.sort(
                key=lambda e: (e.timestamp.seconds, e.timestamp.nanos, e.insert_id),
                reverse=request.order_by.endswith("desc"),
            )
            # the pages of one listing are answered from one evaluation (the entries do not change
            # between them), as the API's page tokens point into one result
            self._cache = {key: chosen}
        start = int(request.page_token or 0)
        size = request.page_size or 50
        page = chosen[start : start + size]
        token = str(start + size) if start + size < len(chosen) else ""
        return RAW_RESPONSE(entries=page, next_page_token=token)


def serve(fake: FakeLogging, port: int = 0) -> tuple[grpc.Server, int]:
    """Start the server on 127.0.0.1 (``port`` 0: any free port); returns it and its port."""
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ListLogEntries": grpc.unary_unary_rpc_method_handler(
                fake.list_log_entries,
                request_deserializer=RAW_REQUEST.FromString,
                response_serializer=RAW_RESPONSE.SerializeToString,
            )
        },
    )
    srv.add_generic_rpc_handlers((handler,))
    bound = srv.add_insecure_port(f"127.0.0.1:{port}")
    srv.start()
    return srv, bound


# --- building entries ----------------------------------------------------------------------------


def entry(
    project: str,
    service: str,
    revision: str,
    when: dt.datetime,
    *,
    insert_id: str,
    region: str = "us-central1",
    severity: str = "DEFAULT",
    trace: str = "",
    text: str | None = None,
    payload: dict[str, Any] | None = None,
    status: int | None = None,
    method: str = "POST",
    url: str = "",
    latency_ms: float = 0.0,
    log: str | None = None,
    bare_trace: bool = False,
) -> Any:
    """One Cloud Run entry as Cloud Logging stores it: a request log when ``status`` is given
    (``run.googleapis.com/requests`` with ``httpRequest``), else a stdout line (text or JSON)."""
    e = RAW_ENTRY(
        log_name=f"projects/{project}/logs/"
        + (log or ("run.googleapis.com%2Frequests" if status is not None else "run.googleapis.com%2Fstdout")),
        insert_id=insert_id,
        severity=log_severity_pb2.LogSeverity.Value(severity),
    )
    e.timestamp.FromDatetime(when)
    e.receive_timestamp.FromDatetime(when)
    e.resource.type = "cloud_run_revision"
    e.resource.labels.update(
        {
            "project_id": project,
            "service_name": service,
            "revision_name": revision,
            "location": region,
            "configuration_name": service,
        }
    )
    if trace:  # LogEntry.trace: the bare id, or (Cloud Run's request logs) the trace's resource name
        e.trace = trace if bare_trace else f"projects/{project}/traces/{trace}"
    if status is not None:
        e.http_request.request_method = method
        e.http_request.request_url = url
        e.http_request.status = status
        e.http_request.latency.FromTimedelta(dt.timedelta(milliseconds=latency_ms))
    elif payload is not None:
        s = struct_pb2.Struct()
        s.update(payload)
        e.json_payload.CopyFrom(s)
    else:
        e.text_payload = text or ""
    return e


PROJECT = "acme-agents-prod"
AGENT_SERVICE = "support-bot"
STABLE_REV = "support-bot-1-4-0-5b1e2c7d"
CANARY_REV = "support-bot-1-5-0-93457a87"
URL = "https://support-bot-5qv3k2x7ra-uc.a.run.app/chat"


def sample_incident(now: dt.datetime, *, project: str = PROJECT, service: str = AGENT_SERVICE) -> list[Any]:
    """A small incident: the canary times out calling the CRM (5xx request logs and the app's
    error lines sharing their traces), the stable logs a few quota errors, and one healthy
    request whose payload is logged (replayable)."""
    out = []
    for i in range(12):
        t = now - dt.timedelta(minutes=50 - 4 * i)
        trace = f"{0xA0000000 + i:08x}" + "0" * 23 + f"{i % 10}"
        out.append(
            entry(
                project,
                service,
                CANARY_REV,
                t,
                insert_id=f"req{i:04d}",
                trace=trace,
                status=504,
                url=f"{URL}?session={9000 + i}",
                latency_ms=30000 + i,
                severity="ERROR",
            )
        )
        out.append(
            entry(
                project,
                service,
                CANARY_REV,
                t - dt.timedelta(milliseconds=5),
                insert_id=f"app{i:04d}",
                trace=trace,
                severity="ERROR",
                payload={"message": f"crm-lookup timed out after {29.5 + i / 10:.1f}s for order {81723 + i}"},
            )
        )
    for i in range(3):
        t = now - dt.timedelta(minutes=30 - 5 * i)
        trace = f"{0xB0000000 + i:08x}" + "1" * 24
        out.append(
            entry(
                project,
                service,
                STABLE_REV,
                t,
                insert_id=f"quota{i}",
                trace=trace,
                severity="ERROR",
                text=f"429 Resource exhausted: gemini-2.5-flash quota, retry in {i + 2}s",
            )
        )
    ok = "c" * 32
    t = now - dt.timedelta(minutes=10)
    out.append(
        entry(project, service, CANARY_REV, t, insert_id="ok-req", trace=ok, status=200, url=URL, latency_ms=812)
    )
    out.append(
        entry(
            project,
            service,
            CANARY_REV,
            t - dt.timedelta(milliseconds=2),
            insert_id="ok-app",
            trace=ok,
            bare_trace=True,
            severity="INFO",
            payload={
                "message": "request served",
                "agentstage_request": {
                    "method": "POST",
                    "path": "/chat",
                    "headers": {"content-type": "application/json"},
                    "body": {"session": "s-42", "prompt": "Where is my order 81723?", "max_results": 3},
                    "response": {
                        "status": 200,
                        "latency_ms": 812,
                        "body": {"answer": "Your order ships today.", "tools": ["crm-lookup"]},
                    },
                },
            },
        )
    )
    return out


class DemoAgent(BaseHTTPRequestHandler):
    """A tiny agent: ``POST /chat`` answers JSON naming the prompt it got; records each request."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        DemoAgent.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path != "/chat":
            self.send_error(404)
            return
        prompt = json.loads(body or b"{}").get("prompt", "")
        out = json.dumps({"answer": "Your order ships tomorrow.", "tools": ["crm-lookup"], "echo": prompt}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


def serve_agent(port: int = 0) -> ThreadingHTTPServer:
    """The demo agent on 127.0.0.1 in a thread (``port`` 0: any free port)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", port), DemoAgent)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    parser = argparse.ArgumentParser(description="A local Cloud Logging server for the incident commands.")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--demo", action="store_true", help="load the sample incident (relative to now)")
    parser.add_argument("--agent-port", type=int, default=None, help="also serve the demo agent on this port")
    args = parser.parse_args()
    fake = FakeLogging()
    if args.demo:
        fake.entries = sample_incident(dt.datetime.now(dt.timezone.utc))
    srv, port = serve(fake, args.port)
    print(f"Cloud Logging on 127.0.0.1:{port} with {len(fake.entries)} entries", flush=True)
    if args.agent_port is not None:
        httpd = serve_agent(args.agent_port)
        print(f"demo agent on http://127.0.0.1:{httpd.server_address[1]}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop(0)


if __name__ == "__main__":
    main()
