"""Decode each resource once per request in a pack process, and build a policy's view of it
only as far as the policy reads it.

For every ``Analyze`` request, pulumi-policy's analyzer decodes the resource for *each*
policy in the pack: ``json_format.MessageToDict`` of its properties, then
``deserialize_properties``, then ``unknown_checking_proxy``, and the same again for its
provider; ``AnalyzeStack`` decodes every resource of the stack once per stack policy. With 70
policies that decoding is about 95% of a pack's time (cProfile over the agent_guard pack),
the policies themselves the rest.

:func:`install` makes the first two steps remember their result for the request being
answered. Neither result reaches a policy: what a policy receives is the proxy, a view that
copies every dict and list (a policy may write into its view; no other policy sees it) and
raises ``UnknownValueError`` when a policy reads a value unknown during preview. The SDK
builds that view eagerly, the whole property tree for every policy, although most policies
look at the resource type and return; after the first change it was 40% of a pack's time.
:func:`unknown_checking_proxy` builds the same view lazily: each dict or list is copied, and
its children wrapped, when a policy first reads into it. What a policy can observe is the
same (the proxies are instances of the SDK's own proxy classes, a read gives the same value or
the same error with the same property path, writes stay in the policy's view, and the SDK's
``__target`` escape hatch returns the fully wrapped copy); tests/test_policy_decode_once.py
drives both views through the same reads and writes. The leaves are shared: strings, numbers,
booleans, None, and the SDK's asset and archive objects, which nothing in the SDK changes.

This is a **runtime patch of pulumi-policy's internals** (the module-level names
``json_format``, ``deserialize_properties`` and ``unknown_checking_proxy`` in
``pulumi_policy.policy``, and the servicer's ``Analyze``/``AnalyzeStack``, wrapped to open and
close the per-request memory and, for ``AnalyzeStack``, to pause the cycle collector): the SDK
has no hook for it. The pack's own code and the SDK's
files are untouched, and a pack started by the Pulumi CLI runs without it.
tests/test_sdk_contract.py fails, naming what changed, if an SDK upgrade changes any of this;
tests/test_policy_equivalence.py checks that verdicts with the patch equal verdicts of the
unpatched SDK.

The memory is per thread and per request (the SDK's gRPC server answers requests on
several threads) and keys on the identity of the value it was given while holding that
value, so an identity is never reused within a request. The protobuf runtime (upb) returns
the same wrapper object for a sub-message on every access, which is what makes the
properties of one request the same key for every policy.

This file is loaded by path into the pack process (see :mod:`agentstage.policy.process`):
it imports nothing from agentstage.
"""

from __future__ import annotations

import functools
import gc
import threading
from typing import Any

from pulumi_policy.proxy import _append_prop, _DictProxy, _ListProxy, _raise_if_unknown

_local = threading.local()


def _remembered(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(value: Any, *args: Any, **kwargs: Any) -> Any:
        memo = getattr(_local, "memo", None)
        if memo is None or args or kwargs:
            return fn(value, *args, **kwargs)
        key = (fn, id(value))
        hit = memo.get(key)
        if hit is not None and hit[0] is value:
            return hit[1]
        result = fn(value)
        memo[key] = (value, result)  # keeps ``value`` alive: its id is not reused meanwhile
        return result

    wrapper.__agentstage_decode_once__ = True  # type: ignore[attr-defined]
    return wrapper


class _JsonFormat:
    """``google.protobuf.json_format`` as pulumi_policy.policy sees it: ``MessageToDict``
    remembered per request, everything else the module's own."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.MessageToDict = _remembered(module.MessageToDict)  # noqa: N815 - the module's name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def unknown_checking_proxy(props: Any) -> Any:
    """The SDK's ``unknown_checking_proxy``, built as the policy reads (see the module docstring)."""
    return _wrap(props, [])


def _wrap(value: Any, path: list[str]) -> Any:
    if isinstance(value, list):
        return _LazyList(value, path)
    if isinstance(value, dict):
        return _LazyDict(value, path)
    return value


class _LazyDict(_DictProxy):
    """A ``_DictProxy`` whose dict and list values are wrapped when first read. It reads the
    shared ``target`` itself (its length) until the first read, write or iteration, then works
    on a copy of its own; ``_owned`` holds the keys read or written since (their
    values are this view's own), so a value a policy wrote is never wrapped, as in the SDK's
    view. Most views are never read into: the copy is never made."""

    def __init__(self, target: dict[Any, Any], path: list[str]) -> None:
        super().__init__(target, path)
        self._owned: set[Any] | None = None  # None: still reading the shared target
        self._exposed = False  # its dict was handed out (``__target``): all of it is as is

    def _copy(self) -> tuple[dict[Any, Any], set[Any]]:
        if self._owned is None:
            self._DictProxy__target = dict(self._DictProxy__target)  # type: ignore[attr-defined]
            self._owned = set()
        return self._DictProxy__target, self._owned  # type: ignore[attr-defined]

    def _own(self, key: Any) -> None:
        copy, owned = self._copy()
        if key not in owned and not self._exposed:
            owned.add(key)
            if key in copy:
                copy[key] = _wrap(copy[key], _append_prop(self._DictProxy__props_acc, key))  # type: ignore[attr-defined]

    def __getitem__(self, key: Any) -> Any:
        copy, _ = self._copy()
        if key == "__target":
            for each in list(copy):
                self._own(each)
            self._exposed = True  # whatever is put in it from now on is read back as it is
            return copy
        self._own(key)
        return _raise_if_unknown(key, copy[key], self._DictProxy__props_acc)  # type: ignore[attr-defined]

    def __setitem__(self, key: Any, value: Any) -> None:
        copy, owned = self._copy()
        owned.add(key)
        copy[key] = value

    def __iter__(self) -> Any:
        # over the dict a write goes to, so adding a key mid-loop fails as in the SDK's view
        return iter(self._copy()[0])


class _LazyList(_ListProxy):
    """A ``_ListProxy`` over a copy of ``target`` whose dict and list elements are wrapped
    when first read (a list view takes no writes, as the SDK's)."""

    def __init__(self, target: list[Any], path: list[str]) -> None:
        super().__init__(list(target), path)
        self._owned: set[int] = set()
        self._exposed = False  # its list was handed out (``__target``): all of it is as is

    def _own(self, index: int) -> None:
        if index not in self._owned and not self._exposed:
            self._owned.add(index)
            copy = self._ListProxy__target  # type: ignore[attr-defined]
            copy[index] = _wrap(copy[index], _append_prop(self._ListProxy__props_acc, index))  # type: ignore[attr-defined]

    def __getitem__(self, key: Any) -> Any:
        copy = self._ListProxy__target  # type: ignore[attr-defined]
        if key == "__target" or not isinstance(key, int):
            for index in range(len(copy)):
                self._own(index)
            if key == "__target":
                self._exposed = True
                return copy
        elif -len(copy) <= key < len(copy):
            self._own(key % len(copy))
        return _raise_if_unknown(key, copy[key], self._ListProxy__props_acc)  # type: ignore[attr-defined]


# A policy that fails names its value's type in the error (``'_ListProxy' object has no attribute
# 'items'``), and the pack reports that text: the lazy views carry the SDK classes' names.
for _lazy, _sdk in ((_LazyDict, _DictProxy), (_LazyList, _ListProxy)):
    _lazy.__name__, _lazy.__qualname__, _lazy.__module__ = _sdk.__name__, _sdk.__qualname__, _sdk.__module__


def _per_request(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: Any) -> Any:
        _local.memo = {}
        try:
            return method(self, request, context)
        finally:
            _local.memo = None

    return wrapper


#: Calls that have paused the cycle collector, and whether it was running before the first.
_paused = {"calls": 0, "resume": False}
_paused_lock = threading.Lock()


def _without_collector(method: Any) -> Any:
    """Pause the cycle collector while ``method`` answers (``AnalyzeStack``): it decodes the
    whole stack and builds a view of every resource per stack policy, millions of objects
    that live to the end of the call, and the collector's full passes over them cost 40% of
    the call at 300 agents (``AnalyzeStack`` 4.6-5.8 s per process with it, 2.9-3.2 s
    without). It runs again afterwards, as it was before."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: Any) -> Any:
        with _paused_lock:
            if _paused["calls"] == 0:
                _paused["resume"] = gc.isenabled()
                gc.disable()
            _paused["calls"] += 1
        try:
            return method(self, request, context)
        finally:
            with _paused_lock:
                _paused["calls"] -= 1
                if _paused["calls"] == 0 and _paused["resume"]:
                    gc.enable()

    return wrapper


def install() -> None:
    """Patch the loaded pulumi-policy (idempotent)."""
    from pulumi_policy import policy as sdk

    if getattr(sdk.deserialize_properties, "__agentstage_decode_once__", False):
        return
    sdk.json_format = _JsonFormat(sdk.json_format)
    sdk.deserialize_properties = _remembered(sdk.deserialize_properties)
    sdk.unknown_checking_proxy = unknown_checking_proxy
    servicer = sdk._PolicyAnalyzerServicer  # noqa: SLF001 - see the module docstring
    servicer.Analyze = _per_request(servicer.Analyze)
    servicer.AnalyzeStack = _without_collector(_per_request(servicer.AnalyzeStack))
