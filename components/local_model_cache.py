"""Model weights on node-local NVMe: KServe's LocalModelCache, pinned in components/charts.py (v0.20.0).

How it works (KServe docs, "Model cache with LocalModelCache"; kserve/kserve pkg/controller/v1alpha1/localmodel and
localmodelnode):
- a **LocalModelNodeGroup** per GPU pool with local NVMe (`gpuPools.<pool>.localStorage.nvme`): a `local`
  PersistentVolume at the node agent's host path with node affinity to the pool's nodes, and how much of each node's
  disk the cache may take (`storageLimit`);
- a **LocalModelCache** per catalog model with `localCache`, bound to the node groups of the pools the model can land
  on (components/models.py `pools_for`), with its storage URI: KServe matches an InferenceService to a cache by its
  `storageUri` (components/models.py `storage_uri`, shared by every way a model is served);
- the **localmodel controller** creates a LocalModelNode per node of those groups, and the **node agent** (a
  DaemonSet) on each node starts a download Job in `kserve-localmodel-jobs` for each model missing under its host
  path. An InferenceService whose storageUri a cache holds then mounts the node group's volume instead of copying
  the model from the store, on every node of the group.

The host path, and kserve#4852: the agent checks for a model's folder under its own hostPath while the download job
writes to the node group's PersistentVolume path; if they differ the agent never sees the files and starts download
jobs forever (kserve/kserve#4151, #4852; kserve/website#586). At v0.20.0 the agent's hostPath is `/models`, written
into the DaemonSet of kserve-localmodel-resources (files/resources.yaml) and read from no chart value: the
`kserve.localmodel.agent.hostPath` value of both KServe charts is not used by any template. So the node groups'
volumes use that same `/models` (AGENT_HOST_PATH), tests/test_local_model_cache.py compares it with the DaemonSet
the chart renders from our values, and the nodes mount their NVMe there (components/karpenter.py `local_nvme`).

Namespaces: the controller and the agent read the `localModel` section of `inferenceservice-config` from their own
namespace, so the chart goes into KServe's (`kserve`), which the agent's hostPath makes `privileged`
(components/serving.py). The download jobs run in their own namespace with the model store's ServiceAccount and
Secret (components/model_store.py `download_namespaces`), which `LocalModelCache.spec.serviceAccountName` names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.charts import CHART_PINS
from components.custom_resource import custom_resource
from components.helm import helm_release
from components.node_pools import (
    LOCAL_MODEL_NODE_LABEL,
    LOCAL_MODEL_NODE_VALUE,
    NodePoolDescription,
    selector_expressions,
)
from components.registry import ImageMirror

CRD_PIN = CHART_PINS["kserve-localmodel-crd"]
PIN = CHART_PINS["kserve-localmodel-resources"]
API_VERSION = "serving.kserve.io/v1alpha1"
NODE_GROUP_KIND = "LocalModelNodeGroup"
CACHE_KIND = "LocalModelCache"
# The agent DaemonSet's `hostPath` (kserve-localmodel-resources v0.20.0 files/resources.yaml, volume `models`), mounted
# at /mnt/models in the agent. Not a chart value: a new chart version that moves it fails the tests, not the nodes.
AGENT_HOST_PATH = "/models"
# The agent's user: the chart's DaemonSet sets runAsNonRoot and leaves the user to the image, the download Jobs run
# with fsGroup 1000 (kserve-resources values.yaml kserve.localmodel.securityContext.fsGroup), and a hostPath ignores
# fsGroup, so the node makes the directory 1000's (kserve/website#586: `chown -R 1000:1000` on the host).
AGENT_UID = 1000
# Where the download Jobs run: the chart's default (kserve-resources values.yaml kserve.localmodel.jobNamespace),
# stated because the model store puts its credentials there.
JOB_NAMESPACE = "kserve-localmodel-jobs"
# Each node group's PersistentVolumes and claims; a class of our own, never the cluster's default (EBS, PD), so a
# claim only ever binds to the node group's local volume.
STORAGE_CLASS = "local-model-cache"


@dataclass(frozen=True)
class CachePool:
    """A GPU pool whose nodes cache weights on local NVMe."""

    description: NodePoolDescription

    @property
    def name(self) -> str:
        return self.description.name

    @property
    def cache_gb(self) -> int:
        return self.description.model_cache_gb


def cache_pools(pools: Sequence[NodePoolDescription]) -> tuple[CachePool, ...]:
    return tuple(CachePool(pool) for pool in pools if pool.model_cache_gb)


def kserve_localmodel_values() -> dict[str, Any]:
    """The `localModel` section of KServe's inferenceservice-config (kserve-resources files/common/configmap-patch.yaml):
    the controller acts on LocalModelCaches only when it is enabled."""
    return {"kserve": {"localmodel": {"enabled": True, "jobNamespace": JOB_NAMESPACE}}}


def agent_values(tolerations: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """kserve-localmodel-resources: the node agent on the cache pools' nodes. Its nodeSelector is the chart's own
    label (which the chart keeps whatever we set: files/daemonset-patch.yaml is merged over files/resources.yaml), which
    only cache pools carry (components/node_pools.py); it tolerates every GPU pool's taints (GPU, spot: the
    components/cluster.py `tolerations_of` of the GPU pools), so the label alone decides where it runs.

    The localmodel controller's Deployment has no placement value at v0.20.0 (files/deployment-patch.yaml sets only
    its container): it tolerates no taint, so it runs on the untainted system pool (every GPU pool is tainted)."""
    return {
        "kserve": {
            "localmodelnode": {
                "controller": {
                    "nodeSelector": {LOCAL_MODEL_NODE_LABEL: LOCAL_MODEL_NODE_VALUE},
                    "tolerations": [dict(toleration) for toleration in tolerations],
                }
            }
        }
    }


def _storage(gb: int) -> str:
    return f"{gb}Gi"


def node_group_manifest(pool: CachePool) -> dict[str, Any]:
    """One LocalModelNodeGroup per cache pool, named after it: a `local` volume at the agent's host path on the pool's
    nodes (node affinity to its labels), `storageLimit` the pool's cache size."""
    size = _storage(pool.cache_gb)
    return {
        "apiVersion": API_VERSION,
        "kind": NODE_GROUP_KIND,
        "metadata": {"name": pool.name},
        "spec": {
            "storageLimit": size,
            "persistentVolumeSpec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": "Filesystem",
                "capacity": {"storage": size},
                "local": {"path": AGENT_HOST_PATH},
                # The files stay on the node's disk whatever happens to the volume object; the node goes with them.
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [{"matchExpressions": selector_expressions(pool.description.node_selector)}]
                    }
                },
            },
            "persistentVolumeClaimSpec": {
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": "Filesystem",
                "resources": {"requests": {"storage": size}},
                "storageClassName": STORAGE_CLASS,
            },
        },
    }


def cache_manifest(model: str, storage_uri: str, size_gb: int, node_groups: Sequence[str], service_account: str) -> dict[str, Any]:
    """One LocalModelCache per cached model; `sourceModelUri` is the InferenceService's storageUri, exactly."""
    return {
        "apiVersion": API_VERSION,
        "kind": CACHE_KIND,
        "metadata": {"name": model},
        "spec": {
            "sourceModelUri": storage_uri,
            "modelSize": _storage(size_gb),
            "nodeGroups": list(node_groups),
            # Found in the jobs' namespace (components/model_store.py puts it there with the store's Secret).
            "serviceAccountName": service_account,
        },
    }


@dataclass(frozen=True)
class LocalModelCacheArgs:
    pools: tuple[CachePool, ...]
    # Tolerations of every GPU pool's taints, for the node agent.
    tolerations: tuple[Mapping[str, str], ...]
    # KServe's release (the inferenceservice-config ConfigMap and the Issuer the chart's Certificate names) and the
    # model store's credentials in the jobs' namespace.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    image_mirror: Optional[ImageMirror] = None


class LocalModelCachePlatform(pulumi.ComponentResource):
    """The two charts, the storage class and one LocalModelNodeGroup per cache pool."""

    crds: k8s.helm.v3.Release
    release: k8s.helm.v3.Release
    node_groups: Mapping[str, pulumi.Resource]

    def __init__(self, name: str, args: LocalModelCacheArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:LocalModelCache", name, {}, opts)
        if not args.pools:
            raise ValueError("a local model cache needs at least one GPU pool with local NVMe")

        def after(*dependencies: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=list(dependencies))

        self.crds = helm_release(f"{name}-crd", CRD_PIN, {}, after(*args.depends_on))
        self.release = helm_release(
            f"{name}-resources",
            PIN,
            agent_values(args.tolerations),
            after(self.crds, *args.depends_on),
            image_mirror=args.image_mirror,
        )
        # Static local volumes (Kubernetes docs, Storage Classes, "Local"): nothing provisions them, and a claim binds
        # once its pod is placed, on that pod's node.
        k8s.storage.v1.StorageClass(
            f"{name}-storage-class",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=STORAGE_CLASS),
            provisioner="kubernetes.io/no-provisioner",
            volume_binding_mode="WaitForFirstConsumer",
            reclaim_policy="Retain",
            opts=after(),
        )
        # After the controller: its webhook validates node groups and caches.
        self.node_groups = {
            pool.name: custom_resource(f"{name}-node-group-{pool.name}", node_group_manifest(pool), after(self.release))
            for pool in args.pools
        }
        self.register_outputs({})


class CachedModel(pulumi.ComponentResource):
    """One model's LocalModelCache."""

    def __init__(
        self,
        name: str,
        manifest: Mapping[str, Any],
        depends_on: Sequence[pulumi.Resource],
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__("gpu-platform:workloads:CachedModel", name, {}, opts)
        self.cache = custom_resource(f"{name}-resource", dict(manifest), pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)))
        self.register_outputs({})
