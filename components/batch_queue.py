"""Batch work, queued: Kueue (pinned in components/charts.py) with one ResourceFlavor per GPU pool, a
ClusterQueue per tenant in one cohort, and a LocalQueue in each tenant's namespace.

- **Flavors.** One ResourceFlavor per GPU pool of whole GPUs, named after the pool: its `nodeLabels` are the
  pool's labels and its `tolerations` tolerate the pool's taints (GPU, and spot where the pool may run on
  spot), so Kueue adds both to a Job's pods when it admits them to that flavor (Kueue docs, "Resource
  Flavor"). MIG pools are left out: their slices are resources of their own, not `nvidia.com/gpu`.
- **Spot first.** Each ClusterQueue lists the spot flavors before the on-demand ones; Kueue tries flavors in
  that order (Kueue docs, "Cluster Queue", flavorFungibility), so batch work lands on spot capacity while the
  queue's spot quota lasts and on on-demand GPUs only after.
- **Quotas.** A tenant's nominal GPU quota is its `batchQuota` (infra/program/settings.py), spread over the
  flavors in that order, each up to what its pool holds at its maximum size; a stack without tenants has one
  queue whose quota is every GPU of the pools. CPU and memory follow the GPUs (CPU_PER_GPU, MEMORY_PER_GPU_GI
  per GPU): Kueue only admits a workload whose every resource the queue covers, and the GPUs are what is scarce.
- **Borrowing, and the ResourceQuotas.** Every ClusterQueue is in the cohort COHORT and may borrow quota the
  others leave idle, up to a `borrowingLimit` that keeps Kueue within the namespace's ResourceQuotas
  (components/tenancy.py): batch pods (PriorityClass `batch`) count against the ResourceQuota `batch` where a
  tenant has a batch quota, else against the total quota `tenant`. A workload Kueue admits beyond those would
  be unsuspended and then have every pod refused, holding its quota for nothing. So a tenant with a batch
  quota borrows nothing (its nominal quota is its whole ResourceQuota); a tenant without one has no nominal
  quota and borrows up to its guaranteed GPUs, when they are idle both in its namespace and in the cohort.
- **Preemption.** A queue reclaims quota it lent (reclaimWithinCohort: Any) and, within itself, preempts
  lower-priority workloads. The kube-scheduler does the rest: batch pods never preempt (PriorityClass
  `batch`, components/priorities.py) and serving pods evict them.
- **Only Jobs, only in tenant namespaces.** The controller manages `batch/job` alone (the chart's default
  also takes over pods, Deployments and StatefulSets with a queue label), and only in namespaces labelled
  `gpu-platform/tenant` (`managedJobsNamespaceSelector`, which the chart also makes the namespaceSelector of
  its Job webhook, templates/webhook/manifests.yaml): the charts' own Jobs (cert-manager's, the monitoring
  release's hooks, the GPU Operator's) never pass Kueue's webhook, whose failurePolicy is Fail. Within a
  tenant namespace a Job is queued only when it names a LocalQueue in the label
  `kueue.x-k8s.io/queue-name` (manageJobsWithoutQueueName stays false), so model import Jobs run as before
  (they wait for the Kueue release, infra/program/models.py, so its webhook answers when they are created).
- **Metrics.** `enablePrometheus` renders the chart's ServiceMonitor for the controller's HTTPS metrics port
  (templates/prometheus/monitor.yaml); our Prometheus reads it with its service account token, which
  kube-prometheus-stack's ClusterRole allows on /metrics.

The custom resources are kueue.x-k8s.io/v1beta2, the storage version of the CRDs in the chart
(../shared/upstream/kueue/v0.19.2/chart/kueue/templates/crd/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi

from components.charts import CHART_PINS
from components.custom_resource import custom_resource
from components.helm import helm_release
from components.node_pools import GPU_RESOURCE
from components.tenancy import TENANT_LABEL
from components.pod_security import RESTRICTED, labelled_namespace
from components.registry import ImageMirror

PIN = CHART_PINS["kueue"]
RELEASE = "kueue"
API_VERSION = "kueue.x-k8s.io/v1beta2"
COHORT = "batch"
LOCAL_QUEUE = "batch"
QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"
# The released image; the chart's default is the staging registry's moving `release-0.19` tag.
IMAGE_REPOSITORY = "registry.k8s.io/kueue/kueue"
IMAGE_TAG = "v0.19.2"
CPU_PER_GPU = 8
MEMORY_PER_GPU_GI = 32
# Controller replicas per tier: two in prod with leader election (on in the chart's manager config) and a
# PodDisruptionBudget, so a node drain never stops admission.
REPLICAS: Mapping[str, int] = {"dev": 1, "staging": 1, "prod": 2}
MANAGER_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "500m", "memory": "512Mi"},
    "limits": {"cpu": "2", "memory": "1Gi"},
}

# The chart's controller_manager_config.yaml (values.yaml managerConfig), with batch/job as the only
# integration, in tenant namespaces only (TENANT_LABEL, components/tenancy.py), and the per-queue quota and usage metrics on (enableClusterQueueResources: the batch queue
# dashboard's kueue_cluster_queue_resource_usage and kueue_cluster_queue_nominal_quota). Kueue's
# Configuration v1beta2 as the chart ships it.
MANAGER_CONFIG = f"""\
apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
health:
  healthProbeBindAddress: :8081
metrics:
  bindAddress: :8443
  enableClusterQueueResources: true
webhook:
  port: 9443
leaderElection:
  leaderElect: true
  resourceName: c1f6bfd2.kueue.x-k8s.io
controller:
  groupKindConcurrency:
    Job.batch: 5
    Workload.kueue.x-k8s.io: 10
    LocalQueue.kueue.x-k8s.io: 5
    ClusterQueue.kueue.x-k8s.io: 5
    ResourceFlavor.kueue.x-k8s.io: 1
clientConnection:
  qps: 300
  burst: 500
integrations:
  frameworks:
  - "batch/job"
managedJobsNamespaceSelector:
  matchExpressions:
  - key: {TENANT_LABEL}
    operator: Exists
"""


@dataclass(frozen=True)
class BatchFlavor:
    name: str  # the GPU pool's name
    node_labels: Mapping[str, str]
    tolerations: Sequence[Mapping[str, str]]
    spot: bool
    gpus: int  # nvidia.com/gpu the pool holds at its maximum size


@dataclass(frozen=True)
class BatchQueueSpec:
    tenant: str
    namespace: str
    gpus: int  # nominal GPU quota, over every flavor
    borrow_gpus: int  # most GPUs it may borrow from the cohort, per flavor

    @property
    def cluster_queue(self) -> str:
        return f"batch-{self.tenant}"


@dataclass(frozen=True)
class BatchQueueArgs:
    environment: str
    system_node_selector: Mapping[str, str]
    flavors: Sequence[BatchFlavor]
    queues: Sequence[BatchQueueSpec]
    service_monitor: bool = True
    monitoring_namespace: str = CHART_PINS["kube-prometheus-stack"].namespace
    # The monitoring release (the ServiceMonitor CRD); the tenant namespaces the LocalQueues live in.
    monitoring: Sequence[pulumi.Resource] = field(default_factory=tuple)
    namespaces: Mapping[str, pulumi.Resource] = field(default_factory=dict)
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


def ordered_flavors(flavors: Sequence[BatchFlavor]) -> list[BatchFlavor]:
    """Spot pools first, then on-demand, each group in the stack's order."""
    return [f for f in flavors if f.spot] + [f for f in flavors if not f.spot]


def nominal_gpus(queue: BatchQueueSpec, flavors: Sequence[BatchFlavor]) -> dict[str, int]:
    """The queue's GPUs per flavor: filled in flavor order, each flavor up to its pool's capacity."""
    left = queue.gpus
    quota: dict[str, int] = {}
    for flavor in ordered_flavors(flavors):
        quota[flavor.name] = min(left, flavor.gpus)
        left -= quota[flavor.name]
    return quota


def kueue_values(args: BatchQueueArgs) -> dict[str, Any]:
    if args.environment not in REPLICAS:
        raise ValueError(f"environment {args.environment!r} is not one of {', '.join(REPLICAS)}")
    replicas = REPLICAS[args.environment]
    return {
        "enablePrometheus": args.service_monitor,
        "metrics": {"prometheusNamespace": args.monitoring_namespace},
        "controllerManager": {
            "replicas": replicas,
            "manager": {
                "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "IfNotPresent"},
                "resources": {k: dict(v) for k, v in MANAGER_RESOURCES.items()},
            },
            "nodeSelector": dict(args.system_node_selector),
            "podDisruptionBudget": {"enabled": replicas > 1, "minAvailable": 1},
        },
        "managerConfig": {"controllerManagerConfigYaml": MANAGER_CONFIG},
    }


def resource_flavor(flavor: BatchFlavor) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceFlavor",
        "metadata": {"name": flavor.name, "labels": {"app.kubernetes.io/part-of": "gpu-platform"}},
        "spec": {"nodeLabels": dict(flavor.node_labels), "tolerations": [dict(t) for t in flavor.tolerations]},
    }


def _quota(name: str, nominal: Any, borrow: Optional[Any]) -> dict[str, Any]:
    entry = {"name": name, "nominalQuota": nominal}
    if borrow is not None:
        entry["borrowingLimit"] = borrow
    return entry


def cluster_queue(queue: BatchQueueSpec, flavors: Sequence[BatchFlavor]) -> dict[str, Any]:
    nominal = nominal_gpus(queue, flavors)
    flavor_quotas = []
    for flavor in ordered_flavors(flavors):
        gpus, borrow = nominal[flavor.name], queue.borrow_gpus
        flavor_quotas.append(
            {
                "name": flavor.name,
                "resources": [
                    _quota("cpu", gpus * CPU_PER_GPU, borrow * CPU_PER_GPU),
                    _quota("memory", f"{gpus * MEMORY_PER_GPU_GI}Gi", f"{borrow * MEMORY_PER_GPU_GI}Gi"),
                    _quota(GPU_RESOURCE, gpus, borrow),
                ],
            }
        )
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterQueue",
        "metadata": {
            "name": queue.cluster_queue,
            "labels": {"app.kubernetes.io/part-of": "gpu-platform", "gpu-platform/tenant": queue.tenant},
        },
        "spec": {
            "cohortName": COHORT,
            # Only the tenant's own namespace may submit to its queue.
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": queue.namespace}},
            "queueingStrategy": "BestEffortFIFO",
            "resourceGroups": [{"coveredResources": ["cpu", "memory", GPU_RESOURCE], "flavors": flavor_quotas}],
            "preemption": {"reclaimWithinCohort": "Any", "withinClusterQueue": "LowerPriority"},
        },
    }


def local_queue(queue: BatchQueueSpec) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "LocalQueue",
        "metadata": {
            "name": LOCAL_QUEUE,
            "namespace": queue.namespace,
            "labels": {"app.kubernetes.io/part-of": "gpu-platform", "gpu-platform/tenant": queue.tenant},
        },
        "spec": {"clusterQueue": queue.cluster_queue},
    }


class BatchQueue(pulumi.ComponentResource):
    release: pulumi.Resource
    flavors: dict[str, pulumi.Resource]
    cluster_queues: dict[str, pulumi.Resource]
    local_queues: dict[str, pulumi.Resource]  # by namespace

    def __init__(self, name: str, args: BatchQueueArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:BatchQueue", name, {}, opts)
        # Restricted: the controller runs non-root, without capabilities, with RuntimeDefault seccomp.
        child = pulumi.ResourceOptions(parent=self)
        namespace = labelled_namespace(f"{name}-namespace", PIN.namespace, RESTRICTED, child)
        self.release = helm_release(
            f"{name}-kueue",
            PIN,
            kueue_values(args),
            pulumi.ResourceOptions(parent=self, depends_on=[namespace, *args.monitoring]),
            release_name=RELEASE,
            image_mirror=args.image_mirror,
        )
        # Kueue's CRDs and its validating webhooks come with the release.
        after_release = pulumi.ResourceOptions(parent=self, depends_on=[self.release])
        self.flavors = {
            flavor.name: custom_resource(f"{name}-flavor-{flavor.name}", resource_flavor(flavor), after_release)
            for flavor in args.flavors
        }
        after_flavors = pulumi.ResourceOptions(parent=self, depends_on=[self.release, *self.flavors.values()])
        self.cluster_queues = {
            queue.tenant: custom_resource(f"{name}-cq-{queue.tenant}", cluster_queue(queue, args.flavors), after_flavors)
            for queue in args.queues
        }
        self.local_queues = {}
        for queue in args.queues:
            waits = [self.release, self.cluster_queues[queue.tenant]]
            if queue.namespace in args.namespaces:
                waits.append(args.namespaces[queue.namespace])
            self.local_queues[queue.namespace] = custom_resource(
                f"{name}-lq-{queue.tenant}", local_queue(queue), pulumi.ResourceOptions(parent=self, depends_on=waits)
            )
        self.register_outputs({})
