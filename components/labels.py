"""Labels: merged once per agent, applied to every labelable child."""

from __future__ import annotations

from collections.abc import Mapping

from components.spec import version_slug

MANAGED_BY = "agentstage"


def platform_labels(environment: str, user: Mapping[str, str]) -> dict[str, str]:
    """Labels of environment-wide resources: ``environment``, ``managed-by`` and the user's."""
    return {**user, "environment": environment, "managed-by": MANAGED_BY}


def agent_labels(environment: str, agent: str, version: str, user: Mapping[str, str]) -> dict[str, str]:
    """Labels of an agent's resources: the platform labels plus ``agent`` and ``release``
    (the release version as a label value: ``1.4.0`` -> ``1-4-0``)."""
    return {**platform_labels(environment, user), "agent": agent, "release": version_slug(version)}
