"""Observed state: the traffic split and readiness a service really has, never the YAML alone.

The release flow decides from what is deployed (STYLE.md 12: the observed state read before
deciding). Three observers give the same :class:`ObservedService`:

- :class:`FileObserver` reads an observed state file (JSON, format below) for offline runs, CI
  and demos;
- :class:`CloudRunObserver` reads the Cloud Run Admin API v2 (``google-cloud-run``): the
  service's ``traffic_statuses``, ``latest_ready_revision`` and ``reconciling``, and the
  ``Ready`` condition of every revision that carries traffic;
- :class:`OutputsObserver` reads the stack outputs of the last ``pulumi up`` (``pulumi stack
  output --json``): the ``traffic`` output the reference program exports from each service's
  ``traffic_statuses``. It is the fallback without Google credentials, and as old as that
  update.

:func:`default_observer` picks one, in this order:

1. the observed state file, when one is given;
2. the Cloud Run Admin API, when ``google.auth.default()`` finds credentials (Application
   Default Credentials: ``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default
   login``, or the metadata server);
3. the stack outputs, through the Pulumi CLI.

Observed state file::

    {"services": {"support-bot": {
        "traffic": [{"revision": "support-bot-1-3-2", "percent": 95, "tag": null},
                    {"revision": "support-bot-1-4-0-93457a87", "percent": 5, "tag": "canary"}],
        "ready": {"support-bot-1-3-2": true, "support-bot-1-4-0-93457a87": true},
        "reconciling": false}}}

Percents are 0..100 and sum to 100 per service. ``ready`` may be left out (every revision in
the traffic block is then ready); when given, it names every revision that carries traffic.
``reconciling`` defaults to false. ``latest`` (optional) is an Agent Engine's newest revision id,
which a desired ``LATEST`` target stands for. The keys of ``services`` are the Cloud Run service
names, the display names of engines and endpoints and the names of GKE agents' HTTPRoutes; an
engine's revisions are runtime revision ids, an endpoint's deployed-model ids, an HTTPRoute's
the Services of its backendRefs (``<service>-stable``, ``<service>-canary``) with their weights
as percents, e.g.::

    {"services": {"summarizer": {
        "traffic": [{"revision": "summarizer-stable", "percent": 90},
                    {"revision": "summarizer-canary", "percent": 10}]}}}

Unknown keys are errors. Without the file, a GKE agent's live HTTPRoute is read from its cluster's
API server (:class:`GkeClusterObserver`, through the kubeconfig).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from agentstage.errors import BadInput
from agentstage.release.jsonfile import first_error, load_model

__all__ = [
    "ObservedError",
    "LiveTarget",
    "ObservedService",
    "Observer",
    "CloudRunObserver",
    "AgentEngineObserver",
    "VertexEndpointObserver",
    "OutputsObserver",
    "FileObserver",
    "default_observer",
    "ObserverForRuntimes",
    "GkeClusterObserver",
    "GkeRoute",
    "gke_routes",
    "has_google_credentials",
    "GkeRouteObserver",
    "short_revision",
]

#: The stack output the reference program exports: ``{service: [{revision, percent, tag}]}``.
TRAFFIC_OUTPUT = "traffic"
#: An optional stack output ``{revision: bool}``.
READY_OUTPUT = "revisions_ready"
#: How long ``pulumi stack output`` may take.
PULUMI_TIMEOUT_SECONDS = 120

_OTHERWISE = (
    "give an observed state file (--observed-file), or Google credentials "
    "(`gcloud auth application-default login`) to read the Cloud Run Admin API"
)


class ObservedError(BadInput):
    """The observed state cannot be read; the message says what and what to do."""


def short_revision(name: str) -> str:
    """``support-bot-1-3-2`` for ``projects/p/locations/r/services/s/revisions/support-bot-1-3-2``
    (and for ``support-bot-1-3-2``)."""
    return name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class LiveTarget:
    """One entry of the live traffic block."""

    revision: str
    percent: int
    tag: str | None = None


@dataclass
class ObservedService:
    """What one service really serves, read from ``source`` at ``read_at``."""

    service: str
    targets: list[LiveTarget]
    ready: dict[str, bool]
    source: str
    read_at: dt.datetime
    reconciling: bool = False
    message: str = ""
    #: The revision the keyword ``LATEST`` stands for (an Agent Engine's newest revision).
    latest: str | None = None

    def percent_of(self, revision: str) -> int:
        """The revision's share of the traffic (0 when it has none)."""
        return sum(t.percent for t in self.targets if t.revision == revision)

    def split(self) -> dict[str, int]:
        """Revision -> percent, for the revisions that carry traffic."""
        out: dict[str, int] = {}
        for t in self.targets:
            if t.percent > 0:
                out[t.revision] = out.get(t.revision, 0) + t.percent
        return out

    def matches(self, desired: Mapping[str, int]) -> bool:
        """The live split is ``desired`` (0% entries ignored), every revision carrying traffic
        is ready, and the service is not reconciling."""
        split = self.split()
        wanted: dict[str, int] = {}
        for r, p in desired.items():
            if p > 0 and r == "LATEST":
                if not self.latest or self.latest in desired:
                    return False  # no newer revision than the ones named: the release is not deployed
                r = self.latest
            if p > 0:
                wanted[r] = p
        return not self.reconciling and split == wanted and all(self.ready.get(r, False) for r in split)

    def to_json(self) -> dict[str, Any]:
        extra = {"latest": self.latest} if self.latest is not None else {}
        return {
            "service": self.service,
            "source": self.source,
            "read_at": self.read_at.isoformat(),
            "targets": [{"revision": t.revision, "percent": t.percent, "tag": t.tag} for t in self.targets],
            "split": self.split(),
            "ready": dict(self.ready),
            "reconciling": self.reconciling,
            "message": self.message,
            **extra,
        }


class Observer(Protocol):
    name: str

    def observe(self, service: str) -> ObservedService: ...


def _now() -> dt.datetime:
    from agentstage.release.ledger import now_utc

    return now_utc()


# --- Cloud Run Admin API ---------------------------------------------------------------------

_DEFAULT: Any = object()


class CloudRunObserver:
    """The live state from the Cloud Run Admin API v2 (``google-cloud-run``).

    Fields relied on (Cloud Run Admin API v2, ``google.cloud.run.v2``):

    - ``Service.traffic_statuses[]`` (``TrafficTargetStatus``: ``type``, ``revision``,
      ``percent``, ``tag``): the traffic actually served. A target of type
      ``TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST`` has no revision: it is
      ``Service.latest_ready_revision`` (a full resource name). Revision fields are short or
      full resource names; both are reduced to the short name.
    - ``Service.reconciling``: true while Cloud Run brings the service to its desired state;
      ``traffic_statuses`` and ``latest_ready_revision`` may then be transient.
    - ``Service.terminal_condition`` (``Condition.state``, ``message``): why the last
      reconciliation failed, reported in ``ObservedService.message``.
    - ``Revision.conditions[]``: a revision is ready when its condition of ``type`` ``Ready``
      has ``state`` ``CONDITION_SUCCEEDED`` (a v2 ``Revision`` has no ``terminal_condition``).

    ``retry`` is handed to every call (default: the library's own policy, which retries
    ``GetService`` on UNAVAILABLE for up to 10 s).
    """

    name = "Cloud Run Admin API"

    def __init__(
        self,
        project: str,
        region: str,
        *,
        client: Any = None,
        revisions_client: Any = None,
        clock: Callable[[], dt.datetime] | None = None,
        retry: Any = _DEFAULT,
    ) -> None:
        self.project = project
        self.region = region
        self._client = client
        self._revisions_client = revisions_client
        self._clock = clock or _now
        self._retry = retry

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.cloud import run_v2

            self._client = run_v2.ServicesClient()
        return self._client

    @property
    def revisions_client(self) -> Any:
        if self._revisions_client is None:
            from google.cloud import run_v2

            self._revisions_client = run_v2.RevisionsClient()
        return self._revisions_client

    def service_name(self, service: str) -> str:
        return f"projects/{self.project}/locations/{self.region}/services/{service}"

    def for_runtime(self, runtime: str) -> Any:
        """The observer of an agent on ``runtime`` with the same credentials' reach: this one
        for Cloud Run, the Vertex AI APIs for Agent Engine and Vertex AI endpoints."""
        if runtime == "agent-engine":
            return AgentEngineObserver(self.project, self.region, clock=self._clock)
        if runtime == "vertex-endpoint":
            return VertexEndpointObserver(self.project, self.region, clock=self._clock)
        if runtime == "gke":
            return GkeRouteObserver()
        return self

    def _call(self, method: Callable[..., Any], name: str) -> Any:
        kwargs: dict[str, Any] = {"name": name}
        if self._retry is not _DEFAULT:
            kwargs["retry"] = self._retry
        return method(**kwargs)

    def observe(self, service: str) -> ObservedService:
        from google.api_core import exceptions as gexc
        from google.cloud import run_v2

        name = self.service_name(service)
        try:
            svc = self._call(self.client.get_service, name)
        except gexc.NotFound as err:
            raise ObservedError(
                f"Cloud Run: service {service} does not exist yet in project {self.project}, region "
                f"{self.region} ({err}); has the stack been deployed with `pulumi up`?"
            ) from None
        except (gexc.GoogleAPICallError, gexc.RetryError) as err:
            raise ObservedError(
                f"Cloud Run: cannot read service {service} ({name}): {err}; check that the credentials may "
                "read Cloud Run (roles/run.viewer) and try again, or give an observed state file "
                "(--observed-file)"
            ) from None

        latest = short_revision(svc.latest_ready_revision)
        notes: list[str] = []
        targets: list[LiveTarget] = []
        for status in svc.traffic_statuses:
            if status.type_ == run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST:
                revision = latest
                if not revision:
                    notes.append(f"{status.percent}% goes to the latest ready revision, and there is none yet")
                    continue
            else:
                revision = short_revision(status.revision)
            targets.append(LiveTarget(revision, int(status.percent), status.tag or None))

        ready: dict[str, bool] = {}
        for target in targets:
            if target.percent <= 0 or target.revision in ready:
                continue
            ready[target.revision], why = self._revision_ready(service, target.revision)
            if not ready[target.revision]:
                notes.append(f"revision {target.revision} is not ready" + (f": {why}" if why else ""))

        terminal = svc.terminal_condition
        if terminal.state == run_v2.Condition.State.CONDITION_FAILED:
            notes.insert(
                0,
                f"the last reconciliation failed: {terminal.message}"
                if terminal.message
                else "the last reconciliation failed",
            )
        return ObservedService(
            service=service,
            targets=targets,
            ready=ready,
            source=f"{self.name} ({name})",
            read_at=self._clock(),
            reconciling=bool(svc.reconciling),
            message="; ".join(notes),
        )

    def _revision_ready(self, service: str, revision: str) -> tuple[bool, str]:
        from google.api_core import exceptions as gexc
        from google.cloud import run_v2

        name = f"{self.service_name(service)}/revisions/{revision}"
        try:
            rev = self._call(self.revisions_client.get_revision, name)
        except (gexc.GoogleAPICallError, gexc.RetryError) as err:
            raise ObservedError(
                f"Cloud Run: cannot read revision {revision} of service {service} ({name}): {err}; check that "
                "the credentials may read Cloud Run (roles/run.viewer) and try again, or give an observed "
                "state file (--observed-file)"
            ) from None
        for condition in rev.conditions:
            if condition.type_ == "Ready":
                return condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED, condition.message
        return False, "it has no Ready condition yet"


# --- Vertex AI: Agent Engine and endpoints ----------------------------------------------------


def _vertex_errors() -> tuple[type[BaseException], ...]:
    import requests
    from google.api_core import exceptions as gexc

    return (gexc.GoogleAPICallError, gexc.RetryError, requests.exceptions.RequestException)


def _vertex_options(region: str, api_endpoint: str | None) -> dict[str, str]:
    return {"api_endpoint": api_endpoint or f"https://{region}-aiplatform.googleapis.com"}


class _VertexObserver:
    name = ""

    def __init__(
        self,
        project: str,
        region: str,
        *,
        client: Any = None,
        api_endpoint: str | None = None,
        credentials: Any = None,
        clock: Callable[[], dt.datetime] | None = None,
        retry: Any = _DEFAULT,
        timeout: float | None = 30.0,
    ) -> None:
        self.project = project
        self.region = region
        self._client = client
        self.api_endpoint = api_endpoint
        self.credentials = credentials
        self._clock = clock or _now
        self._retry = retry
        self._timeout = timeout

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        if self._retry is not _DEFAULT:
            kwargs["retry"] = self._retry
        if self._timeout is not None:
            kwargs["timeout"] = self._timeout
        return method(**kwargs)


class VertexEndpointObserver(_VertexObserver):
    """The live split of a Vertex AI endpoint (``google-cloud-aiplatform``,
    ``aiplatform_v1.EndpointServiceClient``, REST transport, ``get_endpoint``).

    Fields relied on (Vertex AI REST reference, ``projects.locations.endpoints``,
    https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints):
    ``Endpoint.traffic_split`` ("A map from a DeployedModel's ID to the percentage of this
    Endpoint's traffic that should be forwarded to that DeployedModel") and
    ``Endpoint.deployed_models[].id``. The revisions of the live split are deployed-model ids; a
    deployed model is ready when the endpoint lists it (deployModel is a long-running operation
    that adds it when done), and a split entry naming a model the endpoint does not list is not.

    ``observe`` takes the endpoint's display name (its id is derived from the project, region
    and display name: components.vertex_endpoint.endpoint_id) or its resource name."""

    name = "Vertex AI endpoint API"

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.cloud.aiplatform_v1 import EndpointServiceClient

            self._client = EndpointServiceClient(
                transport="rest",
                credentials=self.credentials,
                client_options=_vertex_options(self.region, self.api_endpoint),
            )
        return self._client

    def endpoint_name(self, endpoint: str) -> str:
        if endpoint.startswith("projects/"):
            return endpoint
        from components.vertex_endpoint import endpoint_id

        return f"projects/{self.project}/locations/{self.region}/endpoints/{endpoint_id(self.project, self.region, endpoint)}"

    def observe(self, service: str) -> ObservedService:
        from google.api_core import exceptions as gexc

        name = self.endpoint_name(service)
        try:
            endpoint = self._call(self.client.get_endpoint, name=name)
        except gexc.NotFound as err:
            raise ObservedError(
                f"Vertex AI: endpoint {service} ({name}) does not exist yet ({err.message}); has the stack been "
                "deployed with `pulumi up`?"
            ) from None
        except _vertex_errors() as err:
            raise ObservedError(
                f"Vertex AI: cannot read endpoint {service} ({name}): {err}; check that the credentials may read "
                "Vertex AI endpoints (roles/aiplatform.viewer) and try again, or give an observed state file "
                "(--observed-file)"
            ) from None
        deployed = {d.id for d in endpoint.deployed_models}
        split = {str(k): int(v) for k, v in endpoint.traffic_split.items()}
        targets = [LiveTarget(i, split.get(i, 0)) for i in sorted(deployed | set(split))]
        ready = {i: i in deployed for i, p in split.items() if p > 0}
        missing = sorted(i for i, ok in ready.items() if not ok)
        message = f"the split names deployed models the endpoint does not list: {', '.join(missing)}" if missing else ""
        if not split:
            message = "the endpoint serves no traffic (its traffic split is empty)"
        return ObservedService(service, targets, ready, f"{self.name} ({name})", self._clock(), message=message)


class AgentEngineObserver(_VertexObserver):
    """The live split of an Agent Engine (``google-cloud-aiplatform``, v1beta1
    ``ReasoningEngineServiceClient`` and ``ReasoningEngineRuntimeRevisionServiceClient``, REST
    transport).

    Fields relied on (google-cloud-aiplatform 2.7.0, ``aiplatform_v1beta1.types``):
    ``ReasoningEngine.traffic_config`` (``traffic_split_manual.targets[]``:
    ``runtime_revision_name``, ``percent``; or ``traffic_split_always_latest``) and the engine's
    runtime revisions (``ReasoningEngineRuntimeRevision``: ``name``, ``state`` ``ACTIVE``/``ARCHIVED``,
    ``create_time``). The newest revision is what ``LATEST`` stands for (``latest``); a target
    named ``LATEST`` is reported as that revision; a revision is ready when it is ``ACTIVE``.
    Revision ids are the last segment of their resource names.

    ``observe`` takes the engine's display name (the engine's id is Google's: it is looked up
    with ``list_reasoning_engines`` and a display-name filter) or its resource name."""

    name = "Vertex AI Agent Engine API"

    def __init__(self, project: str, region: str, *, revisions_client: Any = None, **kwargs: Any) -> None:
        super().__init__(project, region, **kwargs)
        self._revisions_client = revisions_client

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.cloud.aiplatform_v1beta1 import ReasoningEngineServiceClient

            self._client = ReasoningEngineServiceClient(
                transport="rest",
                credentials=self.credentials,
                client_options=_vertex_options(self.region, self.api_endpoint),
            )
        return self._client

    @property
    def revisions_client(self) -> Any:
        if self._revisions_client is None:
            from google.cloud.aiplatform_v1beta1 import ReasoningEngineRuntimeRevisionServiceClient

            self._revisions_client = ReasoningEngineRuntimeRevisionServiceClient(
                transport="rest",
                credentials=self.credentials,
                client_options=_vertex_options(self.region, self.api_endpoint),
            )
        return self._revisions_client

    def _engine(self, service: str) -> Any:
        from google.api_core import exceptions as gexc

        parent = f"projects/{self.project}/locations/{self.region}"
        try:
            if service.startswith("projects/"):
                return self._call(self.client.get_reasoning_engine, name=service)
            found = [
                e
                for e in self._call(
                    self.client.list_reasoning_engines,
                    request={"parent": parent, "filter": f'display_name="{service}"'},
                )
                if e.display_name == service
            ]
        except gexc.NotFound as err:
            raise ObservedError(
                f"Agent Engine: engine {service} does not exist yet in {parent} ({err.message}); has the stack been "
                "deployed with `pulumi up`?"
            ) from None
        except _vertex_errors() as err:
            raise ObservedError(
                f"Agent Engine: cannot read engine {service} in {parent}: {err}; check that the credentials may read "
                "Vertex AI (roles/aiplatform.viewer) and try again, or give an observed state file (--observed-file)"
            ) from None
        if not found:
            raise ObservedError(
                f"Agent Engine: no engine with display name {service} in {parent}; has the stack been deployed with "
                "`pulumi up`?"
            )
        if len(found) > 1:
            raise ObservedError(
                f"Agent Engine: {len(found)} engines have the display name {service} in {parent} "
                f"({', '.join(e.name for e in found)}); an agent has one"
            )
        return found[0]

    def observe(self, service: str) -> ObservedService:
        from google.cloud.aiplatform_v1beta1 import ReasoningEngineRuntimeRevision

        engine = self._engine(service)
        try:
            revisions = list(
                self._call(self.revisions_client.list_reasoning_engine_runtime_revisions, parent=engine.name)
            )
        except _vertex_errors() as err:
            raise ObservedError(
                f"Agent Engine: cannot list the runtime revisions of {service} ({engine.name}): {err}; check that the "
                "credentials may read Vertex AI (roles/aiplatform.viewer) and try again, or give an observed state "
                "file (--observed-file)"
            ) from None
        active = ReasoningEngineRuntimeRevision.State.ACTIVE
        state = {short_revision(r.name): r.state == active for r in revisions}
        newest = sorted((r for r in revisions if r.state == active), key=lambda r: (r.create_time, r.name))
        latest = short_revision(newest[-1].name) if newest else None
        notes: list[str] = []
        targets: list[LiveTarget] = []
        manual = engine.traffic_config.traffic_split_manual
        if manual.targets:
            for t in manual.targets:
                revision = short_revision(t.runtime_revision_name)
                if revision.upper() == "LATEST":
                    revision = latest or ""
                if not revision:
                    notes.append(f"{t.percent}% goes to the latest revision, and there is none yet")
                    continue
                targets.append(LiveTarget(revision, int(t.percent)))
        elif latest:
            targets.append(LiveTarget(latest, 100))  # always latest (the default)
        else:
            notes.append("all traffic goes to the latest revision, and there is no active one yet")
        ready: dict[str, bool] = {}
        for t in targets:
            if t.percent > 0:
                ready[t.revision] = state.get(t.revision, False)
                if not ready[t.revision]:
                    notes.append(f"revision {t.revision} is not active")
        return ObservedService(
            service,
            targets,
            ready,
            f"{self.name} ({engine.name})",
            self._clock(),
            message="; ".join(notes),
            latest=latest,
        )


# --- observed state file ---------------------------------------------------------------------


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    revision: str = Field(min_length=1, description="The revision's short name.")
    percent: int = Field(ge=0, le=100, description="Its share of the traffic, 0..100.")
    tag: str | None = Field(default=None, description="Its traffic tag; default: none.")


class _ServiceState(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    traffic: list[_Target] = Field(description="The live traffic block; percents sum to 100.")
    ready: dict[str, bool] | None = Field(
        default=None, description="Revision -> ready; default: every revision in the traffic block is ready."
    )
    reconciling: bool = Field(default=False, description="Cloud Run is still reconciling; default: false.")
    latest: str | None = Field(
        default=None,
        description="An Agent Engine's newest revision id, which the keyword LATEST stands for; default: none.",
    )

    @field_validator("traffic")
    @classmethod
    def _sum(cls, traffic: list[_Target]) -> list[_Target]:
        total = sum(t.percent for t in traffic)
        if total != 100:
            raise ValueError(f"percents sum to {total}, not 100")
        return traffic

    @model_validator(mode="after")
    def _ready_covers_traffic(self) -> _ServiceState:
        if self.ready is not None:
            for t in self.traffic:
                if t.percent > 0 and t.revision not in self.ready:
                    raise ValueError(
                        f"ready has no entry for {t.revision}, which carries {t.percent}% of the "
                        "traffic; give true or false (or leave ready out: all revisions ready)"
                    )
        return self


class _ObservedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    services: dict[str, _ServiceState]


class FileObserver:
    """The observed state from a JSON file (format in the module docstring), read once."""

    name = "observed state file"

    def __init__(self, path: Path, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.path = Path(path)
        self._clock = clock or _now
        self.data = self._load()

    def _load(self) -> _ObservedFile:
        return load_model(self.path, _ObservedFile, "observed state file", ObservedError)

    def observe(self, service: str) -> ObservedService:
        state = self.data.services.get(service)
        if state is None:
            have = ", ".join(sorted(self.data.services)) or "none"
            raise ObservedError(
                f"observed state file {self.path}: services has no entry for {service} "
                f"(services: {have}); add its traffic"
            )
        targets = [LiveTarget(t.revision, t.percent, t.tag or None) for t in state.traffic]
        ready = dict(state.ready) if state.ready is not None else {t.revision: True for t in targets}
        return ObservedService(
            service,
            targets,
            ready,
            f"{self.name} {self.path}",
            self._clock(),
            reconciling=state.reconciling,
            latest=state.latest,
        )


# --- stack outputs of the last `pulumi up` ---------------------------------------------------


class _OutputTarget(_Target):
    model_config = ConfigDict(extra="ignore", strict=True)


_TRAFFIC = TypeAdapter(dict[str, list[_OutputTarget]])
_READY = TypeAdapter(dict[str, bool], config=ConfigDict(strict=True))


class OutputsObserver:
    """The traffic recorded by the last ``pulumi up``: the stack output ``traffic``
    (``{service: [{"revision", "percent", "tag"}]}``, exported by the reference program from
    each service's ``traffic_statuses``) and, when present, ``revisions_ready``
    (``{revision: bool}``). Without ``revisions_ready`` the revisions in the traffic block
    count as ready: ``pulumi up`` of a Cloud Run service waits for its reconciliation and
    fails when a revision does not become ready, so the recorded traffic is traffic that was
    served. The state is as old as that update; the outputs are read again on every call."""

    name = "stack outputs"

    def __init__(
        self, project_dir: Path, stack: str, *, pulumi: str = "pulumi", clock: Callable[[], dt.datetime] | None = None
    ) -> None:
        self.project_dir = Path(project_dir)
        self.stack = stack
        self.pulumi = pulumi
        self._clock = clock or _now

    def command(self, executable: str) -> list[str]:
        return [
            executable,
            "stack",
            "output",
            "--json",
            "--show-secrets=false",
            "--stack",
            self.stack,
            "--cwd",
            str(self.project_dir),
        ]

    def outputs(self) -> dict[str, Any]:
        executable = shutil.which(self.pulumi)
        if executable is None:
            raise ObservedError(
                f"the Pulumi CLI is needed to read the stack outputs of {self.stack} (no `{self.pulumi}` on PATH) "
                f"when there are no Google credentials; install it from https://www.pulumi.com/docs/install/, "
                f"or {_OTHERWISE}"
            )
        shown = f"pulumi stack output --stack {self.stack}"
        try:
            proc = subprocess.run(
                self.command(executable),
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=PULUMI_TIMEOUT_SECONDS,
                env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
            )
        except subprocess.TimeoutExpired:
            raise ObservedError(
                f"{shown} did not answer within {PULUMI_TIMEOUT_SECONDS} s; "
                f"check the Pulumi backend login, or {_OTHERWISE}"
            ) from None
        except OSError as err:
            raise ObservedError(f"{shown}: the Pulumi CLI could not be started ({err}); {_OTHERWISE}") from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip() or "no output"
            raise ObservedError(
                f"{shown} failed (exit {proc.returncode}): {detail}; check that the stack "
                f"exists in the backend you are logged in to (`pulumi stack ls`), or {_OTHERWISE}"
            )
        try:
            outputs = json.loads(proc.stdout)
        except json.JSONDecodeError as err:
            raise ObservedError(f"{shown}: not JSON: {err}") from None
        if not isinstance(outputs, dict):
            raise ObservedError(f"{shown}: expected a JSON object of stack outputs, got {type(outputs).__name__}")
        return outputs

    def for_runtime(self, runtime: str) -> Any:
        """This observer; a GKE agent's HTTPRoute has no ``traffic`` output: :class:`GkeRouteObserver`."""
        return GkeRouteObserver() if runtime == "gke" else self

    def observe(self, service: str) -> ObservedService:
        outputs = self.outputs()
        shown = f"stack {self.stack}"
        if TRAFFIC_OUTPUT not in outputs:
            have = ", ".join(sorted(outputs)) or "none"
            raise ObservedError(
                f"{shown} has no `{TRAFFIC_OUTPUT}` output (outputs: {have}); run `pulumi up --stack {self.stack}` "
                f"with a program that exports it (the reference program does), or {_OTHERWISE}"
            )
        try:
            traffic = _TRAFFIC.validate_python(outputs[TRAFFIC_OUTPUT])
            ready_out = _READY.validate_python(outputs[READY_OUTPUT]) if READY_OUTPUT in outputs else None
        except ValidationError as err:
            where, msg = first_error(err)
            raise ObservedError(f"{shown}: stack output {where}: {msg}") from None
        if service not in traffic:
            have = ", ".join(sorted(traffic)) or "none"
            raise ObservedError(
                f"{shown}: the `{TRAFFIC_OUTPUT}` output has no service {service} (services: {have}); has it "
                f"been deployed with `pulumi up --stack {self.stack}`?"
            )
        targets = [LiveTarget(short_revision(t.revision), t.percent, t.tag or None) for t in traffic[service]]
        if ready_out is None:
            ready = {t.revision: True for t in targets}
            message = "readiness as of the last `pulumi up`"
        else:
            ready = {t.revision: ready_out.get(t.revision, False) for t in targets}
            message = ""
        return ObservedService(
            service, targets, ready, f"{self.name} of {self.stack} (last `pulumi up`)", self._clock(), message=message
        )


# --- GKE ---------------------------------------------------------------------------------------


class GkeRouteObserver:
    """Stands in for the cluster when it cannot be read: without the stack config (an observer
    of Cloud Run or of the stack outputs asked about a GKE agent) the cluster, namespace and
    context of the route are unknown. :class:`GkeClusterObserver` reads the route itself."""

    name = "GKE HTTPRoute"

    def observe(self, service: str) -> ObservedService:
        raise ObservedError(
            f"the live weights of HTTPRoute {service} are not read here (its cluster is not known to this "
            "observer); give an observed state file (--observed-file) with "
            f"services.{service}: the route's backendRefs as revisions ({service}-stable, {service}-canary) and "
            "their weights as percents, or --assume-deployed for an offline replay"
        )


@dataclass(frozen=True)
class GkeRoute:
    """Where a GKE agent's HTTPRoute lives: the kubeconfig context of its cluster, its namespace."""

    context: str
    namespace: str
    #: What to run when the context is missing from the kubeconfig.
    credentials_hint: str


def gke_routes(spec: Any) -> dict[str, GkeRoute]:
    """Route name (the agent's service name) -> where it lives, for every GKE agent of a
    PlatformSpec. A cluster given by project/location/name is reached through the context
    ``gcloud container clusters get-credentials`` writes, ``gke_<project>_<location>_<name>``
    (the same name components.gke gives it)."""
    out: dict[str, GkeRoute] = {}
    for agent, a in spec.agents.items():
        if a.runtime != "gke" or a.gke is None:
            continue
        namespace = a.gke.namespace or agent
        if a.gke.context is not None:
            route = GkeRoute(a.gke.context, namespace, f"add the context {a.gke.context} to the kubeconfig")
        else:
            c = a.gke.cluster
            project = c.project or spec.project
            route = GkeRoute(
                f"gke_{project}_{c.location}_{c.name}",
                namespace,
                f"run `gcloud container clusters get-credentials {c.name} --location {c.location} --project {project}`",
            )
        out[spec.service_name(agent)] = route
    return out


class GkeClusterObserver:
    """The live weights of a GKE agent's HTTPRoute, read from its cluster's API server with the
    Kubernetes client (``kubernetes``, the ``gke`` extra) through the kubeconfig
    (``KUBECONFIG`` or ``~/.kube/config``).

    Fields relied on (Gateway API v1, https://gateway-api.sigs.k8s.io/reference/spec/#httproute):
    ``spec.rules[].backendRefs[]`` (``name``, ``weight``; weights are relative, default 1, so a
    share is ``weight / sum``), ``metadata.generation`` and ``status.parents[].conditions[]``
    (``Accepted`` and ``ResolvedRefs``, with ``observedGeneration``: a route whose Gateway has not
    accepted its current generation is *reconciling*). A track (the Service ``<route>-<track>``
    and its Deployment of the same name, as components.gke names them) is ready when its
    Deployment has an available replica (``status.availableReplicas``, apps/v1)."""

    name = "Kubernetes API (HTTPRoute)"

    def __init__(
        self,
        routes: Mapping[str, GkeRoute],
        *,
        api_client_for: Callable[[str], Any] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.routes = dict(routes)
        #: seconds an API server may take to connect and to answer one request (a silent server
        #: never hangs a watch); the client takes an int or a (connect, read) pair, not a float
        self.timeout = timeout
        self._timeouts = (timeout, timeout)
        self._api_client_for = api_client_for
        self._clock = clock or _now
        self._clients: dict[str, Any] = {}

    def _client(self, route: GkeRoute) -> Any:
        if route.context not in self._clients:
            if self._api_client_for is not None:
                self._clients[route.context] = self._api_client_for(route.context)
            else:
                try:
                    from kubernetes import config
                    from kubernetes.config.config_exception import ConfigException
                except ImportError:
                    raise ObservedError(
                        "reading a GKE agent's HTTPRoute needs the Kubernetes client: pip install 'agentstage[gke]'"
                    ) from None
                try:
                    # KUBECONFIG is read here, not when the client library was imported
                    self._clients[route.context] = config.new_client_from_config(
                        config_file=os.environ.get("KUBECONFIG") or None, context=route.context
                    )
                except (ConfigException, OSError) as err:
                    raise ObservedError(
                        f"kubeconfig: context {route.context} cannot be used ({err}); {route.credentials_hint}"
                    ) from None
        return self._clients[route.context]

    def observe(self, service: str) -> ObservedService:
        route = self.routes.get(service)
        if route is None:
            raise ObservedError(f"{service} is not a GKE agent's route of this stack")
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        api = self._client(route)
        where = f"HTTPRoute {route.namespace}/{service} (context {route.context})"
        try:
            obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
                "gateway.networking.k8s.io",
                "v1",
                route.namespace,
                "httproutes",
                service,
                _request_timeout=self._timeouts,
            )
        except ApiException as err:
            what = "not found" if err.status == 404 else f"{err.status} {err.reason}"
            raise ObservedError(f"{where}: {what}") from None
        except HTTPError as err:
            raise ObservedError(f"{where}: the API server cannot be reached ({err})") from None
        refs = [
            (str(ref.get("name", "")), int(ref.get("weight", 1)))
            for rule in (obj.get("spec") or {}).get("rules") or []
            for ref in rule.get("backendRefs") or []
        ]
        total = sum(w for _, w in refs)
        targets = [LiveTarget(name, round(100 * w / total) if total else 0) for name, w in refs]
        generation = (obj.get("metadata") or {}).get("generation")
        reconciling, message = False, ""
        parents = ((obj.get("status") or {}).get("parents")) or []
        if not parents:
            reconciling, message = True, "no Gateway has reported on the route yet"
        for parent in parents:
            for cond in parent.get("conditions") or []:
                if cond.get("type") not in ("Accepted", "ResolvedRefs"):
                    continue
                if generation is not None and cond.get("observedGeneration") not in (None, generation):
                    reconciling = True
                elif cond.get("status") != "True":
                    reconciling, message = (
                        True,
                        f"{cond.get('type')}: {cond.get('reason', '')} {cond.get('message', '')}".strip(),
                    )
        apps = client.AppsV1Api(api)
        ready: dict[str, bool] = {}
        for name, _ in refs:
            try:
                dep = apps.read_namespaced_deployment(name, route.namespace, _request_timeout=self._timeouts)
                ready[name] = bool((dep.status and dep.status.available_replicas) or 0)
            except ApiException:
                ready[name] = False
            except HTTPError as err:
                raise ObservedError(f"{where}: the API server cannot be reached ({err})") from None
        return ObservedService(
            service, targets, ready, f"{self.name} {where}", self._clock(), reconciling=reconciling, message=message
        )


# --- choice ----------------------------------------------------------------------------------


def has_google_credentials() -> bool:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        return False
    return True


class _WithGke:
    """An observer of the Google runtimes, with the GKE agents' routes read from their clusters."""

    def __init__(self, inner: Any, gke: GkeClusterObserver) -> None:
        self.inner, self.gke = inner, gke
        self.name = inner.name

    def for_runtime(self, runtime: str) -> Any:
        if runtime == "gke":
            return self.gke
        pick = getattr(self.inner, "for_runtime", None)
        return pick(runtime) if pick is not None else self.inner

    def observe(self, service: str) -> ObservedService:
        return self.inner.observe(service)


class ObserverForRuntimes:
    """The observer of every runtime, chosen on first use: the observed state file if given,
    else the Google APIs (Cloud Run, Agent Engine, Vertex AI endpoints) when Google
    credentials are found, and a GKE agent's route from its cluster (with ``spec``, the
    PlatformSpec naming the clusters). Without either, reading fails with what to give (the
    stack outputs of the last ``pulumi up`` do not name an Agent Engine's revision ids)."""

    name = "observed state"

    def __init__(self, project: str, region: str, *, observed_file: Path | None = None, spec: Any = None) -> None:
        self.project, self.region, self.observed_file = project, region, observed_file
        self.gke: Observer = GkeClusterObserver(gke_routes(spec)) if spec is not None else GkeRouteObserver()
        self._chosen: Any = None

    def for_runtime(self, runtime: str) -> Observer:
        if self._chosen is None:
            if self.observed_file is not None:
                self._chosen = FileObserver(self.observed_file)
            elif runtime == "gke":
                return self.gke
            elif has_google_credentials():
                self._chosen = _WithGke(CloudRunObserver(self.project, self.region), self.gke)
            else:
                raise ObservedError("no observed state file (--observed-file) and no Google credentials")
        chosen = self._chosen
        return chosen.for_runtime(runtime) if hasattr(chosen, "for_runtime") else chosen

    def observe(self, service: str) -> ObservedService:
        return self.for_runtime("cloud-run").observe(service)


def default_observer(
    project_dir: Path,
    stack: str,
    project: str,
    region: str,
    *,
    observed_file: Path | None = None,
    spec: Any = None,
) -> Observer:
    """The observed state file if given; else the Cloud Run Admin API when Google credentials
    are found; else the stack outputs of the last ``pulumi up``. With ``spec`` (the stack's
    PlatformSpec), its GKE agents' routes are read from their clusters."""
    if observed_file is not None:
        return FileObserver(observed_file)
    inner: Any = CloudRunObserver(project, region) if has_google_credentials() else OutputsObserver(project_dir, stack)
    if spec is not None and gke_routes(spec):
        return _WithGke(inner, GkeClusterObserver(gke_routes(spec)))
    return inner
