"""Feature flags in Parameter Manager: the contract between the stack, the agent and the
spend-cap enforcer.

Each agent of each environment has one JSON parameter holding its flags (``features:`` of the
stack config). Its full resource name reaches the agent as the env var :data:`FLAGS_ENV`, which
never changes; a flag change is a new parameter version (the version ``latest`` is the one in
force), so flipping a flag updates one resource and creates no new revision.

This module is imported by agents at run time: it must stay light (no Pulumi imports).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "FLAGS_ENV",
    "FLAGS_LOCATION",
    "LATEST",
    "FlagReader",
    "flag",
    "parameter_id",
    "parameter_name",
    "parse_flags",
    "render_flags",
    "version_id",
]

log = logging.getLogger("agentstage.flags")

#: Env var carrying the flags parameter's resource name to the agent.
FLAGS_ENV = "AGENTSTAGE_FLAGS_PARAMETER"
#: Parameters are global (``projects/P/locations/global/parameters/ID``).
FLAGS_LOCATION = "global"
#: The version alias that names the most recent version of a parameter (Parameter Manager
#: ``RenderParameterVersion`` accepts it in place of a version id: Google's sample
#: https://github.com/GoogleCloudPlatform/python-docs-samples/blob/main/parametermanager/snippets/render_param_version.py
#: "The ID of the version or alias (e.g. "latest")"). Whether it skips disabled versions is not
#: documented; rendering a disabled version "fails with an error"
#: (https://cloud.google.com/secret-manager/parameter-manager/docs/reference/rest/v1/projects.locations.parameters.versions),
#: so nothing here disables a version (the stack deletes a superseded one).
LATEST = "latest"
#: Prefix of the version ids the stack writes (:func:`version_id`); versions written by other
#: tools (the spend-cap enforcer) use their own prefix, so the two never collide.
CONFIG_VERSION_PREFIX = "config-"


def parameter_id(service_name: str, environment: str) -> str:
    """The flags parameter's id for one agent (its physical service name) in one environment."""
    return f"{service_name}-{environment}-flags"


def parameter_name(project: str, service_name: str, environment: str) -> str:
    """The flags parameter's full resource name."""
    return f"projects/{project}/locations/{FLAGS_LOCATION}/parameters/{parameter_id(service_name, environment)}"


def render_flags(flags: Mapping[str, bool]) -> str:
    """A parameter version's payload: the flags as canonical JSON (sorted keys, no spaces), so
    the same flags always give the same bytes (and the same version id)."""
    return json.dumps({k: bool(v) for k, v in flags.items()}, sort_keys=True, separators=(",", ":"))


def version_id(flags: Mapping[str, bool]) -> str:
    """The id of the parameter version the stack writes for ``flags``: ``config-`` and 16 hex
    characters of the payload's SHA-256. The same flags give the same id (an unchanged stack
    plans no change); different flags a different id, hence a new version."""
    digest = hashlib.sha256(render_flags(flags).encode()).hexdigest()[:16]
    return f"{CONFIG_VERSION_PREFIX}{digest}"


def parse_flags(data: bytes | str) -> dict[str, bool]:
    """A version's payload as flags; ValueError unless it is a JSON object of booleans (what
    :func:`render_flags` writes)."""
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError(f"the payload is a JSON {type(value).__name__}, not an object of flags")
    bad = sorted(k for k, v in value.items() if not isinstance(v, bool))
    if bad:
        raise ValueError(f"flag {bad[0]!r} is not true or false")
    return dict(value)


class FlagReader:
    """Reads an agent's flags from Parameter Manager at run time, for the agent's own code.

    ``parameter`` is the parameter's resource name (default: the env var :data:`FLAGS_ENV`).
    The version ``latest`` is rendered at most once per ``ttl`` seconds; between reads the cached
    flags answer. A read never raises into the agent: when the service is unreachable, the call
    times out (``timeout``, no retries: a request must not wait on its flags) or the payload is
    not a JSON object of booleans, the last good flags stay in force, and before any good read
    the safe default answers (the ``default`` given to :meth:`flag`, else ``defaults[name]``,
    else False: a tool stays off when its flag cannot be read). Each kind of trouble is logged
    once (warning) until a read succeeds again.

    ``client`` is a ``google.cloud.parametermanager_v1.ParameterManagerClient`` (default: one
    created on first use with the runtime's credentials; the library is imported only then).
    Thread-safe: one read at a time per TTL; threads asking meanwhile wait for it (at most
    ``timeout``) rather than each calling the service."""

    def __init__(
        self,
        parameter: str | None = None,
        *,
        ttl: float = 30.0,
        defaults: Mapping[str, bool] | None = None,
        timeout: float = 2.0,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.parameter = parameter if parameter is not None else (os.environ.get(FLAGS_ENV) or None)
        self.ttl = ttl
        self.defaults = dict(defaults or {})
        self.timeout = timeout
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._flags: dict[str, bool] | None = None
        self._read_at: float | None = None
        self._trouble: str | None = None
        #: The version the last good read rendered (``.../versions/<id>``), for logs and tests.
        self.version: str | None = None

    def flag(self, name: str, default: bool | None = None) -> bool:
        """The flag ``name``: its value in the latest version read, else the safe default."""
        read = self._current()
        if name in read:
            return read[name]
        if default is not None:
            return default
        return self.defaults.get(name, False)

    def flags(self) -> dict[str, bool]:
        """All flags in force: the defaults overlaid with the last good version read."""
        return {**self.defaults, **self._current()}

    def _current(self) -> dict[str, bool]:
        """The last good flags read (refreshed when the TTL has passed); {} before any."""
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.ttl:
                self._read_at = now
                self._refresh()
            return dict(self._flags or {})

    def _refresh(self) -> None:
        if not self.parameter:
            self._warn("unset", f"{FLAGS_ENV} is not set: feature flags keep their defaults")
            return
        name = f"{self.parameter}/versions/{LATEST}"
        try:
            response = self._get_client().render_parameter_version(name=name, timeout=self.timeout, retry=None)
        except Exception as error:  # noqa: BLE001 - any failure to read keeps the flags in force
            self._warn("unreachable", f"cannot read {name} ({_brief(error)}): {self._keeping()}")
            return
        data = response.rendered_payload or response.payload.data
        try:
            flags = parse_flags(data)
        except ValueError as error:
            self._warn(
                "bad",
                f"{response.parameter_version or name} is not a JSON object of flags ({error}): {self._keeping()}",
            )
            return
        if self._trouble is not None:
            log.info("feature flags read again from %s", response.parameter_version or name)
        self._trouble = None
        self._flags = flags
        self.version = response.parameter_version or name

    def _get_client(self) -> Any:
        if self._client is None:
            from google.cloud import parametermanager_v1

            self._client = parametermanager_v1.ParameterManagerClient()
        return self._client

    def _keeping(self) -> str:
        return "keeping the last flags read" if self._flags is not None else "using the defaults"

    def _warn(self, kind: str, message: str) -> None:
        if self._trouble != kind:
            log.warning("feature flags: %s", message)
        self._trouble = kind


def _brief(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_shared: FlagReader | None = None
_shared_lock = threading.Lock()


def flag(name: str, default: bool = False) -> bool:
    """``name`` from this process's flags parameter (:data:`FLAGS_ENV`), through one shared
    :class:`FlagReader` with the default TTL; ``default`` when it cannot be read."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FlagReader()
    return _shared.flag(name, default)
