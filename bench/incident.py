"""``agentstage errors`` over 10,000 failing log entries (issue 12: <= 2 s).

A local Cloud Logging server (tests/logging_fake.py: the ListLogEntries RPC over gRPC on
127.0.0.1 with google-cloud-logging's own messages) holds N failing entries of the
examples/incident agent over the last hour: 5xx request logs and the app's error lines sharing
their traces, over two revisions and a dozen error shapes with varying numbers and ids. Then:

1. the library part, in-process: the real ``LoggingServiceV2Client`` pages through the entries
   (1,000 a page, the API's limit) and :func:`agentstage.ops.logs.group_errors` groups them;
   median of the runs after one warm-up;
2. the whole command, as a new process each run: ``agentstage errors production -C
   examples/incident --agent support-bot --json`` (imports, stack config, the listing, grouping,
   JSON), median of the runs;
3. where a run's time goes, in 3 new processes: the CLI's start-up, the stack config, importing
   google-cloud-logging and building the client, listing and grouping.

The server runs in this process, so its work (about 10 pages of 1,000 entries) is in the
figures; the real API's network latency is not.

Run: .venv/bin/python bench/incident.py [--entries 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ERRORS = [
    "crm-lookup timed out after {s:.1f}s for order {n}",
    "kb-search returned 503 for query {hexid}",
    "model call failed: 429 Resource exhausted (retry in {s:.0f}s)",
    "session {uuid} not found",
    "tool web-search raised ValueError: bad url at position {n}",
    "memory store write conflict on key user:{n}",
]


def entries(n: int, now: dt.datetime) -> list:
    import uuid

    from tests.logging_fake import CANARY_REV, PROJECT, STABLE_REV, URL, entry

    out = []
    for i in range(n):
        t = now - dt.timedelta(seconds=3500 * i / n)
        revision = CANARY_REV if i % 3 else STABLE_REV
        trace = f"{i:032x}"
        if i % 2:
            out.append(
                entry(
                    PROJECT,
                    "support-bot",
                    revision,
                    t,
                    insert_id=f"r{i}",
                    trace=trace,
                    status=500 + i % 5,
                    url=f"{URL}?s={i}",
                    latency_ms=100 + i % 900,
                    severity="ERROR",
                )
            )
        else:
            text = ERRORS[(i // 2) % len(ERRORS)].format(
                s=i % 30 + 0.5, n=i, hexid=f"{i * 7919:012x}", uuid=uuid.uuid4()
            )
            out.append(
                entry(
                    PROJECT,
                    "support-bot",
                    revision,
                    t,
                    insert_id=f"a{i}",
                    trace=trace,
                    severity="ERROR",
                    payload={"message": text, "stage": "tool"},
                )
            )
    return out


def phases(endpoint: str) -> None:
    """In a new process: where one `errors` run's time goes (imports included)."""
    t0 = time.perf_counter()
    import agentstage.cli  # noqa: F401 - the CLI's own start-up

    t1 = time.perf_counter()
    from agentstage.commands.incident import _platform

    _, spec = _platform(ROOT / "examples" / "incident", "production")
    t2 = time.perf_counter()
    from agentstage.ops.logs import failing_filter, group_errors, log_target, logging_client, read_entries

    client = logging_client(endpoint)
    t3 = time.perf_counter()
    target = log_target(spec, "support-bot")
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    _, read = group_errors(read_entries(client, spec.project, failing_filter(target, start), 1_000_000), target)
    t4 = time.perf_counter()
    print(
        f"phases ({read} entries): CLI start-up {t1 - t0:.2f} s, stack config {t2 - t1:.2f} s, "
        f"google-cloud-logging import and client {t3 - t2:.2f} s, listing and grouping (cold) {t4 - t3:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--phases-of", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phases_of:
        phases(args.phases_of)
        return

    from agentstage.commands.incident import _platform
    from agentstage.ops.logs import failing_filter, group_errors, log_target, logging_client, read_entries
    from tests.logging_fake import FakeLogging, serve

    now = dt.datetime.now(dt.timezone.utc)
    fake = FakeLogging()
    fake.entries = entries(args.entries, now)
    server, port = serve(fake)
    endpoint = f"127.0.0.1:{port}"
    _, spec = _platform(ROOT / "examples" / "incident", "production")
    target = log_target(spec, "support-bot")
    client = logging_client(endpoint)

    def library() -> tuple[float, int, int]:
        start = time.perf_counter()
        filter_ = failing_filter(target, now - dt.timedelta(hours=1, minutes=5))
        groups, read = group_errors(read_entries(client, spec.project, filter_, 1_000_000), target)
        return time.perf_counter() - start, read, len(groups)

    library()
    runs = [library() for _ in range(args.repeat)]
    lib = statistics.median(r[0] for r in runs)
    _, read, groups = runs[0]
    print(
        f"library: {read} entries, {groups} groups, {len(fake.requests) // (args.repeat + 1)} pages: "
        f"{lib:.3f} s median of {args.repeat} (min {min(r[0] for r in runs):.3f})"
    )

    env = {**os.environ, "AGENTSTAGE_LOGGING_ENDPOINT": endpoint, "PYTHONWARNINGS": "ignore"}
    cmd = [
        str(Path(sys.executable).parent / "agentstage"),
        "errors",
        "production",
        "-C",
        str(ROOT / "examples" / "incident"),
        "--agent",
        "support-bot",
        "--json",
        "--limit",
        str(args.entries),
    ]
    walls = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"errors failed: {proc.stderr}")
    import json

    out = json.loads(proc.stdout)
    print(
        f"whole command: {out['entries']} entries, {len(out['groups'])} groups: "
        f"{statistics.median(walls):.2f} s median of {args.repeat} (min {min(walls):.2f}, max {max(walls):.2f}); "
        f"target <= 2 s"
    )
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, __file__, "--phases-of", endpoint], env=env, capture_output=True, text=True
        )
        print(proc.stdout.strip() or proc.stderr.strip()[-300:])
    server.stop(0)


if __name__ == "__main__":
    main()
