"""Stack settings: the one place the program's configuration is defaulted and validated.

Config flows one way: the stack's `gpu-platform:*` keys (a plain mapping, exactly what the Pulumi
CLI hands the program) -> cloud and tier defaults merged underneath -> frozen pydantic models ->
component arguments. Components never read `pulumi.Config()`.

Every problem in a stack file is reported at once, each naming the full key path, the bad value
and what is allowed, before any resource is registered.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Annotated, Any, Literal, Mapping, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components.charts import CHART_PINS
from components.gpu_catalog import AWS_INSTANCE_STORE_GB, GPU_TYPES, mig_layout_problem
from components.node_pools import GPU_RESOURCE, MIG_RESOURCE_PREFIX, gpu_resources_per_node
from components.registry import ImageMirror
from infra.program.batch_catalog import BatchJob, BatchJobOverride, load_batch_catalog
from infra.program.model_catalog import (
    MAX_NESTING,
    MAX_VALUES,
    CatalogError,
    CatalogModel,
    CpuQuantity,
    MemoryQuantity,
    ModelOverride,
    load_catalog,
    resolve,
)

PROJECT = "gpu-platform"

Tier = Literal["dev", "staging", "prod"]
Cloud = Literal["aws", "gcp", "existing"]
CapacityType = Literal["onDemand", "spot", "spotWithFallback"]
Autoscaler = Literal["karpenter", "cluster-autoscaler"]
Purpose = Literal["serving", "batch"]
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
GpuTypeName = Literal[tuple(GPU_TYPES)]  # type: ignore[valid-type]


class ConfigError(Exception):
    """A stack's configuration is invalid; `problems` holds one line per bad key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# --- defaults -------------------------------------------------------------------------------
# Each default is written once: universal ones on the model fields below, cloud- and
# tier-dependent ones in these tables. docs/configuration.md is generated from all three.

CLOUD_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "aws": {"systemPool": {"machineType": "m7i.xlarge"}},
    "gcp": {"systemPool": {"machineType": "e2-standard-4"}},
    "existing": {},
}

TIER_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "dev": {
        "deletionProtection": False,
        "systemPool": {"minSize": 1, "desiredSize": 1, "maxSize": 3},
        "aws": {"zoneCount": 2, "singleNatGateway": True},
        "gcp": {"regional": False, "releaseChannel": "REGULAR"},
        "platform": {
            "monitoring": {"retention": "3d", "storageGb": 20, "alertmanagerStorageGb": 2},
            "knative": {"scaleToZero": True, "scaleToZeroGracePeriod": "30s", "progressDeadline": "20m"},
            "modelStore": {"servers": 1, "volumesPerServer": 1, "volumeSizeGb": 20},
            "clusterAutoscaler": {"scaleDownUnneededTime": "5m", "scaleDownDelayAfterAdd": "5m"},
            "karpenter": {"consolidateAfter": "1m"},
        },
    },
    "staging": {
        "deletionProtection": False,
        "systemPool": {"minSize": 2, "desiredSize": 2, "maxSize": 4},
        "aws": {"zoneCount": 2, "singleNatGateway": False},
        "gcp": {"regional": False, "releaseChannel": "REGULAR"},
        "platform": {
            "monitoring": {"retention": "7d", "storageGb": 50, "alertmanagerStorageGb": 5},
            "knative": {"scaleToZero": False, "scaleToZeroGracePeriod": "30s", "progressDeadline": "20m"},
            "modelStore": {"servers": 1, "volumesPerServer": 1, "volumeSizeGb": 100},
            "clusterAutoscaler": {"scaleDownUnneededTime": "10m", "scaleDownDelayAfterAdd": "10m"},
            "karpenter": {"consolidateAfter": "5m"},
        },
    },
    "prod": {
        "deletionProtection": True,
        # At least two system nodes, spread over the zones, so a zone outage keeps controllers up.
        "systemPool": {"minSize": 3, "desiredSize": 3, "maxSize": 6},
        "aws": {"zoneCount": 3, "singleNatGateway": False},
        "gcp": {"regional": True, "releaseChannel": "STABLE"},
        "platform": {
            "monitoring": {"retention": "15d", "storageGb": 200, "alertmanagerStorageGb": 10},
            "knative": {"scaleToZero": False, "scaleToZeroGracePeriod": "60s", "progressDeadline": "20m"},
            # Four servers: the smallest MinIO erasure set, so a lost node or volume loses no model.
            "modelStore": {"servers": 4, "volumesPerServer": 1, "volumeSizeGb": 250},
            "clusterAutoscaler": {"scaleDownUnneededTime": "20m", "scaleDownDelayAfterAdd": "15m"},
            # Empty GPU nodes still go within minutes; replacing serving nodes for a new AMI (drift) waits for
            # the nightly window (components/karpenter.py, disruption budgets).
            "karpenter": {"consolidateAfter": "5m", "maintenanceWindow": {"start": "02:00", "hours": 4}},
        },
    },
}

# Merged under every entry of `gpuPools`, whether the pool comes from the stack or from
# DEFAULT_GPU_POOLS. Keys a pool type does not have (existing clusters) are skipped.
GPU_POOL_TIER_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "dev": {"capacityType": "spot", "timeSlicingReplicas": 4, "maxSize": 2},
    "staging": {"capacityType": "onDemand", "timeSlicingReplicas": 1, "maxSize": 3},
    "prod": {"capacityType": "onDemand", "timeSlicingReplicas": 1, "maxSize": 4},
}

# The GPU pools a managed (aws/gcp) stack gets when its file has no `gpuPools` key. A stack that
# sets `gpuPools` replaces this whole map, so a default pool can be dropped.
DEFAULT_GPU_POOLS: Mapping[str, Mapping[str, Any]] = {
    "dev": {"gpu-spot": {"gpuType": "nvidia-l4"}},
    "staging": {"gpu": {"gpuType": "nvidia-l4"}},
    "prod": {
        "gpu-serving": {"gpuType": "nvidia-l4", "minSize": 1, "maxSize": 6},
        "gpu-batch": {"gpuType": "nvidia-l4", "capacityType": "spot", "purpose": "batch"},
    },
}


# --- limits ---------------------------------------------------------------------------------
# Checked on the raw input before anything else (see `_input_problems`), so that thousands of pools
# cost one error line and milliseconds, not a flood of errors or minutes of rendering. Nesting and
# value counts share their bounds with the YAML reader (infra/program/model_catalog.py).

# EKS: "Managed node groups per cluster", default quota 30 (adjustable), and the system pool is one of
# them (https://docs.aws.amazon.com/eks/latest/userguide/service-quotas.html). GKE documents no
# per-cluster cap on node pools this low (https://cloud.google.com/kubernetes-engine/quotas caps nodes:
# 1,000 per node pool zone), so one bound serves every cloud and keeps a render at seconds.
MAX_GPU_POOLS = 29
# Each model is an InferenceService or Deployment with its canary, autoscaler and alerts: a render
# grows with every one. 200 is twice the 100-model stack tests/benchmarks/ renders in seconds
# (docs/benchmarks.md); MAX_CATALOG_MODELS bounds the catalog itself.
MAX_MODELS = 200
# EKS: "Public endpoint access CIDR ranges per cluster", 40, not adjustable (service quotas page above).
MAX_EKS_API_CIDRS = 40
# GKE authorized networks, "Limitations": public clusters can have up to 50 authorized network CIDR
# ranges, private clusters up to 100 (https://cloud.google.com/kubernetes-engine/docs/how-to/authorized-networks).
# components/gke_cluster.py always adds the node subnet, so 49 are left in the smaller case.
MAX_GKE_API_CIDRS = 49
# No cloud limit: AWS recommends flexibility across several instance types for spot capacity, and one
# GPU type comes in a handful of sizes (components/gpu_catalog.py), so twenty is plenty.
MAX_MACHINE_TYPES = 20
MAX_TAINTS = 16
# One GPU holds at most seven MIG instances (NVIDIA MIG user guide, "Supported GPUs").
MAX_MIG_INSTANCES = 7
MAX_TENANTS = 50
MAX_POOL_NODES = 100
# No GCP region has more than four zones (us-central1: a, b, c, f).
MAX_GCP_ZONES = 4

# --- regions --------------------------------------------------------------------------------
# Regions offering the GPU instance families of components/gpu_catalog.py, compiled December 2026 from
# AWS "Amazon EC2 instance types by Region"
# (https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-regions.html; g4dn/g5/g6, or
# `aws ec2 describe-instance-type-offerings --filters Name=instance-type,Values=g5.2xlarge --region R`)
# and GCP "GPU regions and zones availability" (https://cloud.google.com/compute/docs/gpus/gpu-regions-zones;
# T4 and L4). Kept short on purpose: a region is added here, with its source, when a stack needs it.
AWS_GPU_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ap-south-1",
)  # fmt: skip
GCP_GPU_REGIONS = (
    "us-central1", "us-east1", "us-east4", "us-west1", "us-west4", "northamerica-northeast1", "southamerica-east1",
    "europe-west1", "europe-west2", "europe-west3", "europe-west4",
    "asia-east1", "asia-northeast1", "asia-northeast3", "asia-south1", "asia-southeast1", "australia-southeast1",
)  # fmt: skip


def _in_region_list(region: str, regions: tuple[str, ...], cloud: str) -> str:
    if region not in regions:
        raise ValueError(
            f"not an {cloud.upper()} region with GPU instances (the list {cloud.upper()}_GPU_REGIONS in "
            f"infra/program/settings.py); one of: {', '.join(regions)}"
        )
    return region


# --- field types ----------------------------------------------------------------------------


def _check_cidr(value: str) -> str:
    if "/" not in value:  # ipaddress would read a bare address as a /32
        raise ValueError("must be a CIDR block such as 10.0.0.0/16 (no prefix length)")
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"must be a CIDR block such as 10.0.0.0/16 ({exc})") from None
    return value


Cidr = Annotated[str, AfterValidator(_check_cidr)]


def _ipv4(cidr: str) -> ipaddress.IPv4Network:
    network = ipaddress.ip_network(cidr)
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError("must be an IPv4 CIDR block: the cloud assigns IPv6 ranges itself")
    return network


# Who may reach the Kubernetes API. The rule, in every tier: the allowed ranges together must not cover
# the whole internet, 0.0.0.0/0 or ::/0, however it is written (0.0.0.0/1 plus 128.0.0.0/1 is 0.0.0.0/0
# too: the ranges are merged before the check). In prod they may together cover at most a /8 worth of
# IPv4 addresses: an office or VPN egress is a few /24s, and anything near a /8 is the internet in practice.
PROD_MAX_API_ADDRESSES = 2**24


def _check_api_allow_list(cidrs: tuple[str, ...], tier: Optional[str]) -> tuple[str, ...]:
    networks = [ipaddress.ip_network(cidr) for cidr in cidrs]
    for version, everything in ((4, "0.0.0.0/0"), (6, "::/0")):
        ranges = [n for n in networks if n.version == version]
        merged = list(ipaddress.collapse_addresses(ranges))  # type: ignore[type-var]
        if merged and merged[0].prefixlen == 0:
            if any(n.prefixlen == 0 for n in ranges):
                raise ValueError(f"{everything} opens the API server to the internet; list your office or VPN CIDRs")
            raise ValueError(
                f"{', '.join(map(str, ranges))} together cover {everything}, which opens the API server to the "
                "internet; list your office or VPN CIDRs"
            )
    if tier == "prod":
        ipv4 = [n for n in networks if n.version == 4]
        covered = sum(n.num_addresses for n in ipaddress.collapse_addresses(ipv4))  # type: ignore[type-var]
        if covered > PROD_MAX_API_ADDRESSES:
            raise ValueError(
                f"in prod the allowed ranges may cover at most {PROD_MAX_API_ADDRESSES:,} addresses (a /8) together; "
                f"these cover {covered:,}: list your office or VPN CIDRs"
            )
    return cidrs


_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _check_pool_name(value: str) -> str:
    if len(value) > 30 or not _DNS_LABEL.match(value):
        raise ValueError("pool names are lowercase letters, digits and '-', start with a letter, at most 30 characters")
    return value


def _check_label_key(value: str) -> str:
    if len(value) > 316 or not _LABEL_KEY.match(value):
        raise ValueError("not a valid Kubernetes label or taint key")
    return value


def _check_node_name(value: str) -> str:
    if len(value) > 253 or not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", value):
        raise ValueError("a node name is lowercase letters, digits, '-' and '.', at most 253 characters")
    return value


PoolName = Annotated[str, AfterValidator(_check_pool_name)]
NodeName = Annotated[str, AfterValidator(_check_node_name)]
LabelKey = Annotated[str, AfterValidator(_check_label_key)]


class _Model(BaseModel):
    # camelCase keys as in every Pulumi stack file; unknown keys are errors, never ignored.
    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        frozen=True,
        coerce_numbers_to_str=True,
    )


class Taint(_Model):
    key: LabelKey = Field(description="Taint key, e.g. `nvidia.com/gpu`.")
    value: str = Field(default="", description="Taint value (may be empty).")
    effect: TaintEffect = Field(default="NoSchedule", description="What the taint does to pods that do not tolerate it.")


# --- node pools ---------------------------------------------------------------------------


class _NoGpuPool(_Model):
    @model_validator(mode="before")
    @classmethod
    def _gpu_settings_need_a_gpu_pool(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            misplaced = sorted({"gpuType", "gpuCount", "timeSlicingReplicas"} & set(data))
            if misplaced:
                raise ValueError(
                    f"{', '.join(misplaced)}: the system pool has no GPU, so it cannot be time-sliced or carry GPUs; "
                    "declare a pool under gpuPools instead"
                )
        return data


class SystemPool(_NoGpuPool):
    """The CPU pool, untainted, where CoreDNS and every controller run."""

    machine_type: str = Field(description="Instance type (AWS) or machine type (GCP) of the system nodes.")
    min_size: int = Field(ge=0, description="Fewest system nodes.")
    desired_size: int = Field(ge=0, description="System nodes at creation (the autoscaler moves it afterwards).")
    max_size: int = Field(ge=1, le=100, description="Most system nodes.")
    disk_size_gb: int = Field(default=50, ge=20, le=2000, description="Root volume size of each system node.")

    @field_validator("desired_size")
    @classmethod
    def _desired_not_below_min(cls, desired: int, info: ValidationInfo) -> int:
        minimum = info.data.get("min_size")
        if minimum is not None and desired < minimum:
            raise ValueError(f"desiredSize ({desired}) is below minSize ({minimum})")
        return desired

    @field_validator("max_size")
    @classmethod
    def _max_not_below_others(cls, maximum: int, info: ValidationInfo) -> int:
        for key, name in (("min_size", "minSize"), ("desired_size", "desiredSize")):
            other = info.data.get(key)
            if other is not None and maximum < other:
                raise ValueError(f"maxSize ({maximum}) is below {name} ({other})")
        return maximum


class ExistingSystemPool(_NoGpuPool):
    """Where controllers run on a cluster we do not manage: the labels its system nodes carry."""

    node_labels: dict[LabelKey, str] = Field(
        default_factory=dict,
        description="Labels that select the system nodes (empty: any node, as on a one-node kind cluster).",
    )


class GpuPoolBase(_Model):
    gpu_type: GpuTypeName = Field(description="GPU model on every node of the pool.")
    gpu_count: int = Field(default=1, ge=1, le=16, description="GPUs per node.")
    time_slicing_replicas: int = Field(
        ge=1,
        le=48,
        description="Pods that share one GPU through NVIDIA time-slicing; 1 means whole GPUs, no sharing.",
    )
    purpose: Purpose = Field(
        default="serving",
        description="What the pool is for: online `serving` or `batch` work; a spot pool in prod must be `batch`.",
    )
    mig_layout: tuple[str, ...] = Field(
        default=(),
        max_length=MAX_MIG_INSTANCES,
        description="MIG profiles each GPU of the pool is cut into, e.g. `[3g.40gb, 2g.20gb, 1g.10gb, 1g.10gb]` "
        "on an H100 80GB (profiles per GPU: docs/configuration.md, GPU types). Empty: whole or time-sliced "
        "GPUs. GKE takes one profile per pool, as many as fit.",
    )

    @field_validator("gpu_type")
    @classmethod
    def _offered_on_cloud(cls, gpu_type: str, info: ValidationInfo) -> str:
        cloud = (info.context or {}).get("cloud")
        if cloud in ("aws", "gcp") and not GPU_TYPES[gpu_type].offered_on(cloud):
            offered = ", ".join(name for name, gpu in GPU_TYPES.items() if gpu.offered_on(cloud))
            raise ValueError(f"{gpu_type!r} is not offered on {cloud}; GPU types on {cloud}: {offered}")
        return gpu_type

    @model_validator(mode="after")
    def _mig_layout_fits(self, info: ValidationInfo) -> "GpuPoolBase":
        if not self.mig_layout:
            return self
        gpu = GPU_TYPES[self.gpu_type]
        problem = mig_layout_problem(gpu, self.mig_layout)
        if problem:
            raise ValueError(f"migLayout: {problem}")
        if self.time_slicing_replicas > 1:
            raise ValueError(
                "migLayout: a pool shares its GPUs either by MIG or by time-slicing, not both; "
                "remove timeSlicingReplicas or migLayout"
            )
        if (info.context or {}).get("cloud") == "gcp":
            # GKE's `gpu_partition_size` takes one profile and cuts every GPU into as many as fit
            # (https://cloud.google.com/kubernetes-engine/docs/how-to/gpus-multi).
            profiles = sorted(set(self.mig_layout))
            if len(profiles) > 1:
                raise ValueError(
                    f"migLayout: GKE cuts a node pool's GPUs into one profile only, not {', '.join(profiles)}; "
                    "make one pool per profile"
                )
            fits = gpu.mig.profiles[profiles[0]].max_count  # type: ignore[union-attr]
            if len(self.mig_layout) != fits:
                raise ValueError(
                    f"migLayout: GKE cuts each {self.gpu_type} into {fits} x {profiles[0]}, as many as fit; "
                    f"list it {fits} times"
                )
        return self

    def offered_resources(self, cloud: str) -> dict[str, int]:
        """The GPU resources one node of this pool advertises (components/node_pools.py computes the same)."""
        return gpu_resources_per_node(self.gpu_count, self.time_slicing_replicas, self.mig_layout, cloud != "gcp")


class LocalStorage(_Model):
    """A GPU pool's node-local disk, for caching model weights (components/local_model_cache.py)."""

    nvme: bool = Field(
        default=False,
        description="The machines' local NVMe (EC2 instance store) holds a cache of model weights (KServe "
        "LocalModelCache): EKS with Karpenter only, on machine types that have instance store.",
    )
    model_cache_gb: Optional[int] = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Size of the weights cache on each node (the LocalModelNodeGroup's storage limit). Default: "
        "half the smallest instance store of the pool's machine types; the rest holds images and emptyDirs.",
    )


class ManagedGpuPool(GpuPoolBase):
    """A GPU node pool the program creates on EKS or GKE."""

    capacity_type: CapacityType = Field(
        description="`onDemand`, `spot` (interruptible, tainted so only tolerant pods land) or `spotWithFallback` "
        "(spot first, on-demand when spot has no capacity; tainted like spot; EKS with Karpenter only)."
    )
    min_size: int = Field(default=0, ge=0, description="Fewest nodes; 0 lets the pool scale to zero.")
    max_size: int = Field(ge=1, le=100, description="Most nodes.")
    machine_types: Optional[tuple[str, ...]] = Field(
        default=None,
        min_length=1,
        max_length=MAX_MACHINE_TYPES,
        description="Instance types (AWS, several allowed for spot) or the one machine type (GCP); "
        "default from the GPU catalog for gpuType and gpuCount.",
    )
    disk_size_gb: int = Field(default=200, ge=50, le=4000, description="Root volume size; model images are large.")
    local_storage: Optional[LocalStorage] = Field(
        default=None, description="Node-local disk for caching model weights (`localStorage.nvme`)."
    )

    @field_validator("max_size")
    @classmethod
    def _max_not_below_min(cls, maximum: int, info: ValidationInfo) -> int:
        minimum = info.data.get("min_size")
        if minimum is not None and maximum < minimum:
            raise ValueError(f"maxSize ({maximum}) is below minSize ({minimum})")
        return maximum

    @model_validator(mode="after")
    def _machines_fit_cloud(self, info: ValidationInfo) -> "ManagedGpuPool":
        cloud = (info.context or {}).get("cloud")
        gpu = GPU_TYPES[self.gpu_type]
        if self.machine_types is None and cloud in ("aws", "gcp") and gpu.offered_on(cloud):
            if self.gpu_count not in gpu.machines(cloud):
                counts = ", ".join(str(c) for c in sorted(gpu.machines(cloud)))
                raise ValueError(
                    f"machineTypes: no default machine with {self.gpu_count} x {self.gpu_type} on {cloud}; "
                    f"set machineTypes, or gpuCount to one of: {counts}"
                )
        if cloud == "gcp" and self.machine_types is not None and len(self.machine_types) != 1:
            raise ValueError("machineTypes: a GKE node pool has exactly one machine type")
        return self

    @model_validator(mode="after")
    def _prod_spot_pools_do_not_serve(self, info: ValidationInfo) -> "ManagedGpuPool":
        # Models land on serving pools first (components/models.py); a spot node can be reclaimed at any
        # moment (two minutes' notice on AWS, 30 seconds on GCP), which in prod drops live requests.
        if (info.context or {}).get("tier") == "prod" and self.capacity_type == "spot" and self.purpose == "serving":
            raise ValueError(
                "purpose: a spot pool in prod must not serve models (spot nodes are reclaimed with two minutes' "
                "notice on AWS, 30 seconds on GCP) without an on-demand fallback; set `purpose: batch`, "
                "`capacityType: onDemand`, or on EKS with Karpenter `capacityType: spotWithFallback`"
            )
        return self

    @model_validator(mode="after")
    def _fallback_needs_karpenter(self, info: ValidationInfo) -> "ManagedGpuPool":
        # A GKE node pool and an EKS managed node group each have one capacity type.
        if (info.context or {}).get("cloud") == "gcp" and self.capacity_type == "spotWithFallback":
            raise ValueError(
                "capacityType: spotWithFallback needs Karpenter (EKS); a GKE node pool is spot or not. Make a spot "
                "pool and an onDemand pool of the same GPU type"
            )
        return self

    def resolved_machine_types(self, cloud: str) -> tuple[str, ...]:
        if self.machine_types is not None:
            return self.machine_types
        return GPU_TYPES[self.gpu_type].machines(cloud)[self.gpu_count]

    def model_cache_gb(self, cloud: str) -> int:
        """GB of weights cache on each node; 0 without local NVMe (or with machines that have none)."""
        if self.local_storage is None or not self.local_storage.nvme or cloud != "aws":
            return 0
        sizes = [AWS_INSTANCE_STORE_GB.get(machine, 0) for machine in self.resolved_machine_types(cloud)]
        if not sizes or not all(sizes):
            return 0
        return self.local_storage.model_cache_gb or min(sizes) // 2


class ExistingGpuPool(GpuPoolBase):
    """GPU nodes that already exist in a cluster we do not manage, described so workloads can target them."""

    node_labels: Optional[dict[LabelKey, str]] = Field(
        default=None,
        description="Labels that select the pool's nodes; default `gpu-platform/pool: <name>` (label the nodes so).",
    )
    taints: tuple[Taint, ...] = Field(
        default=(Taint(key="nvidia.com/gpu", value="true"),),
        max_length=MAX_TAINTS,
        description="Taints the nodes carry; default `nvidia.com/gpu=true:NoSchedule`.",
    )
    nodes: tuple[NodeName, ...] = Field(
        default=(),
        max_length=MAX_POOL_NODES,
        description="Names of the pool's nodes. The stack then puts the pool's labels on them itself (and, with "
        "migLayout, `nvidia.com/mig.config`); required with migLayout. Empty: the owner labels the nodes.",
    )

    @model_validator(mode="after")
    def _mig_nodes_named(self) -> "ExistingGpuPool":
        if self.mig_layout and not self.nodes:
            raise ValueError(
                "nodes: a MIG pool on an existing cluster names its nodes, so the stack can label them "
                "nvidia.com/mig.config for the GPU Operator's MIG manager"
            )
        return self

    @property
    def node_count(self) -> int:
        """Nodes the pool has: those it names, else one (the usual single on-prem server)."""
        return len(self.nodes) or 1


# --- cloud blocks -------------------------------------------------------------------------


class AwsSettings(_Model):
    region: str = Field(
        pattern=r"^[a-z]{2}(-[a-z]+)+-\d$",
        description="AWS region with GPU instances (`AWS_GPU_REGIONS` in infra/program/settings.py), e.g. `us-west-2`.",
    )
    vpc_cidr: Cidr = Field(default="10.0.0.0/16", description="IPv4 CIDR of the cluster VPC, /16 to /22.")
    zone_count: int = Field(ge=2, le=3, description="Availability zones with private subnets (EKS needs two).")
    single_nat_gateway: bool = Field(description="One NAT gateway for all zones (cheaper) instead of one per zone.")
    api_server_allowed_cidrs: tuple[Cidr, ...] = Field(
        default=(),
        max_length=MAX_EKS_API_CIDRS,
        description="CIDRs allowed to reach the public API endpoint; empty keeps the endpoint private only. "
        "Together never the whole internet; in prod at most a /8 worth of addresses.",
    )
    gpu_ami_type: Literal[
        "AL2023_x86_64_NVIDIA", "AL2023_ARM_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA", "BOTTLEROCKET_ARM_64_NVIDIA"
    ] = Field(
        default="AL2023_x86_64_NVIDIA",
        description="EKS AMI of the GPU node groups; each ships the NVIDIA driver and container toolkit.",
    )

    @field_validator("region")
    @classmethod
    def _offers_gpus(cls, region: str) -> str:
        return _in_region_list(region, AWS_GPU_REGIONS, "aws")

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_size(cls, cidr: str) -> str:
        prefix = _ipv4(cidr).prefixlen
        # AWS: "The smallest VPC you can create uses a /28 netmask (16 IPv4 addresses), and the largest
        # uses a /16 netmask (65,536 IPv4 addresses)"
        # (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVpc.html, and the VPC user
        # guide's "VPC CIDR blocks").
        if not 16 <= prefix <= 28:
            raise ValueError("an AWS VPC is /16 (65,536 addresses) to /28 (16 addresses)")
        # components/eks_cluster.py splits the VPC into private subnets of /N+3 and public subnets of
        # /N+6, and an AWS subnet is /28 at smallest: N must be 22 or less.
        if prefix > 22:
            raise ValueError(
                f"/{prefix} is a valid AWS VPC, but this platform splits it into public subnets of /{prefix + 6}, "
                "smaller than AWS's smallest subnet (/28); use /22 or larger"
            )
        return cidr

    @field_validator("api_server_allowed_cidrs")
    @classmethod
    def _no_open_endpoint(cls, cidrs: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return _check_api_allow_list(cidrs, (info.context or {}).get("tier"))


class GcpSettings(_Model):
    project: str = Field(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$", description="GCP project ID.")
    region: str = Field(
        pattern=r"^[a-z]+-[a-z]+\d$",
        description="GCP region with GPUs (`GCP_GPU_REGIONS` in infra/program/settings.py), e.g. `us-central1`.",
    )
    zones: tuple[str, ...] = Field(
        default=(),
        max_length=MAX_GCP_ZONES,
        description="Zones for nodes; default: the region's `-a`, `-b`, `-c` zones (a zonal cluster uses the first).",
    )
    regional: bool = Field(description="Regional control plane and nodes in every zone (zonal otherwise).")
    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = Field(description="GKE release channel.")
    subnet_cidr: Cidr = Field(default="10.10.0.0/20", description="Primary range of the node subnet.")
    pods_cidr: Cidr = Field(default="10.16.0.0/14", description="Secondary range for pods (VPC-native).")
    services_cidr: Cidr = Field(default="10.20.0.0/20", description="Secondary range for services.")
    master_cidr: Cidr = Field(
        default="172.16.0.0/28",
        description="/28 for the private control plane endpoint. The four ranges above must not overlap.",
    )
    api_server_allowed_cidrs: tuple[Cidr, ...] = Field(
        default=(),
        max_length=MAX_GKE_API_CIDRS,
        description="Master authorized networks; empty allows only the node subnet. Together never the whole "
        "internet; in prod at most a /8 worth of addresses.",
    )

    @field_validator("region")
    @classmethod
    def _offers_gpus(cls, region: str) -> str:
        return _in_region_list(region, GCP_GPU_REGIONS, "gcp")

    @field_validator("subnet_cidr", "pods_cidr", "services_cidr")
    @classmethod
    def _ipv4_range(cls, cidr: str) -> str:
        _ipv4(cidr)  # GKE's node subnet and its VPC-native secondary ranges are IPv4
        return cidr

    @field_validator("master_cidr")
    @classmethod
    def _control_plane_is_a_28(cls, cidr: str) -> str:
        # "When you create a private cluster, you must specify a /28 CIDR range for the VMs that run the
        # Kubernetes master components" (https://cloud.google.com/kubernetes-engine/docs/how-to/private-clusters).
        if _ipv4(cidr).prefixlen != 28:
            raise ValueError("the GKE control plane range of a private cluster is exactly a /28, e.g. 172.16.0.0/28")
        return cidr

    @field_validator("api_server_allowed_cidrs")
    @classmethod
    def _no_open_endpoint(cls, cidrs: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return _check_api_allow_list(cidrs, (info.context or {}).get("tier"))

    @model_validator(mode="after")
    def _ranges_do_not_overlap(self) -> "GcpSettings":
        # Nodes, pods, services and the control plane each need their own addresses: an address in two
        # ranges cannot be routed to both, and GKE refuses to create a cluster whose ranges overlap.
        ranges = {"subnetCidr": self.subnet_cidr, "podsCidr": self.pods_cidr,
                  "servicesCidr": self.services_cidr, "masterCidr": self.master_cidr}  # fmt: skip
        names = list(ranges)
        for index, first in enumerate(names):
            for second in names[index + 1 :]:
                if ipaddress.ip_network(ranges[first]).overlaps(ipaddress.ip_network(ranges[second])):
                    raise ValueError(
                        f"{second} {ranges[second]} overlaps {first} {ranges[first]}; the node subnet, pod, "
                        "service and control-plane ranges must not overlap"
                    )
        return self

    @field_validator("zones")
    @classmethod
    def _zones_in_region(cls, zones: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        region = info.data.get("region")
        wrong = [z for z in zones if region and not z.startswith(f"{region}-")]
        if wrong:
            raise ValueError(f"zones {wrong} are not in region {region}")
        return zones

    @property
    def node_zones(self) -> tuple[str, ...]:
        zones = self.zones or tuple(f"{self.region}-{letter}" for letter in "abc")
        return zones if self.regional else zones[:1]


class ExistingCluster(_Model):
    kubeconfig: str = Field(default="~/.kube/config", description="Path to the kubeconfig file.")
    context: Optional[str] = Field(default=None, description="Kubeconfig context; default: the file's current context.")


# --- platform add-ons ---------------------------------------------------------------------


class Addon(_Model):
    enabled: bool = Field(default=True, description="Install it; off for a cluster that already runs it.")


class GpuOperatorAddon(Addon):
    enabled: bool = Field(
        default=True,
        description="Install the GPU layer (NVIDIA GPU Operator, or DCGM exporter on GKE); it is skipped "
        "anyway on a cluster without GPU pools.",
    )


class MonitoringAddon(Addon):
    retention: str = Field(pattern=r"^\d+[hdwy]$", description="How long Prometheus keeps samples, e.g. `15d`.")
    storage_gb: int = Field(ge=5, le=10000, description="Prometheus persistent volume size.")
    alertmanager_storage_gb: int = Field(ge=1, le=100, description="Alertmanager persistent volume size.")


class IstioAddon(Addon):
    public_gateway: bool = Field(
        default=False,
        description="Expose the ingress gateway on an internet-facing load balancer (internal by default).",
    )


_DURATION = r"^\d+[smh]$"


# Domains reserved for documentation (RFC 2606, RFC 6761): no certificate authority issues for them and no
# client resolves them, so a prod stack that serves its models there serves nobody.
_EXAMPLE_DOMAIN = re.compile(r"(^|\.)example(\.[a-z]+)?$")


class KnativeAddon(Addon):
    domain: str = Field(
        default="example.com",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}$",
        description="Domain of model URLs, `<model>-<namespace>.<domain>`, served over HTTPS with a wildcard "
        "certificate `*.<domain>` (`gpu-platform:tls`); point a wildcard DNS record at the ingress gateway. "
        "KServe's default `example.com` needs a `Host` header on every request and is refused in prod.",
    )

    @field_validator("domain")
    @classmethod
    def _a_real_domain_in_prod(cls, domain: str, info: ValidationInfo) -> str:
        if (info.context or {}).get("tier") == "prod" and _EXAMPLE_DOMAIN.search(domain):
            raise ValueError(
                f"{domain!r} is a documentation domain no certificate authority issues for and no client resolves; "
                "prod serves its models on the company's own domain, e.g. models.acme.com"
            )
        return domain
    scale_to_zero: bool = Field(description="Let models with minScale 0 scale to zero when idle (dev only by default).")
    scale_to_zero_grace_period: str = Field(
        pattern=_DURATION, description="How long the last replica lingers after scaling to zero is decided, e.g. `60s`."
    )
    progress_deadline: str = Field(
        pattern=_DURATION,
        description="How long a new revision may take to become ready: a GPU node scaling up from zero plus a "
        "multi-GB image pull, e.g. `20m`.",
    )


class ModelStoreAddon(Addon):
    servers: int = Field(ge=1, le=32, description="MinIO servers (pods) of the model store; 4 or more for erasure coding.")
    volumes_per_server: int = Field(ge=1, le=16, description="Persistent volumes per MinIO server.")
    volume_size_gb: int = Field(ge=1, le=16000, description="Size of each MinIO volume.")


class ClusterAutoscalerAddon(Addon):
    expander: Literal["least-waste", "most-pods", "random"] = Field(
        default="least-waste",
        # `price` needs a pricing model the AWS provider lacks (CA fails to start) and `priority` a
        # priorities ConfigMap this platform does not write, so neither is offered.
        description="How Cluster Autoscaler picks a node group when several fit the pending pods.",
    )
    scale_down_unneeded_time: str = Field(
        pattern=_DURATION, description="How long a node must be unneeded before it is removed, e.g. `10m`."
    )
    scale_down_delay_after_add: str = Field(
        pattern=_DURATION, description="How long after a scale-up scale-down stays paused, e.g. `10m`."
    )


class MaintenanceWindow(_Model):
    start: str = Field(description="When the daily window opens, `HH:MM` in UTC, e.g. `02:00`.")
    hours: int = Field(ge=1, le=23, description="How long it stays open, in hours.")

    @field_validator("start")
    @classmethod
    def _time_of_day(cls, start: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", start):
            raise ValueError("a time of day `HH:MM` (UTC), e.g. 02:00")
        return start


class KarpenterAddon(_Model):
    consolidate_after: str = Field(
        pattern=r"^\d+[smh]$",
        description="How long a GPU node must be empty (serving pools) or empty or underutilised (batch pools, and "
        "every pool in dev) before Karpenter removes it, e.g. `5m`.",
    )
    ami_version: str = Field(
        default="latest",
        description="EKS-optimised AL2023 AMI release of the GPU nodes (`al2023@<version>`; Karpenter picks the "
        "NVIDIA variant for GPU instance types): `latest`, or a release such as `v20261110` to roll AMIs by hand.",
    )
    @field_validator("ami_version")
    @classmethod
    def _ami_release(cls, version: str) -> str:
        if version != "latest" and not re.fullmatch(r"v\d{8}", version):
            raise ValueError("`latest` or an AMI release such as v20261110")
        return version

    maintenance_window: Optional[MaintenanceWindow] = Field(
        default=None,
        description="Daily window (UTC) in which serving GPU nodes may be replaced for drift (a new AMI, a changed "
        "node class); outside it only empty nodes are removed. None: any time, one node at a time.",
    )


class PrivateRegistry(_Model):
    mirror: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:\d{1,5})?(/[a-z0-9]([-a-z0-9._]*[a-z0-9])?)*$",
        description="Registry (host, optional port and path) holding a copy of every image the platform runs, "
        "each under its source registry: `docker.io/istio/pilot:1.28.10` is pulled as "
        "`<mirror>/docker.io/istio/pilot:1.28.10`. `infra/run images STACK --copy-to-mirror` prints the copy "
        "commands. The nodes must be able to pull from it (docs/entry.md, \"Private registry\").",
    )


class CustomPricing(_Model):
    cpu_hourly: float = Field(gt=0, le=100, description="USD per vCPU-hour.")
    ram_gib_hourly: float = Field(gt=0, le=100, description="USD per GiB of memory per hour.")
    gpu_hourly: float = Field(gt=0, le=1000, description="USD per GPU-hour.")


class CostMonitoringAddon(_Model):
    enabled: Optional[bool] = Field(
        default=None,
        description="OpenCost, reading the platform's Prometheus (components/cost_monitoring.py); unset: on wherever "
        "platform.monitoring is on.",
    )
    custom_pricing: Optional[CustomPricing] = Field(
        default=None,
        description="Hourly prices OpenCost uses instead of a cloud price list, for clusters without one (existing, "
        "on-prem); unset: the cloud's list prices (aws, gcp) or OpenCost's built-in defaults (existing).",
    )


class BatchQueueAddon(_Model):
    enabled: Optional[bool] = Field(
        default=None,
        description="Kueue: batch Jobs wait in a queue per tenant and run on the spot pools first "
        "(components/batch_queue.py); unset: on wherever a GPU pool has `purpose: batch` and the model store is on "
        "(its namespaces hold the queues).",
    )


class KedaAddon(_Model):
    enabled: Optional[bool] = Field(
        default=None,
        description="KEDA, which scales models with `autoscaler: keda` on Prometheus queries. Unset: installed where "
        "a model of the stack asks for it; `false` refuses such models.",
    )


class PlatformSettings(_Model):
    cert_manager: Addon = Field(default_factory=Addon, description="cert-manager, for KServe's webhook certificates.")
    gpu_operator: GpuOperatorAddon = Field(default_factory=GpuOperatorAddon, description="The GPU layer.")
    monitoring: MonitoringAddon = Field(description="Prometheus, Alertmanager and Grafana (kube-prometheus-stack).")
    istio: IstioAddon = Field(default_factory=IstioAddon, description="Istio mesh and the ingress gateway.")
    knative: KnativeAddon = Field(description="Knative Serving through the Knative Operator, with Istio ingress.")
    kserve: Addon = Field(default_factory=Addon, description="KServe (CRDs, controller, serving runtimes) in Knative mode.")
    model_store: ModelStoreAddon = Field(description="MinIO (operator and tenant) holding the `models` bucket.")
    flagger: Addon = Field(default_factory=Addon, description="Flagger with its load tester, for canary analysis.")
    cost_monitoring: CostMonitoringAddon = Field(
        default_factory=CostMonitoringAddon, description="OpenCost: what each namespace, model and idle GPU costs."
    )
    batch_queue: BatchQueueAddon = Field(
        default_factory=BatchQueueAddon, description="Kueue, queueing batch Jobs onto the GPU pools, spot first."
    )
    keda: KedaAddon = Field(default_factory=KedaAddon, description="KEDA, for models scaled on queue depth.")
    air_gapped: bool = Field(
        default=False,
        description="The cluster cannot reach the internet: catalog models copied from Hugging Face "
        "(`source.huggingface`, manifests/models/README.md) are refused; upload their files to the store instead. "
        "Needs `privateRegistry`, since no public registry is reachable either.",
    )
    private_registry: Optional[PrivateRegistry] = Field(
        default=None, description="Pull every image from this mirror instead of its public registry."
    )

    @property
    def image_mirror(self) -> Optional[ImageMirror]:
        return ImageMirror(self.private_registry.mirror) if self.private_registry else None

    @model_validator(mode="after")
    def _air_gapped_needs_a_mirror(self) -> "PlatformSettings":
        if self.air_gapped and self.private_registry is None:
            raise ValueError(
                "airGapped: an air-gapped cluster cannot pull from public registries; set privateRegistry.mirror "
                "to the registry that holds the platform's images"
            )
        return self


class AwsPlatformSettings(PlatformSettings):
    autoscaler: Autoscaler = Field(
        default="karpenter",
        description="What scales the EKS GPU capacity: `karpenter` (each GPU pool a Karpenter NodePool and "
        "EC2NodeClass) or `cluster-autoscaler` (each GPU pool a managed node group). The system pool is a managed "
        "node group either way.",
    )
    karpenter: KarpenterAddon = Field(description="Karpenter's disruption settings and AMI, with `autoscaler: karpenter`.")
    cluster_autoscaler: ClusterAutoscalerAddon = Field(
        description="Cluster Autoscaler for the EKS node groups, with `autoscaler: cluster-autoscaler` (GKE pools "
        "autoscale themselves)."
    )


# --- models ---------------------------------------------------------------------------------


# --- tenants --------------------------------------------------------------------------------

_GPU_RESOURCE_NAME = re.compile(r"^nvidia\.com/(gpu|mig-[1-7]g\.\d{1,3}gb)$")
# Namespaces a tenant cannot take: Kubernetes' own and every namespace a platform chart installs into.
RESERVED_NAMESPACES = frozenset(
    {"default", "kube-system", "kube-public", "kube-node-lease", "knative-serving", "minio-models"}
    | {pin.namespace for pin in CHART_PINS.values()}
)


def _check_gpu_resource(value: str) -> str:
    if not _GPU_RESOURCE_NAME.match(value):
        raise ValueError(
            "a GPU resource is `nvidia.com/gpu` (whole or time-sliced GPUs) or `nvidia.com/mig-<profile>` "
            "(a MIG slice, e.g. nvidia.com/mig-1g.10gb)"
        )
    return value


GpuResourceName = Annotated[str, AfterValidator(_check_gpu_resource)]


class TenantQuota(_Model):
    gpus: dict[GpuResourceName, Annotated[int, Field(ge=0, le=10_000)]] = Field(
        default_factory=dict,
        max_length=16,
        description="GPU resources by name, e.g. `{nvidia.com/gpu: 2, nvidia.com/mig-1g.10gb: 1}`; a resource "
        "not listed is 0 (ResourceQuota `requests.<resource>`).",
    )
    cpu: Optional[CpuQuantity] = Field(default=None, description="Total CPU requests of the tenant's pods; unset: unlimited.")
    memory: Optional[MemoryQuantity] = Field(default=None, description="Total memory requests; unset: unlimited.")
    pods: int = Field(default=100, ge=1, le=10_000, description="Most pods in the tenant's namespace.")


class BatchQuota(_Model):
    gpus: dict[GpuResourceName, Annotated[int, Field(ge=0, le=10_000)]] = Field(
        default_factory=dict,
        max_length=16,
        description="GPU resources pods of priority `batch` may use on top of the guaranteed quota; unset: none.",
    )


class TenantNotebooksOAuth(_Model):
    authorize_url: str = Field(pattern=r"^https://", description="The identity provider's authorization endpoint.")
    token_url: str = Field(pattern=r"^https://", description="Its token endpoint.")
    userdata_url: str = Field(pattern=r"^https://", description="Its userinfo endpoint.")
    client_id: str = Field(min_length=1, description="The OAuth client registered for JupyterHub.")
    client_secret_name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="Secret in the tenant's namespace whose key `client-secret` holds the client secret "
        "(created by the operator, never in a stack file).",
    )
    allowed_groups: tuple[str, ...] = Field(default=(), max_length=50, description="Groups allowed in; empty: anyone the provider admits.")


class TenantNotebooks(_Model):
    auth: Literal["password", "oauth"] = Field(
        default="password",
        description="`password`: one generated password (a Pulumi secret, exported as `notebookPasswords`), for "
        "local use; `oauth`: your identity provider (required in prod).",
    )
    oauth: Optional[TenantNotebooksOAuth] = Field(default=None, description="OAuth/OIDC settings, with `auth: oauth`.")
    idle_timeout_minutes: int = Field(default=60, ge=5, le=7 * 24 * 60, description="Idle servers are culled after this.")
    max_servers: int = Field(default=10, ge=1, le=500, description="Most notebook servers running at once.")
    cpu: CpuQuantity = Field(default="2", description="CPU per notebook server (request and limit).")
    memory: MemoryQuantity = Field(default="8Gi", description="Memory per notebook server (request and limit).")

    @model_validator(mode="after")
    def _auth_settings(self, info: ValidationInfo) -> "TenantNotebooks":
        if self.auth == "oauth" and self.oauth is None:
            raise ValueError("oauth: required with `auth: oauth`")
        if self.auth == "password" and (info.context or {}).get("tier") == "prod":
            raise ValueError(
                "auth: a generated password is for local use; prod notebooks sign in through your identity "
                "provider (`auth: oauth`)"
            )
        return self


class Tenant(_Model):
    """A team sharing the platform: its namespace, its guaranteed GPU quota and its priority."""

    namespace: Optional[str] = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="The tenant's namespace (models and notebooks); default: the tenant's name.",
    )
    quota: TenantQuota = Field(default_factory=TenantQuota, description="Guaranteed resources (ResourceQuota).")
    batch_quota: BatchQuota = Field(default_factory=BatchQuota, description="Preemptible extra GPUs for `batch` pods.")
    priority: Optional[Literal["serving-critical", "serving", "interactive"]] = Field(
        default=None,
        description="Priority class of the tenant's serving models; default `serving-critical` in prod, "
        "`serving` elsewhere. Batch models always run as `batch`.",
    )
    notebooks: Optional[TenantNotebooks] = Field(
        default=None, description="JupyterHub in the tenant's namespace, with a server profile per GPU kind the pools offer."
    )


# --- entry ------------------------------------------------------------------------------------


class AuthSettings(_Model):
    """Who may call the models: tokens from your identity provider, checked at the ingress gateway."""

    mode: Literal["jwt", "none"] = Field(
        description="`jwt`: every request to a model carries a valid token whose tenant claim names the model's "
        "tenant; `none`: anyone who reaches the gateway may call every model (refused by the policy pack in prod)."
    )
    issuer: Optional[str] = Field(default=None, pattern=r"^https://", description="The tokens' `iss`, with `mode: jwt`.")
    jwks_uri: Optional[str] = Field(
        default=None, pattern=r"^https://", description="Where the issuer publishes its signing keys (JWKS), with `mode: jwt`."
    )
    audiences: tuple[str, ...] = Field(
        default=(), max_length=10, description="Accepted `aud` values; empty: any audience of that issuer."
    )
    tenant_claim: str = Field(
        default="groups",
        pattern=r"^[A-Za-z0-9_.:/-]{1,100}$",
        description="The token claim listing the caller's tenants (a group per tenant); without tenants the one "
        "tenant is `models`.",
    )

    @model_validator(mode="after")
    def _jwt_settings(self) -> "AuthSettings":
        if self.mode == "jwt" and (self.issuer is None or self.jwks_uri is None):
            raise ValueError("issuer and jwksUri: both required with `mode: jwt`")
        return self


LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


class AcmeSettings(_Model):
    """An ACME account (Let's Encrypt by default) and the DNS zone its DNS-01 challenges are answered in."""

    email: str = Field(
        pattern=r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", description="The ACME account's contact, warned before a certificate expires."
    )
    server: str = Field(
        default=LETS_ENCRYPT,
        pattern=r"^https://",
        description="The ACME directory; Let's Encrypt's staging directory "
        "(https://acme-staging-v02.api.letsencrypt.org/directory) while trying things out.",
    )
    hosted_zone_id: Optional[str] = Field(
        default=None,
        pattern=r"^Z[A-Z0-9]{1,32}$",
        description="EKS: the Route 53 hosted zone of the domain (required on aws): cert-manager may change TXT "
        "records `_acme-challenge.*` in it and nothing else. GKE: the Cloud DNS zone is looked up in the stack's "
        "project.",
    )


class TlsSettings(_Model):
    """How the ingress gateway gets its certificate for `*.<platform.knative.domain>`."""

    mode: Literal["acme", "self-signed", "none"] = Field(
        default="self-signed",
        description="`acme`: a publicly trusted certificate from an ACME CA through DNS-01 (Route 53 on EKS, Cloud "
        "DNS on GKE; credentials by IRSA or Workload Identity, never keys); `self-signed`: a private CA the stack "
        "creates, its root exported as the output `tlsRootCertificate` for clients to trust; `none`: plain HTTP "
        "(refused by the policy pack in prod).",
    )
    acme: Optional[AcmeSettings] = Field(default=None, description="The ACME account and DNS zone, with `mode: acme`.")

    @model_validator(mode="after")
    def _acme_settings(self, info: ValidationInfo) -> "TlsSettings":
        cloud = (info.context or {}).get("cloud")
        if self.mode != "acme":
            if self.acme is not None:
                raise ValueError("acme: only with `mode: acme`")
            return self
        if cloud == "existing":
            raise ValueError(
                "mode: `acme` answers DNS-01 challenges through the cloud's DNS (Route 53, Cloud DNS) with the "
                "cluster's workload identity, which a cluster the stack does not create lacks; use `self-signed`"
            )
        if self.acme is None:
            raise ValueError("acme: required with `mode: acme` (email, and hostedZoneId on aws)")
        if cloud == "aws" and self.acme.hosted_zone_id is None:
            raise ValueError("acme.hostedZoneId: required on aws, the Route 53 zone cert-manager may answer in")
        if cloud == "gcp" and self.acme.hosted_zone_id is not None:
            raise ValueError("acme.hostedZoneId: a Route 53 zone, for aws stacks only")
        return self


# --- whole stacks -------------------------------------------------------------------------


class Budget(_Model):
    """A monthly spending limit; the policy pack holds the stack's cost estimate to it (docs/cost.md)."""

    monthly_usd: int = Field(
        ge=1,
        le=100_000_000,
        description="Most the stack may cost a month with every node pool at its maximum size, in whole US "
        "dollars at the list prices of manifests/prices.yaml. The policy pack fails a preview above it and "
        "warns from 80 %.",
    )


class _StackBase(_Model):
    environment: Tier = Field(description="Tier whose defaults apply: `dev`, `staging` or `prod`.")
    cluster_name: str = Field(
        pattern=r"^[a-z][-a-z0-9]{0,38}[a-z0-9]$",
        description="Cluster name; default `gpu-<stack>`.",
    )
    kubernetes_version: str = Field(pattern=r"^1\.\d{2}$", description="Kubernetes minor version, e.g. `1.35`.")
    platform: PlatformSettings = Field(description="The platform add-ons and their sizes.")
    models: dict[str, ModelOverride] = Field(
        default_factory=dict,
        max_length=MAX_MODELS,
        description=f"Catalog models (manifests/models/) this environment serves, each with what it overrides; "
        f"at most {MAX_MODELS}.",
    )
    auth: AuthSettings = Field(
        description="How callers of the models authenticate; say `mode: none` to serve without tokens (dev only)."
    )
    tls: TlsSettings = Field(
        default_factory=TlsSettings,
        description="TLS on the model entry: the certificate of `*.<platform.knative.domain>` on the ingress gateway, "
        "which answers HTTPS and redirects HTTP.",
    )
    tenants: dict[PoolName, Tenant] = Field(
        default_factory=dict,
        max_length=MAX_TENANTS,
        description="Teams sharing the cluster, each with its namespace, quotas and priority; every model then "
        "names its tenant. Empty: every model in the one `models` namespace.",
    )
    budget: Optional[Budget] = Field(
        default=None,
        description="Monthly budget the cost estimate at maximum size must stay within (policy "
        "`monthly-cost-within-budget`); unset: no budget. Not for an existing cluster, which has no cloud price.",
    )

    batch_jobs: dict[Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")], BatchJobOverride] = Field(
        default_factory=dict,
        max_length=50,
        description="Batch inference jobs of the catalog (manifests/batch/) this stack runs through the batch "
        "queue, by name, each with its `tenant` where the stack has tenants (docs/cost.md, \"Batch on spot\").",
    )

    def tenant_namespace(self, tenant: str) -> str:
        return self.tenants[tenant].namespace or tenant


class _ManagedStack(_StackBase):
    deletion_protection: bool = Field(description="Refuse to delete the cluster (and protect it in Pulumi state).")
    system_pool: SystemPool = Field(description="The CPU pool, untainted, where CoreDNS and every controller run.")
    gpu_pools: dict[PoolName, ManagedGpuPool] = Field(
        max_length=MAX_GPU_POOLS, description=f"GPU node pools by name, at most {MAX_GPU_POOLS}."
    )


class AwsStack(_ManagedStack):
    cloud: Literal["aws"]
    platform: AwsPlatformSettings = Field(description="The platform add-ons and their sizes.")
    aws: AwsSettings = Field(description="Region, network and zones of the EKS cluster.")


class GcpStack(_ManagedStack):
    cloud: Literal["gcp"]
    gcp: GcpSettings = Field(description="Project, region, network ranges and release channel of the GKE cluster.")


class ExistingStack(_StackBase):
    cloud: Literal["existing"]
    existing: ExistingCluster = Field(
        default_factory=ExistingCluster, description="How to reach the cluster: kubeconfig file and context."
    )
    system_pool: ExistingSystemPool = Field(
        default_factory=ExistingSystemPool, description="Where controllers run: the labels of the system nodes."
    )
    gpu_pools: dict[PoolName, ExistingGpuPool] = Field(
        default_factory=dict,
        max_length=MAX_GPU_POOLS,
        description=f"GPU node pools the cluster already has (none on a kind cluster), at most {MAX_GPU_POOLS}.",
    )

    @model_validator(mode="after")
    def _no_budget_without_a_price(self) -> "ExistingStack":
        if self.budget is not None:
            raise ValueError(
                "budget: a cluster the stack does not create has no cloud price to estimate (docs/cost.md), so "
                "there is nothing to hold to a budget; remove the key"
            )
        return self


StackSettings = Annotated[Union[AwsStack, GcpStack, ExistingStack], Field(discriminator="cloud")]
_STACK_MODELS: Mapping[str, type[_StackBase]] = {"aws": AwsStack, "gcp": GcpStack, "existing": ExistingStack}
_ADAPTER: TypeAdapter[Any] = TypeAdapter(StackSettings)


class _Header(BaseModel):
    model_config = ConfigDict(extra="ignore")
    environment: Tier
    cloud: Cloud


# --- loading --------------------------------------------------------------------------------


def load_settings(raw: Mapping[str, Any], stack: str) -> Union[AwsStack, GcpStack, ExistingStack]:
    """Validate one stack's `gpu-platform:*` keys (namespace stripped) into typed settings.

    Raises ConfigError listing every problem found.
    """
    try:
        header = _Header.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, None)) from None
    # Size first: thousands of pools are one line here, not thousands of errors or minutes of render.
    problems = _input_problems(raw, _STACK_MODELS[header.cloud])
    if problems:
        raise ConfigError(problems)

    merged = with_defaults(raw, header.environment, header.cloud, stack)
    try:
        settings = _ADAPTER.validate_python(merged, context={"cloud": header.cloud, "tier": header.environment})
    except ValidationError as exc:
        # The discriminated union puts the cloud tag first in every error location: drop it.
        raise ConfigError(_describe(exc, _STACK_MODELS[header.cloud], strip_tag=True)) from None
    try:
        catalog = load_catalog()
    except CatalogError as exc:
        raise ConfigError(exc.problems) from None
    try:
        batch_catalog = load_batch_catalog()
    except CatalogError as exc:
        raise ConfigError(exc.problems) from None
    problems = (
        autoscaler_problems(settings)
        + model_problems(settings, catalog)
        + tenant_problems(settings, catalog)
        + local_storage_problems(settings, catalog)
    )
    problems += runtime_cost_problems(settings) + batch_problems(settings, catalog, batch_catalog)
    if problems:
        raise ConfigError(problems)
    return settings


def _input_problems(raw: Mapping[str, Any], model: type[BaseModel]) -> list[str]:
    """Nesting, total size and list/map lengths of the raw input, before any validation or merging."""
    values = 0
    stack: list[tuple[Any, tuple[str, ...]]] = [(raw, ())]
    while stack:  # iterative: deep input must not reach Python's recursion limit here either
        value, path = stack.pop()
        values += 1
        if values > MAX_VALUES:
            return [f"{PROJECT}: more than {MAX_VALUES:,} values in this stack's configuration"]
        if isinstance(value, Mapping):
            children = [(child, (*path, str(key))) for key, child in value.items()]
        elif isinstance(value, (list, tuple)):
            children = [(child, (*path, str(index))) for index, child in enumerate(value)]
        else:
            continue
        if len(path) >= MAX_NESTING:
            shown = ".".join(path[:4]) + (".…" if len(path) > 4 else "")
            return [f"{PROJECT}:{shown}: nested deeper than {MAX_NESTING} levels of mappings and lists"]
        stack.extend(children)
    return _too_long(model, raw, ())


def _too_long(model: type[BaseModel], data: Any, path: tuple[str, ...]) -> list[str]:
    """Every list or map in `data` longer than its field's `max_length` (the limits above)."""
    if not isinstance(data, Mapping):
        return []
    problems = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in data:
            continue
        value, here = data[key], (*path, key)
        limit = next((m.max_length for m in info.metadata if getattr(m, "max_length", None) is not None), None)
        if limit is not None and isinstance(value, (Mapping, list, tuple)) and len(value) > limit:
            problems.append(
                f"{PROJECT}:{'.'.join(here)}: at most {limit} entries, see the limits in infra/program/settings.py "
                f"(got {len(value)})"
            )
            continue
        inner = _model_inside(info.annotation)
        if inner is None:
            continue
        if _is_model(_strip(info.annotation)):
            problems += _too_long(inner, value, here)
        elif isinstance(value, Mapping):
            for entry, item in value.items():
                problems += _too_long(inner, item, (*here, str(entry)))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                problems += _too_long(inner, item, (*here, str(index)))
    return problems


def _strip(annotation: Any) -> Any:
    """Optional[X] -> X."""
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if type(None) in getattr(annotation, "__args__", ()) and len(args) == 1:
        return args[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _model_inside(annotation: Any) -> Optional[type[BaseModel]]:
    """The settings model a field holds: itself, or the values of its map or the items of its list."""
    annotation = _strip(annotation)
    if _is_model(annotation):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if _is_model(arg):
            return arg
    return None


def autoscaler_problems(settings: Any) -> list[str]:
    """What the EKS GPU pools need of the stack's autoscaler: spot with on-demand fallback is a Karpenter NodePool
    (a managed node group has one capacity type), and a Karpenter pool launches only instance types EC2 offers
    with its GPU, so at least one of its machineTypes must be one the GPU catalog knows."""
    if settings.cloud != "aws":
        return []
    problems = []
    karpenter = settings.platform.autoscaler == "karpenter"
    for name, pool in settings.gpu_pools.items():
        key = f"{PROJECT}:gpuPools.{name}"
        if pool.capacity_type == "spotWithFallback" and not karpenter:
            problems.append(
                f"{key}.capacityType: spotWithFallback needs platform.autoscaler karpenter (an EKS managed node group "
                "has one capacity type); set it, or make the pool spot or onDemand"
            )
        known = GPU_TYPES[pool.gpu_type].aws_instance_type_names()
        if karpenter and pool.machine_types is not None and not set(pool.machine_types) & set(known):
            problems.append(
                f"{key}.machineTypes: none of {', '.join(pool.machine_types)} is an instance type the GPU catalog "
                f"knows for {pool.gpu_type} (components/gpu_catalog.py: {', '.join(known)}); Karpenter would launch "
                "nothing for this pool"
            )
    return problems


def local_storage_problems(settings: Any, catalog: Mapping[str, CatalogModel]) -> list[str]:
    """A pool that caches weights on local NVMe: machines that have it, a node bootstrap that mounts it where KServe's
    node agent looks (EKS with Karpenter: components/karpenter.py), a cache no larger than the smallest disk, and the
    cached models of its GPU type fitting in it."""
    problems: list[str] = []
    for name, pool in settings.gpu_pools.items():
        local = getattr(pool, "local_storage", None)
        if local is None or not local.nvme:
            continue
        key = f"{PROJECT}:gpuPools.{name}.localStorage.nvme"
        if settings.cloud != "aws":
            problems.append(
                f"{key}: only on EKS for now. KServe v0.20.0's node agent keeps models at the host path /models "
                "(kserve-localmodel-resources files/resources.yaml, not a chart value), which Container-Optimized "
                "OS keeps read-only and no GKE node bootstrap can mount a local SSD on; remove localStorage"
            )
            continue
        if settings.platform.autoscaler != "karpenter":
            problems.append(
                f"{key}: the instance store is mounted at KServe's /models by the node's user data, which this "
                "platform sets on Karpenter's EC2NodeClass only; set platform.autoscaler karpenter or remove "
                "localStorage"
            )
        machines = pool.resolved_machine_types(settings.cloud)
        without = [machine for machine in machines if not AWS_INSTANCE_STORE_GB.get(machine)]
        if without:
            problems.append(
                f"{key}: {', '.join(without)} {'has' if len(without) == 1 else 'have'} no local NVMe (instance store) "
                "the GPU catalog knows (components/gpu_catalog.py AWS_INSTANCE_STORE_GB); use machine types with "
                "instance store or remove localStorage"
            )
            continue
        smallest = min(AWS_INSTANCE_STORE_GB[machine] for machine in machines)
        cache = pool.model_cache_gb(settings.cloud)
        if cache > smallest:
            problems.append(
                f"{PROJECT}:gpuPools.{name}.localStorage.modelCacheGb: {cache} GB, more than the {smallest} GB of "
                f"instance store of its smallest machine type"
            )
            continue
        cached = {
            model: catalog[model].local_cache.size_gb
            for model, override in settings.models.items()
            if model in catalog
            and catalog[model].local_cache is not None
            and (override.gpu_type or catalog[model].resources.gpu_type) == pool.gpu_type
        }
        if sum(cached.values()) > cache:
            listed = ", ".join(f"{model} {size} GB" for model, size in sorted(cached.items()))
            problems.append(
                f"{PROJECT}:gpuPools.{name}.localStorage.modelCacheGb: the cached {pool.gpu_type} models ({listed}) "
                f"need {sum(cached.values())} GB, more than the pool's {cache} GB cache"
            )
    return problems


def model_problems(settings: Any, catalog: Mapping[str, CatalogModel]) -> list[str]:
    """What is wrong with the stack's `models` given the catalog, its GPU pools and its tier."""
    problems = []
    addons = settings.platform
    if settings.models and not addons.model_store.enabled:
        problems.append(f"{PROJECT}:models: models are read from the model store; turn platform.modelStore on")
    pool_types = sorted({pool.gpu_type for pool in settings.gpu_pools.values()})
    for name, override in settings.models.items():
        key = f"{PROJECT}:models.{name}"
        model = catalog.get(name)
        if model is None:
            problems.append(f"{key}: not in the model catalog (manifests/models/); models: {', '.join(sorted(catalog))}")
            continue
        minimum = 0 if override.scale_to_zero else model.autoscaling.min_replicas
        minimum = override.min_replicas if override.min_replicas is not None else minimum
        maximum = override.max_replicas or model.autoscaling.max_replicas
        if minimum == 0 and not settings.platform.knative.scale_to_zero:
            problems.append(
                f"{key}: scales to zero, but this environment does not (platform.knative.scaleToZero is false); "
                "set minReplicas to 1 or more"
            )
        if maximum < minimum:
            problems.append(f"{key}.maxReplicas: {maximum} is below minReplicas ({minimum})")
        if override.canary_traffic_percent is not None and model.canary is None:
            problems.append(f"{key}.canaryTrafficPercent: the catalog entry of {name} has no canary")
        if override.gpu_type is not None and not model.resources.gpu:
            problems.append(f"{key}.gpuType: {name} is a CPU model (resources.gpu is 0 in its catalog entry)")
        needed = {"kserve": ("kserve", addons.kserve.enabled), "deployment": ("flagger", addons.flagger.enabled)}
        addon, enabled = needed[model.serving]
        if not enabled:
            problems.append(f"{key}: a `{model.serving}` model needs platform.{addon}, which is off in this stack")
        if model.api == "LLMInferenceService":
            problems += _llm_inference_service_problems(settings, key, name, minimum)
        if model.source is not None and addons.air_gapped:
            problems.append(
                f"{key}: copied from Hugging Face ({model.source.huggingface.repo}, source.huggingface in "
                f"manifests/models/{name}.yaml), but {PROJECT}:platform.airGapped is true and the cluster cannot "
                "reach huggingface.co; serve a model without a source, its files uploaded to the store by hand"
            )
        gpu_type = override.gpu_type or model.resources.gpu_type
        if model.resources.gpu and gpu_type not in pool_types:
            pools = ", ".join(pool_types) or "none"
            problems.append(f"{key}: needs a {gpu_type} GPU pool; GPU types of this stack's pools: {pools}")
        elif model.resources.gpu:
            problems += _slice_problems(settings, key, gpu_type, override.gpu_slice or model.resources.gpu_slice)
            problems += _profile_problems(settings, key, name, model.serving_profiles, gpu_type)
        if override.gpu_slice is not None and not model.resources.gpu:
            problems.append(f"{key}.gpuSlice: {name} is a CPU model (resources.gpu is 0 in its catalog entry)")
        if override.autoscaler == "keda":
            problems += _keda_problems(settings, key, name, model, override, minimum)
    return problems


def keda_enabled(settings: Any) -> bool:
    """KEDA runs where a model of the stack is scaled by it, unless the stack turned it off."""
    wanted = any(override.autoscaler == "keda" for override in settings.models.values())
    return wanted and settings.platform.keda.enabled is not False


def _keda_problems(settings: Any, key: str, name: str, model: CatalogModel, override: Any, minimum: int) -> list[str]:
    """A model scaled by KEDA runs in KServe's Standard mode: never at zero replicas (no activator holds its
    requests), no Knative canary, thresholds from its catalog entry, KEDA and Prometheus in the stack."""
    problems = []
    key = f"{key}.autoscaler"
    if model.serving != "kserve":
        problems.append(f"{key}: keda scales InferenceServices; {name} is a `{model.serving}` model (Flagger's HPA scales it)")
        return problems
    if model.autoscaling.keda is None:
        problems.append(
            f"{key}: keda needs thresholds in the catalog, autoscaling.keda in manifests/models/{name}.yaml "
            "(requestsWaiting, kvCacheUsage or gpuUtilization)"
        )
    if minimum == 0:
        problems.append(
            f"{key}: keda runs the model in KServe's Standard mode, which never scales to zero; set minReplicas to 1 "
            "or more, or keep autoscaler knative"
        )
    if settings.platform.keda.enabled is False:
        problems.append(f"{key}: keda, but {PROJECT}:platform.keda.enabled is false in this stack; turn it on or use knative")
    if not settings.platform.monitoring.enabled:
        problems.append(f"{key}: keda scales on queries to our Prometheus; turn platform.monitoring on")
    if model.canary is not None and override.canary_traffic_percent != 0:
        problems.append(
            f"{key}: {name} has a canary, and KServe's canary traffic split needs Knative; set canaryTrafficPercent "
            "to 0 or keep autoscaler knative"
        )
    return problems


def _llm_inference_service_problems(settings: Any, key: str, name: str, minimum: int) -> list[str]:
    """An LLMInferenceService needs Istio (its Gateway API gateway), KServe (its controller) and cert-manager (the
    controller's webhook certificate), and runs fixed replicas (components/models.py `llm_inference_service`)."""
    addons = settings.platform
    needed = {"istio": addons.istio.enabled, "kserve": addons.kserve.enabled, "certManager": addons.cert_manager.enabled}
    missing = [f"platform.{addon}" for addon, enabled in needed.items() if not enabled]
    problems = []
    if missing:
        problems.append(
            f"{key}: served as an LLMInferenceService (api in manifests/models/{name}.yaml), which needs "
            f"{', '.join(missing)}; turn them on, or serve it as an InferenceService"
        )
    if minimum == 0:
        problems.append(
            f"{key}: an LLMInferenceService runs fixed replicas here (its autoscaling needs the workload-variant-"
            "autoscaler, which the platform does not install) and cannot scale to zero; set minReplicas to 1 or more"
        )
    return problems


def _profile_problems(settings: Any, key: str, name: str, profiles: Mapping[str, Any], gpu_type: str) -> list[str]:
    """An LLM runs only on a GPU type it has a serving profile for, and a sharded one only on pools whose
    machines hold its tensorParallelSize whole GPUs."""
    if not profiles:
        return []
    profile = profiles.get(gpu_type)
    if profile is None:
        return [
            f"{key}: {name} has no serving profile for {gpu_type} (servingProfiles in manifests/models/{name}.yaml); "
            f"GPU types with one: {', '.join(profiles)}"
        ]
    shards = profile.tensor_parallel_size
    pools = {n: pool for n, pool in settings.gpu_pools.items() if pool.gpu_type == gpu_type}
    if profile.data_parallel_size > 1:
        return _spanning_problems(key, name, profile, gpu_type, pools)
    fits = [
        n for n, pool in pools.items() if pool.gpu_count >= shards and not pool.mig_layout and pool.time_slicing_replicas == 1
    ]
    if shards > 1 and not fits:
        described = ", ".join(
            f"{n} ({pool.gpu_count} per machine{', MIG' if pool.mig_layout else ''}"
            f"{', time-sliced' if pool.time_slicing_replicas > 1 else ''})"
            for n, pool in sorted(pools.items())
        )
        return [
            f"{key}: a replica of {name} shards over {shards} {gpu_type} GPUs (tensorParallelSize of its {gpu_type} "
            f"profile), but no {gpu_type} pool has machines with {shards} whole GPUs: {described}; add a pool with "
            f"gpuCount {shards} or more"
        ]
    return []


def _spanning_problems(key: str, name: str, profile: Any, gpu_type: str, pools: Mapping[str, Any]) -> list[str]:
    """A replica of dataParallelSize ranks spans machines: it needs a pool whose machines each hold a whole number
    of its ranks and, together, the replica (components/models.py `offers`)."""
    shards, total = profile.tensor_parallel_size, profile.tensor_parallel_size * profile.data_parallel_size
    fits = [
        n
        for n, pool in pools.items()
        if not pool.mig_layout
        and pool.time_slicing_replicas == 1
        and total > pool.gpu_count
        and pool.gpu_count % shards == 0
        and total % pool.gpu_count == 0
    ]
    if fits:
        return []
    described = ", ".join(f"{n} ({pool.gpu_count} per machine)" for n, pool in sorted(pools.items()))
    return [
        f"{key}: a replica of {name} runs {profile.data_parallel_size} ranks of {shards} {gpu_type} GPUs "
        f"({total} GPUs, dataParallelSize x tensorParallelSize of its {gpu_type} profile) over several machines, but "
        f"no {gpu_type} pool has machines that each hold whole ranks and together the replica: {described}; add a "
        f"pool whose gpuCount is a multiple of {shards} dividing {total} (below {total}), or serve it on one machine "
        "with dataParallelSize 1"
    ]


def _slice_problems(settings: Any, key: str, gpu_type: str, gpu_slice: Optional[str]) -> list[str]:
    """A GPU model needs a pool of its type offering what it asks for: whole GPUs, or its MIG slice."""
    pools = {name: pool for name, pool in settings.gpu_pools.items() if pool.gpu_type == gpu_type}
    if gpu_slice is None:
        if all(pool.mig_layout for pool in pools.values()):
            return [
                f"{key}: needs whole {gpu_type} GPUs, but every {gpu_type} pool is cut by MIG "
                f"({', '.join(sorted(pools))}); set gpuSlice to one of its slices: "
                f"{', '.join(sorted({p for pool in pools.values() for p in pool.mig_layout}))}"
            ]
        return []
    if not any(gpu_slice in pool.mig_layout for pool in pools.values()):
        offered = sorted({f"{p} ({name})" for name, pool in pools.items() for p in pool.mig_layout})
        return [
            f"{key}.gpuSlice: no {gpu_type} pool offers MIG slice {gpu_slice}; slices the pools offer: "
            f"{', '.join(offered) or 'none (no pool has a migLayout)'}"
        ]
    return []


def model_gpu_need(settings: Any, spec_gpu: int, gpu_slice: Optional[str]) -> tuple[str, int]:
    """The GPU resource one replica of a model requests, and how many."""
    if gpu_slice is None or settings.cloud == "gcp":
        return GPU_RESOURCE, spec_gpu
    return f"{MIG_RESOURCE_PREFIX}{gpu_slice}", spec_gpu


def pool_capacity(settings: Any) -> dict[str, int]:
    """GPU resources the stack's pools hold at their maximum size."""
    capacity: dict[str, int] = {}
    for pool in settings.gpu_pools.values():
        nodes = pool.max_size if isinstance(pool, ManagedGpuPool) else pool.node_count
        for resource, count in pool.offered_resources(settings.cloud).items():
            capacity[resource] = capacity.get(resource, 0) + count * nodes
    return capacity


def tenant_problems(settings: Any, catalog: Mapping[str, CatalogModel]) -> list[str]:
    """Tenants against the pools (what quotas may name, and what prod can guarantee) and the models."""
    problems: list[str] = []
    if not settings.tenants:
        problems += [
            f"{PROJECT}:models.{name}.tenant: this stack has no tenants (gpu-platform:tenants); remove it, or "
            "declare the tenant"
            for name, override in settings.models.items()
            if override.tenant is not None
        ]
        return problems
    if not settings.platform.model_store.enabled:
        problems.append(
            f"{PROJECT}:tenants: tenant namespaces are made with the model store's credentials in them; "
            "turn platform.modelStore on"
        )
    capacity = pool_capacity(settings)
    namespaces: dict[str, str] = {}
    guaranteed: dict[str, int] = {}
    for name, tenant in settings.tenants.items():
        key = f"{PROJECT}:tenants.{name}"
        namespace = settings.tenant_namespace(name)
        if namespace in RESERVED_NAMESPACES:
            problems.append(f"{key}.namespace: {namespace!r} belongs to Kubernetes or the platform; choose another")
        elif namespace in namespaces:
            problems.append(f"{key}.namespace: {namespace!r} is also tenant {namespaces[namespace]}'s")
        namespaces[namespace] = name
        for quota_key, gpus in (("quota", tenant.quota.gpus), ("batchQuota", tenant.batch_quota.gpus)):
            for resource in gpus:
                if resource not in capacity:
                    offered = ", ".join(sorted(capacity)) or "none (no GPU pools)"
                    problems.append(
                        f"{key}.{quota_key}.gpus.{resource}: no GPU pool offers it; GPU resources of this stack's "
                        f"pools: {offered}"
                    )
        for resource, count in tenant.quota.gpus.items():
            guaranteed[resource] = guaranteed.get(resource, 0) + count
    if settings.environment == "prod":
        # Guaranteed means the pods fit when every tenant uses its whole quota at once; dev and staging
        # may promise more than they hold.
        for resource, total in sorted(guaranteed.items()):
            if resource in capacity and total > capacity[resource]:
                problems.append(
                    f"{PROJECT}:tenants: in prod the tenants' guaranteed quotas of {resource} add up to {total}, more "
                    f"than the GPU pools hold at their maximum size ({capacity[resource]}); lower the quotas or "
                    "raise the pools' maxSize"
                )

    need: dict[tuple[str, str, str], int] = {}  # (tenant, quota key, resource) -> GPUs at minReplicas
    for name, override in settings.models.items():
        key = f"{PROJECT}:models.{name}"
        if override.tenant is None:
            problems.append(f"{key}.tenant: required, this stack has tenants: {', '.join(settings.tenants)}")
            continue
        if override.tenant not in settings.tenants:
            problems.append(f"{key}.tenant: {override.tenant!r} is not a tenant here; tenants: {', '.join(settings.tenants)}")
            continue
        model = catalog.get(name)
        if model is None or not model.resources.gpu:
            continue
        spec = resolve(model, override)
        resource, count = model_gpu_need(settings, spec.gpu, spec.gpu_slice)
        quota_key = "batchQuota" if override.purpose == "batch" else "quota"
        tenant = settings.tenants[override.tenant]
        quota = (tenant.batch_quota if quota_key == "batchQuota" else tenant.quota).gpus.get(resource, 0)
        if count > quota:
            problems.append(
                f"{key}: one replica needs {count} {resource}, but tenant {override.tenant}'s {quota_key} allows "
                f"{quota}; raise tenants.{override.tenant}.{quota_key}.gpus.{resource}"
            )
            continue
        slot = (override.tenant, quota_key, resource)
        need[slot] = need.get(slot, 0) + count * spec.min_replicas
    for (tenant_name, quota_key, resource), total in sorted(need.items()):
        tenant = settings.tenants[tenant_name]
        quota = (tenant.batch_quota if quota_key == "batchQuota" else tenant.quota).gpus.get(resource, 0)
        if total > quota:
            problems.append(
                f"{PROJECT}:tenants.{tenant_name}.{quota_key}.gpus.{resource}: the tenant's models need {total} at "
                f"their minReplicas, more than its quota ({quota})"
            )
    return problems


def with_defaults(raw: Mapping[str, Any], tier: str, cloud: str, stack: str) -> dict[str, Any]:
    """The stack's keys with cloud and tier defaults filled in underneath (stack > tier > cloud)."""
    model = _STACK_MODELS[cloud]
    merged: dict[str, Any] = {"clusterName": f"gpu-{stack}"}
    for layer in (CLOUD_DEFAULTS[cloud], TIER_DEFAULTS[tier]):
        merged = _deep_merge(merged, _only_fields_of(model, layer))
    if isinstance(model, type) and issubclass(model, _ManagedStack):
        merged["gpuPools"] = copy.deepcopy(dict(DEFAULT_GPU_POOLS[tier]))
    merged = _deep_merge(merged, raw)

    pools = merged.get("gpuPools")
    if isinstance(pools, Mapping):
        pool_model = model.model_fields["gpu_pools"].annotation.__args__[1]  # dict[name, pool model]
        pool_defaults = _only_fields_of(pool_model, GPU_POOL_TIER_DEFAULTS[tier])
        merged["gpuPools"] = {
            name: _deep_merge(_pool_defaults_for(pool_defaults, pool), pool) if isinstance(pool, Mapping) else pool
            for name, pool in pools.items()
        }
    return merged


def _pool_defaults_for(defaults: Mapping[str, Any], pool: Mapping[str, Any]) -> dict[str, Any]:
    """A MIG pool does not time-slice: the tier's timeSlicingReplicas default (4 in dev) stays off it."""
    if pool.get("migLayout"):
        return {**defaults, "timeSlicingReplicas": 1}
    return dict(defaults)


def _only_fields_of(model: type[BaseModel], layer: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a defaults layer that `model` has fields for (nested models recursively)."""
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    kept: dict[str, Any] = {}
    for key, value in layer.items():
        field = fields.get(key)
        if field is None:
            continue
        nested = field.annotation
        if isinstance(value, Mapping) and isinstance(nested, type) and issubclass(nested, BaseModel):
            kept[key] = _only_fields_of(nested, value)
        else:
            kept[key] = copy.deepcopy(value)
    return kept


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if key == "gpuPools":
            merged[key] = value  # a stack's pool map replaces the default pools, see DEFAULT_GPU_POOLS
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError, model: Optional[type[BaseModel]], strip_tag: bool = False) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])[1:] if strip_tag else list(error["loc"])
        if loc and loc[-1] == "[key]":
            loc.pop()  # pydantic marks a bad map key (a pool name) this way; the path names it already
        path = f"{PROJECT}:" + ".".join(str(part) for part in loc) if loc else f"{PROJECT}"
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1]) if model else []
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            problems.append(f"{path}: unknown key{hint}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            problems.append(f"{path}: required, but not set")
        elif isinstance(error["input"], Mapping):
            problems.append(f"{path}: {message}")  # a whole block: the message names the key
        else:
            problems.append(f"{path}: {message} (got {error['input']!r})")
    return problems


def _allowed_keys(model: Optional[type[BaseModel]], loc: list[Any]) -> list[str]:
    """Walk `loc` through the model's fields to list the keys allowed at that place."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            # dict[name, Model] and Optional[Model]: step into the model type
            args = [a for a in getattr(current, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
            current = args[0] if args else None
            if current is not None and (not isinstance(part, str) or part not in _aliases(current)):
                continue  # `part` was a map key (a pool name) or a list index
        if current is None:
            return []
        fields = {f.alias or name: f for name, f in current.model_fields.items()}
        if part not in fields:
            return []
        current = fields[part].annotation
    while current is not None and not (isinstance(current, type) and issubclass(current, BaseModel)):
        args = [a for a in getattr(current, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = args[0] if args else None
    return sorted(_aliases(current)) if current else []


def _aliases(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


# --- cost at runtime and batch work -------------------------------------------------------------------


def cost_monitoring_enabled(settings: Any) -> bool:
    """OpenCost runs where the stack says, else wherever monitoring does (it reads our Prometheus)."""
    chosen = settings.platform.cost_monitoring.enabled
    return settings.platform.monitoring.enabled if chosen is None else chosen


def batch_queue_enabled(settings: Any) -> bool:
    """Kueue runs where the stack says, else where a GPU pool is meant for batch work and the model store makes
    the tenants' namespaces its queues live in."""
    chosen = settings.platform.batch_queue.enabled
    if chosen is not None:
        return chosen
    return settings.platform.model_store.enabled and any(pool.purpose == "batch" for pool in settings.gpu_pools.values())


def runtime_cost_problems(settings: Any) -> list[str]:
    key = f"{PROJECT}:platform.costMonitoring.enabled"
    if settings.platform.cost_monitoring.enabled and not settings.platform.monitoring.enabled:
        return [f"{key}: OpenCost reads the platform's Prometheus; turn platform.monitoring on, or this off"]
    return []


def batch_problems(settings: Any, catalog: Mapping[str, CatalogModel], batch_catalog: Mapping[str, BatchJob]) -> list[str]:
    """The batch queue against the pools, and each listed batch job against the catalogs, tenants and store."""
    problems: list[str] = []
    queue = batch_queue_enabled(settings)
    whole_gpu_pools = [name for name, pool in settings.gpu_pools.items() if not pool.mig_layout]
    if settings.platform.batch_queue.enabled and not settings.platform.model_store.enabled:
        problems.append(
            f"{PROJECT}:platform.batchQueue.enabled: the queues live in the tenants' namespaces, which the model "
            "store makes; turn platform.modelStore on, or this off"
        )
    if settings.platform.batch_queue.enabled and not whole_gpu_pools:
        problems.append(
            f"{PROJECT}:platform.batchQueue.enabled: the batch queue hands out whole GPUs, and this stack has no GPU "
            "pool without a migLayout; add one, or turn this off"
        )
    for name, override in settings.batch_jobs.items():
        key = f"{PROJECT}:batchJobs.{name}"
        job = batch_catalog.get(name)
        if job is None:
            known = ", ".join(sorted(batch_catalog)) or "none"
            problems.append(f"{key}: not in the batch job catalog (manifests/batch/); jobs: {known}")
            continue
        if not queue:
            problems.append(
                f"{key}: batch jobs run through the batch queue, which is off in this stack; set "
                "platform.batchQueue.enabled to true or give a GPU pool `purpose: batch`"
            )
        if not settings.platform.model_store.enabled:
            problems.append(f"{key}: reads its inputs from the model store; turn platform.modelStore on")
        model = catalog.get(job.model)
        if model is None:
            problems.append(f"{key}: its model {job.model!r} (manifests/batch/{name}.yaml) is not in the model catalog")
        elif not model.resources.gpu or "--backend=vllm" not in model.args:
            problems.append(
                f"{key}: its model {job.model} is not served through vLLM on a GPU (manifests/models/{job.model}.yaml "
                "needs resources.gpu and --backend=vllm); `vllm run-batch` runs the job"
            )
        elif model.resources.gpu_slice is not None:
            problems.append(f"{key}: its model {job.model} asks for a MIG slice; batch jobs run on whole GPUs")
        if settings.tenants:
            if override.tenant is None:
                problems.append(f"{key}.tenant: required, this stack has tenants: {', '.join(settings.tenants)}")
            elif override.tenant not in settings.tenants:
                problems.append(
                    f"{key}.tenant: {override.tenant!r} is not a tenant here; tenants: {', '.join(settings.tenants)}"
                )
        elif override.tenant is not None:
            problems.append(f"{key}.tenant: this stack has no tenants (gpu-platform:tenants); remove it")
    return problems
