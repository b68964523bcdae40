"""Generate the stack config reference (docs/config.md) from the spec models themselves,
so the documentation cannot drift from what is validated.

    python -m agentstage.reference > docs/config.md
"""

from __future__ import annotations

import sys
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from agentstage.config import config_key
from components.spec import PlatformSpec


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    out: list[type[BaseModel]] = []
    for arg in get_args(tp):
        out.extend(_models_in(arg))
    return out


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    if origin is dict:
        return "map"
    if origin is list:
        return "list"
    args = [a for a in get_args(tp) if a is not type(None)]
    if args and origin is not None and str(origin).endswith("Literal"):
        return " \\| ".join(str(a) for a in get_args(tp))
    if args and len(args) == 1:
        return _type_name(args[0])
    return getattr(tp, "__name__", str(tp)).replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str, top: bool) -> list[tuple[str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        key = config_key(name) if top else f"{prefix}.{name}"
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        desc = desc.replace("<", "&lt;").replace(">", "&gt;")
        rows.append((key, _type_name(field.annotation), desc))
        origin = get_origin(field.annotation)
        for sub in _models_in(field.annotation):
            sub_prefix = f"{key}.<name>" if origin is dict else key
            rows.extend(_rows(sub, sub_prefix, False))
    return rows


#: The Google Cloud rules the config models enforce beyond each value's own format: (rule,
#: the key that names it in the error, the source). tests/test_cloud_rules.py holds one test
#: per rule with its exact message.
CLOUD_RULES = [
    (
        "CPU below 1 (80m..990m in steps of 10m) needs scaling.concurrency 1, at most 1Gi of memory (512Mi below "
        "500m); agentstage then sets CPU only during requests and the first generation execution environment",
        "resources.cpu, resources.memory, scaling.concurrency",
        "[Cloud Run: CPU limits](https://cloud.google.com/run/docs/configuring/services/cpu)",
    ),
    (
        "More than 4/8/16/24 GiB of memory needs 2/4/6/8 CPU; 4 CPU needs at least 2Gi, 6 and 8 CPU at least 4Gi",
        "resources.memory",
        "[Cloud Run: memory limits](https://cloud.google.com/run/docs/configuring/services/memory-limits)",
    ),
    (
        "Probes: startup delay 0..240 s, period 1..240 s and failure_threshold x period <= 240 s; liveness delay and "
        "period up to 3600 s; timeout <= period",
        "probes.*",
        "[Cloud Run: health checks](https://cloud.google.com/run/docs/configuring/healthchecks), "
        "run v2 `GoogleCloudRunV2Probe`",
    ),
    (
        "Env vars: PORT, K_SERVICE, K_REVISION, K_CONFIGURATION are Cloud Run's; at most 1000 per container; a value "
        "at most 32768 bytes",
        "env, secrets",
        "[Cloud Run: container contract](https://cloud.google.com/run/docs/reference/container-contract), "
        "[environment variables](https://cloud.google.com/run/docs/configuring/services/environment-variables)",
    ),
    (
        "MODEL_ARMOR_TEMPLATE and names starting AGENT_, AGENTSTAGE_, OTEL_, FEATURE_ are set by agentstage: a user "
        "env var or secret with such a name would be a duplicate env name",
        "env, secrets",
        "agentstage (duplicate env names)",
    ),
    (
        "A revision name is <service>-<suffix>, a DNS label of at most 63 characters; the same name with another "
        "template is a 409. agentstage names revisions <service>-<version slug>-<template digest>; stable and "
        "release versions must not share a slug; a recorded stable_revision must belong to the service",
        "stable.version, stable_revision",
        "run v2 `RevisionTemplate.revision`; the API's 409 \"Revision named ... "
        'with different configuration already exists"',
    ),
    (
        "A traffic tag and the service name together at most 46 characters (the canary tag is `canary`)",
        "agents.<name>",
        'gcloud run: "Combined traffic tag and service name cannot exceed 46 characters"',
    ),
    (
        "At most 64 labels per resource (agentstage sets 4)",
        "labels",
        "[Resource Manager: labels](https://cloud.google.com/resource-manager/docs/creating-managing-labels)",
    ),
    (
        "Model Armor runs in us, eu and its regions only",
        "guardrails.location (or gcp:region)",
        "[Model Armor locations](https://cloud.google.com/model-armor/locations)",
    ),
    (
        "Cloud Armor rate limits: intervals of 10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700 or 3600 s; "
        "ban durations of 60..3600 s from the same steps; at most 1,000,000 requests per interval for a throttle rule "
        "and 10,000 for a rate-based ban; deny with 403, 404, 429 or 502; keys IP, XFF_IP, HTTP_HEADER, ALL",
        "rate_limit.*",
        "[Cloud Armor: rate limiting](https://cloud.google.com/armor/docs/rate-limiting-overview), compute v1 "
        "`SecurityPolicyRuleRateLimitOptions`",
    ),
    (
        "A Google-managed certificate covers 1..100 domains, no wildcard; a serverless NEG reaches Cloud Run from "
        "outside only with ingress internal-and-cloud-load-balancing",
        "load_balancer.domains, ingress",
        "[Google-managed SSL certificates](https://cloud.google.com/load-balancing/docs/ssl-certificates/google-managed-certs), "
        "[Cloud Run: ingress](https://cloud.google.com/run/docs/securing/ingress)",
    ),
]


def key_anchor(key: str) -> str:
    """The HTML id of a key's row, so other pages link to one key
    (``config.md#agents.name.scaling``): the key without the project namespace, ``<name>``
    as ``name``, and ``gcp:project`` as ``gcp-project`` (a colon is not usable in a link)."""
    namespace, _, rest = key.partition(":")
    rest = rest.replace("<name>", "name")
    return f"gcp-{rest}" if namespace == "gcp" else rest


def render() -> str:
    lines = [
        "# Stack config reference",
        "",
        "Generated from the spec models (`python -m agentstage.reference > docs/config.md`);",
        "a test keeps it in step with them. Unknown keys are errors. Keys under `gcp:` are the",
        "provider's own; every other key is in the project's namespace, `agent-platform:`.",
        "",
        "| key | type | meaning and default |",
        "|---|---|---|",
    ]
    for key, type_, desc in _rows(PlatformSpec, "", True):
        lines.append(f'| <a id="{key_anchor(key)}"></a>`{key}` | {type_} | {desc} |')
    lines += [
        "",
        "## Rules Google Cloud enforces, checked before any resource exists",
        "",
        "Values Google Cloud would refuse are config errors (exit 2, naming the key), not deploy-time failures.",
        "Keys are relative to `agent-platform:agents.<name>` unless they start with a namespace.",
        "",
        "| rule | key | source |",
        "|---|---|---|",
    ]
    for rule, key, source in CLOUD_RULES:
        lines.append(
            f"| {rule.replace('<', '&lt;').replace('>', '&gt;')} | {key.replace('<', '&lt;').replace('>', '&gt;')} | {source} |"
        )
    lines += ["", *REFUSED]
    return "\n".join(lines) + "\n"


#: How the file and the values are read, before the spec sees them (agentstage/inputs.py,
#: agentstage/config.py, components/specbase.py).
REFUSED = [
    "## What is refused",
    "",
    "Each of these is a config error (exit 2) naming the file, key and line:",
    "",
    "- **Not plain YAML data**: a date (`version: 2026-01-01`: quote it), `!!binary`, `!!set`, `!!omap`, a custom "
    "tag, a key that YAML reads as a boolean, null or number (`true:`, `null:`, `1:`: quote it), a complex key, "
    "a key written twice, a value its explicit tag does not fit (`!!int a`).",
    "- **Too large**: a file over 32 MiB, aliases expanding to more than 2,000,000 values, nesting deeper than "
    "64 levels, a string over 65,536 characters, a string with a control character (NUL, escape...).",
    "- **Not UTF-8**: UTF-16/32 (with a byte-order mark) or any other encoding; a UTF-8 BOM is fine.",
    '- **Coercions**: the spec is strict about types. `true` is not a number, `"no"` is not a boolean, `"5"` is '
    "not a number; an unquoted `version: 1.10` is the number 1.1 and is refused with a hint to quote it.",
    "- **Keys nothing reads**: a namespace other than the project's, `gcp:`, `pulumi:` and `kubernetes:` (a typo "
    "such as `agent-platfrom:` is named, with the key it is closest to); a `gcp:` key the installed Google "
    "provider does not declare (`gcp:regoin`); a bare key and its namespaced twin both set (`environment` and "
    "`agent-platform:environment`); gates for an agent the stack does not have.",
    "- **Regions** where Cloud Run does not run services (https://cloud.google.com/run/docs/locations).",
    "",
    "A stack whose config is larger than 128 KiB as JSON checks here, with a warning: the Pulumi CLI hands a Python",
    "program and policy pack their config in one environment variable, which Linux refuses past that size.",
]


if __name__ == "__main__":
    sys.stdout.write(render())
