"""How fast the spend-cap enforcer handles one budget notification, locally.

The function runs as it is deployed: its source archive served by functions-framework in a
child process on 127.0.0.1 (tests/enforcer_harness.py), acting through the real Cloud Run and
Parameter Manager client libraries against local gRPC servers. One sample is one HTTP delivery
of a Pub/Sub CloudEvent, from the request leaving this process to the answer, which the function
sends only once its action is done (the update is confirmed by the API) or decided against.

Measured per kind of notification, each over ``--count`` deliveries after one warm-up (the
first delivery also builds the clients):

- ``canary-to-zero``: a capped agent past its cap with a 5% canary (GetService + UpdateService);
  the service is reset between samples so every sample acts;
- ``flags-off``: past the cap, a new flags version (RenderParameterVersion + CreateParameterVersion);
- ``already in force``: the same cap again (GetService only, no update);
- ``other budget``: a notification the enforcer ignores (no API call).

Run: .venv/bin/python bench/enforcer.py [--count 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.enforcer_harness import RunningEnforcer, running_enforcer  # noqa: E402

TARGET_S = 1.0


def _sample(enforcer: RunningEnforcer, deliver: Callable[[], int], before: Callable[[], None]) -> float:
    before()
    start = time.perf_counter()
    status = deliver()
    elapsed = time.perf_counter() - start
    if status != 200:
        raise RuntimeError(f"the enforcer answered {status}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="deliveries per kind (default 50)")
    args = parser.parse_args()

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, running_enforcer(Path(tmp)) as enforcer:
        print(f"function process listening after {time.perf_counter() - started:.2f} s (cold start, not a sample)")
        cases: list[tuple[str, Callable[[], int], Callable[[], None]]] = [
            ("canary-to-zero", lambda: enforcer.notify("support-bot", 320.0).status_code, enforcer.reset),
            ("flags-off", lambda: enforcer.notify("writer", 320.0).status_code, enforcer.reset),
            ("already in force", lambda: enforcer.notify("support-bot", 330.0).status_code, lambda: None),
            ("other budget", lambda: enforcer.notify("someone else's budget", 9999.0).status_code, lambda: None),
        ]
        print(f"{'notification':<18} {'n':>4} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}  calls per delivery")
        worst = 0.0
        for name, deliver, before in cases:
            # warm-up: the first delivery of a kind may build a client and open its channel
            first = _sample(enforcer, deliver, before)
            enforcer.run.calls.clear()
            enforcer.parameters.calls.clear()
            times = [_sample(enforcer, deliver, before) for _ in range(args.count)]
            calls = sorted({m for m, _ in enforcer.run.calls} | {m for m, _ in enforcer.parameters.calls})
            worst = max(worst, max(times))
            p95 = sorted(times)[max(0, round(0.95 * len(times)) - 1)]
            print(
                f"{name:<18} {len(times):>4} {statistics.median(times) * 1000:>10.1f} {p95 * 1000:>8.1f} "
                f"{max(times) * 1000:>8.1f}  {', '.join(calls) or '-'} (first delivery {first * 1000:.1f} ms)"
            )
            worst = max(worst, first)
            if name == "already in force" and any(m == "UpdateService" for m, _ in enforcer.run.calls):
                raise RuntimeError("a repeated notification made an update call")
    verdict = "met" if worst <= TARGET_S else "NOT met"
    print(f"slowest delivery {worst * 1000:.1f} ms; target <= {TARGET_S * 1000:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
