"""``agentstage preview STACK``: the plan of a stack, offline."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agentstage.commands.common import ConfigFileOpt, ProjectOpt, StackArg, large_config_note, plan_or_exit
from components.contract import ALERT_POLICY as ALERT
from components.contract import BUDGET, LABEL_AGENT
from components.contract import CLOUD_RUN_SERVICE as SERVICE
from components.contract import MODEL_ARMOR_TEMPLATE as MODEL_ARMOR


def preview(
    stack: StackArg,
    project: ProjectOpt = Path("."),
    config_file: ConfigFileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as stable JSON (see README).")] = False,
) -> None:
    """Show what STACK would deploy: resources, the revision each agent's template deploys and
    where its traffic goes, IAM grants, alerts, budget and guardrails.

    Runs the unmodified Pulumi program under Pulumi's mock runtime: no Pulumi CLI, provider
    plugin or cloud credential is needed. Exit code 2 on invalid stack config."""
    plan = plan_or_exit(project, stack, config_file)
    if as_json:
        typer.echo(plan_json_text(plan.to_json()))
        return
    console = Console(highlight=False)
    render(plan, console)
    for note in notes(plan, _stack_values(project, stack, config_file)):
        console.print(Text.assemble(("note: ", "yellow"), note), soft_wrap=True)
    warning = large_config_note(project, stack, config_file)
    if warning:
        console.print(Text.assemble(("warning: ", "yellow"), warning), soft_wrap=True)


def plan_json_text(document: dict[str, Any]) -> str:
    """The plan as JSON text: indented, each resource on one line of its own.

    A line per resource reads and diffs well (``grep`` finds a resource with all its inputs),
    and it is json's C encoder that writes it: an indented dump of a 2,500-resource plan takes
    the pure-Python encoder four times as long."""
    lines = ["{"]
    last = len(document) - 1
    for i, (key, value) in enumerate(document.items()):
        comma = "," if i < last else ""
        if key == "resources" and isinstance(value, list) and value:
            lines.append(f"  {json.dumps(key)}: [")
            lines.extend(f"    {json.dumps(r)}{',' if j < len(value) - 1 else ''}" for j, r in enumerate(value))
            lines.append(f"  ]{comma}")
        else:
            nested = json.dumps(value, indent=2).replace("\n", "\n  ")  # indented one level in
            lines.append(f"  {json.dumps(key)}: {nested}{comma}")
    lines.append("}")
    return "\n".join(lines)


def _stack_values(project: Path, stack: str, config_file: Path | None) -> dict[str, str]:
    from agentstage.engine import load_project, load_stack_config

    return load_stack_config(load_project(project), stack, config_file).values


def revision_rows(plan: Any) -> list[tuple[str, str, str, int, str, str]]:
    """Per agent: (agent, service, revision, percent, tag, what the revision is). The template's
    revision is the one this plan deploys (a new revision whenever the template changed: its
    name is a digest of the template); any other target must already exist."""
    rows = []
    for svc in sorted(plan.by_type(SERVICE), key=lambda r: str(r.inputs.get("name"))):
        agent = str((svc.inputs.get("labels") or {}).get(LABEL_AGENT) or svc.name)
        service = str(svc.inputs.get("name", svc.name))
        deployed = (svc.inputs.get("template") or {}).get("revision")
        targets = svc.inputs.get("traffics") or []
        seen = False
        for t in targets:
            revision = t.get("revision") or t.get("type")
            if revision == deployed:
                seen = True
                what = "this template"
            else:
                what = "stable, must exist"
            rows.append((agent, service, str(revision), int(t.get("percent", 0)), t.get("tag") or "", what))
        if deployed and not seen:
            rows.append((agent, service, str(deployed), 0, "", "this template, no traffic"))
    return rows


def notes(plan: Any, values: dict[str, str]) -> list[str]:
    """What a first `pulumi up` of this plan needs that the plan itself cannot show."""
    out = []
    for agent, _service, revision, percent, _tag, what in revision_rows(plan):
        if what.startswith("stable") and percent > 0:
            out.append(
                f"{agent}: {percent}% of traffic stays on {revision}, which this plan does not create: it must "
                "already exist in the project (deployed by an earlier `pulumi up`), or Cloud Run refuses the "
                f"update (\"Revision '{revision}' does not exist\"). On a new project, deploy the agent without "
                "`stable` first."
            )
    if plan.by_type(BUDGET) and not (values.get("gcp:billingProject") and values.get("gcp:userProjectOverride")):
        out.append(
            "the billing budget is created through the Cloud Billing Budget API: with user credentials it needs a "
            "quota project (set gcp:billingProject to a project with billingbudgets.googleapis.com enabled, and "
            "gcp:userProjectOverride: true); the deploying identity needs billing.budgets.create on the billing "
            "account (roles/billing.costsManager). See docs/observability.md."
        )
    return out


def iam_rows(plan: Any) -> list[tuple[str, str, str]]:
    rows = []
    for r in plan.resources:
        if not r.custom or not r.type.endswith(("IAMMember", "IamMember")):
            continue
        kind = r.type.split(":")[1].split("/")[0]
        target = r.inputs.get("secretId") or r.inputs.get("bucket") or r.inputs.get("name") or r.inputs.get("project")
        rows.append((str(r.inputs.get("member")), str(r.inputs.get("role")), f"{kind} {target}"))
    return sorted(rows)


def rate_limit_rows(plan: Any) -> list[tuple[str, str, str, str, str]]:
    """The rate-based rules of each Cloud Armor security policy: (policy, action, limit, per
    client key, what a client over the limit gets)."""
    rows = []
    for r in plan.by_type("gcp:compute/securityPolicy:SecurityPolicy"):
        for rule in r.inputs.get("rules") or []:
            options = rule.get("rateLimitOptions") or {}
            threshold = options.get("rateLimitThreshold") or {}
            if not threshold:
                continue
            key = " ".join(str(k) for k in (options.get("enforceOnKey"), options.get("enforceOnKeyName")) if k)
            then = str(options.get("exceedAction"))
            if options.get("banDurationSec"):
                then += f", banned {options['banDurationSec']} s"
            limit = f"{threshold.get('count')} requests / {threshold.get('intervalSec')} s"
            rows.append((str(r.inputs.get("name", r.name)), str(rule.get("action")), limit, key or "ALL", then))
    return sorted(rows)


def short_type(token: str) -> str:
    """``gcp:cloudrunv2/service:Service`` -> ``gcp.cloudrunv2.Service``."""
    pkg, module, cls = (token.split(":") + ["", ""])[:3]
    return f"{pkg}.{module.split('/')[0]}.{cls}" if cls else token


#: A table of a large platform shows this many rows, then says how many more ``--json`` has:
#: thousands of rows are more than a person reads, and laying them out took longer than
#: planning (4 s for the 100-agent bench stack).
MAX_ROWS = 100


def _add_rows(table: Table, rows: list[tuple[Any, ...]], **kwargs: Any) -> None:
    for row in rows[:MAX_ROWS]:
        table.add_row(*row, **kwargs)
    if len(rows) > MAX_ROWS:
        table.add_row(f"[dim]… and {len(rows) - MAX_ROWS} more (agentstage preview --json lists all)[/]")


def render(plan: Any, console: Console) -> None:
    custom = [r for r in plan.resources if r.custom]
    console.print(f"[bold]Stack[/] {plan.stack}  [dim](project {plan.project}, config {plan.config_path})[/]")

    table = Table(title=f"Resources ({len(custom)} to create)", title_justify="left")
    table.add_column("type")
    table.add_column("name")
    table.add_column("parent", style="dim")
    _add_rows(
        table,
        [
            (short_type(r.type), r.name, (r.parent or "").rsplit("::", 1)[-1])
            for r in sorted(custom, key=lambda r: (r.type, r.name))
        ],
    )
    console.print(table)

    traffic = Table(title="Revisions and traffic (a template change deploys a new revision name)", title_justify="left")
    traffic.add_column("agent", no_wrap=True)
    traffic.add_column("revision", no_wrap=True)
    traffic.add_column("percent", justify="right")
    traffic.add_column("tag")
    traffic.add_column("")
    rows = revision_rows(plan)
    for agent, _service, revision, percent, tag, what in rows[:MAX_ROWS]:
        traffic.add_row(agent, revision, f"{percent}%", tag, what, style=None if percent else "dim")
    if len(rows) > MAX_ROWS:
        traffic.add_row(f"[dim]… and {len(rows) - MAX_ROWS} more (agentstage preview --json lists all)[/]")
    console.print(traffic)

    grants = Table(title="IAM grants", title_justify="left")
    for col in ("member", "role", "on"):
        grants.add_column(col)
    _add_rows(grants, list(iam_rows(plan)))
    console.print(grants)

    alerts = plan.by_type(ALERT)
    if alerts:
        table = Table(title=f"Alert policies ({len(alerts)})", title_justify="left")
        for col in ("name", "severity", "conditions", "channels"):
            table.add_column(col, justify="right" if col in ("conditions", "channels") else "left")
        _add_rows(
            table,
            [
                (
                    r.name,
                    str(r.inputs.get("severity") or ""),
                    str(len(r.inputs.get("conditions") or [])),
                    str(len(r.inputs.get("notificationChannels") or [])),
                )
                for r in sorted(alerts, key=lambda r: r.name)
            ],
        )
        console.print(table)

    guards = Table(title="Budget and guardrails", title_justify="left")
    guards.add_column("resource")
    guards.add_column("settings")
    for r in plan.by_type(BUDGET):
        amount = (r.inputs.get("amount") or {}).get("specifiedAmount") or {}
        thresholds = ", ".join(
            f"{round(100 * t.get('thresholdPercent', 0))}% {'forecast' if t.get('spendBasis') == 'FORECASTED_SPEND' else 'actual'}"
            for t in r.inputs.get("thresholdRules") or []
        )
        guards.add_row(
            f"budget {r.name}", f"{amount.get('units', '?')} {amount.get('currencyCode', '')} a month; {thresholds}"
        )
    for r in plan.by_type(MODEL_ARMOR):
        fc = r.inputs.get("filterConfig") or {}
        pi = (fc.get("piAndJailbreakFilterSettings") or {}).get("confidenceLevel", "off")
        rai = len(((fc.get("raiSettings") or {}).get("raiFilters")) or [])
        enforcement = (r.inputs.get("templateMetadata") or {}).get("enforcementType", "")
        guards.add_row(
            f"model armor {r.inputs.get('templateId', r.name)}",
            f"prompt injection/jailbreak {pi}; {rai} responsible-AI filters; {enforcement}",
        )
    if guards.row_count:
        console.print(guards)

    limits = rate_limit_rows(plan)
    if limits:
        table = Table(title="Rate limits (Cloud Armor, on each agent's load balancer)", title_justify="left")
        for col in ("security policy", "action", "limit", "per client key", "over the limit"):
            table.add_column(col)
        _add_rows(table, list(limits))
        console.print(table)

    agents = (plan.outputs or {}).get("agents") or {}
    if agents:
        out = Table(title="Agents", title_justify="left")
        for col in ("agent", "url", "identity"):
            out.add_column(col)
        _add_rows(out, [(name, str(a.get("url")), str(a.get("service_account"))) for name, a in sorted(agents.items())])
        console.print(out)
    counts = Counter(r.type.split(":")[-1] for r in custom)
    summary = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
    console.print(f"[bold]{len(custom)} resources[/] ({summary}); planned offline in {plan.elapsed_s:.2f}s")


def register(app: typer.Typer) -> None:
    app.command("preview")(preview)
