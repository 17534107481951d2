"""Cloud-neutral description of a cluster's node pools.

Every cluster component (EKS, GKE, existing) publishes one `NodePoolDescription` per pool, so
platform and workload code can place pods on "the spot L4 pool" without knowing the cloud: the
labels to select it and the taints to tolerate are the same on every cloud.
"""

from __future__ import annotations

import hashlib
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
# The GPU Operator's MIG manager cuts a node's GPUs into the layout this label names, a key of its
# mig-parted ConfigMap (components/gpu_stack.py), and reports the outcome in MIG_CONFIG_STATE_LABEL
# (`pending`, `rebooting`, `success` or `failed`): NVIDIA GPU Operator docs, "GPU Operator with MIG".
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
MIG_CONFIG_STATE_LABEL = "nvidia.com/mig.config.state"
MIG_LAYOUT_LABEL = f"{LABEL_PREFIX}/mig-layout"
GPU_RESOURCE = "nvidia.com/gpu"
# With `mig.strategy: mixed` the device plugin advertises each MIG profile as a resource of its own
# (k8s-device-plugin README, "MIG Support"); GKE instead advertises its partitions as nvidia.com/gpu
# and labels the node with the partition size.
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"

# NVIDIA's conventional taint; EKS GPU pools carry it with value "true". GKE puts its own
# `nvidia.com/gpu=present:NoSchedule` on GPU nodes and rejects a second taint with the same key
# and effect, so GKE pools describe that one instead. A toleration with operator Exists and no
# value matches both.
GPU_TAINT_KEY = "nvidia.com/gpu"
# Neither EKS nor GKE taints spot nodes; we do, so only workloads that accept interruption land there.
SPOT_TAINT_KEY = f"{LABEL_PREFIX}/spot"

Role = Literal["system", "gpu"]
# `spotWithFallback`: spot first, on-demand when spot has no capacity (Karpenter only: one NodePool allows
# both capacity types and Karpenter launches spot while any is offered, components/karpenter.py).
CapacityType = Literal["onDemand", "spot", "spotWithFallback"]
# The CAPACITY_LABEL value of each: a pool that may land on spot says so, so its nodes keep the spot taint.
CAPACITY_LABEL_VALUES: Mapping[str, str] = {"onDemand": "on-demand", "spot": "spot", "spotWithFallback": "spot-with-fallback"}
# Who adds and removes a managed pool's nodes; None on an existing cluster.
Autoscaler = Literal["karpenter", "cluster-autoscaler", "gke"]


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
    # MIG profiles each GPU of the pool is cut into; empty for whole or time-sliced GPUs.
    mig_layout: tuple[str, ...] = ()
    # False on GKE, whose own device plugin advertises MIG partitions as nvidia.com/gpu.
    mig_resources_by_profile: bool = True
    # Taints a new node carries until something removes them (Karpenter `startupTaints`): no workload
    # tolerates them, only the DaemonSets that must run before a GPU pod may land (gpu_node_tolerations).
    startup_taints: tuple[Taint, ...] = ()
    autoscaler: Optional[Autoscaler] = None
    # GB of each node's local NVMe given to KServe's model cache (components/local_model_cache.py); 0: none.
    model_cache_gb: int = 0

    @property
    def may_run_on_spot(self) -> bool:
        return self.capacity_type in ("spot", "spotWithFallback")

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

    @property
    def extended_resources(self) -> dict[str, int]:
        """The GPU resources one node advertises, by name: `nvidia.com/gpu` (times time-slicing) for
        whole GPUs, one `nvidia.com/mig-<profile>` per profile of the layout (times the GPUs) for MIG."""
        return gpu_resources_per_node(self.gpu_count, self.time_slicing_replicas, self.mig_layout, self.mig_resources_by_profile)

    def slice_resource(self, profile: str) -> Optional[str]:
        """The resource a pod requests for one `profile` slice on this pool; None if it has none."""
        if profile not in self.mig_layout:
            return None
        return f"{MIG_RESOURCE_PREFIX}{profile}" if self.mig_resources_by_profile else GPU_RESOURCE


def one_gpu_machines_first(pools: Sequence[NodePoolDescription]) -> list[NodePoolDescription]:
    """`pools` without those whose machines hold several GPUs, unless nothing else is left: several-GPU machines
    are for LLM replicas sharded over them, and a one-GPU pod there keeps a sharded one from fitting (and, under
    Karpenter, starts a large machine for a small workload)."""
    single = [pool for pool in pools if pool.gpu_count <= 1]
    return single or list(pools)


def gpu_resources_per_node(
    gpu_count: int, time_slicing_replicas: int, mig_layout: Sequence[str], mig_resources_by_profile: bool = True
) -> dict[str, int]:
    """What one node of a GPU pool advertises: shared by the pool descriptions and the settings' quota checks."""
    if not mig_layout:
        return {GPU_RESOURCE: gpu_count * time_slicing_replicas}
    if not mig_resources_by_profile:
        return {GPU_RESOURCE: gpu_count * len(mig_layout)}
    resources: dict[str, int] = {}
    for profile in mig_layout:
        name = f"{MIG_RESOURCE_PREFIX}{profile}"
        resources[name] = resources.get(name, 0) + gpu_count
    return resources


def mig_config_name(layout: Sequence[str]) -> str:
    """The mig-parted config key (and MIG_CONFIG_LABEL value) of a layout, named by its content: a changed
    layout is a changed label, which is what makes the MIG manager re-cut the node (it acts on label
    changes). Profiles largest first with their counts, e.g. `gpu-platform-1x3g.40gb-1x2g.20gb-2x1g.10gb`."""
    counts: dict[str, int] = {}
    for profile in sorted(layout, key=lambda p: (-int(p.split("g.")[0]), p)):
        counts[profile] = counts.get(profile, 0) + 1
    name = "gpu-platform-" + "-".join(f"{count}x{profile}" for profile, count in counts.items())
    if len(name) > 63:  # a label value is at most 63 characters
        name = "gpu-platform-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return name


def selector_expressions(selector: Mapping[str, str]) -> list[dict[str, Any]]:
    """A nodeSelector as node-affinity match expressions (key In [value]), in a stable order."""
    return [{"key": key, "operator": "In", "values": [value]} for key, value in sorted(selector.items())]


def cpu_node_expressions() -> list[dict[str, Any]]:
    """Match expressions for a node without a GPU, for CPU work (models, notebooks): outside our GPU pools,
    and without the `nvidia.com/gpu.present` label GPU feature discovery puts on GPU nodes, so an untainted
    GPU node of an existing cluster is avoided too."""
    return [
        {"key": ROLE_LABEL, "operator": "NotIn", "values": ["gpu"]},
        {"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"},
    ]


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
        CAPACITY_LABEL: CAPACITY_LABEL_VALUES[capacity_type],
        PURPOSE_LABEL: purpose,
        TIME_SLICING_LABEL: str(time_slicing_replicas),
    }


def mig_labels(layout: Sequence[str], mig_manager: bool = True) -> dict[str, str]:
    """Labels of a MIG pool's nodes: ours naming the layout (the pool selector of slice models), and where
    the GPU Operator's MIG manager cuts the GPUs (not GKE) the config it applies."""
    if not layout:
        return {}
    name = mig_config_name(layout)
    return {MIG_LAYOUT_LABEL: name, **({MIG_CONFIG_LABEL: name} if mig_manager else {})}


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


# The node label KServe v0.20.0's localmodel node agent DaemonSet always selects (kserve-localmodel-resources
# files/resources.yaml `nodeSelector`; the chart's values can add to it, not remove it).
LOCAL_MODEL_NODE_LABEL = "kserve/localmodel"
LOCAL_MODEL_NODE_VALUE = "worker"


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
    mig_layout: tuple[str, ...] = ()
    # GB of each node's local NVMe (instance store) that caches model weights; 0: no cache on this pool.
    model_cache_gb: int = 0

    @property
    def spot(self) -> bool:
        """May run on spot capacity: spot, or spot with on-demand fallback (tainted either way)."""
        return self.capacity_type in ("spot", "spotWithFallback")

    def describe(self, gpu_taint: Taint, device_plugin_label: bool = True) -> NodePoolDescription:
        """`gpu_taint` differs per cloud: see GPU_TAINT and GKE_GPU_TAINT. `device_plugin_label` is
        False where NVIDIA's device plugin does not run (GKE shares GPUs with its own plugin, and cuts
        MIG partitions itself)."""
        labels = gpu_labels(self.name, self.gpu_type, self.capacity_type, self.purpose, self.time_slicing_replicas)
        if device_plugin_label:
            labels[DEVICE_PLUGIN_CONFIG_LABEL] = device_plugin_profile(self.time_slicing_replicas)
        labels.update(mig_labels(self.mig_layout, mig_manager=device_plugin_label))
        if self.model_cache_gb:
            # KServe's node agent DaemonSet selects this label whatever its values say (components/local_model_cache.py).
            labels[LOCAL_MODEL_NODE_LABEL] = LOCAL_MODEL_NODE_VALUE
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
            mig_layout=self.mig_layout,
            mig_resources_by_profile=device_plugin_label,
            model_cache_gb=self.model_cache_gb,
        )
