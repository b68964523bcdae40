"""AgentSpendCaps: per capped agent a billing budget on the agent's own costs; per environment
one enforcer function that acts on an agent past its cap, with exactly the permissions its
actions need."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_gcp as gcp
from pulumi_gcp.billing import (
    BudgetAllUpdatesRuleArgs,
    BudgetBudgetFilterArgs,
    BudgetThresholdRuleArgs,
)
from pulumi_gcp.cloudfunctionsv2 import (
    FunctionBuildConfigArgs,
    FunctionBuildConfigSourceArgs,
    FunctionBuildConfigSourceStorageSourceArgs,
    FunctionEventTriggerArgs,
    FunctionServiceConfigArgs,
)

from agentstage.enforcer.config import CONFIG_ENV
from agentstage.enforcer.notification import PUBSUB_EVENT_TYPE, SCHEMA_VERSION
from agentstage.enforcer.package import ENTRY_POINT, RUNTIME, source_digest, source_files
from agentstage.flags import parameter_id, parameter_name
from components.budget import MAX_BUDGET_CHANNELS, amount_args
from components.contract import COMPONENT_TYPES, LABEL_AGENT
from components.errors import ComponentError
from components.flags import reader_condition
from components.identity import account_email, account_id
from components.known import known_after
from components.ops_spec import BudgetSpec
from components.spend_cap_spec import SpendCapSpec

__all__ = [
    "AgentSpendCaps",
    "CappedAgent",
    "RUN_ROLE",
    "ACT_AS_ROLE",
    "INVOKER_ROLE",
    "FLAGS_READ_ROLE",
    "FLAGS_WRITE_ROLE",
    "ENFORCER_ACCOUNT",
    "cap_display_name",
    "enforcer_function_id",
    "enforcer_bucket_name",
    "caps_topic_name",
]

#: On each capped service only (a service IAM binding, never the project): read the service and
#: update its traffic or scaling (run.services.get / run.services.update). The narrowest
#: predefined role with run.services.update; it has no setIamPolicy (that is run.admin).
#: Source: Cloud Run "IAM roles", https://cloud.google.com/run/docs/reference/iam/roles
RUN_ROLE = "roles/run.developer"
#: On the capped agent's own service account only: updating a Cloud Run service requires
#: iam.serviceAccounts.actAs on the identity its revisions run as
#: (https://cloud.google.com/run/docs/configuring/services/service-identity#permissions).
ACT_AS_ROLE = "roles/iam.serviceAccountUser"
#: On the enforcer function's own Cloud Run service only: Eventarc pushes each event as the
#: trigger's service account, which must be allowed to invoke it
#: (https://cloud.google.com/functions/docs/calling/eventarc#trigger-identity).
INVOKER_ROLE = "roles/run.invoker"
#: Read the flags in force (parametermanager.parameterVersions.render), the role the agents get
#: (components.flags), conditioned to the agent's flags parameter the same way.
FLAGS_READ_ROLE = "roles/parametermanager.parameterAccessor"
#: Write a new flags version (parametermanager.parameterVersions.create, plus parameters.get/list,
#: locations.get/list and projects.get/list; no read of version payloads), conditioned to the
#: agent's flags parameter. Source: IAM "Parameter Manager roles and permissions",
#: https://docs.cloud.google.com/iam/docs/roles-permissions/parametermanager#parametermanager.parameterVersionAdder
FLAGS_WRITE_ROLE = "roles/parametermanager.parameterVersionAdder"
#: The enforcer identity's name in account_id(): ``[<prefix>-]agentstage-caps-<environment>``.
ENFORCER_ACCOUNT = "agentstage-caps"
#: Budget API: "User data for display name in UI. Validation: <= 60 chars" (Budget.display_name).
DISPLAY_NAME_MAX = 60
#: Cloud Functions v2 createFunction ``functionId``: "4-63 characters, and valid characters are
#: /a-z-/" (cloudfunctions v2 discovery document).
_FUNCTION_ID = re.compile(r"^[a-z][-a-z]{2,61}[a-z]$")
#: Cloud Storage bucket names: 3-63 characters of lowercase letters, digits, '-', '_' and '.',
#: starting and ending with a letter or digit (https://cloud.google.com/storage/docs/buckets#naming).
_BUCKET = re.compile(r"^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$")


def cap_display_name(service_name: str, environment: str) -> str:
    """The capped agent's budget display name (the enforcer matches notifications on it)."""
    name = f"agentstage cap {service_name} ({environment})"
    if len(name) > DISPLAY_NAME_MAX:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: DISPLAY_NAME_MAX - 9]}~{digest}"
    return name


def caps_topic_name(environment: str, prefix: str = "") -> str:
    return "-".join(p for p in (prefix, "agentstage-spend-caps", environment) if p)


def _letters(text: str) -> str:
    """Hex digits as letters (0-9a-f -> a-p): a digest a function id may carry."""
    return text.translate(str.maketrans("0123456789abcdef", "abcdefghijklmnop"))


def enforcer_function_id(environment: str, prefix: str = "") -> str:
    """``[<prefix>-]agentstage-caps-<environment>`` when that is a valid function id; else (a
    digit, or too long) ``agentstage-caps-`` and a letters-only digest of it, stable per name."""
    name = "-".join(p for p in (prefix, "agentstage-caps", environment) if p)
    if _FUNCTION_ID.match(name):
        return name
    return f"agentstage-caps-{_letters(hashlib.sha256(name.encode()).hexdigest()[:12])}"


def enforcer_bucket_name(project: str, environment: str, prefix: str = "") -> str:
    """``<project>-[<prefix>-]agentstage-caps-<environment>`` (bucket names are global: the
    project id makes it unique), shortened with a digest past 63 characters."""
    name = "-".join(p for p in (project, prefix, "agentstage-caps", environment) if p)
    if len(name) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-_.')}-{digest}"
    if not _BUCKET.match(name):
        raise ComponentError("AgentSpendCaps", environment, f"cannot form a bucket name: {name!r}")
    return name


class CappedAgent:
    """What the enforcer needs of one capped Cloud Run agent: its cap, its service resource and
    physical name, and its identity's account (for actAs)."""

    def __init__(
        self,
        cap: SpendCapSpec,
        *,
        service: gcp.cloudrunv2.Service,
        service_name: str,
        identity_account: gcp.serviceaccount.Account,
    ) -> None:
        self.cap = cap
        self.service = service
        self.service_name = service_name
        self.identity_account = identity_account


class AgentSpendCaps(pulumi.ComponentResource):
    """Hard spend caps of one environment.

    Per capped agent: a ``billing.Budget`` for ``spend_cap.monthly_amount`` filtered to the
    project and to the agent's ``agent`` label (the Budget API filters on a single label pair:
    ``Filter.labels``, "Currently, multiple entries or multiple values per entry are not
    allowed", billingbudgets v1 discovery document rev. 20261011, schema
    ``GoogleCloudBillingBudgetsV1Filter``, https://cloud.google.com/billing/docs/how-to/budget-api-overview),
    with one actual-spend threshold at ``spend_cap.threshold`` and every update published to the topic
    ``[<prefix>-]agentstage-spend-caps-<environment>``.

    Per environment: the enforcer, a Cloud Run function built from the package's enforcer code
    (a source archive in a private bucket) with an Eventarc Pub/Sub trigger on that topic and
    its own service account, which holds only: ``roles/run.developer`` on each capped service
    (canary-to-zero, cap-instances), ``roles/iam.serviceAccountUser`` on each such agent's own
    identity, the flags roles conditioned to each flags-off agent's own parameter, and
    ``roles/run.invoker`` on the function itself. Nothing on billing, nothing unconditioned on
    the project.

    Outputs: ``topic_id``, ``function_name``, ``enforcer_email`` and ``budget_names``
    (agent -> ``billingAccounts/<id>/budgets/<id>``).
    """

    topic_id: pulumi.Output[str]
    function_name: pulumi.Output[str]
    enforcer_email: pulumi.Output[str]
    budget_names: pulumi.Output[Mapping[str, str]]

    def __init__(
        self,
        name: str,
        *,
        agents: Mapping[str, CappedAgent],
        budget: BudgetSpec,
        project: str,
        region: str,
        environment: str,
        prefix: str = "",
        email_channels: Sequence[pulumi.Input[str]] = (),
        labels: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["AgentSpendCaps"], name, None, opts)
        if not agents:
            raise ComponentError("AgentSpendCaps", name, "no capped agents (agents.<name>.spend_cap)")
        if budget.billing_account is None:
            raise ComponentError("AgentSpendCaps", name, "spend caps need budget.billing_account")
        child = pulumi.ResourceOptions(parent=self)
        account = account_id(ENFORCER_ACCOUNT, environment, prefix)
        clash = [a for a in agents if account_id(a, environment, prefix) == account]
        if clash:
            raise ComponentError(
                "AgentSpendCaps", name, f"agent {clash[0]!r} has the enforcer's service account id {account!r}"
            )

        topic = caps_topic_name(environment, prefix)
        self.topic = gcp.pubsub.Topic(
            f"{name}-topic",
            project=project,
            name=topic,
            labels=dict(labels),
            message_retention_duration="604800s",
            opts=child,
        )
        self.topic_id = known_after(self.topic, f"projects/{project}/topics/{topic}")

        number = gcp.organizations.get_project_output(project_id=project, opts=pulumi.InvokeOutputOptions(parent=self))
        channels = list(email_channels)[:MAX_BUDGET_CHANNELS]
        self.budgets: dict[str, gcp.billing.Budget] = {}
        for agent, capped in sorted(agents.items()):
            cap = capped.cap
            amount = BudgetSpec(
                billing_account=budget.billing_account,
                monthly_amount=cap.monthly_amount,
                currency=cap.currency or budget.currency,
            )
            self.budgets[agent] = gcp.billing.Budget(
                f"{agent}-spend-cap",
                billing_account=budget.billing_account,
                display_name=cap_display_name(capped.service_name, environment),
                amount=amount_args(amount),
                budget_filter=BudgetBudgetFilterArgs(
                    projects=[number.number.apply(lambda n: f"projects/{n}")],
                    calendar_period="MONTH",
                    credit_types_treatment="INCLUDE_ALL_CREDITS",
                    labels={LABEL_AGENT: agent},
                ),
                threshold_rules=[BudgetThresholdRuleArgs(threshold_percent=cap.threshold, spend_basis="CURRENT_SPEND")],
                all_updates_rule=BudgetAllUpdatesRuleArgs(
                    monitoring_notification_channels=channels,
                    pubsub_topic=self.topic_id,
                    schema_version=SCHEMA_VERSION,
                    disable_default_iam_recipients=False,
                ),
                opts=child,
            )

        # --- the enforcer's identity and its grants --------------------------------------------
        self.account = gcp.serviceaccount.Account(
            f"{name}-enforcer-sa",
            account_id=account,
            display_name=f"agentstage spend-cap enforcer ({environment})",
            description=f"Acts on capped agents in {environment} past their spend cap. Managed by agentstage.",
            project=project,
            opts=child,
        )
        self.enforcer_email = known_after(self.account, account_email(account, project))
        member = known_after(self.account, f"serviceAccount:{account_email(account, project)}")
        self.grants: list[pulumi.CustomResource] = []
        for agent, capped in sorted(agents.items()):
            if capped.cap.action in ("canary-to-zero", "cap-instances"):
                self.grants.append(
                    gcp.cloudrunv2.ServiceIamMember(
                        f"{agent}-spend-cap-run",
                        project=project,
                        location=region,
                        name=capped.service.name,
                        role=RUN_ROLE,
                        member=member,
                        opts=child,
                    )
                )
                self.grants.append(
                    gcp.serviceaccount.IAMMember(
                        f"{agent}-spend-cap-act-as",
                        service_account_id=capped.identity_account.name,
                        role=ACT_AS_ROLE,
                        member=member,
                        opts=child,
                    )
                )
            else:
                pid = parameter_id(capped.service_name, environment)
                for key, role, what in (
                    ("read", FLAGS_READ_ROLE, "Read"),
                    ("write", FLAGS_WRITE_ROLE, "Add versions to"),
                ):
                    self.grants.append(
                        gcp.projects.IAMMember(
                            f"{agent}-spend-cap-flags-{key}",
                            project=project,
                            role=role,
                            member=member,
                            condition=gcp.projects.IAMMemberConditionArgs(
                                title=f"spend-cap-{key}-{pid}"[:100],
                                description=f"{what} the {agent} agent's feature flags parameter only",
                                expression=reader_condition(pid),
                            ),
                            opts=child,
                        )
                    )

        # --- the enforcer function ------------------------------------------------------------
        files = source_files()
        self.bucket = gcp.storage.Bucket(
            f"{name}-source",
            project=project,
            name=enforcer_bucket_name(project, environment, prefix),
            location=region.upper(),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=True,
            labels=dict(labels),
            opts=child,
        )
        self.archive = gcp.storage.BucketObject(
            f"{name}-archive",
            bucket=self.bucket.name,
            name=f"enforcer-{source_digest(files)[:16]}.zip",
            source=pulumi.AssetArchive({path: pulumi.StringAsset(text) for path, text in files.items()}),
            opts=child,
        )
        config = pulumi.Output.all(*[b.name for _, b in sorted(self.budgets.items())]).apply(
            lambda names: _enforcer_config(agents, names, project, region, environment)
        )
        function_id = enforcer_function_id(environment, prefix)
        self.function = gcp.cloudfunctionsv2.Function(
            f"{name}-enforcer",
            project=project,
            location=region,
            name=function_id,
            description=f"agentstage spend-cap enforcer of {environment}: acts on capped agents past their cap.",
            labels=dict(labels),
            build_config=FunctionBuildConfigArgs(
                runtime=RUNTIME,
                entry_point=ENTRY_POINT,
                source=FunctionBuildConfigSourceArgs(
                    storage_source=FunctionBuildConfigSourceStorageSourceArgs(
                        bucket=self.bucket.name, object=self.archive.name
                    )
                ),
            ),
            service_config=FunctionServiceConfigArgs(
                service_account_email=self.enforcer_email,
                # one instance, one request at a time: caps are applied one after the other
                max_instance_count=1,
                max_instance_request_concurrency=1,
                available_memory="256M",
                timeout_seconds=60,
                ingress_settings="ALLOW_INTERNAL_ONLY",
                all_traffic_on_latest_revision=True,
                environment_variables={CONFIG_ENV: config},
            ),
            event_trigger=FunctionEventTriggerArgs(
                trigger_region=region,
                event_type=PUBSUB_EVENT_TYPE,
                pubsub_topic=self.topic_id,
                # a failed action raises and is redelivered (every action is idempotent);
                # a malformed message is acknowledged (see agentstage.enforcer.main)
                retry_policy="RETRY_POLICY_RETRY",
                service_account_email=self.enforcer_email,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.grants),
        )
        self.invoker = gcp.cloudrunv2.ServiceIamMember(
            f"{name}-invoker",
            project=project,
            location=region,
            # a Cloud Run function's service has the function's name
            name=known_after(self.function, function_id),
            role=INVOKER_ROLE,
            member=member,
            opts=child,
        )
        self.function_name = known_after(
            self.function, f"projects/{project}/locations/{region}/functions/{function_id}"
        )
        self.budget_names = pulumi.Output.from_input({agent: b.name for agent, b in self.budgets.items()})
        self.register_outputs(
            {
                "topic_id": self.topic_id,
                "function_name": self.function_name,
                "enforcer_email": self.enforcer_email,
                "budget_names": self.budget_names,
            }
        )


def _enforcer_config(
    agents: Mapping[str, CappedAgent], budget_names: Sequence[str | None], project: str, region: str, environment: str
) -> str:
    """The enforcer's caps (agentstage.enforcer.config), in agent order."""
    caps = []
    for (agent, capped), budget in zip(sorted(agents.items()), budget_names):
        cap = capped.cap
        flags_off = cap.action == "flags-off"
        caps.append(
            {
                "agent": agent,
                "display_name": cap_display_name(capped.service_name, environment),
                "budget": budget or None,
                "service": f"projects/{project}/locations/{region}/services/{capped.service_name}",
                "threshold": cap.threshold,
                "action": cap.action,
                "max_instances": cap.max_instances,
                "flags": list(cap.flags),
                "parameter": parameter_name(project, capped.service_name, environment) if flags_off else None,
            }
        )
    return json.dumps({"caps": caps}, sort_keys=True, separators=(",", ":"))
