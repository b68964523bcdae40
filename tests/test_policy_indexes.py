"""The indexes that keep agent_guard's stack policies linear in the size of the stack answer
exactly as the scans they replace: for any alert policies and services (names with quotes,
unknown labels and conditions included), agent-alert-policies finds the same coverage from
the index's candidates as from every alert of the stack."""

from __future__ import annotations

import importlib.util
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from agentstage.policy import PACK_DIR


def _load(name: str):
    sys.path.insert(0, str(PACK_DIR))  # the pack imports its own helpers module
    try:
        spec = importlib.util.spec_from_file_location(f"agent_guard_{name}_for_index_test", PACK_DIR / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(PACK_DIR))


reliability = _load("reliability")
UNKNOWN = reliability.UNKNOWN
CLOUD_RUN = reliability.CLOUD_RUN

NAMES = st.sampled_from(["support-bot", "Support-Bot", "bot", 'we"ird', "planner", ""])
LABELS = st.one_of(st.none(), st.just(UNKNOWN), st.sampled_from(["support-bot", "planner", "bot"]))
FILTERS = [
    'metric.type="run.googleapis.com/request_latencies"',
    'metric.type="run.googleapis.com/request_count" metric.labels.response_code_class="5xx"',
]


@st.composite
def alerts(draw):
    name = draw(NAMES)
    quoted = draw(st.sampled_from(['resource.labels.service_name="{}"', 'x "{}" y', '"{}"', "{}", '""{}""']))
    text = "\n".join([draw(st.sampled_from(FILTERS)), quoted.format(name)]).lower()
    return reliability._Alert(
        name=f"alert-{name}",
        channels=draw(st.sampled_from([True, False, UNKNOWN])),
        agent=draw(LABELS),
        text=text,
        unknown_text=draw(st.sampled_from([[], ["conditions[0].filter"]])),
    )


@st.composite
def services(draw):
    return reliability._Service(
        urn="urn:svc",
        type=CLOUD_RUN,
        shown="svc",
        name=draw(st.one_of(st.just(UNKNOWN), NAMES)),
        agent=draw(LABELS),
        unknown=[],
    )


@settings(max_examples=400, deadline=None)
@given(st.lists(alerts(), max_size=8), services())
def test_the_alert_index_gives_the_coverage_of_a_scan_of_every_alert(found, service) -> None:
    index = reliability._AlertIndex(found)
    assert reliability._coverage(index.candidates(service), service) == reliability._coverage(found, service)
