"""A local Cloud Run Admin API v2 (``google.cloud.run.v2.Services``: GetService, UpdateService) on
127.0.0.1, speaking gRPC with the client library's own message types, so the REAL
``run_v2.ServicesClient`` talks to it. A test helper module (not a test), used by the spend-cap
enforcer's tests, its bench and its walkthrough.

``FakeServices()`` keeps services by full name; ``add(name, traffic=[(revision, percent, tag)],
max_instances=0)`` stores one; ``calls`` records ``(method, name)``; ``service(name)`` reads one.
``fail_next(method, code)`` fails the next call of ``method``.

Rules it enforces, as Cloud Run does: an update of a service that does not exist is NOT_FOUND; an
update whose etag is not the current one is ABORTED (optimistic concurrency: the etag of
``Service`` "may be sent on update and delete requests to ensure the client has an up-to-date
value before proceeding", run_v2 ``types/service.py``); traffic percents must add up to 100
(``TrafficTarget.percent``: "all traffic percentages must sum to 100"). UpdateService answers a
long-running operation that is already done, its response the updated service.
"""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport
from google.longrunning import operations_pb2
from google.protobuf import any_pb2

SERVICE = "google.cloud.run.v2.Services"
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


class FakeServices:
    """Cloud Run services in memory; every call recorded; failures on demand."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.services: dict[str, run_v2.Service] = {}
        self.calls: list[tuple[str, str]] = []
        self._failures: dict[str, list[grpc.StatusCode]] = {}
        self._generation = 0

    def add(self, name: str, traffic: list[tuple[str, int, str]], *, max_instances: int = 0) -> run_v2.Service:
        with self.lock:
            self._generation += 1
            service = run_v2.Service(
                name=name,
                traffic=[run_v2.TrafficTarget(type_=REVISION, revision=r, percent=p, tag=t) for r, p, t in traffic],
                scaling=run_v2.ServiceScaling(max_instance_count=max_instances),
                etag=f"etag-{self._generation}",
                generation=self._generation,
            )
            self.services[name] = service
            return service

    def service(self, name: str) -> run_v2.Service:
        with self.lock:
            return run_v2.Service(self.services[name])

    def traffic(self, name: str) -> list[tuple[str, int, str]]:
        return [(t.revision, t.percent, t.tag) for t in self.service(name).traffic]

    def updates(self) -> list[str]:
        return [name for method, name in self.calls if method == "UpdateService"]

    def fail_next(self, method: str, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        with self.lock:
            self._failures.setdefault(method, []).append(code)

    def _enter(self, method: str, name: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls.append((method, name))
            queue = self._failures.get(method) or []
            code = queue.pop(0) if queue else None
        if code is not None:
            context.abort(code, f"{method} failed on purpose")

    def get_service(self, request: run_v2.GetServiceRequest, context: grpc.ServicerContext) -> run_v2.Service:
        self._enter("GetService", request.name, context)
        with self.lock:
            found = self.services.get(request.name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Resource '{request.name}' was not found")
        return found

    def update_service(self, request: run_v2.UpdateServiceRequest, context: grpc.ServicerContext):
        name = request.service.name
        self._enter("UpdateService", name, context)
        with self.lock:
            current = self.services.get(name)
            if current is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Resource '{name}' was not found")
            if request.service.etag and request.service.etag != current.etag:
                context.abort(grpc.StatusCode.ABORTED, "the service changed since it was read (etag mismatch)")
            if request.service.traffic and sum(t.percent for t in request.service.traffic) != 100:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "traffic percents must add up to 100")
            self._generation += 1
            updated = run_v2.Service(request.service)
            updated.etag = f"etag-{self._generation}"
            updated.generation = self._generation
            self.services[name] = updated
        response = any_pb2.Any()
        response.Pack(run_v2.Service.pb(updated))
        return operations_pb2.Operation(name=f"{name}/operations/{self._generation}", done=True, response=response)


class RunServer:
    """The gRPC server in front of a :class:`FakeServices`."""

    def __init__(self, fake: FakeServices) -> None:
        self.fake = fake
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "GetService": grpc.unary_unary_rpc_method_handler(
                fake.get_service,
                request_deserializer=run_v2.GetServiceRequest.deserialize,
                response_serializer=run_v2.Service.serialize,
            ),
            "UpdateService": grpc.unary_unary_rpc_method_handler(
                fake.update_service,
                request_deserializer=run_v2.UpdateServiceRequest.deserialize,
                response_serializer=operations_pb2.Operation.SerializeToString,
            ),
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self._server.start()

    def client(self) -> run_v2.ServicesClient:
        """A real client on an insecure channel to this server, with anonymous credentials."""
        channel = grpc.insecure_channel(self.address)
        return run_v2.ServicesClient(
            transport=ServicesGrpcTransport(channel=channel, credentials=AnonymousCredentials())
        )

    def stop(self) -> None:
        self._server.stop(0)

    def __enter__(self) -> RunServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(fake: FakeServices) -> RunServer:
    """Start serving ``fake`` on a free port of 127.0.0.1."""
    return RunServer(fake)
