"""The Cloud Monitoring source, with the real MetricServiceClient against a local gRPC server
on 127.0.0.1 that implements google.monitoring.v3.MetricService/ListTimeSeries with the
library's own message types: the filters and aggregations sent, and the decisions made."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent import futures

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from google.cloud.monitoring_v3.types import ListTimeSeriesRequest, ListTimeSeriesResponse

from agentstage.release.analysis import ROLLBACK, analyse, ADVANCE
from agentstage.release.metrics import MetricsError, MonitoringSource
from components.spec import AgentSpec
from tests.conftest import load_stack

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
CANARY, STABLE = "support-bot-1-4-0", "support-bot-1-3-2"
Agg = monitoring_v3.Aggregation


class FakeMonitoring:
    """Serves ListTimeSeries from canned per-revision minute values; records every request."""

    def __init__(self) -> None:
        self.requests: list[ListTimeSeriesRequest] = []
        self.data: dict[str, dict[str, list[float]]] = {}
        self.fail: grpc.StatusCode | None = None
        self.lock = threading.Lock()

    def list_time_series(self, request: ListTimeSeriesRequest, context: grpc.ServicerContext) -> ListTimeSeriesResponse:
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
                for code_class, key in (("2xx", "ok"), ("5xx", "errors")):
                    points = [self._point(end, n - 1 - i, int_value=int(data[key][i])) for i in reversed(range(n))]
                    series.append(self._series(revision, points, code_class))
            else:
                points = [self._point(end, n - 1 - i, double_value=data["p99"][i]) for i in reversed(range(n))]
                series.append(self._series(revision, points, None))
        return ListTimeSeriesResponse(time_series=series)

    @staticmethod
    def _point(end, minutes_back, *, int_value=None, double_value=None):
        t = end - dt.timedelta(minutes=minutes_back)
        value = monitoring_v3.TypedValue(int64_value=int_value) if int_value is not None else monitoring_v3.TypedValue(double_value=double_value)
        return monitoring_v3.Point(interval=monitoring_v3.TimeInterval(end_time=t, start_time=t - dt.timedelta(minutes=1)), value=value)

    @staticmethod
    def _series(revision, points, code_class):
        from google.api import metric_pb2, monitored_resource_pb2

        labels = {"response_code_class": code_class} if code_class else {}
        return monitoring_v3.TimeSeries(
            metric=metric_pb2.Metric(type="run.googleapis.com/request_count", labels=labels),
            resource=monitored_resource_pb2.MonitoredResource(type="cloud_run_revision", labels={"revision_name": revision}),
            points=points,
        )


@pytest.fixture(scope="module")
def server():
    fake = FakeMonitoring()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler("google.monitoring.v3.MetricService", {
        "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
            fake.list_time_series,
            request_deserializer=ListTimeSeriesRequest.deserialize,
            response_serializer=ListTimeSeriesResponse.serialize,
        ),
    })
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
    return series, analyse("support-bot", spec(), canary=series.get(CANARY), stable=series.get(STABLE), now=NOW,
                           step_started=NOW - dt.timedelta(minutes=12))


def test_requests_filter_on_cloud_run_revision_labels_with_aligners_and_reducers(fake):
    fake_server, client = fake
    fake_server.data = {CANARY: {"ok": [100] * 10, "errors": [0] * 10, "p99": [800.0] * 10}}
    decide(client)
    counts, latencies = fake_server.requests
    for req in (counts, latencies):
        assert req.name == "projects/acme-agents-prod"
        assert 'resource.type = "cloud_run_revision"' in req.filter
        assert 'resource.labels.service_name = "support-bot"' in req.filter
        assert 'resource.labels.location = "us-central1"' in req.filter
        assert 'resource.labels.project_id = "acme-agents-prod"' in req.filter
        assert f'resource.labels.revision_name = one_of("{CANARY}", "{STABLE}")' in req.filter
        assert req.aggregation.alignment_period.total_seconds() == 60
        assert req.aggregation.per_series_aligner == Agg.Aligner.ALIGN_DELTA
        assert req.interval.end_time == NOW
        assert req.interval.start_time == NOW - dt.timedelta(minutes=10)
    assert 'metric.type = "run.googleapis.com/request_count"' in counts.filter
    assert counts.aggregation.cross_series_reducer == Agg.Reducer.REDUCE_SUM
    assert list(counts.aggregation.group_by_fields) == ["resource.label.revision_name", "metric.label.response_code_class"]
    assert 'metric.type = "run.googleapis.com/request_latencies"' in latencies.filter
    assert latencies.aggregation.cross_series_reducer == Agg.Reducer.REDUCE_PERCENTILE_99
    assert list(latencies.aggregation.group_by_fields) == ["resource.label.revision_name"]


def test_healthy_series_advance(fake):
    fake_server, client = fake
    fake_server.data = {
        CANARY: {"ok": [118] * 10, "errors": [1] * 10, "p99": [850.0 + i for i in range(10)]},
        STABLE: {"ok": [2000] * 10, "errors": [10] * 10, "p99": [860.0 + i for i in range(10)]},
    }
    series, result = decide(client)
    assert [p.requests for p in series[CANARY].points] == [119.0] * 10
    assert [p.errors for p in series[CANARY].points] == [1.0] * 10
    assert series[CANARY].points[-1].end == NOW
    assert result.verdict == ADVANCE and result.to_percent == 25


def test_erroring_canary_from_monitoring_rolls_back(fake):
    fake_server, client = fake
    fake_server.data = {
        CANARY: {"ok": [90] * 10, "errors": [10] * 10, "p99": [850.0] * 10},
        STABLE: {"ok": [2000] * 10, "errors": [10] * 10, "p99": [860.0] * 10},
    }
    _, result = decide(client)
    assert result.verdict == ROLLBACK
    assert "error rate 10.00% > 2.00%" in result.reason


def test_api_errors_are_reported_with_the_metric(fake):
    fake_server, client = fake
    fake_server.fail = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(MetricsError, match=r"^Cloud Monitoring: run.googleapis.com/request_count for service support-bot: 403 permission denied"):
        decide(client)
