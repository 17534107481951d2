"""Settings -> the teams sharing the cluster: each tenant's namespace, quotas and the priority of its models.

A stack without `tenants` is one implicit tenant, the `models` namespace, whose GPU quota is what the pools
hold at their maximum size: nothing changes for a small setup, and every namespace running GPU pods still
has a GPU quota (the policy pack requires one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Union

from components.model_store import MODEL_NAMESPACE
from components.priorities import model_priority
from components.tenancy import TENANT_LABEL
from infra.program.model_catalog import ModelSpec
from infra.program.settings import AwsStack, ExistingStack, GcpStack, pool_capacity

Settings = Union[AwsStack, GcpStack, ExistingStack]


@dataclass(frozen=True)
class TenantPlan:
    name: str
    namespace: str
    gpus: Mapping[str, int]
    batch_gpus: Mapping[str, int]
    cpu: Optional[str]
    memory: Optional[str]
    pods: Optional[int]


def tenant_plans(settings: Settings) -> list[TenantPlan]:
    if not settings.tenants:
        return [
            TenantPlan(
                name=MODEL_NAMESPACE,
                namespace=MODEL_NAMESPACE,
                gpus=pool_capacity(settings),
                batch_gpus={},
                cpu=None,
                memory=None,
                pods=None,
            )
        ]
    return [
        TenantPlan(
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


def namespace_labels(settings: Settings) -> dict[str, dict[str, str]]:
    return {plan.namespace: {TENANT_LABEL: plan.name} for plan in tenant_plans(settings)}


def model_namespace(settings: Settings, model: str) -> str:
    tenant = settings.models[model].tenant
    return settings.tenant_namespace(tenant) if tenant is not None else MODEL_NAMESPACE


def model_priority_class(settings: Settings, spec: ModelSpec) -> str:
    """The priority class of a model's pods: from its purpose, its tenant's choice and the tier."""
    tenant = settings.models[spec.name].tenant
    chosen = settings.tenants[tenant].priority if tenant is not None else None
    return model_priority(settings.environment, spec.purpose, chosen)
