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

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.batching import (
    BATCHING_VOLUME,
    TORCHSERVE_CONFIG_KEY,
    TORCHSERVE_CONFIG_PATH,
    TRITON_CONFIG_KEY,
    TRITON_LOCAL_REPOSITORY,
    Batching,
    config_map_name,
    torchserve_config,
    triton_config,
)
from components.charts import CHART_PINS
from components.cluster import tolerations_of
from components.custom_resource import custom_resource
from components.model_metrics import (
    LLM_INFERENCE_SERVICE_METRICS,
    MODEL_LABEL,
    RUNTIME_METRICS,
    TRITON_METRICS,
    pod_scrape_annotations,
    pod_scrape_labels,
)
from components.node_pools import (
    GPU_RESOURCE,
    NodePoolDescription,
    cpu_node_expressions,
    one_gpu_machines_first,
    required_node_affinity,
    selector_expressions,
)
from components.registry import ImageMirror, mirrored

INFERENCE_SERVICE_API_VERSION = "serving.kserve.io/v1beta1"
CANARY_API_VERSION = "flagger.app/v1beta1"
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
# DCGM exporter labels each GPU's series with the pod using it (Kubernetes pod-resources mapping); its ServiceMonitor
# does not honor labels, so Prometheus keeps the exporter's own pod as `namespace`/`pod` and stores the workload's as
# `exported_namespace`/`exported_pod`.
GPU_SATURATION_QUERY = """avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL{
  exported_namespace="{{ namespace }}",
  exported_pod=~"{{ target }}-[0-9a-zA-Z]+-[0-9a-zA-Z]+"
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
class KedaTargets:
    """Per-replica targets KEDA scales a Standard-mode model on (the catalog's `autoscaling.keda`)."""

    requests_waiting: Optional[float] = None
    kv_cache_usage: Optional[float] = None
    gpu_utilization: Optional[int] = None


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
    # Server-side batching of a TorchServe or Triton model (components/batching.py); None: the store's own config.
    batching: Optional[Batching] = None
    # `knative` (Knative mode, concurrency scaling) or `keda` (KServe Standard mode, scaled by KEDA on `keda`).
    autoscaler: str = "knative"
    keda: Optional[KedaTargets] = None
    # GB of weights cached on the local NVMe of its pools (components/local_model_cache.py); 0: not cached.
    local_cache_gb: int = 0
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
    # Our Prometheus (components/observability.py PROMETHEUS_URL): what KEDA queries for a `keda` model.
    prometheus_url: str = ""


def storage_uri(spec: ModelSpec, path: Optional[str] = None) -> str:
    return f"s3://{MODELS_BUCKET}/{(path or spec.storage_path).rstrip('/')}"


def served_storage_uri(spec: ModelSpec) -> str:
    """The storageUri the model is served from (its canary's while one runs). KServe gives a model the local cache
    whose sourceModelUri is exactly this (components/local_model_cache.py), so every way of serving it uses this."""
    return storage_uri(spec, spec.canary.storage_path if spec.canary else None)


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
        # A one-GPU replica goes to several-GPU machines only where its GPU type has nothing smaller.
        matching = one_gpu_machines_first(matching)
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

TORCHSERVE_RUNTIME = "kserve-torchserve"
BATCHING_DIGEST_ANNOTATION = "gpu-platform/batching-config"
REPOSITORY_VOLUME = "repository"  # the Triton Deployment's local copy of its model repository (with batching)
# KServe's storage initializer at the KServe pin (kserve-resources values.yaml `storage.image`): Python with boto3,
# the S3 client KServe itself downloads models with. Its entrypoint copies `<uri>` to `<directory>`.
STORAGE_INITIALIZER_IMAGE = f"kserve/storage-initializer:{CHART_PINS['kserve-resources'].version}"
# Copying a repository is I/O bound; the requests are small.
STORE_COPY_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "250m", "memory": "512Mi"},
    "limits": {"memory": "1Gi"},
}

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


# KServe v0.20.0 names the raw-Deployment mode `Standard` (it was `RawDeployment`); an InferenceService picks it with
# this annotation, and KEDA as its autoscaler with the next (KServe docs, "Autoscaling with KEDA": KEDA scaling only
# in Standard mode). The controller then makes a Deployment `<name>-predictor` and a KEDA ScaledObject of the same
# name from `autoScaling.metrics` (pkg/controller/v1beta1/inferenceservice/reconcilers/keda/keda_reconciler.go).
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
STANDARD_MODE = "Standard"
AUTOSCALER_CLASS_ANNOTATION = "serving.kserve.io/autoscalerClass"
KEDA_AUTOSCALER_CLASS = "keda"
# vLLM's gauges (vllm/v1/metrics/loggers.py; `kv_cache_usage_perc` is the v1 engine's name, vLLM >= 0.10, formerly
# `gpu_cache_usage_perc`), and DCGM's utilisation field, which the exporter labels with the pod using the GPU.
REQUESTS_WAITING_METRIC = "vllm:num_requests_waiting"
KV_CACHE_USAGE_METRIC = "vllm:kv_cache_usage_perc"
GPU_UTILIZATION_METRIC = "DCGM_FI_DEV_GPU_UTIL"
# The workload's labels on DCGM series as our Prometheus stores them (keda_queries explains the `exported_`).
DCGM_WORKLOAD_LABELS = ("exported_namespace", "exported_pod")


def predictor_pods(spec: ModelSpec) -> str:
    """The regex of a model's predictor pods: KServe names the Standard-mode Deployment `<isvc>-predictor`, so its
    pods are `<isvc>-predictor-<replicaset hash>-<pod hash>`."""
    return f"{spec.name}-predictor-.*"


def keda_queries(spec: ModelSpec, namespace: str) -> list[tuple[str, str, str]]:
    """(name, PromQL, per-replica target) for each KEDA threshold of `spec`. Each query sums over the model's pods:
    KServe leaves the trigger's metricType unset, so KEDA's Prometheus scaler uses AverageValue and the HPA divides
    the sum by the replicas before comparing it with the target (the reconciler passes target.value as the
    trigger's `threshold`)."""
    targets = spec.keda
    if targets is None:
        return []
    selector = f'namespace="{namespace}", pod=~"{predictor_pods(spec)}"'
    queries = []
    if targets.requests_waiting is not None:
        queries.append(
            ("requests-waiting", f"sum({REQUESTS_WAITING_METRIC}{{{selector}}})", _quantity(targets.requests_waiting))
        )
    if targets.kv_cache_usage is not None:
        queries.append(("kv-cache-usage", f"sum({KV_CACHE_USAGE_METRIC}{{{selector}}})", _quantity(targets.kv_cache_usage)))
    if targets.gpu_utilization is not None:
        # The exporter labels each GPU's series with the `namespace` and `pod` using it (kubelet pod-resources,
        # DCGM_EXPORTER_KUBERNETES), and its ServiceMonitor leaves honorLabels false (gpu-operator v26.7.0 and
        # dcgm-exporter 4.8.2 values.yaml), so Prometheus keeps the exporter pod's own as `namespace`/`pod` and
        # renames the workload's `exported_namespace`/`exported_pod`. One series per GPU: divided by the GPUs of a
        # replica, the sum is each replica's mean utilisation, added up.
        gpu_selector = f'{DCGM_WORKLOAD_LABELS[0]}="{namespace}", {DCGM_WORKLOAD_LABELS[1]}=~"{predictor_pods(spec)}"'
        gpus = max(spec.gpu, 1)
        query = f"sum({GPU_UTILIZATION_METRIC}{{{gpu_selector}}})" + (f" / {gpus}" if gpus > 1 else "")
        queries.append(("gpu-utilization", query, _quantity(targets.gpu_utilization)))
    return queries


def _quantity(value: float) -> str:
    """A Kubernetes quantity string: `4`, `0.8`."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def keda_metrics(args: ModelArgs) -> list[dict[str, Any]]:
    """The predictor's `autoScaling.metrics`: one External Prometheus metric per threshold."""
    if not args.prometheus_url:
        raise ValueError(f"model {args.spec.name}: KEDA scaling needs the Prometheus URL")
    return [
        {
            "type": "External",
            "external": {
                "metric": {"backend": "prometheus", "serverAddress": args.prometheus_url, "query": query},
                "target": {"type": "Value", "value": target},
            },
        }
        for _, query, target in keda_queries(args.spec, args.storage.namespace)
    ]


def inference_service(args: ModelArgs) -> dict[str, Any]:
    spec = args.spec
    model: dict[str, Any] = {
        "modelFormat": {"name": spec.model_format},
        "runtime": spec.runtime,
        "storageUri": served_storage_uri(spec),
        "resources": resources(spec, args.gpu_pools),
    }
    if spec.args:
        model["args"] = list(spec.args)
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if spec.tensor_parallel_size > 1:
        # The shards of a replica talk through NCCL over /dev/shm; a container's default 64 MiB stalls them
        # (vLLM docs, "Using Docker": --ipc=host or a large --shm-size for tensor parallelism). Knative allows
        # emptyDir volumes by default (config-features kubernetes.podspec-volumes-emptydir).
        volumes.append({"name": SHARED_MEMORY_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": SHARED_MEMORY_SIZE}})
        mounts.append({"name": SHARED_MEMORY_VOLUME, "mountPath": "/dev/shm"})
    if spec.batching is not None and spec.runtime == TORCHSERVE_RUNTIME:
        # The catalog's batching over the store's config.properties, the one file TorchServe and KServe's wrapper
        # read (components/batching.py); the storage initializer's copy of the rest stays as it is.
        volumes.append({"name": BATCHING_VOLUME, "configMap": {"name": config_map_name(spec.name)}})
        mounts.append(
            {"name": BATCHING_VOLUME, "mountPath": TORCHSERVE_CONFIG_PATH, "subPath": TORCHSERVE_CONFIG_KEY, "readOnly": True}
        )
    if mounts:
        model["volumeMounts"] = mounts
    keda = spec.autoscaler == KEDA_AUTOSCALER_CLASS
    predictor: dict[str, Any] = {
        "serviceAccountName": args.storage.service_account,
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
    }
    if keda:
        predictor["autoScaling"] = {"metrics": keda_metrics(args)}
    else:
        # Knative's concurrency autoscaling: in-flight requests per replica.
        predictor["scaleMetric"] = "concurrency"
        predictor["scaleTarget"] = spec.target_concurrency
    predictor.update({**placement(spec, args.gpu_pools), "model": model})
    if volumes:
        predictor["volumes"] = volumes
    if spec.timeout_seconds is not None:
        # The request's whole life, first byte to last (KServe -> the Knative revision's timeoutSeconds): a streamed
        # LLM answer must end within it, so LLM entries raise it (manifests/models, `limits.timeoutSeconds`).
        predictor["timeout"] = spec.timeout_seconds
    # The model's name and the scrape label: the model server's own metrics (vLLM's) reach Prometheus through
    # Istio's merged metrics port (components/model_metrics.py).
    predictor["labels"] = {ENTRY_LABEL: ENTRY_LABEL_VALUE, **pod_scrape_labels(spec.name)}
    if spec.container_concurrency is not None and not keda:
        # A hard cap: Knative's queue-proxy holds request N+1 until one finishes, so an overloaded GPU
        # queues instead of running out of memory (Knative "Configuring concurrency", hard limit).
        predictor["containerConcurrency"] = spec.container_concurrency
    if spec.priority_class is not None:
        # Knative passes it to the pod once kubernetes.podspec-priorityclassname is on (components/serving.py).
        predictor["priorityClassName"] = spec.priority_class
    if spec.canary is not None:
        if keda:
            raise ValueError(f"model {spec.name}: KServe's canary traffic split is Knative's; none in Standard mode")
        # KServe rolls the changed storageUri out as a new revision with this share; the previous
        # revision keeps the rest until the canary is promoted (canary removed from the catalog entry
        # and storagePath moved to the new version).
        predictor["canaryTrafficPercent"] = spec.canary.traffic_percent
    if not predictor["tolerations"]:
        del predictor["tolerations"]
    # The predictor's own annotations go on its pods (KServe ComponentExtensionSpec `annotations`).
    annotations = {
        **pod_annotations(args),
        **pod_scrape_annotations(RUNTIME_METRICS.get(spec.runtime or "")),
        **batching_annotations(spec),
    }
    if annotations:
        predictor["annotations"] = annotations
    metadata: dict[str, Any] = {
        "name": spec.name,
        "namespace": args.storage.namespace,
        "labels": {MODEL_LABEL: spec.name, "gpu-platform/task": spec.task},
    }
    if keda:
        # containerConcurrency and the concurrency target are Knative's (queue-proxy); a Standard-mode pod has no
        # queue-proxy, so neither is set: vLLM's own queue (maxNumSeqs) holds what a replica cannot run yet.
        metadata["annotations"] = {
            DEPLOYMENT_MODE_ANNOTATION: STANDARD_MODE,
            AUTOSCALER_CLASS_ANNOTATION: KEDA_AUTOSCALER_CLASS,
        }
    return {
        "apiVersion": INFERENCE_SERVICE_API_VERSION,
        "kind": "InferenceService",
        "metadata": metadata,
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
    # The entry label puts the pods under the tenant's policies; the scrape label and annotations bring vLLM's metrics
    # to Prometheus through Istio's merged port, as for every model pod (components/model_metrics.py).
    labels = {ENTRY_LABEL: ENTRY_LABEL_VALUE, **pod_scrape_labels(spec.name)}
    body: dict[str, Any] = {
        "model": {"uri": served_storage_uri(spec), "name": spec.name},
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
    body["annotations"] = {**pod_annotations(args), **pod_scrape_annotations(LLM_INFERENCE_SERVICE_METRICS)}
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
    """Triton reads its model repository straight from MinIO (`s3://http://host:port/bucket/path`), or, with the
    catalog's batching, from the local copy the init container made (components/batching.py)."""
    spec, storage = args.spec, args.storage
    scheme = "https" if storage.use_https else "http"
    repository = (
        TRITON_LOCAL_REPOSITORY
        if spec.batching is not None
        else f"s3://{scheme}://{storage.endpoint}/{MODELS_BUCKET}/{spec.storage_path.rstrip('/')}"
    )
    return ["tritonserver", f"--model-repository={repository}", f"--http-port={spec.port}", *spec.args]


def batching_files(spec: ModelSpec) -> dict[str, str]:
    """The server config file the catalog's batching writes (file name -> content); none without batching."""
    if spec.batching is None:
        return {}
    if spec.serving == "deployment":
        return {TRITON_CONFIG_KEY: triton_config(spec.batching)}
    if spec.runtime == TORCHSERVE_RUNTIME:
        return {TORCHSERVE_CONFIG_KEY: torchserve_config(spec.batching)}
    raise ValueError(f"model {spec.name}: batching is for TorchServe and Triton models, not {spec.runtime}")


def batching_annotations(spec: ModelSpec) -> dict[str, str]:
    """A digest of the batching config on the pods: a changed batch size rolls them (a mounted ConfigMap alone would
    change under running servers, which read it once at start)."""
    files = batching_files(spec)
    if not files:
        return {}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    return {BATCHING_DIGEST_ANNOTATION: digest}


def store_credentials(storage: ModelStorage) -> list[k8s.core.v1.EnvVarArgs]:
    """The store's S3 keys, from its Secret (never in plain text)."""
    return [
        k8s.core.v1.EnvVarArgs(
            name=variable,
            value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=storage.secret_name, key=variable)
            ),
        )
        for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]


def store_env(storage: ModelStorage) -> list[k8s.core.v1.EnvVarArgs]:
    """S3 access for KServe's storage initializer, as KServe's own S3 credential builder sets it (credentials from
    the store's Secret, the endpoint and scheme beside)."""
    scheme = "https" if storage.use_https else "http"
    return [
        *store_credentials(storage),
        k8s.core.v1.EnvVarArgs(name="AWS_DEFAULT_REGION", value=storage.region),
        k8s.core.v1.EnvVarArgs(name="AWS_ENDPOINT_URL", value=f"{scheme}://{storage.endpoint}"),
        k8s.core.v1.EnvVarArgs(name="S3_ENDPOINT", value=storage.endpoint),
        k8s.core.v1.EnvVarArgs(name="S3_USE_HTTPS", value="1" if storage.use_https else "0"),
    ]


def batching_config_map(name: str, spec: ModelSpec, namespace: str, opts: pulumi.ResourceOptions) -> Optional[k8s.core.v1.ConfigMap]:
    files = batching_files(spec)
    if not files:
        return None
    return k8s.core.v1.ConfigMap(
        f"{name}-batching",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=config_map_name(spec.name), namespace=namespace, labels={MODEL_LABEL: spec.name}),
        data=files,
        opts=opts,
    )


class KServeModel(pulumi.ComponentResource):
    """One InferenceService from the catalog."""

    inference_service: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: ModelArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("gpu-platform:workloads:KServeModel", name, {}, opts)
        manifest = inference_service(args)
        # The server config the catalog's batching writes, before the pods that mount it.
        config = batching_config_map(name, args.spec, args.storage.namespace, pulumi.ResourceOptions(parent=self))
        self.inference_service = custom_resource(
            f"{name}-isvc",
            manifest,
            pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, *([config] if config else [])]),
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
        # Triton's metrics (port 8002) through Istio's merged metrics port (components/model_metrics.py).
        pod_labels = {**labels, **pod_scrape_labels(spec.name)}
        pod_metadata_annotations = {**pod_annotations(args), **pod_scrape_annotations(TRITON_METRICS)}
        credentials = store_credentials(storage)
        # With the catalog's batching, Triton reads a local copy of the repository with the catalog's config.pbtxt
        # laid over the store's (components/batching.py); without, straight from the store.
        config = batching_config_map(name, spec, storage.namespace, child)
        init_containers, volumes, mounts = None, None, None
        if config is not None and spec.batching is not None:
            repository = k8s.core.v1.VolumeMountArgs(name=REPOSITORY_VOLUME, mount_path=TRITON_LOCAL_REPOSITORY)
            init_containers = [
                k8s.core.v1.ContainerArgs(
                    name="fetch-repository",
                    image=mirrored(args.image_mirror, STORAGE_INITIALIZER_IMAGE),
                    args=[storage_uri(spec), TRITON_LOCAL_REPOSITORY],
                    env=store_env(storage),
                    resources={kind: dict(values) for kind, values in STORE_COPY_RESOURCES.items()},
                    volume_mounts=[repository],
                )
            ]
            volumes = [
                k8s.core.v1.VolumeArgs(name=REPOSITORY_VOLUME, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                k8s.core.v1.VolumeArgs(
                    name=BATCHING_VOLUME, config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=config_map_name(spec.name))
                ),
            ]
            mounts = [
                repository,
                k8s.core.v1.VolumeMountArgs(
                    name=BATCHING_VOLUME,
                    mount_path=f"{TRITON_LOCAL_REPOSITORY}/{spec.batching.model}/{TRITON_CONFIG_KEY}",
                    sub_path=TRITON_CONFIG_KEY,
                    read_only=True,
                ),
            ]
        pod_metadata_annotations.update(batching_annotations(spec))
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=spec.name, namespace=storage.namespace, labels=labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=max(spec.min_replicas, 1),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": spec.name}),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels, annotations=pod_metadata_annotations),
                    spec=k8s.core.v1.PodSpecArgs(
                        priority_class_name=spec.priority_class,
                        affinity=where["affinity"],
                        tolerations=where["tolerations"] or None,
                        init_containers=init_containers,
                        volumes=volumes,
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
                                volume_mounts=mounts,
                            )
                        ],
                    ),
                ),
            ),
            # Flagger owns the replica count and the pod template's rollout once the Canary exists.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*args.depends_on, *([config] if config else [])], ignore_changes=["spec.replicas"]
            ),
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

