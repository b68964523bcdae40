"""The Vertex AI deployment dynamic provider against a local EndpointService on 127.0.0.1
(tests/vertex_fake.py): deploy at 0% then the split, in-place replica changes, undeploy,
long-running operations that fail or hang, adoption after an interrupted deploy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from components.vertex_deployment import DeploymentFailed, VertexDeploymentProvider, deployed_model_id
from tests.vertex_fake import FakeVertex, serve

pytest.importorskip("google.cloud.aiplatform_v1")

ENDPOINT = "projects/acme-agents-prod/locations/us-central1/endpoints/1234567890"
SA = "support-bot@acme-agents-prod.iam.gserviceaccount.com"


def model(version: str, **over) -> dict:
    m = {
        "model": f"projects/acme-agents-prod/locations/us-central1/models/support@{version}",
        "display_name": f"support-bot-{version}",
        "machine_type": "n1-standard-4",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1,
        "min_replica_count": 1,
        "max_replica_count": 3,
        "service_account": SA,
    }
    return {**m, **over}


def props(models: dict, split: dict) -> dict:
    return {"endpoint": ENDPOINT, "models": models, "traffic_split": split}


@pytest.fixture()
def fake():
    f = FakeVertex()
    f.add_endpoint(ENDPOINT)
    server, url = serve(f)
    f.url = url
    yield f
    server.shutdown()
    server.server_close()


def provider(fake, **kw) -> VertexDeploymentProvider:
    from google.auth.credentials import AnonymousCredentials

    return VertexDeploymentProvider(api_endpoint=fake.url, credentials=AnonymousCredentials(), poll_seconds=0.01, **kw)


def verbs(fake) -> list[str]:
    return [verb for _, verb in fake.calls if verb != "operation"]


def test_create_deploys_at_zero_then_sets_the_split(fake):
    a = deployed_model_id(ENDPOINT, model("1"))
    result = provider(fake).create(props({a: model("1")}, {a: 100}))
    assert verbs(fake) == ["endpoint", "deployModel", "endpoint"]  # GET, deploy, PATCH
    deploy = fake.bodies[1]
    assert deploy.get("trafficSplit", {}) == {}  # the endpoint's split is left as it is: 0% to the new model
    dm = deploy["deployedModel"]
    assert dm["id"] == a and dm["serviceAccount"] == SA and dm["displayName"] == "support-bot-1"
    assert dm["dedicatedResources"] == {
        "machineSpec": {
            "machineType": "n1-standard-4",
            "acceleratorType": 5,  # NVIDIA_TESLA_T4 (enum-encoding=int)
            "acceleratorCount": 1,
        },
        "minReplicaCount": 1,
        "maxReplicaCount": 3,
    }
    assert fake.endpoints[ENDPOINT]["trafficSplit"] == {a: 100}
    assert result.id == f"{ENDPOINT}/deployments"
    assert result.outs["live_traffic_split"] == {a: 100}
    assert set(result.outs["deployed_models"]) == {a}


def test_canary_then_promotion_then_undeploy_of_the_old_model(fake):
    p = provider(fake)
    a, b = deployed_model_id(ENDPOINT, model("1")), deployed_model_id(ENDPOINT, model("2"))
    outs = p.create(props({a: model("1")}, {a: 100})).outs
    canary = p.update("x", outs, props({a: model("1"), b: model("2")}, {a: 95, b: 5})).outs
    assert fake.endpoints[ENDPOINT]["trafficSplit"] == {a: 95, b: 5}
    assert canary["live_traffic_split"] == {a: 95, b: 5}
    fake.calls.clear()
    done = p.update("x", canary, props({b: model("2")}, {b: 100})).outs
    assert verbs(fake) == ["endpoint", "endpoint", "undeployModel"]  # read, split to b, undeploy a
    assert fake.endpoints[ENDPOINT]["trafficSplit"] == {b: 100}
    assert [d["id"] for d in fake.endpoints[ENDPOINT]["deployedModels"]] == [b]
    assert done["live_traffic_split"] == {b: 100}


def test_replica_change_mutates_in_place(fake):
    p = provider(fake)
    a = deployed_model_id(ENDPOINT, model("1"))
    outs = p.create(props({a: model("1")}, {a: 100})).outs
    bigger = model("1", min_replica_count=2, max_replica_count=6)
    assert deployed_model_id(ENDPOINT, bigger) == a  # replicas are not part of the id
    fake.calls.clear()
    p.update("x", outs, props({a: bigger}, {a: 100}))
    assert verbs(fake) == ["endpoint", "mutateDeployedModel", "endpoint"]
    res = fake.endpoints[ENDPOINT]["deployedModels"][0]["dedicatedResources"]
    assert (res["minReplicaCount"], res["maxReplicaCount"]) == (2, 6)


def test_machine_change_is_a_new_deployed_model():
    assert deployed_model_id(ENDPOINT, model("1")) != deployed_model_id(
        ENDPOINT, model("1", machine_type="n1-standard-8")
    )
    ident = deployed_model_id(ENDPOINT, model("1"))
    assert len(ident) == 10 and ident.isdigit() and ident[0] != "0"


def test_failed_operation_names_endpoint_and_model(fake):
    a = deployed_model_id(ENDPOINT, model("1"))
    fake.next_op = ["fail"]
    with pytest.raises(DeploymentFailed) as err:
        provider(fake).create(props({a: model("1")}, {a: 100}))
    assert str(err.value) == (
        f"deploying model {model('1')['model']} on endpoint {ENDPOINT} failed: Model server never became ready"
    )
    assert fake.endpoints[ENDPOINT]["trafficSplit"] == {}


def test_rejected_call_names_endpoint_and_model(fake):
    p = provider(fake)
    with pytest.raises(DeploymentFailed) as err:
        p.create({**props({}, {}), "endpoint": ENDPOINT.replace("1234567890", "999")})
    assert str(err.value).startswith(f"reading model (all) on endpoint {ENDPOINT.replace('1234567890', '999')} failed")


def test_interrupted_deploy_is_adopted_not_deployed_twice(fake):
    a = deployed_model_id(ENDPOINT, model("1"))
    fake.next_op = ["hang"]
    with pytest.raises(DeploymentFailed, match="did not finish in 0.2 s .*the next update adopts it"):
        provider(fake, operation_timeout=0.2).create(props({a: model("1")}, {a: 100}))
    fake.finish()
    fake.handle("GET", f"/v1/{ENDPOINT}/operations/1", {})  # the operation completes on Google's side
    fake.calls.clear()
    outs = provider(fake).create(props({a: model("1")}, {a: 100})).outs
    assert verbs(fake) == ["endpoint", "endpoint"]  # read, split: no second deployModel
    assert outs["live_traffic_split"] == {a: 100}
    assert len(fake.endpoints[ENDPOINT]["deployedModels"]) == 1


def test_interrupted_canary_update_keeps_stable_serving_then_is_adopted(fake):
    p = provider(fake, operation_timeout=0.2)
    a, b = deployed_model_id(ENDPOINT, model("1")), deployed_model_id(ENDPOINT, model("2"))
    outs = p.create(props({a: model("1")}, {a: 100})).outs
    fake.next_op = ["hang"]
    canary = props({a: model("1"), b: model("2")}, {a: 95, b: 5})
    with pytest.raises(DeploymentFailed, match="did not finish"):
        p.update("x", outs, canary)
    assert fake.endpoints[ENDPOINT]["trafficSplit"] == {a: 100}  # the split moves only after the deploy
    fake.finish()
    fake.handle("GET", f"/v1/{ENDPOINT}/operations/2", {})
    fake.calls.clear()
    done = p.update("x", outs, canary).outs  # Pulumi retries from the last recorded state
    assert verbs(fake) == ["endpoint", "endpoint"]
    assert done["live_traffic_split"] == {a: 95, b: 5}
    assert sorted(d["id"] for d in fake.endpoints[ENDPOINT]["deployedModels"]) == sorted([a, b])


def test_adopts_by_display_name_and_model_when_the_id_differs(fake):
    """A model deployed by hand (or by an older agentstage) under another id is adopted, and
    the split names the id the endpoint gave it."""
    a = deployed_model_id(ENDPOINT, model("1"))
    fake.endpoints[ENDPOINT]["deployedModels"].append(
        {
            "id": "42",
            "model": model("1")["model"],
            "displayName": "support-bot-1",
            "dedicatedResources": {"minReplicaCount": 1, "maxReplicaCount": 3},
        }
    )
    outs = provider(fake).create(props({a: model("1")}, {a: 100})).outs
    assert "deployModel" not in verbs(fake)
    assert outs["live_traffic_split"] == {"42": 100}
    assert fake.endpoints[ENDPOINT]["trafficSplit"] == {"42": 100}


def test_delete_undeploys_the_idle_model_first(fake):
    p = provider(fake)
    a, b = deployed_model_id(ENDPOINT, model("1")), deployed_model_id(ENDPOINT, model("2"))
    outs = p.create(props({a: model("1"), b: model("2")}, {a: 95, b: 5})).outs
    fake.calls.clear()
    fake.bodies.clear()
    p.delete("x", outs)
    assert verbs(fake) == ["endpoint", "undeployModel", "undeployModel"]
    assert fake.bodies[1]["deployedModelId"] == b and fake.bodies[1]["trafficSplit"] == {a: 100}
    assert fake.bodies[2]["deployedModelId"] == a
    assert fake.endpoints[ENDPOINT] == {"name": ENDPOINT, "deployedModels": [], "trafficSplit": {}}


def test_split_must_sum_to_100(fake):
    a = deployed_model_id(ENDPOINT, model("1"))
    with pytest.raises(DeploymentFailed, match=f"traffic_split of endpoint {ENDPOINT} sums to 90, not 100"):
        provider(fake).create(props({a: model("1")}, {a: 90}))


def test_diff_replaces_only_for_another_endpoint():
    p = VertexDeploymentProvider()
    old = props({"1": model("1")}, {"1": 100})
    assert not p.diff("x", old, dict(old)).changes
    moved = p.diff("x", old, {**old, "traffic_split": {"1": 100, "2": 0}})
    assert moved.changes and not moved.replaces
    assert p.diff("x", old, {**old, "endpoint": ENDPOINT + "1"}).replaces == ["endpoint"]


def test_the_library_is_not_imported_with_the_components():
    code = (
        "import sys, components, components.vertex_deployment, components.platform; "
        "print(any(m.startswith('google.cloud.aiplatform') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- read (pulumi refresh, import) ---------------------------------------------------------


def canary_on(fake) -> tuple[VertexDeploymentProvider, str, str, dict, dict]:
    p = provider(fake)
    a, b = deployed_model_id(ENDPOINT, model("1")), deployed_model_id(ENDPOINT, model("2"))
    wanted = props({a: model("1"), b: model("2")}, {a: 95, b: 5})
    outs = p.create(props({a: model("1")}, {a: 100})).outs
    outs = p.update("x", outs, wanted).outs
    return p, a, b, wanted, outs


def test_read_reports_what_the_endpoint_serves_through_one_get(fake):
    p, a, b, wanted, outs = canary_on(fake)
    live_a = next(d for d in fake.endpoints[ENDPOINT]["deployedModels"] if d["id"] == a)
    live_a["dedicatedResources"]["maxReplicaCount"] = 5  # changed by hand in the console
    fake.calls.clear()
    result = p.read(f"{ENDPOINT}/deployments", outs)
    assert verbs(fake) == ["endpoint"]
    assert result.id == f"{ENDPOINT}/deployments"
    assert result.outs["live_traffic_split"] == {a: 95, b: 5}
    assert result.outs["traffic_split"] == {a: 95, b: 5}
    assert result.outs["deployed_models"] == {
        a: {**model("1", max_replica_count=5), "wanted_id": a},
        b: {**model("2"), "wanted_id": b},
    }
    assert result.outs["models"] == {a: model("1", max_replica_count=5), b: model("2")}
    # the drift shows in the next diff, and the update puts the replicas back in place
    assert p.diff("x", result.outs, wanted).changes
    fake.calls.clear()
    p.update("x", result.outs, wanted)
    assert verbs(fake) == ["endpoint", "mutateDeployedModel", "endpoint"]
    assert live_a["dedicatedResources"]["maxReplicaCount"] == 3


def test_read_drops_a_model_undeployed_out_of_band_and_the_update_deploys_it_again(fake):
    p, a, b, wanted, outs = canary_on(fake)
    ep = fake.endpoints[ENDPOINT]
    ep["deployedModels"] = [d for d in ep["deployedModels"] if d["id"] != b]  # undeployed by hand
    ep["trafficSplit"] = {a: 100}
    assert not p.diff("x", outs, wanted).changes  # without a refresh nothing would notice
    refreshed = p.read(f"{ENDPOINT}/deployments", outs).outs
    assert set(refreshed["deployed_models"]) == {a}
    assert refreshed["models"] == {a: model("1")}
    assert refreshed["traffic_split"] == refreshed["live_traffic_split"] == {a: 100}
    assert p.diff("x", refreshed, wanted).changes
    fake.calls.clear()
    done = p.update("x", refreshed, wanted).outs
    assert verbs(fake) == ["endpoint", "deployModel", "endpoint"]  # no undeploy of the vanished model
    assert done["live_traffic_split"] == ep["trafficSplit"] == {a: 95, b: 5}
    assert sorted(d["id"] for d in ep["deployedModels"]) == sorted([a, b])


def test_rolling_back_after_the_canary_vanished_needs_the_refresh(fake):
    """Without read, rolling back would undeploy a model the endpoint no longer has (404)."""
    p, a, b, _, outs = canary_on(fake)
    ep = fake.endpoints[ENDPOINT]
    ep["deployedModels"] = [d for d in ep["deployedModels"] if d["id"] != b]
    ep["trafficSplit"] = {a: 100}
    back = props({a: model("1")}, {a: 100})
    with pytest.raises(DeploymentFailed, match=f"undeploying model {model('2')['model']} on endpoint .* not found"):
        p.update("x", outs, back)
    done = p.update("x", p.read("x", outs).outs, back).outs
    assert done["deployed_models"] == {a: {**model("1"), "wanted_id": a}}


def test_import_records_the_models_found_on_the_endpoint(fake):
    fake.endpoints[ENDPOINT]["deployedModels"].append(
        {
            "id": "42",
            "model": model("1")["model"],
            "displayName": "support-bot-1",
            "serviceAccount": SA,
            "dedicatedResources": {
                "machineSpec": {
                    "machineType": "n1-standard-4",
                    "acceleratorType": "NVIDIA_TESLA_T4",
                    "acceleratorCount": 1,
                },
                "minReplicaCount": 1,
                "maxReplicaCount": 3,
            },
        }
    )
    fake.endpoints[ENDPOINT]["trafficSplit"] = {"42": 100}
    result = provider(fake).read(f"{ENDPOINT}/deployments", {})
    assert result.outs == {
        "endpoint": ENDPOINT,
        "models": {"42": model("1")},
        "traffic_split": {"42": 100},
        "deployed_models": {"42": {**model("1"), "wanted_id": "42"}},
        "live_traffic_split": {"42": 100},
    }


def test_read_of_a_deleted_endpoint_is_a_deleted_resource(fake):
    gone = ENDPOINT.replace("1234567890", "999")
    result = provider(fake).read(f"{gone}/deployments", {**props({}, {}), "endpoint": gone})
    assert (result.id, result.outs) == ("", {})
