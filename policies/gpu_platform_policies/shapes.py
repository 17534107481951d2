"""What each resource type looks like to a policy: the one place that knows the input shapes.

Every validator reads resources through this module: pods and their containers for every
pod-bearing kind (including KServe predictors), GPU requests, tolerations and node selection; node
pools on EKS and GKE (including pulumi-eks components); Helm charts and their values. Inputs are
the engine's: camelCase, as `python -m infra.tooling.render STACK` writes them to build/STACK/resources.json.

Which resources the engine sends at all (pulumi/pulumi `pkg/resource/deploy/step_generator.go`,
`generateSteps`): every registration that reaches the step generator is analyzed, custom resources
with the inputs their provider's Check returned and component resources with the props they
registered. A *remote* component (a multi-language component such as `eks:index:Cluster`,
`eks:index:ManagedNodeGroup` or `kubernetes:helm.sh/v4:Chart`) is different: the program's
registration goes to the provider's Construct instead (`pkg/resource/deploy/source_eval.go`,
`RegisterResource`, `if remote {... provider.Construct ...}`), and the engine only sees what the
provider registers from inside Construct: the component again, with the props the provider's SDK
gives it, and its children. pulumi-eks builds its components with the Node.js SDK, whose
`ComponentResource` registers `{}` unless it is remote (`sdk/nodejs/resource.ts`: "Explicitly
ignore the props passed in"), and pulumi-kubernetes builds `helm.sh/v4:Chart` with the Go SDK's
`RegisterComponentResource`, which sends none (`provider/pkg/provider/helm/v4/chart.go`). So under
`pulumi preview`/`up` those components arrive with empty inputs and their children carry the
facts: `aws:eks/cluster:Cluster` (`<name>-eksCluster`) and `aws:eks/nodeGroup:NodeGroup` for
pulumi-eks, every rendered Kubernetes object for a v4 Chart. The offline render records the
program's own registration instead, so there the component carries its inputs and has no
children. The policies therefore check both the components (when their inputs are present) and
the plain resources, and treat a component with no inputs as nothing to check.
AnalyzeStack is different again: it gets every resource's *outputs* ("Unlike Analyze, AnalyzeStack
is called on the final outputs of each resource", `AnalyzeResources` in step_generator.go); for the
resources the stack policies read (node pools, Kubernetes objects, providers) outputs repeat the
inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional

from .values import UNKNOWN, as_list, as_mapping, get, json_object

# --- conventions shared with components/node_pools.py (tests/policies/test_shapes.py keeps them equal)

LABEL_PREFIX = "gpu-platform"
POOL_LABEL = f"{LABEL_PREFIX}/pool"
ROLE_LABEL = f"{LABEL_PREFIX}/role"
GPU_TYPE_LABEL = f"{LABEL_PREFIX}/gpu-type"
CAPACITY_LABEL = f"{LABEL_PREFIX}/capacity-type"
TIME_SLICING_LABEL = f"{LABEL_PREFIX}/time-slicing-replicas"
GPU_TAINT_KEY = "nvidia.com/gpu"
SPOT_TAINT_KEY = f"{LABEL_PREFIX}/spot"
ENVIRONMENT_TAG = f"{LABEL_PREFIX}-environment"  # provider default tags / labels, see infra/program/clusters.py
BUDGET_TAG = f"{LABEL_PREFIX}-budget-monthly-usd"  # likewise, set when the stack has a budget

# Node labels the clouds add themselves, usable in a pod's node selection.
EKS_ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
EKS_NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
GKE_NODEPOOL_LABEL = "cloud.google.com/gke-nodepool"
# The keys a workload's node selection is matched on against the stack's pools.
POOL_SELECTOR_KEYS = (
    POOL_LABEL,
    GPU_TYPE_LABEL,
    EKS_ACCELERATOR_LABEL,
    EKS_NODEGROUP_LABEL,
    GKE_ACCELERATOR_LABEL,
    GKE_NODEPOOL_LABEL,
)

# --- type tokens ------------------------------------------------------------------------------

POD = "kubernetes:core/v1:Pod"
SERVICE = "kubernetes:core/v1:Service"
SECRET = "kubernetes:core/v1:Secret"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
REPLICA_SET = "kubernetes:apps/v1:ReplicaSet"
JOB = "kubernetes:batch/v1:Job"
CRON_JOB = "kubernetes:batch/v1:CronJob"
INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
# KServe's LLMInferenceService, both served versions (v1alpha2 is the CRD's storage version at v0.20.0): its vLLM pods
# are `spec.template` and, for a replica spanning machines, `spec.worker`; prefill pods likewise under `spec.prefill`.
LLM_INFERENCE_SERVICES = (
    "kubernetes:serving.kserve.io/v1alpha1:LLMInferenceService",
    "kubernetes:serving.kserve.io/v1alpha2:LLMInferenceService",
)
LLM_POD_PATHS = ("spec.template", "spec.worker", "spec.prefill.template", "spec.prefill.worker")
KNATIVE_SERVICE = "kubernetes:serving.knative.dev/v1:Service"
CANARY = "kubernetes:flagger.app/v1beta1:Canary"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HELM_CHART = "kubernetes:helm.sh/v4:Chart"

EKS_NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
EKS_MANAGED_NODE_GROUP = "eks:index:ManagedNodeGroup"  # pulumi-eks component, child: aws:eks/nodeGroup
EKS_SELF_MANAGED_NODE_GROUPS = ("eks:index:NodeGroupV2", "eks:index:NodeGroup")  # pulumi-eks, ASG + launch template
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
KARPENTER_NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"  # components/karpenter.py: a GPU pool on EKS
GKE_CLUSTER = "gcp:container/cluster:Cluster"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
EKS_COMPONENT_CLUSTER = "eks:index:Cluster"
AWS_PROVIDER = "pulumi:providers:aws"
GCP_PROVIDER = "pulumi:providers:gcp"
KUBERNETES_PROVIDER = "pulumi:providers:kubernetes"

NODE_POOL_TYPES = (EKS_NODE_GROUP, EKS_MANAGED_NODE_GROUP, *EKS_SELF_MANAGED_NODE_GROUPS, GKE_NODE_POOL, GKE_CLUSTER)

# Where the pod template sits in each pod-bearing kind.
POD_SPEC_PATHS: Mapping[str, str] = {
    POD: "spec",
    DEPLOYMENT: "spec.template.spec",
    STATEFUL_SET: "spec.template.spec",
    DAEMON_SET: "spec.template.spec",
    REPLICA_SET: "spec.template.spec",
    JOB: "spec.template.spec",
    CRON_JOB: "spec.jobTemplate.spec.template.spec",
    KNATIVE_SERVICE: "spec.template.spec",
}
# KServe v1beta1 (shared/upstream/kserve/v0.20.0/crds/serving.kserve.io_inferenceservices.yaml):
# each component is a pod spec plus container-shaped shortcuts; `model` and the framework keys
# name an image only to override the ServingRuntime's.
KSERVE_COMPONENTS = ("predictor", "transformer", "explainer")
KSERVE_CONTAINER_KEYS = (
    "model",
    "huggingface",
    "lightgbm",
    "onnx",
    "paddle",
    "pmml",
    "pytorch",
    "sklearn",
    "tensorflow",
    "triton",
    "xgboost",
    "art",  # explainer
)
POD_BEARING_TYPES = (*POD_SPEC_PATHS, INFERENCE_SERVICE)


# --- pods and containers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    path: str  # where it sits: "spec.template.spec.containers[0]", "spec.predictor.model"
    spec: Mapping[str, Any]
    init: bool = False

    @property
    def who(self) -> str:
        """For messages: ' (container server)', or '' when the container has no name."""
        name = self.spec.get("name")
        return f" (container {name})" if isinstance(name, str) and name else ""


@dataclass(frozen=True)
class Pod:
    path: str  # where the pod-level fields sit: "spec.template.spec", "spec.predictor"
    spec: Mapping[str, Any]  # tolerations, nodeSelector, affinity, hostNetwork, volumes, serviceAccountName
    containers: tuple[Container, ...]

    @property
    def main_containers(self) -> tuple[Container, ...]:
        return tuple(c for c in self.containers if not c.init)


def _containers(pod_spec: Mapping[str, Any], path: str, shortcut_keys: tuple[str, ...] = ()) -> list[Container]:
    found = []
    for key in shortcut_keys:
        shortcut = pod_spec.get(key)
        if isinstance(shortcut, dict):
            found.append(Container(f"{path}.{key}", shortcut))
    for list_key, init in (("containers", False), ("initContainers", True)):
        for index, container in enumerate(as_list(pod_spec.get(list_key))):
            if isinstance(container, dict):
                found.append(Container(f"{path}.{list_key}[{index}]", container, init))
    return found


def pods_of(resource_type: str, props: Mapping[str, Any]) -> list[Pod]:
    """Every pod a resource describes (an InferenceService has one per component, plus workers; an LLMInferenceService
    its vLLM pods)."""
    if resource_type in POD_SPEC_PATHS:
        path = POD_SPEC_PATHS[resource_type]
        spec = get(props, path)
        return [Pod(path, spec, tuple(_containers(spec, path)))] if isinstance(spec, dict) else []
    if resource_type in LLM_INFERENCE_SERVICES:
        found = [(path, get(props, path)) for path in LLM_POD_PATHS]
        return [Pod(path, spec, tuple(_containers(spec, path))) for path, spec in found if isinstance(spec, dict)]
    if resource_type == INFERENCE_SERVICE:
        pods = []
        for component in KSERVE_COMPONENTS:
            path = f"spec.{component}"
            spec = get(props, path)
            if not isinstance(spec, dict):
                continue
            pods.append(Pod(path, spec, tuple(_containers(spec, path, KSERVE_CONTAINER_KEYS))))
            worker = spec.get("workerSpec")
            if isinstance(worker, dict):
                pods.append(Pod(f"{path}.workerSpec", worker, tuple(_containers(worker, f"{path}.workerSpec"))))
        return pods
    return []


def metadata_name(props: Mapping[str, Any]) -> Any:
    """metadata.name, UNKNOWN during preview when computed, None when auto-named."""
    return get(props, "metadata.name")


def namespace_of(props: Mapping[str, Any], default_namespace: str = "default") -> Any:
    """metadata.namespace, else the provider's default namespace, else Kubernetes' "default"."""
    namespace = get(props, "metadata.namespace")
    if namespace is UNKNOWN:
        return UNKNOWN
    return namespace if isinstance(namespace, str) and namespace else default_namespace


def provider_default_namespace(provider_type: Optional[str], provider_props: Optional[Mapping[str, Any]]) -> str:
    """A Kubernetes provider's `namespace` input puts namespace-less objects there."""
    if provider_type == KUBERNETES_PROVIDER and provider_props:
        namespace = provider_props.get("namespace")
        if isinstance(namespace, str) and namespace:
            return namespace
    return "default"


# --- GPUs in pods ---------------------------------------------------------------------------


def is_gpu_resource(resource_name: str) -> bool:
    """`nvidia.com/gpu`, and MIG slices (`nvidia.com/mig-1g.10gb`) under the mixed MIG strategy."""
    return resource_name == GPU_TAINT_KEY or resource_name.startswith("nvidia.com/mig-")


def _quantity_is_zero(quantity: Any) -> bool:
    try:
        return float(str(quantity)) == 0
    except ValueError:
        return False


def gpu_requests(container: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """GPU resource name -> {"requests": quantity?, "limits": quantity?}, zero quantities left out."""
    found: dict[str, dict[str, Any]] = {}
    resources = as_mapping(container.get("resources"))
    for section in ("requests", "limits"):
        for name, quantity in as_mapping(resources.get(section)).items():
            if is_gpu_resource(name) and not _quantity_is_zero(quantity):
                found.setdefault(name, {})[section] = quantity
    return found


def pod_requests_gpu(pod: Pod) -> bool:
    return any(gpu_requests(container.spec) for container in pod.containers)


def _effect_is_no_schedule(effect: Any) -> bool:
    # An empty effect tolerates every effect.
    return effect in (None, "") or normalise_effect(effect) == "NoSchedule"


def tolerates_gpu_taint(tolerations: Any) -> bool:
    """True when one toleration lets the pod onto a node tainted nvidia.com/gpu:NoSchedule.

    Exists on the key (any value: EKS pools use "true", GKE uses "present"), Equal with a value,
    or the tolerate-everything toleration (no key, operator Exists).
    """
    if tolerations is UNKNOWN:
        return True
    for toleration in as_list(tolerations):
        if not isinstance(toleration, dict):
            continue
        key, operator = toleration.get("key"), toleration.get("operator") or "Equal"
        if not _effect_is_no_schedule(toleration.get("effect")):
            continue
        if key in (None, "") and operator == "Exists":
            return True
        if key == GPU_TAINT_KEY and (operator == "Exists" or (operator == "Equal" and toleration.get("value"))):
            return True
    return False


# --- node selection -------------------------------------------------------------------------


def _expression_holds(expression: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    key, operator = expression.get("key"), expression.get("operator")
    if key not in POOL_SELECTOR_KEYS:
        return True  # only the pool-identifying keys are compared; the rest may hold anywhere
    value = labels.get(key)
    if value is UNKNOWN:
        return True
    values = [v for v in as_list(expression.get("values"))]
    if operator == "In":
        return value in values
    if operator == "NotIn":
        return value not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return True


def pod_fits_labels(pod_spec: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """Whether a node with `labels` satisfies the pod's required node selection on the pool keys."""
    selector = pod_spec.get("nodeSelector")
    if selector is UNKNOWN:
        return True
    for key, wanted in as_mapping(selector).items():
        if key in POOL_SELECTOR_KEYS and wanted is not UNKNOWN:
            have = labels.get(key)
            if have is not UNKNOWN and have != wanted:
                return False
    required = get(pod_spec, "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution")
    if required is UNKNOWN:
        return True
    terms = [t for t in as_list(as_mapping(required).get("nodeSelectorTerms")) if isinstance(t, dict)]
    if not terms:
        return True
    # Terms are ORed, the expressions of one term ANDed.
    return any(
        all(_expression_holds(e, labels) for e in as_list(term.get("matchExpressions")) if isinstance(e, dict))
        for term in terms
    )


def pod_pool_selection(pod_spec: Mapping[str, Any]) -> dict[str, list[str]]:
    """The pool keys the pod's node selection names, with the values it accepts (for messages)."""
    selection: dict[str, list[str]] = {}
    for key, wanted in as_mapping(pod_spec.get("nodeSelector")).items():
        if key in POOL_SELECTOR_KEYS and isinstance(wanted, str):
            selection.setdefault(key, []).append(wanted)
    required = get(pod_spec, "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution")
    for term in as_list(as_mapping(required).get("nodeSelectorTerms")):
        for expression in as_list(as_mapping(term).get("matchExpressions")):
            expression = as_mapping(expression)
            if expression.get("key") in POOL_SELECTOR_KEYS and expression.get("operator") == "In":
                values = [v for v in as_list(expression.get("values")) if isinstance(v, str)]
                selection.setdefault(expression["key"], []).extend(values)
    return selection


# --- images ---------------------------------------------------------------------------------


def image_pinning_problem(image: Any) -> Optional[str]:
    """Why an image reference is not pinned, or None (a digest, or a tag other than latest)."""
    if not isinstance(image, str) or not image.strip():
        return None  # absent or unknown: nothing to judge
    name, _, digest = image.partition("@")
    if digest:
        return None if re.fullmatch(r"[a-z0-9]+:[0-9a-fA-F]{32,}", digest) else f"has a malformed digest {digest!r}"
    last_part = name.rsplit("/", 1)[-1]  # a registry port (host:5000/repo) is not a tag
    if ":" not in last_part:
        return "has no tag, which Kubernetes pulls as :latest"
    tag = last_part.rsplit(":", 1)[1]
    if tag == "latest":
        return "uses the :latest tag"
    if not tag:
        return "has an empty tag"
    return None


# --- node pools -----------------------------------------------------------------------------

_EFFECTS = {
    "NO_SCHEDULE": "NoSchedule",
    "NOSCHEDULE": "NoSchedule",
    "PREFER_NO_SCHEDULE": "PreferNoSchedule",
    "PREFERNOSCHEDULE": "PreferNoSchedule",
    "NO_EXECUTE": "NoExecute",
    "NOEXECUTE": "NoExecute",
}


def normalise_effect(effect: Any) -> str:
    """Cloud APIs spell NO_SCHEDULE, Kubernetes and pulumi-eks NodeGroupV2 NoSchedule."""
    return _EFFECTS.get(str(effect).upper(), str(effect))


# EC2 families with NVIDIA GPUs: g3, g4dn, g5, g5g, g6, g6e, gr6, p3, p4d, p5, p6-b200, ...
# g4ad has AMD GPUs, which advertise amd.com/gpu and are not tainted nvidia.com/gpu.
_NVIDIA_EC2_FAMILY = re.compile(r"^(g|gr|p)\d+[a-z]*(-[a-z0-9]+)?$")
_NON_NVIDIA_EC2_FAMILIES = frozenset({"g4ad"})
# GKE machine series with GPUs built in (A2, A3, A4, G2, G4); GKE still attaches them as accelerators.
_GKE_GPU_MACHINE = re.compile(r"^(a2|a3|a4|g2|g4)-")


def is_nvidia_instance_type(instance_type: Any) -> bool:
    if not isinstance(instance_type, str):
        return False
    family = instance_type.split(".", 1)[0].lower()
    return bool(_NVIDIA_EC2_FAMILY.match(family)) and family not in _NON_NVIDIA_EC2_FAMILIES


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str  # Kubernetes spelling


@dataclass(frozen=True)
class NodePool:
    resource_type: str
    name: str  # for messages
    field_prefix: str  # where the pool's fields sit: "", "nodeConfig.", "nodePools[0].nodeConfig."
    taints: Optional[tuple[Taint, ...]]  # None: unknown during preview
    labels: Mapping[str, Any]  # what the program sets
    implicit_labels: Mapping[str, Any] = field(default_factory=dict)  # what the cloud adds
    gpu_evidence: tuple[str, ...] = ()
    gpu_types: tuple[str, ...] = ()
    cloud_adds_gpu_taint: bool = False  # GKE taints GPU nodes nvidia.com/gpu=present:NoSchedule itself
    spot_evidence: Optional[str] = None
    sharing_evidence: Optional[str] = None  # time-slicing / GPU sharing
    taints_as_map: bool = False  # pulumi-eks NodeGroupV2 takes {key: {value, effect}}
    kubernetes_effects: bool = False  # Karpenter NodePools spell effects as Kubernetes does (NoSchedule)

    @property
    def gpu(self) -> bool:
        return bool(self.gpu_evidence)

    @property
    def taints_field(self) -> str:
        return f"{self.field_prefix}taints"

    @property
    def node_labels(self) -> dict[str, Any]:
        return {**self.implicit_labels, **self.labels}

    def no_schedule_taints(self) -> list[Taint]:
        # NoExecute also keeps pods that do not tolerate it off the node (and evicts running ones).
        return [t for t in self.taints or () if t.effect in ("NoSchedule", "NoExecute")]

    def taint_example(self, key: str, value: str = "true") -> str:
        if self.taints_as_map:
            return f'{self.taints_field}: {{"{key}": {{"value": "{value}", "effect": "NoSchedule"}}}}'
        effect = "NoSchedule" if self.kubernetes_effects else "NO_SCHEDULE"
        return f'{self.taints_field}: [{{"key": "{key}", "value": "{value}", "effect": "{effect}"}}]'


def _taints(value: Any) -> Optional[tuple[Taint, ...]]:
    if value is UNKNOWN:
        return None
    taints = []
    if isinstance(value, dict):  # pulumi-eks NodeGroupV2: {key: {value, effect}}
        for key, spec in value.items():
            spec = as_mapping(spec)
            taints.append(Taint(key, str(spec.get("value") or ""), normalise_effect(spec.get("effect"))))
    for item in as_list(value):
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            taints.append(Taint(item["key"], str(item.get("value") or ""), normalise_effect(item.get("effect"))))
    return tuple(taints)


def _label_evidence(labels: Mapping[str, Any]) -> tuple[list[str], Optional[str], Optional[str]]:
    gpu = [f"label {ROLE_LABEL}=gpu"] if labels.get(ROLE_LABEL) == "gpu" else []
    capacity = labels.get(CAPACITY_LABEL)
    spot = f"label {CAPACITY_LABEL}={capacity}" if capacity in ("spot", "spot-with-fallback") else None
    sharing = None
    try:
        replicas = int(str(labels.get(TIME_SLICING_LABEL)))
    except ValueError:
        replicas = 1
    if replicas > 1:
        sharing = f"label {TIME_SLICING_LABEL}={replicas}"
    return gpu, spot, sharing


def _label_gpu_types(labels: Mapping[str, Any]) -> list[str]:
    return list(
        dict.fromkeys(v for k in (GPU_TYPE_LABEL, EKS_ACCELERATOR_LABEL) if isinstance(v := labels.get(k), str))
    )


def _eks_pool(resource_type: str, props: Mapping[str, Any]) -> NodePool:
    labels = as_mapping(props.get("labels"))
    gpu, spot, sharing = _label_evidence(labels)
    ami_type = props.get("amiType")
    if isinstance(ami_type, str) and ("NVIDIA" in ami_type.upper() or "GPU" in ami_type.upper()):
        gpu.append(f"amiType {ami_type}")
    if props.get("gpu") is True:
        gpu.append("gpu: true")
    instance_types = [*as_list(props.get("instanceTypes")), props.get("instanceType")]
    gpu += [f"instance type {t}" for t in instance_types if is_nvidia_instance_type(t)]
    if str(props.get("capacityType")).upper() == "SPOT":
        spot = "capacityType SPOT"
    elif isinstance(props.get("spotPrice"), str) and props.get("spotPrice"):
        spot = f"spotPrice {props['spotPrice']}"
    name = props.get("nodeGroupName")
    return NodePool(
        resource_type=resource_type,
        name=name if isinstance(name, str) else "",
        field_prefix="",
        taints=_taints(props.get("taints")),
        labels=labels,
        implicit_labels={EKS_NODEGROUP_LABEL: name} if isinstance(name, str) else {},
        gpu_evidence=tuple(gpu),
        gpu_types=tuple(_label_gpu_types(labels)),
        spot_evidence=spot,
        sharing_evidence=sharing,
        taints_as_map=resource_type in EKS_SELF_MANAGED_NODE_GROUPS,
    )


def _gke_pool(resource_type: str, name: Any, node_config: Any, field_prefix: str) -> NodePool:
    config = as_mapping(node_config)
    labels = as_mapping(config.get("labels"))
    gpu, spot, sharing = _label_evidence(labels)
    accelerators = [a for a in as_list(config.get("guestAccelerators")) if isinstance(a, dict)]
    types = [a["type"] for a in accelerators if isinstance(a.get("type"), str)]
    if accelerators:
        gpu.append(f"{field_prefix}guestAccelerators {', '.join(types) or '(unknown type)'}")
    machine = config.get("machineType")
    if isinstance(machine, str) and _GKE_GPU_MACHINE.match(machine):
        gpu.append(f"machineType {machine}")
    if config.get("spot") is True:
        spot = f"{field_prefix}spot: true"
    elif config.get("preemptible") is True:
        spot = f"{field_prefix}preemptible: true"
    for index, accelerator in enumerate(accelerators):
        sharing_config = accelerator.get("gpuSharingConfig")
        if sharing_config is UNKNOWN or as_mapping(sharing_config):
            strategy = as_mapping(sharing_config).get("gpuSharingStrategy", "sharing")
            sharing = f"{field_prefix}guestAccelerators[{index}].gpuSharingConfig ({strategy})"
    implicit: dict[str, Any] = {}
    if isinstance(name, str):
        implicit[GKE_NODEPOOL_LABEL] = name
    if types:
        implicit[GKE_ACCELERATOR_LABEL] = types[0]
    return NodePool(
        resource_type=resource_type,
        name=name if isinstance(name, str) else "",
        field_prefix=field_prefix,
        taints=_taints(config.get("taints")) if node_config is not UNKNOWN else None,
        labels=labels,
        implicit_labels=implicit,
        gpu_evidence=tuple(gpu),
        gpu_types=tuple(dict.fromkeys([*types, *_label_gpu_types(labels)])),
        cloud_adds_gpu_taint=bool(accelerators) or any(e.startswith("machineType") for e in gpu),
        spot_evidence=spot,
        sharing_evidence=sharing,
    )


def _karpenter_pool(resource_type: str, props: Mapping[str, Any]) -> NodePool:
    """A Karpenter NodePool: labels and taints of its node template, instance types and capacity types from its
    requirements. Its startupTaints are not the pool's: they are removed once the node is ready."""
    spec = as_mapping(props.get("spec"))
    template = as_mapping(spec.get("template"))
    node_spec = as_mapping(template.get("spec"))
    labels = as_mapping(as_mapping(template.get("metadata")).get("labels"))
    gpu, spot, sharing = _label_evidence(labels)
    requirements = [as_mapping(r) for r in as_list(node_spec.get("requirements"))]
    for requirement in requirements:
        values = [v for v in as_list(requirement.get("values")) if isinstance(v, str)]
        if requirement.get("key") == "node.kubernetes.io/instance-type" and requirement.get("operator") == "In":
            gpu += [f"instance type {t}" for t in values if is_nvidia_instance_type(t)]
        if requirement.get("key") == "karpenter.sh/capacity-type" and requirement.get("operator") == "In" and "spot" in values:
            spot = f"requirement karpenter.sh/capacity-type In [{', '.join(values)}]"
    name = as_mapping(props.get("metadata")).get("name")
    return NodePool(
        resource_type=resource_type,
        name=name if isinstance(name, str) else "",
        field_prefix="spec.template.spec.",
        taints=_taints(node_spec.get("taints")) if node_spec.get("taints") is not UNKNOWN else None,
        labels=labels,
        implicit_labels={"karpenter.sh/nodepool": name} if isinstance(name, str) else {},
        gpu_evidence=tuple(gpu),
        gpu_types=tuple(_label_gpu_types(labels)),
        spot_evidence=spot,
        sharing_evidence=sharing,
        kubernetes_effects=True,
    )


def node_pools_of(resource_type: str, props: Mapping[str, Any]) -> list[NodePool]:
    """The node pools a resource creates (a GKE cluster can declare pools inline)."""
    if resource_type == KARPENTER_NODE_POOL:
        return [_karpenter_pool(resource_type, props)]
    if resource_type == EKS_NODE_GROUP:
        return [_eks_pool(resource_type, props)]
    if resource_type == EKS_MANAGED_NODE_GROUP or resource_type in EKS_SELF_MANAGED_NODE_GROUPS:
        # Under the engine these components arrive with no inputs (see the module docstring): the
        # ManagedNodeGroup's aws:eks/nodeGroup:NodeGroup child carries them instead.
        return [_eks_pool(resource_type, props)] if props else []
    if resource_type == GKE_NODE_POOL:
        return [_gke_pool(resource_type, props.get("name"), props.get("nodeConfig"), "nodeConfig.")]
    if resource_type == GKE_CLUSTER:
        pools = []
        if props.get("removeDefaultNodePool") is not True and isinstance(props.get("nodeConfig"), dict):
            pools.append(_gke_pool(resource_type, "default-pool", props["nodeConfig"], "nodeConfig."))
        for index, pool in enumerate(as_list(props.get("nodePools"))):
            pool = as_mapping(pool)
            pools.append(
                _gke_pool(resource_type, pool.get("name"), pool.get("nodeConfig"), f"nodePools[{index}].nodeConfig.")
            )
        return pools
    return []


# --- Helm -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HelmChart:
    resource_type: str
    chart: str
    repository: str
    version: Any
    namespace: str
    release_name: str
    values: Mapping[str, Any]

    @property
    def chart_name(self) -> str:
        """`oci://registry/org/gateway` or `istio/gateway` -> `gateway`."""
        return self.chart.rstrip("/").rsplit("/", 1)[-1].split(":", 1)[0]

    def is_from(self, *fragments: str) -> bool:
        where = f"{self.repository} {self.chart}".lower()
        return any(fragment in where for fragment in fragments)


def helm_chart_of(resource_type: str, props: Mapping[str, Any], resource_name: str = "") -> Optional[HelmChart]:
    """A Helm release or v4 chart; None for anything else and for a v4 Chart with no inputs."""
    if resource_type not in (HELM_RELEASE, HELM_CHART) or not props:
        return None
    chart = props.get("chart")
    repository = get(props, "repositoryOpts.repo")
    namespace = props.get("namespace")
    name = props.get("name")
    return HelmChart(
        resource_type=resource_type,
        chart=chart if isinstance(chart, str) else "",
        repository=repository if isinstance(repository, str) else "",
        version=props.get("version"),
        namespace=namespace if isinstance(namespace, str) and namespace else "default",
        release_name=name if isinstance(name, str) and name else resource_name,
        values=as_mapping(props.get("values")),
    )


# --- the stack's environment ------------------------------------------------------------------


def provider_tag(provider_type: Optional[str], provider_props: Optional[Mapping[str, Any]], key: str) -> Optional[str]:
    """A tag a provider puts on everything it creates: AWS `defaultTags.tags`, GCP `defaultLabels`."""
    props = provider_props or {}
    if provider_type == AWS_PROVIDER:
        tags = as_mapping(json_object(props.get("defaultTags")).get("tags"))
    elif provider_type == GCP_PROVIDER:
        tags = json_object(props.get("defaultLabels"))
    else:
        return None
    value = tags.get(key)
    return value if isinstance(value, str) and value else None


def environment_of_provider(provider_type: Optional[str], provider_props: Optional[Mapping[str, Any]]) -> Optional[str]:
    """The tier a provider tags everything with."""
    return provider_tag(provider_type, provider_props, ENVIRONMENT_TAG)


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) for every key of every mapping, and every item of every list, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            item_path = f"{path}.{key}" if path else str(key)
            yield item_path, key, item
            yield from walk(item, item_path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            yield item_path, index, item
            yield from walk(item, item_path)
