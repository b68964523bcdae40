"""Decode each resource once per request in a pack process, not once per policy.

For every ``Analyze`` request, pulumi-policy's analyzer decodes the resource for *each*
policy in the pack: ``json_format.MessageToDict`` of its properties, then
``deserialize_properties``, then ``unknown_checking_proxy``, and the same again for its
provider; ``AnalyzeStack`` decodes every resource of the stack once per stack policy. With 70
policies that decoding is about 95% of a pack's time (cProfile over the agent_guard pack),
the policies themselves the rest.

:func:`install` makes the first two steps remember their result for the request being
answered. Neither result reaches a policy: what a policy receives is the proxy, which
``unknown_checking_proxy`` still builds afresh for every policy, copying every dict and list
(a policy may write into its proxy; no other policy sees it). So each policy gets what it got
before. The leaves are shared: strings, numbers, booleans, None, and the SDK's asset and
archive objects, which nothing in the SDK changes.

This is a **runtime patch of pulumi-policy's internals** (the module-level names
``json_format`` and ``deserialize_properties`` in ``pulumi_policy.policy``, and the servicer's
``Analyze``/``AnalyzeStack``, wrapped to open and close the per-request memory): the SDK has no
hook for it. The pack's own code and the SDK's files are untouched, and a pack started by the
Pulumi CLI runs without it. tests/test_sdk_contract.py fails, naming what changed, if an SDK
upgrade changes any of this; tests/test_policy_equivalence.py checks that verdicts with the
patch equal verdicts of the unpatched SDK.

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
import threading
from typing import Any

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


def _per_request(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: Any) -> Any:
        _local.memo = {}
        try:
            return method(self, request, context)
        finally:
            _local.memo = None

    return wrapper


def install() -> None:
    """Patch the loaded pulumi-policy (idempotent)."""
    from pulumi_policy import policy as sdk

    if getattr(sdk.deserialize_properties, "__agentstage_decode_once__", False):
        return
    sdk.json_format = _JsonFormat(sdk.json_format)
    sdk.deserialize_properties = _remembered(sdk.deserialize_properties)
    servicer = sdk._PolicyAnalyzerServicer  # noqa: SLF001 - see the module docstring
    servicer.Analyze = _per_request(servicer.Analyze)
    servicer.AnalyzeStack = _per_request(servicer.AnalyzeStack)
