"""What every cluster component hands to the platform and workload layers, whatever the cloud."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.node_pools import NodePoolDescription


@dataclass(frozen=True)
class ClusterIdentity:
    """Facts later layers need to give pods cloud identities (IRSA on EKS, Workload Identity on GKE)."""

    cloud: str
    cluster_name: pulumi.Input[str]
    region: Optional[str] = None
    # EKS: the IAM OIDC provider that IRSA roles trust.
    oidc_provider_arn: Optional[pulumi.Input[str]] = None
    oidc_issuer_url: Optional[pulumi.Input[str]] = None
    # GKE: `<project>.svc.id.goog`, the pool Kubernetes service accounts map into.
    workload_identity_pool: Optional[str] = None
    gcp_project: Optional[str] = None


class KubernetesCluster(pulumi.ComponentResource):
    """Base of EksGpuCluster, GkeGpuCluster and ExistingCluster: what each sets for later layers."""

    provider: k8s.Provider
    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]  # always a secret
    identity: ClusterIdentity
    node_pools: tuple[NodePoolDescription, ...]
    # Pool name -> the node group (EKS) or node pool (GKE) behind it, for `depends_on`. Empty on an
    # existing cluster, whose nodes are its owner's.
    node_pool_resources: Mapping[str, pulumi.Resource]


def system_pool(cluster: KubernetesCluster) -> NodePoolDescription:
    return next(pool for pool in cluster.node_pools if pool.role == "system")


def gpu_pools(cluster: KubernetesCluster) -> tuple[NodePoolDescription, ...]:
    return tuple(pool for pool in cluster.node_pools if pool.role == "gpu")


def pool_resources(cluster: KubernetesCluster, pools: Iterable[NodePoolDescription]) -> list[pulumi.Resource]:
    """The resources behind `pools`, for the `depends_on` of what runs on them: Pulumi deletes a
    resource's dependents first (https://www.pulumi.com/docs/iac/concepts/resources/options/dependson/),
    so pods go before their nodes. None on an existing cluster: nothing there to wait for."""
    if not cluster.node_pool_resources:
        return []
    return [cluster.node_pool_resources[pool.name] for pool in pools]


def system_node_selector(cluster: KubernetesCluster) -> dict[str, str]:
    """Where controllers run: the untainted system pool (any node where it has no labels, as on kind)."""
    return system_pool(cluster).node_selector


def gpu_node_tolerations(cluster: KubernetesCluster) -> list[dict[str, str]]:
    """Tolerations for every taint a GPU pool carries (GPU and spot), for DaemonSets that must run on
    every GPU node: device plugin, DCGM exporter, node exporter. Startup taints too (Karpenter pools): those
    DaemonSets are what advertises the GPU and so what the startup taint waits for; workloads never get them."""
    pools = gpu_pools(cluster)
    seen = {(t["key"], t["effect"]): t for t in tolerations_of(pools)}
    for pool in pools:
        for taint in pool.startup_taints:
            seen.setdefault((taint.key, taint.effect), taint.toleration())
    return list(seen.values())


def tolerations_of(pools: Iterable[NodePoolDescription]) -> list[dict[str, str]]:
    """One toleration per distinct (key, effect) among the taints of `pools`."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for pool in pools:
        for toleration in pool.tolerations:
            seen.setdefault((toleration["key"], toleration["effect"]), toleration)
    return list(seen.values())
