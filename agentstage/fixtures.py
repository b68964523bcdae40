"""What the offline engine answers in place of the providers.

Outputs are computed the way Google Cloud computes them, from the inputs and stack config:

- ``gcp:serviceaccount/account:Account``: ``email`` = ``<accountId>@<project>.iam.gserviceaccount.com``,
  ``member``, ``name``, ``uniqueId`` (21 digits derived from the email);
- ``gcp:cloudrunv2/service:Service``: ``uri`` = ``https://<name>-<project number>.<region>.run.app``,
  ``latestReadyRevision`` = ``latestCreatedRevision`` = the template's revision name,
  ``trafficStatuses`` with a tag URL (``https://<tag>---<name>-<number>.<region>.run.app``);
- ``gcp:vertex/aiReasoningEngine:AiReasoningEngine``: ``name`` = a numeric id derived from the
  project, region and display name, ``id`` = ``projects/<p>/locations/<r>/reasoningEngines/<n>``,
  ``url`` = that resource's ``https://<region>-aiplatform.googleapis.com/v1/...`` URL;
- IAM members: ``id`` and ``etag`` as the provider forms them;
- alert policies and notification channels: ``name`` = ``projects/<p>/alertPolicies/<n>`` /
  ``projects/<p>/notificationChannels/<n>`` (conditions get names too); dashboards, SLO
  services and SLOs: ``projects/<number>/...``; budgets: ``billingAccounts/<a>/budgets/<uuid>``;
  Pub/Sub topics: ``projects/<p>/topics/<name>``; Model Armor templates:
  ``name`` = ``projects/<p>/locations/<l>/templates/<id>``; numeric ids and uuids are
  derived from the project and logical name, identical on every run;
- ``gcp:vertex/aiEndpoint:AiEndpoint``: ``id`` = ``projects/<p>/locations/<l>/endpoints/<name>``;
  the dynamic ``pulumi-python:dynamic/agentstage:VertexModelDeployment``: planned without calling
  its provider (no Vertex AI API call offline), ``deployed_models`` = its ``models`` and
  ``live_traffic_split`` = its ``traffic_split`` without 0% entries, as the provider leaves them;
- Compute Engine load balancer resources and Cloud Armor security policies (``gcp:compute/*``
  of an agent's load balancer): ``id`` = ``projects/<p>/global/<collection>/<name>`` (regional:
  ``projects/<p>/regions/<r>/...``), ``selfLink`` that path under the compute v1 URL; a global
  address's ``address`` is a placeholder from TEST-NET-3 (203.0.113.0/24), derived from its name;
- Kubernetes objects (``kubernetes:*``, GKE agents) and providers (``pulumi:providers:*``):
  their inputs, with ``id`` = ``<metadata.namespace>/<metadata.name>`` as pulumi-kubernetes
  forms it (a provider's: ``<logical name>-id``);
- anything else: its inputs, with ``id`` = its ``name`` input or its logical name.

The project number is not knowable offline: it is ``agentstage:projectNumber`` from the stack
config when set, else a stable 12-digit number derived from the project id (documented as a
placeholder, identical on every run). Invokes answered: ``gcp:organizations/getProject``,
``gcp:organizations/getClientConfig``, ``gcp:container/getCluster`` (an existing GKE cluster:
endpoint and CA derived from its name); any other invoke is an error naming its token, so a
program never silently receives an empty answer.

:class:`NewStackMocks` answers as a first ``pulumi preview`` of a new stack does: every
resource is being created, so the engine's preview echoes its checked inputs with an empty
id, and every output the provider computes is unknown until the update runs. Under the
SDK's preview mode an output the mock does not return, and an empty id, resolve as unknown.
Invokes still answer, and so do reads of existing resources (both run during a real preview).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks

__all__ = ["FixtureMocks", "NewStackMocks", "project_number", "UnansweredInvoke"]


class UnansweredInvoke(Exception):
    pass


def project_number(project: str, configured: str | None = None) -> str:
    if configured:
        return configured
    return str(int(hashlib.sha256(project.encode()).hexdigest(), 16) % 10**12).rjust(12, "1")


def _digits(text: str, n: int) -> str:
    return str(int(hashlib.sha256(text.encode()).hexdigest(), 16))[:n]


class FixtureMocks(Mocks):
    def __init__(self, config: Mapping[str, str]) -> None:
        self.config = dict(config)
        self.project = self.config.get("gcp:project", "offline-project")
        self.region = self.config.get("gcp:region", "us-central1")
        self._numbers: dict[str, str] = {}
        self._handlers: dict[str, Callable[[MockResourceArgs, dict[str, Any]], str]] = {
            "gcp:serviceaccount/account:Account": self._service_account,
            "gcp:cloudrunv2/service:Service": self._cloud_run_service,
            "gcp:monitoring/alertPolicy:AlertPolicy": self._alert_policy,
            "gcp:monitoring/notificationChannel:NotificationChannel": self._notification_channel,
            "gcp:monitoring/dashboard:Dashboard": self._dashboard,
            "gcp:monitoring/genericService:GenericService": self._generic_service,
            "gcp:monitoring/slo:Slo": self._slo,
            "gcp:billing/budget:Budget": self._budget,
            "gcp:pubsub/topic:Topic": self._topic,
            "gcp:modelarmor/template:Template": self._model_armor_template,
            "gcp:vertex/aiReasoningEngine:AiReasoningEngine": self._reasoning_engine,
            "gcp:vertex/aiEndpoint:AiEndpoint": self._vertex_endpoint,
            "pulumi-python:dynamic/agentstage:VertexModelDeployment": self._vertex_deployment,
        }

    def number(self, project: str) -> str:
        if project not in self._numbers:
            configured = self.config.get("agentstage:projectNumber") if project == self.project else None
            self._numbers[project] = project_number(project, configured)
        return self._numbers[project]

    # --- resources ---------------------------------------------------------------------

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        handler = self._handlers.get(args.typ)
        if handler is not None:
            return handler(args, state), state
        if args.typ.endswith("IamMember") or args.typ.endswith("IAMMember"):
            return self._iam_member(args, state), state
        if args.typ.startswith(("kubernetes:", "pulumi:providers:")):
            return _kubernetes_id(args, state), state
        if args.typ in _COMPUTE:
            return self._compute(args, state), state
        name = state.get("name")
        return (name if isinstance(name, str) and name else f"{args.name}-id"), state

    def _compute(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        """A Compute Engine resource: ``id`` and ``selfLink`` as the provider forms them; a global
        address gets a placeholder IPv4 address from TEST-NET-3 (203.0.113.0/24, RFC 5737),
        derived from its name."""
        collection, regional = _COMPUTE[args.typ]
        project = state.get("project") or self.project
        name = state.get("name") or args.name
        scope = f"regions/{state.get('region') or self.region}" if regional else "global"
        path = f"projects/{project}/{scope}/{collection}/{name}"
        state.update(project=project, selfLink=f"https://www.googleapis.com/compute/v1/{path}")
        if collection == "addresses" and not state.get("address"):
            state["address"] = f"203.0.113.{int(_digits(path, 6)) % 254 + 1}"
        return path

    def _service_account(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        project = state.get("project") or self.project
        email = f"{state['accountId']}@{project}.iam.gserviceaccount.com"
        state.update(
            project=project,
            email=email,
            member=f"serviceAccount:{email}",
            name=f"projects/{project}/serviceAccounts/{email}",
            uniqueId="1" + _digits(email, 20),
        )
        return state["name"]

    def _cloud_run_service(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        project = state.get("project") or self.project
        region = state.get("location") or self.region
        name = state.get("name") or args.name
        host = f"{name}-{self.number(project)}.{region}.run.app"
        revision = (state.get("template") or {}).get("revision") or f"{name}-00001-abc"
        statuses = []
        for t in state.get("traffics") or []:
            status = {k: t[k] for k in ("type", "revision", "percent", "tag") if k in t}
            if t.get("tag"):
                status["uri"] = f"https://{t['tag']}---{host}"
            statuses.append(status)
        state.update(
            project=project,
            location=region,
            name=name,
            uri=f"https://{host}",
            urls=[f"https://{host}"],
            latestReadyRevision=f"projects/{project}/locations/{region}/services/{name}/revisions/{revision}",
            latestCreatedRevision=f"projects/{project}/locations/{region}/services/{name}/revisions/{revision}",
            trafficStatuses=statuses,
            generation="1",
            etag=_etag(state),
        )
        return f"projects/{project}/locations/{region}/services/{name}"

    # --- operations: resource names Google assigns (numeric ids derived from the inputs) ---

    def _alert_policy(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        project = state.get("project") or self.project
        name = f"projects/{project}/alertPolicies/{_digits(project + args.name, 19)}"
        conditions = []
        for i, condition in enumerate(state.get("conditions") or []):
            conditions.append({**condition, "name": f"{name}/conditions/{_digits(f'{name}/{i}', 19)}"})
        state.update(project=project, name=name, conditions=conditions)
        return name

    def _notification_channel(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        project = state.get("project") or self.project
        name = f"projects/{project}/notificationChannels/{_digits(project + args.name, 19)}"
        state.update(project=project, name=name, verificationStatus="")
        return name

    def _dashboard(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        project = state.get("project") or self.project
        return f"projects/{self.number(project)}/dashboards/{_uuid(project + args.name)}"

    def _generic_service(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        project = state.get("project") or self.project
        state.update(project=project, name=f"projects/{self.number(project)}/services/{state['serviceId']}")
        return f"projects/{project}/services/{state['serviceId']}"

    def _slo(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        project = state.get("project") or self.project
        name = f"projects/{self.number(project)}/services/{state['service']}/serviceLevelObjectives/{state['sloId']}"
        state.update(project=project, name=name)
        return name

    def _budget(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        account = state["billingAccount"]
        state["name"] = f"billingAccounts/{account}/budgets/{_uuid(account + args.name)}"
        state["etag"] = _etag(state)
        return state["name"]

    def _topic(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        project = state.get("project") or self.project
        state["project"] = project
        return f"projects/{project}/topics/{state.get('name') or args.name}"

    def _model_armor_template(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        project = state.get("project") or self.project
        location = state.get("location") or self.region
        name = f"projects/{project}/locations/{location}/templates/{state['templateId']}"
        state.update(project=project, location=location, name=name)
        return name

    def _reasoning_engine(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        """Google assigns the engine a numeric id; ``url`` is its v1 API resource URL."""
        project = state.get("project") or self.project
        region = state.get("region") or self.region
        number = _digits(f"{project}/{region}/{state.get('displayName') or args.name}", 19)
        resource = f"projects/{project}/locations/{region}/reasoningEngines/{number}"
        state.update(
            project=project,
            region=region,
            name=number,
            url=f"https://{region}-aiplatform.googleapis.com/v1/{resource}",
        )
        return resource

    def _vertex_endpoint(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        project = state.get("project") or self.project
        location = state.get("location") or self.region
        endpoint = f"projects/{project}/locations/{location}/endpoints/{state.get('name') or args.name}"
        state.update(project=project, location=location, region=location)
        return endpoint

    def _vertex_deployment(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        """components.vertex_deployment: what the provider's create returns, without calling it."""
        split = {k: v for k, v in (state.get("traffic_split") or {}).items() if v}
        models = state.get("models") or {}
        state.update(deployed_models={k: {**m, "wanted_id": k} for k, m in models.items()}, live_traffic_split=split)
        return f"{state.get('endpoint')}/deployments"

    def _iam_member(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        target = (
            state.get("secretId")
            or state.get("name")
            or state.get("project")
            or state.get("serviceAccountId")
            or args.name
        )
        state["etag"] = _etag(state)
        return f"{target}/{state.get('role')}/{state.get('member')}"

    # --- invokes -----------------------------------------------------------------------

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "gcp:organizations/getProject:getProject":
            project = args.args.get("projectId") or self.project
            return {
                "projectId": project,
                "number": self.number(project),
                "name": project,
                "id": f"projects/{project}",
            }, []
        if args.token == "gcp:container/getCluster:getCluster":
            return self._gke_cluster(args), []
        if args.token == "gcp:organizations/getClientConfig:getClientConfig":
            return {
                "project": self.project,
                "region": self.region,
                "zone": f"{self.region}-a",
                "accessToken": "[secret]",
                "id": self.project,
            }, []
        raise UnansweredInvoke(
            f"the offline engine has no answer for invoke {args.token}; "
            "answered offline: gcp:organizations/getProject, gcp:organizations/getClientConfig, "
            "gcp:container/getCluster"
        )

    def _gke_cluster(self, args: MockCallArgs) -> dict[str, Any]:
        """An existing GKE cluster: a private endpoint address and a placeholder CA derived
        from its project, location and name (what ``GkeAgent`` builds its kubeconfig from)."""
        project = args.args.get("project") or self.project
        location = args.args.get("location") or self.region
        name = args.args["name"]
        digits = _digits(f"{project}/{location}/{name}", 6)
        return {
            "project": project,
            "location": location,
            "name": name,
            "id": f"projects/{project}/locations/{location}/clusters/{name}",
            "endpoint": f"10.{int(digits[:2]) % 256}.{int(digits[2:4]) % 256}.2",
            "masterAuths": [{"clusterCaCertificate": "T0ZGTElORS1DQQ==", "clientCertificate": "", "clientKey": ""}],
            "workloadIdentityConfigs": [{"workloadPool": f"{project}.svc.id.goog"}],
        }


class NewStackMocks(FixtureMocks):
    """The answers of a first preview of a new stack: resources echo their inputs, with no id.
    A resource read (``Resource.get``) or imported by id exists already: a preview reads it,
    so it answers as :class:`FixtureMocks` does."""

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.resource_id:
            return super().new_resource(args)
        return "", dict(args.inputs)


#: Compute Engine resource type -> its collection, and whether it is regional: the provider's id
#: is ``projects/<p>/global/<collection>/<name>`` (or ``.../regions/<r>/...``), its ``selfLink``
#: that path under ``https://www.googleapis.com/compute/v1/``.
_COMPUTE: dict[str, tuple[str, bool]] = {
    "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup": ("networkEndpointGroups", True),
    "gcp:compute/securityPolicy:SecurityPolicy": ("securityPolicies", False),
    "gcp:compute/backendService:BackendService": ("backendServices", False),
    "gcp:compute/uRLMap:URLMap": ("urlMaps", False),
    "gcp:compute/managedSslCertificate:ManagedSslCertificate": ("sslCertificates", False),
    "gcp:compute/targetHttpsProxy:TargetHttpsProxy": ("targetHttpsProxies", False),
    "gcp:compute/globalAddress:GlobalAddress": ("addresses", False),
    "gcp:compute/globalForwardingRule:GlobalForwardingRule": ("forwardingRules", False),
}


def _kubernetes_id(args: MockResourceArgs, state: dict[str, Any]) -> str:
    """A Kubernetes object's id as the provider forms it: ``<namespace>/<name>`` (``<name>``
    when cluster-scoped); a provider's id is its logical name (the engine's provider ids)."""
    if args.typ.startswith("pulumi:providers:"):
        return f"{args.name}-id"
    metadata = state.get("metadata") if isinstance(state.get("metadata"), dict) else {}
    name = metadata.get("name") or args.name
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else str(name)


def _uuid(text: str) -> str:
    h = hashlib.sha256(text.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _etag(state: Mapping[str, Any]) -> str:
    return "BwY" + hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:10]
