"""Pod, InferenceService and Canary rules, across every pod-bearing kind."""

from __future__ import annotations

import pytest

from policies.gpu_platform_policies.workloads import (
    canaries_gate_on_success_and_latency,
    container_images_pinned,
    gpu_workloads_limit_and_tolerate,
    inference_services_sized,
    no_host_access_outside_system_namespaces,
)

from .engine import UNKNOWN_STRING, run
from .resources import GPU_TOLERATION, canary, container, gpu_pod_spec, inference_service, pod_spec, workload

TYPES = {
    "Pod": "kubernetes:core/v1:Pod",
    "Deployment": "kubernetes:apps/v1:Deployment",
    "StatefulSet": "kubernetes:apps/v1:StatefulSet",
    "DaemonSet": "kubernetes:apps/v1:DaemonSet",
    "ReplicaSet": "kubernetes:apps/v1:ReplicaSet",
    "Job": "kubernetes:batch/v1:Job",
    "CronJob": "kubernetes:batch/v1:CronJob",
}
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
CANARY = "kubernetes:flagger.app/v1beta1:Canary"


# --- GPU limits and tolerations ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", TYPES)
def test_gpu_pod_with_limit_and_toleration_passes(kind):
    assert run(gpu_workloads_limit_and_tolerate, TYPES[kind], workload(kind, gpu_pod_spec())) == []


@pytest.mark.parametrize("kind", TYPES)
def test_gpu_pod_without_toleration_fails(kind):
    (message,) = run(gpu_workloads_limit_and_tolerate, TYPES[kind], workload(kind, pod_spec(container(gpus=1))))
    assert "tolerations" in message and '"key": "nvidia.com/gpu", "operator": "Exists"' in message


def test_gpu_request_without_limit_fails():
    asks = container(resources={"requests": {"nvidia.com/gpu": 1}})
    (message,) = run(
        gpu_workloads_limit_and_tolerate,
        TYPES["Deployment"],
        workload("Deployment", pod_spec(asks, tolerations=[GPU_TOLERATION])),
    )
    assert 'spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] to 1' in message


def test_gpu_request_and_limit_must_match():
    uneven = container(resources={"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 2}})
    (message,) = run(
        gpu_workloads_limit_and_tolerate, TYPES["Pod"], workload("Pod", pod_spec(uneven, tolerations=[GPU_TOLERATION]))
    )
    assert "must be equal" in message


def test_cpu_pod_needs_nothing():
    assert run(gpu_workloads_limit_and_tolerate, TYPES["Deployment"], workload("Deployment", pod_spec())) == []


def test_inference_service_predictor_tolerations_are_checked():
    assert run(gpu_workloads_limit_and_tolerate, ISVC, inference_service()) == []
    isvc = inference_service()
    del isvc["spec"]["predictor"]["tolerations"]
    (message,) = run(gpu_workloads_limit_and_tolerate, ISVC, isvc)
    assert "spec.predictor runs containers that request GPUs (spec.predictor.model)" in message
    assert "spec.predictor.tolerations" in message


# --- pinned images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TYPES)
def test_pinned_images_pass(kind):
    assert run(container_images_pinned, TYPES[kind], workload(kind, pod_spec())) == []


@pytest.mark.parametrize("kind", TYPES)
def test_latest_or_untagged_images_fail_including_init_containers(kind):
    spec = pod_spec(container(image="vllm/vllm-openai:latest"), initContainers=[container("fetch", image="busybox")])
    messages = run(container_images_pinned, TYPES[kind], workload(kind, spec))
    assert len(messages) == 2
    assert "'vllm/vllm-openai:latest' (container server) uses the :latest tag" in messages[0]
    assert "vllm/vllm-openai:<version>" in messages[0]
    assert "initContainers[0].image 'busybox' (container fetch) has no tag" in messages[1]


def test_istio_gateway_image_auto_passes_only_where_istio_injects_the_proxy():
    # The Istio gateway chart's Deployment: `image: auto`, replaced by Istio's injector at admission.
    gateway = workload("Deployment", pod_spec(container("istio-proxy", image="auto")))
    assert len(run(container_images_pinned, TYPES["Deployment"], gateway)) == 1
    gateway["spec"]["template"]["metadata"]["annotations"] = {"inject.istio.io/templates": "gateway"}
    assert run(container_images_pinned, TYPES["Deployment"], gateway) == []
    # Any other unpinned image in that pod is still caught.
    gateway["spec"]["template"]["spec"]["containers"].append(container("helper", image="busybox"))
    assert len(run(container_images_pinned, TYPES["Deployment"], gateway)) == 1


def test_inference_service_images_in_model_and_containers():
    assert run(container_images_pinned, ISVC, inference_service()) == []  # the runtime supplies the image
    isvc = inference_service()
    isvc["spec"]["predictor"]["model"]["image"] = "kserve/huggingfaceserver"
    isvc["spec"]["predictor"]["containers"] = [container("kserve-container", image="ghcr.io/acme/llm:latest")]
    messages = run(container_images_pinned, ISVC, isvc)
    assert [m.split(" ", 1)[0] for m in messages] == [
        "spec.predictor.model.image",
        "spec.predictor.containers[0].image",
    ]


def test_unknown_image_is_not_judged():
    assert run(container_images_pinned, TYPES["Pod"], workload("Pod", pod_spec(container(image=UNKNOWN_STRING)))) == []


# --- InferenceService sizing ----------------------------------------------------------------------


def test_sized_inference_service_passes():
    assert run(inference_services_sized, ISVC, inference_service()) == []
    custom = inference_service(
        {
            "maxReplicas": 3.0,
            "containers": [
                container(
                    resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
                )
            ],
        }
    )
    assert run(inference_services_sized, ISVC, custom) == []  # the engine sends numbers as doubles


def test_inference_service_without_limits_or_max_replicas_fails():
    isvc = inference_service()
    predictor = isvc["spec"]["predictor"]
    predictor["model"]["resources"] = {"requests": {"cpu": "4", "nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}
    del predictor["maxReplicas"]
    resources, replicas = run(inference_services_sized, ISVC, isvc)
    assert "spec.predictor.model.resources does not set requests.memory, limits.cpu, limits.memory" in resources
    assert "spec.predictor.maxReplicas is not set" in replicas


def test_zero_max_replicas_means_unlimited_and_fails():
    isvc = inference_service()
    isvc["spec"]["predictor"]["maxReplicas"] = 0
    (message,) = run(inference_services_sized, ISVC, isvc)
    assert "0 means unlimited" in message


def test_other_kinds_are_not_inference_services():
    assert run(inference_services_sized, TYPES["Deployment"], workload("Deployment", pod_spec())) == []


# --- host access ------------------------------------------------------------------------------------


def _host_pod(**fields):
    privileged = container(securityContext={"privileged": True})
    return pod_spec(privileged, hostNetwork=True, volumes=[{"name": "dev", "hostPath": {"path": "/dev"}}], **fields)


@pytest.mark.parametrize("kind", ["DaemonSet", "Deployment", "Pod", "CronJob"])
def test_host_access_outside_system_namespaces_fails(kind):
    messages = run(
        no_host_access_outside_system_namespaces, TYPES[kind], workload(kind, _host_pod(), namespace="serving")
    )
    assert len(messages) == 3
    assert "hostNetwork is true in namespace 'serving'" in messages[0]
    assert "volumes[0] (dev) mounts hostPath '/dev'" in messages[1]
    assert "securityContext.privileged (container server) is true" in messages[2]
    assert "systemNamespaces" in messages[2]


def test_host_access_in_system_namespaces_passes_and_is_configurable():
    daemonset = TYPES["DaemonSet"]
    assert (
        run(
            no_host_access_outside_system_namespaces,
            daemonset,
            workload("DaemonSet", _host_pod(), namespace="gpu-operator"),
        )
        == []
    )
    istio_cni = workload("DaemonSet", _host_pod(), namespace="istio-system")
    assert run(no_host_access_outside_system_namespaces, daemonset, istio_cni)
    config = {"systemNamespaces": ["kube-system", "gpu-operator", "istio-system"]}
    assert run(no_host_access_outside_system_namespaces, daemonset, istio_cni, config=config) == []


def test_namespace_defaults_to_the_providers_then_default():
    pod = workload("Pod", _host_pod(), namespace=None)
    assert "namespace 'default'" in run(no_host_access_outside_system_namespaces, TYPES["Pod"], pod)[0]
    provider = ("pulumi:providers:kubernetes", {"namespace": "kube-system"})
    assert run(no_host_access_outside_system_namespaces, TYPES["Pod"], pod, provider=provider) == []


def test_inference_service_host_network():
    isvc = inference_service()
    isvc["spec"]["predictor"]["hostNetwork"] = True
    (message,) = run(no_host_access_outside_system_namespaces, ISVC, isvc)
    assert message.startswith("spec.predictor.hostNetwork is true")


# --- Flagger canaries ------------------------------------------------------------------------------


def test_canary_with_success_latency_and_max_weight_passes():
    assert run(canaries_gate_on_success_and_latency, CANARY, canary()) == []


def test_canary_with_template_metrics_named_for_what_they_measure_passes():
    analysis = {
        "interval": "1m",
        "threshold": 5,
        "stepWeights": [5, 10, 25, 50],
        "metrics": [
            {"name": "error-rate", "templateRef": {"name": "kserve-error-rate"}, "thresholdRange": {"max": 1}},
            {"name": "p99", "templateRef": {"name": "inference-latency-p99"}, "thresholdRange": {"max": 800}},
        ],
    }
    assert run(canaries_gate_on_success_and_latency, CANARY, canary(analysis)) == []


def test_canary_without_gates_or_weight_cap_fails():
    analysis = {"interval": "1m", "threshold": 5, "stepWeight": 10, "metrics": [{"name": "request-success-rate"}]}
    success, latency, weight = run(canaries_gate_on_success_and_latency, CANARY, canary(analysis))
    assert "no success-rate gate" in success and '"thresholdRange": {"min": 99}' in success
    assert "no latency gate" in latency and '"name": "request-duration"' in latency
    assert "spec.analysis.maxWeight is not set" in weight


def test_canary_max_weight_over_100_fails():
    analysis = {**canary()["spec"]["analysis"], "maxWeight": 150}
    (message,) = run(canaries_gate_on_success_and_latency, CANARY, canary(analysis))
    assert "maxWeight is 150" in message


def test_blue_green_canary_needs_no_weight_cap():
    analysis = {**canary()["spec"]["analysis"], "iterations": 10}
    del analysis["stepWeight"], analysis["maxWeight"]
    assert run(canaries_gate_on_success_and_latency, CANARY, canary(analysis)) == []
