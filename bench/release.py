"""Figures of the release flow (printed, not asserted).

- rollback: config write + offline plan diff of the reference production stack (target <= 3 s,
  exactly 1 resource changed);
- analysis: 10 agents x 2 revisions x 60 one-minute points (target <= 1 s).

Run: .venv/bin/python bench/release.py
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_rollback() -> tuple[float, int, list[str]]:
    from agentstage.diff import diff_plans
    from agentstage.engine import run_plan
    from agentstage.release.flow import rollback

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        for name in ("Pulumi.yaml", "__main__.py"):
            shutil.copy(ROOT / name, project / name)
        shutil.copytree(ROOT / "stacks", project / "stacks")
        before = run_plan(project, "production")  # also warms the imports, as a CLI process would have
        started = time.perf_counter()
        change = rollback(project, "production")  # edit, plan before/after, diff, atomic write, ledger
        elapsed = time.perf_counter() - started
        after = run_plan(project, "production")
        diff = diff_plans(before, after)
        assert change.diff.to_json() == diff.to_json()
        return elapsed, diff.changed, [f"{urn.rsplit('::', 1)[-1]}: {', '.join(p)}" for urn, p in diff.updates.items()]


def bench_rollback_cli() -> float:
    """The same rollback as a user runs it: a fresh `agentstage rollback production` process."""
    import subprocess

    exe = Path(sys.executable).with_name("agentstage")
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        for name in ("Pulumi.yaml", "__main__.py"):
            shutil.copy(ROOT / name, project / name)
        shutil.copytree(ROOT / "stacks", project / "stacks")
        started = time.perf_counter()
        subprocess.run([str(exe), "rollback", "production", "-C", str(project)], check=True, capture_output=True)
        return time.perf_counter() - started


def bench_scipy_import() -> float:
    started = time.perf_counter()
    import scipy.stats  # noqa: F401 - the analysis' one-time import cost in a fresh process

    return time.perf_counter() - started


def bench_analysis() -> tuple[float, dict[str, int]]:
    from ruamel.yaml import YAML

    from agentstage.release.analysis import analyse
    from agentstage.release.metrics import Point, Series
    from components.spec import AgentSpec

    data = YAML(typ="safe", pure=True).load((ROOT / "stacks" / "Pulumi.production.yaml").read_text())
    agent = data["config"]["agent-platform:agents"]["support-bot"]
    agent["rollout"]["bake_minutes"] = 60
    spec = AgentSpec.model_validate(agent)
    now = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    rng = random.Random(5)

    def series(name: str, requests: int, error_rate: float, latency: float) -> Series:
        pts = []
        for i in range(60):
            n = requests + rng.randint(-20, 20)
            pts.append(Point(now - dt.timedelta(minutes=59 - i), n, round(n * error_rate), latency + rng.gauss(0, 40)))
        return Series(name, pts)

    inputs = []
    for k in range(10):
        bad = k % 3 == 2
        inputs.append((series("c", 150, 0.03 if bad else 0.004, 900), series("s", 2500, 0.004, 900)))
    started = time.perf_counter()
    verdicts: dict[str, int] = {}
    for canary, stable in inputs:
        r = analyse("agent", spec, canary=canary, stable=stable, now=now, step_started=now - dt.timedelta(minutes=61))
        verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
    return time.perf_counter() - started, verdicts


def main() -> None:
    elapsed, changed, updates = bench_rollback()
    print(
        f"rollback (config write + offline plan diff, reference production): {elapsed:.2f} s, "
        f"{changed} resource changed (target <= 3 s, exactly 1)"
    )
    for line in updates:
        print(f"  ~ {line}")
    print(
        f"  as a fresh CLI process (`agentstage rollback production`, imports included): {bench_rollback_cli():.2f} s"
    )
    imported = bench_scipy_import()
    elapsed, verdicts = bench_analysis()
    print(
        f"analysis of 10 agents x 2 revisions x 60 one-minute points: {elapsed * 1000:.0f} ms "
        f"(target <= 1 s); verdicts {verdicts}"
    )
    print(
        f"  plus a one-time import of scipy.stats per process: {imported * 1000:.0f} ms "
        f"(total {(imported + elapsed) * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
