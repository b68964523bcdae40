"""Analysis while the program runs, over one or several processes of the same pack.

An optional layer over :class:`~agentstage.policy.runner.PolicyPackProcess`: the plain way to
check a plan is :meth:`PolicyPackProcess.check` once the plan is made. :class:`AnalysisStream`
instead sends each resource to ``Analyze`` as the program registers it, so the pack works on
the other core while the program still runs, and answers are collected at the end.

Every ``Analyze`` call is independent of the others (one resource, its provider and its
options), so the calls can go to any process of the pack: from ``large_plan`` resources on,
:class:`ExtraPacks` starts more processes of the same pack (same stack config, same policy
config) and each call goes to the process with the fewest unanswered calls. ``AnalyzeStack``
goes to the least busy one once the plan is complete. The report is the same as from one
process analysing the resources one after the other: answers are put back in plan order,
and tests/test_policy_equivalence.py compares the two on every test stack.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from agentstage.policy.config import PolicySetting
from agentstage.policy.report import Violation, sort_violations
from agentstage.policy.wire import AnalyzerResource, ResourceMapper, analyze_request, stack_request

__all__ = ["LARGE_PLAN", "MAX_IN_FLIGHT", "AnalysisStream", "ExtraPacks"]

#: From this many resources on, a check starts more processes of the pack.
LARGE_PLAN = 500
#: At most this many ``Analyze`` calls wait for their answer on one process. Tens of
#: thousands of calls in flight on one channel end in CANCELLED (seen at 1,000 agents,
#: about 29,000 resources).
MAX_IN_FLIGHT = 1000


class Analyzer(Protocol):
    """What the stream needs of a pack process (PolicyPackProcess provides it)."""

    def send_analyze(self, request: Any) -> Any: ...
    def send_analyze_stack(self, request: Any) -> Any: ...
    def failure(self, doing: str, err: Any) -> Exception: ...
    def stack_policy_names(self) -> list[str]: ...
    def share_stack_policies(self, names: list[str]) -> None: ...
    def violations(self, response: Any, urn: str | None, by_urn: Mapping[str, Any]) -> list[Violation]: ...


class _Shard:
    def __init__(self, pack: Analyzer) -> None:
        self.pack = pack
        self.in_flight: deque[Any] = deque()  # sent, answer not yet seen, oldest first

    def unanswered(self) -> int:
        while self.in_flight and self.in_flight[0].done():
            self.in_flight.popleft()
        return len(self.in_flight)

    def send(self, request: Any) -> Any:
        future = self.pack.send_analyze(request)
        self.in_flight.append(future)
        while self.unanswered() > MAX_IN_FLIGHT:
            try:
                self.in_flight.popleft().exception()  # waits for the answer; finish() reports an error
            except Exception:  # noqa: BLE001 - cancelled: finish() reports it too
                pass
        return future


class AnalysisStream:
    """``Analyze`` requests sent as resources arrive, their answers collected at the end.

    Resources fed before the first process is ready wait in a buffer; ``open()`` sends them.
    ``on_large`` is called once when the plan reaches ``large_plan`` resources."""

    def __init__(
        self,
        pack: Analyzer,
        project: str,
        stack: str,
        stack_config: Mapping[str, str],
        *,
        on_large: Any = None,
        large_plan: int | None = None,
        use_wire: bool = False,
    ) -> None:
        self.pack = pack
        self.stack_config = stack_config
        self.use_wire = use_wire
        self.on_large = on_large
        self.large_plan = large_plan or LARGE_PLAN
        self.fed = 0
        self.mapper = ResourceMapper(project, stack, stack_config, use_wire)
        self.lock = threading.Lock()
        self.shards = [_Shard(pack)]
        self.ready = False
        self.abandoned = False
        self.buffer: list[AnalyzerResource] = []
        self.mapped: dict[str, AnalyzerResource] = {}  # URN -> as sent, for AnalyzeStack
        self.pending: list[tuple[AnalyzerResource, _Shard, Any]] = []
        self.busy = 0.0  # seconds spent building and sending requests

    def open(self) -> None:
        with self.lock:
            self.ready = True
            buffered, self.buffer = self.buffer, []
            for r in buffered:
                self._send(r)

    def add_shard(self, pack: Analyzer) -> None:
        """Another ready process of the same pack, configured the same way."""
        with self.lock:
            self.shards.append(_Shard(pack))

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            self.buffer = []

    def feed(self, record: Any) -> None:
        self.fed += 1
        if self.fed == self.large_plan and self.on_large is not None:
            self.on_large(self)
        with self.lock:
            if self.abandoned:
                return
            for r in self.mapper.map(record):
                self.mapped[r.urn] = r
                if self.ready:
                    self._send(r)
                else:
                    self.buffer.append(r)

    def _send(self, r: AnalyzerResource) -> None:
        t = time.perf_counter()
        shard = min(self.shards, key=_Shard.unanswered) if len(self.shards) > 1 else self.shards[0]
        self.pending.append((r, shard, shard.send(analyze_request(r))))
        self.busy += time.perf_counter() - t

    def finish(self, plan: Any) -> tuple[list[Violation], int, float]:
        """Send ``AnalyzeStack`` for ``plan`` (whose resources were all fed) and collect every
        answer: (violations in report order, resources analysed, seconds of analysis not
        overlapped with the plan, plus send time).

        With one process, it answers ``AnalyzeStack`` for all the stack policies. With
        several, the stack policies are shared out among them (each process runs only its
        share, the others' disabled for it): a stack policy looks at the whole stack and no
        other policy, so each share's answer is what the one process would have said for
        those policies, and the shares run at the same time."""
        import grpc

        started = time.perf_counter()
        # every resource of the plan was fed: the stack is told what Analyze was, in plan order
        resources = [*self.mapper.defaults.values(), *(self.mapped[r.urn] for r in plan.resources)]
        order = {r.urn: i for i, r in enumerate(resources)}
        by_urn = {r.urn: r for r in resources}
        with self.lock:
            shards = list(self.shards)
        stack = stack_request(resources)
        names = self.pack.stack_policy_names()
        if len(shards) > 1 and len(names) > 1:
            shares = [(shard, names[i :: len(shards)]) for i, shard in enumerate(shards)]
            for shard, share in shares:
                shard.pack.share_stack_policies(share)
            stack_calls = [(shard, shard.pack.send_analyze_stack(stack)) for shard, share in shares if share]
        else:
            stack_shard = min(shards, key=_Shard.unanswered)
            stack_calls = [(stack_shard, stack_shard.pack.send_analyze_stack(stack))]

        found: list[Violation] = []
        for r, shard, future in self.pending:
            try:
                response = future.result()
            except grpc.RpcError as err:
                for _, _, other in self.pending:
                    other.cancel()
                for _, call in stack_calls:
                    call.cancel()
                raise shard.pack.failure(f"while analysing {r.urn}", err) from None
            found += shard.pack.violations(response, r.urn, by_urn)
        for shard, call in stack_calls:
            try:
                response = call.result()
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise shard.pack.failure("while analysing the stack (AnalyzeStack)", err) from None
            else:
                found += shard.pack.violations(response, None, by_urn)
        if len(stack_calls) > 1:
            self.pack.share_stack_policies(names)  # the first process may check more plans
        seconds = self.busy + time.perf_counter() - started
        return sort_violations(found, order), len(resources), seconds


class ExtraPacks:
    """More processes of a pack, started on request (e.g. when a plan turns out large) and
    handed to a stream as each becomes ready. One that cannot start is left out: the others
    do its share. ``make()`` builds an unlaunched process configured like the first one;
    ``prepare(pack)``, when given, is called on each once it is configured."""

    def __init__(
        self,
        make: Any,
        settings: Mapping[str, PolicySetting],
        source: str | None,
        count: int = 1,
        prepare: Any = None,
    ) -> None:
        self.make = make
        self.prepare = prepare
        self.settings = settings
        self.source = source
        self.count = count
        self.packs: list[Any] = []
        self.threads: list[threading.Thread] = []

    def start(self, stream: AnalysisStream) -> None:
        for _ in range(self.count):
            pack = self.make()
            self.packs.append(pack)

            def boot(pack: Any = pack) -> None:
                try:
                    pack.launch()
                    pack.connect()
                    pack.configure(self.settings, source=self.source)
                    if self.prepare is not None:
                        self.prepare(pack)
                except Exception:  # noqa: BLE001 - the other processes do the work instead
                    return
                stream.add_shard(pack)

            t = threading.Thread(target=boot, name="policy-pack-extra", daemon=True)
            t.start()
            self.threads.append(t)

    def wait(self) -> None:
        """Until every process has started or failed (their share is then known)."""
        for t in self.threads:
            t.join()

    def close(self) -> None:
        self.wait()
        for pack in self.packs:
            pack.close()
