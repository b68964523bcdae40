"""Failed requests from Cloud Run's request logs: the canary judge's fresh error signal.

Cloud Monitoring shows a Cloud Run minute up to three minutes after it ends ("After sampling,
data is not visible for up to 180 seconds", Google Cloud metrics list, ``run.googleapis.com``),
so a judge that reads Monitoring alone decides on data at least two minutes old. Cloud Run also
writes one request log per request, with its status and its revision, to
``run.googleapis.com%2Frequests`` (Cloud Run docs, "Logging and viewing logs": request logs
"are created automatically"; the ``LogEntry`` holds ``httpRequest.status`` and the monitored
resource ``cloud_run_revision`` labelled ``revision_name``), and Cloud Logging usually makes
entries readable seconds after they are written (Google publishes no bound: :data:`GRACE` and
the comparison with Monitoring below guard the rest).

Each look makes one ``ListLogEntries`` call for every canary in flight in the stack (more pages
only when they fail a lot). The Logging API's read quota is per project ("entries.list" requests per minute,
Cloud Logging "Quotas and limits"), shared with ``agentstage errors``: a refused read
(``RESOURCE_EXHAUSTED``) is recorded in the decision and the look goes on on Monitoring alone.

Only the *failed* requests (5xx and 429) are listed: a few per minute on a healthy service, so
the read stays small at any traffic. Which revision each failure came from, against the live
traffic split, is what the judge's conditional test needs (:func:`agentstage.release.analysis.
with_request_logs`); the requests themselves are still counted by Cloud Monitoring. The logs
only ever add minutes Monitoring has not shown yet, they can only roll a canary back sooner
(never advance a step), and they are compared with Monitoring over the minutes both cover: a
project that excludes request logs from its log buckets is noticed and judged on Monitoring
alone, with the reason recorded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentstage.ops.logs import logging_client, quote_literal, read_entries, rfc3339

__all__ = [
    "GRACE",
    "LOOKBACK",
    "MAX_ENTRIES",
    "REQUEST_LOG",
    "RequestLogFailures",
    "RequestLogSource",
    "failed_requests_filter",
]

#: The log Cloud Run writes one entry per request to (URL-encoded, as ``logName`` holds it).
REQUEST_LOG = "run.googleapis.com%2Frequests"
#: A minute is read from the logs only once it ended this long ago (entries are readable seconds
#: after they are written; this leaves room for the slow ones).
GRACE = dt.timedelta(seconds=20)
#: How far back a look reads: the minutes Cloud Monitoring has not shown yet (up to 3) and the
#: newest ones it has, to compare the two sources.
LOOKBACK = dt.timedelta(minutes=10)
#: At most this many failed requests are read per look (50 pages); past it the count is
#: marked truncated (an undercount: it can only delay a rollback, never cause one).
MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class RequestLogFailures:
    """The failed requests (5xx and 429) of each revision logged in ``[start, end)``, as the
    seconds since the epoch each was received."""

    start: dt.datetime
    end: dt.datetime
    times: dict[str, np.ndarray] = field(default_factory=dict)
    truncated: bool = False
    source: str = "Cloud Run request logs"

    def count(self, revision: str, start: dt.datetime, end: dt.datetime) -> int:
        """Failures of ``revision`` received in ``[start, end)``."""
        t = self.times.get(revision)
        if t is None or not len(t):
            return 0
        return int(np.count_nonzero((t >= start.timestamp()) & (t < end.timestamp())))


def failed_requests_filter(
    project: str, region: str, services: str | Iterable[str], start: dt.datetime, end: dt.datetime
) -> str:
    """The services' failed requests (5xx, 429) in ``[start, end)``, in the Logging query
    language (https://cloud.google.com/logging/docs/view/logging-query-language: a comparison
    with a parenthesised ``OR`` of values matches any of them)."""
    names = [services] if isinstance(services, str) else sorted(services)
    if len(names) == 1:
        service = f"resource.labels.service_name = {quote_literal(names[0])}"
    else:
        service = "resource.labels.service_name = (" + " OR ".join(quote_literal(n) for n in names) + ")"
    return " AND ".join(
        [
            f"resource.type = {quote_literal('cloud_run_revision')}",
            service,
            f"resource.labels.location = {quote_literal(region)}",
            f"logName = {quote_literal(f'projects/{project}/logs/{REQUEST_LOG}')}",
            f"timestamp >= {quote_literal(rfc3339(start))}",
            f"timestamp < {quote_literal(rfc3339(end))}",
            "(httpRequest.status >= 500 OR httpRequest.status = 429)",
        ]
    )


class RequestLogSource:
    """Reads a Cloud Run service's failed requests with the Cloud Logging API
    (``LoggingServiceV2Client.list_log_entries``; a local server when
    :data:`agentstage.ops.logs.ENDPOINT_ENV` is set)."""

    name = "Cloud Run request logs"

    def __init__(self, project: str, region: str, *, client: Any = None, max_entries: int = MAX_ENTRIES) -> None:
        self.project, self.region = project, region
        self._client = client
        self.max_entries = max_entries

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = logging_client()
        return self._client

    def fetch(
        self, service: str, revisions: Iterable[str], now: dt.datetime, *, since: dt.datetime | None = None
    ) -> RequestLogFailures:
        """The failures of ``revisions`` from ``now - LOOKBACK`` (or ``since``, if later) to
        ``now - GRACE``. Raises :class:`LoggingError` when the API refuses."""
        return self.fetch_all({service: revisions}, now, since=since)[service]

    def fetch_all(
        self, services: dict[str, Iterable[str]], now: dt.datetime, *, since: dt.datetime | None = None
    ) -> dict[str, RequestLogFailures]:
        """:meth:`fetch` for several services (service -> revisions) in one listing: a look
        reads every canary in flight with one call, whatever their number."""
        end = now - GRACE
        start = now - LOOKBACK if since is None else max(since, now - LOOKBACK)
        found = {svc: {r: [] for r in revs} for svc, revs in services.items()}
        filter_ = failed_requests_filter(self.project, self.region, list(services), start, end)
        read = 0
        for entry in read_entries(self.client, self.project, filter_, self.max_entries, newest_first=False):
            read += 1
            labels = entry.resource.labels
            times = found.get(labels.get("service_name", ""), {}).get(labels.get("revision_name", ""))
            if times is not None:
                ts = entry.timestamp
                times.append(ts.seconds + ts.nanos / 1e9)
        truncated = read >= self.max_entries
        return {
            svc: RequestLogFailures(
                start, end, {r: np.asarray(v, dtype=float) for r, v in revs.items()}, truncated=truncated
            )
            for svc, revs in found.items()
        }
