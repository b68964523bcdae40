"""The pack's lazy view of a resource behaves as the SDK's eager one.

agentstage.policy.decode_once replaces pulumi-policy's ``unknown_checking_proxy`` (which copies
and wraps a resource's whole property tree for every policy) with one that wraps each dict and
list when a policy first reads into it. A policy must not be able to tell: these tests drive
both views through the same reads, writes, iterations and ``__target`` unwraps, on generated
property trees holding every unknown sentinel, and compare what each step returned or raised.
"""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pulumi_policy import proxy as sdk_proxy
from pulumi_policy.deserialize import serialize_properties

from agentstage.policy.process import DECODE_ONCE

_spec = importlib.util.spec_from_file_location("decode_once_under_test", DECODE_ONCE)
decode_once = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(decode_once)

UNKNOWNS = [
    sdk_proxy.UNKNOWN_BOOLEAN_VALUE,
    sdk_proxy.UNKNOWN_NUMBER_VALUE,
    sdk_proxy.UNKNOWN_STRING_VALUE,
    sdk_proxy.UNKNOWN_ARRAY_VALUE,
    sdk_proxy.UNKNOWN_ASSET_VALUE,
    sdk_proxy.UNKNOWN_ARCHIVE_VALUE,
    sdk_proxy.UNKNOWN_OBJECT_VALUE,
]
KEYS = ["a", "b", "__target"]
leaves = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["x", "", *UNKNOWNS]))
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=20,
)
steps = st.one_of(
    st.sampled_from(KEYS),
    st.integers(-2, 2),
    st.just(slice(1, None)),
    st.just(True),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.lists(steps, max_size=4)),
        st.tuples(st.just("write"), st.lists(steps, max_size=3), trees),
        st.tuples(st.just("items"), st.lists(steps, max_size=3)),
        st.tuples(st.just("contains"), st.lists(steps, max_size=3), st.sampled_from(KEYS)),
        st.tuples(st.just("target"), st.lists(steps, max_size=3)),
        st.tuples(st.just("walk"), st.lists(steps, max_size=2)),
    ),
    max_size=8,
)


def _shape(value: Any) -> Any:
    """What a policy sees of one value without reading into it."""
    if isinstance(value, sdk_proxy._DictProxy):
        return ("dict", list(iter(value)), len(value))
    if isinstance(value, sdk_proxy._ListProxy):
        return ("list", len(value))
    if isinstance(value, list):  # a slice of a list view, or what __target unwraps: plain, holding views
        return ("plain list", [_shape(v) for v in value])
    if isinstance(value, dict):
        return ("plain dict", {k: _shape(v) for k, v in value.items()})
    return ("leaf", value)


def _outcome(fn) -> Any:
    try:
        return ("ok", fn())
    except sdk_proxy.UnknownValueError as err:
        return ("unknown", err.message, err.props, err.unknown_type_sentinel)
    except Exception as err:  # noqa: BLE001 - the exact error is what is compared
        return ("error", type(err).__name__, str(err))


def _walk(view: Any, path: list[Any]) -> Any:
    for step in path:
        view = view[step]
    return view


def _every_read(view: Any) -> list[Any]:
    """Read everything under ``view``, depth first: each value's shape, or the error reading it."""
    out = []
    if isinstance(view, sdk_proxy._DictProxy):
        keys: Any = list(iter(view))
    elif isinstance(view, sdk_proxy._ListProxy):
        keys = range(len(view))
    else:
        return out
    for key in keys:
        got = _outcome(lambda key=key: view[key])
        out.append((key, got if got[0] != "ok" else _shape(got[1])))
        if got[0] == "ok":
            out.append(_every_read(got[1]))
    return out


def _run(view: Any, ops: list[tuple]) -> list[Any]:
    seen = []
    for op in ops:
        kind, path = op[0], op[1]
        if kind == "read":
            seen.append(_outcome(lambda: _shape(_walk(view, path))))
        elif kind == "write":
            value = op[2]

            def write(path=path, value=value):
                _walk(view, path[:-1])[path[-1]] = copy.deepcopy(value)

            seen.append(_outcome(write) if path else ("skip",))
        elif kind == "items":
            seen.append(_outcome(lambda: [(k, _shape(v)) for k, v in _walk(view, path).items()]))
        elif kind == "walk":
            seen.append(_outcome(lambda: _every_read(_walk(view, path))))
        elif kind == "contains":
            seen.append(_outcome(lambda: op[2] in _walk(view, path)))
        else:
            seen.append(_outcome(lambda: serialize_properties(_walk(view, path))))
    return seen


@settings(max_examples=200, deadline=None)
@given(tree=st.dictionaries(st.sampled_from(KEYS), trees, max_size=4), ops=operations)
# written into what ``__target`` handed out, then read through the view: as it was written
@example(tree={}, ops=[("write", ["__target", "a"], []), ("read", ["a"])])
@example(tree={"a": [{"b": 1}, 2]}, ops=[("write", ["a", "__target", 1], {"b": 2}), ("read", ["a", 1])])
@example(
    tree={"a": {"b": {}}}, ops=[("read", ["a", "__target"]), ("write", ["a", "__target", "b"], []), ("walk", ["a"])]
)
def test_the_lazy_view_answers_every_read_write_and_unwrap_as_the_sdk_view(tree, ops):
    original = copy.deepcopy(tree)
    eager, lazy = sdk_proxy.unknown_checking_proxy(tree), decode_once.unknown_checking_proxy(tree)
    assert _run(lazy, ops) == _run(eager, ops)
    # neither view wrote into the decoded value the policies share
    assert tree == original
    # and what is left of each view, unwrapped as the SDK serialises a view, is the same
    assert serialize_properties(lazy) == serialize_properties(eager)


def test_an_unknown_read_deep_in_the_lazy_view_names_its_whole_path():
    props = {"template": {"containers": [{"image": sdk_proxy.UNKNOWN_STRING_VALUE}]}}
    view = decode_once.unknown_checking_proxy(props)
    with pytest.raises(sdk_proxy.UnknownValueError) as err:
        view["template"]["containers"][0]["image"]
    assert err.value.message == "string value at .template.containers.0.image can't be known during preview"
    with pytest.raises(sdk_proxy.UnknownValueError) as err:
        view["template"]["containers"][-1]["image"]
    assert err.value.props == ["template", "containers", "0", "image"]


def test_a_policy_writing_into_its_lazy_view_changes_neither_the_shared_value_nor_another_view():
    shared = {"template": {"containers": [{"image": "x"}]}}
    first, second = decode_once.unknown_checking_proxy(shared), decode_once.unknown_checking_proxy(shared)
    first["template"]["containers"][0]["image"] = "changed"
    first["template"]["extra"] = {"raw": [1]}
    assert shared == {"template": {"containers": [{"image": "x"}]}}
    assert second["template"]["containers"][0]["image"] == "x" and "extra" not in second["template"]
    # a value the policy wrote is read back as written (the SDK does not wrap it either)
    assert type(first["template"]["extra"]) is dict
    third = decode_once.unknown_checking_proxy(shared)
    third["template"] = {"replaced": [1]}  # over a value no read had wrapped yet
    assert type(third["template"]) is dict


def test_the_lazy_view_copies_only_what_a_policy_reads():
    """The point of it: a policy that reads one property does not pay for the others."""
    shared = {"big": [{"n": i} for i in range(1000)], "small": {"name": "a"}}
    view = decode_once.unknown_checking_proxy(shared)
    assert view["small"]["name"] == "a"
    assert view._owned == {"small"}  # the list of a thousand was never copied or wrapped
    assert view._DictProxy__target["big"] is shared["big"]
    untouched = decode_once.unknown_checking_proxy(shared)
    assert len(untouched) == 2 and "big" in untouched._DictProxy__target
    assert untouched._DictProxy__target is shared  # a view never read into copies nothing


def test_adding_a_key_while_looping_over_a_view_fails_as_in_the_sdk_view():
    for make in (sdk_proxy.unknown_checking_proxy, decode_once.unknown_checking_proxy):
        view = make({"a": 1})
        with pytest.raises(RuntimeError, match="dictionary changed size during iteration"):
            for key in view:
                view[key + "x"] = 2


def test_analyze_stack_runs_with_the_cycle_collector_paused_and_puts_it_back() -> None:
    import gc
    import threading

    seen: list[bool] = []
    inside, leave = threading.Event(), threading.Event()

    def answer(self, request, context):
        seen.append(gc.isenabled())
        if request == "first":
            inside.set()
            leave.wait(10)
        return request

    paused = decode_once._without_collector(answer)
    was = gc.isenabled()
    gc.enable()
    try:
        first = threading.Thread(target=paused, args=(None, "first", None))
        first.start()
        inside.wait(10)
        assert paused(None, "second", None) == "second"  # overlapping calls share one pause
        assert not gc.isenabled(), "the first call is still answering"
        leave.set()
        first.join()
        assert gc.isenabled(), "the collector runs again after the last call"
        gc.disable()
        paused(None, "third", None)
        assert not gc.isenabled(), "a collector that was off stays off"
    finally:
        leave.set()
        (gc.enable if was else gc.disable)()
    assert seen == [False, False, False]
