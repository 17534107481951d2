"""Stack rules: checks that need more than one resource.

They run once per deployment over every resource (AnalyzeStack), on the resources' outputs, which
for node pools, Kubernetes objects and providers repeat their inputs (see shapes.py). A check that
names a resource passes its URN, so the engine shows the violation on that resource.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Optional, Sequence

from pulumi_policy import Severity

from . import config
from .builders import StackResource, stack_policy
from .shapes import (
    CANARY,
    DAEMON_SET,
    DEPLOYMENT,
    ENVIRONMENT_TAG,
    GKE_CLUSTER,
    GKE_NODE_POOL,
    GPU_TYPE_LABEL,
    INFERENCE_SERVICE,
    POOL_LABEL,
    SERVICE,
    SERVICE_ACCOUNT,
    NodePool,
    environment_of_provider,
    metadata_name,
    namespace_of,
    node_pools_of,
    pod_fits_labels,
    pod_pool_selection,
    pod_requests_gpu,
    pods_of,
)
from .values import UNKNOWN, as_mapping, get

Finding = tuple[Optional[str], str]


def _kind(resource: StackResource) -> str:
    return resource.type.rsplit(":", 1)[-1]


def _display(resource: StackResource) -> str:
    namespace = namespace_of(resource.props, resource.default_namespace)
    name = metadata_name(resource.props)
    shown = name if isinstance(name, str) else resource.name
    return f"{_kind(resource)} {namespace}/{shown}" if isinstance(namespace, str) else f"{_kind(resource)} {shown}"


def _pools(resources: Sequence[StackResource]) -> list[tuple[StackResource, NodePool]]:
    pools = [(r, pool) for r in resources for pool in node_pools_of(r.type, r.props)]
    # A GKE cluster's `nodePools` output lists every pool in the cluster, the separately declared
    # gcp:container/nodePool:NodePool ones included: count each of those once, as the NodePool.
    separate = {pool.name for r, pool in pools if r.type == GKE_NODE_POOL and pool.name}
    return [(r, pool) for r, pool in pools if not (r.type == GKE_CLUSTER and pool.name in separate)]


def _pool_summary(pool: NodePool) -> str:
    name = pool.labels.get(POOL_LABEL) or pool.name or "(unnamed)"
    types = ", ".join(pool.gpu_types) or "type not labelled"
    return f"{name} ({types})"


# --- GPU workloads have a pool --------------------------------------------------------------------


def check_gpu_workloads_have_pool(resources: Sequence[StackResource]) -> Iterator[Finding]:
    pools = _pools(resources)
    if not pools:
        return  # an existing cluster: its pools are declared in config, not created by this stack
    gpu_pools = [pool for _, pool in pools if pool.gpu]
    offered = "; ".join(_pool_summary(p) for p in gpu_pools) or "none"
    for resource in resources:
        for pod in pods_of(resource.type, resource.props):
            if not pod_requests_gpu(pod) or any(pod_fits_labels(pod.spec, p.node_labels) for p in gpu_pools):
                continue
            selection = pod_pool_selection(pod.spec)
            wanted = (
                ", ".join(f"{key} in {values}" for key, values in selection.items()) if selection else "any GPU pool"
            )
            types = sorted({t for p in gpu_pools for t in p.gpu_types})
            yield (
                resource.urn,
                f"{_display(resource)}: {pod.path} requests a GPU and selects {wanted}, but no GPU node pool in this "
                f"stack matches (GPU pools: {offered}), so its pods would stay Pending. Select a pool the stack has "
                f'({pod.path}.nodeSelector["{GPU_TYPE_LABEL}"] one of {types or "(no GPU pools)"}), or add a GPU pool '
                f"of the wanted type to the stack's gpuPools config.",
            )


# --- InferenceService ServiceAccounts exist ----------------------------------------------------------


def _named_objects(
    resources: Sequence[StackResource], *types: str
) -> tuple[set[tuple[str, str, str]], set[tuple[str, str]]]:
    """{(type, namespace, name)} of declared objects, and {(type, namespace)} where a name is unknown yet."""
    known, unknown = set(), set()
    for resource in resources:
        if resource.type not in types:
            continue
        namespace = namespace_of(resource.props, resource.default_namespace)
        name = metadata_name(resource.props)
        if namespace is UNKNOWN or name is UNKNOWN:
            unknown.add((resource.type, namespace))
        elif isinstance(name, str):
            known.add((resource.type, namespace, name))
    return known, unknown


def check_inference_service_accounts_exist(
    resources: Sequence[StackResource],
    *,
    external_service_accounts: tuple[str, ...] = config.EXTERNAL_SERVICE_ACCOUNTS.default,
) -> Iterator[Finding]:
    accounts, unknown = _named_objects(resources, SERVICE_ACCOUNT)
    for resource in resources:
        if resource.type != INFERENCE_SERVICE:
            continue
        namespace = namespace_of(resource.props, resource.default_namespace)
        if namespace is UNKNOWN or (SERVICE_ACCOUNT, namespace) in unknown:
            continue
        seen = set()
        for pod in pods_of(resource.type, resource.props):
            account = pod.spec.get("serviceAccountName")
            if not isinstance(account, str) or account in ("", "default") or account in seen:
                continue
            seen.add(account)
            if (
                SERVICE_ACCOUNT,
                namespace,
                account,
            ) in accounts or f"{namespace}/{account}" in external_service_accounts:
                continue
            yield (
                resource.urn,
                f"{_display(resource)}: {pod.path}.serviceAccountName is {account!r}, but this stack declares no "
                f"ServiceAccount {namespace}/{account}, so the predictor pods are not created (and could not read the "
                f"model from storage anyway). Declare a kubernetes:core/v1:ServiceAccount named {account} in namespace "
                f"{namespace} with the storage credentials or IAM/Workload Identity annotations it needs, or, if it is "
                f'created outside this stack, list "{namespace}/{account}" in this policy\'s externalServiceAccounts '
                f"config.",
            )


# --- Canary targets exist ------------------------------------------------------------------------------

_CANARY_TARGET_TYPES = {"Deployment": DEPLOYMENT, "DaemonSet": DAEMON_SET, "Service": SERVICE}


def check_canary_targets_exist(
    resources: Sequence[StackResource],
    *,
    external_targets: tuple[str, ...] = config.EXTERNAL_CANARY_TARGETS.default,
) -> Iterator[Finding]:
    targets, unknown = _named_objects(resources, *_CANARY_TARGET_TYPES.values())
    for resource in resources:
        if resource.type != CANARY:
            continue
        reference = get(resource.props, "spec.targetRef")
        namespace = namespace_of(resource.props, resource.default_namespace)
        if reference is UNKNOWN or namespace is UNKNOWN:
            continue
        reference = as_mapping(reference)
        kind, name = reference.get("kind"), reference.get("name")
        if kind is UNKNOWN or name is UNKNOWN:
            continue
        target_type = _CANARY_TARGET_TYPES.get(kind) if isinstance(kind, str) else None
        if target_type is None:
            yield (
                resource.urn,
                f"{_display(resource)}: spec.targetRef.kind is {kind!r}; Flagger targets a Deployment, DaemonSet or "
                f"Service. Set spec.targetRef to the workload the canary rolls out.",
            )
            continue
        if not isinstance(name, str) or (target_type, namespace) in unknown:
            continue
        if (target_type, namespace, name) in targets or f"{namespace}/{name}" in external_targets:
            continue
        yield (
            resource.urn,
            f"{_display(resource)}: spec.targetRef names {kind} {namespace}/{name}, which this stack does not declare, "
            f"so Flagger has nothing to roll out and the canary stays failed. Point spec.targetRef at a {kind} in "
            f'namespace {namespace} that the stack declares, or, if it is created outside this stack, list "{namespace}/'
            f"{name}\" in this policy's externalTargets config.",
        )


# --- no GPU time-slicing in prod -----------------------------------------------------------------------


def stated_tier(environment: str, stack_tags: Optional[Mapping[str, str]]) -> Optional[str]:
    """The tier the policy config or the stack tag states, if any."""
    return environment or (stack_tags or {}).get(ENVIRONMENT_TAG)


def providers_tier(resources: Sequence[StackResource]) -> Optional[str]:
    """The tier any cloud provider of the stack carries in its default tags or labels."""
    return next((e for r in resources if (e := environment_of_provider(r.type, r.props))), None)


def tier_of(
    resources: Sequence[StackResource], environment: str, stack_tags: Optional[Mapping[str, str]]
) -> Optional[str]:
    """The stack's tier: stated (policy config, stack tag), else carried by its cloud providers."""
    return stated_tier(environment, stack_tags) or providers_tier(resources)


def check_no_time_slicing_in_prod(
    resources: Sequence[StackResource],
    *,
    environment: str = config.ENVIRONMENT.default,
    stack_tags: Optional[Mapping[str, str]] = None,
) -> Iterator[Finding]:
    # The tier: this policy's config, else the stack tag, else the pool's provider's default tags or
    # labels, else any cloud provider's in the stack.
    configured = stated_tier(environment, stack_tags)
    stack_wide = providers_tier(resources)
    for resource, pool in _pools(resources):
        if pool.sharing_evidence is None:
            continue
        tier = configured or environment_of_provider(resource.provider_type, resource.provider_props) or stack_wide
        if tier != "prod":
            continue
        name = pool.labels.get(POOL_LABEL) or pool.name or resource.name
        yield (
            resource.urn,
            f"node pool {name!r} shares its GPUs ({pool.sharing_evidence}) in a prod stack: time-sliced or shared GPUs "
            f"give models no memory or fault isolation, so one model can exhaust another's GPU memory and latency "
            f"depends on the neighbours. Set the pool's timeSlicingReplicas to 1 (remove "
            f"guestAccelerators[].gpuSharingConfig on GKE) and keep sharing to dev and staging.",
        )


# --- the policies ---------------------------------------------------------------------------------------

gpu_workloads_have_matching_pool = stack_policy(
    name="gpu-workloads-have-matching-pool",
    description=(
        "Every workload (InferenceService, Deployment or other pod) that requests a GPU can be placed: the stack has "
        "a GPU node pool whose labels (gpu-platform/gpu-type, gpu-platform/pool) match the workload's node "
        "selection. Stacks without managed pools (existing clusters) are not checked."
    ),
    check=check_gpu_workloads_have_pool,
    severity=Severity.MEDIUM,
)

inference_service_accounts_exist = stack_policy(
    name="inference-service-accounts-exist",
    description=(
        "Every ServiceAccount an InferenceService names (spec.predictor.serviceAccountName) is declared in the same "
        "namespace by the stack: KServe does not create it, and without it the model server pods are never created."
    ),
    check=check_inference_service_accounts_exist,
    severity=Severity.MEDIUM,
    options=config.options(config.EXTERNAL_SERVICE_ACCOUNTS),
)

canary_targets_exist = stack_policy(
    name="canary-targets-exist",
    description=(
        "Every Flagger Canary's spec.targetRef names a Deployment, DaemonSet or Service the stack declares in the "
        "canary's namespace, so the progressive rollout has something to roll out."
    ),
    check=check_canary_targets_exist,
    severity=Severity.MEDIUM,
    options=config.options(config.EXTERNAL_CANARY_TARGETS),
)

no_time_sliced_gpus_in_prod = stack_policy(
    name="no-time-sliced-gpus-in-prod",
    description=(
        "Prod stacks have no time-sliced or shared GPU pools (label gpu-platform/time-slicing-replicas > 1, GKE "
        "gpuSharingConfig): shared GPUs have no memory or fault isolation between the models on them."
    ),
    check=check_no_time_slicing_in_prod,
    severity=Severity.HIGH,
    options=config.options(config.ENVIRONMENT),
)

POLICIES = [
    gpu_workloads_have_matching_pool,
    inference_service_accounts_exist,
    canary_targets_exist,
    no_time_sliced_gpus_in_prod,
]
