"""Settings + cluster -> the platform add-ons, in the order their CRDs require."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Union

import pulumi

from components.batch_queue import BatchQueue, BatchQueueArgs
from components.cert_manager import PIN as CERT_MANAGER_PIN
from components.cert_manager import CertManager, CertManagerArgs
from components.cluster import (
    KubernetesCluster,
    gpu_node_tolerations,
    gpu_pools,
    pool_resources,
    system_node_selector,
    tolerations_of,
)
from components.cluster_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from components.cost_monitoring import CostMonitoring, CostMonitoringArgs, CustomPricing
from components.custom_resource import custom_resource
from components.eks_cluster import EksGpuCluster
from components.entry_tls import (
    WILDCARD_SECRET,
    AcmeIssuerArgs,
    CloudDnsDns01Account,
    EntryTls,
    EntryTlsArgs,
    Route53Dns01Role,
    cloud_dns_solver,
    route53_solver,
)
from components.gpu_stack import GpuStack, GpuStackArgs
from components.karpenter import karpenter_service_monitor
from components.keda import Keda, KedaArgs
from components.llm_serving import (
    GATEWAY_NAMESPACE as LLM_GATEWAY_NAMESPACE,
    KSERVE_INGRESS_GATEWAY,
    SCHEDULER_POD_LABELS,
    GatewayApiCrds,
    LlmServing,
    LlmServingArgs,
)
from components.local_model_cache import JOB_NAMESPACE, LocalModelCacheArgs, LocalModelCachePlatform, cache_pools
from components.mesh import GATEWAY_PIN, ISTIOD_PIN, ISTIOD_XDS_PORT, Mesh, MeshArgs, gateway_service
from components.model_metrics import model_server_monitor
from components.models import llm_layout
from components.model_store import MINIO_CONTAINER_PORT, ModelStore, ModelStoreArgs
from components.model_store import TENANT_NAMESPACE as STORE_NAMESPACE
from components.observability import PIN as MONITORING_PIN
from components.observability import PROMETHEUS_URL, Observability, ObservabilityArgs
from components.priorities import PriorityClasses
from components.progressive_delivery import LOADTESTER_PIN, ProgressiveDelivery, ProgressiveDeliveryArgs
from components.serving import KNATIVE_SERVING_NAMESPACE, Serving, ServingArgs
from components.tenancy import TENANT_LABEL, NetworkIsolation, Tenant
from infra.program.batch import batch_flavors, batch_queues
from infra.program.model_catalog import ModelSpec, resolve_all
from infra.program.settings import (
    AwsStack,
    ExistingStack,
    GcpStack,
    batch_queue_enabled,
    cost_monitoring_enabled,
    keda_enabled,
)
from infra.program.tenancy import model_namespace, tenant_plans

Settings = Union[AwsStack, GcpStack, ExistingStack]


@dataclass(frozen=True)
class Platform:
    monitoring: Optional[Observability]
    cert_manager: Optional[CertManager]
    cluster_autoscaler: Optional[ClusterAutoscaler]
    karpenter_monitor: Optional[pulumi.CustomResource]
    # The model servers' own metrics (vLLM's), scraped through Istio's merged metrics port; None without Istio or
    # the monitoring add-on.
    model_server_monitor: Optional[pulumi.CustomResource]
    gpu: Optional[GpuStack]
    mesh: Optional[Mesh]
    serving: Optional[Serving]
    progressive_delivery: Optional[ProgressiveDelivery]
    model_store: Optional[ModelStore]
    priorities: PriorityClasses
    # Tenant name -> its quotas and limits, in the namespaces the model store makes.
    tenants: dict[str, Tenant]
    # The gateway's certificate and its issuers; None with `tls.mode: none` or without cert-manager or Istio.
    entry_tls: Optional[EntryTls] = None
    cost_monitoring: Optional[CostMonitoring] = None
    batch_queue: Optional[BatchQueue] = None
    # KEDA, where a model is scaled by it (infra/program/settings.py keda_enabled).
    keda: Optional[Keda] = None
    # KServe's LocalModelCache, where GPU pools have local NVMe (components/local_model_cache.py).
    local_model_cache: Optional[LocalModelCachePlatform] = None
    # Where the stack serves LLMInferenceServices (components/llm_serving.py).
    gateway_api_crds: Optional[GatewayApiCrds] = None
    llm_serving: Optional[LlmServing] = None


def gateway_routed_models(settings: Settings) -> tuple[list[ModelSpec], list[ModelSpec]]:
    """The stack's models that the Gateway API gateway routes (as the stack resolves them), and of those the ones
    served as LLMInferenceServices (catalog `api`). The others are InferenceServices in KServe's Standard mode (the
    KEDA-scaled ones): with `enableGatewayApi` KServe attaches their HTTPRoutes to the same Gateway."""
    specs = resolve_all(settings.models)
    llms = [spec for spec in specs if spec.serving == "kserve" and spec.api == "LLMInferenceService"]
    standard = [spec for spec in specs if spec.serving == "kserve" and spec.api == "InferenceService" and spec.autoscaler == "keda"]
    return [*llms, *standard], llms


def dns01_identity(
    settings: Settings, cluster: KubernetesCluster
) -> Optional[Union[Route53Dns01Role, CloudDnsDns01Account]]:
    """The cloud identity cert-manager answers ACME DNS-01 challenges with (`tls.mode: acme`), or None."""
    acme = settings.tls.acme
    if settings.tls.mode != "acme" or acme is None:
        return None
    identity = cluster.identity
    name = f"{settings.cluster_name}-cert-manager-dns01"
    if isinstance(settings, AwsStack):
        assert acme.hosted_zone_id is not None, "TlsSettings requires hostedZoneId on aws"
        if not isinstance(cluster, EksGpuCluster) or cluster.aws_provider is None:
            raise TypeError("an aws stack's cluster is an EksGpuCluster with its own aws provider (infra/program/clusters.py)")
        assert identity.oidc_provider_arn is not None and identity.oidc_issuer_url is not None
        return Route53Dns01Role(
            name,
            cluster_name=settings.cluster_name,
            namespace=CERT_MANAGER_PIN.namespace,
            oidc_provider_arn=identity.oidc_provider_arn,
            oidc_issuer_url=identity.oidc_issuer_url,
            hosted_zone_id=acme.hosted_zone_id,
            opts=pulumi.ResourceOptions(providers={"aws": cluster.aws_provider}),
        )
    if isinstance(settings, GcpStack):
        assert identity.workload_identity_pool is not None, "a GKE cluster has Workload Identity on"
        return CloudDnsDns01Account(
            name,
            cluster_name=settings.cluster_name,
            project=settings.gcp.project,
            workload_identity_pool=identity.workload_identity_pool,
            namespace=CERT_MANAGER_PIN.namespace,
            opts=pulumi.ResourceOptions(providers={"gcp": cluster.get_provider("gcp::")}),
        )
    return None


def entry_tls_args(settings: Settings, cluster: KubernetesCluster, depends_on: tuple[pulumi.Resource, ...]) -> EntryTlsArgs:
    tls = settings.tls
    acme = None
    if tls.mode == "acme":
        assert tls.acme is not None, "TlsSettings requires the acme block with mode acme"
        if isinstance(settings, AwsStack):
            assert tls.acme.hosted_zone_id is not None
            solver = route53_solver(settings.aws.region, tls.acme.hosted_zone_id)
        elif isinstance(settings, GcpStack):
            solver = cloud_dns_solver(settings.gcp.project)
        else:
            raise TypeError("TlsSettings refuses mode acme on an existing cluster")
        acme = AcmeIssuerArgs(email=tls.acme.email, server=tls.acme.server, dns01=solver)
    return EntryTlsArgs(
        mode=tls.mode,
        domain=settings.platform.knative.domain,
        gateway_namespace=GATEWAY_PIN.namespace,
        cert_manager_namespace=CERT_MANAGER_PIN.namespace,
        acme=acme,
        depends_on=depends_on,
    )


def build_platform(settings: Settings, cluster: KubernetesCluster) -> Platform:
    addons = settings.platform
    name = settings.cluster_name
    mirror = addons.image_mirror
    on_cluster = pulumi.ResourceOptions(providers={"kubernetes": cluster.provider})
    system_nodes = system_node_selector(cluster)
    gpu_tolerations = tuple(gpu_node_tolerations(cluster))
    # Weights cached on local NVMe: where pools have it, with KServe and the model store (whose credentials the
    # download Jobs use).
    local_cache_pools = cache_pools(gpu_pools(cluster))
    local_model_cache_on = bool(local_cache_pools) and addons.kserve.enabled and addons.model_store.enabled
    # First: every pod the platform declares names one of these classes.
    priorities = PriorityClasses(f"{name}-priorities", on_cluster)

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
                image_mirror=mirror,
            ),
            on_cluster,
        )

    cert_manager = None
    if addons.cert_manager.enabled:
        identity = dns01_identity(settings, cluster)
        cert_manager = CertManager(
            f"{name}-cert-manager",
            CertManagerArgs(
                system_node_selector=system_nodes,
                service_account_annotations=identity.annotations if identity is not None else {},
                image_mirror=mirror,
            ),
            on_cluster,
        )

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
                image_mirror=mirror,
            ),
            # The DCGM ServiceMonitor needs the Prometheus Operator's CRDs from the monitoring release.
            # The GPU pools: its DaemonSets run on every GPU node, so it is removed before them.
            pulumi.ResourceOptions.merge(
                on_cluster,
                pulumi.ResourceOptions(
                    depends_on=[
                        *([monitoring.release] if monitoring else []),
                        *pool_resources(cluster, gpu_pools(cluster)),
                    ]
                ),
            ),
        )

    # LLMInferenceServices (infra/program/settings.py requires Istio, KServe and cert-manager for them) and Standard-mode
    # InferenceServices reach callers through a Gateway API gateway: the Gateway API and inference extension CRDs
    # first, which istiod's and KServe's controllers watch.
    routed, llms = gateway_routed_models(settings)
    gateway_api_crds = GatewayApiCrds(f"{name}-gateway-api-crds", on_cluster) if routed else None

    mesh = None
    mesh_args = MeshArgs(
        cloud=settings.cloud,
        environment=settings.environment,
        public_gateway=addons.istio.public_gateway,
        system_node_selector=system_nodes,
        monitoring=(monitoring.release,) if monitoring else (),
        image_mirror=mirror,
        inference_extension=bool(llms),
    )
    if addons.istio.enabled:
        mesh = Mesh(f"{name}-mesh", mesh_args, on_cluster)
    # The gateway's wildcard certificate, after cert-manager (CRDs, webhook) and istio-base (its namespace).
    entry_tls = None
    if settings.tls.mode != "none" and cert_manager is not None and mesh is not None:
        entry_tls = EntryTls(
            f"{name}-entry-tls",
            entry_tls_args(settings, cluster, depends_on=(cert_manager.release, mesh.base)),
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
                monitoring=(monitoring.release,) if monitoring else (),
                image_mirror=mirror,
                tls_credential=WILDCARD_SECRET if entry_tls is not None else None,
                tls=(entry_tls.certificate,) if entry_tls is not None else (),
                local_model_cache=local_model_cache_on,
                gateway_api_gateway=KSERVE_INGRESS_GATEWAY if gateway_api_crds is not None else None,
                gateway_api_crds=tuple(gateway_api_crds.crds) if gateway_api_crds is not None else (),
                install_llmisvc=bool(llms),
            ),
            on_cluster,
        )

    llm_serving = None
    if gateway_api_crds is not None and serving is not None and mesh is not None:
        pools = gpu_pools(cluster)
        llm_serving = LlmServing(
            f"{name}-llm-serving",
            LlmServingArgs(
                system_node_selector=system_nodes,
                gateway_service=gateway_service(mesh_args),
                tls_credential=WILDCARD_SECRET if entry_tls is not None else None,
                tls_namespace=GATEWAY_PIN.namespace,
                multi_node=any(llm_layout(spec, pools).spans_machines for spec in llms),
                # istiod runs the Gateway, in KServe's namespace (its release), on the CRDs and the certificate.
                depends_on=(
                    mesh.istiod,
                    *[r for r in (serving.kserve, serving.llmisvc) if r is not None],
                    *gateway_api_crds.crds,
                    *([entry_tls.certificate] if entry_tls is not None else []),
                ),
                image_mirror=mirror,
            ),
            on_cluster,
        )

    # EKS only, with `autoscaler: cluster-autoscaler` (with Karpenter the cluster component installs Karpenter,
    # whose NodePools are the GPU pools): GKE node pools autoscale themselves (GcpStack has no such setting)
    # and an existing cluster's owner runs their own. The IRSA role is made with the cluster's own aws provider.
    cluster_autoscaler = None
    if (
        isinstance(settings, AwsStack)
        and settings.platform.autoscaler == "cluster-autoscaler"
        and settings.platform.cluster_autoscaler.enabled
    ):
        if not isinstance(cluster, EksGpuCluster) or cluster.aws_provider is None:
            raise TypeError("an aws stack's cluster is an EksGpuCluster with its own aws provider (infra/program/clusters.py)")
        autoscaler = settings.platform.cluster_autoscaler
        cluster_autoscaler = ClusterAutoscaler(
            f"{name}-cluster-autoscaler",
            ClusterAutoscalerArgs(
                cluster_name=settings.cluster_name,
                region=settings.aws.region,
                environment=settings.environment,
                oidc_provider_arn=cluster.identity.oidc_provider_arn,
                oidc_issuer_url=cluster.identity.oidc_issuer_url,
                expander=autoscaler.expander,
                scale_down_unneeded_time=autoscaler.scale_down_unneeded_time,
                scale_down_delay_after_add=autoscaler.scale_down_delay_after_add,
                system_node_selector=system_nodes,
                image_mirror=mirror,
            ),
            pulumi.ResourceOptions(providers={"kubernetes": cluster.provider, "aws": cluster.aws_provider}),
        )

    # Karpenter's metrics, once the monitoring release has installed the ServiceMonitor CRD.
    karpenter_monitor = None
    if monitoring is not None and isinstance(cluster, EksGpuCluster) and cluster.karpenter is not None:
        karpenter_monitor = karpenter_service_monitor(
            f"{name}-karpenter-monitor",
            pulumi.ResourceOptions(
                providers={"kubernetes": cluster.provider}, depends_on=[monitoring.release, cluster.karpenter.release]
            ),
        )

    # The model servers' metrics, once the monitoring release has installed the PodMonitor CRD. Only in the mesh:
    # the scrape goes through Istio's metrics merging (components/model_metrics.py).
    model_monitor = None
    if monitoring is not None and mesh is not None:
        model_monitor = custom_resource(
            f"{name}-model-server-metrics",
            model_server_monitor(),
            pulumi.ResourceOptions(providers={"kubernetes": cluster.provider}, depends_on=[monitoring.release, mesh.base]),
        )

    progressive_delivery = None
    if addons.flagger.enabled:
        progressive_delivery = ProgressiveDelivery(
            f"{name}-progressive-delivery",
            ProgressiveDeliveryArgs(
                environment=settings.environment,
                # Our Prometheus; a stack without the monitoring add-on must run one at the same address.
                metrics_server=PROMETHEUS_URL,
                system_node_selector=system_nodes,
                monitoring=(monitoring.release,) if monitoring else (),
                mesh=(mesh.istiod,) if mesh else (),
                image_mirror=mirror,
            ),
            on_cluster,
        )

    plans = tenant_plans(settings)
    model_store = None
    if addons.model_store.enabled:
        model_store = ModelStore(
            f"{name}-model-store",
            ModelStoreArgs(
                environment=settings.environment,
                servers=addons.model_store.servers,
                volumes_per_server=addons.model_store.volumes_per_server,
                volume_size_gb=addons.model_store.volume_size_gb,
                system_node_selector=system_nodes,
                # One namespace per tenant (or the one `models` namespace), labelled with its tenant.
                model_namespaces=tuple(plan.namespace for plan in plans),
                namespace_labels={plan.namespace: {TENANT_LABEL: plan.name} for plan in plans},
                download_namespaces=(JOB_NAMESPACE,) if local_model_cache_on else (),
                # MinIO's ServiceMonitor only where this stack installs the Prometheus Operator's CRDs.
                service_monitor=monitoring is not None,
                monitoring=(monitoring.release,) if monitoring else (),
                image_mirror=mirror,
            ),
            on_cluster,
        )

    # Who may call the tenants' pods, and what they may call (components/tenancy.py).
    isolation = NetworkIsolation(
        ingress_from=(GATEWAY_PIN.namespace, KNATIVE_SERVING_NAMESPACE, MONITORING_PIN.namespace, LOADTESTER_PIN.namespace),
        egress_to={STORE_NAMESPACE: (MINIO_CONTAINER_PORT,), ISTIOD_PIN.namespace: (ISTIOD_XDS_PORT,)},
    )
    # A namespace serving an LLMInferenceService or a Standard-mode model also admits the Gateway's pods (in `kserve`:
    # they call the endpoint picker and the vLLM pods, or the predictor), and lets the endpoint picker reach the API
    # server (it watches its pool's pods).
    llm_namespaces = {model_namespace(settings, spec.name) for spec in routed} if llm_serving is not None else set()
    llm_isolation = replace(
        isolation,
        ingress_from=(*isolation.ingress_from, LLM_GATEWAY_NAMESPACE),
        api_server_clients=SCHEDULER_POD_LABELS,
    )
    tenants = {}
    if model_store is not None:
        for plan in plans:
            tenants[plan.name] = Tenant(
                f"{name}-tenant-{plan.name}",
                replace(
                    plan,
                    network=llm_isolation if plan.namespace in llm_namespaces else isolation,
                    depends_on=(model_store.model_namespaces[plan.namespace],),
                ),
                on_cluster,
            )

    # OpenCost reads our Prometheus (it runs only with the monitoring add-on, infra/program/settings.py).
    cost_monitoring = None
    if monitoring is not None and cost_monitoring_enabled(settings):
        pricing = addons.cost_monitoring.custom_pricing
        cost_monitoring = CostMonitoring(
            f"{name}-cost-monitoring",
            CostMonitoringArgs(
                cluster_name=settings.cluster_name,
                prometheus_url=PROMETHEUS_URL,
                system_node_selector=system_nodes,
                custom_pricing=None
                if pricing is None
                else CustomPricing(pricing.cpu_hourly, pricing.ram_gib_hourly, pricing.gpu_hourly),
                monitoring=(monitoring.release,),
                image_mirror=mirror,
            ),
            on_cluster,
        )

    # Kueue: a queue per tenant over the GPU pools, spot first; the LocalQueues live in the tenants' namespaces.
    batch_queue = None
    flavors = batch_flavors(settings, cluster) if batch_queue_enabled(settings) else []
    if flavors:
        batch_queue = BatchQueue(
            f"{name}-batch-queue",
            BatchQueueArgs(
                environment=settings.environment,
                system_node_selector=system_nodes,
                flavors=tuple(flavors),
                queues=tuple(batch_queues(settings, flavors)),
                service_monitor=monitoring is not None,
                monitoring=(monitoring.release,) if monitoring else (),
                namespaces=dict(model_store.model_namespaces) if model_store else {},
                image_mirror=mirror,
            ),
            on_cluster,
        )

    local_model_cache = None
    if local_model_cache_on and serving is not None and serving.kserve is not None and model_store is not None:
        local_model_cache = LocalModelCachePlatform(
            f"{name}-local-model-cache",
            LocalModelCacheArgs(
                pools=local_cache_pools,
                tolerations=tuple(tolerations_of(gpu_pools(cluster))),
                depends_on=(serving.kserve, *model_store.download_accounts.values()),
                image_mirror=mirror,
            ),
            on_cluster,
        )

    # KEDA for models in KServe's Standard mode; KServe's controller creates their ScaledObjects.
    keda = None
    if keda_enabled(settings):
        keda = Keda(
            f"{name}-keda",
            KedaArgs(system_node_selector=system_nodes, image_mirror=mirror),
            on_cluster,
        )

    return Platform(
        keda=keda,
        local_model_cache=local_model_cache,
        cost_monitoring=cost_monitoring,
        batch_queue=batch_queue,
        monitoring=monitoring,
        cert_manager=cert_manager,
        cluster_autoscaler=cluster_autoscaler,
        karpenter_monitor=karpenter_monitor,
        model_server_monitor=model_monitor,
        gpu=gpu,
        mesh=mesh,
        serving=serving,
        progressive_delivery=progressive_delivery,
        model_store=model_store,
        priorities=priorities,
        tenants=tenants,
        entry_tls=entry_tls,
        gateway_api_crds=gateway_api_crds,
        llm_serving=llm_serving,
    )
