"""Rules for agents on GKE (``runtime: gke``): the Kubernetes objects of ``components/gke.py``.

In one module beside the areas because they read resource types only this runtime creates
(pulumi-kubernetes ``kubernetes:*`` objects). Sources (read 2026-11):

- ``gke-pod-security`` (security): the Pod Security Standards' restricted profile
  (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted):
  ``runAsNonRoot: true``, ``seccompProfile.type`` RuntimeDefault or Localhost,
  ``allowPrivilegeEscalation: false``, ``capabilities.drop`` ALL; its baseline profile refuses
  ``hostNetwork``/``hostPID``/``hostIPC``, ``hostPath`` volumes and ``privileged``; plus a
  read-only root filesystem (CIS GKE Benchmark 5.7.x / Checkov CKV_K8S_22);
- ``gke-image-digest`` (security): each container image pinned by ``@sha256:`` digest, never a
  bare or ``:latest`` tag (Binary Authorization / Checkov CKV_K8S_14, CKV_K8S_43);
- ``httproute-weights`` (release): a Gateway API HTTPRoute rule's ``backendRefs`` weights sum to
  100, so each weight reads as the percent of traffic (the Gateway API only requires
  proportions, https://gateway-api.sigs.k8s.io/reference/spec/#httpbackendref; an unset weight
  is 1);
- ``gke-workload-identity`` (identity, stack): every pod runs as its own Kubernetes
  ServiceAccount (not ``default``) annotated ``iam.gke.io/gcp-service-account`` with a dedicated
  Google service account, never the node's
  (https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity).
"""

from __future__ import annotations

import re
from typing import Any

from helpers import UNKNOWN, cannot_judge, default_account_kind, get, items, number
from pulumi_policy import (
    PolicyComplianceFramework,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

#: Workload types whose pod template is at ``spec.template.spec`` (Pod: ``spec``).
POD_TEMPLATES = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
}
HTTPROUTES = (
    "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
    "kubernetes:gateway.networking.k8s.io/v1beta1:HTTPRoute",
)
KSA = "kubernetes:core/v1:ServiceAccount"
WI_ANNOTATION = "iam.gke.io/gcp-service-account"
PSS = "Kubernetes Pod Security Standards"
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_GSA = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9.:]*\.iam\.gserviceaccount\.com$")


def _containers(pod: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        found = items(get(pod, field))
        if found is UNKNOWN:
            out.append((field, UNKNOWN))
            continue
        out += [(f"{field}[{i}]", c) for i, c in enumerate(found)]
    return out


# --- gke-pod-security ------------------------------------------------------------------------


def _pod_security(args: ResourceValidationArgs, report: ReportViolation) -> None:
    path = POD_TEMPLATES.get(args.resource_type)
    if path is None:
        return
    pod = get(args.props, *path)
    if pod is UNKNOWN:
        report(cannot_judge("the pod's security settings", ".".join(path)))
        return
    if pod is None:
        return
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        value = get(pod, flag)
        if value is True:
            report(f"{flag} is true, so the pod shares the node's namespaces; remove {flag}.")
        elif value is UNKNOWN:
            report(cannot_judge(f"whether the pod sets {flag}", flag))
    volumes = items(get(pod, "volumes"))
    for i, volume in enumerate([] if volumes is UNKNOWN else volumes):
        if volume is UNKNOWN or get(volume, "hostPath") is not None:
            report(
                f"volumes[{i}] mounts a hostPath (or is unknown), which exposes the node's filesystem; use an "
                "emptyDir or a PersistentVolumeClaim instead."
            )
    pod_nonroot = get(pod, "securityContext", "runAsNonRoot")
    pod_seccomp = get(pod, "securityContext", "seccompProfile", "type")
    for where, c in _containers(pod):
        if c is UNKNOWN:
            report(cannot_judge("the containers' security settings", where))
            continue
        sc = get(c, "securityContext")
        nonroot = get(sc, "runAsNonRoot")
        nonroot = pod_nonroot if nonroot is None else nonroot
        seccomp = get(sc, "seccompProfile", "type")
        seccomp = pod_seccomp if seccomp is None else seccomp
        drop = items(get(sc, "capabilities", "drop"))
        checks = [
            (nonroot is True, nonroot, "runAsNonRoot is not true (pod or container); set runAsNonRoot: true"),
            (
                seccomp in ("RuntimeDefault", "Localhost"),
                seccomp,
                "seccompProfile.type is not RuntimeDefault; set seccompProfile: {type: RuntimeDefault}",
            ),
            (
                get(sc, "allowPrivilegeEscalation") is False,
                get(sc, "allowPrivilegeEscalation"),
                "allowPrivilegeEscalation is not false; set it to false",
            ),
            (
                get(sc, "readOnlyRootFilesystem") is True,
                get(sc, "readOnlyRootFilesystem"),
                "readOnlyRootFilesystem is not true; set it, with an emptyDir for scratch space",
            ),
            (
                drop is not UNKNOWN and "ALL" in drop,
                drop,
                "capabilities.drop does not hold ALL; set capabilities: {drop: [ALL]}",
            ),
            (get(sc, "privileged") is not True, get(sc, "privileged"), "privileged is true; remove it"),
        ]
        for ok, value, message in checks:
            if value is UNKNOWN:
                report(cannot_judge(f"the security settings of {where}", f"{where}.securityContext"))
                break
            if not ok:
                report(f"{where}: {message}.")


gke_pod_security = ResourceValidationPolicy(
    name="gke-pod-security",
    description="Checks that GKE agent pods meet the restricted Pod Security Standard: non-root, RuntimeDefault seccomp, no privilege escalation, all capabilities dropped, read-only root filesystem, no host namespaces, hostPath volumes or privileged containers.",
    validate=_pod_security,
    severity=Severity.CRITICAL,
    framework=PolicyComplianceFramework(name=PSS, reference="restricted"),
    tags=["security", "gke"],
    remediation_steps="Build the workload with agentstage's GkeAgent, which sets the restricted security context.",
)


# --- gke-image-digest -------------------------------------------------------------------------


def _image_digest(args: ResourceValidationArgs, report: ReportViolation) -> None:
    path = POD_TEMPLATES.get(args.resource_type)
    if path is None:
        return
    pod = get(args.props, *path)
    if pod is None or pod is UNKNOWN:
        return
    for where, c in _containers(pod):
        image = get(c, "image") if c is not UNKNOWN else UNKNOWN
        if image is UNKNOWN:
            report(cannot_judge(f"whether {where} is pinned by digest", f"{where}.image"))
        elif not isinstance(image, str) or not _DIGEST.search(image):
            tag = " (the moving :latest tag)" if isinstance(image, str) and image.endswith(":latest") else ""
            report(
                f"{where}.image {image}{tag} is not pinned by digest, so a re-push changes what runs; "
                "use <image>@sha256:<digest>."
            )


gke_image_digest = ResourceValidationPolicy(
    name="gke-image-digest",
    description="Checks that every container image of a GKE workload is pinned by @sha256 digest, never by a tag such as :latest.",
    validate=_image_digest,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name="Checkov", reference="CKV_K8S_14, CKV_K8S_43"),
    tags=["security", "gke", "supply-chain"],
    remediation_steps="Set agents.<name>.release.image to <image>@sha256:<digest>.",
)


# --- httproute-weights ------------------------------------------------------------------------


def _route_weights(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in HTTPROUTES:
        return
    rules = items(get(args.props, "spec", "rules"))
    if rules is UNKNOWN:
        report(cannot_judge("the HTTPRoute's traffic split", "spec.rules"))
        return
    for i, rule in enumerate(rules):
        refs = items(get(rule, "backendRefs"))
        if refs is UNKNOWN:
            report(cannot_judge("the HTTPRoute's traffic split", f"spec.rules[{i}].backendRefs"))
            continue
        if not refs:
            continue
        weights = [number(get(r, "weight")) for r in refs]
        if any(w is UNKNOWN for w in weights):
            report(cannot_judge("the HTTPRoute's traffic split", f"spec.rules[{i}].backendRefs[].weight"))
            continue
        total = sum(1.0 if w is None else w for w in weights)
        if total != 100:
            report(
                f"spec.rules[{i}].backendRefs weights sum to {total:g}, not 100, so they do not read as percents "
                "of traffic; set weights that sum to 100 (agentstage: release 100, or stable 100-p and canary p)."
            )


httproute_weights = ResourceValidationPolicy(
    name="httproute-weights",
    description="Checks that the backendRefs weights of each HTTPRoute rule sum to 100, so the traffic split reads as percents.",
    validate=_route_weights,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name="Gateway API", reference="HTTPBackendRef.weight"),
    tags=["release", "gke"],
    remediation_steps="Let agentstage render the route from release, stable and rollout.canary_percent.",
)


# --- gke-workload-identity --------------------------------------------------------------------


def _workload_identity(args: StackValidationArgs, report: ReportViolation) -> None:
    accounts: dict[tuple[Any, Any], Any] = {}
    for r in args.resources:
        if r.resource_type == KSA:
            key = (get(r.props, "metadata", "namespace"), get(r.props, "metadata", "name"))
            accounts[key] = r
    judged: set[tuple[Any, Any]] = set()  # a ServiceAccount is judged once, however many workloads use it
    for r in args.resources:
        path = POD_TEMPLATES.get(r.resource_type)
        if path is None:
            continue
        pod = get(r.props, *path)
        if pod is None or pod is UNKNOWN:
            continue
        name = get(pod, "serviceAccountName")
        if name is UNKNOWN:
            report(cannot_judge("which ServiceAccount the pods run as", "serviceAccountName"), r.urn)
            continue
        if name in (None, "", "default"):
            report(
                "the pods run as the namespace's default ServiceAccount, which has no Workload Identity binding, "
                "so Google API calls use the node's service account; set serviceAccountName to the agent's own "
                f"ServiceAccount annotated {WI_ANNOTATION}.",
                r.urn,
            )
            continue
        ksa = accounts.get((get(r.props, "metadata", "namespace"), name))
        if ksa is None:
            report(
                f"the pods run as ServiceAccount {name}, which this stack does not create, so its Workload "
                f"Identity binding cannot be checked; create it here annotated {WI_ANNOTATION}.",
                r.urn,
            )
            continue
        key = (get(r.props, "metadata", "namespace"), name)
        if key in judged:
            continue
        judged.add(key)
        email = get(ksa.props, "metadata", "annotations", WI_ANNOTATION)
        if email is UNKNOWN:
            continue  # the agent's Google account is created by this update: a dedicated account
        if not isinstance(email, str) or not _GSA.match(email) or default_account_kind(email):
            report(
                f"ServiceAccount {name} is not annotated {WI_ANNOTATION} with a dedicated Google service account "
                f"(found {email!r}), so the pods fall back to the node's identity; annotate it with the agent's "
                "own account (<id>@<project>.iam.gserviceaccount.com).",
                ksa.urn,
            )


gke_workload_identity = StackValidationPolicy(
    name="gke-workload-identity",
    description="Checks that GKE agent pods run as their own Kubernetes ServiceAccount bound by Workload Identity to a dedicated Google service account, never as the default ServiceAccount or the node's account.",
    validate=_workload_identity,
    severity=Severity.HIGH,
    framework=PolicyComplianceFramework(name="CIS GKE Benchmark", reference="5.2.1 (Workload Identity)"),
    tags=["identity", "gke"],
    remediation_steps="Build the workload with agentstage's GkeAgent, which creates and binds the ServiceAccount.",
)


POLICIES = [gke_pod_security, gke_image_digest, httproute_weights, gke_workload_identity]
