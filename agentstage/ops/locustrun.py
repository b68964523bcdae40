"""The load itself: Locust, as a library, in a process of its own.

``agentstage loadtest`` starts ``python -m agentstage.ops.locustrun``, hands it the plan as JSON
on stdin and reads its events, one JSON object a line, on stdout. Locust runs on gevent, which
monkey-patches the standard library (sockets, threads, ``time.sleep``) when it is imported; kept
in this process, that never reaches the command's own process, where the Google client
libraries (gRPC among them) read Cloud Monitoring and mint identity tokens, nor a test runner.

Each phase is one Locust :class:`~locust.env.Environment` with a
:class:`~locust.contrib.fasthttp.FastHttpUser` and its own ``--csv`` files (Locust's
:class:`~locust.stats.StatsCSVFileWriter`), so a phase's files hold that phase alone:

- ``steady``: ``users`` users, each at ``rate / users`` requests per second
  (:func:`~locust.constant_throughput`), for ``duration`` seconds;
- ``step``: ``start`` users sending back to back (each user is one request in flight), raised by
  ``step`` every ``step_duration`` seconds up to ``max``; it ends after the first step whose
  errors plus timeouts pass ``max_error_ratio`` of its requests.

Events: ``phase`` (a phase starts), ``tick`` (every second: users, requests/s, errors and
timeouts/s, p50/p95/p99 of the requests that finished in that second), ``step`` (a step's
figures), ``phase_end`` (the phase's totals and percentiles), ``done``. A request counts as a
timeout when it raised a timeout (no answer within ``timeout`` seconds) and as an error when it
failed otherwise (a 5xx or 4xx answer, a refused or reset connection); Locust counts both as
failures.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import socket
import subprocess
import sys
import time
from typing import Any

# Locust monkey-patches the standard library on import: nothing above imports ssl or threads.
import gevent
import locust.stats
from locust import FastHttpUser, constant, constant_throughput, task
from locust.env import Environment
from locust.stats import StatsCSVFileWriter, calculate_response_time_percentile, diff_response_time_dicts

#: The percentiles the phases report.
QUANTILES = (0.5, 0.95, 0.99)


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def is_timeout(error: Any) -> bool:
    """Whether a failure (as Locust keeps it: the exception or its text, which workers send to
    the master) is a request that got no answer in time. geventhttpclient reports a passed
    ``network_timeout`` as "timed out" (``socket.timeout``), or gevent's ``Timeout``."""
    if isinstance(error, (gevent.Timeout, socket.timeout, TimeoutError)):
        return True
    text = str(error).lower()
    return "timed out" in text or "timeout(" in text or "timeouterror" in text


def failure_kinds(env: Environment) -> tuple[int, int]:
    """(timeouts, errors) so far, from Locust's failure table."""
    timeouts = errors = 0
    for entry in env.stats.errors.values():
        if is_timeout(entry.error):
            timeouts += entry.occurrences
        else:
            errors += entry.occurrences
    return timeouts, errors


def percentiles(times: dict[int, int]) -> dict[str, float | None]:
    """p50/p95/p99 (ms) of Locust's response-time histogram (rounded ms -> count)."""
    n = sum(times.values())
    return {
        f"p{round(q * 100)}": (float(calculate_response_time_percentile(times, n, q)) if n else None) for q in QUANTILES
    }


def user_class(plan: dict[str, Any], phase: str) -> type:
    """A FastHttpUser that cycles through the plan's requests, paced for ``phase``: in the
    steady phase each user sends ``rate / users`` requests per second and first waits a random
    part of its period (users paced alike and started together would otherwise send in bursts,
    all at once, once per period: a pulse, not a steady rate); in the step phase back to back."""
    token = plan.get("token")
    # built once: (method, path, headers, body, name) of each request, the token in its headers
    requests = [
        (
            r["method"],
            r["path"],
            {**r["headers"], **({"Authorization": f"Bearer {token}"} if token else {})},
            r["body"].encode() if r["body"] is not None else None,
            r["name"],
        )
        for r in plan["requests"]
    ]
    cycle = itertools.cycle(requests)
    timeout = float(plan["timeout"])
    if phase == "steady":
        per_user = float(plan["rate"]) / int(plan["users"])
        wait_time, spread_s = constant_throughput(per_user), 1 / per_user
    else:
        wait_time, spread_s = constant(0), 0.0

    class AgentUser(FastHttpUser):
        host = plan["url"]
        network_timeout = timeout
        connection_timeout = timeout
        # a refused connection is a failure of the agent, not a reason to stop the user
        max_retries = 0

        def on_start(self) -> None:
            if spread_s > 0:
                gevent.sleep(random.uniform(0, spread_s))

        @task
        def call(self) -> None:
            method, path, headers, body, name = next(cycle)
            self.client.request(method, path, headers=headers, data=body, name=name)

    AgentUser.wait_time = wait_time
    return AgentUser


class Phase:
    """One phase: its environment, runner, CSV writer and per-second samples."""

    def __init__(self, plan: dict[str, Any], name: str, prefix: str) -> None:
        self.name = name
        self.env = Environment(user_classes=[user_class(plan, name)])
        self.workers: list[subprocess.Popen[bytes]] = []
        processes = int(plan.get("processes") or 1)
        if processes == 1:
            self.runner = self.env.create_local_runner()
        else:
            # Locust's distributed mode on one machine: this process is the master (it keeps
            # the stats, writes the CSVs), each worker a process of its own with its users
            self.runner = self.env.create_master_runner("127.0.0.1", 0)
            port = self.runner.server.port
            payload = json.dumps({"plan": plan, "phase": name}).encode()
            for _ in range(processes):
                worker = subprocess.Popen(
                    [sys.executable, "-m", "agentstage.ops.locustrun", "--worker", str(port)], stdin=subprocess.PIPE
                )
                assert worker.stdin is not None
                worker.stdin.write(payload)
                worker.stdin.close()
                self.workers.append(worker)
            deadline = time.time() + 60
            while self.runner.worker_count < processes:
                if time.time() > deadline:
                    raise SystemExit(f"{processes - self.runner.worker_count} Locust worker(s) did not connect")
                gevent.sleep(0.1)
        self.writer = StatsCSVFileWriter(
            self.env, locust.stats.PERCENTILES_TO_REPORT, prefix, full_history=bool(plan.get("full_history"))
        )
        self.csv = gevent.spawn(self.writer)
        self.started = time.time()
        self.last = (self.started, 0, 0, 0, 0, dict(self.env.stats.total.response_times))
        self.series: list[dict[str, Any]] = []
        emit({"event": "phase", "name": name, "started": self.started})

    @property
    def stats(self) -> Any:
        return self.env.stats.total

    def snapshot(self) -> tuple[float, int, int, int, int, dict[int, int]]:
        s = self.stats
        return (time.time(), s.num_requests, s.num_failures, *failure_kinds(self.env), dict(s.response_times))

    def tick(self) -> dict[str, Any]:
        """A sample of the last second (or whatever passed since the previous one)."""
        now = self.snapshot()
        t0, n0, _, to0, e0, rt0 = self.last
        dt_s = max(now[0] - t0, 1e-6)
        point = {
            "t": now[0],
            "users": self.runner.user_count,
            "rps": (now[1] - n0) / dt_s,
            "timeouts_per_s": (now[3] - to0) / dt_s,
            "errors_per_s": (now[4] - e0) / dt_s,
            "requests": now[1],
            "failures": now[2],
            "timeouts": now[3],
            "errors": now[4],
            **percentiles(diff_response_time_dicts(now[5], rt0)),
        }
        self.last = now
        self.series.append(point)
        emit({"event": "tick", "phase": self.name, **point})
        return point

    def run_for(self, seconds: float) -> None:
        end = time.time() + seconds
        while (left := end - time.time()) > 0:
            gevent.sleep(min(1.0, left))
            self.tick()

    def finish(self, users: int, **extra: Any) -> dict[str, Any]:
        """Stop the users and let Locust's CSV writer make one more pass (it rewrites the stats
        files every second), so the files hold the phase's final figures."""
        self.runner.stop()
        ended = time.time()
        gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + 0.2)
        self.csv.kill()
        self.writer.close_files()
        self.runner.quit()
        for worker in self.workers:
            worker.wait(30)
        s = self.stats
        timeouts, errors = failure_kinds(self.env)
        summary = {
            "event": "phase_end",
            "name": self.name,
            "started": self.started,
            "ended": ended,
            "users": users,
            "requests": s.num_requests,
            "failures": s.num_failures,
            "timeouts": timeouts,
            "errors": errors,
            "rps": s.num_requests / max(ended - self.started, 1e-6),
            "mean_ms": s.avg_response_time if s.num_requests else None,
            **percentiles(s.response_times),
            "series": self.series,
            **extra,
        }
        emit(summary)
        return summary


def steady(plan: dict[str, Any], prefix: str) -> dict[str, Any]:
    users = int(plan["users"])
    phase = Phase(plan, "steady", prefix)
    phase.runner.start(users, spawn_rate=users, wait=False)
    phase.run_for(float(plan["duration"]))
    return phase.finish(users)


def step(plan: dict[str, Any], prefix: str) -> dict[str, Any]:
    start, inc, top = (int(x) for x in plan["step_users"])
    phase = Phase(plan, "step", prefix)
    users = start
    peak = start
    steps: list[dict[str, Any]] = []
    while True:
        phase.runner.start(users, spawn_rate=max(users, 1), wait=False)
        peak = max(peak, users)
        before = phase.snapshot()
        began = before[0]
        phase.run_for(float(plan["step_duration"]))
        after = phase.snapshot()
        requests = after[1] - before[1]
        timeouts, errors = after[3] - before[3], after[4] - before[4]
        ratio = (timeouts + errors) / requests if requests else 1.0
        figures = {
            "users": users,
            "started": began,
            "ended": after[0],
            "requests": requests,
            "rps": requests / max(after[0] - began, 1e-6),
            "timeouts": timeouts,
            "errors": errors,
            "error_ratio": ratio,
            "ok": ratio <= float(plan["max_error_ratio"]),
            **percentiles(diff_response_time_dicts(after[5], before[5])),
        }
        steps.append(figures)
        emit({"event": "step", **figures})
        if not figures["ok"] or users >= top:
            break
        users = min(users + inc, top)
    return phase.finish(peak, steps=steps)


def worker(master_port: int) -> None:
    """A worker of a phase: its users, reporting to the master every second."""
    import locust.runners

    given = json.load(sys.stdin)
    locust.runners.WORKER_REPORT_INTERVAL = 1.0
    env = Environment(user_classes=[user_class(given["plan"], given["phase"])])
    runner = env.create_worker_runner("127.0.0.1", master_port)
    runner.greenlet.join()


def main() -> None:
    logging.getLogger("locust").setLevel(logging.ERROR)
    if sys.argv[1:2] == ["--worker"]:
        worker(int(sys.argv[2]))
        return
    plan = json.load(sys.stdin)
    locust.stats.CSV_STATS_INTERVAL_SEC = 1
    run = {"steady": steady, "step": step}
    for name, prefix in plan["phases"]:
        run[name](plan, prefix)
    emit({"event": "done"})


if __name__ == "__main__":
    main()
