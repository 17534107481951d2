"""The GPU layer (components/gpu_stack.py): the GPU Operator on EKS and existing clusters, NVIDIA's
standalone DCGM exporter on GKE, and time-slicing profiles that match the labels on the pools.

Stack-level tests read the whole program's render (the `render` fixture); a few component tests
build GpuStack alone under the same mock engine (`infra.tooling.mock_engine.run_under_mocks`).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from components.charts import CHART_PINS, ChartPin
from components.gpu_stack import (
    DEVICE_PLUGIN_CONFIG_MAP,
    OPERAND_RESOURCES,
    GpuStack,
    GpuStackArgs,
    default_profile,
    device_plugin_configs,
    gpu_operator_values,
)
from components.node_pools import (
    DEVICE_PLUGIN_CONFIG_LABEL,
    GPU_TAINT,
    GPU_TAINT_KEY,
    ROLE_LABEL,
    SPOT_TAINT_KEY,
    TIME_SLICING_LABEL,
    GpuPoolSpec,
    NodePoolDescription,
    device_plugin_profile,
)
from infra.program.model_catalog import load_catalog
from infra.program.stack_config import stack_input
from infra.tooling.mock_engine import RenderResult, run_under_mocks
from tests.conftest import MANAGED_CLOUDS, Render, promised_gpu_pools, stacks_where, rendered_pools
from tests.upstream import (
    SHARED,
    check_pin_values,
    containers_without_requests,
    missing_requests,
    render_chart,
    requires_shared,
    validate_custom_resource,
)

OPERATOR = CHART_PINS["gpu-operator"]
DCGM = CHART_PINS["dcgm-exporter"]
RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
NODE_POOL = "gcp:container/nodePool:NodePool"
GPU_STACK = "gpu-platform:platform:GpuStack"
LOCAL_H100 = {"gpuPools": {"h100": {"gpuType": "nvidia-h100-80gb"}}}
# Stacks by cloud, from their settings. Tests of the GPU layer on an existing cluster give the stacks that
# declare no GPU pool (a kind cluster) LOCAL_H100, so that there is a GPU layer to check.
AWS_STACKS = stacks_where(cloud="aws")
GCP_STACKS = stacks_where(cloud="gcp")
EXISTING_STACKS = stacks_where(cloud="existing")
# A stack without GPU pools serves no GPU model, so replacing its (absent) pools keeps its models valid.
EXISTING_WITHOUT_GPUS = stacks_where(lambda s: not s.gpu_pools, cloud="existing")

# --- reading a render -----------------------------------------------------------------------------


def releases(result: RenderResult, pin: ChartPin) -> list[dict[str, Any]]:
    return [r["inputs"] for r in result.of_type(RELEASE) if r["inputs"].get("chart") == pin.chart_ref]


def the_release(result: RenderResult, pin: ChartPin) -> dict[str, Any]:
    (release,) = releases(result, pin)
    return release


def gpu_stack_config_maps(result: RenderResult) -> list[dict[str, Any]]:
    return [r["inputs"] for r in result.of_type(CONFIG_MAP) if f"{GPU_STACK}$" in r["urn"]]


def device_plugin_config_map(result: RenderResult) -> dict[str, Any]:
    (config_map,) = gpu_stack_config_maps(result)
    return config_map


def gpu_node_group_labels(result: RenderResult) -> dict[str, dict[str, str]]:
    """Labels of every GPU pool's nodes: EKS node groups, or Karpenter NodePools (the default on EKS)."""
    groups = [pool["labels"] for pool in rendered_pools(result) if pool["resource"]["type"] != "gcp:container/nodePool:NodePool"]
    return {labels["gpu-platform/pool"]: labels for labels in groups if labels[ROLE_LABEL] == "gpu"}


def system_node_group_labels(result: RenderResult) -> dict[str, str]:
    groups = [g["inputs"]["labels"] for g in result.of_type(NODE_GROUP)]
    (labels,) = [labels for labels in groups if labels[ROLE_LABEL] == "system"]
    return labels


def with_gpus(render: Render, stack: str) -> RenderResult:
    """The stack's render, with LOCAL_H100 for an existing cluster that declares no GPU pool."""
    return render(stack, LOCAL_H100 if stack in EXISTING_WITHOUT_GPUS else None)


def without_gpus(render: Render, stack: str) -> RenderResult:
    """The render of an existing-cluster stack as it would be without GPU pools (and so its CPU models only)."""
    if stack in EXISTING_WITHOUT_GPUS:
        return render(stack)
    catalog = load_catalog()
    models = stack_input(stack).get("models") or {}
    models = {name: override for name, override in models.items() if not catalog[name].resources.gpu}
    # Tenants keep their namespaces and CPU quotas; GPU quotas would name resources no pool offers.
    tenants = {
        name: {**tenant, "quota": {**(tenant.get("quota") or {}), "gpus": {}}, "batchQuota": {}}
        for name, tenant in (stack_input(stack).get("tenants") or {}).items()
    }
    return render(stack, {"gpuPools": {}, "models": models, **({"tenants": tenants} if tenants else {})})


def profile_name(replicas: int) -> str:
    """The device-plugin profile a pool of `replicas` time slices per GPU is labelled with."""
    return "whole-gpu" if replicas == 1 else f"timeslice-{replicas}"


def tolerated(tolerations: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(key, effect) pairs tolerated whatever the taint's value."""
    return {(t["key"], t["effect"]) for t in tolerations if t.get("operator") == "Exists"}


# --- what each cloud gets -------------------------------------------------------------------------


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_eks_runs_the_operator_without_driver_or_toolkit(render: Render, stack: str) -> None:
    result = render(stack)
    release = the_release(result, OPERATOR)
    assert (release["version"], release["namespace"]) == (OPERATOR.version, OPERATOR.namespace)
    assert release["repositoryOpts"]["repo"] == OPERATOR.repository
    # The EKS NVIDIA AMI brings both; the operator's would fight them.
    assert release["values"]["driver"] == {"enabled": False}
    assert release["values"]["toolkit"] == {"enabled": False}
    assert not releases(result, DCGM)


@pytest.mark.parametrize("stack", EXISTING_STACKS)
def test_existing_cluster_keeps_the_owners_driver_and_gets_the_toolkit(render: Render, stack: str) -> None:
    values = the_release(with_gpus(render, stack), OPERATOR)["values"]
    assert values["driver"]["enabled"] is False
    assert values["toolkit"]["enabled"] is True


@pytest.mark.parametrize("stack", GCP_STACKS)
def test_gke_gets_the_standalone_dcgm_exporter_instead_of_the_operator(render: Render, stack: str) -> None:
    result = render(stack)
    assert not releases(result, OPERATOR)
    assert not gpu_stack_config_maps(result), "GKE time-shares GPUs itself: no device-plugin config"
    release = the_release(result, DCGM)
    assert (release["version"], release["namespace"]) == (DCGM.version, DCGM.namespace)
    assert release["repositoryOpts"]["repo"] == DCGM.repository
    values = release["values"]
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "cloud.google.com/gke-accelerator", "operator": "Exists"}]
    # NVML comes from the driver GKE installs, not from an NVIDIA container runtime.
    assert {"name": "nvidia-install-dir-host", "hostPath": "/home/kubernetes/bin/nvidia"} in values["extraHostVolumes"]
    assert {"name": "nvidia-install-dir-host", "mountPath": "/usr/local/nvidia", "readOnly": True} in values[
        "extraVolumeMounts"
    ]
    assert {"name": "LD_LIBRARY_PATH", "value": "/usr/local/nvidia/lib64"} in values["extraEnv"]
    assert values["securityContext"] == {"privileged": True, "allowPrivilegeEscalation": True}


@pytest.mark.parametrize("stack", GCP_STACKS)
def test_gke_pools_carry_no_device_plugin_label(render: Render, stack: str) -> None:
    for pool in render(stack).of_type(NODE_POOL):
        assert DEVICE_PLUGIN_CONFIG_LABEL not in pool["inputs"]["nodeConfig"]["labels"]


@pytest.mark.parametrize("stack", stacks_where(tier="dev", cloud="existing"))
def test_local_with_an_h100_pool_shares_it_four_ways_by_default(render: Render, stack: str) -> None:
    result = render(stack, LOCAL_H100)
    device_plugin = the_release(result, OPERATOR)["values"]["devicePlugin"]["config"]
    # Dev tier: 4 replicas. One profile on the whole cluster, so unlabelled nodes get it.
    assert device_plugin["default"] == "timeslice-4"
    assert set(device_plugin_config_map(result)["data"]) == {"timeslice-4"}


@pytest.mark.parametrize("stack", EXISTING_STACKS)
def test_plain_local_has_no_gpu_layer(render: Render, stack: str) -> None:
    result = without_gpus(render, stack)
    assert not result.of_type(GPU_STACK)
    assert not releases(result, OPERATOR) and not releases(result, DCGM)
    assert not gpu_stack_config_maps(result)


# --- time-slicing: one profile per pool, label and key from one function ---------------------------


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_pool_label_names_a_profile_of_the_config_map(render: Render, stack: str) -> None:
    result = render(stack)
    pool_profiles = {profile_name(pool["timeSlicingReplicas"]) for pool in promised_gpu_pools(stack).values()}
    labels = gpu_node_group_labels(result)
    keys = set(device_plugin_config_map(result)["data"])
    default = the_release(result, OPERATOR)["values"]["devicePlugin"]["config"]["default"]
    assert {pool[DEVICE_PLUGIN_CONFIG_LABEL] for pool in labels.values()} == pool_profiles
    # Unlabelled GPU nodes get whole GPUs; the default must be a key too, or the plugin fails.
    assert default == "whole-gpu"
    assert keys == pool_profiles | {default}
    for pool in labels.values():
        assert pool[DEVICE_PLUGIN_CONFIG_LABEL] == device_plugin_profile(int(pool[TIME_SLICING_LABEL]))


@pytest.mark.parametrize("stack", [*AWS_STACKS, *EXISTING_STACKS])
def test_each_profile_shares_gpus_as_its_name_says(render: Render, stack: str) -> None:
    result = with_gpus(render, stack)
    for key, text in device_plugin_config_map(result)["data"].items():
        config = yaml.safe_load(text)
        assert config["version"] == "v1"
        if key == "whole-gpu":
            assert "sharing" not in config
        else:
            replicas = int(key.removeprefix("timeslice-"))
            resources = [{"name": "nvidia.com/gpu", "replicas": replicas}]
            assert config["sharing"] == {"timeSlicing": {"resources": resources}}


@requires_shared
@pytest.mark.parametrize("stack", [*AWS_STACKS, *EXISTING_STACKS])
def test_each_profile_has_the_shape_device_plugin_v0_20_reads(render: Render, stack: str) -> None:
    shape = json.loads((SHARED / "k8s-device-plugin/v0.20.0/facts/time-slicing-config-shape.json").read_text())
    document = shape["document"]
    time_slicing = document["sharing"]["fields"]["timeSlicing"]["fields"]
    result = with_gpus(render, stack)
    for text in device_plugin_config_map(result)["data"].values():
        config = yaml.safe_load(text)
        assert set(config) <= set(document)
        assert config["version"] in document["version"]["allowed"]
        for sharing in config.get("sharing", {}).values():
            assert set(sharing) <= set(time_slicing)
            for resource in sharing["resources"]:
                assert set(resource) == set(time_slicing["resources"]["items"])
                assert isinstance(resource["replicas"], int) and resource["replicas"] > 1


@pytest.mark.parametrize("stack", [*AWS_STACKS, *EXISTING_STACKS])
def test_the_chart_points_at_the_config_map_in_its_namespace(render: Render, stack: str) -> None:
    result = with_gpus(render, stack)
    release = the_release(result, OPERATOR)
    config_map = device_plugin_config_map(result)
    config = release["values"]["devicePlugin"]["config"]
    assert config["name"] == config_map["metadata"]["name"] == DEVICE_PLUGIN_CONFIG_MAP
    assert config_map["metadata"]["namespace"] == release["namespace"]
    assert config["default"] in config_map["data"]
    assert "create" not in config, "the chart must not render a second ConfigMap of the same name"


# --- placement --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_controllers_run_on_the_system_pool(render: Render, stack: str) -> None:
    result = render(stack)
    values = the_release(result, OPERATOR)["values"]
    system = system_node_group_labels(result)
    nfd = values["node-feature-discovery"]
    assert values["operator"]["nodeSelector"] == system
    assert nfd["master"]["nodeSelector"] == system
    assert nfd["gc"]["nodeSelector"] == system


@pytest.mark.parametrize("stack", stacks_where(cloud=MANAGED_CLOUDS))
def test_gpu_daemonsets_tolerate_the_gpu_and_spot_taints(render: Render, stack: str) -> None:
    result = render(stack)
    needed = {(GPU_TAINT_KEY, "NoSchedule")}
    if any(pool["capacityType"] == "spot" for pool in promised_gpu_pools(stack).values()):
        needed.add((SPOT_TAINT_KEY, "NoSchedule"))
    if stack in GCP_STACKS:
        assert needed <= tolerated(the_release(result, DCGM)["values"]["tolerations"])
        return
    values = the_release(result, OPERATOR)["values"]
    assert needed <= tolerated(values["daemonsets"]["tolerations"])
    assert needed <= tolerated(values["node-feature-discovery"]["worker"]["tolerations"])
    effects = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
    for group in result.of_type(NODE_GROUP):
        for taint in group["inputs"]["taints"]:
            assert (taint["key"], effects[taint["effect"]]) in tolerated(values["daemonsets"]["tolerations"])


@pytest.mark.parametrize("stack", [*AWS_STACKS, *GCP_STACKS])
def test_dcgm_metrics_get_a_service_monitor(render: Render, stack: str) -> None:
    result = render(stack)
    if stack in GCP_STACKS:
        assert the_release(result, DCGM)["values"]["serviceMonitor"] == {"enabled": True}
    else:
        exporter = the_release(result, OPERATOR)["values"]["dcgmExporter"]
        assert (exporter["enabled"], exporter["serviceMonitor"]) == (True, {"enabled": True})


@pytest.mark.parametrize("stack", [*AWS_STACKS, *GCP_STACKS])
def test_the_gpu_release_waits_for_the_monitoring_crds(render: Render, stack: str) -> None:
    result = render(stack)
    monitoring_chart = CHART_PINS["kube-prometheus-stack"].chart_ref
    monitoring = {r["urn"] for r in result.of_type(RELEASE) if r["inputs"]["chart"] == monitoring_chart}
    (gpu,) = [r for r in result.of_type(RELEASE) if r["inputs"]["chart"] in (OPERATOR.chart_ref, DCGM.chart_ref)]
    assert monitoring and monitoring <= set(gpu["dependencies"])  # the ServiceMonitor's CRD


# --- against the pinned charts ------------------------------------------------------------------------


@requires_shared
@pytest.mark.parametrize("stack", [*AWS_STACKS, *GCP_STACKS, *EXISTING_STACKS])
def test_every_value_we_set_is_a_value_of_the_pinned_chart(render: Render, stack: str) -> None:
    result = with_gpus(render, stack)
    checked = 0
    for pin in (OPERATOR, DCGM):
        for release in releases(result, pin):
            assert check_pin_values(pin, release["values"]) == []
            checked += 1
    assert checked == 1


# Hook Jobs of the GPU Operator chart whose container takes no resources from any value
# (templates/upgrade_crd.yaml, a pre-upgrade hook, and templates/cleanup_gpucluster.yaml, pre-delete): they
# run for seconds on an upgrade or an uninstall, and get their requests from the LimitRange GpuStack declares
# in the namespace (tests/test_objects.py checks every stack with it). Listed so that any other gap fails.
OPERATOR_HOOKS_WITHOUT_RESOURCE_VALUES = (
    "Job/gpu-operator-cleanup-gpucluster containers[cleanup-gpucluster]: no cpu or memory request",
    "Job/gpu-operator-upgrade-crd containers[upgrade-crd]: no cpu or memory request",
)
# The ClusterPolicy components whose DaemonSets run on our GPU nodes (`enabled` and not sandbox-only);
# the toolkit only where the chart deploys it (existing clusters).
RUNNING_OPERANDS = ("devicePlugin", "gfd", "dcgmExporter", "migManager", "validator")


def cluster_policy(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (policy,) = [o for o in objects if o["kind"] == "ClusterPolicy"]
    return policy


@requires_shared
@pytest.mark.parametrize("stack", [*AWS_STACKS, *EXISTING_STACKS])
def test_every_container_of_the_operator_chart_requests_cpu_and_memory(render: Render, stack: str) -> None:
    release = the_release(with_gpus(render, stack), OPERATOR)
    objects = render_chart(OPERATOR, release["values"], release=release["name"])
    assert containers_without_requests(objects) == list(OPERATOR_HOOKS_WITHOUT_RESOURCE_VALUES)


@requires_shared
@pytest.mark.parametrize("stack", [*AWS_STACKS, *EXISTING_STACKS])
def test_every_operand_on_a_gpu_node_requests_cpu_and_memory_through_the_cluster_policy(
    render: Render, stack: str
) -> None:
    # The operator creates the DaemonSets from the ClusterPolicy the chart renders; each component's
    # `resources` is what their containers get.
    release = the_release(with_gpus(render, stack), OPERATOR)
    policy = cluster_policy(render_chart(OPERATOR, release["values"], release=release["name"]))
    assert validate_custom_resource(policy) == []
    operands = [*RUNNING_OPERANDS, *(["toolkit"] if policy["spec"]["toolkit"]["enabled"] else [])]
    assert (stack in EXISTING_STACKS) == ("toolkit" in operands)
    for operand in operands:
        resources = policy["spec"][operand].get("resources")
        assert missing_requests(resources) == [], operand
        assert "cpu" not in resources.get("limits", {}), f"{operand}: a CPU limit only throttles"
        assert operand in OPERAND_RESOURCES


@requires_shared
def test_the_operator_chart_leaves_its_operands_unrequested_by_default() -> None:
    # Why the test above matters: without our values every operand would run without requests.
    spec = cluster_policy(render_chart(OPERATOR, {}))["spec"]
    assert [o for o in RUNNING_OPERANDS if not missing_requests(spec[o].get("resources"))] == []


def test_disabled_operands_are_not_sized() -> None:
    # A disabled component's resources would change no pod (EKS: the AMI brings the toolkit).
    values = gpu_operator_values(_args("aws", _pool("l4", 1)))
    assert values["toolkit"] == {"enabled": False}
    assert values["driver"] == {"enabled": False}


@requires_shared
@pytest.mark.parametrize("stack", GCP_STACKS)
def test_the_standalone_dcgm_exporter_requests_cpu_and_memory(render: Render, stack: str) -> None:
    release = the_release(render(stack), DCGM)
    objects = render_chart(DCGM, release["values"], release=release["name"])
    assert [o for o in objects if o["kind"] == "DaemonSet"]
    assert containers_without_requests(objects) == []


# --- the component alone --------------------------------------------------------------------------


def _pool(name: str, replicas: int, *, spot: bool = False) -> NodePoolDescription:
    capacity = "spot" if spot else "onDemand"
    spec = GpuPoolSpec(name, "nvidia-l4", 1, capacity, "serving", replicas, 0, 2, ("g6.xlarge",), 200)
    return spec.describe(GPU_TAINT)


def _args(cloud: str, *pools: NodePoolDescription, service_monitor: bool = True) -> GpuStackArgs:
    tolerations = tuple({(t["key"], t["effect"]): t for p in pools for t in p.tolerations}.values())
    return GpuStackArgs(cloud, pools, {"gpu-platform/role": "system"}, tolerations, service_monitor)


def test_profile_names() -> None:
    names = [device_plugin_profile(n) for n in (1, 2, 4, 48)]
    assert names == ["whole-gpu", "timeslice-2", "timeslice-4", "timeslice-48"]
    with pytest.raises(ValueError):
        device_plugin_profile(0)


def test_eks_pools_are_labelled_with_their_profile_and_can_opt_out() -> None:
    spec = GpuPoolSpec("gpu", "nvidia-l4", 1, "onDemand", "serving", 4, 0, 2, ("g6.xlarge",), 200)
    assert spec.describe(GPU_TAINT).labels[DEVICE_PLUGIN_CONFIG_LABEL] == "timeslice-4"
    assert DEVICE_PLUGIN_CONFIG_LABEL not in spec.describe(GPU_TAINT, device_plugin_label=False).labels


def test_an_existing_cluster_with_mixed_profiles_defaults_to_whole_gpus() -> None:
    args = _args("existing", _pool("shared", 8), _pool("big", 2))
    assert default_profile(args) == "whole-gpu"
    assert set(device_plugin_configs(args)) == {"timeslice-8", "timeslice-2", "whole-gpu"}


def test_the_service_monitor_follows_the_argument() -> None:
    # The chart's default is true; without the Prometheus Operator's CRD it must be off.
    values = gpu_operator_values(_args("aws", _pool("gpu", 1), service_monitor=False))
    assert values["dcgmExporter"]["serviceMonitor"] == {"enabled": False}


@pytest.mark.parametrize(
    "args",
    [
        lambda: _args("azure", _pool("gpu", 1)),
        lambda: _args("aws"),
        lambda: GpuStackArgs("aws", (NodePoolDescription("system", "system", {}),), {}, (), True),
    ],
    ids=["unknown cloud", "no pools", "not a gpu pool"],
)
def test_args_are_checked_up_front(args: Callable[[], GpuStackArgs]) -> None:
    with pytest.raises(ValueError):
        args()


def _build_component(args: GpuStackArgs) -> RenderResult:
    def program() -> None:
        provider = k8s.Provider("k8s")
        monitoring = k8s.core.v1.ConfigMap("monitoring-crds", data={})
        GpuStack("unit-gpu", args, pulumi.ResourceOptions(providers={"kubernetes": provider}, depends_on=[monitoring]))

    return run_under_mocks("unit", program)


@pytest.mark.parametrize("cloud", ["aws", "gcp", "existing"])
def test_children_use_the_cluster_provider_and_wait_for_the_callers_dependencies(cloud: str) -> None:
    result = _build_component(_args(cloud, _pool("gpu", 4, spot=True)))
    by_name = {r["name"]: r for r in result.resources}
    monitoring_urn, provider_urn = by_name["monitoring-crds"]["urn"], by_name["k8s"]["urn"]
    (release,) = result.of_type(RELEASE)
    assert release["parent"] == by_name["unit-gpu"]["urn"]
    assert release["provider"].startswith(provider_urn)
    assert monitoring_urn in release["dependencies"]  # the ServiceMonitor needs the monitoring CRDs
    config_maps = [r for r in result.of_type(CONFIG_MAP) if r["parent"] == by_name["unit-gpu"]["urn"]]
    if cloud == "gcp":
        assert not config_maps
    else:
        (config_map,) = config_maps
        assert config_map["provider"].startswith(provider_urn)
        assert release["urn"] in config_map["dependencies"]  # the release creates the namespace
