"""Per-revision series for canary analysis: requests, errors, latency distributions, memory.

One point per minute (oldest first) and per revision, kept as columns (numpy arrays, NaN where
a minute has no data, never a silent zero):

- ``requests``: all requests served;
- ``errors``: 5xx responses; ``throttled``: 429 responses (Cloud Run answers 429 when no
  instance can take a request). Both count against the canary;
- ``latency``: the request-latency *distribution* of the minute, as counts per bucket
  (``bounds`` are the finite bucket upper bounds in ms; the last bucket is the overflow).
  Buckets of several minutes add up, so a window has a true pooled distribution;
- ``memory``: the highest container memory utilisation of the minute (0..1 of the limit);
- ``signals``: the agent's own log-based counts (tool errors, guardrail blocks) per minute.

Two sources give the same :class:`Series`:

- :class:`FileSource` reads a metrics file (JSON, format in ``docs/release.md``) for offline
  runs, CI and demos;
- :class:`MonitoringSource` reads Cloud Monitoring with ``MetricServiceClient.list_time_series``,
  filtered on the ``cloud_run_revision`` resource labels of the service:
  ``run.googleapis.com/request_count`` (ALIGN_DELTA per minute, REDUCE_SUM by revision and
  response code), ``run.googleapis.com/request_latencies`` (a DISTRIBUTION: ALIGN_DELTA,
  REDUCE_SUM by revision keeps the bucket counts), ``run.googleapis.com/container/memory/utilizations``
  (ALIGN_PERCENTILE_99, REDUCE_MAX by revision) and the agent's log-based metrics
  (``logging.googleapis.com/user/<name>``, ALIGN_DELTA, REDUCE_SUM by revision).
  Metric names and labels: Google Cloud metrics list, "Cloud Run" section
  (https://cloud.google.com/monitoring/api/metrics_gcp_p_z#gcp-run).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentstage.errors import BadInput
from agentstage.release.jsonfile import load_model
from components.revision import DIGEST_CHARS

__all__ = [
    "MetricsError",
    "Series",
    "MetricsSource",
    "FileSource",
    "MonitoringSource",
    "MetricsScope",
    "DEFAULT_BOUNDS_MS",
    "histogram",
    "quantile",
    "exceeding",
    "REQUEST_COUNT",
    "REQUEST_LATENCIES",
    "MEMORY_UTILIZATIONS",
]

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
MEMORY_UTILIZATIONS = "run.googleapis.com/container/memory/utilizations"

#: Latency bucket bounds (ms) of metrics files that give none: exponential, 1 ms x 1.25^i up
#: to about 5 minutes, so a bucket is 25% wide.
DEFAULT_BOUNDS_MS: tuple[float, ...] = tuple(round(1.25**i, 3) for i in range(57))


class MetricsError(BadInput):
    """The metrics cannot be read (bad file, API error)."""


def histogram(samples_ms: Iterable[float], bounds: Sequence[float] = DEFAULT_BOUNDS_MS) -> list[int]:
    """Bucket counts of latency samples (len(bounds) + 1 buckets, the last one the overflow)."""
    idx = np.searchsorted(np.asarray(bounds, dtype=float), np.asarray(list(samples_ms), dtype=float), side="left")
    return np.bincount(idx, minlength=len(bounds) + 1).astype(int).tolist()


def _edges(bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper edge of every bucket, for interpolation within a bucket (the first
    bucket starts at 0; the overflow bucket is taken as wide as the last finite one)."""
    lower = np.concatenate([[0.0], bounds])
    last = bounds[-1] * (bounds[-1] / bounds[-2]) if len(bounds) > 1 else bounds[-1] * 2
    upper = np.concatenate([bounds, [last]])
    return lower, upper


def quantile(counts: np.ndarray, bounds: np.ndarray, q: float) -> float | None:
    """The ``q`` quantile of a pooled distribution, linear within its bucket (as Cloud
    Monitoring's percentile aligners do); None when empty."""
    total = float(counts.sum())
    if total <= 0:
        return None
    target = q * total
    cum = np.cumsum(counts)
    i = int(np.searchsorted(cum, target, side="left"))
    i = min(i, len(counts) - 1)
    lower, upper = _edges(bounds)
    before = cum[i] - counts[i]
    frac = (target - before) / counts[i] if counts[i] > 0 else 1.0
    return float(lower[i] + (upper[i] - lower[i]) * min(max(frac, 0.0), 1.0))


def exceeding(counts: np.ndarray, bounds: np.ndarray, threshold: float) -> np.ndarray:
    """How many requests took longer than ``threshold`` ms, per row of ``counts`` (exact when
    the threshold is a bucket bound; else the straddling bucket is split linearly)."""
    lower, upper = _edges(bounds)
    frac = np.clip((upper - threshold) / (upper - lower), 0.0, 1.0)
    return counts @ frac


@dataclass
class Series:
    """One revision's minutes, as columns. ``latency`` has one row of bucket counts per minute."""

    revision: str
    ends: list[dt.datetime] = field(default_factory=list)
    requests: np.ndarray = field(default_factory=lambda: np.zeros(0))
    errors: np.ndarray = field(default_factory=lambda: np.zeros(0))
    throttled: np.ndarray = field(default_factory=lambda: np.zeros(0))
    latency: np.ndarray | None = None
    bounds: np.ndarray | None = None
    memory: np.ndarray = field(default_factory=lambda: np.zeros(0))
    signals: dict[str, np.ndarray] = field(default_factory=dict)
    #: whether the source measures 429s at all (a file may leave them out)
    has_throttled: bool = True

    def __len__(self) -> int:
        return len(self.ends)

    @property
    def bad(self) -> np.ndarray:
        """5xx + 429 per minute (NaN where either is missing)."""
        return self.errors + self.throttled

    def window(self, start: dt.datetime, end: dt.datetime) -> Series:
        """The minutes whose interval ends in ``(start, end]``."""
        keep = np.array([start < t <= end for t in self.ends], dtype=bool)
        return self.select(keep)

    def select(self, keep: np.ndarray) -> Series:
        return Series(
            self.revision,
            [t for t, k in zip(self.ends, keep) if k],
            self.requests[keep],
            self.errors[keep],
            self.throttled[keep],
            None if self.latency is None else self.latency[keep],
            self.bounds,
            self.memory[keep],
            {k: v[keep] for k, v in self.signals.items()},
            self.has_throttled,
        )

    def extended(self, ends: Sequence[dt.datetime], requests: Sequence[float], bad: Sequence[float]) -> Series:
        """These minutes followed by ``ends``, whose requests and failures (5xx + 429, counted
        as ``errors``) are given and whose other columns are missing (NaN)."""
        k = len(ends)
        nan = np.full(k, np.nan)
        lat = None
        if self.latency is not None:
            lat = np.vstack([self.latency, np.full((k, self.latency.shape[1]), np.nan)])
        return Series(
            self.revision,
            [*self.ends, *ends],
            np.concatenate([self.requests, np.asarray(requests, dtype=float)]),
            np.concatenate([self.errors, np.asarray(bad, dtype=float)]),
            np.concatenate([self.throttled, np.zeros(k)]),
            lat,
            self.bounds,
            np.concatenate([self.memory, nan]),
            {name: np.concatenate([v, nan]) for name, v in self.signals.items()},
            self.has_throttled,
        )

    @classmethod
    def build(
        cls,
        revision: str,
        ends: list[dt.datetime],
        *,
        requests: Sequence[float | None],
        errors: Sequence[float | None],
        throttled: Sequence[float | None] | None = None,
        latency: Sequence[Sequence[float] | None] | None = None,
        bounds: Sequence[float] | None = None,
        memory: Sequence[float | None] | None = None,
        signals: dict[str, Sequence[float | None]] | None = None,
    ) -> Series:
        n = len(ends)

        def col(values: Sequence[float | None] | None) -> np.ndarray:
            if values is None:
                return np.full(n, np.nan)
            return np.array([np.nan if v is None else float(v) for v in values], dtype=float)

        lat = None
        if latency is not None and bounds is not None:
            width = len(bounds) + 1
            lat = np.array(
                [[np.nan] * width if row is None else [float(v) for v in row] for row in latency], dtype=float
            ).reshape(n, width)
        return cls(
            revision,
            list(ends),
            col(requests),
            col(errors),
            col(throttled) if throttled is not None else np.zeros(n),
            lat,
            None if bounds is None else np.asarray(bounds, dtype=float),
            col(memory),
            {k: col(v) for k, v in (signals or {}).items()},
            throttled is not None,
        )


class MetricsSource(Protocol):
    name: str

    def now(self) -> dt.datetime: ...

    def fetch(
        self,
        service: str,
        revisions: list[str],
        start: dt.datetime,
        end: dt.datetime,
        *,
        scope: MetricsScope | None = None,
    ) -> dict[str, Series]: ...


# --- metrics file ----------------------------------------------------------------------------


class _RevisionData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[float | None]
    errors: list[float | None]
    throttled: list[float | None] | None = None
    latency_ms: list[list[float] | None] | None = None
    memory_utilization: list[float | None] | None = None
    signals: dict[str, list[float | None]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        if isinstance(data, dict) and "latency_p99_ms" in data:
            raise ValueError(
                "latency_p99_ms is no longer read: a mean of one-minute p99s is not a p99; give latency_ms, "
                "the request-latency bucket counts of each minute (see docs/release.md)"
            )
        return data

    @model_validator(mode="after")
    def _shape(self) -> _RevisionData:
        n = len(self.requests)
        columns = {
            "errors": self.errors,
            "throttled": self.throttled,
            "latency_ms": self.latency_ms,
            "memory_utilization": self.memory_utilization,
            **{f"signals.{k}": v for k, v in self.signals.items()},
        }
        for name, values in columns.items():
            if values is not None and len(values) != n:
                raise ValueError(f"{name} has {len(values)} values; requests has {n} (one value per interval)")
        for name, values in [("requests", self.requests), *columns.items()]:
            if name == "latency_ms" or values is None:
                continue
            for v in values:
                if v is not None and (not math.isfinite(v) or v < 0):
                    raise ValueError(f"{name}: {v} is not a finite count >= 0")
        for i, r in enumerate(self.requests):
            bad = (self.errors[i] or 0) + ((self.throttled or [None] * n)[i] or 0)
            if r is not None and bad > r:
                raise ValueError(f"interval {i}: {bad:g} errors and 429s but only {r:g} requests")
        for v in self.memory_utilization or []:
            if v is not None and v > 1.5:
                raise ValueError(f"memory_utilization: {v} is not a fraction of the memory limit (0..1)")
        return self


class _MetricsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    end: dt.datetime | None = Field(default=None)
    interval_seconds: int = Field(default=60, ge=1)
    latency_bounds_ms: list[float] | None = None
    revisions: dict[str, _RevisionData]

    @model_validator(mode="after")
    def _buckets(self) -> _MetricsFile:
        bounds = self.latency_bounds_ms or list(DEFAULT_BOUNDS_MS)
        if any(b <= a for a, b in zip(bounds, bounds[1:])) or bounds[0] <= 0:
            raise ValueError("latency_bounds_ms must be positive and strictly ascending")
        for name, data in self.revisions.items():
            for i, row in enumerate(data.latency_ms or []):
                if row is not None and len(row) != len(bounds) + 1:
                    raise ValueError(
                        f"revisions.{name}.latency_ms[{i}] has {len(row)} bucket counts; "
                        f"{len(bounds) + 1} expected (one per bound, plus the overflow)"
                    )
                if row is not None and any(not math.isfinite(v) or v < 0 for v in row):
                    raise ValueError(f"revisions.{name}.latency_ms[{i}]: bucket counts must be finite and >= 0")
        return self


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
        return load_model(self.path, _MetricsFile, "metrics file", MetricsError)

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
                "give the time the last interval really ended, or leave end out to replay the file as of now"
            )
        return end

    def fetch(
        self,
        service: str,
        revisions: list[str],
        start: dt.datetime,
        end: dt.datetime,
        *,
        scope: MetricsScope | None = None,
    ) -> dict[str, Series]:
        """The file's series of ``revisions`` (whatever the runtime: ``scope`` is not needed)."""
        last = self.now()
        step = dt.timedelta(seconds=self.data.interval_seconds)
        bounds = self.data.latency_bounds_ms or list(DEFAULT_BOUNDS_MS)
        out: dict[str, Series] = {}
        short = {r: _DIGEST_SUFFIX.sub("", r) for r in revisions}
        for revision in revisions:
            data = self.data.revisions.get(revision)
            alias = short[revision]
            if (
                data is None
                and alias != revision
                and alias not in short
                and sum(1 for s in short.values() if s == alias) == 1
            ):
                data = self.data.revisions.get(alias)
            if data is None:
                continue
            n = len(data.requests)
            ends = [last - step * (n - 1 - i) for i in range(n)]
            series = Series.build(
                revision,
                ends,
                requests=data.requests,
                errors=data.errors,
                throttled=data.throttled,
                latency=data.latency_ms,
                bounds=bounds if data.latency_ms is not None else None,
                memory=data.memory_utilization,
                signals=data.signals,
            )
            out[revision] = series.window(start, end)
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


def bucket_bounds(options: Any) -> list[float]:
    """Finite upper bounds of a google.api.Distribution's buckets (len(bounds) + 1 buckets:
    the first is the underflow, the last the overflow), from its linear, exponential or
    explicit bucket options (google/api/distribution.proto)."""
    which = options.WhichOneof("options")
    if which == "exponential_buckets":
        e = options.exponential_buckets
        return [e.scale * e.growth_factor**i for i in range(e.num_finite_buckets + 1)]
    if which == "linear_buckets":
        lin = options.linear_buckets
        return [lin.offset + lin.width * i for i in range(lin.num_finite_buckets + 1)]
    if which == "explicit_buckets":
        return list(options.explicit_buckets.bounds)
    raise MetricsError("Cloud Monitoring: a latency distribution without bucket options")


def signal_metric_type(service: str, signal: str) -> str:
    from components.contract import signal_metric_name

    return f"logging.googleapis.com/user/{signal_metric_name(service, signal)}"


@dataclass(frozen=True)
class MetricsScope:
    """Where an agent's per-revision series live in Cloud Monitoring: its runtime, and for GKE
    the namespace and port of the tracks' Services. ``for_agent`` builds it from the stack config."""

    runtime: str = "cloud-run"
    namespace: str | None = None
    port: int | None = None

    @classmethod
    def for_agent(cls, spec: Any) -> MetricsScope:
        if spec.runtime == "gke" and spec.gke is not None:
            return cls("gke", spec.gke.namespace, spec.gke.service_port)
        return cls(spec.runtime)


@dataclass(frozen=True)
class _Query:
    """One list_time_series call: what to ask for and how a returned series names its revision."""

    metric: str
    filter: str
    aligner: str
    reducer: str
    group_by: list[str]
    revision_of: Callable[[Any], str]


def _resource_label(name: str) -> Callable[[Any], str]:
    return lambda ts: ts.resource.labels.get(name, "")


def _metric_label(name: str) -> Callable[[Any], str]:
    return lambda ts: ts.metric.labels.get(name, "")


def _is_5xx(ts: Any) -> bool:
    """A 5xx series: Cloud Run and Agent Engine label the class ``"5xx"``, the load balancer the
    integer ``500`` (a string once read); the code itself starts with 5 (Vertex AI's
    ``response_code`` may be a code or a class: either starts with 5). Sources in
    :mod:`components.monitoring`."""
    labels = ts.metric.labels
    code_class = str(labels.get("response_code_class", ""))
    return code_class in ("5xx", "500") or str(labels.get("response_code", "")).startswith("5")


def _is_429(ts: Any) -> bool:
    return str(ts.metric.labels.get("response_code", "")) == "429"


class MonitoringSource:
    """Series from Cloud Monitoring (``google-cloud-monitoring``), per runtime (:class:`MetricsScope`):

    - ``cloud-run``: the ``cloud_run_revision`` metrics named in the module docstring, grouped by
      ``revision_name``;
    - ``vertex-endpoint``: ``aiplatform.googleapis.com/prediction/online/response_count`` and
      ``prediction_latencies`` (``latency_type = "total"``) of the ``aiplatform.googleapis.com/Endpoint``
      resource, grouped by the metric label ``deployed_model_id`` (the endpoint's revisions); no
      memory share exists on that runtime (``memory/bytes_used`` is bytes);
    - ``gke``: the GKE Gateway's internal load balancer metrics
      (``loadbalancing.googleapis.com/https/internal/request_count`` and ``total_latencies``),
      grouped by the backend service, each matched to the track's Service it serves
      (``<service>-stable`` / ``<service>-canary``); no memory metric;
    - ``agent-engine``: refused with a MetricsError — the engine's built-in metrics are labelled by
      engine, not by runtime revision, so Monitoring cannot tell the canary from the stable.

    Metric names and labels: components/monitoring.py, with their sources."""

    name = "Cloud Monitoring"

    def __init__(
        self,
        project: str,
        region: str | None = None,
        *,
        client: Any = None,
        clock: Callable[[], dt.datetime] | None = None,
        alignment_seconds: int = 60,
        signals: Sequence[str] = (),
    ) -> None:
        from agentstage.release.ledger import now_utc

        self.project = project
        self.region = region
        self._client = client
        self._clock = clock or now_utc
        self.alignment_seconds = alignment_seconds
        self.signals = list(signals)

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.cloud import monitoring_v3

            self._client = monitoring_v3.MetricServiceClient()
        return self._client

    def now(self) -> dt.datetime:
        return self._clock()

    def _list(self, query: _Query, service: str, start: dt.datetime, end: dt.datetime) -> list[Any]:
        from google.api_core import exceptions as gexc
        from google.cloud import monitoring_v3
        from google.protobuf import duration_pb2

        Agg = monitoring_v3.Aggregation
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self.project}",
            filter=query.filter,
            interval=monitoring_v3.TimeInterval(start_time=start, end_time=end),
            aggregation=Agg(
                alignment_period=duration_pb2.Duration(seconds=self.alignment_seconds),
                per_series_aligner=Agg.Aligner[query.aligner],
                cross_series_reducer=Agg.Reducer[query.reducer],
                group_by_fields=query.group_by,
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        try:
            return list(self.client.list_time_series(request=request))
        except gexc.GoogleAPICallError as err:
            raise MetricsError(f"Cloud Monitoring: {query.metric} for service {service}: {err}") from None

    def _queries(
        self, service: str, revisions: list[str], scope: MetricsScope
    ) -> tuple[_Query, _Query, _Query | None, dict[str, _Query]]:
        """The count, latency, memory and signal queries of ``scope``'s runtime."""
        from components import monitoring as mon

        if scope.runtime == "cloud-run":
            by = "resource.label.revision_name"
            rev = _resource_label("revision_name")

            def q(metric: str, aligner: str, reducer: str, extra: Sequence[str] = ()) -> _Query:
                flt = revision_filter(metric, self.project, self.region, service, revisions)
                return _Query(metric, flt, aligner, reducer, [by, *extra], rev)

            count = q(
                REQUEST_COUNT,
                "ALIGN_DELTA",
                "REDUCE_SUM",
                ["metric.label.response_code_class", "metric.label.response_code"],
            )
            return (
                count,
                q(REQUEST_LATENCIES, "ALIGN_DELTA", "REDUCE_SUM"),
                q(MEMORY_UTILIZATIONS, "ALIGN_PERCENTILE_99", "REDUCE_MAX"),
                {s: q(signal_metric_type(service, s), "ALIGN_DELTA", "REDUCE_SUM") for s in self.signals},
            )
        if scope.runtime == "vertex-endpoint":
            names = ", ".join(f'"{r}"' for r in revisions)
            models = f"{mon.DEPLOYED_MODEL_LABEL} = one_of({names})"
            where = [models] + ([f'resource.label."location" = "{self.region}"'] if self.region else [])
            by = "metric.label.deployed_model_id"
            rev = _metric_label("deployed_model_id")

            def flt(metric: str, extra: Sequence[str] = ()) -> str:
                return " AND ".join(
                    [f'metric.type = "{metric}"', f'resource.type = "{mon.ENDPOINT_RESOURCE}"', *where, *extra]
                )

            return (
                _Query(
                    mon.ENDPOINT_RESPONSE_COUNT,
                    flt(mon.ENDPOINT_RESPONSE_COUNT),
                    "ALIGN_DELTA",
                    "REDUCE_SUM",
                    [by, "metric.label.response_code"],
                    rev,
                ),
                _Query(
                    mon.ENDPOINT_LATENCIES,
                    flt(mon.ENDPOINT_LATENCIES, ['metric.label."latency_type" = "total"']),
                    "ALIGN_DELTA",
                    "REDUCE_SUM",
                    [by],
                    rev,
                ),
                None,
                {},
            )
        if scope.runtime == "gke":
            if scope.namespace is None or scope.port is None:
                raise MetricsError(f"Cloud Monitoring: GKE agent {service}: its namespace and service port are unknown")
            by = "resource.label.backend_target_name"
            tracks = {r: re.compile(mon.gateway_backend_pattern(scope.namespace, [r], scope.port)) for r in revisions}

            def track(ts: Any) -> str:
                backend = ts.resource.labels.get("backend_target_name", "")
                return next((r for r, pattern in tracks.items() if pattern.fullmatch(backend)), "")

            def gq(metric: str, extra: Sequence[str] = ()) -> _Query:
                flt = mon.gke_lb_filter(metric, scope.namespace or "", revisions, scope.port or 0)
                return _Query(metric, flt, "ALIGN_DELTA", "REDUCE_SUM", [by, *extra], track)

            return (
                gq(mon.GKE_LB_REQUEST_COUNT, ["metric.label.response_code", "metric.label.response_code_class"]),
                gq(mon.GKE_LB_LATENCIES),
                None,
                {},
            )
        if scope.runtime == "agent-engine":
            raise MetricsError(
                f"Cloud Monitoring: Agent Engine {service}: its built-in metrics "
                f"({mon.ENGINE_REQUEST_COUNT}, request_latencies) are labelled by engine, not by runtime revision, "
                "so the canary cannot be told from the stable; give --metrics-file with per-revision series "
                "from the agent's own telemetry (docs/canary.md, 'Runtimes')"
            )
        raise MetricsError(f"Cloud Monitoring: no metrics known for runtime {scope.runtime!r} of {service}")

    def fetch(
        self,
        service: str,
        revisions: list[str],
        start: dt.datetime,
        end: dt.datetime,
        *,
        scope: MetricsScope | None = None,
    ) -> dict[str, Series]:
        count_q, latency_q, memory_q, signal_qs = self._queries(service, revisions, scope or MetricsScope())
        counts = self._list(count_q, service, start, end)
        latencies = self._list(latency_q, service, start, end)
        memory = self._list(memory_q, service, start, end) if memory_q is not None else []
        signals = {s: self._list(q, service, start, end) for s, q in signal_qs.items()}

        cols: dict[str, dict[str, dict[dt.datetime, float]]] = {}

        def add(revision: str, column: str, t: dt.datetime, value: float) -> None:
            bucket = cols.setdefault(revision, {}).setdefault(column, {})
            bucket[t] = bucket.get(t, 0.0) + value

        for ts in counts:
            revision = count_q.revision_of(ts)
            failed, throttled = _is_5xx(ts), _is_429(ts)
            for p in ts.points:
                t, value = _time(p.interval.end_time), float(p.value.int64_value or p.value.double_value)
                add(revision, "requests", t, value)
                add(revision, "errors", t, value if failed else 0.0)
                add(revision, "throttled", t, value if throttled else 0.0)
        bounds: list[float] | None = None
        rows: dict[str, dict[dt.datetime, np.ndarray]] = {}
        for ts in latencies:
            revision = latency_q.revision_of(ts)
            for p in ts.points:
                d = p.value.distribution_value
                raw = type(d).pb(d) if hasattr(type(d), "pb") else d  # google.api.Distribution is plain protobuf
                b = bucket_bounds(raw.bucket_options)
                if bounds is None:
                    bounds = b
                elif not np.allclose(bounds, b):
                    raise MetricsError(
                        f"Cloud Monitoring: {latency_q.metric} for service {service}: "
                        "the revisions' latency buckets differ; they cannot be compared"
                    )
                row = np.zeros(len(b) + 1)
                given = np.asarray(list(d.bucket_counts), dtype=float)[: len(row)]
                row[: len(given)] = given  # trailing empty buckets may be left out
                t = _time(p.interval.end_time)
                # two backends of one track (GKE) add up, as their requests do
                rows.setdefault(revision, {})[t] = rows.get(revision, {}).get(t, 0) + row
        for ts in memory:
            revision = memory_q.revision_of(ts) if memory_q is not None else ""
            for p in ts.points:
                cols.setdefault(revision, {}).setdefault("memory", {})[_time(p.interval.end_time)] = float(
                    p.value.double_value
                )
        for signal, series_list in signals.items():
            for ts in series_list:
                revision = signal_qs[signal].revision_of(ts)
                for p in ts.points:
                    add(
                        revision,
                        f"signal:{signal}",
                        _time(p.interval.end_time),
                        float(p.value.int64_value or p.value.double_value),
                    )
        out: dict[str, Series] = {}
        for revision in revisions:
            c = cols.get(revision, {})
            lat = rows.get(revision, {})
            times = sorted(set().union(*(set(v) for v in c.values()), set(lat)))
            if not times:
                continue
            req = c.get("requests", {})

            def column(name: str, zero_when_counted: bool = False) -> list[float | None]:
                # a count column is 0 (not missing) in a minute whose requests were counted
                values = c.get(name, {})
                return [values.get(t, 0.0 if zero_when_counted and t in req else None) for t in times]

            out[revision] = Series.build(
                revision,
                times,
                requests=[req.get(t) for t in times],
                errors=column("errors"),
                throttled=column("throttled"),
                latency=[lat.get(t) for t in times] if bounds is not None else None,
                bounds=bounds,
                memory=column("memory"),
                signals={s: column(f"signal:{s}", zero_when_counted=True) for s in self.signals},
            )
        return out


def _time(value: Any) -> dt.datetime:
    """A proto-plus timestamp (DatetimeWithNanoseconds) or protobuf Timestamp as aware UTC."""
    if hasattr(value, "ToDatetime"):
        value = value.ToDatetime(tzinfo=dt.timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return dt.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, tzinfo=dt.timezone.utc
    )
