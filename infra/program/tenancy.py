"""Settings -> the teams sharing the cluster: each tenant's namespace, quotas and the priority of its models.

A stack without `tenants` is one implicit tenant, the `models` namespace, whose GPU quota is what the pools
hold at their maximum size: nothing changes for a small setup, and every namespace running GPU pods still
has a GPU quota (the policy pack requires one).
"""

from __future__ import annotations

from typing import Union

from components.model_store import MODEL_NAMESPACE
from components.priorities import model_priority
from components.tenancy import TenantArgs
from infra.program.model_catalog import ModelSpec
from infra.program.settings import AwsStack, ExistingStack, GcpStack, pool_capacity

Settings = Union[AwsStack, GcpStack, ExistingStack]


def tenant_plans(settings: Settings) -> list[TenantArgs]:
    """Each tenant's namespace and quotas; the platform layer adds its network isolation and what it waits for."""
    if not settings.tenants:
        return [TenantArgs(name=MODEL_NAMESPACE, namespace=MODEL_NAMESPACE, gpus=pool_capacity(settings))]
    return [
        TenantArgs(
            name=name,
            namespace=settings.tenant_namespace(name),
            gpus=dict(tenant.quota.gpus),
            batch_gpus=dict(tenant.batch_quota.gpus),
            cpu=tenant.quota.cpu,
            memory=tenant.quota.memory,
            pods=tenant.quota.pods,
        )
        for name, tenant in settings.tenants.items()
    ]


def model_namespace(settings: Settings, model: str) -> str:
    tenant = settings.models[model].tenant
    return settings.tenant_namespace(tenant) if tenant is not None else MODEL_NAMESPACE


def model_priority_class(settings: Settings, spec: ModelSpec) -> str:
    """The priority class of a model's pods: from its purpose, its tenant's choice and the tier."""
    tenant = settings.models[spec.name].tenant
    chosen = settings.tenants[tenant].priority if tenant is not None else None
    return model_priority(settings.environment, spec.purpose, chosen)
