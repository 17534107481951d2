"""Node-pool rules: GPU and spot pools are tainted, so only workloads that ask for them land there.

Pools are read wherever the engine shows them (shapes.node_pools_of): `aws:eks/nodeGroup:NodeGroup`,
the pulumi-eks components `eks:index:ManagedNodeGroup` / `NodeGroupV2` / `NodeGroup` (only when they
carry inputs, i.e. in the offline render: under the engine a ManagedNodeGroup's own
aws:eks/nodeGroup:NodeGroup child is checked instead, while a NodeGroupV2's taints end up in its
launch template's user data, which this pack does not parse), `gcp:container/nodePool:NodePool`, and
pools declared inline in `gcp:container/cluster:Cluster`.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from pulumi_policy import Severity

from .builders import resource_policy
from .shapes import GPU_TAINT_KEY, SPOT_TAINT_KEY, NodePool, node_pools_of


def _pool_label(pool: NodePool) -> str:
    return f"node pool {pool.name!r}" if pool.name else "the node pool"


def check_gpu_pools_tainted(resource_type: str, props: Mapping[str, Any]) -> Iterator[str]:
    for pool in node_pools_of(resource_type, props):
        if not pool.gpu or pool.taints is None or pool.cloud_adds_gpu_taint:
            continue  # GKE taints nodes with accelerators nvidia.com/gpu=present:NoSchedule itself
        if any(t.key == GPU_TAINT_KEY for t in pool.no_schedule_taints()):
            continue
        weak = [t for t in pool.taints if t.key == GPU_TAINT_KEY]
        found = (
            f" (it has {GPU_TAINT_KEY} with effect {weak[0].effect}, which only discourages scheduling)" if weak else ""
        )
        yield (
            f"{_pool_label(pool)} has NVIDIA GPUs ({'; '.join(pool.gpu_evidence)}) but no NoSchedule taint "
            f"with key {GPU_TAINT_KEY}{found}, so pods that never asked for a GPU can take its CPU and memory "
            f"and leave the GPUs idle. Add {pool.taint_example(GPU_TAINT_KEY)}."
        )


def check_spot_pools_tainted(resource_type: str, props: Mapping[str, Any]) -> Iterator[str]:
    for pool in node_pools_of(resource_type, props):
        if pool.spot_evidence is None or pool.taints is None:
            continue
        if any(t.key != GPU_TAINT_KEY for t in pool.no_schedule_taints()):
            continue
        gpu_note = (
            f" (the {GPU_TAINT_KEY} taint does not count: it admits every GPU workload, interruptible or not)"
            if pool.gpu
            else ""
        )
        yield (
            f"{_pool_label(pool)} runs on spot/preemptible capacity ({pool.spot_evidence}) but has no NoSchedule "
            f"taint of its own{gpu_note}, so workloads that cannot survive an interruption are scheduled there. "
            f"Add {pool.taint_example(SPOT_TAINT_KEY)} and tolerate it only in workloads that can be interrupted."
        )


gpu_node_pools_tainted = resource_policy(
    name="gpu-node-pools-tainted",
    description=(
        "GPU node pools carry a NoSchedule taint with key nvidia.com/gpu, so only pods that request GPUs (and "
        "tolerate the taint) are scheduled onto expensive GPU nodes."
    ),
    check=check_gpu_pools_tainted,
    severity=Severity.MEDIUM,
)

spot_node_pools_tainted = resource_policy(
    name="spot-node-pools-tainted",
    description=(
        "Spot and preemptible node pools carry a NoSchedule taint of their own (gpu-platform/spot), so only "
        "workloads that accept being interrupted run on capacity the cloud can take back at short notice."
    ),
    check=check_spot_pools_tainted,
    severity=Severity.MEDIUM,
)

POLICIES = [gpu_node_pools_tainted, spot_node_pools_tainted]
