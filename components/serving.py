"""Model serving: Knative Serving (through the Knative Operator) with Istio ingress, and KServe on top.

Written against ../shared/upstream: knative-operator/v1.21.1 (chart values, KnativeServing CRD),
knative-serving/v1.21.1 (config-features defaults) and kserve/v0.20.0 (chart values and KServe's own
Knative-mode install, facts/knative-mode-quick-install.json, whose order and settings we follow).

Order, each step a `depends_on`:
1. the Knative Operator release (it installs the KnativeServing CRD);
2. the KnativeServing resource, after the operator and the Istio gateway (net-istio's Gateways select
   the gateway's pods). It carries `pulumi.com/waitFor: condition=Ready` (pulumi-kubernetes#3134,
   provider >= 4.18), so `pulumi up` waits until Serving and net-istio are running instead of
   treating the resource as done once the API server stored it;
3. kserve-crd, then kserve-resources (the controller, after cert-manager, which issues its webhook
   certificate, and after Knative is Ready: in Knative mode the controller needs Knative's CRDs);
4. kserve-runtime-configs, after kserve-resources, because its ClusterServingRuntimes go through the
   controller's validating webhook (KServe's script installs them after the controller is Available).

Preview of an empty environment: the KnativeServing is a CustomResource with an explicit namespace,
which the provider previews from its inputs while the CRD is unknown (components/mesh.py explains).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.charts import CHART_PINS
from components.custom_resource import custom_resource
from components.entry_limits import MAX_REQUEST_TIMEOUT_SECONDS
from components.helm import helm_release
from components.llm_serving import (
    LLMISVC_CRD_PIN,
    LLMISVC_CRD_RELEASE,
    LLMISVC_PIN,
    LLMISVC_RELEASE,
    llmisvc_values,
)
from components.local_model_cache import kserve_localmodel_values
from components.mesh import GATEWAY_PIN, GATEWAY_SELECTOR
from components.node_pools import required_node_affinity, selector_expressions
from components.pod_security import (
    BASELINE,
    MESHED_LEVEL,
    MESHED_REPORT_LEVEL,
    PRIVILEGED,
    RESTRICTED,
    labelled_namespace,
    pod_security_labels,
)
from components.registry import ImageMirror


OPERATOR_PIN = CHART_PINS["knative-operator"]
KSERVE_CRD_PIN = CHART_PINS["kserve-crd"]
KSERVE_PIN = CHART_PINS["kserve-resources"]
RUNTIMES_PIN = CHART_PINS["kserve-runtime-configs"]

# The Serving release the operator installs; KServe v0.20.0 pins the same (components/charts.py).
KNATIVE_SERVING_VERSION = "1.21.1"
KNATIVE_SERVING_API_VERSION = "operator.knative.dev/v1beta1"
KNATIVE_SERVING_KIND = "KnativeServing"
# Knative Serving's namespace and the KnativeServing's name, both as KServe's install has them:
# kserve-resources' default gateway references (`knative-serving/knative-*-gateway`) assume them.
KNATIVE_SERVING_NAMESPACE = "knative-serving"
KNATIVE_SERVING_NAME = "knative-serving"

# Gateways net-istio creates in knative-serving and the Service it creates beside the Istio gateway
# (kserve/v0.20.0/facts/knative-mode-quick-install.json, ingress.knative_gateways). KServe is told
# the same names, so its VirtualServices attach to them.
INGRESS_GATEWAY = f"{KNATIVE_SERVING_NAMESPACE}/knative-ingress-gateway"
LOCAL_GATEWAY = f"{KNATIVE_SERVING_NAMESPACE}/knative-local-gateway"
LOCAL_GATEWAY_SERVICE = f"knative-local-gateway.{GATEWAY_PIN.namespace}.svc.cluster.local"

# Knative rejects any pod spec field whose feature flag is off, and tolerations, nodeSelector and
# affinity are off by default (knative-serving/v1.21.1/facts/config-features-defaults.json). An
# InferenceService that targets a GPU pool carries all three (kserve/kserve#1425), so they are on.
POD_SPEC_FEATURES: Mapping[str, str] = {
    "kubernetes.podspec-tolerations": "enabled",
    "kubernetes.podspec-nodeselector": "enabled",
    "kubernetes.podspec-affinity": "enabled",
    # Model pods carry the platform's priority classes (components/priorities.py); off by default
    # (knative-serving/v1.21.1/configmaps/features.yaml).
    "kubernetes.podspec-priorityclassname": "enabled",
}

# Registries whose image tags Knative must not resolve to digests: resolving asks the registry for the
# manifest with the controller's credentials, which fails for NGC (nvcr.io needs a pull secret) and is
# rate-limited on Docker Hub. KServe's own KnativeServing sets exactly these.
REGISTRIES_SKIPPING_TAG_RESOLVING = "nvcr.io,index.docker.io"

# The images the operator runs for Serving and net-istio 1.21.1, by their `spec.registry.override` keys (a
# container name, or `<deployment>/<container>` where two share one: the operator would otherwise give
# net-istio's `controller` Serving's image, knative/docs#4683). The operator's manifests name them by digest;
# the release also publishes each under its tag, which is what a mirror copies.
KNATIVE_IMAGE_OVERRIDE_KEYS: Mapping[str, str] = {
    "activator": "serving/cmd/activator",
    "autoscaler": "serving/cmd/autoscaler",
    "autoscaler-hpa": "serving/cmd/autoscaler-hpa",
    "controller": "serving/cmd/controller",
    "webhook": "serving/cmd/webhook",
    "queue-proxy": "serving/cmd/queue",
    "net-istio-controller/controller": "net-istio/cmd/controller",
    "net-istio-webhook/webhook": "net-istio/cmd/webhook",
}


def knative_images() -> dict[str, str]:
    """Override key -> the public image of that Serving component at the pinned release."""
    return {
        key: f"gcr.io/knative-releases/knative.dev/{path}:v{KNATIVE_SERVING_VERSION}"
        for key, path in KNATIVE_IMAGE_OVERRIDE_KEYS.items()
    }


# Every Deployment of Serving 1.21.1 with net-istio, as KServe's KnativeServing lists them
# (kserve/v0.20.0/examples/knative-serving-istio.yaml): each is pinned to the system pool.
KNATIVE_WORKLOADS = (
    "controller",
    "activator",
    "autoscaler",
    "domain-mapping",
    "webhook",
    "domainmapping-webhook",
    "net-istio-controller",
    "net-istio-webhook",
)
# The activator and the autoscaler talk to model pods directly (requests while a model scales from zero or
# bursts; the queue-proxy's metrics), so they join the mesh: under prod's STRICT mTLS a plain-text caller is
# refused (knative.dev/docs serving/istio-authorization, "Mutual TLS in Knative": the activator must have a
# sidecar; KServe's "Secure InferenceService with ServiceMesh" names the autoscaler too). By pod label rather
# than the namespace's: the webhooks stay out of the mesh, since the API server calls them without mTLS.
MESHED_WORKLOADS = ("activator", "autoscaler")
SIDECAR_LABELS: Mapping[str, str] = {"sidecar.istio.io/inject": "true"}

# The memory request of the queue-proxy sidecar Knative adds to every model pod (config-deployment
# `queue-sidecar-memory-request`): Knative sets none unless told ("If omitted, no value is specified",
# knative.dev/docs serving/configuration/deployment), while its CPU request defaults to 25m. The proxy
# buffers requests in flight to one model replica, so its need follows that replica's concurrency, not
# the tier. No memory limit: an OOM-killed queue-proxy drops every request the replica holds.
QUEUE_PROXY_MEMORY_REQUEST = "64Mi"
# Replicas of those Deployments per tier (spec.high-availability). Prod runs two of each, so a node
# drain never stops the activator, which is on the request path of every model scaled to zero or bursting.
HIGH_AVAILABILITY_REPLICAS: Mapping[str, int] = {"dev": 1, "staging": 1, "prod": 2}
# Serving's PodDisruptionBudgets (minAvailable 80%): on a single replica 80% rounds up to 1, so the
# budget forbids every eviction and a node drain (an upgrade, Cluster Autoscaler's scale-down) hangs on
# the activator and webhook pods. Where there is one replica the budgets are relaxed to allow it.
SERVING_PDBS = ("activator-pdb", "webhook-pdb")

# Knative 1.21 exports its metrics through OpenTelemetry and exports nothing unless a protocol is set
# (knative.dev/docs, Serving, Collecting metrics: "By default metrics exporting is off"). With
# `prometheus` each component serves them on its `metrics` port (9090); the PodMonitor below scrapes the
# autoscaler and the activator, whose kn_revision_* series the inference alerts and dashboards read.
METRICS_PROTOCOL = "prometheus"
METRICS_PORT = "metrics"
SCRAPED_COMPONENTS = ("activator", "autoscaler")


# Knative's request timeouts (config-defaults, knative.dev/docs/serving/configuration/config-defaults/): a
# revision's timeoutSeconds (KServe's predictor `timeout`, per model: components/entry_limits.py) may not exceed
# max-revision-timeout-seconds. Knative's own values, restated because streaming LLM answers depend on them
# (components/entry_limits.py says why the maximum stays at 600).
# The time to the first byte stays Knative's default (revision-response-start-timeout-seconds, the revision's
# timeout) and the time between bytes unlimited (revision-idle-timeout-seconds 0), so a slow stream that keeps
# sending is never cut before its timeout. Istio adds none: neither KServe's nor net-istio's VirtualServices set
# a route `timeout`, and Istio's HTTP routes have none by default.
REVISION_TIMEOUT_SECONDS = 300
MAX_REVISION_TIMEOUT_SECONDS = MAX_REQUEST_TIMEOUT_SECONDS


def ingress_gateway_servers(domain: str, credential: str) -> list[dict[str, Any]]:
    """net-istio's knative-ingress-gateway servers: HTTPS for `*.<domain>` with the wildcard certificate's Secret
    (in the gateway pods' namespace), and HTTP for the same hosts answering only a redirect to HTTPS."""
    hosts = [f"*.{domain}"]
    return [
        {
            "hosts": list(hosts),
            "port": {"name": "https", "number": 443, "protocol": "HTTPS"},
            "tls": {"mode": "SIMPLE", "credentialName": credential},
        },
        {"hosts": list(hosts), "port": {"name": "http", "number": 80, "protocol": "HTTP"}, "tls": {"httpsRedirect": True}},
    ]


@dataclass(frozen=True)
class ServingArgs:
    environment: str  # dev | staging | prod
    domain: str  # model URLs are <name>-<namespace>.<domain>
    scale_to_zero: bool
    scale_to_zero_grace_period: str  # e.g. "30s"
    progress_deadline: str  # e.g. "20m"
    system_node_selector: Mapping[str, str]
    install_knative: bool = True  # off where the cluster already runs Knative Serving
    install_kserve: bool = True
    # Releases KServe's controller needs first, where this stack installs them: cert-manager (webhook
    # certificate) and the Istio gateway (net-istio's Gateways select its pods).
    cert_manager: Sequence[pulumi.Resource] = field(default_factory=tuple)
    gateway: Sequence[pulumi.Resource] = field(default_factory=tuple)
    # The release with the Prometheus Operator's CRDs; without one, Knative's metrics are not scraped.
    monitoring: Sequence[pulumi.Resource] = field(default_factory=tuple)
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)
    # The Secret (in the gateway's namespace) holding the wildcard certificate of `*.<domain>`
    # (components/entry_tls.py); None: models are served over plain HTTP.
    tls_credential: Optional[str] = None
    # The Certificate that fills it: Knative's Gateway names the Secret only once it is being issued.
    tls: Sequence[pulumi.Resource] = field(default_factory=tuple)
    # KServe's LocalModelCache runs in its namespace (components/local_model_cache.py): the controller acts on
    # caches, and the node agent's hostPath makes the namespace privileged.
    local_model_cache: bool = False
    # `namespace/name` of the Gateway API Gateway for LLM traffic (components/llm_serving.py), where the stack
    # serves LLMInferenceServices; None: KServe's Gateway API support stays off.
    gateway_api_gateway: Optional[str] = None
    # KServe's LLMInferenceService controller and presets (the llmisvc charts), where the stack serves one. The Gateway
    # above may exist without them: Standard-mode InferenceServices (KEDA-scaled) route through it too.
    install_llmisvc: bool = False
    # The Gateway API CRDs, which KServe's controller watches once its Gateway API support is on.
    gateway_api_crds: Sequence[pulumi.Resource] = field(default_factory=tuple)


def _check(args: ServingArgs) -> None:
    if args.environment not in HIGH_AVAILABILITY_REPLICAS:
        raise ValueError(f"environment {args.environment!r} is not one of {', '.join(HIGH_AVAILABILITY_REPLICAS)}")


def system_node_affinity(selector: Mapping[str, str]) -> dict[str, Any]:
    """The nodeSelector as a required node affinity, for charts that offer `affinity` but no nodeSelector."""
    return required_node_affinity(selector_expressions(selector)) if selector else {}


def operator_values(args: ServingArgs) -> dict[str, Any]:
    """Knative Operator chart: both its Deployments on the system pool. The chart offers `affinity`
    only; Helm merges our nodeAffinity into the webhook's default podAntiAffinity, which stays."""
    affinity = system_node_affinity(args.system_node_selector)
    if not affinity:
        return {}
    return {
        "knative_operator": {
            "knative_operator": {"affinity": affinity},
            "operator_webhook": {"affinity": affinity},
        }
    }


def knative_serving(args: ServingArgs) -> dict[str, Any]:
    """The KnativeServing resource (operator.knative.dev/v1beta1) as a manifest."""
    _check(args)
    replicas = HIGH_AVAILABILITY_REPLICAS[args.environment]
    ingress_gateway: dict[str, Any] = {"selector": dict(GATEWAY_SELECTOR)}
    if args.tls_credential is not None:
        # The operator writes these servers into net-istio's Gateway instead of its default plain HTTP `*` on 80.
        ingress_gateway["servers"] = ingress_gateway_servers(args.domain, args.tls_credential)
    spec: dict[str, Any] = {
        "version": KNATIVE_SERVING_VERSION,
        "ingress": {
            "istio": {
                "enabled": True,
                "knative-ingress-gateway": ingress_gateway,
                "knative-local-gateway": {"selector": dict(GATEWAY_SELECTOR)},
            }
        },
        "config": {
            "features": dict(POD_SPEC_FEATURES),
            "autoscaler": {
                "enable-scale-to-zero": "true" if args.scale_to_zero else "false",
                # How long the last pod stays after the decision to scale to zero, so the gateway
                # has stopped routing to it before it goes.
                "scale-to-zero-grace-period": args.scale_to_zero_grace_period,
            },
            "deployment": {
                # A revision that is not ready by then fails. The 10 minute default is shorter than a
                # GPU node scaling up from zero plus a multi-GB image pull (kserve/kserve#1247, #2882).
                "progress-deadline": args.progress_deadline,
                "registries-skipping-tag-resolving": REGISTRIES_SKIPPING_TAG_RESOLVING,
                "queue-sidecar-memory-request": QUEUE_PROXY_MEMORY_REQUEST,
            },
            "defaults": {
                "revision-timeout-seconds": str(REVISION_TIMEOUT_SECONDS),
                "max-revision-timeout-seconds": str(MAX_REVISION_TIMEOUT_SECONDS),
            },
            # The one domain every Route gets (config-domain: `<domain>: ""` with no selector).
            "domain": {args.domain: ""},
            "observability": {"metrics-protocol": METRICS_PROTOCOL},
        },
        "high-availability": {"replicas": replicas},
    }
    if args.image_mirror is not None:
        mirror = args.image_mirror
        spec["registry"] = {"override": {key: mirror.image(image) for key, image in knative_images().items()}}
        deployment = spec["config"]["deployment"]
        # The override does not reach the queue-proxy sidecar the controller adds to model pods
        # (knative/operator#2313, open): its image is set in config-deployment as well.
        deployment["queue-sidecar-image"] = spec["registry"]["override"]["queue-proxy"]
        # Tags on the mirror are not resolved to digests either: that would need the controller to hold
        # the mirror's credentials, which the nodes have and Knative does not.
        deployment["registries-skipping-tag-resolving"] += "," + mirror.registry.split("/", 1)[0]
    workloads: dict[str, dict[str, Any]] = {}
    for workload in KNATIVE_WORKLOADS:
        entry: dict[str, Any] = {"name": workload}
        if args.system_node_selector:
            entry["nodeSelector"] = dict(args.system_node_selector)
        if workload in MESHED_WORKLOADS:
            entry["labels"] = dict(SIDECAR_LABELS)
        if len(entry) > 1:
            workloads[workload] = entry
    if workloads:
        spec["workloads"] = list(workloads.values())
    if replicas == 1:
        spec["podDisruptionBudgets"] = [{"name": pdb, "minAvailable": 0} for pdb in SERVING_PDBS]
    return {
        "apiVersion": KNATIVE_SERVING_API_VERSION,
        "kind": KNATIVE_SERVING_KIND,
        "metadata": {
            "name": KNATIVE_SERVING_NAME,
            "namespace": KNATIVE_SERVING_NAMESPACE,
            "annotations": {"pulumi.com/waitFor": "condition=Ready"},
        },
        "spec": spec,
    }


def knative_pod_monitor() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "knative-serving", "namespace": KNATIVE_SERVING_NAMESPACE},
        "spec": {
            "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": list(SCRAPED_COMPONENTS)}]},
            "podMetricsEndpoints": [{"port": METRICS_PORT, "interval": "15s"}],
        },
    }


def kserve_values(args: ServingArgs) -> dict[str, Any]:
    """kserve-resources: the controller in Knative mode, wired to net-istio's gateways."""
    _check(args)
    values: dict[str, Any] = {
        "kserve": {
            # The chart's default, set so the mode is stated where the platform is defined; KServe's
            # controller itself falls back to Standard when the value is empty.
            "controller": {
                "deploymentMode": "Knative",
                "nodeSelector": dict(args.system_node_selector),
                "gateway": {
                    "domain": args.domain,
                    # The scheme of the URL KServe reports in each InferenceService's status.
                    "urlScheme": "https" if args.tls_credential is not None else "http",
                    "localGateway": {"gateway": LOCAL_GATEWAY, "gatewayService": LOCAL_GATEWAY_SERVICE},
                    "ingressGateway": gateway_values(args),
                },
            },
        }
    }
    if args.local_model_cache:
        values["kserve"].update(kserve_localmodel_values()["kserve"])
    return values


def gateway_values(args: ServingArgs) -> dict[str, Any]:
    """kserve-resources `ingressGateway`: net-istio's gateway for Knative-mode models, and, where LLMs are served
    through the Gateway API, the Gateway that Standard-mode InferenceServices attach their HTTPRoutes to.

    `enableGatewayApi` changes only Standard (raw) mode: KServe's InferenceService controller reconciles an
    HTTPRoute instead of an Ingress `if deploymentMode == constants.RawDeployment`, and Knative-mode models keep
    their VirtualServices on net-istio's gateway in the `else` branch (kserve/kserve
    pkg/controller/v1beta1/inferenceservice/controller.go, "Reconcile ingress"). `className` is the Istio
    ingress class either way."""
    values: dict[str, Any] = {"gateway": INGRESS_GATEWAY, "enableGatewayApi": False, "className": "istio"}
    if args.gateway_api_gateway is not None:
        values["enableGatewayApi"] = True
        # KServe's ingress config `kserveIngressGateway` (files/common/configmap-patch.yaml); the chart's own Gateway
        # (createGateway, an Envoy Gateway class with one HTTP listener) stays off: components/llm_serving.py
        # declares ours.
        values["kserveGateway"] = args.gateway_api_gateway
        values["createGateway"] = False
    return values


def runtime_values(args: ServingArgs) -> dict[str, Any]:
    """kserve-runtime-configs: the ClusterServingRuntimes (Hugging Face/vLLM, TorchServe, sklearn...) on;
    the LLMInferenceService configs only where LLMs are served that way (off in KServe's Knative-mode install)."""
    _check(args)
    # The standalone vLLM runtime's image is `vllm/vllm-openai:latest` (values.yaml
    # kserve.servingruntime.vllmserver): a moving tag the platform never runs. The catalog serves LLMs through
    # huggingfaceserver's vLLM backend, so that runtime is left out.
    return {
        "kserve": {
            "servingruntime": {"enabled": True, "vllmserver": {"disabled": True}},
            # KServe's LLMInferenceServiceConfig presets (vLLM template, router route, scheduler), which every
            # LLMInferenceService builds on, where the stack serves one.
            "llmisvcConfigs": {"enabled": args.install_llmisvc},
        }
    }


class Serving(pulumi.ComponentResource):
    """Knative Operator, KnativeServing with Istio ingress, and KServe's three charts, in that order."""

    operator: Optional[k8s.helm.v3.Release]
    knative_serving: Optional[k8s.apiextensions.CustomResource]
    kserve_crd: Optional[k8s.helm.v3.Release]
    kserve: Optional[k8s.helm.v3.Release]
    runtimes: Optional[k8s.helm.v3.Release]
    llmisvc_crd: Optional[k8s.helm.v3.Release]
    llmisvc: Optional[k8s.helm.v3.Release]

    def __init__(self, name: str, args: ServingArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:Serving", name, {}, opts)
        _check(args)

        def after(*dependencies: Optional[pulumi.Resource]) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=[d for d in dependencies if d is not None])

        self.operator = self.knative_serving = None
        if args.install_knative:
            # Baseline: the operator's pods set no seccomp profile.
            operator_namespace = labelled_namespace(
                f"{name}-knative-operator-namespace", OPERATOR_PIN.namespace, BASELINE, after(), report=RESTRICTED
            )
            # A Release: the chart ships its CRDs in templates and Helm applies them first.
            self.operator = helm_release(
                f"{name}-knative-operator",
                OPERATOR_PIN,
                operator_values(args),
                after(operator_namespace),
                image_mirror=args.image_mirror,
            )
            namespace = k8s.core.v1.Namespace(
                f"{name}-knative-serving-namespace",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    # Privileged for the activator's and autoscaler's istio-init (components/pod_security.py).
                    name=KNATIVE_SERVING_NAMESPACE,
                    labels=dict(pod_security_labels(MESHED_LEVEL, MESHED_REPORT_LEVEL)),
                ),
                opts=after(),
            )
            manifest = knative_serving(args)
            self.knative_serving = custom_resource(
                f"{name}-knative-serving",
                manifest,
                after(self.operator, namespace, *args.gateway, *args.tls),
            )
            if args.monitoring:
                monitor = knative_pod_monitor()
                custom_resource(f"{name}-knative-metrics", monitor, after(namespace, *args.monitoring))

        self.kserve_crd = self.kserve = self.runtimes = self.llmisvc_crd = self.llmisvc = None
        if args.install_kserve:
            # Releases named after their charts, as KServe's install names them.
            # Restricted: KServe's controller runs with a restricted security context. With the local model cache,
            # privileged: its node agent (same namespace, components/local_model_cache.py) mounts a hostPath, which
            # baseline forbids; warn and audit stay at baseline, so the agent is the one pod reported.
            kserve_namespace = labelled_namespace(
                f"{name}-kserve-namespace",
                KSERVE_PIN.namespace,
                PRIVILEGED if args.local_model_cache else RESTRICTED,
                after(),
                report=BASELINE if args.local_model_cache else None,
            )
            self.kserve_crd = helm_release(f"{name}-kserve-crd", KSERVE_CRD_PIN, {}, after(kserve_namespace))
            self.kserve = helm_release(
                f"{name}-kserve",
                KSERVE_PIN,
                kserve_values(args),
                after(self.kserve_crd, self.knative_serving, *args.cert_manager, *args.gateway, *args.gateway_api_crds),
                image_mirror=args.image_mirror,
            )
            if args.install_llmisvc:
                # LLMInferenceService (components/llm_serving.py): its CRDs, then its controller, which reads
                # kserve-resources' inferenceservice-config and whose webhook admits the LLMInferenceServiceConfig
                # presets that kserve-runtime-configs installs next.
                self.llmisvc_crd = helm_release(
                    f"{name}-kserve-llmisvc-crd",
                    LLMISVC_CRD_PIN,
                    {},
                    after(self.kserve_crd),
                    release_name=LLMISVC_CRD_RELEASE,
                )
                self.llmisvc = helm_release(
                    f"{name}-kserve-llmisvc",
                    LLMISVC_PIN,
                    llmisvc_values(args.system_node_selector),
                    after(self.llmisvc_crd, self.kserve, *args.cert_manager, *args.gateway_api_crds),
                    release_name=LLMISVC_RELEASE,
                    image_mirror=args.image_mirror,
                )
            self.runtimes = helm_release(
                f"{name}-kserve-runtimes",
                RUNTIMES_PIN,
                runtime_values(args),
                after(self.kserve, self.llmisvc),
                image_mirror=args.image_mirror,
            )

        self.register_outputs({})
