"""A local Vertex AI EndpointService, speaking the JSON API the REST transport of
``google.cloud.aiplatform_v1.EndpointServiceClient`` uses (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints):
``GET/PATCH /v1/{endpoint}``, ``POST /v1/{endpoint}:deployModel|undeployModel|mutateDeployedModel``
(long-running operations) and ``GET /v1/{operation}``. A test helper module (not a test)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ENDPOINT = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/endpoints/[^/:]+)(?::(\w+))?$")
#: The REST transport's operations client polls the first of its URI bindings that matches,
#: which in google-cloud-aiplatform is ``/ui/{name=projects/*/locations/*/endpoints/*/operations/*}``
#: (``aiplatform_v1/services/endpoint_service/transports/rest.py``); ``/v1/`` is served too.
_OPERATION = re.compile(r"^/(?:v1|ui)/(projects/[^/]+/locations/[^/]+/endpoints/[^/]+/operations/[^/]+)$")
_TYPE = "type.googleapis.com/google.cloud.aiplatform.v1."


class FakeVertex:
    """Endpoints with their deployed models and split; operations that finish after
    ``polls`` reads, or fail, or hang until :meth:`finish`. ``calls`` records
    ``(method, verb)`` of every request."""

    def __init__(self) -> None:
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[dict[str, Any]] = []
        self.next_op: list[str] = []  # modes of the next operations: "ok" | "fail" | "hang"
        self.polls = 1
        self.lock = threading.Lock()

    def add_endpoint(self, name: str) -> None:
        self.endpoints[name] = {"name": name, "deployedModels": [], "trafficSplit": {}}

    def finish(self) -> None:
        """Complete every hanging operation successfully."""
        for op in self.operations.values():
            if op["mode"] == "hang":
                op["mode"] = "ok"
                op["left"] = 0

    # --- the API -------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            m = _OPERATION.match(path)
            if m and method == "GET":
                self.calls.append(("GET", "operation"))
                return self._poll(m.group(1))
            m = _ENDPOINT.match(path)
            if not m or m.group(1) not in self.endpoints:
                return 404, _error(404, "NOT_FOUND", f"{path} not found")
            endpoint, verb = self.endpoints[m.group(1)], m.group(2) or ""
            self.calls.append((method, verb or "endpoint"))
            self.bodies.append(body)
            if method == "GET" and not verb:
                return 200, endpoint
            if method == "PATCH" and not verb:
                split = {k: int(v) for k, v in (body.get("trafficSplit") or {}).items()}
                unknown = sorted(set(split) - {d["id"] for d in endpoint["deployedModels"]})
                if unknown:
                    return 400, _error(400, "INVALID_ARGUMENT", f"DeployedModel {unknown[0]} not found")
                if split and sum(split.values()) != 100:
                    return 400, _error(400, "INVALID_ARGUMENT", "traffic split must sum to 100")
                endpoint["trafficSplit"] = split
                return 200, endpoint
            if method == "POST" and verb == "deployModel":
                return 200, self._deploy(endpoint, body)
            if method == "POST" and verb == "undeployModel":
                return self._undeploy(endpoint, body)
            if method == "POST" and verb == "mutateDeployedModel":
                model = body["deployedModel"]
                for d in endpoint["deployedModels"]:
                    if d["id"] == model["id"]:
                        d["dedicatedResources"].update(
                            {k: v for k, v in model["dedicatedResources"].items() if k.endswith("ReplicaCount")}
                        )
                        return 200, self._operation(endpoint, "MutateDeployedModelResponse", {"deployedModel": d})
                return 404, _error(404, "NOT_FOUND", f"DeployedModel {model['id']} not found")
            return 400, _error(400, "INVALID_ARGUMENT", f"{method} {path} is not served here")

    def _deploy(self, endpoint: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        model = dict(body["deployedModel"])
        model.setdefault("id", str(len(self.operations) + 7000))
        split = body.get("trafficSplit") or {}

        def apply() -> None:
            endpoint["deployedModels"].append(model)
            if split:
                endpoint["trafficSplit"] = {model["id"] if k == "0" else k: v for k, v in split.items()}

        return self._operation(endpoint, "DeployModelResponse", {"deployedModel": model}, apply)

    def _undeploy(self, endpoint: dict[str, Any], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        gone = body["deployedModelId"]
        split = {k: int(v) for k, v in (body.get("trafficSplit") or endpoint["trafficSplit"]).items()}
        if gone not in {d["id"] for d in endpoint["deployedModels"]}:
            return 404, _error(404, "NOT_FOUND", f"DeployedModel {gone} not found")
        last = len(endpoint["deployedModels"]) == 1
        if split.get(gone) and not last:
            return 400, _error(400, "FAILED_PRECONDITION", f"DeployedModel {gone} still has traffic")

        def apply() -> None:
            endpoint["deployedModels"] = [d for d in endpoint["deployedModels"] if d["id"] != gone]
            endpoint["trafficSplit"] = {} if last else {k: v for k, v in split.items() if k != gone}

        return 200, self._operation(endpoint, "UndeployModelResponse", {}, apply)

    def _operation(self, endpoint: dict[str, Any], kind: str, response: dict[str, Any], apply: Any = None) -> dict:
        name = f"{endpoint['name']}/operations/{len(self.operations) + 1}"
        mode = self.next_op.pop(0) if self.next_op else "ok"
        self.operations[name] = {
            "mode": mode,
            "left": self.polls,
            "kind": kind,
            "response": response,
            "apply": apply,
        }
        return {"name": name, "done": False}

    def _poll(self, name: str) -> tuple[int, dict[str, Any]]:
        op = self.operations.get(name)
        if op is None:
            return 404, _error(404, "NOT_FOUND", f"{name} not found")
        if op["mode"] == "hang" or op["left"] > 0:
            op["left"] -= 1
            return 200, {"name": name, "done": False}
        if op["mode"] == "fail":
            return 200, {"name": name, "done": True, "error": {"code": 9, "message": "Model server never became ready"}}
        if op["apply"] is not None:
            op["apply"]()
            op["apply"] = None
        return 200, {"name": name, "done": True, "response": {"@type": _TYPE + op["kind"], **op["response"]}}


def _error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "status": status, "message": message}}


def serve(fake: FakeVertex) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``fake`` on 127.0.0.1 in a thread; returns the server and its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            status, payload = fake.handle(self.command, self.path.split("?")[0], body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _answer  # noqa: N815 (http.server method names)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
