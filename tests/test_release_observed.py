"""Observed state. The Cloud Run observer with the real ServicesClient and RevisionsClient
against a local gRPC server on 127.0.0.1 that implements google.cloud.run.v2.Services/GetService
and google.cloud.run.v2.Revisions/GetRevision with the library's own message types; the
observed state file; the stack outputs read through a fake `pulumi` executable, fed with what
the reference program really exports under the offline engine."""

from __future__ import annotations

import copy
import datetime as dt
import json
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcTransport
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from agentstage.engine import run_plan
from agentstage.release.observed import (
    CloudRunObserver,
    FileObserver,
    LiveTarget,
    ObservedError,
    ObservedService,
    OutputsObserver,
    default_observer,
)
from components.cloud_run import live_traffic
from tests.conftest import ROOT, load_stack, write_stack

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
PROJECT, REGION = "acme-agents-prod", "us-central1"
SERVICE = "support-bot"
SERVICE_NAME = f"projects/{PROJECT}/locations/{REGION}/services/{SERVICE}"
STABLE, CANARY = "support-bot-1-3-2", "support-bot-1-4-0-93457a87"
OLD = "support-bot-1-2-0"
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
State = run_v2.Condition.State
OTHERWISE = (
    "give an observed state file (--observed-file), or Google credentials "
    "(`gcloud auth application-default login`) to read the Cloud Run Admin API"
)


def rev_name(revision: str) -> str:
    return f"{SERVICE_NAME}/revisions/{revision}"


# --- a local Cloud Run Admin API -------------------------------------------------------------


class FakeRun:
    """Serves GetService and GetRevision from canned messages; records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.services: dict[str, run_v2.Service] = {}
        self.revisions: dict[str, run_v2.Revision] = {}
        self.fail: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self.lock = threading.Lock()

    def _answer(self, method: str, name: str, table: dict, context: grpc.ServicerContext):
        with self.lock:
            self.requests.append((method, name))
            failures = self.fail.get(method) or []
            failure = failures.pop(0) if failures else None
        if failure is not None:
            context.abort(*failure)
        if name not in table:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{name} not found")
        return table[name]

    def get_service(self, request: run_v2.GetServiceRequest, context: grpc.ServicerContext) -> run_v2.Service:
        return self._answer("GetService", request.name, self.services, context)

    def get_revision(self, request: run_v2.GetRevisionRequest, context: grpc.ServicerContext) -> run_v2.Revision:
        return self._answer("GetRevision", request.name, self.revisions, context)

    # canned resources, as Cloud Run returns them
    def serve(
        self, statuses, *, latest: str = CANARY, reconciling: bool = False, terminal: run_v2.Condition | None = None
    ) -> None:
        self.services[SERVICE_NAME] = run_v2.Service(
            name=SERVICE_NAME,
            traffic_statuses=[
                run_v2.TrafficTargetStatus(type_=t, revision=r, percent=p, tag=tag or "") for t, r, p, tag in statuses
            ],
            latest_ready_revision=rev_name(latest),
            latest_created_revision=rev_name(latest),
            reconciling=reconciling,
            terminal_condition=terminal or run_v2.Condition(type_="Ready", state=State.CONDITION_SUCCEEDED),
        )

    def revision(
        self,
        revision: str,
        state: State = State.CONDITION_SUCCEEDED,
        message: str = "",
        *,
        ready_condition: bool = True,
    ) -> None:
        conditions = [run_v2.Condition(type_="ResourcesAvailable", state=State.CONDITION_SUCCEEDED)]
        if ready_condition:
            conditions.insert(0, run_v2.Condition(type_="Ready", state=state, message=message))
        self.revisions[rev_name(revision)] = run_v2.Revision(
            name=rev_name(revision), service=SERVICE_NAME, conditions=conditions
        )


@pytest.fixture(scope="module")
def server():
    fake = FakeRun()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    services = grpc.method_handlers_generic_handler(
        "google.cloud.run.v2.Services",
        {
            "GetService": grpc.unary_unary_rpc_method_handler(
                fake.get_service,
                request_deserializer=run_v2.GetServiceRequest.deserialize,
                response_serializer=run_v2.Service.serialize,
            ),
        },
    )
    revisions = grpc.method_handlers_generic_handler(
        "google.cloud.run.v2.Revisions",
        {
            "GetRevision": grpc.unary_unary_rpc_method_handler(
                fake.get_revision,
                request_deserializer=run_v2.GetRevisionRequest.deserialize,
                response_serializer=run_v2.Revision.serialize,
            ),
        },
    )
    srv.add_generic_rpc_handlers((services, revisions))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    client = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel, credentials=AnonymousCredentials()))
    revisions_client = run_v2.RevisionsClient(
        transport=RevisionsGrpcTransport(channel=channel, credentials=AnonymousCredentials())
    )
    yield fake, client, revisions_client
    srv.stop(0)


@pytest.fixture
def run(server):
    fake, client, revisions_client = server
    fake.requests.clear()
    fake.services.clear()
    fake.revisions.clear()
    fake.fail.clear()
    return fake, client, revisions_client


def observer(run, **kwargs) -> CloudRunObserver:
    _, client, revisions_client = run
    return CloudRunObserver(
        PROJECT, REGION, client=client, revisions_client=revisions_client, clock=lambda: NOW, **kwargs
    )


def test_a_95_5_split_with_tags_is_read_from_traffic_statuses(run):
    fake = run[0]
    fake.serve(
        [
            (REVISION, rev_name(STABLE), 95, None),  # a full resource name
            (REVISION, CANARY, 5, "canary"),  # a short name
            (REVISION, OLD, 0, "previous"),  # tagged, no traffic
        ]
    )
    fake.revision(STABLE)
    fake.revision(CANARY)
    seen = observer(run).observe(SERVICE)
    assert seen.targets == [
        LiveTarget(STABLE, 95, None),
        LiveTarget(CANARY, 5, "canary"),
        LiveTarget(OLD, 0, "previous"),
    ]
    assert seen.split() == {STABLE: 95, CANARY: 5}
    assert (seen.percent_of(STABLE), seen.percent_of(CANARY), seen.percent_of(OLD), seen.percent_of("x")) == (
        95,
        5,
        0,
        0,
    )
    assert seen.ready == {STABLE: True, CANARY: True}
    assert seen.reconciling is False and seen.message == ""
    assert seen.read_at == NOW
    assert seen.source == f"Cloud Run Admin API ({SERVICE_NAME})"
    assert seen.matches({STABLE: 95, CANARY: 5, OLD: 0})
    assert not seen.matches({STABLE: 100})
    assert not seen.matches({STABLE: 90, CANARY: 10})
    # the service by its full name, then only the revisions that carry traffic
    assert fake.requests == [
        ("GetService", SERVICE_NAME),
        ("GetRevision", rev_name(STABLE)),
        ("GetRevision", rev_name(CANARY)),
    ]
    assert seen.to_json() == {
        "service": SERVICE,
        "source": f"Cloud Run Admin API ({SERVICE_NAME})",
        "read_at": "2026-05-01T12:00:00+00:00",
        "targets": [
            {"revision": STABLE, "percent": 95, "tag": None},
            {"revision": CANARY, "percent": 5, "tag": "canary"},
            {"revision": OLD, "percent": 0, "tag": "previous"},
        ],
        "split": {STABLE: 95, CANARY: 5},
        "ready": {STABLE: True, CANARY: True},
        "reconciling": False,
        "message": "",
    }


def test_the_watch_split_is_read_with_the_previous_revision_tagged(run):
    """At 100% the previous revision stays in the block at 0%, tagged ``stable``: it carries no
    traffic, so the split is the release's alone and only the release need be ready."""
    fake = run[0]
    fake.serve([(REVISION, STABLE, 0, "stable"), (REVISION, CANARY, 100, "canary")])
    fake.revision(CANARY)
    seen = observer(run).observe(SERVICE)
    assert seen.targets == [LiveTarget(STABLE, 0, "stable"), LiveTarget(CANARY, 100, "canary")]
    assert seen.split() == {CANARY: 100} and seen.ready == {CANARY: True}
    assert seen.matches({STABLE: 0, CANARY: 100}) and not seen.matches({STABLE: 100})
    assert fake.requests == [("GetService", SERVICE_NAME), ("GetRevision", rev_name(CANARY))]


def test_latest_is_resolved_to_the_latest_ready_revision(run):
    fake = run[0]
    fake.serve([(LATEST, "", 100, None)], latest=CANARY)
    fake.revision(CANARY)
    seen = observer(run).observe(SERVICE)
    assert seen.targets == [LiveTarget(CANARY, 100, None)]
    assert seen.matches({CANARY: 100})
    assert fake.requests == [("GetService", SERVICE_NAME), ("GetRevision", rev_name(CANARY))]


def test_a_revision_that_is_not_ready_does_not_match(run):
    fake = run[0]
    fake.serve([(REVISION, STABLE, 95, None), (REVISION, CANARY, 5, "canary")])
    fake.revision(STABLE)
    fake.revision(CANARY, State.CONDITION_FAILED, "Container failed to start and listen on PORT=8080")
    seen = observer(run).observe(SERVICE)
    assert seen.split() == {STABLE: 95, CANARY: 5}
    assert seen.ready == {STABLE: True, CANARY: False}
    assert not seen.matches({STABLE: 95, CANARY: 5})
    assert seen.message == f"revision {CANARY} is not ready: Container failed to start and listen on PORT=8080"


def test_a_revision_without_a_ready_condition_is_not_ready(run):
    fake = run[0]
    fake.serve([(REVISION, STABLE, 100, None)])
    fake.revision(STABLE, ready_condition=False)
    seen = observer(run).observe(SERVICE)
    assert seen.ready == {STABLE: False} and not seen.matches({STABLE: 100})
    assert seen.message == f"revision {STABLE} is not ready: it has no Ready condition yet"


def test_a_reconciling_service_does_not_match(run):
    fake = run[0]
    fake.serve(
        [(REVISION, STABLE, 95, None), (REVISION, CANARY, 5, "canary")],
        reconciling=True,
        terminal=run_v2.Condition(type_="Ready", state=State.CONDITION_RECONCILING),
    )
    fake.revision(STABLE)
    fake.revision(CANARY)
    seen = observer(run).observe(SERVICE)
    assert seen.reconciling is True
    assert seen.split() == {STABLE: 95, CANARY: 5} and seen.ready == {STABLE: True, CANARY: True}
    assert not seen.matches({STABLE: 95, CANARY: 5})


def test_a_failed_reconciliation_is_reported(run):
    fake = run[0]
    fake.serve(
        [(REVISION, STABLE, 100, None)],
        terminal=run_v2.Condition(
            type_="Ready",
            state=State.CONDITION_FAILED,
            message=f"Revision '{CANARY}' is not ready and cannot serve traffic.",
        ),
    )
    fake.revision(STABLE)
    seen = observer(run).observe(SERVICE)
    assert seen.matches({STABLE: 100})  # the last serving state still serves
    assert seen.message == f"the last reconciliation failed: Revision '{CANARY}' is not ready and cannot serve traffic."


def test_a_service_that_does_not_exist(run):
    with pytest.raises(ObservedError) as err:
        observer(run).observe(SERVICE)
    assert str(err.value) == (
        f"Cloud Run: service support-bot does not exist yet in project acme-agents-prod, region us-central1 "
        f"(404 {SERVICE_NAME} not found); has the stack been deployed with `pulumi up`?"
    )
    assert run[0].requests == [("GetService", SERVICE_NAME)]


def test_an_unavailable_api(run):
    fake = run[0]
    fake.fail["GetService"] = [(grpc.StatusCode.UNAVAILABLE, "connection reset by peer")]
    with pytest.raises(ObservedError) as err:
        observer(run, retry=None).observe(SERVICE)
    assert str(err.value) == (
        f"Cloud Run: cannot read service support-bot ({SERVICE_NAME}): 503 connection reset by peer; check that "
        "the credentials may read Cloud Run (roles/run.viewer) and try again, or give an observed state file "
        "(--observed-file)"
    )


def test_the_retry_policy_reaches_the_call(run):
    fake = run[0]
    fake.serve([(REVISION, STABLE, 100, None)])
    fake.revision(STABLE)
    fake.fail["GetService"] = [(grpc.StatusCode.UNAVAILABLE, "connection reset by peer")]
    retry = gretry.Retry(
        initial=0.01, maximum=0.02, timeout=5, predicate=gretry.if_exception_type(gexc.ServiceUnavailable)
    )
    seen = observer(run, retry=retry).observe(SERVICE)
    assert seen.split() == {STABLE: 100}
    assert fake.requests[:2] == [("GetService", SERVICE_NAME), ("GetService", SERVICE_NAME)]


def test_an_unreadable_revision(run):
    fake = run[0]
    fake.serve([(REVISION, STABLE, 100, None)])
    fake.fail["GetRevision"] = [(grpc.StatusCode.PERMISSION_DENIED, "caller lacks run.revisions.get")]
    with pytest.raises(ObservedError) as err:
        observer(run).observe(SERVICE)
    assert str(err.value) == (
        f"Cloud Run: cannot read revision {STABLE} of service support-bot ({rev_name(STABLE)}): 403 caller lacks "
        "run.revisions.get; check that the credentials may read Cloud Run (roles/run.viewer) and try again, or give "
        "an observed state file (--observed-file)"
    )


# --- ObservedService -------------------------------------------------------------------------


def test_matches_ignores_zero_entries_and_needs_every_serving_revision_ready():
    seen = ObservedService(
        SERVICE, [LiveTarget(STABLE, 100, None), LiveTarget(CANARY, 0, "canary")], {STABLE: True}, "test", NOW
    )
    assert seen.matches({STABLE: 100}) and seen.matches({STABLE: 100, CANARY: 0})
    assert not seen.matches({CANARY: 100})
    assert not ObservedService(SERVICE, [LiveTarget(STABLE, 100)], {}, "test", NOW).matches({STABLE: 100})
    # one revision twice (a tagged 0% entry and the traffic) counts once, summed
    twice = ObservedService(SERVICE, [LiveTarget(STABLE, 60), LiveTarget(STABLE, 40, "x")], {STABLE: True}, "t", NOW)
    assert twice.split() == {STABLE: 100} and twice.percent_of(STABLE) == 100 and twice.matches({STABLE: 100})


# --- observed state file ---------------------------------------------------------------------


GOOD = {
    "services": {
        SERVICE: {
            "traffic": [
                {"revision": STABLE, "percent": 95, "tag": None},
                {"revision": CANARY, "percent": 5, "tag": "canary"},
            ],
            "ready": {STABLE: True, CANARY: False},
            "reconciling": False,
        }
    }
}


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "observed.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_observed_state_file(tmp_path):
    path = write(tmp_path, GOOD)
    seen = FileObserver(path, clock=lambda: NOW).observe(SERVICE)
    assert seen.targets == [LiveTarget(STABLE, 95, None), LiveTarget(CANARY, 5, "canary")]
    assert seen.ready == {STABLE: True, CANARY: False}
    assert seen.source == f"observed state file {path}" and seen.read_at == NOW and not seen.reconciling
    assert not seen.matches({STABLE: 95, CANARY: 5})  # the canary is not ready


def test_observed_state_file_defaults_every_revision_ready_and_not_reconciling(tmp_path):
    data = {"services": {SERVICE: {"traffic": [{"revision": STABLE, "percent": 100}]}}}
    seen = FileObserver(write(tmp_path, data)).observe(SERVICE)
    assert seen.targets == [LiveTarget(STABLE, 100, None)] and seen.ready == {STABLE: True}
    assert seen.matches({STABLE: 100})
    data["services"][SERVICE]["reconciling"] = True
    assert not FileObserver(write(tmp_path, data)).observe(SERVICE).matches({STABLE: 100})


def _with(**changes):
    data = json.loads(json.dumps(GOOD))
    svc = data["services"][SERVICE]
    for key, value in changes.items():
        svc[key] = value
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        (
            _with(traffic=[{"revision": STABLE, "percent": 85}, {"revision": CANARY, "percent": 5}]),
            "services.support-bot.traffic: percents sum to 90, not 100",
        ),
        (
            _with(traffic=[{"revision": STABLE, "percent": -5}, {"revision": CANARY, "percent": 105}]),
            "services.support-bot.traffic.0.percent: Input should be greater than or equal to 0",
        ),
        (
            _with(traffic=[{"revision": STABLE, "percent": 0}, {"revision": CANARY, "percent": 150}]),
            "services.support-bot.traffic.1.percent: Input should be less than or equal to 100",
        ),
        (
            _with(traffic=[{"revision": "", "percent": 100}]),
            "services.support-bot.traffic.0.revision: String should have at least 1 character",
        ),
        (
            _with(traffic=[{"revision": STABLE, "percent": 100, "weight": 1}]),
            "services.support-bot.traffic.0.weight: Extra inputs are not permitted",
        ),
        (_with(status="ok"), "services.support-bot.status: Extra inputs are not permitted"),
        (
            _with(ready={STABLE: True}),
            f"services.support-bot: ready has no entry for {CANARY}, which carries 5% of the traffic; give true or false "
            "(or leave ready out: all revisions ready)",
        ),
        (
            _with(ready={STABLE: "yes", CANARY: True}),
            "services.support-bot.ready.support-bot-1-3-2: Input should be a valid boolean",
        ),
        ({"service": {}}, "services: Field required"),
        ({"services": {SERVICE: {}}}, "services.support-bot.traffic: Field required"),
    ],
)
def test_bad_observed_state_files(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ObservedError) as err:
        FileObserver(path)
    assert str(err.value) == f"observed state file {path}: {message}"


def test_observed_state_file_missing_unreadable_or_without_the_service(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ObservedError) as err:
        FileObserver(missing)
    assert str(err.value) == f"observed state file {missing} does not exist"
    broken = write(tmp_path, "{")
    with pytest.raises(ObservedError) as err:
        FileObserver(broken)
    assert str(err.value) == (
        f"observed state file {broken}: not valid JSON: "
        "Expecting property name enclosed in double quotes (line 1, column 2)"
    )
    path = write(tmp_path, GOOD)
    with pytest.raises(ObservedError) as err:
        FileObserver(path).observe("research-agent")
    assert str(err.value) == (
        f"observed state file {path}: services has no entry for research-agent (services: support-bot); add its traffic"
    )


# --- stack outputs through the Pulumi CLI ----------------------------------------------------


FAKE_PULUMI = """#!{python}
import json, pathlib, sys
here = pathlib.Path(__file__).resolve().parent
(here / "argv.json").write_text(json.dumps(sys.argv[1:]))
sys.stdout.write((here / "stdout.txt").read_text())
sys.stderr.write((here / "stderr.txt").read_text() if (here / "stderr.txt").exists() else "")
sys.exit(int((here / "rc.txt").read_text()) if (here / "rc.txt").exists() else 0)
"""


@pytest.fixture
def fake_pulumi(tmp_path, monkeypatch):
    """A `pulumi` on an otherwise empty PATH that records its arguments and prints stdout.txt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "pulumi"
    exe.write_text(FAKE_PULUMI.format(python=sys.executable))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))

    def answer(outputs, *, rc: int = 0, stderr: str = "") -> None:
        (bin_dir / "stdout.txt").write_text(outputs if isinstance(outputs, str) else json.dumps(outputs))
        (bin_dir / "rc.txt").write_text(str(rc))
        (bin_dir / "stderr.txt").write_text(stderr)

    answer.argv = lambda: json.loads((bin_dir / "argv.json").read_text())  # type: ignore[attr-defined]
    return answer


def test_stack_outputs_of_the_reference_program_are_the_observed_state(prod, fake_pulumi, tmp_path):
    """What the reference program exports (here under the offline engine, whose Cloud Run
    fixture answers traffic_statuses as Cloud Run does) is what OutputsObserver reads."""
    release = prod.outputs["agents"]["support-bot"]["release_revision"]
    assert prod.outputs["traffic"]["support-bot"] == [
        {"revision": STABLE, "percent": 95, "tag": None},
        {"revision": release, "percent": 5, "tag": "canary"},
    ]
    fake_pulumi(prod.outputs)
    project_dir = tmp_path / "project"
    seen = OutputsObserver(project_dir, "production", clock=lambda: NOW).observe(SERVICE)
    assert fake_pulumi.argv() == [
        "stack",
        "output",
        "--json",
        "--show-secrets=false",
        "--stack",
        "production",
        "--cwd",
        str(project_dir),
    ]
    assert seen.targets == [LiveTarget(STABLE, 95, None), LiveTarget(release, 5, "canary")]
    assert seen.ready == {STABLE: True, release: True} and not seen.reconciling
    assert seen.matches({STABLE: 95, release: 5}) and not seen.matches({release: 100})
    assert seen.source == "stack outputs of production (last `pulumi up`)" and seen.read_at == NOW
    assert seen.message == "readiness as of the last `pulumi up`"
    research = OutputsObserver(project_dir, "production").observe("research-agent")
    assert research.split() == {prod.outputs["agents"]["research-agent"]["release_revision"]: 100}


def test_stack_outputs_during_the_watch_are_the_observed_state(fake_pulumi, tmp_path):
    """The reference program at 100% with stable still set (the watch) exports the previous
    revision at 0% with its ``stable`` tag; OutputsObserver reads the release's 100%."""
    config = copy.deepcopy(load_stack("production"))
    config["agent-platform:agents"]["support-bot"]["rollout"]["canary_percent"] = 100
    plan = run_plan(ROOT, "production", write_stack(tmp_path / "Pulumi.production-watch.yaml", config))
    release = plan.outputs["agents"]["support-bot"]["release_revision"]
    assert plan.outputs["traffic"]["support-bot"] == [
        {"revision": STABLE, "percent": 0, "tag": "stable"},
        {"revision": release, "percent": 100, "tag": "canary"},
    ]
    fake_pulumi(plan.outputs)
    seen = OutputsObserver(tmp_path / "project", "production", clock=lambda: NOW).observe(SERVICE)
    assert seen.targets == [LiveTarget(STABLE, 0, "stable"), LiveTarget(release, 100, "canary")]
    assert seen.split() == {release: 100}
    assert seen.matches({STABLE: 0, release: 100}) and not seen.matches({STABLE: 100})


def test_stack_outputs_with_revisions_ready(fake_pulumi, tmp_path):
    fake_pulumi(
        {
            "traffic": {
                SERVICE: [
                    {"revision": rev_name(STABLE), "percent": 95, "tag": None},
                    {"revision": CANARY, "percent": 5, "tag": "canary", "uri": "https://canary---x"},
                ]
            },
            "revisions_ready": {STABLE: True},
        }
    )
    seen = OutputsObserver(tmp_path, "production").observe(SERVICE)
    assert seen.targets == [LiveTarget(STABLE, 95, None), LiveTarget(CANARY, 5, "canary")]
    assert seen.ready == {STABLE: True, CANARY: False} and not seen.matches({STABLE: 95, CANARY: 5})


def test_stack_outputs_errors(fake_pulumi, tmp_path):
    obs = OutputsObserver(tmp_path, "production")
    fake_pulumi({"agents": {}})
    with pytest.raises(ObservedError) as err:
        obs.observe(SERVICE)
    assert str(err.value) == (
        "stack production has no `traffic` output (outputs: agents); run `pulumi up --stack production` with a "
        f"program that exports it (the reference program does), or {OTHERWISE}"
    )
    fake_pulumi({"traffic": {"research-agent": []}})
    with pytest.raises(ObservedError) as err:
        obs.observe(SERVICE)
    assert str(err.value) == (
        "stack production: the `traffic` output has no service support-bot (services: "
        "research-agent); has it been deployed with `pulumi up --stack production`?"
    )
    fake_pulumi({"traffic": {SERVICE: [{"revision": STABLE, "percent": "most"}]}})
    with pytest.raises(ObservedError) as err:
        obs.observe(SERVICE)
    assert str(err.value) == "stack production: stack output support-bot.0.percent: Input should be a valid integer"
    fake_pulumi("", rc=255, stderr="error: no stack named 'production' found\n")
    with pytest.raises(ObservedError) as err:
        obs.observe(SERVICE)
    assert str(err.value) == (
        "pulumi stack output --stack production failed (exit 255): error: no stack named 'production' found; "
        f"check that the stack exists in the backend you are logged in to (`pulumi stack ls`), or {OTHERWISE}"
    )


def test_stack_outputs_need_the_pulumi_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi here
    with pytest.raises(ObservedError) as err:
        OutputsObserver(tmp_path, "production").observe(SERVICE)
    assert str(err.value) == (
        "the Pulumi CLI is needed to read the stack outputs of production (no `pulumi` on PATH) when there are no "
        f"Google credentials; install it from https://www.pulumi.com/docs/install/, or {OTHERWISE}"
    )


def test_live_traffic_export_resolves_latest_and_short_names():
    statuses = [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 90},
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": rev_name(STABLE), "percent": 10, "tag": ""},
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": OLD, "tag": "old", "uri": "https://old---x"},
    ]
    assert live_traffic(statuses, rev_name(CANARY)) == [
        {"revision": CANARY, "percent": 90, "tag": None},
        {"revision": STABLE, "percent": 10, "tag": None},
        {"revision": OLD, "percent": 0, "tag": "old"},
    ]
    assert live_traffic(None, None) == []


# --- choice of observer ----------------------------------------------------------------------


def test_default_observer_order(tmp_path, monkeypatch):
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    calls = []

    def no_credentials(*args, **kwargs):
        calls.append("default")
        raise DefaultCredentialsError("Your default credentials were not found.")

    def credentials(*args, **kwargs):
        calls.append("default")
        return AnonymousCredentials(), PROJECT

    file = write(tmp_path, GOOD)
    monkeypatch.setattr(google.auth, "default", credentials)
    chosen = default_observer(tmp_path, "production", PROJECT, REGION, observed_file=file)
    assert isinstance(chosen, FileObserver) and chosen.path == file and calls == []

    chosen = default_observer(tmp_path, "production", PROJECT, REGION)
    assert isinstance(chosen, CloudRunObserver) and (chosen.project, chosen.region) == (PROJECT, REGION)
    assert calls == ["default"]

    monkeypatch.setattr(google.auth, "default", no_credentials)
    chosen = default_observer(tmp_path, "production", PROJECT, REGION)
    assert isinstance(chosen, OutputsObserver) and (chosen.project_dir, chosen.stack) == (tmp_path, "production")
    assert calls == ["default", "default"]


def test_observers_have_names():
    assert CloudRunObserver.name == "Cloud Run Admin API"
    assert OutputsObserver.name == "stack outputs"
    assert FileObserver.name == "observed state file"
