"""Settings + cluster -> the platform add-ons, in the order their CRDs require."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import pulumi

from components.cert_manager import CertManager, CertManagerArgs
from components.cluster import KubernetesCluster, gpu_node_tolerations, gpu_pools, system_node_selector
from components.gpu_stack import GpuStack, GpuStackArgs
from components.mesh import Mesh, MeshArgs
from components.observability import Observability, ObservabilityArgs
from components.serving import Serving, ServingArgs
from infra.settings import AwsStack, ExistingStack, GcpStack

Settings = Union[AwsStack, GcpStack, ExistingStack]


@dataclass(frozen=True)
class Platform:
    monitoring: Optional[Observability]
    cert_manager: Optional[CertManager]
    gpu: Optional[GpuStack]
    mesh: Optional[Mesh]
    serving: Optional[Serving]


def build_platform(settings: Settings, cluster: KubernetesCluster) -> Platform:
    addons = settings.platform
    name = settings.cluster_name
    on_cluster = pulumi.ResourceOptions(providers={"kubernetes": cluster.provider})
    system_nodes = system_node_selector(cluster)
    gpu_tolerations = tuple(gpu_node_tolerations(cluster))

    monitoring = None
    if addons.monitoring.enabled:
        monitoring = Observability(
            f"{name}-monitoring",
            ObservabilityArgs(
                environment=settings.environment,
                retention=addons.monitoring.retention,
                storage_gb=addons.monitoring.storage_gb,
                alertmanager_storage_gb=addons.monitoring.alertmanager_storage_gb,
                system_node_selector=system_nodes,
                gpu_tolerations=gpu_tolerations,
            ),
            on_cluster,
        )

    cert_manager = None
    if addons.cert_manager.enabled:
        cert_manager = CertManager(f"{name}-cert-manager", CertManagerArgs(system_node_selector=system_nodes), on_cluster)

    gpu = None
    if addons.gpu_operator.enabled and gpu_pools(cluster):
        gpu = GpuStack(
            f"{name}-gpu",
            GpuStackArgs(
                cloud=settings.cloud,
                gpu_pools=gpu_pools(cluster),
                system_node_selector=system_nodes,
                gpu_tolerations=gpu_tolerations,
                # A cluster that brings its own Prometheus Operator keeps the ServiceMonitor too.
                service_monitor=True,
            ),
            # The DCGM ServiceMonitor needs the Prometheus Operator's CRDs from the monitoring release.
            pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(depends_on=[monitoring.release] if monitoring else [])
            ),
        )

    mesh = None
    if addons.istio.enabled:
        mesh = Mesh(
            f"{name}-mesh",
            MeshArgs(
                cloud=settings.cloud,
                environment=settings.environment,
                public_gateway=addons.istio.public_gateway,
                system_node_selector=system_nodes,
            ),
            on_cluster,
        )
    serving = None
    if addons.knative.enabled or addons.kserve.enabled:
        serving = Serving(
            f"{name}-serving",
            ServingArgs(
                environment=settings.environment,
                domain=addons.knative.domain,
                scale_to_zero=addons.knative.scale_to_zero,
                scale_to_zero_grace_period=addons.knative.scale_to_zero_grace_period,
                progress_deadline=addons.knative.progress_deadline,
                system_node_selector=system_nodes,
                install_knative=addons.knative.enabled,
                install_kserve=addons.kserve.enabled,
                cert_manager=(cert_manager.release,) if cert_manager else (),
                gateway=(mesh.gateway,) if mesh else (),
            ),
            on_cluster,
        )

    return Platform(monitoring=monitoring, cert_manager=cert_manager, gpu=gpu, mesh=mesh, serving=serving)
