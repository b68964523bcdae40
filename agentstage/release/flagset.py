"""``agentstage flags``: flip an agent's feature flags in the stack config, the release flow's way.

A flag flip is an edit of ``<namespace>:agents.<agent>.features`` made like a rollback: under the
stack's lock, through :class:`StackFile` (comments and layout kept), re-planned offline from the
edited config and checked to change exactly one resource (the agent's flags
``ParameterVersion``: no new revision, no other resource), then written with its decision in the
ledger as one journaled transaction. ``--apply`` then deploys it like any release command.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentstage.errors import BadInput
from agentstage.flags import parameter_name, render_flags, version_id
from agentstage.release.flow import Change, ReleaseError, StackState, edited_config, load_state, plan_stack
from agentstage.release.journal import Transaction, recover
from agentstage.release.ledger import iso, now_utc
from agentstage.release.lock import stack_lock

__all__ = ["FLAG_VALUES", "FlagsView", "parse_assignments", "set_flags", "show_flags", "FLAGS_ACTION"]

#: The words a flag value may be given as (case-insensitive).
FLAG_VALUES = {"on": True, "true": True, "off": False, "false": False}
#: The ``action`` of a flag change in the ledger (read by ``agentstage changes``).
FLAGS_ACTION = "flags"
#: A flag name, as the stack config allows it (components/spec.py, AgentSpec.features).
_FLAG_NAME = re.compile(r"[a-z][a-z0-9_]*")
VERSION_TYPE = "gcp:parametermanager/parameterVersion:ParameterVersion"
#: The only inputs of the version a flip may change (both force a new version: see AgentFlags).
_VERSION_PATHS = {"parameterData", "parameterVersionId"}

Clock = Callable[[], dt.datetime]


def parse_assignments(assignments: list[str]) -> dict[str, bool]:
    """``["web_search_tool=off", "citations=on"]`` -> ``{"web_search_tool": False, ...}``."""
    if not assignments:
        raise BadInput("no flag to set: give NAME=on|off (e.g. web_search_tool=off)")
    out: dict[str, bool] = {}
    for text in assignments:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BadInput(f"{text!r} is not NAME=on|off (e.g. web_search_tool=off)")
        word = value.strip().lower()
        if word not in FLAG_VALUES:
            raise BadInput(f"{text!r}: {value!r} is not a flag value; use on, off, true or false", key=name)
        if name in out and out[name] != FLAG_VALUES[word]:
            raise BadInput(f"flag {name!r} is given twice with different values", key=name)
        out[name] = FLAG_VALUES[word]
    return out


def _agent(state: StackState, agent: str) -> Any:
    spec = state.spec.agents.get(agent)
    if spec is None:
        raise BadInput(
            f"stack {state.stack!r} has no agent {agent!r}; agents: {', '.join(sorted(state.spec.agents))}",
            key=f"agents.{agent}",
        )
    if spec.runtime == "vertex-endpoint":
        raise BadInput(
            f"{agent} runs on vertex-endpoint, which has no feature flags (the model's serving container reads no "
            "flags parameter)",
            key=f"agents.{agent}.features",
        )
    return spec


def _check_names(agent: str, current: Mapping[str, bool], wanted: Mapping[str, bool], create: bool) -> None:
    for name in wanted:
        if name in current:
            continue
        if not _FLAG_NAME.fullmatch(name):
            raise BadInput(
                f"{name!r} is not a feature flag name; use lowercase letters, digits and '_'",
                key=f"agents.{agent}.features",
            )
        if create:
            continue
        close = difflib.get_close_matches(name, list(current), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        known = ", ".join(sorted(current)) or "none yet"
        raise BadInput(
            f"{agent} has no flag {name!r}{hint}; its flags: {known}. To add a new flag, pass --create",
            key=f"agents.{agent}.features",
        )


def _check_one_version(diff: Any, plan: Any, agent: str) -> str:
    """The diff must update the agent's flags ParameterVersion (its id and data) and nothing
    else: no revision, no other resource. Returns the version's URN."""
    urn = next(
        (r.urn for r in plan.resources if r.type == VERSION_TYPE and r.name == f"{agent}-flags-version"),
        None,
    )
    wrong = [f"{u}: created" for u in diff.creates] + [f"{u}: deleted" for u in diff.deletes]
    for u, paths in diff.updates.items():
        if u != urn or not set(paths) <= _VERSION_PATHS:
            wrong.append(f"{u}: {', '.join(paths)}")
    if urn is None or wrong or urn not in diff.updates:
        raise ReleaseError(
            f"refusing the flag change: the plan would change more than the flags parameter version of {agent} "
            f"({diff.changed} resources changed)",
            1,
            details=wrong,
        )
    return urn


def set_flags(
    project_dir: Path,
    stack: str,
    agent: str,
    wanted: Mapping[str, bool],
    *,
    create: bool = False,
    reason: str = "set by the operator",
    clock: Clock = now_utc,
) -> Change:
    """Set ``wanted`` flags of ``agent`` in the stack config (see the module docstring)."""
    with stack_lock(project_dir, stack, "flags"):
        recovered = recover(project_dir, [stack])
        state = load_state(project_dir, stack)
        spec = _agent(state, agent)
        current = dict(spec.features)
        _check_names(agent, current, wanted, create)
        change = Change(stack, state.path, False, old_text=state.file.original, notes=recovered)
        changed = {name: value for name, value in wanted.items() if current.get(name) != value}
        if not changed:
            shown = ", ".join(f"{n}={_word(v)}" for n, v in sorted(wanted.items()))
            change.message = f"nothing to change: {agent} already has {shown} in stack {stack!r}"
            return change
        for name, value in sorted(changed.items()):
            state.file.set_feature(agent, name, value)
        text = state.file.dumps()
        before = plan_stack(state.project_dir, stack)
        with edited_config(state, text) as cfg:
            after = plan_stack(state.project_dir, stack, cfg)
        from agentstage.diff import diff_plans

        change.diff = diff_plans(before, after)
        _check_one_version(change.diff, after, agent)
        flags = {**current, **changed}
        when = clock()
        txn = Transaction(state.project_dir, stack)
        txn.write_file(state.path, state.file.original, text)
        shown = ", ".join(f"{n}={_word(v)}" for n, v in sorted(changed.items()))
        # the traffic fields every ledger reader expects (status, render): a flip leaves traffic as it is
        percent = spec.canary_percent if spec.stable else 100
        decision = {
            "time": iso(when),
            "stack": stack,
            "agent": agent,
            "action": FLAGS_ACTION,
            "release": spec.release.version,
            "stable": spec.stable.version if spec.stable else None,
            "percent": percent,
            "to_percent": percent,
            "flags": dict(sorted(changed.items())),
            "previous": {name: current.get(name) for name in sorted(changed)},
            "parameter_version": version_id(flags),
            "reason": f"{shown} ({reason})",
        }
        change.decisions.append(txn.decide(stack, decision))
        txn.commit()
        change.wrote, change.new_text = True, text
        service = state.spec.service_name(agent)
        version = f"{parameter_name(state.spec.project, service, state.spec.environment)}/versions/{version_id(flags)}"
        change.message = f"{agent}: {shown}; one new parameter version ({version}), no new revision"
        return change


def _word(value: bool | None) -> str:
    return "unset" if value is None else ("on" if value else "off")


@dataclass
class FlagsView:
    """An agent's flags as the stack config sets them, and where the agent reads them."""

    agent: str
    runtime: str
    flags: dict[str, bool]
    parameter: str
    version: str
    payload: str

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "runtime": self.runtime,
            "flags": self.flags,
            "parameter": self.parameter,
            "version": self.version,
            "payload": self.payload,
        }


def show_flags(project_dir: Path, stack: str, agent: str | None = None) -> list[FlagsView]:
    """The flags of every agent that can have them (or of ``agent``), from the stack config."""
    state = load_state(project_dir, stack)
    names = [agent] if agent else sorted(a for a, s in state.spec.agents.items() if s.runtime != "vertex-endpoint")
    out = []
    for name in names:
        spec = _agent(state, name)
        flags = dict(sorted(spec.features.items()))
        parameter = parameter_name(state.spec.project, state.spec.service_name(name), state.spec.environment)
        out.append(
            FlagsView(
                name, spec.runtime, flags, parameter, f"{parameter}/versions/{version_id(flags)}", render_flags(flags)
            )
        )
    return out
