"""Reliability: bounded scaling, warm and self-healing production services that cannot be
deleted by accident, and alerts that reach someone when an agent slows down or fails."""

from __future__ import annotations

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

from helpers import (
    AGENT_ENGINE,
    ALERT_POLICY,
    CLOUD_RUN,
    CLOUD_RUN_V1,
    GKE_CLUSTER,
    containers,
    fmt,
    get,
    is_map,
    is_production,
    items,
    labels,
    number,
)

GUIDANCE = "Google Cloud prototype-to-production guidance for AI agents"

_PRODUCTION_ENVIRONMENTS = {
    "productionEnvironments": {
        "type": "array",
        "items": {"type": "string"},
        "default": ["production"],
        "description": "Values of the environment label that mark a resource as production.",
    }
}


def _scaling(resource_type: str, props: object, bound: str) -> tuple[str, float | None]:
    """(the field that sets the bound, its value) for ``bound`` = ``max`` or ``min``."""
    if resource_type == CLOUD_RUN:
        key = f"{bound}InstanceCount"
        value = get(props, "template", "scaling", key)
        if value is None and get(props, "scaling", key) is not None:
            return f"scaling.{bound}_instance_count", number(get(props, "scaling", key))
        return f"template.scaling.{bound}_instance_count", number(value)
    if resource_type == CLOUD_RUN_V1:
        key = f"autoscaling.knative.dev/{bound}Scale"
        return f"template.metadata.annotations[{key}]", number(get(props, "template", "metadata", "annotations", key))
    if resource_type == AGENT_ENGINE:
        key = f"{bound}Instances"
        return f"spec.deployment_spec.{bound}_instances", number(get(props, "spec", "deploymentSpec", key))
    return "", None


# --- max-instances-capped ---------------------------------------------------------------


def _max_instances(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (CLOUD_RUN, CLOUD_RUN_V1, AGENT_ENGINE):
        return
    cap = number(args.get_config().get("maxInstances")) or 100
    field, value = _scaling(args.resource_type, args.props, "max")
    if value is None:
        report(
            f"{field} is not set, so a traffic spike or a runaway agent loop scales it up to the regional quota; "
            f"set a maximum of at most {fmt(cap)} instances (agentstage: agents.<name>.scaling.max_instances)."
        )
    elif value > cap:
        report(
            f"{field} is {fmt(value)}, above the cap of {fmt(cap)}; lower it, or raise this policy's maxInstances "
            "config if the load really needs it."
        )


max_instances_capped = ResourceValidationPolicy(
    name="max-instances-capped",
    description="Checks that every agent service sets a maximum instance count, within the cap of the policy config.",
    validate=_max_instances,
    severity=Severity.HIGH,
    config_schema=PolicyConfigSchema(
        properties={
            "maxInstances": {
                "type": "integer",
                "minimum": 1,
                "default": 100,
                "description": "The largest maximum instance count allowed.",
            }
        }
    ),
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="bounded scaling and cost"),
    tags=["reliability", "cost"],
    remediation_steps="Set agents.<name>.scaling.max_instances.",
)


# --- min-instances-production -----------------------------------------------------------


def _min_instances(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (CLOUD_RUN, CLOUD_RUN_V1, AGENT_ENGINE):
        return
    config = args.get_config()
    if not is_production(args.resource_type, args.props, config):
        return
    floor = number(config.get("minInstances"))
    floor = 1 if floor is None else floor
    field, value = _scaling(args.resource_type, args.props, "min")
    current = value or 0
    if current < floor:
        shown = f"is {fmt(current)}" if value is not None else "is not set (0)"
        report(
            f"{field} {shown}: a production agent then cold-starts on its first request after idling; keep at "
            f"least {fmt(floor)} instance(s) warm (agentstage: agents.<name>.scaling.min_instances)."
        )


min_instances_production = ResourceValidationPolicy(
    name="min-instances-production",
    description="Checks that production agent services keep a minimum number of warm instances (policy config, default 1).",
    validate=_min_instances,
    severity=Severity.MEDIUM,
    config_schema=PolicyConfigSchema(
        properties={
            "minInstances": {
                "type": "integer",
                "minimum": 0,
                "default": 1,
                "description": "The least minimum instance count a production service may set.",
            },
            **_PRODUCTION_ENVIRONMENTS,
        }
    ),
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="latency: cold starts"),
    tags=["reliability"],
    remediation_steps="Set agents.<name>.scaling.min_instances to 1 or more in production.",
)


# --- health-probes ----------------------------------------------------------------------


def _health_probes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (CLOUD_RUN, CLOUD_RUN_V1):
        return
    if not is_production(args.resource_type, args.props, args.get_config()):
        return
    for c in containers(args.resource_type, args.props):
        missing = [
            probe
            for key, probe in (("startupProbe", "startup"), ("livenessProbe", "liveness"))
            if not is_map(get(c.spec, key))
        ]
        if missing:
            report(
                f"container {c.name} has no {' and no '.join(missing)} probe; add HTTP "
                f"{' and '.join(missing)} probes on the agent's health path so Cloud Run routes traffic only to "
                "started instances and restarts stuck ones."
            )


health_probes = ResourceValidationPolicy(
    name="health-probes",
    description="Checks that every container of a production agent service has a startup probe and a liveness probe.",
    validate=_health_probes,
    severity=Severity.MEDIUM,
    config_schema=PolicyConfigSchema(properties=dict(_PRODUCTION_ENVIRONMENTS)),
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="health checks"),
    tags=["reliability"],
    remediation_steps="Serve a health endpoint (agents.<name>.health_path) and probe it.",
)


# --- deletion-protection ----------------------------------------------------------------


def _deletion_protection(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (CLOUD_RUN, GKE_CLUSTER):
        return
    if not is_production(args.resource_type, args.props, args.get_config()):
        return
    # Unset means the provider default, which is true for both types.
    if get(args.props, "deletionProtection") is False:
        report(
            "deletion_protection is false, so one mistaken `pulumi destroy` or replacement takes the production "
            "agent down; set deletion_protection to true (the provider default)."
        )


deletion_protection = ResourceValidationPolicy(
    name="deletion-protection",
    description="Checks that production agent services (and GKE clusters) keep deletion protection on.",
    validate=_deletion_protection,
    severity=Severity.MEDIUM,
    config_schema=PolicyConfigSchema(properties=dict(_PRODUCTION_ENVIRONMENTS)),
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="safe operations"),
    tags=["reliability"],
    remediation_steps="Leave deletion_protection unset or true in production.",
)


# --- agent-alert-policies (stack) -------------------------------------------------------


def _alert_text(props: object) -> str:
    """Everything an alert policy's conditions say about what they watch, lowercased."""
    parts = [str(get(props, "displayName") or "")]
    for cond in items(get(props, "conditions")):
        parts.append(str(get(cond, "displayName") or ""))
        for key, field in (
            ("conditionThreshold", "filter"),
            ("conditionThreshold", "denominatorFilter"),
            ("conditionAbsent", "filter"),
            ("conditionMonitoringQueryLanguage", "query"),
            ("conditionPrometheusQueryLanguage", "query"),
        ):
            value = get(cond, key, field)
            if isinstance(value, str):
                parts.append(value)
    return "\n".join(parts).lower()


def _watches(text: str) -> set[str]:
    """The signals an alert policy watches, read from its metric filters and queries:
    ``latency`` (request or response latencies) and ``errors`` (request counts by 5xx
    response code)."""
    signals = set()
    if "request_latencies" in text or "response_latencies" in text:
        signals.add("latency")
    if ("request_count" in text or "response_count" in text) and ("5xx" in text or "response_code" in text):
        signals.add("errors")
    return signals


def agent_alert_policies(args: StackValidationArgs, report: ReportViolation) -> None:
    """Mandatory in production (``AgentObservability`` creates the policies from
    ``agent-platform:alerts``); enforcement comes from the per-stack policy config.

    An alert policy covers an agent service when its ``agent`` user label is the service's
    ``agent`` label, or when one of its conditions names the service (``"<service name>"``).
    It counts only with at least one notification channel. Latency means a condition on
    ``request_latencies``; errors, a condition on ``request_count`` by 5xx response code."""
    policies = [r for r in args.resources if r.resource_type == ALERT_POLICY]
    for svc in args.resources:
        if svc.resource_type != CLOUD_RUN:
            continue
        name = get(svc.props, "name") or svc.name
        agent = get(labels(CLOUD_RUN, svc.props) or {}, "agent")
        covered: set[str] = set()
        for p in policies:
            if not items(get(p.props, "notificationChannels")):
                continue
            text = _alert_text(p.props)
            mine = (agent is not None and get(p.props, "userLabels", "agent") == agent) or f'"{name}"'.lower() in text
            if mine:
                covered |= _watches(text)
        missing = [s for s in ("latency", "errors") if s not in covered]
        if missing:
            report(
                f"the agent service {name} has no alert policy with a notification channel on "
                f"{' or '.join(missing)}; add them so on-call hears about a slow or failing agent "
                "(agentstage: agent-platform:alerts).",
                svc.urn,
            )


agent_alert_policies_policy = StackValidationPolicy(
    name="agent-alert-policies",
    description="Checks that every agent service has alert policies on latency and on errors, each with a notification channel.",
    validate=agent_alert_policies,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="observability: alerting"),
    tags=["reliability", "observability"],
    remediation_steps="Set agent-platform:alerts with notification_emails, latency_p99_ms and error_rate.",
)


# --- alert-policy-actionable -------------------------------------------------------------


def _alert_policy_actionable(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ALERT_POLICY:
        return
    name = get(args.props, "displayName") or "the alert policy"
    if not items(get(args.props, "notificationChannels")):
        report(
            f"{name} has no notification channel, so its incidents open in the console and nobody is told; "
            "add one (agentstage: agent-platform:alerts.notification_emails, pubsub_topics or webhooks)."
        )
    content = get(args.props, "documentation", "content")
    if not isinstance(content, str) or not content.strip():
        report(
            f"{name} has no documentation, so on-call gets an alert without what it means or what to do first; "
            "set documentation.content (what it means, first steps, how to roll back)."
        )


alert_policy_actionable = ResourceValidationPolicy(
    name="alert-policy-actionable",
    description="Checks that every alert policy has at least one notification channel and documentation for on-call.",
    validate=_alert_policy_actionable,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="observability: alerting"),
    tags=["reliability", "observability"],
    remediation_steps="Set agent-platform:alerts.notification_emails; agentstage documents every policy it creates.",
)


POLICIES = [
    max_instances_capped,
    min_instances_production,
    health_probes,
    deletion_protection,
    agent_alert_policies_policy,
    alert_policy_actionable,
]
