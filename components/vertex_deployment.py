"""Models deployed to a Vertex AI endpoint, and the endpoint's traffic split, as one Pulumi
dynamic resource.

Deploying a model to an endpoint is an operation on the endpoint, not a resource: neither
pulumi-gcp nor the Terraform provider has one (``gcp.vertex.AiEndpoint`` only holds the
split). :class:`VertexModelDeployment` is a ``pulumi.dynamic.Resource`` whose provider calls the
Vertex AI ``EndpointService`` through ``google-cloud-aiplatform``'s low-level client
(``google.cloud.aiplatform_v1.EndpointServiceClient``, REST transport). The library is the
``vertex`` extra: it is imported inside the provider methods only, so importing this module
(and planning a stack offline) never needs it.

What the provider does (Vertex AI REST reference, ``projects.locations.endpoints``:
https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints):

- **create / update**: every model of ``models`` that the endpoint does not serve yet is
  deployed with ``deployModel`` and an empty ``trafficSplit`` ("If this field is empty, then
  the Endpoint's trafficSplit is not updated": the new model starts at 0%); only then is the
  split set with ``PATCH endpoints/*?updateMask=trafficSplit`` ("The traffic percentage values
  must add up to 100"). A model whose replica counts changed is updated in place with
  ``mutateDeployedModel`` (its updatable fields: ``min_replica_count``,
  ``max_replica_count``...); models no longer listed are undeployed last, when no traffic
  goes to them (``undeployModel``: "A DeployedModel will be successfully undeployed only if it
  doesn't have any traffic assigned to it").
- Every deploy, mutate and undeploy is a long-running operation, polled through
  ``GET /v1/{name=projects/*/locations/*/endpoints/*/operations/*}`` until done, at most
  ``operation_timeout`` seconds. An operation that ends in error raises
  :class:`DeploymentFailed` naming the endpoint and the model.
- **adoption**: before deploying, the provider reads the endpoint; a deployed model with the
  wanted id, or with the same display name and model, is adopted instead of deployed again,
  so an update after an interrupted ``pulumi up`` (a deploy that started, whose result Pulumi
  never recorded) does not deploy the model twice.
- **delete**: undeploys the models it deployed, the ones without traffic first.
- **read** (``pulumi refresh``, import): reads the endpoint (``GET endpoints/*``, the same
  client as create) and records what it serves: its ``deployedModels`` (a model recorded before
  keeps its recorded fields, with the live replica counts; one found on the endpoint only is
  recorded from the live fields) and its ``trafficSplit``. A recorded model that is gone from
  the endpoint (undeployed out of band) is dropped, and ``models``/``traffic_split`` are
  rewritten to what is live, so the next update sees the difference and deploys it again
  instead of undeploying a model that no longer exists. An endpoint that is gone reads as a
  deleted resource (an empty id, the dynamic provider's convention).

Deployed-model ids are chosen by agentstage (``DeployedModel.id``: "This value should be
1-10 characters, and valid characters are ``/[0-9]/``"): :func:`deployed_model_id` derives one
from the endpoint and everything about the deployment that cannot change in place (model
version, machine, accelerator, service account), so the split is known at plan time and a
change of any of them deploys a new model that takes the traffic (as a Cloud Run template
change makes a new revision).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi.dynamic

__all__ = [
    "DeploymentFailed",
    "VertexDeploymentProvider",
    "VertexModelDeployment",
    "deployed_model_id",
    "DEPLOYMENT_TYPE",
]

#: The type token of the dynamic resource (``pulumi-python:dynamic/<module>:<name>``).
DEPLOYMENT_TYPE = "pulumi-python:dynamic/agentstage:VertexModelDeployment"

#: Fields of a deployed model that ``mutateDeployedModel`` changes in place.
_MUTABLE = ("min_replica_count", "max_replica_count")


class DeploymentFailed(Exception):
    """A Vertex AI operation on a deployed model failed: the message names the endpoint and
    the model."""


def deployed_model_id(endpoint_key: str, model: Mapping[str, Any]) -> str:
    """A deployed-model id of 10 digits, no leading zero, from the endpoint and the fields
    of ``model`` that a deployed model cannot change in place."""
    fixed = {k: v for k, v in sorted(model.items()) if k not in (*_MUTABLE, "display_name")}
    digest = hashlib.sha256(json.dumps([endpoint_key, fixed], sort_keys=True).encode()).hexdigest()
    return str(10**9 + int(digest, 16) % (9 * 10**9))


class VertexDeploymentProvider(pulumi.dynamic.ResourceProvider):
    """CRUD of the models deployed to one endpoint. Inputs: ``endpoint`` (the endpoint's
    resource name ``projects/<p>/locations/<l>/endpoints/<id>``), ``models`` (deployed-model
    id -> ``{model, display_name, machine_type, accelerator_type, accelerator_count,
    min_replica_count, max_replica_count, service_account}``) and ``traffic_split``
    (deployed-model id -> percent, summing to 100).

    ``api_endpoint`` and ``credentials`` are for tests (a local server, anonymous
    credentials); by default the client talks to ``<location>-aiplatform.googleapis.com`` with
    Application Default Credentials."""

    def __init__(
        self,
        *,
        api_endpoint: str | None = None,
        credentials: Any = None,
        operation_timeout: float = 3600.0,
        poll_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        self.api_endpoint = api_endpoint
        self.credentials = credentials
        self.operation_timeout = operation_timeout
        self.poll_seconds = poll_seconds

    # --- client ---------------------------------------------------------------------------

    def _client(self, endpoint: str) -> Any:
        from google.cloud.aiplatform_v1 import EndpointServiceClient

        location = endpoint.split("/")[3]
        host = self.api_endpoint or f"https://{location}-aiplatform.googleapis.com"
        return EndpointServiceClient(
            transport="rest", credentials=self.credentials, client_options={"api_endpoint": host}
        )

    def _wait(self, operation: Any, what: str, endpoint: str, model: str) -> Any:
        from google.api_core import exceptions
        from google.api_core.future.polling import DEFAULT_POLLING

        polling = DEFAULT_POLLING.with_delay(
            initial=self.poll_seconds, maximum=self.poll_seconds, multiplier=1.0
        ).with_timeout(self.operation_timeout)
        try:
            return operation.result(timeout=self.operation_timeout, polling=polling)
        except exceptions.GoogleAPICallError as err:
            raise DeploymentFailed(f"{what} model {model} on endpoint {endpoint} failed: {err.message}") from err
        except TimeoutError as err:  # concurrent.futures.TimeoutError is TimeoutError
            raise DeploymentFailed(
                f"{what} model {model} on endpoint {endpoint} did not finish in {self.operation_timeout:g} s "
                f"(operation {operation.operation.name}); it may still complete: the next update adopts it"
            ) from err

    @staticmethod
    def _call(fn: Any, what: str, where: str, model: str, /, **kwargs: Any) -> Any:
        from google.api_core import exceptions

        try:
            return fn(**kwargs)
        except exceptions.GoogleAPICallError as err:
            raise DeploymentFailed(f"{what} model {model} on endpoint {where} failed: {err.message}") from err

    # --- the steps ------------------------------------------------------------------------

    def _deployed(self, client: Any, endpoint: str) -> list[Any]:
        return list(self._call(client.get_endpoint, "reading", endpoint, "(all)", name=endpoint).deployed_models)

    def _converge(self, props: Mapping[str, Any], old: Mapping[str, Any] | None) -> dict[str, Any]:
        from google.cloud.aiplatform_v1 import types

        endpoint: str = props["endpoint"]
        models: dict[str, dict[str, Any]] = dict(props.get("models") or {})
        split = {k: int(v) for k, v in (props.get("traffic_split") or {}).items()}
        if models and sum(split.values()) != 100:
            raise DeploymentFailed(f"traffic_split of endpoint {endpoint} sums to {sum(split.values())}, not 100")
        client = self._client(endpoint)
        deployed = self._deployed(client, endpoint)
        ids: dict[str, str] = {}  # wanted id -> id on the endpoint
        for want, model in sorted(models.items()):
            found = next((d for d in deployed if d.id == want), None) or next(
                (d for d in deployed if d.display_name == model["display_name"] and d.model == model["model"]), None
            )
            if found is not None:  # adopted: deployed before, or by an interrupted update
                ids[want] = found.id
                current = found.dedicated_resources
                if (current.min_replica_count, current.max_replica_count) != (
                    model["min_replica_count"],
                    model["max_replica_count"],
                ):
                    op = self._call(
                        client.mutate_deployed_model,
                        "updating",
                        endpoint,
                        model["model"],
                        endpoint=endpoint,
                        deployed_model=types.DeployedModel(
                            id=found.id,
                            dedicated_resources=_resources(types, model),
                        ),
                        update_mask={
                            "paths": ["dedicated_resources.min_replica_count", "dedicated_resources.max_replica_count"]
                        },
                    )
                    self._wait(op, "updating", endpoint, model["model"])
                continue
            op = self._call(
                client.deploy_model,
                "deploying",
                endpoint,
                model["model"],
                endpoint=endpoint,
                deployed_model=types.DeployedModel(
                    id=want,
                    model=model["model"],
                    display_name=model["display_name"],
                    service_account=model.get("service_account") or "",
                    dedicated_resources=_resources(types, model),
                ),
                traffic_split={},  # empty: the endpoint's split is not updated, the model gets 0%
            )
            result = self._wait(op, "deploying", endpoint, model["model"])
            ids[want] = result.deployed_model.id or want
        actual = {ids[k]: v for k, v in sorted(split.items()) if v}
        self._call(
            client.update_endpoint,
            "setting the traffic split for",
            endpoint,
            ", ".join(sorted(actual)) or "(none)",
            endpoint=types.Endpoint(name=endpoint, traffic_split=actual),
            update_mask={"paths": ["traffic_split"]},
        )
        for gone_id, gone in sorted(((old or {}).get("deployed_models") or {}).items()):
            if gone_id in ids.values():
                continue
            op = self._call(
                client.undeploy_model,
                "undeploying",
                endpoint,
                gone.get("model", gone_id),
                endpoint=endpoint,
                deployed_model_id=gone_id,
            )
            self._wait(op, "undeploying", endpoint, gone.get("model", gone_id))
        return {
            **props,
            "deployed_models": {ids[k]: {**models[k], "wanted_id": k} for k in sorted(models)},
            "live_traffic_split": actual,
        }

    def _read(self, endpoint: str, props: Mapping[str, Any]) -> dict[str, Any] | None:
        from google.api_core import exceptions

        client = self._client(endpoint)
        try:
            live = client.get_endpoint(name=endpoint)
        except exceptions.NotFound:
            return None
        except exceptions.GoogleAPICallError as err:
            raise DeploymentFailed(f"reading model (all) on endpoint {endpoint} failed: {err.message}") from err
        recorded: Mapping[str, Mapping[str, Any]] = props.get("deployed_models") or {}
        deployed: dict[str, dict[str, Any]] = {}
        for d in sorted(live.deployed_models, key=lambda d: d.id):
            seen = _live_model(d)
            if d.id in recorded:  # ours: the recorded fields, the replica counts as they are now
                deployed[d.id] = {**recorded[d.id], **{k: seen[k] for k in _MUTABLE}}
            else:  # deployed out of band, or imported: recorded under its own id
                deployed[d.id] = {**seen, "wanted_id": d.id}
        split = {k: int(v) for k, v in sorted(live.traffic_split.items()) if v}
        wanted = {i: e["wanted_id"] for i, e in deployed.items()}
        return {
            **props,
            "endpoint": endpoint,
            "models": {e["wanted_id"]: {k: v for k, v in e.items() if k != "wanted_id"} for e in deployed.values()},
            "traffic_split": {wanted[i]: v for i, v in split.items() if i in wanted},
            "deployed_models": deployed,
            "live_traffic_split": split,
        }

    # --- ResourceProvider -----------------------------------------------------------------

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._converge(props, None)
        return pulumi.dynamic.CreateResult(id_=props["endpoint"] + "/deployments", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        keys = ("endpoint", "models", "traffic_split")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return pulumi.dynamic.DiffResult(
            changes=bool(changed), replaces=["endpoint"] if "endpoint" in changed else [], delete_before_replace=True
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=self._converge(news, olds))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        # on import there are no recorded properties: the id names the endpoint (see create)
        endpoint: str = props.get("endpoint") or id_.removesuffix("/deployments")
        outs = self._read(endpoint, props)
        if outs is None:  # the endpoint is gone, and the models with it: an empty id says so
            return pulumi.dynamic.ReadResult(id_="", outs={})
        return pulumi.dynamic.ReadResult(id_=id_, outs=outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        endpoint: str = props["endpoint"]
        client = self._client(endpoint)
        mine = dict(props.get("deployed_models") or {})
        live = {d.id for d in self._deployed(client, endpoint)}
        split = {k: int(v) for k, v in (props.get("live_traffic_split") or {}).items()}
        # the models without traffic first; the one with the most traffic last (undeploying
        # the last model empties the split)
        order = sorted((i for i in mine if i in live), key=lambda i: (split.get(i, 0), i))
        for n, gone_id in enumerate(order):
            rest = order[n + 1 :]
            kwargs: dict[str, Any] = {}
            if split.get(gone_id) and rest:
                kwargs["traffic_split"] = {rest[-1]: 100}
            op = self._call(
                client.undeploy_model,
                "undeploying",
                endpoint,
                mine[gone_id].get("model", gone_id),
                endpoint=endpoint,
                deployed_model_id=gone_id,
                **kwargs,
            )
            self._wait(op, "undeploying", endpoint, mine[gone_id].get("model", gone_id))


def _resources(types: Any, model: Mapping[str, Any]) -> Any:
    machine: dict[str, Any] = {"machine_type": model["machine_type"]}
    if model.get("accelerator_type"):
        machine["accelerator_type"] = model["accelerator_type"]
        machine["accelerator_count"] = int(model.get("accelerator_count") or 1)
    return types.DedicatedResources(
        machine_spec=types.MachineSpec(**machine),
        min_replica_count=int(model["min_replica_count"]),
        max_replica_count=int(model["max_replica_count"]),
    )


def _live_model(d: Any) -> dict[str, Any]:
    """A deployed model as the endpoint reports it, in the shape of a ``models`` entry (the
    accelerator by its enum name, as the spec gives it)."""
    res = d.dedicated_resources
    model: dict[str, Any] = {
        "model": d.model,
        "display_name": d.display_name,
        "machine_type": res.machine_spec.machine_type,
        "min_replica_count": res.min_replica_count,
        "max_replica_count": res.max_replica_count,
        "service_account": d.service_account,
    }
    if res.machine_spec.accelerator_type:
        model["accelerator_type"] = res.machine_spec.accelerator_type.name
        model["accelerator_count"] = res.machine_spec.accelerator_count
    return model


class VertexModelDeployment(pulumi.dynamic.Resource, module="agentstage", name="VertexModelDeployment"):
    """The models deployed to one Vertex AI endpoint and its traffic split
    (:class:`VertexDeploymentProvider`). Outputs: ``deployed_models`` (id -> model) and
    ``live_traffic_split`` (id -> percent) as the endpoint serves them."""

    deployed_models: pulumi.Output[dict[str, Any]]
    live_traffic_split: pulumi.Output[dict[str, int]]

    def __init__(
        self,
        name: str,
        *,
        endpoint: pulumi.Input[str],
        models: pulumi.Input[Mapping[str, Mapping[str, Any]]],
        traffic_split: Mapping[str, int],
        provider: VertexDeploymentProvider | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            provider or VertexDeploymentProvider(),
            name,
            {
                "endpoint": endpoint,
                "models": models,
                "traffic_split": dict(traffic_split),
                "deployed_models": None,
                "live_traffic_split": None,
            },
            opts,
        )
