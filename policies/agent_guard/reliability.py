"""Reliability: bounded scaling, warm and self-healing production services that cannot be
deleted by accident, and alerts that reach someone when an agent slows down or fails.

Unknown values (see helpers): a production-only rule whose resource has an unknown
``environment`` label judges it only when the rest of the resource already passes; a list of
notification channels counts by its length, which is known even when the channel names are
not; anything else the verdict depends on is reported as not judged."""

from __future__ import annotations

from dataclasses import dataclass

from helpers import (
    AGENT_ENGINE,
    ALERT_POLICY,
    CLOUD_RUN,
    CLOUD_RUN_V1,
    GKE_CLUSTER,
    LABEL_AGENT,
    PRODUCTION_ENVIRONMENTS,
    UNKNOWN,
    VERTEX_ENDPOINT,
    cannot_judge,
    containers,
    containers_field,
    environment_unknown,
    fmt,
    get,
    has_items,
    is_map,
    is_production,
    items,
    label,
    number,
)
from pulumi_policy import (
    PolicyComplianceFramework,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

GUIDANCE = "Google Cloud prototype-to-production guidance for AI agents"


def _scaling(resource_type: str, props: object, bound: str) -> tuple[str, object]:
    """(the field that sets the bound, its value: a float, None or UNKNOWN) for ``bound`` =
    ``max`` or ``min``."""
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
    if value is UNKNOWN:
        report(cannot_judge(f"whether the maximum instance count is within the cap of {fmt(cap)}", field))
    elif value is None:
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
    floor = number(config.get("minInstances"))
    floor = 1 if floor is None else floor
    field, value = _scaling(args.resource_type, args.props, "min")
    if value is not UNKNOWN and (value or 0) >= floor:
        return
    production = is_production(args.resource_type, args.props, config)
    if production is False:
        return
    if production is UNKNOWN:
        report(environment_unknown(args.resource_type))
        return
    if value is UNKNOWN:
        report(cannot_judge(f"whether at least {fmt(floor)} instance(s) stay warm", field))
        return
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
            **PRODUCTION_ENVIRONMENTS,
        }
    ),
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="latency: cold starts"),
    tags=["reliability"],
    remediation_steps="Set agents.<name>.scaling.min_instances to 1 or more in production.",
)


# --- health-probes ----------------------------------------------------------------------


_PROBES = (("startupProbe", "startup_probe", "startup"), ("livenessProbe", "liveness_probe", "liveness"))


def _probe_findings(resource_type: str, props: object) -> list[str]:
    """What the containers lack (violations) or hide behind unknown values (not judged)."""
    found = containers(resource_type, props)
    question = "whether every container has a startup and a liveness probe"
    if found is UNKNOWN:
        return [cannot_judge(question, containers_field(resource_type))]
    findings = []
    for c in found:
        if c.spec is UNKNOWN:
            findings.append(cannot_judge(question, c.field))
            continue
        probes = {probe: get(c.spec, key) for key, _, probe in _PROBES}
        missing = [probe for probe, value in probes.items() if value is not UNKNOWN and not is_map(value)]
        unknown = [f"{c.field}.{field}" for key, field, probe in _PROBES if probes[probe] is UNKNOWN]
        if missing:
            findings.append(
                f"container {c.name} has no {' and no '.join(missing)} probe; add HTTP "
                f"{' and '.join(missing)} probes on the agent's health path so Cloud Run routes traffic only to "
                "started instances and restarts stuck ones."
            )
        if unknown:
            findings.append(cannot_judge(f"whether container {c.name} has a startup and a liveness probe", *unknown))
    return findings


def _health_probes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (CLOUD_RUN, CLOUD_RUN_V1):
        return
    findings = _probe_findings(args.resource_type, args.props)
    if not findings:
        return
    production = is_production(args.resource_type, args.props, args.get_config())
    if production is UNKNOWN:
        report(environment_unknown(args.resource_type))
    elif production:
        for message in findings:
            report(message)


health_probes = ResourceValidationPolicy(
    name="health-probes",
    description="Checks that every container of a production agent service has a startup probe and a liveness probe.",
    validate=_health_probes,
    severity=Severity.MEDIUM,
    config_schema=PolicyConfigSchema(properties=dict(PRODUCTION_ENVIRONMENTS)),
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="health checks"),
    tags=["reliability"],
    remediation_steps="Serve a health endpoint (agents.<name>.health_path) and probe it.",
)


# --- deletion-protection ----------------------------------------------------------------


def _deletion_protection(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (CLOUD_RUN, GKE_CLUSTER):
        return
    # Unset means the provider default, which is true for both types.
    protection = get(args.props, "deletionProtection")
    if protection is not False and protection is not UNKNOWN:
        return
    production = is_production(args.resource_type, args.props, args.get_config())
    if production is False:
        return
    if production is UNKNOWN:
        report(environment_unknown(args.resource_type))
    elif protection is UNKNOWN:
        report(cannot_judge("whether deletion protection is on", "deletion_protection"))
    else:
        report(
            "deletion_protection is false, so one mistaken `pulumi destroy` or replacement takes the production "
            "agent down; set deletion_protection to true (the provider default)."
        )


deletion_protection = ResourceValidationPolicy(
    name="deletion-protection",
    description="Checks that production agent services (and GKE clusters) keep deletion protection on.",
    validate=_deletion_protection,
    severity=Severity.MEDIUM,
    config_schema=PolicyConfigSchema(properties=dict(PRODUCTION_ENVIRONMENTS)),
    framework=PolicyComplianceFramework(name=GUIDANCE, reference="safe operations"),
    tags=["reliability"],
    remediation_steps="Leave deletion_protection unset or true in production.",
)


# --- agent-alert-policies (stack) -------------------------------------------------------


_CONDITION_TEXT = (
    ("conditionThreshold", "filter", "condition_threshold.filter"),
    ("conditionThreshold", "denominatorFilter", "condition_threshold.denominator_filter"),
    ("conditionAbsent", "filter", "condition_absent.filter"),
    ("conditionMonitoringQueryLanguage", "query", "condition_monitoring_query_language.query"),
    ("conditionPrometheusQueryLanguage", "query", "condition_prometheus_query_language.query"),
)

#: How to give an alert policy a channel list whose length is known at plan time.
KNOWN_CHANNELS = (
    "pass the notification channels as a list with one element per channel (e.g. the names of the channel "
    "resources), so its length is known at plan time even while the names are not"
)


def _alert_text(props: object) -> tuple[str, list[str]]:
    """Everything an alert policy's conditions say about what they watch, lowercased, and
    the fields whose unknown values may say more."""
    parts: list[str] = []
    unknown: list[str] = []

    def read(value: object, field: str) -> None:
        if value is UNKNOWN:
            unknown.append(field)
        elif isinstance(value, str):
            parts.append(value)

    read(get(props, "displayName"), "display_name")
    conditions = items(get(props, "conditions"))
    if conditions is UNKNOWN:
        return "", ["conditions"]
    for i, cond in enumerate(conditions):
        read(get(cond, "displayName"), f"conditions[{i}].display_name")
        for key, attr, field in _CONDITION_TEXT:
            read(get(cond, key, attr), f"conditions[{i}].{field}")
    return "\n".join(parts).lower(), unknown


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


def _watches_engine(text: str) -> set[str]:
    """Agent Engine's own metrics (aiplatform.googleapis.com/ReasoningEngine; agentstage
    components/monitoring.py cites the metric list): ``reasoning_engine/request_latencies``;
    ``reasoning_engine/request_count`` by 5xx response code."""
    signals = set()
    if "reasoning_engine/request_latencies" in text:
        signals.add("latency")
    if "reasoning_engine/request_count" in text and ("5xx" in text or "response_code" in text):
        signals.add("errors")
    return signals


def _watches_endpoint(text: str) -> set[str]:
    """Vertex AI online prediction metrics (aiplatform.googleapis.com/Endpoint):
    ``prediction/online/prediction_latencies``; ``prediction/online/response_count`` by 5xx
    response code, or ``prediction/online/error_count``."""
    signals = set()
    if "prediction/online/prediction_latencies" in text:
        signals.add("latency")
    if ("prediction/online/response_count" in text and ("5xx" in text or "response_code" in text)) or (
        "prediction/online/error_count" in text
    ):
        signals.add("errors")
    return signals


def _watches_gke(text: str) -> set[str]:
    """A GKE agent's traffic through its Gateway's internal Application Load Balancer
    (monitored resource ``internal_http_lb_rule``; agentstage components/monitoring.py cites the
    metric list): ``https/internal/total_latencies``; ``https/internal/request_count`` by 5xx
    response code (class)."""
    signals = set()
    if "https/internal/total_latencies" in text:
        signals.add("latency")
    if "https/internal/request_count" in text and ("5xx" in text or "response_code" in text):
        signals.add("errors")
    return signals


#: A GKE agent is its Gateway API HTTPRoute (the resource type token of pulumi-kubernetes'
#: CustomResource in a plan): the route is what serves its traffic, whatever its tracks.
HTTPROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"

#: The agent resources agent-alert-policies checks, and how it reads what an alert watches
#: on each (an alert on Cloud Run metrics does not cover an engine, and the reverse).
_AGENT_RUNTIMES = {
    CLOUD_RUN: _watches,
    AGENT_ENGINE: _watches_engine,
    VERTEX_ENDPOINT: _watches_endpoint,
    HTTPROUTE: _watches_gke,
}
_SIGNALS = ("latency", "errors")
_KNOWN_ALERTS = "compute them from inputs (stack config, names, ids) so that they are known at plan time"


@dataclass(frozen=True)
class _Alert:
    """What agent-alert-policies reads of one alert policy (any of it may be unknown)."""

    name: str
    channels: object  # has at least one notification channel: True, False or UNKNOWN
    agent: object  # its user label agent: a string, None or UNKNOWN
    text: str  # what its known conditions say, lowercased
    unknown_text: list[str]  # the fields of its conditions that are unknown

    @staticmethod
    def read(r: PolicyResource) -> _Alert:
        text, unknown_text = _alert_text(r.props)
        channels = has_items(get(r.props, "notificationChannels"))
        return _Alert(r.name, channels, label(ALERT_POLICY, r.props, LABEL_AGENT), text, unknown_text)

    @property
    def unknown(self) -> list[str]:
        """Its fields that are unknown, for messages."""
        fields = ["notification_channels"] if self.channels is UNKNOWN else []
        fields += ["user_labels.agent"] if self.agent is UNKNOWN else []
        return fields + self.unknown_text

    def covers(self, service: _Service) -> object:
        """Whether it belongs to the service (by agent label or by naming it in a
        condition): True, False or UNKNOWN."""
        if isinstance(service.agent, str) and self.agent == service.agent:
            return True
        if isinstance(service.name, str) and f'"{service.name}"'.lower() in self.text:
            return True
        labels_unknown = UNKNOWN in (self.agent, service.agent) and None not in (self.agent, service.agent)
        return UNKNOWN if labels_unknown or self.unknown_text or service.name is UNKNOWN else False


@dataclass(frozen=True)
class _Service:
    """An agent service as agent-alert-policies sees it."""

    urn: str
    type: str  # its resource type
    shown: str  # how messages name it
    name: object  # its name input, or UNKNOWN
    agent: object  # its agent label: a string, None or UNKNOWN
    unknown: list[str]

    @staticmethod
    def read(r: PolicyResource) -> _Service:
        # a Cloud Run service's name is its input; an engine's or endpoint's is Google's, so
        # conditions name it by display name (an endpoint's numeric name is not what they say)
        # an HTTPRoute's name and labels are in its metadata
        route = r.resource_type == HTTPROUTE
        field = "name" if r.resource_type == CLOUD_RUN else "displayName"
        raw = get(r.props, "metadata", "name") if route else get(r.props, field)
        name = raw if raw is UNKNOWN or (isinstance(raw, str) and raw) else r.name  # unset: the logical name
        agent = label(r.resource_type, r.props, LABEL_AGENT)
        if route:
            found = get(r.props, "metadata", "labels")
            agent = found if found is UNKNOWN else (get(found, LABEL_AGENT) if is_map(found) else None)
        shown_field = "metadata.name" if route else ("name" if field == "name" else "display_name")
        unknown = [f"{shown_field} of {r.name}"] if name is UNKNOWN else []
        unknown += [f"labels.agent of {r.name}"] if agent is UNKNOWN else []
        return _Service(r.urn, r.resource_type, r.name if name is UNKNOWN else name, name, agent, unknown)


class _AlertIndex:
    """The alert policies by what can make one cover a service (its agent label, a quoted
    name in its conditions, or unknown values), so that each service is compared with the few
    alerts that may cover it instead of every alert of the stack: a platform of 1,000 agents
    has 8,000 alert policies. :meth:`candidates` keeps the stack's order and leaves out only
    alerts whose ``covers`` would answer False, so the verdicts are the same."""

    def __init__(self, alerts: list[_Alert]) -> None:
        self.alerts = alerts
        self.always: list[int] = []  # an unknown label or condition: may cover any service
        self.by_agent: dict[str, list[int]] = {}
        self.by_name: dict[str, list[int]] = {}
        for i, a in enumerate(alerts):
            if a.agent is UNKNOWN or a.unknown_text:
                self.always.append(i)
            if isinstance(a.agent, str):
                self.by_agent.setdefault(a.agent, []).append(i)
            # '"<name>"' occurs in the text exactly when <name> (which holds no quote) is the
            # whole stretch between two consecutive quotes
            for quoted in set(a.text.split('"')[1:-1]):
                self.by_name.setdefault(quoted, []).append(i)

    def candidates(self, service: _Service) -> list[_Alert]:
        name = service.name
        if service.agent is UNKNOWN or not isinstance(name, str) or '"' in name:
            return self.alerts
        found = set(self.always)
        if isinstance(service.agent, str):
            found.update(self.by_agent.get(service.agent, ()))
        found.update(self.by_name.get(name.lower(), ()))
        return [self.alerts[i] for i in sorted(found)]


def _coverage(alerts: list[_Alert], service: _Service) -> tuple[set[str], dict[str, list[_Alert]]]:
    """(the signals certainly covered, per signal the alerts whose unknown values might cover it)."""
    covered: set[str] = set()
    maybe: dict[str, list[_Alert]] = {s: [] for s in _SIGNALS}
    for a in alerts:
        mine = a.covers(service)
        if mine is False or a.channels is False:
            continue
        watched = _AGENT_RUNTIMES[service.type](a.text)
        for signal in _SIGNALS:
            if signal in watched and mine is True and a.channels is True:
                covered.add(signal)
            elif signal in watched or a.unknown_text:
                maybe[signal].append(a)
    return covered, maybe


def _not_judged(service: _Service, signals: list[str], alerts: list[_Alert]) -> str:
    """The cannot-judge message for ``signals`` of ``service``, naming the unknown fields of
    the service and of the ``alerts`` that might cover them."""
    fields = [*service.unknown, *(f"{field} of alert policy {a.name}" for a in alerts for field in a.unknown)]
    only_channels = not service.unknown and all(a.unknown == ["notification_channels"] for a in alerts)
    question = (
        f"whether the agent service {service.shown} has an alert policy with a notification channel on "
        f"{' or '.join(signals)}"
    )
    return cannot_judge(question, *fields, fix=KNOWN_CHANNELS if only_channels else _KNOWN_ALERTS)


def agent_alert_policies(args: StackValidationArgs, report: ReportViolation) -> None:
    """Mandatory in production (``AgentObservability`` creates the policies from
    ``agent-platform:alerts``); enforcement comes from the per-stack policy config.

    An alert policy covers an agent service when its ``agent`` user label is the service's
    ``agent`` label, or when one of its conditions names the service (``"<service name>"``).
    It counts only with at least one notification channel. On a Cloud Run service, latency
    means a condition on ``request_latencies``, errors a condition on ``request_count`` by 5xx
    response code; on an Agent Engine (``AiReasoningEngine``) and a Vertex AI endpoint
    (``AiEndpoint``) the same two signals from the runtime's own metrics
    (``reasoning_engine/request_latencies`` and ``request_count``;
    ``prediction/online/prediction_latencies`` and ``response_count`` or ``error_count``); on a GKE
    agent's HTTPRoute the same two from its Gateway's internal load balancer
    (``https/internal/total_latencies`` and ``https/internal/request_count``).

    Unknown values: a channel list of known length counts by its length. A signal that no
    policy certainly covers, but that a policy with unknown channels, labels or conditions
    might cover, is reported as not judged, naming those fields."""
    alerts = _AlertIndex([_Alert.read(r) for r in args.resources if r.resource_type == ALERT_POLICY])
    for r in args.resources:
        if r.resource_type not in _AGENT_RUNTIMES:
            continue
        service = _Service.read(r)
        covered, maybe = _coverage(alerts.candidates(service), service)
        missing = [s for s in _SIGNALS if s not in covered and not maybe[s]]
        undecided = [s for s in _SIGNALS if s not in covered and maybe[s]]
        if missing:
            report(
                f"the agent service {service.shown} has no alert policy with a notification channel on "
                f"{' or '.join(missing)}; add them so on-call hears about a slow or failing agent "
                "(agentstage: agent-platform:alerts).",
                service.urn,
            )
        if undecided:
            candidates = list({a.name: a for s in undecided for a in maybe[s]}.values())
            report(_not_judged(service, undecided, candidates), service.urn)


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
    """A list of channels whose names are unknown still has channels: its length counts."""
    if args.resource_type != ALERT_POLICY:
        return
    name = get(args.props, "displayName")
    name = name if isinstance(name, str) and name else "the alert policy"
    channels = has_items(get(args.props, "notificationChannels"))
    if channels is UNKNOWN:
        report(cannot_judge(f"whether {name} has a notification channel", "notification_channels", fix=KNOWN_CHANNELS))
    elif not channels:
        report(
            f"{name} has no notification channel, so its incidents open in the console and nobody is told; "
            "add one (agentstage: agent-platform:alerts.notification_emails, pubsub_topics or webhooks)."
        )
    content = get(args.props, "documentation", "content")
    if content is UNKNOWN:
        report(cannot_judge(f"whether {name} has documentation for on-call", "documentation.content"))
    elif not isinstance(content, str) or not content.strip():
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
