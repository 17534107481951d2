"""What a rendered stack costs a month, from its resources and the price table manifests/prices.yaml.

The estimate prices what the stack declares, read from the resources themselves (the render's
resources.json, or the resources the policy pack sees under `pulumi preview`), never from a second
reading of the settings, so what is priced is what would be deployed:

- the control plane: each EKS cluster (`aws:eks/cluster:Cluster`, or pulumi-eks's `eks:index:Cluster`
  where the render sees only the component) and each GKE cluster;
- node pools: EKS node groups (`scalingConfig`, `instanceTypes`, `capacityType`, `diskSize`) and GKE
  node pools (`autoscaling`, `nodeConfig.machineType`, `spot`, `guestAccelerators`, `diskSizeGb`,
  `nodeLocations`), each at its minimum and at its maximum size, with its nodes' disks, and on GKE the
  GPUs a general-purpose machine (N1) is billed for separately;
- NAT gateways (and on AWS their public IPv4 addresses), LoadBalancer Services (declared, or a Helm
  release's `service.type: LoadBalancer` value), and the block storage of every volume whose size the
  stack states (PersistentVolumeClaims, StatefulSet and operator `volumeClaimTemplate`s, MinIO pools).

An instance-type list (an EKS spot pool may list several) is priced at its FIRST type: EKS launches
on-demand groups in the listed order ("prioritized" allocation), and the GPU catalog lists the
smallest, cheapest machine first; a spot group may get a larger type when the first has no capacity,
which the spot figure, an estimate anyway, does not follow.

Not priced: traffic (data transfer, NAT and load-balancer data processing), requests, logs and
metrics the clouds bill, volumes a chart creates with sizes the stack does not set, discounts and
credits. A cluster the stack does not create (`cloud: existing`) has no cloud price: its estimate is
"unavailable", with the reason, rather than an invented figure.

This module imports only the standard library, PyYAML and pydantic: the policy pack, whose own
virtualenv has no Pulumi cloud SDKs, imports it for its budget rule (policies/gpu_platform_policies/cost.py).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Mapping, Optional, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

ROOT = Path(__file__).resolve().parents[2]
PRICE_TABLE = ROOT / "manifests" / "prices.yaml"
COST_FILE = "cost.json"
HOURS_PER_MONTH = 730  # 365 days x 24 hours / 12, the month the clouds' own calculators use
MAX_PRICE_TABLE_BYTES = 256 * 1024

EKS_CLUSTER = "aws:eks/cluster:Cluster"
EKS_COMPONENT = "eks:index:Cluster"  # pulumi-eks; the render sees it, the engine also its child cluster
GKE_CLUSTER = "gcp:container/cluster:Cluster"
EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
# Karpenter's GPU pools (components/karpenter.py): a NodePool sized by its limits, its disks in the
# EC2NodeClass it names.
KARPENTER_NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
KARPENTER_NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
AWS_NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
AWS_ELASTIC_IP = "aws:ec2/eip:Eip"
GCP_ROUTER_NAT = "gcp:compute/routerNat:RouterNat"
AWS_PROVIDER = "pulumi:providers:aws"
GCP_PROVIDER = "pulumi:providers:gcp"
EXISTING_CLUSTER = "gpu-platform:cluster:ExistingCluster"
SERVICE = "kubernetes:core/v1:Service"
PERSISTENT_VOLUME_CLAIM = "kubernetes:core/v1:PersistentVolumeClaim"
HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
# A Gateway API Gateway of Istio's class: istiod deploys a Service for it, a LoadBalancer unless the Gateway's
# `networking.istio.io/service-type` annotation says otherwise (components/llm_serving.py).
GATEWAY_API_GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
ISTIO_GATEWAY_CLASS = "istio"
ISTIO_SERVICE_TYPE_ANNOTATION = "networking.istio.io/service-type"
# Provider defaults when a pool leaves a size unset: EKS's root volume (aws_eks_node_group disk_size)
# and GKE's boot disk (node_config disk_size_gb).
EKS_DEFAULT_DISK_GIB = 20
GKE_DEFAULT_DISK_GIB = 100
# A regional GKE pool without nodeLocations runs in its cluster's zones, three by default.
GKE_DEFAULT_REGIONAL_ZONES = 3

UNAVAILABLE = "unavailable"
LIST_PRICES = "list prices"


# --- the price table --------------------------------------------------------------------------


class _Prices(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Price(_Prices):
    price: float = Field(ge=0, description="USD per hour (per GiB-month for storage).")
    source: str = Field(pattern=r"^https://\S+$", description="The public page the price is from.")
    note: Optional[str] = None


class NatPrice(Price):
    # Cloud NAT bills per VM behind the gateway, up to a cap; an AWS NAT gateway per gateway.
    per_node: bool = False
    node_cap: Optional[int] = Field(default=None, ge=1)


class StoragePrice(Price):
    volume_type: str


class MachinePrice(_Prices):
    on_demand: float = Field(gt=0, description="USD per hour, on-demand list price.")
    spot_estimate: float = Field(gt=0, description="USD per hour, a typical spot price: an estimate.")
    gpus_included: bool = False  # GCP accelerator-optimized types: the price includes the attached GPUs
    note: Optional[str] = None

    @model_validator(mode="after")
    def _spot_below_on_demand(self) -> "MachinePrice":
        if self.spot_estimate >= self.on_demand:
            raise ValueError(f"spotEstimate {self.spot_estimate} is not below onDemand {self.on_demand}")
        return self


class MachinePrices(_Prices):
    source: str = Field(pattern=r"^https://\S+$")
    spot_source: str = Field(pattern=r"^https://\S+$")
    types: dict[str, MachinePrice] = Field(min_length=1)


class RegionPrices(_Prices):
    control_plane_hourly: Price
    nat_gateway_hourly: NatPrice
    load_balancer_hourly: Price
    public_ipv4_hourly: Optional[Price] = None
    block_storage_gib_month: StoragePrice
    machines: MachinePrices
    accelerators: Optional[MachinePrices] = None  # GPUs billed apart from their machine (GCP N1 + T4)


class PriceTable(_Prices):
    as_of: date
    currency: Literal["USD"]
    aws: dict[str, RegionPrices] = Field(default_factory=dict)
    gcp: dict[str, RegionPrices] = Field(default_factory=dict)

    def region(self, cloud: str, region: str) -> Optional[RegionPrices]:
        return (self.aws if cloud == "aws" else self.gcp if cloud == "gcp" else {}).get(region)

    def regions(self, cloud: str) -> list[str]:
        return sorted(self.aws if cloud == "aws" else self.gcp if cloud == "gcp" else {})


class PriceTableError(Exception):
    """manifests/prices.yaml is missing or invalid; `problems` has one line per bad field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _problems(file: str, error: ValidationError) -> list[str]:
    lines = []
    for problem in error.errors(include_url=False):
        path = ".".join(str(part) for part in problem["loc"]) or "(file)"
        message = problem["msg"].removeprefix("Value error, ")
        given = "" if isinstance(problem["input"], (dict, list)) else f" (got {problem['input']!r})"
        lines.append(f"{file}: {path}: {'unknown field' if problem['type'] == 'extra_forbidden' else message + given}")
    return lines


@functools.lru_cache(maxsize=4)
def load_prices(path: Path = PRICE_TABLE) -> PriceTable:
    """The price table, validated, or PriceTableError naming the file and every bad field."""
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    try:
        if path.stat().st_size > MAX_PRICE_TABLE_BYTES:
            raise PriceTableError([f"{shown}: larger than {MAX_PRICE_TABLE_BYTES // 1024} KiB"])
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PriceTableError([f"{shown}: cannot be read ({error.strerror})"]) from None
    except yaml.YAMLError as error:
        raise PriceTableError([f"{shown}: not valid YAML: {error}"]) from None
    try:
        return PriceTable.model_validate(document)
    except ValidationError as error:
        raise PriceTableError(_problems(str(shown), error)) from None


# --- the estimate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostItem:
    """One priced thing: `count_min`..`count_max` units at `unit_price_hourly` each."""

    name: str
    kind: str
    unit_price_hourly: float
    count_min: int
    count_max: int
    source: str

    @property
    def monthly_min(self) -> float:
        return round(self.unit_price_hourly * self.count_min * HOURS_PER_MONTH, 2)

    @property
    def monthly_max(self) -> float:
        return round(self.unit_price_hourly * self.count_max * HOURS_PER_MONTH, 2)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "unit_price_hourly": round(self.unit_price_hourly, 6),
            "count_min": self.count_min,
            "count_max": self.count_max,
            "monthly_min": self.monthly_min,
            "monthly_max": self.monthly_max,
            "source": self.source,
        }


@dataclass(frozen=True)
class Unpriced:
    name: str
    reason: str


@dataclass(frozen=True)
class Estimate:
    items: tuple[CostItem, ...] = ()
    unpriced: tuple[Unpriced, ...] = ()
    cloud: Optional[str] = None
    region: Optional[str] = None
    prices_as_of: Optional[str] = None
    unavailable: Optional[str] = None  # why there is no estimate at all

    @property
    def monthly_min(self) -> Optional[float]:
        return None if self.unavailable else round(sum(item.monthly_min for item in self.items), 2)

    @property
    def monthly_max(self) -> Optional[float]:
        return None if self.unavailable else round(sum(item.monthly_max for item in self.items), 2)

    def as_json(self) -> dict[str, Any]:
        """cost.json: currency, monthly min/max, items (issue 16's shape), and where the prices come from."""
        document: dict[str, Any] = {
            "currency": "USD",
            "estimate": UNAVAILABLE if self.unavailable else LIST_PRICES,
            "monthly": {"min": self.monthly_min, "max": self.monthly_max},
            "hours_per_month": HOURS_PER_MONTH,
            "items": [item.as_json() for item in self.items],
        }
        if self.unavailable:
            document["reason"] = self.unavailable
        else:
            document.update(cloud=self.cloud, region=self.region, prices_as_of=self.prices_as_of)
            document["unpriced"] = [{"name": u.name, "reason": u.reason} for u in self.unpriced]
        return document


def _int(value: Any) -> Optional[int]:
    """A whole number, or None. The engine sends every number as a float (protobuf Struct values are
    doubles): 2.0 is 2; an unknown value (a preview placeholder) or 2.5 is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _json_mapping(value: Any) -> Mapping[str, Any]:
    """Provider inputs arrive JSON-encoded (`"defaultTags": "{...}"`) in the render and plain elsewhere."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return _mapping(value)


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS = {
    None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def gib(quantity: Any) -> Optional[float]:
    """A Kubernetes storage quantity ("20Gi", "1Ti", "500G") in GiB, or None when it is not one."""
    match = _QUANTITY.match(quantity) if isinstance(quantity, str) else None
    if match is None:
        return None
    return float(match.group(1)) * _FACTORS[match.group(2)] / 2**30


@dataclass(frozen=True)
class _Resource:
    type: str
    name: str
    inputs: Mapping[str, Any]


def _resources(records: Iterable[Mapping[str, Any]]) -> list[_Resource]:
    """resources.json records (or the pack's resources, in the same shape) as (type, name, inputs)."""
    return [
        _Resource(str(r.get("type")), str(r.get("name")), _mapping(r.get("inputs")))
        for r in records
        if isinstance(r, Mapping)
    ]


def _cloud_and_region(resources: Sequence[_Resource]) -> tuple[Optional[str], Optional[str]]:
    types = {r.type for r in resources}
    if types & {EKS_CLUSTER, EKS_COMPONENT, EKS_NODE_GROUP}:
        cloud = "aws"
    elif types & {GKE_CLUSTER, GKE_NODE_POOL}:
        cloud = "gcp"
    else:
        return None, None
    provider = AWS_PROVIDER if cloud == "aws" else GCP_PROVIDER
    region = next((r.inputs["region"] for r in resources if r.type == provider and r.inputs.get("region")), None)
    if region is None and cloud == "gcp":  # a pool's location is its region, or a zone of it
        location = next((r.inputs.get("location") for r in resources if r.type == GKE_NODE_POOL), None)
        region = re.sub(r"-[a-z]$", "", location) if isinstance(location, str) else None
    return cloud, region if isinstance(region, str) else None


@dataclass(frozen=True)
class _Pool:
    resource: _Resource
    label: str
    machine: str
    machine_count: int  # instance types listed (an EKS group may list several)
    spot: bool
    nodes_min: int
    nodes_max: int
    disk_gib: int
    accelerators: tuple[tuple[str, int], ...] = ()  # (GPU type, per node) attached to the machine


def _eks_pool(resource: _Resource) -> _Pool | str:
    inputs = resource.inputs
    machines = [m for m in inputs.get("instanceTypes") or [] if isinstance(m, str)]
    scaling = _mapping(inputs.get("scalingConfig"))
    low, high = _int(scaling.get("minSize")), _int(scaling.get("maxSize"))
    if not machines:
        return "no instance type known (instanceTypes unset, or a launch template's)"
    if low is None or high is None:
        return "scalingConfig.minSize/maxSize unknown"
    return _Pool(
        resource=resource,
        label=str(inputs.get("nodeGroupName") or resource.name),
        machine=machines[0],
        machine_count=len(machines),
        spot=inputs.get("capacityType") == "SPOT",
        nodes_min=low,
        nodes_max=high,
        disk_gib=_int(inputs.get("diskSize")) or EKS_DEFAULT_DISK_GIB,
    )


def _karpenter_pool(resource: _Resource, node_classes: Mapping[str, _Resource]) -> _Pool | str:
    """A NodePool at 0 nodes (Karpenter keeps none warm: the models' minReplicas do) and at as many nodes
    of its first instance type as its `nvidia.com/gpu` limit allows. A pool that may fall back from spot
    to on-demand is priced on-demand, the dearer side."""
    spec = _mapping(resource.inputs.get("spec"))
    node_spec = _mapping(_mapping(spec.get("template")).get("spec"))
    requirements = {
        str(r.get("key")): [v for v in r.get("values") or [] if isinstance(v, str)]
        for r in node_spec.get("requirements") or []
        if isinstance(r, Mapping) and r.get("operator") == "In"
    }
    machines = requirements.get(INSTANCE_TYPE_LABEL) or []
    if not machines:
        return f"no {INSTANCE_TYPE_LABEL} requirement: the instance type Karpenter picks is unknown"
    from components.gpu_catalog import gpus_per_machine  # plain data, no Pulumi: importable in the pack too

    per_node = gpus_per_machine("aws", machines[0])
    # A Kubernetes quantity: "8" in the manifest, 8 or 8.0 through the engine.
    raw_limit = _mapping(spec.get("limits")).get("nvidia.com/gpu")
    limit = int(raw_limit) if isinstance(raw_limit, str) and raw_limit.isdigit() else _int(raw_limit)
    if per_node is None or limit is None:
        return f"the nvidia.com/gpu limit or the GPUs of {machines[0]} are unknown"
    node_class = node_classes.get(str(_mapping(node_spec.get("nodeClassRef")).get("name")))
    disks = _mapping(node_class.inputs.get("spec")).get("blockDeviceMappings") if node_class else None
    first = _mapping(_mapping((disks or [{}])[0]).get("ebs")) if isinstance(disks, list) else {}
    size = gib(first.get("volumeSize")) if first else None
    name = _mapping(resource.inputs.get("metadata")).get("name") or resource.name
    return _Pool(
        resource=resource,
        label=f"NodePool {name}",
        machine=machines[0],
        machine_count=len(machines),
        spot=requirements.get(CAPACITY_TYPE_LABEL) == ["spot"],
        nodes_min=0,
        nodes_max=limit // per_node,
        disk_gib=int(size) if size else EKS_DEFAULT_DISK_GIB,
    )


def _gke_zones(inputs: Mapping[str, Any]) -> int:
    locations = inputs.get("nodeLocations")
    if isinstance(locations, list) and locations:
        return len(locations)
    location = inputs.get("location")
    zonal = isinstance(location, str) and re.search(r"-[a-z]$", location) is not None
    return 1 if zonal else GKE_DEFAULT_REGIONAL_ZONES


def _gke_pool(resource: _Resource) -> _Pool | str:
    inputs = resource.inputs
    config = _mapping(inputs.get("nodeConfig"))
    machine = config.get("machineType")
    if not isinstance(machine, str):
        return "nodeConfig.machineType unknown"
    zones = _gke_zones(inputs)
    scaling = _mapping(inputs.get("autoscaling"))
    if "totalMinNodeCount" in scaling or "totalMaxNodeCount" in scaling:
        # Whole-pool bounds; GKE's default minimum is 0.
        low, high = _int(scaling.get("totalMinNodeCount", 0)), _int(scaling.get("totalMaxNodeCount"))
    elif scaling:  # per-zone bounds: GKE applies them in every zone of the pool
        low, high = _int(scaling.get("minNodeCount", 0)), _int(scaling.get("maxNodeCount"))
        low, high = (low * zones if low is not None else None), (high * zones if high is not None else None)
    else:  # no autoscaling: nodeCount (or initialNodeCount) nodes in each zone
        fixed = _int(inputs.get("nodeCount", inputs.get("initialNodeCount")))
        low = high = fixed * zones if fixed is not None else None
    if low is None or high is None:
        return "node counts unknown (autoscaling or nodeCount not set to numbers)"
    accelerators = tuple(
        (str(a.get("type")), count)
        for a in config.get("guestAccelerators") or []
        if isinstance(a, Mapping) and (count := _int(a.get("count")))
    )
    return _Pool(
        resource=resource,
        label=str(inputs.get("name") or resource.name),
        machine=machine,
        machine_count=1,
        spot=bool(config.get("spot") or config.get("preemptible")),
        nodes_min=low,
        nodes_max=high,
        disk_gib=_int(config.get("diskSizeGb")) or GKE_DEFAULT_DISK_GIB,
        accelerators=accelerators,
    )


def _pool_items(pool: _Pool, prices: RegionPrices) -> list[CostItem] | str:
    machine = prices.machines.types.get(pool.machine)
    if machine is None:
        return f"machine type {pool.machine} has no price for this region in manifests/prices.yaml"
    alternatives = f", first of {pool.machine_count} types" if pool.machine_count > 1 else ""
    capacity = "spot" if pool.spot else "on-demand"
    items = [
        CostItem(
            name=f"{pool.label}: {pool.machine} ({capacity}{alternatives})",
            kind="spot nodes (estimate)" if pool.spot else "nodes",
            unit_price_hourly=machine.spot_estimate if pool.spot else machine.on_demand,
            count_min=pool.nodes_min,
            count_max=pool.nodes_max,
            source=prices.machines.spot_source if pool.spot else prices.machines.source,
        )
    ]
    if not machine.gpus_included:
        for gpu, per_node in pool.accelerators:
            accelerator = prices.accelerators.types.get(gpu) if prices.accelerators else None
            if accelerator is None or prices.accelerators is None:
                return f"GPU {gpu} (attached to {pool.machine}) has no price for this region in manifests/prices.yaml"
            items.append(
                CostItem(
                    name=f"{pool.label}: {per_node} x {gpu} per node ({capacity})",
                    kind="spot GPUs (estimate)" if pool.spot else "GPUs",
                    unit_price_hourly=accelerator.spot_estimate if pool.spot else accelerator.on_demand,
                    count_min=pool.nodes_min * per_node,
                    count_max=pool.nodes_max * per_node,
                    source=prices.accelerators.spot_source if pool.spot else prices.accelerators.source,
                )
            )
    storage = prices.block_storage_gib_month
    items.append(
        CostItem(
            name=f"{pool.label}: node disk, {pool.disk_gib} GiB {storage.volume_type} each",
            kind="node disks",
            unit_price_hourly=pool.disk_gib * storage.price / HOURS_PER_MONTH,
            count_min=pool.nodes_min,
            count_max=pool.nodes_max,
            source=storage.source,
        )
    )
    return items


def _copies(holder: Mapping[str, Any], ancestors: Sequence[Mapping[str, Any]]) -> int:
    """How many volumes one claim template stands for: a MinIO pool's servers x volumesPerServer, else
    the `replicas` of the nearest enclosing spec (a StatefulSet's, a Prometheus's), else one."""
    servers, per_server = _int(holder.get("servers")), _int(holder.get("volumesPerServer"))
    if servers is not None and per_server is not None:
        return servers * per_server
    for mapping in (holder, *reversed(ancestors)):
        replicas = _int(mapping.get("replicas"))
        if replicas is not None:
            return replicas
    return 1


def _claim_size(template: Any) -> Optional[float]:
    return gib(_mapping(_mapping(_mapping(_mapping(template).get("spec")).get("resources")).get("requests")).get("storage"))


def _volume_claims(
    value: Any, path: str = "", ancestors: tuple[Mapping[str, Any], ...] = ()
) -> Iterator[tuple[str, float, int]]:
    """(path, GiB, copies) of every sized claim template in a resource's inputs or a release's values."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if key == "volumeClaimTemplate" and (size := _claim_size(item)):
                yield here, size, _copies(value, ancestors)
            elif key == "volumeClaimTemplates" and isinstance(item, list):
                for index, template in enumerate(item):
                    if size := _claim_size(template):
                        name = _mapping(_mapping(template).get("metadata")).get("name") or index
                        yield f"{here}[{name}]", size, _copies(value, ancestors)
            else:
                yield from _volume_claims(item, here, (*ancestors, value))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _volume_claims(item, f"{path}[{index}]", ancestors)


def _load_balancers(resource: _Resource) -> list[str]:
    """Where `resource` asks for a cloud load balancer: a LoadBalancer Service, a Helm value
    `service.type: LoadBalancer` (the Istio gateway chart's, for one), or an Istio Gateway API Gateway."""
    if resource.type == SERVICE:
        return ["spec.type"] if _mapping(resource.inputs.get("spec")).get("type") == "LoadBalancer" else []
    if resource.type == GATEWAY_API_GATEWAY:
        annotations = _mapping(_mapping(resource.inputs.get("metadata")).get("annotations"))
        istio = _mapping(resource.inputs.get("spec")).get("gatewayClassName") == ISTIO_GATEWAY_CLASS
        balanced = annotations.get(ISTIO_SERVICE_TYPE_ANNOTATION, "LoadBalancer") == "LoadBalancer"
        return ["spec.gatewayClassName istio"] if istio and balanced else []
    if resource.type not in HELM_TYPES:
        return []
    found = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                here = f"{path}.{key}"
                if key == "service" and _mapping(item).get("type") == "LoadBalancer":
                    found.append(f"{here}.type")
                else:
                    walk(item, here)

    walk(resource.inputs.get("values"), "values")
    return found


def _fixed_items(resources: Sequence[_Resource], prices: RegionPrices, cloud: str, nodes: tuple[int, int]) -> list[CostItem]:
    items: list[CostItem] = []
    clusters = [r for r in resources if r.type in (EKS_CLUSTER, GKE_CLUSTER)]
    clusters = clusters or [r for r in resources if r.type == EKS_COMPONENT]  # the render's view of pulumi-eks
    for cluster in clusters:
        plane = prices.control_plane_hourly
        label = "EKS control plane" if cloud == "aws" else "GKE cluster management fee"
        items.append(CostItem(f"{cluster.inputs.get('name') or cluster.name}: {label}", "control plane", plane.price, 1, 1, plane.source))

    nat = prices.nat_gateway_hourly
    gateways = [r for r in resources if r.type in (AWS_NAT_GATEWAY, GCP_ROUTER_NAT)]
    for gateway in gateways:
        if nat.per_node:  # Cloud NAT: per VM behind it, up to the cap
            cap = nat.node_cap or max(nodes)
            count_min, count_max = min(nodes[0], cap), min(nodes[1], cap)
            name = f"{gateway.name}: Cloud NAT, per node (up to {cap})"
        else:
            count_min = count_max = 1
            name = f"{gateway.name}: NAT gateway"
        items.append(CostItem(name, "NAT gateway", nat.price, count_min, count_max, nat.source))
    addresses = [r for r in resources if r.type == AWS_ELASTIC_IP]
    if addresses and prices.public_ipv4_hourly is not None:
        ip = prices.public_ipv4_hourly
        items.append(CostItem(f"public IPv4 addresses ({len(addresses)} Elastic IPs)", "public IPv4", ip.price, len(addresses), len(addresses), ip.source))

    balancer = prices.load_balancer_hourly
    for resource in resources:
        for path in _load_balancers(resource):
            items.append(CostItem(f"{resource.name}: load balancer ({path})", "load balancer", balancer.price, 1, 1, balancer.source))

    storage = prices.block_storage_gib_month
    for resource in resources:
        if not resource.type.startswith("kubernetes:"):
            continue
        claims = list(_volume_claims(resource.inputs))
        if resource.type == PERSISTENT_VOLUME_CLAIM and (size := _claim_size(resource.inputs)):
            claims.append(("spec", size, 1))
        for path, size, copies in claims:
            where = path.removeprefix("values.").removesuffix(".volumeClaimTemplate")
            items.append(
                CostItem(
                    f"{resource.name}: {where} volumes, {copies} x {size:g} GiB {storage.volume_type}",
                    "block storage",
                    size * storage.price / HOURS_PER_MONTH,
                    copies,
                    copies,
                    storage.source,
                )
            )
    return items


def estimate(records: Iterable[Mapping[str, Any]], prices: Optional[PriceTable] = None) -> Estimate:
    """The monthly cost of `records` (resources.json entries: type, name, inputs) at list prices."""
    resources = _resources(records)
    cloud, region = _cloud_and_region(resources)
    if cloud is None:
        if any(r.type == EXISTING_CLUSTER for r in resources):
            why = (
                "the stack deploys onto an existing cluster (cloud: existing): its nodes, disks and network are "
                "not created by this stack, so there is no cloud price to give"
            )
        else:
            why = "no EKS or GKE cluster or node pool among the resources, so no cloud to price"
        return Estimate(unavailable=why)
    table = prices or load_prices()
    if region is None:
        return Estimate(cloud=cloud, unavailable=f"the {cloud.upper()} region is unknown (no provider region)")
    regional = table.region(cloud, region)
    if regional is None:
        return Estimate(
            cloud=cloud,
            region=region,
            unavailable=f"manifests/prices.yaml has no {cloud} prices for {region} (it has: "
            f"{', '.join(table.regions(cloud)) or 'none'}); add the region with its list prices",
        )

    pool_items: list[CostItem] = []
    unpriced: list[Unpriced] = []
    nodes = [0, 0]
    node_classes = {
        str(_mapping(r.inputs.get("metadata")).get("name")): r for r in resources if r.type == KARPENTER_NODE_CLASS
    }
    for resource in resources:
        if resource.type == KARPENTER_NODE_POOL:
            pool: _Pool | str = _karpenter_pool(resource, node_classes)
        elif resource.type in (EKS_NODE_GROUP, GKE_NODE_POOL):
            pool = _eks_pool(resource) if resource.type == EKS_NODE_GROUP else _gke_pool(resource)
        else:
            continue
        priced = _pool_items(pool, regional) if isinstance(pool, _Pool) else pool
        if isinstance(priced, str):
            unpriced.append(Unpriced(resource.name, priced))
            continue
        assert isinstance(pool, _Pool)
        nodes[0] += pool.nodes_min
        nodes[1] += pool.nodes_max
        pool_items += priced
    items = _fixed_items(resources, regional, cloud, (nodes[0], nodes[1]))
    control_planes = [i for i in items if i.kind == "control plane"]
    rest = [i for i in items if i.kind != "control plane"]
    return Estimate(
        items=tuple(control_planes + pool_items + rest),
        unpriced=tuple(unpriced),
        cloud=cloud,
        region=region,
        prices_as_of=table.as_of.isoformat(),
    )


# --- reading and showing it ---------------------------------------------------------------------


def money(value: float) -> str:
    return f"${value:,.2f}"


def signed_money(value: float) -> str:
    return f"{'+' if value >= 0 else '-'}${abs(value):,.2f}"


def read_cost(render_dir: Path) -> Optional[dict[str, Any]]:
    """A render folder's cost.json, or None when its render predates it (or it is unreadable)."""
    try:
        document = json.loads((Path(render_dir) / COST_FILE).read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def totals(document: Mapping[str, Any]) -> Optional[tuple[float, float]]:
    """(min, max) monthly of a cost.json document, or None when it has no estimate."""
    monthly = _mapping(document.get("monthly"))
    low, high = monthly.get("min"), monthly.get("max")
    if document.get("estimate") == UNAVAILABLE or not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return None
    return float(low), float(high)


def summary_lines(document: Mapping[str, Any]) -> list[str]:
    """The render summary's cost section: both totals, then the items, then anything not priced."""
    span = totals(document)
    if span is None:
        return ["Monthly cost: not estimated: " + str(document.get("reason") or "no estimate")]
    lines = [
        f"Monthly cost ({document.get('currency', 'USD')}, {document.get('cloud')} {document.get('region')} list "
        f"prices of {document.get('prices_as_of')}, {HOURS_PER_MONTH} h; {COST_FILE}): "
        f"min {money(span[0])} (every pool at its minimum size), max {money(span[1])} (every pool at its maximum)"
    ]
    rows = [
        (
            item["name"],
            item["kind"],
            f"{item['unit_price_hourly']:.4f}",
            f"{item['count_min']}-{item['count_max']}" if item["count_min"] != item["count_max"] else str(item["count_min"]),
            money(item["monthly_min"]),
            money(item["monthly_max"]),
        )
        for item in document.get("items") or []
    ]
    headers = ("Item", "Kind", "$/h each", "Count", "Monthly min", "Monthly max")
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    for line in (headers, *rows):
        lines.append(("    " + "  ".join(f"{cell:<{width}}" for cell, width in zip(line, widths))).rstrip())
    for missing in document.get("unpriced") or []:
        lines.append(f"    NOT PRICED: {missing['name']}: {missing['reason']}")
    return lines


@dataclass(frozen=True)
class CostDiff:
    """Both sides' monthly (min, max), None where a side has no estimate, and each side's note."""

    old: Optional[tuple[float, float]]
    new: Optional[tuple[float, float]]
    notes: tuple[str, ...] = ()

    @property
    def delta(self) -> Optional[tuple[float, float]]:
        if self.old is None or self.new is None:
            return None
        return round(self.new[0] - self.old[0], 2), round(self.new[1] - self.old[1], 2)

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(what, before, after, delta) for `min` and `max`."""
        rows = []
        for index, label in ((0, "min (every pool at its minimum size)"), (1, "max (every pool at its maximum)")):
            before = money(self.old[index]) if self.old else "not estimated"
            after = money(self.new[index]) if self.new else "not estimated"
            delta = signed_money(self.delta[index]) if self.delta else "-"
            rows.append((label, before, after, delta))
        return rows

    def text_lines(self) -> list[str]:
        if self.old is None and self.new is None:
            return [f"Monthly cost: not estimated on either side{self._notes_suffix()}"]
        parts = [f"{what.split(' ')[0]} {before} -> {after} ({delta})" for what, before, after, delta in self.rows()]
        return [f"Monthly cost (USD, list prices): {', '.join(parts)}{self._notes_suffix()}"]

    def markdown_lines(self) -> list[str]:
        if self.old is None and self.new is None:
            return [f"Monthly cost: not estimated{self._notes_suffix()}"]
        lines = ["| Monthly cost (USD, list prices) | Before | After | Delta |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {what} | {before} | {after} | **{delta}** |" for what, before, after, delta in self.rows()]
        return lines + ([""] + [f"_{note}_" for note in self.notes] if self.notes else [])

    def _notes_suffix(self) -> str:
        return f" ({'; '.join(self.notes)})" if self.notes else ""


def _side_cost(render_dir: Path, side: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """A side's cost.json; for a render from before cost.json, the estimate of its resources.json at
    this checkout's prices (and a note saying so)."""
    document = read_cost(render_dir)
    if document is not None:
        return document, None
    try:
        records = json.loads((Path(render_dir) / "resources.json").read_text())
        document = estimate(records).as_json()
    except (OSError, ValueError, PriceTableError):
        return None, f"the {side} side has no {COST_FILE} and could not be priced"
    return document, f"the {side} side's render predates {COST_FILE}: its resources priced with this checkout's table"


def compare_costs(old_dir: Path, new_dir: Path) -> CostDiff:
    old, old_note = _side_cost(old_dir, "old")
    new, new_note = _side_cost(new_dir, "new")
    old_totals, new_totals = (totals(old) if old else None), (totals(new) if new else None)
    if old_totals is None and new_totals is None:  # an existing cluster, say: why, once
        reason = (new or {}).get("reason") or (old or {}).get("reason") or new_note or old_note
        return CostDiff(None, None, (str(reason),) if reason else ())
    notes = [note for note in (old_note, new_note) if note]
    return CostDiff(old_totals, new_totals, tuple(notes))
