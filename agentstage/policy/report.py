"""The result of a policy check and its three renderings: text, JSON and SARIF 2.1.0."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PolicyInfo", "Violation", "CheckReport", "render_text", "to_sarif", "JSON_VERSION", "locate_agents"]

#: Version of the ``--format json`` document; bumped only on incompatible changes.
JSON_VERSION = 1

_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "": 4}
#: GitHub code scanning reads ``security-severity`` (0-10) to rank security results.
_SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
_SARIF_LEVEL = {"mandatory": "error", "remediate": "error", "advisory": "warning", "disabled": "none"}


@dataclass
class PolicyInfo:
    """A policy as the pack describes it (``GetAnalyzerInfo``), with the enforcement level
    it runs at after the policy config was applied."""

    name: str
    description: str
    enforcement: str
    severity: str
    kind: str  # "resource" | "stack"
    config_schema: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    framework: str = ""
    reference: str = ""
    tags: list[str] = field(default_factory=list)
    remediation: str = ""
    url: str = ""

    @property
    def anchor(self) -> str:
        """The public rule or guidance the policy follows, e.g. ``Checkov (CKV_GCP_102)``."""
        if self.framework and self.reference:
            return f"{self.framework} ({self.reference})"
        return self.framework or self.reference

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "enforcement": self.enforcement,
            "severity": self.severity,
            "type": self.kind,
            "config": self.config,
            "anchor": self.anchor,
            "remediation": self.remediation,
        }


@dataclass
class Violation:
    """One diagnostic of the pack. ``urn`` is None for a stack-level violation; ``message``
    is what the rule reported (the pack's description prefix removed)."""

    policy: str
    enforcement: str
    severity: str
    urn: str | None
    message: str
    description: str
    resource_type: str | None = None
    resource_name: str | None = None

    @property
    def mandatory(self) -> bool:
        return self.enforcement in ("mandatory", "remediate")

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "enforcement": self.enforcement,
            "severity": self.severity,
            "urn": self.urn,
            "resource_type": self.resource_type,
            "resource_name": self.resource_name,
            "message": self.message,
            "description": self.description,
        }


@dataclass
class CheckReport:
    """Everything ``agentstage check`` found. ``passed`` is True when no violation is
    mandatory."""

    project: str
    stack: str
    stack_config: str
    pack_name: str
    pack_version: str
    pack_dir: str
    policy_config: str | None
    policies: list[PolicyInfo]
    violations: list[Violation]
    resources: int
    elapsed_s: float = 0.0
    analysis_s: float = 0.0
    pack_log: list[str] = field(default_factory=list)
    #: agent name -> (1-based) line of its entry in the stack config, for SARIF locations.
    agent_lines: dict[str, int] = field(default_factory=dict)
    #: resource URN -> agent name, for SARIF locations.
    resource_agents: dict[str, str] = field(default_factory=dict)
    #: fills agent_lines and resource_agents on first need (reading the stack config
    #: again costs time a text or JSON report does not need).
    locator: Any = field(default=None, repr=False, compare=False)

    def locate(self) -> None:
        if self.locator is not None:
            locator, self.locator = self.locator, None
            locator(self)

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.mandatory]

    @property
    def advisory(self) -> list[Violation]:
        return [v for v in self.violations if not v.mandatory]

    @property
    def passed(self) -> bool:
        return not self.mandatory

    def by_policy(self, name: str) -> list[Violation]:
        return [v for v in self.violations if v.policy == name]

    def summary(self) -> str:
        n = len(self.violations)
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"{n} violation{'s' if n != 1 else ''} ({len(self.mandatory)} mandatory, {len(self.advisory)} advisory) "
            f"in {self.resources} resources against {len(self.policies)} policies: {verdict}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "project": self.project,
            "stack": self.stack,
            "stack_config": self.stack_config,
            "policy_pack": {
                "name": self.pack_name,
                "version": self.pack_version,
                "config": self.policy_config,
            },
            "passed": self.passed,
            "summary": {
                "resources": self.resources,
                "policies": len(self.policies),
                "violations": len(self.violations),
                "mandatory": len(self.mandatory),
                "advisory": len(self.advisory),
            },
            "violations": [v.to_json() for v in self.violations],
            "policies": [p.to_json() for p in self.policies],
        }


# --- text -------------------------------------------------------------------------------


def render_text(report: CheckReport, console: Any) -> None:
    """Violations grouped by resource (the stack first), then a summary line."""
    from rich.markup import escape

    config = report.policy_config or "none: every policy at its default enforcement"
    console.print(
        f"[bold]Policy check[/] of stack {escape(report.stack)} with {escape(report.pack_name)} "
        f"{escape(report.pack_version)} [dim](policy config {escape(config)})[/]"
    )
    groups: dict[str | None, list[Violation]] = {}
    for v in report.violations:
        groups.setdefault(v.urn, []).append(v)
    for urn, items in groups.items():
        first = items[0]
        title = "stack" if urn is None else f"{first.resource_name} [dim]({first.resource_type})[/]"
        console.print()
        console.print(f"[bold]{title}[/]")
        for v in items:
            style = "bold red" if v.mandatory else "yellow"
            console.print(
                f"  [{style}]{v.enforcement:<9}[/] {v.severity:<8} [bold]{escape(v.policy)}[/]: {escape(v.message)}",
                soft_wrap=True,
            )
    console.print()
    style = "bold green" if report.passed else "bold red"
    console.print(f"[{style}]{escape(report.summary())}[/]")


# --- SARIF ------------------------------------------------------------------------------


def _artifact_uri(path: str, project_dir: str) -> str:
    """The stack config as a path relative to the working directory (normally the
    repository root, as code scanning wants), else to the project."""
    p = Path(path).resolve()
    for base in (Path.cwd(), Path(project_dir).resolve()):
        try:
            return p.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return p.as_uri()


def _rule_id_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def _help(p: PolicyInfo) -> tuple[str, str]:
    anchor = p.anchor
    text = p.description
    if p.remediation:
        text += f"\n\nHow to fix: {p.remediation}"
    if anchor:
        text += f"\n\nFollows: {anchor}."
    md = f"{p.description}\n\n"
    if p.remediation:
        md += f"**How to fix:** {p.remediation}\n\n"
    if anchor:
        md += f"**Follows:** {anchor}.\n"
    return text, md


def to_sarif(report: CheckReport, project_dir: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """A SARIF 2.1.0 log for GitHub code scanning: one rule per policy, one result per
    violation, located in the stack config (at the agent's entry when the resource belongs
    to an agent)."""
    report.locate()
    rules = []
    index: dict[str, int] = {}
    for i, p in enumerate(sorted(report.policies, key=lambda p: p.name)):
        index[p.name] = i
        text, md = _help(p)
        props: dict[str, Any] = {"tags": ["security", *p.tags] if "security" not in p.tags else list(p.tags)}
        if p.severity in _SECURITY_SEVERITY:
            props["security-severity"] = _SECURITY_SEVERITY[p.severity]
        props["precision"] = "very-high"
        props["enforcement"] = p.enforcement
        rules.append(
            {
                "id": p.name,
                "name": _rule_id_name(p.name),
                "shortDescription": {"text": p.description},
                "fullDescription": {"text": p.description},
                "help": {"text": text, "markdown": md},
                "defaultConfiguration": {"level": _SARIF_LEVEL.get(p.enforcement, "warning")},
                "properties": props,
            }
        )
    uri = _artifact_uri(report.stack_config, project_dir)
    results = []
    for v in report.violations:
        agent = report.resource_agents.get(v.urn or "")
        line = report.agent_lines.get(agent or "", 1)
        location: dict[str, Any] = {
            "physicalLocation": {
                "artifactLocation": {"uri": uri},
                "region": {"startLine": line},
            }
        }
        if v.urn:
            location["logicalLocations"] = [
                {"name": v.resource_name or v.urn, "fullyQualifiedName": v.urn, "kind": "resource"}
            ]
        fingerprint = hashlib.sha256(f"{v.policy}\0{v.urn or report.stack}\0{v.message}".encode()).hexdigest()
        result: dict[str, Any] = {
            "ruleId": v.policy,
            "level": _SARIF_LEVEL.get(v.enforcement, "warning"),
            "message": {"text": v.message if v.urn is None else f"{v.resource_name}: {v.message}"},
            "locations": [location],
            "partialFingerprints": {"agentGuardViolation/v1": fingerprint},
            "properties": {"enforcement": v.enforcement, "severity": v.severity, "urn": v.urn, "stack": report.stack},
        }
        if v.policy in index:
            result["ruleIndex"] = index[v.policy]
        results.append(result)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "agentstage check",
                        "fullName": f"agentstage check with the {report.pack_name} policy pack",
                        "version": report.pack_version,
                        "semanticVersion": report.pack_version,
                        "rules": rules,
                    }
                },
                "automationDetails": {"id": f"agentstage-check/{report.stack}/"},
                "results": results,
            }
        ],
    }


def sort_violations(violations: Iterable[Violation], order: dict[str | None, int]) -> list[Violation]:
    """Stack-level first, then resources in plan order; within a resource by severity,
    then policy name."""
    return sorted(
        violations,
        key=lambda v: (
            -1 if v.urn is None else order.get(v.urn, len(order)),
            _SEVERITY_ORDER.get(v.severity, 4),
            v.policy,
            v.message,
        ),
    )


def locate_agents(report: CheckReport, plan: Any) -> None:
    """Map resources to agents and agents to their line in the stack config (SARIF)."""
    from ruamel.yaml import YAML

    try:
        data = YAML(typ="rt").load(Path(report.stack_config).read_text()) or {}
        config = data.get("config") or {}
    except Exception:  # noqa: BLE001 - locations are a convenience; the report stands without them
        return
    for key in (f"{plan.project}:agents", "agents"):
        agents = config.get(key)
        if hasattr(agents, "lc"):
            for name in agents:
                report.agent_lines[str(name)] = agents.lc.key(name)[0] + 1
            break
    if not report.agent_lines:
        return
    by_urn = {r.urn: r for r in plan.resources}
    for r in plan.resources:
        node = r
        while node is not None:
            label = (
                (node.inputs.get("labels") or {}).get("agent") if isinstance(node.inputs.get("labels"), dict) else None
            )
            name = label if label in report.agent_lines else node.name if node.name in report.agent_lines else None
            if name:
                report.resource_agents[r.urn] = name
                break
            node = by_urn.get(node.parent) if node.parent else None
