"""The Cloud Monitoring source, with the real MetricServiceClient against a local gRPC server
on 127.0.0.1 that implements google.monitoring.v3.MetricService/ListTimeSeries with the
library's own message types: the filters and aggregations sent, and the decisions made."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent import futures

import grpc
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from google.cloud.monitoring_v3.types import ListTimeSeriesRequest, ListTimeSeriesResponse

from agentstage.release.analysis import judge
from agentstage.release.metrics import MetricsError, MonitoringSource
from components.spec import AgentSpec
from tests.conftest import load_stack

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
CANARY, STABLE = "support-bot-1-4-0", "support-bot-1-3-2"
Agg = monitoring_v3.Aggregation


class FakeMonitoring:
    """Serves ListTimeSeries from canned per-revision minute values (request counts by response
    code, latency distributions with exponential buckets, memory); records every request."""

    def __init__(self) -> None:
        self.requests: list[ListTimeSeriesRequest] = []
        self.data: dict[str, dict[str, list[float]]] = {}
        self.fail: grpc.StatusCode | None = None
        self.lock = threading.Lock()

    def list_time_series(self, request: ListTimeSeriesRequest, context: grpc.ServicerContext) -> ListTimeSeriesResponse:
        from google.api import distribution_pb2

        with self.lock:
            self.requests.append(request)
        if self.fail is not None:
            context.abort(self.fail, "permission denied on projects/acme-agents-prod")
        end = request.interval.end_time
        series = []
        for revision, data in self.data.items():
            if f'"{revision}"' not in request.filter:
                continue
            n = len(data["ok"])
            if "request_count" in request.filter:
                for code_class, code, key in (
                    ("2xx", "200", "ok"),
                    ("5xx", "503", "errors"),
                    ("4xx", "429", "throttled"),
                ):
                    values = data.get(key, [0] * n)
                    points = [self._point(end, n - 1 - i, int_value=int(values[i])) for i in reversed(range(n))]
                    series.append(
                        self._series(revision, points, {"response_code_class": code_class, "response_code": code})
                    )
            elif "request_latencies" in request.filter:
                points = []
                for i in reversed(range(n)):
                    # exponential buckets 100 ms x 2^i: all of a minute's requests in the bucket of its latency
                    counts = [0] * 8
                    counts[int(data["bucket"][i])] = int(data["ok"][i] + data["errors"][i])
                    dist = distribution_pb2.Distribution(
                        count=sum(counts),
                        bucket_counts=counts,
                        bucket_options=distribution_pb2.Distribution.BucketOptions(
                            exponential_buckets=distribution_pb2.Distribution.BucketOptions.Exponential(
                                num_finite_buckets=6, growth_factor=2, scale=100
                            )
                        ),
                    )
                    points.append(self._point(end, n - 1 - i, distribution=dist))
                series.append(self._series(revision, points, {}))
        return ListTimeSeriesResponse(time_series=series)

    @staticmethod
    def _point(end, minutes_back, *, int_value=None, distribution=None):
        t = end - dt.timedelta(minutes=minutes_back)
        value = (
            monitoring_v3.TypedValue(int64_value=int_value)
            if int_value is not None
            else monitoring_v3.TypedValue(distribution_value=distribution)
        )
        return monitoring_v3.Point(
            interval=monitoring_v3.TimeInterval(end_time=t, start_time=t - dt.timedelta(minutes=1)), value=value
        )

    @staticmethod
    def _series(revision, points, labels):
        from google.api import metric_pb2, monitored_resource_pb2

        return monitoring_v3.TimeSeries(
            metric=metric_pb2.Metric(type="run.googleapis.com/request_count", labels=labels),
            resource=monitored_resource_pb2.MonitoredResource(
                type="cloud_run_revision", labels={"revision_name": revision}
            ),
            points=points,
        )


@pytest.fixture(scope="module")
def server():
    fake = FakeMonitoring()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "google.monitoring.v3.MetricService",
        {
            "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                fake.list_time_series,
                request_deserializer=ListTimeSeriesRequest.deserialize,
                response_serializer=ListTimeSeriesResponse.serialize,
            ),
        },
    )
    srv.add_generic_rpc_handlers((handler,))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    client = monitoring_v3.MetricServiceClient(
        transport=MetricServiceGrpcTransport(channel=channel, credentials=AnonymousCredentials())
    )
    yield fake, client
    srv.stop(0)


@pytest.fixture
def fake(server):
    fake, client = server
    fake.requests.clear()
    fake.data.clear()
    fake.fail = None
    return fake, client


def spec() -> AgentSpec:
    return AgentSpec.model_validate(load_stack("production")["agent-platform:agents"]["support-bot"])


def decide(client):
    source = MonitoringSource("acme-agents-prod", "us-central1", client=client, clock=lambda: NOW)
    series = source.fetch("support-bot", [CANARY, STABLE], NOW - dt.timedelta(minutes=10), NOW)
    checks = judge(
        spec(),
        series.get(CANARY),
        series.get(STABLE),
        rollout_start=NOW - dt.timedelta(minutes=12),
        step_start=NOW - dt.timedelta(minutes=12),
        now=NOW,
    )
    return series, {c.name: c for c in checks}


def test_requests_filter_on_cloud_run_revision_labels_with_aligners_and_reducers(fake):
    fake_server, client = fake
    fake_server.data = {CANARY: {"ok": [100] * 10, "errors": [0] * 10, "bucket": [3] * 10}}
    decide(client)
    counts, latencies, memory = fake_server.requests
    for req in (counts, latencies, memory):
        assert req.name == "projects/acme-agents-prod"
        assert 'resource.type = "cloud_run_revision"' in req.filter
        assert 'resource.labels.service_name = "support-bot"' in req.filter
        assert 'resource.labels.location = "us-central1"' in req.filter
        assert 'resource.labels.project_id = "acme-agents-prod"' in req.filter
        assert f'resource.labels.revision_name = one_of("{CANARY}", "{STABLE}")' in req.filter
        assert req.aggregation.alignment_period.total_seconds() == 60
        assert req.interval.end_time == NOW
        assert req.interval.start_time == NOW - dt.timedelta(minutes=10)
    assert 'metric.type = "run.googleapis.com/request_count"' in counts.filter
    assert counts.aggregation.per_series_aligner == Agg.Aligner.ALIGN_DELTA
    assert counts.aggregation.cross_series_reducer == Agg.Reducer.REDUCE_SUM
    assert list(counts.aggregation.group_by_fields) == [
        "resource.label.revision_name",
        "metric.label.response_code_class",
        "metric.label.response_code",
    ]
    assert 'metric.type = "run.googleapis.com/request_latencies"' in latencies.filter
    # the distribution's buckets are summed, never reduced to a percentile per minute
    assert latencies.aggregation.per_series_aligner == Agg.Aligner.ALIGN_DELTA
    assert latencies.aggregation.cross_series_reducer == Agg.Reducer.REDUCE_SUM
    assert list(latencies.aggregation.group_by_fields) == ["resource.label.revision_name"]
    assert 'metric.type = "run.googleapis.com/container/memory/utilizations"' in memory.filter
    assert memory.aggregation.per_series_aligner == Agg.Aligner.ALIGN_PERCENTILE_99
    assert memory.aggregation.cross_series_reducer == Agg.Reducer.REDUCE_MAX


def test_counts_429s_and_distributions_are_read_per_minute(fake):
    fake_server, client = fake
    fake_server.data = {
        CANARY: {"ok": [118] * 10, "errors": [1] * 10, "throttled": [2] * 10, "bucket": [3] * 10},
        STABLE: {"ok": [2000] * 10, "errors": [10] * 10, "bucket": [3] * 10},
    }
    series, checks = decide(client)
    c = series[CANARY]
    assert list(c.requests) == [121.0] * 10 and list(c.errors) == [1.0] * 10 and list(c.throttled) == [2.0] * 10
    assert list(c.bounds) == [100.0 * 2**i for i in range(7)]
    assert c.latency[0].tolist() == [0, 0, 0, 119, 0, 0, 0, 0]  # 400-800 ms (429s have no latency here)
    assert c.ends[-1] == NOW
    assert checks["latency_vs_stable"].ok is True and checks["latency_p99_ms"].value < 800


def test_erroring_canary_from_monitoring_fails_the_checks(fake):
    fake_server, client = fake
    fake_server.data = {
        CANARY: {"ok": [90] * 10, "errors": [10] * 10, "bucket": [3] * 10},
        STABLE: {"ok": [2000] * 10, "errors": [10] * 10, "bucket": [3] * 10},
    }
    _, checks = decide(client)
    assert checks["errors_vs_stable"].ok is False and checks["error_rate"].ok is False
    assert checks["errors_vs_stable"].detail.startswith("canary 10.00% of 1,000 requests vs stable 0.50% of 20,100")


def test_api_errors_are_reported_with_the_metric(fake):
    fake_server, client = fake
    fake_server.fail = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(
        MetricsError,
        match=r"^Cloud Monitoring: run.googleapis.com/request_count for service support-bot: 403 permission denied",
    ):
        decide(client)
