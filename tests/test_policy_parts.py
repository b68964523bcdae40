"""The policy runner's parts, each on its own: what the analyzer is told (wire), the Analyzer
client against a local Analyzer gRPC server built on the SDK's own servicer base, the pack
process lifecycle, and the streaming layer's sharding over several analyzers."""

from __future__ import annotations

import textwrap
import threading
from concurrent import futures
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, plugin_pb2

from agentstage.engine import Plan, PlannedResource
from agentstage.policy.analyzer import AnalyzerClient, violations
from agentstage.policy.config import PolicySetting
from agentstage.policy.process import PackProcess, PolicyError
from agentstage.policy.report import PolicyInfo
from agentstage.policy.streaming import AnalysisStream, ExtraPacks
from agentstage.policy.wire import ResourceMapper, analyze_request, analyzer_resources, stack_request

PREFIX = "urn:pulumi:dev::proj::"


def record(type_: str, name: str, *, custom: bool = True, provider: str | None = None, version: str = "") -> Any:
    return PlannedResource(
        urn=f"{PREFIX}{type_}::{name}",
        type=type_,
        name=name,
        parent=None,
        custom=custom,
        inputs={"name": name},
        outputs={"name": name, "id": "x"},
        provider=provider,
        options={"version": version} if version else {},
    )


def plan_of(*records: PlannedResource) -> Plan:
    return Plan(project="proj", stack="dev", config_path="", resources=list(records))


# --- wire -------------------------------------------------------------------------------------


def test_one_default_provider_per_package_and_version_before_its_first_resource() -> None:
    config = {"gcp:project": "acme", "gcp:region": "us-central1", "proj:agents": "{}"}
    plan = plan_of(
        record("gcp:storage/bucket:Bucket", "a", version="10.2.0"),
        record("gcp:storage/bucket:Bucket", "b", version="10.2.0"),
        record("gcp:storage/bucket:Bucket", "c"),
        record("agentstage:x:Component", "comp", custom=False),
    )
    resources = analyzer_resources(plan, config)
    assert [r.urn.removeprefix(PREFIX) for r in resources] == [
        "pulumi:providers:gcp::default_10_2_0",
        "pulumi:providers:gcp::default",
        "gcp:storage/bucket:Bucket::a",
        "gcp:storage/bucket:Bucket::b",
        "gcp:storage/bucket:Bucket::c",
        "agentstage:x:Component::comp",
    ]
    assert resources[0].inputs == {"project": "acme", "region": "us-central1", "version": "10.2.0"}
    assert resources[1].inputs == {"project": "acme", "region": "us-central1"}
    a, _, c, comp = resources[2:]
    assert a.provider_message().urn.endswith("::default_10_2_0") and c.provider_message().urn.endswith("::default")
    assert a.provider_msg is resources[3].provider_msg  # one message per provider, shared
    assert comp.provider_message() is None  # a component has no provider


def test_an_explicit_provider_is_the_one_the_analyzer_is_told() -> None:
    mapper = ResourceMapper("proj", "dev", {})
    provider = record("pulumi:providers:gcp", "eu")
    assert [r.urn for r in mapper.map(provider)] == [provider.urn]  # a provider gets no default provider
    bucket = record("gcp:storage/bucket:Bucket", "a", provider=f"{provider.urn}::id-1")
    (mapped,) = mapper.map(bucket)
    message = mapped.provider_message()
    assert (message.type, message.urn, message.name) == ("pulumi:providers:gcp", provider.urn, "eu")


def test_requests_carry_inputs_to_analyze_and_state_to_analyze_stack() -> None:
    parent = record("agentstage:x:Component", "comp", custom=False)
    child = record("gcp:storage/bucket:Bucket", "a")
    child.parent, child.dependencies = parent.urn, [parent.urn]
    child.property_dependencies, child.options = {"name": [parent.urn], "labels": []}, {"protect": True}
    resources = analyzer_resources(plan_of(parent, child), {})
    request = analyze_request(resources[-1])
    assert dict(request.properties) == {"name": "a"} and request.options.protect
    assert request.options.parent == parent.urn and request.provider.name == "default"
    stack = stack_request(resources)
    item = stack.resources[-1]
    assert dict(item.properties) == {"name": "a", "id": "x"}
    assert item.parent == parent.urn and list(item.dependencies) == [parent.urn]
    assert {k: list(v.urns) for k, v in item.propertyDependencies.items()} == {"name": [parent.urn]}


# --- the Analyzer client ------------------------------------------------------------------------


class FakeAnalyzer(analyzer_pb2_grpc.AnalyzerServicer):
    """An analyzer with one policy, ``no-b``, violated by a resource named ``b``; it
    records the calls it receives."""

    def __init__(self, *, handshake: bool = True) -> None:
        self.calls: list[str] = []
        self.handshake = handshake
        self.lock = threading.Lock()

    def _note(self, name: str) -> None:
        with self.lock:
            self.calls.append(name)

    def Handshake(self, request, context):  # noqa: N802
        self._note("Handshake")
        if not self.handshake:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "no")
        return analyzer_pb2.AnalyzerHandshakeResponse()

    def GetAnalyzerInfo(self, request, context):  # noqa: N802
        self._note("GetAnalyzerInfo")
        info = analyzer_pb2.AnalyzerInfo(name="fake", version="1.0.0")
        info.policies.add(name="no-b", description="No b.", enforcementLevel=analyzer_pb2.MANDATORY)
        return info

    def ConfigureStack(self, request, context):  # noqa: N802
        self._note(f"ConfigureStack {request.project}/{request.stack} {dict(request.config)}")
        return analyzer_pb2.AnalyzerStackConfigureResponse()

    def Configure(self, request, context):  # noqa: N802
        levels = {k: analyzer_pb2.EnforcementLevel.Name(v.enforcementLevel) for k, v in request.policyConfig.items()}
        self._note(f"Configure {levels}")
        return empty_pb2.Empty()

    def Analyze(self, request, context):  # noqa: N802
        self._note(f"Analyze {request.name}")
        response = analyzer_pb2.AnalyzeResponse()
        if request.name == "b":
            response.diagnostics.add(
                policyName="no-b",
                description="No b.",
                message="No b.\nb is here",
                enforcementLevel=analyzer_pb2.MANDATORY,
            )
        return response

    def AnalyzeStack(self, request, context):  # noqa: N802
        self._note(f"AnalyzeStack {len(request.resources)}")
        return analyzer_pb2.AnalyzeResponse()

    def GetPluginInfo(self, request, context):  # noqa: N802
        return plugin_pb2.PluginInfo(version="1.0.0")


@pytest.fixture
def serve():
    servers = []

    def start(servicer: FakeAnalyzer) -> int:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        analyzer_pb2_grpc.add_AnalyzerServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return port

    yield start
    for server in servers:
        server.stop(0)


def _failure(doing, err):
    return PolicyError(f"failed {doing}: {err.code().name}")


@pytest.mark.parametrize("handshake", [True, False])
def test_the_client_speaks_the_protocol_in_the_clis_order(serve, handshake) -> None:
    fake = FakeAnalyzer(handshake=handshake)
    client = AnalyzerClient(serve(fake), _failure)
    try:
        client.handshake("127.0.0.1:1", "/pack", timeout=10)
        info = client.info(default_name="dir-name", manifest_version="2.0.0")
        client.configure_stack(project="proj", stack="dev", config={"proj:a": "1"}, secret_keys=[])
        client.configure({"no-b": PolicySetting("advisory", {})})
        answer = client.analyze(analyze_request(analyzer_resources(plan_of(record("x:y:Z", "b")), {})[-1])).result()
    finally:
        client.close()
    assert (info.name, info.version, [p.name for p in info.policies]) == ("fake", "2.0.0", ["no-b"])
    assert fake.calls == [
        "Handshake",
        "GetAnalyzerInfo",
        "ConfigureStack proj/dev {'proj:a': '1'}",
        "Configure {'no-b': 'ADVISORY'}",
        "Analyze b",
    ]
    assert [d.policyName for d in answer.diagnostics] == ["no-b"]


def test_a_failed_call_goes_through_the_owners_failure_function(serve) -> None:
    class Broken(FakeAnalyzer):
        def Configure(self, request, context):  # noqa: N802
            context.abort(grpc.StatusCode.INTERNAL, "bad config")

    client = AnalyzerClient(serve(Broken()), _failure)
    try:
        with pytest.raises(PolicyError, match=r"^failed during Configure: INTERNAL$"):
            client.configure({})
    finally:
        client.close()


def test_violations_refuse_an_undeclared_policy_and_an_unknown_resource() -> None:
    policies = [PolicyInfo(name="no-b", description="No b.", enforcement="mandatory", severity="", kind="resource")]
    response = analyzer_pb2.AnalyzeResponse()
    response.diagnostics.add(policyName="other", message="m")
    with pytest.raises(PolicyError) as err:
        violations("fake", policies, response, "u", {"u": None})
    assert (
        str(err.value) == "policy pack fake reported a violation of 'other', a policy it never declared (message: 'm')"
    )
    response = analyzer_pb2.AnalyzeResponse()
    response.diagnostics.add(policyName="no-b", message="m", urn="urn:nowhere")
    with pytest.raises(PolicyError) as err:
        violations("fake", policies, response, None, {})
    assert str(err.value) == "policy pack fake reported no-b on urn:nowhere, a resource that is not in the stack"
    response = analyzer_pb2.AnalyzeResponse()
    response.diagnostics.add(policyName="no-b", description="No b.", message="No b.\nb is here")
    (found,) = violations("fake", policies, response, "u", {"u": SimpleNamespace(type="t", name="b")})
    assert (found.message, found.resource_name, found.enforcement) == ("b is here", "b", "advisory")


# --- the pack process ---------------------------------------------------------------------------


def test_a_pack_process_prints_its_port_reads_its_config_and_stops(tmp_path) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "PulumiPolicy.yaml").write_text("runtime: python\n")
    (pack / "__main__.py").write_text(
        textwrap.dedent(
            """
            import pulumi, pulumi.runtime
            from pulumi_policy import PolicyPack, ResourceValidationPolicy
            def validate(args, report):
                pulumi.log.info("config " + pulumi.runtime.get_config("proj:greeting"))
            PolicyPack(name="p", policies=[ResourceValidationPolicy(name="r", description="d", validate=validate)])
            """
        )
    )
    process = PackProcess(pack, project="proj", stack="dev", config={"proj:greeting": "hello"})
    process.launch()
    try:
        port = process.wait_for_port()
        assert port > 0 and process.running and process.exit_code(wait=0.05) is None
        client = AnalyzerClient(port, _failure)
        client.handshake(process.engine.address, str(pack), timeout=30)
        client.configure({"r": PolicySetting("advisory", {})})
        client.analyze(analyze_request(analyzer_resources(plan_of(record("x:y:Z", "a")), {})[-1])).result()
        client.close()
        # The SDK's policy entry point never gives its runtime the engine address (as under
        # the CLI): a policy's pulumi.log goes to stderr, which an error message quotes.
        assert "config hello" in process.tail()
    finally:
        process.close()
    assert not process.running


# --- streaming and sharding ---------------------------------------------------------------------


class Shard:
    """An analyzer over a FakeAnalyzer server, as the stream sees a pack process."""

    def __init__(self, port: int) -> None:
        self.client = AnalyzerClient(port, _failure)
        self.policies = [PolicyInfo(name="no-b", description="No b.", enforcement="mandatory", severity="", kind="r")]

    def send_analyze(self, request):
        return self.client.analyze(request)

    def send_analyze_stack(self, request):
        return self.client.analyze_stack(request)

    def failure(self, doing, err):
        return _failure(doing, err)

    def stack_policy_names(self):
        return ["stack-a", "stack-b", "stack-c"]

    def share_stack_policies(self, names):
        self.shares = [*getattr(self, "shares", []), names]

    def violations(self, response, urn, by_urn):
        return violations("fake", self.policies, response, urn, by_urn)


def test_calls_spread_over_the_shards_and_answers_come_back_in_plan_order(serve) -> None:
    first, second = FakeAnalyzer(), FakeAnalyzer()
    one, two = Shard(serve(first)), Shard(serve(second))
    records = [record("x:y:Z", name) for name in ["a", "b", "c", "b2", "d", "b"[:1] + "3"]]
    records[3].name = records[5].name = "b"  # three resources named b, each violating
    records[3].urn, records[5].urn = f"{PREFIX}x:y:Z::b2", f"{PREFIX}x:y:Z::b3"
    stream = AnalysisStream(one, "proj", "dev", {}, on_large=lambda s: s.add_shard(two), large_plan=2)
    stream.open()
    for r in records:
        stream.feed(r)
    found, count, _ = stream.finish(plan_of(*records))
    one.client.close()
    two.client.close()
    analysed = [c for c in first.calls + second.calls if c.startswith("Analyze ")]
    assert len(analysed) == count == 7  # six resources and the default provider of package x
    assert any(c.startswith("Analyze ") for c in second.calls), "the second shard got no call"
    assert [v.urn.rsplit("::", 1)[1] for v in found] == ["b", "b2", "b3"]
    # the stack policies are shared out: each process answers AnalyzeStack for its share,
    # and the first one gets all of them back afterwards
    assert [c for c in first.calls + second.calls if c.startswith("AnalyzeStack")] == ["AnalyzeStack 7"] * 2
    assert one.shares == [["stack-a", "stack-c"], ["stack-a", "stack-b", "stack-c"]]
    assert two.shares == [["stack-b"]]


def test_an_extra_process_that_cannot_start_is_left_out() -> None:
    class WontStart:
        def launch(self):
            raise PolicyError("no")

        def close(self):
            self.closed = True

    made = []
    extras = ExtraPacks(lambda: made.append(WontStart()) or made[-1], {}, None, count=2)
    added = []
    extras.start(SimpleNamespace(add_shard=added.append))
    extras.close()
    assert added == [] and len(made) == 2 and all(getattr(m, "closed", False) for m in made)


def test_an_explicit_provider_after_its_resources_in_plan_order_is_still_their_provider() -> None:
    """A plan is in tree order, siblings by URN: ``pulumi:providers:kubernetes`` sorts after the
    ``kubernetes:`` resources it manages, which the engine registered after it."""
    provider = record("pulumi:providers:kubernetes", "cluster")
    deployment = record("kubernetes:apps/v1:Deployment", "web", provider=f"{provider.urn}::id-1")
    resources = analyzer_resources(plan_of(deployment, provider), {})
    (mapped,) = [r for r in resources if r.urn == deployment.urn]
    assert mapped.provider_message().urn == provider.urn
    assert analyze_request(mapped).provider.name == "cluster"
    assert stack_request(resources).resources[0].provider.urn == provider.urn
