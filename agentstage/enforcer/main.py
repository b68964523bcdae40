"""The enforcer's entry point: ``on_budget``, a functions-framework CloudEvent function.

Deployed as a Cloud Run function (entry point ``on_budget``) with an Eventarc Pub/Sub trigger
on the spend-caps topic; run locally with
``functions-framework --source agentstage/enforcer/main.py --target on_budget``.

Delivery contract (what the HTTP status tells Pub/Sub through Eventarc):

- handled, ignored (another budget, below the threshold) or already in force: 2xx, done;
- malformed (not a budget notification, bad base64 or JSON, a missing field): logged as an
  error and acknowledged with 2xx. A 4xx would not help: Pub/Sub push treats every status but
  102/200/201/202/204 as a failure and redelivers until the message expires, and the same bytes
  would fail the same way every time;
- an action that failed (the Cloud Run or Parameter Manager API answered an error or timed out):
  the function raises, the framework answers 500 and Pub/Sub redelivers with backoff. That is
  safe because every action is idempotent.

Env: :data:`~agentstage.enforcer.config.CONFIG_ENV` (the caps, set by the component);
``AGENTSTAGE_RUN_ENDPOINT`` / ``AGENTSTAGE_PARAMETERS_ENDPOINT`` point the clients at a local
server (``host:port`` on the loopback interface only, plain gRPC, no credentials) for offline
runs; unset, the clients use Google's endpoints with the function's identity.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import functions_framework

# The client libraries load with the instance, before it takes its first event: imported on the
# first action instead, they added over a second to that notification (google.cloud.run_v2 alone
# imports in about 1.3 s on a small machine).
from google.cloud import parametermanager_v1, run_v2

from agentstage.enforcer.actions import ActionFailed, Enforcer, Outcome
from agentstage.enforcer.config import ConfigError, load_caps
from agentstage.enforcer.notification import MalformedNotification, decode

__all__ = ["on_budget", "handle_event", "RUN_ENDPOINT_ENV", "PARAMETERS_ENDPOINT_ENV"]

RUN_ENDPOINT_ENV = "AGENTSTAGE_RUN_ENDPOINT"
PARAMETERS_ENDPOINT_ENV = "AGENTSTAGE_PARAMETERS_ENDPOINT"
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")

log = logging.getLogger("agentstage.enforcer")


class _JsonLines(logging.Formatter):
    """One JSON object per line with ``severity`` and ``message``: Cloud Run's logging agent
    turns it into a structured log entry (https://cloud.google.com/run/docs/logging#special-fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"severity": record.levelname, "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, sort_keys=True)


def _setup_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_JsonLines())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def _local_channel(endpoint: str, env: str) -> Any:
    import grpc

    if not endpoint.startswith(tuple(f"{host}:" for host in _LOOPBACK)):
        raise ConfigError(f"{env}={endpoint!r}: only a loopback host:port (a local test server) may replace Google's")
    return grpc.insecure_channel(endpoint)


def run_client() -> Any:
    endpoint = os.environ.get(RUN_ENDPOINT_ENV)
    if not endpoint:
        return run_v2.ServicesClient()
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

    channel = _local_channel(endpoint, RUN_ENDPOINT_ENV)
    return run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel, credentials=AnonymousCredentials()))


def parameters_client() -> Any:
    endpoint = os.environ.get(PARAMETERS_ENDPOINT_ENV)
    if not endpoint:
        return parametermanager_v1.ParameterManagerClient()
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.parametermanager_v1.services.parameter_manager.transports import (
        ParameterManagerGrpcTransport,
    )

    channel = _local_channel(endpoint, PARAMETERS_ENDPOINT_ENV)
    return parametermanager_v1.ParameterManagerClient(
        transport=ParameterManagerGrpcTransport(channel=channel, credentials=AnonymousCredentials())
    )


_enforcer: Enforcer | None = None


def enforcer() -> Enforcer:
    """The process's enforcer, built on first use from the env (its clients too: a warm
    instance reuses their channels)."""
    global _enforcer
    if _enforcer is None:
        _enforcer = Enforcer(load_caps(), run_client=run_client, parameters_client=parameters_client)
    return _enforcer


def handle_event(event_type: str, event_id: str, data: Any, enforcer_: Enforcer | None = None) -> Outcome:
    """Decode, decide, act, and log one line saying what happened. Raises only when an action
    failed (so the delivery is retried)."""
    try:
        note = decode(event_type, data)
    except MalformedNotification as err:
        log.error(
            "rejected a malformed budget notification (acknowledged, not retried): %s",
            err,
            extra={"fields": {"event_id": event_id, "outcome": "malformed"}},
        )
        return Outcome("malformed", str(err))
    try:
        outcome = (enforcer_ or enforcer()).handle(note)
    except (ActionFailed, ConfigError) as err:
        # answered 500 by the framework: Pub/Sub redelivers, and every action is idempotent
        log.error(
            "spend cap not enforced yet, the delivery will be retried: %s",
            err,
            extra={"fields": {"event_id": event_id, "budget": note.budget, "outcome": "failed"}},
        )
        raise
    fields = {
        "event_id": event_id,
        "budget": note.budget,
        "budget_display_name": note.display_name,
        "cost": note.cost,
        "budget_amount": note.amount,
        "currency": note.currency,
        "outcome": outcome.result,
        "agent": outcome.agent,
        "action": outcome.action,
    }
    level = logging.WARNING if outcome.result == "applied" else logging.INFO
    log.log(level, "spend cap %s: %s", outcome.result, outcome.detail, extra={"fields": fields})
    return outcome


@functions_framework.cloud_event
def on_budget(event: Any) -> None:
    """Eventarc delivers each budget notification here (a Pub/Sub messagePublished CloudEvent)."""
    _setup_logging()
    handle_event(event["type"], event["id"], event.get_data())
