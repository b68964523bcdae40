"""Generate the rules table of docs/policies.md from what the pack itself declares
(``GetAnalyzerInfo``), so the documentation cannot drift from the pack.

    python -m agentstage.policy.reference
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from agentstage.policy.report import PolicyInfo

HEADER = "| policy | area | kind | severity | checks | follows | config (default) |\n|---|---|---|---|---|---|---|\n"


def _defaults(p: PolicyInfo) -> str:
    props = (p.config_schema or {}).get("properties") or {}
    if not props:
        return "-"
    return ", ".join(f"`{k}` (`{json.dumps(v.get('default'))}`)" for k, v in sorted(props.items()))


def render_rules(policies: Sequence[PolicyInfo]) -> str:
    """The rules table, by area then name."""
    rows = sorted(policies, key=lambda p: ((p.tags or [""])[0], p.name))
    lines = [
        f"| `{p.name}` | {(p.tags or ['-'])[0]} | {p.kind} | {p.severity} | {p.description} | {p.anchor} | {_defaults(p)} |"
        for p in rows
    ]
    return HEADER + "\n".join(lines) + "\n"


def pack_policies() -> list[PolicyInfo]:
    from agentstage.policy import PolicyPackProcess

    with PolicyPackProcess(project="agent-platform", stack="docs") as pack:
        return list(pack.policies)


if __name__ == "__main__":
    sys.stdout.write(render_rules(pack_policies()))
