"""Cloud-neutral description of a cluster's node pools.

Every cluster component (EKS, GKE, existing) publishes one `NodePoolDescription` per pool, so
platform and workload code can place pods on "the spot L4 pool" without knowing the cloud: the
labels to select it and the taints to tolerate are the same on every cloud.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Sequence

LABEL_PREFIX = "gpu-platform"
POOL_LABEL = f"{LABEL_PREFIX}/pool"
ROLE_LABEL = f"{LABEL_PREFIX}/role"
GPU_TYPE_LABEL = f"{LABEL_PREFIX}/gpu-type"
CAPACITY_LABEL = f"{LABEL_PREFIX}/capacity-type"
PURPOSE_LABEL = f"{LABEL_PREFIX}/purpose"
TIME_SLICING_LABEL = f"{LABEL_PREFIX}/time-slicing-replicas"
# The NVIDIA device plugin (run by the GPU Operator) picks its config key by this node label
# (k8s-device-plugin cmd/config-manager, DefaultConfigLabel). When label and ConfigMap key disagree
# the plugin fails ("specified config ... does not exist") or keeps one nvidia.com/gpu per GPU
# (NVIDIA/k8s-device-plugin#990, #321), so both come from `device_plugin_profile`.
DEVICE_PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config"

# NVIDIA's conventional taint; EKS GPU pools carry it with value "true". GKE puts its own
# `nvidia.com/gpu=present:NoSchedule` on GPU nodes and rejects a second taint with the same key
# and effect, so GKE pools describe that one instead. A toleration with operator Exists and no
# value matches both.
GPU_TAINT_KEY = "nvidia.com/gpu"
# Neither EKS nor GKE taints spot nodes; we do, so only workloads that accept interruption land there.
SPOT_TAINT_KEY = f"{LABEL_PREFIX}/spot"

Role = Literal["system", "gpu"]
CapacityType = Literal["onDemand", "spot"]


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str = "NoSchedule"  # Kubernetes spelling; cloud APIs want NO_SCHEDULE, see `cloud_effect`

    @property
    def cloud_effect(self) -> str:
        return {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}[
            self.effect
        ]

    def toleration(self) -> dict[str, str]:
        return {"key": self.key, "operator": "Exists", "effect": self.effect}


GPU_TAINT = Taint(GPU_TAINT_KEY, "true")
GKE_GPU_TAINT = Taint(GPU_TAINT_KEY, "present")
SPOT_TAINT = Taint(SPOT_TAINT_KEY, "true")


@dataclass(frozen=True)
class NodePoolDescription:
    name: str
    role: Role
    labels: Mapping[str, str]
    taints: tuple[Taint, ...] = ()
    gpu_type: Optional[str] = None
    gpu_count: int = 0
    capacity_type: CapacityType = "onDemand"
    time_slicing_replicas: int = 1
    purpose: Optional[str] = None
    min_size: Optional[int] = None  # None: sized outside this program (existing clusters)
    max_size: Optional[int] = None
    machine_types: tuple[str, ...] = field(default=())

    @property
    def node_selector(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def tolerations(self) -> list[dict[str, str]]:
        return [taint.toleration() for taint in self.taints]

    @property
    def time_sliced(self) -> bool:
        return self.time_slicing_replicas > 1

    @property
    def schedulable_gpus_per_node(self) -> int:
        """`nvidia.com/gpu` a node advertises: physical GPUs times time-slicing replicas."""
        return self.gpu_count * self.time_slicing_replicas


def selector_expressions(selector: Mapping[str, str]) -> list[dict[str, Any]]:
    """A nodeSelector as node-affinity match expressions (key In [value]), in a stable order."""
    return [{"key": key, "operator": "In", "values": [value]} for key, value in sorted(selector.items())]


def required_node_affinity(*terms: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """An `affinity` requiring a node that matches any of `terms`, each a list of match expressions
    that must all hold."""
    node_selector_terms = [{"matchExpressions": [dict(expression) for expression in term]} for term in terms]
    required = {"nodeSelectorTerms": node_selector_terms}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}


def device_plugin_profile(time_slicing_replicas: int) -> str:
    """The device-plugin config key for a pool's GPU sharing, and the value of its node label."""
    if time_slicing_replicas < 1:
        raise ValueError(f"time_slicing_replicas must be at least 1, got {time_slicing_replicas}")
    return "whole-gpu" if time_slicing_replicas == 1 else f"timeslice-{time_slicing_replicas}"


def system_labels(pool_name: str = "system") -> dict[str, str]:
    return {POOL_LABEL: pool_name, ROLE_LABEL: "system"}


def gpu_labels(
    pool_name: str, gpu_type: str, capacity_type: str, purpose: str, time_slicing_replicas: int
) -> dict[str, str]:
    """Labels every GPU node carries, whichever cloud made it."""
    return {
        POOL_LABEL: pool_name,
        ROLE_LABEL: "gpu",
        GPU_TYPE_LABEL: gpu_type,
        CAPACITY_LABEL: "spot" if capacity_type == "spot" else "on-demand",
        PURPOSE_LABEL: purpose,
        TIME_SLICING_LABEL: str(time_slicing_replicas),
    }


@dataclass(frozen=True)
class SystemPoolSpec:
    """The CPU system pool a managed cluster creates: untainted, on-demand."""

    machine_type: str
    min_size: int
    desired_size: int
    max_size: int
    disk_size_gb: int
    name: str = "system"

    def describe(self) -> NodePoolDescription:
        return NodePoolDescription(
            name=self.name,
            role="system",
            labels=system_labels(self.name),
            min_size=self.min_size,
            max_size=self.max_size,
            machine_types=(self.machine_type,),
        )


@dataclass(frozen=True)
class GpuPoolSpec:
    """A GPU pool a managed cluster creates; the cloud component realises it and describes it."""

    name: str
    gpu_type: str
    gpu_count: int
    capacity_type: CapacityType
    purpose: str
    time_slicing_replicas: int
    min_size: int
    max_size: int
    machine_types: tuple[str, ...]
    disk_size_gb: int

    @property
    def spot(self) -> bool:
        return self.capacity_type == "spot"

    def describe(self, gpu_taint: Taint, device_plugin_label: bool = True) -> NodePoolDescription:
        """`gpu_taint` differs per cloud: see GPU_TAINT and GKE_GPU_TAINT. `device_plugin_label` is
        False where NVIDIA's device plugin does not run (GKE shares GPUs with its own plugin)."""
        labels = gpu_labels(self.name, self.gpu_type, self.capacity_type, self.purpose, self.time_slicing_replicas)
        if device_plugin_label:
            labels[DEVICE_PLUGIN_CONFIG_LABEL] = device_plugin_profile(self.time_slicing_replicas)
        return NodePoolDescription(
            name=self.name,
            role="gpu",
            labels=labels,
            taints=(gpu_taint, SPOT_TAINT) if self.spot else (gpu_taint,),
            gpu_type=self.gpu_type,
            gpu_count=self.gpu_count,
            capacity_type=self.capacity_type,
            time_slicing_replicas=self.time_slicing_replicas,
            purpose=self.purpose,
            min_size=self.min_size,
            max_size=self.max_size,
            machine_types=self.machine_types,
        )
