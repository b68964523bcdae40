"""What the offline engine answers in place of the providers.

Outputs are computed the way Google Cloud computes them, from the inputs and stack config:

- ``gcp:serviceaccount/account:Account``: ``email`` = ``<accountId>@<project>.iam.gserviceaccount.com``,
  ``member``, ``name``, ``uniqueId`` (21 digits derived from the email);
- ``gcp:cloudrunv2/service:Service``: ``uri`` = ``https://<name>-<project number>.<region>.run.app``,
  ``latestReadyRevision`` = ``latestCreatedRevision`` = the template's revision name,
  ``trafficStatuses`` with a tag URL (``https://<tag>---<name>-<number>.<region>.run.app``);
- IAM members: ``id`` and ``etag`` as the provider forms them;
- anything else: its inputs, with ``id`` = its ``name`` input or its logical name.

The project number is not knowable offline: it is ``agentstage:projectNumber`` from the stack
config when set, else a stable 12-digit number derived from the project id (documented as a
placeholder, identical on every run). Invokes answered: ``gcp:organizations/getProject``,
``gcp:organizations/getClientConfig``; any other invoke is an error naming its token, so a
program never silently receives an empty answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from pulumi.runtime import Mocks, MockCallArgs, MockResourceArgs

__all__ = ["FixtureMocks", "project_number", "UnansweredInvoke"]


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
        name = state.get("name")
        return (name if isinstance(name, str) and name else f"{args.name}-id"), state

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

    def _iam_member(self, args: MockResourceArgs, state: dict[str, Any]) -> str:
        target = (
            state.get("secretId") or state.get("name") or state.get("project")
            or state.get("serviceAccountId") or args.name
        )
        state["etag"] = _etag(state)
        return f"{target}/{state.get('role')}/{state.get('member')}"

    # --- invokes -----------------------------------------------------------------------

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "gcp:organizations/getProject:getProject":
            project = args.args.get("projectId") or self.project
            return {
                "projectId": project,
                "number": self.number(project),
                "name": project,
                "id": f"projects/{project}",
            }, None
        if args.token == "gcp:organizations/getClientConfig:getClientConfig":
            return {
                "project": self.project,
                "region": self.region,
                "zone": f"{self.region}-a",
                "accessToken": "[secret]",
                "id": self.project,
            }, None
        raise UnansweredInvoke(
            f"the offline engine has no answer for invoke {args.token}; "
            "answered offline: gcp:organizations/getProject, gcp:organizations/getClientConfig"
        )


def _etag(state: Mapping[str, Any]) -> str:
    return "BwY" + hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:10]
