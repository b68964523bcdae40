"""What a request costs on Cloud Run, from what a load test measured, and what a month costs.

Cloud Run bills instance time by its vCPU and memory limits (Cloud Run pricing,
https://cloud.google.com/run/pricing, list prices in USD for Tier 1 regions such as
us-central1; the free tier is left out, a production project uses it up. It is per billing
account and month: request-based, the first 180,000 vCPU-seconds, 360,000 GiB-seconds and 2
million requests, confirmed on that page; instance-based, 240,000 vCPU-seconds and 450,000
GiB-seconds, unconfirmed, as the page copies read here break off at "First 24"):

- **request-based billing** (CPU allocated only during requests, ``cpu_idle``: the service
  scales to zero or has fractional CPU — how :mod:`components.cloud_run` sets it): an instance
  is billed while it handles at least one request, at :data:`REQUEST_BASED`, plus
  :data:`PRICE_PER_MILLION_REQUESTS`;
- **instance-based billing** (CPU always allocated: min instances and whole CPUs): every
  instance is billed for its whole life at :data:`INSTANCE_BASED`, with no request fee.

The model (what ``findings.json`` calls ``cost.model``): requests in flight on average during
the steady phase = requests/s x mean latency (Little's law). They share ``ceil(in flight /
concurrency)`` instances, so a request occupies ``mean latency / (in flight per busy instance)``
of an instance's billable time; at one request in flight or fewer it has an instance to itself.
Request-based: cost per request = that share x the instance's price per second + the request fee.
Instance-based: the month costs ``max(min instances, instances the production rate keeps busy)``
instances for 30 days. The model's own calls (tokens billed by Vertex AI) are not measured by a
load test against the agent: give them with ``--cost-per-request``, which replaces the model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Prices", "REQUEST_BASED", "INSTANCE_BASED", "PRICE_PER_MILLION_REQUESTS", "SECONDS_PER_MONTH", "project"]


@dataclass(frozen=True)
class Prices:
    """USD per vCPU-second and per GiB-second of instance time."""

    vcpu_second: float
    gib_second: float


#: Cloud Run pricing, request-based billing (formerly "CPU only allocated during request
#: processing"), Tier 1: $0.00002400 per vCPU-second (confirmed on
#: https://cloud.google.com/run/pricing); $0.00000250 per GiB-second (unconfirmed: the copies of
#: that page read here break off before the memory column).
REQUEST_BASED = Prices(vcpu_second=0.000024, gib_second=0.0000025)
#: Cloud Run pricing, instance-based billing (formerly "CPU always allocated"; jobs too), Tier 1:
#: $0.00001800 per vCPU-second (confirmed on https://cloud.google.com/run/pricing); $0.00000200
#: per GiB-second (unconfirmed: the page copies read here break off before the memory column).
INSTANCE_BASED = Prices(vcpu_second=0.000018, gib_second=0.000002)
#: Cloud Run pricing, request-based billing: $0.40 per million requests beyond the free tier
#: (unconfirmed: https://cloud.google.com/run/pricing's copies read here break off before it).
#: Instance-based billing has no request fee.
PRICE_PER_MILLION_REQUESTS = 0.40
#: The month of a projection: 30 days (the month of ``gates.monthly_requests``).
SECONDS_PER_MONTH = 30 * 24 * 3600


def project(
    *,
    cpu: float,
    memory_gib: float,
    concurrency: int,
    min_instances: int,
    request_based: bool,
    rps: float,
    mean_latency_s: float,
    monthly_requests: int | None,
    cost_per_request: float | None = None,
) -> dict[str, Any]:
    """The cost per request measured at ``rps`` with ``mean_latency_s``, and the month at
    ``monthly_requests`` (None: not projected). ``cost_per_request`` (the user's) replaces the
    model."""
    prices = REQUEST_BASED if request_based else INSTANCE_BASED
    per_instance_second = cpu * prices.vcpu_second + memory_gib * prices.gib_second
    in_flight = rps * mean_latency_s
    busy = max(1, math.ceil(in_flight / concurrency)) if in_flight > 0 else 1
    sharing = max(1.0, in_flight / busy)
    out: dict[str, Any] = {
        "billing": "request-based" if request_based else "instance-based",
        "instance": {"cpu": cpu, "memory_gib": memory_gib, "concurrency": concurrency, "min_instances": min_instances},
        "usd_per_instance_second": per_instance_second,
        "measured": {"requests_per_s": rps, "mean_latency_s": mean_latency_s, "in_flight": in_flight},
        "prices": {
            **asdict(prices),
            "per_million_requests": PRICE_PER_MILLION_REQUESTS if request_based else 0.0,
            "source": "https://cloud.google.com/run/pricing (Tier 1, list prices in USD)",
        },
        "monthly_requests": monthly_requests,
    }
    if request_based:
        model = mean_latency_s / sharing * per_instance_second + PRICE_PER_MILLION_REQUESTS / 1e6
    else:
        # the instances this rate keeps busy, all the time
        model = busy * per_instance_second / rps if rps > 0 else math.inf
    out["model_usd_per_request"] = model
    out["usd_per_request"] = cost_per_request if cost_per_request is not None else model
    out["source"] = "--cost-per-request" if cost_per_request is not None else "model"
    if monthly_requests is None:
        out["monthly_usd"] = None
        return out
    if cost_per_request is not None or request_based:
        monthly = monthly_requests * out["usd_per_request"]
    else:
        average_rps = monthly_requests / SECONDS_PER_MONTH
        instances = max(min_instances, math.ceil(average_rps * mean_latency_s / concurrency) or 1)
        out["instances_all_month"] = instances
        monthly = instances * per_instance_second * SECONDS_PER_MONTH
    out["monthly_usd"] = monthly
    return out
