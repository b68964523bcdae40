"""How many requests/s `agentstage loadtest` drives from this machine (printed, not asserted).

Starts the local agent server (tests/agent_server.py) answering at once (no simulated latency,
no leak, no limit) and runs `agentstage loadtest staging --phases steady` against it at a rate
above what one machine can send, once per Locust process count, so the figure is the load
generator's ceiling with the server sharing the same cores. Target: >= 1,000 requests/s on 2
cores. Also prints the CPU time per request (load generator + server), which says what the
machine would reach with nothing else running.

Run: .venv/bin/python bench/loadtest.py [--rate 3000] [--users 300] [--duration 15] [--processes 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(url: str, server_pid: int, processes: int, args: argparse.Namespace) -> None:
    server_cpu = _cpu_seconds(server_pid)
    ours = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "agentstage.cli",
                "loadtest",
                "staging",
                "-C",
                str(ROOT),
                "--agent",
                "support-bot",
                "--url",
                url,
                "--phases",
                "steady",
                "--rate",
                str(args.rate),
                "--users",
                str(args.users),
                "--duration",
                str(args.duration),
                "--timeout",
                "5",
                "--processes",
                str(processes),
                "--csv",
                str(Path(tmp) / "bench"),
                "--json",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "NO_GCE_CHECK": "true"},
        )
    if done.returncode not in (0, 1):
        sys.exit(f"loadtest failed ({done.returncode}): {done.stderr.strip()}")
    steady = json.loads(done.stdout)["phases"]["steady"]
    server_cpu = _cpu_seconds(server_pid) - server_cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the command's whole process tree (CLI, Locust and its workers), its startup included
    generator_cpu = after.ru_utime + after.ru_stime - ours.ru_utime - ours.ru_stime
    per_request = (generator_cpu + server_cpu) / steady["requests"]
    print(
        f"{processes} Locust process(es): {steady['rps']:,.0f} requests/s over {args.duration:g} s "
        f"({steady['requests']:,} requests, {steady['failures']} failures, {args.users} users, target "
        f"{args.rate:g}/s); p50 {steady['p50']:g} ms, p99 {steady['p99']:g} ms; load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"  CPU: load generator {generator_cpu:.1f} s (with the command's startup), agent server "
        f"{server_cpu:.1f} s: {per_request * 1000:.2f} ms per request, so {os.cpu_count()} idle cores would "
        f"allow about {(os.cpu_count() or 1) / per_request:,.0f} requests/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=3000)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--processes", default="1,2", help="Locust process counts to run, e.g. 1,2")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.agent_server", "--port", "0", "--base-ms", "0", "--per-request-ms", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        found = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline())
        if found is None:
            sys.exit("the agent server did not start")
        print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start")
        for processes in (int(p) for p in args.processes.split(",")):
            run(found.group(), server.pid, processes, args)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
