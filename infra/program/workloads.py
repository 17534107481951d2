"""Settings + cluster + platform -> what runs on the platform: the catalog models (infra/program/models.py),
alert rules and dashboards."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Optional, Sequence, Union

import pulumi

from components.alerting import Alerting, AlertingArgs
from components.batch_jobs import BatchInferenceJob
from components.cluster import KubernetesCluster, gpu_pools, system_node_selector
from components.dashboards import Dashboards, DashboardsArgs
from components.entry_auth import EntryAuth, EntryAuthArgs, external_hosts
from components.entry_limits import EntryLimits, EntryLimitsArgs
from components.mesh import GATEWAY_PIN, GATEWAY_SELECTOR
from components.models import ENTRY_LABEL, ENTRY_LABEL_VALUE
from components.notebooks import NotebookOAuth, Notebooks, NotebooksArgs
from infra.program.batch import batch_job_args
from infra.program.model_catalog import load_catalog
from infra.program.models import Models, deploy_models, model_specs
from infra.program.platform import Platform
from infra.program.settings import AwsStack, ExistingStack, GcpStack
from infra.program.tenancy import model_namespace, tenant_plans

Settings = Union[AwsStack, GcpStack, ExistingStack]


@dataclass(frozen=True)
class Workloads:
    models: Models
    alerts: Optional[Alerting]
    dashboards: Optional[Dashboards]
    # Tenant name -> its JupyterHub, for tenants with `notebooks`.
    notebooks: Mapping[str, Notebooks] = field(default_factory=dict)
    # Tokens checked at the gateway (auth mode jwt with the Istio mesh).
    entry_auth: Optional[EntryAuth] = None
    # Per-model rate and body size limits at the gateway (with the Istio mesh and KServe models).
    entry_limits: Optional[EntryLimits] = None
    # Batch job name -> its queued Job (manifests/batch/, `batchJobs`).
    batch_jobs: Mapping[str, BatchInferenceJob] = field(default_factory=dict)


def capabilities(settings: Settings, cluster: KubernetesCluster, platform: Optional[Platform] = None) -> frozenset[str]:
    """What the environment runs that alert rules and dashboards may require (components/alerting.py)."""
    addons = settings.platform
    available = {name for name in ("istio", "knative", "kserve", "flagger") if getattr(addons, name).enabled}
    if gpu_pools(cluster):
        available.add("gpu")
    if any(pool.autoscaler == "karpenter" for pool in cluster.node_pools):
        available.add("karpenter")  # an EKS stack whose GPU pools are Karpenter NodePools (components/karpenter.py)
    if platform is not None and platform.cost_monitoring is not None:
        available.add("opencost")
    if platform is not None and platform.batch_queue is not None:
        available.add("kueue")
    return frozenset(available)


def notebooks_args(
    settings: Settings, tenant: str, cluster: KubernetesCluster, depends_on: Sequence[pulumi.Resource] = ()
) -> NotebooksArgs:
    """A tenant's `notebooks` settings as the component's arguments."""
    notebooks = settings.tenants[tenant].notebooks
    assert notebooks is not None, f"tenant {tenant} has no notebooks"
    oauth = notebooks.oauth
    return NotebooksArgs(
        tenant=tenant,
        namespace=settings.tenant_namespace(tenant),
        environment=settings.environment,
        gpu_pools=gpu_pools(cluster),
        system_node_selector=system_node_selector(cluster),
        auth=notebooks.auth,
        oauth=None
        if oauth is None
        else NotebookOAuth(
            authorize_url=oauth.authorize_url,
            token_url=oauth.token_url,
            userdata_url=oauth.userdata_url,
            client_id=oauth.client_id,
            client_secret_name=oauth.client_secret_name,
            allowed_groups=tuple(oauth.allowed_groups),
        ),
        idle_timeout_minutes=notebooks.idle_timeout_minutes,
        max_servers=notebooks.max_servers,
        cpu=notebooks.cpu,
        memory=notebooks.memory,
        image_mirror=settings.platform.image_mirror,
        # Only the kinds of GPU the tenant's quota grants are offered as server profiles.
        gpu_quota=dict(settings.tenants[tenant].quota.gpus),
        depends_on=tuple(depends_on),
    )


def deploy_notebooks(settings: Settings, cluster: KubernetesCluster, platform: Platform) -> dict[str, Notebooks]:
    """JupyterHub in each tenant's namespace that asks for notebooks (infra/program/settings.py requires the
    model store, which makes the namespaces)."""
    wanted = [name for name, tenant in settings.tenants.items() if tenant.notebooks is not None]
    if not wanted:
        return {}
    store = platform.model_store
    assert store is not None, "infra/program/settings.py tenant_problems requires the model store for tenants"
    on_cluster = pulumi.ResourceOptions(providers={"kubernetes": cluster.provider})
    # User pods name `interactive` and count against the tenant's quota: both exist first.
    priorities = list(platform.priorities.classes.values())
    return {
        tenant: Notebooks(
            f"{settings.cluster_name}-notebooks-{tenant}",
            notebooks_args(
                settings,
                tenant,
                cluster,
                depends_on=(
                    store.model_namespaces[settings.tenant_namespace(tenant)],
                    *priorities,
                    platform.tenants[tenant],
                ),
            ),
            on_cluster,
        )
        for tenant in wanted
    }


def protect_entry(settings: Settings, cluster: KubernetesCluster, platform: Platform) -> Optional[EntryAuth]:
    """JWT authentication and per-tenant authorization at the ingress gateway (components/entry_auth.py)."""
    auth = settings.auth
    if auth.mode != "jwt" or platform.mesh is None:
        return None
    assert auth.issuer is not None and auth.jwks_uri is not None, "AuthSettings requires both with mode jwt"
    served: dict[str, tuple[str, list[str]]] = {plan.name: (plan.namespace, []) for plan in tenant_plans(settings)}
    by_namespace = {namespace: name for name, (namespace, _) in served.items()}
    catalog = load_catalog()
    llm_namespaces = frozenset(model_namespace(settings, m) for m in settings.models if catalog[m].api == "LLMInferenceService")
    # Only KServe models have hosts on the gateway; a Flagger-released Deployment is reached inside the mesh.
    for model in settings.models:
        # An LLMInferenceService has no host on it: its pods check the token themselves (the namespace policies).
        if catalog[model].serving == "kserve" and catalog[model].api == "InferenceService":
            served[by_namespace[model_namespace(settings, model)]][1].append(model)
    return EntryAuth(
        f"{settings.cluster_name}-entry-auth",
        EntryAuthArgs(
            issuer=auth.issuer,
            jwks_uri=auth.jwks_uri,
            audiences=tuple(auth.audiences),
            tenant_claim=auth.tenant_claim,
            domain=settings.platform.knative.domain,
            gateway_namespace=GATEWAY_PIN.namespace,
            gateway_selector=GATEWAY_SELECTOR,
            tenants={name: (namespace, tuple(models)) for name, (namespace, models) in served.items()},
            model_selector={ENTRY_LABEL: ENTRY_LABEL_VALUE},
            llm_namespaces=llm_namespaces,
            # Istio's CRDs come with istio-base; the gateway's pods are what the policies select; the tenants'
            # components hold the namespaces the per-namespace policies go in.
            depends_on=(platform.mesh.gateway, *platform.tenants.values()),
        ),
        pulumi.ResourceOptions(providers={"kubernetes": cluster.provider}),
    )


def limit_entry(settings: Settings, cluster: KubernetesCluster, platform: Platform) -> Optional[EntryLimits]:
    """Each KServe model's rate and body size limits on the ingress gateway (components/entry_limits.py)."""
    if platform.mesh is None:
        return None
    domain = settings.platform.knative.domain
    models = [
        (spec, tuple(external_hosts(spec.name, model_namespace(settings, spec.name), domain)))
        for spec in model_specs(settings)
        # An LLMInferenceService is reached through the Gateway API gateway, not this one (components/llm_serving.py).
        if spec.serving == "kserve" and spec.api == "InferenceService"
    ]
    if not models:
        return None
    return EntryLimits(
        f"{settings.cluster_name}-entry-limits",
        EntryLimitsArgs(
            gateway_namespace=GATEWAY_PIN.namespace,
            gateway_selector=GATEWAY_SELECTOR,
            models=tuple(models),
            depends_on=(platform.mesh.gateway,),
        ),
        pulumi.ResourceOptions(providers={"kubernetes": cluster.provider}),
    )


def deploy_batch_jobs(settings: Settings, cluster: KubernetesCluster, platform: Platform) -> dict[str, BatchInferenceJob]:
    """The stack's batch jobs, each in its tenant's namespace behind the batch queue (infra/program/settings.py
    requires the queue and the model store for them)."""
    if not settings.batch_jobs:
        return {}
    store, queue = platform.model_store, platform.batch_queue
    assert store is not None and queue is not None, "infra/program/settings.py batch_problems requires both"
    on_cluster = pulumi.ResourceOptions(providers={"kubernetes": cluster.provider})
    jobs = {}
    for args in batch_job_args(settings, store):
        namespace = args.storage.namespace
        tenants = list(platform.tenants.values())
        # The namespace (with the store's Secret), its LocalQueue, the batch PriorityClass and the tenants' quotas.
        waits = [
            store.model_namespaces[namespace],
            queue.local_queues[namespace],
            platform.priorities.classes["batch"],
            *tenants,
        ]
        jobs[args.name] = BatchInferenceJob(
            f"{settings.cluster_name}-batch-{args.name}", replace(args, depends_on=tuple(waits)), on_cluster
        )
    return jobs


def build_workloads(settings: Settings, cluster: KubernetesCluster, platform: Platform) -> Workloads:
    # Alert rules and dashboards are read by the Prometheus and Grafana of the monitoring add-on; a
    # cluster without it may have no PrometheusRule CRD at all.
    models = deploy_models(settings, cluster, platform)
    notebooks = deploy_notebooks(settings, cluster, platform)
    entry_auth = protect_entry(settings, cluster, platform)
    entry_limits = limit_entry(settings, cluster, platform)
    batch_jobs = deploy_batch_jobs(settings, cluster, platform)
    if platform.monitoring is None:
        return Workloads(
            models=models,
            alerts=None,
            dashboards=None,
            notebooks=notebooks,
            entry_auth=entry_auth,
            entry_limits=entry_limits,
            batch_jobs=batch_jobs,
        )
    name = settings.cluster_name
    available = capabilities(settings, cluster, platform)
    # After the monitoring release: it installs the PrometheusRule CRD and the namespace both use.
    after_monitoring = pulumi.ResourceOptions(
        providers={"kubernetes": cluster.provider}, depends_on=[platform.monitoring.release]
    )
    alerts = Alerting(
        f"{name}-alerts", AlertingArgs(environment=settings.environment, capabilities=available), after_monitoring
    )
    dashboards = Dashboards(f"{name}-dashboards", DashboardsArgs(capabilities=available), after_monitoring)
    return Workloads(
        models=models,
        alerts=alerts,
        dashboards=dashboards,
        notebooks=notebooks,
        entry_auth=entry_auth,
        entry_limits=entry_limits,
        batch_jobs=batch_jobs,
    )
