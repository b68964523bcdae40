"""Budget notifications as they reach the enforcer, decoded and checked.

Cloud Billing publishes one Pub/Sub message per budget update (several times a day, and on
every threshold crossed). The format, schema version 1.0, is documented in "Manage programmatic
budget alert notifications", section "Notification format"
(https://cloud.google.com/billing/docs/how-to/budgets-programmatic-notifications#notification_format;
the Budget API's ``NotificationsRule.schema_version`` points there, now as
https://docs.cloud.google.com/billing/docs/how-to/budgets-programmatic-notifications#notification-format,
and accepts only "1.0"; its ``pubsubTopic`` says the JSON carries ``alertThresholdExceeded`` only
if the budget has at least one alert threshold rule: billingbudgets v1 discovery document,
rev. 20261011):

- message attributes: ``billingAccountId``, ``budgetId``, ``schemaVersion`` ("1.0");
- message data, base64 of a JSON object: ``budgetDisplayName``, ``costAmount`` (spend of the
  period so far), ``costIntervalStart`` (RFC 3339 start of the period), ``budgetAmount``,
  ``budgetAmountType`` (``SPECIFIED_AMOUNT`` | ``LAST_PERIOD_AMOUNT``), ``currencyCode``, and
  only once a threshold is crossed ``alertThresholdExceeded`` / ``forecastThresholdExceeded``
  (the highest threshold crossed, a fraction: 1.0 is 100%).

Eventarc delivers a Pub/Sub message as a CloudEvent of type
``google.cloud.pubsub.topic.v1.messagePublished`` whose data is ``{"message": {"data",
"attributes", "messageId", "publishTime"}, "subscription"}``
(https://cloud.google.com/eventarc/docs/cloudevents, google-cloudevents
``google/events/cloud/pubsub/v1/data.proto`` ``MessagePublishedData``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PUBSUB_EVENT_TYPE", "SCHEMA_VERSION", "BudgetNotification", "MalformedNotification", "decode"]

PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
#: The only notification schema the Budget API sends (NotificationsRule.schema_version).
SCHEMA_VERSION = "1.0"


class MalformedNotification(ValueError):
    """The event is not a budget notification the enforcer can read: it says what is wrong."""


@dataclass(frozen=True)
class BudgetNotification:
    """One budget update: which budget, and its actual spend against its amount."""

    billing_account: str
    budget_id: str
    display_name: str
    cost: float
    amount: float
    currency: str
    interval_start: str
    message_id: str
    alert_threshold: float | None = None
    forecast_threshold: float | None = None

    @property
    def budget(self) -> str:
        """The budget's resource name, as the Budget API and Pulumi's ``Budget.name`` give it."""
        return f"billingAccounts/{self.billing_account}/budgets/{self.budget_id}"

    @property
    def spent(self) -> float:
        """Actual spend as a share of the amount (1.0 = all of it)."""
        return self.cost / self.amount if self.amount > 0 else math.inf


def _number(data: Mapping[str, Any], key: str, *, required: bool = True) -> float | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise MalformedNotification(f"data field {key} is {value!r}, not a non-negative number")
    return float(value)


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedNotification(f"{where} {key} is {value!r}, not a non-empty string")
    return value


def decode(event_type: str, data: Any) -> BudgetNotification:
    """The budget notification inside a Pub/Sub CloudEvent's ``data``.

    Raises :class:`MalformedNotification` naming the first thing wrong."""
    if event_type != PUBSUB_EVENT_TYPE:
        raise MalformedNotification(f"event type is {event_type!r}, not {PUBSUB_EVENT_TYPE}")
    if not isinstance(data, Mapping) or not isinstance(data.get("message"), Mapping):
        raise MalformedNotification("event data has no Pub/Sub message (data.message)")
    message = data["message"]
    attributes = message.get("attributes")
    if not isinstance(attributes, Mapping):
        raise MalformedNotification("the message has no attributes; a budget notification carries budgetId")
    version = attributes.get("schemaVersion")
    if version != SCHEMA_VERSION:
        raise MalformedNotification(f"attribute schemaVersion is {version!r}; this enforcer reads {SCHEMA_VERSION}")
    account = _text(attributes, "billingAccountId", "attribute")
    budget_id = _text(attributes, "budgetId", "attribute")
    raw = message.get("data")
    if not isinstance(raw, str) or not raw:
        raise MalformedNotification("the message has no data (base64 JSON of the notification)")
    try:
        body = json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError) as err:
        raise MalformedNotification(f"the message data is not base64 of a JSON object ({err})") from None
    if not isinstance(body, Mapping):
        raise MalformedNotification("the message data is JSON but not an object")
    return BudgetNotification(
        billing_account=account,
        budget_id=budget_id,
        display_name=_text(body, "budgetDisplayName", "data field"),
        cost=_number(body, "costAmount"),  # type: ignore[arg-type]
        amount=_number(body, "budgetAmount"),  # type: ignore[arg-type]
        currency=_text(body, "currencyCode", "data field"),
        interval_start=_text(body, "costIntervalStart", "data field"),
        message_id=str(message.get("messageId") or ""),
        alert_threshold=_number(body, "alertThresholdExceeded", required=False),
        forecast_threshold=_number(body, "forecastThresholdExceeded", required=False),
    )
