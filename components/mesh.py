"""Istio: CRDs (istio-base), the control plane (istiod) and the ingress gateway, pinned in components/charts.py.

Only the values we change are set here, written against the 1.28.10 charts
(../shared/upstream/istio/1.28.10/charts/{base,istiod,gateway}/values.yaml and the gateway's
values.schema.json). Istio's charts nest their defaults under `_internal_defaults_do_not_set` and merge
top-level values over them, so every value below is set at the top level, as a user sets it.

Order: istio-base (the CRDs, as templates: `base.enableCRDTemplates` defaults to true), then istiod,
then the gateway, whose pods get their proxy configuration from istiod's injector, and, in prod, the
mesh-wide PeerAuthentication, which needs both the CRD (base) and istiod's validating webhook serving.
Each is expressed with `depends_on`, and each Release is atomic and awaited, so on `pulumi up` a
dependant starts only after what it needs is installed and ready.

Preview of an empty environment (pulumi-kubernetes 4.x, pulumi/pulumi-kubernetes#1712, #3247): no
resource option is needed. The PeerAuthentication is a plain `apiextensions.CustomResource`, and the
provider's `Check` does not fail on a kind the API server does not know (it skips OpenAPI validation
unless `rejectUnknownResources` is set) and `Create` during preview returns the inputs unchanged when
`!k.gvkExists(inputs)` instead of a server dry-run (provider/pkg/provider/provider.go, Create: "Skip
if ... the resource GVK does not exist"). On a fresh environment the cluster does not even exist at
preview, so the provider is unconfigured and previews everything from inputs anyway. What does fail at
preview is a *component* that must resolve the kind's scope early: `helm.v4.Chart` / `yaml.v2` children
("failed to determine if the following GVK is namespaced", #3176, #3247), because the provider's CRD
cache (#2904) only learns CRDs declared as Pulumi resources, never those inside a Release. So the
resource is a CustomResource, not a ConfigGroup, and it names its namespace explicitly (Check then
never asks the server whether the kind is namespaced). #1712 (a Release whose templates use the CRDs
it installs itself) was fixed in the provider before Release went GA; istio-base has no such templates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.charts import CHART_PINS
from components.custom_resource import custom_resource
from components.helm import helm_release
from components.pod_security import BASELINE, RESTRICTED, labelled_namespace
from components.registry import ImageMirror

BASE_PIN = CHART_PINS["istio-base"]
ISTIOD_PIN = CHART_PINS["istiod"]
GATEWAY_PIN = CHART_PINS["istio-gateway"]
# Where every sidecar fetches its configuration from istiod (XDS over mTLS): Istio's "Ports used by Istio".
ISTIOD_XDS_PORT = 15012
CLOUDS = ("aws", "gcp", "existing")

# The release names Istio's install guide uses. The gateway's name matters beyond taste: its pods get
# `istio: <release name without "istio-">` (gateway chart templates/_helpers.tpl, gateway.selectorLabels),
# and net-istio's Gateways and its knative-local-gateway Service select `istio: ingressgateway`
# (components/charts.py, the "istio-gateway" pin). The label is also set as a value (GATEWAY_LABELS), so
# a rename of the release cannot silently break that selection.
BASE_RELEASE = "istio-base"
ISTIOD_RELEASE = "istiod"
GATEWAY_RELEASE = "istio-ingressgateway"
GATEWAY_SELECTOR: Mapping[str, str] = {"istio": "ingressgateway"}
# `labels` replaces nothing (Helm merges maps), so the chart's own `istio.io/dataplane-mode: none`
# stays; it is restated anyway so the values say every label the gateway pods carry.
GATEWAY_LABELS: Mapping[str, str] = {
    **GATEWAY_SELECTOR,
    "istio.io/dataplane-mode": "none",
}

# istiod and gateway replicas per tier. Prod runs two of each with a PodDisruptionBudget of one, so a
# node drain or zone loss keeps the control plane answering (new proxies, certificate rotation) and
# the gateway carrying model traffic. One replica with a PDB of minAvailable 1 would block every drain
# of its node, so dev and staging run without one.
REPLICAS: Mapping[str, int] = {"dev": 1, "staging": 1, "prod": 2}
# Headroom the HPAs (on by default in both charts) may scale to above the minimum.
ISTIOD_MAX_REPLICAS = 5  # the chart's autoscaleMax
GATEWAY_MAX_REPLICAS = 5  # the chart's autoscaling.maxReplicas

# Annotations that make the gateway's LoadBalancer internal, per cloud.
#
# EKS: this platform installs no AWS Load Balancer Controller (no pin in components/charts.py), so the
# Service is reconciled by the built-in service controller of the AWS cloud provider, which reads
# `aws-load-balancer-internal` (kubernetes/cloud-provider-aws docs/service_controller.md) and ignores
# `aws-load-balancer-scheme`, an LBC-only annotation. `aws-load-balancer-type: external` and
# `nlb-target-type: ip` are deliberately NOT set: `external` tells the built-in controller to leave the
# Service to the LBC, so without an LBC no load balancer would ever be created, and the atomic Release
# (which waits for a LoadBalancer Service to get an address) would roll back after its timeout.
# `aws-load-balancer-scheme: internal` is set too, so the LBC keeps it internal if one is added later
# and takes the Service over (the LBC documents `internal` as `scheme`'s replacement for the deprecated
# `internal` annotation: kubernetes-sigs.github.io/aws-load-balancer-controller, Service annotations).
# GKE: an internal passthrough Network Load Balancer (cloud.google.com/kubernetes-engine/docs/how-to/
# internal-load-balancing).
INTERNAL_LB_ANNOTATIONS: Mapping[str, Mapping[str, str]] = {
    "aws": {
        "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    },
    "gcp": {"networking.gke.io/load-balancer-type": "Internal"},
    "existing": {},
}

PEER_AUTHENTICATION_API_VERSION = "security.istio.io/v1"
PEER_AUTHENTICATION_KIND = "PeerAuthentication"
# A PeerAuthentication named `default` in the root namespace (istio-system) is the mesh-wide policy.
MESH_WIDE_POLICY_NAME = "default"


# Every sidecar and gateway proxy serves Istio's standard metrics (istio_requests_total,
# istio_request_duration_milliseconds) on a container port named `http-envoy-prom` (15090). This
# PodMonitor (after Istio's samples/addons/extras/prometheus-operator.yaml) scrapes that port on every
# pod in every namespace that has it, i.e. every sidecar and gateway, unless labelled
# `istio-prometheus-ignore`; the inference alerts, dashboards and Flagger's analysis all read it.
POD_MONITOR_API_VERSION = "monitoring.coreos.com/v1"
ENVOY_STATS_MONITOR = "envoy-stats-monitor"
ENVOY_STATS_PORT = "http-envoy-prom"


@dataclass(frozen=True)
class MeshArgs:
    cloud: str  # aws | gcp | existing
    environment: str  # dev | staging | prod
    public_gateway: bool
    system_node_selector: Mapping[str, str]
    # The release that installs the Prometheus Operator's CRDs; without one, no PodMonitor.
    monitoring: Sequence[pulumi.Resource] = field(default_factory=tuple)
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)
    # Istio as the Gateway API implementation with the inference extension, for LLMInferenceServices
    # (components/llm_serving.py).
    inference_extension: bool = False


# istiod routes an HTTPRoute's InferencePool backend through the pool's endpoint picker only with this flag
# (gateway-api-inference-extension docs, "Istio": "Without this, Istio ignores InferencePool backend refs").
# KServe's install and Istio's own guide pass it as `pilot.env.*`, the IstioOperator spelling of this chart's
# top-level `env` (istiod/1.28.10 templates/deployment.yaml: `range $key, $val := .Values.env`).
INFERENCE_EXTENSION_ENV: Mapping[str, str] = {"ENABLE_GATEWAY_API_INFERENCE_EXTENSION": "true"}
# Pods Istio deploys for a Gateway API Gateway get this seccomp profile (istiod values `gateways.seccompProfile`,
# files/kube-gateway.yaml), which the restricted Pod Security level of their namespace (`kserve`) requires.
GATEWAY_SECCOMP_PROFILE: Mapping[str, str] = {"type": "RuntimeDefault"}


def _check(args: MeshArgs) -> None:
    if args.cloud not in CLOUDS:
        raise ValueError(f"cloud {args.cloud!r} is not one of {', '.join(CLOUDS)}")
    if args.environment not in REPLICAS:
        raise ValueError(f"environment {args.environment!r} is not one of {', '.join(REPLICAS)}")


def base_values(args: MeshArgs) -> dict[str, Any]:
    """istio-base: the chart defaults (CRDs as templates, default revision `default`) are what we want."""
    _check(args)
    return {}


def istiod_values(args: MeshArgs) -> dict[str, Any]:
    _check(args)
    replicas = REPLICAS[args.environment]
    values: dict[str, Any] = {
        # The HPA is on (autoscaleEnabled, the default), so the Deployment carries no `replicas` and the
        # HPA holds it between these two; replicaCount only applies with the HPA off, so it is not set
        # (templates/deployment.yaml).
        "autoscaleMin": replicas,
        "autoscaleMax": max(ISTIOD_MAX_REPLICAS, replicas),
        "nodeSelector": dict(args.system_node_selector),
    }
    if args.inference_extension:
        values["env"] = dict(INFERENCE_EXTENSION_ENV)
        values["gateways"] = {"seccompProfile": dict(GATEWAY_SECCOMP_PROFILE)}
    if replicas > 1:
        # The chart's defaults, restated because prod relies on them: a PDB from
        # global.defaultPodDisruptionBudget.enabled with pdb.minAvailable 1. The chart renders it only
        # when autoscaleMin is above 1 (templates/poddisruptionbudget.yaml), so on one replica these
        # would change nothing and are left out.
        values["global"] = {"defaultPodDisruptionBudget": {"enabled": True}}
        values["pdb"] = {"minAvailable": 1}
    return values


def gateway_service(args: MeshArgs) -> dict[str, Any]:
    """The gateway Service: internal load balancer by default, public only when asked for."""
    _check(args)
    if args.public_gateway:
        return {"type": "LoadBalancer", "annotations": {}}
    if args.cloud == "existing":
        # A cluster we do not manage may have no load-balancer implementation at all (kind, most bare
        # metal without MetalLB): a LoadBalancer Service would stay <pending>, and Helm's wait, which
        # waits for a LoadBalancer's address, would fail the atomic release. ClusterIP is reachable in
        # the cluster (net-istio's knative-local-gateway, port-forward), and nothing is exposed by accident.
        return {"type": "ClusterIP", "annotations": {}}
    return {
        "type": "LoadBalancer",
        "annotations": dict(INTERNAL_LB_ANNOTATIONS[args.cloud]),
    }


def gateway_values(args: MeshArgs) -> dict[str, Any]:
    _check(args)
    replicas = REPLICAS[args.environment]
    values: dict[str, Any] = {
        "labels": dict(GATEWAY_LABELS),
        "service": gateway_service(args),
        # The HPA is on (autoscaling.enabled, the default), so the Deployment carries no `replicas` and
        # replicaCount would change nothing (templates/deployment.yaml): the HPA's bounds size it.
        "autoscaling": {
            "minReplicas": replicas,
            "maxReplicas": max(GATEWAY_MAX_REPLICAS, replicas),
        },
        "nodeSelector": dict(args.system_node_selector),
    }
    if replicas > 1:
        # The chart creates a PDB only when this is non-empty (values.yaml podDisruptionBudget: {}) and
        # the HPA's minimum is above 1 (templates/poddisruptionbudget.yaml), so one replica gets none.
        values["podDisruptionBudget"] = {"minAvailable": 1}
    return values


def mesh_wide_mtls(args: MeshArgs) -> Optional[dict[str, Any]]:
    """The PeerAuthentication that makes the whole mesh STRICT mTLS (prod), or None."""
    _check(args)
    if args.environment != "prod":
        return None
    return {
        "apiVersion": PEER_AUTHENTICATION_API_VERSION,
        "kind": PEER_AUTHENTICATION_KIND,
        "metadata": {"name": MESH_WIDE_POLICY_NAME, "namespace": ISTIOD_PIN.namespace},
        "spec": {"mtls": {"mode": "STRICT"}},
    }


def envoy_stats_monitor(args: MeshArgs) -> dict[str, Any]:
    """The PodMonitor that scrapes every Envoy (sidecars and gateways) in every namespace."""
    _check(args)
    return {
        "apiVersion": POD_MONITOR_API_VERSION,
        "kind": "PodMonitor",
        "metadata": {"name": ENVOY_STATS_MONITOR, "namespace": ISTIOD_PIN.namespace},
        "spec": {
            "namespaceSelector": {"any": True},
            "selector": {"matchExpressions": [{"key": "istio-prometheus-ignore", "operator": "DoesNotExist"}]},
            "jobLabel": "envoy-stats",
            "podMetricsEndpoints": [{"port": ENVOY_STATS_PORT, "path": "/stats/prometheus", "interval": "15s"}],
        },
    }


class Mesh(pulumi.ComponentResource):
    """istio-base, istiod and the `istio-ingressgateway` in istio-system; STRICT mTLS mesh-wide in prod."""

    base: k8s.helm.v3.Release
    istiod: k8s.helm.v3.Release
    gateway: k8s.helm.v3.Release
    peer_authentication: Optional[k8s.apiextensions.CustomResource]
    envoy_stats: Optional[k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: MeshArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:Mesh", name, {}, opts)
        _check(args)
        child = pulumi.ResourceOptions(parent=self)

        def after(*dependencies: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=list(dependencies))

        # Baseline: istiod and the gateway set no seccomp profile (restricted needs one). The gateway's pods
        # get no istio-init (its injection template has none), so baseline admits them.
        namespace = labelled_namespace(f"{name}-namespace", ISTIOD_PIN.namespace, BASELINE, child, report=RESTRICTED)
        self.base = helm_release(
            f"{name}-base",
            BASE_PIN,
            base_values(args),
            after(namespace),
            release_name=BASE_RELEASE,
            image_mirror=args.image_mirror,
        )
        # istiod's templates include webhooks and its own config for kinds whose CRDs base installs.
        self.istiod = helm_release(
            f"{name}-istiod",
            ISTIOD_PIN,
            istiod_values(args),
            after(self.base),
            release_name=ISTIOD_RELEASE,
            image_mirror=args.image_mirror,
        )
        # The gateway pods' proxy is injected by istiod's webhook (inject.istio.io/templates: gateway).
        self.gateway = helm_release(
            f"{name}-gateway",
            GATEWAY_PIN,
            gateway_values(args),
            after(self.istiod),
            release_name=GATEWAY_RELEASE,
            image_mirror=args.image_mirror,
        )

        self.peer_authentication = None
        policy = mesh_wide_mtls(args)
        if policy is not None:
            # After istiod (itself after base): the CRD exists and istiod's validating webhook answers.
            self.peer_authentication = custom_resource(f"{name}-strict-mtls", policy, after(self.istiod))

        self.envoy_stats = None
        if args.monitoring:
            monitor = envoy_stats_monitor(args)
            self.envoy_stats = custom_resource(f"{name}-envoy-stats", monitor, after(self.base, *args.monitoring))

        self.register_outputs(
            {
                "base": self.base.name,
                "istiod": self.istiod.name,
                "gateway": self.gateway.name,
            }
        )
