"""The progress line of ``preview`` and ``check``: on a terminal's stderr only, counting the
resources the program registers, then naming the step that follows."""

from __future__ import annotations

import io

from rich.console import Console

from agentstage.commands.common import PlanProgress
from agentstage.engine import run_plan
from tests.conftest import ROOT


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=120), out


def test_on_a_terminal_the_line_counts_the_resources_as_they_are_registered() -> None:
    console, out = _console(terminal=True)
    seen: list[str] = []
    with PlanProgress("production", console) as progress:
        seen.append(str(progress.__rich__()))

        def each(record) -> None:
            progress.on_resource(record)
            if progress.count == 10:
                seen.append(str(progress.__rich__()))

        plan = run_plan(ROOT, "production", on_resource=each)
        progress.then("checking production against the policy pack")
        seen.append(str(progress.__rich__()))
    assert progress.count == len(plan.resources)
    assert seen == [
        "planning production: reading the stack config, running the program",
        "planning production: 10 resources registered",
        f"checking production against the policy pack ({len(plan.resources):,} resources)",
    ]
    assert "planning production:" in out.getvalue()  # drawn on the terminal


def test_anywhere_else_nothing_is_written() -> None:
    console, out = _console(terminal=False)
    with PlanProgress("production", console) as progress:
        run_plan(ROOT, "production", on_resource=progress.on_resource)
    assert progress.count > 0 and out.getvalue() == ""


def test_a_check_reports_each_resource_and_then_the_end_of_the_plan() -> None:
    from agentstage.policy import run_check

    events: list[str] = []
    report = run_check(
        ROOT,
        "production",
        on_resource=lambda record: events.append(record.urn),
        on_planned=lambda: events.append("planned"),
    )
    assert events[-1] == "planned" and events.count("planned") == 1
    plan = run_plan(ROOT, "production")
    assert sorted(events[:-1]) == sorted(r.urn for r in plan.resources)  # each once, in registration order
    assert report.resources >= len(plan.resources)
