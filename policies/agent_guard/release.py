"""Release: traffic splits that add up, canaries between named revisions that start small,
and labels that say which environment and release every resource belongs to."""

from __future__ import annotations

import json

import pulumi.runtime
from pulumi_policy import (
    PolicyComplianceFramework,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
)

from helpers import (
    AGENT_ENGINE,
    CLOUD_RUN,
    CLOUD_RUN_V1,
    VERTEX_ENDPOINT,
    fmt,
    get,
    is_map,
    items,
    labels,
    number,
)

DESIGN = "agentstage design: Cloud Run canary mechanics"
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


# --- traffic-split-sums-to-100 ----------------------------------------------------------


def _split(resource_type: str, props: object) -> tuple[str, list[float]] | None:
    """(the field holding the split, its percentages), or None when no split is set (the
    provider then sends all traffic to the latest revision or deployment)."""
    if resource_type in (CLOUD_RUN, CLOUD_RUN_V1):
        targets = items(get(props, "traffics"))
        field = "traffics"
    elif resource_type == AGENT_ENGINE:
        targets = items(get(props, "trafficConfig", "trafficSplitManual", "targets"))
        field = "traffic_config.traffic_split_manual.targets"
    elif resource_type == VERTEX_ENDPOINT:
        raw = get(props, "trafficSplit")
        if isinstance(raw, str) and raw.strip():
            try:
                raw = json.loads(raw)
            except ValueError:
                return "traffic_split", []
        if not is_map(raw) or not raw:
            return None
        return "traffic_split", [number(v) or 0.0 for v in raw.values()]
    else:
        return None
    if not targets:
        return None
    return field, [number(get(t, "percent")) or 0.0 for t in targets]


def _traffic_sums_to_100(args: ResourceValidationArgs, report: ReportViolation) -> None:
    found = _split(args.resource_type, args.props)
    if found is None:
        return
    field, percents = found
    total = sum(percents)
    if abs(total - 100) > 1e-9:
        shown = " + ".join(fmt(p) for p in percents) or "nothing"
        report(f"{field} sends {shown} = {fmt(total)}% of traffic; make the percentages add up to exactly 100.")


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


def _targets(resource_type: str, props: object) -> list[tuple[bool, str | None, float]]:
    """(is LATEST, revision name, percent) per Cloud Run traffic target."""
    out = []
    for t in items(get(props, "traffics")):
        if resource_type == CLOUD_RUN:
            revision = get(t, "revision")
            kind = get(t, "type")
            latest = kind == LATEST or (kind is None and not revision)
        else:
            revision = get(t, "revisionName")
            latest = get(t, "latestRevision") is True
        out.append((latest, revision if isinstance(revision, str) and revision else None, number(get(t, "percent")) or 0.0))
    return out


def _canary_named_revisions(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (CLOUD_RUN, CLOUD_RUN_V1):
        return
    targets = _targets(args.resource_type, args.props)
    latest = [t for t in targets if t[0]]
    pinned = [t for t in targets if not t[0]]
    for _, revision, percent in pinned:
        if revision is None:
            report(
                f"a revision traffic target ({fmt(percent)}%) names no revision; set its revision to the release's "
                "revision name (<service>-<version>)."
            )
    named = [t for t in pinned if t[1]]
    if latest and named:
        report(
            f"traffic goes to LATEST ({fmt(sum(t[2] for t in latest))}%) alongside the pinned revision "
            f"{named[0][1]} ({fmt(named[0][2])}%): LATEST moves with every template change, so the split shifts "
            "under the canary; route every target to a named revision (type TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION)."
        )


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
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw if isinstance(raw, dict) else None


def _canary_first_step(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLOUD_RUN:
        return
    agent = get(labels(CLOUD_RUN, args.props) or {}, "agent")
    if not isinstance(agent, str):
        return
    config = args.get_config()
    namespace = config.get("configNamespace") or "agent-platform"
    spec = (_agents_config(namespace) or {}).get(agent)
    if not isinstance(spec, dict):
        return
    steps = (spec.get("rollout") or {}).get("steps") if isinstance(spec.get("rollout"), dict) else None
    if not isinstance(steps, list) or not steps:
        return  # the default steps start at 5%
    first = number(steps[0])
    limit = number(config.get("maxFirstStepPercent"))
    limit = 10 if limit is None else limit
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
                "default": "agent-platform",
                "description": "Stack config namespace of the agents (<namespace>:agents.<agent>.rollout.steps).",
            },
        }
    ),
    framework=PolicyComplianceFramework(name=DESIGN, reference="canary steps"),
    tags=["release"],
    remediation_steps="Start agents.<name>.rollout.steps with a small step, e.g. [5, 25, 50, 100].",
)


# --- required-labels --------------------------------------------------------------------


def _required_labels(args: ResourceValidationArgs, report: ReportViolation) -> None:
    found = labels(args.resource_type, args.props)
    if found is None:
        return
    config = args.get_config()
    if "agent" in found:
        required = config.get("requiredLabels") or ["environment", "release"]
        scope = "an agent's resource"
    else:
        required = config.get("requiredSharedLabels") or ["environment"]
        scope = "an environment-wide resource"
    missing = [k for k in required if not found.get(k)]
    if missing:
        report(
            f"{scope} without the label(s) {', '.join(missing)}; add them so cost, alerts and audits can tell "
            "which environment and release it belongs to (agentstage components set them on every labelable resource)."
        )


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
                "default": ["environment", "release"],
                "description": "Labels every resource of an agent (labelled agent=...) must carry.",
            },
            "requiredSharedLabels": {
                "type": "array",
                "items": {"type": "string"},
                "default": ["environment"],
                "description": "Labels every other labelable resource must carry.",
            },
        }
    ),
    framework=PolicyComplianceFramework(name="agentstage style", reference="labels merged once, applied to every labelable child"),
    tags=["release", "cost"],
    remediation_steps="Label resources with environment (and release for an agent's resources).",
)


POLICIES = [traffic_split_sums_to_100, canary_named_revisions, canary_first_step, required_labels]
