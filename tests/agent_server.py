"""A local stand-in for a deployed agent, for load tests on 127.0.0.1.

It behaves the way agents misbehave under load, so each load-test finding has something to find:

- it slows down as concurrency rises: a request takes ``base_ms + per_request_ms x in-flight``;
- it leaks: each answered request keeps ``leak_kib`` KiB for good, reported by ``GET /_memory``
  (the figure a Cloud Monitoring fake serves as the revision's memory);
- past ``limit`` requests in flight it breaks: of the requests over the limit, every other one
  fails at once with a 500 (a crash) and the others hang for ``hang_s`` seconds (a client with
  a shorter timeout sees a timeout).

``GET /_memory`` also returns how many requests were answered, the highest concurrency seen and
the last ``Authorization`` headers received (to check that identity tokens are sent).

Run it as a process: ``python -m tests.agent_server --port 0`` prints one line
``listening on http://127.0.0.1:PORT`` once it accepts connections. It is a gevent WSGI server
(gevent comes with Locust), single process, so a slow request costs a greenlet, not a thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Behaviour:
    base_ms: float = 5.0
    per_request_ms: float = 1.0
    limit: int = 1_000_000
    hang_s: float = 5.0
    leak_kib: int = 0


@dataclass
class AgentState:
    behaviour: Behaviour
    in_flight: int = 0
    max_in_flight: int = 0
    answered: int = 0
    over_limit: int = 0
    leaked: list[bytearray] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    def memory(self) -> dict[str, Any]:
        return {
            "leaked_bytes": sum(len(b) for b in self.leaked),
            "answered": self.answered,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "authorizations": self.authorizations[-5:],
        }


def make_app(behaviour: Behaviour):
    """The WSGI application and its state."""
    import gevent

    state = AgentState(behaviour)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") == "/_memory":
            body = json.dumps(state.memory()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        auth = environ.get("HTTP_AUTHORIZATION")
        if auth:
            state.authorizations.append(auth)
            del state.authorizations[:-20]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            b = state.behaviour
            if state.in_flight > b.limit:
                state.over_limit += 1
                if state.over_limit % 2:
                    body = b'{"error": "agent crashed"}'
                    start_response("500 Internal Server Error", [("Content-Length", str(len(body)))])
                    return [body]
                gevent.sleep(b.hang_s)
                body = b'{"error": "deadline exceeded"}'
                start_response("504 Gateway Timeout", [("Content-Length", str(len(body)))])
                return [body]
            delay = (b.base_ms + b.per_request_ms * state.in_flight) / 1000
            if delay > 0:
                gevent.sleep(delay)
            if b.leak_kib:
                state.leaked.append(bytearray(b.leak_kib * 1024))
            state.answered += 1
            body = b'{"answer": "ok"}'
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        finally:
            state.in_flight -= 1

    return app, state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--base-ms", type=float, default=Behaviour.base_ms)
    parser.add_argument("--per-request-ms", type=float, default=Behaviour.per_request_ms)
    parser.add_argument("--limit", type=int, default=Behaviour.limit, help="requests in flight before it breaks")
    parser.add_argument("--hang-s", type=float, default=Behaviour.hang_s)
    parser.add_argument("--leak-kib", type=int, default=Behaviour.leak_kib)
    args = parser.parse_args(argv)

    from gevent.pywsgi import WSGIServer

    app, _ = make_app(Behaviour(args.base_ms, args.per_request_ms, args.limit, args.hang_s, args.leak_kib))
    server = WSGIServer(("127.0.0.1", args.port), app, log=None, error_log=None)
    server.init_socket()
    sys.stdout.write(f"listening on http://127.0.0.1:{server.server_port}\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
