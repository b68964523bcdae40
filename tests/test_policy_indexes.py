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


edge = _load("edge")
a2a = _load("a2a")


class Resource:
    """A PolicyResource as the stack policies read it."""

    def __init__(self, urn: str, name: str, props: dict, deps: dict) -> None:
        self.urn, self.name, self.props, self.property_dependencies = urn, name, props, deps
        self.resource_type = "t"


SEGMENTS = st.sampled_from(["svc", "bot", "projects", "p", "services", "regions", "us", ""])
VALUES = st.one_of(
    st.none(),
    st.just(UNKNOWN),
    st.lists(SEGMENTS, min_size=1, max_size=6).map("/".join),
)


@st.composite
def stacks(draw):
    targets = [
        Resource(f"urn:target:{i}", draw(SEGMENTS) or "t", {"name": draw(st.one_of(st.none(), SEGMENTS))}, {})
        for i in range(3)
    ]
    resources = []
    for i in range(draw(st.integers(0, 8))):
        deps = draw(st.lists(st.sampled_from(targets), max_size=2))
        props = {"name": draw(VALUES)}
        resources.append(Resource(f"urn:r:{i}", f"r{i}", props, {"name": deps} if deps else {}))
    return targets, resources


@settings(max_examples=400, deadline=None)
@given(stacks())
def test_a_reference_index_leaves_out_only_resources_that_do_not_name_the_target(drawn) -> None:
    """The oracles are the policies' own questions: edge._refers (names or ``.../<name>``) and
    a2a._names_service (names or ``.../services/<name>``)."""
    targets, resources = drawn
    helpers = sys.modules["helpers"]
    values = lambda r: [r.props["name"]]  # noqa: E731
    by_slash = helpers.RefIndex(resources, "name", values)
    by_service = helpers.RefIndex(resources, "name", values, separator="/services/")
    for target in targets:
        names = edge._names(target)
        found = by_slash.candidates(target, names)
        assert found == [r for r in resources if r in found]  # stack order
        assert [r for r in resources if edge._refers(r, "name", r.props["name"], target) is not False] == [
            r for r in found if edge._refers(r, "name", r.props["name"], target) is not False
        ]
        found = by_service.candidates(target, a2a.service_names(target))
        assert [r for r in resources if a2a._names_service(r, target) is not False] == [
            r for r in found if a2a._names_service(r, target) is not False
        ]
