"""Where every workload of the platform runs, walked across every release and custom resource of every stack.

Controllers belong on the system pool; the DaemonSets that must reach every GPU node tolerate every
taint a GPU pool carries (the GPU taint, and the spot taint on spot pools). A Helm release shows us its
values, not its pods, so each chart's placement values are listed here once: a chart added without an
entry fails `test_every_release_has_a_placement_entry`, so nothing lands on a GPU node by default.
"""

from __future__ import annotations

from typing import Any, Mapping

import pytest

from components.registry import value_at
from infra.tooling.mock_engine import RenderResult
from infra.tooling.object_checks import pod_spec
from tests.conftest import SHIPPED_STACKS, Render, expanded, promised_gpu_pools, rendered_pools, requires_charts

# chart (as the release names it) -> value paths that place its controllers: a nodeSelector map, or an
# `affinity` whose required node terms must select the system pool.
CONTROLLER_PLACEMENT: Mapping[str, tuple[str, ...]] = {
    "cert-manager": ("nodeSelector", "webhook.nodeSelector", "cainjector.nodeSelector", "startupapicheck.nodeSelector"),
    "cluster-autoscaler": ("nodeSelector",),
    # Karpenter (OCI charts, named by their full reference): the controller; the CRD chart has no pods.
    "oci://public.ecr.aws/karpenter/karpenter": ("nodeSelector",),
    "oci://public.ecr.aws/karpenter/karpenter-crd": (),
    "gpu-operator": (
        "operator.nodeSelector",
        "node-feature-discovery.master.nodeSelector",
        "node-feature-discovery.gc.nodeSelector",
    ),
    "dcgm-exporter": (),  # a DaemonSet only, see GPU_DAEMONSETS
    "base": (),  # CRDs and webhooks' configuration, no pods
    "istiod": ("nodeSelector",),
    "gateway": ("nodeSelector",),
    "operator": ("operator.nodeSelector",),  # MinIO operator
    "kube-prometheus-stack": (
        "prometheusOperator.nodeSelector",
        "prometheusOperator.admissionWebhooks.patch.nodeSelector",
        "prometheus.prometheusSpec.nodeSelector",
        "alertmanager.alertmanagerSpec.nodeSelector",
        "grafana.nodeSelector",
        "kube-state-metrics.nodeSelector",
    ),
    "flagger": ("nodeSelector",),
    "loadtester": ("nodeSelector",),
    "knative-operator": (
        "knative_operator.knative_operator.affinity",
        "knative_operator.operator_webhook.affinity",
    ),
    "oci://ghcr.io/kserve/charts/kserve-crd": (),  # CRDs only
    "oci://ghcr.io/kserve/charts/kserve-resources": ("kserve.controller.nodeSelector",),
    "oci://ghcr.io/kserve/charts/kserve-runtime-configs": (),  # ClusterServingRuntimes, no pods
    # LocalModelCache (components/local_model_cache.py): CRDs; the node agent is a DaemonSet on the cache pools, and
    # the controller has no placement value (UNPLACEABLE below).
    "oci://ghcr.io/kserve/charts/kserve-localmodel-crd": (),
    "oci://ghcr.io/kserve/charts/kserve-localmodel-resources": (),
    "keda": ("nodeSelector",),  # operator, metrics API server and webhooks (components/keda.py)
    "oci://ghcr.io/kserve/charts/kserve-llmisvc-crd": (),  # CRDs only
    "oci://ghcr.io/kserve/charts/kserve-llmisvc-resources": ("kserve.llmisvc.controller.nodeSelector",),
    "oci://registry.k8s.io/lws/charts/lws": ("nodeSelector",),  # LeaderWorkerSet's controller
    # Notebooks: the hub and the proxy; user servers go where their profile says (components/notebooks.py).
    "jupyterhub": ("hub.nodeSelector", "proxy.chp.nodeSelector"),
    # OpenCost: exporter and UI in one Deployment (components/cost_monitoring.py).
    "opencost": ("opencost.nodeSelector",),
    # Kueue's controller; batch Jobs go where Kueue's flavors say (components/batch_queue.py).
    "oci://registry.k8s.io/kueue/charts/kueue": ("controllerManager.nodeSelector",),
}
# Chart pods no value can place, each with why it still lands on the system pool (checked below).
UNPLACEABLE: Mapping[str, str] = {
    "kserve/Deployment/kserve-localmodel-controller-manager": (
        "kserve-localmodel-resources v0.20.0 offers no nodeSelector or affinity for its controller "
        "(files/deployment-patch.yaml sets only the container); it tolerates no taint and every GPU pool is tainted"
    ),
}
# chart -> value paths of tolerations for DaemonSets that must run on every GPU node.
GPU_DAEMONSETS: Mapping[str, tuple[str, ...]] = {
    "gpu-operator": ("daemonsets.tolerations", "node-feature-discovery.worker.tolerations"),
    "dcgm-exporter": ("tolerations",),
    "kube-prometheus-stack": ("prometheus-node-exporter.tolerations",),
}


def system_selector(result: RenderResult) -> dict[str, str]:
    """The system pool's labels, as the cluster component describes them (empty on a plain kind cluster)."""
    (cert_manager,) = [r for r in result.helm_releases if r["inputs"]["chart"] == "cert-manager"]
    return dict(cert_manager["inputs"]["values"]["nodeSelector"])


# Cloud APIs spell taint effects NO_SCHEDULE...; Kubernetes (and tolerations) NoSchedule...
KUBERNETES_EFFECT = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}


def gpu_taints(result: RenderResult) -> set[tuple[str, str]]:
    """(key, effect) of every taint of every GPU pool, read from the cluster resources of the render."""
    taints: set[tuple[str, str]] = set()
    for group in result.of_type("aws:eks/nodeGroup:NodeGroup"):
        for taint in group["inputs"].get("taints") or []:
            taints.add((taint["key"], KUBERNETES_EFFECT[taint["effect"]]))
    for pool in result.of_type("kubernetes:karpenter.sh/v1:NodePool"):
        for taint in pool["inputs"]["spec"]["template"]["spec"].get("taints") or []:
            taints.add((taint["key"], taint["effect"]))
    for pool in result.of_type("gcp:container/nodePool:NodePool"):
        config = pool["inputs"].get("nodeConfig") or {}
        for taint in config.get("taints") or []:
            taints.add((taint["key"], KUBERNETES_EFFECT[taint["effect"]]))
        if (config.get("guestAccelerators") or []) and not any(k == "nvidia.com/gpu" for k, _ in taints):
            taints.add(("nvidia.com/gpu", "NoSchedule"))  # GKE taints GPU nodes itself
    return taints


def tolerates(tolerations: list[Mapping[str, str]], key: str, effect: str) -> bool:
    return any(
        (t.get("operator") == "Exists" and not t.get("key"))
        or (t.get("key") == key and t.get("effect") in (effect, None, ""))
        for t in tolerations
    )


def affinity_selects(affinity: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return all(
        {e["key"]: e["values"] for e in term["matchExpressions"] if e["operator"] == "In"}
        == {k: [v] for k, v in selector.items()}
        for term in terms
    )


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_release_has_a_placement_entry(render: Render, stack: str) -> None:
    charts = {r["inputs"]["chart"] for r in render(stack).helm_releases}
    assert charts <= set(CONTROLLER_PLACEMENT), f"say where these run: {sorted(charts - set(CONTROLLER_PLACEMENT))}"


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_controller_of_every_release_runs_on_the_system_pool(render: Render, stack: str) -> None:
    result = render(stack)
    system = system_selector(result)
    for release in result.helm_releases:
        values = release["inputs"].get("values") or {}
        for path in CONTROLLER_PLACEMENT[release["inputs"]["chart"]]:
            placed = value_at(values, path)
            where = f"{release['name']}: {path}"
            if not system:  # a cluster without system labels: nothing to select, nothing set
                assert not placed, where
            elif path.endswith("affinity"):
                assert placed and affinity_selects(placed, system), where
            else:
                assert placed == system, where


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_gpu_daemonsets_tolerate_every_taint_of_every_gpu_pool(render: Render, stack: str) -> None:
    result = render(stack)
    taints = gpu_taints(result)
    checked = 0
    for release in result.helm_releases:
        for path in GPU_DAEMONSETS.get(release["inputs"]["chart"], ()):
            tolerations = value_at(release["inputs"]["values"], path) or []
            for key, effect in taints:
                assert tolerates(tolerations, key, effect), f"{release['name']}: {path} misses {key}:{effect}"
            checked += 1
    if taints:
        assert checked >= 2, "the node exporter and a GPU metrics DaemonSet at least"
        has_spot_pool = any(pool.get("capacityType") == "spot" for pool in promised_gpu_pools(stack).values())
        assert any(key == "gpu-platform/spot" for key, _ in taints) == has_spot_pool


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_custom_resources_with_pods_place_them_on_the_system_pool(render: Render, stack: str) -> None:
    result = render(stack)
    system = system_selector(result)
    (tenant,) = result.of_type("kubernetes:minio.min.io/v2:Tenant")
    for pool in tenant["inputs"]["spec"]["pools"]:
        assert (pool.get("nodeSelector") or {}) == system
    (serving,) = result.of_type("kubernetes:operator.knative.dev/v1beta1:KnativeServing")
    for workload in serving["inputs"]["spec"].get("workloads", []):
        assert workload.get("nodeSelector", {}) == system


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_no_cpu_workload_tolerates_a_gpu_taint(render: Render, stack: str) -> None:
    result = render(stack)
    for deployment in result.of_type("kubernetes:apps/v1:Deployment"):
        pod = deployment["inputs"]["spec"]["template"]["spec"]
        limits = [c.get("resources", {}).get("limits", {}) for c in pod["containers"]]
        if not any("nvidia.com/gpu" in limit for limit in limits):
            assert not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations") or []), deployment["name"]


# --- on the objects the charts render -------------------------------------------------------------


def _places_on(pod: Mapping[str, Any], system: Mapping[str, str]) -> bool:
    selector = pod.get("nodeSelector") or {}
    if all(selector.get(k) == v for k, v in system.items()):
        return True
    affinity = pod.get("affinity") or {}
    return bool(affinity.get("nodeAffinity")) and affinity_selects(affinity, system)


@requires_charts
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_chart_pod_that_is_not_a_daemonset_runs_on_the_system_pool(render: Render, stack: str) -> None:
    # What the placement values above promise, checked on what the charts really render from them.
    system = system_selector(render(stack))
    checked = 0
    for obj in expanded(stack).objects:
        pod = pod_spec(obj)
        if pod is None or obj.kind == "DaemonSet" or not obj.source.startswith("helm:"):
            continue
        checked += 1
        if obj.key in UNPLACEABLE:
            # Untainted nodes are the system pool's when every GPU pool is tainted.
            assert not pod.get("tolerations"), obj.key
            assert all(pool["taints"] for pool in rendered_pools(render(stack)) if pool["labels"].get("gpu-platform/role") == "gpu")
            continue
        if system:
            assert _places_on(pod, system), f"{obj.key} ({obj.source}) may land on a GPU node"
        assert not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations") or []), obj.key
    assert checked >= 10


@requires_charts
@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_chart_daemonset_tolerates_every_gpu_pool_taint(render: Render, stack: str) -> None:
    # The DaemonSets our charts render (NFD's worker, the DCGM exporter) exist for every node, GPU
    # nodes above all.
    taints = gpu_taints(render(stack))
    daemonsets = [o for o in expanded(stack).objects if o.kind == "DaemonSet" and o.source.startswith("helm:")]
    for daemonset in daemonsets:
        tolerations = pod_spec(daemonset).get("tolerations") or []
        for key, effect in taints:
            assert tolerates(tolerations, key, effect), f"{daemonset.key} misses {key}:{effect}"
    if taints:
        assert daemonsets, "a GPU stack runs GPU DaemonSets"
