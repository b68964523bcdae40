"""Labels: merged once per agent, applied to every labelable child."""

from __future__ import annotations

from collections.abc import Mapping

from components.contract import LABEL_AGENT, LABEL_ENVIRONMENT, LABEL_MANAGED_BY, LABEL_RELEASE, MANAGED_BY
from components.revision import version_slug

__all__ = ["MANAGED_BY", "platform_labels", "agent_labels"]


def platform_labels(environment: str, user: Mapping[str, str]) -> dict[str, str]:
    """Labels of environment-wide resources: ``environment``, ``managed-by`` and the user's."""
    return {**user, LABEL_ENVIRONMENT: environment, LABEL_MANAGED_BY: MANAGED_BY}


def agent_labels(environment: str, agent: str, version: str, user: Mapping[str, str]) -> dict[str, str]:
    """Labels of an agent's resources: the platform labels plus ``agent`` and ``release``
    (the release version as a label value: ``1.4.0`` -> ``1-4-0``)."""
    return {**platform_labels(environment, user), LABEL_AGENT: agent, LABEL_RELEASE: version_slug(version)}
