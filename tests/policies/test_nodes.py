"""gpu-node-pools-tainted and spot-node-pools-tainted, on every shape a node pool can take."""

from __future__ import annotations

import pytest

from policies.gpu_platform_policies.nodes import gpu_node_pools_tainted, spot_node_pools_tainted

from .engine import UNKNOWN_STRING, run
from .resources import eks_node_group, eks_system_node_group, gke_node_pool

EKS = "aws:eks/nodeGroup:NodeGroup"
GKE = "gcp:container/nodePool:NodePool"
SPOT_TAINT = {"effect": "NO_SCHEDULE", "key": "gpu-platform/spot", "value": "true"}
GPU_TAINT = {"effect": "NO_SCHEDULE", "key": "nvidia.com/gpu", "value": "true"}


# --- GPU pools ------------------------------------------------------------------------------------


def test_tainted_eks_gpu_pool_and_untainted_system_pool_pass():
    assert run(gpu_node_pools_tainted, EKS, eks_node_group()) == []
    assert run(gpu_node_pools_tainted, EKS, eks_system_node_group()) == []


@pytest.mark.parametrize(
    "overrides, evidence",
    [
        ({}, "amiType AL2023_x86_64_NVIDIA"),
        ({"amiType": "AL2023_x86_64_STANDARD", "labels": {}}, "instance type g6.xlarge"),  # custom AMI, GPU family
        (
            {"amiType": None, "instanceTypes": None, "labels": {"gpu-platform/role": "gpu"}},
            "label gpu-platform/role=gpu",
        ),
    ],
)
def test_untainted_eks_gpu_pool_fails_naming_field_and_fix(overrides, evidence):
    (message,) = run(gpu_node_pools_tainted, EKS, eks_node_group(taints=[], **overrides))
    assert evidence in message
    assert 'taints: [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]' in message


def test_prefer_no_schedule_is_not_enough():
    weak = eks_node_group(taints=[{"effect": "PREFER_NO_SCHEDULE", "key": "nvidia.com/gpu", "value": "true"}])
    (message,) = run(gpu_node_pools_tainted, EKS, weak)
    assert "PreferNoSchedule" in message


def test_gke_gpu_pool_passes_with_or_without_its_own_gpu_taint():
    assert run(gpu_node_pools_tainted, GKE, gke_node_pool()) == []
    own = [{"effect": "NO_SCHEDULE", "key": "nvidia.com/gpu", "value": "present"}]
    assert run(gpu_node_pools_tainted, GKE, gke_node_pool({"taints": own})) == []


def test_gke_pool_labelled_gpu_without_accelerators_fails():
    pool = gke_node_pool({"guestAccelerators": None, "machineType": "n2-standard-8"})
    (message,) = run(gpu_node_pools_tainted, GKE, pool)
    assert "nodeConfig.taints" in message


def test_pulumi_eks_managed_node_group_component():
    component = "eks:index:ManagedNodeGroup"
    assert run(gpu_node_pools_tainted, component, {}) == []  # what the engine sends: no inputs
    gpu = {"gpu": True, "instanceTypes": ["g5.xlarge"], "labels": {}}
    assert run(gpu_node_pools_tainted, component, {**gpu, "taints": [GPU_TAINT]}) == []
    (message,) = run(gpu_node_pools_tainted, component, gpu)
    assert "gpu: true" in message


def test_pulumi_eks_node_group_v2_takes_taints_as_a_map():
    component = "eks:index:NodeGroupV2"
    tainted = {"instanceType": "g6.2xlarge", "taints": {"nvidia.com/gpu": {"value": "true", "effect": "NoSchedule"}}}
    assert run(gpu_node_pools_tainted, component, tainted) == []
    (message,) = run(gpu_node_pools_tainted, component, {"instanceType": "g6.2xlarge"})
    assert 'taints: {"nvidia.com/gpu": {"value": "true", "effect": "NoSchedule"}}' in message


def test_gke_cluster_inline_pool_and_unknown_taints():
    cluster = "gcp:container/cluster:Cluster"
    inline = {
        "nodePools": [
            {"name": "a100", "nodeConfig": {"machineType": "n2-standard-8", "labels": {"gpu-platform/role": "gpu"}}}
        ]
    }
    (message,) = run(gpu_node_pools_tainted, cluster, inline)
    assert "node pool 'a100'" in message and "nodePools[0].nodeConfig.taints" in message
    assert run(gpu_node_pools_tainted, EKS, eks_node_group(taints=UNKNOWN_STRING)) == []  # preview: cannot judge


# --- spot pools ----------------------------------------------------------------------------------


def test_spot_pools_with_their_own_taint_pass():
    eks_spot = eks_node_group(capacityType="SPOT", taints=[GPU_TAINT, SPOT_TAINT])
    assert run(spot_node_pools_tainted, EKS, eks_spot) == []
    assert run(spot_node_pools_tainted, GKE, gke_node_pool({"spot": True, "taints": [SPOT_TAINT]})) == []
    assert run(spot_node_pools_tainted, EKS, eks_node_group()) == []  # on-demand


def test_eks_spot_pool_with_only_the_gpu_taint_fails():
    (message,) = run(spot_node_pools_tainted, EKS, eks_node_group(capacityType="SPOT"))
    assert "capacityType SPOT" in message and "gpu-platform/spot" in message
    assert "does not count" in message


@pytest.mark.parametrize("field", ["spot", "preemptible"])
def test_gke_spot_or_preemptible_pool_without_taint_fails(field):
    (message,) = run(spot_node_pools_tainted, GKE, gke_node_pool({field: True}))
    assert f"nodeConfig.{field}: true" in message
    assert 'nodeConfig.taints: [{"key": "gpu-platform/spot"' in message


def test_self_managed_spot_group_via_spot_price():
    (message,) = run(
        spot_node_pools_tainted, "eks:index:NodeGroupV2", {"instanceType": "m7i.large", "spotPrice": "0.2"}
    )
    assert "spotPrice 0.2" in message
