"""Cost: a budget that warns before the bill does, and instance sizes within a cap.

Unknown values (see helpers): threshold rules count by the list's length, known even when
their contents are not; a size or threshold the verdict depends on is reported as not judged."""

from __future__ import annotations

import re
from collections.abc import Callable

from helpers import (
    AGENT_ENGINE,
    BUDGET,
    CLOUD_RUN,
    CLOUD_RUN_JOB,
    CLOUD_RUN_V1,
    UNKNOWN,
    cannot_judge,
    containers,
    containers_field,
    fmt,
    get,
    has_items,
    items,
    number,
)
from pulumi_policy import (
    PolicyComplianceFramework,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

GUIDANCE = "Google Cloud prototype-to-production guidance for AI agents"

_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|K|M|G|T)?$")
_MIB = {
    None: 1 / 1048576,
    "Ki": 1 / 1024,
    "Mi": 1,
    "Gi": 1024,
    "Ti": 1024 * 1024,
    "k": 1e3 / 1048576,
    "K": 1e3 / 1048576,
    "M": 1e6 / 1048576,
    "G": 1e9 / 1048576,
    "T": 1e12 / 1048576,
}


def cpu_count(value: object) -> float | None:
    """``"2"`` -> 2.0, ``"500m"`` -> 0.5; None when unreadable."""
    text = str(value).strip()
    try:
        return int(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return None


def memory_mib(value: object) -> float | None:
    """``"4Gi"`` -> 4096.0, ``"1G"`` -> 953.67...; None when unreadable."""
    m = _MEMORY.match(str(value).strip())
    return float(m.group(1)) * _MIB[m.group(2)] if m else None


def _limits(resource_type: str, props: object) -> list[tuple[str, str, object]] | object:
    """(who, the field of its limits, the limits) per container or deployment spec; UNKNOWN
    when the list of containers is."""
    if resource_type in (CLOUD_RUN, CLOUD_RUN_JOB, CLOUD_RUN_V1):
        found = containers(resource_type, props)
        if found is UNKNOWN:
            return UNKNOWN
        return [
            (f"container {c.name}", f"{c.field}.resources.limits", get(c.spec, "resources", "limits")) for c in found
        ]
    if resource_type == AGENT_ENGINE:
        limits = get(props, "spec", "deploymentSpec", "resourceLimits")
        return [("the deployment spec", "spec.deployment_spec.resource_limits", limits)]
    return []


def _size(raw: object, parse: Callable[[object], float | None]) -> float | None:
    """A CPU or memory limit parsed; None when unset, unreadable or unknown."""
    return None if raw is None or raw is UNKNOWN else parse(raw)


# --- instance-size-capped ---------------------------------------------------------------


def _instance_size(args: ResourceValidationArgs, report: ReportViolation) -> None:
    config = args.get_config()
    max_cpu = float(config.get("maxCpu") or 4)
    max_mib = float(config.get("maxMemoryMiB") or 8192)
    found = _limits(args.resource_type, args.props)
    if found is UNKNOWN:
        question = "whether the CPU and memory of each container stay within the caps"
        report(cannot_judge(question, containers_field(args.resource_type)))
        return
    for where, field, limits in found:
        if limits is UNKNOWN:
            unknown = [field]
        else:
            unknown = [f"{field}.{key}" for key in ("cpu", "memory") if get(limits, key) is UNKNOWN]
        if unknown:
            caps = f"{fmt(max_cpu)} CPU and {fmt(max_mib)}Mi"
            report(cannot_judge(f"whether {where} stays within the caps of {caps} per instance", *unknown))
        cpu = _size(get(limits, "cpu"), cpu_count)
        mib = _size(get(limits, "memory"), memory_mib)
        if cpu is not None and cpu > max_cpu:
            report(
                f"{where} asks for {get(limits, 'cpu')} CPU per instance, above the cap of {fmt(max_cpu)}; lower it "
                "(agentstage: agents.<name>.resources.cpu) or raise this policy's maxCpu config."
            )
        if mib is not None and mib > max_mib:
            report(
                f"{where} asks for {get(limits, 'memory')} of memory per instance, above the cap of "
                f"{fmt(max_mib)}Mi; lower it (agentstage: agents.<name>.resources.memory) or raise this policy's "
                "maxMemoryMiB config."
            )


instance_size_capped = ResourceValidationPolicy(
    name="instance-size-capped",
    description="Checks that the CPU and memory of each agent instance stay within the caps of the policy config.",
    validate=_instance_size,
    severity=Severity.MEDIUM,
    config_schema=PolicyConfigSchema(
        properties={
            "maxCpu": {"type": "number", "exclusiveMinimum": 0, "default": 4, "description": "Most CPUs per instance."},
            "maxMemoryMiB": {
                "type": "integer",
                "minimum": 128,
                "default": 8192,
                "description": "Most memory per instance, in MiB.",
            },
        }
    ),
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="cost control"),
    tags=["cost"],
    remediation_steps="Size instances from load-test evidence; scale out rather than up.",
)


# --- billing-budget (stack) -------------------------------------------------------------


def billing_budget(args: StackValidationArgs, report: ReportViolation) -> None:
    """Mandatory in production (``AgentBudget`` creates it from ``agent-platform:budget``);
    enforcement comes from the per-stack policy config."""
    budgets = [r for r in args.resources if r.resource_type == BUDGET]
    if not budgets:
        report(
            "the stack has no billing budget, so nobody is warned before agent traffic or a runaway loop runs up "
            "the bill; add one with threshold rules (agentstage: agent-platform:budget)."
        )
        return
    for b in budgets:
        rules = has_items(get(b.props, "thresholdRules"))
        if rules is UNKNOWN:
            report(cannot_judge("whether the billing budget has threshold rules", "threshold_rules"), b.urn)
        elif not rules:
            report(
                "the billing budget has no threshold rules, so it never alerts; add threshold_rules (e.g. 0.5, 0.9, 1.0).",
                b.urn,
            )


billing_budget_policy = StackValidationPolicy(
    name="billing-budget",
    description="Checks that the stack has a billing budget with threshold rules.",
    validate=billing_budget,
    severity=Severity.MEDIUM,
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="cost control: budgets"),
    tags=["cost"],
    remediation_steps="Set agent-platform:budget with billing_account, monthly_amount and thresholds.",
)


# --- budget-actual-threshold -------------------------------------------------------------


def _actual_shares(rules: list[object]) -> tuple[list[float], list[str]]:
    """(the shares of actual spend the rules warn at, the fields whose unknown values might
    hide a warning at or below 100%)."""
    actual: list[float] = []
    unknown: list[str] = []
    for i, rule in enumerate(rules):
        if rule is UNKNOWN:
            unknown.append(f"threshold_rules[{i}]")
            continue
        basis = get(rule, "spendBasis")
        share = number(get(rule, "thresholdPercent"))
        if basis is not UNKNOWN and (basis or "CURRENT_SPEND") != "CURRENT_SPEND":  # unset: the API default
            continue
        if basis is not UNKNOWN and share is not UNKNOWN:
            if share is not None:
                actual.append(share)
        elif share is UNKNOWN or (share is not None and share <= 1):
            fields = [("spend_basis", basis), ("threshold_percent", share)]
            unknown += [f"threshold_rules[{i}].{name}" for name, value in fields if value is UNKNOWN]
    return actual, unknown


def _budget_actual_threshold(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """A rule counts when its share and its basis are known; an unknown one is reported as
    not judged only when no known rule already warns at or below 100% of actual spend."""
    if args.resource_type != BUDGET:
        return
    rules = items(get(args.props, "thresholdRules"))
    question = "whether the billing budget warns before the money is spent"
    if rules is UNKNOWN:
        report(cannot_judge(question, "threshold_rules"))
        return
    actual, unknown = _actual_shares(rules)
    if actual and min(actual) <= 1:
        return
    if unknown:
        report(cannot_judge(question, *unknown))
        return
    if actual:
        found = f"its lowest actual-spend threshold is {fmt(min(actual) * 100)}%"
    else:
        found = "it has no actual-spend threshold"
    report(
        f"the billing budget never warns before the money is spent: {found}; add a threshold rule on actual "
        "spend at or below 100% (agentstage: agent-platform:budget.thresholds, e.g. [0.5, 0.9, 1.0])."
    )


budget_actual_threshold = ResourceValidationPolicy(
    name="budget-actual-threshold",
    description="Checks that every billing budget has at least one threshold at or below 100% of actual spend.",
    validate=_budget_actual_threshold,
    severity=Severity.MEDIUM,
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="cost control: budgets"),
    tags=["cost"],
    remediation_steps="Set agent-platform:budget.thresholds with at least one share <= 1.0.",
)


POLICIES = [instance_size_capped, billing_budget_policy, budget_actual_threshold]
