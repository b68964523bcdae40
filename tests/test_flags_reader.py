"""The flags reader agents use at run time, with the REAL ParameterManagerClient against a local
Parameter Manager (tests/parameter_fake.py) speaking gRPC with the library's own messages:
the value of a flag, the cache, the latest version after a flip, and what the agent gets when
the service is unreachable or the payload is bad (the last good flags, else the safe default)."""

from __future__ import annotations

import logging

import grpc
import pytest

from agentstage import flags as flagsmod
from agentstage.flags import FLAGS_ENV, FlagReader, parameter_name, parse_flags, render_flags, version_id
from tests.parameter_fake import FakeParameters, serve

PARAMETER = parameter_name("acme-agents-prod", "support-bot", "production")
LATEST = f"{PARAMETER}/versions/latest"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server():
    fake = FakeParameters()
    with serve(fake) as srv:
        yield srv


@pytest.fixture
def fake(server):
    server.fake.reset()
    server.fake.add_parameter(PARAMETER, labels={"agent": "support-bot"})
    return server.fake


@pytest.fixture
def clock():
    return Clock()


def reader(server, clock, **kwargs) -> FlagReader:
    return FlagReader(PARAMETER, client=server.client(), clock=clock, **kwargs)


def publish(fake: FakeParameters, flags: dict[str, bool]) -> str:
    """A new version as the stack writes it (id and payload from the contract)."""
    vid = version_id(flags)
    fake.add_version(PARAMETER, vid, render_flags(flags))
    return vid


def test_a_flag_is_read_from_the_latest_version(server, fake, clock):
    vid = publish(fake, {"web_search_tool": False, "citations": True})
    r = reader(server, clock)
    assert r.flag("web_search_tool") is False
    assert r.flag("citations") is True
    assert r.flags() == {"web_search_tool": False, "citations": True}
    assert r.version == f"{PARAMETER}/versions/{vid}"
    # one render of the alias latest, nothing else (no list, no get)
    assert fake.calls == [("RenderParameterVersion", LATEST)]


def test_reads_are_cached_for_the_ttl_then_the_new_latest_is_read(server, fake, clock):
    publish(fake, {"web_search_tool": True})
    r = reader(server, clock, ttl=30)
    assert r.flag("web_search_tool") is True
    vid = publish(fake, {"web_search_tool": False})  # a flip: one new version
    clock.now += 29.9
    assert r.flag("web_search_tool") is True  # still cached
    assert len(fake.calls) == 1
    clock.now += 0.1
    assert r.flag("web_search_tool") is False  # the TTL passed: latest is the new version
    assert r.version == f"{PARAMETER}/versions/{vid}"
    assert fake.calls == [("RenderParameterVersion", LATEST)] * 2


def test_a_flag_missing_from_the_payload_takes_the_default(server, fake, clock):
    publish(fake, {"citations": True})
    r = reader(server, clock, defaults={"web_search_tool": True})
    assert r.flag("web_search_tool") is True  # defaults
    assert r.flag("web_search_tool", False) is False  # the call's own default wins
    assert r.flag("unknown") is False  # no default at all: off
    assert r.flags() == {"web_search_tool": True, "citations": True}


def test_unreachable_before_any_read_gives_the_safe_default_and_logs_once(server, fake, clock, caplog):
    publish(fake, {"web_search_tool": True})
    fake.unavailable = True
    r = reader(server, clock, ttl=30, defaults={"web_search_tool": False})
    with caplog.at_level(logging.WARNING, logger="agentstage.flags"):
        assert r.flag("web_search_tool") is False  # never raises: the default
        clock.now += 30
        assert r.flag("web_search_tool") is False
    assert len(fake.calls) == 2  # retried once per TTL, not on every call
    warnings = [rec.getMessage() for rec in caplog.records]
    assert warnings == [
        f"feature flags: cannot read {LATEST} (ServiceUnavailable: 503 the service is unavailable): using the defaults"
    ]


def test_unreachable_after_a_good_read_keeps_the_last_good_flags(server, fake, clock, caplog):
    publish(fake, {"web_search_tool": False})
    r = reader(server, clock, ttl=30, defaults={"web_search_tool": True})
    assert r.flag("web_search_tool") is False
    fake.unavailable = True
    clock.now += 31
    with caplog.at_level(logging.INFO, logger="agentstage.flags"):
        assert r.flag("web_search_tool") is False  # the last good value, not the default
        fake.unavailable = False
        vid = publish(fake, {"web_search_tool": True})
        clock.now += 31
        assert r.flag("web_search_tool") is True  # back: the new latest
    assert r.version == f"{PARAMETER}/versions/{vid}"
    assert [rec.getMessage() for rec in caplog.records] == [
        f"feature flags: cannot read {LATEST} (ServiceUnavailable: 503 the service is unavailable): keeping the last "
        "flags read",
        f"feature flags read again from {PARAMETER}/versions/{vid}",
    ]


def test_a_service_with_nothing_listening_gives_the_default_at_once(clock):
    import socket
    import time

    with socket.socket() as s:  # a free port of 127.0.0.1, closed again: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = FakeParameters()
    srv = serve(fake)
    srv.stop()
    srv.address = f"127.0.0.1:{port}"
    r = FlagReader(PARAMETER, client=srv.client(), clock=clock, defaults={"citations": True})
    start = time.perf_counter()
    assert r.flag("citations") is True and r.flag("web_search_tool") is False
    assert time.perf_counter() - start < 1.0


def test_a_slow_service_costs_at_most_the_timeout(server, fake, clock):
    import time

    publish(fake, {"web_search_tool": True})
    fake.delay = 1.0
    try:
        r = reader(server, clock, timeout=0.2, defaults={"web_search_tool": False})
        start = time.perf_counter()
        assert r.flag("web_search_tool") is False  # the deadline passed: the default, no retry
        assert time.perf_counter() - start < 0.9
    finally:
        fake.delay = 0.0


def test_a_permission_error_is_handled_like_an_outage(server, fake, clock):
    publish(fake, {"web_search_tool": True})
    fake.fail_next("RenderParameterVersion", grpc.StatusCode.PERMISSION_DENIED, "Permission denied on resource")
    r = reader(server, clock)
    assert r.flag("web_search_tool") is False


def test_a_bad_payload_keeps_the_last_good_flags(server, fake, clock, caplog):
    publish(fake, {"web_search_tool": True})
    r = reader(server, clock, ttl=30)
    assert r.flag("web_search_tool") is True
    fake.add_version(PARAMETER, "by-hand", '{"web_search_tool": "no"}')  # valid JSON, not a flag
    clock.now += 30
    with caplog.at_level(logging.WARNING, logger="agentstage.flags"):
        assert r.flag("web_search_tool") is True
    assert [rec.getMessage() for rec in caplog.records] == [
        f"feature flags: {PARAMETER}/versions/by-hand is not a JSON object of flags (flag 'web_search_tool' is not "
        "true or false): keeping the last flags read"
    ]


def test_no_version_yet_gives_the_defaults(server, fake, clock):
    r = reader(server, clock, defaults={"citations": True})
    assert r.flag("citations") is True
    assert fake.calls == [("RenderParameterVersion", LATEST)]


def test_the_parameter_comes_from_the_env_var(server, fake, clock, monkeypatch):
    publish(fake, {"citations": True})
    monkeypatch.setenv(FLAGS_ENV, PARAMETER)
    r = FlagReader(client=server.client(), clock=clock)
    assert r.parameter == PARAMETER and r.flag("citations") is True


def test_without_the_env_var_nothing_is_called_and_defaults_answer(server, fake, clock, monkeypatch, caplog):
    monkeypatch.delenv(FLAGS_ENV, raising=False)
    r = FlagReader(client=server.client(), clock=clock, defaults={"citations": True})
    with caplog.at_level(logging.WARNING, logger="agentstage.flags"):
        assert r.flag("citations") is True and r.flag("web_search_tool") is False
    assert fake.calls == []
    assert [rec.getMessage() for rec in caplog.records] == [
        "feature flags: AGENTSTAGE_FLAGS_PARAMETER is not set: feature flags keep their defaults"
    ]


def test_the_module_level_flag_uses_one_shared_reader(server, fake, monkeypatch):
    publish(fake, {"citations": True})
    monkeypatch.setenv(FLAGS_ENV, PARAMETER)
    monkeypatch.setattr(flagsmod, "_shared", FlagReader(client=server.client()))
    assert flagsmod.flag("citations") is True and flagsmod.flag("other", True) is True
    assert fake.calls == [("RenderParameterVersion", LATEST)]


def test_the_client_library_is_imported_only_when_a_read_needs_it():
    import subprocess
    import sys

    code = (
        "import sys, agentstage.flags as f\n"
        "r = f.FlagReader('projects/p/locations/global/parameters/x', defaults={'a': True})\n"
        "assert 'google.cloud.parametermanager_v1' not in sys.modules\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pulumi', 'grpc', 'google.cloud.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("[true]", "the payload is a JSON list, not an object of flags"),
        ('{"a": 1}', "flag 'a' is not true or false"),
    ],
)
def test_parse_flags_refuses_what_is_not_flags(payload, message):
    with pytest.raises(ValueError) as err:
        parse_flags(payload)
    assert str(err.value) == message


def test_parse_flags_reads_what_render_flags_writes():
    flags = {"b": True, "a": False}
    assert render_flags(flags) == '{"a":false,"b":true}'
    assert parse_flags(render_flags(flags)) == flags
    assert version_id(flags) == version_id({"a": False, "b": True})
    assert version_id(flags) != version_id({"a": True, "b": True})
    assert version_id({}).startswith("config-") and len(version_id({})) == len("config-") + 16
