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
from agentstage.policy.process import BACKGROUND_NICENESS
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


class Held(Recording):
    """Answers ``Analyze`` only once ``release`` is set (or after 30 s)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def Analyze(self, request, context):  # noqa: N802
        self.release.wait(30)
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


def test_a_relay_that_dies_fails_its_unanswered_calls_and_every_later_one(serve, relay) -> None:  # noqa: F811
    held = Held()
    try:
        lane = relay.lane(serve(held))
        waiting = relay.analyze(lane, _request("a"))
        relay.flush()
        os.kill(relay.pid, 9)  # the relay dies mid-call
        error = waiting.exception()
        later = relay.analyze(lane, _request("b")).exception()
    finally:
        held.release.set()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "the process relaying Analyze calls to the pack exited (exit code -9)"
    assert (later.code(), later.details()) == (error.code(), error.details())


def test_the_relay_and_the_pack_processes_run_at_a_lower_priority(relay) -> None:
    from agentstage.policy.process import PackProcess
    from tests.conftest import ROOT

    own = os.getpriority(os.PRIO_PROCESS, 0)
    expected = min(19, own + BACKGROUND_NICENESS)
    pack = PackProcess(ROOT / "policies" / "agent_guard")
    pack.launch()
    try:
        assert os.getpriority(os.PRIO_PROCESS, pack.pid) == expected
    finally:
        pack.close()
    assert os.getpriority(os.PRIO_PROCESS, relay.pid) == expected


def test_lanes_asked_for_at_the_same_time_are_all_different(serve, relay) -> None:  # noqa: F811
    port = serve(Recording())
    for _ in range(100):
        got: list[int] = []
        threads = [threading.Thread(target=lambda: got.append(relay.lane(port))) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(got)) == 3, got


def test_a_relay_that_cannot_start_leaves_the_calls_direct(tmp_path) -> None:
    from agentstage.policy import PolicyPackProcess

    broken = AnalyzeRelay(python=sys.executable, rpc_timeout=30)
    broken.python = "/bin/false"  # starts, says nothing, exits
    broken.start()
    try:
        assert broken.ready(10) is False
        with PolicyPackProcess(project="agent-platform", stack="production") as pack:
            pack.relay_through(broken)
            assert not pack.relayed  # its Analyze calls stay direct
    finally:
        broken.close()


def test_a_relay_whose_parent_dies_exits_when_its_calls_are_answered(serve, tmp_path) -> None:  # noqa: F811
    held = Held()
    release = held.release

    from tests.conftest import ROOT

    port = serve(held)
    parent = tmp_path / "parent.py"
    parent.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from agentstage.policy.relay import AnalyzeRelay\n"
        "from tests.test_policy_relay import _request\n"
        "relay = AnalyzeRelay(rpc_timeout=30)\n"
        "relay.start()\n"
        f"relay.analyze(relay.lane({port}), _request('a'))\n"
        "relay.flush()\n"
        "print(relay.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, str(parent)], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().isdigit(), out.stderr
    pid = int(out.stdout)
    release.set()  # the call is answered to a parent that is gone
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if open(f"/proc/{pid}/stat").read().split()[2] == "Z":
            return  # exited; only its (dead) parent could reap it
        threading.Event().wait(0.1)
    os.kill(pid, 9)
    pytest.fail("the relay outlived its parent by 10 s")


def test_a_streamed_check_sends_every_analyze_call_through_the_relay(tmp_path, monkeypatch) -> None:
    from agentstage.engine import run_plan
    from agentstage.policy import PolicyPackProcess
    from tests.conftest import ROOT

    relayed: list[tuple[int, str]] = []
    lanes: dict[int, int] = {}
    analyze, lane = relay_module.AnalyzeRelay.analyze, relay_module.AnalyzeRelay.lane

    def counting(self, number, request):
        relayed.append((number, request.urn))
        return analyze(self, number, request)

    both = threading.Event()

    def recording(self, port):
        number = lanes[port] = lane(self, port)
        if len(lanes) == 2:
            both.set()
        return number

    def plan(on_resource):
        def hold_after_the_first(record):  # until the extra process has its lane
            on_resource(record)
            both.wait(60)

        return run_plan(ROOT, "production", on_resource=hold_after_the_first)

    monkeypatch.setattr(relay_module.AnalyzeRelay, "analyze", counting)
    monkeypatch.setattr(relay_module.AnalyzeRelay, "lane", recording)
    pack = PolicyPackProcess(project="agent-platform", stack="production")
    pack.launch()
    try:  # with the extra pack process from the first resource on
        _, report = pack.plan_and_check(plan, large_plan=1)
    finally:
        pack.close()
    assert len(relayed) == report.resources == len({urn for _, urn in relayed})
    assert len(lanes) == 2 and len(set(lanes.values())) == 2, lanes  # each process its own lane
    assert {number for number, _ in relayed} == set(lanes.values())  # and both got calls


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


def test_closing_with_calls_unanswered_stops_the_relay_at_once(serve, relay) -> None:  # noqa: F811
    import time

    held = Held()
    try:
        call = relay.analyze(relay.lane(serve(held)), _request("a"))
        relay.flush()
        started = time.monotonic()
        relay.close()  # an abandoned check: the call is never going to be read
        took = time.monotonic() - started
    finally:
        held.release.set()
    assert took < 3, f"close() waited {took:.1f}s for a call nobody will read"
    assert call.exception().code() == grpc.StatusCode.UNAVAILABLE
