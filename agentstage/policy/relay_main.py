"""The relay process of :mod:`agentstage.policy.relay`: run by path, with only the standard
library and grpc (nothing of agentstage or pulumi is imported, so it starts in a tenth of a
second).

    python relay_main.py METHOD TIMEOUT MAX_MESSAGE

Reads frames from stdin and writes frames to stdout, each a header (:data:`HEADER`: payload
length, kind, sequence number, lane or status code) and a payload:

* ``LANE`` (lane N, payload ``host:port``): open a channel to an Analyzer as lane N;
* ``CALL`` (sequence S, lane N, payload a serialized request): call METHOD on lane N with the
  bytes as they are; the answer comes back as ``ANSWER`` S with status 0 and the serialized
  response, or with the call's gRPC status code and its details (UTF-8).

It writes ``READY`` once it can make calls. At the end of stdin it waits for the calls it
made, then exits; when its stdout is gone (the process that started it has died) it exits at
once.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from collections.abc import Iterator
from typing import Any

#: payload length, kind, sequence number, lane (CALL, LANE) or gRPC status code (ANSWER)
HEADER = struct.Struct(">IBIH")
LANE, CALL, ANSWER, READY = 1, 2, 3, 4


def read_exact(stream: Any, size: int) -> bytes | None:
    """``size`` bytes, or None at the end of the stream (also in the middle of a frame)."""
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frames(stream: Any) -> Iterator[tuple[int, int, int, bytes]]:
    """Each frame of ``stream`` as (kind, sequence number, lane or status code, payload),
    until the stream ends."""
    while True:
        head = read_exact(stream, HEADER.size)
        if head is None:
            return
        size, kind, seq, number = HEADER.unpack(head)
        payload = read_exact(stream, size)
        if payload is None:
            return
        yield kind, seq, number, payload


def serve(inp: Any, out: Any, method: str, timeout: float, max_message: int) -> None:
    import grpc

    options = [("grpc.max_receive_message_length", max_message), ("grpc.max_send_message_length", max_message)]
    lanes: dict[int, Any] = {}
    channels: list[Any] = []
    write = threading.Lock()
    idle = threading.Condition()
    outstanding = 0

    def emit(kind: int, seq: int, code: int, payload: bytes) -> None:
        try:
            with write:
                out.write(HEADER.pack(len(payload), kind, seq, code) + payload)
                out.flush()
        except (OSError, ValueError):  # no one reads the answers any more: nothing left to do
            os._exit(1)

    def done(future: Any, seq: int) -> None:
        nonlocal outstanding
        try:
            try:
                response = future.result()
            except grpc.RpcError as err:
                emit(ANSWER, seq, err.code().value[0], (err.details() or "").encode())
            except BaseException as err:  # noqa: BLE001 - e.g. cancelled: still an answer
                emit(ANSWER, seq, grpc.StatusCode.UNKNOWN.value[0], f"{type(err).__name__}: {err}".encode())
            else:
                emit(ANSWER, seq, 0, response)
        finally:
            with idle:
                outstanding -= 1
                idle.notify_all()

    emit(READY, 0, 0, b"")

    for kind, seq, lane, payload in read_frames(inp):
        if kind == LANE:
            channel = grpc.insecure_channel(payload.decode(), options=options)
            channels.append(channel)
            lanes[lane] = channel.unary_unary(method)  # no serializers: bytes in, bytes out
        elif kind == CALL:
            with idle:
                outstanding += 1
            future = lanes[lane].future(payload, timeout=timeout)
            future.add_done_callback(lambda f, seq=seq: done(f, seq))
    with idle:
        idle.wait_for(lambda: outstanding == 0)
    for channel in channels:
        channel.close()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer, sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
