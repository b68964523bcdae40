"""The enforcer's decision and its three actions, each on one agent only and idempotent.

Every action reads the live resource first and changes nothing when its effect is already in
force: budgets notify several times a day and Pub/Sub may deliver a message twice, so the
second delivery of a cap makes no update call. An update carries the etag of what was read, so
it never overwrites a change made in between (Cloud Run refuses a stale etag).

Nothing here can touch billing: the enforcer's clients are Cloud Run Admin API v2 and Parameter
Manager, and its identity holds roles on the capped services and flags parameters only.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentstage.enforcer.config import Cap, find_cap
from agentstage.enforcer.notification import BudgetNotification
from agentstage.flags import LATEST, parse_flags, render_flags

__all__ = ["CANARY_TAG", "Outcome", "Enforcer", "ActionFailed"]

log = logging.getLogger("agentstage.enforcer")

#: The traffic tag agentstage gives a canary revision (components.contract.CANARY_TAG; this
#: module is deployed without the components package, tests/test_enforcer.py keeps them equal).
CANARY_TAG = "canary"
#: How long one update may take before the delivery fails and Pub/Sub redelivers it.
UPDATE_TIMEOUT_S = 50.0


class ActionFailed(RuntimeError):
    """An action could not be completed (the API failed): the delivery must be retried."""


@dataclass(frozen=True)
class Outcome:
    """What one notification led to: ``result`` is ignored | below-threshold | applied |
    already-in-force | not-applicable; ``detail`` says why, for the log."""

    result: str
    detail: str
    agent: str | None = None
    action: str | None = None


class Enforcer:
    """Decides on a notification and acts through the given client factories (called once, on
    the first action that needs each client)."""

    def __init__(
        self,
        caps: list[Cap],
        *,
        run_client: Callable[[], Any],
        parameters_client: Callable[[], Any],
    ) -> None:
        self.caps = caps
        self._run_factory = run_client
        self._parameters_factory = parameters_client
        self._run: Any = None
        self._parameters: Any = None

    @property
    def run(self) -> Any:
        if self._run is None:
            self._run = self._run_factory()
        return self._run

    @property
    def parameters(self) -> Any:
        if self._parameters is None:
            self._parameters = self._parameters_factory()
        return self._parameters

    def handle(self, note: BudgetNotification) -> Outcome:
        cap = find_cap(self.caps, note)
        if cap is None:
            return Outcome(
                "ignored", f"budget {note.display_name!r} ({note.budget}) is not a spend cap of this enforcer"
            )
        if note.spent < cap.threshold:
            return Outcome(
                "below-threshold",
                f"spend {note.cost:.2f} {note.currency} is {note.spent:.3%} of {note.amount:.2f}; "
                f"the cap acts at {cap.threshold:.0%}",
                cap.agent,
                cap.action,
            )
        if cap.action == "canary-to-zero":
            return self._canary_to_zero(cap)
        if cap.action == "cap-instances":
            return self._cap_instances(cap)
        return self._flags_off(cap, note)

    # --- Cloud Run ---------------------------------------------------------------------------

    def _update_service(self, service: Any) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud import run_v2

        try:
            operation = self.run.update_service(request=run_v2.UpdateServiceRequest(service=service))
            operation.result(timeout=UPDATE_TIMEOUT_S)
        except gexc.GoogleAPICallError as err:
            raise ActionFailed(f"updating {service.name} failed: {err}") from err

    def _get_service(self, name: str) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return self.run.get_service(name=name)
        except gexc.GoogleAPICallError as err:
            raise ActionFailed(f"reading {name} failed: {err}") from err

    def _canary_to_zero(self, cap: Cap) -> Outcome:
        from google.cloud import run_v2

        service = self._get_service(cap.service)
        traffic = [run_v2.TrafficTarget(t) for t in service.traffic]  # copies: the read stays as read
        canary = [t for t in traffic if t.tag == CANARY_TAG]
        if not any(t.percent for t in canary):
            return Outcome("already-in-force", f"{cap.service} sends no traffic to a canary", cap.agent, cap.action)
        stable = [t for t in traffic if t.tag != CANARY_TAG and t.percent > 0]
        if not stable:
            return Outcome(
                "not-applicable",
                f"{cap.service} has no stable revision serving traffic to take the canary's share; "
                "nothing changed (cap it with cap-instances instead)",
                cap.agent,
                cap.action,
            )
        moved = sum(t.percent for t in canary)
        target = max(stable, key=lambda t: t.percent)
        for t in canary:
            t.percent = 0  # the tag stays: its URL still reaches the candidate for investigation
        target.percent += moved
        service.traffic = traffic
        self._update_service(service)
        return Outcome(
            "applied",
            f"{cap.service}: canary {moved}% -> 0%, stable {target.revision or target.type_.name} now "
            f"{target.percent}%",
            cap.agent,
            cap.action,
        )

    def _cap_instances(self, cap: Cap) -> Outcome:
        service = self._get_service(cap.service)
        current = service.scaling.max_instance_count
        if current and current <= (cap.max_instances or 0):
            return Outcome(
                "already-in-force",
                f"{cap.service} is already capped at {current} instances (cap {cap.max_instances})",
                cap.agent,
                cap.action,
            )
        # service-level scaling (ServiceScaling.max_instance_count) applies across revisions
        # without a new revision; the revision template (whose name is fixed) stays untouched
        service.scaling.max_instance_count = cap.max_instances
        self._update_service(service)
        return Outcome(
            "applied",
            f"{cap.service}: max instances {current or 'unset'} -> {cap.max_instances}",
            cap.agent,
            cap.action,
        )

    # --- Parameter Manager -------------------------------------------------------------------

    def _current_flags(self, parameter: str) -> tuple[dict[str, bool], str | None]:
        """The flags in force: the rendered version ``latest``, as the agents read them
        (:class:`agentstage.flags.FlagReader`); no version yet is no flags."""
        from google.api_core import exceptions as gexc

        name = f"{parameter}/versions/{LATEST}"
        try:
            rendered = self.parameters.render_parameter_version(name=name)
        except gexc.NotFound:
            return {}, None
        except gexc.GoogleAPICallError as err:
            raise ActionFailed(f"reading the flags of {parameter} failed: {err}") from err
        try:
            return parse_flags(rendered.rendered_payload), rendered.parameter_version
        except ValueError as err:
            raise ActionFailed(f"{rendered.parameter_version} does not hold flags: {err}") from None

    def _flags_off(self, cap: Cap, note: BudgetNotification) -> Outcome:
        from google.api_core import exceptions as gexc
        from google.cloud import parametermanager_v1 as pm

        assert cap.parameter is not None  # checked by the config
        flags, version = self._current_flags(cap.parameter)
        on = [f for f in cap.flags if flags.get(f) is not False]
        if not on:
            return Outcome(
                "already-in-force",
                f"flags {', '.join(cap.flags)} are already off in {version}",
                cap.agent,
                cap.action,
            )
        payload = render_flags({**flags, **{f: False for f in cap.flags}})
        version_id = _version_id(note, payload)
        try:
            self.parameters.create_parameter_version(
                request=pm.CreateParameterVersionRequest(
                    parent=cap.parameter,
                    parameter_version_id=version_id,
                    parameter_version=pm.ParameterVersion(payload=pm.ParameterVersionPayload(data=payload.encode())),
                )
            )
        except gexc.AlreadyExists:
            # this very notification wrote it before (a redelivery that raced the read above)
            return Outcome("already-in-force", f"{cap.parameter}/versions/{version_id} exists", cap.agent, cap.action)
        except gexc.GoogleAPICallError as err:
            raise ActionFailed(f"writing the flags of {cap.parameter} failed: {err}") from err
        return Outcome(
            "applied",
            f"{cap.parameter}: flags {', '.join(on)} turned off (version {version_id})",
            cap.agent,
            cap.action,
        )


def _version_id(note: BudgetNotification, payload: str) -> str:
    """A version id tied to the notification and the flags it writes: a redelivered message
    writes the same id (ALREADY_EXISTS, not a second version). Lowercase letters, digits and
    '-', at most 63 characters, like other Google resource ids."""
    digest = hashlib.sha256(f"{note.message_id}\n{payload}".encode()).hexdigest()[:12]
    stamp = re.sub(r"[^0-9]", "", note.interval_start)[:8]
    return f"spend-cap-{stamp}-{digest}"
