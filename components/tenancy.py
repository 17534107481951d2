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
- NetworkPolicy `default-deny`: no ingress and no egress for any pod of the namespace, and `allow-platform`
  with the exceptions the platform needs (below). NetworkPolicies add up: a pod may do what any policy
  selecting it allows, so a chart's own policies (JupyterHub's) keep working on top.

The allows (`NetworkIsolation`): ingress from the namespace itself and from the platform namespaces that
call models (the Istio gateway, Knative's activator and autoscaler, Prometheus, Flagger's load tester);
egress to DNS, to istiod (the sidecars' configuration), to the model store's S3 port and within the
namespace. A Hugging Face import Job (components/model_import.py) also reaches the internet on 443, never
a private address. Enforcement needs a network plugin that implements NetworkPolicy: GKE Dataplane V2,
the EKS VPC CNI with its network policy agent, or the existing cluster's own (docs/one-h100.md).

GPU quotas name extended resources with the `requests.` prefix only: Kubernetes does not overcommit them,
so `requests.nvidia.com/mig-1g.10gb` is the whole rule (resource-quotas, "Resource quota for extended
resources").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.model_import import IMPORT_POD_LABELS
from components.priorities import BATCH

TENANT_LABEL = "gpu-platform/tenant"
QUOTA_TOTAL = "tenant"
QUOTA_GUARANTEED = "guaranteed"
QUOTA_BATCH = "batch"
LIMIT_RANGE = "defaults"
DEFAULT_DENY = "default-deny"
ALLOW_PLATFORM = "allow-platform"
ALLOW_IMPORT_EGRESS = "allow-model-import-egress"
ALLOW_API_SERVER_EGRESS = "allow-api-server-egress"
# The API server's ports: 443 behind the cloud's endpoint (EKS, GKE), 6443 on a kubeadm-style cluster.
API_SERVER_PORTS = (443, 6443)
# Private and link-local ranges an import Job must not reach (the cloud metadata server is link-local).
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10")

# Per container, when it sets none: small enough that a forgotten sidecar does not eat a tenant's quota,
# large enough to start. Models and notebooks always set their own.
DEFAULT_REQUEST = {"cpu": "100m", "memory": "128Mi"}
DEFAULT_LIMIT = {"cpu": "1", "memory": "1Gi"}


@dataclass(frozen=True)
class NetworkIsolation:
    """What a tenant's pods may reach and be reached by, besides each other."""

    ingress_from: tuple[str, ...]  # namespaces whose pods may call the tenant's pods
    egress_to: Mapping[str, tuple[int, ...]]  # namespace -> TCP ports the tenant's pods may call there
    dns_namespace: str = "kube-system"
    # Pods (by label) that also reach the Kubernetes API server: an LLMInferenceService's endpoint picker watches
    # its InferencePool and pods (components/llm_serving.py). None: no such pods.
    api_server_clients: Optional[Mapping[str, str]] = None


@dataclass(frozen=True)
class TenantArgs:
    name: str
    namespace: str
    gpus: Mapping[str, int]  # guaranteed, by resource name (nvidia.com/gpu, nvidia.com/mig-1g.10gb)
    batch_gpus: Mapping[str, int] = field(default_factory=dict)
    cpu: Optional[str] = None  # total CPU requests; None: no cap
    memory: Optional[str] = None
    pods: Optional[int] = None
    network: Optional[NetworkIsolation] = None  # None: no NetworkPolicies (a cluster that cannot enforce them)
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


def _namespace_peer(namespace: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def network_policies(args: TenantArgs) -> dict[str, dict]:
    """The NetworkPolicy specs of one tenant namespace, by name."""
    if args.network is None:
        return {}
    net = args.network
    same_namespace = {"podSelector": {}}
    dns = {
        "to": [_namespace_peer(net.dns_namespace)],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    egress = [
        {"to": [same_namespace]},
        dns,
        *(
            {"to": [_namespace_peer(namespace)], "ports": [{"protocol": "TCP", "port": port} for port in ports]}
            for namespace, ports in sorted(net.egress_to.items())
        ),
    ]
    policies = {
        DEFAULT_DENY: {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        ALLOW_PLATFORM: {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [same_namespace, *(_namespace_peer(n) for n in net.ingress_from)]}],
            "egress": egress,
        },
        ALLOW_IMPORT_EGRESS: {
            "podSelector": {"matchLabels": dict(IMPORT_POD_LABELS)},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_RANGES)}}],
                    "ports": [{"protocol": "TCP", "port": 443}],
                }
            ],
        },
    }
    if net.api_server_clients:
        # The API server has no namespace or label a NetworkPolicy could name (its address is the cloud's
        # endpoint or the nodes'), so these pods alone may open its ports anywhere.
        policies[ALLOW_API_SERVER_EGRESS] = {
            "podSelector": {"matchLabels": dict(net.api_server_clients)},
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"protocol": "TCP", "port": port} for port in API_SERVER_PORTS]}],
        }
    return policies


class Tenant(pulumi.ComponentResource):
    quotas: dict[str, k8s.core.v1.ResourceQuota]
    limit_range: k8s.core.v1.LimitRange
    network_policies: dict[str, k8s.networking.v1.NetworkPolicy]

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
        self.network_policies = {
            policy_name: k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy_name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=policy_name, namespace=args.namespace, labels=labels),
                spec=spec,
                opts=child,
            )
            for policy_name, spec in network_policies(args).items()
        }
        self.register_outputs({})
