"""``agentstage loadtest``: drive an agent's candidate with Locust and say what it can take.

The run has up to two phases (:mod:`agentstage.ops.locustrun` runs them, in a process of its
own):

- **steady**: a target rate for a duration (default 100 requests/s for 300 s). Its Locust
  ``--csv`` files are ``PREFIX_stats.csv``, ``PREFIX_stats_history.csv``, ``PREFIX_failures.csv``
  (and ``PREFIX_exceptions.csv``), with ``PREFIX_manifest.json`` binding them to the agent, the
  release version and the URL: the evidence ``agentstage gate --load-test PREFIX`` reads
  (:mod:`agentstage.release.evidence`, docs/release.md "Load test manifest");
- **step**: concurrency raised step by step until errors plus timeouts pass a ratio. It drives
  the agent past its capacity on purpose, which no release gate should count as the release's
  latency or error rate: its files are ``PREFIX_step_*.csv``, without a manifest, so a gate given
  the directory still finds one run of the release. Run alone (``--phases step``), it is the run
  the manifest describes.

What it found goes to ``PREFIX_findings.json`` (capacity, percentiles per phase and step, memory,
cost, the checks against ``gates.load_test``) and a chart to ``PREFIX_report.html``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agentstage.errors import BadInput, Failed
from agentstage.inputs import read_text
from components.contract import CANARY_TAG

__all__ = [
    "LoadTestError",
    "AgentRequest",
    "Options",
    "Target",
    "read_requests",
    "default_requests",
    "parse_phases",
    "parse_step_users",
    "check_url",
    "tag_url",
    "resolve_target",
    "identity_token",
    "run_phases",
    "write_manifest",
    "capacity",
    "memory_over_run",
    "memory_of_run",
    "memory_finding",
    "checks",
    "findings",
]

PHASES = ("steady", "step")
#: The seed's steady phase: 100 requests/s for 300 s.
DEFAULT_RATE = 100.0
DEFAULT_DURATION_S = 300.0
#: The seed's step phase: 100 concurrent, ... up to 1,000.
DEFAULT_STEP_USERS = (100, 100, 1000)
DEFAULT_STEP_DURATION_S = 30.0
DEFAULT_MAX_ERROR_RATIO = 0.01
DEFAULT_TIMEOUT_S = 30.0
#: HTTP methods a recorded request may use (RFC 9110, section 9).
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: The request sent when no input file is given.
DEFAULT_PROMPT = "Hello! In one sentence, what can you help me with?"


class LoadTestError(BadInput):
    """A load-test input or option is invalid."""


# --- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentRequest:
    """One request to send: ``name`` is the row Locust counts it under."""

    method: str
    path: str
    headers: dict[str, str]
    body: str | None
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "headers": self.headers, "body": self.body, "name": self.name}


def _prompt_request(prompt_line: dict[str, Any], path: str) -> AgentRequest:
    return AgentRequest("POST", path, {"Content-Type": "application/json"}, json.dumps(prompt_line), f"POST {path}")


def default_requests(path: str = "/") -> list[AgentRequest]:
    """A prompt, posted as ``{"prompt": ...}`` JSON to ``path``, when no input file is given."""
    return [_prompt_request({"prompt": DEFAULT_PROMPT}, path)]


_RECORDED_KEYS = {"method", "path", "headers", "body"}


def _request_of(data: Any, where: str, path: str) -> AgentRequest:
    if not isinstance(data, dict):
        raise LoadTestError(
            f'{where}: expected a JSON object, {{"prompt": ...}} or {{"method", "path", "headers"?, '
            f'"body"?}}, got {type(data).__name__ if not isinstance(data, list) else "a list"}'
        )
    keys = set(data)
    if "prompt" in keys and keys & _RECORDED_KEYS:
        raise LoadTestError(
            f"{where}: has both a prompt and a recorded request ({', '.join(sorted(keys & _RECORDED_KEYS))}); "
            "give one per line"
        )
    if "prompt" in keys:
        prompt = data["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise LoadTestError(f"{where}: prompt: {json.dumps(prompt)} is not a prompt (a non-empty string)")
        # other keys travel with the prompt (a session id, options): the line is the body
        return _prompt_request(data, path)
    unknown = sorted(keys - _RECORDED_KEYS)
    if unknown:
        raise LoadTestError(
            f'{where}: unknown key {", ".join(repr(k) for k in unknown)}; a line is {{"prompt": ...}} or a '
            "recorded request with method, path, headers (optional) and body (optional)"
        )
    missing = [k for k in ("method", "path") if k not in data]
    if missing:
        raise LoadTestError(f"{where}: a recorded request needs {' and '.join(missing)}")
    method = data["method"]
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise LoadTestError(f"{where}: method: {json.dumps(method)} is not an HTTP method ({', '.join(METHODS)})")
    req_path = data["path"]
    if not isinstance(req_path, str) or not req_path.startswith("/") or any(c.isspace() for c in req_path):
        raise LoadTestError(
            f"{where}: path: {json.dumps(req_path)} is not a request path (it starts with '/', no spaces; the "
            "host is the URL under test)"
        )
    headers = data.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise LoadTestError(f"{where}: headers must be an object of header name -> string value")
    for name in headers:
        if not name or any(c.isspace() or c in ':"(),/;<=>?@[\\]{}' for c in name):
            raise LoadTestError(f"{where}: headers: {json.dumps(name)} is not an HTTP header name")
        if name.lower() == "authorization":
            raise LoadTestError(
                f"{where}: headers: a recorded Authorization header is not replayed; the load test sends its "
                "own identity token (--id-token, --token-file)"
            )
    body = data.get("body")
    headers = dict(headers)
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    method = method.upper()
    return AgentRequest(method, req_path, headers, body, f"{method} {req_path.split('?', 1)[0]}")


def read_requests(path: Path, prompt_path: str = "/") -> list[AgentRequest]:
    """The requests of a JSONL file: per line a prompt ``{"prompt": "..."}`` (posted as that JSON
    to ``prompt_path``) or a recorded request ``{"method", "path", "headers"?, "body"?}`` (a
    body that is not a string is sent as JSON). Blank lines are skipped."""
    text = read_text(path, "input")
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"input {path}: line {number}"
        try:
            data = json.loads(line, parse_constant=lambda name: _refuse(where, name))
        except json.JSONDecodeError as err:
            raise LoadTestError(f"{where}: not valid JSON: {err.msg} (column {err.colno})") from None
        out.append(_request_of(data, where, prompt_path))
    if not out:
        raise LoadTestError(f"input {path}: no requests (the file has no non-blank lines)")
    return out


def _refuse(where: str, name: str) -> Any:
    raise LoadTestError(f"{where}: {name} is not a JSON number")


# --- options -----------------------------------------------------------------------------------


def parse_phases(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in names if p not in PHASES]
    if bad or not names or len(set(names)) != len(names):
        raise LoadTestError(f"--phases: {text!r} is not a list of phases; allowed: steady, step or steady,step")
    return [p for p in PHASES if p in names]


def parse_step_users(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    try:
        start, step, top = (int(p) for p in parts)
    except ValueError:
        raise LoadTestError(
            f"--step-users: {text!r} is not START,STEP,MAX (three whole numbers of concurrent users, e.g. 100,100,1000)"
        ) from None
    if start < 1 or step < 1 or top < start:
        raise LoadTestError(f"--step-users: {text!r}: START and STEP must be at least 1 and MAX at least START")
    return start, step, top


def check_url(url: str, option: str = "--url") -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadTestError(f"{option}: {url!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise LoadTestError(f"{option}: {url!r} has a query or fragment; give the service's URL")
    return url.rstrip("/")


def tag_url(service_url: str, tag: str) -> str:
    """The URL of a traffic tag of a Cloud Run service: ``https://TAG---HOST``, the tag and three
    dashes before the service URL's host (Cloud Run docs, "Rollbacks, gradual rollouts, and traffic
    migration", https://cloud.google.com/run/docs/rollouts-rollbacks-traffic-migration: a tagged
    revision is reached at ``https://TAG---SERVICE-HASH.a.run.app``; that page's own text was not
    readable here, only quotations of it, so the form is unconfirmed at the source). The Admin
    API's ``traffic_statuses[].uri`` (:func:`cloud_run_url`) is the authoritative tag URL."""
    parts = urlsplit(service_url)
    return f"{parts.scheme}://{tag}---{parts.netloc}"


@dataclass
class Options:
    phases: list[str]
    rate: float = DEFAULT_RATE
    duration: float = DEFAULT_DURATION_S
    users: int | None = None
    step_users: tuple[int, int, int] = DEFAULT_STEP_USERS
    step_duration: float = DEFAULT_STEP_DURATION_S
    max_error_ratio: float = DEFAULT_MAX_ERROR_RATIO
    timeout: float = DEFAULT_TIMEOUT_S
    #: Locust worker processes (1: one process, Locust's LocalRunner)
    processes: int = 1

    def check(self) -> None:
        for name, value, low in (
            ("--rate", self.rate, 0.0),
            ("--duration", self.duration, 0.0),
            ("--step-duration", self.step_duration, 0.0),
            ("--timeout", self.timeout, 0.0),
        ):
            if not math.isfinite(value) or value <= low:
                raise LoadTestError(f"{name}: {value:g} must be a finite number above 0")
        if not 0 <= self.max_error_ratio < 1:
            raise LoadTestError(f"--max-error-ratio: {self.max_error_ratio:g} is not a ratio in 0..1 (e.g. 0.01)")
        if not 1 <= self.processes <= 64:
            raise LoadTestError(f"--processes: {self.processes} is not a number of processes (1..64)")
        if self.users is not None and self.users < 1:
            raise LoadTestError(f"--users: {self.users} must be at least 1")

    @property
    def steady_users(self) -> int:
        """Users of the steady phase: ``--users``, else one per request/s (so an agent that
        answers within a second keeps the rate)."""
        return self.users or max(1, math.ceil(self.rate))


# --- target ------------------------------------------------------------------------------------


@dataclass
class Target:
    """What is load tested: the agent's release and the URL that serves it."""

    stack: str
    agent: str
    version: str
    url: str
    #: where the URL came from
    source: str
    spec: Any = None
    platform: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def service(self) -> str:
        return self.platform.service_name(self.agent)


def _no_url(agent: str, stack: str, why: str) -> LoadTestError:
    return LoadTestError(
        f"no URL for the candidate of {agent} in stack {stack!r}: {why}; pass --url URL (the candidate's "
        f"`{CANARY_TAG}` tag URL, e.g. https://{CANARY_TAG}---{agent}-123456789012.us-central1.run.app)"
    )


def cloud_run_url(client: Any, platform: Any, stack: str, agent: str) -> str:
    """The candidate's URL from the Cloud Run Admin API v2: the ``uri`` of the traffic status
    tagged ``canary`` (``Service.traffic_statuses[].uri``, google.cloud.run.v2), or the service's
    ``uri`` when the release serves all traffic (no stable)."""
    from google.api_core import exceptions as gexc

    name = f"projects/{platform.project}/locations/{platform.region}/services/{platform.service_name(agent)}"
    try:
        svc = client.get_service(name=name)
    except (gexc.GoogleAPICallError, gexc.RetryError) as err:
        raise _no_url(agent, stack, f"Cloud Run: cannot read service {name}: {err}") from None
    for status in svc.traffic_statuses:
        if status.tag == CANARY_TAG and status.uri:
            return status.uri
    if platform.agents[agent].stable is None and svc.uri:
        return svc.uri
    raise LoadTestError(
        f"Cloud Run service {name} has no traffic tagged {CANARY_TAG!r} with a URL (has the candidate been "
        "deployed with `pulumi up`?); pass --url URL"
    )


def resolve_target(
    project_dir: Path,
    stack: str,
    agent: str,
    url: str | None,
    *,
    run_client: Any = None,
    credentials: bool | None = None,
) -> Target:
    """The agent's release in the stack and the URL of its candidate: ``url`` when given; else
    the Cloud Run Admin API when Google credentials are found (``run_client``: a
    ``run_v2.ServicesClient``); else the stack outputs of the last ``pulumi up`` (its ``agents``
    output's ``url``, the candidate reached at its tag URL)."""
    from agentstage.release.flow import load_state

    state = load_state(project_dir, stack)
    platform = state.spec
    if agent not in platform.agents:
        raise LoadTestError(
            f"--agent: stack {stack!r} has no agent {agent!r} (agents: {', '.join(sorted(platform.agents))})"
        )
    spec = platform.agents[agent]
    target = Target(stack, agent, spec.release.version, "", "", spec, platform)
    if url is not None:
        target.url, target.source = check_url(url), "--url"
        return target
    if spec.runtime != "cloud-run":
        raise _no_url(agent, stack, f"it runs on {spec.runtime}, which has no traffic tag URL")
    if credentials is None:
        from agentstage.release.observed import has_google_credentials

        credentials = run_client is not None or has_google_credentials()
    if credentials:
        if run_client is None:
            from google.cloud import run_v2

            run_client = run_v2.ServicesClient()
        target.url = check_url(cloud_run_url(run_client, platform, stack, agent), "Cloud Run")
        target.source = "Cloud Run Admin API"
        return target
    import shutil

    from agentstage.release.observed import ObservedError, OutputsObserver

    if shutil.which("pulumi") is None:
        raise _no_url(
            agent,
            stack,
            "no Google credentials to read the Cloud Run Admin API, and no Pulumi CLI to read the stack outputs",
        )
    try:
        outputs = OutputsObserver(state.project_dir, stack).outputs()
    except ObservedError as err:
        raise _no_url(agent, stack, f"no Google credentials to read the Cloud Run Admin API; {err.message}") from None
    found = (outputs.get("agents") or {}).get(agent) or {}
    service_url = found.get("url") if isinstance(found, dict) else None
    if not isinstance(service_url, str) or not service_url:
        raise _no_url(agent, stack, f"the stack's `agents` output has no url of {agent}")
    target.url = check_url(service_url if spec.stable is None else tag_url(service_url, CANARY_TAG), "stack output")
    target.source = "stack outputs (last `pulumi up`)"
    return target


# --- identity ----------------------------------------------------------------------------------


_NO_TOKEN = (
    "no identity token ({why}); a private service answers 403: pass --token-file with a token "
    "(gcloud auth print-identity-token)"
)


def identity_token(url: str, mode: bool | None, token_file: Path | None) -> tuple[str | None, str]:
    """The identity token to send as ``Authorization: Bearer`` and a note for the user.

    ``token_file``: a token minted elsewhere (``gcloud auth print-identity-token``), read as is.
    ``mode`` True (``--id-token``): mint one with ``google.oauth2.id_token.fetch_id_token`` for
    the URL's origin, or fail. None (the default): mint one for an https URL when Google
    credentials are found, else send none (a local or public agent). False: never."""
    if token_file is not None:
        token = read_text(token_file, "token file").strip()
        if not token or any(c.isspace() for c in token):
            raise LoadTestError(f"token file {token_file}: expected one token (no spaces or line breaks)")
        return token, f"identity token from {token_file}"
    if mode is False:
        return None, "no identity token (--no-id-token)"
    parts = urlsplit(url)
    if mode is None and parts.scheme != "https":
        return None, "no identity token (a plain http URL: a local agent)"
    import google.auth.transport.requests
    from google.auth import exceptions as gexc
    from google.oauth2 import id_token

    from agentstage.release.observed import has_google_credentials

    audience = f"{parts.scheme}://{parts.netloc}"
    if not has_google_credentials():
        if mode:
            raise Failed(
                f"--id-token: no Google credentials to mint an identity token for {audience}; pass --token-file"
            )
        return None, _NO_TOKEN.format(why="no Google credentials")
    try:
        token = id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    except gexc.DefaultCredentialsError as err:
        # fetch_id_token mints with a service account key or the metadata server only (not
        # with the user credentials of `gcloud auth application-default login`)
        if mode:
            raise Failed(f"--id-token: no identity token for {audience}: {err}; or pass --token-file") from None
        return None, _NO_TOKEN.format(why=err)
    except gexc.GoogleAuthError as err:
        raise Failed(f"cannot mint an identity token for {audience}: {err}") from None
    return token, f"identity token for {audience} (Google credentials)"


# --- running -----------------------------------------------------------------------------------


def run_phases(
    target: Target,
    options: Options,
    requests: list[AgentRequest],
    token: str | None,
    prefix: Path,
    on_event: Callable[[dict[str, Any]], None] = lambda e: None,
) -> dict[str, dict[str, Any]]:
    """Run the phases in a Locust process; ``on_event`` sees each of its events as it comes.
    Returns the ``phase_end`` event of each phase."""
    import importlib.util

    if importlib.util.find_spec("locust") is None:
        raise Failed("agentstage loadtest needs Locust: install it with pip install 'agentstage[loadtest]'")
    files = phase_prefixes(prefix, options.phases)
    plan = {
        "url": target.url,
        "timeout": options.timeout,
        "users": options.steady_users,
        "rate": options.rate,
        "duration": options.duration,
        "step_users": list(options.step_users),
        "step_duration": options.step_duration,
        "max_error_ratio": options.max_error_ratio,
        "requests": [r.to_json() for r in requests],
        "token": token,
        "phases": [[name, str(files[name])] for name in options.phases],
        "processes": options.processes,
        # a history row per request name too (Locust's --csv-full-history): the gate then leaves
        # health checks out of the ramp exactly
        "full_history": True,
    }
    prefix.parent.mkdir(parents=True, exist_ok=True)
    # its messages go to a file: a pipe nobody reads while the events stream could fill and stall it
    errors = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentstage.ops.locustrun"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # its own process group, with its Locust workers: stopped together on Ctrl-C
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(plan))
    proc.stdin.close()
    results: dict[str, dict[str, Any]] = {}
    done = False
    try:
        for line in proc.stdout:
            if not line.startswith("{"):
                continue  # not an event (a library's print)
            event = json.loads(line)
            on_event(event)
            if event["event"] == "phase_end":
                results[event["name"]] = event
            done = done or event["event"] == "done"
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        raise
    finally:
        code = proc.wait()
        errors.seek(0)
        stderr = errors.read()
        errors.close()
    if code != 0 or not done:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise Failed(f"the load generator (Locust) stopped with exit code {code}", details=[tail] if tail else [])
    return results


def phase_prefixes(prefix: Path, phases: list[str]) -> dict[str, Path]:
    """The ``--csv`` prefix of each phase: the steady phase (or the only one) is ``PREFIX``,
    the step phase beside it ``PREFIX_step``."""
    if phases == ["step"]:
        return {"step": prefix}
    return {name: prefix if name == "steady" else prefix.with_name(prefix.name + "_step") for name in phases}


def _stamp(t: float, up: bool) -> str:
    """ISO 8601 UTC at whole seconds: rounded down for a start, up for an end, so a phase
    shorter than a second still has an end after its start."""
    whole = math.ceil(t) if up else math.floor(t)
    return dt.datetime.fromtimestamp(whole, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def write_manifest(prefix: Path, target: Target, phase: dict[str, Any]) -> Path:
    """``PREFIX_manifest.json`` of the run the gate reads (docs/release.md, "Load test manifest")."""
    started, ended = _stamp(phase["started"], False), _stamp(phase["ended"], True)
    manifest = {
        "agent": target.agent,
        "version": target.version,
        "url": target.url,
        "started": started,
        "ended": ended,
        "phases": [{"name": phase["name"], "started": started, "ended": ended, "users": int(phase["users"])}],
        "stack": target.stack,
        "generator": "agentstage loadtest (Locust)",
    }
    path = prefix.with_name(prefix.name + "_manifest.json")
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


# --- findings ----------------------------------------------------------------------------------


def capacity(step: dict[str, Any] | None, max_error_ratio: float) -> dict[str, Any] | None:
    """The highest concurrency whose step stayed within ``max_error_ratio``, its requests/s, and
    the step where errors started (None when the step phase did not run)."""
    if step is None:
        return None
    steps = step.get("steps", [])
    ok = [s for s in steps if s["ok"]]
    broke = next((s for s in steps if not s["ok"]), None)
    best = max(ok, key=lambda s: s["users"]) if ok else None
    out: dict[str, Any] = {
        "max_error_ratio": max_error_ratio,
        "max_sustainable_users": best["users"] if best else None,
        "max_sustainable_rps": max((s["rps"] for s in ok), default=None),
        "errors_start_at_users": broke["users"] if broke else None,
        "errors_at_start": {"timeouts": broke["timeouts"], "errors": broke["errors"], "requests": broke["requests"]}
        if broke
        else None,
        "limit_reached": broke is None,
    }
    if len(ok) >= 2 and ok[0]["p95"] and ok[-1]["p95"]:
        out["p95_growth"] = ok[-1]["p95"] / ok[0]["p95"]
    return out


def memory_over_run(
    source: Any, service: str, revision: str, start: dt.datetime, end: dt.datetime, limit_bytes: float
) -> list[tuple[float, float]]:
    """(seconds, bytes) of the revision's memory over the run from Cloud Monitoring
    (:class:`agentstage.release.metrics.MonitoringSource`: ``container/memory/utilizations``,
    the highest p99 per minute, as a share of the limit), one point per minute."""
    series = source.fetch(service, [revision], start, end).get(revision)
    if series is None:
        return []
    points = []
    for t, share in zip(series.ends, series.memory):
        if math.isfinite(share):
            points.append((t.timestamp(), float(share) * limit_bytes))
    return points


def memory_of_run(
    target: Target,
    project_dir: Path,
    started: float,
    ended: float,
    *,
    source: Any = None,
    credentials: bool | None = None,
) -> dict[str, Any]:
    """The memory finding of a run: the candidate revision's memory from Cloud Monitoring
    (``source``: a :class:`~agentstage.release.metrics.MonitoringSource`, by default one for the
    stack's project) when Google credentials are found (``credentials``: whether they are;
    default: ask google-auth). The revision is the one the stack's plan deploys for the agent."""
    from components.spec import memory_mib

    limit = memory_mib(target.spec.resources.memory) * 1024 * 1024
    if credentials is None:
        from agentstage.release.observed import has_google_credentials

        credentials = has_google_credentials()
    if not credentials:
        return memory_finding([], limit, "not available (no Google credentials to read Cloud Monitoring)")
    from agentstage.errors import AgentstageError
    from agentstage.release.flow import plan_stack, traffic_of
    from agentstage.release.metrics import MonitoringSource

    try:
        found = traffic_of(plan_stack(project_dir, target.stack), target.platform, [target.agent])
        if target.agent not in found:
            return memory_finding([], limit, f"not available (no Cloud Run service of {target.agent} in the plan)")
        revision = found[target.agent].candidate
        if source is None:
            source = MonitoringSource(target.platform.project, target.platform.region)
        at = lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc)  # noqa: E731
        # a minute either side: Cloud Monitoring's points end on whole minutes
        points = memory_over_run(source, found[target.agent].name, revision, at(started - 60), at(ended + 60), limit)
    except AgentstageError as err:
        return memory_finding([], limit, f"not available ({err.message})")
    out = memory_finding(
        points,
        limit,
        f"not available yet: Cloud Monitoring has {len(points)} point(s) of revision {revision} over the run "
        "(its memory samples arrive a few minutes late; run longer, or read them later)",
    )
    out["revision"] = revision  # whose memory it is: the candidate the stack deploys
    return out


def memory_finding(points: list[tuple[float, float]], limit_bytes: float, reason: str = "") -> dict[str, Any]:
    """Memory over the run: first and last, growth, and when the limit would be reached at the
    run's rate of growth (a least-squares line through the points)."""
    if len(points) < 2:
        return {"available": False, "reason": reason or f"{len(points)} memory point(s) over the run, need 2"}
    ts = [t for t, _ in points]
    ys = [b for _, b in points]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var if var else 0.0
    out: dict[str, Any] = {
        "available": True,
        "points": [{"t": t, "bytes": b} for t, b in points],
        "first_bytes": ys[0],
        "last_bytes": ys[-1],
        "growth_bytes": ys[-1] - ys[0],
        "growth_ratio": (ys[-1] - ys[0]) / ys[0] if ys[0] else None,
        "bytes_per_hour": slope * 3600,
        "limit_bytes": limit_bytes,
    }
    if slope > 0 and limit_bytes > ys[-1]:
        out["hours_to_limit"] = (limit_bytes - ys[-1]) / slope / 3600
    return out


def checks(platform: Any, phase: dict[str, Any]) -> list[dict[str, Any]]:
    """The gated phase against ``gates.load_test``: percentiles and the failure ratio."""
    limits = platform.gates.load_test
    out = []
    for label, limit in (("p50", limits.p50_ms), ("p95", limits.p95_ms), ("p99", limits.p99_ms)):
        if limit is None:
            continue
        value = phase.get(label)
        out.append(
            {"name": f"{phase['name']} {label}", "ok": value is not None and value <= limit, "value": value,
             "threshold": f"<= {limit} ms"}
        )  # fmt: skip
    ratio = phase["failures"] / phase["requests"] if phase["requests"] else None
    out.append(
        {
            "name": f"{phase['name']} errors",
            "ok": ratio is not None and ratio < limits.max_error_rate,
            "value": ratio,
            "threshold": f"< {limits.max_error_rate:.2%}",
        }
    )
    return out


def _phase_summary(p: dict[str, Any], files: Path) -> dict[str, Any]:
    keys = ("started", "ended", "users", "requests", "failures", "timeouts", "errors", "rps", "mean_ms")
    out = {k: p.get(k) for k in keys} | {k: p.get(k) for k in ("p50", "p95", "p99")}
    out["stats_csv"] = str(files) + "_stats.csv"
    if "steps" in p:
        out["steps"] = p["steps"]
    return out


def findings(
    target: Target,
    options: Options,
    results: dict[str, dict[str, Any]],
    prefix: Path,
    *,
    memory: dict[str, Any],
    cost: dict[str, Any] | None,
    notes: list[str],
) -> dict[str, Any]:
    files = phase_prefixes(prefix, options.phases)
    gated = results.get("steady") or results.get("step")
    found_capacity = capacity(results.get("step"), options.max_error_ratio)
    if found_capacity is not None and target.spec.runtime == "cloud-run":
        scaling = target.spec.scaling
        # each instance takes `concurrency` requests at once; past them all, a request waits for
        # a free instance and then gets a 429 (Cloud Run, "Maximum concurrent requests per instance")
        found_capacity["configured_concurrency"] = scaling.max_instances * scaling.concurrency
    return {
        "agent": target.agent,
        "version": target.version,
        "stack": target.stack,
        "url": target.url,
        "url_source": target.source,
        "options": {
            "phases": options.phases,
            "rate": options.rate,
            "duration_s": options.duration,
            "users": options.steady_users,
            "step_users": list(options.step_users),
            "step_duration_s": options.step_duration,
            "max_error_ratio": options.max_error_ratio,
            "timeout_s": options.timeout,
            "processes": options.processes,
        },
        "phases": {name: _phase_summary(p, files[name]) for name, p in results.items()},
        "capacity": found_capacity,
        "memory": memory,
        "cost": cost,
        "checks": checks(target.platform, gated) if gated else [],
        "notes": notes,
    }
