"""Tenants: the guardrails of a team's namespace. The namespace itself is the model store's (it holds the
store's credentials, components/model_store.py); this component adds what keeps one team within its share.

Per tenant namespace:
- ResourceQuota `tenant` (no scope): everything the namespace may hold at once: pods, CPU and memory
  requests, and each GPU resource at its guaranteed plus batch quota. It is also the cap for a pod that
  names no priority class, which the other two scopes do not see.
- ResourceQuota `guaranteed`, scoped to every priority class but `batch`: the GPUs the team's serving
  models and notebooks may use. Resources listed only in the batch quota are 0 here.
- ResourceQuota `batch`, scoped to PriorityClass `batch`: what preemptible work may use on top, so batch
  work never takes the guaranteed share (https://kubernetes.io/docs/concepts/policy/resource-quotas/
  #resource-quota-per-priorityclass). Only with a batch quota.
- LimitRange `defaults`: a container that sets no requests or limits gets these, so nothing runs
  unaccounted (a quota on `requests.cpu` would otherwise refuse such pods outright:
  https://kubernetes.io/docs/concepts/policy/limit-range/).

GPU quotas name extended resources with the `requests.` prefix only: Kubernetes does not overcommit them,
so `requests.nvidia.com/mig-1g.10gb` is the whole rule (resource-quotas, "Resource quota for extended
resources").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.priorities import BATCH

TENANT_LABEL = "gpu-platform/tenant"
QUOTA_TOTAL = "tenant"
QUOTA_GUARANTEED = "guaranteed"
QUOTA_BATCH = "batch"
LIMIT_RANGE = "defaults"

# Per container, when it sets none: small enough that a forgotten sidecar does not eat a tenant's quota,
# large enough to start. Models and notebooks always set their own.
DEFAULT_REQUEST = {"cpu": "100m", "memory": "128Mi"}
DEFAULT_LIMIT = {"cpu": "1", "memory": "1Gi"}


@dataclass(frozen=True)
class TenantArgs:
    name: str
    namespace: str
    gpus: Mapping[str, int]  # guaranteed, by resource name (nvidia.com/gpu, nvidia.com/mig-1g.10gb)
    batch_gpus: Mapping[str, int] = field(default_factory=dict)
    cpu: Optional[str] = None  # total CPU requests; None: no cap
    memory: Optional[str] = None
    pods: Optional[int] = None
    # The namespace's resource (the model store's), so the quota waits for it and goes before it.
    depends_on: Sequence[pulumi.Resource] = ()


def _gpu_hard(gpus: Mapping[str, int], every: Sequence[str]) -> dict[str, str]:
    return {f"requests.{resource}": str(gpus.get(resource, 0)) for resource in every}


def quotas(args: TenantArgs) -> dict[str, dict]:
    """The ResourceQuota specs of one tenant, by name."""
    every = sorted({*args.gpus, *args.batch_gpus})
    total_gpus = {r: args.gpus.get(r, 0) + args.batch_gpus.get(r, 0) for r in every}
    total = _gpu_hard(total_gpus, every)
    if args.cpu is not None:
        total["requests.cpu"] = args.cpu
    if args.memory is not None:
        total["requests.memory"] = args.memory
    if args.pods is not None:
        total["pods"] = str(args.pods)
    specs: dict[str, dict] = {QUOTA_TOTAL: {"hard": total}}
    if every:
        specs[QUOTA_GUARANTEED] = {
            "hard": _gpu_hard(args.gpus, every),
            "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "NotIn", "values": [BATCH]}]},
        }
    if args.batch_gpus:
        specs[QUOTA_BATCH] = {
            "hard": _gpu_hard(args.batch_gpus, every),
            "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": [BATCH]}]},
        }
    return specs


class Tenant(pulumi.ComponentResource):
    quotas: dict[str, k8s.core.v1.ResourceQuota]
    limit_range: k8s.core.v1.LimitRange

    def __init__(self, name: str, args: TenantArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:platform:Tenant", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        labels = {TENANT_LABEL: args.name, "app.kubernetes.io/part-of": "gpu-platform"}
        self.quotas = {}
        for quota_name, spec in quotas(args).items():
            self.quotas[quota_name] = k8s.core.v1.ResourceQuota(
                f"{name}-{quota_name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=quota_name, namespace=args.namespace, labels=labels),
                spec=spec,
                opts=child,
            )
        self.limit_range = k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=LIMIT_RANGE, namespace=args.namespace, labels=labels),
            spec=k8s.core.v1.LimitRangeSpecArgs(
                limits=[
                    k8s.core.v1.LimitRangeItemArgs(
                        type="Container", default_request=DEFAULT_REQUEST, default=DEFAULT_LIMIT
                    )
                ]
            ),
            opts=child,
        )
        self.register_outputs({})
