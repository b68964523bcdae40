"""Revision identity: a Cloud Run revision name that cannot collide.

Cloud Run revisions are immutable. Deploying a template under a revision name that already
exists with a different configuration is refused with 409 ("Revision named '...' with
different configuration already exists"). So the name is derived from the release *and* a
digest of the whole revision template::

    <service>-<version slug>-<template digest>

Any template change (labels, env, scaling, probes, an agentstage upgrade that adds an env var)
yields a new, deterministic name; the same template always yields the same name, so an
unchanged stack plans no change. Cloud Run requires the ``<service>-`` prefix and a DNS label
of at most 63 characters (Cloud Run Admin API v2, ``RevisionTemplate.revision``); when the
service name and version leave too little room, the version slug is shortened: the digest
already covers the full version (``AGENT_RELEASE``), so two versions never share a name.

Revisions deployed by agentstage 0.1 were named ``<service>-<version slug>``
(:func:`legacy_revision_name`); a ``stable`` without a recorded ``stable_revision`` is one of
those.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "DIGEST_CHARS",
    "REVISION_NAME_MAX",
    "version_slug",
    "template_digest",
    "revision_name",
    "legacy_revision_name",
]

#: Hex characters of the template digest in a revision name (32 bits: two templates of one
#: release colliding is a one-in-four-billion event, and would be a 409, never a silent mix-up).
DIGEST_CHARS = 8
#: Cloud Run's limit on a revision name (a DNS label).
REVISION_NAME_MAX = 63


def version_slug(version: str) -> str:
    """The DNS-label form of a release version: ``1.4.0`` -> ``1-4-0``."""
    return re.sub(r"[^a-z0-9-]", "-", version.lower()).strip("-")


def template_digest(template: Mapping[str, Any]) -> str:
    """A digest of a revision template (every field except the revision name itself), as
    canonical JSON: key order and whitespace do not matter, every value does."""
    body = {k: v for k, v in template.items() if k != "revision"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def revision_name(service: str, version: str, digest: str) -> str:
    """``<service>-<version slug>-<digest>``, at most 63 characters: the slug is shortened
    (never the service prefix or the digest) when the whole would be longer."""
    room = REVISION_NAME_MAX - len(service) - len(digest) - 2
    slug = version_slug(version)[: max(room, 0)].rstrip("-")
    return f"{service}-{slug}-{digest}" if slug else f"{service}-{digest}"


def legacy_revision_name(service: str, version: str) -> str:
    """The name agentstage 0.1 gave a release's revision: ``<service>-<version slug>``."""
    return f"{service}-{version_slug(version)}"
