"""Progressive delivery: Flagger (canary analysis over Istio) and its load tester, pinned in components/charts.py.

Only the values we change are set here, written against the charts of the Flagger v1.44.0 release tree
(../shared/upstream/flagger/v1.44.0/charts/flagger/values.yaml and charts/loadtester/values.yaml, the
latter chart versioned 0.38.0). Neither chart ships a values.schema.json.

CRDs: the flagger chart carries Canary, MetricTemplate and AlertProvider in its `crds/` directory
(identical to ../shared/upstream/flagger/v1.44.0/crds/crd.yaml, INDEX.json), which Helm 3 applies on
install, before any template, and waits for. `crd.create` stays false: it is the Helm 2 switch that
renders the same files again as templates, and on Helm 3 the install then fails with "CustomResourceDefinition
canaries.flagger.app exists and cannot be imported into the current release" (fluxcd/flagger#1199,
where the maintainer says to leave it off on Helm 3). Flagger itself exits at start when the Canary or
MetricTemplate CRD is not served (fluxcd/flagger#491, "Canary CRD is not registered"), so once the
atomic, awaited release is ready the CRDs exist: a Canary that `depends_on` the release is safe. Helm never
upgrades or deletes `crds/`, so (1) uninstalling Flagger leaves every Canary, and the `-primary`
Deployments Flagger made and owns through them, serving; (2) a Flagger pin bump whose crd.yaml changed needs
`kubectl apply -f https://raw.githubusercontent.com/fluxcd/flagger/<tag>/artifacts/flagger/crd.yaml`
before `pulumi up` (docs/platform.md).

The load tester gets a namespace of its own with Istio sidecar injection (components/charts.py says why).
Flagger has no sidecar and calls it as a webhook, which a STRICT-mTLS mesh (prod) would refuse, so a
workload PeerAuthentication makes the load tester's webhook port PERMISSIVE, the fix Flagger's maintainer
gives in fluxcd/flagger#239; a NetworkPolicy then admits that port only from Flagger's pods.

Alerts on a failed canary: Flagger's AlertProvider types are slack, msteams, discord, rocket and gchat
(the CRD's `spec.type` enum), none of them Alertmanager, and `eventWebhook` posts Flagger's own payload,
not Alertmanager's API. So a failed canary reaches Alertmanager through a Prometheus rule on the
`flagger_canary_status` gauge Flagger exports (Flagger's alerting docs, "Prometheus Alert Manager"):
`CANARY_FAILED_EXPR` below, for the alert-rules layer. The PodMonitor that scrapes Flagger keeps the
canary's own `namespace` label (`honorLabels`), so the rule can say which model failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.charts import CHART_PINS
from components.custom_resource import custom_resource
from components.helm import helm_release
from components.mesh import PEER_AUTHENTICATION_API_VERSION, PEER_AUTHENTICATION_KIND
from components.pod_security import (
    BASELINE,
    MESHED_LEVEL,
    MESHED_REPORT_LEVEL,
    RESTRICTED,
    labelled_namespace,
    pod_security_labels,
)
from components.registry import ImageMirror

FLAGGER_PIN = CHART_PINS["flagger"]
LOADTESTER_PIN = CHART_PINS["flagger-loadtester"]

FLAGGER_RELEASE = "flagger"
LOADTESTER_RELEASE = "flagger-loadtester"

# Flagger shifts traffic with Istio VirtualServices and reads Istio's request metrics.
MESH_PROVIDER = "istio"

# Flagger replicas per tier. Prod runs two with leader election (one reconciles, the other takes over
# within the lease) and a PodDisruptionBudget of one, so a node drain never leaves canaries unattended
# mid-analysis. One replica runs without leader election (the chart then uses the Recreate strategy, so
# two controllers never overlap during an upgrade) and without a PDB, which would block every drain.
# The same counts apply to the load tester: a webhook that cannot reach it counts as a failed check.
REPLICAS: Mapping[str, int] = {"dev": 1, "staging": 1, "prod": 2}


def chart_fullname(release_name: str, chart: str) -> str:
    """The name both charts give their objects (`flagger.fullname`, `loadtester.fullname` in each chart's
    templates/_helpers.tpl, with no fullnameOverride or nameOverride): the release name when it contains
    the chart's name, else `<release>-<chart>`, truncated to 63 characters."""
    name = release_name if chart in release_name else f"{release_name}-{chart}"
    return name[:63].rstrip("-")


# The load tester's Service: named `loadtester.fullname` (charts/loadtester/templates/service.yaml), on
# `service.port` (set below, so the URL and the values cannot disagree). Canaries name it in their webhooks.
LOADTESTER_SERVICE = chart_fullname(LOADTESTER_RELEASE, LOADTESTER_PIN.chart)
LOADTESTER_SERVICE_PORT = 80
LOADTESTER_URL = f"http://{LOADTESTER_SERVICE}.{LOADTESTER_PIN.namespace}/"
# The container port the Service targets (`http`, 8080 in charts/loadtester/templates/deployment.yaml),
# and the label its pods carry: `app: <loadtester.name>`, the chart's name.
LOADTESTER_CONTAINER_PORT = 8080
LOADTESTER_POD_LABELS: Mapping[str, str] = {"app": LOADTESTER_PIN.chart}
# Flagger's pods: `app.kubernetes.io/name: <flagger.name>` (charts/flagger/templates/deployment.yaml).
FLAGGER_POD_LABELS: Mapping[str, str] = {"app.kubernetes.io/name": FLAGGER_PIN.chart}

# The namespace label istiod's injector selects with the default revision (what components/mesh.py installs).
SIDECAR_INJECTION_LABELS: Mapping[str, str] = {"istio-injection": "enabled"}
# Every namespace carries its name as this label (Kubernetes >= 1.22), so a policy can name a namespace.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# The Istio sidecar's Prometheus port (`http-envoy-prom`), open to the monitoring namespace: the mesh's
# envoy-stats PodMonitor scrapes it on every sidecar (components/mesh.py, ENVOY_STATS_PORT).
SIDECAR_METRICS_PORTS = (15090,)

# Canary failure, for Prometheus rules: flagger_canary_status{name, namespace} is 0 while running,
# 1 after a promotion and 2 after a rollback (fluxcd/flagger pkg/metrics/recorder.go, SetStatus).
CANARY_STATUS_METRIC = "flagger_canary_status"
CANARY_FAILED_STATUS = 2
CANARY_FAILED_EXPR = f"{CANARY_STATUS_METRIC} == {CANARY_FAILED_STATUS}"


@dataclass(frozen=True)
class ProgressiveDeliveryArgs:
    environment: str  # dev | staging | prod
    metrics_server: str  # the Prometheus Flagger queries, e.g. components.observability.PROMETHEUS_URL
    system_node_selector: Mapping[str, str]
    # Where Prometheus runs (kube-prometheus-stack's namespace), allowed to scrape the load tester's sidecar.
    monitoring_namespace: str = CHART_PINS["kube-prometheus-stack"].namespace
    # A PodMonitor for Flagger needs the Prometheus Operator's CRDs (ours, or the cluster's own).
    pod_monitor: bool = True
    # What must be running first, where this stack installs it: the monitoring release (the PodMonitor
    # CRD, and the Prometheus Flagger queries) and istiod (Istio's CRDs, which Canaries turn into
    # VirtualServices, and the injector that gives the load tester its sidecar).
    monitoring: Sequence[pulumi.Resource] = field(default_factory=tuple)
    mesh: Sequence[pulumi.Resource] = field(default_factory=tuple)
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


def _check(args: ProgressiveDeliveryArgs) -> None:
    if args.environment not in REPLICAS:
        raise ValueError(f"environment {args.environment!r} is not one of {', '.join(REPLICAS)}")
    if not args.metrics_server.startswith(("http://", "https://")):
        raise ValueError(f"metrics_server {args.metrics_server!r} is not an http(s) URL")


def pod_disruption_budget(enabled: bool) -> dict[str, Any]:
    """Both charts' `podDisruptionBudget` (off by default): minAvailable only where a PDB is rendered, since
    each chart reads it inside `if podDisruptionBudget.enabled` and it would otherwise change nothing."""
    return {"enabled": True, "minAvailable": 1} if enabled else {"enabled": False}


def flagger_values(args: ProgressiveDeliveryArgs) -> dict[str, Any]:
    _check(args)
    replicas = REPLICAS[args.environment]
    highly_available = replicas > 1
    return {
        "meshProvider": MESH_PROVIDER,
        "metricsServer": args.metrics_server,
        # The chart's own Prometheus (for ingress controllers without one) would replace metricsServer
        # with itself (-metrics-server=http://<fullname>-prometheus:9090): off, we query ours.
        "prometheus": {"install": False},
        # CRDs come from the chart's crds/ directory; true would render them twice (module docstring).
        "crd": {"create": False},
        # A PodMonitor rather than the ServiceMonitor (which would also add a Service): kube-prometheus-stack
        # selects PodMonitors in every namespace without labels (components/observability.py), so
        # `additionalLabels` stays empty. honorLabels keeps the `namespace` label of flagger_canary_status
        # (the canary's) instead of renaming it exported_namespace under the target's flagger-system
        # (value added by fluxcd/flagger#1676).
        "podMonitor": {"enabled": args.pod_monitor, "honorLabels": True},
        "serviceMonitor": {"enabled": False},
        "leaderElection": {"enabled": highly_available, "replicaCount": replicas},
        "podDisruptionBudget": pod_disruption_budget(highly_available),
        "nodeSelector": dict(args.system_node_selector),
    }


def loadtester_values(args: ProgressiveDeliveryArgs) -> dict[str, Any]:
    _check(args)
    replicas = REPLICAS[args.environment]
    highly_available = replicas > 1
    values: dict[str, Any] = {
        "replicaCount": replicas,
        "service": {"port": LOADTESTER_SERVICE_PORT},
        "podDisruptionBudget": pod_disruption_budget(highly_available),
        "nodeSelector": dict(args.system_node_selector),
    }
    if highly_available:
        # The chart has no anti-affinity of its own (affinity: {}): spread the replicas over nodes.
        values["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": dict(LOADTESTER_POD_LABELS)},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }
    return values


def loadtester_namespace() -> dict[str, Any]:
    """The load tester's namespace: injected, so the commands it runs reach models over mTLS."""
    labels = {**SIDECAR_INJECTION_LABELS, **pod_security_labels(MESHED_LEVEL, MESHED_REPORT_LEVEL)}
    return {"name": LOADTESTER_PIN.namespace, "labels": labels}


def loadtester_peer_authentication() -> dict[str, Any]:
    """Accept Flagger's plain-text webhook calls on the load tester's port; every other port keeps the
    mesh's mode (STRICT in prod). portLevelMtls is keyed by the container port and needs a selector."""
    return {
        "apiVersion": PEER_AUTHENTICATION_API_VERSION,
        "kind": PEER_AUTHENTICATION_KIND,
        "metadata": {"name": LOADTESTER_SERVICE, "namespace": LOADTESTER_PIN.namespace},
        "spec": {
            "selector": {"matchLabels": dict(LOADTESTER_POD_LABELS)},
            "portLevelMtls": {str(LOADTESTER_CONTAINER_PORT): {"mode": "PERMISSIVE"}},
        },
    }


def loadtester_network_policy(args: ProgressiveDeliveryArgs) -> dict[str, Any]:
    """Ingress to the load tester: its webhook port from Flagger's pods only, the sidecar's metrics from
    Prometheus. Anyone who can reach the port can make it run a command (and, being in the mesh, call any
    model with its identity), and the PERMISSIVE port accepts plain text, so this is its authentication.
    Egress stays open: it must reach model Services in namespaces this layer does not know, DNS and istiod.
    Kubelet probes are allowed regardless (a pod's own node may always connect to it)."""
    _check(args)

    def namespace(name: str) -> dict[str, Any]:
        return {"matchLabels": {NAMESPACE_NAME_LABEL: name}}

    return {
        "name": LOADTESTER_SERVICE,
        "namespace": LOADTESTER_PIN.namespace,
        "spec": {
            "podSelector": {"matchLabels": dict(LOADTESTER_POD_LABELS)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": namespace(FLAGGER_PIN.namespace),
                            "podSelector": {"matchLabels": dict(FLAGGER_POD_LABELS)},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": LOADTESTER_CONTAINER_PORT}],
                },
                {
                    "from": [{"namespaceSelector": namespace(args.monitoring_namespace)}],
                    "ports": [{"protocol": "TCP", "port": port} for port in SIDECAR_METRICS_PORTS],
                },
            ],
        },
    }


class ProgressiveDelivery(pulumi.ComponentResource):
    """Flagger (Istio provider, our Prometheus) in flagger-system and its load tester, in the mesh, in
    flagger-loadtester. Canaries depend on `release` (the CRDs) and `loadtester`, and call `loadtester_url`."""

    release: k8s.helm.v3.Release  # Flagger, with the Canary, MetricTemplate and AlertProvider CRDs
    loadtester: k8s.helm.v3.Release
    loadtester_namespace: k8s.core.v1.Namespace
    loadtester_peer_authentication: k8s.apiextensions.CustomResource
    loadtester_network_policy: k8s.networking.v1.NetworkPolicy
    namespace: str  # Flagger's
    loadtester_url: str

    def __init__(self, name: str, args: ProgressiveDeliveryArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:ProgressiveDelivery", name, {}, opts)
        _check(args)
        self.namespace = FLAGGER_PIN.namespace
        self.loadtester_url = LOADTESTER_URL

        def after(*dependencies: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=list(dependencies))

        # Baseline: Flagger runs as root without a seccomp profile (chart defaults).
        flagger_namespace = labelled_namespace(
            f"{name}-flagger-namespace", FLAGGER_PIN.namespace, BASELINE, after(), report=RESTRICTED
        )
        self.release = helm_release(
            f"{name}-flagger",
            FLAGGER_PIN,
            flagger_values(args),
            after(flagger_namespace, *args.monitoring, *args.mesh),
            release_name=FLAGGER_RELEASE,
            image_mirror=args.image_mirror,
        )

        # Created here rather than by the release: it carries the injection label, which must be on the
        # namespace before the first pod is admitted, or that pod runs without a sidecar (and without mTLS).
        namespace = loadtester_namespace()
        self.loadtester_namespace = k8s.core.v1.Namespace(
            f"{name}-loadtester-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace["name"], labels=namespace["labels"]),
            opts=pulumi.ResourceOptions(parent=self),
        )
        policy = loadtester_network_policy(args)
        self.loadtester_network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-loadtester-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=policy["name"], namespace=policy["namespace"]),
            spec=policy["spec"],
            opts=after(self.loadtester_namespace),
        )
        # After istiod (itself after istio-base): the CRD exists and istiod's validating webhook answers.
        peer_authentication = loadtester_peer_authentication()
        self.loadtester_peer_authentication = custom_resource(
            f"{name}-loadtester-mtls",
            peer_authentication,
            after(self.loadtester_namespace, *args.mesh),
        )
        # After istiod, whose injector adds the sidecar, and after the policies that let Flagger reach it,
        # so a load tester that is ready is one Flagger can call.
        self.loadtester = helm_release(
            f"{name}-loadtester",
            LOADTESTER_PIN,
            loadtester_values(args),
            after(
                self.loadtester_namespace,
                self.loadtester_network_policy,
                self.loadtester_peer_authentication,
                *args.mesh,
            ),
            release_name=LOADTESTER_RELEASE,
            image_mirror=args.image_mirror,
        )

        self.register_outputs(
            {
                "release": self.release.name,
                "loadtester": self.loadtester.name,
                "loadtesterNamespace": self.loadtester_namespace.metadata.name,
                "loadtesterUrl": self.loadtester_url,
            }
        )
