"""Benchmark of ``agentstage preview``: prints figures, asserts nothing.

    .venv/bin/python bench/preview.py [--sizes 1,10,50,100] [--repeat 3] [--mix]

1. The reference production stack, the whole CLI process from a cold start (a new Python
   process each time, as a user or CI runs it): wall time and peak RSS.
2. Generated stacks of N agents (bench/stackgen.py): wall time, peak RSS, resources and
   resources per second, seconds per agent (linear growth shows as a flat column).
3. Engine overhead: the offline engine (recording monitor, realistic outputs, plan
   building) against bare Pulumi mock registration of the same program (the SDK's own
   MockMonitor and a Mocks that echoes inputs), both in-process after a warm-up run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent


def run_measured(args: list[str]) -> tuple[float, float, str]:
    """Like run_process, with the child's peak RSS from wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()  # type: ignore[union-attr]
    err = proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{err.decode()}")
    return wall, usage.ru_maxrss / 1024, out.decode()


def inner(mode: str, project: str, stack: str, repeat: int) -> None:
    """In a fresh process: time `repeat` runs of the engine or of bare mock registration."""
    import runpy

    import pulumi
    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    from agentstage.engine import load_project, load_stack_config, run_plan

    class Echo(pulumi.runtime.Mocks):
        def new_resource(self, args):
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args):
            return {}, []  # pulumi 3.272 iterates the failures

    def bare() -> int:
        proj = load_project(project)
        cfg = load_stack_config(proj, stack)
        settings.set_root_resource(None)
        pulumi.runtime.set_all_config(dict(cfg.values), cfg.secret_keys)
        monitor = pulumi.runtime.mocks.MockMonitor(Echo())
        pulumi.runtime.set_mocks(Echo(), project=proj.name, stack=stack, preview=True, monitor=monitor)
        sys.path.insert(0, str(proj.dir))
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(proj.main), run_name="__main__")))
        return len(monitor.resources)

    def engine() -> int:
        return len([r for r in run_plan(project, stack).resources if r.custom])

    def bare_paused() -> int:
        import gc

        gc.disable()
        try:
            return bare()
        finally:
            gc.enable()

    fn = {"engine": engine, "bare": bare, "bare-paused": bare_paused}[mode]
    fn()  # warm-up: imports, first-call caches
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        count = fn()
        times.append(time.perf_counter() - t)
    print(json.dumps({"median": statistics.median(times), "resources": count}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,50,100")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mix", action="store_true", help="generated stacks mix the four runtimes (stackgen.MIXED)")
    parser.add_argument("--inner", nargs=3, metavar=("MODE", "PROJECT", "STACK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(*args.inner, repeat=args.repeat)
        return

    from bench.stackgen import CLOUD_RUN, MIXED, write_project

    cli = str(BIN / "agentstage")
    print("agentstage preview benchmark")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus\n")

    print("1. reference production stack, whole CLI process (agentstage preview production --json)")
    runs = [run_measured([cli, "preview", "production", "-C", str(ROOT), "--json"]) for _ in range(max(args.repeat, 3))]
    walls = [w for w, _, _ in runs]
    count = len([r for r in json.loads(runs[0][2])["resources"] if r["custom"]])
    print(
        f"   resources: {count}   wall: first {walls[0]:.2f}s, median {statistics.median(walls):.2f}s, "
        f"max {max(walls):.2f}s   peak RSS: {max(m for _, m, _ in runs):.0f} MiB   (target <= 1.5 s)\n"
    )

    sizes = [int(s) for s in args.sizes.split(",")]
    print("2. generated stacks, whole CLI process (median of runs)")
    header = f"   {'agents':>6} {'resources':>9} {'wall s':>7} {'s/agent':>8} {'res/s':>7} {'peak MiB':>9}"
    print(header)
    overhead_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            project, stack = write_project(Path(tmp) / f"p{n}", n, MIXED if args.mix else CLOUD_RUN)
            runs = [run_measured([cli, "preview", stack, "-C", str(project), "--json"]) for _ in range(args.repeat)]
            wall = statistics.median(w for w, _, _ in runs)
            peak = max(m for _, m, _ in runs)
            count = len([r for r in json.loads(runs[0][2])["resources"] if r["custom"]])
            print(f"   {n:>6} {count:>9} {wall:>7.2f} {wall / n:>8.3f} {count / wall:>7.0f} {peak:>9.0f}")
            overhead_rows.append((n, project, stack))
        print("   (targets: 100 agents <= 10 s and <= 1024 MiB; linear growth)\n")

        print("3. engine overhead over bare Pulumi mock registration (in-process, warm, median)")
        print("   bare: the SDK's MockMonitor, echoing Mocks; bare* the same with the cycle collector")
        print("   paused as the engine pauses it, so the last column is the engine's own cost")
        print(
            f"   {'agents':>6} {'resources':>9} {'bare s':>7} {'bare* s':>8} {'engine s':>9} {'vs bare':>8} {'vs bare*':>9}"
        )
        for n, project, stack in overhead_rows:
            if n < 10:
                continue
            py = sys.executable
            here = str(Path(__file__).resolve())
            res = {}
            for mode in ("bare", "bare-paused", "engine"):
                _, _, out = run_measured([py, here, "--repeat", str(args.repeat), "--inner", mode, str(project), stack])
                res[mode] = json.loads(out)
            bare, paused, eng = res["bare"]["median"], res["bare-paused"]["median"], res["engine"]["median"]
            print(
                f"   {n:>6} {res['engine']['resources']:>9} {bare:>7.3f} {paused:>8.3f} {eng:>9.3f} "
                f"{eng / bare - 1:>+8.1%} {eng / paused - 1:>+9.1%}"
            )
        print("   (target: overhead <= 25%)")


if __name__ == "__main__":
    main()
