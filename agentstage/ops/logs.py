"""An agent's failing requests and one request's story, read from Cloud Logging.

``agentstage errors`` and ``agentstage inspect`` read log entries with the Cloud Logging API
(``google-cloud-logging``'s generated ``LoggingServiceV2Client``, ``ListLogEntries``) under a
filter built here from the stack config: which monitored resource holds the agent's logs
depends on its runtime.

- ``cloud-run``: ``resource.type = "cloud_run_revision"`` with the service's physical name
  (``PlatformSpec.service_name``) and region; the revision is ``resource.labels.revision_name``.
  Cloud Run writes one request log per request (``httpRequest`` set, in
  ``run.googleapis.com%2Frequests``) and the container's stdout/stderr lines; both carry the
  request's ``trace`` when the app logs structured JSON with ``logging.googleapis.com/trace``.
- ``gke``: ``resource.type = "k8s_container"`` with the agent's namespace and its container
  (``agent``, as components.gke names it), and the cluster when the stack names it; the
  "revision" is the track's Deployment (``<service>-stable`` / ``<service>-canary``), read from the
  pod name.
- ``agent-engine`` and ``vertex-endpoint`` are refused: an engine logs under
  ``aiplatform.googleapis.com/ReasoningEngine`` keyed by the id Google assigns at creation, which
  the stack config does not hold, and an endpoint's request-response logging goes to BigQuery,
  not Cloud Logging.

A failing request is an entry with ``severity >= ERROR`` or ``httpRequest.status >= 500``.
Entries are read newest first in pages of at most :data:`PAGE_SIZE` (the API's limit) and
handled as the raw protobuf messages (no per-entry conversion to dicts): 10,000 entries are
grouped in well under a second.

Set :data:`ENDPOINT_ENV` (``host:port``) to read from a local server speaking the Logging API
over plain gRPC with anonymous credentials, as the tests and the offline walkthrough of
docs/incidents.md do.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agentstage.errors import BadInput, Failed

__all__ = [
    "ENDPOINT_ENV",
    "PAGE_SIZE",
    "LogTarget",
    "LoggingError",
    "ErrorGroup",
    "Line",
    "log_target",
    "parse_since",
    "rfc3339",
    "failing_filter",
    "quote_literal",
    "trace_filter",
    "logging_client",
    "read_entries",
    "group_errors",
    "normalise",
    "trace_id",
    "trace_link",
    "request_trace",
    "lines_of",
    "message_of",
    "revision_of",
]

#: ``host:port`` of a Logging API server reached over plain gRPC with anonymous credentials
#: (a local server for tests and the offline walkthrough); unset, the real API with
#: Application Default Credentials.
ENDPOINT_ENV = "AGENTSTAGE_LOGGING_ENDPOINT"
#: Entries asked for per ListLogEntries page. The API reference said "If the value is negative or
#: exceeds 1000, the request is rejected" (https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list);
#: the logging.v2 discovery document shipped now says only that a negative one is (default 50).
#: 1000 is accepted under both readings.
PAGE_SIZE = 1000
#: Cloud Trace: a trace id "is a 32-character hexadecimal encoding of a 16-byte array"
#: (Cloud Trace API v2, ``Span.name``: its cloudtrace.v2 discovery document).
TRACE_ID = re.compile(r"[0-9a-f]{32}")
#: A W3C ``traceparent`` header: version-traceid-parentid-flags
#: (https://www.w3.org/TR/trace-context/#traceparent-header)
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
#: The container components.gke names in every pod.
GKE_CONTAINER = "agent"
#: How a link to one trace looks in the Cloud Console's Trace explorer.
TRACE_LINK = "https://console.cloud.google.com/traces/list?project={project}&tid={trace}"

_SINCE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: A log bucket keeps entries at most 3650 days ("custom retention ... between 1 day and 3650 days",
#: https://cloud.google.com/logging/docs/buckets#custom-retention): a longer window reads nothing more.
MAX_SINCE = dt.timedelta(days=3650)


class LoggingError(Failed):
    """Cloud Logging could not be read; the message says what to do."""


@dataclass(frozen=True)
class LogTarget:
    """Where one agent's logs are: its monitored resource, as a filter."""

    project: str
    agent: str
    runtime: str
    #: The physical service name (Cloud Run service, GKE Services' prefix).
    service: str
    #: ``resource.type = ...`` and label comparisons, ANDed.
    clauses: tuple[str, ...]

    @property
    def resource_filter(self) -> str:
        return " AND ".join(self.clauses)


def quote_literal(value: str) -> str:
    """A Logging query language string literal (backslash and double quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def log_target(spec: Any, agent: str) -> LogTarget:
    """The log resource of ``agent`` in ``spec`` (a ``PlatformSpec``)."""
    if agent not in spec.agents:
        raise BadInput(
            f"agent {agent!r} is not in the stack; agents: {', '.join(sorted(spec.agents))}", key=f"agents.{agent}"
        )
    a = spec.agents[agent]
    service = spec.service_name(agent)
    project = spec.project
    if a.runtime == "cloud-run":
        # the monitored resource cloud_run_revision: labels service_name, revision_name, location,
        # configuration_name, project_id (https://cloud.google.com/logging/docs/api/v2/resource-list)
        clauses = (
            'resource.type = "cloud_run_revision"',
            f"resource.labels.service_name = {quote_literal(service)}",
            f"resource.labels.location = {quote_literal(spec.region)}",
        )
    elif a.runtime == "gke":
        # k8s_container: project_id, location, cluster_name, namespace_name, pod_name, container_name
        # (https://cloud.google.com/logging/docs/api/v2/resource-list)
        gke = a.gke
        parts = [
            'resource.type = "k8s_container"',
            f"resource.labels.namespace_name = {quote_literal(gke.namespace or agent)}",
            f"resource.labels.container_name = {quote_literal(GKE_CONTAINER)}",
        ]
        if gke.cluster is not None:
            # a cluster in another project writes its containers' logs there
            project = gke.cluster.project or spec.project
            parts += [
                f"resource.labels.cluster_name = {quote_literal(gke.cluster.name)}",
                f"resource.labels.location = {quote_literal(gke.cluster.location)}",
            ]
        clauses = tuple(parts)
    else:
        why = (
            "its logs are under aiplatform.googleapis.com/ReasoningEngine, keyed by the engine id Google assigns, "
            "which the stack config does not hold"
            if a.runtime == "agent-engine"
            else "a Vertex AI endpoint logs requests and responses to BigQuery (request-response logging), "
            "which these commands do not read"
        )
        raise BadInput(
            f"agent {agent!r} runs on {a.runtime}: the incident commands read the logs of cloud-run and gke agents "
            f"only ({why}); use the Logs Explorer of project {spec.project}",
            key=f"agents.{agent}.runtime",
        )
    return LogTarget(project, agent, a.runtime, service, clauses)


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """The start of the window ``--since`` names: a duration back from ``now`` (``90s``, ``30m``,
    ``1h``, ``2d``, ``1w``, or combined as ``1h30m``) or an RFC 3339 time
    (``2026-05-01T12:00:00Z``)."""
    value = text.strip()
    if value and _SINCE.sub("", value) == "" and _SINCE.search(value):
        seconds = sum(int(n) * _UNITS[u] for n, u in _SINCE.findall(value))
        span = dt.timedelta(seconds=seconds)
        if span <= dt.timedelta(0) or span > MAX_SINCE:
            raise BadInput(f"--since {text!r}: give a window between 1s and {MAX_SINCE.days}d", key="--since")
        return now - span
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"--since {text!r} is neither a duration (e.g. 30m, 1h, 2d, 1h30m) nor an RFC 3339 time "
            "(e.g. 2026-05-01T12:00:00Z)",
            key="--since",
        ) from None
    if t.tzinfo is None:
        raise BadInput(f"--since {text!r}: give the time zone (e.g. a trailing Z for UTC)", key="--since")
    if t > now:
        raise BadInput(f"--since {text!r} is in the future", key="--since")
    return t.astimezone(dt.timezone.utc)


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def failing_filter(target: LogTarget, since: dt.datetime) -> str:
    """The agent's failing entries since ``since``: an error or worse, or a 5xx request log."""
    # Logging query language: comparisons joined by AND/OR, severities by name, timestamps as
    # RFC 3339 strings (https://cloud.google.com/logging/docs/view/logging-query-language)
    return (
        f"{target.resource_filter} AND timestamp >= {quote_literal(rfc3339(since))} "
        "AND (severity >= ERROR OR httpRequest.status >= 500)"
    )


def trace_filter(target: LogTarget, trace: str, since: dt.datetime) -> str:
    """Every entry of one request (its trace), since ``since``. LogEntry.trace holds the bare id
    ("the service should use '12345'") or, "also supported", ``projects/P/traces/ID``, which
    Cloud Run's request logs use (logging.v2 discovery document, ``LogEntry.trace``): both match."""
    full = f"projects/{target.project}/traces/{trace}"
    return (
        f"{target.resource_filter} AND timestamp >= {quote_literal(rfc3339(since))} "
        f"AND (trace = {quote_literal(full)} OR trace = {quote_literal(trace)})"
    )


def logging_client(endpoint: str | None = None) -> Any:
    """A ``LoggingServiceV2Client``: on ``endpoint`` (or :data:`ENDPOINT_ENV`) over plain gRPC
    with anonymous credentials, else on the real API with Application Default Credentials."""
    from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

    endpoint = endpoint or os.environ.get(ENDPOINT_ENV)
    if endpoint:
        import grpc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.logging_v2.services.logging_service_v2.transports import LoggingServiceV2GrpcTransport

        channel = grpc.insecure_channel(endpoint)
        return LoggingServiceV2Client(
            transport=LoggingServiceV2GrpcTransport(channel=channel, credentials=AnonymousCredentials())
        )
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return LoggingServiceV2Client()
    except DefaultCredentialsError:
        raise LoggingError(
            "no Google credentials to read Cloud Logging: run `gcloud auth application-default login` "
            f"(the account needs roles/logging.viewer), or set {ENDPOINT_ENV} to a local server"
        ) from None


def read_entries(client: Any, project: str, filter_: str, limit: int, *, newest_first: bool = True) -> Iterator[Any]:
    """Up to ``limit`` entries (raw ``google.logging.v2.LogEntry`` protobuf messages) matching
    ``filter_``, page after page."""
    from google.api_core import exceptions as gexc
    from google.cloud.logging_v2.types import ListLogEntriesRequest, ListLogEntriesResponse

    request = ListLogEntriesRequest(
        resource_names=[f"projects/{project}"],
        filter=filter_,
        order_by="timestamp desc" if newest_first else "timestamp asc",
        page_size=min(PAGE_SIZE, max(limit, 1)),
    )
    left = limit
    try:
        for page in client.list_log_entries(request=request).pages:
            for entry in ListLogEntriesResponse.pb(page).entries:
                yield entry
                left -= 1
                if left <= 0:
                    return
    except gexc.GoogleAPICallError as err:
        raise LoggingError(f"Cloud Logging, project {project}: {err.message or err}") from None


# --- reading one entry -------------------------------------------------------------------------

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
#: a run of hex digits with at least one digit and at least 6 long: a hash, an id, an address
_HEX = re.compile(r"\b(?:0x)?(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{6,}\b")
#: a number standing alone or before a unit ("30.2s", "order 81723"), not one inside a name
#: ("gemini-2.5-flash", "support-bot-1-4-0", "v2")
_NUMBER = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?")
_QUERY = re.compile(r"\?\S*")
_SPACE = re.compile(r"\s+")
_STATUS_LINE = re.compile(r"(HTTP \d{3} [A-Z]+ )(.*)")


def normalise(message: str) -> str:
    """The error's shape, for grouping: the first line, with UUIDs, hex ids and numbers (and
    URL query strings) replaced, so "timeout after 30.2s for order 81723" and "timeout after
    29.9s for order 11" are one error."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    status = _STATUS_LINE.match(first)
    if status:  # a request log: keep its status, normalise its path
        return status.group(1) + normalise(status.group(2))
    first = _UUID.sub("<id>", first)
    first = _HEX.sub("<hex>", first)
    first = _QUERY.sub("?…", first)
    first = _NUMBER.sub("<n>", first)
    return _SPACE.sub(" ", first).strip()[:300]


def trace_id(entry: Any) -> str:
    """The trace id of an entry (``trace`` is ``projects/P/traces/ID``), or ""."""
    return entry.trace.rsplit("/", 1)[-1] if entry.trace else ""


def trace_link(project: str, trace: str) -> str:
    return TRACE_LINK.format(project=project, trace=trace)


def _severity(entry: Any) -> str:
    from google.logging.type import log_severity_pb2

    return log_severity_pb2.LogSeverity.Name(entry.severity)


def _time(entry: Any) -> dt.datetime:
    return entry.timestamp.ToDatetime(tzinfo=dt.timezone.utc)


def _path(url: str) -> str:
    """``/chat`` of ``https://host/chat?x=1`` (a request log's ``requestUrl``; the query is left
    out: it varies per request)."""
    rest = url.split("://", 1)[-1].split("?", 1)[0]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"


def message_of(entry: Any) -> str:
    """What an entry says: a structured log's ``message`` (the field Cloud Logging shows as the
    summary), else its text, else for a request log ``HTTP <status> <method> <path>``."""
    kind = entry.WhichOneof("payload")
    if kind == "json_payload":
        fields = entry.json_payload.fields
        for key in ("message", "error", "msg"):
            if key in fields and fields[key].WhichOneof("kind") == "string_value":
                return fields[key].string_value
    elif kind == "text_payload":
        return entry.text_payload
    if entry.HasField("http_request"):
        r = entry.http_request
        return f"HTTP {r.status} {r.request_method} {_path(r.request_url)}".strip()
    return f"({kind or 'no payload'})"


def revision_of(entry: Any, target: LogTarget) -> str:
    """The revision that wrote ``entry``: Cloud Run's ``revision_name``; on GKE the track's
    Deployment, from the pod name (``<deployment>-<replicaset hash>-<pod suffix>``)."""
    labels = entry.resource.labels
    if target.runtime == "gke":
        pod = labels.get("pod_name", "")
        return pod.rsplit("-", 2)[0] if pod.count("-") >= 2 else pod
    return labels.get("revision_name", "")


def _latency_ms(entry: Any) -> float | None:
    if not entry.HasField("http_request") or not entry.http_request.HasField("latency"):
        return None
    return round(entry.http_request.latency.ToTimedelta().total_seconds() * 1000, 1)


def _request(entry: Any) -> dict[str, Any] | None:
    if not entry.HasField("http_request"):
        return None
    r = entry.http_request
    return {"method": r.request_method, "url": r.request_url, "status": r.status, "latency_ms": _latency_ms(entry)}


# --- errors ------------------------------------------------------------------------------------


@dataclass
class ErrorGroup:
    """Failing entries of one error shape on one revision."""

    error: str
    revision: str
    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    #: the newest entry of the group (entries arrive newest first)
    example: Any = None
    traces: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def to_json(self, project: str, max_traces: int) -> dict[str, Any]:
        ex = self.example
        return {
            "error": self.error,
            "revision": self.revision,
            "count": self.count,
            "first_seen": _ns_iso(self.first_ns),
            "last_seen": _ns_iso(self.last_ns),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "example": {
                "time": _ns_iso(self.last_ns),
                "insert_id": ex.insert_id,
                "severity": _severity(ex),
                "message": message_of(ex).strip().splitlines()[0][:500] if message_of(ex).strip() else "",
                "trace": trace_id(ex) or None,
                "request": _request(ex),
            },
            "traces": [{"trace": t, "link": trace_link(project, t)} for t in self.traces[:max_traces]],
        }


def _ns(entry: Any) -> int:
    return entry.timestamp.seconds * 1_000_000_000 + entry.timestamp.nanos


def _ns_iso(ns: int) -> str:
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.timezone.utc).replace(microsecond=(ns % 10**9) // 1000)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def group_errors(entries: Any, target: LogTarget, *, max_traces: int = 3) -> tuple[list[ErrorGroup], int]:
    """Failing entries grouped by (normalised error, revision), most frequent first; and how
    many entries were read. A request's 5xx request log and the app's error line for it are
    two entries: a group counts entries, and the trace links tie them together."""
    groups: dict[tuple[str, str], ErrorGroup] = {}
    shapes: dict[str, str] = {}  # raw message -> normalised (messages repeat)
    read = 0
    for entry in entries:
        read += 1
        message = message_of(entry)
        shape = shapes.get(message)
        if shape is None:
            shape = shapes[message] = normalise(message)
        key = (shape, revision_of(entry, target))
        g = groups.get(key)
        ns = _ns(entry)
        if g is None:
            g = groups[key] = ErrorGroup(shape, key[1], first_ns=ns, last_ns=ns, example=entry)
        g.count += 1
        if ns < g.first_ns:
            g.first_ns = ns
        if ns > g.last_ns:
            g.last_ns, g.example = ns, entry
        if entry.HasField("http_request") and entry.http_request.status:
            g.statuses[entry.http_request.status] = g.statuses.get(entry.http_request.status, 0) + 1
        if len(g.traces) < max_traces and entry.trace:
            t = trace_id(entry)
            if t not in g.traces:
                g.traces.append(t)
    return sorted(groups.values(), key=lambda g: (-g.count, -g.last_ns, g.error, g.revision)), read


# --- one request -------------------------------------------------------------------------------


def request_trace(client: Any, target: LogTarget, request: str, since: dt.datetime) -> str:
    """The trace id of ``--request``: a trace id itself (32 hex digits, also given as
    ``projects/P/traces/ID``, as the ``X-Cloud-Trace-Context`` value ``ID/SPAN;o=1`` or as a
    W3C ``traceparent`` ``00-ID-SPAN-01``), or the
    ``insertId`` of one of the request's entries, looked up."""
    value = request.strip()
    w3c = _TRACEPARENT.fullmatch(value.lower())
    if w3c:
        return w3c.group(1)
    candidate = value.rsplit("/traces/", 1)[-1].split("/", 1)[0].split(";", 1)[0].lower()
    if TRACE_ID.fullmatch(candidate):
        return candidate
    # our bound: the insertIds Cloud Logging assigns are short tokens of letters and digits
    if not value or len(value) > 256 or any(c in value for c in '"\\\n'):
        raise BadInput(
            f"--request {request!r} is neither a trace id (32 hexadecimal digits) nor a log entry's insertId",
            key="--request",
        )
    filter_ = f"{target.resource_filter} AND timestamp >= {quote_literal(rfc3339(since))} AND insertId = {quote_literal(value)}"
    for entry in read_entries(client, target.project, filter_, 1):
        found = trace_id(entry)
        if not found:
            raise Failed(
                f"log entry {value} of agent {target.agent} carries no trace, so its request's other entries "
                "cannot be found; log structured JSON with logging.googleapis.com/trace (docs/incidents.md)"
            )
        return found
    raise Failed(
        f"no log entry with insertId {value!r} for agent {target.agent} since {rfc3339(since)}; "
        "give the request's trace id (as `agentstage errors` prints it) or a longer --since"
    )


@dataclass(frozen=True)
class Line:
    """One entry of a request, for display."""

    time: str
    severity: str
    revision: str
    log: str
    message: str
    insert_id: str
    request: dict[str, Any] | None
    span: str
    entry: Any

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "severity": self.severity,
            "revision": self.revision,
            "log": self.log,
            "message": self.message,
            "insert_id": self.insert_id,
            "span": self.span or None,
            "request": self.request,
        }


def lines_of(entries: Any, target: LogTarget) -> list[Line]:
    """A request's entries in time order (the API returns them ordered; ties keep insertId order)."""
    out = []
    for e in sorted(entries, key=lambda e: (_ns(e), e.insert_id)):
        out.append(
            Line(
                time=_ns_iso(_ns(e)),
                severity=_severity(e),
                revision=revision_of(e, target),
                log=e.log_name.rsplit("/logs/", 1)[-1].replace("%2F", "/"),
                message=message_of(e),
                insert_id=e.insert_id,
                request=_request(e),
                span=e.span_id,
                entry=e,
            )
        )
    return out
