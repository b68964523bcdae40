"""Where the time of a plan and of a policy check goes, by package.

Prints figures, asserts nothing.

    .venv/bin/python bench/hotspots.py [--agents 20] [--top 12] [--plain-pack]

On a generated production stack (bench/stackgen.py) it profiles, with cProfile:

* **plan**: ``run_plan`` in this process, once cold (imports included) and once warm;
* **pack**: the ``Analyze`` and ``AnalyzeStack`` calls inside a policy pack process, as
  ``agentstage check`` starts it (``--plain-pack``: without agentstage.policy.decode_once,
  as the Pulumi CLI runs a pack), the plan sent one resource at a time.

For each it prints the share of time by package (where the functions that did the work
live: the Pulumi SDK, pulumi-policy, protobuf, asyncio, agentstage, components, the pack's
policies...) and the functions with the most time of their own. Profiling slows Python code
several-fold, so the seconds are larger than without it; the shares are what to compare.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Loaded into the pack process by path before the pack: profiles each Analyze/AnalyzeStack
#: call (the SDK answers on several threads; the calls are serialised for the profile) and
#: writes the profile when the runner stops the process.
_PACK_PROFILER = textwrap.dedent(
    """
    import cProfile, os, signal, sys, threading
    import pulumi_policy.policy as sdk

    profile, lock = cProfile.Profile(), threading.Lock()
    servicer = sdk._PolicyAnalyzerServicer
    for name in ("Analyze", "AnalyzeStack"):
        def timed(self, request, context, _call=getattr(servicer, name)):
            with lock:
                profile.enable()
                try:
                    return _call(self, request, context)
                finally:
                    profile.disable()
        setattr(servicer, name, timed)

    def dump(*_):
        profile.dump_stats(os.environ["AGENTSTAGE_PROFILE_OUT"])
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    """
)


def _package(filename: str) -> str:
    path = filename.replace("\\", "/")
    for marker, name in (
        ("/pulumi_policy/", "pulumi-policy"),
        ("/pulumi_gcp/", "pulumi-gcp"),
        ("/pulumi_kubernetes/", "pulumi-kubernetes"),
        ("/pulumi/", "pulumi SDK"),
        ("/google/protobuf/", "protobuf"),
        ("/grpc/", "grpc"),
        ("/asyncio/", "asyncio"),
        ("/typing.py", "typing"),
        ("/agentstage/", "agentstage"),
        ("/components/", "components"),
        ("/policies/", "agent_guard policies"),
    ):
        if marker in path:
            return name
    if path.startswith("<frozen importlib") or "importlib" in path:
        return "imports"
    if path.startswith("~") or path.startswith("<"):
        return "builtins"
    return "other (stdlib)"


def report(title: str, stats: pstats.Stats, top: int) -> None:
    by_package: Counter[str] = Counter()
    total = 0.0
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[_package(filename)] += tottime
        total += tottime
    print(f"\n== {title}: {total:.2f} s profiled")
    for name, seconds in by_package.most_common():
        if seconds / total >= 0.005:
            print(f"  {name:24} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")
    print("  functions with the most time of their own:")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in rows:
        where = f"{Path(filename).name}:{line}" if not filename.startswith("~") else "builtin"
        print(f"    {100 * tottime / total:5.1f}%  {calls:>9} calls  {name} ({where}, {cumtime:.2f} s cumulative)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=20, help="agents in the generated stack")
    parser.add_argument("--top", type=int, default=12, help="functions listed per profile")
    parser.add_argument("--plain-pack", action="store_true", help="the pack without decode_once")
    args = parser.parse_args()

    from bench.stackgen import write_project

    work = Path(tempfile.mkdtemp(prefix="agentstage-profile-"))
    project, stack = write_project(work / "project", args.agents)

    from agentstage.engine import load_project, load_stack_config, run_plan

    for run in ("cold", "warm"):  # the first run pays the imports
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        plan = run_plan(project, stack)
        profile.disable()
        seconds = time.perf_counter() - started
        title = f"plan, {run} ({len(plan.resources)} resources; {seconds:.2f} s)"
        report(title, pstats.Stats(profile), args.top)

    from agentstage.policy import PolicyPackProcess, load_policy_config

    profiler = work / "pack_profiler.py"
    profiler.write_text(_PACK_PROFILER)
    out = work / "pack.prof"
    # The runner starts ``<python> -u -c <entry point> <engine> .``: this "python" loads the
    # profiler, then runs the entry point as the interpreter would have.
    wrapper = work / "pack_wrapper.py"
    wrapper.write_text(
        "import runpy, sys\n"
        f"runpy.run_path({str(profiler)!r})\n"
        "code = sys.argv[3]\n"
        "sys.argv = ['-c', *sys.argv[4:]]\n"
        "exec(compile(code, '<string>', 'exec'), {'__name__': '__main__'})\n"
    )
    python = work / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{wrapper}" "$@"\n')
    python.chmod(0o755)
    os.environ["AGENTSTAGE_PROFILE_OUT"] = str(out)
    config = load_stack_config(load_project(project), stack)
    pack = PolicyPackProcess(
        project=plan.project,
        stack=stack,
        config=config.values,
        secret_keys=config.secret_keys,
        python=str(python),
        decode_once=not args.plain_pack,
    )
    with pack:
        pack.configure(load_policy_config(ROOT / "policies" / "agent_guard" / "config" / "production.json"))
        started = time.perf_counter()
        pack.check(plan)
        analysis = time.perf_counter() - started
    for _ in range(100):
        if out.exists():
            break
        time.sleep(0.05)
    kind = "plain SDK" if args.plain_pack else "decode_once"
    report(f"pack ({kind}; analysis {analysis:.2f} s)", pstats.Stats(str(out)), args.top)


if __name__ == "__main__":
    main()
