"""Settings + cluster -> the batch queue's flavors and queues (components/batch_queue.py) and the batch jobs
a stack runs (components/batch_jobs.py)."""

from __future__ import annotations

from typing import Union

from components.batch_jobs import BatchJobArgs
from components.batch_queue import BatchFlavor, BatchQueueSpec
from components.cluster import KubernetesCluster, gpu_pools
from components.model_store import MODEL_NAMESPACE, ModelStore
from components.models import ModelStorage
from components.node_pools import GPU_RESOURCE
from infra.program.batch_catalog import load_batch_catalog
from infra.program.model_catalog import CatalogModel, load_catalog
from infra.program.settings import AwsStack, ExistingStack, GcpStack, ManagedGpuPool
from infra.program.tenancy import tenant_plans

Settings = Union[AwsStack, GcpStack, ExistingStack]


def batch_flavors(settings: Settings, cluster: KubernetesCluster) -> list[BatchFlavor]:
    """One flavor per GPU pool of whole GPUs: its labels, its taints, spot or not, and the GPUs it holds."""
    flavors = []
    for pool in gpu_pools(cluster):
        if pool.mig_layout or GPU_RESOURCE not in pool.extended_resources:
            continue
        configured = settings.gpu_pools[pool.name]
        nodes = configured.max_size if isinstance(configured, ManagedGpuPool) else configured.node_count
        flavors.append(
            BatchFlavor(
                name=pool.name,
                node_labels=pool.node_selector,
                tolerations=tuple(pool.tolerations),
                spot=pool.may_run_on_spot,
                gpus=pool.extended_resources[GPU_RESOURCE] * nodes,
            )
        )
    return flavors


def batch_queues(settings: Settings, flavors: list[BatchFlavor]) -> list[BatchQueueSpec]:
    """A queue per tenant, sized to stay within the tenant's ResourceQuotas (components/batch_queue.py):
    its batch quota as nominal quota, or, without one, nothing nominal and its guaranteed GPUs to borrow.
    A stack without tenants has one queue holding every GPU of the flavors."""
    if not settings.tenants:
        return [BatchQueueSpec(MODEL_NAMESPACE, MODEL_NAMESPACE, sum(f.gpus for f in flavors), 0)]
    queues = []
    for plan in tenant_plans(settings):
        batch = plan.batch_gpus.get(GPU_RESOURCE, 0)
        guaranteed = plan.gpus.get(GPU_RESOURCE, 0)
        queues.append(BatchQueueSpec(plan.name, plan.namespace, batch, 0 if batch else guaranteed))
    return queues


def batch_engine_args(model: CatalogModel) -> tuple[str, ...]:
    """vLLM's arguments for a batch job: the model's own (without the Hugging Face server's --backend) and its
    serving profile for its catalog GPU type, which the batch pools' GPU types share (servingProfiles)."""
    profile = model.serving_profiles.get(model.resources.gpu_type or "")
    own = tuple(arg for arg in model.args if not arg.startswith("--backend"))
    return own + (profile.engine_args() if profile else ())


def batch_job_args(settings: Settings, store: ModelStore) -> list[BatchJobArgs]:
    """Each listed batch job, resolved against the catalogs (infra/program/settings.py checked them)."""
    jobs = load_batch_catalog()
    catalog = load_catalog()
    args = []
    for name, override in sorted(settings.batch_jobs.items()):
        job = jobs[name]
        model = catalog[job.model]
        namespace = settings.tenant_namespace(override.tenant) if override.tenant else MODEL_NAMESPACE
        args.append(
            BatchJobArgs(
                image_mirror=settings.platform.image_mirror,
                name=name,
                model=model.name,
                model_storage_path=model.storage_path,
                vllm_args=batch_engine_args(model),
                cpu=model.resources.cpu,
                memory=model.resources.memory,
                input_prefix=job.input_prefix,
                output_prefix=job.output_prefix,
                shards=job.shards,
                parallelism=override.parallelism or job.parallelism,
                retries_per_shard=job.retries_per_shard,
                max_failed_shards=job.max_failed_shards,
                storage=ModelStorage(
                    namespace=namespace,
                    service_account=store.service_account_name,
                    secret_name=store.secret_name,
                    endpoint=store.endpoint,
                    use_https=store.use_https,
                    region=store.region,
                ),
            )
        )
    return args
