"""GkeAgent: one agent on an existing GKE cluster, with pulumi-kubernetes.

``pulumi_kubernetes`` is the ``gke`` extra: it is imported when a ``GkeAgent`` is built, never
when ``components`` is imported, so Cloud Run-only installs do not need it.

Sources (read 2026-11):

- Workload Identity Federation for GKE
  (https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity#kubernetes-sa-to-iam):
  the Kubernetes ServiceAccount is annotated ``iam.gke.io/gcp-service-account: <GSA email>`` and
  the GSA grants ``roles/iam.workloadIdentityUser`` to
  ``serviceAccount:<project>.svc.id.goog[<namespace>/<ksa>]``;
- Gateway API v1 ``HTTPRoute`` (https://gateway-api.sigs.k8s.io/reference/spec/#httproute):
  ``spec.parentRefs`` (the Gateway), ``spec.rules[].backendRefs[]`` with ``name``, ``port`` and
  ``weight``, "proportional ... the sum of weights of all backendRefs in this rule"; weight 0
  sends no traffic to that backend;
- Pod Security Standards, restricted profile
  (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted):
  ``runAsNonRoot``, ``allowPrivilegeEscalation: false``, ``seccompProfile.type: RuntimeDefault``,
  ``capabilities.drop: [ALL]``;
- GKE cluster credentials for a provider (the ``gke-gcloud-auth-plugin`` exec credential,
  https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin).

Tracks. The ``stable`` Deployment runs the stable release while a canary is on (``stable`` is
set), else the release itself (first deploy, promoted); the ``canary`` Deployment runs the
release and exists only while ``stable`` is set. The HTTPRoute splits between their Services:
no stable: ``[stable 100]``; stable + canary_percent p: ``[stable 100-p, canary p]`` (both refs
kept, 0 included, so a rollback is one weight change); p = 0 is the rolled-back state: only the
route changes (the canary Deployment keeps its pods until the release is replaced or the stable
is promoted, so rolling back is one resource update and rolling forward again is instant).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_gcp as gcp

from components.cloud_run import release_env
from components.contract import COMPONENT_TYPES, MANAGED_BY
from components.errors import ComponentError
from components.flags import require_flags_env
from components.gke_spec import CANARY, STABLE, GkeProbe, GkeSpec, track_service
from components.identity import AgentIdentity
from components.known import known_after
from components.spec import AgentSpec

__all__ = [
    "GkeAgent",
    "WORKLOAD_IDENTITY_ANNOTATION",
    "HTTPROUTE_API_VERSION",
    "gke_traffic",
    "route_backend_refs",
    "pod_security_context",
    "container_security_context",
]

WORKLOAD_IDENTITY_ANNOTATION = "iam.gke.io/gcp-service-account"
WORKLOAD_IDENTITY_ROLE = "roles/iam.workloadIdentityUser"
HTTPROUTE_API_VERSION = "gateway.networking.k8s.io/v1"
TRACK_LABEL = "agentstage.dev/track"
#: Writable scratch space, since the root filesystem is read-only.
TMP_VOLUME = "tmp"


def gke_traffic(spec: AgentSpec) -> list[tuple[str, int]]:
    """``[(track, weight)]`` of the HTTPRoute: see the module docstring."""
    if spec.stable is None:
        return [(STABLE, 100)]
    p = spec.canary_percent
    return [(STABLE, 100 - p), (CANARY, p)]


def route_backend_refs(spec: AgentSpec, service_name: str, port: int) -> list[dict[str, Any]]:
    """The HTTPRoute rule's ``backendRefs``: one per track's Service, weighted."""
    return [
        {"kind": "Service", "name": track_service(service_name, track), "port": port, "weight": weight}
        for track, weight in gke_traffic(spec)
    ]


def pod_security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(probe: GkeProbe, path: str, port: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "failureThreshold": probe.failure_threshold,
    }


def _kubeconfig(cluster: Any) -> str:
    """A kubeconfig for a GKE cluster (``gcp.container.get_cluster`` result) that authenticates
    with the ``gke-gcloud-auth-plugin``, as ``gcloud container clusters get-credentials`` writes."""
    ca = cluster.master_auths[0].cluster_ca_certificate if cluster.master_auths else ""
    context = f"gke_{cluster.project}_{cluster.location}_{cluster.name}"
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": context,
                    "cluster": {"server": f"https://{cluster.endpoint}", "certificate-authority-data": ca},
                }
            ],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
            "users": [
                {
                    "name": context,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "gke-gcloud-auth-plugin",
                            "provideClusterInfo": True,
                            "interactiveMode": "Never",
                        }
                    },
                }
            ],
        }
    )


class GkeAgent(pulumi.ComponentResource):
    """One agent on GKE: a Kubernetes provider for the cluster, the agent's Namespace, a
    ServiceAccount bound to the agent's Google service account (Workload Identity), a stable
    and (during a canary) a canary Deployment with a Service each, an HTTPRoute splitting
    traffic between them, an HPA per serving track, a PodDisruptionBudget and a default-deny
    NetworkPolicy with egress to DNS and ``gke.egress`` only.

    Outputs: ``url`` (in-cluster URL of the stable Service, resolved after the identity
    binding exists), ``service_name``, ``namespace``, ``release_revision`` /
    ``stable_revision`` (the tracks' Deployment names), ``service_account_email`` and
    ``live_traffic`` (the HTTPRoute's backendRefs as ``[{revision, percent, tag}]``)."""

    url: pulumi.Output[str]
    service_name: pulumi.Output[str]
    namespace: pulumi.Output[str]
    release_revision: pulumi.Output[str]
    stable_revision: pulumi.Output[str | None]
    service_account_email: pulumi.Output[str]
    live_traffic: pulumi.Output[list[dict[str, Any]]]

    def __init__(
        self,
        name: str,
        *,
        spec: AgentSpec,
        service_name: str,
        project: str,
        identity: AgentIdentity,
        labels: Mapping[str, str],
        extra_env: Mapping[str, pulumi.Input[str]] | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPES["GkeAgent"], name, None, opts)
        import pulumi_kubernetes as k8s  # the gke extra: imported only when a GKE agent is built

        if spec.gke is None:
            raise ComponentError("GkeAgent", name, "spec.gke is not set; runtime gke needs the cluster and Gateway")
        gke: GkeSpec = spec.gke
        extra = dict(extra_env or {})
        clash = sorted(set(extra) & set(spec.env))
        if clash:
            raise ComponentError("GkeAgent", name, f"extra_env sets {clash[0]}, which the agent's env sets too")
        namespace = gke.namespace or name
        child = pulumi.ResourceOptions(parent=self)

        # --- the cluster ------------------------------------------------------------------
        if gke.cluster is not None:
            cluster = gcp.container.get_cluster_output(
                project=gke.cluster.project or project,
                location=gke.cluster.location,
                name=gke.cluster.name,
                opts=pulumi.InvokeOptions(parent=self),
            )
            self.provider = k8s.Provider(
                f"{name}-k8s",
                kubeconfig=pulumi.Output.secret(cluster.apply(_kubeconfig)),
                enable_server_side_apply=True,
                opts=child,
            )
        else:
            self.provider = k8s.Provider(f"{name}-k8s", context=gke.context, enable_server_side_apply=True, opts=child)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=self.provider)

        base = {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            **{k: v for k, v in labels.items() if k != "release"},
        }

        def meta(obj: str, extra_labels: Mapping[str, str] | None = None, **more: Any) -> dict[str, Any]:
            return {"name": obj, "namespace": namespace, "labels": {**base, **(extra_labels or {})}, **more}

        self.namespace_resource = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={
                "name": namespace,
                "labels": {
                    **base,
                    # Pod Security Admission: refuse pods that are not "restricted"
                    "pod-security.kubernetes.io/enforce": "restricted",
                },
            },
            opts=k8s_opts,
        )
        ns_opts = pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[self.namespace_resource])

        # --- identity (Workload Identity) ---------------------------------------------------
        ksa = service_name
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-ksa",
            metadata=meta(ksa, annotations={WORKLOAD_IDENTITY_ANNOTATION: identity.email}),
            automount_service_account_token=False,
            opts=ns_opts,
        )
        account_id = known_after(identity.account, f"projects/{project}/serviceAccounts/{identity.email_address}")
        self.workload_identity = gcp.serviceaccount.IAMMember(
            f"{name}-workload-identity",
            service_account_id=account_id,
            role=WORKLOAD_IDENTITY_ROLE,
            member=f"serviceAccount:{project}.svc.id.goog[{namespace}/{ksa}]",
            opts=child,
        )

        # --- workloads ----------------------------------------------------------------------
        require_flags_env("GkeAgent", name, spec.features, extra)
        plain: dict[str, pulumi.Input[str]] = {**release_env(spec), **extra, **spec.env}
        traffic = gke_traffic(spec)
        images = {STABLE: (spec.stable or spec.release), CANARY: spec.release}
        self.deployments: dict[str, Any] = {}
        self.services: dict[str, Any] = {}
        self.autoscalers: dict[str, Any] = {}
        for track, weight in traffic:
            release = images[track]
            track_labels = {TRACK_LABEL: track, "release": release.slug}
            selector = {"app.kubernetes.io/name": name, TRACK_LABEL: track}
            env = {**plain, "AGENT_RELEASE": release.version}
            container = {
                "name": "agent",
                "image": release.image,
                "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
                "env": [{"name": k, "value": env[k]} for k in sorted(env)],
                "resources": {
                    "requests": {"cpu": gke.resources.cpu_request, "memory": gke.resources.memory_request},
                    "limits": {
                        "memory": gke.resources.memory_limit,
                        **({"cpu": gke.resources.cpu_limit} if gke.resources.cpu_limit else {}),
                    },
                },
                "startupProbe": _probe(gke.probes.startup, spec.health_path, spec.port),
                "readinessProbe": _probe(gke.probes.readiness, spec.health_path, spec.port),
                "livenessProbe": _probe(gke.probes.liveness, spec.health_path, spec.port),
                "securityContext": container_security_context(),
                "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
            }
            deployment_spec: dict[str, Any] = {
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {"labels": {**base, **track_labels}},
                    "spec": {
                        "serviceAccountName": ksa,
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security_context(),
                        "containers": [container],
                        "volumes": [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}}],
                        "nodeSelector": {"iam.gke.io/gke-metadata-server-enabled": "true"},
                    },
                },
            }
            self.deployments[track] = k8s.apps.v1.Deployment(
                f"{name}-{track}",
                metadata=meta(track_service(service_name, track), track_labels),
                spec=deployment_spec,
                opts=pulumi.ResourceOptions.merge(
                    ns_opts,
                    pulumi.ResourceOptions(depends_on=[self.service_account, self.workload_identity, *depends_on]),
                ),
            )
            self.services[track] = k8s.core.v1.Service(
                f"{name}-{track}-svc",
                metadata=meta(track_service(service_name, track), {TRACK_LABEL: track}),
                spec={
                    "type": "ClusterIP",
                    "selector": selector,
                    "ports": [{"name": "http", "port": gke.service_port, "targetPort": "http", "protocol": "TCP"}],
                },
                opts=ns_opts,
            )
            # every track keeps its autoscaler: a rollback changes the route's weights only
            self.autoscalers[track] = k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-{track}-hpa",
                metadata=meta(track_service(service_name, track), {TRACK_LABEL: track}),
                spec={
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": track_service(service_name, track),
                    },
                    "minReplicas": gke.min_replicas,
                    "maxReplicas": gke.max_replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": gke.target_cpu_utilization},
                            },
                        }
                    ],
                },
                opts=ns_opts,
            )

        self.disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta(service_name),
            spec={"minAvailable": gke.pdb_min_available, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}},
            opts=ns_opts,
        )
        egress: list[dict[str, Any]] = [
            {
                "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }
        ]
        for rule in gke.egress:
            allowed: dict[str, Any] = {"to": [{"ipBlock": {"cidr": rule.cidr}}]}
            if rule.ports:
                allowed["ports"] = [{"protocol": "TCP", "port": p} for p in rule.ports]
            egress.append(allowed)
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata=meta(service_name),
            spec={
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "policyTypes": ["Ingress", "Egress"],
                # ingress from the Gateway's proxies (any namespace) on the container port only
                "ingress": [{"ports": [{"protocol": "TCP", "port": spec.port}]}],
                "egress": egress,
            },
            opts=ns_opts,
        )
        refs = route_backend_refs(spec, service_name, gke.service_port)
        self.route = k8s.apiextensions.CustomResource(
            f"{name}-route",
            api_version=HTTPROUTE_API_VERSION,
            kind="HTTPRoute",
            metadata=meta(service_name),
            spec={
                "parentRefs": [
                    {
                        "group": "gateway.networking.k8s.io",
                        "kind": "Gateway",
                        "name": gke.gateway.name,
                        "namespace": gke.gateway.namespace,
                    }
                ],
                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": refs}],
            },
            opts=pulumi.ResourceOptions.merge(ns_opts, pulumi.ResourceOptions(depends_on=list(self.services.values()))),
        )

        stable_svc = f"http://{track_service(service_name, STABLE)}.{namespace}.svc.cluster.local"
        if gke.service_port != 80:
            stable_svc += f":{gke.service_port}"
        ready: list[pulumi.Input[Any]] = [stable_svc, self.workload_identity.id, self.route.id]
        ready += [g.id for g in identity.grants]
        self.url = pulumi.Output.all(*ready).apply(lambda values: values[0])
        self.service_name = pulumi.Output.from_input(service_name)
        self.namespace = pulumi.Output.from_input(namespace)
        self.release_revision = pulumi.Output.from_input(track_service(service_name, CANARY if spec.stable else STABLE))
        self.stable_revision = pulumi.Output.from_input(track_service(service_name, STABLE) if spec.stable else None)
        self.service_account_email = identity.email
        self.live_traffic = pulumi.Output.from_input(
            [
                {"revision": track_service(service_name, track), "percent": weight, "tag": None}
                for track, weight in traffic
            ]
        )
        self.register_outputs(
            {
                "url": self.url,
                "service_name": self.service_name,
                "namespace": self.namespace,
                "release_revision": self.release_revision,
                "stable_revision": self.stable_revision,
                "service_account_email": self.service_account_email,
                "live_traffic": self.live_traffic,
            }
        )
