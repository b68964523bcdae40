"""Release: traffic splits that add up, canaries between named revisions that start small,
and labels that say which environment and release every resource belongs to.

Unknown values (see helpers): a traffic target whose revision is unknown names a revision
(it is set, to a value computed from another resource); anything else the verdict depends
on is reported as not judged."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import pulumi.runtime
from helpers import (
    AGENT_ENGINE,
    CLOUD_RUN,
    CLOUD_RUN_V1,
    LABEL_AGENT,
    LABEL_ENVIRONMENT,
    LABEL_RELEASE,
    UNKNOWN,
    VERTEX_ENDPOINT,
    cannot_judge,
    fmt,
    get,
    is_map,
    items,
    label,
    labels,
    labels_field,
    number,
    shown,
)
from pulumi_policy import (
    PolicyComplianceFramework,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
)

DESIGN = "agentstage design: Cloud Run canary mechanics"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


# --- traffic-split-sums-to-100 ----------------------------------------------------------


def _share(value: object) -> object:
    """A traffic percentage: a float (0 when unset) or UNKNOWN."""
    found = number(value)
    return 0.0 if found is None else found


def _vertex_split(props: object) -> list[tuple[str, object]] | object | None:
    raw = get(props, "trafficSplit")
    if raw is UNKNOWN:
        return UNKNOWN
    if isinstance(raw, str) and raw.strip():
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    if not is_map(raw) or not raw:
        return None
    return [(f"traffic_split[{key}]", _share(get(raw, key))) for key in raw]


def _split(resource_type: str, props: object) -> tuple[str, list[tuple[str, object]] | object] | None:
    """(the field holding the split, (field, percentage) per target or UNKNOWN), or None when
    no split is set (the provider then sends all traffic to the latest revision or deployment)."""
    if resource_type in (CLOUD_RUN, CLOUD_RUN_V1):
        field, targets = "traffics", items(get(props, "traffics"))
    elif resource_type == AGENT_ENGINE:
        field = "traffic_config.traffic_split_manual.targets"
        targets = items(get(props, "trafficConfig", "trafficSplitManual", "targets"))
    elif resource_type == VERTEX_ENDPOINT:
        shares = _vertex_split(props)
        return None if shares is None else ("traffic_split", shares)
    else:
        return None
    if targets is UNKNOWN:
        return field, UNKNOWN
    if not targets:
        return None
    return field, [(f"{field}[{i}].percent", _share(get(t, "percent"))) for i, t in enumerate(targets)]


def _traffic_sums_to_100(args: ResourceValidationArgs, report: ReportViolation) -> None:
    found = _split(args.resource_type, args.props)
    if found is None:
        return
    field, shares = found
    question = "whether the traffic split adds up to 100%"
    if shares is UNKNOWN:
        report(cannot_judge(question, field))
        return
    unknown = [where for where, percent in shares if percent is UNKNOWN]
    if unknown:
        report(cannot_judge(question, *unknown))
        return
    percents = [percent for _, percent in shares]
    total = sum(percents)
    if abs(total - 100) > 1e-9:
        shown_ = " + ".join(fmt(p) for p in percents) or "nothing"
        report(f"{field} sends {shown_} = {fmt(total)}% of traffic; make the percentages add up to exactly 100.")


traffic_split_sums_to_100 = ResourceValidationPolicy(
    name="traffic-split-sums-to-100",
    description="Checks that every traffic split (Cloud Run, Agent Engine, Vertex AI endpoint) adds up to 100%.",
    validate=_traffic_sums_to_100,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name=DESIGN, reference="traffic targets"),
    tags=["release"],
    remediation_steps="Let agentstage compute the split from release, stable and rollout.canary_percent.",
)


# --- canary-named-revisions -------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """A Cloud Run traffic target; ``latest`` and ``percent`` may be UNKNOWN, ``revision``
    is None when unset and UNKNOWN when set to an unknown value."""

    field: str
    latest: object
    revision: object
    percent: object

    @property
    def share(self) -> str:
        return "an unknown share" if self.percent is UNKNOWN else f"{fmt(self.percent)}%"


def _revision(value: object) -> object:
    """A target's revision name: None when unset or empty, UNKNOWN when unknown."""
    if value is UNKNOWN:
        return UNKNOWN
    return value if isinstance(value, str) and value else None


def _target(resource_type: str, field: str, t: object) -> _Target:
    if resource_type == CLOUD_RUN:
        revision, kind = _revision(get(t, "revision")), get(t, "type")
        latest = UNKNOWN if kind is UNKNOWN else kind == LATEST or (kind is None and revision is None)
    else:
        revision, flag = _revision(get(t, "revisionName")), get(t, "latestRevision")
        latest = UNKNOWN if flag is UNKNOWN else flag is True
    return _Target(field, latest, revision, _share(get(t, "percent")))


def _targets(resource_type: str, props: object) -> list[_Target] | object:
    """The Cloud Run traffic targets, or UNKNOWN when the list is."""
    found = items(get(props, "traffics"))
    if found is UNKNOWN:
        return UNKNOWN
    return [_target(resource_type, f"traffics[{i}]", t) for i, t in enumerate(found)]


def _share_of(targets: list[_Target]) -> str:
    if any(t.percent is UNKNOWN for t in targets):
        return "an unknown share"
    return f"{fmt(sum(t.percent for t in targets))}%"


def _canary_named_revisions(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (CLOUD_RUN, CLOUD_RUN_V1):
        return
    targets = _targets(args.resource_type, args.props)
    if targets is UNKNOWN:
        report(cannot_judge("whether traffic goes to named revisions only", "traffics"))
        return
    latest = [t for t in targets if t.latest is True]
    pinned = [t for t in targets if t.latest is False]
    undecided = [t for t in targets if t.latest is UNKNOWN]
    for t in pinned:
        if t.revision is None:
            report(
                f"a revision traffic target ({t.share}) names no revision; set its revision to the release's "
                "revision name (agentstage: <service>-<version>-<template digest>)."
            )
    named = [t for t in pinned if t.revision is not None]
    if latest and named:
        revision = shown(named[0].revision, "a revision unknown during this preview")
        report(
            f"traffic goes to LATEST ({_share_of(latest)}) alongside the pinned revision "
            f"{revision} ({named[0].share}): LATEST moves with every template change, so the split shifts "
            "under the canary; route every target to a named revision (type TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION)."
        )
    elif undecided and len(targets) > 1:
        field = "type" if args.resource_type == CLOUD_RUN else "latest_revision"
        question = "whether the traffic split mixes LATEST with a pinned revision"
        report(cannot_judge(question, *(f"{t.field}.{field}" for t in undecided)))


canary_named_revisions = ResourceValidationPolicy(
    name="canary-named-revisions",
    description="Checks that a Cloud Run traffic split targets named revisions and never mixes LATEST with a pinned revision.",
    validate=_canary_named_revisions,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name=DESIGN, reference="never use LATEST for a split"),
    tags=["release"],
    remediation_steps="Name the revision of each release and route traffic to revision names only.",
)


# --- canary-first-step ------------------------------------------------------------------


def _agents_config(namespace: str) -> dict | None:
    """The stack's ``<namespace>:agents`` config. The CLI hands a policy pack the stack
    config (PULUMI_CONFIG), exactly as it does a program; agentstage check does the same."""
    raw = pulumi.runtime.get_config(f"{namespace}:agents")
    return _parsed_agents(raw) if isinstance(raw, str) else raw if isinstance(raw, dict) else None


@functools.cache
def _agents_namespaces() -> tuple[str, ...]:
    """Every namespace with an ``<namespace>:agents`` key in the stack config: a team's
    project keeps its agents under its own name (Pulumi's default config namespace), and a
    rule reading only the platform's would pass it unchecked. The SDK has no public way to
    list the config: under the CLI it is the PULUMI_CONFIG the pack inherits
    (``pulumi.runtime.get_config_env``); agentstage check sets it with
    ``pulumi.runtime.set_config``, whose only store is the module global
    ``pulumi.runtime.config.CONFIG`` (tests/test_sdk_contract.py fails if that changes).
    Both are fixed before the first Analyze, so the list is read once per process."""
    keys = {*pulumi.runtime.get_config_env(), *pulumi.runtime.config.CONFIG.get()}
    return tuple(sorted(ns for ns, sep, name in (k.partition(":") for k in keys) if sep and name == "agents"))


@functools.lru_cache(maxsize=4)
def _parsed_agents(raw: str) -> dict | None:
    """Parsed once per process, not once per service: the config of a platform of 1,000
    agents is megabytes of JSON, and parsing it for each of 1,000 services took longer than
    the rest of the check. The stack config is fixed for the life of a pack process (the
    runtime's config is set once, before the pack loads); the dict is only read."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _first_step(spec: object) -> float | None:
    """The first of an agent's ``rollout.steps`` (None: the default steps, which start at 5%)."""
    rollout = spec.get("rollout") if isinstance(spec, dict) else None
    steps = rollout.get("steps") if isinstance(rollout, dict) else None
    if not isinstance(steps, list) or not steps:
        return None
    return number(steps[0])


def _canary_first_step(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """When the service's agent label is unknown, the rule judges every agent of the stack
    config: the verdict stands when all their first steps are within the limit."""
    if args.resource_type != CLOUD_RUN:
        return
    agent = label(CLOUD_RUN, args.props, LABEL_AGENT)
    if agent is not UNKNOWN and not isinstance(agent, str):
        return
    config = args.get_config()
    explicit = config.get("configNamespace")
    configs = {ns: _agents_config(ns) or {} for ns in ((explicit,) if explicit else _agents_namespaces())}
    limit = number(config.get("maxFirstStepPercent"))
    limit = 10 if limit is None else limit
    if agent is UNKNOWN:
        if any(
            (first := _first_step(spec)) is not None and first > limit
            for agents in configs.values()
            for spec in agents.values()
        ):
            question = f"which agent's canary steps apply and whether the first is at most {fmt(limit)}%"
            report(cannot_judge(question, f"{labels_field(CLOUD_RUN)}.agent"))
        return
    for namespace, agents in configs.items():
        first = _first_step(agents.get(agent))
        if first is not None and first > limit:
            report(
                f"the first canary step of agent {agent} is {fmt(first)}% ({namespace}:agents.{agent}.rollout.steps), "
                f"above the {fmt(limit)}% maximum; start the canary at {fmt(limit)}% or less so a bad release "
                "reaches few users before its metrics are read."
            )


canary_first_step = ResourceValidationPolicy(
    name="canary-first-step",
    description="Checks that an agent's canary starts with a small step (policy config, default at most 10% of traffic).",
    validate=_canary_first_step,
    severity=Severity.MEDIUM,
    config_schema=PolicyConfigSchema(
        properties={
            "maxFirstStepPercent": {
                "type": "number",
                "minimum": 1,
                "maximum": 100,
                "default": 10,
                "description": "The largest share of traffic the first canary step may send to a new release.",
            },
            "configNamespace": {
                "type": "string",
                "description": "Stack config namespace of the agents (<namespace>:agents.<agent>.rollout.steps); "
                "unset: every <namespace>:agents key of the stack config.",
            },
        }
    ),
    framework=PolicyComplianceFramework(name=DESIGN, reference="canary steps"),
    tags=["release"],
    remediation_steps="Start agents.<name>.rollout.steps with a small step, e.g. [5, 25, 50, 100].",
)


# --- required-labels --------------------------------------------------------------------


def _required_labels(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Label keys are known whenever the map is; a label whose value is unknown may turn out
    empty, so it is judged only when another required label is already missing."""
    found = labels(args.resource_type, args.props)
    if found is None:
        return
    field = labels_field(args.resource_type)
    if found is UNKNOWN:
        report(cannot_judge("whether the resource carries the required labels", field))
        return
    config = args.get_config()
    if get(found, LABEL_AGENT) is not None:
        required = config.get("requiredLabels") or [LABEL_ENVIRONMENT, LABEL_RELEASE]
        scope = "an agent's resource"
    else:
        required = config.get("requiredSharedLabels") or [LABEL_ENVIRONMENT]
        scope = "an environment-wide resource"
    values = {k: get(found, k) for k in required}
    missing = [k for k, value in values.items() if value is not UNKNOWN and not value]
    unknown = [f"{field}.{k}" for k, value in values.items() if value is UNKNOWN]
    if missing:
        report(
            f"{scope} without the label(s) {', '.join(missing)}; add them so cost, alerts and audits can tell "
            "which environment and release it belongs to (agentstage components set them on every labelable resource)."
        )
    elif unknown:
        report(cannot_judge(f"whether {scope} carries the label(s) {', '.join(required)}", *unknown))


required_labels = ResourceValidationPolicy(
    name="required-labels",
    description="Checks that every labelable resource carries the environment label, and an agent's resources the release label too.",
    validate=_required_labels,
    severity=Severity.LOW,
    config_schema=PolicyConfigSchema(
        properties={
            "requiredLabels": {
                "type": "array",
                "items": {"type": "string"},
                "default": [LABEL_ENVIRONMENT, LABEL_RELEASE],
                "description": "Labels every resource of an agent (labelled agent=...) must carry.",
            },
            "requiredSharedLabels": {
                "type": "array",
                "items": {"type": "string"},
                "default": [LABEL_ENVIRONMENT],
                "description": "Labels every other labelable resource must carry.",
            },
        }
    ),
    framework=PolicyComplianceFramework(
        name="agentstage style", reference="labels merged once, applied to every labelable child"
    ),
    tags=["release", "cost"],
    remediation_steps="Label resources with environment (and release for an agent's resources).",
)


POLICIES = [traffic_split_sums_to_100, canary_named_revisions, canary_first_step, required_labels]
