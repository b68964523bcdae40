"""Benchmark of ``agentstage check``: prints figures, asserts nothing.

    .venv/bin/python bench/check.py [--sizes 10,50,100] [--repeat 3] [--mix]

1. ``agentstage check production`` on the reference stack, the whole CLI process from a cold
   start (a new Python process each time, as CI runs it). Target: <= 1.5 s. And the same with
   ``--new-stack`` (computed outputs unknown, as in a first preview): at most 20% more.
2. Generated stacks of N agents (bench/stackgen.py) checked with the production policy
   config: whole-process wall time (target for 100 agents: <= 15 s), resources analysed, and
   the per-resource analysis cost (Analyze per resource + AnalyzeStack, measured inside
   the run) beside the time spent on the plan and on starting the pack.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
PRODUCTION_CONFIG = ROOT / "policies" / "agent_guard" / "config" / "production.json"


def run(args: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return wall, proc.stdout


def inner(project: str, stack: str) -> None:
    """In a fresh process: one run_check, with where the time went."""
    started = time.perf_counter()
    from agentstage.engine import load_project, load_stack_config, run_plan
    from agentstage.policy import PolicyPackProcess, load_policy_config

    imported = time.perf_counter()
    config = load_stack_config(load_project(project), stack)
    runner = PolicyPackProcess(
        project=load_project(project).name, stack=stack, config=config.values, secret_keys=config.secret_keys
    )
    runner.launch()
    plan = run_plan(project, stack)
    planned = time.perf_counter()
    runner.connect()
    connected = time.perf_counter()
    runner.configure(load_policy_config(PRODUCTION_CONFIG))
    report = runner.check(plan)
    runner.close()
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "imports": imported - started,
                "plan": planned - imported,
                "pack_wait": connected - planned,
                "analysis": report.analysis_s,
                "total": done - started,
                "resources": report.resources,
                "policies": len(report.policies),
                "mandatory": len(report.mandatory),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,50,100", help="agent counts of the generated stacks")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (the median is printed)")
    parser.add_argument("--mix", action="store_true", help="generated stacks mix the four runtimes (stackgen.MIXED)")
    parser.add_argument("--inner", nargs=2, metavar=("PROJECT", "STACK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(*args.inner)
        return

    cli = str(BIN / "agentstage")
    print("agentstage check: offline policy check (whole process, cold start)")
    print()
    walls = [run([cli, "check", "production", "-C", str(ROOT), "--format", "json"])[0] for _ in range(args.repeat)]
    _, out = run([cli, "check", "production", "-C", str(ROOT), "--format", "json"])
    report = json.loads(out)
    print(
        f"reference production stack: {statistics.median(walls):.2f} s median of {args.repeat} "
        f"(min {min(walls):.2f}, max {max(walls):.2f}); target <= 1.5 s"
    )
    fresh = [
        run([cli, "check", "production", "-C", str(ROOT), "--format", "json", "--new-stack"])[0]
        for _ in range(args.repeat)
    ]
    ratio = statistics.median(fresh) / statistics.median(walls)
    print(
        f"  --new-stack: {statistics.median(fresh):.2f} s median (min {min(fresh):.2f}, max {max(fresh):.2f}), "
        f"{(ratio - 1) * 100:+.0f}% against check; target <= +20%"
    )
    print(
        f"  {report['summary']['resources']} resources, {report['summary']['policies']} policies, "
        f"{report['summary']['mandatory']} mandatory violations"
    )
    breakdown = json.loads(run([sys.executable, __file__, "--inner", str(ROOT), "production"])[1])
    print(
        f"  in-process: imports {breakdown['imports']:.2f} s, plan {breakdown['plan']:.2f} s (pack boots meanwhile), "
        f"waiting for the pack {breakdown['pack_wait']:.2f} s, analysis {breakdown['analysis']:.2f} s"
    )
    print()

    from bench.stackgen import CLOUD_RUN, MIXED, write_project

    print(
        f"{'agents':>6} {'resources':>9} {'wall s':>7} {'plan s':>7} {'pack wait s':>11} {'analysis s':>10} "
        f"{'ms/resource':>11} {'mandatory':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            project, stack = write_project(Path(tmp) / f"p{n}", n, MIXED if args.mix else CLOUD_RUN)
            walls = []
            for _ in range(args.repeat):
                wall, _ = run(
                    [
                        cli,
                        "check",
                        stack,
                        "-C",
                        str(project),
                        "--policy-config",
                        str(PRODUCTION_CONFIG),
                        "--format",
                        "json",
                    ],
                    ok=(0, 1),
                )
                walls.append(wall)
            b = json.loads(run([sys.executable, __file__, "--inner", str(project), stack])[1])
            per = 1000 * b["analysis"] / b["resources"]
            print(
                f"{n:>6} {b['resources']:>9} {statistics.median(walls):>7.2f} {b['plan']:>7.2f} "
                f"{b['pack_wait']:>11.2f} {b['analysis']:>10.2f} {per:>11.2f} {b['mandatory']:>9}"
            )
    print()
    print("target: 100 agents <= 15 s whole process. ms/resource = (Analyze for every resource + one")
    print("AnalyzeStack) / resources, over gRPC to the unmodified pack process. plan s and analysis s are")
    print("measured one after the other in-process; the CLI (wall s) overlaps them: each resource goes")
    print("to the pack as soon as the program registers it.")


if __name__ == "__main__":
    main()
