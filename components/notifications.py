"""NotificationChannels: where the environment's alerts and budget notifications go."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pulumi
import pulumi_gcp as gcp

from components.contract import COMPONENT_TYPES
from components.ops_spec import AlertsSpec

__all__ = ["NotificationChannels", "channel_key", "PUBLISHER"]

PUBLISHER = "roles/pubsub.publisher"


def channel_key(value: str) -> str:
    """A resource-name-safe key of a channel target: ``oncall@acme.com`` -> ``oncall-at-acme-com``."""
    value = value.lower().replace("@", "-at-")
    value = re.sub(r"^(https://|projects/)", "", value)
    return re.sub(r"[^a-z0-9]+", "-", value).strip("-")[:60].rstrip("-")


class NotificationChannels(pulumi.ComponentResource):
    """One Cloud Monitoring notification channel per configured target, created once per
    environment: ``email`` per address, ``pubsub`` per topic, ``webhook_tokenauth`` per URL.
    Each is keyed by its target, so reordering the config replaces nothing.

    ``names`` (every channel's resource name, for alert policies) and ``email_names`` (the
    email channels only: billing budgets accept at most five) are lists of outputs, not
    outputs of lists: Monitoring assigns the names, so they are unknown in a first preview,
    but how many channels an alert policy notifies is known and every policy can count them.
    Each
    Pub/Sub topic also gets ``roles/pubsub.publisher`` for the project's Monitoring
    notification service agent, without which Monitoring cannot publish.
    """

    names: list[pulumi.Output[str]]
    email_names: list[pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        *,
        spec: AlertsSpec,
        project: str,
        environment: str,
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["NotificationChannels"], name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.channels: dict[str, gcp.monitoring.NotificationChannel] = {}
        email: list[gcp.monitoring.NotificationChannel] = []

        def channel(
            kind: str, target: str, type_: str, channel_labels: dict[str, str]
        ) -> gcp.monitoring.NotificationChannel:
            resource = gcp.monitoring.NotificationChannel(
                f"{name}-{kind}-{channel_key(target)}",
                project=project,
                type=type_,
                display_name=f"agentstage {environment}: {target}",
                description=f"Alerts of the {environment} agents. Managed by agentstage.",
                labels=channel_labels,
                user_labels=dict(labels),
                enabled=True,
                opts=child,
            )
            self.channels[f"{kind}:{target}"] = resource
            return resource

        for address in spec.notification_emails:
            email.append(channel("email", address, "email", {"email_address": address}))
        self.publishers: dict[str, gcp.pubsub.TopicIAMMember] = {}
        if spec.pubsub_topics:
            # Monitoring publishes as its notification service agent: let it publish on each topic.
            number = gcp.organizations.get_project_output(
                project_id=project, opts=pulumi.InvokeOutputOptions(parent=self)
            ).number
            agent = number.apply(
                lambda n: f"serviceAccount:service-{n}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
            )
        for topic in spec.pubsub_topics:
            resource = channel("pubsub", topic, "pubsub", {"topic": topic})
            self.publishers[topic] = gcp.pubsub.TopicIAMMember(
                f"{name}-pubsub-{channel_key(topic)}-publisher",
                project=topic.split("/")[1],
                topic=topic,
                role=PUBLISHER,
                member=agent,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[resource]),
            )
        for url in spec.webhooks:
            channel("webhook", url, "webhook_tokenauth", {"url": url})

        self.names = [c.name for c in self.channels.values()]
        self.email_names = [c.name for c in email]
        self.register_outputs({"names": self.names, "email_names": self.email_names})
