"""LLMs behind KServe's LLMInferenceService: Gateway API, the inference extension, the llmisvc controller, LWS.

Installed only where a stack serves a model as an `LLMInferenceService` (manifests/models, `api`), in KServe
v0.20.0's order (hack/setup/quick-install/definitions/llmisvc/llmisvc-dependency-install.definition: Gateway API
CRDs, inference extension CRDs, the gateway, LWS; then the kserve-llmisvc charts):

- `GatewayApiCrds`: Gateway API v1.5.1 and the inference extension v1.5.0 CRDs, typed CustomResourceDefinitions
  from the pinned files (components/crd_bundles.py). Before istiod's Gateway controller and KServe's controller
  use them: KServe registers the Gateway API scheme and owns HTTPRoutes once `enableGatewayApi` is on
  (kserve/kserve cmd/manager/main.go, `if ingressConfig.EnableGatewayAPI`), so the CRDs exist first.
- components/serving.py, with KServe's own charts (after kserve-resources, before kserve-runtime-configs, whose
  LLMInferenceServiceConfig presets need the CRD and the controller's webhook):
  - kserve-llmisvc-crd, then kserve-llmisvc-resources (the llmisvc controller and its webhooks, whose certificate
    cert-manager issues). `createSharedResources: false`: kserve-resources already owns inferenceservice-config,
    the selfsigned Issuer and the default ClusterStorageContainer, and a second release may not own them too.
    `createGIECRDs` stays on: the chart's InferencePool CRD is the inference extension v1.5.0 one (same spec,
    tests/test_llm_inference_service.py) and the controller watches the llm-d.ai InferenceObjectives it bundles
    (its ClusterRole), which no other release installs; so the InferencePool CRD is not declared again from the
    files (INFERENCE_POOL_CRD).
- `LlmServing`:
  - the Gateway `kserve/kserve-ingress-gateway` (gatewayClassName `istio`), the one KServe's ingress config names
    (`kserveIngressGateway`): every LLMInferenceService's HTTPRoute (KServe's kserve-config-llm-router-route) and
    every Standard-mode InferenceService's HTTPRoute attach to it. HTTPS on the stack's wildcard certificate
    (components/entry_tls.py; its Secret stays in istio-system, and a ReferenceGrant there lets this Gateway read
    it), and HTTP answering only a redirect to HTTPS, as the Knative gateway does (components/serving.py).
    Istio deploys the gateway's pods and Service in `kserve` from the Gateway; the Service is internal like the
    Istio ingress gateway's (components/mesh.py, `gateway_service`), through `spec.infrastructure.annotations`,
    which Istio copies onto it.
  - LeaderWorkerSet v0.8.0, only where a served model spans machines (its replica is a leader and workers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.charts import CHART_PINS
from components.crd_bundles import CRD_BUNDLES, CrdsUnavailable, load_crds
from components.custom_resource import custom_resource
from components.helm import helm_release
from components.pod_security import BASELINE, RESTRICTED, labelled_namespace
from components.registry import ImageMirror

LLMISVC_CRD_PIN = CHART_PINS["kserve-llmisvc-crd"]
LLMISVC_PIN = CHART_PINS["kserve-llmisvc-resources"]
LWS_PIN = CHART_PINS["lws"]
# KServe's install names the releases so (hack/setup/infra/manage.kserve-helm.sh, LLMISVC=true).
LLMISVC_CRD_RELEASE = "kserve-llmisvc-crd"
LLMISVC_RELEASE = "kserve-llmisvc"
LWS_RELEASE = "lws"

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
# KServe's default `kserveIngressGateway` (kserve-resources values.yaml, ingressGateway.kserveGateway).
GATEWAY_NAME = "kserve-ingress-gateway"
GATEWAY_NAMESPACE = "kserve"
GATEWAY_CLASS = "istio"
KSERVE_INGRESS_GATEWAY = f"{GATEWAY_NAMESPACE}/{GATEWAY_NAME}"
HTTPS_LISTENER = "https"
HTTP_LISTENER = "http"
REDIRECT_ROUTE = "https-redirect"
CERTIFICATE_GRANT = "kserve-gateway-certificate"
# Istio: the Service it generates for a Gateway is a LoadBalancer unless this annotation says otherwise
# (istio.io, "Gateway API" task, Automated Deployment: `networking.istio.io/service-type`).
SERVICE_TYPE_ANNOTATION = "networking.istio.io/service-type"
# Istio labels the pods it deploys for a Gateway with its name (Gateway API's own label).
GATEWAY_POD_LABEL = "gateway.networking.k8s.io/gateway-name"

# The label KServe puts on an LLMInferenceService's scheduler (endpoint picker) pods (pkg/controller/llmisvc,
# SchedulerLabels), which the tenant's NetworkPolicies let reach the API server (components/tenancy.py).
SCHEDULER_POD_LABELS: Mapping[str, str] = {"app.kubernetes.io/component": "llminferenceservice-router-scheduler"}

# Owned by kserve-llmisvc-resources (createGIECRDs), see the module docstring.
INFERENCE_POOL_CRD = "inferencepools.inference.networking.k8s.io"
# Objects a chart renders only when no other release already owns them (its template asks the cluster with
# `lookup`, which an offline render cannot): kserve-llmisvc-crd skips ClusterStorageContainer's CRD when
# kserve-crd installed it (templates/serving.kserve.io_clusterstoragecontainers.yaml). The render drops such a
# copy where another release renders the same object (infra/tooling/objects.py).
LOOKUP_GUARDED: Mapping[str, tuple[tuple[str, str], ...]] = {
    "kserve-llmisvc-crd": (("CustomResourceDefinition", "clusterstoragecontainers.serving.kserve.io"),),
}


@dataclass(frozen=True)
class LlmServingArgs:
    system_node_selector: Mapping[str, str]
    # The gateway Service: {"type": ..., "annotations": {...}} (components/mesh.py `gateway_service`).
    gateway_service: Mapping[str, Any]
    # The wildcard certificate's Secret and its namespace (components/entry_tls.py); None: plain HTTP.
    tls_credential: Optional[str] = None
    tls_namespace: str = "istio-system"
    multi_node: bool = False  # a served model spans machines: install LeaderWorkerSet
    # What the charts and the Gateway wait for: KServe's releases (its namespace and inferenceservice-config),
    # cert-manager (the webhook certificate), istiod (the Gateway controller), the CRDs and the certificate.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    image_mirror: Optional[ImageMirror] = None


def llmisvc_values(system_node_selector: Mapping[str, str]) -> dict[str, Any]:
    """kserve-llmisvc-resources, installed by components/serving.py right after kserve-resources."""
    return {
        "kserve": {
            "createSharedResources": False,
            "llmisvc": {"controller": {"nodeSelector": dict(system_node_selector)}},
        }
    }


def lws_values(args: LlmServingArgs) -> dict[str, Any]:
    return {"nodeSelector": dict(args.system_node_selector)}


def gateway(args: LlmServingArgs) -> dict[str, Any]:
    """The Gateway API Gateway every LLMInferenceService (and Standard-mode InferenceService) route attaches to."""
    service = dict(args.gateway_service)
    metadata: dict[str, Any] = {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}
    if service.get("type", "LoadBalancer") != "LoadBalancer":
        metadata["annotations"] = {SERVICE_TYPE_ANNOTATION: service["type"]}
    infrastructure: dict[str, Any] = {"labels": {"serving.kserve.io/gateway": GATEWAY_NAME}}
    if service.get("annotations"):
        infrastructure["annotations"] = dict(service["annotations"])
    if args.tls_credential is None:
        listeners = [
            {"name": HTTP_LISTENER, "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": {"from": "All"}}}
        ]
    else:
        listeners = [
            {
                "name": HTTPS_LISTENER,
                "protocol": "HTTPS",
                "port": 443,
                "tls": {
                    "mode": "Terminate",
                    "certificateRefs": [
                        {"group": "", "kind": "Secret", "name": args.tls_credential, "namespace": args.tls_namespace}
                    ],
                },
                "allowedRoutes": {"namespaces": {"from": "All"}},
            },
            # Only the redirect route (in this namespace) attaches here: a model's route, which names no
            # listener, attaches to HTTPS alone, so plain HTTP never reaches a model.
            {"name": HTTP_LISTENER, "protocol": "HTTP", "port": 80, "allowedRoutes": {"namespaces": {"from": "Same"}}},
        ]
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "Gateway",
        "metadata": metadata,
        "spec": {"gatewayClassName": GATEWAY_CLASS, "infrastructure": infrastructure, "listeners": listeners},
    }


def https_redirect_route() -> dict[str, Any]:
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {"name": REDIRECT_ROUTE, "namespace": GATEWAY_NAMESPACE},
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": GATEWAY_NAME,
                    "sectionName": HTTP_LISTENER,
                }
            ],
            "rules": [
                {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
            ],
        },
    }


def certificate_grant(args: LlmServingArgs) -> dict[str, Any]:
    """Lets the Gateway in `kserve` read the wildcard certificate's Secret where cert-manager keeps it."""
    assert args.tls_credential is not None
    return {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": CERTIFICATE_GRANT, "namespace": args.tls_namespace},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": GATEWAY_NAMESPACE}],
            "to": [{"group": "", "kind": "Secret", "name": args.tls_credential}],
        },
    }


def declared_crds() -> tuple[list[dict[str, Any]], list[str]]:
    """The CRDs this platform declares from the pinned files, and a warning per bundle it could not find."""
    crds: list[dict[str, Any]] = []
    warnings: list[str] = []
    for bundle in CRD_BUNDLES.values():
        try:
            crds += [crd for crd in load_crds(bundle) if crd["metadata"]["name"] != INFERENCE_POOL_CRD]
        except CrdsUnavailable as error:
            warnings.append(str(error))
    return crds, warnings


class GatewayApiCrds(pulumi.ComponentResource):
    """Gateway API and inference extension CRDs, one CustomResourceDefinition resource each."""

    crds: list[k8s.apiextensions.v1.CustomResourceDefinition]

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:GatewayApiCrds", name, {}, opts)
        manifests, warnings = declared_crds()
        for warning in warnings:
            # Loud, and the Gateway below then fails to apply on a cluster: nothing is guessed.
            pulumi.log.warn(f"SKIPPED {warning}", self)
        child = pulumi.ResourceOptions(parent=self)
        self.crds = [
            k8s.apiextensions.v1.CustomResourceDefinition(
                f"{name}-{crd['metadata']['name']}",
                metadata=crd["metadata"],
                spec=crd["spec"],
                opts=child,
            )
            for crd in manifests
        ]
        self.register_outputs({})


class LlmServing(pulumi.ComponentResource):
    """The Gateway API Gateway for LLM traffic, and LWS where a model spans machines (the llmisvc charts are
    KServe's, installed with it by components/serving.py)."""

    gateway: k8s.apiextensions.CustomResource
    lws: Optional[k8s.helm.v3.Release]

    def __init__(self, name: str, args: LlmServingArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:LlmServing", name, {}, opts)

        def after(*dependencies: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, *dependencies])

        resources: list[pulumi.Resource] = []
        if args.tls_credential is not None:
            resources.append(custom_resource(f"{name}-certificate-grant", certificate_grant(args), after()))
        self.gateway = custom_resource(f"{name}-gateway", gateway(args), after(*resources))
        if args.tls_credential is not None:
            custom_resource(f"{name}-https-redirect", https_redirect_route(), after(self.gateway))

        self.lws = None
        if args.multi_node:
            # Baseline: the LWS controller runs as non-root with every capability dropped, but its pod sets no
            # seccomp profile (values.yaml podSecurityContext), which restricted requires.
            namespace = labelled_namespace(
                f"{name}-lws-namespace", LWS_PIN.namespace, BASELINE, after(), report=RESTRICTED
            )
            self.lws = helm_release(
                f"{name}-lws",
                LWS_PIN,
                lws_values(args),
                after(namespace),
                release_name=LWS_RELEASE,
                image_mirror=args.image_mirror,
            )
        self.register_outputs({})
