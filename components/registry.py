"""A private registry: one stack setting that moves every image the platform runs onto the operator's mirror.

The rule is one prefix: `<source registry>/<repository>:<tag>` is pulled as
`<mirror>/<source registry>/<repository>:<tag>`. The source registry stays a path segment, so
`nvcr.io/nvidia/x` and `docker.io/nvidia/x` never collide, and a mirror made by copying each image
(`infra/run images STACK --copy-to-mirror` prints the `crane copy` lines) holds the same tags and digests.
Docker Hub's short names are spelled out first (`busybox:1.37.0` is `docker.io/library/busybox:1.37.0`).

Each component applies the rule where its chart or custom resource names an image (a `repository`, a
`registry`, a `hub`, a whole reference); tests render every stack with a mirror and find no image left
outside it (tests/test_private_registry.py).

Credentials: the nodes pull, not the pods. EKS nodes read ECR with their role, GKE nodes Artifact Registry
with their service account, and an on-prem node's container runtime is configured with the mirror and its
credentials (docs/entry.md, "Private registry"), so no pull secret has to be copied into every namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Optional

DOCKER_HUB = "docker.io"


def _looks_like_registry(part: str) -> bool:
    # Docker's rule (distribution/reference): a first path component with a dot or a port, or
    # `localhost`, is a registry host; anything else is a Docker Hub namespace.
    return "." in part or ":" in part or part == "localhost"


def full_repository(repository: str) -> str:
    """`busybox` -> `docker.io/library/busybox`, `kserve/agent` -> `docker.io/kserve/agent`; a repository
    that names its registry stays as it is."""
    first, _, rest = repository.partition("/")
    if rest and _looks_like_registry(first):
        return repository
    return f"{DOCKER_HUB}/{repository}" if rest else f"{DOCKER_HUB}/library/{repository}"


def split_reference(image: str) -> tuple[str, str]:
    """An image reference -> (repository with its registry, `:tag` / `@digest` / `:tag@digest` suffix)."""
    digest = ""
    if "@" in image:
        image, digest = image.split("@", 1)
        digest = "@" + digest
    last = image.rsplit("/", 1)[-1]
    tag = ""
    if ":" in last:
        image, tag = image.rsplit(":", 1)
        tag = ":" + tag
    return full_repository(image), tag + digest


@dataclass(frozen=True)
class ImageMirror:
    """Where every image comes from instead of its public registry."""

    registry: str  # host[:port][/path], e.g. `registry.corp.internal:5000/mirror`

    def repository(self, repository: str) -> str:
        """A chart value naming a repository without its tag."""
        return f"{self.registry}/{full_repository(repository)}"

    def image(self, image: str) -> str:
        """A whole image reference, tag or digest kept."""
        repository, suffix = split_reference(image)
        return f"{self.registry}/{repository}{suffix}"

    def registry_for(self, source_registry: str) -> str:
        """A chart value naming only the registry (charts that split `registry` and `repository`)."""
        return f"{self.registry}/{source_registry}"

    def holds(self, image: str) -> bool:
        return image.startswith(self.registry + "/")


def mirrored(mirror: Optional[ImageMirror], image: str) -> str:
    """`image` as pulled with `mirror` (unchanged without one)."""
    return mirror.image(image) if mirror else image


# --- chart values ---------------------------------------------------------------------------

# How a chart value names an image: a whole reference, a repository (the tag elsewhere), or only the
# registry (charts that split `registry` and `repository`).
ValueKind = Literal["image", "repository", "registry"]


@dataclass(frozen=True)
class ImageValue:
    path: str  # dotted path in the chart's values
    kind: ValueKind
    default: str  # the chart's own value at `path` (tests check it against the pinned values.yaml)


def _repositories(prefix: str, defaults: Mapping[str, str]) -> tuple[ImageValue, ...]:
    return tuple(ImageValue(f"{prefix}{key}", "repository", value) for key, value in defaults.items())


# Every value of each pinned chart (components/charts.py, by the chart's `name`) that names an image the chart's
# objects, or the operators it installs, run. A chart absent here runs no image (istio-base, the CRD charts).
# The image values kserve-resources and kserve-llmisvc-resources both carry under `kserve.` (the two charts share
# KServe's values layout at v0.20.0); each adds its own controller.
KSERVE_SHARED_IMAGES: Mapping[str, str] = {
    "storage.image": "kserve/storage-initializer",
    "agent.image": "kserve/agent",
    "router.image": "kserve/router",
    "localmodel.controller.image": "kserve/kserve-localmodel-controller",
    "localmodel.agent.image": "kserve/kserve-localmodelnode-agent",
    "localmodel.defaultJobImage": "kserve/storage-initializer",
    "servingruntime.art.image": "kserve/art-explainer",
}

CHART_IMAGE_VALUES: Mapping[str, tuple[ImageValue, ...]] = {
    # cert-manager composes `<imageRegistry>/<imageNamespace>/cert-manager-<component>` (v1.18+).
    "cert-manager": (ImageValue("imageRegistry", "registry", "quay.io"),),
    # The GPU Operator's ClusterPolicy names each operand's repository; the operator pulls them on the GPU nodes.
    "gpu-operator": _repositories(
        "",
        {
            "validator.repository": "nvcr.io/nvidia",
            "operator.repository": "nvcr.io/nvidia",
            "driver.repository": "nvcr.io/nvidia",
            "driver.manager.repository": "nvcr.io/nvidia/cloud-native",
            "toolkit.repository": "nvcr.io/nvidia/k8s",
            "devicePlugin.repository": "nvcr.io/nvidia",
            "dcgm.repository": "nvcr.io/nvidia/cloud-native",
            "dcgmExporter.repository": "nvcr.io/nvidia/k8s",
            "gfd.repository": "nvcr.io/nvidia",
            "migManager.repository": "nvcr.io/nvidia/cloud-native",
            "nodeStatusExporter.repository": "nvcr.io/nvidia",
            "gds.repository": "nvcr.io/nvidia/cloud-native",
            "gdrcopy.repository": "nvcr.io/nvidia/cloud-native",
            "vgpuManager.driverManager.repository": "nvcr.io/nvidia/cloud-native",
            "vgpuDeviceManager.repository": "nvcr.io/nvidia/cloud-native",
            "vfioManager.repository": "nvcr.io/nvidia/cloud-native",
            "vfioManager.driverManager.repository": "nvcr.io/nvidia/cloud-native",
            "sandboxDevicePlugin.repository": "nvcr.io/nvidia",
            "kataSandboxDevicePlugin.repository": "nvcr.io/nvidia/cloud-native",
            "ccManager.repository": "nvcr.io/nvidia/cloud-native",
            "draDriver.repository": "nvcr.io/nvidia",
            "node-feature-discovery.image.repository": "registry.k8s.io/nfd/node-feature-discovery",
        },
    ),
    "dcgm-exporter": (ImageValue("image.repository", "repository", "nvcr.io/nvidia/k8s/dcgm-exporter"),),
    "kube-prometheus-stack": (
        ImageValue("alertmanager.alertmanagerSpec.image.registry", "registry", "quay.io"),
        ImageValue("prometheus.prometheusSpec.image.registry", "registry", "quay.io"),
        ImageValue("thanosRuler.thanosRulerSpec.image.registry", "registry", "quay.io"),
        ImageValue("prometheusOperator.image.registry", "registry", "quay.io"),
        ImageValue("prometheusOperator.prometheusConfigReloader.image.registry", "registry", "quay.io"),
        ImageValue("prometheusOperator.thanosImage.registry", "registry", "quay.io"),
        ImageValue("prometheusOperator.admissionWebhooks.deployment.image.registry", "registry", "quay.io"),
        ImageValue("prometheusOperator.admissionWebhooks.patch.image.registry", "registry", "ghcr.io"),
        ImageValue("crds.upgradeJob.image.busybox.registry", "registry", "docker.io"),
        ImageValue("crds.upgradeJob.image.kubectl.registry", "registry", "registry.k8s.io"),
        # Subcharts, whose defaults are in their own values.yaml (prometheus-community/helm-charts
        # charts/kube-state-metrics and charts/prometheus-node-exporter, grafana-community/helm-charts
        # charts/grafana: `image.registry` beside `image.repository`).
        ImageValue("grafana.image.registry", "registry", "docker.io"),
        ImageValue("grafana.sidecar.image.registry", "registry", "quay.io"),
        ImageValue("grafana.initChownData.image.registry", "registry", "docker.io"),
        ImageValue("grafana.downloadDashboardsImage.registry", "registry", "docker.io"),
        ImageValue("kube-state-metrics.image.registry", "registry", "registry.k8s.io"),
        ImageValue("prometheus-node-exporter.image.registry", "registry", "quay.io"),
    ),
    # The gateway's `image: auto` is filled in by istiod's injector from the same hub, as is every sidecar.
    "istiod": (ImageValue("global.hub", "repository", "docker.io/istio"),),
    "knative-operator": _repositories(
        "knative_operator.",
        {
            "knative_operator.image": "gcr.io/knative-releases/knative.dev/operator/cmd/operator",
            "operator_webhook.image": "gcr.io/knative-releases/knative.dev/operator/cmd/webhook",
        },
    ),
    "kserve-resources": (
        *_repositories(
            "kserve.",
            {"controller.image": "kserve/kserve-controller", **KSERVE_SHARED_IMAGES},
        ),
        ImageValue("kserve.controller.rbacProxyImage", "image", "quay.io/brancz/kube-rbac-proxy:v0.18.0"),
    ),
    # The localmodel chart names the node agent's image under `localmodelnode.controller` (files/daemonset-patch.yaml);
    # `localmodel.agent.image` is read by neither chart at v0.20.0.
    "kserve-localmodel-resources": _repositories(
        "kserve.",
        {
            "localmodel.controller.image": "kserve/kserve-localmodel-controller",
            "localmodelnode.controller.image": "kserve/kserve-localmodelnode-agent",
        },
    ),
    # KEDA splits registry and repository; the mirror takes the registry (ghcr.io) as its first path element.
    "keda": (
        ImageValue("image.keda.registry", "registry", "ghcr.io"),
        ImageValue("image.metricsApiServer.registry", "registry", "ghcr.io"),
        ImageValue("image.webhooks.registry", "registry", "ghcr.io"),
    ),
    "kserve-runtime-configs": _repositories(
        "kserve.servingruntime.",
        {
            "tensorflow.image": "tensorflow/serving",
            "mlserver.image": "docker.io/seldonio/mlserver",
            "sklearnserver.image": "kserve/sklearnserver",
            "xgbserver.image": "kserve/xgbserver",
            "huggingfaceserver.image": "kserve/huggingfaceserver",
            "tritonserver.image": "nvcr.io/nvidia/tritonserver",
            "pmmlserver.image": "kserve/pmmlserver",
            "predictiveserver.image": "kserve/predictiveserver",
            "paddleserver.image": "kserve/paddleserver",
            "lgbserver.image": "kserve/lgbserver",
            "autogluonserver.image": "kserve/autogluonserver",
            "torchserve.image": "pytorch/torchserve-kfs",
            "vllmserver.image": "vllm/vllm-openai",
            "art.image": "kserve/art-explainer",
        },
    ),
    # The llmisvc controller; the vLLM, endpoint picker and tokenizer images of each LLMInferenceService are named
    # in the resource itself (components/models.py, LLM_IMAGES), over KServe's LLMInferenceServiceConfig presets.
    "kserve-llmisvc-resources": _repositories(
        "kserve.",
        {"llmisvc.controller.image": "kserve/llmisvc-controller", **KSERVE_SHARED_IMAGES},
    ),
    "lws": (ImageValue("image.manager.repository", "repository", "registry.k8s.io/lws/lws"),),
    # MinIO's operator chart is published as `operator`.
    "operator": (
        ImageValue("operator.image.repository", "repository", "quay.io/minio/operator"),
        # Empty in the chart; components/model_store.py names the sidecar the operator adds to MinIO's pods.
        ImageValue("operator.sidecarImage.repository", "repository", "quay.io/minio/operator-sidecar"),
    ),
    "flagger": (ImageValue("image.repository", "repository", "ghcr.io/fluxcd/flagger"),),
    "loadtester": (ImageValue("image.repository", "repository", "ghcr.io/fluxcd/flagger-loadtester"),),
    "jupyterhub": _repositories(
        "",
        {
            "hub.image.name": "quay.io/jupyterhub/k8s-hub",
            "proxy.chp.image.name": "quay.io/jupyterhub/configurable-http-proxy",
            "proxy.traefik.image.name": "traefik",
            "proxy.secretSync.image.name": "quay.io/jupyterhub/k8s-secret-sync",
            "singleuser.networkTools.image.name": "quay.io/jupyterhub/k8s-network-tools",
            "singleuser.image.name": "quay.io/jupyterhub/k8s-singleuser-sample",
            "scheduling.userScheduler.image.name": "registry.k8s.io/kube-scheduler",
            "scheduling.userPlaceholder.image.name": "registry.k8s.io/pause",
            "prePuller.hook.image.name": "quay.io/jupyterhub/k8s-image-awaiter",
            "prePuller.pause.image.name": "registry.k8s.io/pause",
        },
    ),
    "opencost": (
        ImageValue("opencost.exporter.image.registry", "registry", "ghcr.io"),
        ImageValue("opencost.ui.image.registry", "registry", "ghcr.io"),
    ),
    # components/batch_queue.py names the released image (the chart's default is the staging registry's).
    "kueue": (
        ImageValue(
            "controllerManager.manager.image.repository",
            "repository",
            "us-central1-docker.pkg.dev/k8s-staging-images/kueue/kueue",
        ),
    ),
    "karpenter": (ImageValue("controller.image.repository", "repository", "public.ecr.aws/karpenter/controller"),),
    "cluster-autoscaler": (
        ImageValue("image.repository", "repository", "registry.k8s.io/autoscaling/cluster-autoscaler"),
    ),
}


def value_at(tree: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of nested mappings, None where a key is missing."""
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        node[part] = child = dict(child) if isinstance(child, Mapping) else {}
        node = child
    node[leaf] = value


def chart_values_with_mirror(chart: str, values: Mapping[str, Any], mirror: Optional[ImageMirror]) -> dict[str, Any]:
    """`values` with every image value of `chart` moved to `mirror`: the component's own value where it sets
    one, else the chart's default. Without a mirror, `values` unchanged."""
    result = dict(values)
    if mirror is None:
        return result
    rewrite = {"image": mirror.image, "repository": mirror.repository, "registry": mirror.registry_for}
    for value in CHART_IMAGE_VALUES.get(chart, ()):
        current = value_at(values, value.path)
        _set(result, value.path, rewrite[value.kind](current if isinstance(current, str) and current else value.default))
    return result
