"""A cluster we do not manage (kind on a laptop, an on-prem GPU server): no cloud resources, only a
Kubernetes provider and the pool descriptions its owner declared in config.

A pool that names its nodes gets its labels put on them by the stack (a `NodePatch` per node, server-side
apply of only these labels): the pool selector and, for a MIG pool, `nvidia.com/mig.config`, which the GPU
Operator's MIG manager acts on. Nothing else of the owner's nodes is touched, and `pulumi destroy` removes
only these labels."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.cluster import ClusterIdentity, KubernetesCluster
from components.node_pools import POOL_LABEL, NodePoolDescription, Taint, mig_labels


@dataclass(frozen=True)
class ExistingGpuPoolSpec:
    name: str
    gpu_type: str
    gpu_count: int
    time_slicing_replicas: int
    purpose: str
    # What the nodes already carry; None means the platform's convention `gpu-platform/pool: <name>`.
    node_labels: Optional[Mapping[str, str]]
    taints: tuple[Taint, ...]
    mig_layout: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()  # node names the stack labels; empty: the owner labels them

    def describe(self) -> NodePoolDescription:
        labels = dict(self.node_labels) if self.node_labels is not None else {POOL_LABEL: self.name}
        labels.update(mig_labels(self.mig_layout))
        return NodePoolDescription(
            name=self.name,
            role="gpu",
            labels=labels,
            taints=self.taints,
            gpu_type=self.gpu_type,
            gpu_count=self.gpu_count,
            time_slicing_replicas=self.time_slicing_replicas,
            purpose=self.purpose,
            min_size=len(self.nodes) or None,
            max_size=len(self.nodes) or None,
            mig_layout=self.mig_layout,
        )


@dataclass(frozen=True)
class ExistingClusterArgs:
    cluster_name: str
    kubeconfig_path: str
    context: Optional[str]
    system_node_labels: Mapping[str, str]
    gpu_pools: tuple[ExistingGpuPoolSpec, ...]


def _server_of(kubeconfig_path: Path, context: Optional[str]) -> Optional[str]:
    """The API server URL for `context`, if the kubeconfig is on this machine."""
    try:
        document = yaml.safe_load(kubeconfig_path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    context_name = context or document.get("current-context")
    contexts = {c.get("name"): c.get("context", {}) for c in document.get("contexts") or []}
    clusters = {c.get("name"): c.get("cluster", {}) for c in document.get("clusters") or []}
    cluster_name = contexts.get(context_name, {}).get("cluster")
    return clusters.get(cluster_name, {}).get("server")


class ExistingCluster(KubernetesCluster):
    def __init__(self, name: str, args: ExistingClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:cluster:ExistingCluster", name, {}, opts)

        path = Path(os.path.expanduser(args.kubeconfig_path))
        # The provider reads the file itself, on the machine that runs `pulumi up`; we pass the path,
        # never the file's credentials, into state.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=str(path),
            context=args.context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        server = _server_of(path, args.context)
        self.cluster_name = pulumi.Output.from_input(args.cluster_name)
        self.endpoint = pulumi.Output.from_input(server or f"(server of kubeconfig context {args.context or 'current'})")
        self.kubeconfig = pulumi.Output.secret(str(path))
        self.identity = ClusterIdentity(cloud="existing", cluster_name=args.cluster_name)
        system = NodePoolDescription(name="system", role="system", labels=dict(args.system_node_labels))
        self.node_pools = (system, *(pool.describe() for pool in args.gpu_pools))
        # The owner's nodes are no resource of this program: nothing for the provider or the GPU
        # workloads to wait for, so `pulumi destroy` only ever removes what runs on them.
        self.node_pool_resources = {}
        self.node_labels: dict[str, k8s.core.v1.NodePatch] = {}
        for spec, pool in zip(args.gpu_pools, self.node_pools[1:]):
            for node in spec.nodes:
                self.node_labels[node] = k8s.core.v1.NodePatch(
                    f"{name}-node-{node}",
                    metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                        name=node,
                        labels=dict(pool.labels),
                        # Take the labels over if another field manager (kubectl label) set them first.
                        annotations={"pulumi.com/patchForce": "true"},
                    ),
                    opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
                )

        self.register_outputs({"clusterName": self.cluster_name, "endpoint": self.endpoint})
