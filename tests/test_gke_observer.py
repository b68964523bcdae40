"""A GKE agent's live split, read from its cluster: the real Kubernetes client (through a
kubeconfig) against a local server on 127.0.0.1 that answers the Kubernetes REST API for the
Gateway API HTTPRoute and the apps/v1 Deployments of the tracks."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ruamel.yaml import YAML

from agentstage.config import platform_from_config
from agentstage.release.observed import (
    GkeClusterObserver,
    GkeRoute,
    ObservedError,
    ObserverForRuntimes,
    default_observer,
    gke_routes,
)
from tests.conftest import ROOT

CONTEXT = "gke_acme-agents-prod_us-central1_agents"
ROUTE_PATH = "/apis/gateway.networking.k8s.io/v1/namespaces/summarizer/httproutes/summarizer"


class FakeApiServer:
    """Serves ``objects`` (path -> JSON) and 404 for anything else; records the paths asked."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                fake.paths.append(self.path)
                obj = fake.objects.get(self.path)
                body = json.dumps(
                    obj
                    if obj is not None
                    else {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
                ).encode()
                self.send_response(200 if obj is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, weights: dict[str, int], *, generation: int = 2, observed: int = 2, accepted: str = "True") -> None:
        conditions = [
            {"type": "Accepted", "status": accepted, "observedGeneration": observed, "reason": "Accepted"},
            {"type": "ResolvedRefs", "status": "True", "observedGeneration": observed, "reason": "ResolvedRefs"},
        ]
        self.objects[ROUTE_PATH] = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "summarizer", "namespace": "summarizer", "generation": generation},
            "spec": {
                "rules": [
                    {
                        "backendRefs": [
                            {"kind": "Service", "name": n, "port": 8080, "weight": w} for n, w in weights.items()
                        ]
                    }
                ]
            },
            "status": {"parents": [{"parentRef": {"name": "internal-gateway"}, "conditions": conditions}]},
        }

    def deployment(self, name: str, available: int) -> None:
        self.objects[f"/apis/apps/v1/namespaces/summarizer/deployments/{name}"] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "summarizer"},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {}, "spec": {"containers": []}},
            },
            "status": {"availableReplicas": available} if available else {},
        }


@pytest.fixture
def api(tmp_path, monkeypatch):
    server = FakeApiServer()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": CONTEXT, "cluster": {"server": server.url}}],
                "users": [{"name": CONTEXT, "user": {"token": "t0ken"}}],
                "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT}}],
                "current-context": CONTEXT,
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def _spec():
    stack = YAML(typ="safe", pure=True).load((ROOT / "examples/runtimes/stacks/Pulumi.production.yaml").read_text())
    return platform_from_config(stack["config"])


def test_routes_of_a_stack_name_the_context_get_credentials_writes():
    assert gke_routes(_spec()) == {
        "summarizer": GkeRoute(
            CONTEXT,
            "summarizer",
            "run `gcloud container clusters get-credentials agents --location us-central1 --project acme-agents-prod`",
        )
    }


def test_a_canary_at_10_percent_is_read_from_the_route_and_its_deployments(api):
    api.route({"summarizer-stable": 90, "summarizer-canary": 10})
    api.deployment("summarizer-stable", 3)
    api.deployment("summarizer-canary", 1)
    seen = GkeClusterObserver(gke_routes(_spec())).observe("summarizer")
    assert seen.split() == {"summarizer-stable": 90, "summarizer-canary": 10}
    assert seen.ready == {"summarizer-stable": True, "summarizer-canary": True}
    assert not seen.reconciling
    assert seen.matches({"summarizer-stable": 90, "summarizer-canary": 10})
    assert seen.source == f"Kubernetes API (HTTPRoute) HTTPRoute summarizer/summarizer (context {CONTEXT})"
    assert api.paths[0] == ROUTE_PATH


def test_weights_are_relative_and_a_track_without_pods_is_not_ready(api):
    api.route({"summarizer-stable": 3, "summarizer-canary": 1})
    api.deployment("summarizer-stable", 2)
    api.deployment("summarizer-canary", 0)
    seen = GkeClusterObserver(gke_routes(_spec())).observe("summarizer")
    assert seen.split() == {"summarizer-stable": 75, "summarizer-canary": 25}
    assert seen.ready == {"summarizer-stable": True, "summarizer-canary": False}
    assert not seen.matches({"summarizer-stable": 75, "summarizer-canary": 25})


def test_a_route_the_gateway_has_not_accepted_yet_is_reconciling(api):
    api.route({"summarizer-stable": 50, "summarizer-canary": 50}, generation=3, observed=2)
    api.deployment("summarizer-stable", 1)
    api.deployment("summarizer-canary", 1)
    seen = GkeClusterObserver(gke_routes(_spec())).observe("summarizer")
    assert seen.reconciling and not seen.matches({"summarizer-stable": 50, "summarizer-canary": 50})
    api.route({"summarizer-stable": 50, "summarizer-canary": 50}, accepted="False")
    seen = GkeClusterObserver(gke_routes(_spec())).observe("summarizer")
    assert seen.reconciling and seen.message == "Accepted: Accepted"


def test_an_api_server_that_does_not_answer_is_an_error_not_a_hang(tmp_path, monkeypatch):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does) and never answers
    kubeconfig = tmp_path / "kubeconfig"
    server = f"http://127.0.0.1:{silent.getsockname()[1]}"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": CONTEXT, "cluster": {"server": server}}],
                "users": [{"name": CONTEXT, "user": {"token": "t0ken"}}],
                "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT}}],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    try:
        with pytest.raises(ObservedError) as err:
            GkeClusterObserver(gke_routes(_spec()), timeout=0.5).observe("summarizer")
    finally:
        silent.close()
    assert str(err.value).startswith(
        f"HTTPRoute summarizer/summarizer (context {CONTEXT}): the API server cannot be reached ("
    )


def test_a_missing_route_is_an_error_naming_it(api):
    with pytest.raises(ObservedError) as err:
        GkeClusterObserver(gke_routes(_spec())).observe("summarizer")
    assert str(err.value) == f"HTTPRoute summarizer/summarizer (context {CONTEXT}): not found"


def test_a_missing_context_says_how_to_get_credentials(tmp_path, monkeypatch):
    empty = tmp_path / "empty-kubeconfig"
    empty.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [], "users": []}))
    monkeypatch.setenv("KUBECONFIG", str(empty))
    with pytest.raises(ObservedError) as err:
        GkeClusterObserver(gke_routes(_spec())).observe("summarizer")
    message = str(err.value)
    assert message.startswith(f"kubeconfig: context {CONTEXT} cannot be used (")
    assert message.endswith(
        "); run `gcloud container clusters get-credentials agents --location us-central1 --project acme-agents-prod`"
    )


def test_the_release_commands_observers_read_gke_agents_from_the_cluster(api, tmp_path, monkeypatch):
    """Without an observed state file, `rollout` and `status` (default_observer) and `promote`
    (ObserverForRuntimes) send a GKE agent to its cluster; a file still wins."""
    api.route({"summarizer-stable": 100})
    api.deployment("summarizer-stable", 2)
    spec = _spec()
    observer = default_observer(tmp_path, "production", spec.project, spec.region, spec=spec)
    assert observer.for_runtime("gke").observe("summarizer").split() == {"summarizer-stable": 100}
    assert ObserverForRuntimes(spec.project, spec.region, spec=spec).for_runtime("gke").observe(
        "summarizer"
    ).split() == {"summarizer-stable": 100}
    observed = ROOT / "examples/runtimes/evidence/observed-production.json"
    from_file = default_observer(tmp_path, "production", spec.project, spec.region, observed_file=observed, spec=spec)
    assert from_file.observe("summarizer").source.startswith("observed state file")
