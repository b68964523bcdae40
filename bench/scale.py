"""Scale benchmark: ``agentstage preview`` and ``agentstage check`` on platforms of many agents.

Prints figures, asserts nothing.

    .venv/bin/python bench/scale.py [--sizes 10,100,500,1000] [--repeat 1] [--mix]

For each size a generated production stack (bench/stackgen.py; every agent on Cloud Run, or the
four runtimes round-robin with ``--mix``) is run through both commands as the user runs them: a new CLI
process each time. Per run it measures

* wall time of the whole process;
* CPU time (user + sys) of the process and of the processes it waited for (the policy pack
  processes of ``check``), from ``wait4``;
* peak memory two ways: the largest single process of the tree (``ru_maxrss`` from ``wait4``)
  and the whole tree (CLI + pack processes), summed from ``/proc`` every 100 ms;
* resources per second (resources in the plan / wall time).

The time split (imports, plan, analysis, report) comes from a second, instrumented run in a
fresh process (``--split``) that does what the command does one step after the other. The CLI
overlaps the plan and the analysis (each resource goes to the pack as it is registered), so the
steps of the split add up to more than the CLI's wall time; they say where the work is, not how
long the user waits. ``imports`` is from the start of the process to the command's code being
loaded (interpreter start included).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
PRODUCTION_CONFIG = ROOT / "policies" / "agent_guard" / "config" / "production.json"
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, read from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
            with open(f"/proc/{entry}/statm", "rb") as fh:
                statm = fh.read().split()
        except OSError:
            continue  # the process ended meanwhile
        # The command name (field 2) may hold spaces: the fields after it start past its ')'.
        fields = stat[stat.rindex(b")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        rss[int(entry)] = int(statm[1]) * _PAGE
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(rss.get(pid, 0) for pid in tree)


def run_measured(args: list[str], ok: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """One whole-process run: wall, CPU (user+sys, waited-for children included), peak RSS
    of the largest process and of the whole process tree, and stdout."""
    start = time.perf_counter()
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors)
    peak_tree = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not done.is_set():
            peak_tree = max(peak_tree, _tree_rss(proc.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)  # reaps the child, with its resource usage
    proc.returncode = os.waitstatus_to_exitcode(status)
    errors.seek(0)
    err = errors.read()
    errors.close()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{err.decode(errors='replace')}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "tree_mib": peak_tree / 2**20,
        "stdout": out.decode(),
    }


def split(command: str, project: str, stack: str, launched: float) -> None:
    """In a fresh process: the command's steps one after the other, timed. ``launched`` is
    the parent's wall clock when it started this process (so imports include start-up)."""
    from agentstage.commands import check as _check  # noqa: F401 - the command's own imports
    from agentstage.commands import preview as _preview  # noqa: F401
    from agentstage.engine import load_project, load_stack_config, run_plan

    imported = time.time()
    timings: dict[str, float] = {"imports": imported - launched}
    if command == "preview":
        t = time.perf_counter()
        plan = run_plan(project, stack)
        gc.freeze()  # as the CLI's preview does after its plan (agentstage/commands/common.py)
        timings["plan"] = time.perf_counter() - t
        timings["analysis"] = 0.0
        t = time.perf_counter()
        json.dumps(plan.to_json(), indent=2)
        timings["report"] = time.perf_counter() - t
        resources = len(plan.resources)
    else:
        from agentstage.policy import PolicyPackProcess, load_policy_config

        config = load_stack_config(load_project(project), stack)
        runner = PolicyPackProcess(
            project=load_project(project).name, stack=stack, config=config.values, secret_keys=config.secret_keys
        )
        runner.launch()  # boots meanwhile, as in the CLI
        gc.disable()  # as the CLI's check does for the whole command (agentstage/commands/check.py)
        t = time.perf_counter()
        plan = run_plan(project, stack)
        timings["plan"] = time.perf_counter() - t
        t = time.perf_counter()
        runner.connect()
        runner.configure(load_policy_config(PRODUCTION_CONFIG))
        report = runner.check(plan)
        timings["analysis"] = time.perf_counter() - t
        t = time.perf_counter()
        json.dumps(report.to_json(), indent=2)
        timings["report"] = time.perf_counter() - t
        runner.close()
        resources = report.resources
    timings["resources"] = resources
    print(json.dumps(timings))


def _command(cli: str, command: str, project: Path, stack: str) -> list[str]:
    if command == "preview":
        return [cli, "preview", stack, "-C", str(project), "--json"]
    return [cli, "check", stack, "-C", str(project), "--policy-config", str(PRODUCTION_CONFIG), "--format", "json"]


def _resources(command: str, stdout: str) -> int:
    document = json.loads(stdout)
    if command == "preview":
        return len(document["resources"])
    return document["summary"]["resources"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,500,1000", help="agent counts of the generated stacks")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure (the median is printed)")
    parser.add_argument("--commands", default="preview,check", help="which commands to measure")
    parser.add_argument("--mix", action="store_true", help="generated stacks mix the four runtimes (stackgen.MIXED)")
    parser.add_argument("--split", nargs=4, metavar=("COMMAND", "PROJECT", "STACK", "LAUNCHED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.split:
        command, project, stack, launched = args.split
        split(command, project, stack, float(launched))
        return

    from bench.stackgen import CLOUD_RUN, MIXED, write_project

    cli = str(BIN / "agentstage")
    commands = [c for c in args.commands.split(",") if c]
    runtimes = MIXED if args.mix else CLOUD_RUN
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'command':<8} {'agents':>6} {'resources':>9} {'wall s':>7} {'cpu s':>7} {'max proc MiB':>12} "
        f"{'tree MiB':>8} {'res/s':>6} {'s/agent':>7} {'imports':>7} {'plan':>6} {'analysis':>8} {'report':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",") if s]:
            project, stack = write_project(Path(tmp) / f"p{n}", n, runtimes)
            for command in commands:
                runs = [
                    run_measured(_command(cli, command, project, stack), ok=(0, 1) if command == "check" else (0,))
                    for _ in range(args.repeat)
                ]
                resources = _resources(command, runs[0]["stdout"])
                wall = statistics.median(r["wall"] for r in runs)
                split_run = run_measured(
                    [sys.executable, __file__, "--split", command, str(project), stack, repr(time.time())]
                )
                s = json.loads(split_run["stdout"])
                print(
                    f"{command:<8} {n:>6} {resources:>9} {wall:>7.2f} "
                    f"{statistics.median(r['cpu'] for r in runs):>7.2f} "
                    f"{max(r['maxrss_mib'] for r in runs):>12.0f} {max(r['tree_mib'] for r in runs):>8.0f} "
                    f"{resources / wall:>6.0f} {wall / n:>7.3f} {s['imports']:>7.2f} {s['plan']:>6.2f} "
                    f"{s['analysis']:>8.2f} {s['report']:>6.2f}",
                    flush=True,
                )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("wall/cpu/MiB: the CLI process as the user runs it (median of --repeat; MiB the largest). cpu s")
    print("includes the policy pack processes. max proc MiB: the largest single process (ru_maxrss); tree")
    print("MiB: CLI + pack processes together, sampled every 100 ms. imports/plan/analysis/report: one")
    print("instrumented run, steps one after the other (the CLI overlaps plan and analysis).")


if __name__ == "__main__":
    main()
