"""The fast way a check runs gives exactly the verdict of the plain one.

``agentstage check`` streams each resource to the pack while the program runs, spreads the
``Analyze`` calls over two pack processes for a large plan, and decodes each resource once
per request in the pack (agentstage.policy.decode_once). The plain way is what the Pulumi CLI
does: one process of the unpatched SDK, the complete plan analysed one resource after the
other, then ``AnalyzeStack``. For every stack the tests use (the reference stacks, each
example project's stacks, a generated stack mixing the four runtimes, and a production stack
with every risky setting of the CLI tests at once; the production stack also as a new stack,
where policies meet unknown values), both give the same violations in the
same order, with the same messages, on the same resources.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from agentstage.engine import load_project, load_stack_config, run_plan
from agentstage.policy import PolicyPackProcess, default_policy_config, load_policy_config
from agentstage.policy.report import sort_violations
from agentstage.policy.wire import analyze_request, analyzer_resources, stack_request
from tests.conftest import ROOT, load_stack, write_stack
from tests.test_policy_check_cli import RISKY

EXAMPLES = ROOT / "examples"
STACKS = [
    (ROOT, "staging", None),
    (ROOT, "production", None),
    *[
        (path.parent.parent, path.stem.removeprefix("Pulumi."), None)
        for path in sorted(EXAMPLES.glob("*/stacks/Pulumi.*.yaml"))
    ],
    (ROOT, "production", "risky"),
    (ROOT, "production", "new-stack"),
    ("mixed", "bench8", None),
]


def _plain(project_dir: Path, stack: str, config_file: Path | None, settings, new_stack: bool) -> tuple[list, int]:
    """The verdict as under the Pulumi CLI: one unpatched process, one resource at a time."""
    stack_config = load_stack_config(load_project(project_dir), stack, config_file)
    plan = run_plan(project_dir, stack, config_file, stack_config=stack_config, new_stack=new_stack)
    with PolicyPackProcess(
        project=plan.project,
        stack=stack,
        config=stack_config.values,
        secret_keys=stack_config.secret_keys,
        decode_once=False,
    ) as pack:
        pack.configure(settings)
        resources = analyzer_resources(plan, stack_config.values)
        by_urn = {r.urn: r for r in resources}
        found = []
        for r in resources:
            found += pack.violations(pack.send_analyze(analyze_request(r)).result(), r.urn, by_urn)
        found += pack.violations(pack.send_analyze_stack(stack_request(resources)).result(), None, by_urn)
    order = {r.urn: i for i, r in enumerate(resources)}
    return [v.to_json() for v in sort_violations(found, order)], len(resources)


def _fast(project_dir: Path, stack: str, config_file: Path | None, settings, new_stack: bool) -> tuple[list, int]:
    """As ``agentstage check`` runs, with the extra process from the first resource on."""
    stack_config = load_stack_config(load_project(project_dir), stack, config_file)
    pack = PolicyPackProcess(
        project=load_project(project_dir).name,
        stack=stack,
        config=stack_config.values,
        secret_keys=stack_config.secret_keys,
    )
    pack.launch()
    try:
        _, report = pack.plan_and_check(
            lambda on_resource: run_plan(
                project_dir, stack, config_file, on_resource=on_resource, stack_config=stack_config, new_stack=new_stack
            ),
            settings,
            large_plan=1,
        )
    finally:
        pack.close()
    return [v.to_json() for v in report.violations], report.resources


def _risky(tmp_path: Path) -> Path:
    config = copy.deepcopy(load_stack("production"))
    bot = config["agent-platform:agents"]["support-bot"]
    for change, _policy, _resource in RISKY.values():
        change(bot)
    bot["roles"] = ["roles/owner", "roles/secretmanager.secretAccessor"]  # two cases set roles
    return write_stack(tmp_path / "Pulumi.production-risky.yaml", config)


@pytest.mark.parametrize(
    ("project_dir", "stack", "variant"),
    STACKS,
    ids=[f"{Path(str(p)).name}-{s}{'-' + v if v else ''}" for p, s, v in STACKS],
)
def test_streamed_sharded_decoded_once_equals_plain_sequential(tmp_path, project_dir, stack, variant) -> None:
    config_file = None
    if variant == "risky":
        config_file = _risky(tmp_path)
    if project_dir == "mixed":
        from bench.stackgen import MIXED, write_project

        project_dir, stack = write_project(tmp_path / "mixed", 8, MIXED)
    policy_config = default_policy_config("production" if stack.endswith("-mixed") else stack)
    settings = load_policy_config(policy_config) if policy_config else {}
    new_stack = variant == "new-stack"  # computed outputs unknown: policies meet unknown values
    plain, plain_count = _plain(Path(project_dir), stack, config_file, settings, new_stack)
    fast, fast_count = _fast(Path(project_dir), stack, config_file, settings, new_stack)
    assert fast_count == plain_count
    assert fast == plain
    if variant == "risky":  # every risky setting is reported, each by its own policy
        assert {policy for _change, policy, _resource in RISKY.values()} <= {v["policy"] for v in plain}
