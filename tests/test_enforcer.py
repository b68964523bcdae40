"""The spend-cap enforcer as it runs in the cloud: its source archive served by functions-framework
on 127.0.0.1 in a child process, receiving budget notifications (the documented JSON and
attributes) as Eventarc delivers Pub/Sub messages (binary-mode CloudEvents built with the
``cloudevents`` library), and acting through the real Cloud Run and Parameter Manager client
libraries against local gRPC servers (tests/run_fake.py, tests/parameter_fake.py)."""

from __future__ import annotations

import base64
import json
import logging

import grpc
import pytest

from agentstage.enforcer import actions
from agentstage.enforcer.config import ConfigError, parse_caps
from agentstage.enforcer.main import handle_event
from agentstage.enforcer.notification import PUBSUB_EVENT_TYPE, MalformedNotification, decode
from components.contract import CANARY_TAG
from tests.enforcer_harness import (
    ACCOUNT,
    DISPLAY_NAMES,
    notification,
    parameter,
    pubsub_event,
    running_enforcer,
    service,
)

SUPPORT, RESEARCH, WRITER = service("support-bot"), service("research-agent"), service("writer")
FLAGS = parameter("writer")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_enforcer(tmp_path_factory.mktemp("enforcer")) as running:
        yield running


@pytest.fixture
def enforcer(server):
    server.reset()
    return server


def untouched(enforcer, *names: str) -> bool:
    """No update call reached these services."""
    updated = set(enforcer.run.updates())
    return not updated & set(names)


# --- the actions, one agent at a time --------------------------------------------------------


def test_past_its_cap_a_canary_goes_to_zero_and_nothing_else_changes(enforcer):
    response = enforcer.notify("support-bot", 320.0, threshold=1.0)
    assert response.status_code == 200
    assert enforcer.run.traffic(SUPPORT) == [
        ("support-bot-1-3-2", 100, ""),
        ("support-bot-1-4-0-93457a87", 0, "canary"),
    ]
    assert enforcer.run.calls == [("GetService", SUPPORT), ("UpdateService", SUPPORT)]
    assert enforcer.run.traffic(RESEARCH) == [("research-agent-2-1-0", 100, "")]
    assert enforcer.parameters.versions(FLAGS) == ["config-0"]
    entry = enforcer.wait_for_log("applied")
    assert entry["severity"] == "WARNING" and entry["agent"] == "support-bot" and entry["action"] == "canary-to-zero"
    assert entry["budget"] == f"billingAccounts/{ACCOUNT}/budgets/b-support" and entry["cost"] == 320.0
    assert "canary 5% -> 0%, stable support-bot-1-3-2 now 100%" in entry["message"]


def test_a_repeated_notification_makes_no_update_call(enforcer):
    assert enforcer.notify("support-bot", 320.0, message_id="7001").status_code == 200
    enforcer.wait_for_log("applied")
    # Pub/Sub redelivers the same message; the budget notifies again later the same day
    assert enforcer.notify("support-bot", 320.0, message_id="7001").status_code == 200
    assert enforcer.notify("support-bot", 340.0).status_code == 200
    assert enforcer.run.updates() == [SUPPORT]
    assert enforcer.run.calls[-1] == ("GetService", SUPPORT)
    assert enforcer.wait_for_log("already-in-force")["agent"] == "support-bot"


def test_cap_instances_lowers_the_service_wide_maximum_once(enforcer):
    # research-agent acts at 90% of its amount
    assert enforcer.notify("research-agent", 271.0, amount=300.0).status_code == 200
    capped = enforcer.run.service(RESEARCH)
    assert capped.scaling.max_instance_count == 2
    assert [(t.revision, t.percent) for t in capped.traffic] == [("research-agent-2-1-0", 100)]
    assert enforcer.notify("research-agent", 290.0).status_code == 200
    assert enforcer.run.updates() == [RESEARCH]
    assert untouched(enforcer, SUPPORT, WRITER)


def test_flags_off_writes_one_new_version_keeping_the_other_flags(enforcer):
    assert enforcer.notify("writer", 301.0).status_code == 200
    versions = enforcer.parameters.versions(FLAGS)
    assert len(versions) == 2 and versions[1].startswith("spend-cap-20261101-")
    assert json.loads(enforcer.parameters.payload(FLAGS)) == {"citations": True, "web_search_tool": False}
    assert enforcer.notify("writer", 330.0).status_code == 200
    assert enforcer.parameters.versions(FLAGS) == versions
    assert [c for c in enforcer.parameters.calls if c[0] == "CreateParameterVersion"] == [
        ("CreateParameterVersion", FLAGS)
    ]
    assert enforcer.run.calls == []


# --- what it ignores ---------------------------------------------------------------------------


def test_notifications_of_other_budgets_are_ignored(enforcer):
    # the environment budget notifies too, and any budget may publish to a topic
    assert enforcer.notify("agentstage production (acme-agents-prod)", 5000.0, amount=1500.0).status_code == 200
    # the right display name with another budget's id is not the cap's budget either
    body, attributes = notification(DISPLAY_NAMES["support-bot"], "b-someone-else", 900.0)
    assert enforcer.deliver(pubsub_event(json.dumps(body), attributes, "7002")).status_code == 200
    assert enforcer.run.calls == [] and enforcer.parameters.calls == []
    assert enforcer.wait_for_log("ignored")["budget"].endswith("/budgets/b-other")


def test_below_the_threshold_nothing_is_called(enforcer):
    assert enforcer.notify("support-bot", 299.99).status_code == 200
    # a forecast past the amount is not actual spend
    body, attributes = notification(DISPLAY_NAMES["writer"], "b-writer", 100.0)
    body["forecastThresholdExceeded"] = 1.0
    assert enforcer.deliver(pubsub_event(json.dumps(body), attributes, "7003")).status_code == 200
    assert enforcer.run.calls == [] and enforcer.parameters.calls == []
    below = enforcer.wait_for_logs("below-threshold", 2)
    assert [(e["agent"], e["cost"]) for e in below] == [("support-bot", 299.99), ("writer", 100.0)]
    assert "spend 299.99 USD is 99.997% of 300.00; the cap acts at 100%" in below[0]["message"]


# --- malformed messages and failures -------------------------------------------------------------


def test_a_malformed_message_is_logged_and_acknowledged(enforcer):
    _, attributes = notification("x", "b-support", 1.0)
    response = enforcer.deliver(pubsub_event(b"not json at all", attributes, "7004"))
    # 2xx: Pub/Sub push redelivers every non-2xx answer, and these bytes would fail forever
    assert response.status_code == 200
    entry = enforcer.wait_for_log("malformed")
    assert entry["severity"] == "ERROR" and entry["event_id"] == "7004"
    assert entry["message"].startswith(
        "rejected a malformed budget notification (acknowledged, not retried): "
        "the message data is not base64 of a JSON object"
    )
    assert enforcer.run.calls == []


def test_a_failed_api_call_answers_500_so_pubsub_redelivers(enforcer):
    enforcer.run.fail_next("UpdateService", grpc.StatusCode.UNAVAILABLE)
    assert enforcer.notify("support-bot", 320.0, message_id="7005").status_code == 500
    assert enforcer.run.traffic(SUPPORT)[1] == ("support-bot-1-4-0-93457a87", 5, "canary")
    failed = enforcer.wait_for_log("failed")
    assert failed["severity"] == "ERROR" and failed["budget"].endswith("/budgets/b-support")
    assert failed["message"].startswith(
        "spend cap not enforced yet, the delivery will be retried: updating "
        f"{SUPPORT} failed: 503 UpdateService failed on purpose"
    )
    # the redelivery succeeds
    assert enforcer.notify("support-bot", 320.0, message_id="7005").status_code == 200
    assert enforcer.run.traffic(SUPPORT)[1] == ("support-bot-1-4-0-93457a87", 0, "canary")


# --- in process: decoding, config, decisions ---------------------------------------------------


def _data(body, attributes=None, raw=None):
    attributes = attributes if attributes is not None else notification("x", "b", 1.0)[1]
    data = raw if raw is not None else base64.b64encode(json.dumps(body).encode()).decode()
    return {"message": {"data": data, "attributes": attributes, "messageId": "1"}}


GOOD = notification("agentstage cap support-bot (production)", "b-support", 12.5)[0]


@pytest.mark.parametrize(
    ("event_type", "data", "message"),
    [
        ("google.cloud.storage.object.v1.finalized", _data(GOOD), "event type is 'google.cloud.storage.object.v1.finalized', "
         "not google.cloud.pubsub.topic.v1.messagePublished"),
        (PUBSUB_EVENT_TYPE, {"subscription": "s"}, "event data has no Pub/Sub message (data.message)"),
        (PUBSUB_EVENT_TYPE, {"message": {"data": "e30="}},
         "the message has no attributes; a budget notification carries budgetId"),
        (PUBSUB_EVENT_TYPE, _data(GOOD, {"billingAccountId": ACCOUNT, "budgetId": "b", "schemaVersion": "2.0"}),
         "attribute schemaVersion is '2.0'; this enforcer reads 1.0"),
        (PUBSUB_EVENT_TYPE, _data(GOOD, {"billingAccountId": ACCOUNT, "schemaVersion": "1.0"}),
         "attribute budgetId is None, not a non-empty string"),
        (PUBSUB_EVENT_TYPE, _data(GOOD, raw="%%%"),
         "the message data is not base64 of a JSON object (Only base64 data is allowed)"),
        (PUBSUB_EVENT_TYPE, _data([1, 2]), "the message data is JSON but not an object"),
        (PUBSUB_EVENT_TYPE, _data({**GOOD, "costAmount": "12.5"}), "data field costAmount is '12.5', not a non-negative number"),
        (PUBSUB_EVENT_TYPE, _data({**GOOD, "budgetAmount": -1}), "data field budgetAmount is -1, not a non-negative number"),
        (PUBSUB_EVENT_TYPE, _data({k: v for k, v in GOOD.items() if k != "budgetDisplayName"}),
         "data field budgetDisplayName is None, not a non-empty string"),
    ],
)  # fmt: skip
def test_malformed_notifications_say_what_is_wrong(event_type, data, message):
    with pytest.raises(MalformedNotification) as err:
        decode(event_type, data)
    assert str(err.value) == message


def test_a_documented_notification_decodes():
    body, attributes = notification("agentstage cap support-bot (production)", "b-support", 330.0, threshold=1.0)
    note = decode(PUBSUB_EVENT_TYPE, _data(body, attributes))
    assert note.budget == f"billingAccounts/{ACCOUNT}/budgets/b-support"
    assert (note.cost, note.amount, note.currency, note.alert_threshold) == (330.0, 300.0, "USD", 1.0)
    assert note.spent == pytest.approx(1.1)


def test_malformed_in_process_returns_without_acting(caplog):
    class Boom:
        def handle(self, note):  # pragma: no cover - must not be reached
            raise AssertionError("acted on a malformed message")

    with caplog.at_level(logging.ERROR, logger="agentstage.enforcer"):
        outcome = handle_event(PUBSUB_EVENT_TYPE, "9", {"message": {}}, Boom())
    assert outcome.result == "malformed"
    assert "the message has no attributes" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "AGENTSTAGE_SPEND_CAPS is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        ("[]", 'AGENTSTAGE_SPEND_CAPS is not an object with a "caps" list'),
        ('{"caps": [{"agent": "a"}]}', "caps[0] lacks display_name, service, threshold, action"),
        ('{"caps": [{"agent": "a", "display_name": "d", "service": "s", "threshold": 1, "action": "disable-billing"}]}',
         "caps[0].action is 'disable-billing'; allowed: canary-to-zero, cap-instances, flags-off"),
        ('{"caps": [{"agent": "a", "display_name": "d", "service": "s", "threshold": 1, "action": "flags-off"}]}',
         "caps[0] (flags-off) lacks flags or parameter"),
    ],
)  # fmt: skip
def test_a_bad_config_is_refused(text, message):
    with pytest.raises(ConfigError) as err:
        parse_caps(text)
    assert str(err.value) == message


def test_the_enforcer_knows_the_components_canary_tag():
    assert actions.CANARY_TAG == CANARY_TAG


def test_a_canary_without_a_stable_to_take_its_share_is_left_alone():
    from tests import run_fake

    fake = run_fake.FakeServices()
    fake.add(SUPPORT, [("support-bot-1-4-0-93457a87", 100, "canary")])
    with run_fake.serve(fake) as server:
        [cap] = parse_caps(json.dumps({"caps": [json_cap("support-bot", "canary-to-zero")]}))
        enforcer = actions.Enforcer([cap], run_client=server.client, parameters_client=lambda: None)
        body, attributes = notification(cap.display_name, "b-support", 400.0)
        outcome = enforcer.handle(decode(PUBSUB_EVENT_TYPE, _data(body, attributes)))
    assert outcome.result == "not-applicable"
    assert "has no stable revision serving traffic" in outcome.detail
    assert fake.updates() == []


def json_cap(agent: str, action: str) -> dict:
    return {
        "agent": agent,
        "display_name": DISPLAY_NAMES[agent],
        "budget": None,
        "service": service(agent),
        "threshold": 1.0,
        "action": action,
    }


def test_only_a_loopback_endpoint_may_replace_googles(monkeypatch):
    from agentstage.enforcer import main

    monkeypatch.setenv(main.RUN_ENDPOINT_ENV, "run.example.com:443")
    with pytest.raises(ConfigError) as err:
        main.run_client()
    assert str(err.value) == (
        "AGENTSTAGE_RUN_ENDPOINT='run.example.com:443': only a loopback host:port (a local test server) may "
        "replace Google's"
    )
