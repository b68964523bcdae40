"""Re-send one logged request to the agent and put both answers side by side.

A request can be replayed only when its payload is in the logs, which is the agent's choice
(payloads may hold personal data). The logging contract (docs/incidents.md):

- the agent's stack config sets ``env: {LOG_REQUEST_PAYLOADS: "true"}`` (:data:`PAYLOAD_ENV`):
  agentstage replays only agents that declare they log payloads;
- for each request it logs, the agent writes one structured log line (a JSON object on stdout,
  which Cloud Run and GKE turn into ``jsonPayload``) that carries the request's trace under
  ``logging.googleapis.com/trace`` and, under :data:`PAYLOAD_KEY`::

      {"method": "POST", "path": "/chat", "headers": {"content-type": "application/json"},
       "body": {...} or "text",
       "response": {"status": 200, "latency_ms": 812, "body": {...} or "text"}}

  ``response`` may be left out (then only the new answer is shown).

The request is sent to the agent's ``canary`` tag URL or its service URL (``--to``), or to any
``--url``, with an identity token: :data:`TOKEN_ENV` when set, else one minted for the URL's origin
from Application Default Credentials (``google.oauth2.id_token.fetch_id_token``); a loopback URL
gets none unless :data:`TOKEN_ENV` is set.
"""

from __future__ import annotations

import difflib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agentstage.errors import BadInput, Failed

__all__ = [
    "PAYLOAD_ENV",
    "PAYLOAD_KEY",
    "TOKEN_ENV",
    "LoggedRequest",
    "Answer",
    "Replay",
    "logged_request",
    "tag_url",
    "send",
    "default_token",
    "body_diff",
    "check_payload_logging",
    "replay",
    "target_url",
]

#: The agent env var that declares its request payloads are logged.
PAYLOAD_ENV = "LOG_REQUEST_PAYLOADS"
#: The ``jsonPayload`` key of the logged request.
PAYLOAD_KEY = "agentstage_request"
#: An identity token to send instead of minting one (e.g. ``gcloud auth print-identity-token``).
TOKEN_ENV = "AGENTSTAGE_ID_TOKEN"
#: Headers never re-sent: credentials, cookies, and what the HTTP client sets itself.
DROPPED_HEADERS = frozenset(
    {"authorization", "cookie", "proxy-authorization", "host", "content-length", "connection", "transfer-encoding"}
)
#: How long one replayed request may take: Cloud Run's default request timeout (300 s).
TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class LoggedRequest:
    trace: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    response: dict[str, Any] | None
    insert_id: str


@dataclass(frozen=True)
class Answer:
    status: int
    latency_ms: float | None
    body: Any


@dataclass(frozen=True)
class Replay:
    request: LoggedRequest
    url: str
    logged: Answer | None
    new: Answer
    diff: list[str]

    def to_json(self) -> dict[str, Any]:
        def answer(a: Answer | None) -> dict[str, Any] | None:
            return None if a is None else {"status": a.status, "latency_ms": a.latency_ms, "body": a.body}

        return {
            "trace": self.request.trace,
            "insert_id": self.request.insert_id,
            "method": self.request.method,
            "url": self.url,
            "logged": answer(self.logged),
            "replayed": answer(self.new),
            "same_status": self.logged is not None and self.logged.status == self.new.status,
            "diff": self.diff,
        }


def check_payload_logging(spec: Any, agent: str) -> None:
    """Refuse an agent whose stack config does not declare payload logging."""
    if spec.agents[agent].env.get(PAYLOAD_ENV, "").lower() != "true":
        raise Failed(
            f"agent {agent!r} does not log request payloads, so its requests cannot be replayed: set "
            f'agents.{agent}.env.{PAYLOAD_ENV}: "true" and log each request under jsonPayload.{PAYLOAD_KEY} '
            "(docs/incidents.md, the logging contract)",
            key=f"agents.{agent}.env.{PAYLOAD_ENV}",
        )


def _ints(value: Any) -> Any:
    """``value`` with integral numbers as ints: a ``jsonPayload`` is a protobuf Struct, whose numbers
    are all doubles, so ``{"n": 3}`` comes back as ``{"n": 3.0}`` (log ids above 2**53 as strings)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def _value(v: Any) -> Any:
    from google.protobuf.json_format import MessageToDict

    return _ints(MessageToDict(v))


def logged_request(entries: list[Any], trace: str, agent: str) -> LoggedRequest:
    """The request logged under :data:`PAYLOAD_KEY` among a trace's entries."""
    for e in entries:
        if e.WhichOneof("payload") != "json_payload" or PAYLOAD_KEY not in e.json_payload.fields:
            continue
        record = _value(e.json_payload.fields[PAYLOAD_KEY])
        problems = []
        if not isinstance(record, dict):
            problems.append("is not an object")
            record = {}
        method, path = record.get("method", "POST"), record.get("path")
        if not isinstance(method, str) or not method.isalpha():
            problems.append(f"method {method!r} is not an HTTP method")
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append(f"path {path!r} is not an absolute path (e.g. /chat)")
        if "body" not in record:
            problems.append("has no body")
        headers = record.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            problems.append("headers is not an object of strings")
            headers = {}
        response = record.get("response")
        if response is not None and not (
            isinstance(response, dict) and isinstance(response.get("status"), int | float)
        ):
            problems.append("response is not an object with a status")
        if problems:
            raise Failed(
                f"the logged request {e.insert_id} of trace {trace} cannot be replayed: jsonPayload.{PAYLOAD_KEY} "
                + "; ".join(problems)
                + " (docs/incidents.md, the logging contract)"
            )
        return LoggedRequest(
            trace=trace,
            method=method.upper(),
            path=path,
            headers={k.lower(): v for k, v in headers.items() if k.lower() not in DROPPED_HEADERS},
            body=record["body"],
            response=response,
            insert_id=e.insert_id,
        )
    raise Failed(
        f"request {trace} of agent {agent!r} has no logged payload: none of its {len(entries)} log entries holds "
        f"jsonPayload.{PAYLOAD_KEY}, so it cannot be replayed (the agent may sample payloads, or the entry is "
        "past its retention)"
    )


def tag_url(service_url: str, tag: str) -> str:
    """The URL of a Cloud Run traffic tag: ``https://TAG---SERVICE-HASH-REGION.a.run.app`` for the
    service URL ``https://SERVICE-HASH-REGION.a.run.app``: the tag and three dashes before the
    host, whatever the host's form (https://cloud.google.com/run/docs/rollouts-rollbacks-traffic-migration,
    "Rollbacks, gradual rollouts, and traffic migration"; that page's text was not readable here,
    only quotations of it giving ``https://TAG---SERVICE-HASH.a.run.app``, so the form is unconfirmed
    at the source)."""
    parts = urlsplit(service_url)
    if not parts.hostname or not parts.hostname.endswith(".run.app"):
        raise BadInput(
            f"{service_url} is not a Cloud Run service URL (*.run.app), so its {tag!r} tag URL is unknown; give --url",
            key="--url",
        )
    return urlunsplit((parts.scheme, f"{tag}---{parts.netloc}", "", "", ""))


def _is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def default_token(url: str) -> str | None:
    """An identity token for ``url``: :data:`TOKEN_ENV`, else none for a loopback URL (a local
    agent checks no Google token; minting one would probe for credentials), else one minted for
    the URL's origin from Application Default Credentials (Cloud Run's audience is the service
    URL, https://cloud.google.com/run/docs/authenticating/service-to-service)."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    if _is_loopback(url):
        return None
    import google.auth.exceptions
    from google.auth.transport.requests import Request
    from google.oauth2 import id_token

    parts = urlsplit(url)
    audience = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    try:
        return id_token.fetch_id_token(Request(), audience)
    except google.auth.exceptions.DefaultCredentialsError:
        raise Failed(
            f"no Google credentials to mint an identity token for {audience}: use a service account's "
            f"Application Default Credentials, or set {TOKEN_ENV} "
            "(e.g. to the output of `gcloud auth print-identity-token`)"
        ) from None


def _parse(body: bytes, content_type: str) -> Any:
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def send(request: LoggedRequest, base_url: str, token: str | None) -> Answer:
    """Send ``request`` to ``base_url`` + its path; the answer with its latency."""
    import requests

    url = base_url.rstrip("/") + request.path
    headers = dict(request.headers)
    if isinstance(request.body, str):
        data = request.body.encode()
    else:
        data = json.dumps(request.body).encode()
        headers.setdefault("content-type", "application/json")
    if token:
        headers["authorization"] = f"Bearer {token}"
    start = time.perf_counter()
    try:
        # a redirect is an answer to compare, not followed
        resp = requests.request(
            request.method, url, data=data, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False
        )
    except requests.RequestException as err:
        raise Failed(f"replaying {request.method} {url}: {err}") from None
    latency = round((time.perf_counter() - start) * 1000, 1)
    return Answer(resp.status_code, latency, _parse(resp.content, resp.headers.get("content-type", "")))


def _lines(body: Any) -> list[str]:
    if isinstance(body, str):
        return body.splitlines()
    return json.dumps(body, indent=2, sort_keys=True).splitlines()


def body_diff(logged: Any, new: Any) -> list[str]:
    """A unified diff of the two bodies (JSON pretty-printed with sorted keys); [] when equal."""
    return list(difflib.unified_diff(_lines(logged), _lines(new), "logged", "replayed", lineterm="", n=2))


def replay(request: LoggedRequest, url: str, token_for: Callable[[str], str | None] = default_token) -> Replay:
    """Send ``request`` to ``url`` and compare with the logged answer."""
    new = send(request, url, token_for(url))
    logged = None
    if request.response is not None:
        r = request.response
        latency = r.get("latency_ms")
        logged = Answer(int(r["status"]), float(latency) if isinstance(latency, int | float) else None, r.get("body"))
    diff = body_diff(logged.body, new.body) if logged is not None else []
    return Replay(request, url.rstrip("/") + request.path, logged, new, diff)


def target_url(spec: Any, agent: str, to: str, service_url: Callable[[], str]) -> str:
    """Where ``--to`` sends the request. ``canary``: the candidate's ``canary`` tag URL (Cloud Run
    tags only the candidate, and only while a stable is set); ``stable``: the service URL, which
    serves the stable release alone only while no canary takes traffic. ``service_url`` reads the
    agent's URL (the stack output ``agents.<agent>.url``) when it is needed."""
    a = spec.agents[agent]
    if to == "canary":
        if a.stable is None:
            raise Failed(
                f"agent {agent!r} has no canary (no stable release is set: {a.release.version} takes all traffic); "
                "use --to stable or --url"
            )
        if a.runtime != "cloud-run":
            raise Failed(f"agent {agent!r} runs on {a.runtime}, which has no canary tag URL; give --url")
        return tag_url(service_url(), "canary")
    if a.stable is not None and a.canary_percent > 0:
        raise Failed(
            f"agent {agent!r} has a canary at {a.canary_percent}%: its service URL serves both releases and the stable "
            "revision has no URL of its own; give --url (or roll back first)"
        )
    return service_url()
