"""A local Parameter Manager (``google.cloud.parametermanager.v1.ParameterManager``) on 127.0.0.1,
speaking gRPC with the client library's own proto-plus messages, so the REAL
``ParameterManagerClient`` talks to it. A test helper module (not a test), shared by the flags
reader tests and the spend-cap enforcer tests.

Interface (kept stable; add to it, do not change it):

``FakeParameters()``
    the in-memory store. Served methods: ``GetParameter``, ``CreateParameter``,
    ``GetParameterVersion``, ``RenderParameterVersion``, ``CreateParameterVersion``,
    ``ListParameterVersions``. A version name may end in ``/versions/latest``: it resolves to the
    most recently created version that is not disabled.
``fake.add_parameter(name, *, format_=ParameterFormat.JSON, labels=None) -> Parameter``
    create a parameter ``projects/P/locations/L/parameters/ID`` directly (no call recorded).
``fake.add_version(parameter, version_id, payload, *, disabled=False) -> ParameterVersion``
    add a version directly; ``payload`` is ``str`` (UTF-8) or ``bytes``.
``fake.payload(parameter, version="latest") -> bytes`` and ``fake.versions(parameter) -> list[str]``
    read the store (version ids in creation order).
``fake.calls: list[tuple[str, str]]``
    ``(method, resource name)`` of every request, in order (the parent for create/list).
``fake.requests: list[tuple[str, proto.Message]]``
    the same calls with the full request message.
``fake.unavailable = True``
    every call fails with ``UNAVAILABLE`` (the service is unreachable) until set back to ``False``.
``fake.fail_next(method, code=grpc.StatusCode.UNAVAILABLE, message="...", times=1)``
    the next ``times`` calls of ``method`` fail with ``code``.
``fake.delay = 0.0``
    seconds every call waits before answering (a slow service; the client's deadline applies).
``fake.reset()``
    empty the store, the records and the failures.

``serve(fake) -> ParameterServer`` (a context manager too): starts the gRPC server on a free port
of 127.0.0.1; ``.client()`` returns a ``ParameterManagerClient`` bound to it with anonymous
credentials (a fresh one each call), ``.address`` is ``host:port``, ``.stop()`` stops it.

Rules the fake enforces, as Parameter Manager documents them: a version of a JSON parameter must
hold valid JSON (https://cloud.google.com/secret-manager/parameter-manager/docs/create-parameter-version);
creating an existing version id is ``ALREADY_EXISTS``; a missing parameter or version is
``NOT_FOUND``; rendering a disabled version fails (``ParameterVersion.disabled``: "A render call on a
disabled resource fails with an error", parametermanager_v1 ``types/service.py``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent import futures
from typing import Any

import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import parametermanager_v1 as pm
from google.cloud.parametermanager_v1.services.parameter_manager.transports import ParameterManagerGrpcTransport
from google.protobuf import timestamp_pb2

SERVICE = "google.cloud.parametermanager.v1.ParameterManager"
_PARAMETER = re.compile(r"^projects/[^/]+/locations/[^/]+/parameters/[^/]+$")
_VERSION = re.compile(r"^(projects/[^/]+/locations/[^/]+/parameters/[^/]+)/versions/([^/]+)$")


class FakeParameters:
    """Parameters and their versions in memory; every request recorded; failures on demand."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Empty the store, the records and the scheduled failures."""
        self.parameters: dict[str, pm.Parameter] = {}
        #: parameter name -> {version id: version}, in creation order
        self.store: dict[str, dict[str, pm.ParameterVersion]] = {}
        self.calls: list[tuple[str, str]] = []
        self.requests: list[tuple[str, Any]] = []
        self.unavailable = False
        self.delay = 0.0
        self._failures: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self._clock = 1_700_000_000

    # --- direct access for tests ---------------------------------------------------------

    def add_parameter(
        self, name: str, *, format_: pm.ParameterFormat = pm.ParameterFormat.JSON, labels: dict | None = None
    ) -> pm.Parameter:
        if not _PARAMETER.match(name):
            raise ValueError(f"not a parameter name: {name}")
        with self.lock:
            parameter = pm.Parameter(name=name, format_=format_, labels=labels or {}, create_time=self._now())
            self.parameters[name] = parameter
            self.store.setdefault(name, {})
            return parameter

    def add_version(
        self, parameter: str, version_id: str, payload: str | bytes, *, disabled: bool = False
    ) -> pm.ParameterVersion:
        data = payload.encode() if isinstance(payload, str) else payload
        with self.lock:
            if parameter not in self.parameters:
                raise KeyError(parameter)
            version = pm.ParameterVersion(
                name=f"{parameter}/versions/{version_id}",
                payload=pm.ParameterVersionPayload(data=data),
                disabled=disabled,
                create_time=self._now(),
            )
            self.store[parameter][version_id] = version
            return version

    def versions(self, parameter: str) -> list[str]:
        with self.lock:
            return list(self.store.get(parameter, {}))

    def payload(self, parameter: str, version: str = "latest") -> bytes:
        with self.lock:
            found = self._resolve(f"{parameter}/versions/{version}")
        if found is None:
            raise KeyError(f"{parameter}/versions/{version}")
        return found.payload.data

    def fail_next(
        self,
        method: str,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        message: str = "the service is unavailable",
        times: int = 1,
    ) -> None:
        with self.lock:
            self._failures.setdefault(method, []).extend([(code, message)] * times)

    # --- internals -------------------------------------------------------------------------

    def _now(self) -> timestamp_pb2.Timestamp:
        self._clock += 1
        return timestamp_pb2.Timestamp(seconds=self._clock)

    def _resolve(self, name: str) -> pm.ParameterVersion | None:
        match = _VERSION.match(name)
        if not match:
            return None
        parameter, version_id = match.groups()
        versions = self.store.get(parameter, {})
        if version_id == "latest":
            enabled = [v for v in versions.values() if not v.disabled]
            return enabled[-1] if enabled else None
        return versions.get(version_id)

    def _enter(self, method: str, name: str, request: Any, context: grpc.ServicerContext) -> None:
        """Record the call, then fail it if the service is down or a failure is scheduled."""
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.calls.append((method, name))
            self.requests.append((method, request))
            if self.unavailable:
                failure = (grpc.StatusCode.UNAVAILABLE, "the service is unavailable")
            else:
                queue = self._failures.get(method) or []
                failure = queue.pop(0) if queue else None
        if failure is not None:
            context.abort(*failure)

    # --- the API -------------------------------------------------------------------------

    def get_parameter(self, request: pm.GetParameterRequest, context: grpc.ServicerContext) -> pm.Parameter:
        self._enter("GetParameter", request.name, request, context)
        with self.lock:
            found = self.parameters.get(request.name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Parameter [{request.name}] not found.")
        return found

    def create_parameter(self, request: pm.CreateParameterRequest, context: grpc.ServicerContext) -> pm.Parameter:
        self._enter("CreateParameter", request.parent, request, context)
        name = f"{request.parent}/parameters/{request.parameter_id}"
        with self.lock:
            exists = name in self.parameters
        if exists:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"Parameter [{name}] already exists.")
        return self.add_parameter(name, format_=request.parameter.format_, labels=dict(request.parameter.labels))

    def get_parameter_version(
        self, request: pm.GetParameterVersionRequest, context: grpc.ServicerContext
    ) -> pm.ParameterVersion:
        self._enter("GetParameterVersion", request.name, request, context)
        with self.lock:
            found = self._resolve(request.name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"ParameterVersion [{request.name}] not found.")
        if found.disabled or request.view == pm.View.BASIC:
            # a disabled version is metadata only: its payload is never returned
            return pm.ParameterVersion(name=found.name, disabled=found.disabled, create_time=found.create_time)
        return found

    def render_parameter_version(
        self, request: pm.RenderParameterVersionRequest, context: grpc.ServicerContext
    ) -> pm.RenderParameterVersionResponse:
        self._enter("RenderParameterVersion", request.name, request, context)
        with self.lock:
            found = self._resolve(request.name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"ParameterVersion [{request.name}] not found.")
        if found.disabled:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"ParameterVersion [{found.name}] is disabled.")
        # flags hold no Secret Manager references, so the rendered payload is the payload itself
        return pm.RenderParameterVersionResponse(
            parameter_version=found.name, payload=found.payload, rendered_payload=found.payload.data
        )

    def create_parameter_version(
        self, request: pm.CreateParameterVersionRequest, context: grpc.ServicerContext
    ) -> pm.ParameterVersion:
        self._enter("CreateParameterVersion", request.parent, request, context)
        version_id = request.parameter_version_id
        with self.lock:
            parameter = self.parameters.get(request.parent)
            exists = parameter is not None and version_id in self.store[request.parent]
        if parameter is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Parameter [{request.parent}] not found.")
        if exists:
            context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                f"ParameterVersion [{request.parent}/versions/{version_id}] already exists.",
            )
        data = request.parameter_version.payload.data
        if parameter.format_ == pm.ParameterFormat.JSON:
            try:
                json.loads(data)
            except ValueError:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "The payload is not valid JSON.")
        return self.add_version(request.parent, version_id, data, disabled=request.parameter_version.disabled)

    def list_parameter_versions(
        self, request: pm.ListParameterVersionsRequest, context: grpc.ServicerContext
    ) -> pm.ListParameterVersionsResponse:
        self._enter("ListParameterVersions", request.parent, request, context)
        with self.lock:
            if request.parent not in self.parameters:
                found = None
            else:
                # a list answers metadata only (the BASIC view), as the real service does
                found = [
                    pm.ParameterVersion(name=v.name, disabled=v.disabled, create_time=v.create_time)
                    for v in self.store[request.parent].values()
                ]
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Parameter [{request.parent}] not found.")
        return pm.ListParameterVersionsResponse(parameter_versions=found)


_METHODS = {
    "GetParameter": ("get_parameter", pm.GetParameterRequest, pm.Parameter),
    "CreateParameter": ("create_parameter", pm.CreateParameterRequest, pm.Parameter),
    "GetParameterVersion": ("get_parameter_version", pm.GetParameterVersionRequest, pm.ParameterVersion),
    "RenderParameterVersion": (
        "render_parameter_version",
        pm.RenderParameterVersionRequest,
        pm.RenderParameterVersionResponse,
    ),
    "CreateParameterVersion": ("create_parameter_version", pm.CreateParameterVersionRequest, pm.ParameterVersion),
    "ListParameterVersions": (
        "list_parameter_versions",
        pm.ListParameterVersionsRequest,
        pm.ListParameterVersionsResponse,
    ),
}


class ParameterServer:
    """The gRPC server in front of a :class:`FakeParameters`."""

    def __init__(self, fake: FakeParameters) -> None:
        self.fake = fake
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            rpc: grpc.unary_unary_rpc_method_handler(
                getattr(fake, attr), request_deserializer=req.deserialize, response_serializer=resp.serialize
            )
            for rpc, (attr, req, resp) in _METHODS.items()
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self._server.start()

    def client(self) -> pm.ParameterManagerClient:
        """A real client on an insecure channel to this server, with anonymous credentials."""
        channel = grpc.insecure_channel(self.address)
        transport = ParameterManagerGrpcTransport(channel=channel, credentials=AnonymousCredentials())
        return pm.ParameterManagerClient(transport=transport)

    def stop(self) -> None:
        self._server.stop(0)

    def __enter__(self) -> ParameterServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(fake: FakeParameters) -> ParameterServer:
    """Start serving ``fake`` on a free port of 127.0.0.1."""
    return ParameterServer(fake)
