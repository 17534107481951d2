"""Settings -> the cluster component for the stack's cloud, with its cloud provider."""

from __future__ import annotations

from typing import Optional, Union

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp

from components.cluster import KubernetesCluster
from components.eks_cluster import EksGpuCluster, EksGpuClusterArgs
from components.existing_cluster import ExistingCluster, ExistingClusterArgs, ExistingGpuPoolSpec
from components.gke_cluster import GkeGpuCluster, GkeGpuClusterArgs
from components.karpenter import KarpenterOptions
from components.node_pools import GpuPoolSpec, SystemPoolSpec, Taint
from infra.program.settings import AwsStack, ExistingStack, GcpStack, ManagedGpuPool, SystemPool

Settings = Union[AwsStack, GcpStack, ExistingStack]


def common_tags(settings: Settings) -> dict[str, str]:
    """The cloud provider's default tags (AWS) or labels (GCP), on every resource it creates.

    The policy pack reads the tier and the budget from them: under `pulumi preview` it sees only the
    resources, and a provider's defaults are among them (policies/gpu_platform_policies/budget.py).
    """
    tags = {
        "gpu-platform-environment": settings.environment,
        "gpu-platform-stack": pulumi.get_stack(),
        "managed-by": "pulumi",
    }
    if settings.budget is not None:  # digits only: a valid AWS tag and GCP label value alike
        tags["gpu-platform-budget-monthly-usd"] = str(settings.budget.monthly_usd)
    return tags


def system_pool_spec(pool: SystemPool) -> SystemPoolSpec:
    return SystemPoolSpec(
        machine_type=pool.machine_type,
        min_size=pool.min_size,
        desired_size=pool.desired_size,
        max_size=pool.max_size,
        disk_size_gb=pool.disk_size_gb,
    )


def gpu_pool_specs(pools: dict[str, ManagedGpuPool], cloud: str) -> tuple[GpuPoolSpec, ...]:
    return tuple(
        GpuPoolSpec(
            name=name,
            gpu_type=pool.gpu_type,
            gpu_count=pool.gpu_count,
            capacity_type=pool.capacity_type,
            purpose=pool.purpose,
            time_slicing_replicas=pool.time_slicing_replicas,
            min_size=pool.min_size,
            max_size=pool.max_size,
            machine_types=pool.resolved_machine_types(cloud),
            disk_size_gb=pool.disk_size_gb,
            mig_layout=pool.mig_layout,
            model_cache_gb=pool.model_cache_gb(cloud),
        )
        for name, pool in pools.items()
    )


def build_cluster(settings: Settings) -> KubernetesCluster:
    if isinstance(settings, AwsStack):
        return _eks(settings)
    if isinstance(settings, GcpStack):
        return _gke(settings)
    return _existing(settings)


def _eks(settings: AwsStack) -> EksGpuCluster:
    provider = aws.Provider(
        "aws",
        region=settings.aws.region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=common_tags(settings)),
    )
    return EksGpuCluster(
        settings.cluster_name,
        EksGpuClusterArgs(
            cluster_name=settings.cluster_name,
            region=settings.aws.region,
            kubernetes_version=settings.kubernetes_version,
            vpc_cidr=settings.aws.vpc_cidr,
            zone_count=settings.aws.zone_count,
            single_nat_gateway=settings.aws.single_nat_gateway,
            api_server_allowed_cidrs=settings.aws.api_server_allowed_cidrs,
            gpu_ami_type=settings.aws.gpu_ami_type,
            deletion_protection=settings.deletion_protection,
            system_pool=system_pool_spec(settings.system_pool),
            gpu_pools=gpu_pool_specs(settings.gpu_pools, "aws"),
            karpenter=karpenter_options(settings),
        ),
        pulumi.ResourceOptions(providers={"aws": provider}),
    )


def karpenter_options(settings: AwsStack) -> Optional[KarpenterOptions]:
    """With `platform.autoscaler: karpenter` the cluster makes its GPU pools Karpenter NodePools."""
    if settings.platform.autoscaler != "karpenter":
        return None
    karpenter = settings.platform.karpenter
    window = karpenter.maintenance_window
    return KarpenterOptions(
        environment=settings.environment,
        consolidate_after=karpenter.consolidate_after,
        ami_version=karpenter.ami_version,
        maintenance_window=(window.start, window.hours) if window else None,
        image_mirror=settings.platform.image_mirror,
    )


def _gke(settings: GcpStack) -> GkeGpuCluster:
    provider = gcp.Provider(
        "gcp",
        project=settings.gcp.project,
        region=settings.gcp.region,
        default_labels=common_tags(settings),
    )
    return GkeGpuCluster(
        settings.cluster_name,
        GkeGpuClusterArgs(
            cluster_name=settings.cluster_name,
            project=settings.gcp.project,
            region=settings.gcp.region,
            node_zones=settings.gcp.node_zones,
            regional=settings.gcp.regional,
            release_channel=settings.gcp.release_channel,
            kubernetes_version=settings.kubernetes_version,
            subnet_cidr=settings.gcp.subnet_cidr,
            pods_cidr=settings.gcp.pods_cidr,
            services_cidr=settings.gcp.services_cidr,
            master_cidr=settings.gcp.master_cidr,
            api_server_allowed_cidrs=settings.gcp.api_server_allowed_cidrs,
            deletion_protection=settings.deletion_protection,
            system_pool=system_pool_spec(settings.system_pool),
            gpu_pools=gpu_pool_specs(settings.gpu_pools, "gcp"),
        ),
        pulumi.ResourceOptions(providers={"gcp": provider}),
    )


def _existing(settings: ExistingStack) -> ExistingCluster:
    return ExistingCluster(
        settings.cluster_name,
        ExistingClusterArgs(
            cluster_name=settings.cluster_name,
            kubeconfig_path=settings.existing.kubeconfig,
            context=settings.existing.context,
            system_node_labels=dict(settings.system_pool.node_labels),
            gpu_pools=tuple(
                ExistingGpuPoolSpec(
                    name=name,
                    gpu_type=pool.gpu_type,
                    gpu_count=pool.gpu_count,
                    time_slicing_replicas=pool.time_slicing_replicas,
                    purpose=pool.purpose,
                    node_labels=dict(pool.node_labels) if pool.node_labels is not None else None,
                    taints=tuple(Taint(t.key, t.value, t.effect) for t in pool.taints),
                    mig_layout=pool.mig_layout,
                    nodes=pool.nodes,
                )
                for name, pool in settings.gpu_pools.items()
            ),
        ),
    )
