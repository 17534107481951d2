"""What a reviewer of a render reads first: the node pools, what the stack costs a month, and the Helm charts.

All come from the RenderResult, that is from what `pulumi up` would send: EKS node groups
(`aws:eks/nodeGroup:NodeGroup`) and GKE node pools (`gcp:container/nodePool:NodePool`) from their
inputs, charts from the Helm releases. A pool of an existing cluster is no resource of the program
(components/existing_cluster.py): those rows come from the stack's settings, the only place they
are declared. The cost is infra/tooling/cost.py's estimate of the same resources (the render writes
it as cost.json).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Any, Mapping, Optional, Sequence

from components.eks_cluster import CA_TEMPLATE_PREFIX
from components.gpu_catalog import gpus_per_machine
from components.node_pools import (
    GKE_GPU_TAINT,
    GPU_TYPE_LABEL,
    POOL_LABEL,
    TIME_SLICING_LABEL,
    Taint,
)
from infra.program.settings import ConfigError, ExistingStack, load_settings
from infra.program.stack_config import stack_file, stack_input
from infra.tooling.cost import estimate, summary_lines
from infra.tooling.mock_engine import RenderResult

EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
EXISTING_CLUSTER = "gpu-platform:cluster:ExistingCluster"
# Cluster Autoscaler's template of an EKS GPU node: the `nvidia.com/gpu` it advertises (physical GPUs
# times time-slicing replicas, components/eks_cluster.py autoscaler_template_tags).
CA_GPU_RESOURCE_TAG = f"{CA_TEMPLATE_PREFIX}/resources/nvidia.com/gpu"
# The NVIDIA GPU Operator's MIG manager partitions a node's GPUs by this node label
# (gpu-operator docs, "GPU Operator with MIG"); a pool whose labels set it is MIG-partitioned.
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
# Cloud taint effects (NO_SCHEDULE) in Kubernetes spelling (NoSchedule), from the one mapping in node_pools.
_KUBERNETES_EFFECT = {Taint("", "", e).cloud_effect: e for e in ("NoSchedule", "PreferNoSchedule", "NoExecute")}
NONE = "-"


@dataclass(frozen=True)
class PoolRow:
    """One node pool as the reviewer sees it; every field already formatted for the table."""

    pool: str
    cloud_object: str
    machines: str
    capacity: str
    nodes: str  # "min/max (desired)"
    gpu: str
    gpus_per_node: str
    sharing: str
    taints: str


POOL_HEADERS = (
    "Pool", "Cloud object", "Machines", "Capacity", "Nodes min/max (desired)", "GPU", "GPUs/node", "Sharing", "Taints"
)


@dataclass(frozen=True)
class ChartRow:
    chart: str
    version: str
    namespace: str
    release: str
    repository: str


CHART_HEADERS = ("Chart", "Version", "Namespace", "Release", "Repository")


# --- node pools -----------------------------------------------------------------------------


def _int(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _taint_text(key: str, value: str, effect: str) -> str:
    effect = _KUBERNETES_EFFECT.get(effect, effect)
    return f"{key}={value}:{effect}" if value else f"{key}:{effect}"


def _taints(taints: Sequence[Mapping[str, Any]], added_by_cloud: Sequence[str] = ()) -> str:
    texts = [_taint_text(str(t.get("key")), str(t.get("value") or ""), str(t.get("effect"))) for t in taints]
    return ", ".join([*texts, *added_by_cloud]) or NONE


def _sharing(gpus: bool, replicas: Optional[int], mig: Optional[str] = None, strategy: str = "TIME_SHARING") -> str:
    if not gpus:
        return NONE
    if mig:
        return f"MIG {mig}"
    if replicas and replicas > 1:
        how = "time-slicing" if strategy == "TIME_SHARING" else strategy.lower()
        return f"{how} ×{replicas} per GPU"
    return "whole GPUs"


def _eks_row(group: Mapping[str, Any]) -> PoolRow:
    inputs = group["inputs"]
    labels = inputs.get("labels") or {}
    scaling = inputs.get("scalingConfig") or {}
    machines = list(inputs.get("instanceTypes") or [])
    gpu_type = labels.get(GPU_TYPE_LABEL)
    replicas = _int(labels.get(TIME_SLICING_LABEL)) or 1
    gpus = None
    if gpu_type:
        schedulable = _int((inputs.get("tags") or {}).get(CA_GPU_RESOURCE_TAG))
        if schedulable:
            gpus = schedulable // replicas
        elif machines:
            gpus = gpus_per_machine("aws", machines[0], gpu_type)
    capacity_type = str(inputs.get("capacityType") or "ON_DEMAND")  # EKS's default
    capacity = {"SPOT": "spot", "ON_DEMAND": "on-demand"}.get(capacity_type, capacity_type)
    return PoolRow(
        pool=labels.get(POOL_LABEL) or group["name"],
        cloud_object=f"EKS node group {inputs.get('nodeGroupName') or group['name']}",
        machines=", ".join(machines) or NONE,
        capacity=capacity,
        nodes=f"{scaling.get('minSize')}/{scaling.get('maxSize')} ({scaling.get('desiredSize')})",
        gpu=gpu_type or NONE,
        gpus_per_node=str(gpus if gpus is not None else "?") if gpu_type else NONE,
        sharing=_sharing(bool(gpu_type), replicas, labels.get(MIG_CONFIG_LABEL)),
        taints=_taints(inputs.get("taints") or []),
    )


KARPENTER_NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


def _karpenter_row(resource: Mapping[str, Any]) -> PoolRow:
    """A Karpenter NodePool (components/karpenter.py): no node count, only a limit in GPUs."""
    spec = resource["inputs"].get("spec") or {}
    template = (spec.get("template") or {}).get("spec") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    requirements = {r.get("key"): r.get("values") or [] for r in template.get("requirements") or []}
    machines = list(requirements.get("node.kubernetes.io/instance-type") or [])
    capacity = " or ".join(requirements.get("karpenter.sh/capacity-type") or ["on-demand"])
    gpu_type = labels.get(GPU_TYPE_LABEL)
    replicas = _int(labels.get(TIME_SLICING_LABEL)) or 1
    gpus = gpus_per_machine("aws", machines[0], gpu_type) if gpu_type and machines else None
    limit = (spec.get("limits") or {}).get("nvidia.com/gpu")
    name = (resource["inputs"].get("metadata") or {}).get("name") or resource["name"]
    return PoolRow(
        pool=labels.get(POOL_LABEL) or name,
        cloud_object=f"Karpenter NodePool {name}",
        machines=", ".join(machines) or NONE,
        capacity=capacity,
        nodes=f"0/{limit} GPUs" if limit else "0/-",
        gpu=gpu_type or NONE,
        gpus_per_node=str(gpus if gpus is not None else "?") if gpu_type else NONE,
        sharing=_sharing(bool(gpu_type), replicas, labels.get(MIG_CONFIG_LABEL)),
        taints=_taints(template.get("taints") or []),
    )


def _gke_row(pool: Mapping[str, Any]) -> PoolRow:
    inputs = pool["inputs"]
    config = inputs.get("nodeConfig") or {}
    labels = config.get("labels") or {}
    accelerators = [a for a in config.get("guestAccelerators") or [] if (a.get("count") or 0) > 0]
    accelerator = accelerators[0] if accelerators else {}
    sharing = accelerator.get("gpuSharingConfig") or {}
    scaling = inputs.get("autoscaling") or {}
    if "totalMinNodeCount" in scaling or "totalMaxNodeCount" in scaling:
        nodes = f"{scaling.get('totalMinNodeCount')}/{scaling.get('totalMaxNodeCount')} ({inputs.get('initialNodeCount')})"
    elif scaling:  # per-zone limits: GKE multiplies them by the pool's zones
        nodes = f"{scaling.get('minNodeCount')}/{scaling.get('maxNodeCount')} per zone ({inputs.get('initialNodeCount')})"
    else:
        nodes = f"{inputs.get('nodeCount', inputs.get('initialNodeCount'))} fixed"
    capacity = "spot" if config.get("spot") else "preemptible" if config.get("preemptible") else "on-demand"
    gpu_type = accelerator.get("type")
    # GKE taints every GPU node itself; the pool's inputs carry only the other taints.
    added = [f"{_taint_text(GKE_GPU_TAINT.key, GKE_GPU_TAINT.value, GKE_GPU_TAINT.effect)} (by GKE)"] if gpu_type else []
    location = inputs.get("location")
    return PoolRow(
        pool=labels.get(POOL_LABEL) or inputs.get("name") or pool["name"],
        cloud_object=f"GKE node pool {inputs.get('name') or pool['name']}" + (f" ({location})" if location else ""),
        machines=str(config.get("machineType") or NONE),
        capacity=capacity,
        nodes=nodes,
        gpu=gpu_type or NONE,
        gpus_per_node=str(accelerator.get("count")) if gpu_type else NONE,
        sharing=_sharing(
            bool(gpu_type),
            _int(sharing.get("maxSharedClientsPerGpu")),
            accelerator.get("gpuPartitionSize") or labels.get(MIG_CONFIG_LABEL),
            str(sharing.get("gpuSharingStrategy") or "TIME_SHARING"),
        ),
        taints=_taints(config.get("taints") or [], added),
    )


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "any node"


def _existing_rows(settings: ExistingStack) -> list[PoolRow]:
    """Pools of a cluster the program does not manage, as the stack declares them (sized by its owner)."""
    system = settings.system_pool.node_labels
    rows = [
        PoolRow("system", f"existing nodes ({_selector(system)})", NONE, NONE, "set by its owner", NONE, NONE, NONE, NONE)
    ]
    for name, pool in settings.gpu_pools.items():
        labels = dict(pool.node_labels) if pool.node_labels is not None else {POOL_LABEL: name}
        rows.append(
            PoolRow(
                pool=name,
                cloud_object=f"existing nodes ({_selector(labels)})",
                machines=NONE,
                capacity=NONE,
                nodes=", ".join(pool.nodes) if pool.nodes else "set by its owner",
                gpu=pool.gpu_type,
                gpus_per_node=str(pool.gpu_count),
                sharing=_sharing(True, pool.time_slicing_replicas, " + ".join(pool.mig_layout) or None),
                taints=_taints([{"key": t.key, "value": t.value, "effect": t.effect} for t in pool.taints]),
            )
        )
    return rows


def stack_settings(stack: str) -> Any:
    """The stack's settings as `pulumi up` would load them, or None when there is no valid stack file."""
    if not stack_file(stack).exists():
        return None
    try:
        return load_settings(stack_input(stack), stack)
    except ConfigError:
        return None


def pool_rows(result: RenderResult, settings: Any = None) -> list[PoolRow]:
    """Every node pool of the render: system pools first, then by name.

    `settings` (infra.program.settings) is read only for an existing cluster, whose pools are not
    resources; when not given it is loaded from the stack file of `result.stack`.
    """
    rows = [_eks_row(r) for r in result.of_type(EKS_NODE_GROUP)]
    rows += [_karpenter_row(r) for r in result.of_type(KARPENTER_NODE_POOL)]
    rows += [_gke_row(r) for r in result.of_type(GKE_NODE_POOL)]
    if result.of_type(EXISTING_CLUSTER):
        settings = settings if settings is not None else stack_settings(result.stack)
        if isinstance(settings, ExistingStack):
            rows += _existing_rows(settings)
    return sorted(rows, key=lambda row: (row.gpu != NONE, row.pool))


# --- Helm charts ----------------------------------------------------------------------------


def chart_rows(result: RenderResult) -> list[ChartRow]:
    """Every Helm release: chart, version, namespace, by namespace then chart."""
    rows = []
    for release in result.helm_releases:
        inputs = release["inputs"]
        chart = str(inputs.get("chart") or "?")
        repository = str((inputs.get("repositoryOpts") or {}).get("repo") or "")
        if chart.startswith("oci://"):  # an OCI reference names registry and chart in one
            repository, chart = chart.rsplit("/", 1)
        rows.append(
            ChartRow(
                chart=chart,
                version=str(inputs.get("version") or "(unpinned)"),
                namespace=str(inputs.get("namespace") or "default"),
                release=str(inputs.get("name") or release["name"]),
                repository=repository or NONE,
            )
        )
    return sorted(rows, key=lambda row: (row.namespace, row.chart, row.release))


# --- text -----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "    ") -> list[str]:
    """Columns aligned on the widest cell, two spaces apart."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    return [
        (indent + "  ".join(f"{cell:<{width}}" for cell, width in zip(line, widths))).rstrip()
        for line in (headers, *rows)
    ]


def review_lines(result: RenderResult, settings: Any = None) -> list[str]:
    """The node pool table, the monthly cost (both totals and the items) and the Helm chart table, each
    under a heading (a table's heading with "none" when it is empty)."""
    pools = pool_rows(result, settings)
    charts = chart_rows(result)
    lines = [f"Node pools ({len(pools)}):"]
    lines += table(POOL_HEADERS, [astuple(row) for row in pools]) if pools else ["    none"]
    lines += ["", *summary_lines(estimate(result.resources).as_json())]
    lines += ["", f"Helm charts ({len(charts)}):"]
    lines += table(CHART_HEADERS, [astuple(row) for row in charts]) if charts else ["    none"]
    return lines

