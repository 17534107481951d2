"""Workload rules: pods (every pod-bearing kind and KServe components), InferenceServices, Canaries.

Pods are read through shapes.pods_of, which knows where each kind keeps its pod template: Pod,
Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Knative Service, and each component
of a KServe InferenceService (spec.predictor / transformer / explainer, with their `model` or
framework shortcut, `containers`, `initContainers` and `workerSpec`).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from pulumi_policy import Severity

from . import config
from .builders import resource_policy
from .shapes import (
    CANARY,
    GPU_TAINT_KEY,
    INFERENCE_SERVICE,
    KSERVE_CONTAINER_KEYS,
    gpu_requests,
    image_pinning_problem,
    namespace_of,
    pods_of,
    tolerates_gpu_taint,
)
from .values import UNKNOWN, as_list, as_mapping, get

# --- GPU requests and the GPU taint -------------------------------------------------------------


def _same_quantity(a: Any, b: Any) -> bool:
    try:
        return float(str(a)) == float(str(b))
    except ValueError:
        return str(a) == str(b)


def check_gpu_limits_and_tolerations(resource_type: str, props: Mapping[str, Any]) -> Iterator[str]:
    for pod in pods_of(resource_type, props):
        gpu_containers = []
        for container in pod.containers:
            requested = gpu_requests(container.spec)
            if requested:
                gpu_containers.append(container)
            for resource, sections in requested.items():
                if "limits" not in sections:
                    yield (
                        f"{container.path}{container.who} requests {resource}: {sections['requests']} but does not set it in "
                        f"resources.limits; Kubernetes takes GPUs from limits (a request alone is rejected). Set "
                        f'{container.path}.resources.limits["{resource}"] to {sections["requests"]}.'
                    )
                elif "requests" in sections and not _same_quantity(sections["requests"], sections["limits"]):
                    yield (
                        f"{container.path}{container.who} requests {resource}: {sections['requests']} but limits it to "
                        f"{sections['limits']}; GPUs cannot be overcommitted, so the two must be equal. Set both to "
                        f"the number of GPUs the container needs, or drop the request (it defaults to the limit)."
                    )
        if gpu_containers and not tolerates_gpu_taint(pod.spec.get("tolerations")):
            yield (
                f"{pod.path} runs containers that request GPUs ({', '.join(c.path for c in gpu_containers)}) but "
                f"has no toleration for the {GPU_TAINT_KEY}:NoSchedule taint every GPU pool carries, so its pods "
                f'stay Pending. Add {pod.path}.tolerations: [{{"key": "{GPU_TAINT_KEY}", "operator": "Exists", '
                f'"effect": "NoSchedule"}}].'
            )


# --- pinned images ------------------------------------------------------------------------------


# Istio's gateway chart renders `image: auto` under the pod annotation `inject.istio.io/templates:
# gateway`; Istio's injector replaces it at admission with the proxy image istiod pins
# (https://istio.io/latest/docs/setup/additional-setup/gateway/#deploying-a-gateway).
ISTIO_INJECTED_IMAGE = "auto"
ISTIO_INJECTION_TEMPLATE = "inject.istio.io/templates"


def _istio_injects_image(props: Mapping[str, Any], pod_path: str) -> bool:
    if not pod_path.endswith(".spec"):
        return False
    annotations = get(props, f"{pod_path[: -len('.spec')]}.metadata.annotations")
    return isinstance(annotations, Mapping) and annotations.get(ISTIO_INJECTION_TEMPLATE) == "gateway"


def check_images_pinned(resource_type: str, props: Mapping[str, Any]) -> Iterator[str]:
    for pod in pods_of(resource_type, props):
        for container in pod.containers:
            image = container.spec.get("image")
            if image == ISTIO_INJECTED_IMAGE and _istio_injects_image(props, pod.path):
                continue
            problem = image_pinning_problem(image)
            if problem:
                name = image.split("@", 1)[0]
                repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
                yield (
                    f"{container.path}.image {image!r}{container.who} {problem}, so a node can pull a different build whenever "
                    f"the pod is rescheduled and a rollback does not restore what ran before. Set "
                    f"{container.path}.image to a release tag ({repository}:<version>) or a digest "
                    f"({repository}@sha256:<digest>)."
                )


# --- InferenceService sizing ---------------------------------------------------------------------


def _is_positive_integer(value: Any) -> bool:
    # The engine's wire format has only doubles: 4 arrives as 4.0.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1 and float(value).is_integer()


def check_inference_service_sized(resource_type: str, props: Mapping[str, Any]) -> Iterator[str]:
    if resource_type != INFERENCE_SERVICE:
        return
    predictor = get(props, "spec.predictor")
    if predictor is UNKNOWN:
        return
    if not isinstance(predictor, dict):
        yield "spec.predictor is missing. Declare the predictor with its model (or containers), resources and maxReplicas."
        return
    predictor_pod = next(pod for pod in pods_of(resource_type, props) if pod.path == "spec.predictor")
    containers = predictor_pod.main_containers
    if not containers:
        yield (
            "spec.predictor has neither a model (or framework) section nor containers, so there is nothing to size. "
            f"Declare spec.predictor.model (or one of {', '.join(KSERVE_CONTAINER_KEYS[1:-1])}) or "
            "spec.predictor.containers, with resources."
        )
    for container in containers:
        resources = container.spec.get("resources")
        if resources is UNKNOWN:
            continue
        missing = []
        for section in ("requests", "limits"):
            values = as_mapping(resources).get(section)
            if values is UNKNOWN:
                continue
            missing += [f"{section}.{name}" for name in ("cpu", "memory") if as_mapping(values).get(name) in (None, "")]
        if missing:
            yield (
                f"{container.path}.resources does not set {', '.join(missing)}: without requests the scheduler "
                f"packs model servers onto nodes that cannot hold them, without limits one model can starve its "
                f"neighbours of CPU or get OOM-killed unpredictably. Set {container.path}.resources.requests and "
                f'.limits for cpu and memory (for example requests {{"cpu": "4", "memory": "16Gi"}}, limits '
                f'{{"cpu": "8", "memory": "16Gi"}}).'
            )
    max_replicas = predictor.get("maxReplicas")
    if max_replicas is UNKNOWN:
        return
    if not _is_positive_integer(max_replicas):
        shown = "not set" if max_replicas is None else f"{max_replicas!r}"
        yield (
            f"spec.predictor.maxReplicas is {shown}: KServe then scales the predictor without an upper bound "
            f"(0 means unlimited), so a traffic spike or a retry storm can claim every GPU in the cluster. Set "
            f"spec.predictor.maxReplicas to a positive integer no larger than the GPUs its pool can provide."
        )
        return
    min_replicas = predictor.get("minReplicas")
    if isinstance(min_replicas, (int, float)) and not isinstance(min_replicas, bool) and min_replicas > max_replicas:
        yield (
            f"spec.predictor.minReplicas ({min_replicas:g}) is larger than spec.predictor.maxReplicas "
            f"({max_replicas:g}). Set minReplicas <= maxReplicas."
        )


# --- host access ---------------------------------------------------------------------------------


def check_host_access(
    resource_type: str,
    props: Mapping[str, Any],
    *,
    system_namespaces: tuple[str, ...] = config.SYSTEM_NAMESPACES.default,
    default_namespace: str = "default",
) -> Iterator[str]:
    pods = pods_of(resource_type, props)
    if not pods:
        return
    namespace = namespace_of(props, default_namespace)
    if namespace is UNKNOWN or namespace in system_namespaces:
        return
    fix_elsewhere = (
        f"or, for a node agent that needs it, deploy it to a system namespace ({', '.join(system_namespaces)}) or "
        f"add namespace {namespace!r} to this policy's systemNamespaces config"
    )
    for pod in pods:
        if pod.spec.get("hostNetwork") is True:
            yield (
                f"{pod.path}.hostNetwork is true in namespace {namespace!r}: the pod shares the node's network "
                f"stack, bypasses network policies and can bind the node's ports. Remove {pod.path}.hostNetwork "
                f"(or set it to false), {fix_elsewhere}."
            )
        for index, volume in enumerate(as_list(pod.spec.get("volumes"))):
            if isinstance(volume, dict) and isinstance(volume.get("hostPath"), dict):
                path = volume["hostPath"].get("path")
                yield (
                    f"{pod.path}.volumes[{index}] ({volume.get('name')}) mounts hostPath {path!r} in namespace "
                    f"{namespace!r}: the pod can read or change the node's files, other pods' data included. Use an "
                    f"emptyDir, a PersistentVolumeClaim or a ConfigMap/Secret volume instead, {fix_elsewhere}."
                )
        for container in pod.containers:
            if get(container.spec, "securityContext.privileged") is True:
                yield (
                    f"{container.path}.securityContext.privileged{container.who} is true in namespace {namespace!r}: a privileged "
                    f"container is root on the node and can reach every device, every GPU and other pods' memory. "
                    f"Set privileged: false and add only the capabilities it needs, {fix_elsewhere}."
                )


# --- Flagger canaries ----------------------------------------------------------------------------

SUCCESS_RATE_METRIC = "request-success-rate"
DURATION_METRIC = "request-duration"


def _threshold(metric: Mapping[str, Any], bound: str) -> bool:
    value = as_mapping(metric.get("thresholdRange")).get(bound)
    return value is UNKNOWN or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _metric_names(metric: Mapping[str, Any]) -> str:
    names = [metric.get("name"), as_mapping(metric.get("templateRef")).get("name")]
    return " ".join(n.lower() for n in names if isinstance(n, str))


def _gates_success(metric: Mapping[str, Any]) -> bool:
    if metric.get("name") == SUCCESS_RATE_METRIC and not metric.get("templateRef"):
        return _threshold(metric, "min")
    if metric.get("templateRef"):  # a custom query: judge by its name
        names = _metric_names(metric)
        return ("success" in names and _threshold(metric, "min")) or ("error" in names and _threshold(metric, "max"))
    return False


def _gates_latency(metric: Mapping[str, Any]) -> bool:
    if metric.get("name") == DURATION_METRIC and not metric.get("templateRef"):
        return _threshold(metric, "max")
    if metric.get("templateRef"):
        names = _metric_names(metric)
        return ("latency" in names or "duration" in names) and _threshold(metric, "max")
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_canary_analysis(resource_type: str, props: Mapping[str, Any]) -> Iterator[str]:
    if resource_type != CANARY:
        return
    analysis = get(props, "spec.analysis")
    if analysis is UNKNOWN:
        return
    if not isinstance(analysis, dict):
        yield (
            "spec.analysis is missing, so Flagger promotes the canary without measuring it. Add spec.analysis with "
            "metrics request-success-rate (thresholdRange.min) and request-duration (thresholdRange.max) and a maxWeight."
        )
        return
    metrics = analysis.get("metrics")
    if metrics is not UNKNOWN:
        metrics = [m for m in as_list(metrics) if isinstance(m, dict)]
        if not any(_gates_success(m) for m in metrics):
            yield (
                "spec.analysis.metrics has no success-rate gate, so a canary that fails requests is promoted. Add "
                f'{{"name": "{SUCCESS_RATE_METRIC}", "thresholdRange": {{"min": 99}}, "interval": "1m"}} (or a '
                "templateRef metric named for its success or error rate, with thresholdRange.min or .max)."
            )
        if not any(_gates_latency(m) for m in metrics):
            yield (
                "spec.analysis.metrics has no latency gate, so a canary that answers slowly (a model that falls back "
                f'to CPU, a cold GPU) is promoted. Add {{"name": "{DURATION_METRIC}", "thresholdRange": {{"max": 500}}, '
                '"interval": "1m"} (milliseconds; or a templateRef metric named for its latency, with thresholdRange.max).'
            )
    step_weights = analysis.get("stepWeights")
    if step_weights is UNKNOWN or analysis.get("maxWeight") is UNKNOWN:
        return
    if isinstance(step_weights, list) and step_weights:
        # With stepWeights Flagger walks the list and ignores maxWeight: the last step is the cap.
        too_big = [w for w in step_weights if _is_number(w) and not 0 < w <= 100]
        if too_big:
            yield f"spec.analysis.stepWeights has weights outside 1..100 ({too_big}). Keep every step between 1 and 100."
        return
    if analysis.get("stepWeight") is None and analysis.get("iterations") is not None:
        return  # A/B testing or blue/green: traffic is switched by match rules or at once, not by weight
    max_weight = analysis.get("maxWeight")
    if not (_is_number(max_weight) and 0 < max_weight <= 100):
        shown = "not set" if max_weight is None else repr(max_weight)
        yield (
            f"spec.analysis.maxWeight is {shown}: Flagger then shifts up to 100% of the traffic to a canary that has "
            f"only been measured on a small share. Set spec.analysis.maxWeight to the largest share you trust "
            f"before promotion (at most 100, typically 50)."
        )


# --- the policies ------------------------------------------------------------------------------

gpu_workloads_limit_and_tolerate = resource_policy(
    name="gpu-workloads-limit-and-tolerate",
    description=(
        "Containers that request nvidia.com/gpu set it in resources.limits, and their pods tolerate the "
        "nvidia.com/gpu NoSchedule taint: GPUs are scheduled from limits, and without the toleration the pod "
        "never reaches a GPU node."
    ),
    check=check_gpu_limits_and_tolerations,
    severity=Severity.MEDIUM,
)

container_images_pinned = resource_policy(
    name="container-images-pinned",
    description=(
        "Container images are pinned to a release tag or a digest (no tag, or :latest, is not pinned), so every "
        "node runs the build that was reviewed and a rollback restores it."
    ),
    check=check_images_pinned,
    severity=Severity.MEDIUM,
)

inference_services_sized = resource_policy(
    name="inference-services-sized",
    description=(
        "KServe InferenceService predictors set CPU and memory requests and limits and a maxReplicas, so model "
        "servers are placed on nodes that can hold them and autoscaling cannot take every GPU in the cluster."
    ),
    check=check_inference_service_sized,
    severity=Severity.MEDIUM,
)

no_host_access_outside_system_namespaces = resource_policy(
    name="no-host-access-outside-system-namespaces",
    description=(
        "Only pods in system namespaces (node agents such as the GPU Operator) run privileged containers, use "
        "the host network or mount hostPath volumes: each of these gives a pod control of the node and of every "
        "other tenant's workloads and GPUs on it."
    ),
    check=check_host_access,
    severity=Severity.CRITICAL,
    options=config.options(config.SYSTEM_NAMESPACES),
)

canaries_gate_on_success_and_latency = resource_policy(
    name="canaries-gate-on-success-and-latency",
    description=(
        "Flagger Canaries measure a success-rate metric (thresholdRange.min) and a latency metric "
        "(thresholdRange.max) and cap the traffic shifted to the canary (analysis.maxWeight), so a bad model "
        "version is rolled back before it serves most requests."
    ),
    check=check_canary_analysis,
    severity=Severity.MEDIUM,
)

POLICIES = [
    gpu_workloads_limit_and_tolerate,
    container_images_pinned,
    inference_services_sized,
    no_host_access_outside_system_namespaces,
    canaries_gate_on_success_and_latency,
]
