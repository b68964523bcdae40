"""``Analyze`` calls made by a separate process, so the program's process only writes bytes.

While ``agentstage check`` streams a plan to the pack, the process that runs the Pulumi program
is the one every other step waits for. Each ``Analyze`` call it makes itself costs it the gRPC
client's per-call work in Python (the call's objects, and the channel's completion thread
taking the interpreter lock): about 1.5 s of a 100-agent check, measured with cProfile and
with the calls taken out. :class:`AnalyzeRelay` starts a small process
(:mod:`agentstage.policy.relay_main`) that makes the calls instead. The program's process
serializes each ``AnalyzeRequest`` (the same message it would send) and writes it to the
relay's stdin; the relay sends the bytes unchanged, on the Analyzer's ``Analyze`` method path
as the SDK's descriptor names it, to the pack's own gRPC server, and writes each answer back
(or the call's status code and details). Every call is still an ``Analyze`` call of the
Analyzer protocol to the unmodified pack; only the process that makes it changes.

A :class:`RelayedCall` answers as the gRPC future of a direct call does (``done``,
``result``, ``exception``), and a failed call raises a :class:`RelayedRpcError`, a
``grpc.RpcError`` with the call's ``code()`` and ``details()``, so the owner explains it as
it explains a direct call's failure. If the relay itself exits, its unanswered calls fail
with ``UNAVAILABLE`` and a message that says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

import grpc

from agentstage.policy.process import in_background
from agentstage.policy.relay_main import ANSWER, CALL, HEADER, LANE, READY, read_frames

__all__ = ["AnalyzeRelay", "RelayedCall", "RelayedRpcError", "analyze_method"]

RELAY_MAIN = Path(__file__).with_name("relay_main.py")
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def analyze_method() -> str:
    """The gRPC method path of ``Analyze``, from the SDK's own service descriptor."""
    from pulumi.runtime.proto import analyzer_pb2

    method = analyzer_pb2.DESCRIPTOR.services_by_name["Analyzer"].methods_by_name["Analyze"]
    return f"/{method.containing_service.full_name}/{method.name}"


class RelayedRpcError(grpc.RpcError):
    """A relayed call that failed: its gRPC status and details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class RelayedCall:
    """One relayed ``Analyze`` call, answered when the relay writes its answer."""

    __slots__ = ("_relay", "_code", "_payload")

    def __init__(self, relay: AnalyzeRelay) -> None:
        self._relay = relay
        self._code: int | None = None
        self._payload = b""

    def done(self) -> bool:
        return self._code is not None

    def settle(self, code: int, payload: bytes) -> None:
        """The call's answer: status ``code`` (0: OK) and the response, or the details."""
        self._payload, self._code = payload, code

    def cancel(self) -> bool:
        return False  # the relay ends its calls when it is closed

    def exception(self) -> RelayedRpcError | None:
        self._relay.wait(self)
        if self._code:
            return RelayedRpcError(
                _CODES.get(self._code, grpc.StatusCode.UNKNOWN), self._payload.decode(errors="replace")
            )
        return None

    def result(self) -> Any:
        from pulumi.runtime.proto import analyzer_pb2

        error = self.exception()
        if error is not None:
            raise error
        return analyzer_pb2.AnalyzeResponse.FromString(self._payload)


#: Linux's ``F_SETPIPE_SZ``: a pipe of 1 MiB (the default maximum for a user) instead of 64 KiB
#: holds about 800 requests, so the program's process does not wait on a relay that is
#: behind.
_PIPE_SIZE = 1 << 20
#: Bytes of requests gathered before they are written to the relay (about 50 requests).
_BUFFER = 1 << 16
#: Seconds past a call's own deadline after which a call the relay never answered fails.
_GRACE = 30.0


def _widen(stream: Any) -> None:
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
    except (ImportError, OSError):  # not Linux, or a lower limit: the default pipe works, a little slower
        pass


class AnalyzeRelay:
    """The relay process and the calls sent through it. ``start()`` launches it (it boots in
    about 0.1 s, meanwhile calls wait in its stdin pipe); ``lane(port)`` connects it to an
    Analyzer; ``analyze(lane, request)`` relays one call; ``close()`` stops it."""

    def __init__(self, *, rpc_timeout: float = 300.0, max_message: int = 0, python: str | None = None) -> None:
        from agentstage.policy.analyzer import MAX_MESSAGE

        self.rpc_timeout = rpc_timeout
        self.max_message = max_message or MAX_MESSAGE
        self.python = python or sys.executable
        self._proc: subprocess.Popen[bytes] | None = None
        self._calls: dict[int, RelayedCall] = {}
        self._seq = 0
        self._lanes = 0
        self._write = threading.Lock()  # the pipe to the relay (a write may wait for room)
        self._book = threading.Lock()  # the unanswered calls (never held while writing)
        self._answered = threading.Condition()
        self._ended: str | None = None  # why no more answers will come
        self._ready = threading.Event()
        self._stderr: deque[str] = deque(maxlen=25)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Launch the relay; OSError if the interpreter cannot be started."""
        args = [self.python, str(RELAY_MAIN), analyze_method(), repr(self.rpc_timeout), str(self.max_message)]
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=os.path.dirname(RELAY_MAIN),
            bufsize=_BUFFER,
        )
        in_background(self._proc.pid)
        _widen(self._proc.stdin)
        for target, stream in ((self._read_answers, self._proc.stdout), (self._read_stderr, self._proc.stderr)):
            t = threading.Thread(target=target, args=(stream,), name="analyze-relay", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def pid(self) -> int | None:
        """The relay's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def ready(self, timeout: float) -> bool:
        """Whether the relay has started and can make calls (waiting up to ``timeout``)."""
        return self._ready.wait(timeout) and self._ended is None

    def lane(self, port: int) -> int:
        """Connect the relay to the Analyzer on 127.0.0.1:``port``; the lane's number."""
        with self._write:
            self._lanes += 1
            lane = self._lanes
            self._send(LANE, 0, lane, f"127.0.0.1:{port}".encode())
        self.flush()
        return lane

    def analyze(self, lane: int, request: Any) -> RelayedCall:
        """Relay ``Analyze`` of ``request`` on ``lane``: the call, answered later."""
        call = RelayedCall(self)
        payload = request.SerializeToString()
        with self._write:
            with self._book:
                if self._ended is not None:
                    call.settle(grpc.StatusCode.UNAVAILABLE.value[0], self._ended.encode())
                    return call
                self._seq += 1
                seq = self._seq
                self._calls[seq] = call
            self._send(CALL, seq, lane, payload)
        return call

    def wait(self, call: RelayedCall) -> None:
        """Until ``call`` is answered. The relay gives every call an answer within the call's
        deadline; should it not, the call fails with ``DEADLINE_EXCEEDED`` a little later
        instead of waiting for ever."""
        if not call.done():
            self.flush()
        with self._answered:
            if self._answered.wait_for(call.done, timeout=self.rpc_timeout + _GRACE):
                return
        with self._book:
            for seq, pending in list(self._calls.items()):
                if pending is call:
                    del self._calls[seq]
        if not call.done():
            late = (
                f"no answer from the process relaying Analyze calls to the pack within {self.rpc_timeout + _GRACE:g}s"
            )
            call.settle(grpc.StatusCode.DEADLINE_EXCEEDED.value[0], late.encode())

    def close(self) -> None:
        """Stop the relay: at once when calls are still unanswered (the check is being
        abandoned), else once it has seen the end of its input."""
        with self._book:
            abandoned = bool(self._calls)
        if abandoned and self._proc is not None:
            self._proc.kill()  # before anything that could wait on a relay that is not reading
        else:
            self.flush()
        with self._write:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()  # type: ignore[union-attr] # end of input: the relay exits
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for t in self._threads:
            t.join(timeout=1)
        for stream in (proc.stdout, proc.stderr):
            stream.close()  # type: ignore[union-attr]

    # --- internals ------------------------------------------------------------------------

    def _send(self, kind: int, seq: int, lane: int, payload: bytes) -> None:
        """Queue a frame for the relay (the caller holds ``_write``): it goes when
        :data:`_BUFFER` bytes have gathered, or at the next :meth:`flush` (before any wait for
        an answer). Writing each call at once would cost more than the call: every write lets
        the other threads take the interpreter lock."""
        assert self._proc is not None and self._proc.stdin is not None, "start() first"
        try:
            self._proc.stdin.write(HEADER.pack(len(payload), kind, seq, lane) + payload)
        except OSError:  # the relay has exited: the reader ends the unanswered calls
            pass

    def flush(self) -> None:
        """Send what is queued."""
        with self._write:
            proc = self._proc
            if proc is None or proc.stdin is None:
                return
            try:
                proc.stdin.flush()
            except OSError:
                pass

    def _read_answers(self, stream: Any) -> None:
        for kind, seq, code, payload in read_frames(stream):
            if kind == READY:
                self._ready.set()
                continue
            with self._book:
                call = self._calls.pop(seq, None) if kind == ANSWER else None
            if call is not None:
                call.settle(code, payload)
                with self._answered:
                    self._answered.notify_all()
        self._end_calls()

    def _end_calls(self) -> None:
        """The relay stopped answering: its unanswered calls fail, saying why."""
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
        lines = [line for line in self._stderr if line.strip()]
        why = "the process relaying Analyze calls to the pack exited" + (
            f" (exit code {code})" if code is not None else ""
        )
        if lines:
            why += ":\n  " + "\n  ".join(lines)
        with self._book:
            self._ended = why
            calls, self._calls = self._calls, {}
        self._ready.set()  # whoever waits for it to start: it will not
        for call in calls.values():
            call.settle(grpc.StatusCode.UNAVAILABLE.value[0], why.encode())
        with self._answered:
            self._answered.notify_all()

    def _read_stderr(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self._stderr.append(raw.decode(errors="replace").rstrip("\n"))
