"""Every Helm chart the platform installs, pinned in one table: repository, chart, version, namespace.

Versions are chosen to work together, not each at its newest: KServe v0.20.0 fixes Knative (operator
and Serving 1.21.1), Knative 1.21 fixes the Istio minor (1.28), and the Kubernetes minor of our
clusters (1.35) fixes Cluster Autoscaler. Each pin names the `../shared/upstream/<project>/<version>`
folder whose CRDs and chart defaults the tests check our values and custom resources against
(tests/upstream.py), and says in `compatibility` why this version fits. `tests/test_chart_pins.py`
checks the table against those folders and against KServe's own pins.

To bump a chart: add the new release under ../shared/upstream first, change its pin here, and let the
tests show which values and custom resources no longer match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class ChartPin:
    chart: str  # the chart's `name:` in its Chart.yaml
    repository: str  # a Helm repository URL (https://...) or an OCI registry path (oci://...)
    version: str  # exactly as the repository publishes it (some with a leading "v", some without)
    namespace: str  # where the release (and the workloads it creates) lives
    upstream: str  # the ../shared/upstream folder it was checked against, e.g. "gpu-operator/v26.7.0"
    compatibility: str  # where and why this version is compatible with the rest of the table

    @property
    def is_oci(self) -> bool:
        return self.repository.startswith("oci://")

    @property
    def chart_ref(self) -> str:
        """What Helm installs: `oci://<registry>/<chart>` for OCI, else the chart name in `repository`."""
        return f"{self.repository.rstrip('/')}/{self.chart}" if self.is_oci else self.chart


_ISTIO_REPOSITORY = "https://istio-release.storage.googleapis.com/charts"
_ISTIO_VERSION = "1.28.10"
_ISTIO_COMPATIBILITY = (
    "KServe v0.20.0's scripts install Istio 1.27.1, but the Knative 1.21.1 it pins runs net-istio "
    "knative-v1.21.1, which was tested with Istio 1.28.4 (1.27.x went with net-istio 1.20; "
    "knative-net-istio/v1.21.1/facts/versions.json), so we take 1.28.10, the newest 1.28 patch in the "
    "store (CRDs, base and gateway charts identical to 1.28.4's). Chart.yaml in the repo carries the "
    "placeholder version 1.0.0; the published charts are 1.28.10."
)
_KSERVE_REPOSITORY = "oci://ghcr.io/kserve/charts"
_KSERVE_VERSION = "v0.20.0"
_KSERVE_COMPATIBILITY = (
    "KServe v0.20.0, the newest non-rc release; the three charts its own Knative-mode install uses, all "
    "at chart version v0.20.0 with the leading v (kserve/v0.20.0/facts/knative-mode-quick-install.json). "
    "It pins Knative Operator v1.21.1 and Serving 1.21.1, which fix the Knative and Istio pins here."
)
_MINIO_REPOSITORY = "https://operator.min.io"
_MINIO_VERSION = "7.1.1"
_FLAGGER_REPOSITORY = "https://flagger.app"

_KARPENTER_COMPATIBILITY = (
    "Karpenter v1.14.1 (controller image public.ecr.aws/karpenter/controller:1.14.1) serves karpenter.sh/v1 "
    "NodePool and NodeClaim and karpenter.k8s.aws/v1 EC2NodeClass (karpenter/v1.14.1/crds). EKS only, on the "
    "system managed node group; the controller and CRD charts are released together and must stay equal. "
    "Chart.yaml in the repo carries a placeholder version; the published charts are 1.14.1."
)

CHART_PINS: Mapping[str, ChartPin] = {
    "cert-manager": ChartPin(
        chart="cert-manager",
        repository="https://charts.jetstack.io",
        version="v1.21.1",
        namespace="cert-manager",
        upstream="cert-manager/v1.21.1",
        compatibility=(
            "KServe v0.20.0's scripts pin v1.17.0, but KServe only needs the cert-manager.io/v1 Issuer and "
            "Certificate for its webhook certificate, an API stable since v1.0, so we take the newer v1.21.1. "
            "Chart.yaml in the repo carries the placeholder version v0.0.0; the published chart is v1.21.1."
        ),
    ),
    "gpu-operator": ChartPin(
        chart="gpu-operator",
        repository="https://helm.ngc.nvidia.com/nvidia",
        version="v26.7.0",
        namespace="gpu-operator",
        upstream="gpu-operator/v26.7.0",
        compatibility=(
            "Its defaults deploy device plugin and GFD v0.20.0, whose time-slicing config shape is pinned in "
            "k8s-device-plugin/v0.20.0 (gpu-operator/v26.7.0/facts/component-versions.json). Chart.yaml in the "
            "repo carries the placeholder version v1.0.0-devel; the published chart is v26.7.0."
        ),
    ),
    # GKE only, where the GPU Operator is not installed (components/gpu_stack.py): the standalone
    # exporter, in the namespace the operator's own exporter uses on the other clouds.
    "dcgm-exporter": ChartPin(
        chart="dcgm-exporter",
        repository="https://nvidia.github.io/dcgm-exporter/helm-charts",
        version="4.8.2",
        namespace="gpu-operator",
        upstream="dcgm-exporter/4.5.3-4.8.2",
        compatibility=(
            "Chart 4.8.2 runs image 4.5.3-4.8.2 (DCGM 4.5.3, exporter 4.8.2); upstream tags releases "
            "<dcgm>-<exporter>, hence the folder name. The GPU Operator v26.7.0 used on EKS ships exporter "
            "4.8.3 (gpu-operator/v26.7.0/facts/component-versions.json), one patch newer; at 4.5.3-4.8.2 the "
            "exporter's default-counters.csv and the operator's dcp-metrics-included.csv enable the same 26 "
            "fields (dcgm-exporter/4.5.3-4.8.2/etc). components/gpu_stack.py drops the chart's metrics-ConfigMap "
            "mount over that file (the template is not in the store), so GKE exports what EKS does."
        ),
    ),
    "kube-prometheus-stack": ChartPin(
        chart="kube-prometheus-stack",
        repository="https://prometheus-community.github.io/helm-charts",
        version="88.5.3",
        namespace="monitoring",
        upstream="kube-prometheus-stack/88.5.3",
        compatibility=(
            "Ships prometheus-operator v0.93.1, whose ServiceMonitor, PodMonitor and PrometheusRule CRDs are "
            "spec-identical to the v0.93.0 ones our monitors are validated against "
            "(kube-prometheus-stack/88.5.3/facts/operator-crd-match.json); requires Kubernetes >= 1.25."
        ),
    ),
    "istio-base": ChartPin(
        chart="base",
        repository=_ISTIO_REPOSITORY,
        version=_ISTIO_VERSION,
        namespace="istio-system",
        upstream=f"istio/{_ISTIO_VERSION}",
        compatibility=_ISTIO_COMPATIBILITY,
    ),
    "istiod": ChartPin(
        chart="istiod",
        repository=_ISTIO_REPOSITORY,
        version=_ISTIO_VERSION,
        namespace="istio-system",
        upstream=f"istio/{_ISTIO_VERSION}",
        compatibility=_ISTIO_COMPATIBILITY,
    ),
    # The ingress gateway stays in istio-system, not in a namespace of its own as Istio's docs suggest:
    # net-istio (bundled by the Knative operator) creates the Service knative-local-gateway in
    # istio-system selecting `istio: ingressgateway` pods, and a Service only selects pods in its own
    # namespace, so a gateway elsewhere would leave cluster-local model traffic with no endpoints.
    # KServe installs it the same way (release istio-ingressgateway in istio-system,
    # kserve/v0.20.0/facts/knative-mode-quick-install.json).
    "istio-gateway": ChartPin(
        chart="gateway",
        repository=_ISTIO_REPOSITORY,
        version=_ISTIO_VERSION,
        namespace="istio-system",
        upstream=f"istio/{_ISTIO_VERSION}",
        compatibility=_ISTIO_COMPATIBILITY,
    ),
    # Knative's Helm repository (the gh-pages index of knative/operator) lists each release as version
    # v<x.y.z> and points it at the GitHub release asset, here
    # https://github.com/knative/operator/releases/download/knative-v1.21.1/knative-operator-v1.21.1.tgz,
    # the very file KServe's install script fetches; a repository keeps one way to install every chart.
    "knative-operator": ChartPin(
        chart="knative-operator",
        repository="https://knative.github.io/operator",
        version="v1.21.1",
        namespace="knative-operator",
        upstream="knative-operator/v1.21.1",
        compatibility=(
            "KServe v0.20.0 pins Knative Operator v1.21.1 and KnativeServing spec.version 1.21.1 "
            "(kserve/v0.20.0/facts/dependency-versions.json); this operator bundles Serving 1.21.1 with "
            "net-istio 1.21.1. Chart.yaml in the repo is a template with the placeholder `version: {{ version }}`; "
            "the published chart is 1.21.1."
        ),
    ),
    "kserve-crd": ChartPin(
        chart="kserve-crd",
        repository=_KSERVE_REPOSITORY,
        version=_KSERVE_VERSION,
        namespace="kserve",
        upstream=f"kserve/{_KSERVE_VERSION}",
        compatibility=_KSERVE_COMPATIBILITY,
    ),
    "kserve-resources": ChartPin(
        chart="kserve-resources",
        repository=_KSERVE_REPOSITORY,
        version=_KSERVE_VERSION,
        namespace="kserve",
        upstream=f"kserve/{_KSERVE_VERSION}",
        compatibility=_KSERVE_COMPATIBILITY,
    ),
    "kserve-runtime-configs": ChartPin(
        chart="kserve-runtime-configs",
        repository=_KSERVE_REPOSITORY,
        version=_KSERVE_VERSION,
        namespace="kserve",
        upstream=f"kserve/{_KSERVE_VERSION}",
        compatibility=_KSERVE_COMPATIBILITY,
    ),
    # LLMInferenceService (components/llm_serving.py), installed only where a model is served that way: the CRDs
    # (LLMInferenceService, LLMInferenceServiceConfig), then the llmisvc controller, released with KServe v0.20.0
    # and named as KServe's own install names them (hack/setup/infra/manage.kserve-helm.sh with LLMISVC=true:
    # releases kserve-llmisvc-crd and kserve-llmisvc in namespace kserve).
    "kserve-llmisvc-crd": ChartPin(
        chart="kserve-llmisvc-crd",
        repository=_KSERVE_REPOSITORY,
        version=_KSERVE_VERSION,
        namespace="kserve",
        upstream=f"kserve/{_KSERVE_VERSION}",
        compatibility=_KSERVE_COMPATIBILITY,
    ),
    "kserve-llmisvc-resources": ChartPin(
        chart="kserve-llmisvc-resources",
        repository=_KSERVE_REPOSITORY,
        version=_KSERVE_VERSION,
        namespace="kserve",
        upstream=f"kserve/{_KSERVE_VERSION}",
        compatibility=_KSERVE_COMPATIBILITY,
    ),
    # LeaderWorkerSet: one replica of an LLMInferenceService whose `worker` spans machines is a leader pod and its
    # workers, which the llmisvc controller creates as a LeaderWorkerSet. Installed only where a model spans
    # machines (components/llm_serving.py).
    "lws": ChartPin(
        chart="lws",
        repository="oci://registry.k8s.io/lws/charts",
        version="v0.8.0",
        namespace="lws-system",
        upstream="lws/v0.8.0",
        compatibility=(
            "KServe v0.20.0 pins LeaderWorkerSet v0.8.0 (kserve/v0.20.0/facts/dependency-versions.json, "
            "leaderworkerset); the chart installs the leaderworkerset.x-k8s.io/v1 CRD from its crds/ folder and "
            "runs registry.k8s.io/lws/lws:v0.8.0."
        ),
    ),
    "minio-operator": ChartPin(
        chart="operator",
        repository=_MINIO_REPOSITORY,
        version=_MINIO_VERSION,
        namespace="minio-operator",
        upstream=f"minio-operator/v{_MINIO_VERSION}",
        compatibility=(
            "MinIO Operator v7.1.1, the newest stable tag; it serves the minio.min.io/v2 Tenant that the "
            "tenant chart of the same release creates."
        ),
    ),
    # The tenant (the model store) lives apart from the operator: its credentials and data are the
    # models', and a namespace of its own scopes who may read them.
    "minio-tenant": ChartPin(
        chart="tenant",
        repository=_MINIO_REPOSITORY,
        version=_MINIO_VERSION,
        namespace="minio-models",
        upstream=f"minio-operator/v{_MINIO_VERSION}",
        compatibility=(
            "Released together with the operator chart (v7.1.1) and creates a minio.min.io/v2 Tenant, the CRD "
            "version that operator serves."
        ),
    ),
    "flagger": ChartPin(
        chart="flagger",
        repository=_FLAGGER_REPOSITORY,
        version="1.44.0",
        namespace="flagger-system",
        upstream="flagger/v1.44.0",
        compatibility=(
            "Flagger v1.44.0, the newest release in the store; it shifts traffic with networking.istio.io/v1 "
            "VirtualServices, which our Istio 1.28 serves, and queries the Prometheus of kube-prometheus-stack."
        ),
    ),
    # The load tester runs whatever command a canary's webhook sends it, and it must call model
    # endpoints from inside the mesh (Istio sidecar, for STRICT mTLS). Its own namespace lets us enable
    # sidecar injection and a tight NetworkPolicy for it alone, without injecting Flagger (which only
    # talks to the API server and Prometheus) or handing the controller's cluster-wide RBAC a neighbour
    # that executes remote commands. Flagger's docs put it in the canaries' namespace ("test"); ours
    # serves every model namespace, at http://flagger-loadtester.flagger-loadtester/.
    "flagger-loadtester": ChartPin(
        chart="loadtester",
        repository=_FLAGGER_REPOSITORY,
        version="0.38.0",
        namespace="flagger-loadtester",
        upstream="flagger/v1.44.0",
        compatibility=(
            "The loadtester chart is versioned apart from Flagger: 0.38.0 (image flagger-loadtester:0.38.0) is "
            "the version in the Flagger v1.44.0 release tree."
        ),
    ),
    # Installed once per tenant that asks for notebooks, in the tenant's own namespace (components/notebooks.py
    # passes it to helm_release); `namespace` here is only the default, and keeps tenants from taking the name.
    "jupyterhub": ChartPin(
        chart="jupyterhub",
        repository="https://hub.jupyter.org/helm-chart/",
        version="4.4.0",
        namespace="jupyterhub",
        upstream="jupyterhub/4.4.0",
        compatibility=(
            "Zero to JupyterHub 4.4.0 runs JupyterHub 5.5.0 (Chart.yaml appVersion), which has the "
            "SharedPasswordAuthenticator (5.1+) used for generated-password notebooks, and the hub image's "
            "OAuthenticator 17 (GenericOAuthenticator with allowed_groups and manage_groups). The chart needs "
            "Kubernetes >= 1.28 (Chart.yaml kubeVersion); our clusters run 1.35. Its user-scheduler ships "
            "kube-scheduler v1.30.14, too old for 1.35, so components/notebooks.py leaves it off."
        ),
    ),
    # Karpenter's two charts: the CRDs (NodePool, NodeClaim, EC2NodeClass) as templates, so `helm upgrade`
    # upgrades them (a chart's crds/ folder is only ever installed), then the controller. The OCI registry
    # publishes the charts without a leading "v" since v0.35.0 (Karpenter upgrade guide), and the docs
    # install both into kube-system (KARPENTER_NAMESPACE=kube-system in "Getting Started with Karpenter").
    "karpenter-crd": ChartPin(
        chart="karpenter-crd",
        repository="oci://public.ecr.aws/karpenter",
        version="1.14.1",
        namespace="kube-system",
        upstream="karpenter/v1.14.1",
        compatibility=_KARPENTER_COMPATIBILITY,
    ),
    "karpenter": ChartPin(
        chart="karpenter",
        repository="oci://public.ecr.aws/karpenter",
        version="1.14.1",
        namespace="kube-system",
        upstream="karpenter/v1.14.1",
        compatibility=_KARPENTER_COMPATIBILITY,
    ),
    "cluster-autoscaler": ChartPin(
        chart="cluster-autoscaler",
        repository="https://kubernetes.github.io/autoscaler",
        version="9.59.0",
        namespace="kube-system",
        upstream="cluster-autoscaler/9.59.0",
        compatibility=(
            "Ships Cluster Autoscaler 1.35.0, and CA minor versions must match the cluster's Kubernetes minor: "
            "our clusters run 1.35 (cluster-autoscaler/9.59.0/facts/versions.json). Runs on EKS only; GKE node "
            "pools autoscale themselves."
        ),
    ),
    # Cost at runtime (components/cost_monitoring.py): the exporter reads our Prometheus and exports each
    # node's hourly price and each container's allocation; nothing of the chart's own Prometheus.
    "opencost": ChartPin(
        chart="opencost",
        repository="https://opencost.github.io/opencost-helm-chart",
        version="2.5.17",
        namespace="opencost",
        upstream="opencost/2.5.17",
        compatibility=(
            "Chart 2.5.17 runs OpenCost 1.120.1 (Chart.yaml appVersion; exporter and UI images pinned by tag and "
            "digest in its values.yaml). It only queries Prometheus' HTTP API, so the version of our "
            "kube-prometheus-stack does not matter; its ServiceMonitor is monitoring.coreos.com/v1."
        ),
    ),
    # Autoscaling on queue depth (components/keda.py): KServe's own KEDA integration turns an InferenceService in
    # Standard mode with `serving.kserve.io/autoscalerClass: keda` into a ScaledObject
    # (pkg/controller/v1beta1/inferenceservice/reconcilers/keda/keda_reconciler.go). The chart carries its CRDs as
    # templates (templates/crds/), so `helm upgrade` upgrades them.
    "keda": ChartPin(
        chart="keda",
        repository="https://kedacore.github.io/charts",
        version="2.20.2",
        namespace="keda",
        upstream="keda/v2.20.2",
        compatibility=(
            "KEDA 2.20.2 (Chart.yaml appVersion) serves keda.sh/v1alpha1 ScaledObject, the API KServe v0.20.0's "
            "KEDA reconciler writes (it builds against KEDA 2.18, kserve/v0.20.0/facts/dependency-versions.json; "
            "the ScaledObject API is unchanged since 2.0). The chart needs Kubernetes >= 1.23 (Chart.yaml "
            "kubeVersion); our clusters run 1.35. The Helm repository publishes the chart without a leading v."
        ),
    ),
    # KServe's LocalModelCache (components/local_model_cache.py): the CRDs, then the localmodel controller and the
    # node agent DaemonSet, released with KServe itself (same tag and OCI registry as the other KServe charts).
    "kserve-localmodel-crd": ChartPin(
        chart="kserve-localmodel-crd",
        repository=_KSERVE_REPOSITORY,
        version=_KSERVE_VERSION,
        namespace="kserve",
        upstream=f"kserve/{_KSERVE_VERSION}",
        compatibility=_KSERVE_COMPATIBILITY,
    ),
    # In KServe's namespace: the controller and the agent read the `localModel` section of the
    # inferenceservice-config ConfigMap from their own namespace (POD_NAMESPACE), which kserve-resources writes.
    "kserve-localmodel-resources": ChartPin(
        chart="kserve-localmodel-resources",
        repository=_KSERVE_REPOSITORY,
        version=_KSERVE_VERSION,
        namespace="kserve",
        upstream=f"kserve/{_KSERVE_VERSION}",
        compatibility=_KSERVE_COMPATIBILITY,
    ),
    # Batch queueing (components/batch_queue.py). The chart carries the CRDs as templates
    # (templates/crd/), so `helm upgrade` upgrades them with the controller.
    "kueue": ChartPin(
        chart="kueue",
        repository="oci://registry.k8s.io/kueue/charts",
        version="0.19.2",
        namespace="kueue-system",
        upstream="kueue/v0.19.2",
        compatibility=(
            "Kueue v0.19.2 serves kueue.x-k8s.io/v1beta2 ResourceFlavor, ClusterQueue and LocalQueue (its "
            "templates/crd/) and manages batch/v1 Jobs with `suspend` and backoffLimitPerIndex (GA in "
            "Kubernetes 1.33; our clusters run 1.35). The OCI registry publishes the chart without a leading v."
        ),
    ),
}
