"""The Analyze relay: calls made by a separate process reach each Analyzer unchanged, answers
and failures come back to the right call, a relay that dies fails its calls with a message
that says so, and a streamed check sends its Analyze calls through it (with the verdict of a
direct one: tests/test_policy_equivalence.py runs every stack that way)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import grpc
import pytest
from pulumi.runtime.proto import analyzer_pb2

from agentstage.policy import relay as relay_module
from agentstage.policy.process import BACKGROUND_NICENESS, in_background
from agentstage.policy.relay import AnalyzeRelay, RelayedRpcError, analyze_method
from tests.test_policy_parts import FakeAnalyzer, serve  # noqa: F401 - serve is a fixture
from tests.test_policy_runner import rule_pack


class Recording(FakeAnalyzer):
    """Keeps every AnalyzeRequest as received; fails the resource named ``bad``."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[analyzer_pb2.AnalyzeRequest] = []

    def Analyze(self, request, context):  # noqa: N802
        with self.lock:
            self.requests.append(request)
        if request.name == "bad":
            context.abort(grpc.StatusCode.INTERNAL, "the rule failed on bad")
        return super().Analyze(request, context)


def _request(name: str, **props: str) -> analyzer_pb2.AnalyzeRequest:
    request = analyzer_pb2.AnalyzeRequest(type="x:y:Z", name=name, urn=f"urn:pulumi:dev::proj::x:y:Z::{name}")
    request.properties.update({"name": name, **props})
    return request


@pytest.fixture
def relay():
    r = AnalyzeRelay(rpc_timeout=30)
    r.start()
    yield r
    r.close()


def test_the_method_path_is_the_one_the_sdks_stub_calls() -> None:
    channel = grpc.insecure_channel("127.0.0.1:1")
    try:
        from pulumi.runtime.proto import analyzer_pb2_grpc

        stub = analyzer_pb2_grpc.AnalyzerStub(channel)
        assert analyze_method() == "/pulumirpc.Analyzer/Analyze"
        assert stub.Analyze._method == analyze_method().encode()  # noqa: SLF001 - the stub's own path
    finally:
        channel.close()


def test_each_call_reaches_its_analyzer_unchanged_and_its_answer_comes_back_to_it(serve, relay) -> None:  # noqa: F811
    first, second = Recording(), Recording()
    lane_one, lane_two = relay.lane(serve(first)), relay.lane(serve(second))
    sent = {name: _request(name, size="x" * (200 if name == "b" else 70_000)) for name in ["a", "b", "c", "d"]}
    calls = {name: relay.analyze(lane_one if name in "ab" else lane_two, request) for name, request in sent.items()}
    answers = {name: call.result() for name, call in calls.items()}
    assert all(call.done() and call.exception() is None for call in calls.values())
    assert sorted(r.name for r in first.requests) == ["a", "b"]
    assert sorted(r.name for r in second.requests) == ["c", "d"]
    for request in first.requests + second.requests:
        assert request == sent[request.name]  # the bytes the relay passed on are the request
    assert [d.policyName for d in answers["b"].diagnostics] == ["no-b"]
    assert [len(answers[n].diagnostics) for n in "acd"] == [0, 0, 0]


def test_a_failed_call_raises_its_status_and_details(serve, relay) -> None:  # noqa: F811
    lane = relay.lane(serve(Recording()))
    bad, good = relay.analyze(lane, _request("bad")), relay.analyze(lane, _request("a"))
    with pytest.raises(grpc.RpcError) as err:
        bad.result()
    assert isinstance(err.value, RelayedRpcError)
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.INTERNAL, "the rule failed on bad")
    assert good.result().diagnostics == []


def test_calls_to_an_analyzer_that_is_gone_fail_as_unavailable(relay) -> None:
    with socket_port() as port:
        pass  # nothing listens there any more
    call = relay.analyze(relay.lane(port), _request("a"))
    assert call.exception().code() == grpc.StatusCode.UNAVAILABLE


def test_a_relay_that_dies_fails_its_unanswered_calls_and_every_later_one(serve) -> None:  # noqa: F811
    release = threading.Event()

    class Stuck(Recording):
        def Analyze(self, request, context):  # noqa: N802
            release.wait(30)
            return super().Analyze(request, context)

    relay = AnalyzeRelay(rpc_timeout=30)
    relay.start()
    try:
        lane = relay.lane(serve(Stuck()))
        waiting = relay.analyze(lane, _request("a"))
        relay.flush()
        relay._proc.kill()  # noqa: SLF001 - the relay dies mid-call
        error = waiting.exception()
        later = relay.analyze(lane, _request("b")).exception()
    finally:
        release.set()
        relay.close()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "the process relaying Analyze calls to the pack exited (exit code -9)"
    assert (later.code(), later.details()) == (error.code(), error.details())


def test_background_processes_run_at_a_lower_priority() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        before = os.getpriority(os.PRIO_PROCESS, child.pid)
        in_background(child.pid)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, before + BACKGROUND_NICENESS)
    finally:
        child.kill()
        child.wait()


def test_a_streamed_check_sends_every_analyze_call_through_the_relay(tmp_path, monkeypatch) -> None:
    from agentstage.policy import run_check
    from tests.conftest import ROOT

    relayed: list[str] = []
    analyze = relay_module.AnalyzeRelay.analyze

    def counting(self, lane, request):
        relayed.append(request.urn)
        return analyze(self, lane, request)

    monkeypatch.setattr(relay_module.AnalyzeRelay, "analyze", counting)
    report = run_check(ROOT, "production")
    assert len(relayed) == report.resources == len(set(relayed))


def test_a_pack_that_dies_mid_analysis_of_a_streamed_check_is_named(tmp_path) -> None:
    from agentstage.policy import PolicyError, run_check
    from tests.conftest import ROOT

    pack = rule_pack(tmp_path / "dies", "os._exit(7)")
    with pytest.raises(PolicyError) as err:
        run_check(ROOT, "production", pack_dir=pack)  # streamed: the calls go through the relay
    assert str(err.value).startswith("policy pack probe exited (exit code 7) while analysing urn:pulumi:production::")


class socket_port:
    """A port on 127.0.0.1 that was free a moment ago."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


def test_closing_with_calls_unanswered_stops_the_relay_at_once(serve) -> None:  # noqa: F811
    import time

    release = threading.Event()

    class Slow(Recording):
        def Analyze(self, request, context):  # noqa: N802
            release.wait(30)
            return super().Analyze(request, context)

    relay = AnalyzeRelay(rpc_timeout=30)
    relay.start()
    try:
        call = relay.analyze(relay.lane(serve(Slow())), _request("a"))
        relay.flush()
        started = time.monotonic()
        relay.close()  # an abandoned check: the call is never going to be read
        took = time.monotonic() - started
    finally:
        release.set()
    assert took < 3, f"close() waited {took:.1f}s for a call nobody will read"
    assert call.exception().code() == grpc.StatusCode.UNAVAILABLE
