"""Run the spend-cap enforcer locally, as it is deployed, against local Google APIs.

A helper module (not a test) for the enforcer's tests, its bench and the walkthrough in
docs/spend-caps.md. It writes the function's source archive (exactly the files the component
uploads) to a directory, starts ``functions-framework`` on it in a child process bound to
127.0.0.1 with only that directory on its import path (so the archive is proven
self-contained), and points it at a local Cloud Run Admin API (tests/run_fake.py) and a local
Parameter Manager (tests/parameter_fake.py).

Notifications are built as Cloud Billing publishes them (the documented budget notification
JSON and attributes, see agentstage/enforcer/notification.py) and wrapped, with the
``cloudevents`` library, the way Eventarc delivers a Pub/Sub message to a function: a
``google.cloud.pubsub.topic.v1.messagePublished`` CloudEvent in binary HTTP mode whose data is
``{"message": {...}, "subscription": ...}``.

Walkthrough: ``python -m tests.enforcer_harness`` (see docs/spend-caps.md).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from agentstage.enforcer.config import CONFIG_ENV
from agentstage.enforcer.main import PARAMETERS_ENDPOINT_ENV, RUN_ENDPOINT_ENV
from agentstage.enforcer.notification import PUBSUB_EVENT_TYPE
from agentstage.enforcer.package import ENTRY_POINT, source_files
from tests import parameter_fake, run_fake

PROJECT, REGION, ENVIRONMENT = "acme-agents-prod", "us-central1", "production"
ACCOUNT = "012345-6789AB-CDEF01"
TOPIC = f"projects/{PROJECT}/topics/agentstage-spend-caps-{ENVIRONMENT}"


def service(name: str) -> str:
    return f"projects/{PROJECT}/locations/{REGION}/services/{name}"


def parameter(name: str) -> str:
    return f"projects/{PROJECT}/locations/global/parameters/{name}-{ENVIRONMENT}-flags"


#: Three capped agents, one per action (the component writes the same shape).
CAPS: list[dict[str, Any]] = [
    {
        "agent": "support-bot",
        "display_name": "agentstage cap support-bot (production)",
        "budget": f"billingAccounts/{ACCOUNT}/budgets/b-support",
        "service": service("support-bot"),
        "threshold": 1.0,
        "action": "canary-to-zero",
        "max_instances": None,
        "flags": [],
        "parameter": None,
    },
    {
        "agent": "research-agent",
        "display_name": "agentstage cap research-agent (production)",
        "budget": f"billingAccounts/{ACCOUNT}/budgets/b-research",
        "service": service("research-agent"),
        "threshold": 0.9,
        "action": "cap-instances",
        "max_instances": 2,
        "flags": [],
        "parameter": None,
    },
    {
        "agent": "writer",
        "display_name": "agentstage cap writer (production)",
        "budget": f"billingAccounts/{ACCOUNT}/budgets/b-writer",
        "service": service("writer"),
        "threshold": 1.0,
        "action": "flags-off",
        "max_instances": None,
        "flags": ["web_search_tool"],
        "parameter": parameter("writer"),
    },
]
BUDGET_IDS = {cap["agent"]: cap["budget"].rsplit("/", 1)[1] for cap in CAPS}
DISPLAY_NAMES = {cap["agent"]: cap["display_name"] for cap in CAPS}


def notification(
    display_name: str,
    budget_id: str,
    cost: float,
    amount: float = 300.0,
    *,
    threshold: float | None = None,
    currency: str = "USD",
) -> tuple[dict[str, Any], dict[str, str]]:
    """A budget notification as Cloud Billing publishes it: (JSON body, message attributes)."""
    body: dict[str, Any] = {
        "budgetDisplayName": display_name,
        "costAmount": cost,
        "costIntervalStart": "2026-11-01T07:00:00Z",
        "budgetAmount": amount,
        "budgetAmountType": "SPECIFIED_AMOUNT",
        "currencyCode": currency,
    }
    if threshold is not None:
        body["alertThresholdExceeded"] = threshold
    attributes = {"billingAccountId": ACCOUNT, "budgetId": budget_id, "schemaVersion": "1.0"}
    return body, attributes


def pubsub_event(data: bytes | str, attributes: dict[str, str], message_id: str) -> CloudEvent:
    """A Pub/Sub message as Eventarc delivers it (MessagePublishedData in a CloudEvent)."""
    raw = data.encode() if isinstance(data, str) else data
    return CloudEvent(
        {
            "type": PUBSUB_EVENT_TYPE,
            "source": f"//pubsub.googleapis.com/{TOPIC}",
            "id": message_id,
            "datacontenttype": "application/json",
        },
        {
            "message": {
                "data": base64.b64encode(raw).decode(),
                "attributes": attributes,
                "messageId": message_id,
                "publishTime": "2026-11-21T12:00:00.000Z",
            },
            "subscription": f"projects/{PROJECT}/subscriptions/eventarc-{REGION}-enforcer-sub-000",
        },
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningEnforcer:
    """The function in its child process, the local APIs it calls, and its log lines."""

    url: str
    process: subprocess.Popen
    run: run_fake.FakeServices
    parameters: parameter_fake.FakeParameters
    logs: list[dict[str, Any]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: iter(range(10_000_000_000, 99_999_999_999)))

    def deliver(self, event: CloudEvent) -> requests.Response:
        headers, body = to_binary(event)
        return requests.post(self.url, headers=headers, data=body, timeout=30)

    def notify(self, agent_or_name: str, cost: float, *, amount: float = 300.0, message_id: str | None = None, **kw):
        """Deliver a notification for a capped agent (its budget) or any other display name."""
        display = DISPLAY_NAMES.get(agent_or_name, agent_or_name)
        budget_id = BUDGET_IDS.get(agent_or_name, "b-other")
        body, attributes = notification(display, kw.pop("budget_id", budget_id), cost, amount, **kw)
        return self.deliver(pubsub_event(json.dumps(body), attributes, message_id or str(next(self._ids))))

    def reset(self) -> None:
        """The starting state: support-bot a 5% canary, research-agent uncapped, writer's flags on."""
        self.run.services.clear()
        self.run.calls.clear()
        self.run.add(
            service("support-bot"), [("support-bot-1-3-2", 95, ""), ("support-bot-1-4-0-93457a87", 5, "canary")]
        )
        self.run.add(service("research-agent"), [("research-agent-2-1-0", 100, "")], max_instances=8)
        self.run.add(service("writer"), [("writer-1-0-0", 100, "")])
        self.parameters.reset()
        self.parameters.add_parameter(parameter("writer"))
        self.parameters.add_version(parameter("writer"), "config-0", '{"citations":true,"web_search_tool":true}')
        self.logs.clear()

    def wait_for_logs(self, outcome: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The log lines with ``outcome`` once there are ``count`` of them (the function writes
        a line before it answers; this process reads it a moment later)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [entry for entry in list(self.logs) if entry.get("outcome") == outcome]
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"fewer than {count} log lines with outcome {outcome!r}: {self.logs}")

    def wait_for_log(self, outcome: str, timeout: float = 5.0) -> dict[str, Any]:
        return self.wait_for_logs(outcome, 1, timeout)[0]


def write_source(directory: Path) -> Path:
    """The function's source archive, unpacked: returns the path of its main.py."""
    for path, text in source_files().items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return directory / "main.py"


@contextmanager
def running_enforcer(directory: Path, caps: list[dict[str, Any]] | None = None) -> Iterator[RunningEnforcer]:
    """Start the local APIs and the function; stop them on exit."""
    run = run_fake.FakeServices()
    parameters = parameter_fake.FakeParameters()
    with run_fake.serve(run) as run_server, parameter_fake.serve(parameters) as parameter_server:
        main = write_source(directory)
        port = _free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(directory),
            "PYTHONUNBUFFERED": "1",
            "NO_GCE_CHECK": "true",
            CONFIG_ENV: json.dumps({"caps": caps if caps is not None else CAPS}),
            RUN_ENDPOINT_ENV: run_server.address,
            PARAMETERS_ENDPOINT_ENV: parameter_server.address,
        }
        framework = Path(sys.executable).parent / "functions-framework"
        command = [str(framework), "--source", str(main), "--target", ENTRY_POINT, "--signature-type", "cloudevent"]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(
            command, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        running = RunningEnforcer(f"http://127.0.0.1:{port}/", process, run, parameters)
        threading.Thread(target=_read_logs, args=(process, running.logs), daemon=True).start()
        try:
            _wait_until_listening(port, process)
            running.reset()
            yield running
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _read_logs(process: subprocess.Popen, logs: list[dict[str, Any]]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        line = line.strip()
        if line.startswith("{"):
            try:
                logs.append(json.loads(line))
                continue
            except ValueError:
                pass
        if line:
            logs.append({"raw": line})


def _wait_until_listening(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"functions-framework exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"functions-framework did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def _demo() -> None:
    """The walkthrough of docs/spend-caps.md: a canary that overspends goes to 0%."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, running_enforcer(Path(tmp)) as enforcer:
        name = service("support-bot")
        print(f"enforcer listening on {enforcer.url} (functions-framework, source archive in a temp dir)")
        print(f"support-bot traffic before: {enforcer.run.traffic(name)}")
        for cost, what in ((150.0, "half the cap"), (320.0, "past the cap"), (325.0, "past the cap, again")):
            response = enforcer.notify("support-bot", cost)
            time.sleep(0.1)
            entry = next((e for e in reversed(enforcer.logs) if "outcome" in e), {})
            print(
                f"notification {cost:.0f} of 300 USD ({what}): HTTP {response.status_code}, "
                f"{entry.get('outcome')}: {entry.get('message')}"
            )
            print(f"  support-bot traffic now: {enforcer.run.traffic(name)}")
        print(f"Cloud Run API calls: {enforcer.run.calls}")


if __name__ == "__main__":
    _demo()
