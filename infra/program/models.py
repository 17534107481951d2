"""Settings + platform -> the catalog models a stack serves (components/models.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Optional, Sequence, Union

import pulumi

from components.cluster import KubernetesCluster, gpu_pools, pool_resources, system_node_selector
from components.entry_limits import with_tier_limits
from components.model_import import ModelImport, ModelImportArgs
from components.local_model_cache import CachedModel, cache_manifest
from components.models import (
    CanaryMetrics,
    CanaryModel,
    KServeModel,
    LlmModel,
    ModelArgs,
    ModelStorage,
    pools_for,
    served_storage_uri,
)
from components.model_store import MODEL_NAMESPACE
from components.observability import PROMETHEUS_URL
from infra.program.model_catalog import ModelSpec, resolve_all
from infra.program.platform import Platform
from infra.program.settings import AwsStack, ExistingStack, GcpStack
from infra.program.tenancy import model_namespace, model_priority_class

Settings = Union[AwsStack, GcpStack, ExistingStack]


@dataclass(frozen=True)
class Models:
    kserve: tuple[KServeModel, ...]
    canaries: tuple[CanaryModel, ...]
    # Namespace -> the MetricTemplates its Canaries reference.
    canary_metrics: Mapping[str, CanaryMetrics]
    # Model name -> the Job copying it from Hugging Face, for models whose catalog entry has a `source`.
    imports: Mapping[str, ModelImport] = field(default_factory=dict)
    # Model name -> its LocalModelCache, for models cached on local NVMe.
    caches: Mapping[str, CachedModel] = field(default_factory=dict)
    # Models served as LLMInferenceServices (catalog `api: LLMInferenceService`).
    llm: tuple[LlmModel, ...] = ()


def model_specs(settings: Settings) -> list[ModelSpec]:
    """The stack's models as it runs them: catalog entry, the stack's override, priority class, and the entry's
    limits the catalog and the stack leave open taken from the tier (components/entry_limits.py)."""
    return [
        with_tier_limits(replace(spec, priority_class=model_priority_class(settings, spec)), settings.environment)
        for spec in resolve_all(settings.models)
    ]


def deploy_models(settings: Settings, cluster: KubernetesCluster, platform: Platform) -> Models:
    if not settings.models:
        return Models(kserve=(), canaries=(), canary_metrics={})
    store = platform.model_store
    assert store is not None, "infra/program/settings.py model_problems requires the model store for models"
    on_cluster = pulumi.ResourceOptions(providers={"kubernetes": cluster.provider})

    def storage_for(spec: ModelSpec) -> ModelStorage:
        # Each model reads the store from its tenant's namespace (or the one `models` namespace).
        return ModelStorage(
            namespace=model_namespace(settings, spec.name),
            service_account=store.service_account_name,
            secret_name=store.secret_name,
            endpoint=store.endpoint,
            use_https=store.use_https,
            region=store.region,
        )

    accounts = tuple(store.service_accounts.values())
    pools = gpu_pools(cluster)
    specs = model_specs(settings)
    # Pods name their class and run under their tenant's quota: both exist first.
    guardrails = [*platform.priorities.classes.values(), *platform.tenants.values()]

    # A model copied from Hugging Face (components/model_import.py): its Job runs after the store's Tenant and
    # the namespace's credentials exist, and the model waits for the Job to complete. Where the batch queue
    # runs, also after Kueue: its Job webhook (failurePolicy Fail) admits every Job of the tenant namespaces.
    batch_queue = [platform.batch_queue.release] if platform.batch_queue is not None else []
    imports = {
        spec.name: ModelImport(
            f"{settings.cluster_name}-model-{spec.name}-import",
            ModelImportArgs(
                spec=spec,
                storage=storage_for(spec),
                system_node_selector=system_node_selector(cluster),
                depends_on=(store.tenant, *accounts, *batch_queue),
                image_mirror=settings.platform.image_mirror,
            ),
            on_cluster,
        )
        for spec in specs
        if spec.source is not None
    }

    def args_for(spec: ModelSpec, releases: Sequence[pulumi.Resource], loadtester_url: str = "") -> ModelArgs:
        # Every model waits for the releases serving its kind and for the store's ServiceAccounts, a GPU
        # model also for the pools it can land on, so `pulumi destroy` removes it before its nodes, and a
        # model from Hugging Face for the Job that copies its weights.
        nodes = pool_resources(cluster, pools_for(spec, pools)) if spec.gpu else []
        copied = [imports[spec.name].job] if spec.name in imports else []
        return ModelArgs(
            spec=spec,
            environment=settings.environment,
            storage=storage_for(spec),
            gpu_pools=pools,
            depends_on=(*releases, *accounts, *guardrails, *nodes, *copied),
            loadtester_url=loadtester_url,
            image_mirror=settings.platform.image_mirror,
            prometheus_url=PROMETHEUS_URL,
        )

    # Weights on local NVMe: a LocalModelCache for each model that opts in, over the node groups of the pools it can
    # land on; the InferenceService comes after it, so KServe finds the cache when it first reconciles the model.
    caches: dict[str, CachedModel] = {}
    cache_platform = platform.local_model_cache
    if cache_platform is not None:
        for spec in specs:
            # Only where the model's one pool caches: with several node groups KServe mounts the first one's volume
            # (kserve/kserve#5914), whose node affinity would keep the model off its other pools.
            groups = [pool.name for pool in pools_for(spec, pools)]
            if not spec.local_cache_gb or spec.serving != "kserve" or len(groups) != 1:
                continue
            if groups[0] not in cache_platform.node_groups:
                continue
            caches[spec.name] = CachedModel(
                f"{settings.cluster_name}-model-{spec.name}-local-cache",
                cache_manifest(spec.name, served_storage_uri(spec), spec.local_cache_gb, groups, store.service_account_name),
                [*(cache_platform.node_groups[group] for group in groups), *store.download_accounts.values()],
                on_cluster,
            )

    serving = platform.serving
    kserve_ready = [r for r in (serving.runtimes, serving.kserve) if r is not None] if serving else []
    # A KEDA-scaled model after KEDA: KServe creates its ScaledObject at once, which needs KEDA's CRDs.
    keda_ready = [platform.keda.release] if platform.keda is not None else []
    kserve_models = tuple(
        KServeModel(
            f"{settings.cluster_name}-model-{spec.name}",
            args_for(
                spec,
                [
                    *kserve_ready,
                    *(keda_ready if spec.autoscaler == "keda" else []),
                    *([caches[spec.name].cache] if spec.name in caches else []),
                ],
            ),
            on_cluster,
        )
        for spec in specs
        if spec.serving == "kserve" and spec.api == "InferenceService"
    )
    # After the llmisvc controller and its presets (kserve-runtime-configs), and the Gateway its route attaches to.
    llm_ready = [*kserve_ready, *([serving.llmisvc] if serving and serving.llmisvc else [])]
    if platform.llm_serving is not None:
        llm_ready.append(platform.llm_serving.gateway)
    llm_models = tuple(
        LlmModel(
            f"{settings.cluster_name}-model-{spec.name}",
            # KServe (since v0.19, kserve/kserve#5318) gives an LLMInferenceService the cache whose source URI is its
            # model's, so the cache comes first here too.
            args_for(spec, [*llm_ready, *([caches[spec.name].cache] if spec.name in caches else [])]),
            on_cluster,
        )
        for spec in specs
        if spec.serving == "kserve" and spec.api == "LLMInferenceService"
    )

    delivery = platform.progressive_delivery
    plain = [spec for spec in specs if spec.serving == "deployment"]
    canary_models: tuple[CanaryModel, ...] = ()
    metrics: dict[str, CanaryMetrics] = {}
    if plain:
        assert delivery is not None, "infra/program/settings.py model_problems requires Flagger for deployment models"
        flagger = (delivery.release, delivery.loadtester)
        for namespace in sorted({model_namespace(settings, spec.name) for spec in plain}):
            # The `models` namespace keeps the name it had before tenants, so its templates are not replaced.
            suffix = "" if namespace == MODEL_NAMESPACE else f"-{namespace}"
            metrics[namespace] = CanaryMetrics(
                f"{settings.cluster_name}-canary-metrics{suffix}", namespace, PROMETHEUS_URL, flagger, on_cluster
            )
        canary_models = tuple(
            CanaryModel(
                f"{settings.cluster_name}-model-{spec.name}",
                args_for(spec, flagger, loadtester_url=delivery.loadtester_url),
                on_cluster,
            )
            for spec in plain
        )
    return Models(
        kserve=kserve_models, canaries=canary_models, canary_metrics=metrics, imports=imports, caches=caches, llm=llm_models
    )
