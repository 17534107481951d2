"""Order of creation and deletion, checked on the rendered dependency graph.

`pulumi destroy` deletes a resource's dependents before the resource, and a resource depends on its
dependencies, its provider and its parent (pulumi/pulumi pkg/resource/graph/dependency_graph.go,
DependenciesOf). So every Helm release and Kubernetes object must depend, at least transitively, on
the system node pool: its controllers (KServe, Knative, cert-manager, MinIO) clear the finalizers
that deleting those objects waits for. A GPU model must likewise depend on the GPU pools it can
land on. An existing cluster's nodes are not this program's: there is nothing to depend on.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import pytest

from infra.tooling.mock_engine import RenderResult
from tests.conftest import AWS_STACKS, GCP_STACKS, Render, rendered_pools

MANAGED_STACKS = [*AWS_STACKS, *GCP_STACKS]
INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
GPU_RESOURCE = "nvidia.com/gpu"
POOL_LABEL = "gpu-platform/pool"
# An on-prem server with one GPU pool and a GPU model on it.
LOCAL_H100 = {
    "gpuPools": {"h100": {"gpuType": "nvidia-h100-80gb"}},
    "models": {"mnist-classifier": {}, "smollm-135m": {"gpuType": "nvidia-h100-80gb"}},
}


# --- the graph ------------------------------------------------------------------------------------


def direct_dependencies(resource: Mapping[str, Any]) -> set[str]:
    """What the engine counts as `resource`'s dependencies: its dependencies, provider and parent."""
    urns = set(resource["dependencies"])
    if resource["provider"]:
        urns.add(resource["provider"].rsplit("::", 1)[0])  # a reference is `<provider urn>::<id>`
    if resource["parent"]:
        urns.add(resource["parent"])
    return urns


class DependencyGraph:
    def __init__(self, result: RenderResult):
        self.direct = {r["urn"]: direct_dependencies(r) for r in result.resources}
        self._closures: dict[str, frozenset[str]] = {}

    def depends_on(self, urn: str) -> frozenset[str]:
        """Every URN `urn` depends on, directly or not."""
        if urn not in self._closures:
            seen: set[str] = set()
            stack = list(self.direct[urn])
            while stack:
                dependency = stack.pop()
                if dependency not in seen:
                    seen.add(dependency)
                    stack.extend(self.direct.get(dependency, ()))
            self._closures[urn] = frozenset(seen)
        return self._closures[urn]


def pool_urns(result: RenderResult) -> dict[str, str]:
    """Pool name -> URN of its node group (EKS) or node pool (GKE), found by the pool label."""
    return {pool["labels"][POOL_LABEL]: pool["resource"]["urn"] for pool in rendered_pools(result)}


def on_cluster(result: RenderResult) -> list[dict[str, Any]]:
    """Every Helm release and Kubernetes object the stack declares."""
    return [*result.helm_releases, *result.kubernetes_objects]


def pod_spec(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    if resource["type"] == INFERENCE_SERVICE:
        return resource["inputs"]["spec"]["predictor"]
    return resource["inputs"]["spec"]["template"]["spec"]


def containers(resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = pod_spec(resource)
    return [spec["model"]] if resource["type"] == INFERENCE_SERVICE else list(spec["containers"])


def gpu_models(result: RenderResult) -> Iterator[dict[str, Any]]:
    """InferenceServices and Deployments whose server asks for a GPU."""
    for resource in [*result.of_type(INFERENCE_SERVICE), *result.of_type(DEPLOYMENT)]:
        if any(GPU_RESOURCE in c.get("resources", {}).get("limits", {}) for c in containers(resource)):
            yield resource


def landing_pools(resource: Mapping[str, Any]) -> set[str]:
    """The pools a model's required node affinity admits, read from the rendered pod spec."""
    terms = pod_spec(resource)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    pools = set()
    for term in terms["nodeSelectorTerms"]:
        (pool,) = [e["values"] for e in term["matchExpressions"] if e["key"] == POOL_LABEL and e["operator"] == "In"]
        pools.update(pool)
    return pools


# --- managed clusters -----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", MANAGED_STACKS)
def test_everything_on_the_cluster_is_deleted_before_the_system_pool(render: Render, stack: str) -> None:
    result = render(stack)
    graph = DependencyGraph(result)
    system = pool_urns(result)["system"]
    resources = on_cluster(result)
    assert result.helm_releases and result.kubernetes_objects
    late = [r["urn"] for r in resources if system not in graph.depends_on(r["urn"])]
    assert late == [], "would outlive the system pool's controllers on `pulumi destroy`"


@pytest.mark.parametrize("stack", MANAGED_STACKS)
def test_the_kubernetes_provider_waits_for_the_system_pool_only(render: Render, stack: str) -> None:
    # Through the provider every release and object follows; GPU pools stay out, so a GPU pool can
    # be added or removed without the whole platform waiting for it.
    result = render(stack)
    (provider,) = result.of_type("pulumi:providers:kubernetes")
    pools = pool_urns(result)
    assert pools["system"] in provider["dependencies"]
    assert not {urn for name, urn in pools.items() if name != "system"} & set(provider["dependencies"])


@pytest.mark.parametrize("stack", MANAGED_STACKS)
def test_gpu_models_are_deleted_before_the_gpu_pools_they_run_on(render: Render, stack: str) -> None:
    result = render(stack)
    graph = DependencyGraph(result)
    pools = pool_urns(result)
    models = list(gpu_models(result))
    gpu_pools = {name for name in pools if name != "system"}
    if gpu_pools:
        assert models, f"{stack} has GPU pools: the check needs a GPU model to mean something"
    for model in models:
        landing = landing_pools(model)
        assert landing and landing <= gpu_pools, model["urn"]
        missing = sorted(name for name in landing if pools[name] not in graph.depends_on(model["urn"]))
        assert missing == [], f"{model['urn']} does not wait for pools {missing}"


@pytest.mark.parametrize("stack", MANAGED_STACKS)
def test_the_gpu_layer_is_deleted_before_every_gpu_pool(render: Render, stack: str) -> None:
    # The GPU Operator's (or DCGM exporter's) DaemonSets run on every GPU node.
    result = render(stack)
    graph = DependencyGraph(result)
    gpu_pools = {name: urn for name, urn in pool_urns(result).items() if name != "system"}
    gpu_layer = [r for r in result.helm_releases if "gpu-platform:platform:GpuStack$" in r["urn"]]
    assert bool(gpu_layer) == bool(gpu_pools)
    for release in gpu_layer:
        assert set(gpu_pools.values()) <= graph.depends_on(release["urn"]), release["urn"]


# --- existing clusters ----------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [None, LOCAL_H100], ids=["kind", "on-prem-h100"])
def test_an_existing_cluster_has_no_pool_to_wait_for(render: Render, overrides: Any) -> None:
    result = render("local", overrides)
    graph = DependencyGraph(result)
    assert pool_urns(result) == {}
    (provider,) = result.of_type("pulumi:providers:kubernetes")
    assert provider["dependencies"] == []
    if overrides:
        assert list(gpu_models(result)), "the h100 override serves a GPU model"
    # Nothing on the cluster waits for a cloud resource standing in for the owner's nodes.
    types = {r["urn"]: r["type"] for r in result.resources}
    for resource in on_cluster(result):
        foreign = {types[urn] for urn in graph.depends_on(resource["urn"])} - {"pulumi:pulumi:Stack"}
        assert all(t.split(":")[0] in ("kubernetes", "gpu-platform", "random", "pulumi") for t in foreign), foreign
