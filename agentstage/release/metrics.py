"""Per-revision request, error and latency series for canary analysis.

Two sources give the same :class:`Series` (one point per minute, oldest first):

- :class:`FileSource` reads a metrics file (JSON, format in ``docs/release.md``) for offline
  runs, CI and demos;
- :class:`MonitoringSource` reads Cloud Monitoring with ``MetricServiceClient.list_time_series``:
  ``run.googleapis.com/request_count`` (ALIGN_DELTA per minute, REDUCE_SUM grouped by revision
  and response code class) and ``run.googleapis.com/request_latencies`` (ALIGN_DELTA per
  minute, REDUCE_PERCENTILE_99 grouped by revision), filtered on the ``cloud_run_revision``
  resource labels of the service.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from components.revision import DIGEST_CHARS

__all__ = [
    "MetricsError",
    "Point",
    "Series",
    "MetricsSource",
    "FileSource",
    "MonitoringSource",
    "REQUEST_COUNT",
    "REQUEST_LATENCIES",
]

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
ERROR_CLASS = "5xx"


class MetricsError(Exception):
    """The metrics cannot be read (bad file, API error)."""


@dataclass(frozen=True)
class Point:
    end: dt.datetime
    requests: float | None
    errors: float | None
    latency_p99_ms: float | None


@dataclass
class Series:
    revision: str
    points: list[Point] = field(default_factory=list)

    def window(self, start: dt.datetime, end: dt.datetime) -> Series:
        """Points whose interval ends in ``(start, end]``."""
        return Series(self.revision, [p for p in self.points if start < p.end <= end])


class MetricsSource(Protocol):
    name: str

    def now(self) -> dt.datetime: ...

    def fetch(self, service: str, revisions: list[str], start: dt.datetime, end: dt.datetime) -> dict[str, Series]: ...


# --- metrics file ----------------------------------------------------------------------------


class _RevisionData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[float | None]
    errors: list[float | None]
    latency_p99_ms: list[float | None]

    @model_validator(mode="after")
    def _lengths(self) -> _RevisionData:
        n = {len(self.requests), len(self.errors), len(self.latency_p99_ms)}
        if len(n) != 1:
            raise ValueError(
                "requests, errors and latency_p99_ms must have one value per interval "
                f"(lengths {len(self.requests)}, {len(self.errors)}, {len(self.latency_p99_ms)})"
            )
        for r, e in zip(self.requests, self.errors):
            if r is not None and (r < 0 or (e is not None and not 0 <= e <= r)):
                raise ValueError("each errors value must be between 0 and that interval's requests")
        return self


class _MetricsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    end: dt.datetime | None = Field(default=None)
    interval_seconds: int = Field(default=60, ge=1)
    revisions: dict[str, _RevisionData]


#: How far a metrics file's ``end`` may be ahead of the clock (clock skew between machines).
FUTURE_SLACK = dt.timedelta(minutes=1)

_DIGEST_SUFFIX = re.compile(r"-[0-9a-f]{%d}$" % DIGEST_CHARS)


class FileSource:
    """Series from a metrics file. Values are per interval, the last one ending at ``end``
    (default: the time of the run), so a file can be replayed at any time.

    A revision is looked up by its exact name, else by its name without the template digest
    (``support-bot-1-4-0`` for ``support-bot-1-4-0-93457a87``): a hand-written file can name
    the release's revision whatever template it runs. That fallback is used only when it is
    unambiguous: the shorter name is not itself asked for, and no other revision asked for
    shortens to it."""

    name = "metrics file"

    def __init__(self, path: Path, clock: Callable[[], dt.datetime] | None = None) -> None:
        from agentstage.release.ledger import now_utc

        self.path = Path(path)
        self._clock = clock or now_utc
        self.data = self._load()

    def _load(self) -> _MetricsFile:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MetricsError(f"metrics file {self.path} does not exist") from None
        except json.JSONDecodeError as err:
            raise MetricsError(f"metrics file {self.path}: not valid JSON: {err}") from None
        try:
            return _MetricsFile.model_validate(raw)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            msg = first["msg"].removeprefix("Value error, ")
            raise MetricsError(f"metrics file {self.path}: {where}: {msg}") from None

    def now(self) -> dt.datetime:
        end = self.data.end
        if end is None:
            return self._clock()
        end = end if end.tzinfo else end.replace(tzinfo=dt.timezone.utc)
        now = self._clock()
        if end > now + FUTURE_SLACK:
            # metrics from the future would let the bake time pass before it has
            raise MetricsError(
                f"metrics file {self.path}: end {end.isoformat()} is in the future (now {now.isoformat()}); "
                "give the time the last interval really ended, or leave end out to replay the file as of now")
        return end

    def fetch(self, service: str, revisions: list[str], start: dt.datetime, end: dt.datetime) -> dict[str, Series]:
        last = self.now()
        step = dt.timedelta(seconds=self.data.interval_seconds)
        out: dict[str, Series] = {}
        short = {r: _DIGEST_SUFFIX.sub("", r) for r in revisions}
        for revision in revisions:
            data = self.data.revisions.get(revision)
            alias = short[revision]
            if data is None and alias != revision and alias not in short and \
                    sum(1 for s in short.values() if s == alias) == 1:
                data = self.data.revisions.get(alias)
            if data is None:
                continue
            n = len(data.requests)
            points = [
                Point(last - step * (n - 1 - i), data.requests[i], data.errors[i], data.latency_p99_ms[i])
                for i in range(n)
            ]
            out[revision] = Series(revision, points).window(start, end)
        return out


# --- Cloud Monitoring ------------------------------------------------------------------------


def revision_filter(metric: str, project: str, region: str | None, service: str, revisions: Iterable[str]) -> str:
    names = ", ".join(f'"{r}"' for r in revisions)
    parts = [
        f'metric.type = "{metric}"',
        'resource.type = "cloud_run_revision"',
        f'resource.labels.project_id = "{project}"',
        f'resource.labels.service_name = "{service}"',
        f"resource.labels.revision_name = one_of({names})",
    ]
    if region:
        parts.insert(4, f'resource.labels.location = "{region}"')
    return " AND ".join(parts)


class MonitoringSource:
    """Series from Cloud Monitoring (``google-cloud-monitoring``)."""

    name = "Cloud Monitoring"

    def __init__(self, project: str, region: str | None = None, *, client: Any = None,
                 clock: Callable[[], dt.datetime] | None = None, alignment_seconds: int = 60) -> None:
        from agentstage.release.ledger import now_utc

        self.project = project
        self.region = region
        self._client = client
        self._clock = clock or now_utc
        self.alignment_seconds = alignment_seconds

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.cloud import monitoring_v3

            self._client = monitoring_v3.MetricServiceClient()
        return self._client

    def now(self) -> dt.datetime:
        return self._clock()

    def _list(self, metric: str, service: str, revisions: list[str], start: dt.datetime, end: dt.datetime,
              reducer: Any, group_by: list[str]) -> list[Any]:
        from google.api_core import exceptions as gexc
        from google.cloud import monitoring_v3
        from google.protobuf import duration_pb2

        Agg = monitoring_v3.Aggregation
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self.project}",
            filter=revision_filter(metric, self.project, self.region, service, revisions),
            interval=monitoring_v3.TimeInterval(start_time=start, end_time=end),
            aggregation=Agg(
                alignment_period=duration_pb2.Duration(seconds=self.alignment_seconds),
                per_series_aligner=Agg.Aligner.ALIGN_DELTA,
                cross_series_reducer=reducer,
                group_by_fields=group_by,
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        try:
            return list(self.client.list_time_series(request=request))
        except gexc.GoogleAPICallError as err:
            raise MetricsError(f"Cloud Monitoring: {metric} for service {service}: {err}") from None

    def fetch(self, service: str, revisions: list[str], start: dt.datetime, end: dt.datetime) -> dict[str, Series]:
        from google.cloud import monitoring_v3

        Agg = monitoring_v3.Aggregation
        counts = self._list(REQUEST_COUNT, service, revisions, start, end, Agg.Reducer.REDUCE_SUM,
                            ["resource.label.revision_name", "metric.label.response_code_class"])
        latencies = self._list(REQUEST_LATENCIES, service, revisions, start, end, Agg.Reducer.REDUCE_PERCENTILE_99,
                               ["resource.label.revision_name"])
        requests: dict[str, dict[dt.datetime, float]] = {}
        errors: dict[str, dict[dt.datetime, float]] = {}
        latency: dict[str, dict[dt.datetime, float]] = {}
        for ts in counts:
            revision = ts.resource.labels.get("revision_name", "")
            code_class = ts.metric.labels.get("response_code_class", "")
            for p in ts.points:
                t = _time(p.interval.end_time)
                value = float(p.value.int64_value or p.value.double_value)
                requests.setdefault(revision, {})[t] = requests.get(revision, {}).get(t, 0.0) + value
                bucket = errors.setdefault(revision, {})
                bucket[t] = bucket.get(t, 0.0) + (value if code_class == ERROR_CLASS else 0.0)
        for ts in latencies:
            revision = ts.resource.labels.get("revision_name", "")
            for p in ts.points:
                latency.setdefault(revision, {})[_time(p.interval.end_time)] = float(p.value.double_value)
        out: dict[str, Series] = {}
        for revision in revisions:
            times = sorted(set(requests.get(revision, {})) | set(latency.get(revision, {})))
            if not times:
                continue
            out[revision] = Series(revision, [
                Point(t, requests.get(revision, {}).get(t), errors.get(revision, {}).get(t),
                      latency.get(revision, {}).get(t))
                for t in times
            ])
        return out


def _time(value: Any) -> dt.datetime:
    """A proto-plus timestamp (DatetimeWithNanoseconds) or protobuf Timestamp as aware UTC."""
    if hasattr(value, "ToDatetime"):
        value = value.ToDatetime(tzinfo=dt.timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return dt.datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                       tzinfo=dt.timezone.utc)
