"""A local Vertex AI ReasoningEngineService (v1beta1), speaking the JSON the REST transport of
``google.cloud.aiplatform_v1beta1.ReasoningEngineServiceClient`` and
``ReasoningEngineRuntimeRevisionServiceClient`` use: ``GET /v1beta1/{parent}/reasoningEngines``
(``filter`` by display name), ``GET /v1beta1/{engine}`` and ``GET /v1beta1/{engine}/runtimeRevisions``.
A test helper module (not a test)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

_LIST = re.compile(r"^/v1beta1/(projects/[^/]+/locations/[^/]+)/reasoningEngines$")
_ENGINE = re.compile(r"^/v1beta1/(projects/[^/]+/locations/[^/]+/reasoningEngines/[^/]+)(/runtimeRevisions)?$")


class FakeEngines:
    """Engines (REST JSON, camelCase) and their runtime revisions; ``calls`` records paths."""

    def __init__(self) -> None:
        self.engines: dict[str, dict[str, Any]] = {}
        self.revisions: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[str] = []

    def add(self, name: str, display_name: str, traffic: dict[str, Any], revisions: list[tuple[str, str, str]]) -> None:
        """``revisions``: (id, state, create time) of each runtime revision."""
        self.engines[name] = {"name": name, "displayName": display_name, "trafficConfig": traffic}
        self.revisions[name] = [
            {"name": f"{name}/runtimeRevisions/{i}", "state": state, "createTime": when} for i, state, when in revisions
        ]

    def handle(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        self.calls.append(path)
        m = _LIST.match(path)
        if m:
            wanted = (query.get("filter") or [""])[0]
            found = [
                e
                for e in self.engines.values()
                if e["name"].startswith(m.group(1) + "/") and wanted.endswith(f'"{e["displayName"]}"')
            ]
            return 200, {"reasoningEngines": found}
        m = _ENGINE.match(path)
        if m and m.group(1) in self.engines:
            if m.group(2):
                return 200, {"reasoningEngineRuntimeRevisions": self.revisions[m.group(1)]}
            return 200, self.engines[m.group(1)]
        return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": f"{path} not found"}}


def serve(fake: FakeEngines) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``fake`` on 127.0.0.1 in a thread; returns the server and its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server method name)
            url = urlparse(self.path)
            status, payload = fake.handle(url.path, parse_qs(url.query))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
