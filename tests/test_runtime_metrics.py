"""The canary's series on the managed runtimes, read from Cloud Monitoring with the real
MetricServiceClient against a local gRPC server on 127.0.0.1 (google.monitoring.v3.MetricService
/ListTimeSeries with the library's own messages): a Vertex AI endpoint's deployed models, a GKE
agent's tracks behind the Gateway's load balancer, and Agent Engine, whose metrics cannot tell a
canary from its stable."""

from __future__ import annotations

import datetime as dt
from concurrent import futures

import grpc
import pytest
from google.api import distribution_pb2, metric_pb2, monitored_resource_pb2
from google.auth.credentials import AnonymousCredentials
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from google.cloud.monitoring_v3.types import ListTimeSeriesRequest, ListTimeSeriesResponse

from agentstage.config import platform_from_config
from agentstage.release.metrics import MetricsError, MetricsScope, MonitoringSource
from tests.conftest import ROOT

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
START = NOW - dt.timedelta(minutes=5)
Agg = monitoring_v3.Aggregation


def _point(minutes_back: int, *, count: int | None = None, bucket: int | None = None):
    t = NOW - dt.timedelta(minutes=minutes_back)
    if count is not None:
        value = monitoring_v3.TypedValue(int64_value=count)
    else:
        counts = [0] * 8
        counts[bucket or 0] = 10
        value = monitoring_v3.TypedValue(
            distribution_value=distribution_pb2.Distribution(
                count=10,
                bucket_counts=counts,
                bucket_options=distribution_pb2.Distribution.BucketOptions(
                    exponential_buckets=distribution_pb2.Distribution.BucketOptions.Exponential(
                        num_finite_buckets=6, growth_factor=2, scale=100
                    )
                ),
            )
        )
    return monitoring_v3.Point(
        interval=monitoring_v3.TimeInterval(end_time=t, start_time=t - dt.timedelta(minutes=1)), value=value
    )


class Fake:
    """Answers every ListTimeSeries with ``series[metric type]`` (TimeSeries built by a test);
    records the requests."""

    def __init__(self) -> None:
        self.requests: list[ListTimeSeriesRequest] = []
        self.series: dict[str, list[monitoring_v3.TimeSeries]] = {}

    def list_time_series(self, request: ListTimeSeriesRequest, context) -> ListTimeSeriesResponse:
        self.requests.append(request)
        out = [s for metric, ss in self.series.items() if f'"{metric}"' in request.filter for s in ss]
        return ListTimeSeriesResponse(time_series=out)


@pytest.fixture(scope="module")
def server():
    fake = Fake()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "google.monitoring.v3.MetricService",
        {
            "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                fake.list_time_series,
                request_deserializer=ListTimeSeriesRequest.deserialize,
                response_serializer=ListTimeSeriesResponse.serialize,
            )
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
    fake.series.clear()
    return fake, MonitoringSource("acme-agents-prod", "us-central1", client=client, clock=lambda: NOW)


def _ts(metric: str, resource: str, resource_labels: dict, metric_labels: dict, points) -> monitoring_v3.TimeSeries:
    return monitoring_v3.TimeSeries(
        metric=metric_pb2.Metric(type=metric, labels=metric_labels),
        resource=monitored_resource_pb2.MonitoredResource(type=resource, labels=resource_labels),
        points=points,
    )


def _runtimes_spec():
    from ruamel.yaml import YAML

    stack = YAML(typ="safe", pure=True).load((ROOT / "examples/runtimes/stacks/Pulumi.production.yaml").read_text())
    return platform_from_config(stack["config"])


def test_scope_follows_the_agents_runtime():
    spec = _runtimes_spec()
    summarizer = spec.agents["summarizer"]
    assert MetricsScope.for_agent(summarizer) == MetricsScope(
        "gke", summarizer.gke.namespace, summarizer.gke.service_port
    )
    assert MetricsScope.for_agent(spec.agents["triage-model"]) == MetricsScope("vertex-endpoint")
    assert MetricsScope.for_agent(spec.agents["support-bot"]) == MetricsScope("cloud-run")


def test_vertex_endpoint_series_are_per_deployed_model(fake):
    server, source = fake
    count = "aiplatform.googleapis.com/prediction/online/response_count"
    latency = "aiplatform.googleapis.com/prediction/online/prediction_latencies"
    res = "aiplatform.googleapis.com/Endpoint"
    labels = {"endpoint_id": "123", "location": "us-central1"}
    server.series = {
        count: [
            _ts(
                count,
                res,
                labels,
                {"deployed_model_id": "m-new", "response_code": "200"},
                [_point(i, count=90) for i in (2, 1)],
            ),
            _ts(
                count,
                res,
                labels,
                {"deployed_model_id": "m-new", "response_code": "503"},
                [_point(i, count=6) for i in (2, 1)],
            ),
            _ts(
                count,
                res,
                labels,
                {"deployed_model_id": "m-new", "response_code": "429"},
                [_point(i, count=4) for i in (2, 1)],
            ),
            _ts(
                count,
                res,
                labels,
                {"deployed_model_id": "m-old", "response_code": "200"},
                [_point(i, count=900) for i in (2, 1)],
            ),
        ],
        latency: [
            _ts(latency, res, labels, {"deployed_model_id": "m-new"}, [_point(i, bucket=4) for i in (2, 1)]),
            _ts(latency, res, labels, {"deployed_model_id": "m-old"}, [_point(i, bucket=2) for i in (2, 1)]),
        ],
    }
    series = source.fetch("triage-model", ["m-new", "m-old"], START, NOW, scope=MetricsScope("vertex-endpoint"))
    # two calls: counts and latencies; an endpoint has no memory share to read
    counts, latencies = server.requests
    for req in (counts, latencies):
        assert 'resource.type = "aiplatform.googleapis.com/Endpoint"' in req.filter
        assert 'metric.label."deployed_model_id" = one_of("m-new", "m-old")' in req.filter
        assert 'resource.label."location" = "us-central1"' in req.filter
        assert req.aggregation.per_series_aligner == Agg.Aligner.ALIGN_DELTA
        assert req.aggregation.cross_series_reducer == Agg.Reducer.REDUCE_SUM
    assert list(counts.aggregation.group_by_fields) == ["metric.label.deployed_model_id", "metric.label.response_code"]
    # the server-side latency alone would hide the model's; "total" is what a caller waits for
    assert 'metric.label."latency_type" = "total"' in latencies.filter
    new, old = series["m-new"], series["m-old"]
    assert list(new.requests) == [100.0, 100.0] and list(new.errors) == [6.0, 6.0] and list(new.throttled) == [4.0, 4.0]
    assert list(old.requests) == [900.0, 900.0] and list(old.errors) == [0.0, 0.0]
    assert new.latency.sum(axis=1).tolist() == [10.0, 10.0] and new.latency[:, 4].tolist() == [10.0, 10.0]
    assert old.latency[:, 2].tolist() == [10.0, 10.0]


def test_gke_series_are_per_track_from_the_gateway_backends(fake):
    server, source = fake
    count = "loadbalancing.googleapis.com/https/internal/request_count"
    latency = "loadbalancing.googleapis.com/https/internal/total_latencies"
    res = "internal_http_lb_rule"

    def backend(track: str, n: int) -> dict:
        return {"backend_target_name": f"gkegw1-ab12-agents-summarizer-{track}-8080-x{n}"}

    server.series = {
        count: [
            _ts(
                count,
                res,
                backend("canary", 1),
                {"response_code": "200", "response_code_class": "200"},
                [_point(1, count=40)],
            ),
            # a second backend of the same track (e.g. after the controller recreated it): they add up
            _ts(
                count,
                res,
                backend("canary", 2),
                {"response_code": "200", "response_code_class": "200"},
                [_point(1, count=50)],
            ),
            _ts(
                count,
                res,
                backend("canary", 1),
                {"response_code": "502", "response_code_class": "500"},
                [_point(1, count=10)],
            ),
            _ts(
                count,
                res,
                backend("stable", 1),
                {"response_code": "200", "response_code_class": "200"},
                [_point(1, count=800)],
            ),
            # namespace x-agents holds a Service of the same name: not this agent's, though the names
            # contain "-agents-summarizer-canary-8080-"
            _ts(
                count,
                res,
                {"backend_target_name": "gkegw1-ab12-x-agents-summarizer-canary-8080-x3"},
                {"response_code": "502", "response_code_class": "500"},
                [_point(1, count=70)],
            ),
        ],
        latency: [
            _ts(latency, res, backend("canary", 1), {}, [_point(1, bucket=3)]),
            _ts(latency, res, backend("canary", 2), {}, [_point(1, bucket=3)]),
            _ts(latency, res, backend("stable", 1), {}, [_point(1, bucket=1)]),
        ],
    }
    revisions = ["summarizer-canary", "summarizer-stable"]
    series = source.fetch("summarizer", revisions, START, NOW, scope=MetricsScope("gke", "agents", 8080))
    counts, latencies = server.requests
    for req in (counts, latencies):
        assert 'resource.type = "internal_http_lb_rule"' in req.filter
        assert (
            'resource.label."backend_target_name" = '
            'monitoring.regex.full_match("gkegw1-[a-z0-9]+-agents-(summarizer-canary|summarizer-stable)-8080-[a-z0-9]+")'
        ) in req.filter
    assert list(counts.aggregation.group_by_fields) == [
        "resource.label.backend_target_name",
        "metric.label.response_code",
        "metric.label.response_code_class",
    ]
    canary, stable = series["summarizer-canary"], series["summarizer-stable"]
    assert list(canary.requests) == [100.0] and list(canary.errors) == [10.0]
    assert list(stable.requests) == [800.0] and list(stable.errors) == [0.0]
    assert canary.latency[0, 3] == 20.0 and stable.latency[0, 1] == 10.0


def test_gke_scope_without_namespace_is_an_error(fake):
    _, source = fake
    with pytest.raises(MetricsError) as err:
        source.fetch("summarizer", ["summarizer-canary"], START, NOW, scope=MetricsScope("gke"))
    assert str(err.value) == "Cloud Monitoring: GKE agent summarizer: its namespace and service port are unknown"


def test_agent_engine_is_refused_without_a_request(fake):
    server, source = fake
    with pytest.raises(MetricsError) as err:
        source.fetch("research-agent", ["LATEST", "7"], START, NOW, scope=MetricsScope("agent-engine"))
    assert str(err.value) == (
        "Cloud Monitoring: Agent Engine research-agent: its built-in metrics "
        "(aiplatform.googleapis.com/reasoning_engine/request_count, request_latencies) are labelled by engine, "
        "not by runtime revision, so the canary cannot be told from the stable; give --metrics-file with "
        "per-revision series from the agent's own telemetry (docs/canary.md, 'Runtimes')"
    )
    assert server.requests == []
