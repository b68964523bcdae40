"""Checkov on the same infrastructure: the figure ``agentstage check`` is held to (issues 11 and 14).

Prints figures, asserts nothing.

    .venv/bin/python bench/checkov.py [--sizes 3,100] [--mix] [--repeat 1] [--syntax json,hcl] [--checkov PATH]

For each size a generated production stack (bench/stackgen.py, as bench/scale.py builds it;
``production`` as a size is the reference stack itself) is planned with ``agentstage preview
--json``, and the plan is written out as the same infrastructure for Checkov:

* every Google Cloud resource as Terraform JSON (``main-NNN.tf.json``, 100 resources a file:
  ``{"resource": {"<terraform type>": {"<name>": {...}}}}``), or with ``--syntax hcl`` the same in
  Terraform's native syntax (``main-NNN.tf``; nested objects as blocks, lists of objects as
  repeated blocks). pulumi-gcp is bridged from the Terraform google provider, so each Pulumi
  type token has exactly one Terraform type (``GCP_TYPES``); property names go from camelCase to
  snake_case, list properties Pulumi pluralised get their Terraform block name back
  (``_RENAMES``), map arguments (labels) keep their keys, nested objects stay nested blocks;
* ``time:index/sleep:Sleep`` as ``time_sleep`` (pulumiverse-time is bridged from hashicorp/time);
* every Kubernetes object (the GKE runtime) as the manifest it is (``manifests.yaml``, one YAML
  document each): a Pulumi Kubernetes resource's inputs *are* the manifest, which Checkov's
  kubernetes framework scans with its own checks; the Terraform kubernetes provider would
  reshape every list of objects (``containers`` -> repeated ``container`` blocks), for no extra
  check;
* not translated, counted and printed as skipped: component resources (``agentstage:...``), the
  stack, provider resources (in Terraform a ``provider`` block, not a resource) and dynamic
  resources (the Vertex AI deployed model: there is no Terraform resource for it). Values unknown
  during the preview are left out; ``[secret]`` stays as a placeholder string.

Then whole processes are timed, interleaved ``--repeat`` times on the same stack, as
bench/scale.py times them (``run_measured``: wall, CPU user+sys from ``wait4``, peak RSS of the
largest process and of the tree):

* ``agentstage check STACK --policy-config production.json --format json`` (plan + policy pack);
* ``checkov -d DIR --framework terraform_json kubernetes --skip-download --quiet --compact``.
  Checkov's ``terraform`` framework does not read ``.tf.json`` files (its directory loader skips
  them: bridgecrewio/checkov pull request 847, "Skip .tf.json files until they are truly
  supported"); Terraform JSON has its own framework, ``terraform_json`` (pull request 4626, "add
  Terraform JSON support"). With ``--syntax hcl``: ``--framework terraform kubernetes``, Checkov's
  main path (it builds its resource graph, which some checks need: CKV_GCP_73 on the Cloud Armor
  policy fails with an error under ``terraform_json`` and runs under ``terraform``).
  ``--skip-download`` keeps Checkov offline (no Prisma Cloud guidelines request).

One more, untimed Checkov run with ``-o json`` counts what Checkov reported: checks passed and
failed, the distinct resources they were about, and which check ids ran.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale import BIN, _command, run_measured  # noqa: E402
from bench.stackgen import CLOUD_RUN, MIXED, write_project  # noqa: E402

#: Pulumi type token -> Terraform resource type, for every gcp type in the reference stack and in
#: the generated stacks (all Cloud Run, and --mix). Source of each pair: pulumi-gcp's bridge
#: metadata (github.com/pulumi/pulumi-gcp, provider/cmd/pulumi-resource-gcp/bridge-metadata.json,
#: "auto-aliasing" -> "resources" -> "<terraform type>" -> "current": "<pulumi token>"), the table
#: the Terraform bridge keeps of which Terraform resource each Pulumi type is generated from.
GCP_TYPES = {
    "gcp:billing/budget:Budget": "google_billing_budget",
    "gcp:cloudrunv2/service:Service": "google_cloud_run_v2_service",
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": "google_cloud_run_v2_service_iam_member",
    "gcp:compute/backendService:BackendService": "google_compute_backend_service",
    "gcp:compute/globalAddress:GlobalAddress": "google_compute_global_address",
    "gcp:compute/globalForwardingRule:GlobalForwardingRule": "google_compute_global_forwarding_rule",
    "gcp:compute/managedSslCertificate:ManagedSslCertificate": "google_compute_managed_ssl_certificate",
    "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup": "google_compute_region_network_endpoint_group",
    "gcp:compute/securityPolicy:SecurityPolicy": "google_compute_security_policy",
    "gcp:compute/targetHttpsProxy:TargetHttpsProxy": "google_compute_target_https_proxy",
    "gcp:compute/uRLMap:URLMap": "google_compute_url_map",
    "gcp:logging/metric:Metric": "google_logging_metric",
    "gcp:modelarmor/template:Template": "google_model_armor_template",
    "gcp:monitoring/alertPolicy:AlertPolicy": "google_monitoring_alert_policy",
    "gcp:monitoring/dashboard:Dashboard": "google_monitoring_dashboard",
    "gcp:monitoring/genericService:GenericService": "google_monitoring_service",
    "gcp:monitoring/notificationChannel:NotificationChannel": "google_monitoring_notification_channel",
    "gcp:monitoring/slo:Slo": "google_monitoring_slo",
    "gcp:parametermanager/parameter:Parameter": "google_parameter_manager_parameter",
    "gcp:parametermanager/parameterVersion:ParameterVersion": "google_parameter_manager_parameter_version",
    "gcp:projects/iAMMember:IAMMember": "google_project_iam_member",
    "gcp:pubsub/topic:Topic": "google_pubsub_topic",
    "gcp:secretmanager/secretIamMember:SecretIamMember": "google_secret_manager_secret_iam_member",
    "gcp:serviceaccount/account:Account": "google_service_account",
    "gcp:serviceaccount/iAMMember:IAMMember": "google_service_account_iam_member",
    "gcp:vertex/aiEndpoint:AiEndpoint": "google_vertex_ai_endpoint",
    "gcp:vertex/aiEndpointIamMember:AiEndpointIamMember": "google_vertex_ai_endpoint_iam_member",
    "gcp:vertex/aiReasoningEngine:AiReasoningEngine": "google_vertex_ai_reasoning_engine",
    "gcp:vertex/aiReasoningEngineIamMember:AiReasoningEngineIamMember": "google_vertex_ai_reasoning_engine_iam_member",
    # pulumiverse-time is bridged from the hashicorp/time provider; its bridge metadata
    # (github.com/pulumiverse/pulumi-time, provider/cmd/pulumi-resource-time/bridge-metadata.json,
    # "renames" -> "resources") maps this token to time_sleep.
    "time:index/sleep:Sleep": "time_sleep",
}

#: Properties whose Pulumi name is the plural the bridge gave a repeated Terraform block or list
#: argument (Terraform ``env`` blocks are Pulumi's ``envs`` list). Read off the same bridge
#: metadata: these are the list fields of our plans whose snake_case name is not a field of the
#: Terraform schema there, while the singular is.
_RENAMES = {
    "google_cloud_run_v2_service": {"envs": "env", "traffics": "traffic"},
    "google_compute_backend_service": {"backends": "backend"},
    "google_compute_security_policy": {"rules": "rule"},
    "google_vertex_ai_endpoint": {"projectAllowlists": "project_allowlist"},
    "google_vertex_ai_reasoning_engine": {"envs": "env", "secretEnvs": "secret_env"},
}
#: Map arguments (string keys chosen by the user, not schema fields): their keys are copied as
#: they are. In the bridge metadata these are the object-valued fields with no entry (blocks have
#: one), e.g. ``labels`` of every labelled resource, Cloud Run's ``resources.limits``.
_MAPS = frozenset(
    {"labels", "user_labels", "label_extractors", "service_labels", "limits", "resource_limits", "triggers"}
)
#: Resources per Terraform file written.
_FILE_RESOURCES = 100
#: The plan's sentinel for a value unknown during the preview (agentstage/engine.py UNKNOWN).
_UNKNOWN = "[unknown]"
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _snake(key: str) -> str:
    return _CAMEL.sub(r"_\1", key).lower()


def _known(value: Any) -> Any:
    """``value`` without the parts unknown during the preview (left out, as a plan would)."""
    if isinstance(value, dict):
        return {k: _known(v) for k, v in value.items() if v != _UNKNOWN}
    if isinstance(value, list):
        return [_known(v) for v in value if v != _UNKNOWN]
    return value


def _terraform(value: Any, renames: dict[str, str]) -> Any:
    """Pulumi inputs -> Terraform arguments: snake_case names, Terraform's block names, map keys kept."""
    if isinstance(value, list):
        return [_terraform(v, renames) for v in value if v != _UNKNOWN]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, v in value.items():
        if v == _UNKNOWN:
            continue
        name = renames.get(key) or _snake(key)
        out[name] = _known(v) if name in _MAPS and isinstance(v, dict) else _terraform(v, renames)
    return out


def _hcl_value(value: Any) -> str:
    """An HCL expression for a JSON value. JSON string escapes are HCL's; ``${`` and ``%{`` would
    start a template, so they are doubled (developer.hashicorp.com/terraform/language/expressions/strings)."""
    if isinstance(value, str):
        return json.dumps(value).replace("${", "$${").replace("%{", "%%{")
    if isinstance(value, list):
        return "[" + ", ".join(_hcl_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_hcl_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # numbers, true, false, null


def _hcl_body(body: dict[str, Any], indent: str) -> list[str]:
    """Arguments as ``name = value``, nested objects as blocks, lists of objects as repeated blocks."""
    lines = []
    for name, value in body.items():
        if isinstance(value, dict) and name not in _MAPS:
            value = [value]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for block in value:
                lines += [f"{indent}{name} {{", *_hcl_body(block, indent + "  "), f"{indent}}}"]
        else:
            lines.append(f"{indent}{name} = {_hcl_value(value)}")
    return lines


def _skip_reason(resource: dict[str, Any]) -> str | None:
    kind = resource["type"]
    if not resource["custom"]:
        return "component resources and the stack (no cloud resource of their own)"
    if kind.startswith("pulumi:providers:"):
        return "provider resources (a provider block in Terraform, not a resource)"
    if kind.startswith("pulumi-python:dynamic"):
        return "dynamic resources (no Terraform resource: the Vertex AI deployed model)"
    if kind.startswith("kubernetes:") or kind in GCP_TYPES:
        return None
    return f"no Terraform type in GCP_TYPES: {kind}"


def translate(plan: dict[str, Any], dest: Path, syntax: str = "json") -> dict[str, Any]:
    """Write ``main-NNN.tf.json`` (``main-NNN.tf`` with ``syntax="hcl"``) and ``manifests.yaml`` for
    ``plan`` into ``dest``; what went where."""
    resources: dict[str, dict[str, Any]] = collections.defaultdict(dict)
    in_order: list[tuple[str, str, dict[str, Any]]] = []  # plan order: an agent's resources together
    manifests: list[dict[str, Any]] = []
    skipped: collections.Counter[str] = collections.Counter()
    for resource in plan["resources"]:
        reason = _skip_reason(resource)
        if reason:
            skipped[reason] += 1
        elif resource["type"].startswith("kubernetes:"):
            manifests.append(_known(resource["inputs"]))
        else:
            tf_type = GCP_TYPES[resource["type"]]
            body = _terraform(resource["inputs"], _RENAMES.get(tf_type, {}))
            # Terraform names: letters, digits, underscores and dashes, not starting with a digit.
            name = re.sub(r"[^A-Za-z0-9_-]", "_", resource["name"])
            name = name if re.match(r"[A-Za-z_]", name) else f"r_{name}"
            unique, n = name, 1
            while unique in resources[tf_type]:  # the same name under two parents
                n += 1
                unique = f"{name}_{n}"
            resources[tf_type][unique] = body
            in_order.append((tf_type, unique, body))
    dest.mkdir(parents=True, exist_ok=True)
    # Files of _FILE_RESOURCES resources, as a project splits its configuration: Checkov gives up
    # on a native-syntax file that takes more than 10 s to parse (HCL_PARSE_TIMEOUT_SEC), which a
    # single file of 100 agents does on this machine.
    for start in range(0, len(in_order), _FILE_RESOURCES):
        chunk = in_order[start : start + _FILE_RESOURCES]
        stem = f"main-{start // _FILE_RESOURCES:03d}"
        if syntax == "hcl":
            lines = []
            for tf_type, name, body in chunk:
                lines += [f'resource "{tf_type}" "{name}" {{', *_hcl_body(body, "  "), "}", ""]
            (dest / f"{stem}.tf").write_text("\n".join(lines))
        else:
            blocks: dict[str, dict[str, Any]] = collections.defaultdict(dict)
            for tf_type, name, body in chunk:
                blocks[tf_type][name] = body
            (dest / f"{stem}.tf.json").write_text(json.dumps({"resource": blocks}, indent=1))
    if manifests:
        yaml = YAML(typ="safe", pure=True)
        yaml.default_flow_style = False  # block style, as manifests are written by hand
        with (dest / "manifests.yaml").open("w") as fh:
            yaml.dump_all(manifests, fh)
    return {
        "plan": len(plan["resources"]),
        "terraform": sum(len(v) for v in resources.values()),
        "terraform_types": len(resources),
        "kubernetes": len(manifests),
        "skipped": skipped,
    }


def checkov_counts(stdout: str) -> dict[str, dict[str, Any]]:
    """Per Checkov framework: checks passed and failed, the resources they were about, check ids."""
    document = json.loads(stdout)
    reports = document if isinstance(document, list) else [document]
    counts = {}
    for report in reports:
        if "results" not in report:  # nothing scanned: Checkov prints only a summary
            continue
        results = report["results"]
        checked = results["passed_checks"] + results["failed_checks"]
        counts[report["check_type"]] = {
            "passed": len(results["passed_checks"]),
            "failed": len(results["failed_checks"]),
            # By where they are written: terraform_json names some resources "resource.<name>" (no type),
            # and the pod Checkov derives from a Deployment's template is that Deployment's lines.
            "resources": len({(c["file_path"], tuple(c["file_line_range"])) for c in checked}),
            "checks": collections.Counter(c["check_id"] for c in checked),
            "parsing_errors": report["summary"]["parsing_errors"],
            # Checkov's own count of what it scanned (its terraform_json runner reports 0)
            "scanned": report["summary"]["resource_count"],
        }
    return counts


def _checkov_command(checkov: str, directory: Path, syntax: str, *output: str) -> list[str]:
    frameworks = ["--framework", "terraform" if syntax == "hcl" else "terraform_json", "kubernetes"]
    return [checkov, "-d", str(directory), *frameworks, "--skip-download", *output]


def _resolve_checkov(given: str) -> str:
    found = shutil.which(given)
    if found:
        return found
    print(
        f"Checkov not found: {given!r} is not an executable (nor on PATH). Install it outside the project, in "
        "its own virtual environment (never in agentstage's):\n"
        "    python3 -m venv ~/checkov-venv && ~/checkov-venv/bin/pip install checkov\n"
        "then run this script with --checkov ~/checkov-venv/bin/checkov",
        file=sys.stderr,
    )
    raise SystemExit(2)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", default="3,100", help="agent counts of the generated stacks; 'production': the reference stack"
    )
    parser.add_argument("--mix", action="store_true", help="generated stacks mix the four runtimes (stackgen.MIXED)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="timed runs of each tool per size (the median is printed)"
    )
    parser.add_argument("--checkov", default="checkov", help="the Checkov executable (default: checkov on PATH)")
    parser.add_argument(
        "--syntax",
        default="json",
        help="json: Terraform JSON (main.tf.json, Checkov's terraform_json framework); hcl: native syntax "
        "(main.tf, Checkov's terraform framework); json,hcl: both, one row each",
    )
    parser.add_argument("--keep", type=Path, help="write the projects and translated directories here and keep them")
    args = parser.parse_args()
    syntaxes = [s for s in args.syntax.split(",") if s]
    if not syntaxes or set(syntaxes) - {"json", "hcl"}:
        parser.error(f"--syntax: {args.syntax!r}; allowed: json, hcl or json,hcl")
    checkov = _resolve_checkov(args.checkov)
    version = run_measured([checkov, "--version"])["stdout"].strip()
    cli = str(BIN / "agentstage")
    runtimes = MIXED if args.mix else CLOUD_RUN

    print(f"checkov {version}; agentstage check with the production policy config; runtimes: {', '.join(runtimes)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        for size in [s for s in args.sizes.split(",") if s]:
            if size == "production":
                project, stack, agents = ROOT, "production", "ref"
            else:
                project, stack = write_project(work / f"p{size}", int(size), runtimes)
                agents = size
            plan = json.loads(run_measured(_command(cli, "preview", project, stack))["stdout"])
            dirs = {}
            for syntax in syntaxes:
                dirs[syntax] = work / f"{syntax}-{stack}"
                if dirs[syntax].exists():
                    shutil.rmtree(dirs[syntax])
                written = translate(plan, dirs[syntax], syntax)
            skipped = ", ".join(f"{n} {why}" for why, n in sorted(written["skipped"].items()))
            print(
                f"\n{stack}: {written['plan']} plan resources -> {written['terraform']} Terraform resources "
                f"({written['terraform_types']} types), {written['kubernetes']} Kubernetes manifests; skipped: {skipped}"
            )
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            checks: list[dict[str, Any]] = []
            scans: dict[str, list[dict[str, Any]]] = {syntax: [] for syntax in syntaxes}
            for _ in range(args.repeat):  # interleaved: every tool sees the same machine load
                checks.append(run_measured(_command(cli, "check", project, stack), ok=(0, 1)))
                for syntax, directory in dirs.items():
                    command = _checkov_command(checkov, directory, syntax, "--quiet", "--compact")
                    scans[syntax].append(run_measured(command, ok=(0, 1)))
            summary = json.loads(checks[0]["stdout"])["summary"]
            rows.append(
                (
                    "agentstage check",
                    agents,
                    summary["resources"],
                    checks,
                    load,
                    f"{summary['policies']} policies on every resource, {summary['violations']} violations",
                )
            )
            for syntax, directory in dirs.items():
                counted = run_measured(_checkov_command(checkov, directory, syntax, "-o", "json"), ok=(0, 1))
                counts = checkov_counts(counted["stdout"])
                for framework, c in counts.items():
                    ids = ", ".join(f"{check} x{n}" for check, n in sorted(c["checks"].items())[:10])
                    ids += f" and {len(c['checks']) - 10} more" if len(c["checks"]) > 10 else ""
                    print(
                        f"  checkov {framework}: {c['passed']} passed + {c['failed']} failed checks on "
                        f"{c['resources']} resources (resource_count {c['scanned']}, {c['parsing_errors']} parsing "
                        f"errors); {ids}"
                    )
                print(f"  (the -o json run took {counted['wall']:.2f} s)")
                if any(c["parsing_errors"] for c in counts.values()):
                    print("  WARNING: Checkov could not parse every file: its figures are not for the whole stack")
                rows.append(
                    (
                        f"checkov ({syntax})",
                        agents,
                        written["terraform"] + written["kubernetes"],
                        scans[syntax],
                        load,
                        f"{sum(c['passed'] for c in counts.values())} passed + "
                        f"{sum(c['failed'] for c in counts.values())} failed checks on "
                        f"{sum(c['resources'] for c in counts.values())} resources",
                    )
                )

    print()
    print(
        f"{'tool':<17} {'agents':>6} {'resources':>9} {'wall s':>7} {'range':>11} {'cpu s':>7} {'max proc MiB':>12} "
        f"{'tree MiB':>8}  {'load before':<15} result"
    )
    for tool, agents, resources, runs, load, result in rows:
        print(
            f"{tool:<17} {agents:>6} {resources:>9} {_median(runs, 'wall'):>7.2f} "
            f"{min(r['wall'] for r in runs):>5.2f}-{max(r['wall'] for r in runs):<5.2f} {_median(runs, 'cpu'):>7.2f} "
            f"{max(r['maxrss_mib'] for r in runs):>12.0f} {max(r['tree_mib'] for r in runs):>8.0f}  {load:<15} {result}"
        )
    print()
    print(f"wall/cpu: median of {args.repeat} whole-process run(s), the tools interleaved; MiB the largest.")
    print("resources: what each tool was given: agentstage, the resources its policy pack analysed (plan and")
    print("default providers); Checkov, the translated Terraform resources and Kubernetes manifests. Checkov")
    print("has checks for few of our resource types: the result column says how many resources they were about.")


if __name__ == "__main__":
    main()
