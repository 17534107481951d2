"""Models from the catalog (infra/program/model_catalog.py), deployed the way their entry says.

- `serving: kserve` -> a KServe InferenceService (Knative mode). A canary in the catalog becomes
  KServe's own `canaryTrafficPercent`: Flagger cannot drive KServe's Knative Services, whose traffic
  split KServe rewrites on every reconcile.
- `serving: deployment` -> a Deployment and HorizontalPodAutoscaler with a Flagger `Canary` (Istio
  provider: Flagger creates the primary/canary Services and the VirtualService that shifts weight,
  so we declare no VirtualService of our own), analysed with Flagger's built-in success rate and
  duration plus `MetricTemplate`s for p99 latency and GPU saturation, with load-tester webhooks
  generating traffic during the analysis.

Placement: a GPU model asks for `nvidia.com/gpu` in its limits (one time slice on a shared pool,
one whole GPU otherwise), or for its MIG slice's own resource (`nvidia.com/mig-3g.40gb`), requires a
node of a pool that offers it (pools of its purpose first, so online models stay off the spot batch
pool in prod) and tolerates exactly those pools' taints. Its pods carry the priority class the
workloads layer chose (components/priorities.py).
A CPU model tolerates no GPU taint and also avoids untainted GPU nodes by affinity.

Every custom resource is validated against its CRD in tests (tests/test_models.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import tolerations_of
from components.custom_resource import custom_resource
from components.node_pools import (
    GPU_RESOURCE,
    NodePoolDescription,
    cpu_node_expressions,
    required_node_affinity,
    selector_expressions,
)
from components.registry import ImageMirror, mirrored

INFERENCE_SERVICE_API_VERSION = "serving.kserve.io/v1beta1"
CANARY_API_VERSION = "flagger.app/v1beta1"
MODEL_LABEL = "gpu-platform/model"
# On every KServe predictor pod (the predictor's `labels`, which KServe copies to its pods): the per-namespace
# AuthorizationPolicy selects these pods and no others (components/entry_auth.py), so a Flagger-released
# Deployment or a tenant's JupyterHub in the same namespace keeps its own traffic rules.
ENTRY_LABEL = "gpu-platform/entry"
ENTRY_LABEL_VALUE = "gateway"
MODELS_BUCKET = "models"

# Flagger analysis per tier: dev moves fast to give feedback, prod moves in small steps and tolerates
# a few failed checks (a slow scrape, one noisy minute) before rolling back.
CANARY_ANALYSIS: Mapping[str, Mapping[str, Any]] = {
    "dev": {"interval": "30s", "threshold": 3, "stepWeight": 25, "maxWeight": 50},
    "staging": {"interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 50},
    "prod": {"interval": "1m", "threshold": 10, "stepWeight": 5, "maxWeight": 50},
}
MIN_SUCCESS_RATE_PERCENT = 99
MAX_LATENCY_MS = 500
MAX_GPU_UTILISATION_PERCENT = 95
# A canary may wait for a GPU node to scale up from zero and pull a large image before it is ready.
CANARY_PROGRESS_DEADLINE_SECONDS = 1200

P99_LATENCY_TEMPLATE = "latency-p99"
GPU_SATURATION_TEMPLATE = "gpu-saturation"
# Flagger fills {{ namespace }}, {{ target }} and {{ interval }} in (docs.flagger.app, Metrics
# analysis, custom metrics). Istio's standard metric, reported by the server side's sidecar.
P99_LATENCY_QUERY = """histogram_quantile(0.99,
  sum(rate(istio_request_duration_milliseconds_bucket{
    reporter="destination",
    destination_workload_namespace="{{ namespace }}",
    destination_workload=~"{{ target }}"
  }[{{ interval }}])) by (le))"""
# DCGM exporter labels each GPU's series with the pod using it (Kubernetes pod-resources mapping).
GPU_SATURATION_QUERY = """avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL{
  namespace="{{ namespace }}",
  pod=~"{{ target }}-[0-9a-zA-Z]+-[0-9a-zA-Z]+"
}[{{ interval }}]))"""


@dataclass(frozen=True)
class ModelStorage:
    """How models reach the bucket: the ServiceAccount KServe's storage initializer runs as, and the
    Secret (with its endpoint) a plain server reads S3 credentials from."""

    namespace: str
    service_account: str
    secret_name: str
    endpoint: str  # host:port, no scheme
    use_https: bool
    region: str


@dataclass(frozen=True)
class ModelCanary:
    """The next version of a model and the share of requests it gets."""

    storage_path: str
    traffic_percent: int


@dataclass(frozen=True)
class ModelImportSource:
    """A Hugging Face repository at a pinned revision that fills the model's storage path
    (components/model_import.py copies it), and the Secret holding the token a gated repository needs."""

    repo: str
    revision: str
    token_secret: str


@dataclass(frozen=True)
class ModelSpec:
    """A catalog entry with a stack's overrides applied: what the workloads layer deploys."""

    name: str
    task: str
    serving: str  # kserve | deployment
    model_format: str
    runtime: Optional[str]  # ClusterServingRuntime name (kserve)
    image: Optional[str]  # server image (deployment)
    port: int
    health_path: str
    storage_path: str
    args: tuple[str, ...]
    cpu: str
    memory: str
    gpu: int
    gpu_type: Optional[str]
    min_replicas: int
    max_replicas: int
    target_concurrency: int
    canary: Optional[ModelCanary]
    # Copied into s3://models/<storage_path> by a Job before the model is deployed; None: uploaded by hand.
    source: Optional[ModelImportSource] = None
    # A MIG profile (e.g. "3g.40gb"): `gpu` slices of it per replica instead of whole GPUs.
    gpu_slice: Optional[str] = None
    purpose: str = "serving"  # serving | batch: which pools first, and the priority class
    # KServe containerConcurrency: the most requests one replica serves at once; None: no cap.
    container_concurrency: Optional[int] = None
    priority_class: Optional[str] = None  # set by the workloads layer from tier, purpose and tenant
    # GPUs one replica shards an LLM over (vLLM tensor parallelism, the catalog's serving profile): `gpu`
    # whole GPUs of one machine, never slices.
    tensor_parallel_size: int = 1
    # The entry's limits (kserve models): filled from the catalog, the stack and the tier's defaults
    # (components/entry_limits.py) before the model is deployed.
    requests_per_second: Optional[int] = None
    burst: Optional[int] = None
    timeout_seconds: Optional[int] = None
    max_request_body_mb: Optional[int] = None
    # KServe API: InferenceService, or LLMInferenceService (vLLM behind KServe's router, components/llm_serving.py).
    api: str = "InferenceService"
    # LLMInferenceService: engine ranks of `tensor_parallel_size` GPUs each per replica (vLLM data parallelism);
    # `gpu` is their product. More than one machine holds: the replica spans machines (leader and workers).
    data_parallel_size: int = 1


@dataclass(frozen=True)
class ModelArgs:
    spec: ModelSpec
    environment: str
    storage: ModelStorage
    gpu_pools: tuple[NodePoolDescription, ...]
    # What the model's resources wait for: the releases with their CRDs and controllers (KServe or
    # Flagger) and the model store's ServiceAccount. Given to each resource, since a component's own
    # depends_on does not make its children wait.
    depends_on: Sequence[pulumi.Resource] = ()
    # deployment models only:
    loadtester_url: str = ""
    image_mirror: Optional[ImageMirror] = None  # pull every image from this registry (components/registry.py)


def storage_uri(spec: ModelSpec, path: Optional[str] = None) -> str:
    return f"s3://{MODELS_BUCKET}/{(path or spec.storage_path).rstrip('/')}"


def offers(pool: NodePoolDescription, spec: ModelSpec) -> bool:
    """Whether a node of `pool` has what one replica of `spec` asks for: its MIG slice, or whole GPUs
    (a MIG pool has none left: every GPU is cut)."""
    if pool.gpu_type != spec.gpu_type:
        return False
    if spec.gpu_slice is not None:
        return pool.slice_resource(spec.gpu_slice) is not None
    if spec.data_parallel_size > 1:
        # Engine ranks over several machines (an LLMInferenceService's leader and workers): each pod takes a whole
        # machine, holding a whole number of ranks of tensor_parallel_size GPUs, and the replica whole machines.
        machine = pool.gpu_count
        return (
            not pool.mig_layout
            and not pool.time_sliced
            and spec.gpu > machine
            and machine % spec.tensor_parallel_size == 0
            and spec.gpu % machine == 0
        )
    if spec.tensor_parallel_size > 1:
        # A sharded replica needs its GPUs on one machine, whole: time slices of one GPU shard nothing.
        return not pool.mig_layout and not pool.time_sliced and pool.gpu_count >= spec.tensor_parallel_size
    return not pool.mig_layout


def pools_for(spec: ModelSpec, pools: Sequence[NodePoolDescription]) -> list[NodePoolDescription]:
    """The GPU pools `spec` may run on: those offering its GPU or slice, pools of its purpose (serving
    or batch) first if there are any."""
    matching = [pool for pool in pools if offers(pool, spec)]
    if spec.data_parallel_size > 1 and matching:
        # Every pod of a replica spanning machines requests one machine's GPUs: one machine size for all.
        largest = max(pool.gpu_count for pool in matching)
        matching = [pool for pool in matching if pool.gpu_count == largest]
    elif spec.tensor_parallel_size == 1 and spec.gpu_slice is None:
        # Machines of several GPUs are for replicas sharded over them: a one-GPU replica there would keep a
        # sharded one from fitting (and, under Karpenter, start a large machine for a small model). Such a
        # replica goes to them only where its GPU type has nothing smaller.
        single = [pool for pool in matching if pool.gpu_count <= 1]
        matching = single or matching
    preferred = [pool for pool in matching if (pool.purpose or "serving") == spec.purpose]
    return preferred or matching


def gpu_resource(spec: ModelSpec, pools: Sequence[NodePoolDescription]) -> str:
    """The extended resource one replica requests on `pools`: nvidia.com/gpu, or the MIG slice's own."""
    if spec.gpu_slice is None:
        return GPU_RESOURCE
    targets = pools_for(spec, pools)
    if not targets:
        raise ValueError(f"model {spec.name}: no {spec.gpu_type} pool offers MIG slice {spec.gpu_slice}")
    return targets[0].slice_resource(spec.gpu_slice) or GPU_RESOURCE


def placement(spec: ModelSpec, pools: Sequence[NodePoolDescription]) -> dict[str, Any]:
    """affinity and tolerations for the model's pods."""
    if not spec.gpu:
        return {"affinity": required_node_affinity(cpu_node_expressions()), "tolerations": []}
    targets = pools_for(spec, pools)
    if not targets:
        wanted = f"MIG slice {spec.gpu_slice}" if spec.gpu_slice else "whole GPUs"
        raise ValueError(f"model {spec.name}: no GPU pool of type {spec.gpu_type} offers {wanted}")
    return {
        "affinity": required_node_affinity(*(selector_expressions(pool.node_selector) for pool in targets)),
        "tolerations": [dict(toleration) for toleration in tolerations_of(targets)],
    }


def resources(spec: ModelSpec, pools: Sequence[NodePoolDescription]) -> dict[str, Any]:
    requests = {"cpu": spec.cpu, "memory": spec.memory}
    limits = dict(requests)
    if spec.gpu:
        # Extended resources go in limits (requests default to them); the device plugin counts a time
        # slice as one nvidia.com/gpu on a shared pool, and a MIG slice as one nvidia.com/mig-<profile>.
        limits[gpu_resource(spec, pools)] = str(spec.gpu)
    return {"requests": requests, "limits": limits}


# /dev/shm of a sharded LLM replica: counted against its memory limit (medium Memory).
SHARED_MEMORY_VOLUME = "dshm"
SHARED_MEMORY_SIZE = "8Gi"

# Karpenter never disrupts a node voluntarily (drift, consolidation) while a pod with this annotation runs there.
DO_NOT_DISRUPT_ANNOTATION = "karpenter.sh/do-not-disrupt"


def pod_annotations(args: ModelArgs) -> dict[str, str]:
    """`karpenter.sh/do-not-disrupt` on a prod serving GPU model that lands on Karpenter pools. Always on, not only
    during a rollout: nothing tells the platform when a Knative or Flagger rollout ends, and the serving pools
    consolidate only empty nodes (components/karpenter.py), so what the annotation costs is that a new AMI reaches
    a serving node once it empties or an operator drains it (docs/runbooks.md)."""
    spec = args.spec
    if args.environment != "prod" or spec.purpose != "serving" or not spec.gpu:
        return {}
    if not any(pool.autoscaler == "karpenter" for pool in pools_for(spec, args.gpu_pools)):
        return {}
    return {DO_NOT_DISRUPT_ANNOTATION: "true"}


def inference_service(args: ModelArgs) -> dict[str, Any]:
    spec = args.spec
    model: dict[str, Any] = {
        "modelFormat": {"name": spec.model_format},
        "runtime": spec.runtime,
        "storageUri": storage_uri(spec, spec.canary.storage_path if spec.canary else None),
        "resources": resources(spec, args.gpu_pools),
    }
    if spec.args:
        model["args"] = list(spec.args)
    shared_memory = spec.tensor_parallel_size > 1
    if shared_memory:
        # The shards of a replica talk through NCCL over /dev/shm; a container's default 64 MiB stalls them
        # (vLLM docs, "Using Docker": --ipc=host or a large --shm-size for tensor parallelism). Knative allows
        # emptyDir volumes by default (config-features kubernetes.podspec-volumes-emptydir).
        model["volumeMounts"] = [{"name": SHARED_MEMORY_VOLUME, "mountPath": "/dev/shm"}]
    predictor: dict[str, Any] = {
        "serviceAccountName": args.storage.service_account,
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        # Knative's concurrency autoscaling: in-flight requests per replica.
        "scaleMetric": "concurrency",
        "scaleTarget": spec.target_concurrency,
        **placement(spec, args.gpu_pools),
        "model": model,
    }
    if shared_memory:
        predictor["volumes"] = [
            {"name": SHARED_MEMORY_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": SHARED_MEMORY_SIZE}}
        ]
    if spec.timeout_seconds is not None:
        # The request's whole life, first byte to last (KServe -> the Knative revision's timeoutSeconds): a streamed
        # LLM answer must end within it, so LLM entries raise it (manifests/models, `limits.timeoutSeconds`).
        predictor["timeout"] = spec.timeout_seconds
    predictor["labels"] = {ENTRY_LABEL: ENTRY_LABEL_VALUE}
    if spec.container_concurrency is not None:
        # A hard cap: Knative's queue-proxy holds request N+1 until one finishes, so an overloaded GPU
        # queues instead of running out of memory (Knative "Configuring concurrency", hard limit).
        predictor["containerConcurrency"] = spec.container_concurrency
    if spec.priority_class is not None:
        # Knative passes it to the pod once kubernetes.podspec-priorityclassname is on (components/serving.py).
        predictor["priorityClassName"] = spec.priority_class
    if spec.canary is not None:
        # KServe rolls the changed storageUri out as a new revision with this share; the previous
        # revision keeps the rest until the canary is promoted (canary removed from the catalog entry
        # and storagePath moved to the new version).
        predictor["canaryTrafficPercent"] = spec.canary.traffic_percent
    if not predictor["tolerations"]:
        del predictor["tolerations"]
    annotations = pod_annotations(args)
    if annotations:
        # The predictor's own annotations go on its pods (KServe ComponentExtensionSpec `annotations`).
        predictor["annotations"] = annotations
    return {
        "apiVersion": INFERENCE_SERVICE_API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": spec.name,
            "namespace": args.storage.namespace,
            "labels": {MODEL_LABEL: spec.name, "gpu-platform/task": spec.task},
        },
        "spec": {"predictor": predictor},
    }


# --- LLMInferenceService (components/llm_serving.py) ---------------------------------------------------------

# serving.kserve.io/v1alpha2: the storage version of kserve-llmisvc-crd v0.20.0, the one its presets use
# (v1alpha1 is still served).
LLM_INFERENCE_SERVICE_API_VERSION = "serving.kserve.io/v1alpha2"
# The images of KServe v0.20.0's presets (kserve-runtime-configs files/llmisvcconfigs/resources.yaml:
# kserve-config-llm-template and -worker-data-parallel for vLLM, kserve-config-llm-scheduler for the endpoint
# picker and its tokenizer sidecar), named again in each LLMInferenceService so that the private-registry mirror
# applies to them (KServe merges our spec over the presets strategically, containers by name:
# pkg/controller/llmisvc mergeSpecs); tests/test_llm_inference_service.py keeps them equal to the presets.
VLLM_IMAGE = "ghcr.io/llm-d/llm-d-cuda:v0.8.0"
ENDPOINT_PICKER_IMAGE = "ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.9.0"
TOKENIZER_IMAGE = "ghcr.io/llm-d/llm-d-uds-tokenizer:vllm-v0.19.1"
# The engine's container in KServe's presets, and the scheduler's two.
MAIN_CONTAINER = "main"
TOKENIZER_CONTAINER = "tokenizer"
# vLLM's flag for the tensor parallel size: KServe's template passes it from `parallelism.tensor`.
TENSOR_PARALLEL_FLAG = "--tensor-parallel-size"


@dataclass(frozen=True)
class LlmLayout:
    """How one replica of an LLMInferenceService sits on machines."""

    gpus_per_pod: int
    pods: int  # 1: one pod; more: a leader and pods - 1 workers (LeaderWorkerSet)
    ranks_per_pod: int  # vLLM data parallel ranks in each pod (KServe `parallelism.dataLocal`)

    @property
    def spans_machines(self) -> bool:
        return self.pods > 1


def llm_layout(spec: ModelSpec, pools: Sequence[NodePoolDescription]) -> LlmLayout:
    """One pod holding the replica's GPUs, or, when they are more than a machine of its pools holds (data
    parallelism over machines), a whole machine's GPUs per pod."""
    if spec.data_parallel_size == 1:
        return LlmLayout(gpus_per_pod=spec.gpu, pods=1, ranks_per_pod=1)
    targets = pools_for(spec, pools)
    if not targets:
        raise ValueError(f"model {spec.name}: no {spec.gpu_type} pool has machines its {spec.gpu} GPUs span evenly")
    machine = targets[0].gpu_count
    return LlmLayout(gpus_per_pod=machine, pods=spec.gpu // machine, ranks_per_pod=machine // spec.tensor_parallel_size)


def llm_engine_args(spec: ModelSpec) -> list[str]:
    """`vllm serve` arguments after KServe's own: the profile's, but the tensor parallel size, which KServe's
    template passes from `parallelism.tensor`, and the catalog entry's `args` (vLLM engine arguments)."""
    return [arg for arg in spec.args if arg.split("=", 1)[0] != TENSOR_PARALLEL_FLAG]


def _llm_pod(args: ModelArgs, layout: LlmLayout) -> dict[str, Any]:
    spec = args.spec
    requests = {"cpu": spec.cpu, "memory": spec.memory}
    container: dict[str, Any] = {
        "name": MAIN_CONTAINER,
        "image": mirrored(args.image_mirror, VLLM_IMAGE),
        "args": llm_engine_args(spec),
        "resources": {"requests": requests, "limits": {**requests, GPU_RESOURCE: str(layout.gpus_per_pod)}},
    }
    pod: dict[str, Any] = {
        # The storage initializer reads the model store's credentials from this ServiceAccount's Secret, as for an
        # InferenceService (components/model_store.py).
        "serviceAccountName": args.storage.service_account,
        "containers": [container],
        **placement(spec, args.gpu_pools),
        # KServe's template mounts `dshm` at /dev/shm at 1Gi; the shards' NCCL traffic needs ours.
        "volumes": [{"name": SHARED_MEMORY_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": SHARED_MEMORY_SIZE}}],
    }
    if spec.priority_class is not None:
        pod["priorityClassName"] = spec.priority_class
    if not pod["tolerations"]:
        del pod["tolerations"]
    return pod


def llm_inference_service(args: ModelArgs) -> dict[str, Any]:
    """The model as a KServe LLMInferenceService: vLLM replicas behind KServe's router, whose scheduler (the
    inference extension's endpoint picker, kserve-config-llm-scheduler) sends each request to the replica with
    the longest cached prefix of its prompt, weighed against queue depth and KV-cache use.

    Fixed `replicas` (the model's minReplicas): scaling an LLMInferenceService in v0.20 needs the
    workload-variant-autoscaler (`scaling.wva`), which the platform does not install.

    In the mesh like every model pod (the tenant namespace injects sidecars; STRICT mTLS in prod), and under the
    tenant's RequestAuthentication and AuthorizationPolicy through the entry label. What the router needs to reach
    the pods, all inside the mesh: the gateway calls the endpoint picker (gRPC ext_proc, port 9002) and then the
    vLLM pod it picked (port 8000) with the caller's token; the endpoint picker scrapes each vLLM pod's
    `/metrics` on port 8000 without one (components/entry_auth.py admits that path to mesh peers). The endpoint
    picker's pods carry no entry label: the gateway's ext_proc calls carry no token."""
    spec = args.spec
    layout = llm_layout(spec, args.gpu_pools)
    parallelism: dict[str, Any] = {"tensor": spec.tensor_parallel_size}
    if spec.data_parallel_size > 1:
        parallelism.update(data=spec.data_parallel_size, dataLocal=layout.ranks_per_pod)
    labels = {ENTRY_LABEL: ENTRY_LABEL_VALUE, MODEL_LABEL: spec.name}
    body: dict[str, Any] = {
        "model": {"uri": storage_uri(spec), "name": spec.name},
        "replicas": spec.min_replicas,
        "parallelism": parallelism,
        # Labels and annotations KServe puts on the workload's pods.
        "labels": labels,
        "template": _llm_pod(args, layout),
        "router": {
            # The default Gateway (KServe's `kserveIngressGateway`) and KServe's HTTPRoute to the InferencePool.
            "gateway": {},
            "route": {},
            "scheduler": {
                "template": {
                    "containers": [
                        {"name": MAIN_CONTAINER, "image": mirrored(args.image_mirror, ENDPOINT_PICKER_IMAGE)},
                        {"name": TOKENIZER_CONTAINER, "image": mirrored(args.image_mirror, TOKENIZER_IMAGE)},
                    ]
                }
            },
        },
    }
    if layout.spans_machines:
        # The leader runs `template`, each worker `worker` (KServe's kserve-config-llm-worker-data-parallel),
        # together a LeaderWorkerSet group of `pods` pods, one machine each.
        body["worker"] = _llm_pod(args, layout)
    annotations = pod_annotations(args)
    if annotations:
        body["annotations"] = annotations
    return {
        "apiVersion": LLM_INFERENCE_SERVICE_API_VERSION,
        "kind": "LLMInferenceService",
        "metadata": {
            "name": spec.name,
            "namespace": args.storage.namespace,
            "labels": {MODEL_LABEL: spec.name, "gpu-platform/task": spec.task},
        },
        "spec": body,
    }


def metric_templates(namespace: str, prometheus_url: str) -> list[dict[str, Any]]:
    def template(name: str, query: str) -> dict[str, Any]:
        return {
            "apiVersion": CANARY_API_VERSION,
            "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"provider": {"type": "prometheus", "address": prometheus_url}, "query": query},
        }

    return [template(P99_LATENCY_TEMPLATE, P99_LATENCY_QUERY), template(GPU_SATURATION_TEMPLATE, GPU_SATURATION_QUERY)]


def canary(args: ModelArgs) -> dict[str, Any]:
    spec, namespace = args.spec, args.storage.namespace
    canary_url = f"http://{spec.name}-canary.{namespace}:{spec.port}"
    metrics: list[dict[str, Any]] = [
        {"name": "request-success-rate", "thresholdRange": {"min": MIN_SUCCESS_RATE_PERCENT}, "interval": "1m"},
        {"name": "request-duration", "thresholdRange": {"max": MAX_LATENCY_MS}, "interval": "1m"},
        {
            "name": "p99-latency",
            "templateRef": {"name": P99_LATENCY_TEMPLATE, "namespace": namespace},
            "thresholdRange": {"max": MAX_LATENCY_MS},
            "interval": "1m",
        },
    ]
    if spec.gpu:
        # Only for GPU models: on a CPU model the query has no series and every check would fail.
        metrics.append(
            {
                "name": "gpu-saturation",
                "templateRef": {"name": GPU_SATURATION_TEMPLATE, "namespace": namespace},
                "thresholdRange": {"max": MAX_GPU_UTILISATION_PERCENT},
                "interval": "1m",
            }
        )
    webhooks = [
        {
            # Before any traffic moves: the new version answers at all.
            "name": "acceptance-test",
            "type": "pre-rollout",
            "url": f"{args.loadtester_url.rstrip('/')}/",
            "timeout": "30s",
            "metadata": {"type": "bash", "cmd": f"curl -sf {canary_url}{spec.health_path}"},
        },
        {
            # During the analysis: steady traffic, so the metrics above have samples to judge.
            "name": "load-test",
            "type": "rollout",
            "url": f"{args.loadtester_url.rstrip('/')}/",
            "timeout": "5s",
            "metadata": {"cmd": f"hey -z 1m -q 10 -c 2 {canary_url}{spec.health_path}"},
        },
    ]
    return {
        "apiVersion": CANARY_API_VERSION,
        "kind": "Canary",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": {MODEL_LABEL: spec.name}},
        "spec": {
            "provider": "istio",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": spec.name},
            "progressDeadlineSeconds": CANARY_PROGRESS_DEADLINE_SECONDS,
            "service": {"port": spec.port, "targetPort": spec.port, "portName": "http"},
            "analysis": {**CANARY_ANALYSIS[args.environment], "metrics": metrics, "webhooks": webhooks},
        },
    }


def server_args(args: ModelArgs) -> list[str]:
    """Triton reads its model repository straight from MinIO (`s3://http://host:port/bucket/path`)."""
    spec, storage = args.spec, args.storage
    scheme = "https" if storage.use_https else "http"
    return [
        "tritonserver",
        f"--model-repository=s3://{scheme}://{storage.endpoint}/{MODELS_BUCKET}/{spec.storage_path.rstrip('/')}",
        f"--http-port={spec.port}",
        *spec.args,
    ]


class KServeModel(pulumi.ComponentResource):
    """One InferenceService from the catalog."""

    inference_service: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: ModelArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:workloads:KServeModel", name, {}, opts)
        manifest = inference_service(args)
        self.inference_service = custom_resource(
            f"{name}-isvc",
            manifest,
            pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        self.register_outputs({})


class LlmModel(pulumi.ComponentResource):
    """One LLMInferenceService from the catalog (`api: LLMInferenceService`)."""

    llm_inference_service: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: ModelArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:workloads:LlmModel", name, {}, opts)
        self.llm_inference_service = custom_resource(
            f"{name}-llmisvc",
            llm_inference_service(args),
            pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        self.register_outputs({})


class CanaryModel(pulumi.ComponentResource):
    """A plain Deployment of a model server, its autoscaler and the Flagger Canary that releases it."""

    deployment: k8s.apps.v1.Deployment
    canary: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: ModelArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:workloads:CanaryModel", name, {}, opts)
        spec, storage = args.spec, args.storage
        child = pulumi.ResourceOptions(parent=self)
        labels = {"app": spec.name, MODEL_LABEL: spec.name}
        where = placement(spec, args.gpu_pools)
        credentials = [
            k8s.core.v1.EnvVarArgs(
                name=variable,
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=storage.secret_name, key=variable)
                ),
            )
            for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=spec.name, namespace=storage.namespace, labels=labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=max(spec.min_replicas, 1),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": spec.name}),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations=pod_annotations(args) or None),
                    spec=k8s.core.v1.PodSpecArgs(
                        priority_class_name=spec.priority_class,
                        affinity=where["affinity"],
                        tolerations=where["tolerations"] or None,
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="server",
                                image=mirrored(args.image_mirror, spec.image) if spec.image else None,
                                args=server_args(args),
                                ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=spec.port)],
                                env=[*credentials, k8s.core.v1.EnvVarArgs(name="AWS_DEFAULT_REGION", value=storage.region)],
                                readiness_probe=k8s.core.v1.ProbeArgs(
                                    http_get=k8s.core.v1.HTTPGetActionArgs(path=spec.health_path, port="http"),
                                    period_seconds=5,
                                ),
                                resources=resources(spec, args.gpu_pools),
                            )
                        ],
                    ),
                ),
            ),
            # Flagger owns the replica count and the pod template's rollout once the Canary exists.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on), ignore_changes=["spec.replicas"]),
        )
        autoscaler = k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=spec.name, namespace=storage.namespace, labels=labels),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version="apps/v1", kind="Deployment", name=spec.name
                ),
                min_replicas=max(spec.min_replicas, 1),
                max_replicas=spec.max_replicas,
                metrics=[
                    k8s.autoscaling.v2.MetricSpecArgs(
                        type="Resource",
                        resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                            name="cpu",
                            target=k8s.autoscaling.v2.MetricTargetArgs(type="Utilization", average_utilization=70),
                        ),
                    )
                ],
            ),
            opts=child,
        )
        manifest = canary(args)
        self.canary = custom_resource(
            f"{name}-canary",
            manifest,
            pulumi.ResourceOptions(parent=self, depends_on=[self.deployment, autoscaler, *args.depends_on]),
        )
        self.register_outputs({})


class CanaryMetrics(pulumi.ComponentResource):
    """The MetricTemplates the Canaries of one namespace reference."""

    def __init__(
        self,
        name: str,
        namespace: str,
        prometheus_url: str,
        depends_on: Sequence[pulumi.Resource],
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        super().__init__("gpu-platform:workloads:CanaryMetrics", name, {}, opts)
        self.templates = [
            custom_resource(
                f"{name}-{manifest['metadata']['name']}",
                manifest,
                pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
            )
            for manifest in metric_templates(namespace, prometheus_url)
        ]
        self.register_outputs({})

