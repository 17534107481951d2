"""Tenancy rules: who may take a GPU and what happens when they run out.

- Every pod that requests a GPU names a priority class, so the scheduler knows whose pod to evict when
  GPUs run out (a pod without one has priority 0 and is neither protected nor clearly preemptible).
- Every namespace that runs GPU pods has a ResourceQuota on each GPU resource they request, so one team
  cannot take every GPU of the cluster.
- Every MIG slice a pod requests (`nvidia.com/mig-<profile>`) is offered by a node the stack labels with a
  MIG layout that holds that profile; otherwise the pod stays Pending forever.
- Every namespace that serves models has a default-deny NetworkPolicy (all pods, Ingress, no rule), so a
  model is reachable only from where an explicit allow says.
- In prod, models are not reachable without a token: the stack checks JWTs (RequestAuthentication with a
  jwtRule) and authorizes callers (an ALLOW AuthorizationPolicy) on the gateway.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping, Optional, Sequence

import yaml
from pulumi_policy import Severity

from . import config
from .builders import StackResource, resource_policy, stack_policy
from .shapes import HELM_RELEASE, LLM_INFERENCE_SERVICES, gpu_requests, namespace_of, node_pools_of, pods_of
from .stack import Finding, _display, tier_of
from .values import UNKNOWN, as_mapping, get

RESOURCE_QUOTA = "kubernetes:core/v1:ResourceQuota"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
# What serves a model: KServe's InferenceService and LLMInferenceService, and Flagger's Canary (around a plain
# Deployment).
MODEL_TYPES = (
    "kubernetes:serving.kserve.io/v1beta1:InferenceService",
    "kubernetes:flagger.app/v1beta1:Canary",
    *LLM_INFERENCE_SERVICES,
)
NODE_TYPES = ("kubernetes:core/v1:Node", "kubernetes:core/v1:NodePatch")
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
MIG_PREFIX = "nvidia.com/mig-"
# Our config names spell their profiles (components/node_pools.mig_config_name): 1x3g.40gb-2x1g.10gb.
_PROFILES_IN_NAME = re.compile(r"(\d+)x([1-7]g\.\d+gb)")


# --- GPU pods name a priority class ----------------------------------------------------------------


def check_gpu_pods_have_priority_class(resource_type: str, props: Mapping[str, Any]) -> Iterator[str]:
    for pod in pods_of(resource_type, props):
        gpus = sorted({name for c in pod.containers for name in gpu_requests(c.spec)})
        if not gpus:
            continue
        priority = pod.spec.get("priorityClassName")
        if priority is UNKNOWN or (isinstance(priority, str) and priority):
            continue
        yield (
            f"{pod.path} requests {', '.join(gpus)} but names no priority class, so when GPUs run out the scheduler "
            f"cannot tell whether to protect it or evict it. Set {pod.path}.priorityClassName to one of the "
            f"platform's classes: serving-critical, serving, interactive or batch (components/priorities.py)."
        )


# --- GPU workloads run under a GPU quota ----------------------------------------------------------


def _quota_limits(resources: Sequence[StackResource]) -> tuple[dict[str, set[str]], set[str]]:
    """namespace -> GPU resources some ResourceQuota there caps; and namespaces whose quotas are unknown yet."""
    capped: dict[str, set[str]] = {}
    unknown: set[str] = set()
    for resource in resources:
        if resource.type != RESOURCE_QUOTA:
            continue
        namespace = namespace_of(resource.props, resource.default_namespace)
        if not isinstance(namespace, str):
            continue
        hard = get(resource.props, "spec.hard")
        if hard is UNKNOWN:
            unknown.add(namespace)
            continue
        for key in as_mapping(hard):
            for prefix in ("requests.", "limits."):
                if key.startswith(prefix):
                    capped.setdefault(namespace, set()).add(key[len(prefix) :])
    return capped, unknown


def check_gpu_workloads_have_quota(resources: Sequence[StackResource]) -> Iterator[Finding]:
    capped, unknown = _quota_limits(resources)
    for resource in resources:
        namespace = namespace_of(resource.props, resource.default_namespace)
        if not isinstance(namespace, str) or namespace in unknown:
            continue
        wanted = sorted(
            {name for pod in pods_of(resource.type, resource.props) for c in pod.containers for name in gpu_requests(c.spec)}
        )
        missing = [name for name in wanted if name not in capped.get(namespace, set())]
        if missing:
            yield (
                resource.urn,
                f"{_display(resource)} requests {', '.join(missing)} in namespace {namespace}, where no ResourceQuota "
                f"caps it, so this namespace can take every such GPU of the cluster. Declare a ResourceQuota in "
                f"{namespace} with spec.hard[\"requests.{missing[0]}\"] (the stack's tenants section does: "
                f"gpu-platform:tenants.<tenant>.quota.gpus).",
            )


# --- MIG slices are offered -------------------------------------------------------------------------


def _layouts_in_releases(resources: Sequence[StackResource]) -> dict[str, set[str]]:
    """MIG config name -> its profiles, from the mig-parted config the GPU Operator release creates."""
    layouts: dict[str, set[str]] = {}
    for resource in resources:
        if resource.type != HELM_RELEASE:
            continue
        text = get(resource.props, "values.migManager.config.data")
        text = as_mapping(text).get("config.yaml") if isinstance(text, Mapping) else None
        if not isinstance(text, str):
            continue
        try:
            configs = as_mapping(as_mapping(yaml.safe_load(text)).get("mig-configs"))
        except yaml.YAMLError:
            continue
        for name, entries in configs.items():
            profiles = layouts.setdefault(str(name), set())
            for entry in entries if isinstance(entries, list) else []:
                profiles.update(str(p) for p in as_mapping(as_mapping(entry).get("mig-devices")))
    return layouts


def _profiles_of(config: str, layouts: Mapping[str, set[str]]) -> set[str]:
    if config in layouts:
        return set(layouts[config])
    return {profile for _, profile in _PROFILES_IN_NAME.findall(config)}


def offered_mig_profiles(resources: Sequence[StackResource]) -> Optional[set[str]]:
    """Profiles some node of the stack is cut into; None when a node's MIG label is not known yet."""
    layouts = _layouts_in_releases(resources)
    offered: set[str] = set()
    for resource in resources:
        labels: list[Any] = []
        if resource.type in NODE_TYPES:
            labels.append(get(resource.props, "metadata.labels"))
        labels += [pool.labels for pool in node_pools_of(resource.type, resource.props)]
        for found in labels:
            if found is UNKNOWN:
                return None
            config = as_mapping(found).get(MIG_CONFIG_LABEL)
            if config is UNKNOWN:
                return None
            if isinstance(config, str):
                offered |= _profiles_of(config, layouts)
    return offered


def check_mig_slices_offered(resources: Sequence[StackResource]) -> Iterator[Finding]:
    offered = offered_mig_profiles(resources)
    if offered is None:
        return
    for resource in resources:
        for pod in pods_of(resource.type, resource.props):
            for container in pod.containers:
                for name in gpu_requests(container.spec):
                    profile = name[len(MIG_PREFIX) :] if name.startswith(MIG_PREFIX) else None
                    if profile is None or profile in offered:
                        continue
                    yield (
                        resource.urn,
                        f"{_display(resource)}: {container.path} requests {name}, but no node of this stack is cut into "
                        f"{profile} slices (MIG profiles the stack's nodes offer: {', '.join(sorted(offered)) or 'none'}), "
                        f"so the pod stays Pending. Request a slice a pool's migLayout holds, or add {profile} to a "
                        f"pool's migLayout.",
                    )


# --- model namespaces deny by default ----------------------------------------------------------------


def _denies_all_ingress(props: Mapping[str, Any]) -> Optional[bool]:
    """True for a policy selecting every pod with Ingress and no ingress rule; None while unknown."""
    spec = get(props, "spec")
    if spec is UNKNOWN:
        return None
    spec = as_mapping(spec)
    selector, types, rules = spec.get("podSelector"), spec.get("policyTypes"), spec.get("ingress")
    if UNKNOWN in (selector, types, rules):
        return None
    everyone = not as_mapping(selector).get("matchLabels") and not as_mapping(selector).get("matchExpressions")
    # Without policyTypes, Ingress is implied (networking.k8s.io/v1 NetworkPolicySpec).
    ingress = types is None or (isinstance(types, list) and "Ingress" in types)
    return everyone and ingress and not rules


def check_model_namespaces_deny_by_default(resources: Sequence[StackResource]) -> Iterator[Finding]:
    denying: set[str] = set()
    unknown: set[str] = set()
    for resource in resources:
        if resource.type != NETWORK_POLICY:
            continue
        namespace = namespace_of(resource.props, resource.default_namespace)
        if not isinstance(namespace, str):
            continue
        verdict = _denies_all_ingress(resource.props)
        if verdict is None:
            unknown.add(namespace)
        elif verdict:
            denying.add(namespace)
    reported: set[str] = set()
    for resource in resources:
        if resource.type not in MODEL_TYPES:
            continue
        namespace = namespace_of(resource.props, resource.default_namespace)
        if not isinstance(namespace, str) or namespace in denying | unknown | reported:
            continue
        reported.add(namespace)
        yield (
            resource.urn,
            f"{_display(resource)} serves a model in namespace {namespace}, which has no default-deny NetworkPolicy, "
            f"so any pod of the cluster can call its models directly, past the gateway and its authentication. "
            f"Declare a NetworkPolicy in {namespace} with podSelector: {{}}, policyTypes: [Ingress, Egress] and no "
            f"rules, and allow what must reach the models explicitly (components/tenancy.py does both).",
        )


# --- prod models need a token ----------------------------------------------------------------------

REQUEST_AUTHENTICATION = "kubernetes:security.istio.io/v1:RequestAuthentication"
AUTHORIZATION_POLICY = "kubernetes:security.istio.io/v1:AuthorizationPolicy"
INFERENCE_SERVICE_TYPE = MODEL_TYPES[0]


def _checks_tokens(resources: Sequence[StackResource]) -> Optional[bool]:
    """Whether some RequestAuthentication has a JWT rule and some ALLOW AuthorizationPolicy requires a
    request principal (a valid token) in a rule; None while either is unknown."""
    jwt = allow = False
    for resource in resources:
        if resource.type == REQUEST_AUTHENTICATION:
            rules = get(resource.props, "spec.jwtRules")
            if rules is UNKNOWN:
                return None
            jwt = jwt or bool(rules)
        elif resource.type == AUTHORIZATION_POLICY:
            spec = get(resource.props, "spec")
            if spec is UNKNOWN:
                return None
            spec = as_mapping(spec)
            if spec.get("action", "ALLOW") != "ALLOW":
                continue
            for rule in spec.get("rules") or []:
                for source in as_mapping(rule).get("from") or []:
                    if as_mapping(as_mapping(source).get("source")).get("requestPrincipals"):
                        allow = True
    return jwt and allow


def check_prod_models_need_a_token(
    resources: Sequence[StackResource],
    *,
    environment: str = config.ENVIRONMENT.default,
    stack_tags: Optional[Mapping[str, str]] = None,
) -> Iterator[Finding]:
    if tier_of(resources, environment, stack_tags) != "prod":
        return
    models = [r for r in resources if r.type == INFERENCE_SERVICE_TYPE]
    if not models or _checks_tokens(resources) is not False:
        return
    names = ", ".join(sorted(_display(r) for r in models))
    yield (
        models[0].urn,
        f"prod serves models ({names}) that anyone reaching the gateway may call without a token: no "
        f"RequestAuthentication with a jwtRule and ALLOW AuthorizationPolicy requiring a request principal. Set "
        f"gpu-platform:auth to mode: jwt with your issuer and jwksUri (components/entry_auth.py).",
    )


gpu_pods_have_priority_class = resource_policy(
    name="gpu-pods-have-priority-class",
    description=(
        "Every pod that requests a GPU (nvidia.com/gpu or a MIG slice) names a priority class, so that when GPUs run "
        "out the scheduler preempts batch work and protects serving, not the other way round."
    ),
    check=check_gpu_pods_have_priority_class,
    severity=Severity.MEDIUM,
)

gpu_workloads_have_quota = stack_policy(
    name="gpu-workloads-have-quota",
    description=(
        "Every namespace with pods that request GPUs has a ResourceQuota capping each GPU resource they request "
        "(requests.nvidia.com/gpu, requests.nvidia.com/mig-<profile>), so one team cannot take every GPU."
    ),
    check=check_gpu_workloads_have_quota,
    severity=Severity.MEDIUM,
)

mig_slices_offered = stack_policy(
    name="mig-slices-offered",
    description=(
        "Every MIG slice a pod requests (nvidia.com/mig-<profile>) is one that a node of the stack is cut into "
        "(its nvidia.com/mig.config layout holds the profile)."
    ),
    check=check_mig_slices_offered,
    severity=Severity.HIGH,
)

model_namespaces_deny_by_default = stack_policy(
    name="model-namespaces-deny-by-default",
    description=(
        "Every namespace with an InferenceService or a Canary has a NetworkPolicy that selects every pod and "
        "allows no ingress, so models are reached only through the explicit allows."
    ),
    check=check_model_namespaces_deny_by_default,
    severity=Severity.HIGH,
)

prod_models_need_a_token = stack_policy(
    name="prod-models-need-a-token",
    description=(
        "A prod stack that serves InferenceServices checks callers' tokens: a RequestAuthentication with a JWT rule "
        "and an ALLOW AuthorizationPolicy that requires a request principal."
    ),
    check=check_prod_models_need_a_token,
    severity=Severity.HIGH,
    options=config.options(config.ENVIRONMENT),
)

POLICIES = [
    gpu_pods_have_priority_class,
    gpu_workloads_have_quota,
    mig_slices_offered,
    model_namespaces_deny_by_default,
    prod_models_need_a_token,
]
